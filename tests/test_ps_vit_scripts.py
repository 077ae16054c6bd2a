"""The PS-ViT reproduction and benchmark scripts run end to end in smoke mode and write their JSON."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def _run(script: str, *args: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", [script, *args])
    runpy.run_path(str(SCRIPTS / script), run_name="__main__")


def test_reproduction_smoke(tmp_path, monkeypatch, capsys):
    output = tmp_path / "repro.json"
    _run(
        "reproduce_ps_vit.py",
        "--smoke",
        "--min-things",
        "1",
        "--max-things",
        "1",
        "--output",
        str(output),
        monkeypatch=monkeypatch,
    )
    report = json.loads(output.read_text())
    assert (report["settings"]["min_things"], report["settings"]["max_things"]) == (1, 1)
    arms = {(run["arm"], run["transmix"]) for run in report["runs"]}
    assert arms == {(a, m) for a in ("progressive", "fixed_grid", "vit") for m in (False, True)}
    for run in report["runs"]:
        assert 0.0 <= run["top1"] <= 100.0
        if run["arm"] != "vit":
            assert 0.0 <= run["hit_initial"] <= 100.0 and 0.0 <= run["hit_final"] <= 100.0
    # equal parameters up to the three offset heads (3 x 130)
    params = {run["arm"]: run["params"] for run in report["runs"]}
    assert params["progressive"] - params["fixed_grid"] == 3 * 130
    assert "| progressive |" in capsys.readouterr().out
    assert output.with_suffix(".md").exists()


def test_bench_smoke(tmp_path, monkeypatch, capsys):
    output = tmp_path / "bench.json"
    _run("bench_ps_vit.py", "--smoke", "--output", str(output), monkeypatch=monkeypatch)
    result = json.loads(output.read_text())["results"][0]
    assert result["latency_ratio"] > 0 and result["memory_ratio"] > 0
    for arm in ("ps_vit", "vit"):
        assert result[arm]["latency_ms"] > 0 and result[arm]["gmacs_per_image"] > 0 and result[arm]["peak_mib"] > 0
    assert "latency ratio" in capsys.readouterr().out
