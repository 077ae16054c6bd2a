"""Prompt simulation: clicks vs brute force, error-region clicks, boxes, scribbles, PSALM prompts, seeding."""

from __future__ import annotations

import numpy as np
import pytest

from hf_unified_seg.data.prompts import (
    Click,
    box_prompt,
    box_to_mask,
    clicks_to_masks,
    coco_interactive_prompts,
    first_click,
    mask_to_box,
    next_click,
    polygon_prompt,
    psalm_mask_prompt,
    psalm_point,
    psalm_scribble,
    random_walk_scribble,
    stroke_prompt,
)


def _brute_interior_distance(mask: np.ndarray) -> np.ndarray:
    """Distance from each mask pixel to the nearest pixel outside the mask, the frame around the image included."""
    h, w = mask.shape
    outside = [(y, x) for y in range(-1, h + 1) for x in range(-1, w + 1) if not (0 <= y < h and 0 <= x < w)]
    outside += [(y, x) for y in range(h) for x in range(w) if not mask[y, x]]
    out_arr = np.array(outside, dtype=float)
    dist = np.zeros((h, w))
    for y, x in zip(*np.nonzero(mask)):
        dist[y, x] = np.sqrt(((out_arr - (y, x)) ** 2).sum(1)).min()
    return dist


def _blob(seed: int, h: int = 14, w: int = 17) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    m = np.zeros((h, w), bool)
    for _ in range(3):
        cy, cx, r = rng.integers(2, h - 2), rng.integers(2, w - 2), rng.integers(2, 6)
        m |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    return m


@pytest.mark.parametrize("seed", range(5))
def test_first_click_is_the_most_interior_pixel(seed):
    m = _blob(seed)
    c = first_click(m)
    assert isinstance(c, Click) and c.is_positive
    assert m[c.y, c.x]
    brute = _brute_interior_distance(m)
    assert brute[c.y, c.x] == pytest.approx(brute.max())


def test_first_click_touching_the_border():
    m = np.zeros((10, 10), bool)
    m[:, :3] = True  # a strip along the left edge: the border counts as boundary, so x = 1 is the centre
    assert first_click(m).x == 1


def test_next_click_goes_to_the_largest_error_region():
    gt = np.zeros((40, 40), bool)
    gt[5:35, 5:35] = True
    pred = gt.copy()
    pred[5:11, 5:11] = False  # missed foreground, 36 px
    pred[20:35, 20:35] = False  # missed foreground, 225 px: the largest error region
    pred[0:4, 36:40] = True  # false positive, 16 px
    c = next_click(gt, pred)
    assert c.is_positive and 20 <= c.x < 35 and 20 <= c.y < 35
    region = np.zeros_like(gt)
    region[20:35, 20:35] = True
    brute = _brute_interior_distance(region)
    assert brute[c.y, c.x] == pytest.approx(brute.max())
    # now make a false positive the largest region: negative click inside it
    pred2 = gt.copy()
    pred2[5:8, 5:8] = False
    pred2[0:5, 0:40] = True  # 5 x 40 band, minus the gt overlap (none: gt starts at row 5)
    c2 = next_click(gt, pred2)
    assert not c2.is_positive and c2.y < 5 and not gt[c2.y, c2.x] and pred2[c2.y, c2.x]
    assert c2.y == 2  # middle row of the band
    assert next_click(gt, gt) is None


def test_next_click_seem_rule_and_exclude():
    gt = np.zeros((20, 20), bool)
    gt[2:18, 2:18] = True
    pred = gt.copy()
    pred[2:6, 2:6] = False  # 16 px missed
    pred[2:6, 12:16] = False  # 16 px missed (32 in total)
    pred[19, :] = True  # 20 px false positive, one component larger than either miss
    assert not next_click(gt, pred).is_positive  # largest component is the FP band
    assert next_click(gt, pred, rule="seem").is_positive  # SEEM compares total areas: 32 > 20
    ex = np.zeros_like(gt)
    ex[19, :] = True
    assert next_click(gt, pred, exclude=ex).is_positive
    with pytest.raises(ValueError, match="rule"):
        next_click(gt, pred, rule="nearest")


def test_next_click_ritm_rule_prefers_the_widest_error():
    gt = np.zeros((30, 30), bool)
    gt[0:2, 0:30] = True  # a 2-px-thin strip of 60 px, entirely missed
    pred = np.zeros_like(gt)
    pred[10:15, 10:15] = True  # a compact 25-px false positive: smaller area, larger inscribed disc
    assert next_click(gt, pred).is_positive  # largest region by area
    c = next_click(gt, pred, rule="ritm")
    assert not c.is_positive and (c.x, c.y) == (12, 12)


def test_clicks_to_masks():
    pos, neg = clicks_to_masks([Click(3, 4, True), Click(8, 8, False)], (10, 12))
    assert pos.sum() == 9 and pos[3:6, 2:5].all() and neg.sum() == 9 and neg[7:10, 7:10].all()
    pos10, _ = clicks_to_masks([Click(20, 20, True)], (41, 41), radius=10)
    yy, xx = np.mgrid[:41, :41]
    np.testing.assert_array_equal(pos10, (yy - 20) ** 2 + (xx - 20) ** 2 <= 100)
    with pytest.raises(ValueError, match="outside"):
        clicks_to_masks([Click(12, 0, True)], (10, 12))


def test_boxes():
    m = np.zeros((50, 60), bool)
    m[10:30, 20:41] = True
    assert mask_to_box(m) == (20, 10, 41, 30)
    assert box_prompt(m) == (20, 10, 41, 30)
    rng = np.random.default_rng(0)
    for _ in range(50):
        x0, y0, x1, y1 = box_prompt(m, jitter=0.1, rng=rng)
        # one scale factor in [0.9, 1.1] about the centre, rounded
        assert 0.9 * 21 - 2 <= x1 - x0 <= 1.1 * 21 + 2 and 0.9 * 20 - 2 <= y1 - y0 <= 1.1 * 20 + 2
        assert abs((x0 + x1) / 2 - 30.5) <= 1 and abs((y0 + y1) / 2 - 20) <= 1
    assert box_to_mask((20, 10, 41, 30), m.shape).sum() == m.sum()
    a = box_prompt(m, 0.2, np.random.default_rng(3), shift=0.1)
    assert a == box_prompt(m, 0.2, np.random.default_rng(3), shift=0.1)


def test_scribbles_are_seeded_and_inside():
    m = _blob(1, 40, 40)
    s1 = random_walk_scribble(m, np.random.default_rng(0), width=2)
    s2 = random_walk_scribble(m, np.random.default_rng(0), width=2)
    s3 = random_walk_scribble(m, np.random.default_rng(1), width=2)
    np.testing.assert_array_equal(s1, s2)
    assert not np.array_equal(s1, s3)
    assert s1.any() and not (s1 & ~m).any()
    big = np.zeros((100, 100), bool)
    big[20:80, 10:90] = True
    p1 = psalm_scribble(big, np.random.default_rng(0))
    np.testing.assert_array_equal(p1, psalm_scribble(big, np.random.default_rng(0)))
    # the stroke follows a diagonal of the jittered box: it spans most of the box in x
    cols = np.flatnonzero(p1.any(0))
    assert cols[-1] - cols[0] >= 0.5 * 80


def test_strokes_and_polygons():
    m = _blob(2, 40, 40)
    a = stroke_prompt(m, np.random.default_rng(0))
    np.testing.assert_array_equal(a, stroke_prompt(m, np.random.default_rng(0)))
    assert a.any() and not (a & ~m).any()
    ring = polygon_prompt(m, np.random.default_rng(1))
    np.testing.assert_array_equal(ring, polygon_prompt(m, np.random.default_rng(1)))
    filled = polygon_prompt(m, np.random.default_rng(1), filled=True)
    assert ring.sum() > 0 and filled.sum() >= ring.sum() and not (ring & ~filled).any()
    with pytest.raises(ValueError, match="max_points"):
        polygon_prompt(m, max_points=2)


def test_psalm_points_and_mask_prompt():
    m = np.zeros((60, 60), bool)
    m[5:25, 5:25] = True
    m[40:55, 30:58] = True
    m[0:2, 58:60] = True  # a 4-px component: skipped (area <= 5)
    clicks = psalm_point(m, np.random.default_rng(0))
    assert len(clicks) == 2 and all(m[c.y, c.x] and c.is_positive for c in clicks)
    assert psalm_point(m, np.random.default_rng(0)) == clicks
    prompt = psalm_mask_prompt(m)
    inter, union = (prompt & m).sum(), (prompt | m).sum()
    assert inter / union > 0.8
    # threshold is the mean of the blurred map, computed independently here via the mask's mean preservation:
    # a Gaussian blur preserves the total, so the threshold equals the area fraction of the mask
    from scipy import ndimage

    blurred = ndimage.gaussian_filter(m.astype(float), 2.0)
    assert blurred.mean() == pytest.approx(m.mean(), rel=1e-6)
    np.testing.assert_array_equal(prompt, blurred > m.mean())
    prompts = coco_interactive_prompts(m, np.random.default_rng(0))
    assert set(prompts) == {"point", "scribble", "box", "mask"}
    assert all(v.shape == m.shape for v in prompts.values() if v is not None)


def test_prompt_errors():
    gt = np.ones((8, 8), bool)
    with pytest.raises(ValueError, match="pred_mask"):
        next_click(gt, np.ones((8, 9), bool))
    with pytest.raises(ValueError, match="gt_mask"):
        first_click(np.zeros((8, 8), bool))
    with pytest.raises(ValueError, match="gt_mask"):
        first_click(np.ones((2, 8, 8), bool))
    with pytest.raises(TypeError, match="rng"):
        random_walk_scribble(gt, rng=0)
    with pytest.raises(ValueError, match="jitter"):
        box_prompt(gt, jitter=-0.1)
