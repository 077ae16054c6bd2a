"""PyTorch PS-ViT: vision transformer with progressive sampling (Yue, Sun et al., ICCV 2021; thesis chapter 3).

A convolutional stem produces a stride-4 feature map; `n x n` points start on a regular grid over it and, for N
iterations, features are bilinearly sampled at the points, a position encoding of the points' coordinates and the
previous iteration's tokens are added, one transformer layer runs and a linear head predicts a 2-D offset per
point. The last iteration's tokens (plus a class token) go through N_v further transformer layers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import ImageClassifierOutput, SemanticSegmenterOutput
from transformers.utils import ModelOutput

from ...modules.attention import TransformerEncoderLayer
from ...modules.classification_loss import image_classification_loss
from .configuration_ps_vit import PsVitConfig, normalize_grid_size

STEM_STRIDE = 4


# ----------------------------------------------------------------------------------------------------------------
# Sampling primitives


def initial_sampling_points(
    feature_height: int,
    feature_width: int,
    grid_size: tuple[int, int],
    device: torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Regular grid of Eq. 3.2: cell centres of an `n_h x n_w` partition of the feature map.

    Returns:
        `(n_h * n_w, 2)` points `(y, x)` in feature-map pixels, row-major (token `i` is row `i // n_w`).
    """
    n_h, n_w = grid_size
    step_y, step_x = feature_height / n_h, feature_width / n_w
    ys = torch.arange(n_h, device=device, dtype=dtype) * step_y + step_y / 2
    xs = torch.arange(n_w, device=device, dtype=dtype) * step_x + step_x / 2
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_y.reshape(-1), grid_x.reshape(-1)], dim=-1)


def bilinear_sample(feature_map: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Bilinear interpolation of `feature_map` at fractional points, zero outside the map.

    Pixel centres sit at integer coordinates and locations outside `[0, H-1] x [0, W-1]` contribute zero, i.e.
    `sum_q max(0, 1-|q_y-y|) max(0, 1-|q_x-x|) F[q]` (spec §3.2). Differentiable w.r.t. both arguments.

    Args:
        feature_map: `(batch, channels, height, width)`.
        points: `(batch, num_points, 2)` as `(y, x)` in feature-map pixels.

    Returns:
        `(batch, num_points, channels)`.
    """
    height, width = feature_map.shape[-2:]
    points = points.to(feature_map.dtype)
    # align_corners=True maps -1/+1 onto the centres of the first/last pixel, so pixel index i <-> 2i/(size-1)-1
    grid_x = 2.0 * points[..., 1] / max(width - 1, 1) - 1.0
    grid_y = 2.0 * points[..., 0] / max(height - 1, 1) - 1.0
    grid = torch.stack([grid_x, grid_y], dim=-1).unsqueeze(2)  # grid_sample wants (x, y)
    sampled = F.grid_sample(feature_map, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return sampled.squeeze(-1).transpose(1, 2)


# ----------------------------------------------------------------------------------------------------------------
# Outputs


@dataclass
class PsVitModelOutput(ModelOutput):
    """
    Output of [`PsVitModel`].

    Args:
        last_hidden_state (`torch.FloatTensor` of shape `(batch, 1 + n_h * n_w, hidden_size)`):
            Tokens after the final LayerNorm, class token first (no class token if `use_cls_token=False`).
        pooler_output (`torch.FloatTensor` of shape `(batch, hidden_size)`):
            Class token (or token mean).
        sampling_points (`torch.FloatTensor` of shape `(batch, N, n_h * n_w, 2)`):
            Points `p_1 .. p_N` of every sampling iteration, `(y, x)` in feature-map pixels (detached). Input-pixel
            coordinates are `4 * p` (stem stride).
        hidden_states (`tuple(torch.FloatTensor)`, *optional*):
            Input of the first sampling layer, then the output of each of the N sampling and N_v encoder layers.
        attentions (`tuple(torch.FloatTensor)`, *optional*):
            Attention probabilities of the N sampling layers `(batch, heads, n^2, n^2)` and N_v encoder layers
            `(batch, heads, 1 + n^2, 1 + n^2)`.
        feature_map (`torch.FloatTensor` of shape `(batch, hidden_size, H/4, W/4)`, *optional*):
            Stem output the points sample from.
    """

    last_hidden_state: torch.FloatTensor | None = None
    pooler_output: torch.FloatTensor | None = None
    sampling_points: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None
    feature_map: torch.FloatTensor | None = None


@dataclass
class PsVitImageClassifierOutput(ImageClassifierOutput):
    """[`ImageClassifierOutput`] plus `sampling_points` `(batch, N, n_h * n_w, 2)` (see [`PsVitModelOutput`])."""

    sampling_points: torch.FloatTensor | None = None


@dataclass
class PsVitSemanticSegmenterOutput(SemanticSegmenterOutput):
    """[`SemanticSegmenterOutput`] (logits at 1/4 of the input size) plus `sampling_points`."""

    sampling_points: torch.FloatTensor | None = None


# ----------------------------------------------------------------------------------------------------------------
# Modules


class PsVitBottleneck(nn.Module):
    """ResNet bottleneck `1x1 -> 3x3 -> 1x1` (stride 1) with a projection shortcut when the width changes."""

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, mid_channels, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid_channels)
        self.conv2 = nn.Conv2d(mid_channels, mid_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid_channels)
        self.conv3 = nn.Conv2d(mid_channels, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = (
            nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels))
            if in_channels != out_channels
            else None
        )

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        shortcut = hidden_states if self.downsample is None else self.downsample(hidden_states)
        hidden_states = self.relu(self.bn1(self.conv1(hidden_states)))
        hidden_states = self.relu(self.bn2(self.conv2(hidden_states)))
        return self.relu(self.bn3(self.conv3(hidden_states)) + shortcut)


class PsVitStem(nn.Module):
    """ResNet-50 stem plus two bottlenecks (spec §3.1): stride-4 feature map with `hidden_size` channels."""

    def __init__(self, config: PsVitConfig) -> None:
        super().__init__()
        self.num_channels = config.num_channels
        self.conv1 = nn.Conv2d(config.num_channels, config.stem_channels, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(config.stem_channels)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        first, second = config.stem_out_channels
        mid = config.stem_bottleneck_channels
        self.layer1 = nn.Sequential(
            PsVitBottleneck(config.stem_channels, mid, first), PsVitBottleneck(first, mid, second)
        )

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.layer1(self.maxpool(self.relu(self.bn1(self.conv1(pixel_values)))))


class PsVitOffsetHead(nn.Linear):
    """`Linear(C, 2)` predicting `(dy, dx)` per token; zero-initialised so training starts from the regular grid."""


def _encoder_layer(config: PsVitConfig, drop_path: float) -> TransformerEncoderLayer:
    return TransformerEncoderLayer(
        hidden_size=config.hidden_size,
        num_heads=config.num_attention_heads,
        intermediate_size=config.intermediate_size,
        qkv_bias=config.qkv_bias,
        attention_scale=config.attention_scale,
        hidden_act=config.hidden_act,
        dropout=config.hidden_dropout_prob,
        attention_dropout=config.attention_probs_dropout_prob,
        drop_path=drop_path,
        layer_norm_eps=config.layer_norm_eps,
    )


def _drop_path_rates(config: PsVitConfig) -> list[float]:
    total = config.num_sampling_iterations + config.num_hidden_layers
    # plain Python so that building the model under `torch.device("meta")` works
    return [config.drop_path_rate * i / (total - 1) for i in range(total)] if total > 1 else [0.0] * total


class PsVitProgressiveSampler(nn.Module):
    """Progressive sampling module (spec §3.2): N rounds of sample -> position-encode -> encode -> offset.

    With `share_sampling_weights` one encoder layer and one offset head serve every iteration (the "†" models).
    """

    def __init__(self, config: PsVitConfig) -> None:
        super().__init__()
        self.num_iterations = config.num_sampling_iterations
        self.offset_scale = float(config.offset_scale)
        self.detach_points = config.detach_sampling_points
        self.position_embeddings = nn.Linear(2, config.hidden_size)
        rates = _drop_path_rates(config)
        num_layers = 1 if config.share_sampling_weights else self.num_iterations
        num_heads = min(1, self.num_iterations - 1) if config.share_sampling_weights else self.num_iterations - 1
        self.layers = nn.ModuleList([_encoder_layer(config, rates[t]) for t in range(num_layers)])
        self.offset_heads = nn.ModuleList(
            [PsVitOffsetHead(config.hidden_size, 2, bias=config.offset_bias) for _ in range(num_heads)]
        )

    def forward(
        self,
        feature_map: torch.Tensor,
        grid_size: tuple[int, int],
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
        """
        Args:
            feature_map: stem output `(batch, C, H_f, W_f)`.
            grid_size: `(n_h, n_w)` sampling points per axis.

        Returns:
            tokens `(batch, n_h * n_w, C)`, points `(batch, N, n_h * n_w, 2)` (detached), hidden states, attentions.
        """
        batch_size, _, feature_height, feature_width = feature_map.shape
        points = initial_sampling_points(feature_height, feature_width, grid_size, feature_map.device)
        points = points.unsqueeze(0).expand(batch_size, -1, -1)
        normaliser = points.new_tensor([feature_height, feature_width])
        tokens = None
        all_points, hidden_states, attentions = [], (), ()
        for t in range(self.num_iterations):
            layer = self.layers[min(t, len(self.layers) - 1)]
            sampled = bilinear_sample(feature_map, points)
            # position encoding sees detached coordinates: offsets learn only through the next sampling step
            coordinates = points.detach() if self.detach_points else points
            hidden = sampled + self.position_embeddings(coordinates / normaliser).to(sampled.dtype)
            if tokens is not None:
                hidden = hidden + tokens
            if output_hidden_states and t == 0:
                hidden_states += (hidden,)
            tokens, weights = layer(hidden, output_attentions=output_attentions)
            all_points.append(points.detach())
            if output_hidden_states:
                hidden_states += (tokens,)
            if output_attentions:
                attentions += (weights,)
            if t < self.num_iterations - 1:
                head = self.offset_heads[min(t, len(self.offset_heads) - 1)]
                offsets = head(tokens).float() * self.offset_scale
                base = points.detach() if self.detach_points else points
                points = base + offsets
        return tokens, torch.stack(all_points, dim=1), hidden_states, attentions


class PsVitEncoder(nn.Module):
    """Vision transformer module: N_v encoder layers on `[cls] + tokens` (no position embedding, spec §3.4)."""

    def __init__(self, config: PsVitConfig) -> None:
        super().__init__()
        rates = _drop_path_rates(config)[config.num_sampling_iterations :]
        self.layers = nn.ModuleList([_encoder_layer(config, rates[j]) for j in range(config.num_hidden_layers)])

    def forward(
        self, hidden_states: torch.Tensor, output_attentions: bool = False, output_hidden_states: bool = False
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
        all_hidden, attentions = (), ()
        for layer in self.layers:
            hidden_states, weights = layer(hidden_states, output_attentions=output_attentions)
            if output_hidden_states:
                all_hidden += (hidden_states,)
            if output_attentions:
                attentions += (weights,)
        return hidden_states, all_hidden, attentions


class PsVitPreTrainedModel(PreTrainedModel):
    """Weight initialisation (spec §3.6) and loading glue shared by the PS-ViT heads."""

    config_class = PsVitConfig
    config: PsVitConfig
    base_model_prefix = "ps_vit"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True
    _no_split_modules = ["TransformerEncoderLayer"]

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, PsVitOffsetHead):
            init.zeros_(module.weight)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            init.trunc_normal_(module.weight, std=self.config.initializer_range)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Conv2d):
            # PyTorch's default conv init (the reference does not re-initialise its convolutions)
            init.kaiming_uniform_(module.weight, a=math.sqrt(5))
            if module.bias is not None:
                bound = 1 / math.sqrt(module.weight[0].numel())
                init.uniform_(module.bias, -bound, bound)
        elif isinstance(module, (nn.LayerNorm, nn.BatchNorm2d)):
            init.ones_(module.weight)
            init.zeros_(module.bias)
            if isinstance(module, nn.BatchNorm2d):
                init.zeros_(module.running_mean)
                init.ones_(module.running_var)
                init.zeros_(module.num_batches_tracked)
        elif isinstance(module, PsVitModel) and module.cls_token is not None:
            init.trunc_normal_(module.cls_token, std=self.config.initializer_range)


class PsVitModel(PsVitPreTrainedModel):
    """Bare PS-ViT: stem, progressive sampler, vision transformer module and final LayerNorm."""

    def __init__(self, config: PsVitConfig) -> None:
        super().__init__(config)
        self.embeddings = PsVitStem(config)
        self.sampler = PsVitProgressiveSampler(config)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size)) if config.use_cls_token else None
        self.encoder = PsVitEncoder(config)
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.post_init()

    def _check_pixel_values(self, pixel_values: torch.Tensor) -> None:
        if not isinstance(pixel_values, torch.Tensor):
            raise TypeError(f"`pixel_values` must be a torch.Tensor, got {type(pixel_values).__name__}.")
        if pixel_values.ndim != 4 or pixel_values.shape[1] != self.config.num_channels:
            raise ValueError(
                f"`pixel_values` must have shape (batch, {self.config.num_channels}, height, width), "
                f"got {tuple(pixel_values.shape)}."
            )
        height, width = pixel_values.shape[-2:]
        if height % STEM_STRIDE or width % STEM_STRIDE:
            raise ValueError(
                f"`pixel_values` height and width must be divisible by the stem stride {STEM_STRIDE} so that "
                f"sampling points map to input pixels exactly; got {height}x{width}."
            )

    def forward(
        self,
        pixel_values: torch.Tensor,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        output_feature_map: bool | None = None,
        num_sampling_points: int | tuple[int, int] | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> PsVitModelOutput | tuple:
        r"""
        Args:
            pixel_values (`torch.FloatTensor` of shape `(batch, num_channels, height, width)`):
                Images; height and width must be divisible by 4.
            output_attentions (`bool`, *optional*): return the attention probabilities of every layer.
            output_hidden_states (`bool`, *optional*): return the hidden states of every layer.
            output_feature_map (`bool`, *optional*): return the stem feature map.
            num_sampling_points (`int` or `(n_h, n_w)`, *optional*): override `config.num_sampling_points` for
                this call (the weights do not depend on it).
            return_dict (`bool`, *optional*): return a [`PsVitModelOutput`] instead of a tuple.
        """
        output_attentions = output_attentions if output_attentions is not None else self.config.output_attentions
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        grid_size = normalize_grid_size(
            num_sampling_points if num_sampling_points is not None else self.config.num_sampling_points,
            "num_sampling_points",
        )
        self._check_pixel_values(pixel_values)
        pixel_values = pixel_values.to(self.embeddings.conv1.weight.dtype)

        feature_map = self.embeddings(pixel_values)
        tokens, points, sampler_hidden, sampler_attentions = self.sampler(
            feature_map, grid_size, output_attentions, output_hidden_states
        )
        if self.cls_token is not None:
            tokens = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1).to(tokens.dtype), tokens], dim=1)
        hidden, encoder_hidden, encoder_attentions = self.encoder(tokens, output_attentions, output_hidden_states)
        last_hidden_state = self.layernorm(hidden)
        pooled = last_hidden_state[:, 0] if self.cls_token is not None else last_hidden_state.mean(dim=1)

        output = PsVitModelOutput(
            last_hidden_state=last_hidden_state,
            pooler_output=pooled,
            sampling_points=points,
            hidden_states=sampler_hidden + encoder_hidden if output_hidden_states else None,
            attentions=sampler_attentions + encoder_attentions if output_attentions else None,
            feature_map=feature_map if output_feature_map else None,
        )
        return output if return_dict else output.to_tuple()


class PsVitForImageClassification(PsVitPreTrainedModel):
    """PS-ViT with a linear classifier on the class token (spec §3.4)."""

    default_lora_target_modules: list[str] = ["q_proj", "v_proj"]
    default_lora_modules_to_save: list[str] = ["classifier"]

    def __init__(self, config: PsVitConfig) -> None:
        super().__init__(config)
        self.num_labels = config.num_labels
        self.ps_vit = PsVitModel(config)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels) if config.num_labels > 0 else nn.Identity()
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        num_sampling_points: int | tuple[int, int] | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> PsVitImageClassifierOutput | tuple:
        r"""
        Args:
            pixel_values (`torch.FloatTensor` of shape `(batch, num_channels, height, width)`): images.
            labels (`torch.LongTensor` of shape `(batch,)` or `torch.FloatTensor` of shape `(batch, num_labels)`,
                *optional*): class ids (cross-entropy with `config.label_smoothing`) or soft targets such as
                Mixup / CutMix / TransMix mixtures (soft-target cross-entropy).
            output_attentions, output_hidden_states, num_sampling_points: see [`PsVitModel.forward`].
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        outputs = self.ps_vit(
            pixel_values,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            num_sampling_points=num_sampling_points,
            return_dict=True,
        )
        logits = self.classifier(outputs.pooler_output)
        loss = None
        if labels is not None:
            loss = image_classification_loss(
                logits, labels, self.config.problem_type, label_smoothing=self.config.label_smoothing
            )
        output = PsVitImageClassifierOutput(
            loss=loss,
            logits=logits,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            sampling_points=outputs.sampling_points,
        )
        return output if return_dict else output.to_tuple()


class PsVitSegmentationDecoder(nn.Module):
    """Dense decoder of spec §7.6: tokens back to the stride-4 grid, fused with the stem features.

    `"point"` scatters each token from its final sampling point with a Gaussian kernel (normalised over tokens);
    `"grid"` reshapes the tokens on the initial grid and resizes bilinearly (ignores where the points moved).
    """

    def __init__(self, config: PsVitConfig) -> None:
        super().__init__()
        hidden = config.decoder_hidden_size
        self.decoder_type = config.decoder_type
        self.kernel_sigma = float(config.decoder_kernel_sigma)
        self.token_proj = nn.Linear(config.hidden_size, hidden)
        self.feature_proj = nn.Conv2d(config.hidden_size, hidden, 1)
        self.fuse = nn.Conv2d(2 * hidden, hidden, 3, padding=1, bias=False)
        self.fuse_norm = nn.BatchNorm2d(hidden)
        self.relu = nn.ReLU(inplace=True)
        self.classifier = nn.Conv2d(hidden, config.num_labels, 1)

    def scatter_tokens(
        self, values: torch.Tensor, points: torch.Tensor, feature_size: tuple[int, int], grid_size: tuple[int, int]
    ) -> torch.Tensor:
        """Kernel regression of `values` `(B, n, D)` placed at `points` `(B, n, 2)` onto `(B, D, H_f, W_f)`."""
        height, width = feature_size
        if self.decoder_type == "grid":
            grid = values.transpose(1, 2).reshape(values.shape[0], -1, *grid_size)
            return F.interpolate(grid, size=feature_size, mode="bilinear", align_corners=False)
        sigma = points.new_tensor([height / grid_size[0], width / grid_size[1]]) * self.kernel_sigma
        # feature-map pixel q has coordinates (row, col), the same convention the sampler uses
        rows = torch.arange(height, device=points.device, dtype=points.dtype)
        cols = torch.arange(width, device=points.device, dtype=points.dtype)
        pixels = torch.stack(torch.meshgrid(rows, cols, indexing="ij"), dim=-1).reshape(-1, 2)
        # squared distance in units of sigma per axis: (B, H_f*W_f, n)
        delta = (pixels[None, :, None, :] - points[:, None, :, :]) / sigma
        weights = torch.softmax(-0.5 * delta.pow(2).sum(-1), dim=-1).to(values.dtype)
        return torch.bmm(weights, values).transpose(1, 2).reshape(values.shape[0], -1, height, width)

    def forward(
        self, tokens: torch.Tensor, points: torch.Tensor, feature_map: torch.Tensor, grid_size: tuple[int, int]
    ) -> torch.Tensor:
        scattered = self.scatter_tokens(self.token_proj(tokens), points, feature_map.shape[-2:], grid_size)
        fused = torch.cat([scattered, self.feature_proj(feature_map)], dim=1)
        return self.classifier(self.relu(self.fuse_norm(self.fuse(fused))))


class PsVitForSemanticSegmentation(PsVitPreTrainedModel):
    """PS-ViT with the point-scatter segmentation decoder of spec §7.6 (logits at 1/4 input resolution)."""

    default_lora_target_modules: list[str] = ["q_proj", "v_proj"]
    default_lora_modules_to_save: list[str] = ["decode_head"]

    def __init__(self, config: PsVitConfig) -> None:
        super().__init__(config)
        self.num_labels = config.num_labels
        self.ps_vit = PsVitModel(config)
        self.decode_head = PsVitSegmentationDecoder(config)
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        num_sampling_points: int | tuple[int, int] | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> PsVitSemanticSegmenterOutput | tuple:
        r"""
        Args:
            pixel_values (`torch.FloatTensor` of shape `(batch, num_channels, height, width)`): images.
            labels (`torch.LongTensor` of shape `(batch, height, width)`, *optional*): class index per pixel at any
                resolution (logits are upsampled bilinearly to it); `config.semantic_loss_ignore_index` is ignored.
            output_attentions, output_hidden_states, num_sampling_points: see [`PsVitModel.forward`].
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        outputs = self.ps_vit(
            pixel_values,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            output_feature_map=True,
            num_sampling_points=num_sampling_points,
            return_dict=True,
        )
        grid_size = normalize_grid_size(
            num_sampling_points if num_sampling_points is not None else self.config.num_sampling_points
        )
        tokens = outputs.last_hidden_state
        if self.ps_vit.cls_token is not None:
            tokens = tokens[:, 1:]
        logits = self.decode_head(tokens, outputs.sampling_points[:, -1], outputs.feature_map, grid_size)

        loss = None
        if labels is not None:
            if not isinstance(labels, torch.Tensor) or labels.ndim != 3 or labels.shape[0] != logits.shape[0]:
                raise ValueError(
                    "`labels` must be a (batch, height, width) tensor of class indices, got "
                    f"{tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__}."
                )
            upsampled = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)
            loss = F.cross_entropy(
                upsampled.float(), labels.long().to(logits.device), ignore_index=self.config.semantic_loss_ignore_index
            )
        output = PsVitSemanticSegmenterOutput(
            loss=loss,
            logits=logits,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            sampling_points=outputs.sampling_points,
        )
        return output if return_dict else output.to_tuple()


__all__ = [
    "PsVitForImageClassification",
    "PsVitForSemanticSegmentation",
    "PsVitModel",
    "PsVitPreTrainedModel",
    "bilinear_sample",
    "initial_sampling_points",
]
