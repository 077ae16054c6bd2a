"""Convert a reference PS-ViT checkpoint (the authors' `models/ps_vit.py` layout) to `PsVitForImageClassification`.

Works offline from a local file (`.pth` / `.pt` read with `torch.load(weights_only=True)`, or `.safetensors`).
Key map (spec §7.10): `stem.0/1` -> `embeddings.conv1/bn1`, `stem.4/5` -> `embeddings.layer1.0/1`, `pos_layer` ->
`sampler.position_embeddings`, `ps_layers.t.transformer_layer` -> `sampler.layers.t`, `ps_layers.t.offset_layer` ->
`sampler.offset_heads.t`, `trans_layers.j` -> `encoder.layers.j`, `norm` -> `layernorm`, `head` -> `classifier`;
inside a layer `norm1/norm2` -> `layernorm_before/after`, the fused `attn.qkv` (3C x C, query rows first) is split
into `q_proj/k_proj/v_proj`, `attn.proj` -> `out_proj`, `mlp.fc1/fc2` unchanged. The released weights were
trained with the attention scale `C ** -0.5`, which the converted config sets.

Usage::

    python -m hf_unified_seg.models.ps_vit.convert_ps_vit_checkpoint --checkpoint ps_vit_b_14.pth \\
        --preset ps_vit_b_14 --output ./ps-vit-b-14
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import torch

from .configuration_ps_vit import PsVitConfig
from .image_processing_ps_vit import PsVitImageProcessor
from .modeling_ps_vit import PsVitForImageClassification

_PREFIX_RULES = [
    (r"^stem\.0\.", "embeddings.conv1."),
    (r"^stem\.1\.", "embeddings.bn1."),
    (r"^stem\.4\.", "embeddings.layer1.0."),
    (r"^stem\.5\.", "embeddings.layer1.1."),
    (r"^pos_layer\.", "sampler.position_embeddings."),
    (r"^ps_layers\.(\d+)\.transformer_layer\.", r"sampler.layers.\1."),
    (r"^ps_layers\.(\d+)\.offset_layer\.", r"sampler.offset_heads.\1."),
    (r"^trans_layers\.(\d+)\.", r"encoder.layers.\1."),
    (r"^norm\.", "layernorm."),
]
_LAYER_RULES = [
    (r"\.norm1\.", ".layernorm_before."),
    (r"\.norm2\.", ".layernorm_after."),
    (r"\.attn\.proj\.", ".attention.out_proj."),
]


def convert_state_dict(reference: dict[str, torch.Tensor], hidden_size: int) -> dict[str, torch.Tensor]:
    """Rename (and split the fused qkv of) a reference state dict into `PsVitForImageClassification` keys."""
    converted: dict[str, torch.Tensor] = {}
    for key, value in reference.items():
        key = key.removeprefix("module.")
        if key.startswith("head."):
            converted["classifier." + key[len("head.") :]] = value
            continue
        if key == "cls_token":
            converted["ps_vit.cls_token"] = value
            continue
        new = key
        for pattern, replacement in _PREFIX_RULES + _LAYER_RULES:
            new = re.sub(pattern, replacement, new)
        if new == key:
            raise ValueError(f"Unexpected key {key!r} in the reference checkpoint.")
        if new.endswith(".attn.qkv.weight") or new.endswith(".attn.qkv.bias"):
            stem, kind = new.rsplit(".attn.qkv.", 1)
            if value.shape[0] != 3 * hidden_size:
                raise ValueError(f"{key!r} has {value.shape[0]} rows, expected 3 * hidden_size = {3 * hidden_size}.")
            for name, chunk in zip(("q_proj", "k_proj", "v_proj"), value.chunk(3, dim=0)):
                converted[f"ps_vit.{stem}.attention.{name}.{kind}"] = chunk.clone()
            continue
        converted["ps_vit." + new] = value
    return converted


def load_reference(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(path)
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    for wrapper in ("model", "state_dict", "model_ema"):
        if isinstance(checkpoint, dict) and wrapper in checkpoint and isinstance(checkpoint[wrapper], dict):
            return checkpoint[wrapper]
    return checkpoint


def convert_checkpoint(path: str | Path, preset: str, **config_overrides) -> PsVitForImageClassification:
    """Build the preset (attention scale `C ** -0.5`) and load the converted reference weights strictly."""
    base = PsVitConfig.from_preset(preset)
    config = PsVitConfig.from_preset(preset, attention_scale=base.hidden_size**-0.5, **config_overrides)
    model = PsVitForImageClassification(config).eval()
    state = convert_state_dict(load_reference(path), config.hidden_size)
    model.load_state_dict(state, strict=True)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="local reference checkpoint (.pth/.pt/.safetensors)")
    parser.add_argument("--preset", required=True, help=f"one of {PsVitConfig.preset_names()}")
    parser.add_argument("--output", required=True, help="directory for save_pretrained (safetensors)")
    args = parser.parse_args()
    model = convert_checkpoint(args.checkpoint, args.preset)
    model.save_pretrained(args.output)
    PsVitImageProcessor().save_pretrained(args.output)
    print(f"saved {sum(p.numel() for p in model.parameters()):,} parameters to {args.output}")


if __name__ == "__main__":
    main()
