"""Benchmark: X-Decoder's segmentation path vs transformers' Mask2Former at equal size, and post-processing speed.

Arms, timed side by side and interleaved in one run (A, B, A, B, ...; median of the repeats):

1. inference latency of `XDecoderForUniversalSegmentation` (class embeddings precomputed, as a deployed model with a
   fixed vocabulary runs) vs `Mask2FormerForUniversalSegmentation`;
2. one training step (forward with labels, backward, AdamW step) of both; X-Decoder encodes its class prompts with
   the frozen text encoder in the step, as in training (its feature cache makes that a lookup after the first step);
3. post-processing (panoptic / instance / semantic) of the same outputs by `XDecoderImageProcessor` vs
   `Mask2FormerImageProcessorPil`, with the same thresholds.

"Equal size": the same FocalNet backbone config, decoder width `d`, 100 object queries (X-Decoder adds its image
query), 9 decoder layers, the same pixel-decoder width / FFN / number of encoder layers, the same number of classes
and of sampled training points. The pixel decoders still differ by design: X-Decoder's transformer-encoder FPN
attends over res5 only, Mask2Former's multi-scale deformable encoder over three levels (spec §2.3).

Target (issue 6): ratio (X-Decoder / Mask2Former time) <= 1.1 for inference, training and post-processing.

Usage: `python scripts/bench_x_decoder.py [--smoke] [--output results.json] [--size 256] [--repeats 3]`.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import Mask2FormerConfig, Mask2FormerForUniversalSegmentation
from transformers.models.mask2former.image_processing_pil_mask2former import Mask2FormerImageProcessorPil

from hf_unified_seg.models.x_decoder import XDecoderConfig, XDecoderForUniversalSegmentation, XDecoderImageProcessor
from hf_unified_seg.models.x_decoder.configuration_x_decoder import MINILM_TEXT_CONFIG

TARGET_RATIO = 1.1


def build_pair(smoke: bool, num_classes: int) -> tuple[Any, Any, dict[str, Any]]:
    """X-Decoder and Mask2Former with the same backbone, width, queries and layers."""
    if smoke:
        xcfg = XDecoderConfig.from_preset("tiny", num_labels=num_classes)
    else:
        # paper decoder (X-Decoder (T): d = 512, 100 + 1 queries, 9 layers, 6-layer pixel encoder) on Focal-T with the
        # offline default text encoder (MiniLM architecture, random weights: only speed matters here)
        xcfg = XDecoderConfig.from_preset(
            "focal_t", num_labels=num_classes, text_config=dict(MINILM_TEXT_CONFIG), text_model_name_or_path=None
        )
    xcfg.train_num_points = 12544
    backbone = xcfg.backbone_config.to_dict()
    mcfg = Mask2FormerConfig(
        backbone_config=backbone,
        num_labels=num_classes,
        feature_size=xcfg.pixel_decoder_dim,
        mask_feature_size=xcfg.mask_dim,
        hidden_dim=xcfg.hidden_dim,
        encoder_layers=max(1, xcfg.pixel_decoder_layers),
        encoder_feedforward_dim=xcfg.pixel_decoder_ffn_dim,
        decoder_layers=xcfg.decoder_layers + 1,  # HF counts the prediction on the initial queries
        num_attention_heads=xcfg.num_attention_heads,
        dim_feedforward=xcfg.dim_feedforward,
        num_queries=xcfg.num_object_queries,
        train_num_points=xcfg.train_num_points,
        common_stride=xcfg.common_stride,
    )
    torch.manual_seed(0)
    xdecoder = XDecoderForUniversalSegmentation(xcfg)
    mask2former = Mask2FormerForUniversalSegmentation(mcfg)
    setting = {
        "backbone": f"FocalNet embed {backbone['embed_dim']} depths {backbone['depths']}",
        "hidden_dim": xcfg.hidden_dim,
        "object_queries": xcfg.num_object_queries,
        "decoder_layers": xcfg.decoder_layers,
        "pixel_decoder_dim": xcfg.pixel_decoder_dim,
        "pixel_encoder_layers": xcfg.pixel_decoder_layers,
        "num_classes": num_classes,
        "train_num_points": xcfg.train_num_points,
        "params_xdecoder_without_text_model": sum(
            p.numel() for n, p in xdecoder.named_parameters() if ".text_model." not in n
        ),
        "params_mask2former": sum(p.numel() for p in mask2former.parameters()),
    }
    return xdecoder, mask2former, setting


def _labels(batch: int, size: int, num_classes: int, generator: torch.Generator) -> tuple[list, list]:
    masks, classes = [], []
    for _ in range(batch):
        n = 6
        grid = torch.randint(0, n, (size // 16, size // 16), generator=generator)
        grid = grid.repeat_interleave(16, 0).repeat_interleave(16, 1)
        masks.append(torch.stack([(grid == k).float() for k in range(n)]))
        classes.append(torch.randint(0, num_classes, (n,), generator=generator))
    return masks, classes


def interleaved(arms: dict[str, Callable[[], Any]], repeats: int) -> dict[str, float]:
    """Median seconds per arm, running the arms alternately after one warm-up call each."""
    for fn in arms.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in arms}
    for _ in range(repeats):
        for name, fn in arms.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(v) for name, v in times.items()}


def bench_models(xdecoder, mask2former, size: int, batch: int, repeats: int, num_classes: int) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    pixel_values = torch.randn(batch, 3, size, size, generator=g)
    class_input_ids = torch.randint(1000, 2000, (num_classes + 1, 8), generator=g)
    class_input_ids[:, 0], class_input_ids[:, -1] = 101, 102
    class_attention_mask = torch.ones_like(class_input_ids)
    with torch.no_grad():
        class_embeddings = xdecoder.class_embeddings(class_input_ids, class_attention_mask)

    xdecoder.eval(), mask2former.eval()

    @torch.no_grad()
    def infer_x():
        return xdecoder(pixel_values=pixel_values, class_embeddings=class_embeddings)

    @torch.no_grad()
    def infer_m():
        return mask2former(pixel_values=pixel_values)

    inference = interleaved({"xdecoder": infer_x, "mask2former": infer_m}, repeats)

    mask_labels, class_labels = _labels(batch, size, num_classes, g)
    opt_x = torch.optim.AdamW([p for p in xdecoder.parameters() if p.requires_grad], lr=1e-5)
    opt_m = torch.optim.AdamW(mask2former.parameters(), lr=1e-5)
    xdecoder.train(), mask2former.train()

    def step_x():
        opt_x.zero_grad(set_to_none=True)
        out = xdecoder(
            pixel_values=pixel_values,
            class_input_ids=class_input_ids,
            class_attention_mask=class_attention_mask,
            mask_labels=mask_labels,
            class_labels=class_labels,
        )
        out.loss.backward()
        opt_x.step()

    def step_m():
        opt_m.zero_grad(set_to_none=True)
        out = mask2former(pixel_values=pixel_values, mask_labels=mask_labels, class_labels=class_labels)
        out.loss.backward()
        opt_m.step()

    training = interleaved({"xdecoder": step_x, "mask2former": step_m}, repeats)
    return [
        {"arm": f"inference (batch {batch}, {size}x{size})", **_ratio(inference)},
        {"arm": f"training step (batch {batch}, {size}x{size})", **_ratio(training)},
    ]


def _ratio(times: dict[str, float]) -> dict[str, float]:
    return {
        "xdecoder_ms": 1000 * times["xdecoder"],
        "mask2former_ms": 1000 * times["mask2former"],
        "ratio": times["xdecoder"] / times["mask2former"],
    }


class _Outputs(dict):
    __getattr__ = dict.__getitem__


def bench_postprocessing(queries: int, num_classes: int, target: int, repeats: int) -> list[dict]:
    """Same synthetic outputs for both processors: a third of the queries confidently predict a class."""
    g = torch.Generator().manual_seed(0)
    logit_size = target // 4
    cls = torch.randn(1, queries, num_classes + 1, generator=g)
    confident = torch.randperm(queries, generator=g)[: queries // 3]
    cls[0, confident, torch.randint(0, num_classes, (len(confident),), generator=g)] += 8.0
    blocks = torch.randn(1, queries, logit_size // 8, logit_size // 8, generator=g) * 6
    masks = torch.nn.functional.interpolate(blocks, size=(logit_size, logit_size), mode="bilinear")
    outputs = _Outputs(class_queries_logits=cls, masks_queries_logits=masks)
    sizes = [(target, target)]
    # the images were resized to `target` and not padded, so both processors see the same geometry
    ours_bicubic = XDecoderImageProcessor(size={"height": target, "width": target})
    ours_bilinear = XDecoderImageProcessor(
        size={"height": target, "width": target}, postprocess_interpolation="bilinear"
    )
    theirs = Mask2FormerImageProcessorPil()
    thresholds = {"threshold": 0.8, "mask_threshold": 0.5, "overlap_mask_area_threshold": 0.8}
    rows = []
    for kind in ("panoptic", "instance", "semantic"):
        if kind == "semantic":
            arms = {
                "xdecoder": lambda p=ours_bicubic: p.post_process_semantic_segmentation(outputs, target_sizes=sizes),
                "xdecoder_bilinear": lambda p=ours_bilinear: p.post_process_semantic_segmentation(
                    outputs, target_sizes=sizes
                ),
                "mask2former": lambda: theirs.post_process_semantic_segmentation(outputs, target_sizes=sizes),
            }
        else:
            name = f"post_process_{kind}_segmentation"
            kw = dict(thresholds, label_ids_to_fuse=set()) if kind == "panoptic" else {"threshold": 0.5}
            arms = {
                "xdecoder": lambda p=ours_bicubic, n=name, k=kw: getattr(p, n)(outputs, target_sizes=sizes, **k),
                "xdecoder_bilinear": lambda p=ours_bilinear, n=name, k=kw: getattr(p, n)(
                    outputs, target_sizes=sizes, **k
                ),
                "mask2former": lambda n=name, k=kw: getattr(theirs, n)(outputs, target_sizes=sizes, **k),
            }
        times = interleaved(arms, repeats)
        rows.append(
            {
                "arm": f"post-processing {kind} ({queries} queries, {num_classes} classes, {target}x{target})",
                **_ratio(times),
                "xdecoder_bilinear_ms": 1000 * times["xdecoder_bilinear"],
                "ratio_bilinear": times["xdecoder_bilinear"] / times["mask2former"],
            }
        )
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny models, 64 px, 1 repeat (seconds)")
    parser.add_argument("--output", type=Path, default=None, help="write the results as JSON here")
    parser.add_argument("--size", type=int, default=256, help="input side for the model arms (full mode)")
    parser.add_argument("--batch", type=int, default=2, help="batch size of the model arms")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per arm (median)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--postprocessing-only", action="store_true", help="skip the model arms")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    num_classes = 19 if args.smoke else 133  # ShapesWorld / COCO panoptic vocabularies
    size = 64 if args.smoke else args.size
    repeats = 1 if args.smoke else args.repeats
    batch = 1 if args.smoke else args.batch

    xdecoder, mask2former, setting = build_pair(args.smoke, num_classes)
    rows = [] if args.postprocessing_only else bench_models(xdecoder, mask2former, size, batch, repeats, num_classes)
    rows += bench_postprocessing(
        queries=setting["object_queries"], num_classes=num_classes, target=128 if args.smoke else 512, repeats=repeats
    )
    result = {
        "setting": setting,
        "device": "cpu",
        "threads": args.threads,
        "torch": torch.__version__,
        "platform": platform.platform(),
        "smoke": args.smoke,
        "target_ratio": TARGET_RATIO,
        "rows": rows,
    }
    print(f"X-Decoder vs Mask2Former ({setting['backbone']}, d={setting['hidden_dim']}, ")
    print(f"{setting['object_queries']} queries, {setting['decoder_layers']} layers), {args.threads} CPU threads\n")
    print("| arm | X-Decoder (ms) | Mask2Former (ms) | ratio | target <= 1.1 |")
    print("|---|---|---|---|---|")
    for row in rows:
        ok = "holds" if row["ratio"] <= TARGET_RATIO else "misses"
        print(f"| {row['arm']} | {row['xdecoder_ms']:.1f} | {row['mask2former_ms']:.1f} | {row['ratio']:.2f} | {ok} |")
        if "ratio_bilinear" in row:
            print(
                f"| ... same, bilinear interpolation | {row['xdecoder_bilinear_ms']:.1f} | {row['mask2former_ms']:.1f} "
                f"| {row['ratio_bilinear']:.2f} | {'holds' if row['ratio_bilinear'] <= TARGET_RATIO else 'misses'} |"
            )
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
