"""PEFT LoRA helpers: default targets from the model, validation, frozen statistics, saving and merging."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .tasks import unwrap_model

_REGEX_CHARS = set("\\^$*+?[]()|{}")


def _split(value: str | Sequence[str] | None) -> list[str] | str | None:
    if value is None:
        return None
    if isinstance(value, str):
        if any(c in _REGEX_CHARS for c in value):
            return value  # one regular expression (PEFT full-matches it against module names)
        return [v.strip() for v in value.split(",") if v.strip()]
    return list(value)


def _matches(name: str, target: str) -> bool:
    # PEFT's rule for list entries: the full name or a dotted suffix.
    return name == target or name.endswith("." + target)


def matching_modules(model: torch.nn.Module, targets: str | Sequence[str]) -> list[str]:
    """Names of the modules of `model` that PEFT would adapt for `targets`."""
    names = [n for n, _ in model.named_modules() if n]
    if isinstance(targets, str):
        pattern = re.compile(targets)
        return [n for n in names if pattern.fullmatch(n)]
    return [n for n in names if any(_matches(n, t) for t in targets)]


def resolve_lora_targets(
    model: torch.nn.Module,
    target_modules: str | Sequence[str] | None = None,
    modules_to_save: str | Sequence[str] | None = None,
    include_text: bool = False,
) -> tuple[str | list[str], list[str]]:
    """Targets and `modules_to_save` for `model`, defaulting to what its class declares, checked against its modules.

    Args:
        include_text: add the class's `default_lora_text_target_modules` (LoRA on a frozen language model).

    Raises:
        ValueError: no default is declared and none is given, or a target matches no module of the model.
    """
    base = unwrap_model(model)
    user_given = target_modules is not None
    targets = (
        _split(target_modules) if user_given else _split(getattr(type(base), "default_lora_target_modules", None))
    )
    if include_text:
        text_targets = _split(getattr(type(base), "default_lora_text_target_modules", None))
        if not text_targets:
            raise ValueError(
                f"lora_text: {type(base).__name__} has no language side (no default_lora_text_target_modules)"
            )
        if isinstance(targets, str) or isinstance(text_targets, str):
            raise ValueError(
                "lora_text cannot be combined with a regex lora_target_modules; list module names instead"
            )
        targets = list(dict.fromkeys([*(targets or []), *text_targets]))
    if not targets:
        raise ValueError(
            f"{type(base).__name__} declares no `default_lora_target_modules`; pass lora_target_modules "
            "(comma-separated module names or a regex)"
        )
    save = (
        _split(modules_to_save)
        if modules_to_save is not None
        else _split(getattr(type(base), "default_lora_modules_to_save", None))
    )
    save = [save] if isinstance(save, str) else list(save or [])
    leaf_names = sorted({n.rsplit(".", 1)[-1] for n, m in base.named_modules() if n and not list(m.children())})
    hint = f"; leaf module names of {type(base).__name__}: {', '.join(leaf_names[:40])}"
    if isinstance(targets, str):
        if not matching_modules(base, targets):
            raise ValueError(f"lora_target_modules regex {targets!r} matches no module{hint}")
    else:
        missing = [t for t in targets if not matching_modules(base, [t])]
        if (user_given and missing) or len(missing) == len(targets):
            raise ValueError(f"lora_target_modules {missing} match no module{hint}")
    missing_save = [t for t in save if not matching_modules(base, [t])]
    if missing_save:
        raise ValueError(f"lora_modules_to_save {missing_save} match no module of {type(base).__name__}")
    return targets, save


def apply_lora(
    model: torch.nn.Module,
    r: int = 8,
    alpha: float = 16.0,
    dropout: float = 0.0,
    target_modules: str | Sequence[str] | None = None,
    modules_to_save: str | Sequence[str] | None = None,
    include_text: bool = False,
) -> Any:
    """Wrap `model` in a `peft.PeftModel` with LoRA adapters; the base weights are frozen.

    Frozen parts the model itself keeps frozen (e.g. a language model) stay frozen: PEFT only adds trainable
    adapters and `modules_to_save` copies.
    """
    from peft import LoraConfig, get_peft_model

    targets, save = resolve_lora_targets(model, target_modules, modules_to_save, include_text)
    config = LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=targets,
        modules_to_save=save or None,
        bias="none",
    )
    return get_peft_model(model, config)


def freeze_batchnorm_statistics(model: torch.nn.Module, only_frozen: bool = True) -> int:
    """Put BatchNorm layers in eval mode (call after `model.train()`); returns how many were frozen.

    With `only_frozen`, only layers without trainable parameters are frozen: a frozen base under LoRA must not
    drift through its running statistics, or the saved adapter would no longer reproduce the trained model.
    """
    count = 0
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            if only_frozen and any(p.requires_grad for p in module.parameters(recurse=False)):
                continue
            module.eval()
            count += 1
    return count


def adapter_state_keys(adapter_dir: str | Path) -> list[str]:
    from safetensors import safe_open

    with safe_open(str(Path(adapter_dir) / "adapter_model.safetensors"), framework="pt") as f:
        return list(f.keys())


def merge_lora(peft_model: Any) -> torch.nn.Module:
    """Fold the adapters into the base weights and return the plain transformers model."""
    return peft_model.merge_and_unload()
