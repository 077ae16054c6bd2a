"""Stochastic depth (drop path) for residual branches."""

from __future__ import annotations

import torch
from torch import nn


def drop_path(hidden_states: torch.Tensor, drop_prob: float = 0.0, training: bool = False) -> torch.Tensor:
    """Zero whole residual branches per sample with probability `drop_prob` and rescale the survivors.

    Args:
        hidden_states: tensor whose first dimension is the batch.
        drop_prob: probability of dropping the branch of one sample.
        training: the branch is only dropped in training mode.
    """
    if drop_prob == 0.0 or not training:
        return hidden_states
    keep_prob = 1.0 - drop_prob
    # one Bernoulli draw per sample, broadcast over every other dimension
    shape = (hidden_states.shape[0],) + (1,) * (hidden_states.ndim - 1)
    mask = hidden_states.new_empty(shape).bernoulli_(keep_prob)
    return hidden_states * mask / keep_prob


class DropPath(nn.Module):
    """Module wrapper of [`drop_path`]; the identity when `drop_prob` is 0 or in eval mode."""

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= drop_prob < 1.0:
            raise ValueError(f"`drop_prob` must be in [0, 1), got {drop_prob}.")
        self.drop_prob = float(drop_prob)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return drop_path(hidden_states, self.drop_prob, self.training)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"
