"""LoRA through PEFT: adapter-only files, reload (PEFT and transformers' load_adapter), merging, bad targets."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from transformers import AutoModelForSemanticSegmentation

from hf_unified_seg.models.antialiased_resnet import AntiAliasedResNetConfig, AntiAliasedResNetForSemanticSegmentation
from hf_unified_seg.models.ps_vit import PsVitConfig, PsVitForSemanticSegmentation
from hf_unified_seg.training import (
    DataArguments,
    LoraArguments,
    ModelArguments,
    SegTrainingArguments,
    apply_lora,
    freeze_batchnorm_statistics,
    matching_modules,
    resolve_lora_targets,
    train,
)


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory):
    """Train a saved PS-ViT base for a few steps with LoRA through the trainer."""
    root = tmp_path_factory.mktemp("lora")
    torch.manual_seed(0)
    config = PsVitConfig.from_preset("tiny", num_labels=19)
    base = PsVitForSemanticSegmentation(config).eval()
    base.save_pretrained(root / "base")
    from hf_unified_seg.models.ps_vit import PsVitImageProcessor

    PsVitImageProcessor(size={"height": 32, "width": 32}).save_pretrained(root / "base")
    result = train(
        ModelArguments(str(root / "base"), image_size=32),
        DataArguments(num_train_images=16, num_eval_images=2, dataset_image_size=32),
        SegTrainingArguments(
            output_dir=str(root / "adapter"),
            per_device_train_batch_size=4,
            max_steps=3,
            learning_rate=1e-2,
            disable_tqdm=True,
            report_to="none",
            skip_final_eval=True,
        ),  # fmt: skip
        LoraArguments(lora=True, lora_r=4, lora_alpha=8, save_merged=True),
    )
    return root, result


def test_adapter_holds_only_lora_and_modules_to_save(lora_run):
    root, _ = lora_run
    adapter = root / "adapter"
    assert (adapter / "adapter_model.safetensors").is_file() and (adapter / "adapter_config.json").is_file()
    assert not (adapter / "model.safetensors").exists()
    with safe_open(str(adapter / "adapter_model.safetensors"), framework="pt") as f:
        keys = list(f.keys())
        lora_only = sum(f.get_tensor(k).numel() for k in keys if "lora_" in k)
    assert keys
    assert all("lora_" in k or ".decode_head." in k for k in keys), [k for k in keys if "lora_" not in k][:5]
    assert any("q_proj.lora_A" in k for k in keys) and any("v_proj.lora_B" in k for k in keys)
    assert not any("k_proj" in k or "stem" in k for k in keys)
    adapter_size = (adapter / "adapter_model.safetensors").stat().st_size
    full_size = (root / "base" / "model.safetensors").stat().st_size
    base_params = sum(p.numel() for p in PsVitForSemanticSegmentation.from_pretrained(root / "base").parameters())
    assert lora_only < 0.1 * base_params
    assert adapter_size < full_size
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(root / "base")
    assert sorted(config["target_modules"]) == ["q_proj", "v_proj"] and config["modules_to_save"] == ["decode_head"]


def test_adapter_reloads_to_identical_outputs_and_merges(lora_run):
    from peft import PeftModel

    root, _ = lora_run
    pixel_values = torch.randn(2, 3, 32, 32)
    # the trained adapter, reloaded with PEFT
    peft_model = PeftModel.from_pretrained(
        PsVitForSemanticSegmentation.from_pretrained(root / "base"), root / "adapter"
    )
    peft_model.eval()
    with torch.no_grad():
        unmerged = peft_model(pixel_values=pixel_values).logits
        plain = PsVitForSemanticSegmentation.from_pretrained(root / "base").eval()(pixel_values=pixel_values).logits
    assert (unmerged - plain).abs().max() > 1e-4, "the adapter changed nothing"
    # transformers' own adapter loading
    hf_model = AutoModelForSemanticSegmentation.from_pretrained(root / "base")
    hf_model.load_adapter(str(root / "adapter"))
    hf_model.eval()
    with torch.no_grad():
        torch.testing.assert_close(hf_model(pixel_values=pixel_values).logits, unmerged, rtol=0, atol=1e-6)
    # merged weights == adapter on top of the base
    merged = peft_model.merge_and_unload().eval()
    with torch.no_grad():
        torch.testing.assert_close(merged(pixel_values=pixel_values).logits, unmerged, rtol=0, atol=1e-5)
    # and the merged copy the trainer wrote is a plain transformers checkpoint with the same outputs
    saved_merged = PsVitForSemanticSegmentation.from_pretrained(root / "adapter" / "merged").eval()
    with torch.no_grad():
        torch.testing.assert_close(saved_merged(pixel_values=pixel_values).logits, unmerged, rtol=0, atol=1e-5)


def test_only_adapters_train_and_frozen_batchnorm_stays_fixed():
    torch.manual_seed(0)
    config = AntiAliasedResNetConfig.from_preset("tiny", num_labels=5)
    model = AntiAliasedResNetForSemanticSegmentation(config)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    peft_model = apply_lora(model, r=2, alpha=4)
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n or "modules_to_save" in n for n in trainable)
    peft_model.train()
    assert freeze_batchnorm_statistics(peft_model) > 0
    opt = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(2):
        loss = peft_model(pixel_values=torch.randn(2, 3, 32, 32), labels=torch.randint(0, 5, (2, 32, 32))).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    base_state = peft_model.get_base_model().state_dict()
    for k, v in before.items():
        if "running" in k and "decode_head" not in k:
            key = next(n for n in base_state if n.endswith(k.split("base_model.model.")[-1]) and "lora" not in n)
            torch.testing.assert_close(base_state[key], v, rtol=0, atol=0, msg=k)


def test_bad_lora_targets_are_clear_errors():
    model = PsVitForSemanticSegmentation(PsVitConfig.from_preset("tiny"))
    with pytest.raises(ValueError, match=r"lora_target_modules \['no_such_layer'\] match no module"):
        apply_lora(model, target_modules="q_proj,no_such_layer")
    with pytest.raises(ValueError, match=r"lora_target_modules regex .* matches no module; leaf module names"):
        apply_lora(model, target_modules=r"encoder\.nothing.*")
    with pytest.raises(ValueError, match="lora_modules_to_save \\['head_that_is_not_there'\\]"):
        apply_lora(model, modules_to_save=["head_that_is_not_there"])
    with pytest.raises(ValueError, match="lora_r must be >= 1"):
        LoraArguments(lora=True, lora_r=0)

    class NoDefaults(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(2, 2)

    with pytest.raises(ValueError, match="declares no `default_lora_target_modules`"):
        resolve_lora_targets(NoDefaults())
    assert matching_modules(NoDefaults(), ["fc"]) == ["fc"]
    targets, save = resolve_lora_targets(model)
    assert targets == ["q_proj", "v_proj"] and save == ["decode_head"]


def test_language_model_stays_frozen_and_lora_adapts_it():
    from hf_unified_seg.models.x_decoder import XDecoderConfig, XDecoderForUniversalSegmentation

    model = XDecoderForUniversalSegmentation(XDecoderConfig.from_preset("tiny"))
    text_model = [n for n, _ in model.named_parameters() if ".text_model." in n]
    assert text_model and not any(p.requires_grad for n, p in model.named_parameters() if ".text_model." in n)
    without_text = apply_lora(XDecoderForUniversalSegmentation(XDecoderConfig.from_preset("tiny")))
    assert not any(".text_model." in n for n, p in without_text.named_parameters() if p.requires_grad)

    peft_model = apply_lora(model, r=2, include_text=True)
    trainable = {n for n, p in peft_model.named_parameters() if p.requires_grad}
    text_lora = {n for n in trainable if ".text_model." in n}
    assert text_lora and all(".lora_" in n for n in text_lora)  # adapters only, never the language weights
    assert {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in text_lora} == {"query", "key", "value"}
    with pytest.raises(ValueError, match="has no language side"):
        apply_lora(PsVitForSemanticSegmentation(PsVitConfig.from_preset("tiny")), include_text=True)
