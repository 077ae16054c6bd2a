"""Publishing: model card + model-index, upload through huggingface_hub to a local Hub server, and loading back
with `from_pretrained(repo_id)`, both with our package and with `trust_remote_code=True` where it cannot be imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard
from safetensors.torch import load_file

from hf_unified_seg.hub import build_model_card, bundle_source_files, publish, validate_model_dir
from hf_unified_seg.training import DataArguments, ModelArguments, SegTrainingArguments, train

sys.path.insert(0, str(Path(__file__).parent))
from hub_server import HubServer  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

LOAD_SCRIPT = textwrap.dedent(
    """
    import sys
    mode, repo_id, out = sys.argv[1], sys.argv[2], sys.argv[3]
    if mode == "remote":
        class BlockOurPackage:  # the package is "not installed" here
            def find_spec(self, name, path=None, target=None):
                if name == "hf_unified_seg" or name.startswith("hf_unified_seg."):
                    raise ImportError(f"blocked import of {name}")
        sys.meta_path.insert(0, BlockOurPackage())
    else:
        import hf_unified_seg.models  # registers the classes
    import torch
    from safetensors.torch import save_file
    from transformers import AutoConfig, AutoImageProcessor, AutoModelForSemanticSegmentation, pipeline
    from PIL import Image
    remote = mode == "remote"
    model = AutoModelForSemanticSegmentation.from_pretrained(repo_id, trust_remote_code=remote).eval()
    processor = AutoImageProcessor.from_pretrained(repo_id, trust_remote_code=remote)
    torch.manual_seed(0)
    image = Image.fromarray((torch.rand(48, 40, 3) * 255).byte().numpy())
    inputs = processor(images=image, return_tensors="pt")
    with torch.no_grad():
        logits = model(**inputs).logits
    seg = pipeline("image-segmentation", model=model, image_processor=processor)(image)
    save_file({"logits": logits.contiguous(), "pixel_values": inputs["pixel_values"].contiguous()}, out)
    print("CLASS", type(model).__module__, type(model).__name__, len(seg))
    assert remote == (not any(m.startswith("hf_unified_seg") for m in sys.modules)), "package import leaked"
    """
)


ADAPTER_SCRIPT = textwrap.dedent(
    """
    import sys
    import torch
    import hf_unified_seg.models  # noqa: F401
    from peft import PeftModel
    from safetensors.torch import save_file
    from transformers import AutoModelForSemanticSegmentation
    base_dir, repo_id, out = sys.argv[1:4]
    torch.manual_seed(1)
    x = torch.randn(1, 3, 32, 32)
    peft = PeftModel.from_pretrained(AutoModelForSemanticSegmentation.from_pretrained(base_dir), repo_id).eval()
    hf = AutoModelForSemanticSegmentation.from_pretrained(base_dir)
    hf.load_adapter(repo_id)
    with torch.no_grad():
        save_file({"x": x, "peft": peft(pixel_values=x).logits, "load_adapter": hf.eval()(pixel_values=x).logits}, out)
    """
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("hub")
    result = train(
        ModelArguments("antialiased_resnet", preset="tiny", image_size=32),
        DataArguments(num_train_images=8, num_eval_images=4, dataset_image_size=32),
        SegTrainingArguments(
            output_dir=str(root / "model"),
            per_device_train_batch_size=4,
            max_steps=2,
            disable_tqdm=True,
            report_to="none",
        ),  # fmt: skip
    )
    return Path(result.output_dir), result.eval_metrics


def _load_env(hub_url: str, home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        HF_ENDPOINT=hub_url, HF_HUB_OFFLINE="0", TRANSFORMERS_OFFLINE="0", HF_HOME=str(home), HF_TOKEN="hf_test"
    )
    env["PYTHONPATH"] = str(REPO)
    return env


def test_model_card_metadata_and_model_index(trained):
    model_dir, metrics = trained
    card = ModelCard.load(model_dir / "README.md")
    data = card.data.to_dict()
    assert data["library_name"] == "transformers" and data["pipeline_tag"] == "image-segmentation"
    assert data["license"] == "apache-2.0" and data["datasets"] == ["shapesworld"]
    assert {"hf_unified_seg", "antialiased_resnet", "semantic-segmentation"} <= set(data["tags"])
    results = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert results["mean_iou"] == pytest.approx(metrics["mean_iou"], abs=1e-5)
    assert results["accuracy"] == pytest.approx(metrics["overall_accuracy"], abs=1e-5)
    text = card.text
    for section in ("## Model description", "## Intended use", "## Limitations", "## Training data and recipe",
                    "## Evaluation results", "## How to use", "## Citation"):  # fmt: skip
        assert section in text, section
    assert "Delving Deeper into Anti-aliasing in ConvNets" in text and "from_pretrained" in text and "LoRA" in text
    assert 'pipeline("image-segmentation"' in text


def test_publish_round_trip_plain_and_remote_code(trained, tmp_path, monkeypatch):
    import huggingface_hub.constants

    # the suite runs offline; this test talks only to its own server on 127.0.0.1
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    model_dir, metrics = trained
    with HubServer() as hub:
        info = publish(model_dir, "tester/aa-resnet", token="hf_test", endpoint=hub.url, remote_code=True)
        assert info.oid
        files = hub.files("tester/aa-resnet")
        for name in ("config.json", "model.safetensors", "preprocessor_config.json", "README.md",
                     "modeling_antialiased_resnet.py", "configuration_antialiased_resnet.py"):  # fmt: skip
            assert name in files, name
        assert not any(name.startswith(("checkpoint-", "metrics")) for name in files)
        config = json.loads(files["config.json"])
        assert config["auto_map"]["AutoModelForSemanticSegmentation"].startswith("modeling_antialiased_resnet.")
        assert all(b"hf_unified_seg" not in line for f, d in files.items() if f.endswith(".py")
                   for line in d.splitlines() if line.lstrip().startswith((b"from ", b"import ")))  # fmt: skip
        # the card on the Hub parses and carries the evaluated metrics
        card = ModelCard(files["README.md"].decode())
        assert {r.metric_type for r in card.data.eval_results} >= {"mean_iou"}
        assert "tester/aa-resnet" in card.text

        script = tmp_path / "load.py"
        script.write_text(LOAD_SCRIPT)
        procs = {
            mode: subprocess.Popen(
                [sys.executable, str(script), mode, "tester/aa-resnet", str(tmp_path / f"{mode}.safetensors")],
                env=_load_env(hub.url, tmp_path / f"home_{mode}"),
                cwd=str(tmp_path),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for mode in ("plain", "remote")
        }
        outputs = {mode: p.communicate(timeout=240) for mode, p in procs.items()}
    for mode, p in procs.items():
        assert p.returncode == 0, f"{mode}: {outputs[mode][1][-4000:]}"
    assert "transformers_modules" in outputs["remote"][0] and "hf_unified_seg.models" in outputs["plain"][0]
    plain, remote = load_file(tmp_path / "plain.safetensors"), load_file(tmp_path / "remote.safetensors")
    torch.testing.assert_close(remote["pixel_values"], plain["pixel_values"], rtol=0, atol=0)
    torch.testing.assert_close(remote["logits"], plain["logits"], rtol=0, atol=1e-6)
    # and both equal the local model
    from transformers import AutoModelForSemanticSegmentation

    local = AutoModelForSemanticSegmentation.from_pretrained(model_dir).eval()
    with torch.no_grad():
        torch.testing.assert_close(
            local(pixel_values=plain["pixel_values"]).logits, plain["logits"], rtol=0, atol=1e-6
        )


def test_publish_rejects_directory_without_weights(tmp_path, trained):
    model_dir, _ = trained
    empty = tmp_path / "no_weights"
    empty.mkdir()
    (empty / "config.json").write_text((model_dir / "config.json").read_text())
    with pytest.raises(ValueError, match="has no \\*.safetensors weights"):
        publish(empty, "tester/x", token="hf_test", endpoint="http://127.0.0.1:9")
    (empty / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(ValueError, match="re-save with safetensors"):
        validate_model_dir(empty)
    with pytest.raises(ValueError, match="is not a directory"):
        publish(tmp_path / "missing", "tester/x", endpoint="http://127.0.0.1:9")
    with pytest.raises(ValueError, match="repo_id must look like"):
        publish(model_dir, "a/b/c", endpoint="http://127.0.0.1:9")
    with pytest.raises(ValueError, match="neither config.json nor adapter_config.json"):
        build_model_card(tmp_path / "missing")


def test_bundled_sources_have_no_package_imports():
    files = bundle_source_files(["hf_unified_seg.models.ps_vit.modeling_ps_vit"])
    assert "modeling_ps_vit.py" in files
    import ast

    for name, source in files.items():
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ImportFrom):
                assert node.level == 1 or not (node.module or "").startswith("hf_unified_seg"), (name, node.module)
                if node.level == 1:
                    assert f"{node.module}.py" in files or node.module is None, (name, node.module)
            elif isinstance(node, ast.Import):
                assert not any(a.name.startswith("hf_unified_seg") for a in node.names), name


def test_publish_lora_adapter_and_load_it_from_the_hub(tmp_path, monkeypatch):
    import huggingface_hub.constants

    from hf_unified_seg.models.ps_vit import PsVitConfig, PsVitForSemanticSegmentation
    from hf_unified_seg.training import apply_lora

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    torch.manual_seed(0)
    base = PsVitForSemanticSegmentation(PsVitConfig.from_preset("tiny")).eval()
    base.save_pretrained(tmp_path / "base")
    peft_model = apply_lora(base, r=2)
    for name, p in peft_model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.1)  # a non-trivial adapter
    peft_model.save_pretrained(tmp_path / "adapter")
    card = build_model_card(tmp_path / "adapter", repo_id="tester/lora")
    assert card.data.library_name == "peft" and "lora" in card.data.tags and "PeftModel.from_pretrained" in card.text
    with HubServer() as hub:
        publish(tmp_path / "adapter", "tester/lora", token="hf_test", endpoint=hub.url)
        assert {"adapter_model.safetensors", "adapter_config.json", "README.md"} <= set(hub.files("tester/lora"))
        with pytest.raises(ValueError, match="remote code needs a full model"):
            publish(tmp_path / "adapter", "tester/lora2", token="hf_test", endpoint=hub.url, remote_code=True)
        script = tmp_path / "load_adapter.py"
        script.write_text(ADAPTER_SCRIPT)
        proc = subprocess.run(
            [sys.executable, str(script), str(tmp_path / "base"), "tester/lora", str(tmp_path / "out.safetensors")],
            env=_load_env(hub.url, tmp_path / "home"), cwd=str(tmp_path), capture_output=True, text=True, timeout=240,
        )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    got = load_file(tmp_path / "out.safetensors")
    with torch.no_grad():
        expected = peft_model.eval()(pixel_values=got["x"]).logits
    torch.testing.assert_close(got["peft"], expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(got["load_adapter"], expected, rtol=0, atol=1e-6)
