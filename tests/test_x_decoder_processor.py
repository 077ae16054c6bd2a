"""X-Decoder image processor and processor: image modes and sizes, labels, prompts, round trip, bad input."""

import numpy as np
import PIL.Image
import pytest
import torch
from transformers import AutoImageProcessor, AutoProcessor

from hf_unified_seg.data import generate_split, instance_masks
from hf_unified_seg.models.x_decoder import XDecoderConfig, XDecoderImageProcessor, XDecoderProcessor


@pytest.fixture(scope="module")
def processor():
    return XDecoderProcessor(XDecoderImageProcessor(size={"shortest_edge": 64, "longest_edge": 96}), max_text_len=16)


def _dataset_record(raw: dict) -> dict:
    """Raw generator output -> the dataset record schema (PIL images, COCO-panoptic RGB encoding)."""
    ids = raw["ids"].astype(np.int64)
    rgb = np.stack([ids % 256, ids // 256 % 256, ids // 65536], axis=-1).astype(np.uint8)
    return {**raw, "image": PIL.Image.fromarray(raw["image"]), "panoptic": PIL.Image.fromarray(rgb)}


@pytest.fixture(scope="module")
def records():
    return [_dataset_record(r) for r in generate_split("train", num_images=2, image_size=64, seed=3)]


def _rgb(h, w, seed=0):
    return (np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "P"])
@pytest.mark.parametrize("hw", [(37, 53), (64, 64), (90, 30)])
def test_any_mode_any_size(processor, mode, hw):
    image = PIL.Image.fromarray(_rgb(*hw)).convert(mode)
    out = processor(images=image)
    pixel_values, pixel_mask = out["pixel_values"], out["pixel_mask"]
    assert pixel_values.shape[:2] == (1, 3) and pixel_values.dtype == torch.float32
    assert pixel_values.shape[-2] % 32 == 0 and pixel_values.shape[-1] % 32 == 0
    h, w = XDecoderImageProcessor.resized_hw(*hw, processor.image_processor.size)
    assert min(h, w) == 64 or max(h, w) == 96  # shortest edge 64 unless the longest edge caps it
    assert pixel_mask[0].sum() == h * w and pixel_mask[0, :h, :w].all()
    assert (pixel_values[0, :, h:, :] == 0).all() and (pixel_values[0, :, :, w:] == 0).all()


def test_normalisation_matches_spec_statistics():
    processor = XDecoderImageProcessor(do_resize=False)
    value = np.full((32, 32, 3), (200, 100, 50), dtype=np.uint8)
    out = processor(PIL.Image.fromarray(value), return_tensors="pt")["pixel_values"][0]
    mean, std = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)  # spec §2.2, 0..255 scale
    expected = [(v - m) / s for v, m, s in zip((200, 100, 50), mean, std)]
    assert out[:, 0, 0].tolist() == pytest.approx(expected, abs=1e-4)


def test_batch_of_mixed_sizes_and_modes(processor):
    images = [PIL.Image.fromarray(_rgb(40, 70)), PIL.Image.fromarray(_rgb(64, 64)).convert("L"), _rgb(20, 20)]
    out = processor(images=images)
    sizes = [XDecoderImageProcessor.resized_hw(h, w, processor.image_processor.size) for h, w in [(40, 70), (64, 64)]]
    assert sizes[0][1] == 96 and sizes[1] == (64, 64)
    assert out["pixel_values"].shape == (3, 3, 64, 96)  # batch maximum, rounded up to multiples of 32
    assert [int(m.sum()) for m in out["pixel_mask"]] == [sizes[0][0] * 96, 64 * 64, 64 * 64]


def test_semantic_map_to_mask_labels(processor):
    sem = np.full((32, 32), 255, dtype=np.uint8)
    sem[:16] = 3
    sem[16:, :8] = 7
    out = processor(images=_rgb(32, 32), segmentation_maps=[sem])
    (masks,), (classes,) = out["mask_labels"], out["class_labels"]
    assert classes.tolist() == [3, 7]
    assert masks.shape == (2, 64, 64)  # resized x2 (shortest edge 64), already a multiple of 32
    assert masks[0, :32].all() and not masks[0, 32:].any()
    assert masks[1, 32:, :16].all() and masks[1].sum() == 32 * 16  # void pixels belong to no mask


def test_shapesworld_panoptic_record_to_labels(processor, records):
    record = records[0]
    out = processor(
        images=[record["image"]], segmentation_maps=[record["panoptic"]], segments_info=[record["segments_info"]]
    )
    masks, categories, _ = instance_masks(record, include_stuff=True)
    order = np.argsort([s["id"] for s in record["segments_info"]])
    assert out["class_labels"][0].tolist() == categories[order].tolist()
    # same size as the image (64 -> shortest edge 64): masks must equal the record's masks exactly
    assert torch.equal(out["mask_labels"][0].bool(), torch.from_numpy(masks[order]))


def test_instance_id_map_with_mapping(processor):
    ids = np.zeros((32, 32), dtype=np.int32)
    ids[:10, :10] = 300  # ids above 255 survive the nearest resize
    ids[20:, 20:] = 5
    out = processor(images=_rgb(32, 32), segmentation_maps=[ids], instance_id_to_semantic_id={300: 2, 5: 9})
    assert out["class_labels"][0].tolist() == [9, 2]  # ordered by segment id
    assert out["mask_labels"][0][1, :20, :20].all()


def test_class_prompts_single_ensemble_and_training_random(processor):
    names = ["red circle", "sky"]
    enc = processor(class_names=names)
    assert enc["class_input_ids"].shape[0] == 3 and enc["class_input_ids"].dim() == 2  # background appended last
    decode = processor.tokenizer.decode
    assert decode(enc["class_input_ids"][0], skip_special_tokens=True) == "an image of red circle."
    assert decode(enc["class_input_ids"][2], skip_special_tokens=True) == "background"
    k = len(processor.prompt_templates)
    ens = processor.encode_class_names(names, ensemble=True)
    assert ens["class_input_ids"].shape[:2] == (3, k)
    assert decode(ens["class_input_ids"][1, 2], skip_special_tokens=True) == processor.prompt_templates[2].format(
        "sky"
    )
    enc = processor(class_names=names, training=True)
    assert enc["class_input_ids"].shape[0] == 3 and enc["class_input_ids"].dim() == 2
    texts = [decode(ids, skip_special_tokens=True) for ids in enc["class_input_ids"][:2]]
    assert all(any(t == tpl.format(n) for tpl in processor.prompt_templates) for t, n in zip(texts, names))


def test_ensemble_class_embeddings_average_normalised_template_embeddings(processor):
    class Encoder(torch.nn.Module):  # a text side whose embedding is easy to predict: the mean token id
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(2))

        def class_embeddings(self, ids, mask):
            mean = (ids * mask).sum(-1, keepdim=True).float() / mask.sum(-1, keepdim=True)
            return torch.cat([mean, torch.ones_like(mean)], dim=-1) * self.w

    emb = processor.ensemble_class_embeddings(Encoder(), ["circle"], templates=["a {}", "the {} here"])
    ids = processor.encode_class_names(["circle"], templates=["a {}", "the {} here"], ensemble=True)
    expected = []
    for row_ids, row_mask in zip(ids["class_input_ids"], ids["class_attention_mask"]):
        vectors = [Encoder().class_embeddings(i[None], m[None])[0].detach() for i, m in zip(row_ids, row_mask)]
        mean = torch.stack([v / v.norm() for v in vectors]).mean(0)
        expected.append(mean / mean.norm())
    assert torch.allclose(emb, torch.stack(expected), atol=1e-6)


def test_referring_captions_and_text(processor):
    out = processor(images=[_rgb(32, 32)] * 2, referring_texts=["the red circle", "the square on the left"])
    assert out["referring_input_ids"].shape[0] == 2 and out["referring_input_ids"].dim() == 2
    out = processor(referring_texts=[["the circle", "the star"], ["a", "the big blue square"]])
    assert out["referring_input_ids"].shape[:2] == (2, 2)
    out = processor(images=[_rgb(32, 32)], captions=["a red circle above grass."])
    ids = out["input_ids"][0]
    assert ids[0] == processor.tokenizer.cls_token_id and ids[-1] == processor.tokenizer.sep_token_id
    assert processor.batch_decode(ids[None]) == ["a red circle above grass."]
    # decoding stops at the first EOS; what follows (garbage after generation ended) is dropped
    sep, cls = processor.tokenizer.sep_token_id, processor.tokenizer.cls_token_id
    seq = [cls, *processor.tokenizer("a star", add_special_tokens=False)["input_ids"], sep, 2003, 2003]
    assert processor.batch_decode([seq]) == ["a star"]


def test_bad_input(processor):
    with pytest.raises(ValueError, match="referring_texts.*empty"):
        processor(referring_texts=["the circle", "  "])
    with pytest.raises(ValueError, match="max_text_len"):
        processor(class_names=["circle"] * 2 + [" ".join(["very"] * 30) + " long name"])
    with pytest.raises(ValueError, match="class_names"):
        processor(class_names=[])
    with pytest.raises(ValueError, match="one map per image"):
        processor(images=[_rgb(32, 32)] * 2, segmentation_maps=[np.zeros((32, 32), np.uint8)])
    with pytest.raises(ValueError, match="same size as their images"):
        processor(images=[_rgb(32, 32)], segmentation_maps=[np.zeros((16, 32), np.uint8)])
    with pytest.raises(ValueError, match="one entry per image"):
        processor(images=[_rgb(32, 32)] * 2, referring_texts=["the circle"])
    with pytest.raises(ValueError, match="one caption per image"):
        processor(images=[_rgb(32, 32)], captions=["a", "b"])
    with pytest.raises(ValueError, match="0..4"):
        XDecoderImageProcessor(num_labels=5)(_rgb(32, 32), segmentation_maps=[np.full((32, 32), 7, np.uint8)])
    with pytest.raises(ValueError, match="segments_info"):
        processor(images=[_rgb(32, 32)], segmentation_maps=[_rgb(32, 32)])
    with pytest.raises(ValueError, match="prompt_templates"):
        XDecoderProcessor(prompt_templates=["no placeholder"])


def test_save_load_round_trip(tmp_path, processor, records):
    processor.image_processor.label_ids_to_fuse = [12, 13]
    processor.save_pretrained(tmp_path)
    XDecoderConfig.from_preset("tiny").save_pretrained(tmp_path)
    loaded = AutoProcessor.from_pretrained(tmp_path)
    assert isinstance(loaded, XDecoderProcessor)
    assert isinstance(AutoImageProcessor.from_pretrained(tmp_path), XDecoderImageProcessor)
    assert loaded.prompt_templates == processor.prompt_templates and loaded.max_text_len == 16
    assert loaded.image_processor.to_dict() == processor.image_processor.to_dict()
    kwargs = {
        "images": [records[0]["image"]],
        "segmentation_maps": [records[0]["panoptic"]],
        "segments_info": [records[0]["segments_info"]],
        "class_names": ["circle", "sky"],
        "referring_texts": ["the circle"],
    }
    a, b = processor(**kwargs), loaded(**kwargs)
    assert a.keys() == b.keys()
    for key in a:
        va, vb = a[key], b[key]
        for x, y in zip(va if isinstance(va, list) else [va], vb if isinstance(vb, list) else [vb]):
            assert torch.equal(x, y), key
