"""Image processor of X-Decoder: resize, normalise, pad to a multiple of 32, labels to masks, and post-processing."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import PIL.Image
import torch
from transformers.image_processing_base import BatchFeature
from transformers.image_utils import (
    IMAGENET_DEFAULT_MEAN,
    IMAGENET_DEFAULT_STD,
    ChannelDimension,
    ImageInput,
    PILImageResampling,
    SizeDict,
    make_flat_list_of_images,
)
from transformers.processing_utils import ImagesKwargs, Unpack
from transformers.utils import TensorType

from ...modules import postprocess
from ...modules.image_processing import IGNORE_INDEX, SemanticImageProcessorBase, _add_channel_to_2d, reduce_labels


class XDecoderImageProcessorKwargs(ImagesKwargs, total=False):
    r"""
    size_divisor (`int`, *optional*, defaults to 32):
        The padded canvas is rounded up to a multiple of this (the backbone's largest stride).
    ignore_index (`int`, *optional*, defaults to 255):
        Void value of semantic maps; such pixels belong to no mask label.
    do_reduce_labels (`bool`, *optional*, defaults to `False`):
        Map semantic label 0 to void and shift the others down by one (ADE20k-style maps).
    num_labels (`int`, *optional*):
        When set, class ids of the labels must lie in `0..num_labels-1`.
    mask_stride (`int`, *optional*, defaults to 4):
        Padded input size divided by the size of the model's mask logits (post-processing).
    postprocess_interpolation (`str`, *optional*, defaults to `"bicubic"`):
        Interpolation of mask logits in post-processing (spec §6 [R]: bicubic).
    object_mask_threshold, overlap_mask_area_threshold, mask_threshold (`float`, *optional*):
        Panoptic defaults of spec §6 (0.8 / 0.8 / 0.5).
    test_topk_per_image (`int`, *optional*, defaults to 100):
        Instance post-processing keeps this many (query, class) pairs.
    label_ids_to_fuse (`list[int]`, *optional*):
        Default stuff classes merged into one panoptic segment.
    return_segment_ids (`bool`, *optional*, defaults to `False`):
        Also return `mask_segment_ids`: per image, the segment id (or class id for semantic maps) of each mask label.
    """

    size_divisor: int
    ignore_index: int
    do_reduce_labels: bool
    num_labels: int | None
    mask_stride: int
    postprocess_interpolation: str
    object_mask_threshold: float
    overlap_mask_area_threshold: float
    mask_threshold: float
    test_topk_per_image: int
    label_ids_to_fuse: list[int] | None
    return_segment_ids: bool


class XDecoderImageProcessor(SemanticImageProcessorBase):
    r"""
    Image processor of X-Decoder ([`XDecoderForUniversalSegmentation`] and the other heads).

    Per image: any PIL mode / 1-, 3- or 4-channel array -> RGB, resize (shortest edge 800, longest 1333 by default, as
    for COCO evaluation in the reference), rescale to [0, 1], normalise with the ImageNet statistics of spec §2.2
    (mean 123.675/116.28/103.53, std 58.395/57.12/57.375 on 0..255). The batch is padded at the bottom/right to its
    largest size rounded up to a multiple of `size_divisor`; `pixel_mask` is 1 on real pixels.

    Labels (`segmentation_maps`), one per image, in any of these forms:

    - semantic maps (2-D class indices, 255 = void): one mask per class present;
    - instance / panoptic id maps (2-D, or COCO-panoptic RGB images with id = R + 256 G + 256^2 B) together with
      `instance_id_to_semantic_id` (`{segment id: class}`) or `segments_info` (COCO panoptic / ShapesWorld
      `segments_info` lists): one mask per segment; ids missing from the mapping (and 0) are void.

    They follow the image's resize with nearest-neighbour sampling and come back as `mask_labels` (float `(N_i, H, W)`
    on the padded canvas, zero in the padding) and `class_labels` (int64 `(N_i,)`).
    """

    valid_kwargs = XDecoderImageProcessorKwargs
    model_input_names = ["pixel_values", "pixel_mask"]
    resample = PILImageResampling.BILINEAR
    image_mean = IMAGENET_DEFAULT_MEAN
    image_std = IMAGENET_DEFAULT_STD
    size = {"shortest_edge": 800, "longest_edge": 1333}
    default_to_square = False
    do_resize = True
    do_center_crop = False
    do_rescale = True
    rescale_factor = 1 / 255
    do_normalize = True
    do_convert_rgb = True
    do_pad = True
    size_divisor = 32
    ignore_index = IGNORE_INDEX
    do_reduce_labels = False
    num_labels = None
    mask_stride = 4
    postprocess_interpolation = "bicubic"
    object_mask_threshold = 0.8
    overlap_mask_area_threshold = 0.8
    mask_threshold = 0.5
    test_topk_per_image = 100
    label_ids_to_fuse = None
    return_segment_ids = False

    def __init__(self, **kwargs: Unpack[XDecoderImageProcessorKwargs]) -> None:
        super().__init__(**kwargs)

    def preprocess(
        self,
        images: ImageInput,
        segmentation_maps: ImageInput | None = None,
        instance_id_to_semantic_id: list[dict[int, int]] | dict[int, int] | None = None,
        segments_info: list[list[dict[str, Any]]] | None = None,
        **kwargs: Unpack[XDecoderImageProcessorKwargs],
    ) -> BatchFeature:
        r"""
        Args:
            images (`ImageInput`):
                One image or a list of images (PIL of any mode, NumPy or torch, 1/3/4 channels).
            segmentation_maps (`ImageInput`, *optional*):
                One label map per image (see the class docstring).
            instance_id_to_semantic_id (`dict[int, int]` or a list of them, *optional*):
                Segment id -> class index, for instance / panoptic id maps.
            segments_info (`list[list[dict]]`, *optional*):
                Per image, COCO-panoptic segment records (`id`, `category_id`); an alternative to
                `instance_id_to_semantic_id`.
            kwargs:
                Any attribute of the processor, overriding it for this call.

        Returns:
            [`BatchFeature`] with `pixel_values` `(B, 3, H, W)`, `pixel_mask` `(B, H, W)`, and with labels
            `mask_labels` / `class_labels` (lists of per-image tensors).
        """
        return super(SemanticImageProcessorBase, self).preprocess(
            images, segmentation_maps, instance_id_to_semantic_id, segments_info, **kwargs
        )

    def _preprocess_image_like_inputs(
        self,
        images: ImageInput,
        segmentation_maps: ImageInput | None,
        instance_id_to_semantic_id: list[dict[int, int]] | dict[int, int] | None,
        segments_info: list[list[dict[str, Any]]] | None,
        do_convert_rgb: bool,
        input_data_format: ChannelDimension | None,
        return_tensors: str | TensorType | None,
        do_resize: bool,
        size: SizeDict,
        resample: PILImageResampling | None,
        do_rescale: bool,
        rescale_factor: float,
        do_normalize: bool,
        image_mean: float | list[float],
        image_std: float | list[float],
        do_pad: bool,
        size_divisor: int,
        ignore_index: int,
        do_reduce_labels: bool,
        num_labels: int | None,
        return_segment_ids: bool = False,
        **kwargs: Any,
    ) -> BatchFeature:
        images = self._prepare_image_like_inputs(
            images=_add_channel_to_2d(images), do_convert_rgb=do_convert_rgb, input_data_format=input_data_format
        )
        processed = []
        for image in images:
            if do_resize:
                image = self.resize(image, size=size, resample=resample)
            if do_rescale:
                image = self.rescale(image, rescale_factor)
            if do_normalize:
                image = self.normalize(image, image_mean, image_std)
            processed.append(image.astype(np.float32))

        height = max(image.shape[1] for image in processed)
        width = max(image.shape[2] for image in processed)
        if do_pad and size_divisor:
            height = int(math.ceil(height / size_divisor) * size_divisor)
            width = int(math.ceil(width / size_divisor) * size_divisor)
        elif not do_pad and len({image.shape for image in processed}) > 1:
            raise ValueError("`do_pad=False` needs every image of the batch to have the same size after resizing.")
        pixel_values = np.zeros((len(processed), 3, height, width), dtype=np.float32)
        pixel_mask = np.zeros((len(processed), height, width), dtype=np.int64)
        for i, image in enumerate(processed):
            pixel_values[i, :, : image.shape[1], : image.shape[2]] = image
            pixel_mask[i, : image.shape[1], : image.shape[2]] = 1
        data: dict[str, Any] = {"pixel_values": pixel_values, "pixel_mask": pixel_mask}

        if segmentation_maps is not None:
            maps = _flat_label_list(segmentation_maps)
            if len(maps) != len(images):
                raise ValueError(
                    f"`segmentation_maps` must contain one map per image: got {len(maps)} maps for {len(images)} images."
                )
            mappings = _id_mappings(instance_id_to_semantic_id, segments_info, len(images))
            mask_labels, class_labels, segment_ids = [], [], []
            for i, (label_map, mapping) in enumerate(zip(maps, mappings)):
                label_map = _decode_label_map(label_map, instance=mapping is not None)
                if mapping is None and do_reduce_labels:
                    label_map = reduce_labels(label_map)
                if do_resize:
                    label_map = self._resize_label(label_map, size)
                if label_map.shape != processed[i].shape[1:]:
                    raise ValueError(
                        f"`segmentation_maps[{i}]` has size {tuple(label_map.shape)} after resizing, but its image has "
                        f"size {tuple(processed[i].shape[1:])}; give maps of the same size as their images."
                    )
                masks, classes, ids = _label_map_to_masks(label_map, mapping, ignore_index)
                segment_ids.append(ids)
                if num_labels is not None and len(classes) and (classes.min() < 0 or classes.max() >= num_labels):
                    raise ValueError(
                        f"Class ids of `segmentation_maps[{i}]` must lie in 0..{num_labels - 1}, got {classes.tolist()}."
                    )
                padded = np.zeros((len(masks), height, width), dtype=np.float32)
                padded[:, : masks.shape[1], : masks.shape[2]] = masks
                mask_labels.append(padded)
                class_labels.append(classes)
            as_tensor = return_tensors in ("pt", TensorType.PYTORCH)
            data["mask_labels"] = [torch.from_numpy(m) if as_tensor else m for m in mask_labels]
            data["class_labels"] = [torch.from_numpy(c) if as_tensor else c for c in class_labels]
            if return_segment_ids:
                data["mask_segment_ids"] = [torch.from_numpy(i) if as_tensor else i for i in segment_ids]
        batch = BatchFeature(
            data={"pixel_values": data.pop("pixel_values"), "pixel_mask": data.pop("pixel_mask")},
            tensor_type=return_tensors,
        )
        batch.update(data)  # ragged label lists stay lists
        return batch

    def _resize_label(self, label_map: np.ndarray, size: SizeDict) -> np.ndarray:
        height, width = self.resized_hw(label_map.shape[0], label_map.shape[1], size)
        if (height, width) == label_map.shape:
            return label_map
        # PIL mode "I" (int32) keeps panoptic ids above 255 intact
        resized = PIL.Image.fromarray(label_map.astype(np.int32)).resize((width, height), PIL.Image.NEAREST)
        return np.asarray(resized).astype(np.int64)

    # ------------------------------------------------------------------ post-processing

    def _valid_sizes(
        self, target_sizes: Sequence[tuple[int, int]] | torch.Tensor | None, input_sizes: Sequence | None
    ) -> list[tuple[int, int]] | None:
        """Size of each image inside the padded canvas: given, or re-derived from the original (target) size."""
        if input_sizes is not None:
            return [tuple(int(v) for v in s) for s in input_sizes]
        if target_sizes is None:
            return None
        if isinstance(target_sizes, torch.Tensor):
            target_sizes = target_sizes.tolist()
        if not self.do_resize:
            return [tuple(int(v) for v in s) for s in target_sizes]
        # `size` may have been assigned as a plain dict after construction
        size = self.size if isinstance(self.size, SizeDict) else SizeDict(**self.size)
        return [self.resized_hw(int(h), int(w), size) for h, w in target_sizes]

    def post_process_semantic_segmentation(
        self,
        outputs: Any,
        target_sizes: list[tuple[int, int]] | torch.Tensor | None = None,
        return_segmentation_scores: bool = False,
        input_sizes: list[tuple[int, int]] | None = None,
    ) -> list[torch.Tensor] | list[dict[str, torch.Tensor]]:
        """
        Semantic maps (spec §6): `sum_q softmax(class_q)[c] * sigmoid(mask_q)`, background dropped, argmax.

        Args:
            outputs: model output with `class_queries_logits` and `masks_queries_logits`.
            target_sizes (`list[tuple[int, int]]`, *optional*): output size per image (normally the original size).
            return_segmentation_scores (`bool`, defaults to `False`): also return `(classes, H, W)` scores.
            input_sizes (`list[tuple[int, int]]`, *optional*): size of each resized image inside the padded canvas;
                derived from `target_sizes` with this processor's resize rule when omitted (pass it when
                `target_sizes` are not the original image sizes).

        Returns:
            `list[torch.Tensor]` of `(H, W)` class maps, or dicts with `segmentation` and `segmentation_scores`.
        """
        return postprocess.semantic_segmentation(
            _get(outputs, "class_queries_logits"),
            _get(outputs, "masks_queries_logits"),
            target_sizes=target_sizes,
            valid_sizes=self._valid_sizes(target_sizes, input_sizes),
            mask_stride=self.mask_stride,
            mode=self.postprocess_interpolation,
            return_scores=return_segmentation_scores,
        )

    def post_process_instance_segmentation(
        self,
        outputs: Any,
        threshold: float = 0.5,
        mask_threshold: float | None = None,
        overlap_mask_area_threshold: float | None = None,
        target_sizes: list[tuple[int, int]] | torch.Tensor | None = None,
        return_coco_annotation: bool = False,
        return_binary_maps: bool = False,
        label_ids_to_keep: set[int] | None = None,
        input_sizes: list[tuple[int, int]] | None = None,
    ) -> list[dict[str, Any]]:
        """
        Instance predictions (spec §6): top-k (query, class) pairs, binary mask = logit > 0, score = class probability
        x mean mask probability inside the mask. Mask2Former's signature and return format (`segmentation` with -1 =
        no instance, `segments_info` with `id`, `label_id`, `was_fused`, `score`).

        Args:
            outputs: model output with `class_queries_logits` and `masks_queries_logits`.
            threshold (`float`, defaults to 0.5): minimum final score.
            mask_threshold, overlap_mask_area_threshold: accepted for signature compatibility (unused, as in
                Mask2Former's instance post-processing).
            target_sizes, input_sizes: as in [`~XDecoderImageProcessor.post_process_semantic_segmentation`].
            return_coco_annotation (`bool`): RLE-encode the segmentation map.
            return_binary_maps (`bool`): return an `(instances, H, W)` stack.
            label_ids_to_keep (`set[int]`, *optional*): restrict to these (thing) classes.
        """
        return postprocess.instance_segmentation(
            _get(outputs, "class_queries_logits"),
            _get(outputs, "masks_queries_logits"),
            threshold=threshold,
            top_k=self.test_topk_per_image,
            target_sizes=target_sizes,
            valid_sizes=self._valid_sizes(target_sizes, input_sizes),
            label_ids_to_keep=label_ids_to_keep,
            mask_stride=self.mask_stride,
            mode=self.postprocess_interpolation,
            return_binary_maps=return_binary_maps,
            return_coco_annotation=return_coco_annotation,
        )

    def post_process_panoptic_segmentation(
        self,
        outputs: Any,
        threshold: float | None = None,
        mask_threshold: float | None = None,
        overlap_mask_area_threshold: float | None = None,
        label_ids_to_fuse: set[int] | None = None,
        target_sizes: list[tuple[int, int]] | torch.Tensor | None = None,
        input_sizes: list[tuple[int, int]] | None = None,
    ) -> list[dict[str, Any]]:
        """
        Panoptic predictions (spec §6). Mask2Former's signature and return format (`segmentation` with segment ids,
        0 = unassigned, all -1 when nothing survives; `segments_info` with `id`, `label_id`, `was_fused`, `score`).

        Args:
            outputs: model output with `class_queries_logits` and `masks_queries_logits`.
            threshold (`float`, *optional*): object probability threshold (default `object_mask_threshold`, 0.8).
            mask_threshold (`float`, *optional*): mask binarisation threshold (default 0.5).
            overlap_mask_area_threshold (`float`, *optional*): minimum kept fraction of a mask (default 0.8).
            label_ids_to_fuse (`set[int]`, *optional*): stuff classes merged into one segment (default: the
                processor's `label_ids_to_fuse`).
            target_sizes, input_sizes: as in [`~XDecoderImageProcessor.post_process_semantic_segmentation`].
        """
        if label_ids_to_fuse is None and self.label_ids_to_fuse is not None:
            label_ids_to_fuse = set(self.label_ids_to_fuse)
        return postprocess.panoptic_segmentation(
            _get(outputs, "class_queries_logits"),
            _get(outputs, "masks_queries_logits"),
            threshold=self.object_mask_threshold if threshold is None else threshold,
            mask_threshold=self.mask_threshold if mask_threshold is None else mask_threshold,
            overlap_mask_area_threshold=(
                self.overlap_mask_area_threshold
                if overlap_mask_area_threshold is None
                else overlap_mask_area_threshold
            ),
            label_ids_to_fuse=label_ids_to_fuse,
            target_sizes=target_sizes,
            valid_sizes=self._valid_sizes(target_sizes, input_sizes),
            mask_stride=self.mask_stride,
            mode=self.postprocess_interpolation,
        )

    def post_process_referring_segmentation(
        self,
        outputs: Any,
        target_sizes: list[tuple[int, int]] | torch.Tensor | None = None,
        mask_threshold: float | None = None,
        input_sizes: list[tuple[int, int]] | None = None,
    ) -> list[dict[str, torch.Tensor]]:
        """
        One mask per referring phrase: the object query with the highest grounding logit (spec §6).

        Args:
            outputs: output of a referring forward pass: `referring_logits` `(B, Q, R)` and either
                `referring_masks_logits` `(B, R, h, w)` (the winning masks, as X-Decoder returns them) or the
                queries' `masks_queries_logits` `(B, Q, h, w)`.
            target_sizes, input_sizes: as in [`~XDecoderImageProcessor.post_process_semantic_segmentation`].
            mask_threshold (`float`, *optional*): binarisation threshold (default 0.5).

        Returns:
            One dict per image with `masks` (bool `(R, H, W)`), `mask_probs`, `scores` and `query_indices`.
        """
        logits = _get(outputs, "referring_logits")
        if logits is None:
            raise ValueError("`outputs` has no `referring_logits`: run the model with referring texts.")
        return postprocess.referring_segmentation(
            logits,
            _get(outputs, "masks_queries_logits"),
            phrase_masks_logits=_get(outputs, "referring_masks_logits"),
            target_sizes=target_sizes,
            valid_sizes=self._valid_sizes(target_sizes, input_sizes),
            mask_threshold=self.mask_threshold if mask_threshold is None else mask_threshold,
            mask_stride=self.mask_stride,
            mode=self.postprocess_interpolation,
        )


def _get(outputs: Any, name: str) -> Any:
    value = outputs.get(name) if isinstance(outputs, dict) else getattr(outputs, name, None)
    return value


def _flat_label_list(segmentation_maps: Any) -> list[Any]:
    if isinstance(segmentation_maps, (list, tuple)):
        return list(segmentation_maps)
    if isinstance(segmentation_maps, (np.ndarray, torch.Tensor)) and segmentation_maps.ndim == 3:
        if segmentation_maps.shape[-1] == 3 and segmentation_maps.dtype == np.uint8:
            return [segmentation_maps]  # one RGB panoptic image
        return list(segmentation_maps)
    return make_flat_list_of_images(segmentation_maps, expected_ndims=2)


def _decode_label_map(label_map: Any, instance: bool) -> np.ndarray:
    """2-D int64 map; COCO-panoptic RGB images become segment ids (R + 256 G + 256^2 B)."""
    if isinstance(label_map, PIL.Image.Image):
        if label_map.mode in ("RGB", "RGBA"):
            label_map = np.asarray(label_map.convert("RGB"))
        elif label_map.mode in ("L", "P", "I", "I;16", "1"):
            label_map = np.asarray(label_map)
        else:
            raise ValueError(f"`segmentation_maps` of PIL mode {label_map.mode!r} are not label maps.")
    elif isinstance(label_map, torch.Tensor):
        label_map = label_map.detach().cpu().numpy()
    elif not isinstance(label_map, np.ndarray):
        raise TypeError(f"`segmentation_maps` entries must be PIL images, arrays or tensors, got {type(label_map)}.")
    label_map = np.asarray(label_map)
    if label_map.ndim == 3 and label_map.shape[-1] == 3:
        if not instance:
            raise ValueError(
                "An RGB `segmentation_maps` entry is read as a COCO-panoptic id map and needs `segments_info` or "
                "`instance_id_to_semantic_id`."
            )
        rgb = label_map.astype(np.int64)
        label_map = rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]
    if label_map.ndim == 3 and 1 in (label_map.shape[0], label_map.shape[-1]):
        label_map = label_map.reshape(label_map.shape[1:] if label_map.shape[0] == 1 else label_map.shape[:-1])
    if label_map.ndim != 2:
        raise ValueError(f"`segmentation_maps` entries must be 2-D (height, width) maps, got shape {label_map.shape}.")
    return label_map.astype(np.int64)


def _id_mappings(
    instance_id_to_semantic_id: list[dict[int, int]] | dict[int, int] | None,
    segments_info: list[list[dict[str, Any]]] | None,
    batch_size: int,
) -> list[dict[int, int] | None]:
    if instance_id_to_semantic_id is not None and segments_info is not None:
        raise ValueError("Pass either `instance_id_to_semantic_id` or `segments_info`, not both.")
    if segments_info is not None:
        if len(segments_info) != batch_size:
            raise ValueError(
                f"`segments_info` must have one list per image: got {len(segments_info)} for {batch_size} images."
            )
        return [{int(s["id"]): int(s["category_id"]) for s in info} for info in segments_info]
    if instance_id_to_semantic_id is None:
        return [None] * batch_size
    if isinstance(instance_id_to_semantic_id, dict):
        return [instance_id_to_semantic_id] * batch_size
    if len(instance_id_to_semantic_id) != batch_size:
        raise ValueError(
            f"`instance_id_to_semantic_id` must have one mapping per image: got {len(instance_id_to_semantic_id)} "
            f"for {batch_size} images."
        )
    return list(instance_id_to_semantic_id)


def _label_map_to_masks(
    label_map: np.ndarray, mapping: dict[int, int] | None, ignore_index: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Binary masks `(N, H, W)`, their class ids `(N,)` and map values `(N,)`, ordered by map value."""
    values = np.unique(label_map)
    if mapping is None:
        values = values[values != ignore_index]
        classes = values
    else:
        values = np.array([v for v in values if int(v) in mapping], dtype=np.int64)
        classes = np.array([mapping[int(v)] for v in values], dtype=np.int64)
    masks = (label_map[None] == values[:, None, None]).astype(np.float32)
    return masks, classes.astype(np.int64), values.astype(np.int64)


__all__ = ["XDecoderImageProcessor"]
