"""Prompt simulation from ground-truth masks: clicks, boxes, scribbles and mask prompts.

Clicks follow the interactive-segmentation protocol of the SEEM spec (§3.3, §4.1): the first click sits at the
interior point farthest from the mask boundary (maximum of the Euclidean distance transform, image border
counting as boundary), and each later click sits at the farthest-from-boundary point of the largest error
region, positive when that region is missed foreground and negative when it is a false positive.

The ``psalm_*`` functions reproduce the COCO-Interactive prompt construction of the PSALM spec (§5): a point
near the component centroid, a sine-wave scribble along a jittered box diagonal, a box scaled about its centre
and a blurred-then-thresholded mask. Every random choice comes from the ``numpy.random.Generator`` argument.

Coordinates are pixels, ``x`` = column and ``y`` = row; boxes are ``(x0, y0, x1, y1)`` with inclusive-exclusive
ends like COCO ``[x, y, w, h]`` turned into corners.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from scipy import ndimage


class Click(NamedTuple):
    """One click: pixel column ``x``, row ``y`` and polarity (True = foreground)."""

    x: int
    y: int
    is_positive: bool


def _as_mask(mask: Any, name: str) -> np.ndarray:
    arr = np.asarray(mask)
    if arr.ndim != 2:
        raise ValueError(f"`{name}` must be a 2-D (H, W) mask, got shape {arr.shape}")
    if arr.dtype != bool:
        if not np.issubdtype(arr.dtype, np.number):
            raise TypeError(f"`{name}` must be a boolean or numeric array, got dtype {arr.dtype}")
        arr = arr > 0.5 if np.issubdtype(arr.dtype, np.floating) else arr != 0
    return arr


def _check_rng(rng: Any) -> np.random.Generator:
    if rng is None:
        return np.random.default_rng(0)
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"`rng` must be a numpy.random.Generator, got {type(rng).__name__}")
    return rng


def interior_distance(mask: np.ndarray) -> np.ndarray:
    """Euclidean distance of every mask pixel to the nearest non-mask pixel, the image border counting as one."""
    padded = np.pad(mask, 1, constant_values=False)
    return ndimage.distance_transform_edt(padded)[1:-1, 1:-1]


def _farthest_point(region: np.ndarray) -> tuple[int, int]:
    dist = interior_distance(region)
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)  # first maximum in raster order
    return int(x), int(y)


def first_click(gt_mask: Any) -> Click:
    """The positive click at the interior point of ``gt_mask`` farthest from its boundary.

    Args:
        gt_mask: (H, W) boolean (or 0/1) ground-truth mask; must not be empty.
    """
    gt = _as_mask(gt_mask, "gt_mask")
    if not gt.any():
        raise ValueError("`gt_mask` is empty: there is no foreground to click on")
    x, y = _farthest_point(gt)
    return Click(x, y, True)


def next_click(gt_mask: Any, pred_mask: Any, rule: str = "largest_region", exclude: Any = None) -> Click | None:
    """The corrective click for a prediction, or None when the prediction equals the ground truth.

    Args:
        gt_mask: (H, W) ground-truth mask.
        pred_mask: (H, W) predicted mask (bool, 0/1, or probabilities thresholded at 0.5).
        rule: ``"largest_region"`` (default): the click goes to the largest connected error region (missed
            foreground or false positive, 4-connectivity; ties prefer missed foreground). ``"ritm"``: the
            RITM / SimpleClick evaluation rule, the error map (missed or false positive) whose distance-transform
            maximum is larger wins (the widest error, not the largest by area; ties go negative). ``"seem"``:
            SEEM's training rule, positive if the total missed area exceeds the total false-positive area.
            In every rule the click sits at the distance-transform maximum of the chosen region.
        exclude: optional (H, W) mask of pixels that may not be clicked again (e.g. earlier clicks).

    Returns:
        The click at the farthest-from-boundary point of the chosen region; positive when it is missed
        foreground, negative when it is a false positive.
    """
    gt = _as_mask(gt_mask, "gt_mask")
    pred = _as_mask(pred_mask, "pred_mask")
    if pred.shape != gt.shape:
        raise ValueError(f"`pred_mask` has shape {pred.shape} but `gt_mask` has shape {gt.shape}")
    fn = gt & ~pred
    fp = pred & ~gt
    if exclude is not None:
        ex = _as_mask(exclude, "exclude")
        if ex.shape != gt.shape:
            raise ValueError(f"`exclude` has shape {ex.shape} but `gt_mask` has shape {gt.shape}")
        fn, fp = fn & ~ex, fp & ~ex
    if not fn.any() and not fp.any():
        return None
    if rule == "seem":
        positive = int(fn.sum()) > int(fp.sum())
        x, y = _farthest_point(fn if positive else fp)
        return Click(x, y, positive)
    if rule == "ritm":
        fn_dist, fp_dist = interior_distance(fn), interior_distance(fp)
        positive = fn_dist.max() > fp_dist.max()
        dist = fn_dist if positive else fp_dist
        y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
        return Click(int(x), int(y), bool(positive))
    if rule != "largest_region":
        raise ValueError(f"`rule` must be 'largest_region', 'ritm' or 'seem', got {rule!r}")
    best: tuple[int, bool, np.ndarray] | None = None
    for positive, err in ((True, fn), (False, fp)):
        labels, n = ndimage.label(err)
        if n == 0:
            continue
        sizes = np.bincount(labels.ravel())[1:]
        k = int(np.argmax(sizes))
        if best is None or sizes[k] > best[0]:
            best = (int(sizes[k]), positive, labels == k + 1)
    assert best is not None
    x, y = _farthest_point(best[2])
    return Click(x, y, best[1])


def clicks_to_masks(clicks: list[Click], shape: tuple[int, int], radius: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Rasterise clicks into (positive, negative) boolean masks as discs of ``radius`` pixels.

    ``radius=1`` with the square footprint gives SEEM's 3x3-dilated dots; PSALM draws radius-10 discs.
    """
    h, w = shape
    pos = np.zeros((h, w), bool)
    neg = np.zeros((h, w), bool)
    yy, xx = np.ogrid[:h, :w]
    for c in clicks:
        if not (0 <= c.x < w and 0 <= c.y < h):
            raise ValueError(f"click {c} lies outside the image of size (H, W) = {shape}")
        if radius <= 1:
            disc = (np.abs(yy - c.y) <= radius) & (np.abs(xx - c.x) <= radius)
        else:
            disc = (yy - c.y) ** 2 + (xx - c.x) ** 2 <= radius * radius
        (pos if c.is_positive else neg)[disc] = True
    return pos, neg


# --------------------------------------------------------------------------- boxes


def mask_to_box(mask: Any) -> tuple[int, int, int, int]:
    """Tight ``(x0, y0, x1, y1)`` box (exclusive ends) of a non-empty mask."""
    m = _as_mask(mask, "mask")
    if not m.any():
        raise ValueError("`mask` is empty: it has no bounding box")
    rows = np.flatnonzero(m.any(1))
    cols = np.flatnonzero(m.any(0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def box_prompt(
    mask: Any, jitter: float = 0.0, rng: np.random.Generator | None = None, shift: float = 0.0
) -> tuple[int, int, int, int]:
    """A box prompt: the tight box, scaled about its centre by one factor ``U[1 - jitter, 1 + jitter]`` and
    shifted by up to ``shift`` times its width/height, rounded and clipped to the image.

    ``jitter=0.1`` is PSALM's COCO-Interactive box rule.
    """
    if jitter < 0 or shift < 0:
        raise ValueError(f"`jitter` and `shift` must be >= 0, got {jitter} and {shift}")
    m = _as_mask(mask, "mask")
    x0, y0, x1, y1 = mask_to_box(m)
    if jitter == 0 and shift == 0:
        return x0, y0, x1, y1
    rng = _check_rng(rng)
    h, w = m.shape
    cx, cy, bw, bh = (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0
    scale = rng.uniform(1 - jitter, 1 + jitter)
    dx, dy = rng.uniform(-shift, shift) * bw, rng.uniform(-shift, shift) * bh
    bw, bh = bw * scale, bh * scale
    nx0 = int(np.clip(round(cx + dx - bw / 2), 0, w - 1))
    ny0 = int(np.clip(round(cy + dy - bh / 2), 0, h - 1))
    nx1 = int(np.clip(round(cx + dx + bw / 2), nx0 + 1, w))
    ny1 = int(np.clip(round(cy + dy + bh / 2), ny0 + 1, h))
    return nx0, ny0, nx1, ny1


def box_to_mask(box: tuple[int, int, int, int], shape: tuple[int, int]) -> np.ndarray:
    """Filled rectangle mask of a ``(x0, y0, x1, y1)`` box."""
    out = np.zeros(shape, bool)
    x0, y0, x1, y1 = (int(v) for v in box)
    out[max(0, y0) : max(0, y1), max(0, x0) : max(0, x1)] = True
    return out


# --------------------------------------------------------------------------- scribbles


def random_walk_scribble(
    mask: Any, rng: np.random.Generator | None = None, length: int | None = None, width: int = 1
) -> np.ndarray:
    """A scribble inside the mask: a random walk from a random mask pixel that never leaves the mask.

    Each step moves to one of the 8 neighbours inside the mask, preferring to keep its heading (momentum),
    which produces stroke-like rather than blob-like paths. The path is dilated to ``width`` pixels and
    clipped to the mask.

    Args:
        mask: (H, W) non-empty mask.
        rng: random generator.
        length: number of steps (default: twice the square root of the mask area).
        width: stroke width in pixels.
    """
    m = _as_mask(mask, "mask")
    rng = _check_rng(rng)
    if not m.any():
        raise ValueError("`mask` is empty: cannot draw a scribble inside it")
    if width < 1:
        raise ValueError(f"`width` must be >= 1, got {width}")
    h, w = m.shape
    steps = int(length) if length is not None else max(4, int(2 * np.sqrt(m.sum())))
    ys, xs = np.nonzero(m)
    start = int(rng.integers(len(ys)))
    y, x = int(ys[start]), int(xs[start])
    moves = np.array([(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)])
    heading = int(rng.integers(8))
    out = np.zeros_like(m)
    out[y, x] = True
    for _ in range(steps):
        # keep the heading with probability 0.7, otherwise pick any admissible move
        order = [heading] if rng.random() < 0.7 else []
        order += [int(k) for k in rng.permutation(8)]
        for k in order:
            ny, nx = y + moves[k][0], x + moves[k][1]
            if 0 <= ny < h and 0 <= nx < w and m[ny, nx]:
                y, x, heading = ny, nx, k
                out[y, x] = True
                break
    if width > 1:
        out = ndimage.binary_dilation(out, np.ones((width, width), bool)) & m
    return out


def _interior_points(m: np.ndarray, rng: np.random.Generator, n: int) -> np.ndarray:
    ys, xs = np.nonzero(m)
    pick = rng.choice(len(ys), size=min(n, len(ys)), replace=False)
    return np.stack([xs[pick], ys[pick]], 1)


def stroke_prompt(
    mask: Any,
    rng: np.random.Generator | None = None,
    num_points: tuple[int, int] = (2, 5),
    width: tuple[int, int] = (3, 6),
) -> np.ndarray:
    """A brush stroke (SEEM spec §6.1): a poly-line through ``U{num_points}`` random mask pixels, drawn
    ``U{width}`` pixels wide and clipped to the mask."""
    from PIL import Image, ImageDraw

    m = _as_mask(mask, "mask")
    rng = _check_rng(rng)
    if not m.any():
        raise ValueError("`mask` is empty: cannot draw a stroke inside it")
    n = int(rng.integers(num_points[0], num_points[1] + 1))
    w = int(rng.integers(width[0], width[1] + 1))
    pts = [tuple(int(v) for v in p) for p in _interior_points(m, rng, n)]
    canvas = Image.new("L", (m.shape[1], m.shape[0]), 0)
    draw = ImageDraw.Draw(canvas)
    if len(pts) > 1:
        draw.line(pts, fill=1, width=w, joint="curve")
    for x, y in pts:  # round caps, so a one-point stroke is still a dot
        draw.ellipse((x - w // 2, y - w // 2, x + w // 2, y + w // 2), fill=1)
    return np.asarray(canvas, dtype=bool) & m


def polygon_prompt(
    mask: Any, rng: np.random.Generator | None = None, max_points: int = 9, filled: bool = False
) -> np.ndarray:
    """A polygon prompt (SEEM spec §6.1): the outline (or filled area) through up to ``max_points`` mask pixels,
    ordered by angle around their mean so the polygon does not cross itself."""
    from PIL import Image, ImageDraw

    m = _as_mask(mask, "mask")
    rng = _check_rng(rng)
    if not m.any():
        raise ValueError("`mask` is empty: cannot draw a polygon inside it")
    if max_points < 3:
        raise ValueError(f"`max_points` must be >= 3, got {max_points}")
    pts = _interior_points(m, rng, int(rng.integers(3, max_points + 1))).astype(np.float64)
    centre = pts.mean(0)
    order = np.argsort(np.arctan2(pts[:, 1] - centre[1], pts[:, 0] - centre[0]))
    verts = [(int(x), int(y)) for x, y in pts[order]]
    canvas = Image.new("L", (m.shape[1], m.shape[0]), 0)
    draw = ImageDraw.Draw(canvas)
    if filled:
        draw.polygon(verts, fill=1)
    draw.line([*verts, verts[0]], fill=1, width=1)  # the outline, also around a filled polygon
    return np.asarray(canvas, dtype=bool)


def psalm_scribble(mask: Any, rng: np.random.Generator | None = None, max_tries: int = 1000) -> np.ndarray | None:
    """PSALM COCO-Interactive scribble: a sine wave along a diagonal of a jittered box, 5 px wide.

    The box's width and height are scaled by independent ``U[0.5, 1.2]`` factors about its centre until its IoU
    with the original box exceeds 0.5 (at most ``max_tries`` times; None when no jitter qualifies). The wave has
    amplitude ``U[10, 20]`` px, angular frequency ``U[0.2 * 2 pi, 2 pi]`` over the normalised diagonal and
    phase ``U[0, 2 pi]``, offsets the row coordinate, and is drawn as radius-5 discs around its pixels.
    """
    m = _as_mask(mask, "mask")
    rng = _check_rng(rng)
    h, w = m.shape
    x0, y0, x1, y1 = mask_to_box(m)
    cx, cy, bw, bh = (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0
    for _ in range(max_tries):
        jw, jh = bw * rng.uniform(0.5, 1.2), bh * rng.uniform(0.5, 1.2)
        inter = min(bw, jw) * min(bh, jh)  # both boxes share the centre
        if inter / (bw * bh + jw * jh - inter) > 0.5:
            break
    else:
        return None
    diagonal = int(rng.integers(2))
    amp = rng.uniform(10, 20)
    freq = rng.uniform(0.2 * 2 * np.pi, 2 * np.pi)
    phase = rng.uniform(0, 2 * np.pi)
    n = max(2, int(np.ceil(np.hypot(jw, jh))) * 2)
    t = np.linspace(0.0, 1.0, n)
    xs = cx - jw / 2 + t * jw
    ys = (cy - jh / 2 + t * jh) if diagonal == 0 else (cy + jh / 2 - t * jh)
    ys = ys + amp * np.sin(freq * t + phase)
    out = np.zeros((h, w), bool)
    xi = np.clip(np.round(xs).astype(int), 0, w - 1)
    yi = np.clip(np.round(ys).astype(int), 0, h - 1)
    out[yi, xi] = True
    r = 5
    disc = np.add.outer(np.arange(-r, r + 1) ** 2, np.arange(-r, r + 1) ** 2) <= r * r
    return ndimage.binary_dilation(out, disc)


# --------------------------------------------------------------------------- points and masks


def psalm_point(mask: Any, rng: np.random.Generator | None = None, max_tries: int = 1000) -> list[Click]:
    """PSALM COCO-Interactive point prompts: one click per connected component larger than 5 px.

    Each point is drawn in a disc around the component centroid with radius half the short side of the
    component's box (angle ``U[0, 2 pi]``, radius ``U[0, r]`` as the authors' code does, hence not
    area-uniform), clipped to the box and resampled up to ``max_tries`` times until it lies in the mask;
    a component whose draws all miss contributes its most interior pixel instead.
    """
    m = _as_mask(mask, "mask")
    rng = _check_rng(rng)
    labels, n = ndimage.label(m)
    clicks = []
    for k in range(1, n + 1):
        comp = labels == k
        if comp.sum() <= 5:
            continue
        x0, y0, x1, y1 = mask_to_box(comp)
        ys, xs = np.nonzero(comp)
        cx, cy = xs.mean(), ys.mean()
        radius = min(x1 - x0, y1 - y0) / 2
        for _ in range(max_tries):
            ang, rad = rng.uniform(0, 2 * np.pi), rng.uniform(0, radius)
            px = int(np.clip(round(cx + rad * np.cos(ang)), x0, x1 - 1))
            py = int(np.clip(round(cy + rad * np.sin(ang)), y0, y1 - 1))
            if comp[py, px]:
                clicks.append(Click(px, py, True))
                break
        else:
            px, py = _farthest_point(comp)
            clicks.append(Click(px, py, True))
    return clicks


def psalm_mask_prompt(mask: Any, sigma: float = 2.0) -> np.ndarray:
    """PSALM COCO-Interactive mask prompt: Gaussian blur (sigma 2), thresholded at the blurred map's mean."""
    m = _as_mask(mask, "mask")
    blurred = ndimage.gaussian_filter(m.astype(np.float64), sigma)
    return blurred > blurred.mean()


def coco_interactive_prompts(mask: Any, rng: np.random.Generator | None = None) -> dict[str, np.ndarray | None]:
    """All four PSALM COCO-Interactive prompts of one instance, rasterised as (H, W) boolean masks.

    Points are radius-10 discs (PSALM's training-time rendering); ``scribble`` is None when the box jitter
    never reaches IoU > 0.5.
    """
    m = _as_mask(mask, "mask")
    rng = _check_rng(rng)
    points = psalm_point(m, rng)
    point_mask = clicks_to_masks(points, m.shape, radius=10)[0] if points else None
    return {
        "point": point_mask,
        "scribble": psalm_scribble(m, rng),
        "box": box_to_mask(box_prompt(m, jitter=0.1, rng=rng), m.shape),
        "mask": psalm_mask_prompt(m),
    }


__all__ = [
    "Click",
    "box_prompt",
    "box_to_mask",
    "clicks_to_masks",
    "coco_interactive_prompts",
    "first_click",
    "interior_distance",
    "mask_to_box",
    "next_click",
    "polygon_prompt",
    "psalm_mask_prompt",
    "psalm_point",
    "psalm_scribble",
    "random_walk_scribble",
    "stroke_prompt",
]
