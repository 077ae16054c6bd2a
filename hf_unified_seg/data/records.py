"""The record schema shared by ShapesWorld and every real-format loader.

A dataset in this package is a :class:`datasets.Dataset` whose rows follow one schema (see
:data:`RECORD_FEATURES`) and whose categories table travels in ``dataset.info.description`` as JSON, so it
survives ``select``/``map``/``save_to_disk``. :func:`get_categories` reads it back.

Record fields:

- ``image_id`` (int): id of the image inside its split.
- ``image`` (PIL RGB).
- ``panoptic`` (PIL RGB): COCO panoptic encoding, segment id = R + 256 * G + 256**2 * B, 0 = void.
- ``segments_info`` (list of dict): ``id`` (segment id in ``panoptic``), ``category_id`` (contiguous index into
  the categories table), ``isthing``, ``bbox`` ([x, y, w, h] of the visible pixels), ``area`` (visible pixels),
  ``iscrowd``, and the ShapesWorld attributes ``color``, ``size``, ``pattern`` (empty strings when unknown) and
  ``depth`` (0 = front-most thing; -1 for stuff and for real data without depth).
- ``semantic`` (PIL "L"): category index per pixel, 255 = void / ignore.
- ``label`` (int): category index of the largest visible thing (-1 when the image has no thing).
- ``captions`` (list of str).
- ``referring`` (list of dict): ``sentence``, ``segment_id`` (the one segment the sentence denotes), ``kind``.
- ``interleaved`` (list of dict): ``segment_id``, ``text``, ``ref_image_id``, ``ref_segment_id``; see
  :func:`hf_unified_seg.data.shapesworld.load_shapesworld`.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from typing import Any

import datasets
import numpy as np
from PIL import Image
from scipy import ndimage

VOID = 255
_INFO_KEY = "hf_unified_seg"


def segment_info_features() -> dict[str, Any]:
    return {
        "id": datasets.Value("int32"),
        "category_id": datasets.Value("int32"),
        "isthing": datasets.Value("bool"),
        "bbox": datasets.List(datasets.Value("int32"), length=4),
        "area": datasets.Value("int64"),
        "iscrowd": datasets.Value("int8"),
        "color": datasets.Value("string"),
        "size": datasets.Value("string"),
        "pattern": datasets.Value("string"),
        "depth": datasets.Value("int32"),
    }


def record_features(category_names: Sequence[str]) -> datasets.Features:
    """The :class:`datasets.Features` of a record; ``label`` is a ClassLabel over the category names."""
    return datasets.Features(
        {
            "image_id": datasets.Value("int64"),
            "image": datasets.Image(),
            "panoptic": datasets.Image(),
            "segments_info": datasets.List(segment_info_features()),
            "semantic": datasets.Image(),
            "label": datasets.ClassLabel(names=list(category_names)),
            "captions": datasets.List(datasets.Value("string")),
            "referring": datasets.List(
                {
                    "sentence": datasets.Value("string"),
                    "segment_id": datasets.Value("int32"),
                    "kind": datasets.Value("string"),
                }
            ),
            "interleaved": datasets.List(
                {
                    "segment_id": datasets.Value("int32"),
                    "text": datasets.Value("string"),
                    "ref_image_id": datasets.Value("int64"),
                    "ref_segment_id": datasets.Value("int32"),
                }
            ),
        }
    )


def make_segment(
    seg_id: int,
    category_id: int,
    isthing: bool,
    bbox: Sequence[int],
    area: int,
    iscrowd: int = 0,
    color: str = "",
    size: str = "",
    pattern: str = "",
    depth: int = -1,
) -> dict[str, Any]:
    return {
        "id": int(seg_id),
        "category_id": int(category_id),
        "isthing": bool(isthing),
        "bbox": [int(v) for v in bbox],
        "area": int(area),
        "iscrowd": int(iscrowd),
        "color": color,
        "size": size,
        "pattern": pattern,
        "depth": int(depth),
    }


def normalize_categories(categories: Sequence[Mapping[str, Any] | str]) -> list[dict[str, Any]]:
    """Validate a categories table and return it as ``[{id, name, isthing, openvocab}]`` with ids ``0..K-1``."""
    if isinstance(categories, (str, bytes)) or not isinstance(categories, Sequence):
        raise TypeError(f"`categories` must be a list of dicts or names, got {type(categories).__name__}")
    out = []
    for index, cat in enumerate(categories):
        if isinstance(cat, str):
            cat = {"name": cat}
        if not isinstance(cat, Mapping) or "name" not in cat:
            raise TypeError(f"`categories[{index}]` must be a name or a dict with a 'name' key, got {cat!r}")
        if "id" in cat and int(cat["id"]) != index:
            raise ValueError(f"`categories[{index}]` has id {cat['id']}; category ids must be contiguous 0..K-1")
        out.append(
            {
                "id": index,
                "name": str(cat["name"]),
                "isthing": bool(cat.get("isthing", True)),
                "openvocab": bool(cat.get("openvocab", False)),
            }
        )
    return out


def make_info(
    categories: Sequence[Mapping[str, Any]], features: datasets.Features | None = None, **metadata: Any
) -> datasets.DatasetInfo:
    """A DatasetInfo carrying the categories table (and free-form metadata) as JSON in its description."""
    payload = {_INFO_KEY: {"categories": list(categories), **metadata}}
    return datasets.DatasetInfo(description=json.dumps(payload, sort_keys=True), features=features)


def get_categories(dataset: Any) -> list[dict[str, Any]]:
    """Return the categories table ``[{id, name, isthing, openvocab}]`` of a dataset built by this package.

    Args:
        dataset: a :class:`datasets.Dataset`, a :class:`datasets.DatasetDict` (its first split is read) or an
            already-extracted categories list.
    """
    if isinstance(dataset, datasets.DatasetDict):
        if not dataset:
            raise ValueError("`dataset` is an empty DatasetDict")
        dataset = next(iter(dataset.values()))
    if isinstance(dataset, list):
        return normalize_categories(dataset)
    if not isinstance(dataset, datasets.Dataset):
        raise TypeError(f"`dataset` must be a datasets.Dataset or DatasetDict, got {type(dataset).__name__}")
    payloads = _payloads(dataset.info.description or "")
    if payloads:
        tables = [normalize_categories(p["categories"]) for p in payloads]
        if any(t != tables[0] for t in tables[1:]):
            raise ValueError("`dataset` concatenates datasets whose categories tables differ; align them first")
        return tables[0]
    label = dataset.features.get("label")
    if isinstance(label, datasets.ClassLabel):
        return normalize_categories(label.names)
    raise ValueError("`dataset` carries no categories table (it was not built by hf_unified_seg.data)")


def _payloads(description: str) -> list[dict[str, Any]]:
    """Our JSON payloads in a description; ``concatenate_datasets`` joins distinct descriptions with blank lines."""
    decoder = json.JSONDecoder()
    out, pos = [], 0
    while pos < len(description):
        start = description.find("{", pos)
        if start < 0:
            break
        try:
            obj, pos = decoder.raw_decode(description, start)
        except ValueError:
            break
        if isinstance(obj, dict) and isinstance(obj.get(_INFO_KEY), dict) and "categories" in obj[_INFO_KEY]:
            out.append(obj[_INFO_KEY])
    return out


def get_metadata(dataset: datasets.Dataset) -> dict[str, Any]:
    """The free-form metadata stored next to the categories table (split, seed, options, ...) of the first
    dataset that went into ``dataset``."""
    payloads = _payloads(dataset.info.description or "")
    return dict(payloads[0]) if payloads else {}


# --------------------------------------------------------------------------- encodings


def png_image(array: np.ndarray, compress_level: int = 1) -> dict[str, Any]:
    """An ``Image()`` feature value holding ``array`` as PNG bytes.

    Encoding here with a low zlib level is ~3x faster than letting ``datasets`` save PIL images at PNG's default
    level, and PNG stays lossless, so decoded pixels are unchanged.
    """
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buf, format="PNG", compress_level=compress_level)
    return {"bytes": buf.getvalue(), "path": None}


def ids_to_rgb(ids: np.ndarray) -> np.ndarray:
    """Segment id map (H, W) -> COCO panoptic RGB (H, W, 3) uint8."""
    ids = np.asarray(ids, dtype=np.int64)
    if ids.min(initial=0) < 0 or ids.max(initial=0) >= 256**3:
        raise ValueError("segment ids must lie in [0, 256**3)")
    return np.stack([ids & 255, (ids >> 8) & 255, (ids >> 16) & 255], axis=-1).astype(np.uint8)


def rgb_to_ids(rgb: Any) -> np.ndarray:
    """COCO panoptic RGB (PIL image or (H, W, 3) array) -> segment id map (H, W) int64."""
    arr = np.asarray(rgb.convert("RGB") if isinstance(rgb, Image.Image) else rgb)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise ValueError(f"`panoptic` must be an RGB image of shape (H, W, 3), got shape {arr.shape}")
    arr = arr.astype(np.int64)
    return arr[..., 0] + 256 * arr[..., 1] + 256 * 256 * arr[..., 2]


def _image_hw(image: Any) -> tuple[int, int]:
    if isinstance(image, Image.Image):
        return image.height, image.width
    if isinstance(image, Mapping):  # an Image() feature value
        with Image.open(io.BytesIO(image["bytes"]) if image.get("bytes") else image["path"]) as im:
            return im.height, im.width
    arr = np.asarray(image)
    return int(arr.shape[0]), int(arr.shape[1])


def instance_masks(
    record: Mapping[str, Any], include_stuff: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Binary masks of the segments of a record, decoded from its panoptic map.

    Args:
        record: a record with ``panoptic`` (PIL RGB, (H, W, 3) array, or a decoded (H, W) id map) and
            ``segments_info`` (``image``, when present, is used to check the size).
        include_stuff: also return stuff segments (what panoptic training needs); by default only things.

    Returns:
        ``(masks, category_ids, segment_ids)``: bool array (N, H, W), int64 (N,), int64 (N,), in the order of
        ``segments_info``.
    """
    if "panoptic" not in record or "segments_info" not in record:
        raise ValueError("`record` must have 'panoptic' and 'segments_info' fields")
    pan = record["panoptic"]
    # a 2-D integer array is taken as an already-decoded segment-id map
    ids = np.asarray(pan, dtype=np.int64) if isinstance(pan, np.ndarray) and pan.ndim == 2 else rgb_to_ids(pan)
    if record.get("image") is not None and _image_hw(record["image"]) != ids.shape:
        raise ValueError(
            f"`record['panoptic']` has shape {ids.shape} but `record['image']` has shape {_image_hw(record['image'])}"
        )
    segs = [s for s in record["segments_info"] if include_stuff or s["isthing"]]
    if not segs:
        h, w = ids.shape
        return np.zeros((0, h, w), bool), np.zeros((0,), np.int64), np.zeros((0,), np.int64)
    seg_ids = np.array([s["id"] for s in segs], np.int64)
    masks = ids[None] == seg_ids[:, None, None]
    return masks, np.array([s["category_id"] for s in segs], np.int64), seg_ids


def semantic_from_panoptic(ids: np.ndarray, segments: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """Semantic map (category index, 255 void) from a segment id map and its segments."""
    lut_ids = np.array([0] + [s["id"] for s in segments], np.int64)
    lut_cat = np.array([VOID] + [s["category_id"] for s in segments], np.int64)
    order = np.argsort(lut_ids)
    lut_ids, lut_cat = lut_ids[order], lut_cat[order]
    pos = np.clip(np.searchsorted(lut_ids, ids), 0, len(lut_ids) - 1)
    sem = np.where(lut_ids[pos] == ids, lut_cat[pos], VOID)
    return sem.astype(np.uint8)


def segment_boxes(ids: np.ndarray, seg_ids: Sequence[int]) -> dict[int, tuple[list[int], int]]:
    """``{segment id: ([x, y, w, h], area)}`` of the pixels carrying each id (bbox of zeros when absent)."""
    out: dict[int, tuple[list[int], int]] = {}
    for sid in seg_ids:
        mask = ids == sid
        area = int(mask.sum())
        if area == 0:
            out[int(sid)] = ([0, 0, 0, 0], 0)
            continue
        sl = ndimage.find_objects(mask.astype(np.int32))[0]
        out[int(sid)] = ([sl[1].start, sl[0].start, sl[1].stop - sl[1].start, sl[0].stop - sl[0].start], area)
    return out


def largest_thing_label(segments: Sequence[Mapping[str, Any]]) -> int:
    things = [s for s in segments if s["isthing"]]
    if not things:
        return -1
    # ties go to the first segment so the label is deterministic
    return int(max(things, key=lambda s: (s["area"], -s["id"]))["category_id"])


def check_category_ids(category_ids: Any, num_categories: int, argument: str) -> None:
    """Raise a ValueError naming ``argument`` if any id lies outside ``0..num_categories-1``."""
    arr = np.asarray(list(category_ids) if not isinstance(category_ids, np.ndarray) else category_ids)
    if arr.size and (arr.min() < 0 or arr.max() >= num_categories):
        bad = int(arr[(arr < 0) | (arr >= num_categories)][0])
        raise ValueError(
            f"`{argument}` contains category id {bad}, outside the categories table 0..{num_categories - 1}"
        )


def build_record(
    image: Image.Image | np.ndarray | Mapping[str, Any],
    ids: np.ndarray,
    segments: list[dict[str, Any]],
    image_id: int,
    num_categories: int | None = None,
    captions: Sequence[str] = (),
    referring: Sequence[Mapping[str, Any]] = (),
    interleaved: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """Assemble a record from an image, a segment-id map and its segments.

    Args:
        image: PIL image, (H, W, 3) uint8 array, or an ``Image()`` feature value ``{"bytes", "path"}``.
        ids: (H, W) segment-id map (0 = void); must match the image size.
        segments: ``segments_info`` entries (see :func:`make_segment`).
        image_id: id of the image in its split.
        num_categories: when given, category ids must lie in ``0..num_categories-1``.
    """
    hw = _image_hw(image)
    if tuple(ids.shape) != hw:
        raise ValueError(f"a mask of shape {tuple(ids.shape)} differs from the image size {hw}")
    if num_categories is not None:
        check_category_ids([s["category_id"] for s in segments], num_categories, "segments_info.category_id")
    if isinstance(image, np.ndarray):
        image = png_image(image.astype(np.uint8))
    elif isinstance(image, Image.Image):
        image = image.convert("RGB")
    return {
        "image_id": int(image_id),
        "image": image,
        "panoptic": png_image(ids_to_rgb(ids)),
        "segments_info": segments,
        "semantic": png_image(semantic_from_panoptic(ids, segments)),
        "label": largest_thing_label(segments),
        "captions": list(captions),
        "referring": [dict(r) for r in referring],
        "interleaved": [dict(r) for r in interleaved],
    }


def records_to_dataset(
    records: list[dict[str, Any]], categories: Sequence[Mapping[str, Any]], **metadata: Any
) -> datasets.Dataset:
    """Turn a list of records into a :class:`datasets.Dataset` carrying the categories table."""
    categories = normalize_categories(categories)
    features = record_features([c["name"] for c in categories])
    columns = {name: [r[name] for r in records] for name in features}
    return datasets.Dataset.from_dict(columns, features=features, info=make_info(categories, features, **metadata))
