"""The X-Decoder reproduction and diagnosis scripts run end to end on tiny models."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import pytest
import torch

from hf_unified_seg.data.shapesworld import shapesworld_categories
from hf_unified_seg.models.x_decoder import XDecoderConfig, XDecoderForPreTraining, XDecoderImageProcessor

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def _run(script: str, *args: str, monkeypatch: pytest.MonkeyPatch) -> dict:
    monkeypatch.setattr(sys, "argv", [script, *args])
    return runpy.run_path(str(SCRIPTS / script), run_name="__main__")


def test_claims_smoke_writes_every_variant(tmp_path, monkeypatch):
    output = tmp_path / "claims.json"
    _run("reproduce_x_decoder.py", "--smoke", "--threads", "1", "--output", str(output), monkeypatch=monkeypatch)
    report = json.loads(output.read_text())
    assert {run["variant"] for run in report["runs"]} == {"full", "seg_only", "latent_x_text", "no_captioning"}
    for run in report["runs"]:
        assert 0.0 <= run["val"]["mean_iou"] <= 100.0
    assert {row["ablated"] for row in report["claims"]} == {"seg_only", "latent_x_text", "no_captioning"}


def test_nano_resnet_preset_differs_from_nano_only_in_the_backbone():
    nano, resnet = XDecoderConfig.from_preset("nano").to_dict(), XDecoderConfig.from_preset("nano_resnet").to_dict()
    assert resnet["backbone_config"]["model_type"] == "resnet"
    assert nano["backbone_config"]["model_type"] == "focalnet"
    differing = {k for k in nano if nano[k] != resnet.get(k)}
    assert differing == {"backbone_config"}


def test_loss_gradient_shares_cover_every_loss_term(tmp_path, monkeypatch, capsys):
    torch.manual_seed(0)
    labels = {int(c["id"]): c["name"] for c in shapesworld_categories()}
    model = XDecoderForPreTraining(XDecoderConfig.from_preset("tiny", id2label=labels, train_num_points=32 * 32))
    model.save_pretrained(tmp_path / "tiny")
    XDecoderImageProcessor(size={"height": 64, "width": 64}).save_pretrained(tmp_path / "tiny")
    _run(
        "diagnose_x_decoder_shapes.py",
        "--loss-gradients",
        str(tmp_path / "tiny"),
        "--image-size",
        "64",
        "--batch",
        "2",
        monkeypatch=monkeypatch,
    )
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| loss_")]
    assert {row.split("|")[1].strip() for row in rows} >= {"loss_ce", "loss_mask", "loss_dice", "loss_retrieval"}
    shares = [float(row.split("|")[4]) for row in rows]
    assert abs(sum(shares) - 100.0) <= len(rows)  # rounded percentages of the summed gradient norms
