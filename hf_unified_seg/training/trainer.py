"""The training loop: Accelerate, generic over every model whose forward returns `loss` when given labels.

One code path serves a single CPU process, several CPU processes (gloo DDP) and GPUs. For CPU processes launch with
`accelerate launch --multi_gpu --num_processes 2 ...` (torchrun underneath; without CUDA the trainer picks gloo on
CPU): accelerate 1.x's `--cpu --num_processes 2` spawns extra processes only through `mpirun`.
The data order is a function of `(seed, epoch)` only and checkpoints record `(epoch, batches seen)`, so a
resumed run replays exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .arguments import DataArguments, LoraArguments, ModelArguments, SegTrainingArguments, arguments_to_dict
from .checkpoint import read_state, resolve_checkpoint, save_checkpoint
from .data import EpochShuffleSampler, load_training_data
from .lora import apply_lora, freeze_batchnorm_statistics
from .tasks import TrainingTask, get_training_task, make_collate_fn, task_for_model, unwrap_model

METRICS_FILE = "metrics.jsonl"
DEFAULT_TASK = "semantic-segmentation"


@dataclass
class TrainResult:
    """What `train` produced."""

    output_dir: str
    global_step: int
    eval_metrics: dict[str, float] = field(default_factory=dict)
    train_loss: float | None = None
    train_runtime: float = 0.0
    task: str = DEFAULT_TASK


# ----------------------------------------------------------------------------------------------------------------
# model construction


def _is_pretrained_reference(name: str) -> bool:
    return Path(name).exists() or "/" in name


def weight_decay_groups(model: torch.nn.Module) -> tuple[list[torch.nn.Parameter], list[torch.nn.Parameter]]:
    """Trainable parameters split into `(decayed, not decayed)`.

    Weight decay is for weight matrices and kernels only: biases, normalisation gains, scalars such as a learned
    logit scale, and embedding tables (learned queries, position embeddings) are left undecayed, as in transformers'
    Trainer (biases, norms), Mask2Former (`WEIGHT_DECAY_NORM = WEIGHT_DECAY_EMBED = 0`) and CLIP (logit scale).
    Decaying a logit scale drags the temperature of contrastive / open-vocabulary logits down for no reason.
    """
    embedding_weights = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    decay, no_decay = [], []
    for param in model.parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim <= 1 or id(param) in embedding_weights else decay).append(param)
    return decay, no_decay


def _labels_from_categories(categories: list[dict[str, Any]]) -> tuple[dict[int, str], dict[str, int]]:
    id2label = {int(c["id"]): str(c["name"]) for c in categories}
    if sorted(id2label) != list(range(len(id2label))):
        raise ValueError(f"category ids must be contiguous 0..K-1, got {sorted(id2label)}")
    return id2label, {v: k for k, v in id2label.items()}


def _task_from_config(config: Any) -> TrainingTask | None:
    """The task of the class named in `config.architectures`, looked up in each task's Auto class."""
    import transformers

    from .tasks import list_training_tasks

    for arch in getattr(config, "architectures", None) or []:
        for name in list_training_tasks():
            auto = getattr(transformers, get_training_task(name).auto_class, None)
            try:
                cls = auto._model_mapping[type(config)]
            except (KeyError, AttributeError):
                continue
            if getattr(cls, "__name__", None) == arch:
                return task_for_model(cls)
    return None


def _image_processor_for_config(config: Any) -> Any:
    from transformers.models.auto.image_processing_auto import IMAGE_PROCESSOR_MAPPING

    try:
        entry = IMAGE_PROCESSOR_MAPPING[type(config)]
    except KeyError as err:
        raise ValueError(f"no image processor is registered for {type(config).__name__}") from err
    if isinstance(entry, dict):
        entry = entry.get("pil") or next(v for v in entry.values() if v is not None)
    elif isinstance(entry, (tuple, list)):
        entry = next(v for v in entry if v is not None)
    return entry()


def parse_config_overrides(text: str | None) -> dict[str, Any]:
    """`"a=1,b=true,c=blur"` -> `{"a": 1, "b": True, "c": "blur"}` (JSON values where they parse)."""
    out: dict[str, Any] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"config_overrides entries must look like key=value, got {item!r}")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value.strip()
    return out


def build_model_and_processor(
    model_args: ModelArguments, categories: list[dict[str, Any]]
) -> tuple[torch.nn.Module, Any, TrainingTask]:
    """Load (fine-tune) or create (from a `model_type` + preset) the model sized for `categories`."""
    import transformers
    from transformers import AutoConfig, AutoImageProcessor
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    id2label, label2id = _labels_from_categories(categories)
    name = model_args.model_name_or_path
    if _is_pretrained_reference(name):
        if model_args.config_overrides:
            raise ValueError("config_overrides only applies to models built from a model_type, not to saved models")
        config = AutoConfig.from_pretrained(name, trust_remote_code=model_args.trust_remote_code)
        task = get_training_task(model_args.task) if model_args.task else _task_from_config(config)
        task = task or get_training_task(DEFAULT_TASK)
        auto = getattr(transformers, task.auto_class)
        same_labels = {int(k): v for k, v in (config.id2label or {}).items()} == id2label
        model = auto.from_pretrained(
            name,
            id2label=id2label,
            label2id=label2id,
            ignore_mismatched_sizes=not same_labels,
            trust_remote_code=model_args.trust_remote_code,
        )
        processor = AutoImageProcessor.from_pretrained(name, trust_remote_code=model_args.trust_remote_code)
    else:
        try:
            config_cls = CONFIG_MAPPING[name]
        except KeyError:
            raise ValueError(
                f"model_name_or_path {name!r} is neither a saved model directory, a Hub id nor a registered model_type"
            ) from None
        kwargs = {**parse_config_overrides(model_args.config_overrides)}
        kwargs.update(id2label=id2label, label2id=label2id, num_labels=len(id2label))
        if model_args.preset:
            if not hasattr(config_cls, "from_preset"):
                raise ValueError(f"{config_cls.__name__} has no presets; drop --preset")
            config = config_cls.from_preset(model_args.preset, **kwargs)
        else:
            config = config_cls(**kwargs)
        task = get_training_task(model_args.task or DEFAULT_TASK)
        model = getattr(transformers, task.auto_class).from_config(config)
        processor = _image_processor_for_config(config)
    if model_args.image_size:
        s = int(model_args.image_size)
        if hasattr(processor, "size"):
            processor.size = {"height": s, "width": s}
        if getattr(processor, "do_center_crop", False):
            processor.crop_size = {"height": s, "width": s}
    if hasattr(model.config, "held_out_label_ids"):
        # open-vocabulary models must not see the names of classes kept for open-vocabulary evaluation
        held = [int(c["id"]) for c in categories if c.get("openvocab")]
        model.config.held_out_label_ids = held or None
    return model, processor, task


# ----------------------------------------------------------------------------------------------------------------
# logging


class MetricsLogger:
    """JSON lines in `output_dir/metrics.jsonl` (main process) plus any Accelerate trackers."""

    def __init__(self, accelerator: Any, output_dir: Path, resume: bool) -> None:
        self.accelerator = accelerator
        self.path = output_dir / METRICS_FILE
        if accelerator.is_main_process and not resume and self.path.exists():
            self.path.unlink()

    def log(self, record: dict[str, Any], step: int) -> None:
        if self.accelerator.is_main_process:
            with open(self.path, "a") as f:
                f.write(json.dumps(record) + "\n")
        scalars = {k: v for k, v in record.items() if isinstance(v, (int, float)) and k != "step"}
        if self.accelerator.trackers:
            self.accelerator.log(scalars, step=step)


def _trackers(report_to: str) -> list[str]:
    from accelerate.utils import is_tensorboard_available, is_trackio_available

    if report_to == "none":
        return []
    if report_to == "auto":
        out = []
        if is_tensorboard_available():
            out.append("tensorboard")
        if is_trackio_available():
            out.append("trackio")
        return out
    return [t.strip() for t in report_to.split(",") if t.strip()]


def parameter_checksum(model: torch.nn.Module, buffers: bool = True) -> str:
    """sha256 of every parameter (and buffer), in name order (identical weights <=> identical digest)."""
    h = hashlib.sha256()
    base = unwrap_model(model)
    tensors = base.state_dict() if buffers else dict(base.named_parameters())
    for name, t in sorted(tensors.items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


# ----------------------------------------------------------------------------------------------------------------
# the loop


def train(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: SegTrainingArguments,
    lora_args: LoraArguments | None = None,
    *,
    train_dataset: Any = None,
    eval_dataset: Any = None,
    categories: list[dict[str, Any]] | None = None,
) -> TrainResult:
    """Train, evaluate and save a model; see `hf-unified-seg train --help` for every argument.

    Args:
        model_args, data_args, training_args, lora_args: the argument dataclasses.
        train_dataset, eval_dataset, categories: in-memory datasets in the loader schema and their categories
            table, used instead of `data_args.dataset` when given (all three together).
    """
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration, gather_object, set_seed
    from tqdm.auto import tqdm
    from transformers import get_scheduler

    lora_args = lora_args or LoraArguments()
    output_dir = Path(training_args.output_dir)
    resume_from = None
    if training_args.resume_from_checkpoint:
        resume_from = resolve_checkpoint(training_args.resume_from_checkpoint, output_dir)

    # Under `accelerate launch --multi_gpu` / torchrun on a machine without CUDA, run gloo DDP on CPU instead of
    # silently starting independent single-process runs.
    distributed_cpu = not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1
    accelerator = Accelerator(
        cpu=distributed_cpu,
        mixed_precision=training_args.mixed_precision,
        gradient_accumulation_steps=training_args.gradient_accumulation_steps,
        log_with=_trackers(training_args.report_to) or None,
        project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / "logs")),
    )
    set_seed(training_args.seed)
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)

    # Every process builds the same data; ShapesWorld is seeded, folders are read identically.
    with accelerator.main_process_first():
        if train_dataset is not None:
            if eval_dataset is None or categories is None:
                raise ValueError("pass train_dataset, eval_dataset and categories together")
            train_ds, eval_ds = train_dataset, eval_dataset
        else:
            train_ds, eval_ds, categories = load_training_data(data_args, seed=training_args.seed)
        model, processor, task = build_model_and_processor(model_args, categories)
    base_name = model_args.model_name_or_path
    if lora_args.lora:
        model = apply_lora(
            model,
            r=lora_args.lora_r,
            alpha=lora_args.lora_alpha,
            dropout=lora_args.lora_dropout,
            target_modules=lora_args.lora_target_modules,
            modules_to_save=lora_args.lora_modules_to_save,
            include_text=lora_args.lora_text,
        )
    freeze_bn = lora_args.lora or model_args.freeze_batchnorm

    sampler = EpochShuffleSampler(len(train_ds), seed=training_args.seed)
    train_dl = torch.utils.data.DataLoader(
        train_ds,
        batch_size=training_args.per_device_train_batch_size,
        sampler=sampler,
        collate_fn=make_collate_fn(task, processor, unwrap_model(model).config),
        num_workers=training_args.dataloader_num_workers,
        drop_last=True,
        # DataLoader draws a worker base seed per epoch; from its own generator it leaves the global RNG (dropout)
        # untouched, so a resumed run draws the same dropout masks as an uninterrupted one.
        generator=torch.Generator().manual_seed(training_args.seed),
    )
    decay, no_decay = weight_decay_groups(model)
    if not decay and not no_decay:
        raise ValueError("the model has no trainable parameters")
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": training_args.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=training_args.learning_rate,
    )
    model, optimizer, train_dl = accelerator.prepare(model, optimizer, train_dl)
    if len(train_dl) == 0:
        raise ValueError(
            f"the training set ({len(train_ds)} images) is smaller than one global batch "
            f"({training_args.per_device_train_batch_size} x {accelerator.num_processes} processes)"
        )

    accum = training_args.gradient_accumulation_steps
    steps_per_epoch = max(1, len(train_dl) // accum)
    if training_args.max_steps > 0:
        max_steps = training_args.max_steps
    else:
        max_steps = math.ceil(training_args.num_train_epochs * steps_per_epoch)
    # The scheduler counts optimizer steps; it is stepped by hand (not prepared) so its horizon does not depend
    # on the number of processes, and saved with the rest of the state.
    scheduler = get_scheduler(
        training_args.lr_scheduler_type,
        optimizer=optimizer,
        num_warmup_steps=training_args.warmup_steps,
        num_training_steps=max_steps,
    )
    accelerator.register_for_checkpointing(scheduler)

    global_step, epoch, batches_in_epoch = 0, 0, 0
    if resume_from is not None:
        accelerator.load_state(str(resume_from))
        state = read_state(resume_from)
        global_step, epoch, batches_in_epoch = state["global_step"], state["epoch"], state["batches_in_epoch"]
        accelerator.print(f"Resumed from {resume_from} at step {global_step}")

    run_config = arguments_to_dict(model_args, data_args, training_args, lora_args)
    if accelerator.trackers is not None and _trackers(training_args.report_to):
        accelerator.init_trackers(
            "hf_unified_seg",
            config={k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in run_config.items()},
        )
    logger = MetricsLogger(accelerator, output_dir, resume=resume_from is not None)

    def evaluate_now() -> dict[str, float]:
        metrics: dict[str, float] = {}
        model.eval()
        if accelerator.is_main_process and len(eval_ds):
            with accelerator.autocast():
                metrics = task.evaluate(
                    accelerator.unwrap_model(model),
                    eval_ds,
                    processor,
                    batch_size=training_args.per_device_eval_batch_size,
                    device=accelerator.device,
                    categories=categories,
                )
            logger.log(
                {"type": "eval", "step": global_step, **{f"eval_{k}": v for k, v in metrics.items()}}, global_step
            )
        accelerator.wait_for_everyone()
        set_train_mode()
        return metrics

    def set_train_mode() -> None:
        model.train()
        if freeze_bn:
            freeze_batchnorm_statistics(model, only_frozen=lora_args.lora)

    set_train_mode()
    # A time-budgeted run shows seconds (the budget usually ends it); otherwise optimizer steps.
    time_bar = training_args.max_train_time is not None
    progress = tqdm(
        total=round(training_args.max_train_time) if time_bar else max_steps,
        initial=0 if time_bar else global_step,
        unit="s" if time_bar else "step",
        bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt}s [{elapsed}{postfix}]" if time_bar else None,
        desc="training",
        disable=training_args.disable_tqdm or not accelerator.is_local_main_process,
    )
    start = time.time()
    running_loss = torch.zeros((), device=accelerator.device)
    last_loss: float | None = None
    eval_metrics: dict[str, float] = {}
    stop = global_step >= max_steps
    while not stop:
        # Accelerate's loaders count their own iterations and push that count into the sampler on every pass;
        # set it explicitly so a resumed run (fresh loaders) reads the same permutation as the original run.
        sampler.set_epoch(epoch)
        if hasattr(train_dl, "set_epoch"):
            train_dl.set_epoch(epoch)
        loader = accelerator.skip_first_batches(train_dl, batches_in_epoch) if batches_in_epoch else train_dl
        for batch in loader:
            with accelerator.accumulate(model):
                loss = model(**batch).loss
                if loss is None:
                    raise ValueError(f"{type(unwrap_model(model)).__name__} returned no loss for a labelled batch")
                running_loss += loss.detach() / accum
                accelerator.backward(loss)
                if accelerator.sync_gradients and training_args.max_grad_norm:
                    accelerator.clip_grad_norm_(decay + no_decay, training_args.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad()
            batches_in_epoch += 1
            if not accelerator.sync_gradients:
                continue
            if not accelerator.optimizer_step_was_skipped:
                scheduler.step()
            global_step += 1
            if time_bar:
                progress.update(min(round(time.time() - start), progress.total) - progress.n)
            else:
                progress.update(1)
            step_loss = accelerator.reduce(running_loss, reduction="mean").item()
            running_loss.zero_()
            last_loss = step_loss
            if global_step % max(1, training_args.logging_steps) == 0:
                logger.log(
                    {
                        "type": "train",
                        "step": global_step,
                        "epoch": epoch + batches_in_epoch / len(train_dl),
                        "loss": step_loss,
                        "learning_rate": scheduler.get_last_lr()[0],
                        "elapsed": time.time() - start,
                    },
                    global_step,
                )
                progress.set_postfix(step=global_step, loss=f"{step_loss:.4f}")
            timed_out = (
                training_args.max_train_time is not None and time.time() - start >= training_args.max_train_time
            )
            # `timed_out` must agree across processes or they would deadlock in the next collective.
            timed_out = bool(
                accelerator.gather(torch.tensor([float(timed_out)], device=accelerator.device)).max().item()
            )
            stop = global_step >= max_steps or timed_out
            if training_args.eval_steps and global_step % training_args.eval_steps == 0 and not stop:
                eval_metrics = evaluate_now()
            if training_args.save_steps and global_step % training_args.save_steps == 0:
                end_of_epoch = batches_in_epoch >= len(train_dl)
                state = {
                    "global_step": global_step,
                    "epoch": epoch + 1 if end_of_epoch else epoch,
                    "batches_in_epoch": 0 if end_of_epoch else batches_in_epoch,
                    "max_steps": max_steps,
                    "loss": step_loss,
                }
                save_checkpoint(accelerator, output_dir, global_step, state, training_args.save_total_limit)
            if stop:
                break
        else:
            epoch += 1
            batches_in_epoch = 0
    progress.close()
    runtime = time.time() - start
    if not training_args.skip_final_eval:
        eval_metrics = evaluate_now()

    # Parameters must already agree across ranks (DDP averages gradients). BatchNorm running statistics are
    # buffers each rank updates from its own batch; DDP re-broadcasts them from rank 0 before every forward, so
    # do the same once more to leave every rank with the model that rank 0 saves.
    param_checksums = gather_object([parameter_checksum(model, buffers=False)])
    if accelerator.num_processes > 1:
        for buf in accelerator.unwrap_model(model).buffers():
            torch.distributed.broadcast(buf.data, src=0)
    checksums = gather_object([parameter_checksum(model)])
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        save_final_model(
            accelerator.unwrap_model(model),
            processor,
            output_dir,
            task=task,
            base_name=base_name,
            lora=lora_args.lora,
            save_merged=lora_args.save_merged,
            categories=categories,
            eval_metrics=eval_metrics,
            run_config=run_config,
            dataset_name=data_args.dataset,
        )
        results = {
            "global_step": global_step,
            "train_runtime": runtime,
            "train_loss": last_loss,
            "eval": eval_metrics,
            "num_processes": accelerator.num_processes,
            "rank_parameter_checksums": param_checksums,
            "rank_checksums": checksums,
            "ranks_in_sync": len(set(checksums)) == 1 and len(set(param_checksums)) == 1,
            "task": task.name,
        }
        (output_dir / "train_results.json").write_text(json.dumps(results, indent=2))
    accelerator.wait_for_everyone()
    accelerator.end_training()
    if accelerator.num_processes > 1 and torch.distributed.is_initialized():
        # Tear the process group down while every rank is still here: left to interpreter exit, a rank that
        # finishes late can block on the rendezvous store of ranks that are already gone.
        torch.distributed.destroy_process_group()
    return TrainResult(str(output_dir), global_step, eval_metrics, last_loss, runtime, task.name)


def save_final_model(
    model: Any,
    processor: Any,
    output_dir: Path,
    *,
    task: TrainingTask,
    base_name: str,
    lora: bool,
    save_merged: bool,
    categories: list[dict[str, Any]],
    eval_metrics: dict[str, float],
    run_config: dict[str, Any],
    dataset_name: str,
) -> None:
    """Write weights (or the adapter), processor, `eval_results.json`, `training_args.json` and the model card."""
    from ..hub import write_model_card

    output_dir.mkdir(parents=True, exist_ok=True)
    if lora:
        base_ref = base_name
        if not _is_pretrained_reference(base_name):
            # A base created from a preset exists nowhere else: keep it next to the adapter.
            base_dir = output_dir / "base_model"
            base = copy.deepcopy(model).unload()
            base.save_pretrained(base_dir)
            processor.save_pretrained(base_dir)
            base_ref = str(base_dir.resolve())
        for cfg in model.peft_config.values():
            cfg.base_model_name_or_path = base_ref
        model.save_pretrained(output_dir)
        if save_merged:
            merged = copy.deepcopy(model).merge_and_unload()
            merged.save_pretrained(output_dir / "merged")
            processor.save_pretrained(output_dir / "merged")
    else:
        model.save_pretrained(output_dir)
    processor.save_pretrained(output_dir)
    (output_dir / "training_args.json").write_text(json.dumps(run_config, indent=2, sort_keys=True))
    evaluation = {
        "task": task.name,
        "dataset": dataset_name,
        "split": "val",
        "metrics": eval_metrics,
        "categories": [c["name"] for c in categories],
    }
    (output_dir / "eval_results.json").write_text(json.dumps(evaluation, indent=2))
    write_model_card(output_dir)


def main_from_args(argv: list[str] | None = None) -> TrainResult:
    from .arguments import parse_args

    model_args, data_args, training_args, lora_args = parse_args(argv)
    return train(model_args, data_args, training_args, lora_args)


if __name__ == "__main__":  # `accelerate launch -m hf_unified_seg.training.trainer ...`
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main_from_args()
