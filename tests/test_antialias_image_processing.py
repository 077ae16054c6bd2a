"""The shared PIL-backend image processor (modules/image_processing.py) through AntiAliasedResNetImageProcessor."""

import json

import numpy as np
import PIL.Image
import pytest
import torch
import torch.nn.functional as F
from transformers import AutoImageProcessor
from transformers.modeling_outputs import SemanticSegmenterOutput

import hf_unified_seg  # noqa: F401  (registration)
from hf_unified_seg.models.antialiased_resnet import AntiAliasedResNetImageProcessor
from hf_unified_seg.modules.image_processing import reduce_labels

MEAN = np.array([0.485, 0.456, 0.406])[:, None, None]
STD = np.array([0.229, 0.224, 0.225])[:, None, None]


def _rgb(height=30, width=50, seed=0) -> PIL.Image.Image:
    return PIL.Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def test_defaults_match_imagenet_eval_preprocessing():
    processor = AntiAliasedResNetImageProcessor()
    image = _rgb(300, 400)
    pixels = processor(image, return_tensors="pt")["pixel_values"]
    assert pixels.shape == (1, 3, 224, 224)
    # independent reference: PIL bilinear resize of the short side to 256, centre crop 224, ImageNet mean/std
    resized = np.asarray(image.resize((341, 256), PIL.Image.BILINEAR), dtype=np.float64).transpose(2, 0, 1) / 255
    top, left = (256 - 224) // 2, (341 - 224) // 2
    expected = (resized[:, top : top + 224, left : left + 224] - MEAN) / STD
    np.testing.assert_allclose(pixels[0].numpy(), expected, atol=1e-5)


def test_every_image_mode_and_layout_becomes_rgb():
    processor = AntiAliasedResNetImageProcessor(size={"height": 20, "width": 24}, do_center_crop=False)
    rgb = _rgb()
    gray = rgb.convert("L")
    transparent = rgb.convert("RGBA")
    transparent.putalpha(0)  # fully transparent: composited onto white
    inputs = [
        rgb,
        gray,
        transparent,
        rgb.convert("P"),
        np.asarray(rgb),  # HWC
        np.asarray(rgb).transpose(2, 0, 1),  # CHW
        np.asarray(gray),  # 2-D grayscale
        torch.from_numpy(np.asarray(rgb).copy()),
    ]
    pixels = processor(inputs, return_tensors="pt")["pixel_values"]
    assert pixels.shape == (len(inputs), 3, 20, 24)
    torch.testing.assert_close(pixels[4], pixels[0])
    torch.testing.assert_close(pixels[5], pixels[0])
    torch.testing.assert_close(pixels[7], pixels[0])
    torch.testing.assert_close(pixels[6], pixels[1])
    gray_rgb = pixels[1] * torch.tensor(STD) + torch.tensor(MEAN)  # undo normalisation: channels equal
    torch.testing.assert_close(gray_rgb[0], gray_rgb[1], atol=1e-5, rtol=0)
    white = (1 - MEAN) / STD
    np.testing.assert_allclose(pixels[2].numpy(), np.broadcast_to(white, (3, 20, 24)), atol=1e-5)


def test_segmentation_maps_follow_the_geometry_with_nearest_resampling():
    processor = AntiAliasedResNetImageProcessor(size={"shortest_edge": 40}, crop_size={"height": 32, "width": 32})
    labels = np.random.default_rng(1).integers(0, 6, (30, 50))
    labels[:5] = 255
    labels[10, :] = 300  # ids above 255 survive (int32 resize path)
    out = processor(_rgb(), segmentation_maps=labels, return_tensors="pt")
    assert out["pixel_values"].shape == (1, 3, 32, 32) and out["labels"].shape == (1, 32, 32)
    assert out["labels"].dtype == torch.int64
    # reference: PIL nearest resize to (66, 40), centre crop 32x32
    resized = np.asarray(PIL.Image.fromarray(labels.astype(np.int32)).resize((66, 40), PIL.Image.NEAREST))
    top, left = (40 - 32) // 2, (66 - 32) // 2
    np.testing.assert_array_equal(out["labels"][0].numpy(), resized[top : top + 32, left : left + 32])
    assert set(np.unique(out["labels"])) <= set(range(6)) | {255, 300}

    palette = PIL.Image.fromarray(labels.clip(0, 255).astype(np.uint8), mode="L")
    again = processor(
        [_rgb(), _rgb(seed=1)], segmentation_maps=[palette, torch.from_numpy(labels)], return_tensors="pt"
    )
    assert again["labels"].shape == (2, 32, 32)


def test_reduce_labels():
    np.testing.assert_array_equal(reduce_labels(np.array([0, 1, 2, 255])), [255, 0, 1, 255])
    processor = AntiAliasedResNetImageProcessor(do_resize=False, do_center_crop=False, do_reduce_labels=True)
    out = processor(_rgb(4, 4), segmentation_maps=np.array([[0, 1, 2, 3]] * 4), return_tensors="pt")
    np.testing.assert_array_equal(out["labels"][0, 0].numpy(), [255, 0, 1, 2])


def test_post_process_semantic_segmentation():
    processor = AntiAliasedResNetImageProcessor()
    logits = torch.randn(2, 4, 8, 10)
    outputs = SemanticSegmenterOutput(logits=logits)
    maps = processor.post_process_semantic_segmentation(outputs, target_sizes=[(31, 17), (8, 10)])
    assert [tuple(m.shape) for m in maps] == [(31, 17), (8, 10)]
    expected = F.interpolate(logits[:1], size=(31, 17), mode="bilinear", align_corners=False)[0].argmax(0)
    assert torch.equal(maps[0], expected) and maps[0].dtype == torch.int64
    assert torch.equal(maps[1], logits[1].argmax(0))
    native = processor.post_process_semantic_segmentation(outputs)
    assert len(native) == 2 and native[0].shape == (8, 10)
    tensor_sizes = processor.post_process_semantic_segmentation(outputs, torch.tensor([[31, 17], [8, 10]]))
    assert torch.equal(tensor_sizes[0], maps[0])
    with pytest.raises(ValueError, match="target_sizes"):
        processor.post_process_semantic_segmentation(outputs, target_sizes=[(4, 4)])


def test_save_and_auto_load(tmp_path):
    processor = AntiAliasedResNetImageProcessor(size={"height": 48, "width": 40}, do_center_crop=False)
    processor.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert saved["image_processor_type"] == "AntiAliasedResNetImageProcessor"
    loaded = AutoImageProcessor.from_pretrained(tmp_path)
    assert isinstance(loaded, AntiAliasedResNetImageProcessor)
    image = _rgb()
    torch.testing.assert_close(
        loaded(image, return_tensors="pt")["pixel_values"], processor(image, return_tensors="pt")["pixel_values"]
    )


def test_bad_inputs():
    processor = AntiAliasedResNetImageProcessor()
    with pytest.raises(ValueError, match="segmentation_maps"):
        processor([_rgb(), _rgb()], segmentation_maps=[np.zeros((30, 50))])
    with pytest.raises(ValueError, match="segmentation_maps"):
        processor(_rgb(), segmentation_maps=_rgb())  # an RGB image is not a class-index map
    with pytest.raises(ValueError):
        processor(np.zeros((5, 30, 50), dtype=np.uint8))  # 5 channels
