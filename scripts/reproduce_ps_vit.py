"""Miniature reproduction of PS-ViT's claims on ShapesWorld classification (spec ps_vit.md §9).

Arms (equal width and depth, ~0.27 M parameters each, 64x64 inputs, 64 tokens):

* ``progressive``: PS-ViT-mini, N = 4 sampling iterations + N_v = 2 encoder layers (the full method);
* ``fixed_grid``: the same stem and width with N = 1, N_v = 5: the points never move (thesis Table 6, N = 1);
  parameters differ only by the 3 offset heads (3 x 130);
* ``vit``: transformers' ``ViTForImageClassification`` with an 8x8/8 patch embedding, learned absolute positions,
  6 layers (Table 7's ViT* control);

each trained without and with TransMix (PS-ViT tokens use their final sampling points), over several seeds.
For the PS-ViT arms it also measures the fraction of sampling points whose input-pixel location ``4 p`` lies
inside the labelled object (the largest visible thing, whose class is ``record["label"]``), at the initial grid
``p_1`` and at the final points ``p_N`` (thesis Fig. 5: points drift onto the object).

Usage::

    python scripts/reproduce_ps_vit.py --smoke                      # seconds, CI
    nice -n 10 python scripts/reproduce_ps_vit.py --output /tmp/ps_vit_repro.json
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F
from transformers import ViTConfig, ViTForImageClassification

from hf_unified_seg.data import get_categories, instance_masks, load_shapesworld
from hf_unified_seg.data.transmix import TransMix
from hf_unified_seg.models.ps_vit import PsVitConfig, PsVitForImageClassification
from hf_unified_seg.modules.classification_loss import image_classification_loss

STEM_STRIDE = 4
ARMS = ("progressive", "fixed_grid", "vit")


# ------------------------------------------------------------------------------------------------ data


def load_split(
    split: str,
    num_images: int,
    image_size: int,
    seed: int,
    classes: list[int] | None = None,
    min_things: int = 2,
    max_things: int = 5,
) -> dict:
    """Images normalised to [-1, 1], contiguous labels over the thing classes, and the labelled object's mask."""
    dataset = load_shapesworld(
        split, num_images=num_images, image_size=image_size, seed=seed, min_things=min_things, max_things=max_things
    )
    if classes is None:
        classes = [c["id"] for c in get_categories(dataset) if c["isthing"] and not c["openvocab"]]
    index = {category: i for i, category in enumerate(classes)}
    images, labels, masks = [], [], []
    for record in dataset:
        image = np.asarray(record["image"].convert("RGB"), dtype=np.float32) / 127.5 - 1.0
        images.append(torch.from_numpy(image).permute(2, 0, 1))
        labels.append(index[record["label"]])
        instance, categories, _ = instance_masks(record)
        candidates = [m for m, c in zip(instance, categories) if c == record["label"]]
        masks.append(torch.from_numpy(max(candidates, key=lambda m: m.sum())))
    return {
        "images": torch.stack(images),
        "labels": torch.tensor(labels),
        "masks": torch.stack(masks),
        "classes": classes,
    }


def random_translate(images: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Shift every image by up to `max_shift` pixels (reflect padding), independently per sample."""
    if max_shift == 0:
        return images
    size = images.shape[-1]
    padded = F.pad(images, [max_shift] * 4, mode="reflect")
    shifts = torch.randint(0, 2 * max_shift + 1, (images.shape[0], 2), generator=generator).tolist()
    return torch.stack([padded[i, :, dy : dy + size, dx : dx + size] for i, (dy, dx) in enumerate(shifts)])


# ------------------------------------------------------------------------------------------------ models


def build_model(arm: str, num_labels: int, image_size: int, offset_scale: float = 1.0) -> torch.nn.Module:
    """The three arms; tokens per axis = image_size / 8 (PS-ViT-mini's 8x8 tokens at 64 px).

    `offset_scale` is the reference's optional multiplier gamma on the predicted offsets (released models: 1.0).
    """
    points = image_size // 8
    common = {"num_labels": num_labels, "image_size": image_size, "num_sampling_points": points}
    if arm == "progressive":
        return PsVitForImageClassification(PsVitConfig.from_preset("ps_vit_mini", offset_scale=offset_scale, **common))
    if arm == "fixed_grid":
        config = PsVitConfig.from_preset("ps_vit_mini", num_sampling_iterations=1, num_hidden_layers=5, **common)
        return PsVitForImageClassification(config)
    config = ViTConfig(
        image_size=image_size,
        patch_size=8,
        hidden_size=64,
        num_hidden_layers=6,
        num_attention_heads=2,
        intermediate_size=192,
        hidden_dropout_prob=0.0,
        layer_norm_eps=1e-5,
        num_labels=num_labels,
        attn_implementation="eager",  # TransMix reads the attention probabilities
    )
    return ViTForImageClassification(config)


# ------------------------------------------------------------------------------------------------ train / eval


def train(
    model: torch.nn.Module, data: dict, args: argparse.Namespace, seed: int, use_transmix: bool, num_labels: int
) -> list[float]:
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.05)
    steps_per_epoch = math.ceil(len(data["labels"]) / args.batch_size)
    total, warmup = steps_per_epoch * args.epochs, max(1, steps_per_epoch * args.warmup_epochs)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: (
            (step + 1) / warmup
            if step < warmup
            else 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))
        ),
    )
    transmix = TransMix(num_labels, label_smoothing=args.label_smoothing, seed=seed) if use_transmix else None
    model.train()
    epoch_losses = []
    for _ in range(args.epochs):
        order = torch.randperm(len(data["labels"]), generator=generator)
        losses = []
        for start in range(0, len(order), args.batch_size):
            batch = order[start : start + args.batch_size]
            pixel_values = random_translate(data["images"][batch], args.max_shift, generator)
            labels = data["labels"][batch]
            if transmix is not None:
                loss = transmix.loss(model, pixel_values, labels, point_stride=STEM_STRIDE)[0]
            else:
                logits = model(pixel_values).logits
                loss = image_classification_loss(logits, labels, label_smoothing=args.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
        epoch_losses.append(sum(losses) / len(losses))
        if args.verbose:
            print(f"  epoch {len(epoch_losses)}/{args.epochs}: loss {epoch_losses[-1]:.4f}", flush=True)
    return epoch_losses


@torch.no_grad()
def evaluate(model: torch.nn.Module, data: dict, batch_size: int = 256) -> dict:
    model.eval()
    correct, hits_first, hits_last, offsets, off_map, points_total = 0, 0.0, 0.0, 0.0, 0.0, 0
    size = data["images"].shape[-1]
    for start in range(0, len(data["labels"]), batch_size):
        pixel_values = data["images"][start : start + batch_size]
        outputs = model(pixel_values)
        correct += int((outputs.logits.argmax(-1) == data["labels"][start : start + batch_size]).sum())
        points = getattr(outputs, "sampling_points", None)
        if points is None:
            continue
        masks = data["masks"][start : start + batch_size]
        for which, p in (("first", points[:, 0]), ("last", points[:, -1])):
            pixels = torch.round(p * STEM_STRIDE).long()
            inside = (pixels >= 0).all(-1) & (pixels < size).all(-1)
            clamped = pixels.clamp(0, size - 1)
            rows = torch.arange(len(masks))[:, None]
            on_object = masks[rows, clamped[..., 0], clamped[..., 1]] & inside
            if which == "first":
                hits_first += float(on_object.float().sum())
            else:
                hits_last += float(on_object.float().sum())
        offsets += float((points[:, -1] - points[:, 0]).norm(dim=-1).sum())
        # final points beyond the feature map's pixel area [-0.5, H_f - 0.5]^2 (they read mostly zero padding)
        edge = size // STEM_STRIDE - 0.5
        off_map += float(((points[:, -1] < -0.5) | (points[:, -1] > edge)).any(-1).float().sum())
        points_total += points.shape[0] * points.shape[2]
    result = {"top1": 100.0 * correct / len(data["labels"])}
    if points_total:
        result.update(
            hit_initial=100.0 * hits_first / points_total,
            hit_final=100.0 * hits_last / points_total,
            mean_point_shift=offsets / points_total,
            points_off_map=100.0 * off_map / points_total,
        )
    return result


# ------------------------------------------------------------------------------------------------ report


def _mean_std(values: list[float]) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def markdown_table(runs: list[dict]) -> str:
    lines = [
        "| arm | TransMix | params | val top-1 (%) | points on object, initial grid (%) | points on object, final (%) "
        "| mean point shift (feature px) | final points off the feature map (%) | s / run |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for arm in ARMS:
        for mix in (False, True):
            group = [r for r in runs if r["arm"] == arm and r["transmix"] == mix]
            if not group:
                continue
            lines.append(
                f"| {arm} | {'yes' if mix else 'no'} | {group[0]['params']:,} | "
                f"{_mean_std([r['top1'] for r in group])} | "
                f"{_mean_std([r['hit_initial'] for r in group if 'hit_initial' in r])} | "
                f"{_mean_std([r['hit_final'] for r in group if 'hit_final' in r])} | "
                + (
                    f"{statistics.mean([r['mean_point_shift'] for r in group]):.2f}"
                    if "mean_point_shift" in group[0]
                    else "–"
                )
                + f" | {_mean_std([r['points_off_map'] for r in group if 'points_off_map' in r])}"
                + f" | {statistics.mean([r['seconds'] for r in group]):.0f} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="one tiny epoch per arm, one seed (CI)")
    parser.add_argument(
        "--combine", type=Path, nargs="+", default=None, help="merge the JSON reports of runs split by --arms and exit"
    )
    parser.add_argument("--output", type=Path, default=None, help="JSON results path (a .md table is written beside)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    parser.add_argument("--transmix", default="both", choices=("both", "no", "yes"), help="arms without/with TransMix")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--train-images", type=int, default=2000)
    parser.add_argument("--val-images", type=int, default=500)
    parser.add_argument("--min-things", type=int, default=2, help="fewest thing shapes per image")
    parser.add_argument("--max-things", type=int, default=5, help="most thing shapes per image")
    parser.add_argument("--image-size", type=int, default=64, help="multiple of 8 (tokens per axis = size / 8)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup-epochs", type=int, default=1)
    parser.add_argument("--label-smoothing", type=float, default=0.1)
    parser.add_argument("--max-shift", type=int, default=4)
    parser.add_argument(
        "--offset-scale", type=float, default=1.0, help="gamma multiplying the progressive arm's offsets (paper: 1.0)"
    )
    # one thread: on a shared, oversubscribed CPU the OpenMP threads of small ops mostly wait on each other
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--verbose", action="store_true", help="print the mean loss of every epoch")
    args = parser.parse_args()
    if args.combine:
        reports = [json.loads(path.read_text()) for path in args.combine]
        write_report(
            reports[0]["settings"], reports[0]["num_labels"], [r for rep in reports for r in rep["runs"]], args
        )
        return
    if args.smoke:
        args.seeds, args.epochs, args.train_images, args.val_images = args.seeds[:1], 1, 64, 32
        args.batch_size, args.image_size = 32, 32
    if args.image_size % 8:
        parser.error("--image-size must be a multiple of 8")
    torch.set_num_threads(args.threads)

    things = {"min_things": args.min_things, "max_things": args.max_things}
    train_data = load_split("train", args.train_images, args.image_size, seed=0, **things)
    val_data = load_split("val", args.val_images, args.image_size, seed=0, classes=train_data["classes"], **things)
    num_labels = len(train_data["classes"])
    majority = int(torch.bincount(train_data["labels"], minlength=num_labels).argmax())
    majority_top1 = 100.0 * float((val_data["labels"] == majority).float().mean())
    runs = []
    for arm in args.arms:
        for use_transmix in {"both": (False, True), "no": (False,), "yes": (True,)}[args.transmix]:
            for seed in args.seeds:
                torch.manual_seed(seed)
                model = build_model(arm, num_labels, args.image_size, args.offset_scale)
                start = time.perf_counter()
                losses = train(model, train_data, args, seed, use_transmix, num_labels)
                result = evaluate(model, val_data)
                run = {
                    "arm": arm,
                    "transmix": use_transmix,
                    "seed": seed,
                    "params": sum(p.numel() for p in model.parameters()),
                    "epoch_losses": losses,
                    "seconds": time.perf_counter() - start,
                    **result,
                }
                runs.append(run)
                print(json.dumps({k: v for k, v in run.items() if k != "epoch_losses"}), flush=True)

    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "combine"}
    settings["val_majority_top1"] = majority_top1
    write_report(settings, num_labels, runs, args)


def write_report(settings: dict, num_labels: int, runs: list[dict], args: argparse.Namespace) -> None:
    table = markdown_table(runs)
    if "val_majority_top1" in settings:
        table += (
            f"\n\n{num_labels} classes; predicting the most frequent training class scores "
            f"{settings['val_majority_top1']:.1f}% on val."
        )
    print(table)
    report = {"settings": settings, "num_labels": num_labels, "runs": runs, "markdown": table}
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(report, indent=2))
        args.output.with_suffix(".md").write_text(table + "\n")


if __name__ == "__main__":
    main()
