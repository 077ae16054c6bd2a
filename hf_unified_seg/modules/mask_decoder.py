"""Masked-attention transformer decoder with query groups (Mask2Former's decoder, generalised as in X-Decoder).

The decoder runs a sequence of *query groups* (learned object latents, the image latent, text tokens, later SEEM/FIND
prompt tokens) through `L` layers of cross-attention -> self-attention -> FFN (post-norm, spec §2.6). Which group may
look at which is decided by a self-attention mask built by :mod:`hf_unified_seg.modules.attention_mask`; which groups
predict masks and which read the image through masked cross-attention is a per-group flag. Predictions (mask logits
and normalised states) are made on the initial queries and after every layer: `L + 1` prediction sets.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .attention import FeedForward
from .position_encoding import SinePositionEmbedding


class MultiHeadAttention(nn.Module):
    """Multi-head attention with separate query/key/value inputs and explicit `q_proj/k_proj/v_proj/out_proj`
    linears (LoRA-targetable), computed by `torch.nn.functional.scaled_dot_product_attention`.

    Args:
        embed_dim: width of queries, keys and values.
        num_heads: number of heads; must divide `embed_dim`.
        dropout: dropout on the attention probabilities (training only).
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if embed_dim % num_heads != 0:
            raise ValueError(f"`embed_dim` ({embed_dim}) must be divisible by `num_heads` ({num_heads}).")
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.dropout = dropout
        self.q_proj = nn.Linear(embed_dim, embed_dim)
        self.k_proj = nn.Linear(embed_dim, embed_dim)
        self.v_proj = nn.Linear(embed_dim, embed_dim)
        self.out_proj = nn.Linear(embed_dim, embed_dim)

    def forward(
        self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """
        Args:
            query: `(B, Lq, D)`; key, value: `(B, Lk, D)`.
            attention_mask: boolean, True = may attend, broadcastable to `(B, heads, Lq, Lk)`. Rows with no allowed
                key are opened fully: softmax over an empty set is undefined (NaN), and "look everywhere" is the
                Mask2Former convention for a query whose mask is empty.

        Returns:
            `(B, Lq, D)`.
        """
        batch, len_q, _ = query.shape
        len_k = key.shape[1]
        q = self.q_proj(query).view(batch, len_q, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(key).view(batch, len_k, self.num_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(value).view(batch, len_k, self.num_heads, self.head_dim).transpose(1, 2)
        if attention_mask is not None:
            attention_mask = attention_mask | ~attention_mask.any(dim=-1, keepdim=True)
        context = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attention_mask, dropout_p=self.dropout if self.training else 0.0
        )
        return self.out_proj(context.transpose(1, 2).reshape(batch, len_q, -1))


class MaskedAttentionDecoderLayer(nn.Module):
    """One decoder layer: cross-attention -> self-attention -> FFN, each with a residual and LayerNorm (Eqs. 4.6-4.8).

    Post-norm by default (`LN(x + f(x))`, the reference); `pre_norm=True` gives `x + f(LN(x))`. Submodules are
    `cross_attn`, `self_attn` (each with `q_proj/k_proj/v_proj/out_proj`) and `ffn` (`fc1/fc2`), so LoRA targets
    such as `"cross_attn.q_proj"` or `"ffn.fc1"` hit the decoder only (backbones often have their own `fc1`).

    Args:
        hidden_dim: width `d`.
        num_heads: attention heads.
        dim_feedforward: FFN hidden width.
        dropout: dropout in attention and FFN.
        pre_norm: pre- instead of post-normalisation.
    """

    def __init__(
        self, hidden_dim: int, num_heads: int, dim_feedforward: int, dropout: float = 0.0, pre_norm: bool = False
    ) -> None:
        super().__init__()
        self.pre_norm = pre_norm
        self.cross_attn = MultiHeadAttention(hidden_dim, num_heads, dropout)
        self.cross_attn_layer_norm = nn.LayerNorm(hidden_dim)
        self.self_attn = MultiHeadAttention(hidden_dim, num_heads, dropout)
        self.self_attn_layer_norm = nn.LayerNorm(hidden_dim)
        self.ffn = FeedForward(hidden_dim, dim_feedforward, hidden_act="relu", dropout=dropout)
        self.final_layer_norm = nn.LayerNorm(hidden_dim)

    def _residual(self, x: torch.Tensor, norm: nn.LayerNorm, fn) -> torch.Tensor:
        if self.pre_norm:
            return x + fn(norm(x))
        return norm(x + fn(x))

    def forward(
        self,
        hidden_states: torch.Tensor,
        query_position: torch.Tensor,
        memory: torch.Tensor,
        memory_position: torch.Tensor,
        cross_attention_mask: torch.Tensor | None = None,
        self_attention_mask: torch.Tensor | None = None,
        cross_attention_keep: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """
        Args:
            hidden_states: `(B, L, d)` queries `X`.
            query_position: `(B, L, d)` positional embeddings `P_q` added to queries and self-attention keys.
            memory: `(B, HW, d)` image features of this layer's level `Z_lvl`.
            memory_position: `(B, HW, d)` their positional embeddings `P_z` (added to keys only).
            cross_attention_mask: boolean `(B, 1 or heads, L, HW)`, True = may attend.
            self_attention_mask: boolean `(B, 1 or heads, L, L)`, True = may attend.
            cross_attention_keep: optional boolean `(L,)`; False rows skip cross-attention entirely (their state is
                passed through unchanged), as the reference does for grounding text tokens.
        """

        def cross(x: torch.Tensor) -> torch.Tensor:
            return self.cross_attn(x + query_position, memory + memory_position, memory, cross_attention_mask)

        updated = self._residual(hidden_states, self.cross_attn_layer_norm, cross)
        if cross_attention_keep is not None:
            updated = torch.where(cross_attention_keep[None, :, None], updated, hidden_states)
        hidden_states = updated

        def self_(x: torch.Tensor) -> torch.Tensor:
            q = x + query_position
            return self.self_attn(q, q, x, self_attention_mask)

        hidden_states = self._residual(hidden_states, self.self_attn_layer_norm, self_)
        return self._residual(hidden_states, self.final_layer_norm, self.ffn)


class MLPHead(nn.Module):
    """`num_layers`-layer perceptron with ReLU between layers (Mask2Former's mask embedding `MLP_mask`).

    Args:
        input_dim, hidden_dim, output_dim: widths.
        num_layers: number of linear layers.
    """

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int = 3) -> None:
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


class MaskPredictor(nn.Module):
    """Per-query mask logits `E · F` and the masked-attention mask they induce for the next layer.

    Args:
        hidden_dim: decoder width `d`.
        mask_dim: mask-feature width `D_mask`.
        threshold: a pixel stays visible to a query when `sigmoid(mask logit) >= threshold` (0.5 in Mask2Former).
    """

    def __init__(self, hidden_dim: int, mask_dim: int, threshold: float = 0.5) -> None:
        super().__init__()
        self.mask_embed = MLPHead(hidden_dim, hidden_dim, mask_dim, 3)
        self.threshold = threshold

    def forward(self, normed_queries: torch.Tensor, mask_features: torch.Tensor) -> torch.Tensor:
        """`(B, Q, d)` normalised queries and `(B, D_mask, h, w)` features -> `(B, Q, h, w)` mask logits."""
        return torch.einsum("bqc,bchw->bqhw", self.mask_embed(normed_queries), mask_features)

    def attention_mask(self, mask_logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Boolean `(B, Q, size[0] * size[1])`, True = may attend: the mask logits resized (bilinear) to the level's
        resolution and thresholded. A query whose mask is empty at this level is given every pixel."""
        resized = F.interpolate(mask_logits.detach(), size=size, mode="bilinear", align_corners=False)
        # sigmoid(x) >= t  <=>  x >= logit(t); comparing logits avoids a sigmoid over the whole map
        threshold = torch.logit(torch.tensor(self.threshold)).item()
        allowed = resized.flatten(2) >= threshold
        return allowed | ~allowed.any(dim=-1, keepdim=True)


@dataclass
class QueryGroup:
    """A block of decoder queries that share a role.

    Args:
        name: identifier ("object", "image", "grounding", "text", "caption", ... ).
        content: `(B, n, d)` initial content `X`.
        position: `(B, n, d)` positional embedding `P_q` (added to queries and keys at every layer).
        predicts_masks: the group's mask logits are computed, and its cross-attention is masked by them.
        cross_attention: the group reads the image at all (False: it skips cross-attention).
    """

    name: str
    content: torch.Tensor
    position: torch.Tensor
    predicts_masks: bool = False
    cross_attention: bool = True

    @property
    def length(self) -> int:
        return self.content.shape[1]


@dataclass
class DecoderPredictions:
    """Decoder results for every prediction point (initial queries + after each layer).

    Args:
        hidden_states: per prediction point, `(B, L, d)` states after the decoder's final LayerNorm.
        mask_logits: per prediction point, `(B, Q_mask, h, w)` mask logits of the mask-predicting groups, concatenated
            in group order.
        last_hidden_state: `(B, L, d)` state after the last layer (before the final LayerNorm).
        group_slices: `name -> slice` into the `L` axis.
        mask_group_slices: `name -> slice` into the `Q_mask` axis.
    """

    hidden_states: list[torch.Tensor]
    mask_logits: list[torch.Tensor]
    last_hidden_state: torch.Tensor
    group_slices: dict[str, slice]
    mask_group_slices: dict[str, slice]


class MaskedAttentionTransformerDecoder(nn.Module):
    """Stack of :class:`MaskedAttentionDecoderLayer` over multi-scale image memory, with round-robin levels.

    Owns what every model built on it shares: input projections of the `num_feature_levels` memory levels, their
    learned level embeddings and sine encodings, the layers, the final LayerNorm and the mask predictor. The learned
    latent queries and the semantic heads belong to the model (X-Decoder, SEEM, ...) that builds the query groups.

    Args:
        in_channels: channels of the multi-scale memory (pixel-decoder width).
        hidden_dim: decoder width `d`.
        mask_dim: mask-feature width.
        num_layers: decoder layers `L`.
        num_heads: attention heads.
        dim_feedforward: FFN width.
        dropout: dropout.
        pre_norm: pre-norm layers.
        num_feature_levels: number of memory levels, visited round robin (level `(l - 1) mod n` at layer `l`).
        enforce_input_projection: 1x1 input projections even when `in_channels == hidden_dim`.
        mask_attention_threshold: sigmoid threshold of masked cross-attention.
    """

    def __init__(
        self,
        in_channels: int,
        hidden_dim: int,
        mask_dim: int,
        num_layers: int,
        num_heads: int,
        dim_feedforward: int,
        dropout: float = 0.0,
        pre_norm: bool = False,
        num_feature_levels: int = 3,
        enforce_input_projection: bool = False,
        mask_attention_threshold: float = 0.5,
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.num_feature_levels = num_feature_levels
        self.position_embedding = SinePositionEmbedding(hidden_dim // 2, normalize=True)
        self.level_embed = nn.Embedding(num_feature_levels, hidden_dim)
        self.input_projections = nn.ModuleList(
            nn.Conv2d(in_channels, hidden_dim, kernel_size=1)
            if in_channels != hidden_dim or enforce_input_projection
            else nn.Identity()
            for _ in range(num_feature_levels)
        )
        self.layers = nn.ModuleList(
            MaskedAttentionDecoderLayer(hidden_dim, num_heads, dim_feedforward, dropout, pre_norm)
            for _ in range(num_layers)
        )
        self.layernorm = nn.LayerNorm(hidden_dim)
        self.mask_predictor = MaskPredictor(hidden_dim, mask_dim, mask_attention_threshold)

    def _memory(self, features: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor], list[tuple]]:
        memories, positions, sizes = [], [], []
        for level in range(self.num_feature_levels):
            feature = features[level]
            sizes.append(tuple(feature.shape[-2:]))
            pos = self.position_embedding(feature.shape, feature.device, feature.dtype).flatten(2).transpose(1, 2)
            memory = self.input_projections[level](feature).flatten(2).transpose(1, 2)
            memories.append(memory + self.level_embed.weight[level][None, None, :])
            positions.append(pos)
        return memories, positions, sizes

    def _predict(
        self,
        state: torch.Tensor,
        mask_features: torch.Tensor,
        mask_rows: torch.Tensor,
        full_rows: torch.Tensor,
        next_size: tuple[int, int] | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        normed = self.layernorm(state)
        mask_logits = self.mask_predictor(normed[:, mask_rows], mask_features)
        if next_size is None:
            return normed, mask_logits, None
        batch, length = state.shape[:2]
        cross_mask = torch.ones(batch, length, next_size[0] * next_size[1], dtype=torch.bool, device=state.device)
        cross_mask[:, mask_rows] = self.mask_predictor.attention_mask(mask_logits, next_size)
        # groups without a mask target (image query, text tokens) always read the whole image
        cross_mask[:, full_rows] = True
        return normed, mask_logits, cross_mask.unsqueeze(1)

    def forward(
        self,
        multi_scale_features: list[torch.Tensor],
        mask_features: torch.Tensor,
        groups: list[QueryGroup],
        self_attention_mask: torch.Tensor | None = None,
        full_cross_attention: set[str] | None = None,
    ) -> DecoderPredictions:
        """
        Args:
            multi_scale_features: `num_feature_levels` maps `(B, C, h_l, w_l)`, coarsest first.
            mask_features: `(B, D_mask, h, w)` per-pixel embeddings `F`.
            groups: query groups, concatenated in this order.
            self_attention_mask: boolean `(B, L, L)` or `(L, L)`, True = may attend (None = everyone sees everyone).
            full_cross_attention: names of mask-predicting groups whose cross-attention is nevertheless unmasked
                (e.g. the image query, which has no mask target).

        Returns:
            :class:`DecoderPredictions` with `num_layers + 1` prediction sets.
        """
        if not groups:
            raise ValueError("`groups` must contain at least one query group.")
        full_cross_attention = full_cross_attention or set()
        content = torch.cat([g.content for g in groups], dim=1)
        position = torch.cat([g.position for g in groups], dim=1)
        device = content.device
        group_slices, mask_group_slices = {}, {}
        mask_rows, full_rows, keep = [], [], []
        start = mask_start = 0
        for group in groups:
            stop = start + group.length
            group_slices[group.name] = slice(start, stop)
            if group.predicts_masks:
                mask_group_slices[group.name] = slice(mask_start, mask_start + group.length)
                mask_start += group.length
                mask_rows.extend(range(start, stop))
            if not group.predicts_masks or group.name in full_cross_attention:
                full_rows.extend(range(start, stop))
            keep.extend([group.cross_attention] * group.length)
            start = stop
        mask_rows_t = torch.tensor(mask_rows, dtype=torch.long, device=device)
        full_rows_t = torch.tensor(full_rows, dtype=torch.long, device=device)
        keep_t = torch.tensor(keep, dtype=torch.bool, device=device)
        cross_keep = None if bool(keep_t.all()) else keep_t

        if self_attention_mask is not None:
            if self_attention_mask.dim() == 2:
                self_attention_mask = self_attention_mask[None]
            self_attention_mask = self_attention_mask.unsqueeze(1).to(device)

        memories, positions, sizes = self._memory(multi_scale_features)
        hidden_states, mask_logits = [], []
        normed, logits, cross_mask = self._predict(content, mask_features, mask_rows_t, full_rows_t, sizes[0])
        hidden_states.append(normed)
        mask_logits.append(logits)
        state = content
        for index, layer in enumerate(self.layers):
            level = index % self.num_feature_levels
            state = layer(
                state, position, memories[level], positions[level], cross_mask, self_attention_mask, cross_keep
            )
            is_last = index == len(self.layers) - 1
            next_size = None if is_last else sizes[(index + 1) % self.num_feature_levels]
            normed, logits, cross_mask = self._predict(state, mask_features, mask_rows_t, full_rows_t, next_size)
            hidden_states.append(normed)
            mask_logits.append(logits)
        return DecoderPredictions(hidden_states, mask_logits, state, group_slices, mask_group_slices)


__all__ = [
    "MultiHeadAttention",
    "MaskedAttentionDecoderLayer",
    "MLPHead",
    "MaskPredictor",
    "QueryGroup",
    "DecoderPredictions",
    "MaskedAttentionTransformerDecoder",
]
