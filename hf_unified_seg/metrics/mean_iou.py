"""Semantic segmentation mIoU (dataset-accumulated) as an ``evaluate`` metric.

Load it with ``hf_unified_seg.metrics.load("mean_iou", num_labels=K)`` or ``evaluate.load(<this file>)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import datasets
import evaluate
import numpy as np

from hf_unified_seg.metrics._base import PreparedInputsMixin
from hf_unified_seg.metrics._inputs import PACKED_MAP_FEATURES, check_same_shape, pack_map, to_label_map, unpack_map

_CITATION = """\
@article{everingham2010pascal,
  title={The Pascal Visual Object Classes (VOC) Challenge},
  author={Everingham, Mark and Van Gool, Luc and Williams, Christopher K. I. and Winn, John and Zisserman, Andrew},
  journal={IJCV},
  year={2010}
}
"""

_DESCRIPTION = """\
Mean intersection over union for semantic segmentation. Intersections and unions are summed over all images of the
dataset before dividing (as mmsegmentation and evaluate's mean_iou do), pixels whose reference is `ignore_index` are
left out, and a class that appears neither in the references nor in the predictions is left out of the means.
Also reports per-class IoU and accuracy (recall), overall pixel accuracy, mean class accuracy and frequency-weighted
IoU. All scores are percentages (0-100), like the papers.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: per image, an (H, W) map of predicted class indices in [0, num_labels).
    references: per image, an (H, W) map of reference class indices in [0, num_labels) or `ignore_index`.
    num_labels: (init or compute) number of classes K.
    ignore_index: (init or compute) reference value to ignore, default 255.
Returns:
    mean_iou, mean_accuracy, overall_accuracy, frequency_weighted_iou (percent), per_category_iou and
    per_category_accuracy (arrays of K percentages, NaN for a class absent from references and predictions),
    confusion_matrix (K x K counts, rows = reference, columns = prediction).
Example:
    >>> miou = hf_unified_seg.metrics.load("mean_iou", num_labels=3)
    >>> miou.compute(predictions=[pred_map], references=[label_map])["mean_iou"]
"""

_UNSET = object()


def confusion_matrix(
    prediction: np.ndarray, reference: np.ndarray, num_labels: int, ignore_index: int | None
) -> np.ndarray:
    """(K, K) pixel counts, rows = reference class, columns = predicted class; ignored pixels dropped."""
    keep = reference != ignore_index if ignore_index is not None else np.ones(reference.shape, bool)
    flat = reference[keep].astype(np.int64) * num_labels + prediction[keep].astype(np.int64)
    return np.bincount(flat, minlength=num_labels * num_labels).reshape(num_labels, num_labels)


def scores_from_confusion(confusion: np.ndarray) -> dict[str, Any]:
    """mIoU and accuracies from an accumulated confusion matrix (percent)."""
    confusion = confusion.astype(np.float64)
    intersection = np.diag(confusion)
    reference_area = confusion.sum(axis=1)
    prediction_area = confusion.sum(axis=0)
    union = reference_area + prediction_area - intersection
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, intersection / union, np.nan)
        accuracy = np.where(reference_area > 0, intersection / reference_area, np.nan)
    total = confusion.sum()
    frequency = reference_area / total if total > 0 else np.zeros_like(reference_area)
    valid = ~np.isnan(iou)
    return {
        "mean_iou": float(100.0 * np.mean(iou[valid])) if valid.any() else float("nan"),
        "mean_accuracy": float(100.0 * np.nanmean(accuracy)) if (~np.isnan(accuracy)).any() else float("nan"),
        "overall_accuracy": float(100.0 * intersection.sum() / total) if total > 0 else float("nan"),
        "frequency_weighted_iou": float(100.0 * np.sum(frequency[valid] * iou[valid])),
        "per_category_iou": 100.0 * iou,
        "per_category_accuracy": 100.0 * accuracy,
        "confusion_matrix": confusion.astype(np.int64),
    }


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class MeanIou(PreparedInputsMixin, evaluate.Metric):
    """Dataset-level mIoU. ``num_labels`` and ``ignore_index`` may be given at load time or to ``compute``."""

    def __init__(self, num_labels: int | None = None, ignore_index: int | None = 255, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.num_labels = num_labels
        self.ignore_index = ignore_index

    def _info(self) -> evaluate.MetricInfo:
        label_map = {key: datasets.Value(kind) for key, kind in PACKED_MAP_FEATURES.items()}  # stored as raw bytes
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": label_map, "references": label_map}),
            reference_urls=["https://github.com/open-mmlab/mmsegmentation"],
        )

    def _prepare_batch(self, batch: dict[str, list]) -> dict[str, list]:
        out: dict[str, list] = {"predictions": [], "references": []}
        for i, (pred, ref) in enumerate(zip(batch["predictions"], batch["references"])):
            pred = to_label_map(pred, f"predictions[{i}]")
            ref = to_label_map(ref, f"references[{i}]")
            check_same_shape(pred, ref, "predictions", "references", i)
            out["predictions"].append(pack_map(pred))
            out["references"].append(pack_map(ref))
        return out

    def _compute(
        self,
        predictions: Sequence,
        references: Sequence,
        num_labels: int | None = None,
        ignore_index: Any = _UNSET,
    ) -> dict[str, Any]:
        num_labels = self.num_labels if num_labels is None else num_labels
        # `None` is a meaningful value (nothing ignored), hence a separate "not given" marker.
        ignore_index = self.ignore_index if ignore_index is _UNSET else ignore_index
        if not isinstance(num_labels, (int, np.integer)) or num_labels < 1:
            raise ValueError(f"`num_labels` must be a positive int (pass it to load or compute), got {num_labels!r}.")
        total = np.zeros((num_labels, num_labels), dtype=np.int64)
        for i, (pred, ref) in enumerate(zip(predictions, references)):
            pred, ref = unpack_map(pred), unpack_map(ref)
            valid_ref = ref != ignore_index if ignore_index is not None else np.ones(ref.shape, bool)
            bad_ref = valid_ref & ((ref < 0) | (ref >= num_labels))
            if bad_ref.any():
                raise ValueError(
                    f"references[{i}] holds label {int(ref[bad_ref][0])} outside [0, num_labels={num_labels}) "
                    f"that is not ignore_index={ignore_index}."
                )
            bad_pred = valid_ref & ((pred < 0) | (pred >= num_labels))
            if bad_pred.any():
                raise ValueError(
                    f"predictions[{i}] holds label {int(pred[bad_pred][0])} outside [0, num_labels={num_labels})."
                )
            total += confusion_matrix(pred, ref, num_labels, ignore_index)
        return scores_from_confusion(total)
