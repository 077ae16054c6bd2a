"""X-Decoder model: one masked-attention decoder for pixel, image and language outputs (dissertation ch. 4)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.backbone_utils import load_backbone
from transformers.utils import ModelOutput

from ...modules.attention_mask import TASKS, build_group_attention_mask, task_query_groups
from ...modules.criterion import SetCriterion, captioning_loss, contrastive_loss, with_suffix
from ...modules.language import LanguageBridge, TextFeatures, resolve_text_model_path
from ...modules.mask_decoder import MaskedAttentionDecoderLayer, MaskedAttentionTransformerDecoder, MLPHead, QueryGroup
from ...modules.matcher import HungarianMatcher
from ...modules.pixel_decoder import PixelDecoderOutput, PostNormEncoderLayer, TransformerEncoderPixelDecoder
from .configuration_x_decoder import XDecoderConfig


@dataclass
class XDecoderDecoderOutput(ModelOutput):
    r"""
    Output of the X-Decoder transformer decoder.

    Args:
        last_hidden_state (`torch.FloatTensor` of shape `(B, m + n, d)`): decoder state after the last layer
            (before the final LayerNorm), latent queries first, then text queries.
        intermediate_hidden_states (`tuple(torch.FloatTensor)`): normalised decoder states at each of the L + 1
            prediction points.
        masks_queries_logits (`torch.FloatTensor` of shape `(B, m, H/4, W/4)`): mask logits of every latent query
            (the last one is the image query and has no mask target) from the last prediction.
        intermediate_masks_queries_logits (`tuple(torch.FloatTensor)`): mask logits at each prediction point.
        latent_semantic_embeds (`torch.FloatTensor` of shape `(B, m, d_p)`): `Ō W_cls` of the latent queries.
        text_semantic_embeds (`torch.FloatTensor` of shape `(B, n, d_T)`, *optional*): `Ō W_cap` of the text queries
            (captioning only).
        intermediate_latent_semantic_embeds (`tuple(torch.FloatTensor)`): `latent_semantic_embeds` per prediction.
        intermediate_text_semantic_embeds (`tuple(torch.FloatTensor)`, *optional*): per prediction (captioning).
        attentions (`tuple(torch.FloatTensor)`, *optional*): not computed (SDPA kernels); kept for API symmetry.
    """

    last_hidden_state: torch.FloatTensor | None = None
    intermediate_hidden_states: tuple[torch.FloatTensor, ...] | None = None
    masks_queries_logits: torch.FloatTensor | None = None
    intermediate_masks_queries_logits: tuple[torch.FloatTensor, ...] | None = None
    latent_semantic_embeds: torch.FloatTensor | None = None
    text_semantic_embeds: torch.FloatTensor | None = None
    intermediate_latent_semantic_embeds: tuple[torch.FloatTensor, ...] | None = None
    intermediate_text_semantic_embeds: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class XDecoderModelOutput(ModelOutput):
    r"""
    Output of [`XDecoderModel`].

    Args:
        encoder_last_hidden_state (`torch.FloatTensor` of shape `(B, C5, H/32, W/32)`): last backbone feature map.
        encoder_hidden_states (`tuple(torch.FloatTensor)`, *optional*): all backbone feature maps.
        pixel_decoder_last_hidden_state (`torch.FloatTensor` of shape `(B, D_mask, H/4, W/4)`): mask features `F`.
        pixel_decoder_hidden_states (`tuple(torch.FloatTensor)`, *optional*): multi-scale memory (strides 32/16/8).
        transformer_decoder_last_hidden_state (`torch.FloatTensor` of shape `(B, m + n, d)`): decoder state.
        transformer_decoder_intermediate_states (`tuple(torch.FloatTensor)`): normalised states per prediction.
        masks_queries_logits (`torch.FloatTensor` of shape `(B, m', H/4, W/4)`): mask logits of the latent
            queries (m' = m, or m + (m - 1) with the grounding copy of the object queries).
        intermediate_masks_queries_logits (`tuple(torch.FloatTensor)`): per prediction point.
        latent_semantic_embeds (`torch.FloatTensor` of shape `(B, m', d_p)`): semantic outputs of the latents.
        intermediate_latent_semantic_embeds (`tuple(torch.FloatTensor)`): per prediction point.
        text_semantic_embeds (`torch.FloatTensor` of shape `(B, n, d_T)`, *optional*): caption-token outputs.
        intermediate_text_semantic_embeds (`tuple(torch.FloatTensor)`, *optional*): per prediction point.
        image_embeds (`torch.FloatTensor` of shape `(B, d_p)`): image-level embedding (m-th latent, or its
            similarity pool), used for retrieval.
        text_embeds (`torch.FloatTensor`, *optional*): pooled, projected embeddings of the text inputs.
        attentions (`tuple(torch.FloatTensor)`, *optional*): not computed (SDPA kernels).
    """

    encoder_last_hidden_state: torch.FloatTensor | None = None
    encoder_hidden_states: tuple[torch.FloatTensor, ...] | None = None
    pixel_decoder_last_hidden_state: torch.FloatTensor | None = None
    pixel_decoder_hidden_states: tuple[torch.FloatTensor, ...] | None = None
    transformer_decoder_last_hidden_state: torch.FloatTensor | None = None
    transformer_decoder_intermediate_states: tuple[torch.FloatTensor, ...] | None = None
    masks_queries_logits: torch.FloatTensor | None = None
    intermediate_masks_queries_logits: tuple[torch.FloatTensor, ...] | None = None
    latent_semantic_embeds: torch.FloatTensor | None = None
    intermediate_latent_semantic_embeds: tuple[torch.FloatTensor, ...] | None = None
    text_semantic_embeds: torch.FloatTensor | None = None
    intermediate_text_semantic_embeds: tuple[torch.FloatTensor, ...] | None = None
    image_embeds: torch.FloatTensor | None = None
    text_embeds: torch.FloatTensor | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class XDecoderForUniversalSegmentationOutput(ModelOutput):
    r"""
    Output of [`XDecoderForUniversalSegmentation`]; field names follow Mask2Former so its post-processing applies.

    Args:
        loss (`torch.FloatTensor`, *optional*): weighted sum of the losses (when labels are given).
        loss_dict (`dict[str, torch.FloatTensor]`, *optional*): every weighted loss term by name.
        class_queries_logits (`torch.FloatTensor` of shape `(B, m - 1, C + 1)`): open-vocabulary class logits of the
            object queries against the class prompts; the last column is "no object" (the background prompt).
        masks_queries_logits (`torch.FloatTensor` of shape `(B, m - 1, H/4, W/4)`): mask logits of the object queries.
        auxiliary_logits (`list[dict]`, *optional*): `class_queries_logits`/`masks_queries_logits` of the earlier
            prediction points (deep supervision).
        referring_logits (`torch.FloatTensor` of shape `(B, m - 1, R)`, *optional*): scaled cosine between the
            (grounding) object queries and each referring phrase.
        referring_masks_logits (`torch.FloatTensor` of shape `(B, R, H/4, W/4)`, *optional*): mask logits of the best
            query per phrase.
        image_embeds (`torch.FloatTensor` of shape `(B, d_p)`): image-level embedding.
        encoder_last_hidden_state, pixel_decoder_last_hidden_state, transformer_decoder_last_hidden_state
            (`torch.FloatTensor`): as in [`XDecoderModelOutput`].
        attentions (`tuple(torch.FloatTensor)`, *optional*): not computed (SDPA kernels).
    """

    loss: torch.FloatTensor | None = None
    loss_dict: dict[str, torch.FloatTensor] | None = None
    class_queries_logits: torch.FloatTensor | None = None
    masks_queries_logits: torch.FloatTensor | None = None
    auxiliary_logits: list[dict[str, torch.FloatTensor]] | None = None
    referring_logits: torch.FloatTensor | None = None
    referring_masks_logits: torch.FloatTensor | None = None
    image_embeds: torch.FloatTensor | None = None
    encoder_last_hidden_state: torch.FloatTensor | None = None
    pixel_decoder_last_hidden_state: torch.FloatTensor | None = None
    transformer_decoder_last_hidden_state: torch.FloatTensor | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class XDecoderRetrievalOutput(ModelOutput):
    r"""
    Output of [`XDecoderForImageTextRetrieval`].

    Args:
        loss (`torch.FloatTensor`, *optional*): symmetric image-text contrastive loss (Eq. 4.9), when requested.
        logits_per_image (`torch.FloatTensor` of shape `(B_i, B_t)`): scaled cosine similarities.
        logits_per_text (`torch.FloatTensor` of shape `(B_t, B_i)`): the transpose.
        image_embeds (`torch.FloatTensor` of shape `(B_i, d_p)`): L2-normalised image embeddings.
        text_embeds (`torch.FloatTensor` of shape `(B_t, d_p)`): L2-normalised text embeddings.
    """

    loss: torch.FloatTensor | None = None
    logits_per_image: torch.FloatTensor | None = None
    logits_per_text: torch.FloatTensor | None = None
    image_embeds: torch.FloatTensor | None = None
    text_embeds: torch.FloatTensor | None = None


@dataclass
class XDecoderCaptioningOutput(ModelOutput):
    r"""
    Output of [`XDecoderForCaptioning`].

    Args:
        loss (`torch.FloatTensor`, *optional*): next-token cross-entropy (when `labels` are given).
        logits (`torch.FloatTensor` of shape `(B, n, V)`): caption logits against the text encoder's token
            embedding table; position j predicts token j + 1.
        sequences (`torch.LongTensor`, *optional*): generated token ids (filled by `generate`).
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    sequences: torch.LongTensor | None = None


@dataclass
class XDecoderForPreTrainingOutput(ModelOutput):
    r"""
    Output of [`XDecoderForPreTraining`].

    Args:
        loss (`torch.FloatTensor`): weighted sum over the enabled tasks.
        loss_dict (`dict[str, torch.FloatTensor]`): every weighted loss term by name (`loss_ce`, `loss_mask`,
            `loss_dice`, `loss_grounding_*`, `loss_retrieval`, `loss_captioning`, with `_{i}` suffixes for the
            auxiliary prediction points).
        class_queries_logits (`torch.FloatTensor`, *optional*): segmentation class logits (seg batch).
        masks_queries_logits (`torch.FloatTensor`, *optional*): segmentation mask logits (seg batch).
        logits_per_image (`torch.FloatTensor`, *optional*): retrieval logits (VL batch).
        caption_logits (`torch.FloatTensor`, *optional*): caption logits of the last prediction (VL batch), over
            `config.caption_vocab_ids` when that restriction is set.
    """

    loss: torch.FloatTensor | None = None
    loss_dict: dict[str, torch.FloatTensor] | None = None
    class_queries_logits: torch.FloatTensor | None = None
    masks_queries_logits: torch.FloatTensor | None = None
    logits_per_image: torch.FloatTensor | None = None
    caption_logits: torch.FloatTensor | None = None


# ----------------------------------------------------------------------------------------------------------------------
# models
# ----------------------------------------------------------------------------------------------------------------------


def _is_meta(module: nn.Module) -> bool:
    return any(p.is_meta for p in module.parameters())


def _check_text(name: str, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, max_len: int, dims=(2,)):
    if not isinstance(input_ids, torch.Tensor) or input_ids.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"`{name}` must be an integer torch.Tensor of token ids, got {type(input_ids).__name__}.")
    if input_ids.dim() not in dims:
        raise ValueError(f"`{name}` must have {' or '.join(map(str, dims))} dimensions, got {tuple(input_ids.shape)}.")
    if input_ids.shape[-1] > max_len:
        raise ValueError(
            f"`{name}` has {input_ids.shape[-1]} tokens per text, more than `config.max_text_len` = {max_len}."
        )
    if attention_mask is not None and attention_mask.shape != input_ids.shape:
        raise ValueError(
            f"the attention mask of `{name}` has shape {tuple(attention_mask.shape)}, expected {tuple(input_ids.shape)}."
        )


class XDecoderPreTrainedModel(PreTrainedModel):
    """Weight initialisation and loading for every X-Decoder model (`base_model_prefix = "model"`)."""

    config_class = XDecoderConfig
    base_model_prefix = "model"
    main_input_name = "pixel_values"
    input_modalities = ("image", "text")
    supports_gradient_checkpointing = False
    # the default class vocabulary lives only on the segmentation heads; other heads ignore it when loading
    _keys_to_ignore_on_load_unexpected = [r".*text_model\.embeddings\.position_ids", r"default_class_.*"]
    _keys_to_ignore_on_load_missing = [r"default_class_.*"]

    @classmethod
    def from_pretrained(cls, *args: Any, **kwargs: Any) -> XDecoderPreTrainedModel:
        model = super().from_pretrained(*args, **kwargs)
        # loading re-creates parameters with requires_grad=True, which would silently unfreeze the language model
        for module in model.modules():
            if isinstance(module, LanguageBridge):
                module.refreeze()
        return model

    def _init_weights(self, module: nn.Module) -> None:
        """Mask2Former / reference conventions: Xavier-uniform for the weight matrices of the attention layers and
        MLP heads, trunc-normal(0.02) for the other linears (`W_cls`, text projections, `W_cap`), Xavier for convs,
        N(0, 1) for learned queries and level/position embeddings (PyTorch's `nn.Embedding` default, as in the
        reference), zero biases."""
        std = self.config.init_std
        if isinstance(module, nn.Linear):
            if getattr(module, "_xavier_init", False):
                init.xavier_uniform_(module.weight)
            else:
                init.trunc_normal_(module.weight, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Conv2d):
            init.xavier_uniform_(module.weight)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, (nn.LayerNorm, nn.GroupNorm)):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, std=1.0)
        if isinstance(module, XDecoderModel):
            init.constant_(module.logit_scale, self.config.logit_scale_init_value)
            # Non-persistent buffers are not in the checkpoint: `from_pretrained` allocates them empty, so rebuild
            # the caption vocabulary restriction from the config here.
            if module.caption_vocab_ids is not None:
                init.copy_(module.caption_vocab_ids, torch.tensor(self.config.caption_vocab_ids, dtype=torch.long))


@dataclass
class _VisualFeatures:
    backbone: tuple[torch.Tensor, ...]
    pixel: PixelDecoderOutput


class XDecoderModel(XDecoderPreTrainedModel):
    """X-Decoder body: backbone (`AutoBackbone`) -> transformer-encoder FPN -> masked-attention decoder over query
    groups, with the language bridge that turns text into class embeddings and text queries (spec §2).

    Latent queries: `num_object_queries` object latents + 1 image latent (learned content + position embeddings).
    Semantic outputs: `class_embed` (`W_cls`, d -> d_p) for latents, `caption_embed` (`W_cap`, d -> d_T) for caption
    tokens. A forward pass may combine tasks (e.g. `("generic", "referring", "captioning")`): the self-attention
    mask keeps their text groups apart, so the outputs equal those of separate passes.
    """

    def __init__(self, config: XDecoderConfig) -> None:
        super().__init__(config)
        self.backbone = load_backbone(config)
        channels = list(self.backbone.channels)
        self.pixel_decoder = TransformerEncoderPixelDecoder(
            channels,
            config.pixel_decoder_dim,
            config.mask_dim,
            config.pixel_decoder_layers,
            config.pixel_decoder_heads,
            config.pixel_decoder_ffn_dim,
            config.dropout,
            config.norm_num_groups,
            config.num_feature_levels,
        )
        self.language = LanguageBridge(
            config.text_config,
            config.projection_dim,
            config.hidden_dim,
            causal=config.text_encoder_causal,
            pooling=config.text_pooling,
            hidden_layer=config.text_hidden_layer,
            freeze=config.freeze_text_encoder,
        )
        self.decoder = MaskedAttentionTransformerDecoder(
            config.pixel_decoder_dim,
            config.hidden_dim,
            config.mask_dim,
            config.decoder_layers,
            config.num_attention_heads,
            config.dim_feedforward,
            config.dropout,
            config.pre_norm,
            config.num_feature_levels,
            config.enforce_input_projection,
            config.mask_attention_threshold,
        )
        self.query_features = nn.Embedding(config.num_queries, config.hidden_dim)
        self.query_position = nn.Embedding(config.num_queries, config.hidden_dim)
        self.class_embed = nn.Linear(config.hidden_dim, config.projection_dim, bias=False)
        self.caption_embed = nn.Linear(config.hidden_dim, self.language.hidden_size, bias=False)
        self.caption_position_embedding = nn.Embedding(config.max_text_len, config.hidden_dim)
        self.logit_scale = nn.Parameter(torch.tensor(float(config.logit_scale_init_value)))
        self.backbone_projection = (
            nn.Linear(channels[-1], config.projection_dim) if config.retrieval_ensemble else None
        )
        if config.caption_vocab_ids is not None:
            self.register_buffer(
                "caption_vocab_ids", torch.tensor(config.caption_vocab_ids, dtype=torch.long), persistent=False
            )
        else:
            self.caption_vocab_ids = None
        # smart_apply initialises children before parents, so the layers whose linears follow Mask2Former's Xavier
        # init are tagged here for `_init_weights`
        for module in self.modules():
            if isinstance(module, (MaskedAttentionDecoderLayer, PostNormEncoderLayer, MLPHead)):
                for sub in module.modules():
                    if isinstance(sub, nn.Linear):
                        sub._xavier_init = True
        self.post_init()
        if config.text_model_name_or_path and not _is_meta(self.language):
            self.language.load_pretrained_text_model(config.text_model_name_or_path)

    # -- pieces -------------------------------------------------------------------------------------------------------
    def scale(self) -> torch.Tensor:
        """`exp(tau)` clamped at `logit_scale_max`."""
        return self.logit_scale.exp().clamp(max=self.config.logit_scale_max)

    def encode_image(self, pixel_values: torch.Tensor, pixel_mask: torch.Tensor | None = None) -> _VisualFeatures:
        """Backbone + pixel decoder (cached by `generate`)."""
        if not isinstance(pixel_values, torch.Tensor) or pixel_values.dim() != 4:
            raise ValueError(
                f"`pixel_values` must be a float tensor (batch, channels, height, width), got "
                f"{getattr(pixel_values, 'shape', type(pixel_values).__name__)}."
            )
        height, width = pixel_values.shape[-2:]
        if height % 32 or width % 32:
            raise ValueError(f"`pixel_values` height and width must be multiples of 32, got {height}x{width}.")
        if pixel_mask is not None and pixel_mask.shape != (pixel_values.shape[0], height, width):
            raise ValueError(
                f"`pixel_mask` must have shape {(pixel_values.shape[0], height, width)}, got {tuple(pixel_mask.shape)}."
            )
        features = tuple(self.backbone(pixel_values).feature_maps)
        return _VisualFeatures(features, self.pixel_decoder(list(features), pixel_mask))

    def encode_text(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, use_cache: bool = True
    ) -> TextFeatures:
        """Text-model features (cached for repeated strings while frozen)."""
        return self.language.encode(input_ids, attention_mask, use_cache=use_cache)

    def text_embeddings(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """`(B, d_p)` projected sentence embeddings (last-valid-token by default), not normalised."""
        return self.language.sentence_embeddings(self.encode_text(input_ids, attention_mask))

    def _latent_groups(self, batch: int, tasks: tuple[str, ...]) -> list[QueryGroup]:
        m1 = self.config.num_object_queries
        content = self.query_features.weight[None].expand(batch, -1, -1)
        position = self.query_position.weight[None].expand(batch, -1, -1)
        groups = [
            QueryGroup("object", content[:, :m1], position[:, :m1], predicts_masks=True),
            QueryGroup("image", content[:, m1:], position[:, m1:], predicts_masks=True),
        ]
        if "referring" in tasks and self.config.grounding_separate_queries:
            groups.append(QueryGroup("grounding", content[:, :m1], position[:, :m1], predicts_masks=True))
        return groups

    def _referring_group(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, batch: int):
        # (B, R, T) phrases -> one sequence of R*T tokens per image (padding hidden by the self-attention mask)
        if input_ids.dim() == 2:
            input_ids, attention_mask = input_ids[:, None], attention_mask[:, None]
        if input_ids.shape[0] != batch:
            raise ValueError(f"`referring_input_ids` has batch size {input_ids.shape[0]}, expected {batch}.")
        num_phrases, length = input_ids.shape[1:]
        feats = self.encode_text(input_ids.reshape(-1, length), attention_mask.reshape(-1, length))
        tokens = self.language.token_queries(feats).reshape(batch, num_phrases * length, -1)
        pooled = self.language.sentence_embeddings(feats).reshape(batch, num_phrases, -1)
        group = QueryGroup(
            "text",
            tokens,
            torch.zeros_like(tokens),
            predicts_masks=False,
            cross_attention=self.config.text_queries_cross_attend_in_referring,
        )
        return group, attention_mask.reshape(batch, -1), pooled

    def _caption_group(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, use_cache: bool):
        feats = self.encode_text(input_ids, attention_mask, use_cache=use_cache)
        tokens = self.language.token_queries(feats)
        length = tokens.shape[1]
        position = tokens + self.caption_position_embedding.weight[:length][None]
        # the reference feeds detached token features as content (their gradient reaches W_T via the position)
        return QueryGroup("caption", tokens.detach(), position), attention_mask, feats

    # -- forward ------------------------------------------------------------------------------------------------------
    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        pixel_mask: torch.Tensor | None = None,
        task: str | tuple[str, ...] = "generic",
        text_input_ids: torch.Tensor | None = None,
        text_attention_mask: torch.Tensor | None = None,
        caption_input_ids: torch.Tensor | None = None,
        caption_attention_mask: torch.Tensor | None = None,
        visual_features: _VisualFeatures | None = None,
        use_text_cache: bool = True,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> XDecoderModelOutput | tuple:
        r"""
        Args:
            pixel_values (`torch.FloatTensor` of shape `(B, 3, H, W)`): images, H and W multiples of 32.
            pixel_mask (`torch.LongTensor` of shape `(B, H, W)`, *optional*): 1 = real pixel, 0 = padding.
            task (`str` or `tuple[str]`): `"generic"`, `"retrieval"`, `"referring"`, `"captioning"`, `"vqa"`, or
                several of them run in one pass.
            text_input_ids (`torch.LongTensor`, *optional*): referring phrases `(B, T)` / `(B, R, T)` for
                `"referring"`; caption tokens `(B, T)` for `"captioning"`/`"vqa"` when `caption_input_ids` is None.
            text_attention_mask (`torch.LongTensor`, *optional*): mask of `text_input_ids`.
            caption_input_ids, caption_attention_mask (`torch.LongTensor`, *optional*): caption tokens when tasks
                are combined (referring phrases then go in `text_input_ids`).
            visual_features (*optional*): precomputed `encode_image` output (skips backbone and pixel decoder).
            use_text_cache (`bool`): allow the frozen-text feature cache.
            output_hidden_states (`bool`, *optional*): return all backbone maps and multi-scale memory.
            return_dict (`bool`, *optional*): return a [`XDecoderModelOutput`] (default) or a tuple.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        tasks = (task,) if isinstance(task, str) else tuple(task)
        for name in tasks:
            if name not in TASKS:
                raise ValueError(f"`task` must be one of {TASKS} (or a tuple of them), got {name!r}.")
        if visual_features is None:
            if pixel_values is None:
                raise ValueError("`pixel_values` is required.")
            visual_features = self.encode_image(pixel_values, pixel_mask)
        mask_features = visual_features.pixel.mask_features
        batch = mask_features.shape[0]
        cfg = self.config

        groups = self._latent_groups(batch, tasks)
        lengths: dict[str, int] = {}
        pads: dict[str, torch.Tensor] = {}
        text_embeds = None
        wants_caption = "captioning" in tasks or "vqa" in tasks
        if "referring" in tasks:
            if text_input_ids is None:
                raise ValueError("task 'referring' needs `text_input_ids` (the referring phrases).")
            mask = text_attention_mask if text_attention_mask is not None else torch.ones_like(text_input_ids)
            _check_text("text_input_ids", text_input_ids, mask, cfg.max_text_len, dims=(2, 3))
            group, pad, text_embeds = self._referring_group(text_input_ids, mask, batch)
            groups.append(group)
            lengths["text"], pads["text"] = group.length, pad
        if wants_caption:
            ids, mask = caption_input_ids, caption_attention_mask
            if ids is None and "referring" not in tasks:
                ids, mask = text_input_ids, text_attention_mask
            if ids is None:
                raise ValueError("tasks 'captioning'/'vqa' need caption token ids (`caption_input_ids`).")
            mask = mask if mask is not None else torch.ones_like(ids)
            _check_text("caption_input_ids", ids, mask, cfg.max_text_len)
            if ids.shape[0] != batch:
                raise ValueError(f"caption token ids have batch size {ids.shape[0]}, expected {batch}.")
            group, pad, _ = self._caption_group(ids, mask, use_text_cache)
            groups.append(group)
            lengths["caption"], pads["caption"] = group.length, pad

        specs, edges = task_query_groups(tasks, cfg.num_object_queries, lengths, cfg)
        if [s.name for s in specs] != [g.name for g in groups]:
            raise RuntimeError("query groups and attention-mask layout disagree")  # guards future edits
        self_mask = build_group_attention_mask(specs, edges, pads, batch_size=batch, device=mask_features.device)
        predictions = self.decoder(
            list(visual_features.pixel.multi_scale_features),
            mask_features,
            groups,
            self_mask,
            full_cross_attention={"image"},
        )

        last_latent = "grounding" if "grounding" in predictions.group_slices else "image"
        latent_slice = slice(0, predictions.group_slices[last_latent].stop)
        latent_semantic = [self.class_embed(h[:, latent_slice]) for h in predictions.hidden_states]
        text_semantic = None
        if wants_caption:
            caption_slice = predictions.group_slices["caption"]
            text_semantic = [self.caption_embed(h[:, caption_slice]) for h in predictions.hidden_states]
        image_embeds = self._image_embeds(predictions.hidden_states[-1], latent_semantic[-1])

        output = XDecoderModelOutput(
            encoder_last_hidden_state=visual_features.backbone[-1],
            encoder_hidden_states=visual_features.backbone if output_hidden_states else None,
            pixel_decoder_last_hidden_state=mask_features,
            pixel_decoder_hidden_states=visual_features.pixel.multi_scale_features if output_hidden_states else None,
            transformer_decoder_last_hidden_state=predictions.last_hidden_state,
            transformer_decoder_intermediate_states=tuple(predictions.hidden_states),
            masks_queries_logits=predictions.mask_logits[-1],
            intermediate_masks_queries_logits=tuple(predictions.mask_logits),
            latent_semantic_embeds=latent_semantic[-1],
            intermediate_latent_semantic_embeds=tuple(latent_semantic),
            text_semantic_embeds=text_semantic[-1] if text_semantic else None,
            intermediate_text_semantic_embeds=tuple(text_semantic) if text_semantic else None,
            image_embeds=image_embeds,
            text_embeds=text_embeds,
        )
        return output if return_dict else output.to_tuple()

    def _image_embeds(self, normed: torch.Tensor, latent_semantic: torch.Tensor) -> torch.Tensor:
        m1 = self.config.num_object_queries
        if self.config.image_query_pooling == "direct":
            return latent_semantic[:, m1]
        # reference: similarity-weighted pool of the object outputs, weights from the image query's output
        image = F.normalize(normed[:, m1 : m1 + 1], dim=-1)
        objects = F.normalize(normed[:, :m1], dim=-1)
        weights = (image @ objects.transpose(1, 2)).softmax(dim=-1)  # (B, 1, m-1)
        return (weights @ latent_semantic[:, :m1])[:, 0]

    def caption_logits(self, text_semantic: torch.Tensor) -> torch.Tensor:
        """`S_cap = G E_tok^T`: `(B, n, d_T)` -> `(B, n, V)` (or `(B, n, len(caption_vocab_ids))`)."""
        table = self.language.token_embedding_table
        if self.caption_vocab_ids is not None:
            table = table[self.caption_vocab_ids]
        return text_semantic @ table.T

    def backbone_image_embeds(self, visual_features: _VisualFeatures) -> torch.Tensor:
        """Retrieval-ensemble branch: average-pooled last backbone map -> linear (spec §3, reference extra)."""
        if self.backbone_projection is None:
            raise ValueError("`config.retrieval_ensemble` is False: no backbone retrieval branch.")
        return self.backbone_projection(visual_features.backbone[-1].mean(dim=(2, 3)))


# ----------------------------------------------------------------------------------------------------------------------
# heads
# ----------------------------------------------------------------------------------------------------------------------

# Dotted suffixes so PEFT wraps the transformer decoder's layers only (FocalNet and the pixel decoder also have
# `fc1`/`q_proj`-style names); the text model's BERT attention is `query/key/value` (opt in).
LORA_TARGETS = [
    f"{block}.{proj}" for block in ("cross_attn", "self_attn") for proj in ("q_proj", "k_proj", "v_proj", "out_proj")
] + ["ffn.fc1", "ffn.fc2"]
LORA_TEXT_TARGETS = ["query", "key", "value"]


def _build_criterion(config: XDecoderConfig) -> SetCriterion:
    class_cost = config.class_weight if config.matching_class_cost is None else config.matching_class_cost
    matcher = HungarianMatcher(class_cost, config.mask_weight, config.dice_weight, config.train_num_points)
    return SetCriterion(
        matcher,
        class_weight=config.class_weight,
        mask_weight=config.mask_weight,
        dice_weight=config.dice_weight,
        no_object_weight=config.no_object_weight,
        grounding_class_weight=config.grounding_class_weight * config.referring_grounding_scale,
        grounding_mask_weight=config.grounding_mask_weight * config.referring_grounding_scale,
        grounding_dice_weight=config.grounding_dice_weight * config.referring_grounding_scale,
        num_points=config.train_num_points,
        oversample_ratio=config.oversample_ratio,
        importance_sample_ratio=config.importance_sample_ratio,
    )


def _top_indices(num_predictions: int, top: int, auxiliary: bool) -> list[int]:
    """Prediction sets supervised: all (deep supervision) or the last `top` ones; the last is always included."""
    if not auxiliary:
        return [num_predictions - 1]
    return list(range(max(0, num_predictions - top), num_predictions))


class _SegmentationMixin:
    """Class-embedding resolution, label validation and segmentation/referring losses shared by the heads."""

    model: XDecoderModel
    config: XDecoderConfig

    def _init_class_vocabulary(self) -> None:
        num = len(self.config.id2label or {}) + 1
        length = self.config.max_text_len
        self.register_buffer("default_class_input_ids", torch.zeros(num, length, dtype=torch.long), persistent=True)
        self.register_buffer(
            "default_class_attention_mask", torch.zeros(num, length, dtype=torch.long), persistent=True
        )

    def set_class_vocabulary(self, class_input_ids: torch.Tensor, class_attention_mask: torch.Tensor) -> None:
        """Store tokenised prompts of the default vocabulary (`id2label` order, background last); saved with the
        model, so pipelines need no text. Rows must equal `len(config.id2label) + 1`."""
        _check_text("class_input_ids", class_input_ids, class_attention_mask, self.config.max_text_len)
        expected = self.default_class_input_ids.shape[0]
        if class_input_ids.shape[0] != expected:
            raise ValueError(
                f"`class_input_ids` must have len(config.id2label) + 1 = {expected} rows, got {class_input_ids.shape[0]}."
            )
        length = class_input_ids.shape[1]
        self.default_class_input_ids.zero_()
        self.default_class_attention_mask.zero_()
        self.default_class_input_ids[:, :length] = class_input_ids.to(self.default_class_input_ids.device)
        self.default_class_attention_mask[:, :length] = class_attention_mask.to(self.default_class_input_ids.device)

    def _default_class_inputs(self) -> tuple[torch.Tensor, torch.Tensor]:
        if int(self.default_class_attention_mask.sum()) == 0:
            if not self.config.id2label:
                raise ValueError("no class prompts given and `config.id2label` is empty: pass `class_input_ids`.")
            if self.config.tokenizer_name_or_path is None:
                raise ValueError("no class prompts given and `config.tokenizer_name_or_path` is None.")
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(resolve_text_model_path(self.config.tokenizer_name_or_path))
            names = [self.config.id2label[i] for i in sorted(self.config.id2label)]
            prompts = [self.config.class_prompt_template.format(n) for n in names] + [self.config.background_prompt]
            encoded = tokenizer(
                prompts,
                padding="max_length",
                truncation=True,
                max_length=self.config.max_text_len,
                return_tensors="pt",
            )
            self.set_class_vocabulary(encoded["input_ids"], encoded["attention_mask"])
        width = int(self.default_class_attention_mask.sum(-1).max())
        return self.default_class_input_ids[:, :width], self.default_class_attention_mask[:, :width]

    def class_embeddings(
        self,
        class_input_ids: torch.Tensor | None = None,
        class_attention_mask: torch.Tensor | None = None,
        class_embeddings: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """`(C + 1, d_p)` embeddings of the class prompts (background last): given, encoded, or the defaults."""
        if class_embeddings is not None:
            if class_embeddings.dim() != 2 or class_embeddings.shape[-1] != self.config.projection_dim:
                raise ValueError(
                    f"`class_embeddings` must have shape (C + 1, {self.config.projection_dim}), got "
                    f"{tuple(class_embeddings.shape)}."
                )
            return class_embeddings
        if class_input_ids is None:
            class_input_ids, class_attention_mask = self._default_class_inputs()
        if class_attention_mask is None:
            class_attention_mask = torch.ones_like(class_input_ids)
        _check_text("class_input_ids", class_input_ids, class_attention_mask, self.config.max_text_len)
        if class_input_ids.shape[0] < 2:
            raise ValueError("`class_input_ids` needs at least 2 rows: one class prompt and the background prompt.")
        if bool((class_attention_mask.sum(-1) == 0).any()):
            raise ValueError("`class_input_ids` contains an empty class prompt (all-zero attention mask row).")
        return self.model.text_embeddings(class_input_ids, class_attention_mask)

    def class_logits(self, latent_semantic: torch.Tensor, class_embeds: torch.Tensor) -> torch.Tensor:
        """`exp(tau) <s_i, t_c>` on L2-normalised vectors: `(B, Q, d_p) x (C, d_p) -> (B, Q, C)`."""
        latent = F.normalize(latent_semantic, dim=-1)
        classes = F.normalize(class_embeds, dim=-1)
        return self.model.scale() * latent @ classes.T

    def _check_referring(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        _check_text("referring_input_ids", input_ids, attention_mask, self.config.max_text_len, dims=(2, 3))
        ids = input_ids if input_ids.dim() == 3 else input_ids[:, None]
        mask = attention_mask if attention_mask.dim() == 3 else attention_mask[:, None]
        special = (
            (ids == self.config.caption_bos_token_id)
            | (ids == self.config.caption_eos_token_id)
            | (ids == self.config.caption_pad_token_id)
        )
        content = ((~special) & (mask > 0)).sum(-1)
        if bool((content == 0).any()):
            raise ValueError("`referring_input_ids` contains an empty phrase (no token besides special tokens).")
        if ids.shape[1] > self.config.num_object_queries:
            raise ValueError(
                f"too many referring phrases per image: {ids.shape[1]} > `config.num_object_queries` = "
                f"{self.config.num_object_queries} (each phrase needs its own query)."
            )
        return attention_mask

    def _check_labels(self, pixel_values, mask_labels, class_labels, num_classes, name="mask_labels"):
        batch = pixel_values.shape[0]
        size = tuple(pixel_values.shape[-2:])
        if not isinstance(mask_labels, (list, tuple)):
            raise TypeError(f"`{name}` must be a list of (N_i, H, W) tensors, got {type(mask_labels).__name__}.")
        if len(mask_labels) != batch:
            raise ValueError(f"`{name}` has {len(mask_labels)} entries but the batch has {batch} images.")
        for i, masks in enumerate(mask_labels):
            if masks.dim() != 3 or tuple(masks.shape[-2:]) != size:
                raise ValueError(
                    f"`{name}[{i}]` must have shape (N, {size[0]}, {size[1]}) (the input size), got {tuple(masks.shape)}."
                )
        if class_labels is None:
            return
        if not isinstance(class_labels, (list, tuple)):
            raise TypeError(f"`class_labels` must be a list of (N_i,) tensors, got {type(class_labels).__name__}.")
        if len(class_labels) != batch:
            raise ValueError(f"`class_labels` has {len(class_labels)} entries but the batch has {batch} images.")
        for i, (masks, labels) in enumerate(zip(mask_labels, class_labels)):
            if labels.dim() != 1 or labels.shape[0] != masks.shape[0]:
                raise ValueError(
                    f"`class_labels[{i}]` must have shape ({masks.shape[0]},) to match `{name}[{i}]`, "
                    f"got {tuple(labels.shape)}."
                )
            if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
                raise ValueError(
                    f"`class_labels[{i}]` must be in 0..{num_classes - 1} (the class prompts without background), "
                    f"got values in {int(labels.min())}..{int(labels.max())}."
                )

    def _segmentation_outputs(self, outputs: XDecoderModelOutput, class_embeds: torch.Tensor):
        m1 = self.config.num_object_queries
        per_set = []
        for semantic, masks in zip(
            outputs.intermediate_latent_semantic_embeds, outputs.intermediate_masks_queries_logits
        ):
            per_set.append(
                {
                    "class_queries_logits": self.class_logits(semantic[:, :m1], class_embeds),
                    "masks_queries_logits": masks[:, :m1],
                }
            )
        return per_set

    def _referring_outputs(self, outputs: XDecoderModelOutput):
        m1 = self.config.num_object_queries
        start = m1 + 1 if self.config.grounding_separate_queries else 0
        phrases = F.normalize(outputs.text_embeds, dim=-1)  # (B, R, d_p)
        per_set = []
        for semantic, masks in zip(
            outputs.intermediate_latent_semantic_embeds, outputs.intermediate_masks_queries_logits
        ):
            queries = F.normalize(semantic[:, start : start + m1], dim=-1)
            per_set.append(
                {
                    "referring_logits": self.model.scale() * queries @ phrases.transpose(1, 2),
                    "masks_queries_logits": masks[:, start : start + m1],
                }
            )
        return per_set

    def _segmentation_loss(self, criterion, per_set, mask_labels, class_labels) -> dict[str, torch.Tensor]:
        losses: dict[str, torch.Tensor] = {}
        last = len(per_set) - 1
        for i in _top_indices(len(per_set), len(per_set), self.config.use_auxiliary_loss):
            terms = criterion.segmentation_losses(
                per_set[i]["class_queries_logits"], per_set[i]["masks_queries_logits"], mask_labels, class_labels
            )
            losses.update(terms if i == last else with_suffix(terms, f"_{i}"))
        return losses

    def _referring_loss(self, criterion, per_set, referring_mask_labels) -> dict[str, torch.Tensor]:
        losses: dict[str, torch.Tensor] = {}
        last = len(per_set) - 1
        for i in _top_indices(len(per_set), self.config.vl_loss_top_layers, self.config.use_auxiliary_loss):
            terms = criterion.grounding_losses(
                per_set[i]["referring_logits"], per_set[i]["masks_queries_logits"], referring_mask_labels
            )
            losses.update(terms if i == last else with_suffix(terms, f"_{i}"))
        return losses


def _referring_masks(referring_logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Mask logits of the best query per phrase: `(B, Q, R)`, `(B, Q, h, w)` -> `(B, R, h, w)`."""
    best = referring_logits.argmax(dim=1)  # (B, R)
    return torch.gather(masks, 1, best[..., None, None].expand(-1, -1, *masks.shape[-2:]))


class XDecoderForUniversalSegmentation(_SegmentationMixin, XDecoderPreTrainedModel):
    """X-Decoder for open-vocabulary generic (semantic / instance / panoptic) and referring segmentation.

    Classification is mask-text matching: the `m - 1` object queries' semantic outputs are compared with the
    embeddings of the class prompts (`class_input_ids`, background last). Without class inputs the cached prompts of
    `config.id2label` are used. Outputs follow Mask2Former (`class_queries_logits (B, m-1, C+1)`,
    `masks_queries_logits (B, m-1, H/4, W/4)`).
    """

    default_lora_target_modules = LORA_TARGETS
    default_lora_text_target_modules = LORA_TEXT_TARGETS
    default_lora_modules_to_save = ["class_embed", "mask_embed"]

    def __init__(self, config: XDecoderConfig) -> None:
        super().__init__(config)
        self.model = XDecoderModel(config)
        self.criterion = _build_criterion(config)
        self._init_class_vocabulary()
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor,
        pixel_mask: torch.Tensor | None = None,
        class_input_ids: torch.Tensor | None = None,
        class_attention_mask: torch.Tensor | None = None,
        class_embeddings: torch.Tensor | None = None,
        referring_input_ids: torch.Tensor | None = None,
        referring_attention_mask: torch.Tensor | None = None,
        mask_labels: list[torch.Tensor] | None = None,
        class_labels: list[torch.Tensor] | None = None,
        referring_mask_labels: list[torch.Tensor] | None = None,
        task: str = "generic",
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> XDecoderForUniversalSegmentationOutput | tuple:
        r"""
        Args:
            pixel_values (`torch.FloatTensor` of shape `(B, 3, H, W)`): images (H, W multiples of 32).
            pixel_mask (`torch.LongTensor` of shape `(B, H, W)`, *optional*): 1 = real pixel.
            class_input_ids, class_attention_mask (`torch.LongTensor` of shape `(C + 1, T)`, *optional*): class
                prompts shared by the batch, background last.
            class_embeddings (`torch.FloatTensor` of shape `(C + 1, d_p)`, *optional*): precomputed instead.
            referring_input_ids, referring_attention_mask (`torch.LongTensor` of shape `(B, T)` or `(B, R, T)`,
                *optional*): referring phrases (right-padded); giving them switches on the referring outputs.
            mask_labels (`list[torch.FloatTensor]`, *optional*): per image `(N_i, H, W)` binary masks.
            class_labels (`list[torch.LongTensor]`, *optional*): per image `(N_i,)` indices into the class prompts.
            referring_mask_labels (`list[torch.FloatTensor]`, *optional*): per image `(R, H, W)` phrase masks.
            task (`str`): `"generic"` or `"referring"` (referring also returns the generic outputs).
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if task not in ("generic", "referring"):
            raise ValueError(f"`task` must be 'generic' or 'referring' for segmentation, got {task!r}.")
        if task == "referring" and referring_input_ids is None:
            raise ValueError("`task='referring'` needs `referring_input_ids`.")
        tasks: tuple[str, ...] = ("generic",)
        if referring_input_ids is not None:
            referring_attention_mask = self._check_referring(referring_input_ids, referring_attention_mask)
            tasks = ("generic", "referring")
        class_embeds = self.class_embeddings(class_input_ids, class_attention_mask, class_embeddings)
        num_classes = class_embeds.shape[0] - 1
        if mask_labels is not None or class_labels is not None:
            if mask_labels is None or class_labels is None:
                raise ValueError("`mask_labels` and `class_labels` must be given together.")
            self._check_labels(pixel_values, mask_labels, class_labels, num_classes)
        if referring_mask_labels is not None:
            if referring_input_ids is None:
                raise ValueError("`referring_mask_labels` needs `referring_input_ids`.")
            self._check_labels(pixel_values, referring_mask_labels, None, 0, name="referring_mask_labels")
            num_phrases = referring_input_ids.shape[1] if referring_input_ids.dim() == 3 else 1
            for i, masks in enumerate(referring_mask_labels):
                if masks.shape[0] != num_phrases:
                    raise ValueError(
                        f"`referring_mask_labels[{i}]` has {masks.shape[0]} masks for {num_phrases} phrases."
                    )

        outputs = self.model(
            pixel_values,
            pixel_mask,
            task=tasks,
            text_input_ids=referring_input_ids,
            text_attention_mask=referring_attention_mask,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        seg = self._segmentation_outputs(outputs, class_embeds)
        ref = self._referring_outputs(outputs) if "referring" in tasks else None

        loss_dict: dict[str, torch.Tensor] = {}
        if mask_labels is not None:
            loss_dict.update(self._segmentation_loss(self.criterion, seg, mask_labels, class_labels))
        if referring_mask_labels is not None:
            loss_dict.update(self._referring_loss(self.criterion, ref, referring_mask_labels))
        loss = sum(loss_dict.values()) if loss_dict else None

        auxiliary = seg[:-1] if self.config.use_auxiliary_loss else None
        output = XDecoderForUniversalSegmentationOutput(
            loss=loss,
            loss_dict=loss_dict or None,
            class_queries_logits=seg[-1]["class_queries_logits"],
            masks_queries_logits=seg[-1]["masks_queries_logits"],
            auxiliary_logits=auxiliary,
            referring_logits=ref[-1]["referring_logits"] if ref else None,
            referring_masks_logits=_referring_masks(ref[-1]["referring_logits"], ref[-1]["masks_queries_logits"])
            if ref
            else None,
            image_embeds=outputs.image_embeds,
            encoder_last_hidden_state=outputs.encoder_last_hidden_state,
            pixel_decoder_last_hidden_state=outputs.pixel_decoder_last_hidden_state,
            transformer_decoder_last_hidden_state=outputs.transformer_decoder_last_hidden_state,
        )
        return output if return_dict else output.to_tuple()


class XDecoderForImageTextRetrieval(XDecoderPreTrainedModel):
    """Image-text retrieval: image embedding = the image latent's semantic output, text embedding = the projected
    last-valid-token feature; scores are `exp(tau)`-scaled cosines (Eq. 4.9)."""

    default_lora_target_modules = LORA_TARGETS
    default_lora_text_target_modules = LORA_TEXT_TARGETS
    default_lora_modules_to_save = ["class_embed", "mask_embed"]

    def __init__(self, config: XDecoderConfig) -> None:
        super().__init__(config)
        self.model = XDecoderModel(config)
        self.post_init()

    def get_image_features(self, pixel_values: torch.Tensor, pixel_mask: torch.Tensor | None = None) -> torch.Tensor:
        """`(B, d_p)` L2-normalised image embeddings."""
        outputs = self.model(pixel_values, pixel_mask, task="retrieval", return_dict=True)
        return F.normalize(outputs.image_embeds, dim=-1)

    def get_text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """`(B, d_p)` L2-normalised text embeddings."""
        _check_text("input_ids", input_ids, attention_mask, self.config.max_text_len)
        return F.normalize(self.model.text_embeddings(input_ids, attention_mask), dim=-1)

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        pixel_mask: torch.Tensor | None = None,
        return_loss: bool = False,
        return_dict: bool | None = None,
        **kwargs,
    ) -> XDecoderRetrievalOutput | tuple:
        r"""
        Args:
            pixel_values (`torch.FloatTensor` of shape `(B_i, 3, H, W)`): images.
            input_ids, attention_mask (`torch.LongTensor` of shape `(B_t, T)`): texts.
            pixel_mask (`torch.LongTensor`, *optional*): image padding mask.
            return_loss (`bool`): also return the symmetric contrastive loss (needs `B_i == B_t`, pairs aligned).
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if pixel_values is None or input_ids is None:
            raise ValueError("retrieval needs both `pixel_values` and `input_ids`.")
        image_embeds = self.get_image_features(pixel_values, pixel_mask)
        text_embeds = self.get_text_features(input_ids, attention_mask)
        logits_per_image = self.model.scale() * image_embeds @ text_embeds.T
        loss = None
        if return_loss:
            if image_embeds.shape[0] != text_embeds.shape[0]:
                raise ValueError(
                    f"`return_loss` needs as many texts as images, got {text_embeds.shape[0]} and {image_embeds.shape[0]}."
                )
            loss = self.config.retrieval_weight * contrastive_loss(image_embeds, text_embeds, self.model.scale())
        output = XDecoderRetrievalOutput(loss, logits_per_image, logits_per_image.T, image_embeds, text_embeds)
        return output if return_dict else output.to_tuple()


class XDecoderForCaptioning(XDecoderPreTrainedModel):
    """Autoregressive captioning: causal text queries attend all latents (but no latent reads them); caption logits
    are `W_cap` outputs against the text encoder's token-embedding table. Greedy `generate` re-runs the decoder per
    step on cached image features (no KV cache, spec §6)."""

    default_lora_target_modules = LORA_TARGETS
    default_lora_text_target_modules = LORA_TEXT_TARGETS
    default_lora_modules_to_save = ["class_embed", "mask_embed"]

    def __init__(self, config: XDecoderConfig) -> None:
        super().__init__(config)
        self.model = XDecoderModel(config)
        self.post_init()

    def _full_vocab(self, logits: torch.Tensor) -> torch.Tensor:
        ids = self.model.caption_vocab_ids
        if ids is None:
            return logits
        vocab = self.model.language.token_embedding_table.shape[0]
        full = logits.new_full((*logits.shape[:-1], vocab), torch.finfo(logits.dtype).min)
        return full.scatter(-1, ids.expand(*logits.shape[:-1], -1), logits)

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        pixel_mask: torch.Tensor | None = None,
        visual_features: _VisualFeatures | None = None,
        use_text_cache: bool = True,
        return_dict: bool | None = None,
        **kwargs,
    ) -> XDecoderCaptioningOutput | tuple:
        r"""
        Args:
            pixel_values (`torch.FloatTensor` of shape `(B, 3, H, W)`): images.
            input_ids, attention_mask (`torch.LongTensor` of shape `(B, T)`): caption tokens starting with BOS
                (`[CLS]`), right-padded.
            labels (`torch.LongTensor` of shape `(B, T)`, *optional*): usually `input_ids`; position j is trained to
                predict `labels[:, j + 1]`; `-100` and padded positions are ignored.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if input_ids is None:
            raise ValueError("captioning needs `input_ids` (at least the BOS token).")
        if labels is not None and labels.shape != input_ids.shape:
            raise ValueError(f"`labels` must have shape {tuple(input_ids.shape)}, got {tuple(labels.shape)}.")
        outputs = self.model(
            pixel_values,
            pixel_mask,
            task="captioning",
            caption_input_ids=input_ids,
            caption_attention_mask=attention_mask,
            visual_features=visual_features,
            use_text_cache=use_text_cache,
            return_dict=True,
        )
        logits = self.model.caption_logits(outputs.text_semantic_embeds)
        loss = None
        if labels is not None:
            loss = self.config.captioning_weight * _caption_loss(self.model, logits, labels, attention_mask)
        output = XDecoderCaptioningOutput(loss=loss, logits=self._full_vocab(logits))
        return output if return_dict else output.to_tuple()

    @torch.no_grad()
    def generate(
        self, pixel_values: torch.Tensor, pixel_mask: torch.Tensor | None = None, max_new_tokens: int | None = None
    ) -> torch.LongTensor:
        """Greedy decoding from BOS until every sequence has produced EOS or `max_new_tokens` tokens.

        Returns:
            `(B, T)` token ids starting with BOS; positions after a sequence's EOS hold the pad id.
        """
        cfg = self.config
        max_new_tokens = cfg.max_caption_steps if max_new_tokens is None else max_new_tokens
        max_new_tokens = min(max_new_tokens, cfg.max_text_len - 1)
        visual = self.model.encode_image(pixel_values, pixel_mask)
        batch = pixel_values.shape[0]
        tokens = torch.full((batch, 1), cfg.caption_bos_token_id, dtype=torch.long, device=pixel_values.device)
        finished = torch.zeros(batch, dtype=torch.bool, device=pixel_values.device)
        for _ in range(max_new_tokens):
            outputs = self.model(
                task="captioning",
                caption_input_ids=tokens,
                caption_attention_mask=torch.ones_like(tokens),
                visual_features=visual,
                use_text_cache=False,
                return_dict=True,
            )
            logits = self.model.caption_logits(outputs.text_semantic_embeds[:, -1])
            next_ids = logits.argmax(-1)
            if self.model.caption_vocab_ids is not None:
                next_ids = self.model.caption_vocab_ids[next_ids]
            next_ids = torch.where(finished, torch.full_like(next_ids, cfg.caption_pad_token_id), next_ids)
            tokens = torch.cat([tokens, next_ids[:, None]], dim=1)
            finished |= next_ids == cfg.caption_eos_token_id
            if bool(finished.all()):
                break
        return tokens


def _caption_loss(model: XDecoderModel, logits: torch.Tensor, labels: torch.Tensor, attention_mask) -> torch.Tensor:
    ids = model.caption_vocab_ids
    if ids is not None:
        # map token ids into the restricted vocabulary; tokens outside it cannot be scored and are ignored
        lookup = torch.full(
            (model.language.token_embedding_table.shape[0],), -100, dtype=torch.long, device=ids.device
        )
        lookup[ids] = torch.arange(len(ids), device=ids.device)
        labels = torch.where(labels >= 0, lookup[labels.clamp(min=0)], labels)
    return captioning_loss(logits, labels, attention_mask)


class XDecoderForPreTraining(_SegmentationMixin, XDecoderPreTrainedModel):
    """Joint pretraining (spec §4): generic segmentation + referring on the segmentation batch, image-text
    contrastive + captioning on the image-text batch (the segmentation images with their captions when no separate
    `vl_pixel_values` are given). Tasks sharing images run in one decoder pass; the loss is the weighted sum over the
    enabled tasks (`config.use_*`)."""

    default_lora_target_modules = LORA_TARGETS
    default_lora_text_target_modules = LORA_TEXT_TARGETS
    default_lora_modules_to_save = ["class_embed", "mask_embed"]

    def __init__(self, config: XDecoderConfig) -> None:
        super().__init__(config)
        self.model = XDecoderModel(config)
        self.criterion = _build_criterion(config)
        self._init_class_vocabulary()
        self.post_init()

    def _vl_losses(self, outputs: XDecoderModelOutput, caption_ids, caption_mask, visual):
        """Retrieval and captioning losses (+ the last retrieval logits and caption logits)."""
        cfg = self.config
        losses: dict[str, torch.Tensor] = {}
        logits_per_image = caption_logits = None
        if cfg.use_retrieval:
            text = self.model.text_embeddings(caption_ids, caption_mask)
            image = outputs.image_embeds
            losses["loss_retrieval"] = cfg.retrieval_weight * contrastive_loss(image, text, self.model.scale())
            with torch.no_grad():
                logits_per_image = self.model.scale() * F.normalize(image, dim=-1) @ F.normalize(text, dim=-1).T
            if cfg.retrieval_ensemble:
                backbone = self.model.backbone_image_embeds(visual)
                losses["loss_retrieval_backbone"] = cfg.backbone_retrieval_weight * contrastive_loss(
                    backbone, text, self.model.scale()
                )
        if cfg.use_captioning:
            sets = outputs.intermediate_text_semantic_embeds
            last = len(sets) - 1
            for i in _top_indices(len(sets), cfg.vl_loss_top_layers, cfg.use_auxiliary_loss):
                logits = self.model.caption_logits(sets[i])
                value = cfg.captioning_weight * _caption_loss(self.model, logits, caption_ids, caption_mask)
                losses["loss_captioning" if i == last else f"loss_captioning_{i}"] = value
                caption_logits = logits
        return losses, logits_per_image, caption_logits

    def forward(
        self,
        pixel_values: torch.Tensor,
        pixel_mask: torch.Tensor | None = None,
        class_input_ids: torch.Tensor | None = None,
        class_attention_mask: torch.Tensor | None = None,
        class_embeddings: torch.Tensor | None = None,
        mask_labels: list[torch.Tensor] | None = None,
        class_labels: list[torch.Tensor] | None = None,
        referring_input_ids: torch.Tensor | None = None,
        referring_attention_mask: torch.Tensor | None = None,
        referring_mask_labels: list[torch.Tensor] | None = None,
        caption_input_ids: torch.Tensor | None = None,
        caption_attention_mask: torch.Tensor | None = None,
        vl_pixel_values: torch.Tensor | None = None,
        vl_pixel_mask: torch.Tensor | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> XDecoderForPreTrainingOutput | tuple:
        r"""
        Args:
            pixel_values, pixel_mask, class_input_ids, class_attention_mask, class_embeddings, mask_labels,
                class_labels, referring_input_ids, referring_attention_mask, referring_mask_labels: as in
                [`XDecoderForUniversalSegmentation`] (the segmentation batch).
            caption_input_ids, caption_attention_mask (`torch.LongTensor` of shape `(B_vl, T)`, *optional*): one
                caption per image-text image (BOS first), used for retrieval and captioning.
            vl_pixel_values, vl_pixel_mask (*optional*): images of the image-text batch; when None the captions
                belong to `pixel_values` and everything runs in one pass.
        """
        cfg = self.config
        return_dict = return_dict if return_dict is not None else cfg.return_dict
        if mask_labels is None or class_labels is None:
            raise ValueError("pretraining needs `mask_labels` and `class_labels` for the segmentation batch.")
        class_embeds = self.class_embeddings(class_input_ids, class_attention_mask, class_embeddings)
        self._check_labels(pixel_values, mask_labels, class_labels, class_embeds.shape[0] - 1)
        use_referring = cfg.use_referring and referring_input_ids is not None and referring_mask_labels is not None
        if use_referring:
            referring_attention_mask = self._check_referring(referring_input_ids, referring_attention_mask)
            self._check_labels(pixel_values, referring_mask_labels, None, 0, name="referring_mask_labels")
        use_vl = caption_input_ids is not None and (cfg.use_captioning or cfg.use_retrieval)
        if use_vl:
            if caption_attention_mask is None:
                caption_attention_mask = torch.ones_like(caption_input_ids)
            _check_text("caption_input_ids", caption_input_ids, caption_attention_mask, cfg.max_text_len)
            vl_batch = (vl_pixel_values if vl_pixel_values is not None else pixel_values).shape[0]
            if caption_input_ids.shape[0] != vl_batch:
                raise ValueError(
                    f"`caption_input_ids` has {caption_input_ids.shape[0]} captions for {vl_batch} image-text images."
                )
        shared_vl = use_vl and vl_pixel_values is None

        tasks = ["generic"]
        if use_referring:
            tasks.append("referring")
        if shared_vl and cfg.use_captioning:
            tasks.append("captioning")
        visual = self.model.encode_image(pixel_values, pixel_mask)
        outputs = self.model(
            task=tuple(tasks),
            text_input_ids=referring_input_ids if use_referring else None,
            text_attention_mask=referring_attention_mask if use_referring else None,
            caption_input_ids=caption_input_ids if "captioning" in tasks else None,
            caption_attention_mask=caption_attention_mask if "captioning" in tasks else None,
            visual_features=visual,
            return_dict=True,
        )
        seg = self._segmentation_outputs(outputs, class_embeds)
        loss_dict: dict[str, torch.Tensor] = {}
        if cfg.use_generic_seg:
            loss_dict.update(self._segmentation_loss(self.criterion, seg, mask_labels, class_labels))
        if use_referring:
            ref = self._referring_outputs(outputs)
            loss_dict.update(self._referring_loss(self.criterion, ref, referring_mask_labels))
        vl_outputs, vl_visual = outputs, visual
        if use_vl and not shared_vl:
            vl_visual = self.model.encode_image(vl_pixel_values, vl_pixel_mask)
            vl_outputs = self.model(
                task="captioning" if cfg.use_captioning else "retrieval",
                caption_input_ids=caption_input_ids,
                caption_attention_mask=caption_attention_mask,
                visual_features=vl_visual,
                return_dict=True,
            )
        logits_per_image = caption_logits = None
        if use_vl:
            vl_losses, logits_per_image, caption_logits = self._vl_losses(
                vl_outputs, caption_input_ids, caption_attention_mask, vl_visual
            )
            loss_dict.update(vl_losses)
        if not loss_dict:
            raise ValueError("no task is enabled for these inputs (check `config.use_*`).")
        loss = sum(loss_dict.values())
        output = XDecoderForPreTrainingOutput(
            loss=loss,
            loss_dict=loss_dict,
            class_queries_logits=seg[-1]["class_queries_logits"],
            masks_queries_logits=seg[-1]["masks_queries_logits"],
            logits_per_image=logits_per_image,
            caption_logits=caption_logits,
        )
        return output if return_dict else output.to_tuple()


# ----------------------------------------------------------------------------------------------------------------------
# efficient finetuning (Table 4.3)
# ----------------------------------------------------------------------------------------------------------------------

FINETUNING_LEVELS = ("class", "mask", "query", "decoder")


def efficient_finetuning_groups(model: nn.Module) -> dict[str, list[str]]:
    """Cumulative parameter-name prefixes (relative to the base `XDecoderModel`) of Table 4.3's tuning levels:
    `class` = `W_cls`; `mask` = + mask-embedding MLP; `query` = + latent query content/position embeddings;
    `decoder` = + the whole transformer decoder and the image-text temperature (the caption heads are not part of
    Table 4.3's segmentation decoder)."""
    del model
    class_ = ["class_embed."]
    mask = class_ + ["decoder.mask_predictor.mask_embed."]
    query = mask + ["query_features.", "query_position."]
    decoder = query + ["decoder.", "logit_scale"]
    return {"class": class_, "mask": mask, "query": query, "decoder": decoder}


def _base_model(model: nn.Module) -> XDecoderModel:
    if isinstance(model, XDecoderModel):
        return model
    inner = getattr(model, "model", None)
    if isinstance(inner, XDecoderModel):
        return inner
    raise TypeError(f"`model` must be an X-Decoder model, got {type(model).__name__}.")


def enable_efficient_finetuning(model: nn.Module, level: str = "class") -> int:
    """Freeze everything except Table 4.3's parameter group `level` (`"class"`, `"mask"`, `"query"`, `"decoder"`).

    Returns:
        The number of trainable parameters.
    """
    if level not in FINETUNING_LEVELS:
        raise ValueError(f"`level` must be one of {FINETUNING_LEVELS}, got {level!r}.")
    base = _base_model(model)
    prefixes = efficient_finetuning_groups(base)[level]
    model.requires_grad_(False)
    trainable = 0
    for name, param in base.named_parameters():
        if any(name == p or name.startswith(p) for p in prefixes):
            param.requires_grad_(True)
            trainable += param.numel()
    base.language.clear_cache()
    return trainable


__all__ = [
    "XDecoderDecoderOutput",
    "XDecoderModelOutput",
    "XDecoderForUniversalSegmentationOutput",
    "XDecoderRetrievalOutput",
    "XDecoderCaptioningOutput",
    "XDecoderForPreTrainingOutput",
    "XDecoderPreTrainedModel",
    "XDecoderModel",
    "XDecoderForUniversalSegmentation",
    "XDecoderForImageTextRetrieval",
    "XDecoderForCaptioning",
    "XDecoderForPreTraining",
    "enable_efficient_finetuning",
    "efficient_finetuning_groups",
    "FINETUNING_LEVELS",
]
