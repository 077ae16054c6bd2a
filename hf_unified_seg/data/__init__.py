"""Datasets, real-format loaders and prompt simulation.

- :func:`load_shapesworld` / :func:`build_shapesworld`: the procedural ShapesWorld dataset (schema in
  :mod:`hf_unified_seg.data.shapesworld`).
- :func:`get_categories`, :func:`instance_masks`: read the categories table and the masks of any record;
  :func:`build_record`, :func:`make_segment`, :func:`records_to_dataset` build new data in the same schema.
- :func:`export_coco_panoptic`, :func:`export_coco_instances`: write any split in COCO formats.
- :func:`load_coco_panoptic`, :func:`load_coco_instances`, :func:`load_refcoco`, :func:`load_semantic_folder`:
  real formats into the same record schema; :func:`detect_format` / :func:`load_folder` pick the right one.
- :mod:`hf_unified_seg.data.prompts`: click / box / scribble / mask prompt simulation.
"""

from .coco import export_coco, export_coco_instances, export_coco_panoptic, load_coco_instances, load_coco_panoptic
from .folder import FORMATS, detect_format, load_folder
from .records import build_record, get_categories, instance_masks, make_segment, records_to_dataset
from .refcoco import load_refcoco
from .semantic_folder import CITYSCAPES_CATEGORIES, CITYSCAPES_LABEL_TO_TRAIN, load_semantic_folder
from .shapesworld import build_shapesworld, generate_split, load_shapesworld, shapesworld_categories

__all__ = [
    "CITYSCAPES_CATEGORIES",
    "CITYSCAPES_LABEL_TO_TRAIN",
    "FORMATS",
    "detect_format",
    "export_coco",
    "export_coco_instances",
    "export_coco_panoptic",
    "load_coco_instances",
    "load_coco_panoptic",
    "load_folder",
    "load_refcoco",
    "load_semantic_folder",
    "build_record",
    "build_shapesworld",
    "generate_split",
    "get_categories",
    "instance_masks",
    "load_shapesworld",
    "make_segment",
    "records_to_dataset",
    "shapesworld_categories",
]
