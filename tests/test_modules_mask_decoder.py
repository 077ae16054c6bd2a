"""Masked-attention decoder pieces: attention vs torch's reference, blocked rows, post-norm order, round robin."""

import torch
from torch import nn

from hf_unified_seg.modules.mask_decoder import (
    MaskedAttentionDecoderLayer,
    MaskedAttentionTransformerDecoder,
    MaskPredictor,
    MLPHead,
    MultiHeadAttention,
    QueryGroup,
)


def _copy_to_torch_mha(ours: MultiHeadAttention, dim: int, heads: int) -> nn.MultiheadAttention:
    ref = nn.MultiheadAttention(dim, heads, batch_first=True)
    with torch.no_grad():
        ref.in_proj_weight.copy_(torch.cat([ours.q_proj.weight, ours.k_proj.weight, ours.v_proj.weight]))
        ref.in_proj_bias.copy_(torch.cat([ours.q_proj.bias, ours.k_proj.bias, ours.v_proj.bias]))
        ref.out_proj.weight.copy_(ours.out_proj.weight)
        ref.out_proj.bias.copy_(ours.out_proj.bias)
    return ref


def test_attention_matches_torch_multihead_attention():
    attn = MultiHeadAttention(16, 4)
    ref = _copy_to_torch_mha(attn, 16, 4)
    q, k = torch.randn(2, 5, 16), torch.randn(2, 7, 16)
    mask = torch.rand(2, 1, 5, 7) > 0.3
    mask[..., 0] = True  # no empty row here
    ours = attn(q, k, k, mask)
    # torch's boolean attn_mask means "blocked" and has shape (B*heads, Lq, Lk)
    expected, _ = ref(q, k, k, attn_mask=~mask.expand(2, 4, 5, 7).reshape(8, 5, 7))
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-5)


def test_fully_blocked_rows_are_opened_not_nan():
    attn = MultiHeadAttention(8, 2)
    q, k = torch.randn(1, 3, 8), torch.randn(1, 4, 8)
    mask = torch.ones(1, 1, 3, 4, dtype=torch.bool)
    mask[0, 0, 1] = False  # row 1 may attend nothing
    out = attn(q, k, k, mask)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[:, 1], attn(q, k, k)[:, 1])


def test_mask_predictor_attention_mask_threshold_and_unblocking():
    predictor = MaskPredictor(8, 4, threshold=0.5)
    logits = torch.full((1, 2, 4, 4), -5.0)
    logits[0, 0, :2, :2] = 5.0  # query 0 covers the top-left quarter; query 1 covers nothing
    allowed = predictor.attention_mask(logits, (2, 2))
    assert allowed.shape == (1, 2, 4)
    assert allowed[0, 0].tolist() == [True, False, False, False]
    assert allowed[0, 1].all()  # empty mask -> look everywhere
    feats = torch.randn(1, 4, 6, 6)
    q = torch.randn(1, 2, 8)
    expected = torch.einsum("bqc,bchw->bqhw", predictor.mask_embed(q), feats)
    torch.testing.assert_close(predictor(q, feats), expected)


def test_mlp_head_parameter_count():
    head = MLPHead(512, 512, 512, 3)
    assert sum(p.numel() for p in head.parameters()) == 3 * (512 * 512 + 512)


def test_layer_order_cross_then_self_then_ffn_post_norm():
    torch.manual_seed(0)
    layer = MaskedAttentionDecoderLayer(8, 2, 16).eval()
    x, pos = torch.randn(1, 3, 8), torch.randn(1, 3, 8)
    mem, mem_pos = torch.randn(1, 5, 8), torch.randn(1, 5, 8)
    out = layer(x, pos, mem, mem_pos)
    h = layer.cross_attn_layer_norm(x + layer.cross_attn(x + pos, mem + mem_pos, mem))
    h = layer.self_attn_layer_norm(h + layer.self_attn(h + pos, h + pos, h))
    h = layer.final_layer_norm(h + layer.ffn.fc2(torch.relu(layer.ffn.fc1(h))))
    torch.testing.assert_close(out, h)
    # a query that skips cross-attention enters self-attention with its state unchanged
    keep = torch.tensor([True, False, True])
    skipped = layer(x, pos, mem, mem_pos, cross_attention_keep=keep)
    h = layer.cross_attn_layer_norm(x + layer.cross_attn(x + pos, mem + mem_pos, mem))
    h = torch.where(keep[None, :, None], h, x)
    h = layer.self_attn_layer_norm(h + layer.self_attn(h + pos, h + pos, h))
    h = layer.final_layer_norm(h + layer.ffn.fc2(torch.relu(layer.ffn.fc1(h))))
    torch.testing.assert_close(skipped, h)


def _decoder(num_layers=4, levels=3):
    return MaskedAttentionTransformerDecoder(
        in_channels=12,
        hidden_dim=8,
        mask_dim=6,
        num_layers=num_layers,
        num_heads=2,
        dim_feedforward=16,
        num_feature_levels=levels,
    ).eval()


def test_decoder_round_robin_levels_and_prediction_count():
    decoder = _decoder()
    seen = []
    for layer in decoder.layers:
        layer.cross_attn.register_forward_hook(lambda m, args, out: seen.append(args[1].shape[1]))
    feats = [torch.randn(1, 12, s, s) for s in (2, 4, 8)]  # coarsest first
    obj = QueryGroup("object", torch.randn(1, 3, 8), torch.randn(1, 3, 8), predicts_masks=True)
    txt = QueryGroup("text", torch.randn(1, 2, 8), torch.zeros(1, 2, 8))
    preds = decoder(feats, torch.randn(1, 6, 16, 16), [obj, txt])
    assert seen == [4, 16, 64, 4]  # levels 0,1,2,0 (strides 32, 16, 8, 32)
    assert len(preds.hidden_states) == len(preds.mask_logits) == 5
    assert preds.mask_logits[-1].shape == (1, 3, 16, 16)  # only the mask-predicting group
    assert preds.group_slices == {"object": slice(0, 3), "text": slice(3, 5)}


def test_decoder_never_nan_with_empty_masks():
    decoder = _decoder()
    with torch.no_grad():
        for p in decoder.mask_predictor.parameters():
            p.zero_()
        decoder.mask_predictor.mask_embed.layers[-1].bias.fill_(-10.0)  # every mask logit very negative
    feats = [torch.randn(2, 12, s, s) for s in (2, 4, 8)]
    obj = QueryGroup("object", torch.randn(2, 3, 8), torch.randn(2, 3, 8), predicts_masks=True)
    preds = decoder(feats, torch.ones(2, 6, 16, 16), [obj])
    assert all(torch.isfinite(h).all() for h in preds.hidden_states)
