"""Evaluation metrics as ``evaluate`` modules shipped inside the package (no download, work offline).

``load(name, **kwargs)`` returns a ready ``evaluate.EvaluationModule``; each module file can also be loaded with
``evaluate.load(path)`` (see ``metric_path``). Scores are percentages (0-100), like the papers report them.

Available names: panoptic_quality, mean_iou, mask_ap, referring, interactive, retrieval,
classification_consistency, segmentation_consistency.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import evaluate

from hf_unified_seg.metrics.adapters import (
    instances_from_post_processing,
    instances_from_record,
    panoptic_from_post_processing,
    panoptic_from_record,
)

# name -> class name inside hf_unified_seg/metrics/<name>.py
METRICS: dict[str, str] = {
    "panoptic_quality": "PanopticQuality",
    "mean_iou": "MeanIou",
    "mask_ap": "MaskAp",
    "referring": "Referring",
    "interactive": "Interactive",
    "retrieval": "Retrieval",
    "classification_consistency": "ClassificationConsistency",
    "segmentation_consistency": "SegmentationConsistency",
}


def list_metrics() -> list[str]:
    """Names accepted by ``load``."""
    return list(METRICS)


def metric_path(name: str) -> str:
    """Path of the module file of metric ``name``, for ``evaluate.load(metric_path(name))``."""
    _check_name(name)
    return str(Path(__file__).with_name(f"{name}.py"))


def _check_name(name: str) -> None:
    if name not in METRICS:
        raise ValueError(f"Unknown metric {name!r}; available metrics: {', '.join(METRICS)}.")


def load(name: str, keep_in_memory: bool = True, **kwargs: Any) -> evaluate.EvaluationModule:
    """Instantiate metric ``name`` offline.

    Args:
        name: one of ``list_metrics()``.
        keep_in_memory: keep the stored predictions in memory (default) instead of ``evaluate``'s on-disk cache, which
            also avoids cache-file clashes between concurrent runs. Pass False for very large evaluations.
        **kwargs: the metric's own settings (e.g. ``categories`` for panoptic_quality, ``num_labels`` for mean_iou)
            and ``evaluate.EvaluationModule`` arguments (``experiment_id``, ``cache_dir``, ...).
    """
    _check_name(name)
    module = importlib.import_module(f"{__name__}.{name}")
    return getattr(module, METRICS[name])(keep_in_memory=keep_in_memory, **kwargs)


__all__ = [
    "METRICS",
    "instances_from_post_processing",
    "instances_from_record",
    "list_metrics",
    "load",
    "metric_path",
    "panoptic_from_post_processing",
    "panoptic_from_record",
]
