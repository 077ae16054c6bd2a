"""Anti-aliased ResNet as a transformers model: sizes, placement, checkpoints, Auto classes, pipelines, errors."""

import io
import logging

import numpy as np
import PIL.Image
import pytest
import torch
from transformers import (
    AutoBackbone,
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageClassification,
    AutoModelForSemanticSegmentation,
    ResNetConfig,
    ResNetForImageClassification,
    pipeline,
)
from transformers.models.auto import modeling_auto

from hf_unified_seg.models.antialiased_resnet import (
    AntiAliasedResNetBackbone,
    AntiAliasedResNetConfig,
    AntiAliasedResNetForImageClassification,
    AntiAliasedResNetForSemanticSegmentation,
    AntiAliasedResNetImageProcessor,
    AntiAliasedResNetModel,
)
from hf_unified_seg.modules.antialias import AdaptiveBlurPool, BlurPool

LABELS = {0: "background", 1: "disk", 2: "square"}


def _tiny(**kwargs) -> AntiAliasedResNetConfig:
    kwargs.setdefault("num_labels", 3)
    if kwargs["num_labels"] == 3:
        kwargs.setdefault("id2label", LABELS)
        kwargs.setdefault("label2id", {v: k for k, v in LABELS.items()})
    return AntiAliasedResNetConfig.from_preset("tiny", **kwargs)


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    ("preset", "expected"), [("resnet18", 12_602_904), ("resnet50", 27_341_336), ("resnet101", 46_333_464)]
)
def test_parameter_counts_match_spec(preset, expected):
    with torch.device("meta"):
        model = AntiAliasedResNetForImageClassification(AntiAliasedResNetConfig.from_preset(preset, num_labels=1000))
    assert _count(model) == expected
    filters = [m for m in model.modules() if isinstance(m, AdaptiveBlurPool)]
    assert len(filters) == 7
    assert all(m.kernel_size == 3 and m.groups == 8 for m in filters)


@pytest.mark.parametrize(
    ("preset", "options", "expected"),
    [
        ("resnet34", {}, 22_711_064),
        ("resnet152", {}, 61_977_112),
        ("resnet18", {"aa_kernel_size": 5}, 18_732_312),  # the predictor kernel grows with k (spec §2.7)
        ("resnet50", {"aa_kernel_size": 5}, 39_319_832),
        ("resnet101", {"aa_kernel_size": 5}, 58_311_960),
        ("resnet18", {"aa_groups": 1}, 11_803_686),
        ("resnet50", {"aa_groups": 1}, 25_780_070),
        ("resnet101", {"aa_groups": 1}, 44_772_198),
    ],
)
def test_parameter_counts_of_other_sizes_and_settings(preset, options, expected):
    with torch.device("meta"):
        model = AntiAliasedResNetForImageClassification(
            AntiAliasedResNetConfig.from_preset(preset, num_labels=1000, **options)
        )
    assert _count(model) == expected


def test_plain_and_blur_counts_equal_transformers_resnet():
    with torch.device("meta"):
        reference = ResNetForImageClassification(ResNetConfig(num_labels=1000))  # ResNet-50
        plain = AntiAliasedResNetForImageClassification(
            AntiAliasedResNetConfig.from_preset("resnet50", num_labels=1000, aa_mode="none")
        )
        blur = AntiAliasedResNetForImageClassification(
            AntiAliasedResNetConfig.from_preset("resnet50", num_labels=1000, antialias="blur")
        )
    assert _count(plain) == _count(blur) == _count(reference) == 25_557_032
    assert sum(isinstance(m, BlurPool) for m in blur.modules()) == 7
    assert {k for k in plain.state_dict()} == {k for k in reference.state_dict()}


def test_resnet50_shapes_at_224_on_meta():
    with torch.device("meta"):
        model = AntiAliasedResNetModel(AntiAliasedResNetConfig.from_preset("resnet50"))
        out = model(torch.empty(2, 3, 224, 224), output_hidden_states=True, output_aa_weights=True)
    assert [tuple(h.shape[1:]) for h in out.hidden_states] == [
        (64, 56, 56),
        (256, 56, 56),
        (512, 28, 28),
        (1024, 14, 14),
        (2048, 7, 7),
    ]
    assert out.pooler_output.shape == (2, 2048, 1, 1)
    # stem, then (main, shortcut) for stages 2-4; weights (N, G, k*k, H', W')
    assert [tuple(w.shape[1:]) for w in out.aa_weights] == [
        (8, 9, 56, 56),
        (8, 9, 28, 28),
        (8, 9, 28, 28),
        (8, 9, 14, 14),
        (8, 9, 14, 14),
        (8, 9, 7, 7),
        (8, 9, 7, 7),
    ]


def test_plain_mode_reproduces_transformers_resnet_and_filters_are_the_only_missing_keys(tmp_path):
    reference = ResNetForImageClassification(
        ResNetConfig(
            layer_type="basic", depths=[1, 1, 1, 1], hidden_sizes=[16, 32, 64, 128], embedding_size=16, num_labels=3
        )
    ).eval()
    reference.save_pretrained(tmp_path)
    x = torch.randn(2, 3, 48, 40)

    plain = AntiAliasedResNetForImageClassification.from_pretrained(tmp_path, aa_mode="none").eval()
    with torch.no_grad():
        torch.testing.assert_close(plain(x).logits, reference(x).logits)

    model, info = AntiAliasedResNetForImageClassification.from_pretrained(tmp_path, output_loading_info=True)
    assert info["unexpected_keys"] == set() and info["mismatched_keys"] == set()
    assert info["missing_keys"] and all(".aa." in key for key in info["missing_keys"])
    assert len({key.split(".aa.")[0] for key in info["missing_keys"]}) == 7
    loaded = model.state_dict()
    for key, value in reference.state_dict().items():
        torch.testing.assert_close(loaded[key], value)


@pytest.mark.parametrize(
    "model_class", [AntiAliasedResNetForImageClassification, AntiAliasedResNetForSemanticSegmentation]
)
def test_save_load_round_trip(tmp_path, model_class):
    model = model_class(_tiny(aa_softmax_scope="joint")).eval()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    reloaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(reloaded, AntiAliasedResNetConfig) and reloaded.aa_softmax_scope == "joint"
    auto_class = (
        AutoModelForImageClassification
        if "Classification" in model_class.__name__
        else AutoModelForSemanticSegmentation
    )
    loaded = auto_class.from_pretrained(tmp_path).eval()
    assert type(loaded) is model_class
    state, restored = model.state_dict(), loaded.state_dict()
    assert state.keys() == restored.keys() and all(torch.equal(state[k], restored[k]) for k in state)
    x = torch.randn(2, 3, 40, 40)
    with torch.no_grad():
        # Loaded weights are views into the checkpoint's storage; an unaligned view can take a different SIMD path
        # in oneDNN and differ in the last bit, so the as-loaded comparison allows float32 round-off ...
        torch.testing.assert_close(loaded(x).logits, model(x).logits, rtol=0, atol=1e-6)
        # ... and with the same values in freshly allocated (aligned) storage the logits are bit-identical.
        for parameter in loaded.parameters():
            parameter.data = parameter.data.clone()
        assert torch.equal(model(x).logits, loaded(x).logits)


def test_auto_classes_and_backbone():
    config = _tiny(out_features=["stem", "stage1", "stage4"])
    assert isinstance(AutoModel.from_config(config), AntiAliasedResNetModel)
    backbone = AutoBackbone.from_config(config)
    assert isinstance(backbone, AntiAliasedResNetBackbone)
    assert backbone.out_features == ["stem", "stage1", "stage4"] and backbone.channels == [16, 16, 128]
    maps = backbone(torch.randn(1, 3, 64, 64)).feature_maps
    assert [tuple(m.shape) for m in maps] == [(1, 16, 16, 16), (1, 16, 16, 16), (1, 128, 2, 2)]
    by_index = AutoBackbone.from_config(_tiny(out_indices=[2, 3]))
    assert by_index.out_features == ["stage2", "stage3"]


def test_semantic_segmentation_head_and_dilated_filters():
    config = _tiny()
    model = AntiAliasedResNetForSemanticSegmentation(config).train()
    stage4 = model.resnet.encoder.stages[3].layers[0]
    # output stride 16: stage 4 is dilated and keeps both of its filters, at stride 1
    assert stage4.aa.stride == 1 and stage4.shortcut.aa.stride == 1 and stage4.aa.predictor.stride == (1, 1)
    assert model.resnet.encoder.stages[2].layers[0].aa.stride == 2
    assert sum(isinstance(m, AdaptiveBlurPool) for m in model.modules()) == 7
    x = torch.randn(2, 3, 64, 48)
    labels = torch.randint(0, 3, (2, 64, 48))
    labels[:, :10] = 255
    out = model(x, labels=labels, output_hidden_states=True)
    assert out.logits.shape == (2, 3, 16, 12)
    assert out.hidden_states[-1].shape == (2, 128, 4, 3)  # H/16
    upsampled = torch.nn.functional.interpolate(out.logits, size=(64, 48), mode="bilinear", align_corners=False)
    log_probs = upsampled.log_softmax(1)
    valid = labels != 255
    expected = -log_probs.permute(0, 2, 3, 1)[valid].gather(1, labels[valid][:, None]).mean()
    torch.testing.assert_close(out.loss, expected)
    out.loss.backward()
    assert model.decode_head.classifier.weight.grad is not None


def test_classification_losses_hard_and_soft():
    model = AntiAliasedResNetForImageClassification(_tiny()).eval()
    x = torch.randn(3, 3, 32, 32)
    hard = model(x, labels=torch.tensor([0, 2, 1]))
    torch.testing.assert_close(hard.loss, torch.nn.functional.cross_entropy(hard.logits, torch.tensor([0, 2, 1])))
    soft_targets = torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0], [0.2, 0.3, 0.5]])
    soft = model(x, labels=soft_targets)
    torch.testing.assert_close(soft.loss, -(soft_targets * soft.logits.log_softmax(-1)).sum(-1).mean())


def test_default_lora_targets_apply_with_peft():
    from peft import LoraConfig, get_peft_model

    for model_class in (AntiAliasedResNetForImageClassification, AntiAliasedResNetForSemanticSegmentation):
        model = model_class(_tiny())
        lora = LoraConfig(
            r=2,
            target_modules=model_class.default_lora_target_modules,
            modules_to_save=model_class.default_lora_modules_to_save,
        )
        peft_model = get_peft_model(model, lora)
        trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
        assert any("lora_" in n for n in trainable)
        assert peft_model(pixel_values=torch.randn(2, 3, 32, 32)).logits.shape[:2] == (2, 3)


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("aa_models")
    torch.manual_seed(0)
    AntiAliasedResNetForImageClassification(_tiny()).save_pretrained(root / "cls")
    AntiAliasedResNetImageProcessor(size={"shortest_edge": 40}, crop_size={"height": 32, "width": 32}).save_pretrained(
        root / "cls"
    )
    AntiAliasedResNetForSemanticSegmentation(_tiny()).save_pretrained(root / "seg")
    AntiAliasedResNetImageProcessor(size={"height": 48, "width": 48}, do_center_crop=False).save_pretrained(
        root / "seg"
    )
    return root


class _CaptureTransformersLogs:
    def __enter__(self):
        self.stream = io.StringIO()
        self.handler = logging.StreamHandler(self.stream)
        self.logger = logging.getLogger("transformers")
        self.logger.addHandler(self.handler)
        return self

    def __exit__(self, *exc):
        self.logger.removeHandler(self.handler)

    @property
    def text(self) -> str:
        return self.stream.getvalue()


def _images():
    rng = np.random.default_rng(0)
    rgb = PIL.Image.fromarray(rng.integers(0, 256, (37, 53, 3), dtype=np.uint8))
    rgba = PIL.Image.fromarray(rng.integers(0, 256, (61, 29, 4), dtype=np.uint8), mode="RGBA")
    gray = PIL.Image.fromarray(rng.integers(0, 256, (25, 70), dtype=np.uint8), mode="L")
    return [rgb, gray, rgba]


def test_image_classification_pipeline(saved_models):
    assert isinstance(AutoImageProcessor.from_pretrained(saved_models / "cls"), AntiAliasedResNetImageProcessor)
    with _CaptureTransformersLogs() as logs:
        classifier = pipeline("image-classification", model=str(saved_models / "cls"))
        for image in _images():
            predictions = classifier(image, top_k=3)
            assert sorted(p["label"] for p in predictions) == sorted(LABELS.values())
            assert sum(p["score"] for p in predictions) == pytest.approx(1.0, abs=1e-4)
    assert "not supported" not in logs.text


def test_image_segmentation_pipeline(saved_models):
    with _CaptureTransformersLogs() as logs:
        segmenter = pipeline("image-segmentation", model=str(saved_models / "seg"))
        assert isinstance(segmenter.model, AntiAliasedResNetForSemanticSegmentation)
        for image in _images():
            segments = segmenter(image)
            assert segments and all(s["label"] in LABELS.values() for s in segments)
            assert all(s["mask"].size == image.size for s in segments)
            coverage = sum(np.asarray(s["mask"]) > 0 for s in segments)
            assert (coverage == 1).all()  # the masks partition the image
    assert "not supported" not in logs.text
    # Positive control: without the class name in the pipeline's table, the same check does log the error.
    names = modeling_auto.MODEL_FOR_SEMANTIC_SEGMENTATION_MAPPING_NAMES
    saved = names.pop("antialiased_resnet")
    try:
        with _CaptureTransformersLogs() as logs:
            pipeline("image-segmentation", model=str(saved_models / "seg"))
        assert "not supported" in logs.text
    finally:
        names["antialiased_resnet"] = saved


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="aa_mode"):
        AntiAliasedResNetConfig(aa_mode="gaussian")
    with pytest.raises(ValueError, match="aa_mode"):
        AntiAliasedResNetConfig(antialias="median")
    with pytest.raises(ValueError, match="odd"):
        AntiAliasedResNetConfig(aa_kernel_size=4)
    with pytest.raises(ValueError, match="aa_groups"):
        AntiAliasedResNetConfig.from_preset("tiny", aa_groups=7)
    with pytest.raises(ValueError, match="aa_softmax_scope"):
        AntiAliasedResNetConfig(aa_softmax_scope="pixel")
    with pytest.raises(ValueError, match="preset"):
        AntiAliasedResNetConfig.from_preset("resnet99")
    with pytest.raises(ValueError, match="downsample_in_bottleneck"):
        AntiAliasedResNetConfig(downsample_in_bottleneck=True)
    # the blur accepts even sizes (asymmetric padding, as in the LPF code); the adaptive filter does not
    assert AntiAliasedResNetConfig(aa_mode="blur", aa_kernel_size=4).aa_kernel_size == 4
    model = AntiAliasedResNetForImageClassification(_tiny())
    with pytest.raises(ValueError, match="pixel_values"):
        model(torch.randn(1, 1, 32, 32))
    with pytest.raises(ValueError, match="pixel_values"):
        model(torch.randn(3, 32, 32))
    seg = AntiAliasedResNetForSemanticSegmentation(_tiny())
    with pytest.raises(ValueError, match="labels"):
        seg(torch.randn(1, 3, 32, 32), labels=torch.zeros(32, 32, dtype=torch.long))


@pytest.mark.parametrize("mode", ["none", "blur", "image_adaptive", "adaptive"])
def test_every_mode_trains_one_step(mode):
    model = AntiAliasedResNetForImageClassification(_tiny(aa_mode=mode, aa_groups=4))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 0])
    loss = model(x, labels=y).loss
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
