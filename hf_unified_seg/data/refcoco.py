"""RefCOCO / RefCOCO+ / RefCOCOg loader from JSON (refs + COCO instances), never from pickles.

The refs file is the JSON form of the original ``refs(<splitBy>).p``: a list (or ``{"refs": [...]}``) of
``{"ref_id", "ann_id", "image_id", "split", "sentences": [{"sent": ...}, ...], ...}``. Masks come from the
instances file (``instances.json``), painted with the overlap rule of :mod:`hf_unified_seg.data.coco`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import datasets

from .coco import _read_image, coco_category_table, instances_to_record_parts, read_coco_json
from .records import build_record, records_to_dataset


def read_refs(refs_file: str | os.PathLike) -> list[dict[str, Any]]:
    """Read a RefCOCO-style refs JSON file (pickles are refused)."""
    path = Path(refs_file)
    if path.suffix.lower() in (".p", ".pkl", ".pickle"):
        raise ValueError(f"`refs_file` {str(path)!r} is a pickle; only JSON is read (convert it to JSON first)")
    if not path.is_file():
        raise ValueError(f"`refs_file` {str(path)!r} is not a file")
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    refs = data.get("refs") if isinstance(data, dict) else data
    if not isinstance(refs, list):
        raise ValueError(f"`refs_file` {str(path)!r} must hold a list of refs or an object with a 'refs' list")
    for k, ref in enumerate(refs):
        missing = {"ann_id", "image_id", "sentences"} - set(ref)
        if missing:
            raise ValueError(f"`refs_file`: ref {k} lacks {sorted(missing)}")
    return refs


def load_refcoco(
    refs_file: str | os.PathLike,
    instances_file: str | os.PathLike,
    image_dir: str | os.PathLike,
    split: str | None = None,
) -> datasets.Dataset:
    """Load referring expressions into the record schema: one record per image with at least one ref.

    Each sentence becomes a ``referring`` entry ``{"sentence", "segment_id", "kind": "refcoco"}`` whose segment
    is the referred instance; refs whose instance has no visible pixel after overlap resolution are dropped.

    Args:
        refs_file: refs JSON.
        instances_file: COCO instances JSON covering the referred images.
        image_dir: folder of the images.
        split: keep only refs of this split ("train", "val", "testA", ...); all refs when None.
    """
    refs = read_refs(refs_file)
    if split is not None:
        known = sorted({str(r.get("split")) for r in refs})
        refs = [r for r in refs if r.get("split") == split]
        if not refs:
            raise ValueError(f"`split` {split!r} has no refs; the file has splits {known}")
    data = read_coco_json(instances_file, "instances_file")
    categories, to_index = coco_category_table(data["categories"], "instances_file")
    images = {int(im["id"]): im for im in data["images"]}
    by_image: dict[int, list[dict[str, Any]]] = {}
    for a in data["annotations"]:
        by_image.setdefault(int(a["image_id"]), []).append(a)
    refs_by_image: dict[int, list[dict[str, Any]]] = {}
    for r in refs:
        refs_by_image.setdefault(int(r["image_id"]), []).append(r)
    records = []
    for image_id in sorted(refs_by_image):
        if image_id not in images:
            raise ValueError(f"`refs_file` refers to image id {image_id}, which is not in `instances_file`")
        im = images[image_id]
        image, hw = _read_image(Path(image_dir), im["file_name"])
        h, w = int(im.get("height", hw[0])), int(im.get("width", hw[1]))
        if (h, w) != hw:
            raise ValueError(f"`instances_file`: image {image_id} is listed as {(h, w)} but the file is {hw}")
        ids, segments, ann_to_seg = instances_to_record_parts(by_image.get(image_id, []), h, w, to_index, categories)
        referring = []
        for r in refs_by_image[image_id]:
            sid = ann_to_seg.get(int(r["ann_id"]))
            if sid is None:
                continue
            for s in r["sentences"]:
                text = s.get("sent", s.get("raw")) if isinstance(s, dict) else str(s)
                referring.append({"sentence": str(text), "segment_id": sid, "kind": "refcoco"})
        records.append(build_record(image, ids, segments, image_id, len(categories), referring=referring))
    return records_to_dataset(
        records, categories, source="refcoco", refs_file=str(refs_file), split=split if split is not None else "all"
    )
