"""What evaluation tells its user: one clear error for a wrong folder, integer counts, the end-of-run table."""

import json
import logging

import pytest

from training.evaluate_zero_shot import build_parser, command_line, main
from training.reporting import ResultRow, reported_top_k, results_table
from training.run_record import write_run_record
from training.video_files import MissingVideosError


def write_ucf101_lists(root, num_videos=4):
    split_dir = root / "ucfTrainTestlist"
    split_dir.mkdir(parents=True)
    (split_dir / "classInd.txt").write_text("1 ApplyEyeMakeup\n2 YoYo\n")
    lines = [f"{name}/v_{name}_g{index:02d}_c01.avi" for name in ("ApplyEyeMakeup", "YoYo") for index in range(num_videos // 2)]
    for split in (1, 2, 3):
        (split_dir / f"testlist0{split}.txt").write_text("\n".join(lines) + "\n")
    return split_dir, lines


def ucf101_arguments(model, tmp_path, split_dir, video_root):
    return ["--model", str(model), "--protocol", "ucf101", "--video-root", str(video_root), "--split-dir",
            str(split_dir), "--label-texts", "none", "--num-workers", "0", "--output", str(tmp_path / "out.json")]


def test_a_wrong_video_root_is_one_error_naming_it(stdd_folder, tmp_path, caplog):
    split_dir, lines = write_ucf101_lists(tmp_path, num_videos=6)
    wrong_root = tmp_path / "not-the-videos"
    wrong_root.mkdir()
    with caplog.at_level(logging.WARNING), pytest.raises(MissingVideosError) as raised:
        main(ucf101_arguments(stdd_folder, tmp_path, split_dir, wrong_root))
    message = str(raised.value)
    assert "6 of the 6 videos of split_1 do not exist" in message
    assert f"--video-root {wrong_root}" in message
    assert str(wrong_root / lines[0]) in message and str(wrong_root / lines[3]) not in message  # the first three
    assert "Skipping" not in caplog.text


def test_some_missing_videos_are_one_warning_and_counted(stdd_folder, tmp_path, make_video, caplog):
    split_dir, lines = write_ucf101_lists(tmp_path, num_videos=4)
    for line in lines[1:]:
        target = tmp_path / "videos" / line
        target.parent.mkdir(parents=True, exist_ok=True)
        make_video(target.name, num_frames=6).rename(target)
    with caplog.at_level(logging.WARNING):
        results = main(ucf101_arguments(stdd_folder, tmp_path, split_dir, tmp_path / "videos"))
    assert results["num_videos"]["split_1"] == 3 and results["num_unreadable"]["split_1"] == 1
    warnings = [record.getMessage() for record in caplog.records if "do not exist" in record.getMessage()]
    assert len(warnings) == 3 and "1 of the 4 videos of split_1" in warnings[0]
    with pytest.raises(MissingVideosError, match="1 of the 4 videos"):
        main([*ucf101_arguments(stdd_folder, tmp_path, split_dir, tmp_path / "videos"), "--fail-on-unreadable-video"])


def test_a_missing_split_folder_is_one_error_line(stdd_folder, tmp_path, capsys):
    assert command_line(ucf101_arguments(stdd_folder, tmp_path, tmp_path / "no-such-lists", tmp_path)) == 2
    error = capsys.readouterr().err
    assert error == f"evaluate_zero_shot.py: error: --split-dir {tmp_path / 'no-such-lists'} is not a folder\n"


def test_the_command_line_reports_bad_input_without_a_traceback(tmp_path, capsys):
    (tmp_path / "lists").mkdir()
    (tmp_path / "empty-model").mkdir()
    assert command_line(ucf101_arguments(tmp_path / "empty-model", tmp_path, tmp_path / "lists", tmp_path)) == 2
    error = capsys.readouterr().err
    assert error.startswith("evaluate_zero_shot.py: error: ") and "has no config.json" in error
    assert "Traceback" not in error


def test_help_names_the_model_folder_and_no_internal_document():
    text = build_parser().format_help()
    assert "--model outputs/stdd/model" in text and "STDD_METHOD" not in text


def test_counts_are_integers_and_the_table_ends_the_run(stdd_folder, tmp_path, make_video, capsys):
    for name in ("waving", "clapping"):
        (tmp_path / "data" / name).mkdir(parents=True)
        for index in range(2):
            make_video(f"{name}{index}.mp4", num_frames=8).rename(tmp_path / "data" / name / f"{index}.mp4")
    # The training run's record says it was trained on "waving": one of the two classes is seen, one unseen.
    write_run_record(stdd_folder, {"train_classes": ["waving", "running"]})
    results = main(["--model", str(stdd_folder), "--data", str(tmp_path / "data"), "--num-workers", "0",
                    "--label-texts", "none", "--output", str(tmp_path / "out.json")])
    printed = capsys.readouterr().out
    assert "num_videos 4," in printed and "num_videos 4.00" not in printed
    assert results["class_overlap"]["test"]["num_seen_in_training"] == 1
    table = printed[printed.index("split "):].splitlines()
    assert table[0].split() == ["split", "top-1", "%", "top-5", "%", "chance", "%", "videos", "classes", "seen/unseen"]
    assert table[2].split()[0] == "test" and table[2].split()[2:] == ["-", "50.0", "4", "1/1"]
    assert f"results: {tmp_path / 'out.json'}" in printed
    assert json.loads((tmp_path / "out.json").read_text())["num_classes"] == {"test": 2}


def test_top5_needs_six_classes_and_the_table_aligns():
    assert reported_top_k(5) == (1,) and reported_top_k(6) == (1, 5)
    table = results_table([ResultRow("stdd", 25.0, 62.5, 12, 120, 0), ResultRow("frame_mean_baseline", 8.25, None, 3, 7, 2)])
    lines = table.splitlines()
    assert len({len(line) for line in lines[:2]}) == 1  # header and rule line up
    assert lines[2].split() == ["stdd", "25.0", "62.5", "8.3", "120", "0/12"]
    assert lines[3].split() == ["frame_mean_baseline", "8.2", "-", "33.3", "7", "2/1"]
