"""Hungarian matching of query predictions to target masks with point-sampled costs (Mask2Former, spec §3).

Open vocabulary: the number of classes is read from the logits at every call, so the same matcher serves any class
list. The class term is optional and can be replaced by a caller-supplied cost (referring: minus the softmax over
queries of the query-phrase similarity).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import nn
from torch.nn import functional as F


def point_sample(inputs: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Bilinear values of `inputs (N, C, H, W)` at `coords (N, P, 2)` given as (x, y) in `[0, 1]` -> `(N, C, P)`.

    Points within half a pixel of the border take the border value (not a blend with zero padding).
    """
    grid = 2.0 * coords[:, :, None, :] - 1.0
    return F.grid_sample(inputs, grid, mode="bilinear", padding_mode="border", align_corners=False)[..., 0]


def sample_mask_pairs(
    pred_logits: torch.Tensor, target_masks: torch.Tensor, num_points: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Values of predictions `(Q, h, w)` and targets `(N, H, W)` at shared points.

    When `h * w <= num_points` every prediction pixel is used (targets are sampled at the pixel centres, i.e.
    bilinearly resized to `(h, w)`); otherwise `num_points` uniformly random points are drawn.

    Returns:
        `(Q, P)` prediction logits and `(N, P)` target values in `[0, 1]`.
    """
    height, width = pred_logits.shape[-2:]
    target_masks = target_masks.to(pred_logits.dtype)
    if height * width <= num_points:
        if target_masks.shape[0] == 0:
            targets = target_masks.new_zeros(0, height * width)
        elif target_masks.shape[-2:] == (height, width):
            targets = target_masks.flatten(1)
        else:
            targets = F.interpolate(target_masks[:, None], size=(height, width), mode="bilinear", align_corners=False)
            targets = targets.flatten(1)
        return pred_logits.flatten(1), targets
    coords = torch.rand(1, num_points, 2, device=pred_logits.device, dtype=pred_logits.dtype, generator=generator)
    preds = point_sample(pred_logits[:, None], coords.expand(pred_logits.shape[0], -1, -1))[:, 0]
    if target_masks.shape[0] == 0:
        return preds, target_masks.new_zeros(0, num_points)
    targets = point_sample(target_masks[:, None], coords.expand(target_masks.shape[0], -1, -1))[:, 0]
    return preds, targets


def pairwise_sigmoid_ce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy between every prediction `(Q, P)` and every target `(N, P)` -> `(Q, N)`."""
    num_points = logits.shape[1]
    pos = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits), reduction="none")
    neg = F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits), reduction="none")
    return (pos @ targets.T + neg @ (1 - targets).T) / num_points


def pairwise_dice(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Dice loss `1 - (2|p t| + 1) / (|p| + |t| + 1)` between every prediction and target -> `(Q, N)`."""
    probs = logits.sigmoid()
    numerator = 2 * probs @ targets.T
    denominator = probs.sum(-1)[:, None] + targets.sum(-1)[None, :]
    return 1 - (numerator + 1) / (denominator + 1)


class HungarianMatcher(nn.Module):
    """One-to-one assignment of queries to targets minimising
    `cost_class * (-p(class)) + cost_mask * BCE + cost_dice * Dice` (spec §3; 2.0 / 5.0 / 5.0 in the reference).

    Args:
        cost_class: weight of the class (or caller-supplied) cost.
        cost_mask: weight of the point-sampled BCE cost.
        cost_dice: weight of the point-sampled Dice cost.
        num_points: K sampled points (every pixel when the prediction has at most K pixels).
    """

    def __init__(
        self, cost_class: float = 2.0, cost_mask: float = 5.0, cost_dice: float = 5.0, num_points: int = 12544
    ) -> None:
        super().__init__()
        if cost_class == 0 and cost_mask == 0 and cost_dice == 0:
            raise ValueError("at least one matching cost must be non-zero")
        self.cost_class = cost_class
        self.cost_mask = cost_mask
        self.cost_dice = cost_dice
        self.num_points = num_points

    @torch.no_grad()
    def forward(
        self,
        masks_queries_logits: torch.Tensor,
        mask_labels: list[torch.Tensor],
        class_queries_logits: torch.Tensor | None = None,
        class_labels: list[torch.Tensor] | None = None,
        class_costs: list[torch.Tensor] | None = None,
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """
        Args:
            masks_queries_logits: `(B, Q, h, w)` mask logits.
            mask_labels: per image `(N_i, H, W)` binary target masks.
            class_queries_logits: `(B, Q, C + 1)` logits (any C); the class cost is `-softmax(logits)[target]`.
            class_labels: per image `(N_i,)` target class indices in `0..C-1`.
            class_costs: alternatively, per image a ready `(Q, N_i)` cost (weighted by `cost_class`).

        Returns:
            Per image `(query_indices, target_indices)` LongTensors of equal length `min(Q, N_i)`.
        """
        indices = []
        for b, targets in enumerate(mask_labels):
            num_queries = masks_queries_logits.shape[1]
            if targets.shape[0] == 0:
                empty = torch.zeros(0, dtype=torch.long)
                indices.append((empty, empty))
                continue
            preds, tgts = sample_mask_pairs(masks_queries_logits[b].float(), targets.float(), self.num_points)
            cost = self.cost_mask * pairwise_sigmoid_ce(preds, tgts) + self.cost_dice * pairwise_dice(preds, tgts)
            if class_costs is not None:
                cost = cost + self.cost_class * class_costs[b].float()
            elif class_queries_logits is not None and class_labels is not None:
                probs = class_queries_logits[b].float().softmax(-1)
                cost = cost - self.cost_class * probs[:, class_labels[b]]
            cost = cost.reshape(num_queries, -1).cpu()
            cost = torch.nan_to_num(cost, nan=1e4, posinf=1e4, neginf=-1e4)
            rows, cols = linear_sum_assignment(cost.numpy())
            indices.append(
                (torch.as_tensor(rows, dtype=torch.long), torch.as_tensor(np.asarray(cols), dtype=torch.long))
            )
        return indices


__all__ = ["point_sample", "sample_mask_pairs", "pairwise_sigmoid_ce", "pairwise_dice", "HungarianMatcher"]
