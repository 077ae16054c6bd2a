"""classification_consistency (spec §4.2) and segmentation_consistency / mASSC (§4.5): hand-worked cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hf_unified_seg.metrics import load
from hf_unified_seg.metrics.shift_sampling import overlap_views, random_crop_pair, shifted_crop_pair


def test_classification_consistency_hand_worked():
    """5 images. View a top-1: [0, 1, 2, 2, 1], view b: [0, 1, 1, 2, 0], labels [0, 1, 2, 0, 0].
    Accuracy (view a) = 3/5, accuracy (view b) = 3/5 (0, 1, and image 4), consistency = 3/5 (images 0, 1, 3)."""
    logits_a = torch.nn.functional.one_hot(torch.tensor([0, 1, 2, 2, 1]), 3).float()
    result = load("classification_consistency").compute(
        predictions=logits_a, shifted_predictions=[0, 1, 1, 2, 0], references=torch.tensor([0, 1, 2, 0, 0])
    )
    assert result == {"accuracy": 60.0, "shifted_accuracy": 60.0, "consistency": 60.0, "num_samples": 5}


def test_shift_protocol_sampling():
    """§4.2: 256 px inputs, two 224 crops at one offset pair per batch, coordinates uniform in {0, ..., 31}."""
    images = torch.arange(2 * 256 * 256, dtype=torch.float32).reshape(2, 1, 256, 256)
    rng = np.random.default_rng(7)
    seen = []
    for _ in range(100):
        view_a, view_b, ((h1, w1), (h2, w2)) = shifted_crop_pair(images, crop_size=224, rng=rng)
        assert view_a.shape == view_b.shape == (2, 1, 224, 224)
        # pixel values encode their image position (row * 256 + col): check the crops' corners
        assert view_a[1, 0, 0, 0] - view_a[0, 0, 0, 0] == 256 * 256
        assert view_a[0, 0, 0, 0] == h1 * 256 + w1 and view_a[0, 0, -1, -1] == (h1 + 223) * 256 + w1 + 223
        assert view_b[0, 0, 0, 0] == h2 * 256 + w2 and view_b[0, 0, -1, -1] == (h2 + 223) * 256 + w2 + 223
        seen += [h1, w1, h2, w2]
    assert min(seen) == 0 and max(seen) == 31
    with pytest.raises(ValueError, match="larger than"):
        shifted_crop_pair(images, crop_size=256)


def test_massc_hand_worked():
    """Image 0, pair 1: 4x4 crops at (0, 0) and (1, 2): overlap rows 1-3 x cols 2-3 (6 px); the maps disagree on 2
    of them -> 4/6. Image 0, pair 2: identical crops at the same place -> 1. Image 1, one pair: 1/4 agree.
    mASSC = mean(mean(4/6, 1), 1/4) = (5/6 + 1/4) / 2."""
    a = np.arange(16).reshape(4, 4)
    b = np.zeros((4, 4), dtype=np.int64)
    b[0:3, 0:2] = a[1:4, 2:4]  # crop b's pixel (r, c) is image pixel (r + 1, c + 2)
    b[0, 0] = b[2, 1] = -5  # 2 disagreements inside the overlap
    b[3, 3] = 99  # outside the overlap: ignored
    view_a, view_b = overlap_views(a, b, (0, 0, 1, 2))
    assert view_a.shape == view_b.shape == (3, 2)
    c = np.array([[1, 2], [3, 4]])
    d = np.array([[1, 0], [0, 0]])
    result = load("segmentation_consistency").compute(
        predictions=[a, a, c],
        shifted_predictions=[b, a, d],
        crop_offsets=[(0, 0, 1, 2), (3, 3, 3, 3), (0, 0, 0, 0)],
        image_ids=[0, 0, 1],
    )
    assert result["massc"] == pytest.approx(100 * (5 / 6 + 1 / 4) / 2)
    assert (result["num_images"], result["num_pairs"]) == (2, 3)


def test_random_crop_pairs_and_errors():
    rng = np.random.default_rng(1)
    for _ in range(50):
        (y_a, x_a, y_b, x_b), (h, w) = random_crop_pair(64, 48, rng)
        assert (h, w) == (56, 42)
        assert min(y_a, y_b) >= 0 and max(y_a, y_b) + h <= 64 and max(x_a, x_b) + w <= 48
    with pytest.raises(ValueError, match="do not overlap"):
        load("segmentation_consistency").add(
            prediction=np.zeros((2, 2)), shifted_predictions=np.zeros((2, 2)), crop_offsets=(0, 0, 5, 5), image_ids=0
        )
    with pytest.raises(ValueError, match="4 were expected"):
        load("segmentation_consistency").add(
            prediction=np.zeros((2, 2)), shifted_predictions=np.zeros((2, 2)), crop_offsets=(0, 0), image_ids=0
        )
    with pytest.raises(ValueError, match="missing"):
        load("classification_consistency").compute(predictions=[0], references=[0])
