"""scripts/bench_data.py runs in smoke mode and writes its JSON (numbers are not asserted: timing is not a test)."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import torch

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_data.py"


def test_bench_data_smoke(tmp_path, monkeypatch, capsys):
    out = tmp_path / "bench.json"
    monkeypatch.setattr(sys, "argv", [str(SCRIPT), "--smoke", "--output", str(out)])
    threads = torch.get_num_threads()
    try:
        runpy.run_path(str(SCRIPT), run_name="__main__")
    finally:
        torch.set_num_threads(threads)  # the script pins one thread; do not leak that into later tests
    printed = capsys.readouterr().out
    assert "| 128 |" in printed and "panoptic_quality" in printed
    result = json.loads(out.read_text())
    assert [r["image_size"] for r in result["generation"]] == [128, 512]
    assert all(r["generator_images_per_s"] > 0 for r in result["generation"])
    arms = {(r["metric"], r["arm"]) for r in result["metrics"]}
    assert {
        ("panoptic_quality", "hf_unified_seg"),
        ("panoptic_quality", "torchmetrics"),
        ("mask_ap", "hf_unified_seg"),
    } <= arms
    # both PQ arms score the same predictions: they must agree
    pq = {r["arm"]: r["value"] for r in result["metrics"] if r["metric"] == "panoptic_quality"}
    assert abs(pq["hf_unified_seg"] - pq["torchmetrics"]) < 1e-4
