"""Configuration of the anti-aliased ResNet (content-aware low-pass filters before every subsampling)."""

from __future__ import annotations

from typing import Any, ClassVar

from huggingface_hub.dataclasses import strict
from transformers.models.resnet.configuration_resnet import ResNetConfig

from ...modules.antialias import SOFTMAX_SCOPES

AA_MODES = ("none", "blur", "image_adaptive", "adaptive")

# Paper-size architectures (ResNet v1.5 = torchvision / HF layout) plus a tiny one for tests and CPU runs.
_PRESETS: dict[str, dict[str, Any]] = {
    "resnet18": {"layer_type": "basic", "depths": [2, 2, 2, 2], "hidden_sizes": [64, 128, 256, 512]},
    "resnet34": {"layer_type": "basic", "depths": [3, 4, 6, 3], "hidden_sizes": [64, 128, 256, 512]},
    "resnet50": {"layer_type": "bottleneck", "depths": [3, 4, 6, 3], "hidden_sizes": [256, 512, 1024, 2048]},
    "resnet101": {"layer_type": "bottleneck", "depths": [3, 4, 23, 3], "hidden_sizes": [256, 512, 1024, 2048]},
    "resnet152": {"layer_type": "bottleneck", "depths": [3, 8, 36, 3], "hidden_sizes": [256, 512, 1024, 2048]},
    "tiny": {
        "layer_type": "basic",
        "depths": [1, 1, 1, 1],
        "hidden_sizes": [16, 32, 64, 128],
        "embedding_size": 16,
        "decoder_channels": 32,
        "decoder_low_level_channels": 16,
    },
}


@strict
class AntiAliasedResNetConfig(ResNetConfig):
    r"""
    Configuration of [`AntiAliasedResNetModel`] and its heads. Every [`~transformers.ResNetConfig`] field is kept
    (so a transformers ResNet config/checkpoint maps onto it); the defaults of the new fields give the paper's
    "Ours 3x3" model (adaptive filter, k = 3, G = 8).

    Args:
        aa_mode (`str`, defaults to `"adaptive"`):
            `"none"` (plain ResNet, identical to transformers' `ResNetModel`), `"blur"` (fixed binomial filter,
            the LPF baseline), `"image_adaptive"` (one predicted filter per image, Table 2.6 ablation) or
            `"adaptive"` (per-location, per-group predicted filters).
        aa_kernel_size (`int`, defaults to 3):
            Filter size k: 1..7 for `"blur"`, odd for the adaptive modes.
        aa_groups (`int`, defaults to 8):
            Channel groups G of the adaptive filter (1 = spatial-only). Must divide every filtered channel count.
        aa_softmax_scope (`str`, defaults to `"group"`):
            `"group"`: each group's k*k taps sum to one (what the dissertation's text says). `"joint"`: one softmax
            over all G*k*k logits (what the authors' released code does).
        aa_predictor_kernel_size (`int`, *optional*):
            Kernel size of the filter-predicting conv; `None` means `aa_kernel_size` (released code; it matches the
            parameter counts reported in the dissertation).
        aa_padding_mode (`str`, defaults to `"reflect"`):
            Padding of the filters' inputs.
        aa_in_stem (`bool`, defaults to `True`):
            Replace the stem's MaxPool(3, s2) by MaxPool(2, s1) + filter(s2). The 7x7 stem conv is never changed.
        aa_stages (`list[bool]`, *optional*):
            Per stage: anti-alias that stage's strided first block. `None` = every strided stage.
        aa_in_shortcut (`bool`, defaults to `True`):
            Filter before the (then stride-1) 1x1 projection shortcut.
        replace_stride_with_dilation (`list[bool]`, defaults to `[False, False, False]`):
            For stages 2-4: trade the stride for dilation (DeepLab). A dilated stage keeps its filter at stride 1.
        output_aa_weights (`bool`, defaults to `False`):
            Also return each adaptive module's predicted filters `(N, G, k*k, H', W')` from the base model.
        semantic_output_stride (`int`, defaults to 16):
            Output stride of the backbone inside [`AntiAliasedResNetForSemanticSegmentation`] (32, 16 or 8).
        decoder_channels (`int`, defaults to 256):
            Width of the DeepLabv3+ ASPP and decoder.
        decoder_low_level_channels (`int`, defaults to 48):
            Width of the DeepLabv3+ low-level projection.
        aspp_rates (`list[int]`, defaults to `[6, 12, 18]`):
            Atrous rates at output stride 16 (doubled at 8, halved at 32).
        aspp_dropout (`float`, defaults to 0.1):
            Dropout after the ASPP projection.
        low_level_stage (`str`, defaults to `"stage1"`):
            Backbone stage feeding the decoder's low-level branch.
        semantic_loss_ignore_index (`int`, defaults to 255):
            Label ignored by the segmentation loss.
    """

    model_type = "antialiased_resnet"
    presets: ClassVar[dict[str, dict[str, Any]]] = _PRESETS

    aa_mode: str = "adaptive"
    aa_kernel_size: int = 3
    aa_groups: int = 8
    aa_softmax_scope: str = "group"
    aa_predictor_kernel_size: int | None = None
    aa_padding_mode: str = "reflect"
    aa_in_stem: bool = True
    aa_stages: list[bool] | None = None
    aa_in_shortcut: bool = True
    replace_stride_with_dilation: list[bool] | tuple[bool, ...] = (False, False, False)
    output_aa_weights: bool = False
    semantic_output_stride: int = 16
    decoder_channels: int = 256
    decoder_low_level_channels: int = 48
    aspp_rates: list[int] | tuple[int, ...] = (6, 12, 18)
    aspp_dropout: float = 0.1
    low_level_stage: str = "stage1"
    semantic_loss_ignore_index: int = 255

    def __post_init__(self, **kwargs: Any) -> None:
        # `antialias` is accepted as an alias of `aa_mode` (the name the project issue uses).
        antialias = kwargs.pop("antialias", None)
        if antialias is not None:
            self.aa_mode = antialias
        self.replace_stride_with_dilation = list(self.replace_stride_with_dilation)
        self.aspp_rates = list(self.aspp_rates)
        self.depths = list(self.depths)
        super().__post_init__(**kwargs)
        self._check_antialias_settings()

    @classmethod
    def from_preset(cls, name: str, **kwargs: Any) -> AntiAliasedResNetConfig:
        """
        Build a config from a named architecture: `resnet18`, `resnet34`, `resnet50`, `resnet101`, `resnet152`
        or `tiny`. Keyword arguments override the preset (e.g. `aa_mode="blur"`, `num_labels=10`).
        """
        key = name.lower().replace("-", "").replace("_", "")
        if key not in _PRESETS:
            raise ValueError(f"Unknown preset {name!r}; expected one of {sorted(_PRESETS)}.")
        return cls(**{**_PRESETS[key], **kwargs})

    def filtered_channels(self) -> list[int]:
        """Input channels of every filter module, in forward order (stem, then main/shortcut per strided stage)."""
        channels = [self.embedding_size] if self.aa_in_stem else []
        in_sizes = [self.embedding_size, *self.hidden_sizes[:-1]]
        for stage, (in_size, out_size) in enumerate(zip(in_sizes, self.hidden_sizes)):
            if not self.stage_is_strided(stage) or not self.stage_is_antialiased(stage):
                continue
            channels.append(out_size // 4 if self.layer_type == "bottleneck" else out_size)
            if self.aa_in_shortcut:
                channels.append(in_size)
        return channels

    def stage_is_strided(self, stage: int) -> bool:
        """Whether stage `stage` (0-based) subsamples in the plain ResNet."""
        return stage > 0 or self.downsample_in_first_stage

    def stage_is_antialiased(self, stage: int) -> bool:
        return self.aa_mode != "none" and (self.aa_stages is None or bool(self.aa_stages[stage]))

    def _check_antialias_settings(self) -> None:
        if self.aa_mode not in AA_MODES:
            raise ValueError(f"`aa_mode` (alias `antialias`) must be one of {AA_MODES}, got {self.aa_mode!r}.")
        if self.layer_type not in self.layer_types:
            raise ValueError(f"`layer_type` must be one of {self.layer_types}, got {self.layer_type!r}.")
        if self.downsample_in_bottleneck:
            raise ValueError(
                "`downsample_in_bottleneck=True` is not supported: the filter placement assumes the stride sits on "
                "the 3x3 conv (ResNet v1.5)."
            )
        if len(self.depths) != len(self.hidden_sizes):
            raise ValueError(f"`depths` {self.depths} and `hidden_sizes` {self.hidden_sizes} must have equal length.")
        if len(self.replace_stride_with_dilation) != len(self.depths) - 1:
            raise ValueError(
                f"`replace_stride_with_dilation` needs one bool per stage after the first ({len(self.depths) - 1}), "
                f"got {self.replace_stride_with_dilation}."
            )
        if self.aa_stages is not None and len(self.aa_stages) != len(self.depths):
            raise ValueError(f"`aa_stages` needs one bool per stage ({len(self.depths)}), got {self.aa_stages}.")
        if self.semantic_output_stride not in (8, 16, 32):
            raise ValueError(f"`semantic_output_stride` must be 8, 16 or 32, got {self.semantic_output_stride}.")
        if self.aa_mode == "blur" and not 1 <= self.aa_kernel_size <= 7:
            raise ValueError(f"`aa_kernel_size` must be in 1..7 for the binomial blur, got {self.aa_kernel_size}.")
        if self.aa_mode in ("adaptive", "image_adaptive") and (
            self.aa_kernel_size < 1 or self.aa_kernel_size % 2 == 0
        ):
            raise ValueError(
                f"`aa_kernel_size` of the adaptive filter must be a positive odd size, got {self.aa_kernel_size}."
            )
        if self.aa_predictor_kernel_size is not None and self.aa_predictor_kernel_size % 2 == 0:
            raise ValueError(f"`aa_predictor_kernel_size` must be odd, got {self.aa_predictor_kernel_size}.")
        if self.aa_softmax_scope not in SOFTMAX_SCOPES:
            raise ValueError(f"`aa_softmax_scope` must be one of {SOFTMAX_SCOPES}, got {self.aa_softmax_scope!r}.")
        if self.aa_mode == "adaptive":
            if self.aa_groups < 1:
                raise ValueError(f"`aa_groups` must be >= 1, got {self.aa_groups}.")
            for channels in self.filtered_channels():
                if channels % self.aa_groups:
                    raise ValueError(
                        f"`aa_groups` ({self.aa_groups}) must divide every filtered channel count; {channels} is not "
                        f"divisible (filtered channels: {self.filtered_channels()})."
                    )


__all__ = ["AA_MODES", "AntiAliasedResNetConfig"]
