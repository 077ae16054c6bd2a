"""ShapesWorld: the procedural, seeded multi-task segmentation dataset every model trains and evaluates on.

An image shows one or two textured *stuff* regions (sky or a brick wall above grass, sand, water, snow or gravel;
or a single one) and ``min_things..max_things`` *thing* shapes (circle, square, triangle, star, hexagon, heart,
cross, diamond, arrow, ring, pentagon, crescent) with a colour, a size class and a fill pattern (solid, stripes,
checker, dots), stacked in depth so nearer shapes occlude farther ones. Every annotation is exact.

Record schema (one row of the returned :class:`datasets.Dataset`; shared with the real-format loaders):

- ``image_id`` (int): index of the image in its split.
- ``image`` (PIL RGB, ``image_size`` x ``image_size``).
- ``panoptic`` (PIL RGB): COCO panoptic encoding, segment id = R + 256 * G + 256**2 * B, 0 = void. Stuff
  segments get ids 1.., things follow.
- ``segments_info`` (list of dict): ``id``, ``category_id`` (contiguous index into the categories table),
  ``isthing``, ``bbox`` [x, y, w, h] and ``area`` of the *visible* pixels, ``iscrowd`` (always 0), ``color``,
  ``size`` ("small" | "medium" | "large"), ``pattern`` ("solid" | "stripes" | "checker" | "dots"), ``depth``
  (0 = front-most thing, increasing backwards; -1 for stuff). Stuff segments have empty attribute strings.
- ``semantic`` (PIL "L"): category index per pixel, 255 = void (only the ``background="noise"`` option leaves void).
- ``label`` (int): category index of the largest visible thing: the image-level class.
- ``captions`` (list of str): template captions naming the shapes (left to right, with attributes) and the stuff.
- ``referring`` (list of dict): ``sentence``, ``segment_id``, ``kind``. Each sentence denotes exactly one
  segment of the image. ``kind`` is ``"attribute"`` (the shortest unique combination of size, colour, pattern
  and shape, e.g. "the small red striped star"), ``"spatial"`` ("the leftmost blue square", by the centroid
  of the visible pixels, with a margin of ``max(2, S // 32)`` px to the runner-up), ``"size"`` ("the larger
  of the two stars", "the smallest red circle"; visible areas differ by at least 30 %), ``"ordinal"`` ("the
  second heart from the left") or ``"depth"`` ("the green cross in front": of two matching shapes, the one
  that occludes the other).
- ``interleaved`` (list of dict): ``segment_id``, ``text``, ``ref_image_id``, ``ref_segment_id``. An entity of
  this image given either by text only (``ref_image_id == ref_segment_id == -1``; ``text`` is a unique
  referring sentence), or *visually* by the region ``ref_segment_id`` of another image ``ref_image_id`` of the
  same split showing the same shape class, which occurs exactly once in this image (``text`` then names the
  class, e.g. "the star", for text-side supervision).

Splits: ``train`` and ``val`` draw shapes from the seen classes only; ``val_openvocab`` puts at least one
held-out class (``held_out`` option, default pentagon and crescent) in every image. Held-out classes never
appear in ``train`` at all. The categories table (:func:`get_categories`) lists things first, then stuff, and
flags held-out classes with ``openvocab=True``.

Determinism: image ``i`` of split ``s`` draws only integers from ``numpy.random.default_rng(SeedSequence([seed,
split code, i]))`` and rasterises with integer geometry (see :mod:`.shapes`), so the same arguments give
byte-identical pixels and annotations on any machine, and an image does not depend on how many others are made.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import datasets
import numpy as np
from scipy import ndimage

from .records import (
    build_record,
    get_categories,
    instance_masks,
    largest_thing_label,
    make_segment,
    records_to_dataset,
)
from .shapes import (
    BOTTOM_STUFF,
    COLORS,
    PATTERN_WORDS,
    PATTERNS,
    SIZES,
    STUFF_CLASSES,
    THING_SHAPES,
    TOP_STUFF,
    pattern_map,
    secondary_color,
    shape_mask,
    stuff_texture,
)

__all__ = [
    "SPLITS",
    "DEFAULT_HELD_OUT",
    "shapesworld_categories",
    "generate_scene",
    "generate_split",
    "load_shapesworld",
    "build_shapesworld",
    "get_categories",
    "instance_masks",
]

SPLITS: dict[str, int] = {"train": 0, "val": 1, "val_openvocab": 2}
DEFAULT_NUM_IMAGES: dict[str, int] = {"train": 2000, "val": 200, "val_openvocab": 200}
DEFAULT_HELD_OUT: tuple[str, ...] = ("pentagon", "crescent")
_DEFAULT_OPTIONS: dict[str, Any] = {
    "min_things": 1,
    "max_things": 5,
    "num_stuff": (1, 2),
    "background": "stuff",
    "held_out": DEFAULT_HELD_OUT,
    "min_visible_fraction": 0.35,
    "max_relations": 2,
}
_PLURALS = {"cross": "crosses"}
_STUFF_PHRASES = {"sky": "the sky", "wall": "a brick wall", "snow": "snow", "grass": "grass", "sand": "sand"}
_STUFF_PHRASES.update(water="water", gravel="gravel")
_NUMBERS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
_ATTR_SETS: tuple[tuple[str, ...], ...] = (
    (),
    ("color",),
    ("size",),
    ("pattern",),
    ("size", "color"),
    ("color", "pattern"),
    ("size", "pattern"),
    ("size", "color", "pattern"),
)


def shapesworld_categories(held_out: Sequence[str] = DEFAULT_HELD_OUT) -> list[dict[str, Any]]:
    """The categories table: the thing shapes (indices 0..11), then the stuff classes."""
    held = set(held_out)
    cats = [{"id": i, "name": n, "isthing": True, "openvocab": n in held} for i, n in enumerate(THING_SHAPES)]
    cats += [
        {"id": len(THING_SHAPES) + i, "name": n, "isthing": False, "openvocab": False}
        for i, n in enumerate(STUFF_CLASSES)
    ]
    return cats


_THING_INDEX = {n: i for i, n in enumerate(THING_SHAPES)}
_STUFF_INDEX = {n: len(THING_SHAPES) + i for i, n in enumerate(STUFF_CLASSES)}


# --------------------------------------------------------------------------- options


def _resolve_options(image_size: Any, options: Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)):
        raise TypeError(f"`image_size` must be an int, got {type(image_size).__name__}")
    if image_size < 32:
        raise ValueError(f"`image_size` must be at least 32, got {image_size}")
    unknown = set(options) - set(_DEFAULT_OPTIONS)
    if unknown:
        raise TypeError(f"unknown ShapesWorld option(s) {sorted(unknown)}; known: {sorted(_DEFAULT_OPTIONS)}")
    opts = {**_DEFAULT_OPTIONS, **options}
    if not 1 <= int(opts["min_things"]) <= int(opts["max_things"]):
        raise ValueError(
            f"`min_things` and `max_things` must satisfy 1 <= min_things <= max_things, got "
            f"{opts['min_things']} and {opts['max_things']}"
        )
    if opts["background"] not in ("stuff", "noise"):
        raise ValueError(f"`background` must be 'stuff' or 'noise', got {opts['background']!r}")
    held = tuple(opts["held_out"])
    bad = [n for n in held if n not in THING_SHAPES]
    if bad:
        raise ValueError(f"`held_out` names unknown shapes {bad}; shapes are {THING_SHAPES}")
    if len(held) >= len(THING_SHAPES):
        raise ValueError("`held_out` must leave at least one seen shape")
    num_stuff = opts["num_stuff"]
    num_stuff = (int(num_stuff), int(num_stuff)) if np.isscalar(num_stuff) else tuple(int(v) for v in num_stuff)
    if len(num_stuff) != 2 or not 1 <= num_stuff[0] <= num_stuff[1] <= 2:
        raise ValueError(f"`num_stuff` must be 1, 2 or a range within (1, 2), got {opts['num_stuff']!r}")
    if not 0.0 <= float(opts["min_visible_fraction"]) <= 1.0:
        raise ValueError(f"`min_visible_fraction` must lie in [0, 1], got {opts['min_visible_fraction']}")
    opts.update(
        held_out=held,
        num_stuff=num_stuff,
        min_things=int(opts["min_things"]),
        max_things=int(opts["max_things"]),
        max_relations=int(opts["max_relations"]),
    )
    return opts


def _check_split(split: Any) -> int:
    if split not in SPLITS:
        raise ValueError(f"`split` must be one of {list(SPLITS)}, got {split!r}")
    return SPLITS[split]


def _image_rng(seed: int, split_code: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(split_code), int(index)]))


# --------------------------------------------------------------------------- scene generation


@dataclass
class _Thing:
    shape: str
    color: str
    size: str
    pattern: str
    radius: int
    cx: int
    cy: int
    order: int  # drawing rank before depth sorting, 0 = front-most
    seg_id: int = 0
    area: int = 0
    full_area: int = 0
    centroid: tuple[float, float] = (0.0, 0.0)
    bbox: list[int] = field(default_factory=list)
    occluded_by: set[int] = field(default_factory=set)


def _sample_things(rng: np.random.Generator, size: int, opts: dict[str, Any], split: str) -> list[_Thing]:
    held = set(opts["held_out"])
    seen = [s for s in THING_SHAPES if s not in held]
    n = int(rng.integers(opts["min_things"], opts["max_things"] + 1))
    color_names = list(COLORS)
    size_names = list(SIZES)
    things = []
    for k in range(n):
        if split == "val_openvocab" and k == 0 and held:
            pool = sorted(held, key=THING_SHAPES.index)
        elif split == "val_openvocab":
            pool = list(THING_SHAPES)
        else:
            pool = seen
        shape = pool[int(rng.integers(len(pool)))]
        color = color_names[int(rng.integers(len(color_names)))]
        size_name = size_names[int(rng.integers(len(size_names)))]
        pattern = PATTERNS[int(rng.integers(len(PATTERNS)))]
        lo, hi = SIZES[size_name]
        r = max(3, int(rng.integers(size * lo // 1000, size * hi // 1000 + 1)))
        cx = int(rng.integers(r, size - r))
        cy = int(rng.integers(r, size - r))
        things.append(_Thing(shape, color, size_name, pattern, r, cx, cy, order=0))
    for rank, k in enumerate(rng.permutation(n)):
        things[int(k)].order = rank
    return things


def _render_things(image: np.ndarray, ids: np.ndarray, things: list[_Thing], size: int, paint: bool) -> None:
    """Draw things far to near into ``ids`` (and ``image`` when ``paint``), so nearer ones occlude."""
    for t in sorted(things, key=lambda t: -t.order):
        m = shape_mask(t.shape, t.radius)
        y0, x0 = t.cy - t.radius, t.cx - t.radius
        sl = (slice(y0, y0 + m.shape[0]), slice(x0, x0 + m.shape[1]))
        ids[sl][m] = t.seg_id
        if paint:
            primary = np.array(COLORS[t.color], np.uint8)
            second = np.array(secondary_color(COLORS[t.color]), np.uint8)
            on = pattern_map(t.pattern, size)[sl][m]
            image[sl][m] = np.where(on[:, None], primary, second)


def generate_scene(
    rng: np.random.Generator, image_size: int, split: str = "train", **options: Any
) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]], list[_Thing]]:
    """Draw one scene.

    Returns:
        ``(image uint8 (S, S, 3), segment-id map int32 (S, S), segments_info, things)`` where ``things`` holds
        the per-thing geometry (centroid, occluders) that the language generators use.
    """
    opts = _resolve_options(image_size, options)
    _check_split(split)
    s = int(image_size)
    min_area = max(12, s * s // 400)
    for _attempt in range(100):
        # --- background
        if opts["background"] == "noise":
            image = rng.integers(0, 256, size=(s, s, 3), dtype=np.uint8)
            ids = np.zeros((s, s), np.int32)
            stuff: list[tuple[str, int]] = []
        else:
            n_stuff = int(rng.integers(opts["num_stuff"][0], opts["num_stuff"][1] + 1))
            if n_stuff == 1:
                name = STUFF_CLASSES[int(rng.integers(len(STUFF_CLASSES)))]
                image = stuff_texture(name, rng, s)
                ids = np.ones((s, s), np.int32)
                stuff = [(name, 1)]
            else:
                top = TOP_STUFF[int(rng.integers(len(TOP_STUFF)))]
                bottom = BOTTOM_STUFF[int(rng.integers(len(BOTTOM_STUFF)))]
                horizon = int(rng.integers(s * 3 // 10, s * 7 // 10 + 1))
                amp = max(1, s // 32)
                period = 4 * amp + int(rng.integers(0, 4 * amp + 1))
                x = np.arange(s)
                # an integer triangle wave makes the boundary visibly non-straight
                wave = (
                    np.abs((x + int(rng.integers(0, period))) % period - period // 2) * 2 * amp // max(1, period // 2)
                )
                below = np.arange(s)[:, None] >= horizon + wave[None, :] - amp
                image = np.where(below[..., None], stuff_texture(bottom, rng, s), stuff_texture(top, rng, s))
                ids = np.where(below, 2, 1).astype(np.int32)
                stuff = [(top, 1), (bottom, 2)]
        image = np.ascontiguousarray(image)
        # --- things: sample, measure visibility, drop the too-occluded ones (dropping only uncovers the rest)
        things = _sample_things(rng, s, opts, split)
        first_id = len(stuff) + 1
        for k, t in enumerate(things):
            t.seg_id = first_id + k
            t.full_area = int(shape_mask(t.shape, t.radius).sum())
        probe = np.zeros((s, s), np.int32)
        _render_things(probe, probe, things, s, paint=False)
        visible = np.bincount(probe.ravel(), minlength=first_id + len(things))
        keep = [
            t
            for t in things
            if visible[t.seg_id] >= min_area and visible[t.seg_id] >= opts["min_visible_fraction"] * t.full_area
        ]
        if len(keep) < opts["min_things"]:
            continue
        if split == "val_openvocab" and not any(t.shape in opts["held_out"] for t in keep):
            continue
        # renumber ids and depth ranks over the kept things (depth 0 = front-most)
        for rank, t in enumerate(sorted(keep, key=lambda t: t.order)):
            t.order = rank
        for k, t in enumerate(keep):
            t.seg_id = first_id + k
        _render_things(image, ids, keep, s, paint=True)
        break
    else:  # pragma: no cover - only reachable with contradictory options
        raise RuntimeError("could not place the requested number of shapes; lower `min_things`")

    n_ids = first_id + len(keep)
    flat = ids.ravel()
    areas = np.bincount(flat, minlength=n_ids)
    yy, xx = np.divmod(np.arange(s * s), s)
    sum_x = np.bincount(flat, weights=xx, minlength=n_ids)
    sum_y = np.bincount(flat, weights=yy, minlength=n_ids)
    slices = ndimage.find_objects(ids, max_label=n_ids - 1)

    def bbox(sid: int) -> list[int]:
        sl = slices[sid - 1]
        return [sl[1].start, sl[0].start, sl[1].stop - sl[1].start, sl[0].stop - sl[0].start]

    segments = []
    for name, sid in stuff:
        if areas[sid] > 0:
            segments.append(make_segment(sid, _STUFF_INDEX[name], False, bbox(sid), areas[sid]))
    for t in keep:
        t.area = int(areas[t.seg_id])
        t.centroid = (sum_x[t.seg_id] / t.area, sum_y[t.seg_id] / t.area)
        t.bbox = bbox(t.seg_id)
        m = shape_mask(t.shape, t.radius)
        y0, x0 = t.cy - t.radius, t.cx - t.radius
        under = ids[y0 : y0 + m.shape[0], x0 : x0 + m.shape[1]][m]
        t.occluded_by = {int(v) for v in np.unique(under) if v != t.seg_id and v > len(stuff)}
        segments.append(
            make_segment(t.seg_id, _THING_INDEX[t.shape], True, t.bbox, t.area, 0, t.color, t.size, t.pattern, t.order)
        )
    return image, ids, segments, keep


# --------------------------------------------------------------------------- language


def _phrase(t: _Thing, attrs: Sequence[str], plural: bool = False) -> str:
    words = []
    for a in ("size", "color", "pattern"):
        if a in attrs:
            words.append(PATTERN_WORDS[t.pattern] if a == "pattern" else getattr(t, a))
    noun = _PLURALS.get(t.shape, t.shape + "s") if plural else t.shape
    return " ".join([*words, noun])


def _matches(things: list[_Thing], t: _Thing, attrs: Sequence[str]) -> list[_Thing]:
    return [o for o in things if o.shape == t.shape and all(getattr(o, a) == getattr(t, a) for a in attrs)]


def attribute_expression(things: list[_Thing], t: _Thing) -> str | None:
    """The shortest "the <attributes> <shape>" that matches ``t`` and no other thing, or None."""
    for attrs in _ATTR_SETS:
        if len(_matches(things, t, attrs)) == 1:
            return "the " + _phrase(t, attrs)
    return None


_DIRECTIONS = {
    "left": lambda t: t.centroid[0],
    "right": lambda t: -t.centroid[0],
    "top": lambda t: t.centroid[1],
    "bottom": lambda t: -t.centroid[1],
}
_EXTREME_WORDS = {"left": "leftmost", "right": "rightmost", "top": "topmost", "bottom": "bottommost"}


def relation_expressions(things: list[_Thing], t: _Thing, image_size: int) -> list[tuple[str, str]]:
    """Unique (sentence, kind) descriptions of ``t`` by position, size, order or depth within its group."""
    margin = max(2, image_size // 32)
    ratio = 1.3
    out: list[tuple[str, str]] = []
    for attrs in ((), ("color",), ("size",), ("pattern",)):
        group = _matches(things, t, attrs)
        if len(group) < 2:
            continue
        phrase = _phrase(t, attrs)
        for direction, key in _DIRECTIONS.items():
            ranked = sorted(group, key=key)
            if ranked[0] is t and key(ranked[1]) - key(t) >= margin:
                out.append((f"the {_EXTREME_WORDS[direction]} {phrase}", "spatial"))
            if (
                len(group) >= 3
                and direction in ("left", "top")
                and ranked[1] is t
                and key(t) - key(ranked[0]) >= margin
                and key(ranked[2]) - key(t) >= margin
            ):
                out.append((f"the second {phrase} from the {direction}", "ordinal"))
        by_area = sorted(group, key=lambda o: -o.area)
        if len(group) == 2:
            other = group[0] if group[1] is t else group[1]
            plural = _phrase(t, attrs, plural=True)
            if t.area >= ratio * other.area:
                out.append((f"the larger of the two {plural}", "size"))
            elif other.area >= ratio * t.area:
                out.append((f"the smaller of the two {plural}", "size"))
            if t.seg_id in other.occluded_by:
                out.append((f"the {phrase} in front", "depth"))
        else:
            if by_area[0] is t and t.area >= ratio * by_area[1].area:
                out.append((f"the largest {phrase}", "size"))
            if by_area[-1] is t and by_area[-2].area >= ratio * t.area:
                out.append((f"the smallest {phrase}", "size"))
    # the same sentence can come out of two attribute groups; keep the first
    seen: set[str] = set()
    return [(s, k) for s, k in out if not (s in seen or seen.add(s))]


def referring_expressions(
    things: list[_Thing], image_size: int, rng: np.random.Generator, max_relations: int = 2
) -> list[dict[str, Any]]:
    out = []
    for t in things:
        attr = attribute_expression(things, t)
        if attr is not None:
            out.append({"sentence": attr, "segment_id": t.seg_id, "kind": "attribute"})
        relations = relation_expressions(things, t, image_size)
        if relations and max_relations > 0:
            picks = rng.permutation(len(relations))[:max_relations]
            for k in sorted(int(p) for p in picks):
                out.append({"sentence": relations[k][0], "segment_id": t.seg_id, "kind": relations[k][1]})
    return out


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def captions(things: list[_Thing], stuff_names: list[str]) -> list[str]:
    """Three template captions: full attributes, colour + shape with a count, and shapes only."""
    ordered = sorted(things, key=lambda t: (t.centroid[0], t.seg_id))
    full = [_phrase(t, ("size", "color", "pattern")) for t in ordered]
    colored = [_phrase(t, ("color",)) for t in ordered]
    counts: dict[str, int] = {}
    for t in ordered:
        counts[t.shape] = counts.get(t.shape, 0) + 1
    plain = [
        f"{_article(shape)} {shape}"
        if n == 1
        else f"{_NUMBERS[n] if n < len(_NUMBERS) else n} {_PLURALS.get(shape, shape + 's')}"
        for shape, n in counts.items()
    ]
    if stuff_names:
        place = " in front of " + _join([_STUFF_PHRASES[n] for n in stuff_names])
    else:
        place = " on a noisy background"
    count = _NUMBERS[len(things)] if len(things) < len(_NUMBERS) else str(len(things))
    noun = "shape" if len(things) == 1 else "shapes"
    return [
        _join([f"{_article(p)} {p}" for p in full]) + place + ".",
        f"{count} {noun}: " + _join([f"{_article(p)} {p}" for p in colored]) + ".",
        "a picture of " + _join(plain) + place + ".",
    ]


def interleaved_references(scenes: list[dict[str, Any]], index: int, search: int = 64) -> list[dict[str, Any]]:
    """Entities of scene ``index``: visual ones point at the same shape class in a later image of the split."""
    things = scenes[index]["things"]
    counts: dict[str, int] = {}
    for t in things:
        counts[t.shape] = counts.get(t.shape, 0) + 1
    out = []
    n = len(scenes)
    for t in things:
        ref = None
        if counts[t.shape] == 1:
            for step in range(1, min(n, search + 1)):
                other = scenes[(index + step) % n]
                match = next((o for o in other["things"] if o.shape == t.shape), None)
                if match is not None:
                    ref = (other["image_id"], match.seg_id)
                    break
        if ref is not None:
            out.append(
                {"segment_id": t.seg_id, "text": "the " + t.shape, "ref_image_id": ref[0], "ref_segment_id": ref[1]}
            )
        else:
            text = attribute_expression(things, t)
            if text is not None:
                out.append({"segment_id": t.seg_id, "text": text, "ref_image_id": -1, "ref_segment_id": -1})
    return out


# --------------------------------------------------------------------------- splits


def generate_split(
    split: str = "train", num_images: int | None = None, image_size: int = 128, seed: int = 0, **options: Any
) -> list[dict[str, Any]]:
    """Generate the raw records of a split (numpy arrays instead of PIL images, plus ``things``).

    This is :func:`load_shapesworld` without the Arrow encoding; benchmarks and tests use it directly.
    """
    code = _check_split(split)
    opts = _resolve_options(image_size, options)
    if num_images is None:
        num_images = DEFAULT_NUM_IMAGES[split]
    if isinstance(num_images, bool) or not isinstance(num_images, (int, np.integer)) or num_images < 0:
        raise ValueError(f"`num_images` must be a non-negative int, got {num_images!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"`seed` must be a non-negative int, got {seed!r}")
    categories = shapesworld_categories(opts["held_out"])
    scenes = []
    for index in range(int(num_images)):
        rng = _image_rng(seed, code, index)
        image, ids, segments, things = generate_scene(rng, image_size, split, **opts)
        stuff_names = [categories[s["category_id"]]["name"] for s in segments if not s["isthing"]]
        scenes.append(
            {
                "image_id": index,
                "image": image,
                "ids": ids,
                "segments_info": segments,
                "things": things,
                "label": largest_thing_label(segments),
                "captions": captions(things, stuff_names),
                "referring": referring_expressions(things, image_size, rng, opts["max_relations"]),
            }
        )
    for index, scene in enumerate(scenes):
        scene["interleaved"] = interleaved_references(scenes, index)
    return scenes


def load_shapesworld(
    split: str = "train", num_images: int | None = None, image_size: int = 128, seed: int = 0, **options: Any
) -> datasets.Dataset:
    """Generate one ShapesWorld split as a :class:`datasets.Dataset` (schema in the module docstring).

    Args:
        split: ``"train"``, ``"val"`` or ``"val_openvocab"``.
        num_images: number of images (default 2000 for train, 200 for the validation splits).
        image_size: side of the square images in pixels (>= 32).
        seed: base seed; image ``i`` uses ``SeedSequence([seed, split code, i])``.
        **options: ``min_things`` (1), ``max_things`` (5), ``num_stuff`` (1, 2, or a range, default (1, 2)),
            ``background`` ("stuff" or "noise": uniform noise left void), ``held_out`` (shape names kept out of
            train/val, default ("pentagon", "crescent")), ``min_visible_fraction`` (0.35: more occluded shapes
            are removed), ``max_relations`` (2: relational sentences kept per thing).

    Returns:
        The dataset; :func:`get_categories` gives its categories table.
    """
    opts = _resolve_options(image_size, options)
    scenes = generate_split(split, num_images, image_size, seed, **opts)
    n_categories = len(shapesworld_categories(opts["held_out"]))
    records = [
        build_record(
            sc["image"],
            sc["ids"],
            sc["segments_info"],
            sc["image_id"],
            n_categories,
            captions=sc["captions"],
            referring=sc["referring"],
            interleaved=sc["interleaved"],
        )
        for sc in scenes
    ]
    meta = {
        "source": "shapesworld",
        "split": split,
        "seed": int(seed),
        "image_size": int(image_size),
        "options": {k: list(v) if isinstance(v, tuple) else v for k, v in opts.items()},
    }
    return records_to_dataset(records, shapesworld_categories(opts["held_out"]), **meta)


def build_shapesworld(
    num_images: int | Mapping[str, int] | None = None,
    image_size: int = 128,
    seed: int = 0,
    splits: Sequence[str] = ("train", "val", "val_openvocab"),
    **options: Any,
) -> datasets.DatasetDict:
    """Generate several splits as a :class:`datasets.DatasetDict` (same arguments as :func:`load_shapesworld`).

    Args:
        num_images: one count for every split, or ``{split: count}``; missing splits use the defaults.
    """
    for split in splits:
        _check_split(split)
    out = {}
    for split in splits:
        n = num_images.get(split) if isinstance(num_images, Mapping) else num_images
        out[split] = load_shapesworld(split, n, image_size, seed, **options)
    return datasets.DatasetDict(out)
