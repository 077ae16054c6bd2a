"""Atomic checkpoints on top of `accelerator.save_state`.

A checkpoint is written to `output_dir/.checkpoint-<step>.tmp` by every process, completed by the main
process with `trainer_state.json` (written last), then renamed to `output_dir/checkpoint-<step>`. A run
killed mid-write leaves only a hidden `.tmp` folder, which resuming ignores and the next save replaces.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

CHECKPOINT_PREFIX = "checkpoint-"
STATE_FILE = "trainer_state.json"
_CHECKPOINT_RE = re.compile(rf"^{CHECKPOINT_PREFIX}(\d+)$")


def is_complete_checkpoint(path: str | Path) -> bool:
    return (Path(path) / STATE_FILE).is_file()


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """Complete checkpoints in `output_dir`, oldest first."""
    root = Path(output_dir)
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        m = _CHECKPOINT_RE.match(p.name)
        if m and p.is_dir() and is_complete_checkpoint(p):
            found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found)]


def resolve_checkpoint(spec: str, output_dir: str | Path) -> Path:
    """`spec` is a checkpoint directory or "latest" (the newest complete checkpoint in `output_dir`).

    Raises:
        ValueError: nothing resumable is there.
    """
    if spec == "latest":
        found = list_checkpoints(output_dir)
        if not found:
            raise ValueError(f"resume_from_checkpoint='latest' but {output_dir} holds no complete checkpoint")
        return found[-1]
    path = Path(spec)
    if not path.is_dir():
        raise ValueError(f"resume_from_checkpoint: {spec!r} is not a directory")
    if not is_complete_checkpoint(path):
        raise ValueError(
            f"resume_from_checkpoint: {spec!r} is not a complete checkpoint (no {STATE_FILE}); "
            f"complete ones in it: {[p.name for p in list_checkpoints(path)] or 'none'}"
        )
    return path


def read_state(checkpoint: str | Path) -> dict[str, Any]:
    return json.loads((Path(checkpoint) / STATE_FILE).read_text())


def save_checkpoint(
    accelerator: Any, output_dir: str | Path, step: int, state: dict[str, Any], limit: int | None
) -> Path:
    """Save model/optimizer/scheduler/RNG with `accelerator.save_state`, plus `state`, atomically."""
    output_dir = Path(output_dir)
    final = output_dir / f"{CHECKPOINT_PREFIX}{step}"
    tmp = output_dir / f".{CHECKPOINT_PREFIX}{step}.tmp"
    if accelerator.is_main_process and tmp.exists():
        shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        state_path = tmp / STATE_FILE
        with open(state_path, "w") as f:
            json.dump(state, f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        if limit is not None and limit > 0:
            for old in list_checkpoints(output_dir)[:-limit]:
                shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final
