"""X-Decoder's training plug-in: joint batches from ShapesWorld records and a smoke run of the workflow trainer."""

import math
import random

import numpy as np
import pytest
import torch
from transformers import AutoModelForPreTraining, AutoProcessor, pipeline

from hf_unified_seg.data import get_categories, load_shapesworld
from hf_unified_seg.models.x_decoder import XDecoderConfig, XDecoderForPreTraining, XDecoderImageProcessor
from hf_unified_seg.models.x_decoder.training_x_decoder import collate_x_decoder, evaluate_x_decoder, processor_for
from hf_unified_seg.training import get_training_task
from hf_unified_seg.training.arguments import DataArguments, ModelArguments, SegTrainingArguments
from hf_unified_seg.training.trainer import train


@pytest.fixture(scope="module")
def data():
    train_ds = load_shapesworld("train", num_images=4, image_size=64, seed=1)
    val_ds = load_shapesworld("val", num_images=2, image_size=64, seed=1)
    return train_ds, val_ds, get_categories(train_ds)


@pytest.fixture(scope="module")
def config(data):
    id2label = {c["id"]: c["name"] for c in data[2]}
    return XDecoderConfig.from_preset("tiny", id2label=id2label)


def test_registered_task():
    task = get_training_task("x-decoder")
    assert task.collate is collate_x_decoder and task.auto_class == "AutoModelForPreTraining"


def test_collate_joint_batch(data, config):
    records = [data[0][i] for i in range(2)]
    image_processor = XDecoderImageProcessor(size={"height": 64, "width": 64})
    batch = collate_x_decoder(records, image_processor, config, rng=random.Random(0))
    assert batch["pixel_values"].shape == (2, 3, 64, 64)
    assert batch["class_input_ids"].shape[0] == len(config.id2label) + 1  # background last
    processor = processor_for(image_processor, config)
    for i, record in enumerate(records):
        # mask labels: one per panoptic segment, classes from segments_info
        segments = sorted(record["segments_info"], key=lambda s: s["id"])
        assert batch["class_labels"][i].tolist() == [s["category_id"] for s in segments]
        rgb = np.asarray(record["panoptic"], dtype=np.int64)
        ids = rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]
        for mask, segment in zip(batch["mask_labels"][i], segments):
            assert torch.equal(mask.bool(), torch.from_numpy(ids == segment["id"]))
        # referring: the phrase is one of the record's, and its mask is the mask of the segment it names
        # (texts longer than the tiny config's 16 tokens are truncated in training batches)
        phrase = processor.tokenizer.decode(batch["referring_input_ids"][i], skip_special_tokens=True)
        entry = next(e for e in record["referring"] if e["sentence"].lower().startswith(phrase))
        assert torch.equal(batch["referring_mask_labels"][i][0].bool(), torch.from_numpy(ids == entry["segment_id"]))
        caption = processor.tokenizer.decode(batch["caption_input_ids"][i], skip_special_tokens=True)
        assert any(c.lower().startswith(caption) for c in record["captions"]), caption
        assert batch["caption_input_ids"][i][batch["caption_attention_mask"][i].sum() - 1] == 102  # EOS kept
    # the batch is exactly what the pretraining model consumes, and gives a finite loss with every task on
    torch.manual_seed(0)
    model = XDecoderForPreTraining(config)
    out = model(**batch)
    assert math.isfinite(out.loss.item())
    assert {"loss_retrieval", "loss_captioning"} <= set(out.loss_dict) and any("ground" in k for k in out.loss_dict)


def test_held_out_classes_never_enter_training_prompts(data, config):
    records = [data[0][i] for i in range(2)]
    image_processor = XDecoderImageProcessor(size={"height": 64, "width": 64})
    processor = processor_for(image_processor, config)
    names = [config.id2label[i] for i in range(len(config.id2label))]
    held = [names.index("pentagon"), names.index("crescent")]
    withheld = XDecoderConfig.from_preset("tiny", id2label=config.id2label, held_out_label_ids=held)
    full = collate_x_decoder(records, image_processor, config, rng=random.Random(0))
    batch = collate_x_decoder(records, image_processor, withheld, rng=random.Random(0))
    prompts = processor.tokenizer.batch_decode(batch["class_input_ids"], skip_special_tokens=True)
    assert len(prompts) == len(names) - 2 + 1  # seen classes + background
    assert not any("pentagon" in p or "crescent" in p for p in prompts)
    # labels move to the positions of their names in the shortened prompt list
    for old, new in zip(full["class_labels"], batch["class_labels"]):
        kept = [n for i, n in enumerate(names) if i not in held]
        assert [kept[j] for j in new.tolist()] == [names[j] for j in old.tolist()]
    # a training image with a withheld class is refused, naming it
    square = XDecoderConfig.from_preset("tiny", id2label=config.id2label, held_out_label_ids=[names.index("square")])
    has_square = [r for r in data[0] if any(names[s["category_id"]] == "square" for s in r["segments_info"])]
    assert has_square
    with pytest.raises(ValueError, match="held-out classes \\['square'\\]"):
        collate_x_decoder(has_square[:1], image_processor, square)
    with pytest.raises(ValueError, match="held_out_label_ids"):
        collate_x_decoder(
            records,
            image_processor,
            XDecoderConfig.from_preset("tiny", id2label=config.id2label, held_out_label_ids=[99]),
        )


def test_evaluate_reports_every_task(data, config):
    torch.manual_seed(0)
    model = XDecoderForPreTraining(config).eval()
    metrics = evaluate_x_decoder(
        model,
        data[1],
        XDecoderImageProcessor(size={"height": 64, "width": 64}),
        categories=data[2],
        num_caption_images=1,
    )
    expected = {
        "panoptic_quality",
        "mean_iou",
        "referring_ciou",
        "retrieval_text_to_image_r1",
        "retrieval_image_to_text_r1",
        "retrieval_chance_r1",
        "caption_shape_recall",
        "caption_shape_precision",
    }
    assert expected <= set(metrics) and all(math.isfinite(v) for v in metrics.values())
    assert metrics["retrieval_chance_r1"] == 50.0


def test_smoke_training_with_the_workflow_trainer(tmp_path, data):
    result = train(
        ModelArguments(model_name_or_path="x_decoder", preset="tiny", task="x-decoder", image_size=64),
        DataArguments(),
        SegTrainingArguments(
            output_dir=str(tmp_path),
            max_steps=2,
            per_device_train_batch_size=2,
            per_device_eval_batch_size=2,
            learning_rate=1e-3,
            disable_tqdm=True,
            report_to="none",
            skip_final_eval=True,  # evaluate_x_decoder has its own test; keep the smoke run short
        ),
        train_dataset=data[0],
        eval_dataset=data[1],
        categories=data[2],
    )
    assert result.task == "x-decoder" and result.global_step == 2 and math.isfinite(result.train_loss)
    # the saved run reloads as the pretraining model and serves the segmentation pipeline
    model = AutoModelForPreTraining.from_pretrained(tmp_path)
    assert isinstance(model, XDecoderForPreTraining)
    # the dataset's open-vocabulary classes were withheld from training, but stay in the label vocabulary
    held = [c["id"] for c in data[2] if c.get("openvocab")]
    assert held and model.config.held_out_label_ids == held and len(model.config.id2label) == len(data[2])
    assert AutoProcessor.from_pretrained(tmp_path).tokenizer is not None
    segmenter = pipeline("image-segmentation", model=str(tmp_path))
    assert isinstance(segmenter(data[1][0]["image"], subtask="semantic"), list)
