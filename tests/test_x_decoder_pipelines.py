"""X-Decoder through pipelines from a saved tiny model: segmentation subtasks, referring, retrieval, captioning."""

import logging

import numpy as np
import PIL.Image
import pytest
import torch
import transformers
from transformers import AutoProcessor, pipeline

import hf_unified_seg  # noqa: F401  (registration)
from hf_unified_seg.models.x_decoder import (
    XDecoderConfig,
    XDecoderForCaptioning,
    XDecoderForImageTextRetrieval,
    XDecoderForUniversalSegmentation,
    XDecoderImageProcessor,
    XDecoderProcessor,
)
from hf_unified_seg.pipelines import ImageCaptioningPipeline, ImageTextRetrievalPipeline, ReferringSegmentationPipeline

NAMES = {0: "circle", 1: "square", 2: "sky", 3: "grass"}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = tmp_path_factory.mktemp("xdecoder_tiny")
    torch.manual_seed(0)
    model = XDecoderForUniversalSegmentation(XDecoderConfig.from_preset("tiny", id2label=NAMES)).eval()
    processor = XDecoderProcessor(
        XDecoderImageProcessor(size={"shortest_edge": 64, "longest_edge": 96}), max_text_len=16
    )
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


def _images():
    rng = np.random.default_rng(0)
    rgb = PIL.Image.fromarray((rng.random((45, 70, 3)) * 255).astype(np.uint8))
    return {"RGB": rgb, "L": rgb.resize((33, 61)).convert("L"), "RGBA": rgb.resize((64, 40)).convert("RGBA")}


@pytest.fixture
def transformers_errors(caplog):
    transformers.utils.logging.enable_propagation()
    with caplog.at_level(logging.ERROR, logger="transformers"):
        yield caplog
    transformers.utils.logging.disable_propagation()


@pytest.mark.parametrize("subtask", ["panoptic", "instance", "semantic"])
def test_image_segmentation_pipeline_each_subtask(saved, subtask, transformers_errors):
    segmenter = pipeline("image-segmentation", model=str(saved))
    assert not [r for r in transformers_errors.records if "not supported" in r.getMessage()]
    model, processor = segmenter.model, AutoProcessor.from_pretrained(saved)
    # low thresholds keep the untrained model's segments, so there is something to compare
    kwargs = {"threshold": 0.0, "overlap_mask_area_threshold": 0.0} if subtask != "semantic" else {}
    for mode, image in _images().items():
        annotations = segmenter(image, subtask=subtask, **kwargs)
        for a in annotations:
            assert a["label"] in NAMES.values()
            assert a["mask"].size == image.size and a["mask"].mode == "L"
        # the pipeline's segments are the processor's post-processing of the model's outputs at the original size
        with torch.no_grad():
            outputs = model(**processor(images=image))
        size = [(image.height, image.width)]
        if subtask == "semantic":
            (expected,) = processor.post_process_semantic_segmentation(outputs, target_sizes=size)
            expected = [(NAMES[int(c)], (expected == c).numpy()) for c in expected.unique()]
        else:
            post = getattr(processor, f"post_process_{subtask}_segmentation")
            (result,) = post(outputs, target_sizes=size, mask_threshold=0.5, **kwargs)
            expected = [
                (NAMES[s["label_id"]], (result["segmentation"] == s["id"]).numpy()) for s in result["segments_info"]
            ]
        assert [a["label"] for a in annotations] == [label for label, _ in expected], (subtask, mode)
        for a, (_, mask) in zip(annotations, expected):
            assert np.array_equal(np.asarray(a["mask"]) > 0, mask)
        if subtask != "panoptic":  # instance / semantic always return something; panoptic may drop every query
            assert annotations, (subtask, mode)


def test_referring_pipeline(saved):
    segmenter = pipeline("referring-segmentation", model=str(saved))
    assert isinstance(segmenter, ReferringSegmentationPipeline)
    assert isinstance(segmenter.model, XDecoderForUniversalSegmentation)
    images = _images()
    for mode in ("RGB", "L"):
        out = segmenter(images[mode], ["the red circle", "the square on the left"])
        assert [o["phrase"] for o in out] == ["the red circle", "the square on the left"]
        assert all(o["mask"].size == images[mode].size and 0.0 <= o["score"] <= 1.0 for o in out)
    (out,) = segmenter(images["RGBA"], "the circle")
    assert out["mask"].size == images["RGBA"].size
    with pytest.raises(ValueError, match="empty"):
        segmenter(_images()["RGB"], "   ")


def test_retrieval_pipeline(saved):
    retriever = pipeline("image-text-retrieval", model=str(saved))
    assert isinstance(retriever, ImageTextRetrievalPipeline)
    assert isinstance(retriever.model, XDecoderForImageTextRetrieval)
    images = list(_images().values())
    texts = ["a red circle", "a blue square above grass"]
    out = retriever(images=images, texts=texts)
    assert [t["text"] for t in out["text_to_image"]] == texts
    assert sorted(r["image_index"] for r in out["text_to_image"][0]["ranking"]) == [0, 1, 2]
    # the ranking is the model's own similarity order
    model, processor = retriever.model, retriever.processor
    inputs = processor(images=images, text=texts)
    with torch.no_grad():
        logits = model(
            pixel_values=inputs["pixel_values"], input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]
        ).logits_per_image
    assert [r["image_index"] for r in out["text_to_image"][1]["ranking"]] == logits[:, 1].argsort(
        descending=True
    ).tolist()
    assert [r["text_index"] for r in out["image_to_text"][2]["ranking"]] == logits[2].argsort(descending=True).tolist()
    assert len(retriever(images=images, texts=texts, top_k=1)["image_to_text"][0]["ranking"]) == 1


def test_captioning_pipeline(saved):
    captioner = pipeline("image-captioning", model=str(saved))
    assert isinstance(captioner, ImageCaptioningPipeline)
    assert isinstance(captioner.model, XDecoderForCaptioning)
    for mode in ("L", "RGBA"):
        (out,) = captioner(_images()[mode], max_new_tokens=4)
        assert isinstance(out["generated_text"], str)
    # the text equals decoding the model's own greedy generation
    image = _images()["RGB"]
    inputs = captioner.processor(images=image)
    sequence = captioner.model.generate(inputs["pixel_values"], max_new_tokens=4)
    assert captioner(image, max_new_tokens=4)[0]["generated_text"] == captioner.processor.batch_decode(sequence)[0]


def test_pipeline_support_listing_rejects_bad_input():
    from hf_unified_seg.pipelines import add_to_pipeline_support

    with pytest.raises(ValueError, match="kind"):
        add_to_pipeline_support("depth-estimation", "x_decoder", "XDecoderForUniversalSegmentation")
    with pytest.raises(ValueError, match="belongs to transformers"):
        add_to_pipeline_support("universal-segmentation", "mask2former", "XDecoderForUniversalSegmentation")
