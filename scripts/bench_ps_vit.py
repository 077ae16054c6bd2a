"""Forward latency and peak memory: PS-ViT-Ti/14 and B/14 vs transformers' ViT of equal width, depth and tokens.

The ViT arm is `transformers.ViTForImageClassification` with PS-ViT's width C, heads M, total depth N + N_v, FFN
hidden size 3C and a patch size giving the same 14x14 = 196 tokens; both arms use SDPA attention and random
weights. Peak memory is that of the tensors a forward creates (activations and
workspace, weights and input excluded): on CUDA `torch.cuda.max_memory_allocated` above the weights; on CPU, where
the allocator keeps no statistics (and the resident-set size hides reuse of freed blocks), a dispatch mode tracks
the bytes of every live tensor storage created by the forward and records the maximum.

Usage::

    python scripts/bench_ps_vit.py --smoke
    python scripts/bench_ps_vit.py --batch-size 8 --output /tmp/bench_ps_vit.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import weakref
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import FlopCounterMode

SIZES = {"ti_14": "ps_vit_ti_14", "b_14": "ps_vit_b_14", "tiny": "tiny"}  # "tiny": smoke runs only


def build(arm: str, size: str, image_size: int) -> torch.nn.Module:
    from transformers import ViTConfig, ViTForImageClassification

    from hf_unified_seg.models.ps_vit import PsVitConfig, PsVitForImageClassification

    config = PsVitConfig.from_preset(SIZES[size], image_size=image_size)
    if arm == "ps_vit":
        return PsVitForImageClassification(config)
    n = config.sampling_grid_size[0]
    if image_size % n:
        raise ValueError(f"`--image-size` must be divisible by {n} so that the ViT has {n}x{n} patches.")
    vit_config = ViTConfig(
        image_size=image_size,
        patch_size=image_size // n,
        hidden_size=config.hidden_size,
        num_hidden_layers=config.num_sampling_iterations + config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads,
        intermediate_size=config.intermediate_size,
        qkv_bias=config.qkv_bias,
        layer_norm_eps=config.layer_norm_eps,
        num_labels=config.num_labels,
        attn_implementation="sdpa",
    )
    return ViTForImageClassification(vit_config)


class LiveTensorPeak(TorchDispatchMode):
    """Peak bytes of tensor storages created inside the mode and still referenced (views share their storage)."""

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self.refs: dict[int, list[int]] = {}  # storage pointer -> [tensors alive, bytes]

    def _release(self, key: int) -> None:
        entry = self.refs[key]
        entry[0] -= 1
        if entry[0] == 0:
            self.live -= entry[1]
            del self.refs[key]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in tree_leaves(out):
            if isinstance(tensor, torch.Tensor):
                storage = tensor.untyped_storage()
                key = storage.data_ptr()
                if key not in self.refs:
                    self.refs[key] = [0, storage.nbytes()]
                    self.live += storage.nbytes()
                    self.peak = max(self.peak, self.live)
                self.refs[key][0] += 1
                weakref.finalize(tensor, self._release, key)
        return out


def _forward_seconds(model: torch.nn.Module, pixel_values: torch.Tensor) -> float:
    start = time.perf_counter()
    model(pixel_values)
    if pixel_values.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def _peak_mib(model: torch.nn.Module, pixel_values: torch.Tensor) -> float:
    if pixel_values.is_cuda:
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        model(pixel_values)
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    tracker = LiveTensorPeak()
    with tracker:
        model(pixel_values)
    return tracker.peak / 2**20


@torch.no_grad()
def measure_pair(size: str, batch_size: int, image_size: int, warmup: int, iters: int, device: str) -> dict:
    """Time PS-ViT and ViT alternately (one forward each per round) so that load changes hit both arms alike."""
    torch.manual_seed(0)
    arms = ("ps_vit", "vit")
    models = {arm: build(arm, size, image_size).eval().to(device) for arm in arms}
    pixel_values = torch.randn(batch_size, 3, image_size, image_size, device=device)
    times: dict[str, list[float]] = {arm: [] for arm in arms}
    for step in range(warmup + iters):
        for arm in arms:
            seconds = _forward_seconds(models[arm], pixel_values)
            if step >= warmup:
                times[arm].append(seconds)
    result = {}
    for arm in arms:
        with torch.device("meta"):
            counter = FlopCounterMode(display=False)
            with counter:
                build(arm, size, image_size).eval()(torch.empty(1, 3, image_size, image_size))
        latency = statistics.median(times[arm])
        result[arm] = {
            "arm": arm,
            "size": size,
            "params": sum(p.numel() for p in models[arm].parameters()),
            "gmacs_per_image": counter.get_total_flops() / 2e9,
            "latency_ms": 1000 * latency,
            "images_per_s": batch_size / latency,
            "peak_mib": _peak_mib(models[arm], pixel_values),
        }
    result["latency_ratio"] = result["ps_vit"]["latency_ms"] / result["vit"]["latency_ms"]
    result["memory_ratio"] = result["ps_vit"]["peak_mib"] / max(result["vit"]["peak_mib"], 1e-9)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="one small timed forward per arm (CI)")
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--sizes", nargs="+", default=["ti_14", "b_14"], choices=list(SIZES))
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--iters", type=int, default=10)
    # one thread: on a shared, oversubscribed CPU the OpenMP threads of small ops mostly wait on each other
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    if args.smoke:
        args.batch_size, args.image_size, args.warmup, args.iters, args.sizes = 2, 32, 1, 1, ["tiny"]

    torch.set_num_threads(args.threads)
    rows = [
        measure_pair(size, args.batch_size, args.image_size, args.warmup, args.iters, args.device)
        for size in args.sizes
    ]

    lines = [
        f"Device: {args.device} ({args.threads} threads), batch {args.batch_size}, {args.image_size}x{args.image_size}, "
        f"median of {args.iters} forwards per arm, arms alternating.",
        "",
        "| size | params PS-ViT / ViT | GMACs/img PS-ViT / ViT | latency ms PS-ViT / ViT | latency ratio "
        "| peak MiB PS-ViT / ViT | memory ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for pair in rows:
        ps, vit = pair["ps_vit"], pair["vit"]
        lines.append(
            f"| {ps['size']} | {ps['params'] / 1e6:.2f} M / {vit['params'] / 1e6:.2f} M "
            f"| {ps['gmacs_per_image']:.3g} / {vit['gmacs_per_image']:.3g} "
            f"| {ps['latency_ms']:.1f} / {vit['latency_ms']:.1f} | {pair['latency_ratio']:.2f}x "
            f"| {ps['peak_mib']:.3g} / {vit['peak_mib']:.3g} | {pair['memory_ratio']:.2f}x |"
        )
    table = "\n".join(lines)
    print(table)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
        args.output.write_text(json.dumps({"settings": settings, "results": rows, "markdown": table}, indent=2))


if __name__ == "__main__":
    main()
