"""Top-1 accuracy and shift consistency of a classifier as an ``evaluate`` metric.

Load it with ``hf_unified_seg.metrics.load("classification_consistency")`` or ``evaluate.load(<this file>)``.
"""

from __future__ import annotations

from typing import Any

import datasets
import evaluate
import numpy as np

from hf_unified_seg.metrics._base import PreparedInputsMixin
from hf_unified_seg.metrics._inputs import to_numpy

_CITATION = """\
@inproceedings{zhang2019making,
  title={Making Convolutional Networks Shift-Invariant Again},
  author={Zhang, Richard},
  booktitle={ICML},
  year={2019}
}
"""

_DESCRIPTION = """\
Classification shift consistency (Zhang 2019; anti-aliasing thesis Eq. 2.7): Consist = E 1[F(X_{h1,w1}) = F(X_{h2,w2})],
the share of images whose top-1 class is the same on two shifted views of the image, together with top-1 accuracy of
the first view. Protocol (spec §4.2): resize the short side to 256, centre-crop 256x256, draw one offset pair per
batch with each coordinate uniform in {0, ..., 31}, classify the two 224x224 crops (see
`hf_unified_seg.metrics.shift_sampling.shifted_crop_pair`), run 5 passes over the validation set with seed 7 and
report the mean. The paper's accuracy comes from the standard centre-crop evaluation; pass centre-crop predictions
as `predictions` to measure it that way. All scores are percentages (0-100).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: per image, the top-1 class (int) or the logits (num_labels,) on the first view.
    shifted_predictions: per image, the top-1 class or logits on the second view.
    references: per image, the reference class index.
Returns:
    accuracy (top-1 of `predictions`), shifted_accuracy (top-1 of `shifted_predictions`), consistency (percent),
    num_samples.
Example:
    >>> cc = hf_unified_seg.metrics.load("classification_consistency")
    >>> cc.compute(predictions=logits_a, shifted_predictions=logits_b, references=labels)["consistency"]
"""


def _top1(value: Any, name: str) -> int:
    array = to_numpy(value, name)
    if array.ndim == 0:
        if not np.issubdtype(array.dtype, np.integer) and not float(array).is_integer():
            raise TypeError(f"`{name}` must be a class index or a logits vector, got {array!r}.")
        return int(array)
    if array.ndim == 1:
        if array.size == 0:
            raise ValueError(f"`{name}` is an empty logits vector.")
        return int(np.argmax(array))
    raise ValueError(f"`{name}` must be a class index or a 1-D logits vector, got shape {tuple(array.shape)}.")


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class ClassificationConsistency(PreparedInputsMixin, evaluate.Metric):
    """Top-1 accuracy and two-view shift consistency."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Value("int64"),
                    "shifted_predictions": datasets.Value("int64"),
                    "references": datasets.Value("int64"),
                }
            ),
            reference_urls=["https://github.com/adobe/antialiased-cnns"],
        )

    def _prepare_batch(self, batch: dict[str, list]) -> dict[str, list]:
        out: dict[str, list] = {k: [] for k in batch}
        for i in range(len(batch["predictions"])):
            pred = _top1(batch["predictions"][i], f"predictions[{i}]")
            shifted = _top1(batch["shifted_predictions"][i], f"shifted_predictions[{i}]")
            ref = _top1(batch["references"][i], f"references[{i}]")
            if to_numpy(batch["references"][i], "references").ndim != 0:
                raise ValueError(f"references[{i}] must be one class index.")
            for name, value in (("predictions", pred), ("shifted_predictions", shifted), ("references", ref)):
                if value < 0:
                    raise ValueError(f"{name}[{i}] is a negative class index ({value}).")
                out[name].append(value)
        return out

    def _compute(self, predictions: list, shifted_predictions: list, references: list) -> dict[str, Any]:
        pred, shifted, ref = (np.asarray(x, dtype=np.int64) for x in (predictions, shifted_predictions, references))
        return {
            "accuracy": float(100.0 * np.mean(pred == ref)),
            "shifted_accuracy": float(100.0 * np.mean(shifted == ref)),
            "consistency": float(100.0 * np.mean(pred == shifted)),
            "num_samples": int(pred.size),
        }
