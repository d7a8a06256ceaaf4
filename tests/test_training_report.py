"""The end of `training/train.py`: runs announced, epoch lines above the bar, the results table, paths and curves."""

import functools
import json

import training.job
from training import loop, train
from training.data import SyntheticMotionSpec, build_synthetic_motion_dataset
from training.reporting import read_training_curves


def test_the_embedded_job_announces_each_run_and_ends_with_a_table_paths_and_curves(tmp_path, monkeypatch, capsys):
    small = SyntheticMotionSpec(train_videos_per_class=1, eval_videos_per_class=1, num_frames=8, pixels_per_frame=2.0)
    monkeypatch.setattr(training.job, "build_synthetic_motion_dataset",
                        functools.partial(build_synthetic_motion_dataset, spec=small))
    written = []
    monkeypatch.setattr(loop.tqdm, "write", classmethod(lambda cls, text, *args, **kwargs: written.append(text)))
    output = tmp_path / "out"
    results = train.main(["--output-dir", str(output), "--synthetic-data-dir", str(tmp_path / "cache"),
                          "--max-steps", "4", "--num-workers", "0"])
    printed = capsys.readouterr().out
    assert "[stdd] run 1/2: training STDD" in printed
    assert "[frame_mean_baseline] run 2/2: training the frame-mean baseline" in printed
    assert [line.split(":")[0] for line in written] == ["[stdd] epoch 1/2", "[stdd] epoch 2/2",
                                                        "[frame_mean_baseline] epoch 1/2",
                                                        "[frame_mean_baseline] epoch 2/2"]
    table = printed[printed.index("model  "):].splitlines()
    assert table[0].split() == ["model", "top-1", "%", "top-5", "%", "chance", "%", "videos", "classes", "seen/unseen"]
    stdd_row = table[2].split()
    assert stdd_row[0] == "stdd" and stdd_row[1] == f"{results['zero_shot']['stdd']['top1']:.1f}"
    assert stdd_row[3:] == ["8.3", "12", "0/12"]  # 12 held-out classes, one video each
    assert table[3].split()[0] == "frame_mean_baseline"
    for line in (f"stdd model:                {output / 'model'}", f"stdd log:                  {output / 'log.jsonl'}",
                 f"results:                   {output / 'eval_results.json'}",
                 f"training curves:           {output / 'training_curves.png'}"):
        assert line in printed
    assert (output / "training_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    curves = read_training_curves(output / "log.jsonl")
    assert curves.steps == [1, 2, 3, 4] and len(curves.learning_rate) == 4 and curves.epochs == [1, 2]
    assert json.loads((output / "eval_results.json").read_text())["class_overlap"]["num_eval_classes"] == 12


def test_without_a_jsonl_log_the_picture_is_not_drawn_and_that_is_said(tmp_path, monkeypatch, capsys):
    small = SyntheticMotionSpec(train_videos_per_class=1, eval_videos_per_class=1, num_frames=8, pixels_per_frame=2.0)
    monkeypatch.setattr(training.job, "build_synthetic_motion_dataset",
                        functools.partial(build_synthetic_motion_dataset, spec=small))
    train.main(["--output-dir", str(tmp_path / "out"), "--synthetic-data-dir", str(tmp_path / "cache"),
                "--max-steps", "1", "--num-workers", "0", "--report-to", "none", "--no-frame-mean-baseline"])
    printed = capsys.readouterr().out
    assert "training curves:" in printed and "not drawn: --report-to has no jsonl log" in printed
    assert not (tmp_path / "out" / "training_curves.png").exists()
