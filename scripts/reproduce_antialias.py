"""CPU reproduction of the anti-aliasing experiments (spec §8.2 classification, §8.3 segmentation).

Three arms -- plain ResNet (`aa_mode="none"`), fixed binomial blur (`"blur"`, k3) and the content-aware adaptive filter
(`"adaptive"`, k3, G8) -- are trained from scratch with identical recipes and seeds, and compared on

* classification (§8.2): 8 shape classes on an impulse-noise background (40x40 canvases, random 32x32 crops);
  top-1 on the centre crop and shift consistency (Eq. 2.7: agreement of the top-1 class on two random 32x32 crops,
  one offset pair per batch, 5 passes; `classification_consistency` metric);
* semantic segmentation (§8.3): ShapesWorld scenes (80x80, textured stuff, solid/striped/checkered shapes) with a
  DeepLabv3+ head at output stride 16 trained on random 64x64 crops; mIoU on the full validation images and mASSC
  (Eq. 2.8: agreement over the overlap of two random 64x64 crops, 2 pairs per image; `segmentation_consistency`).

Results are mean +- std over the seeds, printed as a Markdown table and written as JSON.

    python scripts/reproduce_antialias.py --output /tmp/aa.json --markdown-out model_cards/results/antialiased_resnet.md
    python scripts/reproduce_antialias.py --smoke --output /tmp/aa_smoke.json      # seconds: 1 epoch per arm
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hf_unified_seg.data import get_categories, load_shapesworld
from hf_unified_seg.metrics import load as load_metric
from hf_unified_seg.metrics.shift_sampling import random_crop_pair, shifted_crop_pair
from hf_unified_seg.models.antialiased_resnet import (
    AntiAliasedResNetConfig,
    AntiAliasedResNetForImageClassification,
    AntiAliasedResNetForSemanticSegmentation,
    AntiAliasedResNetImageProcessor,
)

ARMS = {
    "plain": {"aa_mode": "none"},
    "blur": {"aa_mode": "blur", "aa_kernel_size": 3},
    "adaptive": {"aa_mode": "adaptive", "aa_kernel_size": 3, "aa_groups": 8},
}
SHAPES = ("disk", "square", "diamond", "plus", "ring", "square_ring", "triangle", "bar")


# --------------------------------------------------------------------------- data


def shape_mask(kind: str, cy: float, cx: float, radius: float, size: int) -> np.ndarray:
    """Boolean (size, size) mask of one of the 8 §8.2 shape classes centred at (cy, cx)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    dy, dx = yy - cy, xx - cx
    dist, cheb, manh = np.hypot(dy, dx), np.maximum(abs(dy), abs(dx)), abs(dy) + abs(dx)
    thin = radius / 3
    if kind == "disk":
        return dist <= radius
    if kind == "square":
        return cheb <= 0.8 * radius
    if kind == "diamond":
        return manh <= radius
    if kind == "plus":
        return ((abs(dy) <= thin) & (abs(dx) <= radius)) | ((abs(dx) <= thin) & (abs(dy) <= radius))
    if kind == "ring":
        return (dist <= radius) & (dist >= 0.55 * radius)
    if kind == "square_ring":
        return (cheb <= 0.8 * radius) & (cheb >= 0.45 * radius)
    if kind == "triangle":  # apex up, base below the centre
        return (dy >= -radius) & (dy <= 0.7 * radius) & (abs(dx) <= 0.6 * (dy + radius))
    if kind == "bar":
        return (abs(dy) <= thin) & (abs(dx) <= radius)
    raise ValueError(f"unknown shape {kind!r}")


def noise_shapes(
    num: int, rng: np.random.Generator, canvas: int = 40, noise_std: float = 0.8
) -> tuple[torch.Tensor, torch.Tensor]:
    """
    §8.2 data: one shape per image, centre uniform in [10, 30]^2, radius U[4, 7], colour per channel U(0.5, 2.0),
    on impulse noise (each pixel/channel is non-zero with probability 0.5, magnitude N(0, noise_std^2)).
    """
    images = (rng.random((num, 3, canvas, canvas)) < 0.5) * rng.normal(0.0, noise_std, (num, 3, canvas, canvas))
    labels = rng.integers(0, len(SHAPES), num)
    for i, label in enumerate(labels):
        cy, cx = rng.uniform(10, 30, 2)
        mask = shape_mask(SHAPES[label], cy, cx, rng.uniform(4, 7), canvas)
        images[i][:, mask] = rng.uniform(0.5, 2.0, (3, 1))
    return torch.from_numpy(images.astype(np.float32)), torch.from_numpy(labels)


def shapesworld_tensors(split: str, num: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """ShapesWorld images through the model's image processor (no resize/crop): pixel values, semantic labels."""
    dataset = load_shapesworld(split, num_images=num, image_size=size, seed=seed)
    processor = AntiAliasedResNetImageProcessor(do_resize=False, do_center_crop=False)
    batch = processor(list(dataset["image"]), segmentation_maps=list(dataset["semantic"]), return_tensors="pt")
    return batch["pixel_values"], batch["labels"], len(get_categories(dataset))


def random_crops(images: torch.Tensor, labels: torch.Tensor | None, crop: int, generator: torch.Generator):
    """Independent random crop + horizontal flip per sample (the training augmentation)."""
    num, _, height, width = images.shape
    ys = torch.randint(0, height - crop + 1, (num,), generator=generator).tolist()
    xs = torch.randint(0, width - crop + 1, (num,), generator=generator).tolist()
    flips = torch.rand(num, generator=generator) < 0.5
    out_images = torch.stack([images[i, :, y : y + crop, x : x + crop] for i, (y, x) in enumerate(zip(ys, xs))])
    out_images[flips] = out_images[flips].flip(-1)
    if labels is None:
        return out_images, None
    out_labels = torch.stack([labels[i, y : y + crop, x : x + crop] for i, (y, x) in enumerate(zip(ys, xs))])
    out_labels[flips] = out_labels[flips].flip(-1)
    return out_images, out_labels


# --------------------------------------------------------------------------- training


def train(
    model: torch.nn.Module, images, labels, epochs: int, batch_size: int, crop: int, lr: float, seed: int
) -> float:
    """SGD (momentum 0.9, wd 1e-4) with a one-cycle schedule; returns the wall time in seconds."""
    generator = torch.Generator().manual_seed(seed)
    steps_per_epoch = math.ceil(len(images) / batch_size)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=epochs * steps_per_epoch)
    is_segmentation = labels.ndim == 3
    model.train()
    start = time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(len(images), generator=generator)
        for step in range(steps_per_epoch):
            index = order[step * batch_size : (step + 1) * batch_size]
            if len(index) < 2:  # BatchNorm needs two samples
                continue
            if is_segmentation:
                x, y = random_crops(images[index], labels[index], crop, generator)
            else:
                x, _ = random_crops(images[index], None, crop, generator)
                y = labels[index]
            loss = model(pixel_values=x, labels=y).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    return time.perf_counter() - start


@torch.no_grad()
def predict(model: torch.nn.Module, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    model.eval()
    return torch.cat(
        [model(pixel_values=images[i : i + batch_size]).logits for i in range(0, len(images), batch_size)]
    )


def evaluate_classification(model, images, labels, crop: int, passes: int, seed: int = 7) -> dict[str, float]:
    margin = (images.shape[-1] - crop) // 2
    centre = predict(model, images[..., margin : margin + crop, margin : margin + crop]).argmax(-1)
    top1 = float(100.0 * (centre == labels).float().mean())
    metric = load_metric("classification_consistency")
    rng = np.random.default_rng(seed)
    batch = 256
    for _ in range(passes):
        for start in range(0, len(images), batch):
            # one offset pair per batch, shared by its images (Zhang's protocol); shifts in {0..canvas-crop-1}
            view_a, view_b, _ = shifted_crop_pair(images[start : start + batch], crop_size=crop, rng=rng)
            metric.add_batch(
                predictions=predict(model, view_a).argmax(-1).tolist(),
                shifted_predictions=predict(model, view_b).argmax(-1).tolist(),
                references=labels[start : start + batch].tolist(),
            )
    return {"top1": top1, "consistency": metric.compute()["consistency"]}


def evaluate_segmentation(
    model, images, labels, num_labels: int, crop: int, pairs: int, seed: int = 7
) -> dict[str, float]:
    processor = AntiAliasedResNetImageProcessor()
    size = tuple(images.shape[-2:])
    model.eval()
    miou = load_metric("mean_iou", num_labels=num_labels, ignore_index=255)
    massc = load_metric("segmentation_consistency")
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for start in range(0, len(images), 64):
            chunk = images[start : start + 64]
            maps = processor.post_process_semantic_segmentation(model(pixel_values=chunk), [size] * len(chunk))
            miou.add_batch(predictions=[m.numpy() for m in maps], references=list(labels[start : start + 64].numpy()))
        for image_id in range(len(images)):
            offsets = [random_crop_pair(size[0], size[1], rng, crop_fraction=crop / size[0])[0] for _ in range(pairs)]
            views = [
                images[image_id, :, y : y + crop, x : x + crop]
                for (ya, xa, yb, xb) in offsets
                for (y, x) in ((ya, xa), (yb, xb))
            ]
            maps = processor.post_process_semantic_segmentation(
                model(pixel_values=torch.stack(views)), [(crop, crop)] * len(views)
            )
            massc.add_batch(
                predictions=[maps[2 * p].numpy() for p in range(pairs)],
                shifted_predictions=[maps[2 * p + 1].numpy() for p in range(pairs)],
                crop_offsets=[list(o) for o in offsets],
                image_ids=[image_id] * pairs,
            )
    return {"miou": miou.compute()["mean_iou"], "massc": massc.compute()["massc"]}


@torch.no_grad()
def filter_behaviour(model: AntiAliasedResNetForImageClassification, images: torch.Tensor) -> float:
    """
    §8.4 (Fig. 2.3): Spearman correlation, over all locations and groups, between the variance of the stem filter's
    k*k taps (low variance = close to a box blur, high = close to identity) and the local high-frequency energy of the
    filter's input (|3x3 Laplacian| averaged over the group's channels). The dissertation's claim is a negative value:
    noisy or textured regions get blurrier filters.
    """
    from scipy.stats import spearmanr

    model.eval()
    stem_filter = model.resnet.embedder.aa
    captured: dict[str, torch.Tensor] = {}
    handle = stem_filter.register_forward_pre_hook(lambda module, args: captured.update(input=args[0]))
    try:
        weights = model.resnet(images, output_aa_weights=True).aa_weights[0]  # (N, G, k*k, Ho, Wo)
    finally:
        handle.remove()
    features = captured["input"]
    batch, channels, height, width = features.shape
    laplacian = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).expand(channels, 1, 3, 3)
    energy = torch.nn.functional.conv2d(
        torch.nn.functional.pad(features, (1, 1, 1, 1), mode="reflect"), laplacian, groups=channels
    ).abs()
    groups, stride = weights.shape[1], stem_filter.stride
    energy = energy.view(batch, groups, channels // groups, height, width).mean(2)[..., ::stride, ::stride]
    return float(spearmanr(weights.var(dim=2).flatten().numpy(), energy.flatten().numpy()).statistic)


# --------------------------------------------------------------------------- driver


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    results: dict[str, Any] = {"settings": vars(args).copy(), "classification": {}, "segmentation": {}}
    results["settings"]["torch"] = torch.__version__
    results["settings"]["machine"] = platform.processor() or platform.machine()

    # ---- §8.2 classification
    if "classification" in args.tasks:
        run_classification(args, results)
    # ---- §8.3 segmentation
    if "segmentation" in args.tasks:
        run_segmentation(args, results)
    results["summary"] = summarise(results)
    return results


def _save_partial(args: argparse.Namespace, results: dict[str, Any]) -> None:
    """Rewrite the JSON after every run, so an interrupted long run keeps what it measured."""
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(results, indent=2, default=str))


def run_classification(args: argparse.Namespace, results: dict[str, Any]) -> None:
    data_rng = np.random.default_rng(1234)
    train_x, train_y = noise_shapes(args.cls_train, data_rng)
    test_x, test_y = noise_shapes(args.cls_test, data_rng)
    for arm in args.arms:
        for seed in args.seeds:
            torch.manual_seed(seed)
            config = AntiAliasedResNetConfig.from_preset("tiny", num_labels=len(SHAPES), **ARMS[arm])
            model = AntiAliasedResNetForImageClassification(config)
            seconds = train(model, train_x, train_y, args.cls_epochs, 128, 32, 0.1, seed)
            scores = evaluate_classification(model, test_x, test_y, crop=32, passes=args.passes)
            if arm == "adaptive":
                scores["filter_spearman"] = filter_behaviour(model, test_x[..., 4:36, 4:36])
            scores["train_seconds"] = seconds
            results["classification"].setdefault(arm, []).append({"seed": seed, **scores})
            print(f"[cls] {arm:8s} seed {seed}: {scores}", flush=True)
            _save_partial(args, results)


def run_segmentation(args: argparse.Namespace, results: dict[str, Any]) -> None:
    seg_x, seg_y, num_labels = shapesworld_tensors("train", args.seg_train, 80, seed=0)
    val_x, val_y, _ = shapesworld_tensors("val", args.seg_val, 80, seed=0)
    for arm in args.arms:
        for seed in args.seeds:
            torch.manual_seed(seed)
            config = AntiAliasedResNetConfig.from_preset(
                "tiny", num_labels=num_labels, decoder_channels=64, decoder_low_level_channels=16, **ARMS[arm]
            )
            model = AntiAliasedResNetForSemanticSegmentation(config)
            seconds = train(model, seg_x, seg_y, args.seg_epochs, 32, 64, 0.05, seed)
            scores = evaluate_segmentation(model, val_x, val_y, num_labels, crop=64, pairs=2)
            scores["train_seconds"] = seconds
            results["segmentation"].setdefault(arm, []).append({"seed": seed, **scores})
            print(f"[seg] {arm:8s} seed {seed}: {scores}", flush=True)
            _save_partial(args, results)


def combine(paths: list[Path]) -> dict[str, Any]:
    """Merge result files of separate runs (e.g. `--tasks classification` and `--tasks segmentation` in parallel)."""
    merged: dict[str, Any] = {"settings": {}, "classification": {}, "segmentation": {}}
    for path in paths:
        part = json.loads(path.read_text())
        for task in ("classification", "segmentation"):
            if part.get(task):
                merged[task].update(part[task])
                merged["settings"][task] = part["settings"]
    merged["summary"] = summarise(merged)
    return merged


def _mean_std(values: list[float]) -> tuple[float, float]:
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def summarise(results: dict[str, Any]) -> dict[str, dict[str, tuple[float, float]]]:
    """Mean and sample std over seeds of every score; segmentation training time is kept as `seg_train_seconds`."""
    summary: dict[str, dict[str, tuple[float, float]]] = {}
    for task, prefix in (("classification", ""), ("segmentation", "seg_")):
        for arm, runs in results[task].items():
            for key in runs[0]:
                if key == "seed":
                    continue
                name = prefix + key if key == "train_seconds" else key
                summary.setdefault(arm, {})[name] = _mean_std([r[key] for r in runs])
    return summary


def markdown(results: dict[str, Any]) -> str:
    summary = results["summary"]
    settings = results["settings"]
    cls_settings = settings.get("classification", settings)
    seg_settings = settings.get("segmentation", settings)

    def cell(arm: str, key: str, digits: int = 1) -> str:
        if key not in summary.get(arm, {}):
            return "–"
        mean, std = summary[arm][key]
        return f"{mean:.{digits}f} ± {std:.{digits}f}"

    def seconds(arm: str, key: str) -> str:
        return f"{summary[arm][key][0]:.0f}" if key in summary.get(arm, {}) else "–"

    lines = []
    if results["classification"]:
        s = cls_settings
        lines.append(
            f"Classification (§8.2): seeds {s['seeds']}, {s['cls_train']} train / {s['cls_test']} test noise-shape "
            f"images (40x40, random 32x32 crops + flips), {s['cls_epochs']} epochs, shift consistency over "
            f"{s['passes']} passes."
        )
    if results["segmentation"]:
        s = seg_settings
        lines.append(
            f"Segmentation (§8.3): seeds {s['seeds']}, ShapesWorld {s['seg_train']} train / {s['seg_val']} val "
            f"(80x80, random 64x64 crops + flips), {s['seg_epochs']} epochs, DeepLabv3+ head (64 ch) at output stride "
            "16, mASSC from 2 crop pairs (64x64) per image."
        )
    lines += [
        "Tiny ResNet (BasicBlock, depths 1-1-1-1, widths 16-32-64-128), trained from scratch on CPU, 1 thread. "
        "Mean ± sample std over seeds.",
        "",
        "| arm | top-1 (%) | shift consistency (%) | mIoU (%) | mASSC (%) | train s (cls / seg) |",
        "|---|---|---|---|---|---|",
    ]
    for arm in ARMS:
        lines.append(
            f"| {arm} | {cell(arm, 'top1')} | {cell(arm, 'consistency')} | {cell(arm, 'miou')} | {cell(arm, 'massc', 2)} | "
            f"{seconds(arm, 'train_seconds')} / {seconds(arm, 'seg_train_seconds')} |"
        )
    if "filter_spearman" in summary.get("adaptive", {}):
        mean, std = summary["adaptive"]["filter_spearman"]
        lines += [
            "",
            f"Filter behaviour (§8.4, adaptive classifier, stem filters on the test centre crops): Spearman correlation "
            f"between each location's tap variance and the |Laplacian| energy of the filter's input = {mean:.3f} ± "
            f"{std:.3f} (the dissertation's claim: negative, i.e. blurrier filters on high-frequency content).",
        ]
    checks = []
    have_all = all(arm in summary for arm in ARMS)
    if results["classification"] and have_all:
        plain, blur, adaptive = (summary[a]["consistency"][0] for a in ARMS)
        checks += [
            ("anti-aliasing (either kind) > plain on shift consistency", min(blur, adaptive) > plain),
            ("adaptive >= blur on shift consistency", adaptive >= blur),
        ]
    if "filter_spearman" in summary.get("adaptive", {}):
        checks.append(
            (
                "stem filters blur more where the input has more high-frequency energy (rho < 0)",
                summary["adaptive"]["filter_spearman"][0] < 0,
            )
        )
    if results["segmentation"] and have_all:
        plain, blur, adaptive = (summary[a]["massc"][0] for a in ARMS)
        checks.append(("mASSC: blur and adaptive > plain", min(blur, adaptive) > plain))
        checks.append(
            ("mIoU: adaptive not lower than plain", summary["adaptive"]["miou"][0] >= summary["plain"]["miou"][0])
        )
    lines += ["", "| claim (spec §8.2/§8.3) | holds here |", "|---|---|"]
    lines += [f"| {text} | {'yes' if ok else 'no'} |" for text, ok in checks]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="1 epoch per arm on a few images, one seed (seconds).")
    parser.add_argument("--output", type=Path, default=None, help="JSON file for all per-seed results.")
    parser.add_argument("--markdown-out", type=Path, default=None, help="Also write the Markdown table here.")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--cls-train", type=int, default=4096)
    parser.add_argument("--cls-test", type=int, default=1024)
    parser.add_argument("--cls-epochs", type=int, default=12)
    parser.add_argument("--passes", type=int, default=5, help="Passes of the shift-consistency evaluation.")
    parser.add_argument("--seg-train", type=int, default=512)
    parser.add_argument("--seg-val", type=int, default=128)
    parser.add_argument("--seg-epochs", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the CPU is shared: 1 is steadier).")
    parser.add_argument(
        "--tasks", nargs="+", choices=["classification", "segmentation"], default=["classification", "segmentation"]
    )
    parser.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS))
    parser.add_argument("--combine", type=Path, nargs="+", default=None, help="Only merge these result JSONs.")
    args = parser.parse_args(argv)
    if args.smoke:
        args.seeds = args.seeds[:1]
        args.cls_train, args.cls_test, args.cls_epochs, args.passes = 128, 64, 1, 1
        args.seg_train, args.seg_val, args.seg_epochs = 16, 4, 1
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    results = combine(args.combine) if args.combine else run(args)
    table = markdown(results)
    print(table)
    _save_partial(args, results)
    if args.markdown_out is not None:
        args.markdown_out.parent.mkdir(parents=True, exist_ok=True)
        args.markdown_out.write_text(table + "\n")
    return results


if __name__ == "__main__":
    main()
