"""Why the nano X-Decoder segments ShapesWorld backgrounds but not shapes: two measurements.

1. `--probe RUN`: a linear probe of shape identity on the features of a trained (or initial) X-Decoder, pooled
   over each ground-truth shape mask, for every backbone and pixel-decoder level. Chance-level accuracy means the
   features carry no shape identity where the decoder's masked attention reads them (inside the masks).
2. `--backbone-only`: the image-level task "which shape is the largest" (ShapesWorld's `label`) learned from
   scratch by the nano FocalNet backbone and by a small BasicBlock ResNet, each with global pooling and a linear
   head: can the backbone learn shape identity at all within a CPU budget?

Usage: `python scripts/diagnose_x_decoder_shapes.py --probe run_dir` or `... --backbone-only --steps 600`.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from hf_unified_seg.data import get_categories, load_shapesworld
from hf_unified_seg.models.x_decoder import XDecoderConfig, XDecoderForPreTraining, XDecoderImageProcessor


def _pixels(processor: XDecoderImageProcessor, records: list[dict[str, Any]]) -> torch.Tensor:
    return processor([r["image"].convert("RGB") for r in records], return_tensors="pt")["pixel_values"]


def _segment_ids(record: dict[str, Any]) -> np.ndarray:
    rgb = np.asarray(record["panoptic"].convert("RGB"), dtype=np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]


@torch.no_grad()
def pooled_shape_features(
    model: XDecoderForPreTraining, processor: XDecoderImageProcessor, dataset: Any
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Per thing segment: the mean feature of every level inside its mask, and its class."""
    features: dict[str, list[torch.Tensor]] = {}
    labels = []
    for start in range(0, len(dataset), 16):
        records = [dataset[i] for i in range(start, min(start + 16, len(dataset)))]
        visual = model.model.encode_image(_pixels(processor, records))
        levels = {f"backbone stride {4 * 2**i}": f for i, f in enumerate(visual.backbone)}
        levels.update(
            {f"pixel decoder stride {32 // 2**i}": f for i, f in enumerate(visual.pixel.multi_scale_features)}
        )
        levels["mask features stride 4"] = visual.pixel.mask_features
        for b, record in enumerate(records):
            ids = _segment_ids(record)
            for segment in record["segments_info"]:
                if not segment.get("isthing", True):
                    continue
                mask = torch.from_numpy(ids == segment["id"]).float()[None, None]
                for name, fmap in levels.items():
                    weight = F.adaptive_avg_pool2d(mask, fmap.shape[-2:])[0, 0]
                    pooled = (fmap[b] * weight).sum((1, 2)) / weight.sum().clamp(min=1e-6)
                    features.setdefault(name, []).append(pooled)
                labels.append(int(segment["category_id"]))
    return {k: torch.stack(v) for k, v in features.items()}, torch.tensor(labels)


def linear_probe(train_x: torch.Tensor, train_y: torch.Tensor, val_x: torch.Tensor, val_y: torch.Tensor) -> tuple:
    """Standardised features, softmax regression (Adam, 500 full-batch steps); returns (train acc, val acc)."""
    mean, std = train_x.mean(0), train_x.std(0) + 1e-5
    a, b = (train_x - mean) / std, (val_x - mean) / std
    head = torch.nn.Linear(a.shape[1], int(max(train_y.max(), val_y.max())) + 1)
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-2, weight_decay=1e-4)
    for _ in range(500):
        optimizer.zero_grad()
        F.cross_entropy(head(a), train_y).backward()
        optimizer.step()
    with torch.no_grad():
        return (head(a).argmax(1) == train_y).float().mean().item(), (head(b).argmax(1) == val_y).float().mean().item()


def probe(run: str, image_size: int, num_train: int, num_val: int) -> None:
    model = XDecoderForPreTraining.from_pretrained(run).eval()
    processor = XDecoderImageProcessor(size={"height": image_size, "width": image_size})
    train_x, train_y = pooled_shape_features(
        model, processor, load_shapesworld("train", num_images=num_train, image_size=image_size)
    )
    val_x, val_y = pooled_shape_features(
        model, processor, load_shapesworld("val", num_images=num_val, image_size=image_size)
    )
    majority = (val_y == val_y.mode().values).float().mean().item()
    print(f"{len(train_y)} / {len(val_y)} shape instances; majority class {100 * majority:.1f}% of val")
    print("| level | channels | train acc (%) | val acc (%) |\n|---|---|---|---|")
    for name in train_x:
        train_acc, val_acc = linear_probe(train_x[name], train_y, val_x[name], val_y)
        print(f"| {name} | {train_x[name].shape[1]} | {100 * train_acc:.1f} | {100 * val_acc:.1f} |")


def backbones(image_size: int, num_train: int, num_val: int, steps: int, batch: int, lr: float) -> None:
    from transformers import ResNetBackbone, ResNetConfig
    from transformers.backbone_utils import load_backbone

    nano = XDecoderConfig.from_preset("nano", text_model_name_or_path=None)
    candidates = {
        "nano FocalNet (X-Decoder nano backbone)": lambda: load_backbone(nano),
        "BasicBlock ResNet [1,1,1,1], 32-256 ch": lambda: ResNetBackbone(
            ResNetConfig(
                embedding_size=32,
                hidden_sizes=[32, 64, 128, 256],
                depths=[1, 1, 1, 1],
                layer_type="basic",
                out_features=["stage4"],
            )
        ),
    }
    processor = XDecoderImageProcessor(size={"height": image_size, "width": image_size})
    train = load_shapesworld("train", num_images=num_train, image_size=image_size)
    val = load_shapesworld("val", num_images=num_val, image_size=image_size)
    val_x = _pixels(processor, [val[i] for i in range(len(val))])
    val_y = torch.tensor([val[i]["label"] for i in range(len(val))])
    num_classes = len(get_categories(train))
    majority = (val_y == val_y.mode().values).float().mean().item()
    print(f"largest-shape classification at {image_size} px: majority class {100 * majority:.1f}% of val")
    print("| backbone | steps | seconds | last train loss | val acc (%) |\n|---|---|---|---|---|")
    for name, build in candidates.items():
        torch.manual_seed(0)
        backbone = build().train()
        head = torch.nn.Linear(backbone.channels[-1], num_classes)
        optimizer = torch.optim.AdamW([*backbone.parameters(), *head.parameters()], lr=lr, weight_decay=0.05)
        generator = torch.Generator().manual_seed(0)
        start = time.perf_counter()
        for _ in range(steps):
            idx = torch.randint(0, len(train), (batch,), generator=generator).tolist()
            x = _pixels(processor, [train[i] for i in idx])
            y = torch.tensor([train[i]["label"] for i in idx])
            loss = F.cross_entropy(head(backbone(x).feature_maps[-1].mean((2, 3))), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        seconds = time.perf_counter() - start
        backbone.eval()
        with torch.no_grad():
            accuracy = (head(backbone(val_x).feature_maps[-1].mean((2, 3))).argmax(1) == val_y).float().mean().item()
        print(f"| {name} | {steps} | {seconds:.0f} | {loss.item():.2f} | {100 * accuracy:.1f} |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probe", default=None, help="trained (or initial) X-Decoder directory to probe")
    parser.add_argument("--backbone-only", action="store_true", help="largest-shape classification from scratch")
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--num-train", type=int, default=2000)
    parser.add_argument("--num-val", type=int, default=200)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    if not args.probe and not args.backbone_only:
        parser.error("give --probe RUN and/or --backbone-only")
    torch.set_num_threads(args.threads)
    if args.probe:
        probe(args.probe, args.image_size, min(args.num_train, 400), min(args.num_val, 100))
    if args.backbone_only:
        backbones(args.image_size, args.num_train, args.num_val, args.steps, args.batch, args.lr)


if __name__ == "__main__":
    main()
