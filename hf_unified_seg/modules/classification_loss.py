"""Image-classification loss that accepts hard class ids or soft (mixed) targets."""

from __future__ import annotations

import torch
from torch.nn import functional as F


def soft_target_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of `-sum_c targets_c * log_softmax(logits)_c` (Mixup / CutMix / TransMix targets)."""
    return torch.sum(-targets * F.log_softmax(logits.float(), dim=-1), dim=-1).mean()


def image_classification_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    problem_type: str | None = None,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Classification loss for `(batch, num_labels)` logits.

    Args:
        logits: `(batch, num_labels)` scores.
        labels: int64 `(batch,)` class ids in `[0, num_labels)` (cross-entropy with `label_smoothing`), or float
            `(batch, num_labels)` per-class target weights (soft-target cross-entropy; binary cross-entropy when
            `problem_type == "multi_label_classification"`), or float `(batch,)` / `(batch, 1)` regression targets
            when `num_labels == 1` or `problem_type == "regression"`.
        problem_type: the config's `problem_type`; `None` infers it from `labels` without changing any config.
        label_smoothing: smoothing of the hard-label cross-entropy.
    """
    if not isinstance(labels, torch.Tensor):
        raise TypeError(f"`labels` must be a torch.Tensor, got {type(labels).__name__}.")
    batch_size, num_labels = logits.shape
    if labels.shape[0] != batch_size:
        raise ValueError(f"`labels` has batch size {labels.shape[0]} but the logits have {batch_size}.")
    labels = labels.to(logits.device)
    if problem_type == "regression" or (num_labels == 1 and problem_type is None):
        return F.mse_loss(logits.squeeze(-1), labels.float().view(batch_size, -1).squeeze(-1))
    if labels.is_floating_point():
        if tuple(labels.shape) != (batch_size, num_labels):
            raise ValueError(
                f"Soft `labels` must have shape (batch, num_labels) = {(batch_size, num_labels)}, got {tuple(labels.shape)}."
            )
        if problem_type == "multi_label_classification":
            return F.binary_cross_entropy_with_logits(logits.float(), labels.float())
        return soft_target_cross_entropy(logits, labels)
    if labels.ndim != 1:
        raise ValueError(f"Hard `labels` must be a (batch,) tensor of class ids, got shape {tuple(labels.shape)}.")
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_labels):
        raise ValueError(
            f"`labels` must be class ids in [0, {num_labels}), got values in [{labels.min()}, {labels.max()}]."
        )
    return F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing)


__all__ = ["image_classification_loss", "soft_target_cross_entropy"]
