"""Datasets, real-format loaders and prompt simulation.

- :func:`load_shapesworld` / :func:`build_shapesworld`: the procedural ShapesWorld dataset (schema in
  :mod:`hf_unified_seg.data.shapesworld`).
- :func:`get_categories`, :func:`instance_masks`: read the categories table and the masks of any record.
- :mod:`hf_unified_seg.data.prompts`: click / box / scribble / mask prompt simulation.
"""

from .records import get_categories, instance_masks
from .shapesworld import build_shapesworld, generate_split, load_shapesworld, shapesworld_categories

__all__ = [
    "build_shapesworld",
    "generate_split",
    "get_categories",
    "instance_masks",
    "load_shapesworld",
    "shapesworld_categories",
]
