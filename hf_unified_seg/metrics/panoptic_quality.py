"""Panoptic quality (PQ, SQ, RQ) as an ``evaluate`` metric, following the COCO panoptic definition.

Load it with ``hf_unified_seg.metrics.load("panoptic_quality", categories=...)`` or ``evaluate.load(<this file>)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import datasets
import evaluate
import numpy as np

from hf_unified_seg.metrics._base import PreparedInputsMixin
from hf_unified_seg.metrics._inputs import PACKED_MAP_FEATURES, check_same_shape, pack_map, to_label_map, unpack_map
from hf_unified_seg.metrics.adapters import normalize_segments_info, panoptic_from_any

_CITATION = """\
@inproceedings{kirillov2019panoptic,
  title={Panoptic Segmentation},
  author={Kirillov, Alexander and He, Kaiming and Girshick, Ross and Rother, Carsten and Doll{\\'a}r, Piotr},
  booktitle={CVPR},
  year={2019}
}
"""

_DESCRIPTION = """\
Panoptic quality PQ = sum_{TP} IoU / (|TP| + |FP|/2 + |FN|/2) = SQ x RQ, computed per category over the whole dataset
and averaged over the categories that occur (TP + FP + FN > 0), overall and separately for things and stuff.
Follows the COCO panoptic evaluation (Kirillov et al. 2019): a predicted and a reference segment of the same category
match when IoU > 0.5, where the union leaves out the predicted pixels that fall on reference void (id 0); unmatched
reference segments are false negatives except crowd regions (iscrowd = 1); an unmatched predicted segment is a
false positive unless more than half of it lies on void or on a crowd region of its own category. Stuff segments of
the same category in one image are merged first (the COCO format allows one per category; transformers' post-processing
fuses them the same way). There is no minimum segment area, as in panopticapi: dropping small segments is the
post-processing's job. torchmetrics' PanopticQuality gives the same numbers except where predictions leave pixels
void (it also removes reference pixels predicted void from the union, and does not count a reference segment that is
mostly predicted void as a false negative) and on crowd regions (it has none). All scores are percentages (0-100),
like the papers.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: per image, a segment id map (H, W) (0 = void), a COCO panoptic RGB PNG (PIL image or (H, W, 3) uint8,
        id = R + 256 G + 256^2 B), or a dict: transformers' `post_process_panoptic_segmentation` output
        `{"segmentation", "segments_info"}` or a record `{"panoptic", "segments_info"}` (then leave
        `prediction_segments_info` out).
    references: per image, the same forms as `predictions` (a ShapesWorld record works directly).
    prediction_segments_info: per image, a list of `{"id", "category_id"}` (`label_id` is accepted too).
    reference_segments_info: per image, a list of `{"id", "category_id", "iscrowd"}` (`iscrowd` defaults to 0).
    categories: (init or compute) list of `{"id", "isthing", "name"?}` (e.g. `hf_unified_seg.data.get_categories(ds)`).
Returns:
    pq, sq, rq, pq_things, sq_things, rq_things, pq_stuff, sq_stuff, rq_stuff (percent; NaN when a group has no
    category that occurs), n, n_things, n_stuff (categories averaged over), and
    per_category {name (id when names repeat): {pq, sq, rq, tp, fp, fn}}.
Example:
    >>> pq = hf_unified_seg.metrics.load("panoptic_quality", categories=[{"id": 0, "isthing": 1}])
    >>> pq.compute(predictions=[ids], references=[ids], prediction_segments_info=[info], reference_segments_info=[info])
"""

_SEGMENTS = datasets.List({"id": datasets.Value("int64"), "category_id": datasets.Value("int64")})
_REF_SEGMENTS = datasets.List(
    {"id": datasets.Value("int64"), "category_id": datasets.Value("int64"), "iscrowd": datasets.Value("int64")}
)
_MAP = {key: datasets.Value(kind) for key, kind in PACKED_MAP_FEATURES.items()}  # stored as raw bytes


def parse_categories(categories: Any) -> dict[int, dict[str, Any]]:
    """``[{"id", "isthing", "name"?}]`` -> ``{id: {"isthing": bool, "name": str}}`` with validation."""
    if categories is None:
        raise ValueError(
            "`categories` is required: a list of {'id', 'isthing', 'name'} dicts (pass it to load/compute)."
        )
    if isinstance(categories, Mapping):
        raise TypeError("`categories` must be a list of dicts with `id` and `isthing`, not a mapping.")
    parsed: dict[int, dict[str, Any]] = {}
    for category in categories:
        if not isinstance(category, Mapping) or "id" not in category or "isthing" not in category:
            raise ValueError(f"Each entry of `categories` needs `id` and `isthing`, got {category!r}.")
        cid = int(category["id"])
        if cid in parsed:
            raise ValueError(f"`categories` lists id {cid} twice.")
        parsed[cid] = {"isthing": bool(category["isthing"]), "name": str(category.get("name", cid))}
    if not parsed:
        raise ValueError("`categories` is empty.")
    names = [c["name"] for c in parsed.values()]
    if len(set(names)) < len(names):  # per-category results are keyed by name; fall back to ids when ambiguous
        for cid, category in parsed.items():
            category["name"] = str(cid)
    return parsed


def _compact_labels(
    ids: np.ndarray, segments: Sequence[Mapping[str, int]], categories: dict[int, dict[str, Any]], where: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Relabel a segment id map to 0 (void) .. S, merging stuff segments of one category into one label.

    Returns the relabelled map, the category of each label (index 0 unused) and its crowd flag.
    """
    key_of: dict[int, tuple] = {}
    for segment in segments:
        category = segment["category_id"]
        if category not in categories:
            raise ValueError(
                f"{where}: segment {segment['id']} has category_id {category}, which is not in `categories` "
                f"(known ids: {sorted(categories)})."
            )
        crowd = int(segment.get("iscrowd", 0))
        # Stuff of one category is one segment; crowd regions never merge with regular segments.
        key_of[segment["id"]] = (category, crowd) if not categories[category]["isthing"] else ("id", segment["id"])
    keys = list(dict.fromkeys(key_of.values()))
    label_of_key = {key: i + 1 for i, key in enumerate(keys)}
    seg_categories = np.zeros(len(keys) + 1, dtype=np.int64)
    seg_crowd = np.zeros(len(keys) + 1, dtype=bool)
    for segment in segments:
        label = label_of_key[key_of[segment["id"]]]
        seg_categories[label] = segment["category_id"]
        seg_crowd[label] = bool(segment.get("iscrowd", 0))

    if ids.size and ids.min() < 0:
        raise ValueError(f"{where}: segment ids must be >= 0 (0 = void), got {ids.min()}.")
    max_id = int(ids.max()) if ids.size else 0
    dense = max_id < max(4 * ids.size, 1 << 16)
    if dense:  # small ids (the usual 1..N): index a table by id directly, no sorting of the pixels
        present = np.flatnonzero(np.bincount(ids.ravel(), minlength=1))
        positions, index = present, ids
    else:  # e.g. RGB-encoded ids up to 256**3: index by rank among the ids present
        present, index = np.unique(ids, return_inverse=True)
        positions = np.arange(len(present))
    lookup = np.zeros(max_id + 1 if dense else len(present), dtype=np.int64)
    for position, seg_id in zip(positions.tolist(), present.tolist()):
        if seg_id == 0:
            continue
        if seg_id not in key_of:
            raise ValueError(f"{where}: segment id {seg_id} appears in the map but not in its segments_info.")
        lookup[position] = label_of_key[key_of[seg_id]]
    return lookup[index].reshape(ids.shape), seg_categories, seg_crowd


def panoptic_statistics(
    pred_ids: np.ndarray,
    pred_segments: Sequence[Mapping[str, int]],
    ref_ids: np.ndarray,
    ref_segments: Sequence[Mapping[str, int]],
    categories: dict[int, dict[str, Any]],
    index: int = 0,
) -> dict[int, np.ndarray]:
    """Per-category ``[iou_sum, tp, fp, fn]`` for one image (COCO panoptic rules, see the module description)."""
    pred, pred_cat, _ = _compact_labels(pred_ids, pred_segments, categories, f"Example {index} prediction")
    ref, ref_cat, ref_crowd = _compact_labels(ref_ids, ref_segments, categories, f"Example {index} reference")
    num_pred, num_ref = len(pred_cat), len(ref_cat)
    # Joint histogram: counts[r, p] = |ref label r ∩ pred label p|; row/column 0 is void.
    counts = np.bincount((ref * num_pred + pred).ravel(), minlength=num_ref * num_pred).reshape(num_ref, num_pred)
    pred_area = counts.sum(axis=0)
    ref_area = counts.sum(axis=1)

    stats: dict[int, np.ndarray] = {}

    def add(category: int, column: int, value: float) -> None:
        stats.setdefault(category, np.zeros(4, dtype=np.float64))[column] += value

    inter = counts[1:, 1:].astype(np.float64)
    union = pred_area[None, 1:] + ref_area[1:, None] - inter - counts[0, None, 1:]
    same = ref_cat[1:, None] == pred_cat[None, 1:]
    candidate = same & (inter > 0) & ~ref_crowd[1:, None]
    iou = np.where(candidate, inter / np.maximum(union, 1), 0.0)
    # IoU > 0.5 makes matches unique (segments are disjoint), so no assignment step is needed.
    ref_match, pred_match = np.nonzero(iou > 0.5)
    for r, p in zip(ref_match.tolist(), pred_match.tolist()):
        add(int(ref_cat[r + 1]), 0, iou[r, p])
        add(int(ref_cat[r + 1]), 1, 1)
    matched_ref = set((ref_match + 1).tolist())
    matched_pred = set((pred_match + 1).tolist())

    for r in range(1, num_ref):
        if r not in matched_ref and not ref_crowd[r] and ref_area[r] > 0:
            add(int(ref_cat[r]), 3, 1)
    for p in range(1, num_pred):
        if p in matched_pred or pred_area[p] == 0:
            continue
        crowd_rows = np.nonzero(ref_crowd & (ref_cat == pred_cat[p]))[0]
        ignored = counts[0, p] + counts[crowd_rows, p].sum()
        if ignored / pred_area[p] > 0.5:
            continue
        add(int(pred_cat[p]), 2, 1)
    return stats


def summarize_panoptic(totals: dict[int, np.ndarray], categories: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """Per-category PQ/SQ/RQ and their averages (overall / things / stuff) from summed ``[iou, tp, fp, fn]``."""
    per_category: dict[str, dict[str, float]] = {}
    groups: dict[str, list[tuple[float, float, float]]] = {"": [], "_things": [], "_stuff": []}
    for cid, info in categories.items():
        iou_sum, tp, fp, fn = totals.get(cid, np.zeros(4))
        denominator = tp + 0.5 * fp + 0.5 * fn
        if denominator == 0:
            pq = sq = rq = 0.0
        else:
            pq, rq = iou_sum / denominator, tp / denominator
            sq = iou_sum / tp if tp > 0 else 0.0
            groups[""].append((pq, sq, rq))
            groups["_things" if info["isthing"] else "_stuff"].append((pq, sq, rq))
        per_category[info["name"]] = {
            "pq": float(100.0 * pq),
            "sq": float(100.0 * sq),
            "rq": float(100.0 * rq),
            "tp": int(tp),
            "fp": int(fp),
            "fn": int(fn),
        }
    result: dict[str, Any] = {}
    for suffix, values in groups.items():
        means = np.mean(values, axis=0) * 100.0 if values else np.full(3, np.nan)
        result.update({f"pq{suffix}": float(means[0]), f"sq{suffix}": float(means[1]), f"rq{suffix}": float(means[2])})
        result[f"n{suffix}"] = len(values)
    result["per_category"] = per_category
    return result


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class PanopticQuality(PreparedInputsMixin, evaluate.Metric):
    """COCO panoptic quality. ``categories`` may be given at load time or to ``compute``."""

    def __init__(self, categories: Sequence[Mapping[str, Any]] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.categories = categories

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": _MAP,
                    "references": _MAP,
                    "prediction_segments_info": _SEGMENTS,
                    "reference_segments_info": _REF_SEGMENTS,
                }
            ),
            reference_urls=["https://github.com/cocodataset/panopticapi", "https://arxiv.org/abs/1801.00868"],
        )

    def _expand_inputs(self, inputs: dict[str, Any]) -> dict[str, Any]:
        for side, with_crowd in (("prediction", False), ("reference", True)):
            column = inputs[f"{side}s"]
            if column is None or not isinstance(column, (list, tuple)) or not column:
                continue
            if not isinstance(column[0], Mapping):
                continue
            if inputs[f"{side}_segments_info"] is not None:
                raise ValueError(f"`{side}s` are dicts carrying segments_info; leave `{side}_segments_info` out.")
            pairs = [panoptic_from_any(item, f"{side}s[{i}]", with_crowd) for i, item in enumerate(column)]
            if any(p is None for p in pairs):
                raise ValueError(f"`{side}s` mixes dicts and bare maps; use one form per call.")
            inputs[f"{side}s"] = [p[0] for p in pairs]
            inputs[f"{side}_segments_info"] = [p[1] for p in pairs]
        return inputs

    def _prepare_batch(self, batch: dict[str, list]) -> dict[str, list]:
        out: dict[str, list] = {k: [] for k in batch}
        for i in range(len(batch["predictions"])):
            pred = to_label_map(batch["predictions"][i], f"predictions[{i}]", allow_rgb=True)
            ref = to_label_map(batch["references"][i], f"references[{i}]", allow_rgb=True)
            check_same_shape(pred, ref, "predictions", "references", i)
            for name, ids in (("predictions", pred), ("references", ref)):
                if ids.size and ids.min() < 0:
                    raise ValueError(f"{name}[{i}]: segment ids must be >= 0 (0 = void), got {ids.min()}.")
                out[name].append(pack_map(ids))
            out["prediction_segments_info"].append(
                normalize_segments_info(batch["prediction_segments_info"][i], f"prediction_segments_info[{i}]", False)
            )
            out["reference_segments_info"].append(
                normalize_segments_info(batch["reference_segments_info"][i], f"reference_segments_info[{i}]", True)
            )
        return out

    def _compute(
        self,
        predictions: list,
        references: list,
        prediction_segments_info: list,
        reference_segments_info: list,
        categories: Sequence[Mapping[str, Any]] | None = None,
    ) -> dict[str, Any]:
        table = parse_categories(categories if categories is not None else self.categories)
        totals: dict[int, np.ndarray] = {}
        for i, (pred, ref, pred_info, ref_info) in enumerate(
            zip(predictions, references, prediction_segments_info, reference_segments_info)
        ):
            stats = panoptic_statistics(unpack_map(pred), pred_info, unpack_map(ref), ref_info, table, index=i)
            for cid, values in stats.items():
                totals[cid] = totals.get(cid, np.zeros(4)) + values
        return summarize_panoptic(totals, table)
