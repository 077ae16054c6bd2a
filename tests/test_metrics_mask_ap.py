"""mask_ap: ShapesWorld self-score, a hand-worked COCO AP case, crowd handling, adapters, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hf_unified_seg.data import load_shapesworld
from hf_unified_seg.metrics import instances_from_record, load


def _box(y0: int, x0: int, y1: int, x1: int, size: int = 64) -> np.ndarray:
    mask = np.zeros((size, size), dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask


def test_ground_truth_scores_100():
    ds = load_shapesworld("val", num_images=4, image_size=64, seed=6)
    records = [ds[i] for i in range(len(ds))]
    predictions = []
    for record in records:
        instances = instances_from_record(record)
        predictions.append({**instances, "scores": np.ones(len(instances["labels"]))})
    result = load("mask_ap").compute(predictions=predictions, references=records)
    assert (result["ap"], result["ap50"], result["ap75"]) == pytest.approx((100.0, 100.0, 100.0))
    assert result["per_category_ap"] == pytest.approx({c: 100.0 for c in result["per_category_ap"]})


def test_hand_worked_precision_recall():
    """Two references (20x20 and 20x20, one class). Detections by score: exact match of g1 (0.9), a false positive
    (0.8), a 16x16 box inside g2 (0.7, IoU 256/400 = 0.64).
    At IoU thresholds 0.50, 0.55, 0.60 the ranking is TP, FP, TP: precision 1 up to recall 0.5, then 2/3 up to
    recall 1, so the 101-point AP is (51 * 1 + 50 * 2/3) / 101. At 0.65 ... 0.95 the third detection misses:
    precision 1 up to recall 0.5, nothing beyond: AP = 51 / 101. COCO AP averages the 10 thresholds."""
    g1, g2 = _box(0, 0, 20, 20), _box(30, 30, 50, 50)
    false_positive, partial = _box(55, 55, 64, 64), _box(30, 30, 46, 46)
    prediction = {
        "masks": torch.from_numpy(np.stack([g1, false_positive, partial])),
        "scores": torch.tensor([0.9, 0.8, 0.7]),
        "labels": torch.tensor([0, 0, 0]),
    }
    result = load("mask_ap").compute(
        predictions=[prediction], references=[{"masks": np.stack([g1, g2]), "labels": [0, 0]}]
    )
    ap_low, ap_high = (51 + 50 * 2 / 3) / 101, 51 / 101
    assert result["ap50"] == pytest.approx(100 * ap_low)
    assert result["ap75"] == pytest.approx(100 * ap_high)
    assert result["ap"] == pytest.approx(100 * (3 * ap_low + 7 * ap_high) / 10)
    # Both objects are 400 px < 32^2: small; COCOeval's -1 for the empty medium/large ranges comes back as NaN.
    assert result["ap_small"] == pytest.approx(result["ap"])
    assert np.isnan(result["ap_medium"]) and np.isnan(result["ap_large"])


def test_crowd_regions_absorb_detections():
    """A detection on a crowd reference is neither a TP nor an FP (COCO): AP stays 100."""
    thing, crowd = _box(0, 0, 20, 20), _box(30, 0, 64, 64)
    reference = {"masks": np.stack([thing, crowd]), "labels": [1, 1], "iscrowd": [0, 1]}
    prediction = {"masks": np.stack([thing, _box(40, 10, 60, 50)]), "scores": [0.5, 0.9], "labels": [1, 1]}
    assert load("mask_ap").compute(predictions=[prediction], references=[reference])["ap"] == pytest.approx(100.0)
    reference["iscrowd"] = [0, 0]
    assert load("mask_ap").compute(predictions=[prediction], references=[reference])["ap"] < 100.0


def test_post_processing_and_rle_inputs_agree():
    from pycocotools import mask as mask_utils

    g1, g2 = _box(0, 0, 20, 20), _box(30, 30, 50, 50)
    reference = {"masks": np.stack([g1, g2]), "labels": [0, 2]}
    id_map = np.full((64, 64), -1)
    id_map[_box(0, 0, 18, 20)] = 1
    id_map[_box(30, 30, 50, 50)] = 2
    segments = [{"id": 1, "label_id": 0, "score": 0.8}, {"id": 2, "label_id": 2, "score": 0.6}]
    from_id_map = load("mask_ap").compute(
        predictions=[{"segmentation": torch.from_numpy(id_map), "segments_info": segments}], references=[reference]
    )
    binary = torch.from_numpy(np.stack([id_map == 1, id_map == 2]).astype(np.float32))
    from_binary = load("mask_ap").compute(
        predictions=[{"segmentation": binary, "segments_info": segments}], references=[reference]
    )
    rles = mask_utils.encode(np.asfortranarray(np.stack([id_map == 1, id_map == 2], -1).astype(np.uint8)))
    from_rle = load("mask_ap").compute(
        predictions=[{"masks": list(rles), "scores": [0.8, 0.6], "labels": [0, 2]}], references=[reference]
    )
    np.testing.assert_equal(from_id_map, from_binary)  # NaN-aware (empty medium/large ranges)
    np.testing.assert_equal(from_id_map, from_rle)
    # class 2 exact; class 0 has IoU 360/400 = 0.9: a hit at 9 of the 10 thresholds (not 0.95) -> AP 90
    assert from_id_map["per_category_ap"] == pytest.approx({0: 90.0, 2: 100.0})


def test_bad_inputs_raise_clear_errors():
    reference = {"masks": np.stack([_box(0, 0, 8, 8)]), "labels": [0]}
    good = {"masks": np.stack([_box(0, 0, 8, 8)]), "scores": [1.0], "labels": [0]}
    with pytest.raises(ValueError, match="resize predictions"):
        load("mask_ap").add(prediction={**good, "masks": np.zeros((1, 32, 32), bool)}, reference=reference)
    with pytest.raises(ValueError, match="not among the categories"):
        load("mask_ap", num_labels=3).compute(predictions=[{**good, "labels": [5]}], references=[reference])
    with pytest.raises(ValueError, match="missing"):
        load("mask_ap").add(prediction={"masks": good["masks"], "labels": [0]}, reference=reference)
    with pytest.raises(ValueError, match="entries"):
        load("mask_ap").add(prediction={**good, "scores": [1.0, 0.5]}, reference=reference)
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        load("mask_ap").add(prediction={**good, "masks": _box(0, 0, 8, 8)}, reference=reference)
