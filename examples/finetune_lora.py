"""Fine-tune a saved segmentation model with LoRA on a folder of COCO-format data.

    python examples/finetune_lora.py --base path/to/saved_model --data path/to/coco_folder --output lora-run

The folder needs `annotations/panoptic_<split>.json` + `annotations/panoptic_<split>/` PNGs (or
`annotations/instances_<split>.json`) and the images (see `hf_unified_seg.data.folder`). Without arguments the
script makes everything it needs: a ShapesWorld COCO export and a briefly trained base model.

Only the LoRA matrices (and the model's `default_lora_modules_to_save`, e.g. the decode head) are trained; the
adapter is saved alone as `adapter_model.safetensors` and loads with `PeftModel.from_pretrained(base, path)` or
`base.load_adapter(path)`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from peft import PeftModel
from transformers import AutoModelForSemanticSegmentation

from hf_unified_seg.training import DataArguments, LoraArguments, ModelArguments, SegTrainingArguments, train


def make_demo_inputs(root: Path) -> tuple[Path, Path]:
    """A COCO-format ShapesWorld folder and a base model trained for a few steps on ShapesWorld."""
    from hf_unified_seg.cli import main as cli

    data = root / "shapes_coco"
    if not data.exists():
        cli(["data", "--output_dir", str(data), "--num_train", "64", "--num_val", "16", "--image_size", "64",
             "--format", "coco", "--seed", "1"])  # fmt: skip
    base = root / "base_model"
    if not (base / "model.safetensors").exists():
        train(
            ModelArguments("antialiased_resnet", preset="tiny", image_size=64),
            DataArguments(num_train_images=128, num_eval_images=16),
            SegTrainingArguments(
                output_dir=str(base), max_steps=40, per_device_train_batch_size=16, learning_rate=3e-3
            ),
        )
    return data, base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", help="saved base model directory or Hub id (default: train a small one)")
    parser.add_argument("--data", help="COCO-format dataset folder (default: export ShapesWorld)")
    parser.add_argument("--output", default="lora-run")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--rank", type=int, default=8)
    args = parser.parse_args()

    if args.base is None or args.data is None:
        data, base = make_demo_inputs(Path(args.output).parent / "lora_demo_inputs")
        args.base, args.data = args.base or str(base), args.data or str(data)

    result = train(
        ModelArguments(args.base, image_size=64),
        DataArguments(dataset=args.data),
        SegTrainingArguments(
            output_dir=args.output,
            max_steps=args.steps,
            per_device_train_batch_size=8,
            learning_rate=5e-3,
            eval_steps=20,
            save_steps=20,
            save_total_limit=2,
        ),  # fmt: skip
        LoraArguments(lora=True, lora_r=args.rank, lora_alpha=2 * args.rank),
    )
    print(f"adapter in {result.output_dir}: eval {result.eval_metrics}")

    # Load it back two ways and check they agree.
    base = AutoModelForSemanticSegmentation.from_pretrained(args.base)
    model = PeftModel.from_pretrained(base, result.output_dir).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        adapted = model(pixel_values=x).logits
        merged = model.merge_and_unload()(pixel_values=x).logits
    print(f"merged vs adapter max |diff| = {(adapted - merged).abs().max():.2e}")


if __name__ == "__main__":
    main()
