"""Forward latency and peak memory of plain vs blur vs adaptive anti-aliased ResNets, side by side.

For each model (ResNet-50, ResNet-101 at 224x224) and batch size (1, 8) the three arms are timed round-robin in one
process (so load changes on a shared CPU hit every arm alike) and the median per arm is reported with its ratio to
the plain ResNet. Peak memory is the growth of the process's peak resident set during the first forward pass, measured
in a fresh subprocess per arm (Linux: `/proc/self/clear_refs` resets the peak; large allocations are mmapped so freed
activations leave the resident set). Finally the adaptive ResNet-101 is
profiled to show where its extra time goes (filter predictor conv, BN + softmax, filter application, and the stride-1
3x3 convs that the anti-aliased placement introduces, visible in the blur arm).

The source reports 6.4 ms vs 4.3 ms (1.49x) for ResNet-101 on an RTX 2070 at batch 1; our target is <= 1.3x on CPU.

    python scripts/bench_antialias.py --output /tmp/bench_aa.json
    python scripts/bench_antialias.py --smoke
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch

from hf_unified_seg.models.antialiased_resnet import AntiAliasedResNetConfig, AntiAliasedResNetModel
from hf_unified_seg.modules.antialias import AdaptiveBlurPool

ARMS = {"plain": {"aa_mode": "none"}, "blur": {"aa_mode": "blur"}, "adaptive": {"aa_mode": "adaptive"}}


def build(preset: str, arm: str) -> AntiAliasedResNetModel:
    torch.manual_seed(0)
    return AntiAliasedResNetModel(AntiAliasedResNetConfig.from_preset(preset, **ARMS[arm])).eval()


def _proc_status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def memory_worker(preset: str, arm: str, batch: int, size: int, threads: int) -> None:
    """Child process: print the peak-RSS growth (MiB) of one first forward pass as JSON."""
    torch.set_num_threads(threads)
    model = build(preset, arm)
    pixels = torch.randn(batch, 3, size, size)
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM (peak RSS) to the current RSS
    before = _proc_status_kib("VmRSS")
    with torch.inference_mode():
        model(pixels)
    peak = _proc_status_kib("VmHWM")
    print(json.dumps({"peak_mib": (peak - before) / 1024}))


def measure_memory(preset: str, arm: str, batch: int, size: int, threads: int) -> float | None:
    if not Path("/proc/self/clear_refs").exists():
        return None
    command = [sys.executable, __file__, "--memory-worker", preset, arm, str(batch), str(size), str(threads)]
    # A fixed mmap threshold makes glibc return every large tensor to the OS when freed, so the resident set follows
    # the live tensors instead of the allocator's cached heap.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    result = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
    return json.loads(result.stdout.strip().splitlines()[-1])["peak_mib"]


def measure_latency(preset: str, batch: int, size: int, rounds: int) -> dict[str, float]:
    models = {arm: build(preset, arm) for arm in ARMS}
    pixels = torch.randn(batch, 3, size, size)
    times: dict[str, list[float]] = defaultdict(list)
    with torch.inference_mode():
        for model in models.values():  # warm-up (allocator, oneDNN primitive caches)
            model(pixels)
        for _ in range(rounds):
            for arm, model in models.items():
                start = time.perf_counter()
                model(pixels)
                times[arm].append(1000 * (time.perf_counter() - start))
    return {arm: statistics.median(values) for arm, values in times.items()}


def profile_adaptive(preset: str, batch: int, size: int, rounds: int) -> dict[str, float]:
    """Split the adaptive filters' time into predictor conv, BN + softmax and application (ms per forward)."""
    model = build(preset, "adaptive")
    pixels = torch.randn(batch, 3, size, size)
    spent: dict[str, float] = defaultdict(float)
    filters = [m for m in model.modules() if isinstance(m, AdaptiveBlurPool)]

    def timed(name, fn):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            out = fn(*args, **kwargs)
            spent[name] += time.perf_counter() - start
            return out

        return wrapper

    for module in filters:  # wrap instance methods only; the model itself is untouched
        module.predictor.forward = timed("predictor conv", module.predictor.forward)
        module.normalization.forward = timed("predictor BN", module.normalization.forward)
        module.predict_filters = timed("predict_filters (conv + BN + softmax)", module.predict_filters)
        module.forward = timed("adaptive filter total", module.forward)
    with torch.inference_mode():
        model(pixels)
        spent.clear()
        start = time.perf_counter()
        for _ in range(rounds):
            model(pixels)
        total = time.perf_counter() - start
    result = {name: 1000 * value / rounds for name, value in spent.items()}
    result["softmax + reshape"] = (
        result["predict_filters (conv + BN + softmax)"] - result["predictor conv"] - result["predictor BN"]
    )
    result["filter application (slices)"] = (
        result["adaptive filter total"] - result["predict_filters (conv + BN + softmax)"]
    )
    result["whole forward"] = 1000 * total / rounds
    return result


def markdown(rows: list[dict[str, Any]], profile: dict[str, float], threads: int) -> str:
    lines = [
        f"CPU: {platform.processor() or platform.machine()}, torch {torch.__version__}, {threads} thread(s); "
        "shared machine, so absolute numbers are noisy (arms are interleaved round-robin, medians shown).",
        "",
        "| model | batch | plain ms | blur ms (x plain) | adaptive ms (x plain) | peak MiB plain / blur / adaptive (adaptive x plain) |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        lat, mem = row["latency_ms"], row["peak_mib"]
        mem_cell = (
            f"{mem['plain']:.0f} / {mem['blur']:.0f} / {mem['adaptive']:.0f} ({mem['adaptive'] / mem['plain']:.2f}x)"
            if mem["plain"]
            else "n/a"
        )
        lines.append(
            f"| {row['model']} | {row['batch']} | {lat['plain']:.1f} | {lat['blur']:.1f} ({lat['blur'] / lat['plain']:.2f}x) | "
            f"{lat['adaptive']:.1f} ({lat['adaptive'] / lat['plain']:.2f}x) | {mem_cell} |"
        )
    lines += [
        "",
        f"Adaptive {profile.pop('model')} batch {profile.pop('batch')}: where the time goes (ms per forward)",
        "",
    ]
    lines += ["| part | ms |", "|---|---|"] + [f"| {k} | {v:.1f} |" for k, v in profile.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--smoke", action="store_true", help="tiny model at 64 px, 2 rounds, no memory probe (seconds)."
    )
    parser.add_argument("--output", type=Path, default=None, help="JSON file for the measurements.")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--memory-worker", nargs=5, metavar=("PRESET", "ARM", "BATCH", "SIZE", "THREADS"))
    args = parser.parse_args(argv)
    if args.memory_worker:
        preset, arm, batch, size, threads = args.memory_worker
        memory_worker(preset, arm, int(batch), int(size), int(threads))
        return {}

    torch.set_num_threads(args.threads)
    models, batches, size, rounds = (["resnet50", "resnet101"], [1, 8], 224, args.rounds)
    if args.smoke:
        models, batches, size, rounds = (["tiny"], [1], 64, 2)
    rows = []
    for preset in models:
        for batch in batches:
            latency = measure_latency(preset, batch, size, rounds)
            # each memory probe is a fresh interpreter (seconds of imports): skipped in the smoke run
            memory = {
                arm: None if args.smoke else measure_memory(preset, arm, batch, size, args.threads) for arm in ARMS
            }
            rows.append({"model": preset, "batch": batch, "size": size, "latency_ms": latency, "peak_mib": memory})
            print(json.dumps(rows[-1]), flush=True)
    profile = {"model": models[-1], "batch": 1, **profile_adaptive(models[-1], 1, size, max(2, rounds // 2))}
    results = {"rows": rows, "profile": dict(profile), "threads": args.threads, "torch": torch.__version__}
    ratio = rows[-len(batches)]["latency_ms"]
    results["adaptive_over_plain_deepest_batch1"] = ratio["adaptive"] / ratio["plain"]
    print(markdown(rows, profile, args.threads))
    print(
        f"\nadaptive / plain latency, {models[-1]} batch 1: {results['adaptive_over_plain_deepest_batch1']:.2f} (target <= 1.3)"
    )
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
