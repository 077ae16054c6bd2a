"""Sampling of shifted / cropped views for the consistency metrics (anti-aliasing spec §4.2 and §4.5).

These produce the two views whose predictions ``classification_consistency`` and ``segmentation_consistency`` compare.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def shift_offsets(rng: np.random.Generator, max_shift: int = 32) -> tuple[tuple[int, int], tuple[int, int]]:
    """Two offsets (h1, w1), (h2, w2), each coordinate uniform in {0, ..., max_shift - 1} (Zhang 2019, Eq. 2.7)."""
    if max_shift < 1:
        raise ValueError(f"`max_shift` must be >= 1, got {max_shift}.")
    h1, w1, h2, w2 = (int(v) for v in rng.integers(0, max_shift, size=4))
    return (h1, w1), (h2, w2)


def shifted_crop_pair(
    images: Any, crop_size: int = 224, rng: np.random.Generator | None = None
) -> tuple[Any, Any, tuple]:
    """Two ``crop_size`` crops of a batch at one random offset pair shared by every image (§4.2 protocol).

    Args:
        images: (B, C, S, S) tensor or array, already resized and centre-cropped to ``S = crop_size + max_shift``
            (256 for the paper's 224 crops, so shifts are drawn from {0, ..., 31}).
        crop_size: side of the two crops.
        rng: numpy generator (the paper's runs use seed 7).

    Returns:
        ``(view_a, view_b, (offset_a, offset_b))``; the views keep the input's type.
    """
    if len(images.shape) != 4:
        raise ValueError(f"`images` must be (B, C, H, W), got shape {tuple(images.shape)}.")
    height, width = int(images.shape[-2]), int(images.shape[-1])
    # Shifts in {0, ..., S - crop - 1}: 256 px inputs and 224 px crops give the paper's {0, ..., 31}.
    max_shift = min(height, width) - crop_size
    if max_shift < 1:
        raise ValueError(f"`images` ({height}x{width}) must be larger than `crop_size`={crop_size} to allow shifts.")
    rng = rng if rng is not None else np.random.default_rng()
    (h1, w1), (h2, w2) = shift_offsets(rng, max_shift)
    view_a = images[..., h1 : h1 + crop_size, w1 : w1 + crop_size]
    view_b = images[..., h2 : h2 + crop_size, w2 : w2 + crop_size]
    return view_a, view_b, ((h1, w1), (h2, w2))


def random_crop_pair(
    height: int, width: int, rng: np.random.Generator, crop_fraction: float = 7 / 8
) -> tuple[tuple[int, int, int, int], tuple[int, int]]:
    """Top-left corners of two random crops of ``crop_fraction`` of each side (§4.5 default [P]: 7/8).

    Returns:
        ``((y_a, x_a, y_b, x_b), (crop_height, crop_width))``, ready for ``segmentation_consistency``'s ``crop_offsets``.
    """
    if not 0.0 < crop_fraction <= 1.0:
        raise ValueError(f"`crop_fraction` must be in (0, 1], got {crop_fraction}.")
    crop_h, crop_w = max(1, round(height * crop_fraction)), max(1, round(width * crop_fraction))
    y_a, y_b = (int(v) for v in rng.integers(0, height - crop_h + 1, size=2))
    x_a, x_b = (int(v) for v in rng.integers(0, width - crop_w + 1, size=2))
    return (y_a, x_a, y_b, x_b), (crop_h, crop_w)


def overlap_views(
    map_a: np.ndarray, map_b: np.ndarray, offsets: tuple[int, int, int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """The common region of two crops, as seen in each crop, given the crops' top-left corners in the image."""
    y_a, x_a, y_b, x_b = (int(v) for v in offsets)
    top, left = max(y_a, y_b), max(x_a, x_b)
    bottom = min(y_a + map_a.shape[0], y_b + map_b.shape[0])
    right = min(x_a + map_a.shape[1], x_b + map_b.shape[1])
    if bottom <= top or right <= left:
        empty = np.zeros((0, 0), dtype=map_a.dtype)
        return empty, empty
    view_a = map_a[top - y_a : bottom - y_a, left - x_a : right - x_a]
    view_b = map_b[top - y_b : bottom - y_b, left - x_b : right - x_b]
    return view_a, view_b
