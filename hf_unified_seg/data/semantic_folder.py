"""Image / label-PNG semantic segmentation folders (ADE20K, Cityscapes and generic layouts).

Images and label PNGs are paired by their path relative to the two roots, with the file suffix and the
Cityscapes-style name tails (``_leftImg8bit``, ``_gtFine_labelIds``, ...) removed. Raw label values pass
through, in order: ``reduce_zero_label`` (ADE20K: 0 = "other" becomes ignore, v becomes v - 1), then
``label_map`` (raw value -> category index; unmapped values become ignore), then ``ignore_index`` -> 255.
Any remaining value outside the categories table is an error.

A semantic map has no instances, so each present class becomes one segment (id = index + 1); thing classes
get ``iscrowd=1`` because such a segment may merge several objects.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np
from PIL import Image

from .records import VOID, build_record, make_segment, normalize_categories, records_to_dataset, segment_boxes

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
_NAME_TAILS = ("_leftImg8bit", "_gtFine_labelIds", "_gtFine_trainIds", "_gtCoarse_labelIds", "_labelIds", "_trainIds")

# Cityscapes' 19 evaluation classes (trainId order) and the labelId -> trainId map of its label definition.
CITYSCAPES_CATEGORIES: list[dict[str, Any]] = [
    {"id": i, "name": n, "isthing": i >= 11}
    for i, n in enumerate(
        (
            "road",
            "sidewalk",
            "building",
            "wall",
            "fence",
            "pole",
            "traffic light",
            "traffic sign",
            "vegetation",
            "terrain",
            "sky",
            "person",
            "rider",
            "car",
            "truck",
            "bus",
            "train",
            "motorcycle",
            "bicycle",
        )
    )
]
CITYSCAPES_LABEL_TO_TRAIN: dict[int, int] = {
    7: 0,
    8: 1,
    11: 2,
    12: 3,
    13: 4,
    17: 5,
    19: 6,
    20: 7,
    21: 8,
    22: 9,
    23: 10,
    24: 11,
    25: 12,
    26: 13,
    27: 14,
    28: 15,
    31: 16,
    32: 17,
    33: 18,
}


def _key(path: Path, root: Path) -> str:
    rel = path.relative_to(root).with_suffix("")
    name = rel.name
    for tail in _NAME_TAILS:
        if name.endswith(tail):
            name = name[: -len(tail)]
            break
    return str(rel.parent / name)


def _files(root: Path, suffixes: Sequence[str], must_end: str | None) -> list[Path]:
    out = [p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in suffixes]
    if must_end is not None:
        out = [p for p in out if p.name.endswith(must_end)]
    return sorted(out)


def map_labels(
    raw: np.ndarray,
    num_categories: int,
    label_map: Mapping[int, int] | None = None,
    ignore_index: int = 255,
    reduce_zero_label: bool = False,
    where: str = "label",
) -> np.ndarray:
    """Raw label values -> category indices with 255 as void (see the module docstring for the order)."""
    lab = np.asarray(raw).astype(np.int64)
    ignore = lab == ignore_index
    if reduce_zero_label:
        ignore |= lab == 0
        lab = lab - 1
    if label_map is not None:
        lut_keys = np.array(sorted(label_map), np.int64)
        lut_vals = np.array([label_map[k] for k in sorted(label_map)], np.int64)
        if lut_keys.size:
            pos = np.clip(np.searchsorted(lut_keys, lab), 0, lut_keys.size - 1)
            hit = lut_keys[pos] == lab
        else:
            pos, hit = np.zeros_like(lab), np.zeros(lab.shape, bool)
        ignore |= ~hit
        lab = np.where(hit, lut_vals[pos], 0)
    bad = ~ignore & ((lab < 0) | (lab >= num_categories))
    if bad.any():
        value = int(np.asarray(raw).astype(np.int64)[bad][0])
        raise ValueError(
            f"label id {value} in {where} is outside the categories table (0..{num_categories - 1}); "
            "pass `categories`, `label_map`, `ignore_index` or `reduce_zero_label` to map it"
        )
    return np.where(ignore, VOID, lab).astype(np.uint8)


def generic_categories(num: int) -> list[dict[str, Any]]:
    """``class_<i>`` stuff categories for label folders that come without a names table."""
    return [{"name": f"class_{i}", "isthing": False} for i in range(num)]


def scan_num_categories(
    label_dir: str | os.PathLike,
    label_map: Mapping[int, int] | None = None,
    ignore_index: int = 255,
    reduce_zero_label: bool = False,
    label_suffix: str | None = None,
) -> int:
    """1 + the largest category index in every label PNG under ``label_dir`` (all splits), after mapping.

    Used to give every split of a folder the same categories table when no names are supplied.
    """
    top = -1
    for path in _files(Path(label_dir), (".png",), label_suffix):
        with Image.open(path) as im:
            sem = map_labels(np.asarray(im), 255, label_map, ignore_index, reduce_zero_label, where=str(path))
        if (sem != VOID).any():
            top = max(top, int(sem[sem != VOID].max()))
    return top + 1


def read_ade20k_names(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Category names from ADE20K's ``objectInfo150.csv`` (columns Idx, Ratio, Train, Val, Name)."""
    import csv

    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or "Name" not in rows[0] or "Idx" not in rows[0]:
        raise ValueError(f"`{path}` is not an ADE20K objectInfo150.csv (needs 'Idx' and 'Name' columns)")
    rows.sort(key=lambda r: int(r["Idx"]))
    return [{"name": r["Name"].split(";")[0].strip(), "isthing": False} for r in rows]


def load_semantic_folder(
    image_dir: str | os.PathLike,
    label_dir: str | os.PathLike,
    categories: Sequence[Mapping[str, Any] | str] | None = None,
    label_map: Mapping[int, int] | None = None,
    ignore_index: int = 255,
    reduce_zero_label: bool = False,
    label_suffix: str | None = None,
) -> datasets.Dataset:
    """Load an image folder and a label-PNG folder into the record schema.

    Args:
        image_dir: root of the images (searched recursively).
        label_dir: root of the single-channel label PNGs (searched recursively).
        categories: the categories table (names or dicts with ``name``/``isthing``); default: ``class_<i>`` for
            every index seen (after mapping), all stuff.
        label_map: raw label value -> category index (e.g. :data:`CITYSCAPES_LABEL_TO_TRAIN`); values absent
            from it become void.
        ignore_index: raw value meaning void (255 in ADE20K and Cityscapes trainIds).
        reduce_zero_label: ADE20K convention, raw 0 is void and the rest shift down by one.
        label_suffix: only label files whose name ends with this (e.g. ``"_labelIds.png"`` for Cityscapes).
    """
    image_root, label_root = Path(image_dir), Path(label_dir)
    for arg, root in (("image_dir", image_root), ("label_dir", label_root)):
        if not root.is_dir():
            raise ValueError(f"`{arg}` {str(root)!r} is not a folder")
    if not isinstance(ignore_index, (int, np.integer)) or isinstance(ignore_index, bool):
        raise TypeError(f"`ignore_index` must be an int, got {type(ignore_index).__name__}")
    images = {_key(p, image_root): p for p in _files(image_root, IMAGE_SUFFIXES, None)}
    labels = {_key(p, label_root): p for p in _files(label_root, (".png",), label_suffix)}
    pairs = [(k, images[k], labels[k]) for k in sorted(images) if k in labels]
    if not pairs:
        raise ValueError(
            f"no image in `image_dir` {str(image_root)!r} has a label PNG with the same relative name in "
            f"`label_dir` {str(label_root)!r}"
        )
    num = 255 if categories is None else len(categories)
    if num > 255:
        raise ValueError(f"`categories` has {num} entries; semantic maps hold at most 255 classes (255 = void)")
    sems = []
    for key, image_path, label_path in pairs:
        with Image.open(label_path) as lab_im:
            raw = np.asarray(lab_im)
        if raw.ndim != 2:
            raise ValueError(
                f"`label_dir`: {label_path.name} must be a single-channel label PNG, got shape {raw.shape}"
            )
        with Image.open(image_path) as im:
            hw = (im.height, im.width)
        if raw.shape != hw:
            raise ValueError(f"`label_dir`: mask {label_path.name} has shape {raw.shape} but its image has shape {hw}")
        sems.append(map_labels(raw, num, label_map, ignore_index, reduce_zero_label, where=f"`label_dir` file {key}"))
    if categories is None:
        top = max((int(s[s != VOID].max()) for s in sems if (s != VOID).any()), default=-1)
        categories = generic_categories(top + 1)
    table = normalize_categories(categories)
    records = []
    for image_id, ((_, image_path, _), sem) in enumerate(zip(pairs, sems)):
        present = [int(v) for v in np.unique(sem) if v != VOID]
        ids = np.where(sem == VOID, 0, sem.astype(np.int64) + 1)
        boxes = segment_boxes(ids, [c + 1 for c in present])
        segments = []
        for c in present:
            bbox, area = boxes[c + 1]
            thing = table[c]["isthing"]
            segments.append(make_segment(c + 1, c, thing, bbox, area, iscrowd=int(thing)))
        with Image.open(image_path) as im:
            buf = io.BytesIO()
            im.convert("RGB").save(buf, format="PNG")
        records.append(build_record({"bytes": buf.getvalue(), "path": None}, ids, segments, image_id, len(table)))
    return records_to_dataset(records, table, source="semantic_folder", image_dir=str(image_root))
