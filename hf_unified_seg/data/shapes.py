"""Integer-only rasterisation of the ShapesWorld thing shapes, fill patterns and stuff textures.

Everything here uses integer arithmetic (vertex tables in units of 1/1000 of the shape radius, integer
distance tests, an integer even-odd polygon fill rather than a library rasteriser) and integer draws from a seeded
:class:`numpy.random.Generator`, so the same seed yields byte-identical pixels on every platform: no
transcendental function (sin, exp, ...) whose last bit could differ between math libraries is ever evaluated.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

THING_SHAPES: tuple[str, ...] = (
    "circle",
    "square",
    "triangle",
    "star",
    "hexagon",
    "heart",
    "cross",
    "diamond",
    "arrow",
    "ring",
    "pentagon",
    "crescent",
)
STUFF_CLASSES: tuple[str, ...] = ("sky", "wall", "grass", "sand", "water", "snow", "gravel")
# stuff that sits on top when an image has two stuff regions, and stuff that sits below
TOP_STUFF: tuple[str, ...] = ("sky", "wall")
BOTTOM_STUFF: tuple[str, ...] = ("grass", "sand", "water", "snow", "gravel")

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "green": (30, 170, 60),
    "blue": (35, 70, 215),
    "yellow": (240, 205, 30),
    "orange": (245, 125, 20),
    "purple": (135, 50, 185),
    "white": (245, 245, 245),
    "black": (25, 25, 25),
}
PATTERNS: tuple[str, ...] = ("solid", "stripes", "checker", "dots")
PATTERN_WORDS: dict[str, str] = {"solid": "solid", "stripes": "striped", "checker": "checkered", "dots": "dotted"}
# radius range per size class, in thousandths of the image side
SIZES: dict[str, tuple[int, int]] = {"small": (60, 90), "medium": (100, 140), "large": (155, 210)}

# vertex tables (x, y) for radius 1000, y pointing down; values are the rounded regular-polygon coordinates
_POLYGONS: dict[str, tuple[tuple[int, int], ...]] = {
    "triangle": ((0, -1000), (866, 500), (-866, 500)),
    "star": (
        (0, -1000),
        (235, -324),
        (951, -309),
        (380, 124),
        (588, 809),
        (0, 400),
        (-588, 809),
        (-380, 124),
        (-951, -309),
        (-235, -324),
    ),
    "hexagon": ((1000, 0), (500, 866), (-500, 866), (-1000, 0), (-500, -866), (500, -866)),
    "pentagon": ((0, -1000), (951, -309), (588, 809), (-588, 809), (-951, -309)),
    # the classic cardioid heart curve sampled at 28 points, centred vertically
    "heart": (
        (0, -503),
        (10, -568),
        (77, -728),
        (228, -891),
        (450, -964),
        (688, -898),
        (872, -704),
        (941, -436),
        (872, -152),
        (688, 114),
        (450, 357),
        (228, 580),
        (77, 775),
        (10, 913),
        (0, 964),
        (-10, 913),
        (-77, 775),
        (-228, 580),
        (-450, 357),
        (-688, 114),
        (-872, -152),
        (-941, -436),
        (-872, -704),
        (-688, -898),
        (-450, -964),
        (-228, -891),
        (-77, -728),
        (-10, -568),
    ),
    "arrow": ((-1000, -300), (200, -300), (200, -750), (1000, 0), (200, 750), (200, 300), (-1000, 300)),
}


def _scale(v: int, r: int) -> int:
    """``round(v * r / 1000)`` in integers, rounding halves away from zero so shapes stay mirror-symmetric."""
    q = (abs(v) * r + 500) // 1000
    return q if v >= 0 else -q


def polygon_mask(vertices: list[tuple[int, int]], px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """Even-odd fill of an integer polygon sampled at the integer points ``(px, py)`` (broadcast together).

    Pure integer arithmetic (no rasteriser whose edge rules could change between library versions): a point is
    inside when a ray towards +x crosses the boundary an odd number of times; each crossing test
    ``px < x1 + (py - y1) * (x2 - x1) / (y2 - y1)`` is multiplied out by ``y2 - y1``. Points exactly on an edge
    count as inside.
    """
    px, py = np.broadcast_arrays(np.asarray(px, np.int64), np.asarray(py, np.int64))
    inside = np.zeros(px.shape, bool)
    on_edge = np.zeros(px.shape, bool)
    n = len(vertices)
    for k in range(n):
        x1, y1 = vertices[k]
        x2, y2 = vertices[(k + 1) % n]
        # on the segment: collinear and within its bounding box
        cross = (x2 - x1) * (py - y1) - (y2 - y1) * (px - x1)
        on_edge |= (cross == 0) & (px >= min(x1, x2)) & (px <= max(x1, x2)) & (py >= min(y1, y2)) & (py <= max(y1, y2))
        if y1 == y2:
            continue
        spans = (py >= min(y1, y2)) & (py < max(y1, y2))  # half-open: a vertex is counted once
        lhs = (px - x1) * (y2 - y1)
        rhs = (py - y1) * (x2 - x1)
        left = lhs < rhs if y2 > y1 else lhs > rhs
        inside ^= spans & left
    return inside | on_edge


@lru_cache(maxsize=4096)
def shape_mask(shape: str, radius: int) -> np.ndarray:
    """Boolean mask (2r+1, 2r+1) of ``shape`` centred at (r, r); cached and read-only."""
    r = int(radius)
    d = np.arange(-r, r + 1, dtype=np.int64)
    dy, dx = d[:, None], d[None, :]
    if shape == "circle":
        mask = dx * dx + dy * dy <= r * r
    elif shape == "ring":
        inner = r * 55 // 100
        rr = dx * dx + dy * dy
        mask = (rr <= r * r) & (rr > inner * inner)
    elif shape == "crescent":
        ox, oy, r2 = r * 45 // 100, -(r * 25 // 100), r * 85 // 100
        mask = (dx * dx + dy * dy <= r * r) & ((dx - ox) ** 2 + (dy - oy) ** 2 > r2 * r2)
    elif shape == "square":
        half = r * 80 // 100
        mask = (np.abs(dx) <= half) & (np.abs(dy) <= half)
    elif shape == "cross":
        arm, reach = r * 30 // 100, r * 90 // 100
        mask = ((np.abs(dx) <= arm) & (np.abs(dy) <= reach)) | ((np.abs(dy) <= arm) & (np.abs(dx) <= reach))
    elif shape == "diamond":
        # |dx| / (0.65 r) + |dy| / r <= 1, multiplied out to stay in integers
        mask = 100 * np.abs(dx) + 65 * np.abs(dy) <= 65 * r
    elif shape in _POLYGONS:
        pts = [(_scale(vx, r), _scale(vy, r)) for vx, vy in _POLYGONS[shape]]
        mask = polygon_mask(pts, dx, dy)
    else:
        raise ValueError(f"`shape` must be one of {THING_SHAPES}, got {shape!r}")
    mask = np.ascontiguousarray(mask)
    mask.setflags(write=False)
    return mask


@lru_cache(maxsize=64)
def pattern_map(pattern: str, image_size: int) -> np.ndarray:
    """Boolean (S, S) map: True where a thing with ``pattern`` shows its primary colour."""
    s = int(image_size)
    period = max(4, s // 16)
    half = period // 2
    y, x = np.mgrid[0:s, 0:s]
    if pattern == "solid":
        out = np.ones((s, s), bool)
    elif pattern == "stripes":
        out = ((x + y) // half) % 2 == 0
    elif pattern == "checker":
        out = ((x // half) + (y // half)) % 2 == 0
    elif pattern == "dots":
        rad = max(1, period // 4)
        out = ((x % period - half) ** 2 + (y % period - half) ** 2) > rad * rad
    else:
        raise ValueError(f"`pattern` must be one of {PATTERNS}, got {pattern!r}")
    out.setflags(write=False)
    return out


def secondary_color(color: tuple[int, int, int]) -> tuple[int, int, int]:
    """The colour of the 'off' pixels of a pattern: darker for light colours, lighter for dark ones."""
    if sum(color) > 360:
        return tuple(c * 45 // 100 for c in color)  # type: ignore[return-value]
    return tuple(c // 2 + 128 for c in color)  # type: ignore[return-value]


def _noise(rng: np.random.Generator, shape: tuple[int, ...], amp: int) -> np.ndarray:
    return rng.integers(-amp, amp + 1, size=shape, dtype=np.int16)


def _blocky(rng: np.random.Generator, s: int, block: int, amp: int) -> np.ndarray:
    n = s // block + 1
    coarse = _noise(rng, (n, n), amp)
    return np.repeat(np.repeat(coarse, block, 0), block, 1)[:s, :s]


def _smooth(rng: np.random.Generator, s: int, block: int, amp: int) -> np.ndarray:
    """Value noise: a coarse integer grid bilinearly interpolated in integer arithmetic (soft blobs)."""
    n = s // block + 2
    c = _noise(rng, (n, n), amp).astype(np.int64)
    pos = np.arange(s)
    i, f = pos // block, pos % block
    fy, fx = f[:, None], f[None, :]
    iy, ix = i[:, None], i[None, :]
    b = block
    total = (
        c[iy, ix] * (b - fy) * (b - fx)
        + c[iy + 1, ix] * fy * (b - fx)
        + c[iy, ix + 1] * (b - fy) * fx
        + c[iy + 1, ix + 1] * fy * fx
    )
    return (total // (b * b)).astype(np.int16)


def stuff_texture(name: str, rng: np.random.Generator, image_size: int) -> np.ndarray:
    """A visibly textured (S, S, 3) uint8 image of stuff class ``name``."""
    s = int(image_size)
    y, x = np.mgrid[0:s, 0:s].astype(np.int16)
    if name == "sky":
        top, bottom = np.array([95, 155, 230], np.int16), np.array([185, 215, 245], np.int16)
        base = top + (bottom - top) * y[..., None].astype(np.int32) // max(1, s - 1)
        clouds = np.maximum(_smooth(rng, s, max(2, s // 8), 90) - 20, 0)  # soft bright puffs
        img = base + clouds[..., None] + _noise(rng, (s, s), 4)[..., None]
    elif name == "wall":
        h = max(4, s // 16)
        row = y // h
        mortar = (y % h == 0) | ((x + (row % 2) * h) % (2 * h) == 0)
        brick = np.array([165, 75, 55], np.int16) + _blocky(rng, s, h, 15)[..., None]
        img = np.where(mortar[..., None], np.array([205, 200, 190], np.int16), brick)
        img = img + _noise(rng, (s, s), 8)[..., None]
    elif name == "grass":
        streaks = np.repeat(_noise(rng, (s // 3 + 1, s), 40), 3, 0)[:s]
        img = np.array([70, 150, 55], np.int16) + streaks[..., None] * np.array([1, 2, 1], np.int16) // 2
    elif name == "sand":
        grain = _noise(rng, (s, s), 18) - 60 * (rng.integers(0, 30, size=(s, s)) == 0)
        img = np.array([215, 190, 135], np.int16) + grain[..., None]
    elif name == "water":
        period = max(6, s // 10)
        zigzag = np.abs(x % 16 - 8)
        phase = int(rng.integers(0, period))
        crest = (2 * y + zigzag + phase) % period < 2
        img = np.array([35, 95, 165], np.int16) + 70 * crest[..., None] + _noise(rng, (s, s), 6)[..., None]
    elif name == "snow":
        specks = 40 * (rng.integers(0, 25, size=(s, s)) == 0)
        img = np.array([232, 236, 245], np.int16) + (_noise(rng, (s, s), 8) - specks)[..., None]
    elif name == "gravel":
        img = (
            np.array([125, 120, 112], np.int16)
            + (_blocky(rng, s, max(2, s // 32), 45) + _noise(rng, (s, s), 10))[..., None]
        )
    else:
        raise ValueError(f"`name` must be one of {STUFF_CLASSES}, got {name!r}")
    return np.clip(img, 0, 255).astype(np.uint8)
