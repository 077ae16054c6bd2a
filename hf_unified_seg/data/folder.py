"""Recognise a dataset folder's layout and load it into the record schema (``--dataset <folder>``).

Recognised layouts (checked in this order):

``"hf_disk"``
    the output of ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk`` (``state.json`` or
    ``dataset_dict.json``), e.g. a saved ShapesWorld.
``"refcoco"``
    ``refs*.json`` next to ``instances*.json`` (in the folder or in ``annotations/``); images in ``images/``,
    ``train2014/`` or the folder itself.
``"coco_panoptic"``
    ``annotations/panoptic_<name>.json`` with its ``annotations/panoptic_<name>/`` PNG folder; images in
    ``<name>/`` or ``images/<name>/`` or ``images/``.
``"coco_instances"``
    ``annotations/instances_<name>.json``; images as for panoptic.
``"cityscapes"``
    ``leftImg8bit/<split>/...`` and ``gtFine/<split>/...`` (``*_labelIds.png`` mapped to the 19 train classes).
``"ade20k"``
    ``images/<training|validation>/`` and ``annotations/<training|validation>/`` label PNGs
    (``reduce_zero_label``: 0 is void); names from ``objectInfo150.csv`` when present.
``"semantic_folder"``
    ``images/`` and ``labels/`` (or ``masks/``) with matching names; label values are category indices.

Without ``categories`` (and without ``objectInfo150.csv``) a semantic folder gets ``class_<i>`` names for every
index found in any of its splits, so train and val share one table.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import datasets

from .coco import load_coco_instances, load_coco_panoptic
from .refcoco import load_refcoco
from .semantic_folder import (
    CITYSCAPES_CATEGORIES,
    CITYSCAPES_LABEL_TO_TRAIN,
    generic_categories,
    load_semantic_folder,
    read_ade20k_names,
    scan_num_categories,
)

FORMATS = ("hf_disk", "refcoco", "coco_panoptic", "coco_instances", "cityscapes", "ade20k", "semantic_folder")
_SPLIT_ALIASES = {
    "train": ("train", "training", "train2017", "train2014"),
    "val": ("val", "validation", "val2017", "val2014"),
    "test": ("test", "testing", "test2017"),
}


def _jsons(folder: Path, prefix: str) -> list[Path]:
    out = []
    for d in (folder, folder / "annotations"):
        if d.is_dir():
            out += sorted(p for p in d.glob(f"{prefix}*.json") if p.is_file())
    return out


def _has_png(folder: Path) -> bool:
    return folder.is_dir() and any(p.suffix.lower() == ".png" for p in folder.rglob("*"))


def detect_format(folder: str | os.PathLike) -> str:
    """Name of the layout of ``folder`` (one of :data:`FORMATS`); ValueError for anything else."""
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"`folder` {str(root)!r} is not a directory")
    if (root / "dataset_dict.json").is_file() or (root / "state.json").is_file():
        return "hf_disk"
    if _jsons(root, "refs") and _jsons(root, "instances"):
        return "refcoco"
    if any(p.with_suffix("").is_dir() for p in _jsons(root, "panoptic_")):
        return "coco_panoptic"
    if _jsons(root, "instances"):
        return "coco_instances"
    if (root / "leftImg8bit").is_dir() and (root / "gtFine").is_dir():
        return "cityscapes"
    if (root / "images").is_dir() and _has_png(root / "annotations"):
        return "ade20k"
    if (root / "images").is_dir() and (_has_png(root / "labels") or _has_png(root / "masks")):
        return "semantic_folder"
    raise ValueError(
        f"`folder` {str(root)!r} has no recognised dataset layout; expected one of {list(FORMATS)} "
        "(see hf_unified_seg.data.folder for what each looks like)"
    )


def _pick_json(candidates: list[Path], prefix: str, split: str | None) -> Path:
    if len(candidates) == 1 and split is None:
        return candidates[0]
    names = {p.stem[len(prefix) :]: p for p in candidates}
    if split is None:
        raise ValueError(f"`split` is required: the folder has several annotation files {sorted(names)}")
    for alias in _SPLIT_ALIASES.get(split, (split,)):
        if alias in names:
            return names[alias]
    if len(candidates) == 1:
        return candidates[0]
    raise ValueError(f"`split` {split!r} matches none of the annotation files {sorted(names)}")


def _coco_image_dir(root: Path, name: str) -> Path:
    for cand in (root / name, root / "images" / name, root / "images", root):
        if cand.is_dir() and any(p.suffix.lower() in (".jpg", ".jpeg", ".png") for p in cand.iterdir()):
            return cand
    raise ValueError(f"no image folder for {name!r} under {str(root)!r} (tried {name}/, images/{name}/, images/)")


def _split_subdir(parent: Path, split: str | None) -> Path:
    if split is None:
        return parent
    for alias in _SPLIT_ALIASES.get(split, (split,)):
        if (parent / alias).is_dir():
            return parent / alias
    subdirs = sorted(p.name for p in parent.iterdir() if p.is_dir())
    if subdirs and all(s in {a for v in _SPLIT_ALIASES.values() for a in v} for s in subdirs):
        raise ValueError(f"`split` {split!r} not found under {str(parent)!r}; available: {subdirs}")
    return parent


def load_folder(folder: str | os.PathLike, split: str | None = "train", **kwargs: Any) -> datasets.Dataset:
    """Load any recognised dataset folder (see :func:`detect_format`) as a :class:`datasets.Dataset`.

    Args:
        folder: the dataset root.
        split: which split to read when the folder has several ("train", "val", "test" or a literal name such
            as "val2017" or RefCOCO's "testA"); None reads the only one (or, for RefCOCO, all refs). A COCO
            folder with a single annotation file is read whatever ``split`` says.
        **kwargs: passed to the format's loader (e.g. ``categories``, ``label_map``, ``ignore_index`` for
            semantic folders; ``image_dir`` to override where images are looked for).
    """
    root = Path(folder)
    fmt = detect_format(root)
    if fmt == "hf_disk":
        ds = datasets.load_from_disk(str(root))
        if isinstance(ds, datasets.DatasetDict):
            if split is None:
                if len(ds) != 1:
                    raise ValueError(f"`split` is required: the saved DatasetDict has splits {list(ds)}")
                return next(iter(ds.values()))
            if split not in ds:
                raise ValueError(f"`split` {split!r} is not in the saved DatasetDict (splits: {list(ds)})")
            return ds[split]
        return ds
    if fmt == "refcoco":
        refs = _jsons(root, "refs")
        if len(refs) > 1:
            raise ValueError(f"several refs files in {str(root)!r}: {[p.name for p in refs]}; call load_refcoco")
        instances = _jsons(root, "instances")[0]
        image_dir = kwargs.pop("image_dir", None) or _coco_image_dir(root, "train2014")
        return load_refcoco(refs[0], instances, image_dir, split=split, **kwargs)
    if fmt in ("coco_panoptic", "coco_instances"):
        prefix = "panoptic_" if fmt == "coco_panoptic" else "instances_"
        cands = [p for p in _jsons(root, prefix) if fmt == "coco_instances" or p.with_suffix("").is_dir()]
        path = _pick_json(cands, prefix, split)
        name = path.stem[len(prefix) :]
        image_dir = kwargs.pop("image_dir", None) or _coco_image_dir(root, name)
        loader = load_coco_panoptic if fmt == "coco_panoptic" else load_coco_instances
        return loader(path, image_dir, **kwargs)
    if fmt == "cityscapes":
        kwargs.setdefault("categories", CITYSCAPES_CATEGORIES)
        kwargs.setdefault("label_map", CITYSCAPES_LABEL_TO_TRAIN)
        kwargs.setdefault("label_suffix", "_labelIds.png")
        return load_semantic_folder(
            _split_subdir(root / "leftImg8bit", split), _split_subdir(root / "gtFine", split), **kwargs
        )
    if fmt == "ade20k":
        kwargs.setdefault("reduce_zero_label", True)
        if kwargs.get("categories") is None and (root / "objectInfo150.csv").is_file():
            kwargs["categories"] = read_ade20k_names(root / "objectInfo150.csv")
        label_root = root / "annotations"
    else:
        label_root = root / "labels" if (root / "labels").is_dir() else root / "masks"
    if kwargs.get("categories") is None:
        # scan every split so train and val share one categories table
        scan = {
            k: kwargs[k] for k in ("label_map", "ignore_index", "reduce_zero_label", "label_suffix") if k in kwargs
        }
        kwargs["categories"] = generic_categories(scan_num_categories(label_root, **scan))
    return load_semantic_folder(_split_subdir(root / "images", split), _split_subdir(label_root, split), **kwargs)
