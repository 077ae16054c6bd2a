"""referring (cIoU / mIoU / precision@X) and retrieval (R@K): self-scores, hand-worked cases, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hf_unified_seg.data import load_shapesworld
from hf_unified_seg.metrics import load, panoptic_from_record


def _referring_masks(num_images: int = 3) -> list[np.ndarray]:
    ds = load_shapesworld("val", num_images=num_images, image_size=64, seed=8)
    masks = []
    for i in range(num_images):
        record = ds[i]
        ids, _ = panoptic_from_record(record)
        masks += [ids == ref["segment_id"] for ref in record["referring"]]
    return masks


def test_referring_ground_truth_scores_100():
    masks = _referring_masks()
    assert len(masks) > 3
    result = load("referring").compute(predictions=masks, references=masks)
    assert result["ciou"] == result["miou"] == 100.0
    assert all(result[f"precision@{t}"] == 100.0 for t in ("0.5", "0.6", "0.7", "0.8", "0.9"))


def test_referring_hand_worked():
    """Sample 1: I = 8, U = 10 (IoU 0.8); sample 2: I = 1, U = 4 (IoU 0.25); sample 3: both empty (IoU 1 by the
    gIoU convention, adds nothing to the cumulative sums). cIoU = 9 / 14, mIoU = (0.8 + 0.25 + 1) / 3."""
    ref1, pred1 = np.zeros((4, 4), bool), np.zeros((4, 4), bool)
    ref1[:2] = True  # 8 px
    pred1[:2] = True
    pred1[2, :2] = True  # +2 px false positive
    ref2, pred2 = np.zeros((2, 2), bool), np.zeros((2, 2), int)
    ref2[0] = True
    pred2[0, 0] = pred2[1, :] = 1  # I = 1, U = 4
    empty = np.zeros((3, 3), bool)
    result = load("referring").compute(
        predictions=[pred1, torch.from_numpy(pred2), empty], references=[ref1, ref2, empty]
    )
    assert result["ciou"] == pytest.approx(100 * 9 / 14)
    assert result["miou"] == pytest.approx(100 * (0.8 + 0.25 + 1.0) / 3)
    assert result["precision@0.5"] == pytest.approx(200 / 3)
    assert result["precision@0.8"] == pytest.approx(200 / 3)  # IoU exactly 0.8 counts (>=)
    assert result["precision@0.9"] == pytest.approx(100 / 3)
    assert result["num_samples"] == 3


def test_referring_bad_inputs():
    mask = np.ones((4, 4), bool)
    with pytest.raises(ValueError, match="shape"):
        load("referring").add(prediction=mask[:2], reference=mask)
    with pytest.raises(ValueError, match="binary"):
        load("referring").add(prediction=mask * 0.7, reference=mask)
    with pytest.raises(ValueError, match="one entry per example"):
        load("referring").add_batch(predictions=[mask, mask], references=[mask])


def test_retrieval_hand_worked():
    """3 images, 4 texts; texts 0 and 1 describe image 0, text 2 image 1, text 3 image 2 (and also image 0).
    Similarities (rows = texts, columns = images):"""
    similarity = np.array(
        [
            [0.9, 0.1, 0.0],  # text 0 -> image 0 ranked 1st
            [0.2, 0.5, 0.4],  # text 1 -> image 0 ranked 3rd
            [0.3, 0.3, 0.0],  # text 2 -> image 1 tied with image 0: counts as 2nd (ties go against the query)
            [0.1, 0.0, 0.2],  # text 3 -> images {0, 2}: image 2 ranked 1st
        ]
    )
    references = [0, [0], [1], [2, 0]]
    result = load("retrieval", ks=(1, 2, 3)).compute(predictions=torch.from_numpy(similarity), references=references)
    # text -> image ranks: 1, 3, 2, 1
    assert result["text_to_image_r@1"] == pytest.approx(50.0)
    assert result["text_to_image_r@2"] == pytest.approx(75.0)
    assert result["text_to_image_r@3"] == pytest.approx(100.0)
    # image -> text (columns): image 0 positives {0, 1, 3}: best is text 0 (0.9), rank 1.
    # image 1 positive {2}: column [0.1, 0.5, 0.3, 0.0] -> text 1 scores higher -> rank 2.
    # image 2 positive {3}: column [0.0, 0.4, 0.0, 0.2] -> rank 2.
    assert result["image_to_text_r@1"] == pytest.approx(100 / 3)
    assert result["image_to_text_r@2"] == pytest.approx(100.0)
    assert result["rsum"] == pytest.approx(50 + 75 + 100 + 100 / 3 + 100 + 100)
    assert (result["num_texts"], result["num_images"]) == (4, 3)


def test_retrieval_perfect_and_errors():
    # Five captions per image, identity-like similarity: every recall is 100.
    image_of_text = np.repeat(np.arange(4), 5)
    similarity = np.eye(4)[image_of_text] + 0.01 * np.random.default_rng(0).random((20, 4))
    result = load("retrieval").compute(predictions=similarity, references=image_of_text[:, None])
    assert all(v == 100.0 for k, v in result.items() if "_r@" in k)
    with pytest.raises(ValueError, match="outside"):
        load("retrieval").compute(predictions=similarity[:2], references=[[0], [9]])
    with pytest.raises(ValueError, match="at least one"):
        load("retrieval").compute(predictions=similarity[:1], references=[[]])
    with pytest.raises(ValueError, match="same images"):
        load("retrieval").compute(predictions=[[0.1, 0.2], [0.3]], references=[[0], [0]])
