"""Why a nano X-Decoder trained from scratch segments ShapesWorld backgrounds but not shapes: three measurements.

1. `--probe RUN`: a linear probe of shape identity on the features of a trained (or initial) X-Decoder, pooled
   over each ground-truth shape mask, for every backbone and pixel-decoder level. Chance-level accuracy means the
   features carry no shape identity where the decoder's masked attention reads them (inside the masks).
2. `--mask-pooled`: the visual stack of a fresh nano model (backbone + pixel decoder, nano FocalNet and a small
   BasicBlock ResNet) trained directly on shape identity from mask-pooled features: how fast can it learn shapes
   when nothing else competes for it?
3. `--loss-gradients RUN`: each loss term's share of the gradient on the backbone and the pixel decoder.

Usage: `python scripts/diagnose_x_decoder_shapes.py --probe run_dir`, `... --mask-pooled --steps 600` or
`... --loss-gradients run_dir`.
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


def _thing_masks(records: list[dict[str, Any]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Ground-truth masks `(N, H, W)`, shape classes `(N,)` and image indices `(N,)` of every thing segment."""
    masks, labels, owners = [], [], []
    for b, record in enumerate(records):
        ids = _segment_ids(record)
        for segment in record["segments_info"]:
            if segment.get("isthing", True):
                masks.append(torch.from_numpy(ids == segment["id"]).float())
                labels.append(int(segment["category_id"]))
                owners.append(b)
    return torch.stack(masks), torch.tensor(labels), torch.tensor(owners)


def _mask_pool(fmap: torch.Tensor, masks: torch.Tensor, owners: torch.Tensor) -> torch.Tensor:
    weight = F.adaptive_avg_pool2d(masks[:, None], fmap.shape[-2:])[:, 0]
    return (fmap[owners] * weight[:, None]).sum((2, 3)) / weight.sum((1, 2)).clamp(min=1e-6)[:, None]


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
        masks, classes, owners = _thing_masks(records)
        for name, fmap in levels.items():
            features.setdefault(name, []).append(_mask_pool(fmap, masks, owners))
        labels.append(classes)
    return {k: torch.cat(v) for k, v in features.items()}, torch.cat(labels)


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


def mask_pooled(image_size: int, num_train: int, num_val: int, steps: int, batch: int, lr: float) -> None:
    """The visual stack of a fresh nano X-Decoder (backbone + pixel decoder) trained directly on shape identity:
    mask features pooled over each ground-truth shape -> linear head -> cross-entropy. This is the signal the
    decoder's classification has to find, given without the detour through queries, matching and other losses."""
    processor = XDecoderImageProcessor(size={"height": image_size, "width": image_size})
    train = load_shapesworld("train", num_images=num_train, image_size=image_size)
    val = load_shapesworld("val", num_images=num_val, image_size=image_size)
    val_records = [val[i] for i in range(len(val))]
    val_x, (val_masks, val_y, val_owners) = _pixels(processor, val_records), _thing_masks(val_records)
    num_classes = len(get_categories(train))
    majority = (val_y == val_y.mode().values).float().mean().item()
    print(
        f"mask-pooled shape classification at {image_size} px: {len(val_y)} val shapes, majority {100 * majority:.1f}%"
    )
    print("| backbone | steps | seconds | last train loss | val acc (%) |\n|---|---|---|---|---|")
    for name, preset in (
        ("nano FocalNet (spec §8.2)", "nano"),
        ("BasicBlock ResNet [1,1,1,1], 32-256 ch", "nano_resnet"),
    ):
        torch.manual_seed(0)
        config = XDecoderConfig.from_preset(preset, text_model_name_or_path=None)
        body = XDecoderForPreTraining(config).model.train()
        visual = [*body.backbone.parameters(), *body.pixel_decoder.parameters()]
        head = torch.nn.Linear(config.mask_dim, num_classes)
        optimizer = torch.optim.AdamW([*visual, *head.parameters()], lr=lr, weight_decay=0.05)
        generator = torch.Generator().manual_seed(0)
        start = time.perf_counter()
        for _ in range(steps):
            records = [train[i] for i in torch.randint(0, len(train), (batch,), generator=generator).tolist()]
            masks, labels, owners = _thing_masks(records)
            features = body.encode_image(_pixels(processor, records)).pixel.mask_features
            loss = F.cross_entropy(head(_mask_pool(features, masks, owners)), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        seconds = time.perf_counter() - start
        body.eval()
        with torch.no_grad():
            logits = head(_mask_pool(body.encode_image(val_x).pixel.mask_features, val_masks, val_owners))
            accuracy = (logits.argmax(1) == val_y).float().mean().item()
        print(f"| {name} | {steps} | {seconds:.0f} | {loss.item():.2f} | {100 * accuracy:.1f} |")


def loss_gradients(run: str, image_size: int, batch: int) -> None:
    """Gradient norm of every loss term (summed over its deep-supervision copies) on the backbone and the pixel
    decoder, for one training batch. Adam normalises each parameter's step by its total gradient, so a term with a
    small share of the gradient on the shared visual stack moves it slowly."""
    import random

    from hf_unified_seg.models.x_decoder.training_x_decoder import collate_x_decoder

    model = XDecoderForPreTraining.from_pretrained(run).train()
    processor = XDecoderImageProcessor.from_pretrained(run)
    train = load_shapesworld("train", num_images=batch, image_size=image_size)
    inputs = collate_x_decoder([train[i] for i in range(batch)], processor, model.config, rng=random.Random(0))
    loss_dict = model(**inputs).loss_dict
    terms: dict[str, torch.Tensor] = {}
    for key, value in loss_dict.items():
        base = key.rsplit("_", 1)[0] if key.rsplit("_", 1)[-1].isdigit() else key
        terms[base] = terms.get(base, 0) + value
    parts = {
        "backbone": [p for p in model.model.backbone.parameters() if p.requires_grad],
        "pixel decoder": [p for p in model.model.pixel_decoder.parameters() if p.requires_grad],
    }
    norms = {}
    for name, value in terms.items():
        norms[name] = {}
        for part, params in parts.items():
            grads = torch.autograd.grad(value, params, retain_graph=True, allow_unused=True)
            norms[name][part] = torch.sqrt(sum((g**2).sum() for g in grads if g is not None)).item()
    print(f"{run}: gradient norm per loss term (one batch of {batch})")
    print("| loss | value | backbone | share (%) | pixel decoder | share (%) |\n|---|---|---|---|---|---|")
    totals = {part: sum(n[part] for n in norms.values()) for part in parts}
    for name, value in terms.items():
        b, p = norms[name]["backbone"], norms[name]["pixel decoder"]
        row = f"| {name} | {value.item():.2f} | {b:.2f} | {100 * b / totals['backbone']:.0f} | {p:.2f} |"
        print(f"{row} {100 * p / totals['pixel decoder']:.0f} |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probe", default=None, help="trained (or initial) X-Decoder directory to probe")
    parser.add_argument("--mask-pooled", action="store_true", help="visual stack trained on mask-pooled shape labels")
    parser.add_argument("--loss-gradients", default=None, help="trained (or initial) X-Decoder directory")
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--num-train", type=int, default=2000)
    parser.add_argument("--num-val", type=int, default=200)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    if not (args.probe or args.mask_pooled or args.loss_gradients):
        parser.error("give --probe RUN, --mask-pooled and/or --loss-gradients RUN")
    torch.set_num_threads(args.threads)
    if args.probe:
        probe(args.probe, args.image_size, min(args.num_train, 400), min(args.num_val, 100))
    if args.mask_pooled:
        mask_pooled(args.image_size, args.num_train, args.num_val, args.steps, args.batch, args.lr)
    if args.loss_gradients:
        loss_gradients(args.loss_gradients, args.image_size, args.batch)


if __name__ == "__main__":
    main()
