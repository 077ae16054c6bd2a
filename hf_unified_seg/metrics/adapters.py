"""Adapters from model post-processing outputs and dataset records to metric inputs.

transformers' Mask2Former-style image processors return, per image,
``post_process_panoptic_segmentation`` -> ``{"segmentation": Tensor (H, W), "segments_info": [{"id", "label_id",
"was_fused", "score"}]}`` (segment ids start at 1, 0 is unassigned, and the whole map is -1 when nothing was kept) and
``post_process_instance_segmentation`` -> the same keys, where ``segmentation`` is either an id map (-1 background) or,
with ``return_binary_maps=True``, a stack (N, H, W) aligned with ``segments_info``. ShapesWorld / COCO panoptic records
carry ``panoptic`` (RGB PNG, id = R + 256 G + 256^2 B, 0 = void) and ``segments_info`` with ``category_id``,
``iscrowd`` and ``isthing``. Category ids everywhere are the contiguous indices of the dataset's categories table,
which is also what ``label_id`` means for our models (``config.id2label``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from hf_unified_seg.metrics._inputs import to_label_map, to_numpy


def _segment_category(segment: Mapping[str, Any], where: str) -> int:
    if "category_id" in segment:
        return int(segment["category_id"])
    if "label_id" in segment:
        return int(segment["label_id"])
    raise ValueError(
        f"{where}: every segment needs `category_id` (or transformers' `label_id`), got keys {list(segment)}."
    )


def normalize_segments_info(segments_info: Any, where: str, with_crowd: bool) -> list[dict[str, int]]:
    """Keep ``id``, ``category_id`` (and ``iscrowd``) of each segment; merge repeated ids of fused stuff segments."""
    if segments_info is None:
        raise ValueError(f"{where}: `segments_info` is missing.")
    by_id: dict[int, dict[str, int]] = {}
    for segment in segments_info:
        if not isinstance(segment, Mapping) or "id" not in segment:
            raise ValueError(f"{where}: each segments_info entry must be a dict with an `id`, got {segment!r}.")
        entry = {"id": int(segment["id"]), "category_id": _segment_category(segment, where)}
        if with_crowd:
            entry["iscrowd"] = int(segment.get("iscrowd", 0))
        previous = by_id.get(entry["id"])
        if previous is not None and previous["category_id"] != entry["category_id"]:
            raise ValueError(
                f"{where}: segment id {entry['id']} is listed twice with categories "
                f"{previous['category_id']} and {entry['category_id']}."
            )
        by_id[entry["id"]] = entry
    return list(by_id.values())


def panoptic_from_post_processing(output: Mapping[str, Any]) -> tuple[np.ndarray, list[dict[str, int]]]:
    """``post_process_panoptic_segmentation`` output for one image -> (id map with 0 = void, segments_info).

    Args:
        output: ``{"segmentation": (H, W) tensor/array, "segments_info": [{"id", "label_id", ...}]}``.

    Returns:
        The segment id map (int64; transformers' -1 "nothing kept" becomes 0 = void) and ``[{"id", "category_id"}]``.
    """
    if "segmentation" not in output or "segments_info" not in output:
        raise ValueError(
            f"A post-processing output needs `segmentation` and `segments_info`, got keys {list(output)}."
        )
    ids = to_label_map(output["segmentation"], "segmentation").copy()
    ids[ids < 0] = 0
    return ids, normalize_segments_info(output["segments_info"], "post-processing output", with_crowd=False)


def panoptic_from_record(record: Mapping[str, Any]) -> tuple[np.ndarray, list[dict[str, int]]]:
    """A ShapesWorld / COCO panoptic record (``panoptic`` RGB PNG + ``segments_info``) -> (id map, segments_info)."""
    if "panoptic" not in record or "segments_info" not in record:
        raise ValueError(f"A panoptic record needs `panoptic` and `segments_info`, got keys {list(record)}.")
    ids = to_label_map(record["panoptic"], "panoptic", allow_rgb=True)
    return ids, normalize_segments_info(record["segments_info"], "panoptic record", with_crowd=True)


def panoptic_from_any(value: Any, where: str, with_crowd: bool) -> tuple[np.ndarray, list[dict[str, int]]] | None:
    """Dispatch for dict inputs (post-processing output or record); ``None`` when ``value`` is a bare map."""
    if not isinstance(value, Mapping):
        return None
    if "segmentation" in value:
        ids, info = panoptic_from_post_processing(value)
        if with_crowd:
            info = [{**s, "iscrowd": 0} for s in info]
        return ids, info
    if "panoptic" in value:
        return panoptic_from_record(value)
    raise ValueError(
        f"{where}: a dict input needs `segmentation` or `panoptic` plus `segments_info`; got {list(value)}."
    )


def instances_from_post_processing(output: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """``post_process_instance_segmentation`` output for one image -> ``{"masks", "scores", "labels"}``.

    Works with both ``return_binary_maps`` settings: a (N, H, W) stack aligned with ``segments_info`` or an id map.
    """
    if "segmentation" not in output or "segments_info" not in output:
        raise ValueError(
            f"A post-processing output needs `segmentation` and `segments_info`, got keys {list(output)}."
        )
    segmentation = to_numpy(output["segmentation"], "segmentation")
    segments = list(output["segments_info"])
    labels = np.array([_segment_category(s, "post-processing output") for s in segments], dtype=np.int64)
    scores = np.array([float(s.get("score", 1.0)) for s in segments], dtype=np.float64)
    if segmentation.ndim == 3:
        if segmentation.shape[0] != len(segments):
            raise ValueError(
                f"Binary maps stack has {segmentation.shape[0]} masks but segments_info lists {len(segments)} segments."
            )
        masks = segmentation.astype(bool)
    elif segmentation.ndim == 2:
        masks = (
            np.stack([segmentation == s["id"] for s in segments])
            if segments
            else np.zeros((0, *segmentation.shape), bool)
        )
    else:
        raise ValueError(f"`segmentation` must be (H, W) or (N, H, W), got shape {segmentation.shape}.")
    return {"masks": masks, "scores": scores, "labels": labels}


def instances_from_record(record: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Thing segments of a panoptic record as instance references ``{"masks", "labels", "iscrowd"}``."""
    ids, _ = panoptic_from_record(record)
    things = [s for s in record["segments_info"] if bool(s.get("isthing", True))]
    masks = np.stack([ids == int(s["id"]) for s in things]) if things else np.zeros((0, *ids.shape), bool)
    labels = np.array([_segment_category(s, "panoptic record") for s in things], dtype=np.int64)
    iscrowd = np.array([int(s.get("iscrowd", 0)) for s in things], dtype=np.int64)
    return {"masks": masks, "labels": labels, "iscrowd": iscrowd}
