"""COCO panoptic / instances exporters and loaders, in the record schema of :mod:`hf_unified_seg.data.records`.

On disk, category ids are COCO-style: the exporter writes ``index + 1``; the loaders map whatever ids a file
uses to contiguous indices ``0..K-1`` in sorted id order. Exported layout (COCO's own)::

    <output_dir>/<name>/<image_id:012d>.png                 images
    <output_dir>/annotations/panoptic_<name>.json           COCO panoptic JSON
    <output_dir>/annotations/panoptic_<name>/<id>.png       panoptic PNGs (id = R + 256 G + 256^2 B)
    <output_dir>/annotations/instances_<name>.json          COCO instances JSON, masks as compressed RLE

Instances loader overlap rule: an instance annotation is a full (possibly occluded-through) mask and COCO
masks may overlap, while a record assigns each pixel to one segment. Crowd regions are painted first, then
the other instances in decreasing area, so **the smaller instance wins every contested pixel** (small objects
usually lie in front). Instances left with no visible pixel are dropped.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from .records import (
    build_record,
    check_category_ids,
    get_categories,
    get_metadata,
    make_segment,
    records_to_dataset,
    rgb_to_ids,
    segment_boxes,
)

_ATTRS = ("color", "size", "pattern", "depth")


# --------------------------------------------------------------------------- helpers


def _split_name(dataset: datasets.Dataset, name: str | None) -> str:
    if name is not None:
        if not name or "/" in name or os.sep in name:
            raise ValueError(f"`name` must be a plain folder name, got {name!r}")
        return name
    return str(get_metadata(dataset).get("split", "default"))


def _file_name(image_id: int) -> str:
    return f"{int(image_id):012d}.png"


def _coco_categories(categories: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "id": c["id"] + 1,
            "name": c["name"],
            "supercategory": "thing" if c["isthing"] else "stuff",
            "isthing": int(c["isthing"]),
            "openvocab": int(c.get("openvocab", False)),
        }
        for c in categories
    ]


def _write_images(dataset: datasets.Dataset, image_dir: Path) -> list[dict[str, Any]]:
    image_dir.mkdir(parents=True, exist_ok=True)
    entries = []
    for r in dataset:
        name = _file_name(r["image_id"])
        path = image_dir / name
        if not path.exists():
            r["image"].convert("RGB").save(path)
        entries.append(
            {"id": int(r["image_id"]), "file_name": name, "width": r["image"].width, "height": r["image"].height}
        )
    return entries


def _write_json(
    path: Path, name: str, images: list[dict], annotations: list[dict], categories: Sequence[Mapping[str, Any]]
) -> Path:
    payload = {
        "info": {"description": f"hf_unified_seg export of split {name!r}"},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": _coco_categories(categories),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload))
    return path


def export_coco_panoptic(dataset: datasets.Dataset, output_dir: str | os.PathLike, name: str | None = None) -> Path:
    """Write a split as COCO panoptic (JSON + PNG folder + images). Returns the JSON path.

    Args:
        dataset: records in this package's schema (ShapesWorld or any loader's output).
        output_dir: root folder (created).
        name: split name used in file names (default: the split recorded in the dataset, else "default").
    """
    name = _split_name(dataset, name)
    root = Path(output_dir)
    categories = get_categories(dataset)
    images = _write_images(dataset, root / name)
    png_dir = root / "annotations" / f"panoptic_{name}"
    png_dir.mkdir(parents=True, exist_ok=True)
    annotations = []
    for r in dataset:
        check_category_ids(
            [s["category_id"] for s in r["segments_info"]], len(categories), "segments_info.category_id"
        )
        file_name = _file_name(r["image_id"])
        r["panoptic"].convert("RGB").save(png_dir / file_name)
        segs = []
        for s in r["segments_info"]:
            seg = {
                "id": int(s["id"]),
                "category_id": int(s["category_id"]) + 1,
                "iscrowd": int(s["iscrowd"]),
                "bbox": [int(v) for v in s["bbox"]],
                "area": int(s["area"]),
            }
            seg.update({k: s[k] for k in _ATTRS if k in s})
            segs.append(seg)
        annotations.append({"image_id": int(r["image_id"]), "file_name": file_name, "segments_info": segs})
    return _write_json(root / "annotations" / f"panoptic_{name}.json", name, images, annotations, categories)


def export_coco_instances(
    dataset: datasets.Dataset, output_dir: str | os.PathLike, name: str | None = None, include_stuff: bool = False
) -> Path:
    """Write a split as COCO instances JSON with compressed-RLE masks (+ images). Returns the JSON path.

    Each segment's *visible* mask becomes one annotation; stuff segments are written only when
    ``include_stuff`` (COCO "stuff" style). The categories list always holds the whole table.
    """
    name = _split_name(dataset, name)
    root = Path(output_dir)
    categories = get_categories(dataset)
    images = _write_images(dataset, root / name)
    annotations = []
    for r in dataset:
        check_category_ids(
            [s["category_id"] for s in r["segments_info"]], len(categories), "segments_info.category_id"
        )
        ids = rgb_to_ids(r["panoptic"])
        for s in r["segments_info"]:
            if not (s["isthing"] or include_stuff):
                continue
            rle = mask_utils.encode(np.asfortranarray((ids == s["id"]).astype(np.uint8)))
            ann = {
                "id": len(annotations) + 1,
                "image_id": int(r["image_id"]),
                "category_id": int(s["category_id"]) + 1,
                "segmentation": {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")},
                "area": float(mask_utils.area(rle)),
                "bbox": [float(v) for v in mask_utils.toBbox(rle)],
                "iscrowd": int(s["iscrowd"]),
                "segment_id": int(s["id"]),
            }
            ann.update({k: s[k] for k in _ATTRS if k in s})
            annotations.append(ann)
    return _write_json(root / "annotations" / f"instances_{name}.json", name, images, annotations, categories)


def export_coco(
    dataset: datasets.Dataset | datasets.DatasetDict, output_dir: str | os.PathLike, name: str | None = None
) -> dict[str, Any]:
    """Both exports of one split, or of every split of a DatasetDict (named by their keys) into one folder.

    Returns ``{"panoptic": json path, "instances": json path}``, or ``{split: that dict}`` for a DatasetDict.
    """
    if isinstance(dataset, datasets.DatasetDict):
        if name is not None:
            raise ValueError("`name` applies to a single split; a DatasetDict's splits are named by their keys")
        return {split: export_coco(ds, output_dir, split) for split, ds in dataset.items()}
    if not isinstance(dataset, datasets.Dataset):
        raise TypeError(f"`dataset` must be a datasets.Dataset or DatasetDict, got {type(dataset).__name__}")
    return {
        "panoptic": export_coco_panoptic(dataset, output_dir, name),
        "instances": export_coco_instances(dataset, output_dir, name),
    }


# --------------------------------------------------------------------------- loading


def read_coco_json(annotation_file: str | os.PathLike, argument: str = "annotation_file") -> dict[str, Any]:
    """Read a COCO-style JSON file and check it has ``images``, ``annotations`` and ``categories`` lists."""
    path = Path(annotation_file)
    if not path.is_file():
        raise ValueError(f"`{argument}` {str(path)!r} is not a file")
    if path.suffix.lower() in (".p", ".pkl", ".pickle"):
        raise ValueError(f"`{argument}` {str(path)!r} is a pickle; only JSON is read (convert it to JSON first)")
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, dict):
        raise ValueError(f"`{argument}` {str(path)!r} must hold a JSON object, got {type(data).__name__}")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise ValueError(f"`{argument}` {str(path)!r} has no {key!r} list; not a COCO annotation file")
    return data


def coco_category_table(
    coco_categories: Sequence[Mapping[str, Any]], argument: str = "annotation_file"
) -> tuple[list[dict[str, Any]], dict[int, int]]:
    """Contiguous categories table and the ``{coco id: index}`` map (sorted id order)."""
    cats = sorted(coco_categories, key=lambda c: int(c["id"]))
    ids = [int(c["id"]) for c in cats]
    if len(set(ids)) != len(ids):
        raise ValueError(f"`{argument}` lists a category id twice")
    table = [
        {
            "id": i,
            "name": str(c.get("name", c["id"])),
            "isthing": bool(c.get("isthing", 1)),
            "openvocab": bool(c.get("openvocab", 0)),
        }
        for i, c in enumerate(cats)
    ]
    return table, {cid: i for i, cid in enumerate(ids)}


def _map_category(coco_to_index: Mapping[int, int], category_id: Any, argument: str) -> int:
    try:
        return coco_to_index[int(category_id)]
    except KeyError:
        raise ValueError(
            f"`{argument}` uses category id {category_id}, which is not in its 'categories' list "
            f"(known ids: {sorted(coco_to_index)[:10]}{'...' if len(coco_to_index) > 10 else ''})"
        ) from None


def _read_image(
    image_dir: Path, file_name: str, argument: str = "image_dir"
) -> tuple[dict[str, Any], tuple[int, int]]:
    path = image_dir / file_name
    if not path.is_file():
        raise ValueError(f"`{argument}`: image file {str(path)!r} not found")
    data = path.read_bytes()
    with Image.open(io.BytesIO(data)) as im:
        size = (im.height, im.width)
        if im.mode != "RGB":  # store RGB so every record's image has the same mode
            buf = io.BytesIO()
            im.convert("RGB").save(buf, format="PNG")
            data = buf.getvalue()
    return {"bytes": data, "path": None}, size


def _check_size(mask_hw: tuple[int, int], image_hw: tuple[int, int], what: str, argument: str) -> None:
    if tuple(mask_hw) != tuple(image_hw):
        raise ValueError(f"`{argument}`: {what} has shape {tuple(mask_hw)} but the image has shape {tuple(image_hw)}")


def load_coco_panoptic(
    annotation_file: str | os.PathLike,
    image_dir: str | os.PathLike,
    panoptic_dir: str | os.PathLike | None = None,
) -> datasets.Dataset:
    """Load COCO panoptic annotations into the record schema.

    Args:
        annotation_file: ``panoptic_<split>.json``.
        image_dir: folder of the images named by ``images[].file_name``.
        panoptic_dir: folder of the panoptic PNGs (default: the JSON path without ``.json``, COCO's layout).
    """
    data = read_coco_json(annotation_file)
    categories, to_index = coco_category_table(data["categories"])
    png_dir = Path(panoptic_dir) if panoptic_dir is not None else Path(annotation_file).with_suffix("")
    if not png_dir.is_dir():
        raise ValueError(f"`panoptic_dir` {str(png_dir)!r} is not a folder")
    images = {int(im["id"]): im for im in data["images"]}
    records = []
    for ann in data["annotations"]:
        im = images.get(int(ann["image_id"]))
        if im is None:
            raise ValueError(f"`annotation_file`: annotation for unknown image id {ann['image_id']}")
        image, hw = _read_image(Path(image_dir), im["file_name"])
        png = png_dir / ann.get("file_name", Path(im["file_name"]).with_suffix(".png").name)
        if not png.is_file():
            raise ValueError(f"`panoptic_dir`: panoptic PNG {str(png)!r} not found")
        with Image.open(png) as p:
            ids = rgb_to_ids(p.convert("RGB"))
        _check_size(ids.shape, hw, f"panoptic PNG {png.name}", "panoptic_dir")
        listed = {int(s["id"]) for s in ann["segments_info"]}
        present = set(np.unique(ids).tolist()) - {0}
        if present - listed:
            raise ValueError(
                f"`panoptic_dir`: {png.name} has segment ids {sorted(present - listed)} missing from segments_info"
            )
        boxes = segment_boxes(ids, sorted(listed))
        segments = []
        for s in ann["segments_info"]:
            index = _map_category(to_index, s["category_id"], "annotation_file")
            bbox, area = boxes[int(s["id"])]
            if area == 0:
                continue
            extra = {k: s[k] for k in _ATTRS if k in s}
            segments.append(
                make_segment(
                    int(s["id"]), index, categories[index]["isthing"], bbox, area, int(s.get("iscrowd", 0)), **extra
                )
            )
        records.append(build_record(image, ids, segments, im["id"], len(categories)))
    return records_to_dataset(records, categories, source="coco_panoptic", annotation_file=str(annotation_file))


def _instance_mask(segmentation: Any, h: int, w: int) -> np.ndarray:
    if isinstance(segmentation, list):  # polygons
        if not segmentation:
            return np.zeros((h, w), bool)
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, h, w))
    elif isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), list):  # uncompressed RLE
        rle = mask_utils.frPyObjects(segmentation, h, w)
    elif isinstance(segmentation, dict) and "counts" in segmentation:  # compressed RLE
        rle = segmentation
    else:
        raise ValueError(f"`annotation_file`: unsupported segmentation {type(segmentation).__name__}")
    mask = mask_utils.decode(rle).astype(bool)
    if mask.shape != (h, w):
        raise ValueError(f"`annotation_file`: a mask of shape {mask.shape} differs from its image size {(h, w)}")
    return mask


def instances_to_record_parts(
    anns: Sequence[Mapping[str, Any]],
    h: int,
    w: int,
    to_index: Mapping[int, int],
    categories: Sequence[Mapping[str, Any]],
) -> tuple[np.ndarray, list[dict[str, Any]], dict[int, int]]:
    """Paint instance annotations into one segment-id map (smaller instances win overlaps; crowd first).

    Returns ``(ids, segments, {annotation id: segment id})``; segment ids are 1.. in annotation order.
    """
    indexed = [(k + 1, a) for k, a in enumerate(anns)]
    masks = {sid: _instance_mask(a["segmentation"], h, w) for sid, a in indexed}
    # crowd underneath, then large to small; ties keep annotation order (later wins)
    order = sorted(indexed, key=lambda p: (-int(p[1].get("iscrowd", 0)), -int(masks[p[0]].sum()), p[0]))
    ids = np.zeros((h, w), np.int64)
    for sid, _ in order:
        ids[masks[sid]] = sid
    boxes = segment_boxes(ids, [sid for sid, _ in indexed])
    segments, ann_to_seg = [], {}
    for sid, a in indexed:
        index = _map_category(to_index, a["category_id"], "annotation_file")
        bbox, area = boxes[sid]
        if area == 0:
            continue
        extra = {k: a[k] for k in _ATTRS if k in a}
        segments.append(
            make_segment(sid, index, categories[index]["isthing"], bbox, area, int(a.get("iscrowd", 0)), **extra)
        )
        if "id" in a:
            ann_to_seg[int(a["id"])] = sid
    return ids, segments, ann_to_seg


def load_coco_instances(
    annotation_file: str | os.PathLike, image_dir: str | os.PathLike, image_ids: Sequence[int] | None = None
) -> datasets.Dataset:
    """Load COCO instances annotations (polygons, uncompressed or compressed RLE) into the record schema.

    Overlaps are resolved as described in the module docstring (smaller instance on top, crowd below).
    Images without annotations are kept (all void).

    Args:
        annotation_file: ``instances_<split>.json``.
        image_dir: folder of the images named by ``images[].file_name``.
        image_ids: optional subset of image ids to load (in this order).
    """
    data = read_coco_json(annotation_file)
    categories, to_index = coco_category_table(data["categories"])
    by_image: dict[int, list[dict[str, Any]]] = {}
    for a in data["annotations"]:
        by_image.setdefault(int(a["image_id"]), []).append(a)
    images = {int(im["id"]): im for im in data["images"]}
    unknown = set(by_image) - set(images)
    if unknown:
        raise ValueError(f"`annotation_file`: annotations refer to unknown image ids {sorted(unknown)[:5]}")
    wanted = list(images) if image_ids is None else [int(i) for i in image_ids]
    records = []
    for image_id in wanted:
        if image_id not in images:
            raise ValueError(f"`image_ids` contains {image_id}, which is not in `annotation_file`")
        im = images[image_id]
        image, hw = _read_image(Path(image_dir), im["file_name"])
        h, w = int(im.get("height", hw[0])), int(im.get("width", hw[1]))
        _check_size((h, w), hw, f"image entry {image_id} (height, width)", "annotation_file")
        ids, segments, _ = instances_to_record_parts(by_image.get(image_id, []), h, w, to_index, categories)
        records.append(build_record(image, ids, segments, image_id, len(categories)))
    return records_to_dataset(records, categories, source="coco_instances", annotation_file=str(annotation_file))
