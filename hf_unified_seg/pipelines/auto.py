"""Auto classes for the tasks transformers has no Auto class for (referring segmentation, retrieval, captioning).

They behave like transformers' own Auto classes: model packages `register(ConfigClass, ModelClass)` them, and
`from_pretrained` builds the registered head from a checkpoint's config. The custom pipelines of this package load
their models through them.
"""

from __future__ import annotations

from collections import OrderedDict

from transformers.models.auto.auto_factory import _BaseAutoModelClass, _LazyAutoMapping
from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES


def _empty_mapping() -> _LazyAutoMapping:
    # no built-in transformers model does these tasks: every entry comes from `register`
    return _LazyAutoMapping(CONFIG_MAPPING_NAMES, OrderedDict())


class AutoModelForReferringSegmentation(_BaseAutoModelClass):
    """Models that segment the region an image phrase refers to (`task="referring"` forward)."""

    _model_mapping = _empty_mapping()


class AutoModelForImageTextRetrieval(_BaseAutoModelClass):
    """Dual-encoder models returning `logits_per_image` / `logits_per_text`."""

    _model_mapping = _empty_mapping()


class AutoModelForImageCaptioning(_BaseAutoModelClass):
    """Models with a `generate(pixel_values, max_new_tokens=...)` returning caption token ids."""

    _model_mapping = _empty_mapping()


__all__ = ["AutoModelForImageCaptioning", "AutoModelForImageTextRetrieval", "AutoModelForReferringSegmentation"]
