"""The `hf-unified-seg` command: help texts, data export -> folder training, evaluate, predict, publish errors,
and a shortened quickstart."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hf_unified_seg.cli import main
from hf_unified_seg.training.inference import rle_to_mask

SUBCOMMANDS = ["data", "train", "evaluate", "predict", "publish", "quickstart"]


@pytest.mark.parametrize("command", [[], *([c] for c in SUBCOMMANDS)])
def test_help_everywhere_with_examples(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and "hf-unified-seg" in out
    if command == ["train"]:
        for flag in ("--model_name_or_path", "--resume_from_checkpoint", "--lora_r", "--gradient_accumulation_steps",
                     "--mixed_precision", "--save_steps", "--dataset"):  # fmt: skip
            assert flag in out, flag


@pytest.fixture(scope="module")
def coco_folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "shapes_coco"
    assert main(["data", "--output_dir", str(out), "--num_train", "8", "--num_val", "4", "--image_size", "32",
                 "--format", "coco"]) == 0  # fmt: skip
    return out


@pytest.fixture(scope="module")
def trained_from_folder(coco_folder):
    from hf_unified_seg.data import detect_format

    assert detect_format(coco_folder) == "coco_panoptic"
    out = coco_folder.parent / "run"
    code = main(["train", "--model_name_or_path", "antialiased_resnet", "--preset", "tiny", "--image_size", "32",
                 "--dataset", str(coco_folder), "--per_device_train_batch_size", "4", "--max_steps", "2",
                 "--output_dir", str(out), "--disable_tqdm", "true", "--report_to", "none"])  # fmt: skip
    assert code == 0
    return out


def test_data_then_train_on_the_exported_folder(trained_from_folder):
    results = json.loads((trained_from_folder / "train_results.json").read_text())
    assert results["global_step"] == 2 and "mean_iou" in results["eval"]
    evaluation = json.loads((trained_from_folder / "eval_results.json").read_text())
    assert evaluation["dataset"].endswith("shapes_coco") and evaluation["metrics"]["mean_iou"] >= 0


def test_evaluate_command(trained_from_folder, capsys, tmp_path):
    code = main(["evaluate", "--model", str(trained_from_folder), "--num_images", "4", "--image_size", "32",
                 "--output", str(tmp_path / "m.json")])  # fmt: skip
    assert code == 0
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert 0 <= metrics["mean_iou"] <= 100 and 0 <= metrics["overall_accuracy"] <= 100


def test_predict_writes_rle_json_and_overlay(trained_from_folder, coco_folder, tmp_path):
    images = sorted((coco_folder / "val").glob("*.png"))[:2]
    out = tmp_path / "pred"
    assert main(["predict", "--model", str(trained_from_folder), *map(str, images), "--output_dir", str(out)]) == 0
    for img in images:
        pred = json.loads((out / f"{img.stem}.json").read_text())
        w, h = Image.open(img).size
        assert (pred["width"], pred["height"]) == (w, h) and pred["segments"]
        masks = [rle_to_mask(s["segmentation"]) for s in pred["segments"]]
        assert all(m.shape == (h, w) for m in masks)
        # a semantic segmentation assigns every pixel exactly one label
        np.testing.assert_array_equal(np.sum(masks, axis=0), np.ones((h, w)))
        assert [int(m.sum()) for m in masks] == [s["area"] for s in pred["segments"]]
        overlay = Image.open(out / f"{img.stem}_overlay.png")
        assert overlay.width > 2 * 256 and overlay.height >= 256
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []


def test_predict_on_a_non_image_file_fails_cleanly(trained_from_folder, tmp_path, capsys):
    good = tmp_path / "ok.png"
    Image.new("RGB", (16, 16)).save(good)
    bad = tmp_path / "notes.png"
    bad.write_text("this is not an image")
    out = tmp_path / "pred"
    assert main(["predict", "--model", str(trained_from_folder), str(good), str(bad), "--output_dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert "not an image file" in err and "notes.png" in err
    assert not out.exists()  # nothing was written, not even the good image's prediction
    assert main(["predict", "--model", str(tmp_path / "missing_model"), str(good)]) == 2
    assert main(["predict", "--model", str(trained_from_folder), str(tmp_path / "nope.png")]) == 2


def test_train_and_publish_bad_inputs_are_one_line_errors(tmp_path, capsys):
    folder = tmp_path / "random_files"
    folder.mkdir()
    (folder / "a.txt").write_text("x")
    code = main(["train", "--dataset", str(folder), "--output_dir", str(tmp_path / "r"), "--max_steps", "1"])
    assert code == 2 and "no recognised dataset layout" in capsys.readouterr().err
    code = main(["train", "--output_dir", str(tmp_path / "r"), "--resume_from_checkpoint", str(folder)])
    assert code == 2 and "not a complete checkpoint" in capsys.readouterr().err
    code = main(["train", "--lora", "true", "--lora_target_modules", "nothing_like_this", "--model_name_or_path",
                 "ps_vit", "--preset", "tiny", "--num_train_images", "4", "--dataset_image_size", "32",
                 "--output_dir", str(tmp_path / "r2"), "--max_steps", "1"])  # fmt: skip
    assert code == 2 and "match no module" in capsys.readouterr().err
    assert not (tmp_path / "r2" / "adapter_model.safetensors").exists()
    code = main(["publish", str(folder), "me/x", "--endpoint", "http://127.0.0.1:9"])
    assert code == 2 and "no config.json" in capsys.readouterr().err


def test_quickstart_short(tmp_path, capsys):
    from hf_unified_seg.training.quickstart import run_quickstart

    summary = run_quickstart(output_dir=str(tmp_path / "qs"), train_seconds=2, num_train_images=32, image_size=32)
    out = capsys.readouterr().out
    assert "mIoU" in out and "overlay" in out
    assert Path(summary["overlay"]).is_file() and Path(summary["model_card"]).is_file()
    pred = json.loads(Path(summary["prediction_json"]).read_text())
    assert pred["segments"] and all(s["label"] for s in pred["segments"])
