"""Miniature reproduction of X-Decoder's claims on ShapesWorld (spec §8.4), and the nano model's results table.

Claims (3 seeds each; a claim "holds" when the mean gap exceeds the seed standard deviation of the two arms):

1. caption supervision lifts open-vocabulary segmentation (Table 4.2: Seg < full): `seg_only` (generic + referring
   segmentation, no image-text losses) vs `full`, measured by mIoU / PQ on the open-vocabulary split, whose held-out
   shapes never appear as training masks (only in captions);
2. query interaction (Table 4.4): `latent_x_text` (latent queries cannot read the text) lowers referring cIoU;
3. task synergy (Table 4.6): `no_captioning` (captioning removed) lowers referring cIoU.

Every run trains the nano model (spec §8.2) through the workflow trainer's Python API with the "x-decoder" task.

Modes:
- default: the claims above (`--steps`, `--seeds`, `--image-size`); `--smoke`: tiny model, a few steps, 1 seed;
- `--prepare DIR`: write the initial nano model + processor used by the CLI run of the model card;
- `--report DIR`: evaluate a trained model on ShapesWorld val and val_openvocab and write the Markdown table
  (`--card`, default `model_cards/results/x_decoder.md`).

Usage: `python scripts/reproduce_x_decoder.py [--smoke] [--output results.json]`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from hf_unified_seg.data import get_categories, load_shapesworld
from hf_unified_seg.models.x_decoder import (
    XDecoderConfig,
    XDecoderForPreTraining,
    XDecoderImageProcessor,
    XDecoderProcessor,
)
from hf_unified_seg.models.x_decoder.training_x_decoder import evaluate_x_decoder, sample_captions

# `--backbone` -> nano preset: the FocalNet of spec §8.2, or the small BasicBlock ResNet of the model card
NANO_PRESETS = {"focalnet": "nano", "resnet": "nano_resnet"}
VARIANTS: dict[str, dict[str, Any]] = {
    "full": {},
    "seg_only": {"use_captioning": False, "use_retrieval": False},
    "latent_x_text": {"latent_attends_text": False},
    "no_captioning": {"use_captioning": False},
}
CLAIMS = [
    # (claim, baseline variant, ablated variant, metric key, split): the claim holds when baseline > ablated
    ("caption supervision lifts open-vocabulary mIoU (Table 4.2)", "full", "seg_only", "mean_iou", "val_openvocab"),
    (
        "caption supervision lifts open-vocabulary PQ (Table 4.2)",
        "full",
        "seg_only",
        "panoptic_quality",
        "val_openvocab",
    ),
    ("latent queries reading text help referring (Table 4.4)", "full", "latent_x_text", "referring_ciou", "val"),
    ("captioning helps referring (Table 4.6)", "full", "no_captioning", "referring_ciou", "val"),
]


# ----------------------------------------------------------------------------------------------------------------
# shared set-up (also used for the model card's CLI run)


def caption_vocabulary(processor: XDecoderProcessor, records: Any) -> list[int]:
    """Word-piece ids of every caption and referring phrase of `records`, plus [PAD]/[CLS]/[SEP] (spec §8.2 speed
    option: caption logits are scored against these rows of the frozen token-embedding table only)."""
    texts = [c for r in records for c in r["captions"]] + [e["sentence"] for r in records for e in r["referring"]]
    ids = {processor.tokenizer.pad_token_id, processor.tokenizer.cls_token_id, processor.tokenizer.sep_token_id}
    for encoded in processor.tokenizer(texts)["input_ids"]:
        ids.update(encoded)
    return sorted(ids)


def build_nano(
    categories: list[dict[str, Any]],
    caption_vocab: list[int] | None,
    image_size: int,
    smoke: bool = False,
    backbone: str = "focalnet",
    **overrides,
) -> tuple[XDecoderForPreTraining, XDecoderProcessor]:
    """The nano (or, for `smoke`, tiny) pretraining model sized for `categories`, and its processor.

    `backbone` picks the nano preset: `"focalnet"` (spec §8.2, `"nano"`) or `"resnet"` (`"nano_resnet"`)."""
    if backbone not in NANO_PRESETS:
        raise ValueError(f"`backbone` must be one of {sorted(NANO_PRESETS)}, got {backbone!r}.")
    id2label = {int(c["id"]): c["name"] for c in categories}
    config = XDecoderConfig.from_preset(
        "tiny" if smoke else NANO_PRESETS[backbone], id2label=id2label, caption_vocab_ids=caption_vocab, **overrides
    )
    stuff = [int(c["id"]) for c in categories if not c["isthing"]]
    image_processor = XDecoderImageProcessor(size={"height": image_size, "width": image_size}, label_ids_to_fuse=stuff)
    processor = XDecoderProcessor(image_processor, max_text_len=config.max_text_len)
    return XDecoderForPreTraining(config), processor


def _tokenizer_processor() -> XDecoderProcessor:
    return XDecoderProcessor(XDecoderImageProcessor())


# ----------------------------------------------------------------------------------------------------------------
# claims


def run_variant(
    name: str,
    seed: int,
    data: dict[str, Any],
    steps: int,
    batch: int,
    image_size: int,
    smoke: bool,
    learning_rate: float = 3e-4,
    scheduler: str = "constant_with_warmup",
    backbone: str = "focalnet",
) -> dict[str, Any]:
    from hf_unified_seg.training.arguments import DataArguments, ModelArguments, SegTrainingArguments
    from hf_unified_seg.training.trainer import train

    torch.manual_seed(seed)
    model, processor = build_nano(
        data["categories"], data["caption_vocab"], image_size, smoke, backbone, **VARIANTS[name]
    )
    with tempfile.TemporaryDirectory() as tmp:
        init = Path(tmp) / "init"
        model.save_pretrained(init)
        processor.save_pretrained(init)
        start = time.perf_counter()
        result = train(
            ModelArguments(model_name_or_path=str(init), task="x-decoder"),
            DataArguments(),
            SegTrainingArguments(
                output_dir=str(Path(tmp) / "run"),
                max_steps=steps,
                per_device_train_batch_size=batch,
                learning_rate=learning_rate,
                weight_decay=0.05,
                max_grad_norm=5.0,
                warmup_steps=min(200, steps // 10),
                lr_scheduler_type=scheduler,
                seed=seed,
                disable_tqdm=True,
                report_to="none",
                skip_final_eval=True,
            ),
            train_dataset=data["train"],
            eval_dataset=data["val"],
            categories=data["categories"],
        )
        train_seconds = time.perf_counter() - start
        trained = XDecoderForPreTraining.from_pretrained(Path(tmp) / "run").eval()
        image_processor = XDecoderImageProcessor.from_pretrained(Path(tmp) / "run")
    metrics = {}
    for split in ("val", "val_openvocab"):
        metrics[split] = evaluate_x_decoder(
            trained,
            data[split],
            image_processor,
            categories=data["categories"],
            num_caption_images=0,  # captions are not part of the claims measured here
        )
    return {"variant": name, "seed": seed, "steps": result.global_step, "train_seconds": train_seconds, **metrics}


_WORKER_DATA: dict[str, Any] = {}


def _init_worker(data_settings: tuple[Any, ...]) -> None:
    torch.set_num_threads(1)
    _WORKER_DATA.update(load_data(*data_settings))


def _worker_run(name: str, seed: int, run_settings: tuple[Any, ...]) -> dict[str, Any]:
    steps, batch, smoke, learning_rate, scheduler, backbone = run_settings
    return run_variant(
        name, seed, _WORKER_DATA, steps, batch, _WORKER_DATA["image_size"], smoke, learning_rate, scheduler, backbone
    )


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for claim, base, ablated, key, split in CLAIMS:
        a = [r[split][key] for r in runs if r["variant"] == base and key in r[split]]
        b = [r[split][key] for r in runs if r["variant"] == ablated and key in r[split]]
        if not a or not b:
            continue
        std = max(statistics.pstdev(a), statistics.pstdev(b)) if len(a) > 1 else float("nan")
        gap = statistics.mean(a) - statistics.mean(b)
        rows.append(
            {
                "claim": claim,
                "metric": f"{key} ({split})",
                "baseline": base,
                "baseline_mean": statistics.mean(a),
                "ablated": ablated,
                "ablated_mean": statistics.mean(b),
                "gap": gap,
                "seed_std": std,
                "holds": bool(gap > 0 and gap > std) if std == std else None,
            }
        )
    return rows


def claims_markdown(rows: list[dict[str, Any]], runs: list[dict[str, Any]]) -> str:
    lines = ["| variant | seeds | PQ val | mIoU val | cIoU val | IR@1 | TR@1 | PQ open-vocab | mIoU open-vocab |"]
    lines.append("|---|---|---|---|---|---|---|---|---|")
    for name in VARIANTS:
        rs = [r for r in runs if r["variant"] == name]
        if not rs:
            continue

        def cell(split: str, key: str, rs=rs) -> str:
            values = [r[split].get(key) for r in rs if r[split].get(key) is not None]
            if not values:
                return "-"
            return f"{statistics.mean(values):.1f} ± {statistics.pstdev(values):.1f}"

        lines.append(
            f"| {name} | {len(rs)} | {cell('val', 'panoptic_quality')} | {cell('val', 'mean_iou')} | "
            f"{cell('val', 'referring_ciou')} | {cell('val', 'retrieval_text_to_image_r1')} | "
            f"{cell('val', 'retrieval_image_to_text_r1')} | {cell('val_openvocab', 'panoptic_quality')} | "
            f"{cell('val_openvocab', 'mean_iou')} |"
        )
    lines += ["", "| claim | metric | baseline | ablated | gap | seed std | holds |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        holds = {True: "yes", False: "no", None: "n/a (1 seed)"}[row["holds"]]
        lines.append(
            f"| {row['claim']} | {row['metric']} | {row['baseline']} {row['baseline_mean']:.1f} | "
            f"{row['ablated']} {row['ablated_mean']:.1f} | {row['gap']:+.1f} | {row['seed_std']:.1f} | {holds} |"
        )
    return "\n".join(lines)


def load_data(num_train: int, num_eval: int, image_size: int, caption_vocab: bool, seed: int = 0) -> dict[str, Any]:
    train = load_shapesworld("train", num_images=num_train, image_size=image_size, seed=seed)
    data = {
        "train": train,
        "val": load_shapesworld("val", num_images=num_eval, image_size=image_size, seed=seed),
        "val_openvocab": load_shapesworld("val_openvocab", num_images=num_eval, image_size=image_size, seed=seed),
        "categories": get_categories(train),
        "image_size": image_size,
    }
    data["caption_vocab"] = caption_vocabulary(_tokenizer_processor(), train) if caption_vocab else None
    return data


# ----------------------------------------------------------------------------------------------------------------
# model card run


def prepare(
    directory: Path, image_size: int, num_train: int, caption_vocab: bool, seed: int = 0, backbone: str = "focalnet"
) -> None:
    """Initial nano model (random weights + frozen MiniLM) and processor for `hf-unified-seg train`."""
    train = load_shapesworld("train", num_images=num_train, image_size=image_size, seed=seed)
    torch.manual_seed(seed)
    vocab = caption_vocabulary(_tokenizer_processor(), train) if caption_vocab else None
    model, processor = build_nano(get_categories(train), vocab, image_size, backbone=backbone)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    print(f"wrote the initial nano model to {directory}")


def _describe(config: XDecoderConfig) -> str:
    """One-line description of a nano-sized model: its preset name, backbone and decoder sizes."""
    backbone = config.backbone_config
    if backbone.model_type == "resnet":
        what = f"BasicBlock ResNet depths {list(backbone.depths)}, {list(backbone.hidden_sizes)} ch"
    else:
        what = f"FocalNet embed {backbone.embed_dim} depths {list(backbone.depths)}"
    name = NANO_PRESETS["resnet" if backbone.model_type == "resnet" else "focalnet"]
    return (
        f"`XDecoderConfig.from_preset('{name}')` ({what}; d = {config.hidden_dim}, {config.num_object_queries} + 1 "
        f"queries, {config.decoder_layers} decoder layers)"
    )


def report(
    directory: Path, card: Path, num_eval: int, image_size: int, output: Path | None, num_caption_images: int = 16
) -> dict[str, Any]:
    """Evaluate a trained run on val / val_openvocab and write the results table."""
    model = XDecoderForPreTraining.from_pretrained(directory).eval()
    image_processor = XDecoderImageProcessor.from_pretrained(directory)
    val = load_shapesworld("val", num_images=num_eval, image_size=image_size, seed=0)
    openvocab = load_shapesworld("val_openvocab", num_images=num_eval, image_size=image_size, seed=0)
    categories = get_categories(val)
    start = time.perf_counter()
    seen = evaluate_x_decoder(
        model, val, image_processor, categories=categories, num_caption_images=num_caption_images
    )
    held_out = evaluate_x_decoder(model, openvocab, image_processor, categories=categories, num_caption_images=0)
    captions = sample_captions(model, [val[i] for i in range(6)], image_processor)
    eval_seconds = time.perf_counter() - start
    log = directory / "metrics.jsonl"
    train_info = {}
    if log.exists():
        entries = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        steps = [e for e in entries if e.get("type") == "train"]
        if steps:
            train_info = {
                "steps": steps[-1]["step"],
                "train_seconds": steps[-1].get("elapsed"),
                "loss": steps[-1]["loss"],
            }
    summary = directory / "train_results.json"
    if summary.exists():  # the trainer's own totals (the log only has every `logging_steps`-th step)
        totals = json.loads(summary.read_text())
        train_info.update(steps=totals["global_step"], train_seconds=totals.get("train_runtime"))
    held_names = sorted({c["name"] for c in categories if c.get("openvocab")})
    result = {"val": seen, "val_openvocab": held_out, "captions": captions, "train": train_info}
    targets = {"panoptic_quality": 50.0, "mean_iou": 60.0, "referring_ciou": 50.0}
    lines = [
        "# X-Decoder nano on ShapesWorld",
        "",
        f"Model: {_describe(model.config)}, frozen all-MiniLM-L6-v2, class weight {model.config.class_weight:g}, "
        f"caption logits over {len(model.config.caption_vocab_ids or []) or 'all 30522'} word pieces; trained from "
        f"scratch with `hf-unified-seg train --task x-decoder` "
        f"on ShapesWorld train ({image_size} px) on a shared 2-core CPU.",
        "",
        f"Training: {train_info.get('steps', '?')} steps in {train_info.get('train_seconds', 0) or 0:.0f} s, "
        f"last logged loss {train_info.get('loss', float('nan')):.2f}. Evaluation: {num_eval} images per split "
        f"({eval_seconds:.0f} s; caption checks on the first {num_caption_images} val images).",
        "",
        "| metric | val (seen shapes) | val_openvocab (held-out shapes: " + ", ".join(held_names) + ") | target |",
        "|---|---|---|---|",
    ]
    names = {
        "panoptic_quality": "panoptic PQ",
        "segmentation_quality": "SQ",
        "recognition_quality": "RQ",
        "mean_iou": "mIoU",
        "mean_iou_things": "mIoU of thing classes (shapes)",
        "mean_iou_stuff": "mIoU of stuff classes (backgrounds)",
        "referring_ciou": "referring cIoU",
        "retrieval_text_to_image_r1": "text-to-image R@1",
        "retrieval_image_to_text_r1": "image-to-text R@1",
        "retrieval_chance_r1": "R@1 chance level",
        "caption_shape_recall": "caption names present shapes (recall)",
        "caption_shape_precision": "caption shape names correct (precision)",
    }
    for key, label in names.items():
        a, b = seen.get(key), held_out.get(key)
        target = f">= {targets[key]:.0f}" if key in targets else ""
        status = ""
        if key in targets and a is not None:
            status = " (met)" if a >= targets[key] else " (not met)"
        lines.append(
            f"| {label} | {'-' if a is None else f'{a:.1f}'} | {'-' if b is None else f'{b:.1f}'} | {target}{status} |"
        )
    lines += ["", "Sample captions (val):", ""]
    for i, caption in enumerate(captions):
        lines.append(f'- image {i}: "{caption}" (reference: "{val[i]["captions"][0]}")')
    card.parent.mkdir(parents=True, exist_ok=True)
    card.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(result, indent=2))
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny model, 2 steps, 1 seed, 4 images (seconds)")
    parser.add_argument("--output", type=Path, default=None, help="write the results as JSON here")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=3e-4, help="peak learning rate (AdamW, wd 0.05, clip 5)")
    parser.add_argument(
        "--scheduler", default="constant_with_warmup", help="transformers scheduler name (warm-up: 10%%, at most 200)"
    )
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--num-train", type=int, default=400)
    parser.add_argument("--num-eval", type=int, default=48)
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of the variants")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (per run when --jobs > 1: 1)")
    parser.add_argument("--jobs", type=int, default=1, help="runs trained in parallel, one process each")
    parser.add_argument("--prepare", type=Path, default=None, help="write the initial nano model here and exit")
    parser.add_argument(
        "--backbone",
        choices=sorted(NANO_PRESETS),
        default="focalnet",
        help="the nano FocalNet of spec §8.2, or a small BasicBlock ResNet (--prepare and the claims runs)",
    )
    parser.add_argument("--report", type=Path, default=None, help="evaluate this trained run and write the card")
    parser.add_argument("--card", type=Path, default=Path("model_cards/results/x_decoder.md"))
    parser.add_argument("--num-caption-images", type=int, default=16, help="images captioned by --report")
    parser.add_argument(
        "--caption-vocab",
        action="store_true",
        help="restrict caption logits to the grammar's word pieces (spec §8.2 option; default: whole vocabulary)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    if args.prepare is not None:
        prepare(args.prepare, args.image_size, args.num_train, args.caption_vocab, backbone=args.backbone)
        return {}
    if args.report is not None:
        return report(args.report, args.card, args.num_eval, args.image_size, args.output, args.num_caption_images)

    if args.smoke:
        args.seeds, args.steps, args.batch, args.num_train, args.num_eval = 1, 2, 2, 4, 2
    names = args.variants.split(",")
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise SystemExit(f"--variants: unknown {unknown}; choose from {list(VARIANTS)}")
    # the first four build the data (`load_data`), the rest each run; all of them decide whether a run can be resumed
    settings = (
        args.num_train,
        args.num_eval,
        args.image_size,
        args.caption_vocab,
        args.steps,
        args.batch,
        args.smoke,
        args.lr,
        args.scheduler,
        args.backbone,
    )
    runs: list[dict[str, Any]] = []
    if args.output is not None and args.output.exists():  # resume: keep the finished runs of the same settings
        previous = json.loads(args.output.read_text())
        if previous.get("settings_key") == list(settings):
            runs = [r for r in previous.get("runs", []) if r["variant"] in names and r["seed"] < args.seeds]
    done = {(r["variant"], r["seed"]) for r in runs}
    todo = [(name, seed) for seed in range(args.seeds) for name in names if (name, seed) not in done]

    def record(run: dict[str, Any]) -> None:
        runs.append(run)
        if args.output is not None:  # partial results survive an interrupted run
            args.output.parent.mkdir(parents=True, exist_ok=True)
            partial = {"settings_key": list(settings), "runs": runs, "claims": summarise(runs)}
            args.output.write_text(json.dumps(partial, indent=2, default=str))
        print(
            f"[{run['variant']} seed {run['seed']}] {run['steps']} steps {run['train_seconds']:.0f}s  "
            f"PQ {run['val']['panoptic_quality']:.1f}  mIoU {run['val']['mean_iou']:.1f}  "
            f"cIoU {run['val'].get('referring_ciou', float('nan')):.1f}  "
            f"open-vocab PQ {run['val_openvocab']['panoptic_quality']:.1f} "
            f"mIoU {run['val_openvocab']['mean_iou']:.1f}",
            flush=True,
        )

    if args.jobs > 1 and len(todo) > 1:
        # one single-threaded process per run: on a few cores this beats sharing OpenMP threads by far
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(
            args.jobs, mp_context=context, initializer=_init_worker, initargs=(settings[:4],)
        ) as pool:
            futures = [pool.submit(_worker_run, name, seed, settings[4:]) for name, seed in todo]
            for future in as_completed(futures):
                record(future.result())
    else:
        data = load_data(*settings[:4])
        for name, seed in todo:
            record(
                run_variant(
                    name,
                    seed,
                    data,
                    args.steps,
                    args.batch,
                    args.image_size,
                    args.smoke,
                    args.lr,
                    args.scheduler,
                    args.backbone,
                )
            )
    runs.sort(key=lambda r: (r["seed"], names.index(r["variant"])))
    rows = summarise(runs)
    print()
    print(claims_markdown(rows, runs))
    result = {
        "settings": {k: v for k, v in vars(args).items() if not isinstance(v, Path)},
        "settings_key": list(settings),
        "runs": runs,
        "claims": rows,
    }
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(result, indent=2, default=str))
    return result


if __name__ == "__main__":
    main()
