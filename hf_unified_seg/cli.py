"""The `hf-unified-seg` command: data, train, evaluate, predict, publish, quickstart.

Every sub-command has `--help` with examples. `train` takes the `HfArgumentParser` dataclass flags of
`hf_unified_seg.training.arguments` and runs unchanged under `accelerate launch`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import models as _models  # noqa: F401  (registers our model classes with the Auto classes)

EXAMPLES = """\
examples:
  hf-unified-seg quickstart                      # data + ~2 min CPU training + evaluation + overlay PNG
  hf-unified-seg data --output_dir shapes --num_train 512 --format coco
  hf-unified-seg train --model_name_or_path antialiased_resnet --preset tiny --max_steps 200 --output_dir run
  accelerate launch --multi_gpu --num_processes 2 -m hf_unified_seg.cli train --max_steps 200 --output_dir run  # gloo DDP on CPU
  hf-unified-seg evaluate --model run
  hf-unified-seg predict --model run photo.png more_images/ --output_dir predictions
  hf-unified-seg publish run you/my-model --remote-code
"""

TRAIN_EXAMPLES = """\
examples:
  # from scratch on generated ShapesWorld (semantic segmentation by default)
  hf-unified-seg train --model_name_or_path antialiased_resnet --preset tiny --image_size 64 \\
      --max_steps 300 --save_steps 100 --eval_steps 100 --output_dir run
  # resume after an interruption, exactly where the newest checkpoint left off
  hf-unified-seg train ... --output_dir run --resume_from_checkpoint latest
  # LoRA fine-tuning of a saved model on a COCO-format folder
  hf-unified-seg train --model_name_or_path run --dataset my_coco_folder --lora --lora_r 8 --output_dir lora
  # two CPU processes (gloo DDP); the same command runs on GPUs without --cpu
  accelerate launch --multi_gpu --num_processes 2 -m hf_unified_seg.cli train --max_steps 100 --output_dir ddp  # gloo DDP on CPU
  # all flags from a JSON file
  hf-unified-seg train args.json
"""


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=36)


# ----------------------------------------------------------------------------------------------------------------
# sub-commands


def cmd_data(args: argparse.Namespace) -> int:
    from .data import build_shapesworld

    out = Path(args.output_dir)
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        raise ValueError(f"output_dir {str(out)!r} is not empty (pass --overwrite)")
    counts = {"train": args.num_train, "val": args.num_val, "val_openvocab": args.num_val_openvocab}
    splits = [s for s, n in counts.items() if n > 0]
    dd = build_shapesworld(
        num_images={s: counts[s] for s in splits}, image_size=args.image_size, seed=args.seed, splits=splits
    )
    out.mkdir(parents=True, exist_ok=True)
    if args.format in ("hf", "both"):
        target = out if args.format == "hf" else out / "hf"
        dd.save_to_disk(str(target))
        print(f"saved datasets.DatasetDict to {target}")
    if args.format in ("coco", "both"):
        from .data.coco import export_coco

        target = out if args.format == "coco" else out / "coco"
        for split, ds in dd.items():
            paths = export_coco(ds, target, name=split)
            print(f"exported {split}: {', '.join(str(p) for p in paths.values())}")
    return 0


def cmd_train(argv: list[str]) -> int:
    from transformers import HfArgumentParser

    from .training import ALL_ARGUMENT_CLASSES, train

    parser = HfArgumentParser(
        ALL_ARGUMENT_CLASSES,
        prog="hf-unified-seg train",
        description="Train or fine-tune a model with Accelerate (progress bar, JSON-lines metrics, checkpoints, "
        "exact resume, LoRA).",
        epilog=TRAIN_EXAMPLES,
        formatter_class=_formatter,
    )
    if len(argv) == 1 and argv[0].endswith(".json"):
        model_args, data_args, training_args, lora_args = parser.parse_json_file(argv[0])
    else:
        model_args, data_args, training_args, lora_args = parser.parse_args_into_dataclasses(args=argv)
    result = train(model_args, data_args, training_args, lora_args)
    print(
        json.dumps({"output_dir": result.output_dir, "global_step": result.global_step, "eval": result.eval_metrics})
    )
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .training.inference import evaluate_model

    metrics = evaluate_model(
        args.model,
        dataset=args.dataset,
        num_images=args.num_images,
        image_size=args.image_size,
        seed=args.seed,
        batch_size=args.batch_size,
        task=args.task,
        trust_remote_code=args.trust_remote_code,
    )
    text = json.dumps(metrics, indent=2)
    print(text)
    if args.output:
        Path(args.output).write_text(text)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from .training.inference import predict_files

    results = predict_files(args.model, args.inputs, args.output_dir, trust_remote_code=args.trust_remote_code)
    for r in results:
        what = r.get("segments", r.get("labels", []))
        print(f"{r['image']}: {len(what)} {'segments' if 'segments' in r else 'labels'} -> {r['overlay']}")
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    from .hub import publish

    info = publish(
        args.model_dir,
        args.repo_id,
        token=args.token,
        private=args.private or None,
        remote_code=args.remote_code,
        commit_message=args.commit_message,
        endpoint=args.endpoint,
        license=args.license,
    )
    print(f"published {args.model_dir} to {args.repo_id}: {getattr(info, 'commit_url', info)}")
    return 0


def cmd_quickstart(args: argparse.Namespace) -> int:
    from .training.quickstart import run_quickstart

    run_quickstart(
        output_dir=args.output_dir,
        train_seconds=args.train_seconds,
        num_train_images=args.num_train_images,
        image_size=args.image_size,
        seed=args.seed,
    )
    return 0


# ----------------------------------------------------------------------------------------------------------------
# parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hf-unified-seg",
        description="Generate data, train, evaluate, predict and publish hf_unified_seg models.",
        epilog=EXAMPLES,
        formatter_class=_formatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser(
        "data",
        help="generate ShapesWorld and save it (datasets format and/or COCO files)",
        description="Generate the seeded synthetic ShapesWorld dataset and write it to disk.",
        epilog="examples:\n  hf-unified-seg data --output_dir shapes --num_train 512 --num_val 64\n"
        "  hf-unified-seg data --output_dir shapes_coco --format coco --image_size 128\n",
        formatter_class=_formatter,
    )
    p.add_argument("--output_dir", required=True, help="where to write the dataset")
    p.add_argument("--num_train", type=int, default=512, help="training images (default 512)")
    p.add_argument("--num_val", type=int, default=64, help="validation images (default 64)")
    p.add_argument("--num_val_openvocab", type=int, default=0, help="open-vocabulary validation images (default 0)")
    p.add_argument("--image_size", type=int, default=64, help="image side in pixels (default 64)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--format",
        choices=("hf", "coco", "both"),
        default="hf",
        help="'hf': datasets.save_to_disk; 'coco': COCO panoptic + instances JSON and PNGs; 'both'",
    )
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty output_dir")
    p.set_defaults(func=cmd_data)

    sub.add_parser(
        "train",
        help="train or fine-tune (Accelerate; see `hf-unified-seg train --help`)",
        add_help=False,
    )

    p = sub.add_parser(
        "evaluate",
        help="evaluate a saved model with the metrics modules",
        description="Evaluate a saved model (or LoRA adapter) on fresh ShapesWorld or a dataset folder.",
        epilog="examples:\n  hf-unified-seg evaluate --model run\n"
        "  hf-unified-seg evaluate --model run --dataset my_coco_folder --output metrics.json\n",
        formatter_class=_formatter,
    )
    p.add_argument("--model", required=True, help="saved model directory, adapter directory or Hub id")
    p.add_argument("--dataset", default="shapesworld", help="'shapesworld' or a dataset folder")
    p.add_argument("--num_images", type=int, default=64, help="images to evaluate on")
    p.add_argument("--image_size", type=int, default=64, help="ShapesWorld image size")
    p.add_argument("--seed", type=int, default=1, help="ShapesWorld seed")
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--task", default=None, help="override the task inferred from the model")
    p.add_argument("--output", default=None, help="also write the metrics JSON here")
    p.add_argument("--trust_remote_code", action="store_true")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "predict",
        help="predict images or folders -> JSON (RLE masks, labels, scores) + overlay PNG",
        description="Run a model on images; writes <name>.json (COCO RLE masks, labels, scores) and "
        "<name>_overlay.png (masks tinted per label, with a legend) for every image.",
        epilog="examples:\n  hf-unified-seg predict --model run image.png --output_dir predictions\n"
        "  hf-unified-seg predict --model you/my-model images/ --output_dir out\n",
        formatter_class=_formatter,
    )
    p.add_argument("--model", required=True, help="saved model directory, adapter directory or Hub id")
    p.add_argument("inputs", nargs="+", help="image files and/or folders of images")
    p.add_argument("--output_dir", default="predictions", help="where the JSON and PNG files go")
    p.add_argument("--trust_remote_code", action="store_true")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser(
        "publish",
        help="upload a saved model with its model card to the Hub",
        description="Upload config, safetensors weights, processor files and the generated model card "
        "(optionally self-contained code for trust_remote_code=True) with huggingface_hub.HfApi.",
        epilog="examples:\n  hf-unified-seg publish run you/my-model\n"
        "  HF_ENDPOINT=http://127.0.0.1:8080 hf-unified-seg publish run you/my-model --remote-code --private\n",
        formatter_class=_formatter,
    )
    p.add_argument("model_dir", help="directory written by `train` or save_pretrained")
    p.add_argument("repo_id", help="namespace/name on the Hub")
    p.add_argument("--remote-code", "--remote_code", dest="remote_code", action="store_true", help="bundle model code")
    p.add_argument("--private", action="store_true")
    p.add_argument("--token", default=None, help="Hub token (default: the logged-in one)")
    p.add_argument("--endpoint", default=None, help="Hub URL (default: HF_ENDPOINT or huggingface.co)")
    p.add_argument("--commit-message", "--commit_message", dest="commit_message", default=None)
    p.add_argument("--license", default="apache-2.0")
    p.set_defaults(func=cmd_publish)

    p = sub.add_parser(
        "quickstart",
        help="end-to-end demo in a few minutes on CPU",
        description="Generate ShapesWorld, train the tiny anti-aliased ResNet segmenter for about two minutes, "
        "evaluate it (mIoU), save it with its model card, segment a fresh image with "
        "pipeline('image-segmentation') and write the overlay PNG.",
        epilog="examples:\n  hf-unified-seg quickstart\n  hf-unified-seg quickstart --train_seconds 30 --output_dir qs\n",
        formatter_class=_formatter,
    )
    p.add_argument("--output_dir", default="hf_unified_seg_quickstart")
    p.add_argument("--train_seconds", type=float, default=120.0, help="training time budget (default 120)")
    p.add_argument("--num_train_images", type=int, default=1024)
    p.add_argument("--image_size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_quickstart)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "train":
        return _run(lambda: cmd_train(argv[1:]))
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    return _run(lambda: args.func(args))


def _run(fn) -> int:
    try:
        return fn()
    except (ValueError, OSError) as err:  # OSError: transformers' "can't find model/repo" errors
        # Bad input: one clear line instead of a traceback.
        print(f"hf-unified-seg: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
