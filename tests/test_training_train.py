"""training/train.py on tiny data: arguments, a full run, resuming, unreadable videos and `accelerate launch`."""

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from modeling_stdd import STDDModel, STDDProcessor
from askg_testing import make_entry
from training_testing import tiny_arguments
from modeling_stdd.askg import LabelTexts, write_askg_file
from modeling_stdd.askg.schema import CLAUSE_FIELDS, GRAPH_FIELDS
import training.job
from training import loop
from training.arguments import parse_args, parse_average_epochs
from training.data import SyntheticMotionSpec, build_synthetic_motion_dataset
from training.run_state import WeightAverager
from training.runtime import make_accelerator
from training.train import main


REPO = Path(__file__).resolve().parent.parent


# ----------------------------------------------------------------------------------------------------------------------
# Arguments
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--batch-size", "0"], "--batch-size must be an integer >= 1"),
        (["--learning-rate", "0"], "--learning-rate must be > 0"),
        (["--warmup-epochs", "-1"], "--warmup-epochs must be >= 0"),
        (["--distillation-weight", "-2"], "--distillation-weight must be >= 0"),
        (["--mixed-precision", "fp8"], "invalid choice: 'fp8'"),
        (["--average-epochs", "last:x"], "--average-epochs"),
        (["--average-epochs", "3-x"], "--average-epochs"),
        (["--epochs", "3", "--average-epochs", "2-5"], "--average-epochs: '2-5' names epoch 5 but training runs 3"),
        (["--eval-data", "somewhere"], "need --train-data"),
        (["--train-data", "x"], "--train-data needs --base-model"),
        (["--resume-from-checkpoint", "/no/such/checkpoint"], "not a folder"),
        (["--template", "a video"], "--template must contain '{}'"),
        (["--template", "a video of a {role} {}."], "--template must contain '{}' exactly once, bare"),
        (["--num-workers", "-1"], "--num-workers must be >= 0"),
        (["--epochs", "abc"], "invalid int value"),
        (["--frame-sampling", "sparse"], "invalid choice: 'sparse'"),
        (["--sampling-rate", "0"], "--sampling-rate must be >= 1"),
        (["--train-crop", "centre"], "invalid choice: 'centre'"),
        (["--flip-probability", "1.5"], "--flip-probability must be in [0, 1]"),
        (["--crop-scale", "0.9", "0.5"], "--crop-scale must be MIN MAX with 0 < MIN <= MAX <= 1"),
        (["--crop-scale", "0.9"], "expected 2 arguments"),
    ],
)
def test_bad_arguments_get_a_clear_message(arguments, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(arguments)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_list_file_without_root_is_rejected(tmp_path, capsys, tiny_clip_dir):
    (tmp_path / "list.csv").write_text("a.mp4,0\n")
    with pytest.raises(SystemExit):
        parse_args(["--base-model", str(tiny_clip_dir), "--train-data", str(tmp_path / "list.csv")])
    assert "is a list file: give --video-root" in capsys.readouterr().err


def test_missing_label_texts_file_is_rejected(tmp_path, capsys, tiny_clip_dir):
    with pytest.raises(SystemExit):
        parse_args(["--base-model", str(tiny_clip_dir), "--train-data", str(tmp_path),
                     "--label-texts", str(tmp_path / "none.json")])
    assert "--label-texts" in capsys.readouterr().err


def test_templates_flags_are_checked_and_build_the_prompts_of_askg_label_texts(tiny_data, tiny_clip_dir, tmp_path, capsys):
    with pytest.raises(SystemExit):
        parse_args(["--num-templates", "3"])
    assert "--num-templates needs --templates FILE" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_args(tiny_arguments(tiny_data, tiny_clip_dir, tmp_path / "out", "--templates", str(tmp_path / "no.txt")))
    assert "--templates: templates file not found" in capsys.readouterr().err
    entries = {label: make_entry(label) for label in ("running", "sitting")}
    write_askg_file({label: entry.subset(GRAPH_FIELDS) for label, entry in entries.items()}, tmp_path / "graph.yml")
    write_askg_file({label: entry.subset(CLAUSE_FIELDS) for label, entry in entries.items()}, tmp_path / "clauses.yml")
    (tmp_path / "classes.yml").write_text("templates:\n" + "".join(f"- clip {index} of {{}}.\n" for index in range(6)))
    arguments = tiny_arguments(
        tiny_data, tiny_clip_dir, tmp_path / "out", "--label-texts", str(tmp_path / "graph.yml"),
        str(tmp_path / "clauses.yml"), "--templates", str(tmp_path / "classes.yml"), "--num-templates", "2",
    )  # fmt: skip
    job = training.job.prepare_job(parse_args(arguments), make_accelerator())
    assert job.label_texts.templates == ["clip 0 of {}.", "clip 1 of {}."]
    assert job.label_texts.texts == LabelTexts.from_label_db(entries, templates=job.label_texts.templates).texts


def test_yaml_config_sets_options_and_flags_override_it(tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text("learning-rate: 0.01\nbatch_size: 4\naverage-epochs: [2, 3]\nseed: 7\n")
    args = parse_args(["--config", str(config), "--seed", "3"])
    assert (args.learning_rate, args.batch_size, args.seed) == (0.01, 4, 3)
    assert parse_average_epochs(args.average_epochs, 12) == [2, 3]
    config.write_text("learning_rat: 0.01\n")
    with pytest.raises(SystemExit):
        parse_args(["--config", str(config)])
    assert "unknown options ['learning_rat']" in capsys.readouterr().err
    config.write_text("batch-size: 0\n")
    with pytest.raises(SystemExit):
        parse_args(["--config", str(config)])
    assert "--batch-size must be an integer >= 1" in capsys.readouterr().err


@pytest.mark.parametrize(
    "text, message",
    [
        ("mixed-precision: fp32\n", "argument --mixed-precision: invalid choice: 'fp32'"),
        ("learning-rate: fast\n", "argument --learning-rate: invalid float value: 'fast'"),
        ("fail-on-unreadable-video: 1\n", "fail_on_unreadable_video must be true or false, got 1"),
    ],
)
def test_yaml_config_values_are_checked_like_flags(tmp_path, capsys, text, message):
    config = tmp_path / "run.yaml"
    config.write_text(text)
    with pytest.raises(SystemExit):
        parse_args(["--config", str(config)])
    assert message in capsys.readouterr().err


def test_yaml_config_takes_single_values_and_lists_where_flags_do(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("train-data: videos\nbase-model: clip\nlabel-texts: ucf101\nreport-to: [jsonl, tensorboard]\n"
                      "frame-mean-baseline: false\nfail-on-unreadable-video: true\nnum-workers: null\n")
    args = parse_args(["--config", str(config)])
    assert args.label_texts == ["ucf101"] and args.report_to == "jsonl,tensorboard"
    assert args.frame_mean_baseline is False and args.fail_on_unreadable_video is True


def test_defaults_of_the_embedded_job_and_of_custom_data(tiny_clip_dir, tmp_path):
    embedded = parse_args([])
    assert embedded.embedded and embedded.frame_mean_baseline and embedded.image_size == 32
    custom = parse_args(["--base-model", str(tiny_clip_dir), "--train-data", str(tmp_path)])
    assert not custom.embedded and not custom.frame_mean_baseline
    assert (custom.learning_rate, custom.distillation_weight, custom.epochs) == (3.33e-6, 2.0, 22)
    video = ("frame_sampling", "sampling_rate", "train_crop", "flip_probability", "crop_scale")
    # your data: the paper's 8x16 dense frames and jitter crop with flips; embedded: segments, mild crops, no flips
    assert [getattr(custom, name) for name in video] == ["dense", 16, "jitter", 0.5, None]
    assert [getattr(embedded, name) for name in video] == ["segments", None, "random-resized", 0.0, (0.8, 1.0)]


def test_video_flags_override_the_recipe_and_reach_the_processor(tiny_clip_dir, tmp_path):
    from accelerate import Accelerator

    from training.job import prepare_job

    (tmp_path / "train" / "waving").mkdir(parents=True)
    (tmp_path / "train" / "waving" / "0.mp4").write_bytes(b"")
    config = tmp_path / "run.yaml"
    config.write_text("crop-scale: [0.5, 0.9]\nflip-probability: 0\n")
    args = parse_args(["--base-model", str(tiny_clip_dir), "--train-data", str(tmp_path / "train"), "--config",
                       str(config), "--train-crop", "random-resized", "--sampling-rate", "8"])
    video_processor = prepare_job(args, Accelerator()).processor.video_processor
    assert (video_processor.frame_sampling, video_processor.sampling_rate) == ("dense", 8)
    assert (video_processor.train_crop, video_processor.crop_scale, video_processor.flip_probability) == (
        "random-resized", (0.5, 0.9), 0.0
    )


@pytest.mark.parametrize(
    "value, expected",
    [("none", []), ("last:3", [8, 9, 10]), ("last:20", list(range(1, 11))), ("8-10", [8, 9, 10]),
     ("2,4,6-7", [2, 4, 6, 7]), ([9, 10], [9, 10])],
)
def test_average_epochs(value, expected):
    assert parse_average_epochs(value, num_epochs=10) == expected


def test_average_epochs_beyond_training_is_an_error():
    with pytest.raises(ValueError, match="names epoch 12 but training runs 10 epochs"):
        parse_average_epochs("11-12", num_epochs=10)


# ----------------------------------------------------------------------------------------------------------------------
# Runs
# ----------------------------------------------------------------------------------------------------------------------


def test_custom_data_run_with_distillation_baseline_and_averaging(tiny_data, tiny_clip_dir, tmp_path):
    output = tmp_path / "out"
    results = main(tiny_arguments(
        tiny_data, tiny_clip_dir, output, "--epochs", "2", "--distillation-weight", "2.0", "--frame-mean-baseline",
        "--average-epochs", "1-2", "--gradient-accumulation-steps", "2",
    ))
    assert json.loads((output / "eval_results.json").read_text()) == results
    assert set(results["zero_shot"]) == {"stdd", "frame_mean_baseline"}
    assert set(results["zero_shot"]["stdd"]) == {"top1"}  # 2 evaluation classes: no top-5
    summary = results["training"]["stdd"]
    assert summary["averaged_epochs"] == [1, 2] and summary["epochs"] == 2
    assert summary["optimizer_steps"] == 4  # 3 batches per epoch: steps after batches 2 and 3 (end of epoch)
    assert summary["last_epoch_distillation"] > 0

    model = STDDModel.from_pretrained(output / "model")
    baseline = STDDModel.from_pretrained(output / "frame_mean_baseline" / "model")
    assert model.config.vision_config.stca_layers is None and baseline.config.vision_config.stca_layers == []
    assert not any("projector" in name for name in load_file(output / "model" / "model.safetensors"))
    processor = STDDProcessor.from_pretrained(output / "model")
    assert processor.video_processor.num_frames == 4
    # trained with the paper's video settings, saved with the model and recorded with the results
    assert (processor.video_processor.frame_sampling, processor.video_processor.train_crop) == ("dense", "jitter")
    assert results["settings"]["video"] == {
        "frame_sampling": "dense", "sampling_rate": 16, "train_crop": "jitter", "flip_probability": 0.5,
        "crop_scale": [0.4, 1.0],
    }
    eval_texts = LabelTexts.from_file(output / "model" / "label_texts" / "eval.json")
    assert eval_texts.texts == {"running": ["a person running.", "someone jogging."],
                                "sitting": ["a video of a person sitting."]}
    assert (output / "model" / "label_texts" / "train.safetensors").is_file()
    # the averaged weights: the mean of the two epochs' weights (the run's checkpoints of epochs 1 and 2 hold the
    # training module, whose `model.` is the STDD model), the text tower untouched
    epochs = [load_file(output / "checkpoints" / f"epoch_{epoch:04d}" / "model.safetensors") for epoch in (1, 2)]
    averaged = final_weights(output)
    trained = [name for name in averaged if not torch.equal(epochs[0][f"model.{name}"], epochs[1][f"model.{name}"])]
    assert any(name.startswith("vision_model.encoder.") for name in trained)
    assert not any(name.startswith("text_model.") for name in trained)
    for name in trained:
        torch.testing.assert_close(averaged[name], (epochs[0][f"model.{name}"] + epochs[1][f"model.{name}"]) / 2)
    start = STDDModel.from_pretrained(tiny_clip_dir)
    assert torch.equal(model.text_model.embeddings.token_embedding.weight,
                       start.text_model.embeddings.token_embedding.weight)
    log = [json.loads(line) for line in (output / "log.jsonl").read_text().splitlines()]
    assert any("config" in entry for entry in log) and any("loss" in entry for entry in log)


def final_weights(folder: Path) -> dict:
    return load_file(folder / "model" / "model.safetensors")


def test_interrupted_and_resumed_run_ends_with_the_same_weights(tiny_data, tiny_clip_dir, tmp_path, monkeypatch):
    extra = ("--epochs", "3", "--average-epochs", "2-3", "--seed", "11", "--num-workers", "1")
    main(tiny_arguments(tiny_data, tiny_clip_dir, tmp_path / "straight", *extra))

    save_checkpoint = loop.save_checkpoint

    def crash_after_epoch_2(accelerator, run_dir, epoch, *args):
        saved = save_checkpoint(accelerator, run_dir, epoch, *args)
        if epoch == 2:
            raise KeyboardInterrupt("simulated interruption")
        return saved

    monkeypatch.setattr(loop, "save_checkpoint", crash_after_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        main(tiny_arguments(tiny_data, tiny_clip_dir, tmp_path / "resumed", *extra))
    monkeypatch.setattr(loop, "save_checkpoint", save_checkpoint)
    checkpoints = sorted(path.name for path in (tmp_path / "resumed" / "checkpoints").iterdir())
    assert checkpoints == ["epoch_0001", "epoch_0002"]
    results = main(tiny_arguments(tiny_data, tiny_clip_dir, tmp_path / "resumed", *extra,
                                  "--resume-from-checkpoint", "latest"))
    assert results["training"]["stdd"]["optimizer_steps"] == 9

    straight, resumed = final_weights(tmp_path / "straight"), final_weights(tmp_path / "resumed")
    assert straight.keys() == resumed.keys()
    assert all(torch.equal(straight[name], resumed[name]) for name in straight)
    # a save_total_limit of 2 keeps the two newest checkpoints
    assert sorted(path.name for path in (tmp_path / "resumed" / "checkpoints").iterdir()) == [
        "epoch_0002", "epoch_0003"
    ]
    # A resume with other settings is refused, naming them.
    with pytest.raises(ValueError, match=r"settings \(average_epochs: '2-3' there, '1' now; seed: 11 there, 0 now\)"):
        main(tiny_arguments(tiny_data, tiny_clip_dir, tmp_path / "resumed", "--epochs", "3", "--average-epochs", "1",
                            "--resume-from-checkpoint", "latest"))


def test_unreadable_videos_are_skipped_and_counted(tiny_data, tiny_clip_dir, tmp_path):
    (tiny_data / "train" / "waving" / "1.mp4").write_bytes(b"\x00" * 100)
    (tiny_data / "eval" / "sitting" / "0.mp4").write_bytes(b"")
    results = main(tiny_arguments(tiny_data, tiny_clip_dir, tmp_path / "out", "--epochs", "1",
                                  "--distillation-weight", "0"))
    assert results["training"]["stdd"]["skipped_videos"] == 1
    # Evaluation leaves the bad file out rather than scoring its neighbour twice.
    assert results["zero_shot_videos"]["stdd"] == {"num_videos": 3, "num_unreadable": 1,
                                                   "classes_without_readable_videos": []}
    with pytest.raises(ValueError, match="1.mp4"):
        main(tiny_arguments(tiny_data, tiny_clip_dir, tmp_path / "strict", "--epochs", "1",
                            "--fail-on-unreadable-video"))


def test_class_folders_find_their_label_texts_whatever_their_spelling(tiny_data, tiny_clip_dir, tmp_path):
    (tiny_data / "eval" / "running").rename(tiny_data / "eval" / "Running")  # label texts say "running"
    results = main(tiny_arguments(tiny_data, tiny_clip_dir, tmp_path / "out", "--max-steps", "1"))
    assert results["zero_shot_videos"]["stdd"]["num_videos"] == 4
    saved = LabelTexts.from_file(tmp_path / "out" / "model" / "label_texts" / "eval.json")
    assert saved.texts["running"] == ["a person running.", "someone jogging."]


def test_weight_averaging_takes_the_mean_of_the_chosen_epochs_only():
    torch.manual_seed(0)
    epoch_models = [torch.nn.Linear(3, 2) for _ in range(3)]
    averager = WeightAverager([2, 3])
    for epoch, model in enumerate(epoch_models, start=1):
        averager.add(model, epoch)
    target = torch.nn.Linear(3, 2)
    assert averager.apply_to(target)
    with torch.no_grad():
        torch.testing.assert_close(target.weight, (epoch_models[1].weight + epoch_models[2].weight) / 2)
        torch.testing.assert_close(target.bias, (epoch_models[1].bias + epoch_models[2].bias) / 2)
    assert not WeightAverager([4]).apply_to(target)  # no chosen epoch reached: the weights stay


def test_adopting_the_training_frame_size_keeps_the_interpolated_outputs(tiny_clip_dir):
    model = STDDModel.from_pretrained(tiny_clip_dir, num_frames=4).eval()
    video = torch.randn(1, 4, 3, 48, 48)
    with torch.no_grad():
        interpolated = model.get_video_features(video, interpolate_pos_encoding=True).pooler_output
        model.adopt_image_size(48)
        native = model.get_video_features(video).pooler_output
    torch.testing.assert_close(native, interpolated, atol=1e-6, rtol=1e-6)
    assert model.config.vision_config.image_size == 48


def test_a_model_trained_at_another_frame_size_runs_on_its_saved_processor(tiny_data, tiny_clip_dir, tmp_path):
    main(tiny_arguments(tiny_data, tiny_clip_dir, tmp_path / "out", "--max-steps", "1", "--image-size", "48"))
    saved = tmp_path / "out" / "model"
    model = STDDModel.from_pretrained(saved)
    processor = STDDProcessor.from_pretrained(saved)
    assert model.config.vision_config.image_size == processor.video_processor.crop_size.height == 48
    pixel_values = processor(videos=str(tiny_data / "eval" / "running" / "0.mp4"), return_tensors="pt")["pixel_values"]
    assert model.get_video_features(pixel_values).pooler_output.shape[:2] == (1, 4)


def test_embedded_job_builds_its_data_and_compares_with_the_baseline(tmp_path, monkeypatch):
    small = SyntheticMotionSpec(train_videos_per_class=1, eval_videos_per_class=1, num_frames=8, pixels_per_frame=2.0)
    monkeypatch.setattr(training.job, "build_synthetic_motion_dataset",
                        functools.partial(build_synthetic_motion_dataset, spec=small))
    results = main(["--output-dir", str(tmp_path / "out"), "--synthetic-data-dir", str(tmp_path / "cache"),
                    "--max-steps", "2", "--num-workers", "0"])
    assert set(results["zero_shot"]) == {"stdd", "frame_mean_baseline"}
    assert all(set(figures) == {"top1", "top5"} for figures in results["zero_shot"].values())  # 12 classes
    assert (tmp_path / "out" / "training_curves.png").stat().st_size > 0
    assert results["training"]["stdd"]["optimizer_steps"] == 2
    assert results["settings"]["model_overrides"]["mask_rate"] == 0.0
    saved = tmp_path / "out" / "model"
    assert STDDModel.from_pretrained(saved).config.vision_config.image_size == 32
    assert STDDProcessor.from_pretrained(saved).video_processor.flip_probability == 0.0
    assert len(LabelTexts.from_file(saved / "label_texts" / "eval.json")) == 12
    assert (tmp_path / "cache" / "tiny-random-clip-32px-seed0" / "config.json").is_file()


def test_accelerate_launch_with_two_cpu_processes(tiny_data, tiny_clip_dir, tmp_path):
    """Several processes only through accelerate: two CPU processes, no `accelerate config` on this machine."""
    (tiny_data / "eval" / "running" / "1.mp4").write_bytes(b"not a video")  # the processes gather unequal counts
    home = tmp_path / "home"
    home.mkdir()
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "training/train.py",
        *tiny_arguments(tiny_data, tiny_clip_dir, tmp_path / "out", "--batch-size", "2", "--max-steps", "2",
                        "--epochs", "1", "--average-epochs", "none"),
    ]
    environment = {**os.environ, "PYTHONPATH": str(REPO), "HF_HOME": str(home / "hf"), "HOME": str(home),
                   "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600, env=environment)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    results = json.loads((tmp_path / "out" / "eval_results.json").read_text())
    assert results["settings"]["num_processes"] == 2
    assert results["training"]["stdd"]["optimizer_steps"] == 2
    assert results["zero_shot_videos"]["stdd"] == {"num_videos": 3, "num_unreadable": 1,
                                                   "classes_without_readable_videos": []}
    assert (tmp_path / "out" / "model" / "model.safetensors").is_file()
