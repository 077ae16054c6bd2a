"""Post-processing of mask-classification outputs: semantic, instance, panoptic and referring segmentation.

Shared by the processors of every mask-transformer model in the package (X-Decoder, SEEM, FIND, PSALM). The input
is what Mask2Former-style heads emit:

- `class_queries_logits` `(batch, queries, classes + 1)`, the last column being "no object" / background;
- `masks_queries_logits` `(batch, queries, h, w)` at stride `mask_stride` (4) of the *padded* input.

Geometry (X-Decoder spec §6). The mask logits cover the padded canvas, so they are first upsampled to the padded
input size, then the valid (unpadded, resized) region is cropped, then that crop is resized to the requested target
size (usually the original image size). transformers' Mask2Former processor instead resizes to a fixed 384x384 and
never crops, which misplaces masks for padded or non-square inputs. When the valid region is the whole canvas the crop
is the identity and the two resizes collapse into one.

Selection rules (spec §6, following the reference implementations):

- semantic: `scores[c] = sum_q softmax(class)_q[c] * sigmoid(mask_q)`, background dropped, label = argmax.
- instance: top-k over the flattened (query, class) probabilities, binary mask = logits > 0, score = class
  probability x mean mask probability inside the binary mask.
- panoptic: keep queries whose best class is not background and whose probability exceeds `threshold`; each pixel goes
  to the query maximising `score * sigmoid(mask)`; a segment is the pixels it owns *and* where its own probability is
  at least `mask_threshold`; it survives when that area is at least `overlap_mask_area_threshold` of its binary mask.
  (transformers' Mask2Former uses the owned pixels alone and a strict `>`; the two agree on crisp masks.)
- referring: for each phrase pick the query with the largest grounding logit and binarise its mask.

Return formats match transformers' Mask2Former processor so `pipeline("image-segmentation")` works unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

Size = tuple[int, int]

__all__ = [
    "instance_segmentation",
    "panoptic_segmentation",
    "referring_segmentation",
    "resize_mask_logits",
    "semantic_segmentation",
]


def _get(outputs: Any, name: str) -> Any:
    if isinstance(outputs, dict):
        return outputs.get(name)
    return getattr(outputs, name, None)


def _as_size_list(sizes: Any, batch_size: int, name: str) -> list[Size] | None:
    if sizes is None:
        return None
    if isinstance(sizes, torch.Tensor):
        sizes = sizes.tolist()
    sizes = [tuple(int(v) for v in s) for s in sizes]
    if len(sizes) != batch_size:
        raise ValueError(
            f"`{name}` must give one (height, width) per image: got {len(sizes)} for a batch of {batch_size}."
        )
    if any(len(s) != 2 or min(s) <= 0 for s in sizes):
        raise ValueError(f"`{name}` entries must be positive (height, width) pairs, got {sizes}.")
    return sizes


def resize_mask_logits(
    mask_logits: torch.Tensor,
    target_size: Size | None = None,
    valid_size: Size | None = None,
    mask_stride: int = 4,
    mode: str = "bilinear",
) -> torch.Tensor:
    """
    Bring `(queries, h, w)` mask logits from the padded feature grid to `target_size`.

    Args:
        mask_logits (`torch.Tensor` of shape `(queries, h, w)`):
            Logits on the padded canvas at stride `mask_stride`.
        target_size (`tuple[int, int]`, *optional*):
            Output `(height, width)`; defaults to `valid_size` (or the padded size when that is missing too).
        valid_size (`tuple[int, int]`, *optional*):
            Size of the resized, unpadded image inside the padded canvas. Defaults to the whole canvas.
        mask_stride (`int`, defaults to 4):
            Ratio between the padded input size and the mask-logit grid.
        mode (`str`, defaults to `"bilinear"`):
            `torch.nn.functional.interpolate` mode (`"bilinear"` or `"bicubic"`).

    Returns:
        `torch.Tensor` of shape `(queries, *target_size)`.
    """
    height, width = mask_logits.shape[-2:]
    padded = (height * mask_stride, width * mask_stride)
    valid = padded if valid_size is None else tuple(valid_size)
    if valid[0] > padded[0] or valid[1] > padded[1]:
        raise ValueError(f"valid size {valid} exceeds the padded input size {padded} implied by the mask logits.")
    target = valid if target_size is None else tuple(target_size)
    x = mask_logits[None]
    if valid != padded:
        x = F.interpolate(x, size=padded, mode=mode, align_corners=False)[..., : valid[0], : valid[1]]
        if target != valid:
            x = F.interpolate(x, size=target, mode=mode, align_corners=False, antialias=_downscales(valid, target))
    elif target != (height, width):
        x = F.interpolate(
            x, size=target, mode=mode, align_corners=False, antialias=_downscales((height, width), target)
        )
    return x[0]


def _downscales(source: Size, target: Size) -> bool:
    # antialiasing only matters (and is only supported for these modes) when shrinking
    return target[0] < source[0] or target[1] < source[1]


def semantic_segmentation(
    class_queries_logits: torch.Tensor,
    masks_queries_logits: torch.Tensor,
    target_sizes: Sequence[Size] | torch.Tensor | None = None,
    valid_sizes: Sequence[Size] | None = None,
    mask_stride: int = 4,
    mode: str = "bilinear",
    return_scores: bool = False,
) -> list[torch.Tensor] | list[dict[str, torch.Tensor]]:
    """
    Per-pixel class maps from mask-classification outputs.

    Args:
        class_queries_logits (`torch.Tensor` of shape `(batch, queries, classes + 1)`): last column = background.
        masks_queries_logits (`torch.Tensor` of shape `(batch, queries, h, w)`): padded-canvas mask logits.
        target_sizes (`list[tuple[int, int]]`, *optional*): output size per image (default: the valid size).
        valid_sizes (`list[tuple[int, int]]`, *optional*): unpadded size per image inside the canvas.
        mask_stride (`int`, defaults to 4): padded input size / mask-logit size.
        mode (`str`, defaults to `"bilinear"`): interpolation of the mask logits.
        return_scores (`bool`, defaults to `False`): also return the `(classes, H, W)` class scores.

    Returns:
        `list[torch.Tensor]` of `(H, W)` int64 class maps, or dicts with `segmentation` and `segmentation_scores`.
    """
    batch_size = class_queries_logits.shape[0]
    target_sizes = _as_size_list(target_sizes, batch_size, "target_sizes")
    valid_sizes = _as_size_list(valid_sizes, batch_size, "valid_sizes")
    class_probs = class_queries_logits.softmax(dim=-1)[..., :-1]
    results = []
    for i in range(batch_size):
        valid = valid_sizes[i] if valid_sizes else None
        # class scores are computed on the valid crop at canvas resolution, then resized (cheaper when C < Q)
        masks = resize_mask_logits(masks_queries_logits[i], None, valid, mask_stride, mode).sigmoid()
        scores = torch.einsum("qc,qhw->chw", class_probs[i], masks)
        if target_sizes is not None and tuple(scores.shape[-2:]) != target_sizes[i]:
            target = target_sizes[i]
            scores = F.interpolate(
                scores[None], size=target, mode="bilinear", align_corners=False,
                antialias=_downscales(tuple(scores.shape[-2:]), target),
            )[0]  # fmt: skip
        segmentation = scores.argmax(dim=0)
        results.append(
            {"segmentation": segmentation, "segmentation_scores": scores} if return_scores else segmentation
        )
    return results


def instance_segmentation(
    class_queries_logits: torch.Tensor,
    masks_queries_logits: torch.Tensor,
    threshold: float = 0.5,
    top_k: int | None = 100,
    target_sizes: Sequence[Size] | torch.Tensor | None = None,
    valid_sizes: Sequence[Size] | None = None,
    label_ids_to_keep: set[int] | None = None,
    mask_stride: int = 4,
    mode: str = "bilinear",
    return_binary_maps: bool = False,
    return_coco_annotation: bool = False,
) -> list[dict[str, Any]]:
    """
    Instance predictions (Mask2Former's `post_process_instance_segmentation` format).

    Args:
        class_queries_logits, masks_queries_logits, target_sizes, valid_sizes, mask_stride, mode:
            As in [`semantic_segmentation`].
        threshold (`float`, defaults to 0.5): minimum final score (class probability x mean mask probability).
        top_k (`int`, *optional*, defaults to 100): (query, class) pairs kept before thresholding; `None` keeps
            `queries` pairs like transformers' Mask2Former.
        label_ids_to_keep (`set[int]`, *optional*): restrict to these classes (e.g. thing classes in panoptic mode).
        return_binary_maps (`bool`): return a `(instances, H, W)` stack instead of an id map.
        return_coco_annotation (`bool`): return the id map as COCO run-length encodings.

    Returns:
        One dict per image: `segmentation` (`(H, W)` int map, -1 = no instance, later instances drawn over earlier
        ones) and `segments_info` (list of `id`, `label_id`, `was_fused`, `score`).
    """
    if return_binary_maps and return_coco_annotation:
        raise ValueError("`return_binary_maps` and `return_coco_annotation` cannot both be True.")
    batch_size, num_queries, num_classes_plus_one = class_queries_logits.shape
    num_classes = num_classes_plus_one - 1
    target_sizes = _as_size_list(target_sizes, batch_size, "target_sizes")
    valid_sizes = _as_size_list(valid_sizes, batch_size, "valid_sizes")
    k = num_queries if top_k is None else min(int(top_k), num_queries * num_classes)
    class_probs = class_queries_logits.softmax(dim=-1)[..., :-1]
    if label_ids_to_keep is not None:
        keep = torch.zeros(num_classes, dtype=torch.bool, device=class_probs.device)
        keep[list(label_ids_to_keep)] = True
        class_probs = class_probs * keep
    results = []
    for i in range(batch_size):
        scores, flat_index = class_probs[i].flatten().topk(k, sorted=True)
        query_index = flat_index // num_classes
        labels = flat_index % num_classes
        # resize each selected query once, even when it is selected for several classes
        unique_queries, inverse = query_index.unique(return_inverse=True)
        valid = valid_sizes[i] if valid_sizes else None
        target = target_sizes[i] if target_sizes else None
        logits = resize_mask_logits(masks_queries_logits[i, unique_queries], target, valid, mask_stride, mode)
        binary = logits > 0
        probs = logits.sigmoid()
        area = binary.flatten(1).sum(1)
        mask_scores = (probs * binary).flatten(1).sum(1) / (area + 1e-6)
        final_scores = scores * mask_scores[inverse]
        height, width = logits.shape[-2:]
        segmentation = torch.full((height, width), -1, dtype=torch.int32, device=logits.device)
        segments, maps = [], []
        for j in range(k):
            score = final_scores[j].item()
            if score < threshold or area[inverse[j]] == 0 or (label_ids_to_keep is not None and scores[j] == 0):
                continue
            mask = binary[inverse[j]]
            segmentation[mask] = len(segments)
            segments.append(
                {"id": len(segments), "label_id": int(labels[j]), "was_fused": False, "score": round(score, 6)}
            )
            maps.append(mask)
        if return_coco_annotation:
            from transformers.models.mask2former.image_processing_pil_mask2former import convert_segmentation_to_rle

            segmentation = convert_segmentation_to_rle(segmentation)
        elif return_binary_maps:
            segmentation = torch.stack(maps).to(torch.int32) if maps else torch.zeros((0, height, width))
        results.append({"segmentation": segmentation, "segments_info": segments})
    return results


def panoptic_segmentation(
    class_queries_logits: torch.Tensor,
    masks_queries_logits: torch.Tensor,
    threshold: float = 0.8,
    mask_threshold: float = 0.5,
    overlap_mask_area_threshold: float = 0.8,
    label_ids_to_fuse: set[int] | None = None,
    target_sizes: Sequence[Size] | torch.Tensor | None = None,
    valid_sizes: Sequence[Size] | None = None,
    mask_stride: int = 4,
    mode: str = "bilinear",
) -> list[dict[str, Any]]:
    """
    Panoptic predictions (Mask2Former's `post_process_panoptic_segmentation` format).

    Args:
        class_queries_logits, masks_queries_logits, target_sizes, valid_sizes, mask_stride, mode:
            As in [`semantic_segmentation`].
        threshold (`float`, defaults to 0.8): minimum class probability of a query (`object_mask_threshold`).
        mask_threshold (`float`, defaults to 0.5): binarisation threshold of the mask probabilities.
        overlap_mask_area_threshold (`float`, defaults to 0.8): minimum kept fraction of a query's binary mask.
        label_ids_to_fuse (`set[int]`, *optional*): classes whose segments merge into one (stuff).

    Returns:
        One dict per image: `segmentation` (`(H, W)` int32 segment ids, 0 = unassigned; all -1 when no query
        survives) and `segments_info` (list of `id`, `label_id`, `was_fused`, `score`).
    """
    label_ids_to_fuse = set() if label_ids_to_fuse is None else set(label_ids_to_fuse)
    batch_size = class_queries_logits.shape[0]
    num_classes = class_queries_logits.shape[-1] - 1
    target_sizes = _as_size_list(target_sizes, batch_size, "target_sizes")
    valid_sizes = _as_size_list(valid_sizes, batch_size, "valid_sizes")
    scores, labels = class_queries_logits.softmax(dim=-1).max(dim=-1)
    results = []
    for i in range(batch_size):
        keep = labels[i].ne(num_classes) & (scores[i] > threshold)
        valid = valid_sizes[i] if valid_sizes else None
        target = target_sizes[i] if target_sizes else None
        if not keep.any():
            size = target or valid or tuple(s * mask_stride for s in masks_queries_logits.shape[-2:])
            results.append({"segmentation": torch.full(size, -1, dtype=torch.int32), "segments_info": []})
            continue
        # only the surviving queries are upsampled
        probs = resize_mask_logits(masks_queries_logits[i, keep], target, valid, mask_stride, mode).sigmoid()
        kept_scores, kept_labels = scores[i, keep], labels[i, keep]
        owner = (probs * kept_scores[:, None, None]).argmax(dim=0)
        binary = probs >= mask_threshold
        num_kept = probs.shape[0]
        # a pixel belongs to its owner's segment only where the owner's own mask is on; areas by counting owners
        owner_is_on = binary.gather(0, owner[None])[0]
        owned_area = torch.bincount(owner[owner_is_on], minlength=num_kept)
        binary_area = binary.flatten(1).sum(1)
        segment_of_query = torch.zeros(
            num_kept + 1, dtype=torch.int32, device=owner.device
        )  # slot num_kept = "unassigned"
        segments: list[dict[str, Any]] = []
        fused: dict[int, int] = {}
        owned_list, binary_list, labels_list = owned_area.tolist(), binary_area.tolist(), kept_labels.tolist()
        for q in range(num_kept):
            if owned_list[q] == 0 or binary_list[q] == 0:
                continue
            if owned_list[q] / binary_list[q] < overlap_mask_area_threshold:
                continue
            label = labels_list[q]
            should_fuse = label in label_ids_to_fuse
            if should_fuse and label in fused:
                segment_of_query[q] = fused[label]
                continue
            segment_id = len(segments) + 1
            segment_of_query[q] = segment_id
            segments.append(
                {
                    "id": segment_id,
                    "label_id": label,
                    "was_fused": should_fuse,
                    "score": round(kept_scores[q].item(), 6),
                }
            )
            if should_fuse:
                fused[label] = segment_id
        segmentation = torch.where(owner_is_on, owner, torch.full_like(owner, num_kept))
        results.append({"segmentation": segment_of_query[segmentation], "segments_info": segments})
    return results


def referring_segmentation(
    referring_logits: torch.Tensor,
    masks_queries_logits: torch.Tensor | None = None,
    target_sizes: Sequence[Size] | torch.Tensor | None = None,
    valid_sizes: Sequence[Size] | None = None,
    mask_threshold: float = 0.5,
    mask_stride: int = 4,
    mode: str = "bilinear",
    phrase_masks_logits: torch.Tensor | None = None,
) -> list[dict[str, torch.Tensor]]:
    """
    One mask per referring phrase: the query with the highest grounding logit wins.

    Args:
        referring_logits (`torch.Tensor` of shape `(batch, queries, phrases)` or `(batch, queries)`):
            Query-phrase matching logits.
        masks_queries_logits (`torch.Tensor` of shape `(batch, queries, h, w)`, *optional*): mask logits of the same
            queries; the winning query's mask is taken from them.
        phrase_masks_logits (`torch.Tensor` of shape `(batch, phrases, h, w)`, *optional*): the winning masks already
            gathered by the model (used instead of `masks_queries_logits`).
        target_sizes, valid_sizes, mask_stride, mode: as in [`semantic_segmentation`].
        mask_threshold (`float`, defaults to 0.5): binarisation threshold of the chosen mask's probability.

    Returns:
        One dict per image: `masks` (bool `(phrases, H, W)`), `mask_probs` (`(phrases, H, W)`), `scores`
        (softmax-over-queries probability of the chosen query, `(phrases,)`) and `query_indices` (`(phrases,)`).
    """
    if referring_logits.dim() == 2:
        referring_logits = referring_logits[..., None]
    if phrase_masks_logits is None and masks_queries_logits is None:
        raise ValueError("Pass `masks_queries_logits` or `phrase_masks_logits`.")
    if phrase_masks_logits is not None:
        expected = (referring_logits.shape[0], referring_logits.shape[-1])
        if referring_logits.dim() != 3 or tuple(phrase_masks_logits.shape[:2]) != expected:
            raise ValueError(
                "`phrase_masks_logits` must be (batch, phrases, h, w) matching `referring_logits` (batch, queries, "
                f"phrases); got {tuple(phrase_masks_logits.shape)} and {tuple(referring_logits.shape)}."
            )
    elif referring_logits.dim() != 3 or referring_logits.shape[:2] != masks_queries_logits.shape[:2]:
        raise ValueError(
            "`referring_logits` must be (batch, queries, phrases) matching `masks_queries_logits` "
            f"(batch, queries, h, w); got {tuple(referring_logits.shape)} and {tuple(masks_queries_logits.shape)}."
        )
    batch_size = referring_logits.shape[0]
    target_sizes = _as_size_list(target_sizes, batch_size, "target_sizes")
    valid_sizes = _as_size_list(valid_sizes, batch_size, "valid_sizes")
    scores, query_indices = referring_logits.softmax(dim=1).max(dim=1)  # (batch, phrases)
    results = []
    for i in range(batch_size):
        valid = valid_sizes[i] if valid_sizes else None
        target = target_sizes[i] if target_sizes else None
        chosen = (
            phrase_masks_logits[i] if phrase_masks_logits is not None else masks_queries_logits[i, query_indices[i]]
        )
        probs = resize_mask_logits(chosen, target, valid, mask_stride, mode).sigmoid()
        results.append(
            {
                "masks": probs >= mask_threshold,
                "mask_probs": probs,
                "scores": scores[i],
                "query_indices": query_indices[i],
            }
        )
    return results
