"""X-Decoder's multi-task training plug-in for the workflow trainer (`hf-unified-seg train --task x-decoder`).

One training batch joins every pretraining task of spec §4 on the same ShapesWorld-schema records (the reference
draws a segmentation batch and an image-text batch each step; ShapesWorld images carry all annotations, so one
batch serves both, which `XDecoderForPreTraining` runs in one decoder pass):

- generic segmentation: every panoptic segment (things and stuff) -> `mask_labels` / `class_labels`, with the
  `config.id2label` vocabulary minus `config.held_out_label_ids` as class prompts (one random template per class,
  background last);
- referring segmentation: one random referring expression per image -> `referring_input_ids` + its segment's mask;
- captioning and image-text retrieval: one random caption per image -> `caption_input_ids`.

Evaluation reports panoptic PQ / SQ / RQ and mIoU (template-ensemble class embeddings), referring cIoU, retrieval
R@1 both ways (with its chance level), and whether generated captions name the shapes in the image.
"""

from __future__ import annotations

import random
import re
from typing import Any

import numpy as np
import torch

from ...training.tasks import TrainingTask, register_training_task, unwrap_model
from .processing_x_decoder import XDecoderProcessor

_PROCESSORS: dict[int, XDecoderProcessor] = {}
_RNG = random.Random(0)


def processor_for(image_processor: Any, config: Any) -> XDecoderProcessor:
    """The [`XDecoderProcessor`] around `image_processor` with the tokenizer of the model's text encoder (cached)."""
    if isinstance(image_processor, XDecoderProcessor):
        return image_processor
    key = id(image_processor)
    cached = _PROCESSORS.get(key)
    if cached is None or cached.image_processor is not image_processor:
        from transformers import AutoTokenizer

        from .configuration_x_decoder import default_text_model_path

        name = getattr(config, "tokenizer_name_or_path", None) or default_text_model_path()
        tokenizer = AutoTokenizer.from_pretrained(name)
        cached = XDecoderProcessor(image_processor, tokenizer, max_text_len=int(config.max_text_len))
        _PROCESSORS[key] = cached
    return cached


def class_names_of(config: Any) -> list[str]:
    """Class names in index order (`config.id2label`)."""
    id2label = {int(k): v for k, v in (config.id2label or {}).items()}
    if sorted(id2label) != list(range(len(id2label))) or not id2label:
        raise ValueError(f"`config.id2label` must map 0..K-1 to class names, got {config.id2label}.")
    return [id2label[i] for i in range(len(id2label))]


def training_vocabulary(config: Any) -> tuple[list[str], torch.Tensor]:
    """Class prompts of training and the map from `id2label` ids to their positions (-1 for held-out classes)."""
    names = class_names_of(config)
    held = {int(i) for i in (getattr(config, "held_out_label_ids", None) or [])}
    if not held <= set(range(len(names))):
        raise ValueError(f"`held_out_label_ids` {sorted(held)} must be ids of `id2label` (0..{len(names) - 1}).")
    kept = [i for i in range(len(names)) if i not in held]
    if not kept:
        raise ValueError("`held_out_label_ids` withholds every class; at least one must be trained.")
    lookup = torch.full((len(names),), -1, dtype=torch.long)
    lookup[kept] = torch.arange(len(kept))
    return [names[i] for i in kept], lookup


def _segments(record: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in record["segments_info"] if not s.get("iscrowd", 0)]


def _rgb(record: dict[str, Any]) -> Any:
    image = record.get("image")
    if image is None or not hasattr(image, "convert"):
        raise TypeError(f"X-Decoder records need a PIL `image`, got {type(image).__name__}.")
    return image.convert("RGB")


def collate_x_decoder(
    records: list[dict[str, Any]], image_processor: Any, config: Any = None, rng: random.Random | None = None
) -> dict[str, Any]:
    """
    Joint batch for [`XDecoderForPreTraining`] from ShapesWorld / COCO-panoptic records (`image`, `panoptic`,
    `segments_info`, and optionally `referring` and `captions`).

    Args:
        records: the batch.
        image_processor: an [`XDecoderImageProcessor`] (or a whole [`XDecoderProcessor`]).
        config: the model config (class vocabulary, `use_*` task switches, tokenizer, `max_text_len`).
        rng: source of the random template / phrase / caption choices.
    """
    rng = rng or _RNG
    processor = processor_for(image_processor, config)
    out = processor.image_processor(
        images=[_rgb(r) for r in records],
        segmentation_maps=[r["panoptic"] for r in records],
        segments_info=[_segments(r) for r in records],
        return_segment_ids=True,
        return_tensors="pt",
    )
    names, lookup = training_vocabulary(config)
    class_labels = []
    for labels in out["class_labels"]:
        mapped = lookup[labels]
        if (mapped < 0).any():
            bad = sorted({class_names_of(config)[int(i)] for i in labels[mapped < 0]})
            raise ValueError(f"training records contain held-out classes {bad} (`config.held_out_label_ids`).")
        class_labels.append(mapped)
    batch: dict[str, Any] = {
        "pixel_values": out["pixel_values"],
        "pixel_mask": out["pixel_mask"],
        "mask_labels": out["mask_labels"],
        "class_labels": class_labels,
    }
    batch.update(processor.encode_class_names(names, training=True, generator=rng))

    if getattr(config, "use_referring", True) and all(r.get("referring") for r in records):
        phrases, masks = [], []
        for record, mask_labels, segment_ids in zip(records, out["mask_labels"], out["mask_segment_ids"]):
            entry = rng.choice(record["referring"])
            phrases.append(entry["sentence"])
            hit = (segment_ids == int(entry["segment_id"])).nonzero().flatten()
            # a segment can vanish when the image is downscaled: its phrase then refers to an empty mask
            masks.append(mask_labels[hit[:1]] if len(hit) else torch.zeros_like(mask_labels[:1]))
        batch.update(processor.encode_referring_texts(phrases, truncation=True))
        batch["referring_mask_labels"] = masks

    wants_text = getattr(config, "use_captioning", True) or getattr(config, "use_retrieval", True)
    if wants_text and all(r.get("captions") for r in records):
        encoded = processor._tokenize([rng.choice(r["captions"]) for r in records], "captions", truncation=True)
        batch["caption_input_ids"] = encoded["input_ids"]
        batch["caption_attention_mask"] = encoded["attention_mask"]
    return batch


# ----------------------------------------------------------------------------------------------------------------
# evaluation


def head_views(model: Any) -> dict[str, Any]:
    """Segmentation, retrieval and captioning heads sharing `model`'s weights (any X-Decoder head works)."""
    from .modeling_x_decoder import (
        XDecoderForCaptioning,
        XDecoderForImageTextRetrieval,
        XDecoderForUniversalSegmentation,
    )

    model = unwrap_model(model)
    state = model.state_dict()
    views = {}
    for key, cls in (
        ("segmentation", XDecoderForUniversalSegmentation),
        ("retrieval", XDecoderForImageTextRetrieval),
        ("captioning", XDecoderForCaptioning),
    ):
        if isinstance(model, cls):
            views[key] = model
            continue
        with torch.device("meta"):
            head = cls(model.config)
        head.model = model.model  # the shared body; buffers outside it are copied below
        rest = {k: v for k, v in state.items() if not k.startswith("model.") and k in head.state_dict()}
        head.load_state_dict(rest, strict=False, assign=True)
        leftover = [n for n, t in [*head.named_parameters(), *head.named_buffers()] if t.is_meta]
        if leftover:
            raise RuntimeError(f"{cls.__name__} has weights outside the shared body that {type(model).__name__} lacks")
        views[key] = head.eval()
    return views


def _batches(records: Any, size: int):
    for start in range(0, len(records), size):
        yield [records[i] for i in range(start, min(start + size, len(records)))]


def _panoptic_ids(record: dict[str, Any]) -> np.ndarray:
    rgb = np.asarray(record["panoptic"].convert("RGB"), dtype=np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]


def _mean_present(values: np.ndarray) -> float:
    """Mean over the classes that occur (NaN marks a class absent from references and predictions); 0 if none."""
    present = values[np.isfinite(values)]
    return float(present.mean()) if present.size else 0.0


def _mentions(text: str, names: list[str]) -> set[str]:
    words = set(re.findall(r"[a-z]+", text.lower()))
    return {n for n in names if n in words}


@torch.no_grad()
def evaluate_x_decoder(
    model: Any,
    records: Any,
    image_processor: Any,
    *,
    batch_size: int = 8,
    device: Any = "cpu",
    categories: list[dict[str, Any]] | None = None,
    num_caption_images: int = 32,
    class_names: list[str] | None = None,
) -> dict[str, float]:
    """
    Every X-Decoder task on a validation split.

    Args:
        model: any X-Decoder head (the pretraining model during training).
        records: validation records (`image`, `panoptic`, `segments_info`, `semantic`, `referring`, `captions`).
        image_processor: the model's image processor (or processor).
        batch_size, device: evaluation batching.
        categories: the dataset's categories table (`isthing` decides which classes are fused as stuff).
        num_caption_images: how many images are captioned for the caption checks (0 skips captioning).
        class_names: vocabulary for open-vocabulary evaluation (default: `config.id2label`).

    Returns:
        `panoptic_quality`, `segmentation_quality`, `recognition_quality`, `mean_iou` (and `mean_iou_things` /
        `mean_iou_stuff`, over the classes present), `referring_ciou`,
        `retrieval_text_to_image_r1`, `retrieval_image_to_text_r1`, `retrieval_chance_r1`, and (when captioning)
        `caption_shape_recall` / `caption_shape_precision`: share of the present thing classes named by the caption,
        and share of the named shapes that are present (percentages).
    """
    from ...metrics import load as load_metric
    from ...metrics import panoptic_from_post_processing, panoptic_from_record

    base = unwrap_model(model)
    config = base.config
    processor = processor_for(image_processor, config)
    views = head_views(base)
    seg, retrieval, captioner = views["segmentation"], views["retrieval"], views["captioning"]
    was_training = base.training
    base.eval()
    names = class_names or class_names_of(config)
    if categories is None:
        categories = [{"id": i, "name": n, "isthing": True} for i, n in enumerate(names)]
    stuff_ids = {int(c["id"]) for c in categories if not c.get("isthing", True)}
    thing_names = [str(c["name"]) for c in categories if c.get("isthing", True)]
    class_embeddings = processor.ensemble_class_embeddings(seg, names)

    pan_preds, pan_refs, sem_preds, sem_refs = [], [], [], []
    ref_preds, ref_refs = [], []
    image_embeds, texts, text_refs = [], [], []
    for chunk in _batches(records, batch_size):
        inputs = processor.image_processor([_rgb(r) for r in chunk], return_tensors="pt")
        pixel_values, pixel_mask = inputs["pixel_values"].to(device), inputs["pixel_mask"].to(device)
        sizes = [(r["image"].height, r["image"].width) for r in chunk]
        outputs = seg(pixel_values=pixel_values, pixel_mask=pixel_mask, class_embeddings=class_embeddings)
        panoptic = processor.post_process_panoptic_segmentation(
            outputs, target_sizes=sizes, label_ids_to_fuse=stuff_ids
        )
        for record, pred in zip(chunk, panoptic):
            pan_preds.append(panoptic_from_post_processing(pred))
            pan_refs.append(panoptic_from_record(record))
        for pred, record in zip(processor.post_process_semantic_segmentation(outputs, target_sizes=sizes), chunk):
            sem_preds.append(pred.cpu().numpy().astype(np.int64))
            sem_refs.append(np.asarray(record["semantic"], dtype=np.int64))

        # referring: round k grounds the k-th expression of every image that has one
        phrases = [[e for e in (r.get("referring") or [])][: config.num_object_queries] for r in chunk]
        for k in range(max((len(p) for p in phrases), default=0)):
            idx = [i for i, p in enumerate(phrases) if len(p) > k]
            encoded = processor.encode_referring_texts([phrases[i][k]["sentence"] for i in idx], truncation=True)
            out = seg(
                pixel_values=pixel_values[idx],
                pixel_mask=pixel_mask[idx],
                class_embeddings=class_embeddings,
                referring_input_ids=encoded["referring_input_ids"].to(device),
                referring_attention_mask=encoded["referring_attention_mask"].to(device),
                task="referring",
            )
            results = processor.post_process_referring_segmentation(out, target_sizes=[sizes[i] for i in idx])
            for i, result in zip(idx, results):
                ref_preds.append(result["masks"][0].cpu().numpy())
                ref_refs.append(_panoptic_ids(chunk[i]) == int(phrases[i][k]["segment_id"]))

        offset = sum(len(e) for e in image_embeds)
        image_embeds.append(retrieval.get_image_features(pixel_values, pixel_mask).float().cpu())
        for i, record in enumerate(chunk):
            for caption in record.get("captions") or []:
                texts.append(caption)
                text_refs.append([offset + i])

    result: dict[str, float] = {}
    pq = load_metric("panoptic_quality", categories=categories).compute(
        predictions=[ids for ids, _ in pan_preds],
        references=[ids for ids, _ in pan_refs],
        prediction_segments_info=[info for _, info in pan_preds],
        reference_segments_info=[info for _, info in pan_refs],
    )
    miou = load_metric("mean_iou", num_labels=len(names)).compute(
        predictions=sem_preds, references=sem_refs, ignore_index=255
    )
    per_class = np.asarray(miou["per_category_iou"], dtype=np.float64)
    is_stuff = np.array([i in stuff_ids for i in range(len(names))])
    result.update(
        panoptic_quality=float(pq["pq"]),
        segmentation_quality=float(pq["sq"]),
        recognition_quality=float(pq["rq"]),
        mean_iou=float(miou["mean_iou"]),
        # things and stuff apart: the two halves of ShapesWorld learn at very different speeds
        mean_iou_things=_mean_present(per_class[~is_stuff]),
        mean_iou_stuff=_mean_present(per_class[is_stuff]),
    )
    if ref_preds:
        result["referring_ciou"] = float(
            load_metric("referring").compute(predictions=ref_preds, references=ref_refs)["ciou"]
        )
    if texts:
        images = torch.cat(image_embeds)
        encoded = processor._tokenize(texts, "captions", truncation=True)
        text_embeds = torch.cat(
            [
                retrieval.get_text_features(ids.to(device), mask.to(device)).float().cpu()
                for ids, mask in zip(encoded["input_ids"].split(64), encoded["attention_mask"].split(64))
            ]
        )
        similarity = (
            torch.nn.functional.normalize(text_embeds, dim=-1) @ torch.nn.functional.normalize(images, dim=-1).T
        )
        scores = load_metric("retrieval").compute(predictions=similarity.numpy(), references=text_refs)
        result["retrieval_text_to_image_r1"] = float(scores["text_to_image_r@1"])
        result["retrieval_image_to_text_r1"] = float(scores["image_to_text_r@1"])
        result["retrieval_chance_r1"] = 100.0 / len(images)
    if num_caption_images and config.use_captioning:
        recall, precision = [], []
        subset = [records[i] for i in range(min(num_caption_images, len(records)))]
        for chunk in _batches(subset, batch_size):
            inputs = processor.image_processor([_rgb(r) for r in chunk], return_tensors="pt")
            sequences = captioner.generate(inputs["pixel_values"].to(device), inputs["pixel_mask"].to(device))
            for record, caption in zip(chunk, processor.batch_decode(sequences)):
                present = {names[int(s["category_id"])] for s in _segments(record) if s.get("isthing", True)}
                named = _mentions(caption, thing_names)
                recall.append(len(named & present) / max(len(present), 1))
                precision.append(len(named & present) / len(named) if named else 0.0)
        result["caption_shape_recall"] = 100.0 * float(np.mean(recall))
        result["caption_shape_precision"] = 100.0 * float(np.mean(precision))
    if was_training:
        base.train()
    return result


@torch.no_grad()
def sample_captions(model: Any, records: Any, image_processor: Any, device: Any = "cpu") -> list[str]:
    """Greedy captions of `records` (for model cards and reports)."""
    base = unwrap_model(model)
    processor = processor_for(image_processor, base.config)
    captioner = head_views(base)["captioning"]
    inputs = processor.image_processor([_rgb(r) for r in records], return_tensors="pt")
    return processor.batch_decode(
        captioner.generate(inputs["pixel_values"].to(device), inputs["pixel_mask"].to(device))
    )


X_DECODER_TASK = register_training_task(
    TrainingTask(
        name="x-decoder",
        auto_class="AutoModelForPreTraining",
        pipeline_tag="image-segmentation",
        collate=collate_x_decoder,
        evaluate=evaluate_x_decoder,
        main_metric="panoptic_quality",
        metric_names={
            "panoptic_quality": ("panoptic_quality", "PQ (%)"),
            "mean_iou": ("mean_iou", "mIoU (%)"),
            "referring_ciou": ("ciou", "Referring cIoU (%)"),
            "retrieval_text_to_image_r1": ("recall", "Text-to-image R@1 (%)"),
            "retrieval_image_to_text_r1": ("recall", "Image-to-text R@1 (%)"),
        },
    ),
    exist_ok=True,
)

__all__ = [
    "X_DECODER_TASK",
    "class_names_of",
    "collate_x_decoder",
    "evaluate_x_decoder",
    "head_views",
    "processor_for",
    "sample_captions",
    "training_vocabulary",
]
