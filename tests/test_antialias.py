"""Anti-aliasing filter modules: the deterministic checks of spec §8.1 (toy example and module invariants)."""

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage

from hf_unified_seg.modules.antialias import (
    AdaptiveBlurPool,
    BlurPool,
    ImageAdaptiveBlurPool,
    apply_local_filters,
    binomial_filter,
)


def _row(bits: str) -> torch.Tensor:
    return torch.tensor([float(b) for b in bits]).view(1, 1, 1, -1)


def test_one_dimensional_aliasing_example():
    # Eq. 2.1/2.2: max-pooling (k2, s2) maps a signal and its one-step shift to very different outputs ...
    signal, shifted = _row("001100110011"), _row("011001100110")
    pooled = [F.max_pool2d(x, (1, 2), (1, 2)).flatten().tolist() for x in (signal, shifted)]
    assert pooled == [[0, 1, 0, 1, 0, 1], [1, 1, 1, 1, 1, 1]]
    assert sum(abs(a - b) for a, b in zip(*pooled)) == 3.0
    # ... while MaxPool(k2, s1) followed by the binomial BlurPool(k3, s2, reflect) halves the gap (spec §8.1.1).
    blur = BlurPool(1, kernel_size=3, stride=2)
    blurred = [blur(F.max_pool2d(x, (1, 2), (1, 1)))[0, 0, 0].tolist() for x in (signal, shifted)]
    assert blurred[0] == pytest.approx([0.5, 1, 0.5, 1, 0.5, 1])
    assert blurred[1] == pytest.approx([1, 0.75, 0.75, 0.75, 0.75, 1])
    assert sum(abs(a - b) for a, b in zip(*blurred)) == pytest.approx(1.5)


def test_binomial_filters_match_pascal_rows():
    assert torch.allclose(binomial_filter(3), torch.tensor([[1, 2, 1], [2, 4, 2], [1, 2, 1]]) / 16.0)
    for size in range(1, 8):
        filt = binomial_filter(size)
        assert filt.shape == (size, size) and filt.sum().item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="kernel_size"):
        binomial_filter(8)


@pytest.mark.parametrize("kernel_size", [3, 5, 7])
def test_blurpool_matches_scipy_reflect_correlation(kernel_size):
    x = torch.randn(2, 3, 13, 10, dtype=torch.float64)
    out = BlurPool(3, kernel_size=kernel_size, stride=2).double()(x)
    filt = binomial_filter(kernel_size).double().numpy()
    # torch "reflect" (edge not repeated) is scipy's "mirror".
    reference = np.stack(
        [np.stack([ndimage.correlate(c, filt, mode="mirror")[::2, ::2] for c in image]) for image in x.numpy()]
    )
    assert out.shape == (2, 3, 7, 5)
    np.testing.assert_allclose(out.numpy(), reference, atol=1e-12)


def test_blurpool_sizes_and_plain_subsampling():
    x = torch.randn(1, 4, 9, 8)
    assert torch.equal(BlurPool(4, kernel_size=1)(x), x[:, :, ::2, ::2])
    for size in range(2, 8):
        assert BlurPool(4, kernel_size=size)(x).shape == (1, 4, 5, 4)
    assert BlurPool(4, kernel_size=3, stride=1)(x).shape == x.shape
    # Maps too small for reflect padding fall back to replicate instead of failing.
    assert BlurPool(4, kernel_size=5)(torch.randn(1, 4, 1, 2)).shape == (1, 4, 1, 1)
    assert BlurPool(4, kernel_size=3).state_dict() == {}


def _random_adaptive(channels=16, kernel_size=3, groups=4, stride=2, scope="group"):
    module = AdaptiveBlurPool(channels, kernel_size, groups, stride, softmax_scope=scope)
    with torch.no_grad():  # non-trivial BN statistics, so eval mode really exercises them
        bn = module.normalization
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)
    return module.eval()


def unfold_reference(module: AdaptiveBlurPool, x: torch.Tensor) -> torch.Tensor:
    """Full-resolution computation (predictor at stride 1, unfold, weighted sum), subsampled at the end."""
    n, c, h, w = x.shape
    k, g, r = module.kernel_size, module.groups, module.kernel_size // 2
    padded = F.pad(x, (r, r, r, r), mode="reflect")
    logits = F.conv2d(padded, module.predictor.weight)
    bn = module.normalization
    logits = (logits - bn.running_mean[:, None, None]) / torch.sqrt(bn.running_var[:, None, None] + bn.eps)
    logits = logits * bn.weight[:, None, None] + bn.bias[:, None, None]
    if module.softmax_scope == "group":
        weights = logits.view(n, g, k * k, h, w).softmax(2)
    else:
        weights = logits.softmax(1).view(n, g, k * k, h, w)
    patches = F.unfold(padded, k).view(n, g, c // g, k * k, h, w)
    full = (patches * weights[:, :, None]).sum(3).view(n, c, h, w)
    s = module.stride
    return full[:, :, ::s, ::s]


@pytest.mark.parametrize(
    ("kernel_size", "groups", "stride", "scope", "size"),
    [
        (3, 4, 2, "group", (12, 10)),
        (5, 2, 2, "joint", (11, 13)),
        (3, 1, 1, "group", (9, 7)),
        (3, 16, 2, "joint", (7, 7)),
    ],
)
def test_slice_path_equals_unfold_reference(kernel_size, groups, stride, scope, size):
    module = _random_adaptive(16, kernel_size, groups, stride, scope)
    x = torch.randn(2, 16, *size)
    with torch.no_grad():
        out, filters = module(x, return_filters=True)
        reference = unfold_reference(module, x)
    expected_shape = (2, 16, -(-size[0] // stride), -(-size[1] // stride))
    assert out.shape == reference.shape == expected_shape
    assert filters.shape == (2, groups, kernel_size**2, *expected_shape[2:])
    torch.testing.assert_close(out, reference, atol=1e-5, rtol=0)


@pytest.mark.parametrize("scope", ["group", "joint"])
def test_filters_non_negative_and_normalised(scope):
    module = _random_adaptive(16, 3, 4, 2, scope).train()
    filters = module.predict_filters(torch.randn(3, 16, 10, 10))
    assert (filters >= 0).all()
    if scope == "group":  # each group's k*k taps sum to one
        torch.testing.assert_close(filters.sum(2), torch.ones(3, 4, 5, 5))
    else:  # all groups' taps together sum to one
        torch.testing.assert_close(filters.sum((1, 2)), torch.ones(3, 5, 5))


def test_constant_input_is_preserved():
    module = _random_adaptive(16, 3, 4, 2, "group")
    x = torch.full((2, 16, 9, 11), 3.25)
    for mode in (module.eval(), module.train()):
        torch.testing.assert_close(mode(x), torch.full((2, 16, 5, 6), 3.25))
    torch.testing.assert_close(BlurPool(16, 5)(x), torch.full((2, 16, 5, 6), 3.25))


def test_zeroed_predictor_gives_box_filter():
    module = AdaptiveBlurPool(8, kernel_size=3, groups=2, stride=2)  # freshly initialised BN
    with torch.no_grad():
        module.predictor.weight.zero_()
    x = torch.randn(2, 8, 10, 9)
    box = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), 3, stride=2)
    for mode in (module.train(), module.eval()):
        out, filters = mode(x, return_filters=True)
        torch.testing.assert_close(filters, torch.full_like(filters, 1 / 9))
        torch.testing.assert_close(out, box)


def test_one_filter_per_group():
    module = _random_adaptive(12, 3, 3, 2, "group")
    x = torch.randn(1, 12, 8, 8)
    with torch.no_grad():
        out, filters = module(x, return_filters=True)
    padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
    # Each channel's output must be its own 3x3 neighbourhood weighted by the filter of its group (c // 4).
    for c, (i, j) in itertools.product(range(12), [(0, 0), (2, 3), (3, 1)]):
        patch = padded[0, c, 2 * i : 2 * i + 3, 2 * j : 2 * j + 3].reshape(-1)
        assert out[0, c, i, j].item() == pytest.approx((filters[0, c // 4, :, i, j] * patch).sum().item(), abs=1e-5)
    # and channels sharing a group see the same filter: identical inputs give identical outputs within a group only
    same = x[:, :1].expand(1, 12, 8, 8).contiguous()
    with torch.no_grad():
        y = module(same)
    torch.testing.assert_close(y[:, 0:4], y[:, 0:1].expand(1, 4, 4, 4))


def test_training_mode_backward_and_odd_sizes():
    module = AdaptiveBlurPool(8, 3, 8, 2).train()
    x = torch.randn(2, 8, 7, 5, requires_grad=True)
    out = module(x)
    assert out.shape == (2, 8, 4, 3)
    out.square().sum().backward()
    assert x.grad is not None and module.predictor.weight.grad.abs().sum() > 0
    assert AdaptiveBlurPool(8, 3, 2, stride=1)(torch.randn(1, 8, 7, 5)).shape == (1, 8, 7, 5)
    # 1x1 maps are too small for reflect padding: replicate fallback
    assert AdaptiveBlurPool(8, 3, 2).eval()(torch.randn(1, 8, 1, 1)).shape == (1, 8, 1, 1)


def test_apply_local_filters_broadcasts_one_filter():
    x = torch.randn(1, 4, 6, 6)
    padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
    weights = binomial_filter(3).reshape(1, 1, 9, 1, 1)
    torch.testing.assert_close(apply_local_filters(padded, weights, 3, 2), BlurPool(4, 3, 2)(x))


def test_image_adaptive_filter():
    module = ImageAdaptiveBlurPool(8, 3, 2).eval()
    out, filters = module(torch.randn(2, 8, 9, 9), return_filters=True)
    assert out.shape == (2, 8, 5, 5) and filters.shape == (2, 1, 9, 1, 1)
    torch.testing.assert_close(filters.sum(2), torch.ones(2, 1, 1, 1))


def test_invalid_arguments_raise():
    with pytest.raises(ValueError, match="odd"):
        AdaptiveBlurPool(8, kernel_size=4)
    with pytest.raises(ValueError, match="groups"):
        AdaptiveBlurPool(12, kernel_size=3, groups=8)
    with pytest.raises(ValueError, match="softmax_scope"):
        AdaptiveBlurPool(8, softmax_scope="channel")
    with pytest.raises(ValueError, match="kernel_size"):
        BlurPool(8, kernel_size=9)
    with pytest.raises(ValueError, match="channels"):
        AdaptiveBlurPool(8, groups=2)(torch.randn(1, 6, 8, 8))


@pytest.mark.parametrize(("stride", "size"), [(2, 17), (2, 7), (1, 6)])
def test_local_filter_gradients(stride, size):
    # wide maps take the de-interleaved forward path, small ones the strided-slice path; both use the custom backward
    padded = torch.randn(1, 4, size, size, dtype=torch.float64, requires_grad=True)
    out_size = (size - 3) // stride + 1
    weights = torch.rand(1, 2, 9, out_size, out_size, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w: apply_local_filters(x, w, 3, stride), (padded, weights))
    # and against autograd through an unfold formulation
    out = apply_local_filters(padded, weights, 3, stride)
    cols = F.unfold(padded, 3, stride=stride).view(1, 2, 2, 9, out_size, out_size)
    reference = (cols * weights[:, :, None]).sum(3).view_as(out)
    grad = torch.randn_like(out)
    ours = torch.autograd.grad(out, (padded, weights), grad)
    theirs = torch.autograd.grad(reference, (padded, weights), grad)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b)
