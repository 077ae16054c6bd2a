"""Hungarian matcher: costs against element-wise loops, assignment against brute force, open vocabulary."""

import itertools

import torch
from torch.nn import functional as F

from hf_unified_seg.modules.matcher import HungarianMatcher, pairwise_dice, pairwise_sigmoid_ce, sample_mask_pairs


def test_pairwise_costs_match_loops():
    logits, targets = torch.randn(3, 20), (torch.rand(4, 20) > 0.5).float()
    ce, dice = pairwise_sigmoid_ce(logits, targets), pairwise_dice(logits, targets)
    for i in range(3):
        for j in range(4):
            ref_ce = F.binary_cross_entropy_with_logits(logits[i], targets[j])
            p = logits[i].sigmoid()
            ref_dice = 1 - (2 * (p * targets[j]).sum() + 1) / (p.sum() + targets[j].sum() + 1)
            torch.testing.assert_close(ce[i, j], ref_ce)
            torch.testing.assert_close(dice[i, j], ref_dice)


def test_all_pixels_used_when_small():
    preds, targets = sample_mask_pairs(torch.randn(3, 4, 4), torch.ones(2, 16, 16), num_points=16)
    assert preds.shape == (3, 16) and targets.shape == (2, 16)
    preds, targets = sample_mask_pairs(torch.randn(3, 8, 8), torch.ones(2, 32, 32), num_points=16)
    assert preds.shape == (3, 16) and torch.allclose(targets, torch.ones(2, 16))


def _brute_force(cost):
    q, n = cost.shape
    best = None
    for perm in itertools.permutations(range(q), n):
        total = sum(cost[perm[j], j] for j in range(n))
        if best is None or total < best:
            best = total
    return best


def test_assignment_is_optimal_and_open_vocabulary():
    torch.manual_seed(0)
    matcher = HungarianMatcher(num_points=10_000)
    for num_classes in (3, 7):  # the class count comes from the logits
        masks_logits = torch.randn(1, 5, 8, 8) * 3
        class_logits = torch.randn(1, 5, num_classes + 1)
        targets = (torch.rand(3, 32, 32) > 0.5).float()
        labels = torch.randint(0, num_classes, (3,))
        ((rows, cols),) = matcher(masks_logits, [targets], class_logits, [labels])
        preds, tgts = sample_mask_pairs(masks_logits[0], targets, 10_000)
        cost = 5 * pairwise_sigmoid_ce(preds, tgts) + 5 * pairwise_dice(preds, tgts)
        cost = cost - 2 * class_logits[0].softmax(-1)[:, labels]
        chosen = cost[rows, cols].sum()
        torch.testing.assert_close(chosen, torch.as_tensor(_brute_force(cost), dtype=chosen.dtype))
        assert len(set(rows.tolist())) == 3


def test_perfect_prediction_is_matched_to_its_target():
    targets = torch.zeros(2, 16, 16)
    targets[0, :8] = 1
    targets[1, 8:] = 1
    masks_logits = torch.full((1, 4, 16, 16), -20.0)
    masks_logits[0, 2] = targets[1] * 40 - 20
    masks_logits[0, 0] = targets[0] * 40 - 20
    ((rows, cols),) = HungarianMatcher()(masks_logits, [targets])
    assert dict(zip(cols.tolist(), rows.tolist())) == {0: 0, 1: 2}


def test_no_targets():
    ((rows, cols),) = HungarianMatcher()(torch.randn(1, 3, 4, 4), [torch.zeros(0, 16, 16)])
    assert rows.numel() == 0 and cols.numel() == 0
