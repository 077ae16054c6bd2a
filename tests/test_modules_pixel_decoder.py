"""Transformer-encoder FPN pixel decoder: shapes, parameter formula, padding handling."""

import torch

from hf_unified_seg.modules.pixel_decoder import TransformerEncoderPixelDecoder


def _decoder(**kwargs):
    args = dict(
        in_channels=[8, 16, 24, 32],
        conv_dim=16,
        mask_dim=12,
        num_layers=1,
        num_heads=2,
        dim_feedforward=32,
        norm_num_groups=4,
    )
    args.update(kwargs)
    return TransformerEncoderPixelDecoder(**args).eval()


def _features(batch=2, size=64):
    return [torch.randn(batch, c, size // s, size // s) for c, s in zip([8, 16, 24, 32], [4, 8, 16, 32])]


def test_shapes():
    out = _decoder()(_features())
    assert out.mask_features.shape == (2, 12, 16, 16)
    assert [f.shape[-1] for f in out.multi_scale_features] == [2, 4, 8]  # strides 32, 16, 8
    assert all(f.shape[1] == 16 for f in out.multi_scale_features)
    assert out.encoder_last_hidden_state.shape == (2, 16, 2, 2)


def test_parameter_count_formula():
    d, ffn = 16, 32
    dec = _decoder()
    encoder_layer = 4 * (d * d + d) + (d * ffn + ffn + ffn * d + d) + 2 * 2 * d
    conv3 = 9 * d * d + 2 * d  # bias-free conv + GroupNorm affine
    laterals = sum(c * d + 2 * d for c in [24, 16, 8])
    expected = (32 * d + d) + encoder_layer + conv3 + laterals + 3 * conv3 + (9 * d * 12 + 12)
    assert sum(p.numel() for p in dec.parameters()) == expected


def test_encoder_ignores_padding_content():
    dec = _decoder()
    feats = _features(batch=1, size=128)
    pixel_mask = torch.zeros(1, 128, 128, dtype=torch.long)
    pixel_mask[:, :, :64] = 1  # right half is padding
    changed = [f.clone() for f in feats]
    changed[-1][..., 2:] = torch.randn_like(changed[-1][..., 2:])  # only padded res5 pixels differ
    a = dec(feats, pixel_mask).encoder_last_hidden_state
    b = dec(changed, pixel_mask).encoder_last_hidden_state
    # tokens of the valid region do not attend padded tokens (they pass through the 1x1 projection only)
    torch.testing.assert_close(a[..., :2], b[..., :2])
