"""Anti-aliasing filters applied before subsampling.

* :class:`BlurPool`: Zhang's fixed binomial low-pass filter ("LPF"), the baseline.
* :class:`AdaptiveBlurPool`: the content-aware filter of Zou et al. (dissertation seed 000, ch. 2, Eqs. 2.3/2.4):
  a small conv + BN branch predicts, at every output location and for each of ``groups`` channel groups, a
  softmax-normalised ``k x k`` filter that is applied to the input just before it is subsampled.
* :class:`ImageAdaptiveBlurPool`: the "Image Adaptive" ablation of Table 2.6 (one filter per image).

All of them map ``(N, C, H, W)`` to ``(N, C, ceil(H / s), ceil(W / s))``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

SOFTMAX_SCOPES = ("group", "joint")

# Rows of Pascal's triangle: the 1-D binomial taps for filter sizes 1..7 (spec §2.2).
_BINOMIAL_TAPS = {size: [math.comb(size - 1, i) for i in range(size)] for size in range(1, 8)}


def binomial_filter(kernel_size: int) -> torch.Tensor:
    """Normalised 2-D binomial filter (outer product of the 1-D taps), shape `(k, k)`, sums to one."""
    if kernel_size not in _BINOMIAL_TAPS:
        raise ValueError(f"`kernel_size` must be an integer in 1..7 for the binomial filter, got {kernel_size!r}.")
    taps = torch.tensor(_BINOMIAL_TAPS[kernel_size], dtype=torch.float64)
    filt = torch.outer(taps, taps)
    return (filt / filt.sum()).float()


def pad_for_filter(hidden_states: torch.Tensor, pads: tuple[int, int, int, int], mode: str) -> torch.Tensor:
    """`F.pad` with `pads = (left, right, top, bottom)`; maps too small for reflect padding fall back to replicate."""
    if not any(pads):
        return hidden_states
    height, width = hidden_states.shape[-2:]
    width_ok, height_ok = max(pads[:2]) < width, max(pads[2:]) < height
    if mode != "reflect" or (width_ok and height_ok):
        return F.pad(hidden_states, pads, mode=mode)
    # Decide per axis, so e.g. a one-row map is still reflected horizontally.
    hidden_states = F.pad(hidden_states, (*pads[:2], 0, 0), mode="reflect" if width_ok else "replicate")
    return F.pad(hidden_states, (0, 0, *pads[2:]), mode="reflect" if height_ok else "replicate")


def _check_int(name: str, value: int, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got {value!r}.")


class BlurPool(nn.Module):
    """
    Fixed depthwise binomial blur followed by subsampling (Zhang, "Making ConvNets shift-invariant again").

    Args:
        channels (`int`): number of input channels.
        kernel_size (`int`, defaults to 3): binomial filter size in 1..7; 1 is plain subsampling.
        stride (`int`, defaults to 2): subsampling factor.
        padding_mode (`str`, defaults to `"reflect"`): `F.pad` mode for the `(k-1)//2` / `ceil((k-1)/2)` padding.
    """

    def __init__(self, channels: int, kernel_size: int = 3, stride: int = 2, padding_mode: str = "reflect") -> None:
        super().__init__()
        _check_int("channels", channels)
        _check_int("stride", stride)
        self.channels, self.kernel_size, self.stride, self.padding_mode = channels, kernel_size, stride, padding_mode
        # Even sizes cannot be centred: the extra tap goes right/bottom (same as the released LPF code).
        self.pads = ((kernel_size - 1) // 2, kernel_size // 2) * 2
        # Not persistent: the filter is fully determined by the config, so checkpoints stay weight-compatible.
        self.register_buffer(
            "filt", binomial_filter(kernel_size)[None, None].repeat(channels, 1, 1, 1), persistent=False
        )

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if self.kernel_size == 1:
            return hidden_states[:, :, :: self.stride, :: self.stride]
        padded = pad_for_filter(hidden_states, self.pads, self.padding_mode)
        return F.conv2d(padded, self.filt.to(hidden_states.dtype), stride=self.stride, groups=self.channels)

    def extra_repr(self) -> str:
        return f"{self.channels}, kernel_size={self.kernel_size}, stride={self.stride}"


def _tap_slices(kernel_size: int, stride: int, out_h: int, out_w: int) -> list[tuple[int, int, slice, slice]]:
    """For each tap `t = p * k + q`: the row/col offsets and the strided slices selecting its input samples."""
    taps = []
    for tap in range(kernel_size * kernel_size):
        row, col = divmod(tap, kernel_size)
        taps.append(
            (
                row,
                col,
                slice(row, row + stride * (out_h - 1) + 1, stride),
                slice(col, col + stride * (out_w - 1) + 1, stride),
            )
        )
    return taps


def _local_filter_forward(grouped: torch.Tensor, weights: torch.Tensor, kernel_size: int, stride: int) -> torch.Tensor:
    """`grouped`: `(N, G, C/G, Hp, Wp)`; `weights`: `(N, G, k*k, Ho, Wo)` -> `(N, G, C/G, Ho, Wo)`."""
    out_h = (grouped.shape[-2] - kernel_size) // stride + 1
    out_w = (grouped.shape[-1] - kernel_size) // stride + 1
    weights = weights.unsqueeze(2)  # broadcast one filter over the channels of its group
    # On wide maps, de-interleave the input into its s*s sampling phases first (one copy of the input): every tap then
    # reads contiguous rows instead of stride-s gathers, which is ~2-4x faster on CPU. Tiny maps skip the copy.
    phases: dict[tuple[int, int], torch.Tensor] | None = {} if stride > 1 and out_w >= 8 else None
    out = None
    for row, col, rows, cols in _tap_slices(kernel_size, stride, out_h, out_w):
        if phases is None:
            window = grouped[..., rows, cols]
        else:
            key = (row % stride, col % stride)
            if key not in phases:
                phases[key] = grouped[..., key[0] :: stride, key[1] :: stride].contiguous()
            r0, c0 = row // stride, col // stride
            window = phases[key][..., r0 : r0 + out_h, c0 : c0 + out_w]
        tap = weights[:, :, :, row * kernel_size + col]
        out = tap * window if out is None else out.addcmul_(tap, window)
    return out


class _LocalFilterFunction(torch.autograd.Function):
    """
    Strided local filtering with a hand-written backward: autograd through k^2 strided slices would allocate a
    zero-filled copy of the whole input per tap; here the input gradient is accumulated in place in one buffer.
    """

    @staticmethod
    def forward(ctx, grouped: torch.Tensor, weights: torch.Tensor, kernel_size: int, stride: int) -> torch.Tensor:
        ctx.save_for_backward(grouped, weights)
        ctx.kernel_size, ctx.stride = kernel_size, stride
        return _local_filter_forward(grouped, weights, kernel_size, stride)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, None, None]:
        grouped, weights = ctx.saved_tensors
        out_h, out_w = grad_out.shape[-2:]
        grad_in = torch.zeros_like(grouped) if ctx.needs_input_grad[0] else None
        grad_weights = torch.empty_like(weights) if ctx.needs_input_grad[1] else None
        for tap, (_, _, rows, cols) in enumerate(_tap_slices(ctx.kernel_size, ctx.stride, out_h, out_w)):
            if grad_weights is not None:
                grad_weights[:, :, tap] = (grad_out * grouped[..., rows, cols]).sum(2)
            if grad_in is not None:
                grad_in[..., rows, cols].addcmul_(grad_out, weights[:, :, None, tap])
        return grad_in, grad_weights, None, None


def apply_local_filters(padded: torch.Tensor, weights: torch.Tensor, kernel_size: int, stride: int) -> torch.Tensor:
    """
    Apply per-location, per-group filters to a padded map, evaluated only at the strided output positions.

    `out[n, c, i, j] = sum_{p, q} weights[n, g(c), p * k + q, i, j] * padded[n, c, s*i + p, s*j + q]` with
    `g(c) = c // (C / G)`. Instead of an `unfold` (k^2 copies of the map) this accumulates k^2 strided views, so the
    extra memory is the output (plus, on wide maps, one de-interleaved copy of the input).

    Args:
        padded (`torch.Tensor` of shape `(N, C, H + k - 1, W + k - 1)`): input padded by `k // 2` on each side.
        weights (`torch.Tensor` of shape `(N, G, k*k, Ho, Wo)`): filters; `Ho = ceil(H / s)`; singleton `Ho`/`Wo`
            broadcast one filter over the whole map.
        kernel_size (`int`): k.
        stride (`int`): s.
    """
    batch, channels, padded_h, padded_w = padded.shape
    groups = weights.shape[1]
    out_h = (padded_h - kernel_size) // stride + 1
    out_w = (padded_w - kernel_size) // stride + 1
    weights = weights.expand(-1, -1, -1, out_h, out_w)
    grouped = padded.view(batch, groups, channels // groups, padded_h, padded_w)
    return _LocalFilterFunction.apply(grouped, weights, kernel_size, stride).reshape(batch, channels, out_h, out_w)


class AdaptiveBlurPool(nn.Module):
    r"""
    Content-aware low-pass filter followed by subsampling (Eqs. 2.3/2.4 of the source; "PASA" in the released code).

    `Conv2d(C -> G k^2, kernel k, stride s, no bias)` on the reflect-padded input, then `BatchNorm2d`, then a
    softmax gives one non-negative k x k filter per output location and channel group; the filter is applied to
    the `C / G` channels of its group. Running the predictor at stride `s` and accumulating strided slices gives
    exactly the strided samples of the full-resolution computation (in eval mode; in training mode the BN batch
    statistics are taken over the strided positions), without materialising an `unfold`.

    Args:
        channels (`int`): number of input channels `C`.
        kernel_size (`int`, defaults to 3): filter size `k`, odd.
        groups (`int`, defaults to 8): channel groups `G`; must divide `channels`. `G = 1` is the
            "spatial adaptive" ablation.
        stride (`int`, defaults to 2): subsampling factor `s`; 1 gives a pure adaptive smoothing layer.
        softmax_scope (`str`, defaults to `"group"`): `"group"` normalises each group's k^2 taps (what the text
            says); `"joint"` takes one softmax over all `G k^2` logits (what the released code does), so each
            group's filter sums to about `1 / G`.
        padding_mode (`str`, defaults to `"reflect"`): padding of the input for both predictor and filter.
        predictor_kernel_size (`int`, *optional*): predictor conv kernel size; defaults to `kernel_size` (as in
            the released code, confirmed by the parameter counts of spec §2.7).
    """

    def __init__(
        self,
        channels: int,
        kernel_size: int = 3,
        groups: int = 8,
        stride: int = 2,
        softmax_scope: str = "group",
        padding_mode: str = "reflect",
        predictor_kernel_size: int | None = None,
    ) -> None:
        super().__init__()
        validate_adaptive_filter_args(channels, kernel_size, groups, softmax_scope, predictor_kernel_size)
        _check_int("stride", stride)
        self.channels, self.kernel_size, self.groups, self.stride = channels, kernel_size, groups, stride
        self.softmax_scope, self.padding_mode = softmax_scope, padding_mode
        self.predictor_kernel_size = predictor_kernel_size or kernel_size
        self.predictor = nn.Conv2d(
            channels, groups * kernel_size**2, self.predictor_kernel_size, stride=stride, bias=False
        )
        self.normalization = nn.BatchNorm2d(groups * kernel_size**2)

    def predict_filters(self, hidden_states: torch.Tensor, padded: torch.Tensor | None = None) -> torch.Tensor:
        """The filters applied at each output location: `(N, G, k*k, ceil(H/s), ceil(W/s))`, taps row-major."""
        if padded is None or self.predictor_kernel_size != self.kernel_size:
            radius = self.predictor_kernel_size // 2
            padded = pad_for_filter(hidden_states, (radius,) * 4, self.padding_mode)
        logits = self.normalization(self.predictor(padded))
        batch, _, out_h, out_w = logits.shape
        if self.softmax_scope == "group":
            return logits.view(batch, self.groups, self.kernel_size**2, out_h, out_w).softmax(dim=2)
        return logits.softmax(dim=1).view(batch, self.groups, self.kernel_size**2, out_h, out_w)

    def forward(
        self, hidden_states: torch.Tensor, return_filters: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            hidden_states (`torch.Tensor` of shape `(N, C, H, W)`): input map.
            return_filters (`bool`, defaults to `False`): also return the predicted filters.

        Returns:
            The filtered, subsampled map `(N, C, ceil(H/s), ceil(W/s))`, and the filters if requested.
        """
        if hidden_states.shape[1] != self.channels:
            raise ValueError(
                f"Expected {self.channels} input channels, got a tensor of shape {tuple(hidden_states.shape)}."
            )
        radius = self.kernel_size // 2
        padded = pad_for_filter(hidden_states, (radius,) * 4, self.padding_mode)
        filters = self.predict_filters(hidden_states, padded)
        out = apply_local_filters(padded, filters, self.kernel_size, self.stride)
        return (out, filters) if return_filters else out

    def extra_repr(self) -> str:
        return (
            f"{self.channels}, kernel_size={self.kernel_size}, groups={self.groups}, stride={self.stride}, "
            f"softmax_scope={self.softmax_scope!r}"
        )


class ImageAdaptiveBlurPool(nn.Module):
    """
    "Image Adaptive" ablation (Table 2.6): one k x k filter per image, shared by all locations and channels.

    The source only says it "predicts a single low-pass filter for the entire image"; following spec §2.4 it is
    global average pool -> 1x1 conv `C -> k^2` -> BN -> softmax.

    Args:
        channels (`int`): number of input channels.
        kernel_size (`int`, defaults to 3): odd filter size.
        stride (`int`, defaults to 2): subsampling factor.
        padding_mode (`str`, defaults to `"reflect"`): input padding.
    """

    def __init__(self, channels: int, kernel_size: int = 3, stride: int = 2, padding_mode: str = "reflect") -> None:
        super().__init__()
        validate_adaptive_filter_args(channels, kernel_size, 1, "group", None)
        _check_int("stride", stride)
        self.channels, self.kernel_size, self.stride, self.padding_mode = channels, kernel_size, stride, padding_mode
        self.groups = 1
        self.predictor = nn.Conv2d(channels, kernel_size**2, 1, bias=False)
        self.normalization = nn.BatchNorm2d(kernel_size**2)

    def predict_filters(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """`(N, 1, k*k, 1, 1)` filters (one per image)."""
        logits = self.normalization(self.predictor(hidden_states.mean(dim=(2, 3), keepdim=True)))
        return logits.softmax(dim=1).unsqueeze(1)

    def forward(
        self, hidden_states: torch.Tensor, return_filters: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        radius = self.kernel_size // 2
        padded = pad_for_filter(hidden_states, (radius,) * 4, self.padding_mode)
        filters = self.predict_filters(hidden_states)
        out = apply_local_filters(padded, filters, self.kernel_size, self.stride)
        return (out, filters) if return_filters else out


def validate_adaptive_filter_args(
    channels: int, kernel_size: int, groups: int, softmax_scope: str, predictor_kernel_size: int | None
) -> None:
    """Raise a `ValueError` naming the argument for any invalid adaptive-filter setting."""
    _check_int("channels", channels)
    _check_int("kernel_size", kernel_size)
    _check_int("groups", groups)
    if kernel_size % 2 == 0:
        # Centred k//2 padding on both sides (as in the released code) only lines up for odd k.
        raise ValueError(f"`kernel_size` of the adaptive filter must be odd, got {kernel_size}.")
    if predictor_kernel_size is not None:
        _check_int("predictor_kernel_size", predictor_kernel_size)
        if predictor_kernel_size % 2 == 0:
            raise ValueError(f"`predictor_kernel_size` must be odd, got {predictor_kernel_size}.")
    if channels % groups:
        raise ValueError(f"`groups` ({groups}) must divide the number of filtered channels ({channels}).")
    if softmax_scope not in SOFTMAX_SCOPES:
        raise ValueError(f"`softmax_scope` must be one of {SOFTMAX_SCOPES}, got {softmax_scope!r}.")


__all__ = [
    "SOFTMAX_SCOPES",
    "AdaptiveBlurPool",
    "BlurPool",
    "ImageAdaptiveBlurPool",
    "apply_local_filters",
    "binomial_filter",
    "pad_for_filter",
    "validate_adaptive_filter_args",
]
