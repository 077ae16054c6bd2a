"""2-D sine positional encoding of feature maps (DETR / Mask2Former style)."""

from __future__ import annotations

import math

import torch
from torch import nn


class SinePositionEmbedding(nn.Module):
    """Fixed sine/cosine encoding of the (y, x) position of every pixel of a feature map.

    The first `num_pos_feats` channels encode y, the next `num_pos_feats` encode x; within each half, even channels
    are `sin(p / T^(2i/F))` and odd ones the matching `cos`, where `p` is the (optionally normalised to `[0, scale]`)
    cumulative count of valid pixels along that axis. Padded pixels (`mask == False`) do not advance the count, so the
    encoding of the valid region does not depend on how much padding surrounds it.

    Args:
        num_pos_feats: channels per axis; the output has `2 * num_pos_feats` channels.
        temperature: the base `T` of the frequencies.
        normalize: normalise positions to `[0, scale]` by the valid extent.
        scale: the range after normalisation (default `2 * pi`).
    """

    def __init__(
        self, num_pos_feats: int = 64, temperature: float = 10000.0, normalize: bool = True, scale: float | None = None
    ) -> None:
        super().__init__()
        if scale is not None and not normalize:
            raise ValueError("`scale` is only used when `normalize=True`.")
        self.num_pos_feats = num_pos_feats
        self.temperature = temperature
        self.normalize = normalize
        self.scale = 2 * math.pi if scale is None else scale
        # without padding the encoding depends only on (height, width): computed once per size
        self._cache: dict[tuple, torch.Tensor] = {}

    def forward(
        self,
        shape: torch.Size | tuple[int, ...],
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """
        Args:
            shape: `(batch, channels, height, width)` of the feature map to encode.
            device, dtype: of the returned encoding.
            mask: optional boolean `(batch, height, width)`, True on valid (unpadded) pixels.

        Returns:
            `(batch, 2 * num_pos_feats, height, width)` encoding.
        """
        batch, _, height, width = shape
        if mask is None:
            key = (height, width, str(device), dtype)
            if key not in self._cache:
                if len(self._cache) > 64:
                    self._cache.clear()
                ones = torch.ones(1, height, width, device=device, dtype=torch.bool)
                self._cache[key] = self.forward((1, 0, height, width), device, dtype, ones)
            return self._cache[key].expand(batch, -1, -1, -1)
        valid = mask.to(torch.float32)
        y_embed = valid.cumsum(1)
        x_embed = valid.cumsum(2)
        if self.normalize:
            eps = 1e-6
            y_embed = (y_embed - 0.5) / (y_embed[:, -1:, :] + eps) * self.scale
            x_embed = (x_embed - 0.5) / (x_embed[:, :, -1:] + eps) * self.scale
        dim_t = torch.arange(self.num_pos_feats, device=device, dtype=torch.float32)
        dim_t = self.temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / self.num_pos_feats)
        pos_x = x_embed[:, :, :, None] / dim_t
        pos_y = y_embed[:, :, :, None] / dim_t
        # interleave sin (even channels) and cos (odd channels)
        pos_x = torch.stack((pos_x[..., 0::2].sin(), pos_x[..., 1::2].cos()), dim=4).flatten(3)
        pos_y = torch.stack((pos_y[..., 0::2].sin(), pos_y[..., 1::2].cos()), dim=4).flatten(3)
        return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2).to(dtype)


__all__ = ["SinePositionEmbedding"]
