"""training/train.py under faults: diverged runs, degenerate data, reused or unwritable output folders, resumes."""

import json
import math
import os
import pickle
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file
from training_testing import tiny_arguments

from training import loop, train
from training.arguments import parse_args
from training.divergence import TrainingDivergedError
from training.objective import STDDTrainingModule
from training.run_folder import LOCK_NAME, RunFolderError, RunLock


def test_a_diverged_run_stops_with_a_clear_error_and_publishes_nothing(tiny_data, tiny_clip_dir, tmp_path):
    output = tmp_path / "out"
    with pytest.raises(TrainingDivergedError, match=r"non-finite training \(.*\); the run diverged"):
        train.main(tiny_arguments(tiny_data, tiny_clip_dir, output, "--learning-rate", "1e9", "--epochs", "3",
                                  "--distillation-weight", "0"))
    assert not (output / "eval_results.json").exists() and not (output / "model").exists()
    assert not (output / LOCK_NAME).exists()  # the lock goes with the run, however it ends


@pytest.fixture
def nan_loss_at_second_batch(monkeypatch):
    forward = STDDTrainingModule.forward
    calls = []

    def forward_with_one_nan(self, *args, **kwargs):
        outputs = forward(self, *args, **kwargs)
        calls.append(1)
        if len(calls) == 2:
            outputs = {**outputs, "loss": outputs["loss"] * float("nan")}
        return outputs

    monkeypatch.setattr(STDDTrainingModule, "forward", forward_with_one_nan)
    return calls


def test_non_finite_steps_within_the_budget_are_skipped_and_counted(
    tiny_data, tiny_clip_dir, tmp_path, nan_loss_at_second_batch
):
    output = tmp_path / "out"
    results = train.main(tiny_arguments(tiny_data, tiny_clip_dir, output, "--epochs", "1", "--skip-nonfinite-steps",
                                        "1", "--average-epochs", "none"))
    summary = results["training"]["stdd"]
    assert summary["nonfinite_steps_skipped"] == 1 and summary["optimizer_steps"] == 3
    assert math.isfinite(summary["last_epoch_loss"])  # the mean over the finite batches
    log = [json.loads(line) for line in (output / "log.jsonl").read_text().splitlines()]
    assert {"step": 2, "nonfinite_steps_skipped": 1} in log
    weights = load_file(output / "model" / "model.safetensors")
    assert all(torch.isfinite(tensor).all() for tensor in weights.values())


def test_a_non_finite_step_beyond_the_budget_stops_the_run(
    tiny_data, tiny_clip_dir, tmp_path, nan_loss_at_second_batch
):
    with pytest.raises(TrainingDivergedError, match=r"optimizer step 2: non-finite training \(loss nan"):
        train.main(tiny_arguments(tiny_data, tiny_clip_dir, tmp_path / "out", "--epochs", "1"))


def test_training_data_of_one_class_is_refused(tiny_data, tiny_clip_dir, tmp_path):
    for name in ("waving", "jumping"):
        shutil.rmtree(tiny_data / "train" / name)
    with pytest.raises(ValueError, match=r"--train-data has videos of 1 class \('clapping'\); training needs at "):
        train.main(tiny_arguments(tiny_data, tiny_clip_dir, tmp_path / "out", "--epochs", "1"))


def test_a_training_class_whose_videos_are_all_unreadable_is_named(tiny_data, tiny_clip_dir, tmp_path, capsys):
    for video in (tiny_data / "train" / "waving").iterdir():
        video.write_bytes(b"not a video")
    (tiny_data / "eval" / "sitting" / "0.mp4").write_bytes(b"")
    (tiny_data / "eval" / "sitting" / "1.mp4").write_bytes(b"")
    results = train.main(tiny_arguments(tiny_data, tiny_clip_dir, tmp_path / "out", "--epochs", "1"))
    assert results["training"]["stdd"]["classes_without_readable_videos"] == ["waving"]
    assert results["zero_shot_videos"]["stdd"]["classes_without_readable_videos"] == ["sitting"]
    printed = capsys.readouterr().out
    assert "class 'waving' lost all its videos: none of them could be read" in printed
    assert "no video of ['sitting'] could be read; the figures are over the other classes only" in printed
    with pytest.raises(ValueError, match="mp4"):
        train.main(tiny_arguments(tiny_data, tiny_clip_dir, tmp_path / "strict", "--max-steps", "1",
                                  "--fail-on-unreadable-video"))


# ----------------------------------------------------------------------------------------------------------------------
# The output folder
# ----------------------------------------------------------------------------------------------------------------------


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_used_output_dir_is_refused_and_overwrite_replaces_it(tiny_data, tiny_clip_dir, tmp_path, capsys):
    output = tmp_path / "out"
    output.mkdir()
    (output / LOCK_NAME).write_text(json.dumps({"pid": dead_pid(), "host": "here", "started": "earlier"}))
    train.main(tiny_arguments(tiny_data, tiny_clip_dir, output, "--max-steps", "1", "--seed", "1"))
    assert "was left by a run that is no longer running" in capsys.readouterr().out  # a stale lock is taken over
    assert not (output / LOCK_NAME).exists()

    second_run = tiny_arguments(tiny_data, tiny_clip_dir, output, "--max-steps", "1", "--seed", "2")
    with pytest.raises(RunFolderError, match=r"holds an earlier run \(checkpoints, model, eval_results.json, "
                                             r"log.jsonl, run_settings.json, training_curves.png\)\. Pass "
                                             r"--resume-from-checkpoint latest "
                                             r"to continue it, --overwrite-output-dir to delete it"):
        train.main(second_run)
    assert json.loads((output / "run_settings.json").read_text())["seed"] == 1  # nothing was touched
    results = train.main([*second_run, "--overwrite-output-dir"])
    assert results["settings"]["seed"] == 2
    configs = [json.loads(line)["config"] for line in (output / "log.jsonl").read_text().splitlines()
               if "config" in line]
    assert [config["seed"] for config in configs] == [2]  # the log holds the second run only


def test_a_folder_in_use_by_another_run_is_refused_naming_its_pid(tiny_data, tiny_clip_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(loop, "prepare_job", lambda *args: pytest.fail("work started"))
    output = tmp_path / "out"
    output.mkdir()
    holder = RunLock(output).acquire()
    try:
        with pytest.raises(RunFolderError, match=rf"is in use by another training run \(pid {os.getpid()} on "):
            train.main(tiny_arguments(tiny_data, tiny_clip_dir, output, "--max-steps", "1"))
    finally:
        holder.release()


def test_resume_latest_without_a_checkpoint_says_so(tiny_data, tiny_clip_dir, tmp_path):
    with pytest.raises(RunFolderError, match=r"--resume-from-checkpoint latest: .*checkpoints holds no checkpoint"):
        train.main(tiny_arguments(tiny_data, tiny_clip_dir, tmp_path / "out", "--resume-from-checkpoint", "latest"))


def test_an_unwritable_output_dir_is_refused_before_any_work(tiny_data, tiny_clip_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(loop, "prepare_job", lambda *args: pytest.fail("work started"))
    (tmp_path / "a_file").write_text("")
    message = r"--output-dir .*a_file/out is not writable \(.*a_file is a file, not a folder\)"
    with pytest.raises(RunFolderError, match=message) as raised:
        train.main(tiny_arguments(tiny_data, tiny_clip_dir, tmp_path / "a_file" / "out"))
    assert raised.value.__cause__ is None and raised.value.__suppress_context__


def test_help_says_what_a_rerun_does(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "A rerun into the same --output-dir is refused while it holds an earlier run" in text
    assert "--overwrite-output-dir delete the earlier run in --output-dir" in text


# ----------------------------------------------------------------------------------------------------------------------
# Resuming
# ----------------------------------------------------------------------------------------------------------------------


class RunsAShellCommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_resuming_runs_no_code_from_the_checkpoint_folder_and_reports_the_real_figures(
    tiny_data, tiny_clip_dir, tmp_path, monkeypatch
):
    output = tmp_path / "out"
    arguments = tiny_arguments(tiny_data, tiny_clip_dir, output, "--epochs", "1")
    save_checkpoint = loop.save_checkpoint

    def interrupt_after_saving(*args):
        save_checkpoint(*args)
        raise KeyboardInterrupt("interrupted during evaluation")

    monkeypatch.setattr(loop, "save_checkpoint", interrupt_after_saving)
    with pytest.raises(KeyboardInterrupt):
        train.main(arguments)
    monkeypatch.setattr(loop, "save_checkpoint", save_checkpoint)
    checkpoint = output / "checkpoints" / "epoch_0001"
    assert not list(checkpoint.glob("custom_checkpoint_*"))
    state = json.loads((checkpoint / "training_state.json").read_text())
    assert state["settings"]["learning_rate"] == 1e-3 and state["states"]["progress"]["values"]["training_seconds"] > 0

    marker = tmp_path / "code-ran"
    crafted = checkpoint / "custom_checkpoint_0.pkl"
    crafted.write_bytes(pickle.dumps(RunsAShellCommand(marker)))
    with pytest.raises(ValueError, match=r"holds custom_checkpoint_0.pkl, pickled state that this version never "
                                         r"writes and does not load"):
        train.main([*arguments, "--resume-from-checkpoint", "latest"])
    assert not marker.exists()
    crafted.unlink()
    results = train.main([*arguments, "--resume-from-checkpoint", "latest"])
    # No epoch was left to train: the figures are the interrupted run's, not seconds 0.0 and no losses.
    summary = results["training"]["stdd"]
    assert summary["seconds"] == round(state["states"]["progress"]["values"]["training_seconds"], 1) > 0
    assert summary["last_epoch_loss"] == state["states"]["progress"]["values"]["last_epoch_loss"]["loss"]
    assert math.isfinite(summary["last_epoch_cross_entropy"])

    # accelerate's own files are loaded with weights_only=True: a crafted one is refused, not run.
    torch.save(RunsAShellCommand(marker), checkpoint / "optimizer.bin")
    with pytest.raises(ValueError, match=r"epoch_0001: a file there holds objects other than tensors; refused"):
        train.main([*arguments, "--resume-from-checkpoint", str(checkpoint), "--output-dir", str(tmp_path / "new")])
    assert not marker.exists()


def test_a_checkpoint_of_a_run_with_other_settings_is_refused_naming_them(tiny_data, tiny_clip_dir, tmp_path):
    train.main(tiny_arguments(tiny_data, tiny_clip_dir, tmp_path / "first", "--max-steps", "1"))
    checkpoint = tmp_path / "first" / "checkpoints" / "epoch_0001"
    with pytest.raises(RunFolderError, match=r"epoch_0001 was written by a run with other settings \(learning_rate: "
                                             r"0.001 there, 0.01 now; max_steps: 1 there, None now\)"):
        train.main(tiny_arguments(tiny_data, tiny_clip_dir, tmp_path / "second", "--learning-rate", "0.01",
                                  "--resume-from-checkpoint", str(checkpoint)))
