"""Referring segmentation metrics (cIoU, mIoU, precision@X) as an ``evaluate`` metric.

Load it with ``hf_unified_seg.metrics.load("referring")`` or ``evaluate.load(<this file>)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import datasets
import evaluate
import numpy as np

from hf_unified_seg.metrics._base import PreparedInputsMixin
from hf_unified_seg.metrics._inputs import check_same_shape, to_binary_mask

_CITATION = """\
@inproceedings{yu2016modeling,
  title={Modeling Context in Referring Expressions},
  author={Yu, Licheng and Poirson, Patrick and Yang, Shan and Berg, Alexander C. and Berg, Tamara L.},
  booktitle={ECCV},
  year={2016}
}
"""

_DESCRIPTION = """\
Referring-expression segmentation scores over a dataset of (expression, mask) samples, as reported by SEEM, X-Decoder
and PSALM: cIoU = (sum of intersections) / (sum of unions) over all samples; mIoU = mean of the per-sample IoU (a sample
whose reference and prediction are both empty scores 1, the gIoU convention of PSALM's no-target samples);
precision@X = share of samples with IoU >= X for X in 0.5, 0.6, 0.7, 0.8, 0.9. All scores are percentages (0-100).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: per sample, a binary (H, W) mask (bool or 0/1; threshold probabilities first, e.g. sigmoid > 0.5).
    references: per sample, the binary (H, W) reference mask.
    thresholds: (init or compute) IoU thresholds for precision@X, default (0.5, 0.6, 0.7, 0.8, 0.9).
Returns:
    ciou, miou, and "precision@0.5" ... "precision@0.9" (percent), plus num_samples.
Example:
    >>> ref = hf_unified_seg.metrics.load("referring")
    >>> ref.compute(predictions=[pred_mask], references=[gt_mask])["ciou"]
"""

DEFAULT_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Referring(PreparedInputsMixin, evaluate.Metric):
    """cIoU / mIoU / precision@X for referring segmentation."""

    def __init__(self, thresholds: Sequence[float] = DEFAULT_THRESHOLDS, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.thresholds = tuple(thresholds)

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            # Only the per-sample areas are needed, so the store keeps them instead of the masks.
            features=datasets.Features(
                {
                    "predictions": {
                        "intersection": datasets.Value("int64"),
                        "prediction_area": datasets.Value("int64"),
                    },
                    "references": {"reference_area": datasets.Value("int64")},
                }
            ),
        )

    def _prepare_batch(self, batch: dict[str, list]) -> dict[str, list]:
        out: dict[str, list] = {"predictions": [], "references": []}
        for i, (pred, ref) in enumerate(zip(batch["predictions"], batch["references"])):
            pred = to_binary_mask(pred, f"predictions[{i}]")
            ref = to_binary_mask(ref, f"references[{i}]")
            check_same_shape(pred, ref, "predictions", "references", i)
            out["predictions"].append(
                {"intersection": int(np.logical_and(pred, ref).sum()), "prediction_area": int(pred.sum())}
            )
            out["references"].append({"reference_area": int(ref.sum())})
        return out

    def _compute(
        self, predictions: list, references: list, thresholds: Sequence[float] | None = None
    ) -> dict[str, Any]:
        thresholds = self.thresholds if thresholds is None else tuple(thresholds)
        if any(not 0.0 <= t <= 1.0 for t in thresholds):
            raise ValueError(f"`thresholds` must lie in [0, 1], got {thresholds}.")
        intersection = np.array([p["intersection"] for p in predictions], dtype=np.float64)
        pred_area = np.array([p["prediction_area"] for p in predictions], dtype=np.float64)
        ref_area = np.array([r["reference_area"] for r in references], dtype=np.float64)
        union = pred_area + ref_area - intersection
        iou = np.where(union > 0, intersection / np.maximum(union, 1), 1.0)
        result: dict[str, Any] = {
            "ciou": float(100.0 * intersection.sum() / union.sum()) if union.sum() > 0 else 100.0,
            "miou": float(100.0 * iou.mean()),
        }
        for t in thresholds:
            # a tiny tolerance so that an IoU of exactly t (e.g. 0.7 from 7/10) counts despite float rounding
            result[f"precision@{t:g}"] = float(100.0 * np.mean(iou >= t - 1e-12))
        result["num_samples"] = len(iou)
        return result
