"""Shared mask-classification post-processing: hand-worked cases and a cross-check with transformers' Mask2Former."""

import pytest
import torch
from transformers.models.mask2former.image_processing_pil_mask2former import Mask2FormerImageProcessorPil

from hf_unified_seg.modules.postprocess import (
    instance_segmentation,
    panoptic_segmentation,
    referring_segmentation,
    resize_mask_logits,
    semantic_segmentation,
)

BIG = 20.0  # logits this large make sigmoid/softmax numerically 0/1, so expected outputs can be written by hand


def class_logits(rows: list[tuple[int, float]], num_classes: int) -> torch.Tensor:
    """One row per query: (label, probability of that label); the rest of the mass goes to background."""
    logits = torch.full((len(rows), num_classes + 1), -BIG)
    for q, (label, prob) in enumerate(rows):
        rest = 1.0 - prob
        logits[q, label] = torch.log(torch.tensor(prob))
        logits[q, num_classes] = torch.log(torch.tensor(max(rest, 1e-9)))
    return logits


def region(height: int, width: int, rows: slice, cols: slice) -> torch.Tensor:
    m = torch.full((height, width), -BIG)
    m[rows, cols] = BIG
    return m


def test_semantic_map_hand_built():
    # 2 queries, 3 classes on an 8x8 canvas (stride 1): query 0 = class 0 on the left, query 1 = class 2 on the right
    cls = class_logits([(0, 0.9), (2, 0.9)], num_classes=3)[None]
    masks = torch.stack([region(8, 8, slice(None), slice(0, 3)), region(8, 8, slice(None), slice(3, 8))])[None]
    (seg,) = semantic_segmentation(cls, masks, mask_stride=1)
    expected = torch.zeros(8, 8, dtype=torch.long)
    expected[:, 3:] = 2
    assert torch.equal(seg, expected)
    (out,) = semantic_segmentation(cls, masks, mask_stride=1, return_scores=True)
    assert out["segmentation_scores"].shape == (3, 8, 8)  # background dropped
    assert out["segmentation_scores"][0, 0, 0].item() == pytest.approx(0.9, abs=1e-4)


def test_panoptic_thresholds_overlap_and_fusion():
    h = w = 8
    rows = [
        (0, 0.95),  # q0: thing, left block -> kept
        (1, 0.70),  # q1: below object threshold 0.8 -> dropped
        (3, 0.0),  # q2: background wins -> dropped
        (2, 0.85),  # q3: mask mostly under q0 (which scores higher) -> overlap < 0.8 -> dropped
        (3, 0.90),  # q4: stuff class 3, top-right
        (3, 0.92),  # q5: stuff class 3, bottom-right -> fused with q4
    ]
    cls = class_logits(rows, num_classes=4)[None]
    cls[0, 2] = torch.tensor([-BIG, -BIG, -BIG, -BIG, BIG])  # pure background
    masks = torch.stack(
        [
            region(h, w, slice(0, 8), slice(0, 4)),
            region(h, w, slice(0, 8), slice(0, 8)),
            region(h, w, slice(0, 8), slice(0, 8)),
            region(h, w, slice(0, 8), slice(2, 5)),  # 24 px, 16 of them owned by q0
            region(h, w, slice(0, 4), slice(4, 8)),
            region(h, w, slice(4, 8), slice(4, 8)),
        ]
    )[None]
    (out,) = panoptic_segmentation(cls, masks, label_ids_to_fuse={3}, mask_stride=1)
    assert [(s["id"], s["label_id"], s["was_fused"]) for s in out["segments_info"]] == [(1, 0, False), (2, 3, True)]
    assert out["segments_info"][0]["score"] == pytest.approx(0.95, abs=1e-5)
    expected = torch.zeros(h, w, dtype=torch.int32)
    expected[:, :4] = 1
    expected[:, 4:] = 2
    # q3 (score 0.85) owns column 4, which q0 and the stuff queries do not cover; q3 is dropped, so those pixels are
    # unassigned (0) unless the stuff queries cover them: they do (columns 4-7), and q4/q5 score higher than q3 there.
    assert torch.equal(out["segmentation"], expected)

    # without fusion the two stuff queries become two segments
    (out,) = panoptic_segmentation(cls, masks, mask_stride=1)
    assert [s["label_id"] for s in out["segments_info"]] == [0, 3, 3]

    # raising the object threshold above every score leaves nothing: all -1, like Mask2Former
    (out,) = panoptic_segmentation(cls, masks, threshold=0.99, mask_stride=1, target_sizes=[(5, 7)])
    assert out["segments_info"] == [] and out["segmentation"].shape == (5, 7) and (out["segmentation"] == -1).all()


def test_panoptic_overlap_ratio_is_inclusive_at_threshold():
    # q1's binary mask has 10 px, q0 (higher score) takes 2 -> q1 keeps 8/10 = 0.8 >= 0.8 (reference rule)
    cls = class_logits([(0, 0.99), (1, 0.9)], num_classes=2)[None]
    q0 = region(1, 10, slice(None), slice(0, 2))
    q1 = region(1, 10, slice(None), slice(0, 10))
    (out,) = panoptic_segmentation(cls, torch.stack([q0, q1])[None], mask_stride=1)
    assert [s["label_id"] for s in out["segments_info"]] == [0, 1]
    (out,) = panoptic_segmentation(cls, torch.stack([q0, q1])[None], mask_stride=1, overlap_mask_area_threshold=0.81)
    assert [s["label_id"] for s in out["segments_info"]] == [0]


def test_instance_scores_topk_and_threshold():
    cls = class_logits([(0, 0.9), (1, 0.6), (0, 0.3)], num_classes=2)[None]
    masks = torch.stack(
        [
            region(6, 6, slice(0, 3), slice(0, 3)),
            region(6, 6, slice(3, 6), slice(3, 6)),
            torch.full((6, 6), -BIG),  # empty mask -> never an instance
        ]
    )[None]
    (out,) = instance_segmentation(cls, masks, threshold=0.5, mask_stride=1)
    info = out["segments_info"]
    assert [(s["id"], s["label_id"]) for s in info] == [(0, 0), (1, 1)]
    assert info[0]["score"] == pytest.approx(0.9, abs=1e-4) and info[1]["score"] == pytest.approx(0.6, abs=1e-4)
    expected = torch.full((6, 6), -1, dtype=torch.int32)
    expected[:3, :3] = 0
    expected[3:, 3:] = 1
    assert torch.equal(out["segmentation"], expected)
    (out,) = instance_segmentation(cls, masks, threshold=0.7, mask_stride=1)
    assert [s["label_id"] for s in out["segments_info"]] == [0]
    (out,) = instance_segmentation(cls, masks, threshold=0.5, top_k=1, mask_stride=1, return_binary_maps=True)
    assert out["segmentation"].shape == (1, 6, 6) and out["segmentation"].sum() == 9
    (out,) = instance_segmentation(cls, masks, threshold=0.5, label_ids_to_keep={1}, mask_stride=1)
    assert [s["label_id"] for s in out["segments_info"]] == [1]


def test_padded_canvas_is_cropped_before_resizing():
    # canvas 8x8 logits at stride 4 = 32x32 padded input; the image occupies the top-left 32x16 (H x W)
    left = region(8, 8, slice(None), slice(0, 4))
    right = region(8, 8, slice(None), slice(4, 8))
    out = resize_mask_logits(torch.stack([left, right]), target_size=(10, 10), valid_size=(32, 16), mask_stride=4)
    assert out.shape == (2, 10, 10)
    assert (out[0] > 0).all()  # the left half of the canvas is the whole image
    assert (out[1] < 0).all()  # the right half is padding only
    cls = class_logits([(0, 0.9), (1, 0.9)], num_classes=2)[None]
    (seg,) = semantic_segmentation(cls, torch.stack([left, right])[None], [(10, 10)], [(32, 16)])
    assert (seg == 0).all()
    with pytest.raises(ValueError, match="valid size"):
        resize_mask_logits(left[None], valid_size=(40, 16))
    with pytest.raises(ValueError, match="target_sizes"):
        semantic_segmentation(cls, torch.stack([left, right])[None], target_sizes=[(4, 4), (4, 4)])


def test_referring_picks_best_query_per_phrase():
    masks = torch.stack([region(4, 4, slice(0, 2), slice(None)), region(4, 4, slice(2, 4), slice(None))])[None]
    logits = torch.tensor([[[5.0, -5.0], [-5.0, 5.0]]])  # phrase 0 -> query 0, phrase 1 -> query 1
    (out,) = referring_segmentation(logits, masks, mask_stride=1)
    assert out["query_indices"].tolist() == [0, 1]
    assert out["masks"][0, :2].all() and not out["masks"][0, 2:].any()
    assert out["masks"][1, 2:].all() and not out["masks"][1, :2].any()
    (out,) = referring_segmentation(logits[..., 1], masks, target_sizes=[(8, 8)], mask_stride=1)
    assert out["masks"].shape == (1, 8, 8) and out["masks"][0, 4:].all()
    with pytest.raises(ValueError, match="referring_logits"):
        referring_segmentation(torch.zeros(1, 3, 1), masks)


def _crisp_random_outputs(seed: int, batch: int = 2, queries: int = 8, classes: int = 5, size: int = 16):
    g = torch.Generator().manual_seed(seed)
    # blocky masks (4x4 blocks) with large logits: both implementations binarise them identically
    blocks = torch.randint(0, 2, (batch, queries, size // 4, size // 4), generator=g).float() * 2 - 1
    masks = blocks.repeat_interleave(4, -1).repeat_interleave(4, -2) * 12.0
    cls = torch.randn(batch, queries, classes + 1, generator=g) * 4
    return cls, masks


class _Out(dict):
    __getattr__ = dict.__getitem__


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_agrees_with_transformers_mask2former(seed):
    cls, masks = _crisp_random_outputs(seed)
    reference = Mask2FormerImageProcessorPil()
    outputs = _Out(class_queries_logits=cls, masks_queries_logits=masks)
    targets = [(64, 64)] * 2

    ours = semantic_segmentation(cls, masks, targets, mask_stride=4)
    theirs = reference.post_process_semantic_segmentation(outputs, target_sizes=targets)
    for a, b in zip(ours, theirs):
        assert (a == b).float().mean() > 0.97

    # Mask2Former keeps `queries` (query, class) pairs; ours does the same with top_k=None
    ours = instance_segmentation(cls, masks, threshold=0.3, top_k=None, target_sizes=targets)
    theirs = reference.post_process_instance_segmentation(outputs, threshold=0.3, target_sizes=targets)
    for a, b in zip(ours, theirs):
        # Mask2Former's top-k is unsorted: compare the sets of (label, score)
        sa = sorted((s["label_id"], s["score"]) for s in a["segments_info"])
        sb = sorted((s["label_id"], s["score"]) for s in b["segments_info"])
        assert [x[0] for x in sa] == [x[0] for x in sb]
        assert [x[1] for x in sa] == pytest.approx([x[1] for x in sb], abs=0.02)

    # strict ">" vs ">=" on the overlap ratio only differs on exact ties; 0.79 avoids them on these blocky masks
    kwargs = {"threshold": 0.5, "mask_threshold": 0.5, "overlap_mask_area_threshold": 0.79, "label_ids_to_fuse": {4}}
    ours = panoptic_segmentation(cls, masks, target_sizes=targets, **kwargs)
    theirs = reference.post_process_panoptic_segmentation(outputs, target_sizes=targets, **kwargs)
    for a, b in zip(ours, theirs):
        assert [(s["id"], s["label_id"], s["was_fused"]) for s in a["segments_info"]] == [
            (s["id"], s["label_id"], s["was_fused"]) for s in b["segments_info"]
        ]
        # Mask2Former gives every owned pixel to its query; ours only where the query's own mask is on
        on = a["segmentation"] > 0
        assert (a["segmentation"][on] == b["segmentation"][on].to(torch.int32)).float().mean() > 0.97


def test_referring_with_gathered_phrase_masks():
    # X-Decoder returns the winning masks per phrase (B, R, h, w) next to the (B, Q, R) logits
    phrase_masks = torch.stack([region(4, 4, slice(0, 1), slice(None)), region(4, 4, slice(None), slice(0, 1))])[None]
    logits = torch.tensor([[[1.0, -1.0], [-1.0, 1.0], [0.0, 0.0]]])
    (out,) = referring_segmentation(logits, phrase_masks_logits=phrase_masks, mask_stride=1)
    assert out["query_indices"].tolist() == [0, 1]
    assert torch.equal(out["masks"], phrase_masks[0] > 0)
    with pytest.raises(ValueError, match="phrase_masks_logits"):
        referring_segmentation(logits, phrase_masks_logits=phrase_masks[:, :1])
