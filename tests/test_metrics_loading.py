"""Every metric is an evaluate module shipped in the package, loadable offline both ways."""

from __future__ import annotations

import os
from pathlib import Path

import evaluate
import numpy as np
import pytest

import hf_unified_seg
from hf_unified_seg.metrics import list_metrics, load, metric_path

EXPECTED = {
    "panoptic_quality",
    "mean_iou",
    "mask_ap",
    "referring",
    "interactive",
    "retrieval",
    "classification_consistency",
    "segmentation_consistency",
}


def test_unknown_name_lists_the_available_metrics():
    with pytest.raises(ValueError, match="available metrics") as info:
        load("unknown")
    assert all(name in str(info.value) for name in EXPECTED)
    assert set(list_metrics()) == EXPECTED


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_module_files_load_offline_with_evaluate(name, tmp_path):
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    path = Path(metric_path(name))
    assert path.is_file() and path.parent == Path(hf_unified_seg.__file__).parent / "metrics"
    metric = evaluate.load(str(path), keep_in_memory=True, cache_dir=str(tmp_path))
    assert isinstance(metric, evaluate.Metric)
    assert metric.name == name
    assert "percent" in metric.description.lower() and metric.citation.strip()
    assert metric.features is not None and metric.inputs_description.strip()


def test_evaluate_loaded_module_computes_like_the_package_one(tmp_path):
    mask = np.zeros((6, 6), dtype=bool)
    mask[:3] = True
    pred = np.zeros((6, 6), dtype=bool)
    pred[:2] = True
    via_evaluate = evaluate.load(metric_path("referring"), keep_in_memory=True, cache_dir=str(tmp_path))
    assert via_evaluate.compute(predictions=[pred], references=[mask]) == load("referring").compute(
        predictions=[pred], references=[mask]
    )
    # settings go through evaluate.load's keyword arguments too
    miou = evaluate.load(metric_path("mean_iou"), num_labels=2, keep_in_memory=True, cache_dir=str(tmp_path))
    assert miou.compute(predictions=[pred.astype(int)], references=[mask.astype(int)])[
        "overall_accuracy"
    ] == pytest.approx(100 * 30 / 36)


def test_package_level_load_metric_alias():
    assert type(hf_unified_seg.load_metric("retrieval")).__name__ == "Retrieval"
