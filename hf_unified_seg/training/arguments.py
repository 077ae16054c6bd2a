"""Training arguments: plain dataclasses parsed with `transformers.HfArgumentParser`.

They are split by concern (model, data, optimisation, LoRA) so the CLI, the Python API and the examples
share one definition, and `HfArgumentParser(ALL_ARGUMENT_CLASSES).parse_args_into_dataclasses()` gives the
`--help` text from the `metadata["help"]` strings below.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MIXED_PRECISION_CHOICES = ("no", "fp16", "bf16")
SCHEDULER_CHOICES = ("linear", "cosine", "constant", "constant_with_warmup", "polynomial", "cosine_with_restarts")


@dataclass
class ModelArguments:
    """Which model to train."""

    model_name_or_path: str = field(
        default="antialiased_resnet",
        metadata={
            "help": "A saved model directory or Hub id (fine-tune), or a registered `model_type` such as "
            "'antialiased_resnet' (train from scratch, sized by --preset)."
        },
    )
    preset: str | None = field(
        default=None,
        metadata={
            "help": "Named size of the config when training from scratch (e.g. 'tiny'; see the config's presets)."
        },
    )
    config_overrides: str | None = field(
        default=None,
        metadata={
            "help": "Comma-separated config fields for a model built from scratch, e.g. "
            "'hidden_dropout_prob=0.1,aa_mode=blur' (values parsed as JSON when possible)."
        },
    )
    task: str | None = field(
        default=None,
        metadata={
            "help": "Training task: 'image-classification', 'semantic-segmentation', 'universal-segmentation' or one "
            "registered by a model package. Default: inferred from the saved model, else 'semantic-segmentation'."
        },
    )
    image_size: int | None = field(
        default=None,
        metadata={"help": "Square input size given to the image processor (default: the processor's own)."},
    )
    freeze_batchnorm: bool = field(
        default=False,
        metadata={"help": "Keep BatchNorm statistics fixed (eval mode) while training; always on with --lora."},
    )
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow loading models with custom Hub code."})


@dataclass
class DataArguments:
    """Where the examples come from."""

    dataset: str = field(
        default="shapesworld",
        metadata={
            "help": "'shapesworld' (generated on the fly) or a folder in a format `hf_unified_seg.data` reads "
            "(COCO panoptic/instances, semantic folders, ...)."
        },
    )
    num_train_images: int = field(default=512, metadata={"help": "ShapesWorld: number of training images."})
    num_eval_images: int = field(default=64, metadata={"help": "ShapesWorld: number of evaluation images."})
    dataset_image_size: int = field(default=64, metadata={"help": "ShapesWorld: generated image side in pixels."})
    eval_split_fraction: float = field(
        default=0.1,
        metadata={"help": "Folder datasets with no validation split: fraction of images held out for evaluation."},
    )
    max_eval_samples: int | None = field(default=None, metadata={"help": "Evaluate on at most this many images."})


@dataclass
class SegTrainingArguments:
    """Optimisation, logging and checkpointing."""

    output_dir: str = field(default="outputs/run", metadata={"help": "Where checkpoints, logs and the model go."})
    per_device_train_batch_size: int = field(default=8, metadata={"help": "Batch size per process."})
    per_device_eval_batch_size: int = field(default=8, metadata={"help": "Evaluation batch size."})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "Batches accumulated per optimizer step."})
    learning_rate: float = field(default=1e-3, metadata={"help": "Peak learning rate (AdamW)."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    lr_scheduler_type: str = field(
        default="linear", metadata={"help": f"Learning-rate schedule, one of {', '.join(SCHEDULER_CHOICES)}."}
    )
    warmup_steps: int = field(default=0, metadata={"help": "Linear warm-up steps."})
    max_steps: int = field(
        default=-1, metadata={"help": "Total optimizer steps; overrides --num_train_epochs if > 0."}
    )
    num_train_epochs: float = field(default=1.0, metadata={"help": "Epochs when --max_steps is not set."})
    max_train_time: float | None = field(
        default=None,
        metadata={
            "help": "Stop after this many seconds of training (checked after each step; the schedule still "
            "follows --max_steps)."
        },
    )
    eval_steps: int = field(default=0, metadata={"help": "Evaluate every N optimizer steps (0: only at the end)."})
    save_steps: int = field(default=0, metadata={"help": "Checkpoint every N optimizer steps (0: never)."})
    save_total_limit: int | None = field(default=None, metadata={"help": "Keep at most this many checkpoints."})
    logging_steps: int = field(default=1, metadata={"help": "Log the training loss every N optimizer steps."})
    seed: int = field(default=0, metadata={"help": "Seed for initialisation, data order and dropout."})
    mixed_precision: str = field(default="no", metadata={"help": "'no', 'fp16' or 'bf16'."})
    max_grad_norm: float | None = field(default=None, metadata={"help": "Clip gradients to this norm."})
    dataloader_num_workers: int = field(default=0, metadata={"help": "Worker processes for data loading."})
    resume_from_checkpoint: str | None = field(
        default=None, metadata={"help": "A checkpoint directory, or 'latest' for the newest one in --output_dir."}
    )
    skip_final_eval: bool = field(default=False, metadata={"help": "Do not evaluate after the last step."})
    report_to: str = field(
        default="auto",
        metadata={
            "help": "Trackers besides the JSON-lines log: 'auto' (TensorBoard/trackio when installed), "
            "'none', or a comma-separated list."
        },
    )
    disable_tqdm: bool = field(default=False, metadata={"help": "No progress bar."})

    def __post_init__(self) -> None:
        if self.mixed_precision not in MIXED_PRECISION_CHOICES:
            raise ValueError(f"mixed_precision must be one of {MIXED_PRECISION_CHOICES}, got {self.mixed_precision!r}")
        if self.lr_scheduler_type not in SCHEDULER_CHOICES:
            raise ValueError(f"lr_scheduler_type must be one of {SCHEDULER_CHOICES}, got {self.lr_scheduler_type!r}")
        for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_steps <= 0 and self.num_train_epochs <= 0:
            raise ValueError("set --max_steps > 0 or --num_train_epochs > 0")


@dataclass
class LoraArguments:
    """Parameter-efficient fine-tuning with PEFT LoRA."""

    lora: bool = field(default=False, metadata={"help": "Train LoRA adapters on a frozen base model."})
    lora_r: int = field(default=8, metadata={"help": "LoRA rank."})
    lora_alpha: float = field(default=16.0, metadata={"help": "LoRA scaling numerator (scale = alpha / r)."})
    lora_dropout: float = field(default=0.0, metadata={"help": "Dropout on the LoRA input."})
    lora_target_modules: str | None = field(
        default=None,
        metadata={
            "help": "Comma-separated module names (suffix match) or one regex; default: the model's "
            "`default_lora_target_modules`."
        },
    )
    lora_modules_to_save: str | None = field(
        default=None,
        metadata={
            "help": "Comma-separated modules trained in full and saved with the adapter; default: the "
            "model's `default_lora_modules_to_save`."
        },
    )
    lora_text: bool = field(
        default=False,
        metadata={
            "help": "Models with a language side: also put LoRA on the frozen language model "
            "(its `default_lora_text_target_modules`); the language model's own weights stay frozen."
        },
    )
    save_merged: bool = field(
        default=False,
        metadata={"help": "Also write the merged (LoRA folded into the base) model to output_dir/merged."},
    )

    def __post_init__(self) -> None:
        if self.lora_r < 1:
            raise ValueError(f"lora_r must be >= 1, got {self.lora_r}")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ValueError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")


ALL_ARGUMENT_CLASSES = (ModelArguments, DataArguments, SegTrainingArguments, LoraArguments)


def parse_args(
    argv: list[str] | None = None,
) -> tuple[ModelArguments, DataArguments, SegTrainingArguments, LoraArguments]:
    """Parse command-line flags (or a single `.json` file path) into the four argument dataclasses."""
    from transformers import HfArgumentParser

    parser = HfArgumentParser(ALL_ARGUMENT_CLASSES)
    if argv is not None and len(argv) == 1 and argv[0].endswith(".json"):
        return parser.parse_json_file(argv[0])
    return parser.parse_args_into_dataclasses(args=argv)


def arguments_to_dict(*args: Any) -> dict[str, Any]:
    """Flatten argument dataclasses into one JSON-serialisable dict (for logs and the model card)."""
    out: dict[str, Any] = {}
    for a in args:
        if a is not None:
            out.update(dataclasses.asdict(a))
    return json.loads(json.dumps(out, default=str))


def save_arguments(path: str | Path, *args: Any) -> None:
    Path(path).write_text(json.dumps(arguments_to_dict(*args), indent=2, sort_keys=True))
