"""mean_iou: ShapesWorld self-score, torchmetrics cross-check, dataset accumulation, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex

from hf_unified_seg.data import get_categories, load_shapesworld
from hf_unified_seg.metrics import load


def test_ground_truth_scores_100():
    ds = load_shapesworld("val", num_images=4, image_size=64, seed=5, background="noise")
    num_labels = len(get_categories(ds))
    maps = [np.asarray(ds[i]["semantic"]) for i in range(len(ds))]
    assert any((m == 255).any() for m in maps)
    # Predictions at ignored pixels may be anything valid; they must not count.
    predictions = [np.where(m == 255, 0, m) for m in maps]
    result = load("mean_iou", num_labels=num_labels).compute(predictions=predictions, references=maps)
    assert result["mean_iou"] == result["overall_accuracy"] == result["mean_accuracy"] == 100.0
    present = np.unique(np.concatenate([m[m != 255] for m in maps]))
    assert np.isnan(result["per_category_iou"]).sum() == num_labels - len(present)


def test_matches_torchmetrics_confusion_accumulation():
    rng = np.random.default_rng(0)
    num_labels = 6
    metric = load("mean_iou", num_labels=num_labels)
    jaccard = MulticlassJaccardIndex(num_labels, average=None, ignore_index=255)
    pixel_accuracy = MulticlassAccuracy(num_labels, average="micro", ignore_index=255)
    for _ in range(5):
        shape = tuple(rng.integers(16, 40, size=2))
        ref = rng.integers(0, num_labels - 1, size=shape)  # the last class never occurs in references
        ref[rng.random(shape) < 0.2] = 255
        pred = np.where(rng.random(shape) < 0.6, ref, rng.integers(0, num_labels, size=shape))
        pred[ref == 255] = rng.integers(0, num_labels)
        metric.add_batch(predictions=[pred], references=[torch.from_numpy(ref)])
        jaccard.update(torch.from_numpy(pred), torch.from_numpy(ref))
        pixel_accuracy.update(torch.from_numpy(pred), torch.from_numpy(ref))
    result = metric.compute()
    expected_iou = jaccard.compute().numpy() * 100
    np.testing.assert_allclose(result["per_category_iou"], expected_iou, atol=1e-4)
    assert result["mean_iou"] == pytest.approx(expected_iou.mean(), abs=1e-4)
    assert result["overall_accuracy"] == pytest.approx(pixel_accuracy.compute().item() * 100, abs=1e-4)
    # The last class is only predicted: IoU 0, accuracy undefined (no reference pixel) and left out of the mean.
    assert result["per_category_iou"][-1] == 0.0 and np.isnan(result["per_category_accuracy"][-1])
    assert result["mean_accuracy"] == pytest.approx(np.mean(result["per_category_accuracy"][:-1]))


def test_accumulates_over_the_dataset_not_per_image():
    """Image 1: class 1 has I=1, U=1; image 2: class 1 has I=1, U=9 (8 missed pixels). Summed: 2 / 10 = 20%,
    while the mean of per-image IoUs would be 55%. Class 0 (I=0+0 px... ) is absent from image 1 references."""
    ref1, pred1 = np.array([[1]]), np.array([[1]])
    ref2 = np.ones((3, 3), dtype=np.int64)
    pred2 = np.zeros((3, 3), dtype=np.int64)
    pred2[0, 0] = 1
    result = load("mean_iou", num_labels=2).compute(predictions=[pred1, pred2], references=[ref1, ref2])
    assert result["per_category_iou"][1] == pytest.approx(20.0)
    assert result["per_category_iou"][0] == 0.0  # 8 predicted px, none correct
    assert result["mean_iou"] == pytest.approx(10.0)
    assert result["overall_accuracy"] == pytest.approx(20.0)
    assert result["frequency_weighted_iou"] == pytest.approx(20.0)  # all reference pixels are class 1


def test_bad_inputs_raise_clear_errors():
    ref = np.zeros((4, 4), dtype=np.int64)
    with pytest.raises(ValueError, match="shape"):
        load("mean_iou", num_labels=2).add(prediction=ref[:2], reference=ref)
    with pytest.raises(ValueError, match="outside"):
        load("mean_iou", num_labels=2).compute(predictions=[ref + 2], references=[ref])
    with pytest.raises(ValueError, match="references.*outside"):
        load("mean_iou", num_labels=2).compute(predictions=[ref], references=[ref + 7])
    with pytest.raises(ValueError, match="num_labels"):
        load("mean_iou").compute(predictions=[ref], references=[ref])
    with pytest.raises(TypeError, match="integer"):
        load("mean_iou", num_labels=2).add(prediction=ref + 0.5, reference=ref)
