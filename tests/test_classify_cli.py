"""`stdd-classify` on batches: results as they come in an aligned table, bad videos named, saved label sets in --help."""

import json

import pytest

from modeling_stdd.askg import LabelTexts
from modeling_stdd.classify_cli import DEFAULT_MODEL, build_parser, main


LABELS = "waving, playing the guitar"


@pytest.fixture
def model_dir(stdd_folder):
    folder = stdd_folder
    LabelTexts({"waving": ["a person waving."]}).save(folder / "label_texts" / "demo.json")
    LabelTexts({"jumping": ["a person jumping."]}).save(folder / "label_texts" / "eval.json")
    return folder


@pytest.fixture
def videos(make_video, tmp_path):
    good = [str(make_video(f"good{index}.mp4", num_frames=8)) for index in range(2)]
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"this is not a video")
    return good[0], str(bad), good[1]


@pytest.mark.parametrize("batch_size", ["1", "2"])
def test_a_bad_video_does_not_stop_the_batch(model_dir, videos, capsys, batch_size):
    status = main([*videos, "--labels", LABELS, "--model", str(model_dir), "--batch-size", batch_size])
    captured = capsys.readouterr()
    assert status == 1
    rows = [line.split() for line in captured.out.splitlines()[2:]]
    assert [row[0] for row in rows] == [videos[0], videos[0], videos[2], videos[2]]
    assert [row[1] for row in rows] == ["1", "2", "1", "2"]
    assert f"stdd-classify: {videos[1]}:" in captured.err
    assert "1 of 3 videos could not be classified" in captured.err
    assert "Traceback" not in captured.err


def test_the_table_is_aligned_and_json_is_a_list(model_dir, videos, capsys):
    assert main([videos[0], videos[2], "--labels", LABELS, "--model", str(model_dir)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["video", "rank", "label", "score"]
    score_ends = {len(line) for line in lines[2:]}
    label_starts = {line.index(label) for line in lines[2:] for label in ("waving", "playing") if label in line}
    assert len(score_ends) == 1 and len(label_starts) == 1  # scores right-aligned, labels in one column
    assert main([videos[0], videos[1], "--labels", LABELS, "--model", str(model_dir), "--json"]) == 1
    results = json.loads(capsys.readouterr().out)
    assert [result["video"] for result in results] == [videos[0]]


def test_a_timeline_has_a_window_column(model_dir, videos, capsys):
    assert main([videos[0], "--labels", LABELS, "--model", str(model_dir), "--segment-seconds", "0.4",
                 "--top-k", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["video", "window", "rank", "label", "score"]
    assert [line.split()[1] for line in lines[2:]] == ["0.00-0.40s", "0.40-0.80s"]


def test_help_lists_the_label_sets_saved_with_the_model(model_dir, capsys):
    with pytest.raises(SystemExit):
        main(["--model", str(model_dir), "--help"])
    assert "(--label-texts NAME): demo, eval." in " ".join(capsys.readouterr().out.split())
    default_help = " ".join(build_parser().format_help().split())
    assert f"Label-text sets saved with {DEFAULT_MODEL}:" in default_help


def test_settings_refused_for_every_video_are_refused_once(model_dir, videos, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([videos[0], "--labels", LABELS, "--model", str(model_dir), "--top-k", "0"])
    assert exit_info.value.code == 2 and "--top-k must be >= 1" in capsys.readouterr().err


def test_the_offline_error_names_the_default_model(videos, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main([videos[0], "--labels", LABELS])
    error = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert f"cannot load {DEFAULT_MODEL} (the default model)" in error and "Without network" in error


def test_a_model_folder_without_config_is_named(videos, capsys, tmp_path):
    (tmp_path / "not-a-model").mkdir()
    with pytest.raises(SystemExit) as exit_info:
        main([videos[0], "--labels", LABELS, "--model", str(tmp_path / "not-a-model")])
    assert exit_info.value.code == 2
    assert f"{tmp_path / 'not-a-model'} is not a model folder: it has no config.json" in capsys.readouterr().err
