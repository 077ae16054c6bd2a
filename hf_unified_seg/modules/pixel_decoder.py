"""Transformer-encoder FPN pixel decoder (MaskFormer-style; X-Decoder spec §2.3).

X-Decoder keeps Mask2Former's decoder but drops the deformable-attention pixel encoder, which the authors found to
transfer poorly to open-vocabulary settings. Instead the coarsest backbone map goes through a small post-norm
transformer encoder and a top-down FPN produces the multi-scale memory and the stride-4 mask features.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from transformers.utils import ModelOutput

from .attention import FeedForward
from .mask_decoder import MultiHeadAttention
from .position_encoding import SinePositionEmbedding


@dataclass
class PixelDecoderOutput(ModelOutput):
    """
    Args:
        mask_features (`torch.FloatTensor` of shape `(B, mask_dim, H/4, W/4)`): per-pixel embeddings `F`.
        multi_scale_features (`tuple(torch.FloatTensor)`): memory maps for the decoder, coarsest first
            (strides 32, 16, 8 with four backbone levels), each `(B, conv_dim, h_l, w_l)`.
        encoder_last_hidden_state (`torch.FloatTensor` of shape `(B, conv_dim, H/32, W/32)`): transformer-encoder
            output on the coarsest map, before the FPN output conv.
    """

    mask_features: torch.FloatTensor | None = None
    multi_scale_features: tuple[torch.FloatTensor, ...] | None = None
    encoder_last_hidden_state: torch.FloatTensor | None = None


class PostNormEncoderLayer(nn.Module):
    """`x = LN(x + SelfAttn(x + pos, x + pos, x))`, then `x = LN(x + FFN(x))` (DETR encoder layer, ReLU FFN).

    Args:
        hidden_dim: token width.
        num_heads: attention heads.
        dim_feedforward: FFN width.
        dropout: dropout.
    """

    def __init__(self, hidden_dim: int, num_heads: int, dim_feedforward: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.attention = MultiHeadAttention(hidden_dim, num_heads, dropout)
        self.attention_layer_norm = nn.LayerNorm(hidden_dim)
        self.mlp = FeedForward(hidden_dim, dim_feedforward, hidden_act="relu", dropout=dropout)
        self.final_layer_norm = nn.LayerNorm(hidden_dim)

    def forward(
        self, hidden_states: torch.Tensor, position: torch.Tensor, key_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """`(B, N, d)` tokens, `(B, N, d)` positions, optional boolean `(B, 1, 1, N)` key mask (True = valid)."""
        q = hidden_states + position
        hidden_states = self.attention_layer_norm(hidden_states + self.attention(q, q, hidden_states, key_mask))
        return self.final_layer_norm(hidden_states + self.mlp(hidden_states))


class ConvNormReLU(nn.Sequential):
    """`conv(k) -> GroupNorm -> [ReLU]`, bias-free conv (the norm has the bias)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, groups: int, relu: bool = True):
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
            nn.GroupNorm(groups, out_channels),
        ]
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class TransformerEncoderPixelDecoder(nn.Module):
    """Transformer encoder on the coarsest backbone map + top-down FPN.

    1. `res5 -> 1x1 conv -> + sine position -> num_layers post-norm encoder layers -> 3x3 conv/GN/ReLU = y5`
    2. for the finer maps, top-down: `y = GN(1x1 conv(z)) + nearest_upsample(y_prev)` then 3x3 conv/GN/ReLU
    3. memory `[y5, y4, y3]` (the `num_feature_levels` coarsest), mask features `F = conv3x3(y2)`.

    Args:
        in_channels: channels of the backbone maps, finest (stride 4) first.
        conv_dim: `D_pix`.
        mask_dim: `D_mask`.
        num_layers: transformer-encoder layers (0 skips the encoder).
        num_heads: encoder heads.
        dim_feedforward: encoder FFN width.
        dropout: encoder dropout.
        norm_num_groups: GroupNorm groups.
        num_feature_levels: number of memory maps returned.
    """

    def __init__(
        self,
        in_channels: list[int],
        conv_dim: int,
        mask_dim: int,
        num_layers: int = 6,
        num_heads: int = 8,
        dim_feedforward: int = 2048,
        dropout: float = 0.0,
        norm_num_groups: int = 32,
        num_feature_levels: int = 3,
    ) -> None:
        super().__init__()
        if len(in_channels) < 2:
            raise ValueError(f"`in_channels` needs at least 2 backbone levels, got {in_channels}.")
        if num_feature_levels > len(in_channels):
            raise ValueError(
                f"`num_feature_levels` ({num_feature_levels}) exceeds the number of backbone levels ({len(in_channels)})."
            )
        if conv_dim % norm_num_groups != 0:
            raise ValueError(f"`conv_dim` ({conv_dim}) must be divisible by `norm_num_groups` ({norm_num_groups}).")
        self.num_feature_levels = num_feature_levels
        self.input_projection = nn.Conv2d(in_channels[-1], conv_dim, kernel_size=1)
        self.position_embedding = SinePositionEmbedding(conv_dim // 2, normalize=True)
        self.encoder_layers = nn.ModuleList(
            PostNormEncoderLayer(conv_dim, num_heads, dim_feedforward, dropout) for _ in range(num_layers)
        )
        self.encoder_output = ConvNormReLU(conv_dim, conv_dim, 3, norm_num_groups)
        # top-down path over the finer levels, coarsest first
        finer = list(reversed(in_channels[:-1]))
        self.lateral_convs = nn.ModuleList(ConvNormReLU(c, conv_dim, 1, norm_num_groups, relu=False) for c in finer)
        self.output_convs = nn.ModuleList(ConvNormReLU(conv_dim, conv_dim, 3, norm_num_groups) for _ in finer)
        self.mask_projection = nn.Conv2d(conv_dim, mask_dim, kernel_size=3, padding=1)

    def forward(self, features: list[torch.Tensor], pixel_mask: torch.Tensor | None = None) -> PixelDecoderOutput:
        """
        Args:
            features: backbone maps, finest first (e.g. strides 4, 8, 16, 32).
            pixel_mask: optional `(B, H, W)` 1 = real pixel, 0 = padding; padded positions of the coarsest map are
                hidden from the encoder's attention and do not advance the sine positions.
        """
        top = self.input_projection(features[-1])
        batch, channels, height, width = top.shape
        valid = None
        if pixel_mask is not None:
            valid = F.interpolate(pixel_mask[:, None].float(), size=(height, width), mode="nearest")[:, 0] > 0.5
        position = self.position_embedding(top.shape, top.device, top.dtype, valid)
        tokens = top.flatten(2).transpose(1, 2)
        position = position.flatten(2).transpose(1, 2)
        key_mask = None if valid is None else valid.flatten(1)[:, None, None, :]
        for layer in self.encoder_layers:
            tokens = layer(tokens, position, key_mask)
        encoded = tokens.transpose(1, 2).reshape(batch, channels, height, width)
        outputs = [self.encoder_output(encoded)]
        for lateral, output, feature in zip(self.lateral_convs, self.output_convs, reversed(features[:-1])):
            current = lateral(feature)
            current = current + F.interpolate(outputs[-1], size=current.shape[-2:], mode="nearest")
            outputs.append(output(current))
        return PixelDecoderOutput(
            mask_features=self.mask_projection(outputs[-1]),
            multi_scale_features=tuple(outputs[: self.num_feature_levels]),
            encoder_last_hidden_state=encoded,
        )


__all__ = ["PixelDecoderOutput", "PostNormEncoderLayer", "ConvNormReLU", "TransformerEncoderPixelDecoder"]
