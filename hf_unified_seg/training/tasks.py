"""Training tasks: the plug-in point between dataset records, a model family and the trainer.

A `TrainingTask` says how to turn dataset records (the ShapesWorld / loader schema: `image`, `semantic`,
`panoptic` + `segments_info`, `label`, ...) into model inputs with the model's image processor, and how to
evaluate a model with the `hf_unified_seg.metrics` modules. The trainer, the CLI and the Hub code never
look at a model family: they ask `task_for_model(model)`, which reads the model class's `training_task`
attribute and otherwise finds the transformers Auto class the model is registered in. A model package
with its own batch format (X-Decoder's multi-task batches) calls `register_training_task(...)` on import.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import torch

CollateFn = Callable[[list[dict[str, Any]], Any, Any], dict[str, Any]]
"""`collate(records, image_processor, config) -> model kwargs` (tensors, labels included)."""

EvaluateFn = Callable[..., dict[str, float]]
"""`evaluate(model, records, image_processor, *, batch_size, device, categories) -> {metric: value}`."""


@dataclass(frozen=True)
class TrainingTask:
    """How one kind of model is fed and scored.

    Args:
        name: registry key, e.g. `"semantic-segmentation"`.
        auto_class: name of the transformers Auto class that holds models of this task (used to pick the task
            from a model, to build a model from a config and to write `auto_map` for remote code).
        pipeline_tag: Hub pipeline tag for the model card.
        collate: `collate(records, image_processor, config) -> dict` of model inputs including labels.
        evaluate: `evaluate(model, records, image_processor, *, batch_size, device, categories) -> dict`.
        main_metric: key of `evaluate`'s result that summarises quality (printed, used in the card).
        metric_names: `{result key: (metric type, pretty name)}` for the card's `model-index`.
    """

    name: str
    auto_class: str
    pipeline_tag: str
    collate: CollateFn
    evaluate: EvaluateFn
    main_metric: str
    metric_names: dict[str, tuple[str, str]] = field(default_factory=dict)


_TASKS: dict[str, TrainingTask] = {}


def register_training_task(task: TrainingTask, exist_ok: bool = False) -> TrainingTask:
    """Add `task` to the registry (model packages call this on import)."""
    if not isinstance(task, TrainingTask):
        raise TypeError(f"task must be a TrainingTask, got {type(task).__name__}")
    if task.name in _TASKS and not exist_ok and _TASKS[task.name] is not task:
        raise ValueError(f"a training task named {task.name!r} is already registered (pass exist_ok=True to replace)")
    _TASKS[task.name] = task
    return task


def list_training_tasks() -> list[str]:
    return sorted(_TASKS)


def get_training_task(name: str) -> TrainingTask:
    if name not in _TASKS:
        raise ValueError(f"unknown training task {name!r}; registered tasks: {', '.join(list_training_tasks())}")
    return _TASKS[name]


def unwrap_model(model: Any) -> Any:
    """Strip DDP/compile wrappers and PEFT's `PeftModel` to reach the transformers model."""
    while True:
        if hasattr(model, "module") and isinstance(model, torch.nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif hasattr(model, "get_base_model") and callable(model.get_base_model):
            model = model.get_base_model()
        else:
            return model


def task_for_model(model_or_class: Any) -> TrainingTask:
    """The task of a model (instance or class): its `training_task` attribute, else its Auto-class registration."""
    cls = model_or_class if isinstance(model_or_class, type) else type(unwrap_model(model_or_class))
    declared = getattr(cls, "training_task", None)
    if isinstance(declared, str):
        return get_training_task(declared)
    config_class = getattr(cls, "config_class", None)
    import transformers

    for task in _TASKS.values():
        auto = getattr(transformers, task.auto_class, None)
        if auto is None or config_class is None:
            continue
        try:
            registered = auto._model_mapping[config_class]
        except (KeyError, AttributeError):
            continue
        if registered is cls or (isinstance(registered, type) and issubclass(cls, registered)):
            return task
    raise ValueError(
        f"{cls.__name__} declares no `training_task` and is not registered in the Auto class of any training task "
        f"({', '.join(t.auto_class for t in _TASKS.values())})"
    )


# ----------------------------------------------------------------------------------------------------------------
# record helpers


def panoptic_ids(record: dict[str, Any]) -> np.ndarray:
    """Decode the COCO panoptic PNG of a record into an int64 (H, W) segment-id map (0 = void)."""
    rgb = np.asarray(record["panoptic"].convert("RGB"), dtype=np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]


def panoptic_segments(record: dict[str, Any]) -> tuple[np.ndarray, list[tuple[int, int, bool]]]:
    """(id map, [(segment id, category index, isthing)]) of a record, crowd segments left out."""
    segments = [
        (int(s["id"]), int(s["category_id"]), bool(s.get("isthing", True)))
        for s in record["segments_info"]
        if not s.get("iscrowd", 0)
    ]
    return panoptic_ids(record), segments


def _images(records: Sequence[dict[str, Any]]) -> list[Any]:
    images = []
    for i, r in enumerate(records):
        img = r.get("image")
        if img is None or not hasattr(img, "convert"):
            raise TypeError(f"record {i} has no PIL 'image' (got {type(img).__name__})")
        images.append(img.convert("RGB"))
    return images


def _accepts(fn: Callable[..., Any], name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def _iter_batches(records: Any, batch_size: int) -> Iterable[list[dict[str, Any]]]:
    n = len(records)
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        yield [records[i] for i in range(start, stop)]


def _to_device(batch: dict[str, Any], device: torch.device | str) -> dict[str, Any]:
    out = {}
    for k, v in batch.items():
        if isinstance(v, torch.Tensor):
            out[k] = v.to(device)
        elif isinstance(v, list) and v and isinstance(v[0], torch.Tensor):
            out[k] = [t.to(device) for t in v]
        else:
            out[k] = v
    return out


def _inputs_only(batch: dict[str, Any], label_keys: Sequence[str]) -> dict[str, Any]:
    return {k: v for k, v in batch.items() if k not in label_keys}


# ----------------------------------------------------------------------------------------------------------------
# image classification


def collate_image_classification(records: list[dict[str, Any]], image_processor: Any, config: Any = None) -> dict:
    pixel_values = image_processor(images=_images(records), return_tensors="pt")["pixel_values"]
    labels = torch.tensor([int(r["label"]) for r in records], dtype=torch.long)
    return {"pixel_values": pixel_values, "labels": labels}


@torch.no_grad()
def evaluate_image_classification(
    model: Any, records: Any, image_processor: Any, *, batch_size: int = 16, device: Any = "cpu", categories=None
) -> dict[str, float]:
    """Top-1 (and top-5 when there are more than 5 classes) accuracy in percent."""
    top1 = top5 = total = 0
    for chunk in _iter_batches(records, batch_size):
        batch = _to_device(collate_image_classification(chunk, image_processor), device)
        logits = model(pixel_values=batch["pixel_values"]).logits.float()
        labels = batch["labels"]
        top1 += int((logits.argmax(-1) == labels).sum())
        k = min(5, logits.shape[-1])
        top5 += int((logits.topk(k, dim=-1).indices == labels[:, None]).any(-1).sum())
        total += len(chunk)
    result = {"accuracy": 100.0 * top1 / max(total, 1)}
    if logits.shape[-1] > 5:
        result["top5_accuracy"] = 100.0 * top5 / max(total, 1)
    return result


# ----------------------------------------------------------------------------------------------------------------
# semantic segmentation


def collate_semantic_segmentation(records: list[dict[str, Any]], image_processor: Any, config: Any = None) -> dict:
    maps = [r["semantic"] for r in records]
    out = image_processor(images=_images(records), segmentation_maps=maps, return_tensors="pt")
    labels = out["labels"].long()
    if labels.ndim == 4:  # some processors keep a channel axis for maps
        labels = labels[:, 0]
    return {"pixel_values": out["pixel_values"], "labels": labels}


def _semantic_predictions(outputs: Any, image_processor: Any, sizes: list[tuple[int, int]]) -> list[np.ndarray]:
    maps = image_processor.post_process_semantic_segmentation(outputs, target_sizes=sizes)
    return [m.cpu().numpy().astype(np.int64) for m in maps]


@torch.no_grad()
def evaluate_semantic_segmentation(
    model: Any, records: Any, image_processor: Any, *, batch_size: int = 8, device: Any = "cpu", categories=None
) -> dict[str, float]:
    from ..metrics import load as load_metric

    num_labels = int(unwrap_model(model).config.num_labels)
    preds, refs = [], []
    for chunk in _iter_batches(records, batch_size):
        pixel_values = image_processor(images=_images(chunk), return_tensors="pt")["pixel_values"].to(device)
        outputs = model(pixel_values=pixel_values)
        sizes = [(r["image"].height, r["image"].width) for r in chunk]
        preds.extend(_semantic_predictions(outputs, image_processor, sizes))
        refs.extend(np.asarray(r["semantic"], dtype=np.int64) for r in chunk)
    result = load_metric("mean_iou").compute(
        predictions=preds, references=refs, num_labels=num_labels, ignore_index=255
    )
    return {
        "mean_iou": float(result["mean_iou"]),
        "mean_accuracy": float(result["mean_accuracy"]),
        "overall_accuracy": float(result["overall_accuracy"]),
    }


# ----------------------------------------------------------------------------------------------------------------
# universal (mask-classification) segmentation, Mask2Former-style inputs and outputs


def collate_universal_segmentation(records: list[dict[str, Any]], image_processor: Any, config: Any = None) -> dict:
    """Per image: one binary mask and one class index per panoptic segment (things and stuff)."""
    images = _images(records)
    decoded = [panoptic_segments(r) for r in records]
    if _accepts(image_processor.__call__, "instance_id_to_semantic_id"):
        # Mask2Former-style processors resize the maps with the images, keeping geometry consistent.
        maps = [ids.astype(np.int32) for ids, _ in decoded]
        mappings = [{sid: cat for sid, cat, _ in segs} for _, segs in decoded]
        out = image_processor(
            images=images, segmentation_maps=maps, instance_id_to_semantic_id=mappings, return_tensors="pt"
        )
        if "mask_labels" in out:
            return {
                "pixel_values": out["pixel_values"],
                "pixel_mask": out.get("pixel_mask"),
                "mask_labels": [m.float() for m in out["mask_labels"]],
                "class_labels": [c.long() for c in out["class_labels"]],
            }
    # Fallback: the processor only resizes, so the masks are resized (nearest) to the pixel grid.
    pixel_values = image_processor(images=images, return_tensors="pt")["pixel_values"]
    h, w = pixel_values.shape[-2:]
    mask_labels, class_labels = [], []
    for ids, segs in decoded:
        ids_t = torch.from_numpy(ids)[None, None].float()
        ids_t = torch.nn.functional.interpolate(ids_t, size=(h, w), mode="nearest")[0, 0].long()
        mask_labels.append(torch.stack([ids_t == sid for sid, _, _ in segs]).float() if segs else torch.zeros(0, h, w))
        class_labels.append(torch.tensor([cat for _, cat, _ in segs], dtype=torch.long))
    return {"pixel_values": pixel_values, "mask_labels": mask_labels, "class_labels": class_labels}


@torch.no_grad()
def evaluate_universal_segmentation(
    model: Any, records: Any, image_processor: Any, *, batch_size: int = 8, device: Any = "cpu", categories=None
) -> dict[str, float]:
    """Panoptic quality (PQ/SQ/RQ) from Mask2Former-style panoptic post-processing, and mIoU from the semantic one."""
    from ..metrics import load as load_metric
    from ..metrics import panoptic_from_post_processing, panoptic_from_record

    config = unwrap_model(model).config
    num_labels = int(config.num_labels)
    if categories is None:
        categories = [{"id": i, "isthing": True} for i in range(num_labels)]
    stuff_ids = {int(c["id"]) for c in categories if not c.get("isthing", True)}
    pan_preds, pan_refs, sem_preds, sem_refs = [], [], [], []
    for chunk in _iter_batches(records, batch_size):
        pixel_values = image_processor(images=_images(chunk), return_tensors="pt")["pixel_values"].to(device)
        outputs = model(pixel_values=pixel_values)
        sizes = [(r["image"].height, r["image"].width) for r in chunk]
        panoptic = image_processor.post_process_panoptic_segmentation(
            outputs, target_sizes=sizes, label_ids_to_fuse=stuff_ids
        )
        for r, p in zip(chunk, panoptic):
            pan_preds.append(panoptic_from_post_processing(p))
            pan_refs.append(panoptic_from_record(r))
        sem_preds.extend(_semantic_predictions(outputs, image_processor, sizes))
        sem_refs.extend(np.asarray(r["semantic"], dtype=np.int64) for r in chunk)
    pq = load_metric("panoptic_quality", categories=categories).compute(
        predictions=[ids for ids, _ in pan_preds],
        references=[ids for ids, _ in pan_refs],
        prediction_segments_info=[info for _, info in pan_preds],
        reference_segments_info=[info for _, info in pan_refs],
    )
    miou = load_metric("mean_iou", num_labels=num_labels).compute(
        predictions=sem_preds, references=sem_refs, ignore_index=255
    )
    return {
        "panoptic_quality": float(pq["pq"]),
        "segmentation_quality": float(pq["sq"]),
        "recognition_quality": float(pq["rq"]),
        "mean_iou": float(miou["mean_iou"]),
    }


# ----------------------------------------------------------------------------------------------------------------
# built-in tasks

IMAGE_CLASSIFICATION = register_training_task(
    TrainingTask(
        name="image-classification",
        auto_class="AutoModelForImageClassification",
        pipeline_tag="image-classification",
        collate=collate_image_classification,
        evaluate=evaluate_image_classification,
        main_metric="accuracy",
        metric_names={
            "accuracy": ("accuracy", "Top-1 accuracy (%)"),
            "top5_accuracy": ("accuracy", "Top-5 accuracy (%)"),
        },
    )
)
SEMANTIC_SEGMENTATION = register_training_task(
    TrainingTask(
        name="semantic-segmentation",
        auto_class="AutoModelForSemanticSegmentation",
        pipeline_tag="image-segmentation",
        collate=collate_semantic_segmentation,
        evaluate=evaluate_semantic_segmentation,
        main_metric="mean_iou",
        metric_names={
            "mean_iou": ("mean_iou", "mIoU (%)"),
            "mean_accuracy": ("mean_accuracy", "Mean class accuracy (%)"),
            "overall_accuracy": ("accuracy", "Pixel accuracy (%)"),
        },
    )
)
UNIVERSAL_SEGMENTATION = register_training_task(
    TrainingTask(
        name="universal-segmentation",
        auto_class="AutoModelForUniversalSegmentation",
        pipeline_tag="image-segmentation",
        collate=collate_universal_segmentation,
        evaluate=evaluate_universal_segmentation,
        main_metric="panoptic_quality",
        metric_names={
            "panoptic_quality": ("panoptic_quality", "PQ (%)"),
            "segmentation_quality": ("segmentation_quality", "SQ (%)"),
            "recognition_quality": ("recognition_quality", "RQ (%)"),
            "mean_iou": ("mean_iou", "mIoU (%)"),
        },
    )
)


def make_collate_fn(task: TrainingTask, image_processor: Any, config: Any = None) -> Callable[[list[dict]], dict]:
    """A picklable one-argument collate function for `torch.utils.data.DataLoader`."""
    return partial(task.collate, image_processor=image_processor, config=config)
