"""X-Decoder model: one masked-attention decoder for pixel, image and language outputs (dissertation ch. 4)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers.utils import ModelOutput


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
        caption_logits (`torch.FloatTensor`, *optional*): caption logits (VL batch).
    """

    loss: torch.FloatTensor | None = None
    loss_dict: dict[str, torch.FloatTensor] | None = None
    class_queries_logits: torch.FloatTensor | None = None
    masks_queries_logits: torch.FloatTensor | None = None
    logits_per_image: torch.FloatTensor | None = None
    caption_logits: torch.FloatTensor | None = None
