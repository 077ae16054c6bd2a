"""X-Decoder model: paper-size parameter groups, task routing through the self-attention mask (spec §8.3),
generation, save/load, efficient finetuning, LoRA, and input validation. Tiny configs, 64 px images."""

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForPreTraining

from hf_unified_seg.models.x_decoder.configuration_x_decoder import XDecoderConfig
from hf_unified_seg.models.x_decoder.modeling_x_decoder import (
    XDecoderForCaptioning,
    XDecoderForImageTextRetrieval,
    XDecoderForPreTraining,
    XDecoderForUniversalSegmentation,
    XDecoderModel,
    efficient_finetuning_groups,
    enable_efficient_finetuning,
)

LABELS = {0: "circle", 1: "square", 2: "sky"}
BOS, EOS = 101, 102


def tiny_config(**kwargs) -> XDecoderConfig:
    return XDecoderConfig.from_preset("tiny", id2label=LABELS, **kwargs)


@pytest.fixture(scope="module")
def seg_model():
    torch.manual_seed(0)
    return XDecoderForUniversalSegmentation(tiny_config()).eval()


def images(batch=2, size=64):
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(1))


def tokens(rows, length=None):
    length = length or max(len(r) for r in rows)
    ids = torch.zeros(len(rows), length, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
    return ids, (ids > 0).long()


CLASS_IDS, CLASS_MASK = tokens([[BOS, 4418, EOS], [BOS, 2675, EOS], [BOS, 3712, EOS], [BOS, 4281, EOS]])


def seg_labels(batch=2, size=64):
    masks, classes = [], []
    for b in range(batch):
        m = torch.zeros(2, size, size)
        m[0, : size // 2] = 1
        m[1, size // 2 :, : size // 2 + 8 * b] = 1
        masks.append(m)
        classes.append(torch.tensor([2, b % 2]))
    return masks, classes


# ---------------------------------------------------------------------------------------------------------------------
# paper-size parameter groups (Table 4.3), counted on the meta device
# ---------------------------------------------------------------------------------------------------------------------


def test_paper_size_decoder_parameter_groups_match_table_4_3():
    config = XDecoderConfig.from_preset("focal_t")
    with torch.device("meta"):
        model = XDecoderModel(config)
    counts = {}
    for level, prefixes in efficient_finetuning_groups(model).items():
        counts[level] = sum(p.numel() for n, p in model.named_parameters() if any(n.startswith(q) for q in prefixes))
    d, dp, m, ffn, layers = 512, 512, 101, 2048, 9
    mask_mlp = 3 * (d * d + d)
    assert counts["class"] == d * dp and round(counts["class"] / 1e6, 2) == 0.26
    assert counts["mask"] == d * dp + mask_mlp and round(counts["mask"] / 1e6, 2) == 1.05
    assert counts["query"] == counts["mask"] + 2 * m * d and round(counts["query"] / 1e6, 2) == 1.15
    attention = 4 * (d * d + d)
    layer = 2 * attention + (d * ffn + ffn + ffn * d + d) + 3 * 2 * d
    extras = 3 * d + 2 * d + 1  # level embeddings, final LayerNorm, temperature
    assert counts["decoder"] == counts["query"] + layers * layer + extras
    # Table 4.3 prints 38.3M; 9 layers (37.84M) + its own 1.15M of heads give 38.99M: within 2% (see the report)
    assert abs(counts["decoder"] - 38.3e6) / 38.3e6 < 0.02


# ---------------------------------------------------------------------------------------------------------------------
# routing through the self-attention masks (spec §8.3)
# ---------------------------------------------------------------------------------------------------------------------


def test_output_shapes(seg_model):
    x = images()
    ref_ids, ref_mask = tokens([[BOS, 1037, 2417, EOS], [BOS, 2307, EOS]])
    with torch.no_grad():
        out = seg_model(x, class_input_ids=CLASS_IDS, class_attention_mask=CLASS_MASK)
        ref = seg_model(x, referring_input_ids=ref_ids, referring_attention_mask=ref_mask, task="referring")
    assert out.class_queries_logits.shape == (2, 8, 4)  # m - 1 queries x (C + 1)
    assert out.masks_queries_logits.shape == (2, 8, 16, 16)
    assert out.image_embeds.shape == (2, 32)
    assert len(out.auxiliary_logits) == 3  # initial queries + 2 of the 3 layers
    assert ref.referring_logits.shape == (2, 8, 1) and ref.referring_masks_logits.shape == (2, 1, 16, 16)
    assert ref.class_queries_logits.shape == (2, 8, 4)  # id2label (3) + background by default


def test_generic_outputs_do_not_depend_on_text_and_referring_do(seg_model):
    x = images()
    a_ids, a_mask = tokens([[BOS, 1037, 2417, 4418, EOS], [BOS, 2307, EOS]])
    b_ids, b_mask = tokens([[BOS, 3712, EOS], [BOS, 1037, 2630, 2675, 2187, EOS]])
    model = seg_model.model
    with torch.no_grad():
        plain = model(x, task="generic")
        a = model(x, task=("generic", "referring"), text_input_ids=a_ids, text_attention_mask=a_mask)
        b = model(x, task=("generic", "referring"), text_input_ids=b_ids, text_attention_mask=b_mask)
    m = seg_model.config.num_queries  # object + image latents
    torch.testing.assert_close(a.masks_queries_logits[:, :m], plain.masks_queries_logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(a.latent_semantic_embeds[:, :m], b.latent_semantic_embeds[:, :m], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(a.image_embeds, plain.image_embeds, atol=1e-5, rtol=1e-5)
    # the grounding copy reads the phrase: its change dwarfs float noise on the text-free outputs
    noise = max((a.latent_semantic_embeds[:, :m] - b.latent_semantic_embeds[:, :m]).abs().max().item(), 1e-7)
    assert (a.latent_semantic_embeds[:, m:] - b.latent_semantic_embeds[:, m:]).abs().max() > 100 * noise
    assert (a.masks_queries_logits[:, m:] - b.masks_queries_logits[:, m:]).abs().max() > 100 * noise


def test_latent_attends_text_switch_cuts_language_conditioning():
    torch.manual_seed(0)
    model = XDecoderModel(tiny_config(latent_attends_text=False)).eval()
    x = images()
    a_ids, a_mask = tokens([[BOS, 1037, 2417, EOS], [BOS, 2307, EOS]])
    b_ids, b_mask = tokens([[BOS, 3712, EOS], [BOS, 2630, 2675, EOS]])
    with torch.no_grad():
        a = model(x, task="referring", text_input_ids=a_ids, text_attention_mask=a_mask)
        b = model(x, task="referring", text_input_ids=b_ids, text_attention_mask=b_mask)
    torch.testing.assert_close(a.latent_semantic_embeds, b.latent_semantic_embeds, atol=1e-5, rtol=1e-5)


def test_captioning_is_causal_and_leaks_no_future_token(seg_model):
    model = seg_model.model
    x = images()
    ids, mask = tokens([[BOS, 1037, 2417, 4418, 2682, 3712, EOS], [BOS, 1037, 2630, 2675, EOS]])
    changed = ids.clone()
    changed[:, 3] = 2307  # perturb token 3
    with torch.no_grad():
        plain = model(x, task="generic")
        a = model(x, task="captioning", caption_input_ids=ids, caption_attention_mask=mask, use_text_cache=False)
        b = model(x, task="captioning", caption_input_ids=changed, caption_attention_mask=mask, use_text_cache=False)
    torch.testing.assert_close(a.text_semantic_embeds[:, :3], b.text_semantic_embeds[:, :3], atol=1e-5, rtol=1e-5)
    noise = max((a.text_semantic_embeds[:, :3] - b.text_semantic_embeds[:, :3]).abs().max().item(), 1e-7)
    assert (a.text_semantic_embeds[:, 3:] - b.text_semantic_embeds[:, 3:]).abs().max() > 100 * noise
    # no latent output depends on any caption token
    torch.testing.assert_close(a.latent_semantic_embeds, b.latent_semantic_embeds, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(a.masks_queries_logits, plain.masks_queries_logits, atol=1e-5, rtol=1e-5)


def test_similarity_pooled_image_query():
    torch.manual_seed(0)
    model = XDecoderModel(tiny_config(image_query_pooling="similarity_pool")).eval()
    with torch.no_grad():
        out = model(images(), task="retrieval")
        normed = out.transformer_decoder_intermediate_states[-1]
        m1 = model.config.num_object_queries
        g = torch.nn.functional.normalize(normed[:, m1], dim=-1)
        o = torch.nn.functional.normalize(normed[:, :m1], dim=-1)
        weights = torch.einsum("bd,bqd->bq", g, o).softmax(-1)
        expected = torch.einsum("bq,bqd->bd", weights, out.latent_semantic_embeds[:, :m1])
    torch.testing.assert_close(out.image_embeds, expected, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------------------------------------------------
# heads
# ---------------------------------------------------------------------------------------------------------------------


def test_default_vocabulary_equals_explicit_prompts(seg_model):
    from transformers import AutoTokenizer

    x = images()
    tok = AutoTokenizer.from_pretrained(seg_model.config.tokenizer_name_or_path)
    prompts = [f"an image of {LABELS[i]}." for i in range(3)] + ["background"]
    enc = tok(prompts, padding=True, return_tensors="pt")
    with torch.no_grad():
        default = seg_model(x).class_queries_logits
        explicit = seg_model(x, class_input_ids=enc.input_ids, class_attention_mask=enc.attention_mask)
    torch.testing.assert_close(default, explicit.class_queries_logits, atol=1e-5, rtol=1e-5)


def test_retrieval_and_captioning_heads():
    torch.manual_seed(0)
    config = tiny_config()
    retrieval = XDecoderForImageTextRetrieval(config).eval()
    ids, mask = tokens([[BOS, 1037, 2417, EOS], [BOS, 2307, EOS], [BOS, 3712, 2675, EOS]])
    with torch.no_grad():
        out = retrieval(images(), ids, mask)
    assert out.logits_per_image.shape == (2, 3) and torch.equal(out.logits_per_text, out.logits_per_image.T)
    torch.testing.assert_close(out.image_embeds.norm(dim=-1), torch.ones(2))
    with pytest.raises(ValueError, match="as many texts"):
        retrieval(images(), ids, mask, return_loss=True)
    captioner = XDecoderForCaptioning(config).eval()
    with torch.no_grad():
        cap = captioner(images(), ids[:2], mask[:2], labels=ids[:2])
    assert cap.logits.shape == (2, 4, 30522) and cap.loss > 0


def test_restricted_caption_vocabulary_matches_full_scores():
    torch.manual_seed(0)
    full = XDecoderForCaptioning(tiny_config()).eval()
    vocab = [0, BOS, EOS, 1037, 2417, 2307]
    restricted = XDecoderForCaptioning(tiny_config(caption_vocab_ids=vocab)).eval()
    restricted.load_state_dict(full.state_dict())
    ids, mask = tokens([[BOS, 1037, 2417, EOS], [BOS, 2307, EOS]])
    with torch.no_grad():
        a = full(images(), ids, mask)
        b = restricted(images(), ids, mask, labels=ids)
        expected_loss = torch.nn.functional.cross_entropy(
            a.logits[:, :-1, vocab].reshape(-1, len(vocab)),
            torch.tensor([[3, 4, 2], [5, 2, -100]]).reshape(-1),
            ignore_index=-100,
            reduction="sum",
        ) / (5 + 1)
    torch.testing.assert_close(b.logits[..., vocab], a.logits[..., vocab])
    assert (b.logits[..., 3000] == torch.finfo(b.logits.dtype).min).all()
    torch.testing.assert_close(b.loss, restricted.config.captioning_weight * expected_loss)
    assert set(restricted.generate(images(), max_new_tokens=3).flatten().tolist()) <= set(vocab)


def test_generate_stops_at_eos():
    torch.manual_seed(0)
    captioner = XDecoderForCaptioning(tiny_config()).eval()
    table = captioner.model.language.token_embedding_table
    with torch.no_grad():  # give the two steered tokens dominant norms so the argmax is unambiguous
        table[EOS] *= 100
        table[2307] *= 100
    table = table.detach()
    calls = []

    def steer(module, args, kwargs, output):
        # decoder pass 0: sample 0 says EOS, sample 1 says token 2307; pass 1: everyone says EOS
        step = len(calls)
        calls.append(step)
        semantic = torch.zeros_like(output.text_semantic_embeds)
        semantic[0, -1] = table[EOS]
        semantic[1, -1] = table[2307] if step == 0 else table[EOS]
        output.text_semantic_embeds = semantic
        return output

    captioner.model.register_forward_hook(steer, with_kwargs=True)
    sequences = captioner.generate(images(), max_new_tokens=8)
    assert sequences.tolist() == [[BOS, EOS, 0], [BOS, 2307, EOS]]
    assert len(calls) == 2  # stopped as soon as every sequence ended


def test_training_steps_reduce_every_loss():
    torch.manual_seed(0)
    vocab = [0, BOS, EOS, 1037, 2417, 4418, 2307, 2675]  # restricted caption vocabulary (spec §8.2 speed option)
    model = XDecoderForPreTraining(tiny_config(train_num_points=64 * 64, caption_vocab_ids=vocab)).train()
    x = images()
    masks, classes = seg_labels()
    ref_ids, ref_mask = tokens([[BOS, 1037, 2417, EOS], [BOS, 2307, EOS]])
    cap_ids, cap_mask = tokens([[BOS, 1037, 2417, 4418, EOS], [BOS, 2307, 2675, EOS]])
    batch = dict(
        class_input_ids=CLASS_IDS,
        class_attention_mask=CLASS_MASK,
        mask_labels=masks,
        class_labels=classes,
        referring_input_ids=ref_ids,
        referring_attention_mask=ref_mask,
        referring_mask_labels=[m[:1] for m in masks],
        caption_input_ids=cap_ids,
        caption_attention_mask=cap_mask,
    )
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-3)
    first = None
    for _ in range(20):
        out = model(x, **batch)
        if first is None:
            first = {k: v.item() for k, v in out.loss_dict.items()}
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
    with torch.no_grad():
        last = {k: v.item() for k, v in model(x, **batch).loss_dict.items()}
    final_terms = [
        "loss_ce",
        "loss_mask",
        "loss_dice",
        "loss_grounding_ce",
        "loss_grounding_mask",
        "loss_grounding_dice",
        "loss_captioning",
        "loss_retrieval",
    ]
    for key in final_terms:
        assert last[key] < first[key], (key, first[key], last[key])


def test_matching_class_cost_decouples_matching_from_the_class_loss():
    masks, classes = seg_labels()
    x = images()
    losses = {}
    for name, kwargs in {
        "tied": {"class_weight": 2.0},
        "heavy": {"class_weight": 10.0, "matching_class_cost": 2.0},
    }.items():
        torch.manual_seed(0)
        model = XDecoderForPreTraining(tiny_config(train_num_points=64 * 64, **kwargs)).eval()
        assert model.criterion.matcher.cost_class == 2.0
        assert model.criterion.class_weight == kwargs["class_weight"]
        with torch.no_grad():
            out = model(
                x, class_input_ids=CLASS_IDS, class_attention_mask=CLASS_MASK, mask_labels=masks, class_labels=classes
            )
        losses[name] = out.loss_dict
    # same weights and the same matching cost: identical matches, so only the CE terms scale (by 10 / 2)
    for key, value in losses["tied"].items():
        factor = 5.0 if key.startswith("loss_ce") else 1.0
        torch.testing.assert_close(losses["heavy"][key], value * factor)
    assert XDecoderForPreTraining(tiny_config(class_weight=7.0)).criterion.matcher.cost_class == 7.0
    with pytest.raises(ValueError, match="matching_class_cost"):
        tiny_config(matching_class_cost=-1.0)


def test_save_load_round_trip_is_identical_across_heads(tmp_path, seg_model):
    x = images()
    with torch.no_grad():
        before = seg_model(x, class_input_ids=CLASS_IDS, class_attention_mask=CLASS_MASK)
    seg_model.save_pretrained(tmp_path)
    loaded = XDecoderForUniversalSegmentation.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        after = loaded(x, class_input_ids=CLASS_IDS, class_attention_mask=CLASS_MASK)
    assert torch.equal(before.class_queries_logits, after.class_queries_logits)
    assert torch.equal(before.masks_queries_logits, after.masks_queries_logits)
    state, reloaded = seg_model.state_dict(), loaded.state_dict()
    assert state.keys() == reloaded.keys() and all(torch.equal(state[k], reloaded[k]) for k in state)
    retrieval = XDecoderForImageTextRetrieval.from_pretrained(tmp_path)  # same "model." prefix
    assert torch.equal(retrieval.model.class_embed.weight, seg_model.model.class_embed.weight)


def test_enable_efficient_finetuning_levels():
    model = XDecoderForUniversalSegmentation(tiny_config())
    expected = {
        "class": {"model.class_embed.weight"},
        "mask": {"model.class_embed.weight"}
        | {f"model.decoder.mask_predictor.mask_embed.layers.{i}.{w}" for i in range(3) for w in ("weight", "bias")},
    }
    expected["query"] = expected["mask"] | {"model.query_features.weight", "model.query_position.weight"}
    decoder = {n for n, _ in model.named_parameters() if n.startswith("model.decoder.")}
    expected["decoder"] = expected["query"] | decoder | {"model.logit_scale"}
    for level, names in expected.items():
        count = enable_efficient_finetuning(model, level)
        trainable = {n for n, p in model.named_parameters() if p.requires_grad}
        assert trainable == names, level
        assert count == sum(p.numel() for n, p in model.named_parameters() if n in names)
    with pytest.raises(ValueError, match="level"):
        enable_efficient_finetuning(model, "backbone")


def test_peft_lora_wraps_decoder_and_frozen_text_model(tmp_path):
    torch.manual_seed(0)
    model = XDecoderForUniversalSegmentation(tiny_config())
    targets = model.default_lora_target_modules + model.default_lora_text_target_modules
    config = LoraConfig(r=4, target_modules=targets, modules_to_save=model.default_lora_modules_to_save)
    peft_model = get_peft_model(model, config)
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert any(".decoder.layers.0.cross_attn.q_proj.lora_A" in n for n in trainable)
    assert any(".decoder.layers.2.ffn.fc2.lora_B" in n for n in trainable)
    assert any("language.text_model.encoder.layer.0.attention.self.query.lora_A" in n for n in trainable)
    assert not any("backbone" in n or "pixel_decoder" in n for n in trainable)  # only decoder + text LoRA
    assert any("class_embed.modules_to_save" in n for n in trainable)
    assert not peft_model.base_model.model.model.language.cache_enabled
    masks, classes = seg_labels()
    out = peft_model(
        pixel_values=images(),
        class_input_ids=CLASS_IDS,
        class_attention_mask=CLASS_MASK,
        mask_labels=masks,
        class_labels=classes,
    )
    out.loss.backward()
    lora_grad = [p.grad for n, p in peft_model.named_parameters() if "lora_B" in n and "text_model" in n]
    assert all(g is not None for g in lora_grad)
    with torch.no_grad():
        for n, p in peft_model.named_parameters():
            if "lora_B" in n:
                p.normal_()
    peft_model.eval()
    with torch.no_grad():
        before = peft_model(pixel_values=images(), class_input_ids=CLASS_IDS, class_attention_mask=CLASS_MASK)
    peft_model.save_pretrained(tmp_path)
    torch.manual_seed(0)
    reloaded = PeftModel.from_pretrained(XDecoderForUniversalSegmentation(tiny_config()), tmp_path).eval()
    with torch.no_grad():
        after = reloaded(pixel_values=images(), class_input_ids=CLASS_IDS, class_attention_mask=CLASS_MASK)
    torch.testing.assert_close(before.class_queries_logits, after.class_queries_logits)


# ---------------------------------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------------------------------


def test_bad_inputs_raise_clear_errors(seg_model):
    x = images()
    masks, classes = seg_labels()
    with pytest.raises(ValueError, match="empty phrase"):
        ids, mask = tokens([[BOS, EOS], [BOS, 2307, EOS]])
        seg_model(x, referring_input_ids=ids, referring_attention_mask=mask)
    with pytest.raises(ValueError, match="max_text_len"):
        long_ids = torch.full((4, seg_model.config.max_text_len + 1), 1037)
        seg_model(x, class_input_ids=long_ids, class_attention_mask=torch.ones_like(long_ids))
    with pytest.raises(ValueError, match="too many referring phrases"):
        many = torch.tensor([[[BOS, 2307, EOS]] * 9] * 2)
        seg_model(x, referring_input_ids=many, referring_attention_mask=torch.ones_like(many))
    with pytest.raises(ValueError, match="task"):
        seg_model(x, task="panoptic")
    with pytest.raises(ValueError, match="task"):
        seg_model.model(x, task="detection")
    with pytest.raises(ValueError, match="batch has 2"):
        seg_model(x, mask_labels=masks[:1], class_labels=classes[:1])
    with pytest.raises(ValueError, match="input size"):
        seg_model(x, mask_labels=[m[:, :32] for m in masks], class_labels=classes)
    with pytest.raises(ValueError, match="0..2"):
        seg_model(x, mask_labels=masks, class_labels=[torch.tensor([2, 5]), torch.tensor([0, 1])])
    with pytest.raises(ValueError, match="multiples of 32"):
        seg_model(torch.randn(1, 3, 50, 64))
    with pytest.raises(TypeError, match="list"):
        seg_model(x, mask_labels=torch.stack(masks), class_labels=classes)


def test_antialiased_resnet_backbone_through_auto_backbone():
    from transformers import AutoConfig

    import hf_unified_seg  # noqa: F401  (registers the anti-aliased ResNet with AutoConfig/AutoBackbone)

    backbone = AutoConfig.for_model(
        "antialiased_resnet",
        embedding_size=16,
        hidden_sizes=[16, 32, 64, 128],
        depths=[1, 1, 1, 1],
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )
    model = XDecoderForUniversalSegmentation(tiny_config(backbone_config=backbone)).eval()
    assert list(model.model.backbone.channels) == [16, 32, 64, 128]
    with torch.no_grad():
        out = model(images(batch=1))
    assert out.masks_queries_logits.shape == (1, 8, 16, 16)


def test_caption_vocabulary_restriction_survives_from_pretrained(tmp_path):
    # the restriction is a non-persistent buffer: it must be rebuilt from the config, not read as uninitialised memory
    vocab = [0, BOS, EOS, 1037, 2003, 4418]
    model = XDecoderForCaptioning(tiny_config(caption_vocab_ids=vocab)).eval()
    model.save_pretrained(tmp_path)
    loaded = XDecoderForCaptioning.from_pretrained(tmp_path).eval()
    assert loaded.model.caption_vocab_ids.tolist() == vocab
    x = images(batch=1)
    with torch.no_grad():
        assert torch.equal(model.generate(x, max_new_tokens=4), loaded.generate(x, max_new_tokens=4))


def test_frozen_text_model_stays_frozen_and_deterministic_after_from_pretrained(tmp_path):
    # transformers re-creates loaded parameters with requires_grad=True; a reload must not unfreeze the language model
    # (that once made every training step back-propagate through all of MiniLM)
    model = XDecoderForPreTraining(tiny_config())
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and not any(".text_model." in n for n in trainable)
    model.save_pretrained(tmp_path)
    for cls in (XDecoderForPreTraining, AutoModelForPreTraining):
        loaded = cls.from_pretrained(tmp_path).train()
        assert {n for n, p in loaded.named_parameters() if p.requires_grad} == trainable
        # frozen means no dropout either: the cached features equal a fresh forward
        assert not loaded.model.language.text_model.training and loaded.model.decoder.training
        ids = torch.tensor([[BOS, 4418, 2003, EOS]])
        first = loaded.model.language.encode(ids).pooled
        assert torch.equal(first, loaded.model.language.encode(ids, use_cache=False).pooled)
