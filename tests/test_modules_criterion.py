"""Set criterion and semantic losses against hand computations; perfect predictions give ~0 mask losses."""

import torch
from torch.nn import functional as F

from hf_unified_seg.modules.criterion import (
    SetCriterion,
    captioning_loss,
    classification_loss,
    contrastive_loss,
    importance_sampled_points,
    matched_mask_losses,
)
from hf_unified_seg.modules.matcher import HungarianMatcher


def _targets():
    masks = torch.zeros(2, 32, 32)
    masks[0, :16] = 1
    masks[1, 16:, 16:] = 1
    return masks


def test_perfect_prediction_has_near_zero_mask_losses_both_paths():
    masks = _targets()
    logits = masks * 40 - 20
    bce, dice = matched_mask_losses(logits, masks, num_masks=2, num_points=32 * 32)  # every pixel
    assert bce < 1e-3 and dice < 1e-3
    # sampled points: bilinear blending at mask edges makes the targets soft there (their entropy is the floor of
    # BCE), so the sampled path is checked on edge-free masks
    flat = torch.stack([torch.ones(32, 32), torch.zeros(32, 32)])
    bce, dice = matched_mask_losses(flat * 40 - 20, flat, num_masks=2, num_points=100)
    assert bce < 1e-3 and dice < 1e-3
    bad_bce, bad_dice = matched_mask_losses(-logits, masks, num_masks=2, num_points=1024)
    assert bad_bce > 10 and bad_dice > 0.9


def test_importance_points_prefer_uncertain_regions():
    torch.manual_seed(0)
    logits = torch.full((1, 1, 32, 32), 10.0)
    logits[..., :, 16:] = 0.0  # uncertain right half
    points = importance_sampled_points(logits, 200, oversample_ratio=3.0, importance_sample_ratio=0.75)
    assert points.shape == (1, 200, 2)
    assert (points[0, :150, 0] > 0.5).float().mean() > 0.95


def test_classification_loss_matches_manual_weighted_ce():
    logits = torch.randn(1, 3, 4)  # 3 classes + no object, any count works
    indices = [(torch.tensor([2]), torch.tensor([0]))]
    loss = classification_loss(logits, [torch.tensor([1])], indices, no_object_weight=0.1)
    targets = torch.tensor([3, 3, 1])
    weights = torch.tensor([1.0, 1.0, 1.0, 0.1])
    manual = (
        sum(weights[t] * -F.log_softmax(logits[0, i], -1)[t] for i, t in enumerate(targets)) / weights[targets].sum()
    )
    torch.testing.assert_close(loss, manual)


def test_contrastive_and_captioning_losses():
    img, txt = torch.randn(3, 8), torch.randn(3, 8)
    scale = torch.tensor(10.0)
    s = scale * F.normalize(img, dim=-1) @ F.normalize(txt, dim=-1).T
    manual = -(s.log_softmax(1).diagonal().mean() + s.log_softmax(0).diagonal().mean())
    torch.testing.assert_close(contrastive_loss(img, txt, scale), manual)

    logits = torch.randn(2, 4, 6)
    labels = torch.tensor([[1, 2, 3, 4], [1, 5, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    pairs = [(0, 0, 2), (0, 1, 3), (0, 2, 4), (1, 0, 5)]
    total = sum(-logits[b, j].log_softmax(-1)[t] for b, j, t in pairs)
    torch.testing.assert_close(captioning_loss(logits, labels, mask), total / (len(pairs) + 1))


def test_set_criterion_segmentation_and_grounding():
    crit = SetCriterion(HungarianMatcher(num_points=64 * 64), num_points=64 * 64)
    masks = _targets()
    pred = torch.full((1, 4, 32, 32), -20.0)
    pred[0, 1] = masks[0] * 40 - 20
    pred[0, 3] = masks[1] * 40 - 20
    cls = torch.full((1, 4, 3), -10.0)
    cls[0, :, -1] = 10.0
    cls[0, 1] = torch.tensor([10.0, -10.0, -10.0])
    cls[0, 3] = torch.tensor([-10.0, 10.0, -10.0])
    losses = crit.segmentation_losses(cls, pred, [masks], [torch.tensor([0, 1])])
    assert all(v < 1e-3 for v in losses.values()), losses
    ref_logits = torch.full((1, 4, 2), -10.0)
    ref_logits[0, 1, 0] = ref_logits[0, 3, 1] = 10.0
    g = crit.grounding_losses(ref_logits, pred, [masks])
    assert all(v < 1e-3 for v in g.values()), g
    wrong = crit.grounding_losses(ref_logits.flip(-1), pred, [masks])
    assert wrong["loss_grounding_ce"] > 1.0
