"""TransMix: label weights from class attention (extras spec §2), incl. PS-ViT token positions."""

from __future__ import annotations

import pytest
import torch
from transformers import ViTConfig, ViTForImageClassification

from hf_unified_seg.data.transmix import TransMix, class_token_attention, one_hot_smoothed
from hf_unified_seg.models.ps_vit import PsVitConfig, PsVitForImageClassification


def test_targets_are_distributions_for_cutmix_and_mixup():
    transmix = TransMix(num_classes=5, label_smoothing=0.1, seed=0)
    pixel_values, labels = torch.randn(6, 3, 16, 16), torch.tensor([0, 1, 2, 3, 4, 0])
    for mode in ("cutmix", "mixup", "none", None):
        for _ in range(5):
            mixed, state = transmix.mix(pixel_values, labels, mode=mode)
            assert mixed.shape == pixel_values.shape
            attention = torch.rand(6, 16)
            targets = transmix.targets(state, attention)
            assert (targets >= 0).all()
            torch.testing.assert_close(targets.sum(dim=1), torch.ones(6))


def test_zero_area_returns_the_original_labels():
    labels = torch.tensor([2, 0, 1, 1])
    pixel_values = torch.randn(4, 3, 16, 16)
    for combine in ("mean", "attention"):
        transmix = TransMix(num_classes=3, label_smoothing=0.0, combine=combine, seed=1)
        for mode in ("cutmix", "mixup"):
            mixed, state = transmix.mix(pixel_values, labels, mode=mode, area=0.0)
            assert torch.equal(mixed, pixel_values)
            targets = transmix.targets(state, torch.rand(4, 16))
            assert torch.equal(targets, torch.nn.functional.one_hot(labels, 3).float())


def test_uniform_attention_gives_the_area_and_focused_attention_gives_one():
    transmix = TransMix(num_classes=2, combine="attention", seed=0)
    pixel_values, labels = torch.randn(2, 3, 16, 16), torch.tensor([0, 1])
    _, state = transmix.mix(pixel_values, labels, mode="cutmix", area=0.25)
    # replace the random box by one aligned with the 4x4 token grid (tokens 5, 6, 9, 10 = rows/cols 1..2)
    state.box_mask.zero_()
    state.box_mask[4:12, 4:12] = 1
    state.area = 0.25
    uniform = transmix.attention_weight(state, torch.full((2, 16), 1 / 16))
    torch.testing.assert_close(uniform, torch.full((2,), 0.25))
    focused = torch.zeros(2, 16)
    focused[:, [5, 10]] = 0.3  # unnormalised: TransMix divides by the total token attention
    torch.testing.assert_close(transmix.attention_weight(state, focused), torch.ones(2))
    outside = torch.zeros(2, 16)
    outside[:, 0] = 1.0
    torch.testing.assert_close(transmix.attention_weight(state, outside), torch.zeros(2))


def test_token_positions_are_looked_up_in_the_box():
    transmix = TransMix(num_classes=2, combine="attention", seed=0)
    _, state = transmix.mix(torch.randn(1, 3, 16, 16), torch.tensor([1]), mode="cutmix", area=0.25)
    state.box_mask.zero_()
    state.box_mask[0:8, 8:16] = 1  # top-right quadrant
    # three tokens: inside the box, outside the box, outside the image (counts as not pasted)
    positions = torch.tensor([[[3.2, 12.6], [12.0, 2.0], [-5.0, 12.0]]])
    attention = torch.tensor([[0.5, 0.25, 0.25]])
    torch.testing.assert_close(transmix.attention_weight(state, attention, positions), torch.tensor([0.5]))


def test_attention_is_detached_and_shapes_are_checked():
    attention = torch.rand(2, 3, 17, 17, requires_grad=True)
    cls_attention = class_token_attention(attention)
    assert cls_attention.shape == (2, 16) and not cls_attention.requires_grad
    transmix = TransMix(num_classes=2, seed=0)
    _, state = transmix.mix(torch.randn(2, 3, 16, 16), torch.tensor([0, 1]), mode="cutmix")
    with pytest.raises(ValueError, match="not a square"):
        transmix.targets(state, torch.rand(2, 12))
    assert transmix.targets(state, torch.rand(2, 12), grid_size=(3, 4)).shape == (2, 2)
    with pytest.raises(ValueError, match="labels"):
        one_hot_smoothed(torch.tensor([0, 2]), 2)
    with pytest.raises(ValueError, match="combine"):
        TransMix(num_classes=2, combine="area")


def _toy_batch(generator: torch.Generator, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Class = which colour channel carries a bright square; learnable in a few steps."""
    labels = torch.randint(0, 3, (16,), generator=generator)
    images = torch.randn(16, 3, size, size, generator=generator) * 0.3
    for i, label in enumerate(labels.tolist()):
        y, x = torch.randint(0, size - 12, (2,), generator=generator).tolist()
        images[i, label, y : y + 12, x : x + 12] += 2.0
    return images, labels


def test_tiny_training_run_with_transmix_reduces_the_loss():
    torch.manual_seed(0)
    model = PsVitForImageClassification(PsVitConfig.from_preset("tiny"))
    transmix = TransMix(num_classes=3, label_smoothing=0.0, seed=0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    batches = [_toy_batch(generator) for _ in range(4)]
    losses = []
    for step in range(40):
        pixel_values, labels = batches[step % len(batches)]
        loss, outputs, targets = transmix.loss(model, pixel_values, labels)
        assert outputs.sampling_points is not None
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-8:]) / 8 < 0.8 * sum(losses[:8]) / 8


def test_works_with_a_transformers_vit():
    config = ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=3,
        attn_implementation="eager",
    )
    model = ViTForImageClassification(config)
    loss, outputs, targets = TransMix(num_classes=3, seed=0).loss(
        model, torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 0])
    )
    loss.backward()
    assert targets.shape == (4, 3) and torch.isfinite(loss)
