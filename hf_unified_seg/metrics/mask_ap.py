"""COCO mask average precision (``pycocotools.COCOeval``, iouType "segm") as an ``evaluate`` metric.

Load it with ``hf_unified_seg.metrics.load("mask_ap")`` or ``evaluate.load(<this file>)``.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping, Sequence
from typing import Any

import datasets
import evaluate
import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from hf_unified_seg.metrics._base import PreparedInputsMixin
from hf_unified_seg.metrics._inputs import to_masks, to_vector
from hf_unified_seg.metrics.adapters import instances_from_post_processing, instances_from_record

_CITATION = """\
@inproceedings{lin2014microsoft,
  title={Microsoft COCO: Common Objects in Context},
  author={Lin, Tsung-Yi and Maire, Michael and Belongie, Serge and Hays, James and Perona, Pietro and Ramanan, Deva
          and Doll{\\'a}r, Piotr and Zitnick, C. Lawrence},
  booktitle={ECCV},
  year={2014}
}
"""

_DESCRIPTION = """\
COCO instance-segmentation average precision, computed by pycocotools' COCOeval (iouType "segm") on COCO objects
built in memory: masks are run-length encoded with pycocotools.mask, reference areas are mask areas (they decide the
small / medium / large ranges, 32^2 and 96^2 pixels), and crowd references (iscrowd = 1) are matched the COCO way.
AP averages IoU thresholds 0.50:0.05:0.95 with 101-point interpolated precision; AP50 / AP75 use one threshold.
Scores are percentages (0-100), like the papers; a value COCOeval reports as -1 (no reference in that area range)
is returned as NaN.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: per image, a dict `{"masks": (N, H, W) bool array/tensor or a list of COCO RLE dicts,
        "scores": (N,), "labels": (N,)}`, or transformers' `post_process_instance_segmentation` output
        `{"segmentation", "segments_info"}` (either `return_binary_maps` setting).
    references: per image, a dict `{"masks", "labels", "iscrowd"?}` or a panoptic record `{"panoptic",
        "segments_info"}` (its thing segments are used).
    num_labels / categories: (init or compute, optional) the category ids evaluated: `range(num_labels)` or the `id`s
        of a categories table (things only). Labels outside them raise an error. Default: every reference label.
    max_detections: (init or compute) detections kept per image, default 100 (COCO).
Returns:
    ap, ap50, ap75, ap_small, ap_medium, ap_large, ar1, ar10, ar100, ar_small, ar_medium, ar_large (percent) and
    per_category_ap {category id: AP}.
Example:
    >>> ap = hf_unified_seg.metrics.load("mask_ap")
    >>> ap.compute(predictions=[{"masks": m, "scores": s, "labels": l}], references=[{"masks": g, "labels": gl}])
"""

_STAT_NAMES = (
    "ap",
    "ap50",
    "ap75",
    "ap_small",
    "ap_medium",
    "ap_large",
    "ar1",
    "ar10",
    "ar100",
    "ar_small",
    "ar_medium",
    "ar_large",
)


def encode_masks(masks: np.ndarray) -> list[str]:
    """(N, H, W) bool -> COCO compressed RLE counts strings."""
    if masks.shape[0] == 0:
        return []
    rles = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
    return [rle["counts"].decode("ascii") for rle in rles]


def _rle_counts(value: Any, name: str, size: tuple[int, int] | None) -> tuple[list[str], tuple[int, int]]:
    """Masks given as an (N, H, W) stack or as a list of COCO RLE dicts -> (counts strings, (H, W))."""
    if isinstance(value, (list, tuple)) and value and isinstance(value[0], Mapping):
        sizes = {tuple(int(x) for x in rle["size"]) for rle in value}
        if len(sizes) != 1:
            raise ValueError(f"`{name}`: RLE masks of one image must share one `size`, got {sorted(sizes)}.")
        counts = []
        for rle in value:
            if isinstance(rle["counts"], list):  # uncompressed RLE -> compressed
                rle = mask_utils.frPyObjects(dict(rle), *rle["size"])
            c = rle["counts"]
            counts.append(c.decode("ascii") if isinstance(c, bytes) else str(c))
        return counts, sizes.pop()
    if isinstance(value, (list, tuple)) and not value:
        if size is None:
            raise ValueError(f"`{name}` is an empty list; pass an empty (0, H, W) array so the image size is known.")
        return [], size
    masks = to_masks(value, name)
    return encode_masks(masks), (int(masks.shape[1]), int(masks.shape[2]))


def _annotation(
    annotation_id: int,
    image_id: int,
    label: int,
    size: list[int],
    counts: str,
    iscrowd: int = 0,
    score: float | None = None,
) -> dict[str, Any]:
    """One COCO annotation (reference, or detection when ``score`` is given) from its compressed RLE."""
    rle = {"size": size, "counts": counts}
    annotation = {
        "id": annotation_id,
        "image_id": image_id,
        # shifted by one: COCO tooling treats category 0 as background in places
        "category_id": int(label) + 1,
        "segmentation": rle,
        "area": float(mask_utils.area(rle)),
        "bbox": mask_utils.toBbox(rle).tolist(),
        "iscrowd": int(iscrowd),
    }
    if score is not None:
        annotation["score"] = float(score)
    return annotation


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class MaskAp(PreparedInputsMixin, evaluate.Metric):
    """COCO mask AP through COCOeval."""

    def __init__(
        self,
        num_labels: int | None = None,
        categories: Sequence[Mapping[str, Any]] | None = None,
        max_detections: int = 100,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.num_labels = num_labels
        self.categories = categories
        self.max_detections = max_detections

    def _info(self) -> evaluate.MetricInfo:
        common = {
            "counts": datasets.List(datasets.Value("string")),
            "labels": datasets.List(datasets.Value("int64")),
            "height": datasets.Value("int64"),
            "width": datasets.Value("int64"),
        }
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": {**common, "scores": datasets.List(datasets.Value("float64"))},
                    "references": {**common, "iscrowd": datasets.List(datasets.Value("int64"))},
                }
            ),
            reference_urls=["https://github.com/cocodataset/cocoapi"],
        )

    def _prepare_batch(self, batch: dict[str, list]) -> dict[str, list]:
        out: dict[str, list] = {"predictions": [], "references": []}
        for i, (pred, ref) in enumerate(zip(batch["predictions"], batch["references"])):
            if not isinstance(ref, Mapping):
                raise TypeError(f"references[{i}] must be a dict with `masks` and `labels`, got {type(ref).__name__}.")
            if "panoptic" in ref:
                ref = instances_from_record(ref)
            if not isinstance(pred, Mapping):
                raise TypeError(
                    f"predictions[{i}] must be a dict with `masks`, `scores`, `labels` (or a post-processing output)."
                )
            if "segmentation" in pred:
                pred = instances_from_post_processing(pred)
            for name, item, keys in (
                (f"references[{i}]", ref, ("masks", "labels")),
                (f"predictions[{i}]", pred, ("masks", "scores", "labels")),
            ):
                missing = [k for k in keys if k not in item]
                if missing:
                    raise ValueError(f"{name} is missing {missing}; it needs {list(keys)}.")
            ref_counts, ref_size = _rle_counts(ref["masks"], f"references[{i}]['masks']", None)
            pred_counts, pred_size = _rle_counts(pred["masks"], f"predictions[{i}]['masks']", ref_size)
            if pred_size != ref_size:
                raise ValueError(
                    f"Example {i}: predicted masks are {pred_size} but reference masks are {ref_size} (H, W); "
                    "resize predictions to the reference size (e.g. post-processing `target_sizes`)."
                )
            num_ref, num_pred = len(ref_counts), len(pred_counts)
            iscrowd = ref.get("iscrowd")
            out["references"].append(
                {
                    "counts": ref_counts,
                    "labels": to_vector(ref["labels"], f"references[{i}]['labels']", np.int64, num_ref).tolist(),
                    "iscrowd": (
                        [0] * num_ref
                        if iscrowd is None
                        else to_vector(iscrowd, f"references[{i}]['iscrowd']", np.int64, num_ref).tolist()
                    ),
                    "height": ref_size[0],
                    "width": ref_size[1],
                }
            )
            scores = to_vector(pred["scores"], f"predictions[{i}]['scores']", np.float64, num_pred)
            if not np.isfinite(scores).all():
                raise ValueError(f"predictions[{i}]['scores'] must be finite.")
            out["predictions"].append(
                {
                    "counts": pred_counts,
                    "scores": scores.tolist(),
                    "labels": to_vector(pred["labels"], f"predictions[{i}]['labels']", np.int64, num_pred).tolist(),
                    "height": pred_size[0],
                    "width": pred_size[1],
                }
            )
        return out

    def _category_ids(self, references: list, num_labels: int | None, categories: Any) -> list[int]:
        if categories is not None:
            return sorted({int(c["id"]) for c in categories if bool(c.get("isthing", True))})
        if num_labels is not None:
            if int(num_labels) < 1:
                raise ValueError(f"`num_labels` must be positive, got {num_labels}.")
            return list(range(int(num_labels)))
        return sorted({int(label) for ref in references for label in ref["labels"]})

    def _compute(
        self,
        predictions: list,
        references: list,
        num_labels: int | None = None,
        categories: Sequence[Mapping[str, Any]] | None = None,
        max_detections: int | None = None,
    ) -> dict[str, Any]:
        num_labels = self.num_labels if num_labels is None else num_labels
        categories = self.categories if categories is None else categories
        max_detections = self.max_detections if max_detections is None else int(max_detections)
        category_ids = self._category_ids(references, num_labels, categories)
        known = set(category_ids)
        explicit = num_labels is not None or categories is not None

        images, gt_annotations, dt_annotations = [], [], []
        for i, (pred, ref) in enumerate(zip(predictions, references)):
            image_id = i + 1  # COCO ids are positive
            size = [int(ref["height"]), int(ref["width"])]
            images.append({"id": image_id, "height": size[0], "width": size[1]})
            for counts, label, crowd in zip(ref["counts"], ref["labels"], ref["iscrowd"]):
                if label not in known:
                    raise ValueError(f"references[{i}] has label {label}, not among the categories {sorted(known)}.")
                gt_annotations.append(
                    _annotation(len(gt_annotations) + 1, image_id, label, size, counts, iscrowd=crowd)
                )
            for counts, label, score in zip(pred["counts"], pred["labels"], pred["scores"]):
                if label not in known:
                    if explicit:
                        raise ValueError(
                            f"predictions[{i}] has label {label}, not among the categories {sorted(known)}."
                        )
                    continue  # a class with no reference has no AP in COCOeval either
                dt_annotations.append(_annotation(len(dt_annotations) + 1, image_id, label, size, counts, score=score))
        coco_categories = [{"id": c + 1, "name": str(c)} for c in category_ids]
        coco_gt, coco_dt = COCO(), COCO()
        coco_gt.dataset = {"images": images, "categories": coco_categories, "annotations": gt_annotations}
        coco_dt.dataset = {"images": images, "categories": coco_categories, "annotations": dt_annotations}
        with contextlib.redirect_stdout(io.StringIO()):  # COCOeval prints its tables
            coco_gt.createIndex()
            coco_dt.createIndex()
            evaluator = COCOeval(coco_gt, coco_dt, iouType="segm")
            evaluator.params.maxDets = [1, 10, max_detections]
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
        result = {
            name: (float("nan") if value < 0 else float(100.0 * value))
            for name, value in zip(_STAT_NAMES, evaluator.stats)
        }
        # precision: [IoU thresholds, recall points, categories, area ranges, max dets]; area "all", last maxDet.
        precision = evaluator.eval["precision"][:, :, :, 0, -1]
        per_category = {}
        for k, cid in enumerate(evaluator.params.catIds):
            values = precision[:, :, k]
            values = values[values > -1]
            per_category[int(cid) - 1] = float(100.0 * values.mean()) if values.size else float("nan")
        result["per_category_ap"] = per_category
        return result
