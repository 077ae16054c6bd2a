"""Loading trained models and turning predictions into files: masks as COCO RLE JSON and overlay PNGs."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .tasks import TrainingTask, get_training_task

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def load_model(path: str | os.PathLike, trust_remote_code: bool = False) -> tuple[Any, Any, TrainingTask]:
    """Load a saved model or LoRA adapter directory (adapters are merged into their base) with its processor.

    Raises:
        ValueError: the path holds no model.
    """
    import transformers
    from transformers import AutoConfig, AutoImageProcessor

    from .trainer import _task_from_config

    path = str(path)
    local = Path(path)
    if not local.exists() and (
        local.is_absolute() or path.startswith(".") or path.count("/") > 1 or os.sep != "/" and os.sep in path
    ):
        raise ValueError(
            f"model {path!r} does not exist (expected a saved model directory or a Hub id namespace/name)"
        )
    if local.exists() and not local.is_dir():
        raise ValueError(f"model {path!r} is a file; expected a saved model directory or a Hub id")
    if local.is_dir() and not (local / "config.json").is_file() and not (local / "adapter_config.json").is_file():
        raise ValueError(f"model {path!r} holds neither config.json nor adapter_config.json")
    if local.is_dir() and (local / "adapter_config.json").is_file() and not (local / "config.json").is_file():
        from peft import PeftConfig, PeftModel

        base_ref = PeftConfig.from_pretrained(path).base_model_name_or_path
        base, processor, task = load_model(base_ref, trust_remote_code)
        model = PeftModel.from_pretrained(base, path).merge_and_unload()
        if (local / "preprocessor_config.json").is_file():
            processor = AutoImageProcessor.from_pretrained(path, trust_remote_code=trust_remote_code)
        return model.eval(), processor, task
    config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    task = _task_from_config(config)
    if task is None:
        raise ValueError(f"cannot tell the task of {path!r} (architectures={getattr(config, 'architectures', None)})")
    model = getattr(transformers, task.auto_class).from_pretrained(path, trust_remote_code=trust_remote_code)
    processor = AutoImageProcessor.from_pretrained(path, trust_remote_code=trust_remote_code)
    return model.eval(), processor, task


def collect_images(inputs: list[str | os.PathLike]) -> list[Path]:
    """Expand folders and check that every file is a readable image, before anything is written.

    Raises:
        ValueError: a path is missing, a folder has no images, or a file is not an image PIL can read.
    """
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise ValueError(f"folder {str(p)!r} contains no images ({', '.join(IMAGE_SUFFIXES)})")
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            raise ValueError(f"input {str(p)!r} does not exist")
    bad = []
    for f in files:
        try:
            with Image.open(f) as im:
                im.verify()
        except Exception as err:  # PIL raises several exception types for unreadable files
            bad.append(f"{f} ({type(err).__name__})")
    if bad:
        raise ValueError(f"not an image file: {', '.join(bad)}")
    stems = [f.stem for f in files]
    if len(set(stems)) != len(stems):
        raise ValueError("two inputs share a file name stem; their outputs would overwrite each other")
    return files


def mask_to_rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO run-length encoding (pycocotools) of a boolean (H, W) mask, JSON-ready."""
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def rle_to_mask(rle: dict[str, Any]) -> np.ndarray:
    from pycocotools import mask as mask_utils

    return mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode("ascii")}).astype(bool)


def label_color(label: str) -> tuple[int, int, int]:
    """A stable, saturated colour per label name."""
    h = int(hashlib.md5(label.encode()).hexdigest()[:6], 16)
    hue = (h % 360) / 360.0
    import colorsys

    r, g, b = colorsys.hsv_to_rgb(hue, 0.75 + (h >> 9) % 25 / 100, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


def predict_image(image: Image.Image, model: Any, processor: Any, task: TrainingTask, pipe: Any = None) -> dict:
    """Run one image through the model's pipeline; returns the JSON-ready prediction (masks as RLE)."""
    from transformers import pipeline

    image = image.convert("RGB")
    if pipe is None:
        pipe = pipeline(task.pipeline_tag, model=model, image_processor=processor)
    out: dict[str, Any] = {"width": image.width, "height": image.height, "task": task.name}
    if task.pipeline_tag == "image-classification":
        results = pipe(image, top_k=min(5, len(model.config.id2label)))
        out["labels"] = [{"label": r["label"], "score": float(r["score"])} for r in results]
        return out
    segments = []
    for i, r in enumerate(pipe(image)):
        mask = np.asarray(r["mask"]) > 0
        if not mask.any():
            continue
        ys, xs = np.nonzero(mask)
        segments.append(
            {
                "id": i + 1,
                "label": r["label"],
                "score": None if r.get("score") is None else float(r["score"]),
                "area": int(mask.sum()),
                "bbox": [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)],
                "segmentation": mask_to_rle(mask),
            }
        )
    out["segments"] = segments
    return out


def render_overlay(
    image: Image.Image, prediction: dict[str, Any], min_side: int = 256, alpha: float = 0.55
) -> Image.Image:
    """The image with each predicted mask tinted in its label colour, upscaled for viewing, and a legend panel."""
    image = image.convert("RGB")
    scale = max(1, -(-min_side // min(image.size)))
    size = (image.width * scale, image.height * scale)
    base = np.asarray(image.resize(size, Image.BILINEAR), dtype=np.float32)
    legend: list[tuple[str, tuple[int, int, int]]] = []
    if "segments" in prediction:
        tint = base.copy()
        for seg in prediction["segments"]:
            mask = rle_to_mask(seg["segmentation"])
            mask = np.asarray(Image.fromarray(mask).resize(size, Image.NEAREST))
            color = label_color(seg["label"])
            tint[mask] = (1 - alpha) * base[mask] + alpha * np.array(color, dtype=np.float32)
            score = f" {seg['score']:.2f}" if seg.get("score") is not None else ""
            legend.append((f"{seg['label']}{score} ({100 * seg['area'] / (image.width * image.height):.0f}%)", color))
        base = tint
        # Outline mask borders so adjacent segments stay distinguishable.
        for seg in prediction["segments"]:
            mask = np.asarray(Image.fromarray(rle_to_mask(seg["segmentation"])).resize(size, Image.NEAREST))
            edge = mask & ~(np.roll(mask, 1, 0) & np.roll(mask, -1, 0) & np.roll(mask, 1, 1) & np.roll(mask, -1, 1))
            base[edge] = 255.0
    else:
        legend = [(f"{r['label']} {r['score']:.2f}", label_color(r["label"])) for r in prediction.get("labels", [])]
    canvas_img = Image.fromarray(base.clip(0, 255).astype(np.uint8))
    font = ImageFont.load_default()
    row = 18
    gap = 8
    panel_w = 12 + 14 + 8 + max([int(font.getlength(text)) for text, _ in legend] + [80]) + 12
    panel_h = max(size[1], 12 + row * (len(legend) + 1))
    # input | overlay | legend, so the prediction can be checked against the picture
    out = Image.new("RGB", (2 * size[0] + gap + panel_w, panel_h), (255, 255, 255))
    out.paste(image.resize(size, Image.BILINEAR), (0, 0))
    out.paste(canvas_img, (size[0] + gap, 0))
    draw = ImageDraw.Draw(out)
    x0 = 2 * size[0] + gap + 12
    draw.text((x0, 6), "legend", fill=(0, 0, 0), font=font)
    for i, (text, color) in enumerate(legend):
        y = 6 + row * (i + 1)
        draw.rectangle([x0, y, x0 + 14, y + 12], fill=color, outline=(0, 0, 0))
        draw.text((x0 + 22, y), text, fill=(0, 0, 0), font=font)
    return out


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def predict_files(
    model_path: str | os.PathLike,
    inputs: list[str | os.PathLike],
    output_dir: str | os.PathLike,
    trust_remote_code: bool = False,
) -> list[dict[str, Any]]:
    """Predict every image of `inputs` (files or folders); writes `<stem>.json` and `<stem>_overlay.png` per image.

    Every input is checked before the first output is written, so a bad input leaves nothing behind.
    """
    import io

    from transformers import pipeline

    files = collect_images(list(inputs))
    model, processor, task = load_model(model_path, trust_remote_code)
    pipe = pipeline(task.pipeline_tag, model=model, image_processor=processor)
    out_dir = Path(output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for f in files:
        with Image.open(f) as im:
            image = im.convert("RGB")
        pred = predict_image(image, model, processor, task, pipe)
        pred["image"] = str(f)
        pred["model"] = str(model_path)
        overlay_path = out_dir / f"{f.stem}_overlay.png"
        buf = io.BytesIO()
        render_overlay(image, pred).save(buf, format="PNG")
        _write_atomic(overlay_path, buf.getvalue())
        pred["overlay"] = str(overlay_path)
        _write_atomic(out_dir / f"{f.stem}.json", json.dumps(pred, indent=2).encode())
        results.append(pred)
    return results


def load_eval_records(dataset: str, num_images: int, image_size: int, seed: int) -> tuple[Any, list[dict[str, Any]]]:
    """Evaluation records: a fresh ShapesWorld val split, or the val split (else all) of a dataset folder."""
    from .. import data as hfdata

    if dataset == "shapesworld":
        ds = hfdata.load_shapesworld(split="val", num_images=num_images, image_size=image_size, seed=seed)
    else:
        hfdata.detect_format(dataset)
        try:
            ds = hfdata.load_folder(dataset, split="val")
        except ValueError:
            ds = hfdata.load_folder(dataset, split=None)
        if num_images:
            ds = ds.select(range(min(num_images, len(ds))))
    return ds, hfdata.get_categories(ds)


def evaluate_model(
    model_path: str | os.PathLike,
    dataset: str = "shapesworld",
    num_images: int = 64,
    image_size: int = 64,
    seed: int = 1,
    batch_size: int = 8,
    task: str | None = None,
    trust_remote_code: bool = False,
) -> dict[str, float]:
    """Evaluate a saved model with its task's metrics."""
    import torch

    model, processor, model_task = load_model(model_path, trust_remote_code)
    the_task = get_training_task(task) if task else model_task
    records, categories = load_eval_records(dataset, num_images, image_size, seed)
    with torch.no_grad():
        return the_task.evaluate(model, records, processor, batch_size=batch_size, device="cpu", categories=categories)
