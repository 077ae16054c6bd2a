"""2-D sine positional encoding against a direct per-pixel evaluation of its formula."""

import math

import torch

from hf_unified_seg.modules.position_encoding import SinePositionEmbedding


def _reference(num_feats: int, height: int, width: int, temperature: float = 10000.0) -> torch.Tensor:
    out = torch.zeros(2 * num_feats, height, width)
    for y in range(height):
        for x in range(width):
            py = (y + 1 - 0.5) / (height + 1e-6) * 2 * math.pi
            px = (x + 1 - 0.5) / (width + 1e-6) * 2 * math.pi
            for i in range(num_feats):
                freq = temperature ** (2 * (i // 2) / num_feats)
                fn = math.sin if i % 2 == 0 else math.cos
                out[i, y, x] = fn(py / freq)
                out[num_feats + i, y, x] = fn(px / freq)
    return out


def test_matches_formula_and_caches():
    module = SinePositionEmbedding(num_pos_feats=8)
    encoding = module((2, 3, 5, 7))
    assert encoding.shape == (2, 16, 5, 7)
    torch.testing.assert_close(encoding[1], _reference(8, 5, 7), atol=1e-5, rtol=1e-5)
    assert module((1, 3, 5, 7)).data_ptr() == encoding.data_ptr()  # cached per size


def test_padding_does_not_change_valid_region():
    module = SinePositionEmbedding(num_pos_feats=4)
    mask = torch.zeros(1, 6, 9, dtype=torch.bool)
    mask[:, :5, :7] = True
    padded = module((1, 1, 6, 9), mask=mask)
    torch.testing.assert_close(padded[0, :, :5, :7], _reference(4, 5, 7), atol=1e-5, rtol=1e-5)
