"""Smoke runs of the anti-aliasing reproduction and benchmark scripts (1 epoch per arm / tiny model)."""

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_reproduce_smoke(tmp_path):
    output, table = tmp_path / "reproduce.json", tmp_path / "table.md"
    results = _load("reproduce_antialias").main(["--smoke", "--output", str(output), "--markdown-out", str(table)])
    saved = json.loads(output.read_text())
    for task, keys in (("classification", ("top1", "consistency")), ("segmentation", ("miou", "massc"))):
        assert set(saved[task]) == {"plain", "blur", "adaptive"}
        for runs in saved[task].values():
            assert all(0.0 <= run[key] <= 100.0 for run in runs for key in keys)
    assert set(results["summary"]) == {"plain", "blur", "adaptive"}
    assert all(-1.0 <= run["filter_spearman"] <= 1.0 for run in saved["classification"]["adaptive"])
    text = table.read_text()
    assert "| adaptive |" in text and "mASSC" in text
    # results of separate runs merge into one table
    merged = _load("reproduce_antialias").main(["--combine", str(output), "--output", str(tmp_path / "merged.json")])
    assert json.loads(json.dumps(merged["summary"])) == json.loads(json.dumps(results["summary"]))


def test_noise_shapes_are_distinct_classes():
    module = _load("reproduce_antialias")
    import numpy as np

    masks = [module.shape_mask(kind, 20.0, 20.0, 6.0, 40) for kind in module.SHAPES]
    assert all(m.sum() > 10 for m in masks)
    assert len({m.tobytes() for m in masks}) == len(masks)
    images, labels = module.noise_shapes(16, np.random.default_rng(0))
    assert images.shape == (16, 3, 40, 40) and labels.min() >= 0 and labels.max() < 8


def test_bench_smoke(tmp_path):
    output = tmp_path / "bench.json"
    results = _load("bench_antialias").main(["--smoke", "--output", str(output)])
    row = results["rows"][0]
    assert set(row["latency_ms"]) == {"plain", "blur", "adaptive"}
    assert all(v > 0 for v in row["latency_ms"].values())
    assert results["adaptive_over_plain_deepest_batch1"] > 0
    assert json.loads(output.read_text())["rows"][0]["model"] == "tiny"
    assert "filter application (slices)" in results["profile"] or results["profile"] == {}


@pytest.mark.parametrize("name", ["reproduce_antialias", "bench_antialias"])
def test_scripts_have_help(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _load(name).main(["--help"])
    assert exit_info.value.code == 0 and "--smoke" in capsys.readouterr().out
