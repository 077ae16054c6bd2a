"""Multi-head self-attention, feed-forward block and a pre-norm transformer encoder layer.

Module names (`q_proj`, `k_proj`, `v_proj`, `out_proj`, `fc1`, `fc2`) are the ones PEFT LoRA configs usually
target, so every model built from these blocks shares one set of default LoRA target names.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from transformers.activations import ACT2FN
from transformers.modeling_layers import GradientCheckpointingLayer

from .drop_path import DropPath


class MultiHeadSelfAttention(nn.Module):
    """Multi-head scaled dot-product self-attention.

    Runs `torch.nn.functional.scaled_dot_product_attention` (fused kernels) unless the attention probabilities are
    requested, in which case the explicit softmax path computes and returns them.

    Args:
        hidden_size: width of the tokens.
        num_heads: number of heads; must divide `hidden_size`.
        qkv_bias: whether the query/key/value projections have a bias.
        scale: multiplier of the query-key logits; `None` means `head_dim ** -0.5`.
        attention_dropout: dropout on the attention probabilities (training only).
        output_dropout: dropout after the output projection (training only).
    """

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        qkv_bias: bool = True,
        scale: float | None = None,
        attention_dropout: float = 0.0,
        output_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if hidden_size % num_heads != 0:
            raise ValueError(f"`hidden_size` ({hidden_size}) must be divisible by `num_heads` ({num_heads}).")
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.scale = float(scale) if scale is not None else self.head_dim**-0.5
        self.attention_dropout = attention_dropout
        self.q_proj = nn.Linear(hidden_size, hidden_size, bias=qkv_bias)
        self.k_proj = nn.Linear(hidden_size, hidden_size, bias=qkv_bias)
        self.v_proj = nn.Linear(hidden_size, hidden_size, bias=qkv_bias)
        self.out_proj = nn.Linear(hidden_size, hidden_size)
        self.dropout = nn.Dropout(output_dropout)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """
        Args:
            hidden_states: `(batch, tokens, hidden_size)`.
            attention_mask: optional boolean mask (True = may attend) or additive float mask, broadcastable to
                `(batch, heads, tokens, tokens)`.
            output_attentions: also return the attention probabilities `(batch, heads, tokens, tokens)`.

        Returns:
            The attended tokens `(batch, tokens, hidden_size)` and the probabilities (or `None`).
        """
        batch_size, num_tokens, _ = hidden_states.shape
        shape = (batch_size, num_tokens, self.num_heads, self.head_dim)
        query = self.q_proj(hidden_states).view(shape).transpose(1, 2)
        key = self.k_proj(hidden_states).view(shape).transpose(1, 2)
        value = self.v_proj(hidden_states).view(shape).transpose(1, 2)
        dropout = self.attention_dropout if self.training else 0.0

        if output_attentions:
            logits = torch.matmul(query, key.transpose(-2, -1)) * self.scale
            if attention_mask is not None:
                if attention_mask.dtype == torch.bool:
                    logits = logits.masked_fill(~attention_mask, torch.finfo(logits.dtype).min)
                else:
                    logits = logits + attention_mask
            weights = logits.softmax(dim=-1, dtype=torch.float32).to(query.dtype)
            context = torch.matmul(F.dropout(weights, p=dropout, training=self.training), value)
        else:
            weights = None
            context = F.scaled_dot_product_attention(
                query, key, value, attn_mask=attention_mask, dropout_p=dropout, scale=self.scale
            )
        context = context.transpose(1, 2).reshape(batch_size, num_tokens, -1)
        return self.dropout(self.out_proj(context)), weights


class FeedForward(nn.Module):
    """Two-layer MLP `fc2(dropout(act(fc1(x))))` followed by dropout.

    Args:
        hidden_size: input and output width.
        intermediate_size: hidden width.
        hidden_act: activation name understood by `transformers.activations.ACT2FN`.
        dropout: dropout after the activation and after `fc2` (training only).
    """

    def __init__(self, hidden_size: int, intermediate_size: int, hidden_act: str = "gelu", dropout: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(hidden_size, intermediate_size)
        self.act = ACT2FN[hidden_act]
        self.fc2 = nn.Linear(intermediate_size, hidden_size)
        self.dropout = nn.Dropout(dropout)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states = self.dropout(self.act(self.fc1(hidden_states)))
        return self.dropout(self.fc2(hidden_states))


class TransformerEncoderLayer(GradientCheckpointingLayer):
    """Pre-norm encoder layer: `x + DropPath(MHA(LN(x)))`, then `x + DropPath(FFN(LN(x)))`.

    Args:
        hidden_size: token width.
        num_heads: attention heads.
        intermediate_size: feed-forward hidden width.
        qkv_bias: bias on the query/key/value projections.
        attention_scale: query-key logit multiplier (`None` = `head_dim ** -0.5`).
        hidden_act: feed-forward activation.
        dropout: dropout after the attention output projection and inside the feed-forward block.
        attention_dropout: dropout on the attention probabilities.
        drop_path: stochastic-depth rate of both residual branches.
        layer_norm_eps: epsilon of both LayerNorms.
    """

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        intermediate_size: int,
        qkv_bias: bool = True,
        attention_scale: float | None = None,
        hidden_act: str = "gelu",
        dropout: float = 0.0,
        attention_dropout: float = 0.0,
        drop_path: float = 0.0,
        layer_norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.layernorm_before = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.attention = MultiHeadSelfAttention(
            hidden_size, num_heads, qkv_bias, attention_scale, attention_dropout, output_dropout=dropout
        )
        self.layernorm_after = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.mlp = FeedForward(hidden_size, intermediate_size, hidden_act, dropout)
        self.drop_path = DropPath(drop_path)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Returns the updated tokens and, if `output_attentions`, the attention probabilities (else `None`)."""
        attended, weights = self.attention(self.layernorm_before(hidden_states), attention_mask, output_attentions)
        hidden_states = hidden_states + self.drop_path(attended)
        hidden_states = hidden_states + self.drop_path(self.mlp(self.layernorm_after(hidden_states)))
        return hidden_states, weights
