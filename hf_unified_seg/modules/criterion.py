"""Set criterion and semantic losses of X-Decoder (spec §3), shared by SEEM / FIND.

- mask classification: cross-entropy over the `C + 1` open-vocabulary logits (last = no object, weight 0.1);
- mask losses: BCE + Dice on matched pairs, point-sampled with importance sampling (Mask2Former), or on every pixel
  when the prediction has at most K pixels;
- grounding (referring): per phrase, CE over queries + BCE + Dice on the matched query's mask;
- image-text contrastive (Eq. 4.9) and captioning (next-token CE);
- deep supervision: the segmentation losses on every prediction set, suffixed `_0 .. _{L-1}` for the earlier ones.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .matcher import HungarianMatcher, point_sample, sample_mask_pairs


def sigmoid_ce_loss(logits: torch.Tensor, targets: torch.Tensor, num_masks: float) -> torch.Tensor:
    """Mean-over-points BCE of matched pairs `(N, P)`, summed over pairs and divided by `num_masks`."""
    loss = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    return loss.mean(1).sum() / num_masks


def dice_loss(logits: torch.Tensor, targets: torch.Tensor, num_masks: float) -> torch.Tensor:
    """Dice loss `1 - (2|p t| + 1) / (|p| + |t| + 1)` of matched pairs `(N, P)`, summed and divided by `num_masks`."""
    probs = logits.sigmoid()
    numerator = 2 * (probs * targets).sum(-1)
    denominator = probs.sum(-1) + targets.sum(-1)
    return (1 - (numerator + 1) / (denominator + 1)).sum() / num_masks


def importance_sampled_points(
    logits: torch.Tensor, num_points: int, oversample_ratio: float, importance_sample_ratio: float
) -> torch.Tensor:
    """Mask2Former's training points for `(N, 1, h, w)` logits: oversample uniformly, keep the
    `importance_sample_ratio` share with the highest uncertainty `-|logit|`, fill up with uniform points.

    Returns:
        `(N, num_points, 2)` coordinates in `[0, 1]`.
    """
    num_masks = logits.shape[0]
    num_sampled = int(num_points * oversample_ratio)
    coords = torch.rand(num_masks, num_sampled, 2, device=logits.device, dtype=logits.dtype)
    uncertainty = -point_sample(logits, coords)[:, 0].abs()
    num_uncertain = int(importance_sample_ratio * num_points)
    num_random = num_points - num_uncertain
    top = torch.topk(uncertainty, k=num_uncertain, dim=1).indices
    picked = torch.gather(coords, 1, top[..., None].expand(-1, -1, 2))
    if num_random > 0:
        extra = torch.rand(num_masks, num_random, 2, device=logits.device, dtype=logits.dtype)
        picked = torch.cat([picked, extra], dim=1)
    return picked


def matched_mask_losses(
    pred_logits: torch.Tensor,
    target_masks: torch.Tensor,
    num_masks: float,
    num_points: int,
    oversample_ratio: float = 3.0,
    importance_sample_ratio: float = 0.75,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BCE and Dice of matched pairs: predictions `(N, h, w)`, targets `(N, H, W)`.

    Every prediction pixel is used when `h * w <= num_points` (exact and cheap on small images, spec §8.2);
    otherwise `num_points` importance-sampled points.
    """
    if pred_logits.shape[0] == 0:
        zero = pred_logits.sum() * 0.0
        return zero, zero
    target_masks = target_masks.to(pred_logits.dtype)
    height, width = pred_logits.shape[-2:]
    if height * width <= num_points:
        preds, targets = sample_mask_pairs(pred_logits, target_masks, num_points)
        # sample_mask_pairs returns all pairs (Q x N); here both sides are already aligned one-to-one
    else:
        with torch.no_grad():
            coords = importance_sampled_points(
                pred_logits[:, None].detach(), num_points, oversample_ratio, importance_sample_ratio
            )
            targets = point_sample(target_masks[:, None], coords)[:, 0]
        preds = point_sample(pred_logits[:, None], coords)[:, 0]
    return sigmoid_ce_loss(preds, targets, num_masks), dice_loss(preds, targets, num_masks)


def classification_loss(
    class_logits: torch.Tensor,
    class_labels: list[torch.Tensor],
    indices: list[tuple[torch.Tensor, torch.Tensor]],
    no_object_weight: float,
) -> torch.Tensor:
    """Cross-entropy over `C + 1` classes (C read from the logits); unmatched queries target the last (no object)
    class, whose weight is `no_object_weight`."""
    batch, num_queries, num_classes = class_logits.shape
    targets = torch.full((batch, num_queries), num_classes - 1, dtype=torch.long, device=class_logits.device)
    for b, (src, tgt) in enumerate(indices):
        targets[b, src.to(targets.device)] = class_labels[b].to(targets.device)[tgt.to(targets.device)]
    weight = torch.ones(num_classes, device=class_logits.device, dtype=class_logits.dtype)
    weight[-1] = no_object_weight
    return F.cross_entropy(class_logits.transpose(1, 2), targets, weight=weight)


def contrastive_loss(image_embeds: torch.Tensor, text_embeds: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Eq. 4.9: `CE(S, y) + CE(S^T, y)` with `S = exp(tau) * cos(image, text)` and `y` the diagonal."""
    image_embeds = F.normalize(image_embeds, dim=-1)
    text_embeds = F.normalize(text_embeds, dim=-1)
    logits = logit_scale * image_embeds @ text_embeds.T
    labels = torch.arange(logits.shape[0], device=logits.device)
    return F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)


def captioning_loss(logits: torch.Tensor, labels: torch.Tensor, attention_mask: torch.Tensor | None = None):
    """Next-token cross-entropy: position j predicts token j + 1. Targets equal to -100 or outside
    `attention_mask` are ignored; the sum is divided by (number of valid targets + 1) as in the reference."""
    shifted_logits = logits[:, :-1]
    targets = labels[:, 1:].clone()
    if attention_mask is not None:
        targets[attention_mask[:, 1:] == 0] = -100
    loss = F.cross_entropy(shifted_logits.reshape(-1, shifted_logits.shape[-1]), targets.reshape(-1), reduction="sum")
    return loss / ((targets != -100).sum() + 1)


class SetCriterion(nn.Module):
    """Hungarian-matched segmentation losses with deep supervision, plus grounding.

    Args:
        matcher: the :class:`HungarianMatcher`.
        class_weight, mask_weight, dice_weight: weights of the CE / BCE / Dice terms.
        no_object_weight: CE weight of the "no object" class.
        grounding_class_weight, grounding_mask_weight, grounding_dice_weight: weights of the referring terms.
        num_points, oversample_ratio, importance_sample_ratio: point sampling of the mask losses.
    """

    def __init__(
        self,
        matcher: HungarianMatcher,
        class_weight: float = 2.0,
        mask_weight: float = 5.0,
        dice_weight: float = 5.0,
        no_object_weight: float = 0.1,
        grounding_class_weight: float = 0.4,
        grounding_mask_weight: float = 1.0,
        grounding_dice_weight: float = 1.0,
        num_points: int = 12544,
        oversample_ratio: float = 3.0,
        importance_sample_ratio: float = 0.75,
    ) -> None:
        super().__init__()
        self.matcher = matcher
        self.class_weight = class_weight
        self.mask_weight = mask_weight
        self.dice_weight = dice_weight
        self.no_object_weight = no_object_weight
        self.grounding_class_weight = grounding_class_weight
        self.grounding_mask_weight = grounding_mask_weight
        self.grounding_dice_weight = grounding_dice_weight
        self.num_points = num_points
        self.oversample_ratio = oversample_ratio
        self.importance_sample_ratio = importance_sample_ratio

    def _mask_terms(self, masks_logits, mask_labels, indices, num_masks):
        src = torch.cat([masks_logits[b, i.to(masks_logits.device)] for b, (i, _) in enumerate(indices)])
        tgt = torch.cat([mask_labels[b][j.to(mask_labels[b].device)] for b, (_, j) in enumerate(indices)])
        return matched_mask_losses(
            src, tgt.to(src.device), num_masks, self.num_points, self.oversample_ratio, self.importance_sample_ratio
        )

    def segmentation_losses(
        self,
        class_queries_logits: torch.Tensor,
        masks_queries_logits: torch.Tensor,
        mask_labels: list[torch.Tensor],
        class_labels: list[torch.Tensor],
    ) -> dict[str, torch.Tensor]:
        """Weighted `loss_ce`, `loss_mask`, `loss_dice` of one prediction set."""
        indices = self.matcher(masks_queries_logits, mask_labels, class_queries_logits, class_labels)
        num_masks = max(float(sum(len(t) for t in class_labels)), 1.0)
        bce, dice = self._mask_terms(masks_queries_logits, mask_labels, indices, num_masks)
        ce = classification_loss(class_queries_logits, class_labels, indices, self.no_object_weight)
        return {
            "loss_ce": self.class_weight * ce,
            "loss_mask": self.mask_weight * bce,
            "loss_dice": self.dice_weight * dice,
        }

    def grounding_losses(
        self, referring_logits: torch.Tensor, masks_queries_logits: torch.Tensor, mask_labels: list[torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Referring losses of one prediction set.

        Args:
            referring_logits: `(B, Q, R)` scaled query-phrase similarities.
            masks_queries_logits: `(B, Q, h, w)` mask logits of the (grounding) queries.
            mask_labels: per image `(R, H, W)` target mask of each phrase.
        """
        probs = referring_logits.float().softmax(dim=1)  # softmax over queries, per phrase
        class_costs = [-probs[b] for b in range(probs.shape[0])]
        indices = self.matcher(masks_queries_logits, mask_labels, class_costs=class_costs)
        num_masks = max(float(sum(len(t) for t in mask_labels)), 1.0)
        bce, dice = self._mask_terms(masks_queries_logits, mask_labels, indices, num_masks)
        ce_terms = []
        for b, (src, tgt) in enumerate(indices):
            if len(src) == 0:
                continue
            # per phrase tgt[k], the correct query is src[k]
            logits = referring_logits[b][:, tgt.to(referring_logits.device)].T  # (n_matched, Q)
            ce_terms.append(F.cross_entropy(logits, src.to(logits.device), reduction="sum"))
        ce = torch.stack(ce_terms).sum() / num_masks if ce_terms else referring_logits.sum() * 0.0
        return {
            "loss_grounding_ce": self.grounding_class_weight * ce,
            "loss_grounding_mask": self.grounding_mask_weight * bce,
            "loss_grounding_dice": self.grounding_dice_weight * dice,
        }


def with_suffix(losses: dict[str, torch.Tensor], suffix: str) -> dict[str, torch.Tensor]:
    """`{"loss_ce": x} -> {"loss_ce_3": x}` for auxiliary prediction sets."""
    return {f"{k}{suffix}": v for k, v in losses.items()}


__all__ = [
    "sigmoid_ce_loss",
    "dice_loss",
    "importance_sampled_points",
    "matched_mask_losses",
    "classification_loss",
    "contrastive_loss",
    "captioning_loss",
    "SetCriterion",
    "with_suffix",
]
