"""Training loop: exact resume after SIGKILL, 2-process CPU DDP, task registry, bad input."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hf_unified_seg.cli import main as cli_main
from hf_unified_seg.training import (
    DataArguments,
    LoraArguments,
    ModelArguments,
    SegTrainingArguments,
    TrainingTask,
    get_training_task,
    list_training_tasks,
    register_training_task,
    task_for_model,
    train,
)
from hf_unified_seg.training.checkpoint import list_checkpoints, resolve_checkpoint

REPO = Path(__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    return env


# A training script run in a subprocess. With SLOW=1 every record read sleeps, so the parent can kill the
# run between two checkpoints; the data, model and seed are otherwise identical.
TRAIN_SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    import torch
    torch.set_num_threads(1)
    from hf_unified_seg.data import get_categories, load_shapesworld
    from hf_unified_seg.training import DataArguments, ModelArguments, SegTrainingArguments, train

    class Slow(torch.utils.data.Dataset):
        def __init__(self, ds, delay):
            self.ds, self.delay = ds, delay
        def __len__(self):
            return len(self.ds)
        def __getitem__(self, i):
            time.sleep(self.delay)
            return self.ds[i]

    out, resume, slow = sys.argv[1], sys.argv[2], float(sys.argv[3])
    train_ds = load_shapesworld("train", num_images=24, image_size=32, seed=0)
    eval_ds = load_shapesworld("val", num_images=4, image_size=32, seed=0)
    train(
        ModelArguments("ps_vit", preset="tiny", image_size=32, config_overrides="hidden_dropout_prob=0.2"),
        DataArguments(),
        SegTrainingArguments(
            output_dir=out, per_device_train_batch_size=4, max_steps=14, save_steps=4, learning_rate=3e-3,
            seed=3, skip_final_eval=True, disable_tqdm=True, report_to="none",
            resume_from_checkpoint=None if resume == "none" else resume,
        ),
        train_dataset=Slow(train_ds, slow), eval_dataset=eval_ds, categories=get_categories(train_ds),
    )
    """
)


def _run_group(cmd: list[str], timeout: float, **kw) -> subprocess.CompletedProcess:
    """Run `cmd` in its own process group; on timeout stop the launcher and its workers and fail.

    Output goes to files, not pipes: torchrun starts its workers in sessions of their own, so a worker that outlives
    the launcher would keep a pipe open and block the read forever. SIGTERM goes first because torchrun's agent
    forwards it to those workers; SIGKILL follows if the group does not exit.
    """
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, start_new_session=True, stdout=out, stderr=err, text=True, **kw)
        timed_out = False
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if timed_out:
        pytest.fail(f"{cmd[:6]} timed out after {timeout} s:\n{stdout[-2000:]}\n{stderr[-4000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


def _run_script(tmp_path: Path, *args: str, **kw) -> subprocess.Popen:
    script = tmp_path / "train_script.py"
    script.write_text(TRAIN_SCRIPT)
    return subprocess.Popen(
        [sys.executable, str(script), *args],
        env=_env(),
        cwd=str(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        **kw,
    )


def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path):
    reference = _run_script(tmp_path, str(tmp_path / "ref"), "none", "0")
    killed_dir = tmp_path / "killed"
    victim = _run_script(tmp_path, str(killed_dir), "none", "0.03")
    deadline = time.time() + 240
    while not (killed_dir / "checkpoint-4").is_dir():
        assert victim.poll() is None, victim.stdout.read().decode()[-3000:]
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.05)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL
    assert not (killed_dir / "model.safetensors").exists(), "the run finished before it could be killed"
    done = [p.name for p in list_checkpoints(killed_dir)]
    assert done and "checkpoint-12" not in done
    resumed = _run_script(tmp_path, str(killed_dir), "latest", "0")
    out, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, out.decode()[-3000:]
    assert b"Resumed from" in out
    out, _ = reference.communicate(timeout=300)
    assert reference.returncode == 0, out.decode()[-3000:]

    ref = load_file(tmp_path / "ref" / "model.safetensors")
    got = load_file(killed_dir / "model.safetensors")
    assert ref.keys() == got.keys()
    for k in ref:
        torch.testing.assert_close(got[k], ref[k], rtol=0, atol=1e-6, msg=k)
    # the weights did move: resuming from an untouched model would not pass the check above by accident
    first = load_file(killed_dir / "checkpoint-4" / "model.safetensors")
    assert max((first[k].float() - ref[k].float()).abs().max().item() for k in ref) > 1e-4
    ref_losses = [r["loss"] for r in map(json.loads, (tmp_path / "ref" / "metrics.jsonl").read_text().splitlines())]
    got_losses = {
        r["step"]: r["loss"] for r in map(json.loads, (killed_dir / "metrics.jsonl").read_text().splitlines())
    }
    assert [got_losses[s] for s in range(1, 15)] == pytest.approx(ref_losses, abs=1e-6)


def test_two_process_cpu_ddp_matches_single_process(tmp_path):
    common = [
        "train",
        "--model_name_or_path", "ps_vit", "--preset", "tiny", "--image_size", "32",
        "--num_train_images", "32", "--num_eval_images", "4", "--dataset_image_size", "32",
        "--max_steps", "8", "--learning_rate", "2e-3", "--seed", "5", "--disable_tqdm", "true",
        "--skip_final_eval", "true", "--report_to", "none",
    ]  # fmt: skip
    # accelerate's `--cpu` launcher starts one process unless MPI is installed; `--multi_gpu` starts torchrun
    # workers, and the trainer switches to gloo DDP on CPU when there is no CUDA device.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    ddp = _run_group(
        [
            sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", port,
            "-m", "hf_unified_seg.cli", *common,
            "--per_device_train_batch_size", "4", "--output_dir", str(tmp_path / "ddp"),
        ],
        timeout=240, env=_env(), cwd=str(REPO),
    )  # fmt: skip
    assert ddp.returncode == 0, ddp.stdout[-2000:] + ddp.stderr[-4000:]
    # the same command in one process, at the same global batch (2 x 4)
    assert cli_main([*common, "--per_device_train_batch_size", "8", "--output_dir", str(tmp_path / "single")]) == 0

    results = json.loads((tmp_path / "ddp" / "train_results.json").read_text())
    assert results["num_processes"] == 2
    assert len(results["rank_checksums"]) == 2 and results["ranks_in_sync"]
    assert results["rank_checksums"][0] == results["rank_checksums"][1]
    # parameters agree by themselves (before the final buffer broadcast)
    assert results["rank_parameter_checksums"][0] == results["rank_parameter_checksums"][1]

    def losses(run: str) -> list[float]:
        rows = [json.loads(line) for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
        return [r["loss"] for r in rows if r["type"] == "train"]

    a, b = losses("ddp"), losses("single")
    assert len(a) == len(b) == 8
    # Same samples per global step; only BatchNorm batch statistics and the per-rank averaging of ignored
    # pixels differ, so the curves agree closely but not bit for bit.
    assert a[0] == pytest.approx(b[0], rel=0.02)
    assert max(abs(x - y) / y for x, y in zip(a, b)) < 0.06
    assert a[-1] < a[0] and b[-1] < b[0]


def test_task_registry_and_selection():
    from hf_unified_seg.models.ps_vit import PsVitForImageClassification, PsVitForSemanticSegmentation

    assert {"image-classification", "semantic-segmentation", "universal-segmentation"} <= set(list_training_tasks())
    assert task_for_model(PsVitForSemanticSegmentation).name == "semantic-segmentation"
    assert task_for_model(PsVitForImageClassification).name == "image-classification"

    class Custom(torch.nn.Module):
        training_task = "my-task"

    task = TrainingTask("my-task", "AutoModel", "image-segmentation", lambda r, p, c: {}, lambda *a, **k: {}, "x")
    register_training_task(task)
    assert task_for_model(Custom()) is task
    with pytest.raises(ValueError, match="already registered"):
        register_training_task(TrainingTask("my-task", "AutoModel", "x", task.collate, task.evaluate, "x"))
    with pytest.raises(ValueError, match="unknown training task 'nope'"):
        get_training_task("nope")
    with pytest.raises(ValueError, match="declares no `training_task`"):
        task_for_model(torch.nn.Linear(2, 2))


def _tiny_args(tmp_path, **kw):
    return (
        ModelArguments("ps_vit", preset="tiny", image_size=32),
        DataArguments(num_train_images=8, num_eval_images=2, dataset_image_size=32, **kw.pop("data", {})),
        SegTrainingArguments(
            output_dir=str(tmp_path / "run"),
            per_device_train_batch_size=4,
            max_steps=2,
            disable_tqdm=True,
            report_to="none",
            **kw,
        ),  # fmt: skip
    )


def test_bad_dataset_folder_is_rejected_before_anything_is_written(tmp_path):
    folder = tmp_path / "not_a_dataset"
    folder.mkdir()
    (folder / "notes.txt").write_text("hello")
    m, d, t = _tiny_args(tmp_path, data={"dataset": str(folder)})
    with pytest.raises(ValueError, match="no recognised dataset layout"):
        train(m, d, t)
    assert not (tmp_path / "run" / "model.safetensors").exists()
    assert not list((tmp_path / "run").glob("checkpoint-*")) if (tmp_path / "run").exists() else True


def test_resume_without_checkpoint_is_a_clear_error(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no complete checkpoint"):
        resolve_checkpoint("latest", empty)
    with pytest.raises(ValueError, match="not a complete checkpoint"):
        resolve_checkpoint(str(empty), empty)
    with pytest.raises(ValueError, match="not a directory"):
        resolve_checkpoint(str(tmp_path / "missing"), empty)
    m, d, t = _tiny_args(tmp_path, resume_from_checkpoint="latest")
    with pytest.raises(ValueError, match="no complete checkpoint"):
        train(m, d, t)


def test_half_written_checkpoint_is_ignored(tmp_path):
    # what a run killed inside save_state leaves behind: a hidden temp folder, and a folder without the state file
    (tmp_path / ".checkpoint-8.tmp").mkdir()
    (tmp_path / ".checkpoint-8.tmp" / "model.safetensors").write_bytes(b"partial")
    (tmp_path / "checkpoint-9").mkdir()
    assert list_checkpoints(tmp_path) == []
    (tmp_path / "checkpoint-4").mkdir()
    (tmp_path / "checkpoint-4" / "trainer_state.json").write_text("{}")
    assert resolve_checkpoint("latest", tmp_path).name == "checkpoint-4"


def test_train_in_process_writes_model_card_logs_and_eval(tmp_path):
    m, d, t = _tiny_args(tmp_path, save_steps=1, save_total_limit=1, eval_steps=1)
    result = train(m, d, t, LoraArguments())
    out = Path(result.output_dir)
    assert result.global_step == 2 and "mean_iou" in result.eval_metrics
    assert [p.name for p in list_checkpoints(out)] == ["checkpoint-2"]
    for name in ("model.safetensors", "config.json", "preprocessor_config.json", "README.md", "eval_results.json"):
        assert (out / name).is_file(), name
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["type"] == "train"] == [1, 2]
    assert any(r["type"] == "eval" and "eval_mean_iou" in r for r in rows)


def test_universal_segmentation_task_drives_a_mask2former_stand_in():
    """The generic universal task needs only Mask2Former's interface: transformers' own model is a stand-in."""
    from transformers import Mask2FormerConfig, Mask2FormerForUniversalSegmentation, SwinConfig
    from transformers.models.mask2former.image_processing_pil_mask2former import Mask2FormerImageProcessorPil

    from hf_unified_seg.data import get_categories, load_shapesworld

    records = load_shapesworld("train", num_images=4, image_size=32, seed=0)
    categories = get_categories(records)
    backbone = SwinConfig(
        image_size=32, embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1],
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )  # fmt: skip
    config = Mask2FormerConfig(
        backbone_config=backbone, hidden_dim=32, mask_feature_size=32, feature_size=32, encoder_layers=1,
        decoder_layers=2, num_queries=8, num_labels=len(categories), encoder_feedforward_dim=64,
        dim_feedforward=64, num_attention_heads=2, use_pretrained_backbone=False,
    )  # fmt: skip
    model = Mask2FormerForUniversalSegmentation(config)
    task = task_for_model(model)
    assert task.name == "universal-segmentation"
    processor = Mask2FormerImageProcessorPil(size={"height": 32, "width": 32}, do_reduce_labels=False)
    batch = task.collate([records[i] for i in range(2)], processor, config)
    # one mask per panoptic segment, classes = the records' category indices
    for record, masks, classes in zip(records, batch["mask_labels"], batch["class_labels"]):
        expected = sorted(s["category_id"] for s in record["segments_info"] if not s.get("iscrowd", 0))
        assert sorted(classes.tolist()) == expected and masks.shape[0] == len(expected)
    assert torch.isfinite(model(**batch).loss)
    metrics = task.evaluate(model.eval(), records, processor, batch_size=2, categories=categories)
    assert set(metrics) == {"panoptic_quality", "segmentation_quality", "recognition_quality", "mean_iou"}
    assert all(0 <= v <= 100 for v in metrics.values())


def test_weight_decay_spares_biases_norms_scalars_and_embeddings():
    from hf_unified_seg.training.trainer import weight_decay_groups

    class Toy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(4, 4)
            self.conv = torch.nn.Conv2d(3, 4, 3)
            self.norm = torch.nn.LayerNorm(4)
            self.queries = torch.nn.Embedding(5, 4)
            self.logit_scale = torch.nn.Parameter(torch.tensor(2.6))
            self.frozen = torch.nn.Linear(4, 4).requires_grad_(False)

    model = Toy()
    decay, no_decay = weight_decay_groups(model)
    names = {id(p): n for n, p in model.named_parameters()}
    assert {names[id(p)] for p in decay} == {"linear.weight", "conv.weight"}
    assert {names[id(p)] for p in no_decay} == {
        "linear.bias",
        "conv.bias",
        "norm.weight",
        "norm.bias",
        "queries.weight",
        "logit_scale",
    }
