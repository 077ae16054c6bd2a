"""Benchmark: ShapesWorld generation throughput and metric throughput (PQ, mask AP).

Arms, timed side by side in one run on one core (``torch.set_num_threads(1)``):

- generation at 128 px and 512 px: the raw generator (numpy scenes + annotations) and the full
  ``load_shapesworld`` (adds PNG encoding into an Arrow ``datasets.Dataset``); target >= 100 images/s at 128 px;
- panoptic quality on N ShapesWorld validation images against perturbed predictions: ours
  (``hf_unified_seg.metrics.load("panoptic_quality")``) next to torchmetrics' ``PanopticQuality``;
- mask AP on the same images (``hf_unified_seg.metrics.load("mask_ap")``, COCOeval underneath).

Usage: ``python scripts/bench_data.py [--smoke] [--output results.json]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from hf_unified_seg.data import get_categories, instance_masks, load_shapesworld
from hf_unified_seg.data.records import rgb_to_ids
from hf_unified_seg.data.shapesworld import generate_split

TARGET_IMAGES_PER_S = 100.0


def _time(fn, repeats: int = 1) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def bench_generation(sizes: dict[int, int], repeats: int) -> list[dict]:
    rows = []
    generate_split("val", 2, 64)  # warm caches (shape masks, pattern maps)
    for size, n in sizes.items():
        raw = _time(lambda s=size, k=n: generate_split("train", k, s, seed=0), repeats)
        full = _time(lambda s=size, k=n: load_shapesworld("train", k, s, seed=0), repeats)
        rows.append(
            {
                "image_size": size,
                "num_images": n,
                "generator_images_per_s": n / raw,
                "dataset_images_per_s": n / full,
                "generator_vs_target": n / raw / TARGET_IMAGES_PER_S,
                "dataset_vs_target": n / full / TARGET_IMAGES_PER_S,
            }
        )
    return rows


def _perturbed_panoptic(ids: np.ndarray, segments: list[dict], rng: np.random.Generator) -> np.ndarray:
    """A plausible prediction: masks shifted by a pixel, and sometimes a thing missed (painted as stuff)."""
    pred = np.roll(ids, shift=(int(rng.integers(-1, 2)), int(rng.integers(-1, 2))), axis=(0, 1))
    things = [s["id"] for s in segments if s["isthing"]]
    stuff = [s["id"] for s in segments if not s["isthing"]]
    if len(things) > 1 and stuff and rng.random() < 0.3:
        pred[pred == things[int(rng.integers(len(things)))]] = stuff[0]
    return pred


def bench_metrics(num_images: int) -> list[dict]:
    from hf_unified_seg import metrics

    ds = load_shapesworld("val", num_images, 128, seed=1)
    categories = get_categories(ds)
    rng = np.random.default_rng(0)
    refs, preds, ref_info, pred_info = [], [], [], []
    ap_refs, ap_preds = [], []
    for r in ds:
        ids = rgb_to_ids(r["panoptic"])
        segs = r["segments_info"]
        pred = _perturbed_panoptic(ids, segs, rng)
        refs.append(ids)
        preds.append(pred)
        ref_info.append([{"id": s["id"], "category_id": s["category_id"], "iscrowd": s["iscrowd"]} for s in segs])
        pred_info.append([{"id": s["id"], "category_id": s["category_id"]} for s in segs if (pred == s["id"]).any()])
        masks, cats, seg_ids = instance_masks(r)
        ap_refs.append({"masks": masks, "labels": cats})
        pmasks = np.stack([pred == s for s in seg_ids]) if len(seg_ids) else masks
        ap_preds.append({"masks": pmasks, "labels": cats, "scores": rng.uniform(0.5, 1.0, len(cats))})
    rows = []

    pq_metric = metrics.load("panoptic_quality", categories=categories)
    result: dict = {}

    def ours_pq():
        result["pq"] = pq_metric.compute(
            predictions=preds, references=refs, prediction_segments_info=pred_info, reference_segments_info=ref_info
        )["pq"]

    t = _time(ours_pq)
    rows.append({"metric": "panoptic_quality", "arm": "hf_unified_seg", "seconds": t, "images_per_s": num_images / t})
    rows[-1]["value"] = float(result["pq"])

    try:
        from torchmetrics.detection import PanopticQuality
    except ImportError:  # pragma: no cover - torchmetrics is a dependency
        PanopticQuality = None
    if PanopticQuality is not None:
        things = {c["id"] for c in categories if c["isthing"]}
        stuffs = {c["id"] for c in categories if not c["isthing"]}

        def to_tm(ids_list, infos):
            out = []
            for ids, info in zip(ids_list, infos):
                cat = np.full(ids.shape, -1, np.int64)  # void: a category in neither set
                inst = np.zeros(ids.shape, np.int64)
                for s in info:
                    cat[ids == s["id"]] = s["category_id"]
                    inst[ids == s["id"]] = s["id"]
                out.append(np.stack([cat, inst], -1))
            return torch.from_numpy(np.stack(out))

        tm_pred, tm_ref = to_tm(preds, pred_info), to_tm(refs, ref_info)

        def tm_pq():
            m = PanopticQuality(things=things, stuffs=stuffs, allow_unknown_preds_category=True)
            m.update(tm_pred, tm_ref)
            result["tm"] = float(m.compute()) * 100

        t_tm = _time(tm_pq)
        rows.append(
            {
                "metric": "panoptic_quality",
                "arm": "torchmetrics",
                "seconds": t_tm,
                "images_per_s": num_images / t_tm,
                "value": result["tm"],
                "ours_speedup": t_tm / t,
            }
        )

    ap_metric = metrics.load("mask_ap")

    def ours_ap():
        result["ap"] = ap_metric.compute(predictions=ap_preds, references=ap_refs)["ap"]

    t_ap = _time(ours_ap)
    rows.append(
        {
            "metric": "mask_ap",
            "arm": "hf_unified_seg",
            "seconds": t_ap,
            "images_per_s": num_images / t_ap,
            "value": float(result["ap"]),
        }
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a few images only (seconds)")
    parser.add_argument("--output", type=Path, default=None, help="write the results as JSON here")
    parser.add_argument("--skip-metrics", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)

    sizes = {128: 10, 512: 2} if args.smoke else {128: 500, 512: 50}
    repeats = 1 if args.smoke else 3
    gen = bench_generation(sizes, repeats)
    print("| image size | images | generator img/s | Dataset img/s | generator / target | Dataset / target |")
    print("|---|---|---|---|---|---|")
    for r in gen:
        print(
            f"| {r['image_size']} | {r['num_images']} | {r['generator_images_per_s']:.1f} | "
            f"{r['dataset_images_per_s']:.1f} | {r['generator_vs_target']:.2f} | {r['dataset_vs_target']:.2f} |"
        )
    print(f"\n(target: {TARGET_IMAGES_PER_S:.0f} images/s at 128 px on one core)\n")

    met: list[dict] = []
    if not args.skip_metrics:
        n = 8 if args.smoke else 500
        met = bench_metrics(n)
        print(f"| metric ({n} images, 128 px) | arm | seconds | images/s | value | ours speed-up |")
        print("|---|---|---|---|---|---|")
        for r in met:
            speed = f"{r['ours_speedup']:.2f}x" if "ours_speedup" in r else ""
            print(
                f"| {r['metric']} | {r['arm']} | {r['seconds']:.3f} | {r['images_per_s']:.1f} | {r['value']:.3f} | {speed} |"
            )
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "smoke": args.smoke,
            "machine": {"python": platform.python_version(), "processor": platform.processor(), "threads": 1},
            "generation": gen,
            "metrics": met,
        }
        args.output.write_text(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
