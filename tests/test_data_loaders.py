"""Real-format loaders on hand-written fixtures, COCO export round trips, folder detection and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from hf_unified_seg.data import (
    build_shapesworld,
    detect_format,
    export_coco,
    export_coco_instances,
    get_categories,
    instance_masks,
    load_coco_instances,
    load_coco_panoptic,
    load_folder,
    load_refcoco,
    load_semantic_folder,
    load_shapesworld,
)
from hf_unified_seg.data.records import rgb_to_ids


def _write_rgb(path: Path, h: int, w: int, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)


def _write_label(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr.astype(np.uint8)).save(path)


# --------------------------------------------------------------------------- COCO instances


def _instances_fixture(root: Path) -> dict:
    h, w = 20, 30
    _write_rgb(root / "val2017" / "a.jpg", h, w)
    _write_rgb(root / "val2017" / "b.png", h, w, seed=1)
    big = np.zeros((h, w), np.uint8)
    big[2:18, 2:20] = 1  # 288 px
    small = np.zeros((h, w), np.uint8)
    small[10:15, 15:25] = 1  # 50 px, overlaps big on rows 10-14, cols 15-19
    crowd = np.zeros((h, w), np.uint8)
    crowd[0:4, 22:30] = 1
    rle_small = mask_utils.encode(np.asfortranarray(small))
    uncompressed = {"size": [h, w], "counts": []}
    # uncompressed RLE written by hand: column-major runs of 0s and 1s
    flat = crowd.flatten(order="F")
    runs, cur, n = [], 0, 0
    for v in flat:
        if v == cur:
            n += 1
        else:
            runs.append(n)
            cur, n = v, 1
    runs.append(n)
    uncompressed["counts"] = [int(r) for r in runs]
    anns = [
        # polygon of the big rectangle (pixel corners)
        {"id": 11, "image_id": 1, "category_id": 17, "iscrowd": 0, "segmentation": [[2, 2, 20, 2, 20, 18, 2, 18]]},
        {
            "id": 12,
            "image_id": 1,
            "category_id": 5,
            "iscrowd": 0,
            "segmentation": {"size": [h, w], "counts": rle_small["counts"].decode()},
        },
        {"id": 13, "image_id": 1, "category_id": 90, "iscrowd": 1, "segmentation": uncompressed},
        {"id": 14, "image_id": 2, "category_id": 5, "iscrowd": 0, "segmentation": [[0, 0, 10, 0, 10, 10, 0, 10]]},
    ]
    data = {
        "images": [
            {"id": 1, "file_name": "a.jpg", "height": h, "width": w},
            {"id": 2, "file_name": "b.png", "height": h, "width": w},
        ],
        "annotations": anns,
        "categories": [
            {"id": 17, "name": "dog", "isthing": 1},
            {"id": 5, "name": "cat"},
            {"id": 90, "name": "crowdthing"},
        ],
    }
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps(data))
    return {"big": big.astype(bool), "small": small.astype(bool), "crowd": crowd.astype(bool), "data": data}


def test_coco_instances_loader(tmp_path):
    fx = _instances_fixture(tmp_path)
    ds = load_coco_instances(tmp_path / "annotations" / "instances_val2017.json", tmp_path / "val2017")
    cats = get_categories(ds)
    # COCO ids 5, 17, 90 -> contiguous 0, 1, 2 in sorted id order
    assert [c["name"] for c in cats] == ["cat", "dog", "crowdthing"]
    r = ds[0]
    assert r["image"].mode == "RGB" and r["image"].size == (30, 20)
    masks, cat_ids, _ = instance_masks(r)
    by_cat = {int(c): m for m, c in zip(masks, cat_ids)}
    poly = mask_utils.decode(mask_utils.frPyObjects([[2, 2, 20, 2, 20, 18, 2, 18]], 20, 30)).squeeze(-1).astype(bool)
    # smaller instance wins the overlap; the big one keeps the rest of its polygon
    np.testing.assert_array_equal(by_cat[0], fx["small"])
    np.testing.assert_array_equal(by_cat[1], poly & ~fx["small"])
    np.testing.assert_array_equal(by_cat[2], fx["crowd"])
    crowd = next(s for s in r["segments_info"] if s["category_id"] == 2)
    assert crowd["iscrowd"] == 1
    sem = np.asarray(r["semantic"])
    assert (sem[fx["small"]] == 0).all() and (sem[~(poly | fx["small"] | fx["crowd"])] == 255).all()
    assert r["label"] == 1  # the dog is the largest visible thing
    assert len(ds) == 2 and ds[1]["segments_info"][0]["category_id"] == 0
    assert detect_format(tmp_path) == "coco_instances"
    assert len(load_folder(tmp_path, split="val")) == 2


def test_coco_instances_errors(tmp_path):
    fx = _instances_fixture(tmp_path)
    bad = dict(fx["data"])
    del bad["annotations"]
    path = tmp_path / "annotations" / "instances_bad.json"
    path.write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="annotation_file.*annotations"):
        load_coco_instances(path, tmp_path / "val2017")
    bad = json.loads(json.dumps(fx["data"]))
    bad["annotations"][0]["category_id"] = 3
    path.write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="annotation_file.*category id 3"):
        load_coco_instances(path, tmp_path / "val2017")
    bad = json.loads(json.dumps(fx["data"]))
    bad["images"][0]["height"] = 21  # the mask size no longer matches the image
    path.write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="shape"):
        load_coco_instances(path, tmp_path / "val2017")


# --------------------------------------------------------------------------- COCO panoptic


def test_coco_panoptic_loader(tmp_path):
    h, w = 16, 24
    _write_rgb(tmp_path / "images" / "im.jpg", h, w)
    ids = np.zeros((h, w), np.int64)
    ids[:8] = 2_000_001  # stuff, needs all three channels
    ids[8:] = 7001
    ids[4:12, 4:10] = 5000  # thing
    ids[0, 0] = 0  # void
    rgb = np.stack([ids % 256, (ids // 256) % 256, ids // 65536], -1).astype(np.uint8)
    (tmp_path / "annotations" / "panoptic_val").mkdir(parents=True)
    Image.fromarray(rgb).save(tmp_path / "annotations" / "panoptic_val" / "im.png")
    data = {
        "images": [{"id": 3, "file_name": "im.jpg", "height": h, "width": w}],
        "annotations": [
            {
                "image_id": 3,
                "file_name": "im.png",
                "segments_info": [
                    {"id": 5000, "category_id": 1, "iscrowd": 0},
                    {"id": 7001, "category_id": 42, "iscrowd": 0},
                    {"id": 2_000_001, "category_id": 7, "iscrowd": 0},
                ],
            }
        ],
        "categories": [
            {"id": 1, "name": "person", "isthing": 1},
            {"id": 7, "name": "sky", "isthing": 0},
            {"id": 42, "name": "grass", "isthing": 0},
        ],
    }
    (tmp_path / "annotations" / "panoptic_val.json").write_text(json.dumps(data))
    ds = load_coco_panoptic(tmp_path / "annotations" / "panoptic_val.json", tmp_path / "images")
    r = ds[0]
    np.testing.assert_array_equal(rgb_to_ids(r["panoptic"]), ids)
    expected_sem = np.select([ids == 5000, ids == 2_000_001, ids == 7001], [0, 1, 2], 255)
    np.testing.assert_array_equal(np.asarray(r["semantic"]), expected_sem)
    segs = {s["id"]: s for s in r["segments_info"]}
    assert segs[5000]["isthing"] and not segs[7001]["isthing"]
    assert segs[5000]["bbox"] == [4, 4, 6, 8] and segs[5000]["area"] == 48
    assert r["label"] == 0 and r["image_id"] == 3
    assert detect_format(tmp_path) == "coco_panoptic"
    assert len(load_folder(tmp_path, split="val")) == 1
    # a label id outside the categories table
    data["annotations"][0]["segments_info"][0]["category_id"] = 99
    (tmp_path / "annotations" / "panoptic_val.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="annotation_file.*99"):
        load_coco_panoptic(tmp_path / "annotations" / "panoptic_val.json", tmp_path / "images")


# --------------------------------------------------------------------------- RefCOCO


def test_refcoco_loader(tmp_path):
    fx = _instances_fixture(tmp_path)
    refs = [
        {
            "ref_id": 0,
            "ann_id": 12,
            "image_id": 1,
            "split": "val",
            "sentences": [{"sent": "the small cat"}, {"sent": "cat"}],
        },
        {"ref_id": 1, "ann_id": 11, "image_id": 1, "split": "train", "sentences": [{"sent": "big dog"}]},
        {"ref_id": 2, "ann_id": 14, "image_id": 2, "split": "val", "sentences": [{"sent": "top-left cat"}]},
    ]
    (tmp_path / "refs(unc).json").write_text(json.dumps(refs))
    inst = tmp_path / "annotations" / "instances_val2017.json"
    ds = load_refcoco(tmp_path / "refs(unc).json", inst, tmp_path / "val2017", split="val")
    assert len(ds) == 2
    r = ds[0]
    assert [x["sentence"] for x in r["referring"]] == ["the small cat", "cat"]
    ids = rgb_to_ids(r["panoptic"])
    np.testing.assert_array_equal(ids == r["referring"][0]["segment_id"], fx["small"])
    all_refs = load_refcoco(tmp_path / "refs(unc).json", inst, tmp_path / "val2017")
    assert sum(len(x["referring"]) for x in all_refs) == 4
    assert detect_format(tmp_path) == "refcoco"
    assert len(load_folder(tmp_path, split="val", image_dir=tmp_path / "val2017")) == 2
    (tmp_path / "refs(unc).p").write_bytes(b"not read")
    with pytest.raises(ValueError, match="refs_file.*pickle"):
        load_refcoco(tmp_path / "refs(unc).p", inst, tmp_path / "val2017")
    with pytest.raises(ValueError, match="split"):
        load_refcoco(tmp_path / "refs(unc).json", inst, tmp_path / "val2017", split="testB")


# --------------------------------------------------------------------------- semantic folders


def test_ade20k_layout(tmp_path):
    lab = np.array([[0, 1, 2], [3, 150, 255]], np.uint8).repeat(4, 0).repeat(4, 1)
    _write_rgb(tmp_path / "images" / "training" / "ADE_train_1.jpg", 8, 12)
    _write_label(tmp_path / "annotations" / "training" / "ADE_train_1.png", lab)
    _write_rgb(tmp_path / "images" / "validation" / "ADE_val_1.jpg", 8, 12)
    _write_label(tmp_path / "annotations" / "validation" / "ADE_val_1.png", np.minimum(lab, 3))
    assert detect_format(tmp_path) == "ade20k"
    ds = load_folder(tmp_path, split="train", categories=[f"c{i}" for i in range(150)])
    sem = np.asarray(ds[0]["semantic"])
    expected = np.array([[255, 0, 1], [2, 149, 255]]).repeat(4, 0).repeat(4, 1)
    np.testing.assert_array_equal(sem, expected)
    assert len(get_categories(ds)) == 150
    # without a categories table, one class per index seen in any split: val (labels <= 3) matches train
    val = load_folder(tmp_path, split="val")
    assert get_categories(val) == get_categories(load_folder(tmp_path, split="train"))
    assert len(get_categories(val)) == 150 and get_categories(val)[0]["name"] == "class_0"
    # ADE20K's own names table
    rows = ["Idx,Ratio,Train,Val,Name"] + [f"{i},0.1,1,1,name{i};alias" for i in range(150, 0, -1)]
    (tmp_path / "objectInfo150.csv").write_text("\n".join(rows) + "\n")
    named = get_categories(load_folder(tmp_path, split="val"))
    assert [c["name"] for c in named[:2]] == ["name1", "name2"] and len(named) == 150
    with pytest.raises(ValueError, match="label id 150.*outside"):
        load_folder(tmp_path, split="train", categories=[f"c{i}" for i in range(100)])


def test_cityscapes_layout(tmp_path):
    lab = np.array([[7, 26, 0], [23, 33, 255]], np.uint8).repeat(2, 0).repeat(2, 1)
    base = "aachen/aachen_000000_000019"
    _write_rgb(tmp_path / "leftImg8bit" / "train" / f"{base}_leftImg8bit.png", 4, 6)
    _write_label(tmp_path / "gtFine" / "train" / f"{base}_gtFine_labelIds.png", lab)
    _write_label(tmp_path / "gtFine" / "train" / f"{base}_gtFine_color.png", np.zeros((4, 6)))
    assert detect_format(tmp_path) == "cityscapes"
    ds = load_folder(tmp_path, split="train")
    expected = np.array([[0, 13, 255], [10, 18, 255]]).repeat(2, 0).repeat(2, 1)
    np.testing.assert_array_equal(np.asarray(ds[0]["semantic"]), expected)
    cats = get_categories(ds)
    assert cats[13]["name"] == "car" and cats[13]["isthing"] and not cats[0]["isthing"]
    car = next(s for s in ds[0]["segments_info"] if s["category_id"] == 13)
    assert car["iscrowd"] == 1  # a semantic region of a thing class may merge several objects


def test_generic_semantic_folder_and_errors(tmp_path):
    lab = np.array([[0, 1], [2, 9]], np.uint8).repeat(3, 0).repeat(3, 1)
    _write_rgb(tmp_path / "images" / "x.png", 6, 6)
    _write_label(tmp_path / "labels" / "x.png", lab)
    assert detect_format(tmp_path) == "semantic_folder"
    ds = load_folder(tmp_path, split=None, ignore_index=9, categories=["a", "b", "c"])
    np.testing.assert_array_equal(np.asarray(ds[0]["semantic"]), np.where(lab == 9, 255, lab))
    mapped = load_semantic_folder(
        tmp_path / "images", tmp_path / "labels", label_map={1: 0, 2: 1}, categories=["b", "c"]
    )
    np.testing.assert_array_equal(np.asarray(mapped[0]["semantic"]), np.select([lab == 1, lab == 2], [0, 1], 255))
    with pytest.raises(ValueError, match="label id 9"):
        load_semantic_folder(tmp_path / "images", tmp_path / "labels", categories=["a", "b", "c"])
    _write_label(tmp_path / "labels" / "x.png", np.zeros((5, 6)))
    with pytest.raises(ValueError, match="label_dir.*shape"):
        load_semantic_folder(tmp_path / "images", tmp_path / "labels")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="folder.*no recognised dataset layout"):
        detect_format(tmp_path / "empty")
    with pytest.raises(ValueError, match="folder"):
        load_folder(tmp_path / "missing")


# --------------------------------------------------------------------------- export round trips


def test_export_loads_in_pycocotools_and_round_trips(tmp_path):
    ds = load_shapesworld("val", num_images=6, image_size=64, seed=4)
    paths = export_coco(ds, tmp_path)
    gt = COCO(str(paths["instances"]))
    assert len(gt.getImgIds()) == 6
    assert len(gt.getAnnIds()) == sum(sum(s["isthing"] for s in r["segments_info"]) for r in ds)
    for r in ds:
        ours, cat_ids, _ = instance_masks(r)
        anns = gt.loadAnns(gt.getAnnIds(imgIds=[r["image_id"]]))
        theirs = np.stack([gt.annToMask(a).astype(bool) for a in anns])
        np.testing.assert_array_equal(theirs, ours)
        assert [a["category_id"] - 1 for a in anns] == list(cat_ids)
    # ground truth scored against itself by COCOeval: AP = 1
    dets = [{**a, "score": 1.0} for a in gt.loadAnns(gt.getAnnIds())]
    ev = COCOeval(gt, gt.loadRes(dets), "segm")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    assert ev.stats[0] == pytest.approx(1.0)
    # load back: panoptic gives identical maps, instances give identical thing masks
    assert detect_format(tmp_path) == "coco_panoptic"
    pan = load_folder(tmp_path, split="val")
    inst = load_coco_instances(paths["instances"], tmp_path / "val")
    assert get_categories(pan) == get_categories(ds) == get_categories(inst)
    for r0, r1, r2 in zip(ds, pan, inst):
        np.testing.assert_array_equal(rgb_to_ids(r0["panoptic"]), rgb_to_ids(r1["panoptic"]))
        np.testing.assert_array_equal(np.asarray(r0["semantic"]), np.asarray(r1["semantic"]))
        np.testing.assert_array_equal(np.asarray(r0["image"]), np.asarray(r1["image"]))
        assert r0["segments_info"] == r1["segments_info"]
        # segment ids are renumbered by the instances loader; masks and classes are identical
        for a, b in zip(instance_masks(r0)[:2], instance_masks(r2)[:2]):
            np.testing.assert_array_equal(a, b)


def test_export_dataset_dict_and_load_each_split(tmp_path):
    dd = build_shapesworld({"train": 3, "val": 2}, image_size=32, seed=0, splits=("train", "val"))
    paths = export_coco(dd, tmp_path)
    assert set(paths) == {"train", "val"}
    for split in ("train", "val"):
        back = load_folder(tmp_path, split=split)
        assert len(back) == len(dd[split])
        for r0, r1 in zip(dd[split], back):
            np.testing.assert_array_equal(rgb_to_ids(r0["panoptic"]), rgb_to_ids(r1["panoptic"]))
    with pytest.raises(ValueError, match="split"):
        load_folder(tmp_path, split=None)


def test_export_rejects_out_of_range_category(tmp_path):
    ds = load_shapesworld("val", num_images=1, image_size=32, seed=0)

    def corrupt(r):
        r["segments_info"] = [{**s, "category_id": 99} for s in r["segments_info"]]
        return r

    bad = ds.map(corrupt)
    with pytest.raises(ValueError, match="category id 99"):
        export_coco_instances(bad, tmp_path)


def test_hf_disk_folder(tmp_path):
    ds = load_shapesworld("train", num_images=2, image_size=32, seed=0)
    ds.save_to_disk(str(tmp_path / "sw"))
    assert detect_format(tmp_path / "sw") == "hf_disk"
    back = load_folder(tmp_path / "sw")
    assert get_categories(back) == get_categories(ds) and len(back) == 2
