"""Anti-aliased ResNet (Zou et al., "Delving Deeper into Anti-aliasing in ConvNets"; dissertation seed 000, ch. 2).

A ResNet v1.5 whose every subsampling is preceded by a low-pass filter (spec §2.6):

* stem: 7x7/s2 conv unchanged; MaxPool(3, s2) becomes MaxPool(2, s1) -> filter(s2);
* first block of each strided stage: the strided 3x3 conv runs at stride 1 (-> BN -> ReLU) and a filter(s2) follows;
  the projection shortcut becomes filter(s2) -> 1x1 conv at stride 1 -> BN;
* a dilated stage (DeepLab) keeps its filters at stride 1.

That is 7 filter modules in a 4-stage ResNet. The module tree keeps transformers' `ResNet*` parameter names
(`resnet.embedder...`, `resnet.encoder.stages...`, `classifier.1`) and puts each filter in a new `aa` attribute,
so a transformers ResNet checkpoint loads with only the `*.aa.*` parameters missing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.backbone_utils import BackboneMixin, filter_output_hidden_states
from transformers.modeling_outputs import (
    BackboneOutput,
    BaseModelOutputWithPoolingAndNoAttention,
    ImageClassifierOutputWithNoAttention,
    SemanticSegmenterOutput,
)
from transformers.modeling_utils import PreTrainedModel
from transformers.utils.generic import can_return_tuple

from ...modules.antialias import AdaptiveBlurPool, BlurPool, ImageAdaptiveBlurPool, binomial_filter
from ...modules.classification_loss import image_classification_loss
from .configuration_antialiased_resnet import AntiAliasedResNetConfig


@dataclass
class AntiAliasedResNetModelOutput(BaseModelOutputWithPoolingAndNoAttention):
    r"""
    last_hidden_state (`torch.FloatTensor` of shape `(batch, channels, height / 32, width / 32)`):
        Output of the last stage.
    pooler_output (`torch.FloatTensor` of shape `(batch, channels, 1, 1)`):
        Global average pool of the last stage.
    hidden_states (`tuple(torch.FloatTensor)`, *optional*):
        Stem output then each stage's output, when `output_hidden_states=True`.
    aa_weights (`tuple(torch.FloatTensor)`, *optional*):
        When `output_aa_weights=True`: the filters predicted by each adaptive module, in forward order, each of
        shape `(batch, groups, k * k, height', width')` (taps row-major).
    """

    aa_weights: tuple[torch.FloatTensor, ...] | None = None


def build_antialias_filter(config: AntiAliasedResNetConfig, channels: int, stride: int) -> nn.Module:
    """The filter module `config.aa_mode` asks for, acting on `channels` channels and subsampling by `stride`."""
    if config.aa_mode == "blur":
        return BlurPool(channels, config.aa_kernel_size, stride, config.aa_padding_mode)
    if config.aa_mode == "image_adaptive":
        return ImageAdaptiveBlurPool(channels, config.aa_kernel_size, stride, config.aa_padding_mode)
    if config.aa_mode == "adaptive":
        return AdaptiveBlurPool(
            channels,
            kernel_size=config.aa_kernel_size,
            groups=config.aa_groups,
            stride=stride,
            softmax_scope=config.aa_softmax_scope,
            padding_mode=config.aa_padding_mode,
            predictor_kernel_size=config.aa_predictor_kernel_size,
        )
    raise ValueError(f"`aa_mode` {config.aa_mode!r} has no filter module.")


def run_filter(aa: nn.Module, hidden_state: Tensor, aa_weights: list[Tensor] | None) -> Tensor:
    """Apply a filter module, recording its predicted filters when `aa_weights` is a list (fixed blurs have none)."""
    if aa_weights is not None and hasattr(aa, "predict_filters"):
        hidden_state, filters = aa(hidden_state, return_filters=True)
        aa_weights.append(filters)
        return hidden_state
    return aa(hidden_state)


class AntiAliasedResNetConvLayer(nn.Module):
    """Conv -> BN -> activation with dilation-aware "same" padding (transformers' `ResNetConvLayer` ignores dilation)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        dilation: int = 1,
        activation: str | None = "relu",
    ) -> None:
        super().__init__()
        self.convolution = nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size=kernel_size,
            stride=stride,
            padding=dilation * (kernel_size // 2),
            dilation=dilation,
            bias=False,
        )
        self.normalization = nn.BatchNorm2d(out_channels)
        self.activation = ACT2FN[activation] if activation is not None else nn.Identity()

    def forward(self, hidden_state: Tensor) -> Tensor:
        return self.activation(self.normalization(self.convolution(hidden_state)))


class AntiAliasedResNetEmbeddings(nn.Module):
    """Stem: 7x7/s2 conv, then MaxPool(3, s2, pad 1) (plain) or MaxPool(2, s1) -> filter(s2) (anti-aliased)."""

    def __init__(self, config: AntiAliasedResNetConfig) -> None:
        super().__init__()
        self.embedder = AntiAliasedResNetConvLayer(
            config.num_channels, config.embedding_size, kernel_size=7, stride=2, activation=config.hidden_act
        )
        if config.aa_mode != "none" and config.aa_in_stem:
            self.pooler = nn.MaxPool2d(kernel_size=2, stride=1)
            self.aa = build_antialias_filter(config, config.embedding_size, stride=2)
        else:
            self.pooler = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
            self.aa = None
        self.num_channels = config.num_channels

    def forward(self, pixel_values: Tensor, aa_weights: list[Tensor] | None = None) -> Tensor:
        if pixel_values.ndim != 4 or pixel_values.shape[1] != self.num_channels:
            raise ValueError(
                f"`pixel_values` must have shape (batch, {self.num_channels}, height, width) to match "
                f"`config.num_channels`, got {tuple(pixel_values.shape)}."
            )
        embedding = self.pooler(self.embedder(pixel_values))
        if self.aa is not None:
            embedding = run_filter(self.aa, embedding, aa_weights)
        return embedding


class AntiAliasedResNetShortCut(nn.Module):
    """Projection shortcut: [filter(s)] -> 1x1 conv (stride 1 when filtered) -> BN."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, aa: nn.Module | None) -> None:
        super().__init__()
        self.aa = aa
        self.convolution = nn.Conv2d(in_channels, out_channels, 1, stride=1 if aa is not None else stride, bias=False)
        self.normalization = nn.BatchNorm2d(out_channels)

    def forward(self, hidden_state: Tensor, aa_weights: list[Tensor] | None = None) -> Tensor:
        if self.aa is not None:
            hidden_state = run_filter(self.aa, hidden_state, aa_weights)
        return self.normalization(self.convolution(hidden_state))


class _AntiAliasedResidualLayer(nn.Module):
    """Shared residual logic: `layer[:filter_after + 1]` -> [filter] -> rest of `layer`, plus the shortcut."""

    filter_after: int

    def _build_shortcut(
        self, config: AntiAliasedResNetConfig, in_channels: int, out_channels: int, stride: int, antialias: bool
    ) -> None:
        if in_channels == out_channels and stride == 1:
            self.shortcut = nn.Identity()
            return
        aa = build_antialias_filter(config, in_channels, stride) if antialias and config.aa_in_shortcut else None
        self.shortcut = AntiAliasedResNetShortCut(in_channels, out_channels, stride, aa)

    def forward(self, hidden_state: Tensor, aa_weights: list[Tensor] | None = None) -> Tensor:
        residual = hidden_state
        for index, conv in enumerate(self.layer):
            hidden_state = conv(hidden_state)
            if index == self.filter_after and self.aa is not None:
                hidden_state = run_filter(self.aa, hidden_state, aa_weights)
        if isinstance(self.shortcut, AntiAliasedResNetShortCut):
            residual = self.shortcut(residual, aa_weights)
        return self.activation(hidden_state + residual)


class AntiAliasedResNetBasicLayer(_AntiAliasedResidualLayer):
    """Two 3x3 convs; when anti-aliased the first runs at stride 1 and a filter(s) follows it."""

    filter_after = 0

    def __init__(
        self,
        config: AntiAliasedResNetConfig,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        dilation: int = 1,
        first_dilation: int | None = None,
        antialias: bool = False,
    ) -> None:
        super().__init__()
        first_dilation = first_dilation or dilation
        self._build_shortcut(config, in_channels, out_channels, stride, antialias)
        self.layer = nn.Sequential(
            AntiAliasedResNetConvLayer(
                in_channels,
                out_channels,
                stride=1 if antialias else stride,
                dilation=first_dilation,
                activation=config.hidden_act,
            ),
            AntiAliasedResNetConvLayer(out_channels, out_channels, dilation=dilation, activation=None),
        )
        self.aa = build_antialias_filter(config, out_channels, stride) if antialias else None
        self.activation = ACT2FN[config.hidden_act]


class AntiAliasedResNetBottleNeckLayer(_AntiAliasedResidualLayer):
    """1x1 -> 3x3 -> 1x1 (stride on the 3x3, v1.5); when anti-aliased the 3x3 runs at stride 1 and a filter follows it."""

    filter_after = 1

    def __init__(
        self,
        config: AntiAliasedResNetConfig,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        dilation: int = 1,
        first_dilation: int | None = None,
        antialias: bool = False,
        reduction: int = 4,
    ) -> None:
        super().__init__()
        first_dilation = first_dilation or dilation
        width = out_channels // reduction
        self._build_shortcut(config, in_channels, out_channels, stride, antialias)
        self.layer = nn.Sequential(
            AntiAliasedResNetConvLayer(in_channels, width, kernel_size=1, activation=config.hidden_act),
            AntiAliasedResNetConvLayer(
                width, width, stride=1 if antialias else stride, dilation=first_dilation, activation=config.hidden_act
            ),
            AntiAliasedResNetConvLayer(width, out_channels, kernel_size=1, activation=None),
        )
        self.aa = build_antialias_filter(config, width, stride) if antialias else None
        self.activation = ACT2FN[config.hidden_act]


class AntiAliasedResNetStage(nn.Module):
    """A stage of residual layers; only its first layer can subsample (or, when dilated, filter at stride 1)."""

    def __init__(
        self,
        config: AntiAliasedResNetConfig,
        stage_index: int,
        in_channels: int,
        out_channels: int,
        stride: int,
        dilation: int,
        previous_dilation: int,
    ) -> None:
        super().__init__()
        layer_class = (
            AntiAliasedResNetBottleNeckLayer if config.layer_type == "bottleneck" else AntiAliasedResNetBasicLayer
        )
        strided = config.stage_is_strided(stage_index)
        antialias = strided and config.stage_is_antialiased(stage_index)
        first = layer_class(
            config, in_channels, out_channels, stride, dilation, first_dilation=previous_dilation, antialias=antialias
        )
        rest = [
            layer_class(config, out_channels, out_channels, dilation=dilation)
            for _ in range(config.depths[stage_index] - 1)
        ]
        self.layers = nn.Sequential(first, *rest)

    def forward(self, hidden_state: Tensor, aa_weights: list[Tensor] | None = None) -> Tensor:
        for layer in self.layers:
            hidden_state = layer(hidden_state, aa_weights)
        return hidden_state


class AntiAliasedResNetEncoder(nn.Module):
    """
    The residual stages. `replace_stride_with_dilation` (one bool per stage after the first) overrides the config's,
    which is how the segmentation model runs the same weights at output stride 16 or 8.
    """

    def __init__(
        self, config: AntiAliasedResNetConfig, replace_stride_with_dilation: list[bool] | None = None
    ) -> None:
        super().__init__()
        dilate = list(replace_stride_with_dilation or config.replace_stride_with_dilation)
        self.stages = nn.ModuleList()
        in_sizes = [config.embedding_size, *config.hidden_sizes[:-1]]
        dilation = 1
        for index, (in_size, out_size) in enumerate(zip(in_sizes, config.hidden_sizes)):
            previous_dilation = dilation
            stride = 2 if config.stage_is_strided(index) else 1
            if index > 0 and dilate[index - 1]:
                # torchvision/DeepLab convention: the stage's first 3x3 keeps the previous dilation.
                dilation *= stride
                stride = 1
            self.stages.append(
                AntiAliasedResNetStage(config, index, in_size, out_size, stride, dilation, previous_dilation)
            )

    def forward(
        self, hidden_state: Tensor, output_hidden_states: bool = False, aa_weights: list[Tensor] | None = None
    ) -> tuple[Tensor, tuple[Tensor, ...] | None]:
        hidden_states = (hidden_state,) if output_hidden_states else None
        for stage in self.stages:
            hidden_state = stage(hidden_state, aa_weights)
            if output_hidden_states:
                hidden_states = hidden_states + (hidden_state,)
        return hidden_state, hidden_states


class AntiAliasedResNetPreTrainedModel(PreTrainedModel):
    config_class = AntiAliasedResNetConfig
    config: AntiAliasedResNetConfig
    base_model_prefix = "resnet"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    _no_split_modules = ["AntiAliasedResNetConvLayer", "AntiAliasedResNetShortCut"]

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, nn.Conv2d):
            # Filter predictors included: the released code initialises them like every other conv.
            init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            # Same as `nn.Linear.reset_parameters` (and transformers' ResNet).
            init.kaiming_uniform_(module.weight, a=math.sqrt(5))
            if module.bias is not None:
                fan_in = module.weight.shape[1]
                bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
                init.uniform_(module.bias, -bound, bound)
        elif isinstance(module, nn.BatchNorm2d):
            init.ones_(module.weight)
            init.zeros_(module.bias)
            init.zeros_(module.running_mean)
            init.ones_(module.running_var)
            if module.num_batches_tracked is not None:
                init.zeros_(module.num_batches_tracked)
        elif isinstance(module, BlurPool):
            # Non-persistent buffer: rebuilt here because checkpoints do not carry it.
            init.copy_(module.filt, binomial_filter(module.kernel_size)[None, None].expand_as(module.filt))


class AntiAliasedResNetModel(AntiAliasedResNetPreTrainedModel):
    """Stem + stages + global average pool; returns [`AntiAliasedResNetModelOutput`]."""

    def __init__(
        self, config: AntiAliasedResNetConfig, replace_stride_with_dilation: list[bool] | None = None
    ) -> None:
        super().__init__(config)
        self.embedder = AntiAliasedResNetEmbeddings(config)
        self.encoder = AntiAliasedResNetEncoder(config, replace_stride_with_dilation)
        self.pooler = nn.AdaptiveAvgPool2d((1, 1))
        self.post_init()

    def forward(
        self,
        pixel_values: Tensor,
        output_hidden_states: bool | None = None,
        output_aa_weights: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> AntiAliasedResNetModelOutput | tuple:
        r"""
        Args:
            pixel_values (`torch.FloatTensor` of shape `(batch, num_channels, height, width)`):
                Normalised images (see [`AntiAliasedResNetImageProcessor`]).
            output_hidden_states (`bool`, *optional*):
                Return the stem output and every stage's output.
            output_aa_weights (`bool`, *optional*):
                Return the filters predicted by every adaptive filter module.
            return_dict (`bool`, *optional*):
                Return a [`AntiAliasedResNetModelOutput`] instead of a tuple.
        """
        output_hidden_states = (
            self.config.output_hidden_states if output_hidden_states is None else output_hidden_states
        )
        output_aa_weights = self.config.output_aa_weights if output_aa_weights is None else output_aa_weights
        return_dict = self.config.return_dict if return_dict is None else return_dict
        aa_weights: list[Tensor] | None = [] if output_aa_weights else None

        embedding = self.embedder(pixel_values, aa_weights)
        last_hidden_state, hidden_states = self.encoder(embedding, output_hidden_states, aa_weights)
        pooled = self.pooler(last_hidden_state)
        aa_weights = tuple(aa_weights) if aa_weights is not None else None
        if not return_dict:
            return tuple(v for v in (last_hidden_state, pooled, hidden_states, aa_weights) if v is not None)
        return AntiAliasedResNetModelOutput(
            last_hidden_state=last_hidden_state,
            pooler_output=pooled,
            hidden_states=hidden_states,
            aa_weights=aa_weights,
        )


class AntiAliasedResNetForImageClassification(AntiAliasedResNetPreTrainedModel):
    """Anti-aliased ResNet with a linear classifier on the pooled features (`classifier.1`, as in transformers)."""

    # Every conv of stem, blocks and shortcuts, plus the filter predictors; the linear head is trained in full.
    default_lora_target_modules: list[str] = ["convolution", "predictor"]
    default_lora_modules_to_save: list[str] = ["classifier"]

    def __init__(self, config: AntiAliasedResNetConfig) -> None:
        super().__init__(config)
        self.num_labels = config.num_labels
        self.resnet = AntiAliasedResNetModel(config)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(config.hidden_sizes[-1], config.num_labels) if config.num_labels > 0 else nn.Identity(),
        )
        self.post_init()

    def forward(
        self,
        pixel_values: Tensor | None = None,
        labels: Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> ImageClassifierOutputWithNoAttention | tuple:
        r"""
        Args:
            pixel_values (`torch.FloatTensor` of shape `(batch, num_channels, height, width)`):
                Normalised images.
            labels (`torch.LongTensor` of shape `(batch,)` or `torch.FloatTensor` of shape `(batch, num_labels)`, *optional*):
                Class indices in `[0, num_labels)`, or soft targets (e.g. mixup); returns the loss when given.
            output_hidden_states (`bool`, *optional*):
                Also return the backbone's hidden states.
            return_dict (`bool`, *optional*):
                Return a `ImageClassifierOutputWithNoAttention` instead of a tuple.
        """
        if pixel_values is None:
            raise ValueError("`pixel_values` is required.")
        return_dict = self.config.return_dict if return_dict is None else return_dict
        outputs = self.resnet(
            pixel_values, output_hidden_states=output_hidden_states, output_aa_weights=False, return_dict=True
        )
        logits = self.classifier(outputs.pooler_output)
        loss = image_classification_loss(logits, labels, self.config.problem_type) if labels is not None else None
        if not return_dict:
            output = (logits,) + ((outputs.hidden_states,) if outputs.hidden_states is not None else ())
            return ((loss,) + output) if loss is not None else output
        return ImageClassifierOutputWithNoAttention(loss=loss, logits=logits, hidden_states=outputs.hidden_states)


class AntiAliasedResNetBackbone(BackboneMixin, AntiAliasedResNetPreTrainedModel):
    """Multi-scale features (`stem`, `stage1`..`stage4`, chosen by `config.out_features`) for dense heads."""

    has_attentions = False

    def __init__(self, config: AntiAliasedResNetConfig) -> None:
        super().__init__(config)
        self.num_features = [config.embedding_size] + list(config.hidden_sizes)
        self.embedder = AntiAliasedResNetEmbeddings(config)
        self.encoder = AntiAliasedResNetEncoder(config)
        self.post_init()

    @can_return_tuple
    @filter_output_hidden_states
    def forward(
        self,
        pixel_values: Tensor,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> BackboneOutput:
        r"""
        Args:
            pixel_values (`torch.FloatTensor` of shape `(batch, num_channels, height, width)`):
                Normalised images.
            output_hidden_states (`bool`, *optional*):
                Also return every stage's output.
            return_dict (`bool`, *optional*):
                Return a `BackboneOutput` instead of a tuple.
        """
        output_hidden_states = (
            self.config.output_hidden_states if output_hidden_states is None else output_hidden_states
        )
        embedding = self.embedder(pixel_values)
        _, hidden_states = self.encoder(embedding, output_hidden_states=True)
        feature_maps = tuple(hidden_states[self.stage_names.index(name)] for name in self.out_features)
        return BackboneOutput(
            feature_maps=feature_maps, hidden_states=hidden_states if output_hidden_states else None, attentions=None
        )


class AntiAliasedResNetASPP(nn.Module):
    """Atrous spatial pyramid pooling: 1x1, three dilated 3x3 and an image-pool branch, concatenated and projected."""

    def __init__(self, in_channels: int, channels: int, rates: list[int], dropout: float) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            [AntiAliasedResNetConvLayer(in_channels, channels, kernel_size=1)]
            + [AntiAliasedResNetConvLayer(in_channels, channels, dilation=rate) for rate in rates]
        )
        self.pooling = nn.Sequential(nn.AdaptiveAvgPool2d(1), AntiAliasedResNetConvLayer(in_channels, channels, 1))
        self.project = AntiAliasedResNetConvLayer(channels * (len(rates) + 2), channels, kernel_size=1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, hidden_state: Tensor) -> Tensor:
        branches = [conv(hidden_state) for conv in self.convs]
        pooled = self.pooling(hidden_state)
        branches.append(pooled.expand(-1, -1, *hidden_state.shape[-2:]))
        return self.dropout(self.project(torch.cat(branches, dim=1)))


class AntiAliasedResNetDeepLabV3PlusHead(nn.Module):
    """DeepLabv3+ decoder: ASPP on the deep map, fused with a 1x1-projected low-level map at stride 4."""

    def __init__(self, config: AntiAliasedResNetConfig, low_level_channels: int, high_level_channels: int) -> None:
        super().__init__()
        scale = 16 / config.semantic_output_stride  # the standard rates are for output stride 16
        rates = [max(1, int(rate * scale)) for rate in config.aspp_rates]
        self.aspp = AntiAliasedResNetASPP(high_level_channels, config.decoder_channels, rates, config.aspp_dropout)
        self.low_level_projection = AntiAliasedResNetConvLayer(
            low_level_channels, config.decoder_low_level_channels, kernel_size=1
        )
        self.fuse = AntiAliasedResNetConvLayer(
            config.decoder_channels + config.decoder_low_level_channels, config.decoder_channels
        )
        self.classifier = nn.Conv2d(config.decoder_channels, config.num_labels, kernel_size=1)

    def forward(self, low_level: Tensor, high_level: Tensor) -> Tensor:
        context = self.aspp(high_level)
        context = F.interpolate(context, size=low_level.shape[-2:], mode="bilinear", align_corners=False)
        fused = self.fuse(torch.cat([context, self.low_level_projection(low_level)], dim=1))
        return self.classifier(fused)


class AntiAliasedResNetForSemanticSegmentation(AntiAliasedResNetPreTrainedModel):
    """
    DeepLabv3+ on the anti-aliased ResNet. The backbone runs at `config.semantic_output_stride` (16 by default:
    stage 4 dilated, its filters kept at stride 1); logits come out at 1/4 of the input resolution. The backbone's
    dilation pattern follows from `semantic_output_stride` alone (`config.replace_stride_with_dilation` applies to the
    base model and `AntiAliasedResNetBackbone`), and its parameter names match the classifier's (`resnet.*`), so an
    ImageNet-style classification checkpoint initialises it directly.
    """

    # PEFT's LoRA conv ignores dilation, so the dilated 3x3 convs of the OS16/OS8 stages cannot be targeted: the
    # defaults are the undilated 1x1 convs (bottleneck `layer.2`, shortcuts) and the filter predictors.
    default_lora_target_modules: list[str] = ["layer.2.convolution", "shortcut.convolution", "predictor"]
    default_lora_modules_to_save: list[str] = ["decode_head"]

    def __init__(self, config: AntiAliasedResNetConfig) -> None:
        super().__init__(config)
        num_dilated = {32: 0, 16: 1, 8: 2}[config.semantic_output_stride]
        num_later = len(config.depths) - 1
        dilate = [index >= num_later - num_dilated for index in range(num_later)]
        self.resnet = AntiAliasedResNetModel(config, replace_stride_with_dilation=dilate)
        stage_names = ["stem"] + [f"stage{i}" for i in range(1, len(config.depths) + 1)]
        if config.low_level_stage not in stage_names:
            raise ValueError(f"`low_level_stage` must be one of {stage_names}, got {config.low_level_stage!r}.")
        self.low_level_index = stage_names.index(config.low_level_stage)
        low_channels = ([config.embedding_size] + list(config.hidden_sizes))[self.low_level_index]
        self.decode_head = AntiAliasedResNetDeepLabV3PlusHead(config, low_channels, config.hidden_sizes[-1])
        self.post_init()

    def forward(
        self,
        pixel_values: Tensor | None = None,
        labels: Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> SemanticSegmenterOutput | tuple:
        r"""
        Args:
            pixel_values (`torch.FloatTensor` of shape `(batch, num_channels, height, width)`):
                Normalised images.
            labels (`torch.LongTensor` of shape `(batch, height, width)`, *optional*):
                Class index per pixel, `config.semantic_loss_ignore_index` (255) ignored; returns the loss when given.
            output_hidden_states (`bool`, *optional*):
                Also return the backbone's hidden states.
            return_dict (`bool`, *optional*):
                Return a `SemanticSegmenterOutput` instead of a tuple.
        """
        if pixel_values is None:
            raise ValueError("`pixel_values` is required.")
        if labels is not None and (labels.ndim != 3 or labels.shape[0] != pixel_values.shape[0]):
            raise ValueError(
                f"`labels` must have shape (batch, height, width) with batch {pixel_values.shape[0]}, got "
                f"{tuple(labels.shape)}."
            )
        return_dict = self.config.return_dict if return_dict is None else return_dict
        outputs = self.resnet(pixel_values, output_hidden_states=True, output_aa_weights=False, return_dict=True)
        hidden_states = outputs.hidden_states
        logits = self.decode_head(hidden_states[self.low_level_index], hidden_states[-1])

        loss = None
        if labels is not None:
            upsampled = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)
            loss = F.cross_entropy(upsampled, labels.long(), ignore_index=self.config.semantic_loss_ignore_index)

        kept_hidden = hidden_states if output_hidden_states else None
        if not return_dict:
            output = (logits,) + ((kept_hidden,) if kept_hidden is not None else ())
            return ((loss,) + output) if loss is not None else output
        return SemanticSegmenterOutput(loss=loss, logits=logits, hidden_states=kept_hidden, attentions=None)


__all__ = [
    "AntiAliasedResNetBackbone",
    "AntiAliasedResNetForImageClassification",
    "AntiAliasedResNetForSemanticSegmentation",
    "AntiAliasedResNetModel",
    "AntiAliasedResNetModelOutput",
    "AntiAliasedResNetPreTrainedModel",
]
