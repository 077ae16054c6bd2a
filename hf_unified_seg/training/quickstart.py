"""`hf-unified-seg quickstart`: the whole workflow in a few minutes on a CPU."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

QUICKSTART_MODEL = "antialiased_resnet"
QUICKSTART_PRESET = "tiny"


def run_quickstart(
    output_dir: str = "hf_unified_seg_quickstart",
    train_seconds: float = 120.0,
    num_train_images: int = 1024,
    image_size: int = 64,
    seed: int = 0,
) -> dict[str, Any]:
    """Generate data, train, evaluate, save with a card, segment a fresh image; returns what was produced."""
    import torch

    from ..data import load_shapesworld
    from .arguments import DataArguments, ModelArguments, SegTrainingArguments
    from .inference import load_model, predict_image, render_overlay
    from .trainer import train

    t0 = time.time()
    out = Path(output_dir)
    model_dir = out / "model"
    if model_dir.exists() and any(model_dir.iterdir()):
        raise ValueError(f"output_dir {str(out)!r} already holds a quickstart model; choose another --output_dir")
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, min(torch.get_num_threads(), 4)))

    print(f"[1/5] generating ShapesWorld ({num_train_images} train + 64 val images, {image_size}x{image_size} px)")
    data_args = DataArguments(num_train_images=num_train_images, num_eval_images=64, dataset_image_size=image_size)
    train_ds = load_shapesworld("train", num_images=num_train_images, image_size=image_size, seed=seed)
    eval_ds = load_shapesworld("val", num_images=64, image_size=image_size, seed=seed)
    from ..data import get_categories

    categories = get_categories(train_ds)
    print(f"      {len(categories)} categories, {time.time() - t0:.0f}s")

    model_args = ModelArguments(
        QUICKSTART_MODEL, preset=QUICKSTART_PRESET, image_size=image_size, task="semantic-segmentation"
    )
    print(f"[2/5] training the {QUICKSTART_PRESET} anti-aliased ResNet segmenter for {train_seconds:.0f}s")
    result = train(
        model_args,
        data_args,
        SegTrainingArguments(
            output_dir=str(model_dir),
            per_device_train_batch_size=16,
            learning_rate=3e-3,
            weight_decay=1e-4,
            # The time budget ends the run, however fast this machine is; a constant rate after warm-up does not
            # depend on guessing the number of steps that fit.
            lr_scheduler_type="constant_with_warmup",
            warmup_steps=10,
            max_steps=1_000_000,
            max_train_time=train_seconds,
            logging_steps=5,
            seed=seed,
            report_to="none",
        ),
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        categories=categories,
    )
    m = result.eval_metrics
    print(f"[3/5] evaluation on {len(eval_ds)} held-out images after {result.global_step} steps:")
    print(
        f"      mIoU {m.get('mean_iou', float('nan')):.1f}%   pixel accuracy {m.get('overall_accuracy', float('nan')):.1f}%"
        f"   mean class accuracy {m.get('mean_accuracy', float('nan')):.1f}%"
    )

    print("[4/5] saved model, image processor and model card")
    print(f"      {model_dir}/ (model.safetensors, config.json, preprocessor_config.json, README.md)")

    print('[5/5] segmenting a fresh image with pipeline("image-segmentation")')
    fresh = load_shapesworld("val", num_images=1, image_size=image_size, seed=seed + 1000)[0]["image"].convert("RGB")
    image_path = out / "fresh_image.png"
    fresh.save(image_path)
    model, processor, task = load_model(model_dir)
    from transformers import pipeline

    pipe = pipeline("image-segmentation", model=model, image_processor=processor)
    prediction = predict_image(fresh, model, processor, task, pipe)
    prediction["image"] = str(image_path)
    overlay_path = out / "fresh_image_overlay.png"
    render_overlay(fresh, prediction).save(overlay_path)
    (out / "fresh_image.json").write_text(json.dumps(prediction, indent=2))
    labels = ", ".join(
        f"{s['label']} ({100 * s['area'] / (fresh.width * fresh.height):.0f}%)" for s in prediction["segments"]
    )
    print(f"      found: {labels}")

    summary = {
        "model_dir": str(model_dir),
        "model_card": str(model_dir / "README.md"),
        "metrics_log": str(model_dir / "metrics.jsonl"),
        "image": str(image_path),
        "overlay": str(overlay_path),
        "prediction_json": str(out / "fresh_image.json"),
        "eval": m,
        "steps": result.global_step,
        "seconds": round(time.time() - t0, 1),
    }
    print(f"\nDone in {summary['seconds']:.0f}s. Everything is in {out}/:")
    for key in ("model_dir", "model_card", "metrics_log", "image", "overlay", "prediction_json"):
        print(f"  {key:16s} {summary[key]}")
    print(f"\nNext: hf-unified-seg predict --model {model_dir} your_image.png --output_dir predictions")
    return summary
