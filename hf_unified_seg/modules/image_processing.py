"""Shared PIL-backend image processor for classification and semantic-segmentation models.

Model-specific processors subclass :class:`SemanticImageProcessorBase` and only override class-level
defaults (size, crop, mean/std). Everything runs on PIL/NumPy: torchvision has no CPU build on the
machines this project targets, so transformers' ``TorchvisionBackend`` is never required.

Subclass names must not end in ``Pil``: transformers strips that suffix from ``image_processor_type`` when
saving ``preprocessor_config.json``, and ``AutoImageProcessor`` would then look up a class that does not exist.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F
from transformers.image_processing_backends import PilBackend
from transformers.image_processing_base import BatchFeature
from transformers.image_transforms import convert_to_rgb, get_size_with_aspect_ratio
from transformers.image_utils import (
    IMAGENET_DEFAULT_MEAN,
    IMAGENET_DEFAULT_STD,
    ChannelDimension,
    ImageInput,
    PILImageResampling,
    SizeDict,
    get_image_size_for_max_height_width,
    make_flat_list_of_images,
)
from transformers.processing_utils import ImagesKwargs, Unpack
from transformers.utils import TensorType

IGNORE_INDEX = 255


class SemanticImageProcessorKwargs(ImagesKwargs, total=False):
    r"""
    do_reduce_labels (`bool`, *optional*, defaults to `self.do_reduce_labels`):
        Map label 0 (background) to the ignore index 255 and shift every other label down by one, as for
        ADE20k-style maps whose 0 means "unlabelled".
    """

    do_reduce_labels: bool


class SemanticImageProcessorBase(PilBackend):
    r"""
    Image processor for image classification and semantic segmentation.

    Pipeline per image: convert to RGB (grayscale, palette and RGBA PIL images as well as 1/3/4-channel
    arrays and tensors; transparency is composited onto white) -> resize (`size` with `shortest_edge`, or a
    fixed `height`/`width`) -> optional center crop -> rescale -> normalize. Returns `pixel_values`
    `(batch, 3, height, width)`.

    When `segmentation_maps` are given (PIL "L"/"P"/"I" images, 2-D arrays or tensors of class indices) they
    follow the same geometric steps with nearest-neighbour resampling, are never rescaled or normalised, and
    come back as `labels` (int64, `(batch, height, width)`, 255 = ignore).

    Class attributes are the defaults; every one of them can be overridden by a keyword argument at
    construction or at call time.
    """

    valid_kwargs = SemanticImageProcessorKwargs
    model_input_names = ["pixel_values"]
    resample = PILImageResampling.BILINEAR
    image_mean = IMAGENET_DEFAULT_MEAN
    image_std = IMAGENET_DEFAULT_STD
    size = {"shortest_edge": 256}
    default_to_square = False
    crop_size = {"height": 224, "width": 224}
    do_resize = True
    do_center_crop = True
    do_rescale = True
    rescale_factor = 1 / 255
    do_normalize = True
    do_convert_rgb = True
    do_reduce_labels = False

    def __init__(self, **kwargs: Unpack[SemanticImageProcessorKwargs]) -> None:
        super().__init__(**kwargs)

    def preprocess(
        self,
        images: ImageInput,
        segmentation_maps: ImageInput | None = None,
        **kwargs: Unpack[SemanticImageProcessorKwargs],
    ) -> BatchFeature:
        r"""
        Args:
            images (`ImageInput`):
                One image or a list of images (PIL, NumPy `(H, W[, C])` / `(C, H, W)`, or torch tensors).
            segmentation_maps (`ImageInput`, *optional*):
                Matching class-index maps, one per image.
            kwargs:
                Any attribute of the processor, overriding it for this call.
        """
        return super().preprocess(images, segmentation_maps, **kwargs)

    # ------------------------------------------------------------------ images

    def process_image(
        self,
        image: ImageInput,
        do_convert_rgb: bool | None = None,
        input_data_format: str | ChannelDimension | None = None,
        **kwargs: Any,
    ) -> np.ndarray:
        """Convert one raw image to a channels-first RGB array."""
        if isinstance(image, PIL.Image.Image):
            # PIL knows the mode, so "L", "P", "LA", "RGBA", "I;16"... all reduce to RGB here.
            if image.mode in ("I", "I;16", "F"):
                image = _scale_high_bit_depth(image)
            return np.moveaxis(convert_to_rgb(image, return_numpy=True), -1, 0)
        if not isinstance(image, (np.ndarray, torch.Tensor)):
            raise TypeError(f"`images` must be PIL images, NumPy arrays or torch tensors, got {type(image).__name__}.")
        image = super().process_image(image, do_convert_rgb=False, input_data_format=input_data_format)
        num_channels = image.shape[0]
        if num_channels in (1, 4):
            image = convert_to_rgb(image, return_numpy=True, input_data_format=ChannelDimension.FIRST)
        elif num_channels != 3:
            raise ValueError(f"`images` must have 1, 3 or 4 channels, got an array of shape {tuple(image.shape)}.")
        return image

    def _preprocess_image_like_inputs(
        self,
        images: ImageInput,
        segmentation_maps: ImageInput | None,
        do_convert_rgb: bool,
        input_data_format: ChannelDimension | None,
        return_tensors: str | TensorType | None,
        **kwargs: Any,
    ) -> BatchFeature:
        images = self._prepare_image_like_inputs(
            images=add_channel_to_2d(images), do_convert_rgb=do_convert_rgb, input_data_format=input_data_format
        )
        data = {"pixel_values": self._preprocess(images, return_tensors=None, **kwargs)["pixel_values"]}
        if segmentation_maps is not None:
            maps = [_to_label_array(m) for m in make_flat_list_of_images(segmentation_maps, expected_ndims=2)]
            if len(maps) != len(images):
                raise ValueError(
                    f"`segmentation_maps` must contain one map per image: got {len(maps)} maps for {len(images)} images."
                )
            data["labels"] = [self._preprocess_label(m, **kwargs) for m in maps]
        return BatchFeature(data=data, tensor_type=return_tensors)

    # ------------------------------------------------------------------ labels

    def _preprocess_label(
        self,
        label: np.ndarray,
        do_resize: bool,
        size: SizeDict,
        do_center_crop: bool,
        crop_size: SizeDict,
        do_reduce_labels: bool,
        **kwargs: Any,
    ) -> np.ndarray:
        """Apply the geometric steps of the image pipeline to one `(H, W)` label map (nearest neighbour)."""
        if do_reduce_labels:
            label = reduce_labels(label)
        if do_resize:
            height, width = self.resized_hw(label.shape[0], label.shape[1], size)
            # PIL mode "I" (int32) keeps ids above 255 intact, unlike the uint8 path of the image resize.
            resized = PIL.Image.fromarray(label.astype(np.int32)).resize((width, height), PIL.Image.NEAREST)
            label = np.asarray(resized)
        if do_center_crop:
            label = self.center_crop(label[None], crop_size)[0]
        return label.astype(np.int64)

    @staticmethod
    def resized_hw(height: int, width: int, size: SizeDict) -> tuple[int, int]:
        """The `(height, width)` that `resize` produces for an input of this size (same rules as the backend)."""
        if size.shortest_edge and size.longest_edge:
            return get_size_with_aspect_ratio((height, width), size.shortest_edge, size.longest_edge)
        if size.shortest_edge:
            short, long = (height, width) if height <= width else (width, height)
            new_short, new_long = size.shortest_edge, int(size.shortest_edge * long / short)
            return (new_short, new_long) if height <= width else (new_long, new_short)
        if size.max_height and size.max_width:
            return get_image_size_for_max_height_width((height, width), size.max_height, size.max_width)
        if size.height and size.width:
            return size.height, size.width
        raise ValueError(
            f"`size` must give `shortest_edge`, `max_height`/`max_width` or `height`/`width`, got {size}."
        )

    # ------------------------------------------------------------------ post-processing

    def post_process_semantic_segmentation(
        self, outputs: Any, target_sizes: list[tuple[int, int]] | torch.Tensor | None = None
    ) -> list[torch.Tensor]:
        """
        Turn semantic-segmentation logits into per-image class maps (same contract as SegFormer's processor).

        Args:
            outputs:
                Model output with a `logits` field of shape `(batch, num_labels, h, w)`.
            target_sizes (`list[tuple[int, int]]` or `torch.Tensor` of shape `(batch, 2)`, *optional*):
                `(height, width)` per image. Logits are upsampled bilinearly to it before the argmax; when
                omitted the maps stay at the logits' resolution.

        Returns:
            `list[torch.Tensor]`: one `(height, width)` int64 map of class indices per image.
        """
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs.logits
        if target_sizes is None:
            return list(logits.argmax(dim=1))
        if isinstance(target_sizes, torch.Tensor):
            target_sizes = target_sizes.tolist()
        if len(target_sizes) != len(logits):
            raise ValueError(
                f"`target_sizes` must have one (height, width) per image: got {len(target_sizes)} for a batch of "
                f"{len(logits)}."
            )
        maps = []
        for logit, target_size in zip(logits, target_sizes):
            resized = F.interpolate(logit[None], size=tuple(int(s) for s in target_size), mode="bilinear")
            maps.append(resized[0].argmax(dim=0))
        return maps


def reduce_labels(label: np.ndarray) -> np.ndarray:
    """0 -> 255 (ignore) and every other id k -> k - 1; 255 stays 255."""
    label = label.astype(np.int64)
    reduced = label - 1
    reduced[(label == 0) | (label == IGNORE_INDEX)] = IGNORE_INDEX
    return reduced


def add_channel_to_2d(images: ImageInput) -> ImageInput:
    """transformers treats a 2-D array as ambiguous; here it is a grayscale image, so give it a channel axis."""
    if isinstance(images, (np.ndarray, torch.Tensor)) and images.ndim == 2:
        return images[None]
    if isinstance(images, (list, tuple)):
        return [add_channel_to_2d(image) for image in images]
    return images


_add_channel_to_2d = add_channel_to_2d  # earlier private name, still imported by other processors


def _to_label_array(label: Any) -> np.ndarray:
    if isinstance(label, PIL.Image.Image):
        if label.mode not in ("L", "P", "I", "I;16", "1"):
            raise ValueError(
                f"`segmentation_maps` must be single-channel class-index images (mode L, P, I), got mode {label.mode!r}."
            )
        return np.asarray(label).astype(np.int64)
    if isinstance(label, torch.Tensor):
        label = label.detach().cpu().numpy()
    label = np.asarray(label)
    if label.ndim == 3 and 1 in (label.shape[0], label.shape[-1]):
        label = label.reshape(label.shape[1:] if label.shape[0] == 1 else label.shape[:-1])
    if label.ndim != 2:
        raise ValueError(f"`segmentation_maps` must be 2-D (height, width) maps, got shape {label.shape}.")
    return label.astype(np.int64)


def _scale_high_bit_depth(image: PIL.Image.Image) -> PIL.Image.Image:
    """16-bit / float grayscale images carry no 8-bit RGB conversion in PIL; rescale their range to 0..255."""
    array = np.asarray(image, dtype=np.float64)
    low, high = float(array.min()), float(array.max())
    scaled = (array - low) / (high - low) * 255.0 if high > low else np.zeros_like(array)
    return PIL.Image.fromarray(scaled.round().astype(np.uint8), mode="L")


__all__ = [
    "IGNORE_INDEX",
    "SemanticImageProcessorBase",
    "SemanticImageProcessorKwargs",
    "add_channel_to_2d",
    "reduce_labels",
]
