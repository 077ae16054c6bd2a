"""Image-text retrieval recall (R@1/5/10 both ways) as an ``evaluate`` metric.

Load it with ``hf_unified_seg.metrics.load("retrieval")`` or ``evaluate.load(<this file>)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import datasets
import evaluate
import numpy as np

from hf_unified_seg.metrics._base import PreparedInputsMixin
from hf_unified_seg.metrics._inputs import to_numpy, to_vector

_CITATION = """\
@inproceedings{karpathy2015deep,
  title={Deep Visual-Semantic Alignments for Generating Image Descriptions},
  author={Karpathy, Andrej and Fei-Fei, Li},
  booktitle={CVPR},
  year={2015}
}
"""

_DESCRIPTION = """\
Recall@K for image-text retrieval from a text x image similarity matrix, one row per text (query) as FIND and
X-Decoder report it on COCO-Karpathy: text->image R@K (IR@K) is the share of texts whose K most similar images contain
one of its ground-truth images; image->text R@K (TR@K) is the share of images whose K most similar texts contain one of
the texts that list it as ground truth (so five captions per image are supported). Images that no text lists are left
out of TR@K. Ties count against the query: a candidate scoring the same as the best ground truth ranks ahead of it.
Also reports rsum, the sum of the six recalls. All recalls are percentages (0-100).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: per text, its similarity to every image (a row of the (num_texts, num_images) matrix; a whole matrix
        works too, its rows are the texts). Every row must have the same length.
    references: per text, its ground-truth image index or a list of image indices.
    ks: (init or compute) the K values, default (1, 5, 10).
Returns:
    "text_to_image_r@K" and "image_to_text_r@K" for each K (percent), rsum, num_texts, num_images.
Example:
    >>> ret = hf_unified_seg.metrics.load("retrieval")
    >>> ret.compute(predictions=similarity, references=[[0], [0], [1]])["text_to_image_r@1"]
"""


def _first_hit_rank(scores: np.ndarray, positives: np.ndarray) -> np.ndarray:
    """Per query row, the 1-based rank of its best-scoring positive; ties with negatives rank the positive last."""
    best_positive = np.where(positives, scores, -np.inf).max(axis=1)
    ahead = ((scores >= best_positive[:, None]) & ~positives).sum(axis=1)
    return ahead + 1


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Retrieval(PreparedInputsMixin, evaluate.Metric):
    """Bidirectional image-text Recall@K."""

    def __init__(self, ks: Sequence[int] = (1, 5, 10), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ks = tuple(ks)

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.List(datasets.Value("float64")),
                    "references": datasets.List(datasets.Value("int64")),
                }
            ),
        )

    def _prepare_batch(self, batch: dict[str, list]) -> dict[str, list]:
        out: dict[str, list] = {"predictions": [], "references": []}
        for i, (row, ref) in enumerate(zip(batch["predictions"], batch["references"])):
            row = to_vector(row, f"predictions[{i}]", np.float64)
            if not np.isfinite(row).all():
                raise ValueError(f"predictions[{i}]: similarities must be finite.")
            ref = to_vector(ref, f"references[{i}]", np.int64)
            if ref.size == 0:
                raise ValueError(f"references[{i}]: every text needs at least one ground-truth image index.")
            if ref.min() < 0 or ref.max() >= row.shape[0]:
                raise ValueError(
                    f"references[{i}] holds image index {int(ref.max() if ref.max() >= row.shape[0] else ref.min())} "
                    f"outside [0, {row.shape[0]}) (the number of images in predictions[{i}])."
                )
            out["predictions"].append(row.tolist())
            out["references"].append(ref.tolist())
        return out

    def _expand_inputs(self, inputs: dict[str, Any]) -> dict[str, Any]:
        predictions = inputs["predictions"]
        if predictions is not None and not isinstance(predictions, (list, tuple)):
            matrix = to_numpy(predictions, "predictions")
            if matrix.ndim != 2:
                raise ValueError(f"`predictions` must be a (num_texts, num_images) matrix, got shape {matrix.shape}.")
            inputs["predictions"] = list(matrix)
        return inputs

    def _compute(self, predictions: list, references: list, ks: Sequence[int] | None = None) -> dict[str, Any]:
        ks = self.ks if ks is None else tuple(ks)
        if any(int(k) < 1 for k in ks):
            raise ValueError(f"`ks` must be positive, got {ks}.")
        lengths = {len(row) for row in predictions}
        if len(lengths) != 1:
            raise ValueError(f"Every similarity row must cover the same images; got row lengths {sorted(lengths)}.")
        scores = np.asarray(predictions, dtype=np.float64)  # (texts, images)
        num_texts, num_images = scores.shape
        positives = np.zeros(scores.shape, dtype=bool)
        for t, images in enumerate(references):
            positives[t, images] = True
        text_rank = _first_hit_rank(scores, positives)
        listed = positives.any(axis=0)
        image_rank = _first_hit_rank(scores.T[listed], positives.T[listed])
        result: dict[str, Any] = {}
        for k in ks:
            result[f"text_to_image_r@{k}"] = float(100.0 * np.mean(text_rank <= k))
        for k in ks:
            result[f"image_to_text_r@{k}"] = float(100.0 * np.mean(image_rank <= k)) if listed.any() else float("nan")
        result["rsum"] = float(sum(v for k, v in result.items() if "_r@" in k))
        result["num_texts"], result["num_images"] = num_texts, num_images
        return result
