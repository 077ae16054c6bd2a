"""TransMix (Chen et al., CVPR 2022; thesis chapter 4): CutMix whose label weights follow the class attention.

CutMix weights the pasted image's label by the pasted *area*; TransMix instead uses the share of the last layer's
class-token attention that falls on tokens inside the pasted box (extras spec §2). Works with any ViT-like
classifier that returns attentions. For models whose tokens are not on a regular grid (PS-ViT), box membership is
looked up at each token's own image position (its final sampling point) instead of on a downsampled box mask.

Typical use::

    transmix = TransMix(num_classes=10, seed=0)
    loss, outputs, targets = transmix.loss(model, pixel_values, labels)   # mix -> forward -> soft targets
    loss.backward()
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch.nn import functional as F

from ..modules.classification_loss import soft_target_cross_entropy


@dataclass
class MixState:
    """What [`TransMix.mix`] did to a batch; needed to build the targets after the forward pass.

    Args:
        labels: `(batch, num_classes)` label-smoothed one-hots of the original images.
        partner_labels: `(batch, num_classes)` the same for each sample's partner (the batch reversed).
        mode: `"cutmix"`, `"mixup"` or `"none"` (the batch was left unchanged).
        box_mask: `(height, width)` float, 1 where pixels were pasted from the partner (CutMix only).
        area: fraction of the image pasted from the partner (CutMix) or the partner's Mixup weight.
    """

    labels: torch.Tensor
    partner_labels: torch.Tensor
    mode: Literal["cutmix", "mixup", "none"]
    box_mask: torch.Tensor | None
    area: float


def one_hot_smoothed(labels: torch.Tensor, num_classes: int, smoothing: float = 0.0) -> torch.Tensor:
    """`(batch,)` class ids -> `(batch, num_classes)` targets with `smoothing` spread uniformly over all classes."""
    if labels.ndim != 1 or labels.is_floating_point():
        raise ValueError(f"`labels` must be a (batch,) tensor of class ids, got {labels.dtype} {tuple(labels.shape)}.")
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"`labels` must lie in [0, {num_classes}), got [{labels.min()}, {labels.max()}].")
    off = smoothing / num_classes
    targets = torch.full((labels.shape[0], num_classes), off, device=labels.device)
    return targets.scatter_(1, labels[:, None], 1.0 - smoothing + off)


def class_token_attention(attention: torch.Tensor, has_cls_token: bool = True) -> torch.Tensor:
    """Head-averaged attention of the class token (row 0) to the other tokens of one layer, detached.

    Args:
        attention: `(batch, heads, tokens, tokens)` attention probabilities, class token first.

    Returns:
        `(batch, tokens - 1)`.
    """
    if attention.ndim != 4:
        raise ValueError(f"`attention` must be (batch, heads, tokens, tokens), got shape {tuple(attention.shape)}.")
    if not has_cls_token:
        raise ValueError("TransMix needs a class token: the attention row of the class token defines the weights.")
    return attention[:, :, 0, 1:].mean(dim=1).detach().float()


class TransMix:
    """Batch mixing with CutMix / Mixup whose CutMix label weights come from the class attention.

    Args:
        num_classes: number of classes of the hard labels.
        mixup_alpha: Beta parameter of Mixup (0 disables Mixup).
        cutmix_alpha: Beta parameter of the CutMix box area (0 disables CutMix).
        prob: probability that a batch is mixed at all.
        switch_prob: probability of Mixup instead of CutMix when both are enabled.
        label_smoothing: smoothing of the one-hot targets before mixing.
        combine: `"mean"` uses `(area + attention) / 2` as the partner's weight (the authors' code and the thesis's
            implementation notes); `"attention"` uses the attention share alone (Eq. 4.5).
        seed: seed of the NumPy generator that draws the mixing decisions and boxes.
    """

    def __init__(
        self,
        num_classes: int,
        mixup_alpha: float = 0.8,
        cutmix_alpha: float = 1.0,
        prob: float = 1.0,
        switch_prob: float = 0.5,
        label_smoothing: float = 0.1,
        combine: Literal["mean", "attention"] = "mean",
        seed: int | None = None,
    ) -> None:
        if num_classes < 1:
            raise ValueError(f"`num_classes` must be >= 1, got {num_classes}.")
        if mixup_alpha < 0 or cutmix_alpha < 0:
            raise ValueError(f"`mixup_alpha` and `cutmix_alpha` must be >= 0, got {mixup_alpha}, {cutmix_alpha}.")
        if not 0.0 <= prob <= 1.0 or not 0.0 <= switch_prob <= 1.0:
            raise ValueError(f"`prob` and `switch_prob` must be in [0, 1], got {prob}, {switch_prob}.")
        if combine not in ("mean", "attention"):
            raise ValueError(f"`combine` must be 'mean' or 'attention', got {combine!r}.")
        self.num_classes = num_classes
        self.mixup_alpha = mixup_alpha
        self.cutmix_alpha = cutmix_alpha
        self.prob = prob
        self.switch_prob = switch_prob
        self.label_smoothing = label_smoothing
        self.combine = combine
        self.rng = np.random.default_rng(seed)

    # ------------------------------------------------------------------ mixing

    def _choose_mode(self) -> str:
        if self.rng.random() >= self.prob or (self.mixup_alpha == 0 and self.cutmix_alpha == 0):
            return "none"
        if self.cutmix_alpha == 0:
            return "mixup"
        if self.mixup_alpha == 0:
            return "cutmix"
        return "mixup" if self.rng.random() < self.switch_prob else "cutmix"

    def _box(self, height: int, width: int, area: float | None) -> tuple[int, int, int, int]:
        """CutMix box `(y0, y1, x0, x1)`: side ratio sqrt(area), uniform centre, clipped to the image."""
        if area is None:
            area = 1.0 - float(self.rng.beta(self.cutmix_alpha, self.cutmix_alpha))
        ratio = math.sqrt(area)
        cut_h, cut_w = int(round(height * ratio)), int(round(width * ratio))
        cy, cx = int(self.rng.integers(height)), int(self.rng.integers(width))
        y0, y1 = np.clip([cy - cut_h // 2, cy - cut_h // 2 + cut_h], 0, height)
        x0, x1 = np.clip([cx - cut_w // 2, cx - cut_w // 2 + cut_w], 0, width)
        return int(y0), int(y1), int(x0), int(x1)

    def mix(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor,
        mode: Literal["cutmix", "mixup", "none"] | None = None,
        area: float | None = None,
    ) -> tuple[torch.Tensor, MixState]:
        """Mix each image with its partner in the reversed batch.

        Args:
            pixel_values: `(batch, channels, height, width)`.
            labels: `(batch,)` class ids.
            mode: force `"cutmix"`, `"mixup"` or `"none"` instead of drawing it.
            area: force the CutMix box to cover about this fraction of the image (0 pastes nothing), or the Mixup
                weight of the partner; drawn from the Beta distributions when `None`.

        Returns:
            The mixed images and the [`MixState`] to pass to [`TransMix.targets`].
        """
        if not isinstance(pixel_values, torch.Tensor) or pixel_values.ndim != 4:
            raise ValueError("`pixel_values` must be a (batch, channels, height, width) tensor.")
        if not isinstance(labels, torch.Tensor) or labels.shape[:1] != pixel_values.shape[:1]:
            raise ValueError("`labels` must be a (batch,) tensor matching the batch size of `pixel_values`.")
        if area is not None and not 0.0 <= area <= 1.0:
            raise ValueError(f"`area` must be in [0, 1], got {area}.")
        if mode not in (None, "cutmix", "mixup", "none"):
            raise ValueError(f"`mode` must be 'cutmix', 'mixup', 'none' or None, got {mode!r}.")
        targets = one_hot_smoothed(labels, self.num_classes, self.label_smoothing).to(pixel_values.device)
        mode = mode or self._choose_mode()
        partner = pixel_values.flip(0)
        height, width = pixel_values.shape[-2:]
        if mode == "cutmix":
            y0, y1, x0, x1 = self._box(height, width, area)
            box_mask = pixel_values.new_zeros(height, width)
            box_mask[y0:y1, x0:x1] = 1.0
            mixed = pixel_values * (1 - box_mask) + partner * box_mask
            pasted = float(box_mask.mean())
        elif mode == "mixup":
            pasted = (
                float(area) if area is not None else 1.0 - float(self.rng.beta(self.mixup_alpha, self.mixup_alpha))
            )
            mixed, box_mask = pixel_values * (1 - pasted) + partner * pasted, None
        else:
            mixed, box_mask, pasted = pixel_values, None, 0.0
        return mixed, MixState(targets, targets.flip(0), mode, box_mask, pasted)

    # ------------------------------------------------------------------ targets

    def attention_weight(
        self,
        state: MixState,
        cls_attention: torch.Tensor,
        token_positions: torch.Tensor | None = None,
        grid_size: tuple[int, int] | None = None,
    ) -> torch.Tensor:
        """Share of each sample's class attention that falls on pasted tokens, `(batch,)` in [0, 1].

        Args:
            state: from [`TransMix.mix`] (CutMix).
            cls_attention: `(batch, tokens)` class-token attention to the image tokens (see
                [`class_token_attention`]).
            token_positions: `(batch, tokens, 2)` `(y, x)` input-pixel location of every token (PS-ViT: stem stride
                times the final sampling points). Box membership is read at the nearest pixel; tokens outside the
                image count as not pasted. When `None`, tokens are a row-major grid and the box mask is downsampled
                to it with nearest-neighbour interpolation.
            grid_size: `(g_h, g_w)` of that grid; inferred from a square token count when `None`.
        """
        if state.box_mask is None:
            raise ValueError("`attention_weight` needs a CutMix state (its `box_mask` is None).")
        if cls_attention.ndim != 2:
            raise ValueError(f"`cls_attention` must be (batch, tokens), got shape {tuple(cls_attention.shape)}.")
        batch_size, num_tokens = cls_attention.shape
        mask = state.box_mask.to(cls_attention.device, torch.float32)
        height, width = mask.shape
        if token_positions is not None:
            if tuple(token_positions.shape) != (batch_size, num_tokens, 2):
                raise ValueError(
                    f"`token_positions` must be (batch, tokens, 2) = {(batch_size, num_tokens, 2)}, "
                    f"got {tuple(token_positions.shape)}."
                )
            rows = torch.round(token_positions[..., 0].detach().float()).long()
            cols = torch.round(token_positions[..., 1].detach().float()).long()
            inside = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
            in_box = mask[rows.clamp(0, height - 1), cols.clamp(0, width - 1)] * inside
        else:
            if grid_size is None:
                side = math.isqrt(num_tokens)
                if side * side != num_tokens:
                    raise ValueError(
                        f"The number of tokens ({num_tokens}) is not a square, so the token grid cannot be inferred; "
                        "pass `grid_size=(g_h, g_w)` or `token_positions`."
                    )
                grid_size = (side, side)
            if grid_size[0] * grid_size[1] != num_tokens:
                raise ValueError(f"`grid_size` {tuple(grid_size)} does not hold {num_tokens} tokens.")
            small = F.interpolate(mask[None, None], size=tuple(grid_size), mode="nearest")
            in_box = small.reshape(1, num_tokens).expand(batch_size, -1)
        attention = cls_attention.detach().float()
        total = attention.sum(dim=1).clamp_min(torch.finfo(torch.float32).tiny)
        return (attention * in_box).sum(dim=1) / total

    def targets(
        self,
        state: MixState,
        cls_attention: torch.Tensor | None = None,
        token_positions: torch.Tensor | None = None,
        grid_size: tuple[int, int] | None = None,
    ) -> torch.Tensor:
        """Soft targets `(batch, num_classes)` for the mixed batch; rows are non-negative and sum to one.

        CutMix batches need `cls_attention` (and `token_positions` for non-grid tokenisers); Mixup and unmixed
        batches ignore it. Arguments as in [`TransMix.attention_weight`].
        """
        if state.mode == "cutmix":
            if cls_attention is None:
                raise ValueError("A CutMix batch needs `cls_attention` to compute TransMix targets.")
            weight = self.attention_weight(state, cls_attention, token_positions, grid_size)
            if self.combine == "mean":
                weight = 0.5 * (weight + state.area)
            weight = weight.to(state.labels.device)[:, None]
        else:
            weight = torch.full((state.labels.shape[0], 1), state.area, device=state.labels.device)
        return (1 - weight) * state.labels + weight * state.partner_labels

    # ------------------------------------------------------------------ one training step

    def loss(
        self,
        model: Any,
        pixel_values: torch.Tensor,
        labels: torch.Tensor,
        point_stride: float = 4.0,
        **forward_kwargs: Any,
    ) -> tuple[torch.Tensor, Any, torch.Tensor]:
        """Mix, run `model(mixed, output_attentions=True)` and return `(soft-target CE, outputs, targets)`.

        The class attention is taken from the last entry of `outputs.attentions`. If the outputs carry
        `sampling_points` `(batch, N, tokens, 2)` (PS-ViT), the final points times `point_stride` (the stem stride,
        input pixels per feature-map pixel) give each token's position.
        """
        mixed, state = self.mix(pixel_values, labels)
        outputs = model(mixed, output_attentions=True, **forward_kwargs)
        if not getattr(outputs, "attentions", None):
            raise ValueError(
                "TransMix needs a model that returns `attentions` when called with output_attentions=True."
            )
        cls_attention = class_token_attention(outputs.attentions[-1])
        points = getattr(outputs, "sampling_points", None)
        positions = points[:, -1] * point_stride if points is not None else None
        targets = self.targets(state, cls_attention, positions)
        return soft_target_cross_entropy(outputs.logits, targets), outputs, targets


__all__ = ["MixState", "TransMix", "class_token_attention", "one_hot_smoothed"]
