"""Image processor of the anti-aliased ResNet (ImageNet evaluation preprocessing by default)."""

from __future__ import annotations

from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, PILImageResampling

from ...modules.image_processing import SemanticImageProcessorBase


class AntiAliasedResNetImageProcessor(SemanticImageProcessorBase):
    r"""
    Classification defaults follow the released code's ImageNet evaluation: shortest edge 256 (bilinear), center
    crop 224, rescale 1/255, ImageNet mean/std. Segmentation checkpoints are saved with `do_center_crop=False`
    and a fixed `size={"height": h, "width": w}`, so that logits map back onto the whole input image.

    See [`~hf_unified_seg.modules.image_processing.SemanticImageProcessorBase`] for the accepted inputs,
    `segmentation_maps` -> `labels`, and `post_process_semantic_segmentation`.
    """

    resample = PILImageResampling.BILINEAR
    image_mean = IMAGENET_DEFAULT_MEAN
    image_std = IMAGENET_DEFAULT_STD
    size = {"shortest_edge": 256}
    crop_size = {"height": 224, "width": 224}
    do_center_crop = True


__all__ = ["AntiAliasedResNetImageProcessor"]
