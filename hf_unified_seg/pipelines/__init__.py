"""Custom pipelines, registered with transformers' `PIPELINE_REGISTRY` on import.

- `"referring-segmentation"`: image + phrase(s) -> one mask per phrase ([`ReferringSegmentationPipeline`]);
- `"image-text-retrieval"`: rank images for texts and texts for images ([`ImageTextRetrievalPipeline`]);
- `"image-captioning"`: greedy captions ([`ImageCaptioningPipeline`]).

Models join a task by registering with the matching Auto class of :mod:`hf_unified_seg.pipelines.auto`.
:func:`add_to_pipeline_support` lists a model in transformers' own pipelines (e.g. `image-segmentation`), whose
support check reads the static name tables and would otherwise log "not supported" for a registered model.
"""

from __future__ import annotations

from transformers.models.auto import modeling_auto
from transformers.pipelines import PIPELINE_REGISTRY

from .auto import AutoModelForImageCaptioning, AutoModelForImageTextRetrieval, AutoModelForReferringSegmentation
from .image_captioning import ImageCaptioningPipeline
from .image_text_retrieval import ImageTextRetrievalPipeline
from .referring_segmentation import ReferringSegmentationPipeline

CUSTOM_TASKS = {
    "referring-segmentation": (ReferringSegmentationPipeline, AutoModelForReferringSegmentation, "multimodal"),
    "image-text-retrieval": (ImageTextRetrievalPipeline, AutoModelForImageTextRetrieval, "multimodal"),
    "image-captioning": (ImageCaptioningPipeline, AutoModelForImageCaptioning, "multimodal"),
}

for _task, (_pipeline_class, _auto_class, _type) in CUSTOM_TASKS.items():
    # registering twice logs an "overwriting" warning: only register what is missing
    if _task not in PIPELINE_REGISTRY.supported_tasks:
        PIPELINE_REGISTRY.register_pipeline(_task, pipeline_class=_pipeline_class, pt_model=_auto_class, type=_type)

_NAME_TABLES = {
    "universal-segmentation": "MODEL_FOR_UNIVERSAL_SEGMENTATION_MAPPING_NAMES",
    "semantic-segmentation": "MODEL_FOR_SEMANTIC_SEGMENTATION_MAPPING_NAMES",
    "instance-segmentation": "MODEL_FOR_INSTANCE_SEGMENTATION_MAPPING_NAMES",
    "image-classification": "MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES",
}


def add_to_pipeline_support(kind: str, model_type: str, class_name: str) -> None:
    """
    List `class_name` (for `model_type`) in transformers' name table `kind`, so its pipelines accept the model.

    Args:
        kind (`str`): one of `"universal-segmentation"`, `"semantic-segmentation"`, `"instance-segmentation"`,
            `"image-classification"`.
        model_type (`str`): the config's `model_type`; must be one transformers does not know, so its lazy Auto
            mappings never try to import it from `transformers.models`.
        class_name (`str`): the model class name.
    """
    if kind not in _NAME_TABLES:
        raise ValueError(f"`kind` must be one of {sorted(_NAME_TABLES)}, got {kind!r}.")
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    if model_type in CONFIG_MAPPING_NAMES:
        raise ValueError(f"`model_type` {model_type!r} belongs to transformers; only list our own model types.")
    getattr(modeling_auto, _NAME_TABLES[kind]).setdefault(model_type, class_name)


__all__ = [
    "CUSTOM_TASKS",
    "AutoModelForImageCaptioning",
    "AutoModelForImageTextRetrieval",
    "AutoModelForReferringSegmentation",
    "ImageCaptioningPipeline",
    "ImageTextRetrievalPipeline",
    "ReferringSegmentationPipeline",
    "add_to_pipeline_support",
]
