"""mASSC (mean Average Semantic Segmentation Consistency) as an ``evaluate`` metric.

Load it with ``hf_unified_seg.metrics.load("segmentation_consistency")`` or ``evaluate.load(<this file>)``.
"""

from __future__ import annotations

from typing import Any

import datasets
import evaluate
import numpy as np

from hf_unified_seg.metrics._base import PreparedInputsMixin
from hf_unified_seg.metrics._inputs import to_label_map, to_vector
from hf_unified_seg.metrics.shift_sampling import overlap_views

_CITATION = """\
@inproceedings{zou2020delving,
  title={Delving Deeper into Anti-aliasing in ConvNets},
  author={Zou, Xueyan and Xiao, Fanyi and Yu, Zhiding and Lee, Yong Jae},
  booktitle={BMVC},
  year={2020}
}
"""

_DESCRIPTION = """\
mASSC (anti-aliasing thesis Eq. 2.8, spec §4.5): for two random crops of an image, Consist(X, Y) is the share of pixels
of the crops' overlap where the two predicted label maps agree; it is averaged over the crop pairs of each image, then
over images. Unspecified in the source, our defaults [P]: crops of 7/8 of each side, 2 pairs per image, every overlap
pixel counted (see `hf_unified_seg.metrics.shift_sampling.random_crop_pair`); the paper reports mean +- std over 3
seeds. A pair whose crops do not overlap is an error. The score is a percentage (0-100).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: per crop pair, the predicted (H_a, W_a) label map of the first crop.
    shifted_predictions: per crop pair, the predicted (H_b, W_b) label map of the second crop.
    crop_offsets: per crop pair, the crops' top-left corners in image coordinates `(y_a, x_a, y_b, x_b)`.
    image_ids: per crop pair, the image it comes from (pairs of one image are averaged first).
Returns:
    massc (percent), num_images, num_pairs.
Example:
    >>> sc = hf_unified_seg.metrics.load("segmentation_consistency")
    >>> sc.compute(predictions=[a], shifted_predictions=[b], crop_offsets=[(0, 0, 4, 4)], image_ids=[0])["massc"]
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class SegmentationConsistency(PreparedInputsMixin, evaluate.Metric):
    """Overlap agreement of segmentation predictions on two crops (mASSC)."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            # The store keeps only each pair's agreement counts, not the label maps.
            features=datasets.Features(
                {
                    "predictions": {"agree": datasets.Value("int64"), "overlap": datasets.Value("int64")},
                    "shifted_predictions": datasets.Value("int64"),
                    "crop_offsets": datasets.List(datasets.Value("int64")),
                    "image_ids": datasets.Value("int64"),
                }
            ),
            reference_urls=["https://arxiv.org/abs/2008.09604"],
        )

    def _prepare_batch(self, batch: dict[str, list]) -> dict[str, list]:
        out: dict[str, list] = {k: [] for k in batch}
        for i in range(len(batch["predictions"])):
            map_a = to_label_map(batch["predictions"][i], f"predictions[{i}]")
            map_b = to_label_map(batch["shifted_predictions"][i], f"shifted_predictions[{i}]")
            offsets = to_vector(batch["crop_offsets"][i], f"crop_offsets[{i}]", np.int64, 4)
            if offsets.min() < 0:
                raise ValueError(
                    f"crop_offsets[{i}] must be non-negative (y_a, x_a, y_b, x_b), got {offsets.tolist()}."
                )
            view_a, view_b = overlap_views(map_a, map_b, tuple(offsets.tolist()))
            if view_a.size == 0:
                raise ValueError(f"Pair {i}: the two crops do not overlap (offsets {offsets.tolist()}).")
            out["predictions"].append({"agree": int((view_a == view_b).sum()), "overlap": int(view_a.size)})
            out["shifted_predictions"].append(int(map_b.size))  # the comparison already lives in "predictions"
            out["crop_offsets"].append(offsets.tolist())
            out["image_ids"].append(int(to_vector(batch["image_ids"][i], f"image_ids[{i}]", np.int64, 1)[0]))
        return out

    def _compute(
        self, predictions: list, shifted_predictions: list, crop_offsets: list, image_ids: list
    ) -> dict[str, Any]:
        per_image: dict[int, list[float]] = {}
        for pair, image_id in zip(predictions, image_ids):
            per_image.setdefault(int(image_id), []).append(pair["agree"] / pair["overlap"])
        image_scores = [np.mean(v) for v in per_image.values()]
        return {
            "massc": float(100.0 * np.mean(image_scores)),
            "num_images": len(per_image),
            "num_pairs": len(predictions),
        }
