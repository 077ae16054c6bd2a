"""PS-ViT (vision transformer with progressive sampling) configuration."""

from __future__ import annotations

from typing import Any

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

# Paper sizes (thesis ch. 3, Tables 3/5/8; counts checked in tests against spec §4.2). B models differ only in the
# number of sampling points per axis, which changes FLOPs but not parameters.
_BASE = {
    "hidden_size": 384,
    "num_attention_heads": 6,
    "num_sampling_iterations": 4,
    "num_hidden_layers": 10,
    "stem_out_channels": (256, 384),
    "num_labels": 1000,
}
_TINY_PAPER = {
    "hidden_size": 192,
    "num_attention_heads": 3,
    "num_sampling_iterations": 4,
    "num_hidden_layers": 8,
    "stem_out_channels": (192, 192),
    "hidden_dropout_prob": 0.0,
    "num_labels": 1000,
}
_PRESETS: dict[str, dict[str, Any]] = {
    "ps_vit_ti_14": {**_TINY_PAPER, "num_sampling_points": 14},
    "ps_vit_ti_14_shared": {**_TINY_PAPER, "num_sampling_points": 14, "share_sampling_weights": True},
    **{f"ps_vit_b_{n}": {**_BASE, "num_sampling_points": n} for n in (10, 12, 14, 16, 18)},
    **{
        f"ps_vit_b_{n}_shared": {**_BASE, "num_sampling_points": n, "share_sampling_weights": True}
        for n in (10, 12, 14)
    },
    # CPU-sized variant of spec §4.3 for the miniature reproduction (64x64 inputs, 8x8 tokens)
    "ps_vit_mini": {
        "image_size": 64,
        "hidden_size": 64,
        "num_attention_heads": 2,
        "num_sampling_iterations": 4,
        "num_hidden_layers": 2,
        "num_sampling_points": 8,
        "stem_channels": 32,
        "stem_bottleneck_channels": 16,
        "stem_out_channels": (64, 64),
        "hidden_dropout_prob": 0.0,
        "drop_path_rate": 0.05,
        "decoder_hidden_size": 64,
    },
    # unit-test size (spec's "micro"): 32x32 inputs, 4x4 tokens
    "tiny": {
        "image_size": 32,
        "hidden_size": 32,
        "num_attention_heads": 2,
        "num_sampling_iterations": 2,
        "num_hidden_layers": 1,
        "num_sampling_points": 4,
        "stem_channels": 16,
        "stem_bottleneck_channels": 8,
        "stem_out_channels": (32, 32),
        "hidden_dropout_prob": 0.0,
        "drop_path_rate": 0.0,
        "decoder_hidden_size": 16,
        "num_labels": 3,
    },
}


@strict
class PsVitConfig(PreTrainedConfig):
    r"""Configuration of a PS-ViT model (Yue, Sun et al., ICCV 2021; thesis chapter 3). Defaults are PS-ViT-B/14.

    Args:
        image_size (`int` or `tuple[int, int]`, defaults to 224):
            Nominal input size; the model accepts any size divisible by the stem stride 4.
        num_channels (`int`, defaults to 3): input channels.
        hidden_size (`int`, defaults to 384): token width C (= stem output channels).
        num_attention_heads (`int`, defaults to 6): heads M of every encoder layer.
        mlp_ratio (`float`, defaults to 3.0): feed-forward hidden size is `int(C * mlp_ratio)`.
        num_sampling_iterations (`int`, defaults to 4): N, progressive-sampling iterations (one encoder layer each).
        num_hidden_layers (`int`, defaults to 10): N_v, encoder layers of the vision transformer module.
        num_sampling_points (`int` or `tuple[int, int]`, defaults to 14): points per axis n (or `(n_h, n_w)`); the
            model has n_h * n_w tokens. Parameters do not depend on it, so it can be changed at inference time.
        share_sampling_weights (`bool`, defaults to `False`): the "†" variant; one encoder layer and one offset
            head are reused by all sampling iterations.
        offset_scale (`float`, defaults to 1.0): multiplier of the predicted offsets (released models use 1.0).
        offset_bias (`bool`, defaults to `True`): bias in the offset heads.
        detach_sampling_points (`bool`, defaults to `True`): the reference's gradient rule; accumulated points and
            the coordinates fed to the position encoder are detached, so an offset learns only through the next
            sampling step. `False` lets gradients flow through every later use (an ablation).
        stem_channels (`int`, defaults to 64): width of the 7x7 stem convolution.
        stem_bottleneck_channels (`int`, defaults to 64): middle width of both stem bottlenecks.
        stem_out_channels (`tuple[int, int]`, defaults to `(256, 384)`): outputs of the two bottlenecks; the last
            must equal `hidden_size` (Ti: `(192, 192)`).
        qkv_bias (`bool`, defaults to `False`): bias on the query/key/value projections.
        attention_scale (`float`, *optional*): multiplier of the attention logits. `None` uses the per-head
            `(C / M) ** -0.5` of the reference code's default; the released checkpoints were trained with
            `C ** -0.5`, which checkpoint conversion sets.
        hidden_act (`str`, defaults to `"gelu"`): feed-forward activation.
        hidden_dropout_prob (`float`, defaults to 0.1): dropout after attention projection and in the MLP.
        attention_probs_dropout_prob (`float`, defaults to 0.0): dropout on attention probabilities.
        drop_path_rate (`float`, defaults to 0.1): stochastic depth, linear from 0 over all N + N_v layers.
        layer_norm_eps (`float`, defaults to 1e-5): LayerNorm epsilon (PyTorch default, as the reference).
        initializer_range (`float`, defaults to 0.02): std of the truncated-normal Linear init.
        use_cls_token (`bool`, defaults to `True`): prepend a class token; `False` mean-pools the tokens.
        label_smoothing (`float`, defaults to 0.0): smoothing of the hard-label classification loss.
        decoder_type (`str`, defaults to `"point"`): segmentation decoder, `"point"` (Gaussian scatter of tokens
            from their final sampling points) or `"grid"` (tokens reshaped on the initial grid).
        decoder_hidden_size (`int`, defaults to 256): width D of the segmentation decoder.
        decoder_kernel_sigma (`float`, defaults to 0.5): Gaussian sigma of the point decoder in units of the
            initial point spacing.
        semantic_loss_ignore_index (`int`, defaults to 255): label ignored by the segmentation loss.

    Presets: `PsVitConfig.from_preset(name)` with a name from `PsVitConfig.preset_names()`.
    """

    model_type = "ps_vit"

    image_size: int | list[int] | tuple[int, int] = 224
    num_channels: int = 3
    hidden_size: int = 384
    num_attention_heads: int = 6
    mlp_ratio: float | int = 3.0
    num_sampling_iterations: int = 4
    num_hidden_layers: int = 10
    num_sampling_points: int | list[int] | tuple[int, int] = 14
    share_sampling_weights: bool = False
    offset_scale: float | int = 1.0
    offset_bias: bool = True
    detach_sampling_points: bool = True
    stem_channels: int = 64
    stem_bottleneck_channels: int = 64
    stem_out_channels: list[int] | tuple[int, ...] = (256, 384)
    qkv_bias: bool = False
    attention_scale: float | None = None
    hidden_act: str = "gelu"
    hidden_dropout_prob: float | int = 0.1
    attention_probs_dropout_prob: float | int = 0.0
    drop_path_rate: float | int = 0.1
    layer_norm_eps: float = 1e-5
    initializer_range: float = 0.02
    use_cls_token: bool = True
    label_smoothing: float | int = 0.0
    decoder_type: str = "point"
    decoder_hidden_size: int = 256
    decoder_kernel_sigma: float | int = 0.5
    semantic_loss_ignore_index: int = 255

    def __post_init__(self, **kwargs: Any) -> None:
        # checked here as well as in `validate_architecture` so that bad values raise a plain `ValueError`
        self._check_fields()
        super().__post_init__(**kwargs)

    def validate_architecture(self) -> None:
        super().validate_architecture()
        self._check_fields()

    def _check_fields(self) -> None:
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"`hidden_size` ({self.hidden_size}) must be divisible by `num_attention_heads` "
                f"({self.num_attention_heads})."
            )
        if len(self.stem_out_channels) != 2 or self.stem_out_channels[-1] != self.hidden_size:
            raise ValueError(
                "`stem_out_channels` must list the outputs of the two stem bottlenecks and end with `hidden_size` "
                f"({self.hidden_size}); got {tuple(self.stem_out_channels)}."
            )
        if self.num_sampling_iterations < 1:
            raise ValueError(f"`num_sampling_iterations` must be >= 1, got {self.num_sampling_iterations}.")
        if self.num_hidden_layers < 0:
            raise ValueError(f"`num_hidden_layers` must be >= 0, got {self.num_hidden_layers}.")
        normalize_grid_size(self.num_sampling_points, "num_sampling_points")
        if self.decoder_type not in ("point", "grid"):
            raise ValueError(f"`decoder_type` must be 'point' or 'grid', got {self.decoder_type!r}.")

    @property
    def intermediate_size(self) -> int:
        return int(self.hidden_size * self.mlp_ratio)

    @property
    def sampling_grid_size(self) -> tuple[int, int]:
        """`(n_h, n_w)`: sampling points per axis."""
        return normalize_grid_size(self.num_sampling_points, "num_sampling_points")

    @staticmethod
    def preset_names() -> list[str]:
        return list(_PRESETS)

    @classmethod
    def from_preset(cls, name: str, **kwargs: Any) -> PsVitConfig:
        """Build a named configuration (e.g. `"ps_vit_b_14"`; dashes are accepted for underscores).

        Args:
            name: one of [`PsVitConfig.preset_names`].
            kwargs: fields overriding the preset.
        """
        key = name.replace("-", "_").lower() if isinstance(name, str) else name
        if key not in _PRESETS:
            raise ValueError(f"Unknown PS-ViT preset {name!r}; valid names are: {', '.join(_PRESETS)}.")
        return cls(**{**_PRESETS[key], **kwargs})


def normalize_grid_size(value: Any, name: str = "num_sampling_points") -> tuple[int, int]:
    """Turn `n` or `(n_h, n_w)` into a validated `(n_h, n_w)` tuple of positive ints."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    ):
        raise ValueError(f"`{name}` must be a positive int or a pair of positive ints (n_h, n_w), got {value!r}.")
    return int(value[0]), int(value[1])


__all__ = ["PsVitConfig"]
