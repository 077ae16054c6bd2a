"""Image processor for PS-ViT (classification and semantic segmentation)."""

from __future__ import annotations

from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, PILImageResampling

from ...modules.image_processing import SemanticImageProcessorBase


class PsVitImageProcessor(SemanticImageProcessorBase):
    r"""
    PS-ViT image processor: RGB conversion, resize of the shortest edge to 256 (bicubic), centre crop 224x224,
    rescale to [0, 1] and ImageNet normalisation (the reference's evaluation transform, spec §7.7).

    For semantic segmentation save the processor with `do_center_crop=False` and a fixed
    `size={"height": S, "width": S}` (S divisible by 4) so that logits map back onto the whole image;
    `post_process_semantic_segmentation` then upsamples them to each original size.
    """

    resample = PILImageResampling.BICUBIC
    image_mean = IMAGENET_DEFAULT_MEAN
    image_std = IMAGENET_DEFAULT_STD
    size = {"shortest_edge": 256}
    crop_size = {"height": 224, "width": 224}
    do_center_crop = True


__all__ = ["PsVitImageProcessor"]
