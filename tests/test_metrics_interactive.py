"""interactive: NoC / NoF / mIoU@k from curves and from the click loop on plug-in models; errors."""

from __future__ import annotations

import numpy as np
import pytest

from hf_unified_seg.data import instance_masks, load_shapesworld
from hf_unified_seg.data.prompts import Click
from hf_unified_seg.metrics import load


def test_oracle_needs_one_click_on_shapesworld():
    ds = load_shapesworld("val", num_images=3, image_size=64, seed=9)
    references, image_indices = [], []
    for i in range(len(ds)):
        masks, _, _ = instance_masks(ds[i])
        references += list(masks)
        image_indices += [i] * len(masks)
    calls = []

    def oracle(image_index: int, clicks: list[Click]) -> np.ndarray:
        calls.append((image_index, clicks))
        # the instance whose mask contains the (positive) first click
        masks, _, _ = instance_masks(ds[image_index])
        return next(m for m in masks if m[clicks[0].y, clicks[0].x])

    result = load("interactive").compute(predict=oracle, references=references, image_indices=image_indices)
    assert result["noc@85"] == result["noc@90"] == 1.0
    assert result["nof@85"] == result["nof@90"] == 0
    assert result["miou@1"] == 100.0 and result["num_instances"] == len(references)
    assert [c[0] for c in calls] == image_indices  # one model call per instance, then the loop stops
    assert all(len(c[1]) == 1 and c[1][0].is_positive for c in calls)


def test_noc_from_precomputed_curves_hand_worked():
    """Curves: A [0.5, 0.86, 0.91] (stopped early, padded with 0.91), B twenty clicks at 0.2 (never reaches: counts
    as 20), C [0.95]. NoC@85 = (2 + 20 + 1) / 3, NoC@90 = (3 + 20 + 1) / 3; with a 5-click budget B counts 5."""
    curves = [[0.5, 0.86, 0.91], [0.2] * 20, [0.95]]
    result = load("interactive").compute(predictions=curves)
    assert result["noc@85"] == pytest.approx(23 / 3)
    assert result["noc@90"] == pytest.approx(24 / 3)
    assert result["5-noc@85"] == pytest.approx(8 / 3)
    assert result["5-noc@90"] == pytest.approx(9 / 3)
    assert result["nof@85"] == result["nof@90"] == 1
    assert result["miou@1"] == pytest.approx(100 * (0.5 + 0.2 + 0.95) / 3)
    assert result["miou_per_click"][2] == pytest.approx(100 * (0.91 + 0.2 + 0.95) / 3)
    assert result["miou_per_click"][19] == pytest.approx(100 * (0.91 + 0.2 + 0.95) / 3)


def _box(y0: int, x0: int, y1: int, x1: int) -> np.ndarray:
    mask = np.zeros((48, 48), dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask


def test_click_loop_with_a_model_that_needs_corrections():
    """Reference = A (20x20) + B (10x10). The model returns the reference components that hold a positive click,
    plus a false-positive blob F (15x15) until a negative click lands in it.
    Click 1 (positive, centre of A): A + F, IoU 400 / 725. Click 2: the largest error is F (225 px > B's 100) ->
    negative click -> A, IoU 400 / 500 = 0.8. Click 3: positive in B -> A + B, IoU 1 -> stop.
    NoC@85 = NoC@90 = 3."""
    a, b, blob = _box(2, 2, 22, 22), _box(30, 30, 40, 40), _box(30, 2, 45, 17)
    reference = a | b
    seen_clicks = []

    def model(image_index: int, clicks: list[Click]) -> np.ndarray:
        seen_clicks.append(list(clicks))
        out = np.zeros_like(reference)
        for part in (a, b):
            if any(c.is_positive and part[c.y, c.x] for c in clicks):
                out |= part
        if not any(not c.is_positive and blob[c.y, c.x] for c in clicks):
            out |= blob
        return out

    metric = load("interactive")
    curves = metric.simulate(model, [reference])
    assert curves[0][:3] == pytest.approx([400 / 725, 0.8, 1.0])
    assert curves[0][3:] == [1.0] * 17  # stopped at IoU >= 0.90, padded
    assert [c.is_positive for c in seen_clicks[-1]] == [True, False, True]
    result = metric.compute()
    assert result["noc@85"] == result["noc@90"] == 3.0


def test_failures_count_as_the_click_budget():
    reference = _box(10, 10, 30, 30)
    result = load("interactive", max_clicks=6, budgets=(3,)).compute(
        predict=lambda i, clicks: np.zeros_like(reference), references=[reference]
    )
    assert result["noc@85"] == result["noc@90"] == 6.0
    assert result["3-noc@90"] == 3.0 and result["nof@90"] == 1
    assert result["miou_per_click"] == [0.0] * 6


def test_bad_inputs_raise_clear_errors():
    reference = _box(10, 10, 30, 30)
    with pytest.raises(ValueError, match="empty mask"):
        load("interactive").compute(predict=lambda i, c: reference, references=[np.zeros_like(reference)])
    with pytest.raises(ValueError, match="shape"):
        load("interactive").compute(predict=lambda i, c: reference[:10], references=[reference])
    with pytest.raises(ValueError, match="max_clicks=20"):
        load("interactive").compute(predictions=[[0.5] * 21])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        load("interactive").compute(predictions=[[85.0]])
    with pytest.raises(ValueError, match="stop_iou"):
        load("interactive", stop_iou=0.8)
    with pytest.raises(TypeError, match="callable"):
        load("interactive").compute(predict="model", references=[reference])
    with pytest.raises(ValueError, match="only used with `predict`"):
        load("interactive").compute(predictions=[[0.5]], references=[reference])
