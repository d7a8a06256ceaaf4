"""Video data sources in HF Datasets, lazy decoding with skipping of unreadable files, and the synthetic motion set."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from askg_testing import reference_label_db
from datasets import ClassLabel, Dataset

from modeling_stdd import STDDProcessor
from training import data
from training.data import (
    SYNTHETIC_COLORS,
    SYNTHETIC_MOTIONS,
    SYNTHETIC_SHAPES,
    SyntheticMotionSpec,
    VideoClipDataset,
    build_synthetic_motion_dataset,
    class_names_of,
    collate_clips,
    load_video_dataset,
    load_video_list,
    read_index_to_class,
    render_motion_clip,
    synthetic_classes,
)


TINY_SPEC = SyntheticMotionSpec(train_videos_per_class=1, eval_videos_per_class=1, num_frames=8, frame_size=32,
                                pixels_per_frame=2.0)


@pytest.fixture
def processor():
    return STDDProcessor.from_clip_defaults(image_size=32, num_frames=4)


@pytest.fixture
def video_folder(tmp_path, make_video):
    """Two classes, two clips each, in `tmp_path/videos/<class>/`."""
    for name in ("jumping jacks", "waving"):
        (tmp_path / "videos" / name).mkdir(parents=True)
        for index in range(2):
            path = make_video(f"{name}-{index}.mp4", num_frames=8)
            path.rename(tmp_path / "videos" / name / f"{index}.mp4")
    return tmp_path / "videos"


def test_video_folder_classes_come_from_sub_folders(video_folder, tmp_path):
    dataset = load_video_dataset(str(video_folder))
    assert class_names_of(dataset) == ["jumping jacks", "waving"]
    assert sorted(dataset["label"]) == [0, 0, 1, 1]
    assert all(Path(video["path"]).parent.name == class_names_of(dataset)[label]
               for video, label in zip(dataset["video"], dataset["label"]))


def test_every_video_below_a_class_folder_is_of_that_class(video_folder):
    """Nested folders and every suffix the processor reads (webm, m4v, ...) count for the top-level class folder."""
    (video_folder / "waving" / "outdoor").mkdir()
    (video_folder / "waving" / "0.mp4").rename(video_folder / "waving" / "outdoor" / "0.mp4")
    (video_folder / "waving" / "1.mp4").rename(video_folder / "waving" / "1.m4v")
    (video_folder / "clapping").mkdir()
    (video_folder / "jumping jacks" / "0.mp4").rename(video_folder / "clapping" / "0.webm")
    (video_folder / "clapping" / "notes.txt").write_text("not a video")
    dataset = load_video_dataset(str(video_folder))
    names = class_names_of(dataset)
    assert names == ["clapping", "jumping jacks", "waving"]
    by_class = {name: sorted(Path(video["path"]).name for video, label in zip(dataset["video"], dataset["label"])
                             if names[label] == name) for name in names}
    assert by_class == {"clapping": ["0.webm"], "jumping jacks": ["1.mp4"], "waving": ["0.mp4", "1.m4v"]}


def test_video_folder_without_class_folders_is_rejected(tmp_path):
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(ValueError, match="class folders without videos"):
        load_video_dataset(str(tmp_path))


def test_list_file_with_root_and_index_json(tmp_path, video_folder):
    (tmp_path / "index.json").write_text(json.dumps({"0": "jumping jacks", "1": "waving"}))
    (tmp_path / "list.csv").write_text("jumping jacks/0.mp4,0\n\nwaving/1.mp4,1\n")
    dataset = load_video_list(tmp_path / "list.csv", video_folder, tmp_path / "index.json")
    assert class_names_of(dataset) == ["jumping jacks", "waving"]
    assert dataset["label"] == [0, 1]
    assert dataset[1]["video"]["path"] == str(video_folder / "waving" / "1.mp4")


@pytest.mark.parametrize(
    "line, message",
    [("no-label.mp4", "expected `relative/path,label_index`"), ("a.mp4,x", "expected"), ("a.mp4,7", "label index 7")],
)
def test_bad_list_lines_name_file_and_line(tmp_path, line, message):
    (tmp_path / "index.json").write_text(json.dumps({"0": "a", "1": "b"}))
    (tmp_path / "list.csv").write_text(f"ok.mp4,0\n{line}\n")
    with pytest.raises(ValueError, match=message) as error:
        load_video_list(tmp_path / "list.csv", tmp_path, tmp_path / "index.json")
    assert "line 2" in str(error.value)


def test_list_file_needs_root_and_index(tmp_path):
    (tmp_path / "list.csv").write_text("a.mp4,0\n")
    with pytest.raises(ValueError, match="--video-root"):
        load_video_list(tmp_path / "list.csv", None, tmp_path / "index.json")
    with pytest.raises(ValueError, match="--index-to-class"):
        load_video_list(tmp_path / "list.csv", tmp_path, None)


@pytest.mark.parametrize(
    "content, message",
    [('{"0": "a", "2": "b"}', "without gaps"), ('{"x": "a"}', "class index"), ("[1]", "JSON object"),
     ("{", "not valid JSON")],
)
def test_bad_index_to_class_files(tmp_path, content, message):
    (tmp_path / "index.json").write_text(content)
    with pytest.raises(ValueError, match=message):
        read_index_to_class(tmp_path / "index.json")


def test_authors_ucf101_list_and_index_files(tmp_path):
    reference = reference_label_db()
    dataset = load_video_list(reference / "ucf101-test.csv", tmp_path, reference / "ucf101-index2cls.json")
    assert len(class_names_of(dataset)) == 101
    assert len(dataset) == 3783
    first = dataset[0]
    assert first["video"]["path"] == str(tmp_path / "ApplyEyeMakeup" / "v_ApplyEyeMakeup_g01_c01.avi")
    assert class_names_of(dataset)[first["label"]] == "Apply Eye Makeup"


def test_hub_dataset_columns_are_renamed_and_labels_encoded(monkeypatch, tmp_path):
    columns = {"clip": ["a.mp4", "b.mp4", "c.mp4"], "action": ["run", "walk", "run"], "extra": [1, 2, 3]}
    hub_rows = Dataset.from_dict(columns)
    monkeypatch.setattr(data, "load_dataset", lambda dataset_id, split, cache_dir=None: hub_rows)
    dataset = load_video_dataset("user/videos", video_column="clip", label_column="action")
    assert dataset.column_names == ["video", "label"]
    assert isinstance(dataset.features["label"], ClassLabel)
    assert [class_names_of(dataset)[label] for label in dataset["label"]] == ["run", "walk", "run"]
    assert dataset[0]["video"]["path"] == "a.mp4"
    with pytest.raises(ValueError, match="no column 'video'"):
        load_video_dataset("user/videos", label_column="action")


def test_unknown_source_is_rejected():
    with pytest.raises(ValueError, match="neither a folder"):
        load_video_dataset("no/such/folder/videos.mp4")


def test_unreadable_video_is_skipped_and_counted(video_folder, processor, caplog):
    broken = video_folder / "waving" / "0.mp4"
    broken.write_bytes(b"not a video at all")
    dataset = load_video_dataset(str(video_folder))
    row = next(index for index, video in enumerate(dataset["video"]) if video["path"] == str(broken))
    clips = VideoClipDataset(dataset, processor.video_processor, training=True)
    item = clips[row]
    assert item["num_skipped"] == 1 and item["skipped_labels"] == [dataset[row]["label"]]
    assert item["pixel_values"].shape == (4, 3, 32, 32)
    assert "unreadable" in caplog.text and "0.mp4" in caplog.text
    batch = collate_clips([clips[index] for index in range(len(clips))])
    assert batch["num_skipped"].item() == 1 and batch["pixel_values"].shape == (4, 4, 3, 32, 32)
    assert batch["skipped_labels"].tolist() == [dataset[row]["label"]]
    assert batch["readable"].all()
    with pytest.raises(ValueError, match="0.mp4"):
        VideoClipDataset(dataset, processor.video_processor, training=True, skip_unreadable=False)[row]


def test_a_video_decord_cannot_decode_counts_as_unreadable(video_folder, processor, make_video):
    """A truncated mkv fails inside decord (DECORDError), not on opening: it is left out like any unreadable file."""
    data = make_video("whole.mkv", num_frames=120, height=96, width=128).read_bytes()
    truncated = video_folder / "waving" / "2.mkv"
    truncated.write_bytes(data[: len(data) // 20])
    dataset = load_video_dataset(str(video_folder))
    row = next(index for index, video in enumerate(dataset["video"]) if video["path"] == str(truncated))
    clips = VideoClipDataset(dataset, processor.video_processor, training=False)
    label = dataset[row]["label"]
    assert clips[row] == {"pixel_values": None, "labels": label, "num_skipped": 1, "skipped_labels": [label]}


def test_evaluation_leaves_an_unreadable_video_out_instead_of_replacing_it(video_folder, processor):
    broken = video_folder / "waving" / "0.mp4"
    broken.write_bytes(b"not a video at all")
    dataset = load_video_dataset(str(video_folder))
    row = next(index for index, video in enumerate(dataset["video"]) if video["path"] == str(broken))
    clips = VideoClipDataset(dataset, processor.video_processor, training=False)
    label = dataset[row]["label"]
    assert clips[row] == {"pixel_values": None, "labels": label, "num_skipped": 1, "skipped_labels": [label]}
    batch = collate_clips([clips[index] for index in range(len(clips))])
    assert batch["readable"].tolist() == [index != row for index in range(len(clips))]
    assert batch["pixel_values"].shape == (3, 1, 4, 3, 32, 32) and batch["labels"].shape == (4,)
    assert collate_clips([clips[row]])["pixel_values"] is None


def test_evaluation_views(video_folder, processor):
    dataset = load_video_dataset(str(video_folder))
    clips = VideoClipDataset(dataset, processor.video_processor, training=False, num_clips=2)
    assert clips[0]["pixel_values"].shape == (2, 4, 3, 32, 32)
    single = VideoClipDataset(dataset, processor.video_processor, training=False)
    assert torch.equal(single[0]["pixel_values"], single[0]["pixel_values"])


def test_synthetic_classes_hold_out_unseen_combinations_of_seen_words():
    train, held_out = synthetic_classes()
    assert len(train) == 36 and len(held_out) == 12 and not set(train) & set(held_out)
    train_words = {word for name in train for word in name.split()}
    assert {word for name in held_out for word in name.split()} <= train_words
    # held-out classes come in groups of four that share appearance and differ only in direction
    groups = {}
    for name in held_out:
        color, shape, _, motion = name.split()
        groups.setdefault((color, shape), []).append(motion)
    assert all(sorted(motions) == sorted(SYNTHETIC_MOTIONS) for motions in groups.values())
    assert set(SYNTHETIC_COLORS) == {name.split()[0] for name in train}
    assert set(SYNTHETIC_SHAPES) == {name.split()[1] for name in train}


def object_center(frame: np.ndarray) -> np.ndarray:
    """(x, y) of the bright object in a synthetic frame."""
    rows, columns = np.nonzero(frame.max(axis=-1) > 150)
    return np.array([columns.mean(), rows.mean()])


@pytest.mark.parametrize("motion", list(SYNTHETIC_MOTIONS))
def test_synthetic_clip_moves_in_its_direction(motion):
    frames = render_motion_clip("yellow", "square", motion, SyntheticMotionSpec(), np.random.default_rng(1))
    assert frames.shape == (16, 32, 32, 3) and frames.dtype == np.uint8
    displacement = object_center(frames[-1]) - object_center(frames[0])
    assert np.allclose(np.sign(np.round(displacement)), SYNTHETIC_MOTIONS[motion])
    assert np.abs(displacement).max() == pytest.approx(1.5 * 15, abs=1)


def test_opposite_directions_cover_the_same_positions():
    """Start points are symmetric: the object positions of 'left' and 'right' clips have the same distribution."""
    spec = SyntheticMotionSpec()
    rng = np.random.default_rng(0)
    positions = {}
    for motion in ("left", "right"):
        clips = [render_motion_clip("red", "square", motion, spec, rng) for _ in range(200)]
        positions[motion] = np.array([object_center(frame)[0] for clip in clips for frame in clip])
    assert abs(positions["left"].mean() - positions["right"].mean()) < 0.5
    assert abs(np.percentile(positions["left"], 10) - np.percentile(positions["right"], 10)) < 1.0


def test_synthetic_set_is_written_once_and_reused(tmp_path):
    directory = build_synthetic_motion_dataset(tmp_path, TINY_SPEC)
    train = load_video_dataset(str(directory / "train"))
    evaluation = load_video_dataset(str(directory / "eval"))
    assert len(train) == 36 and len(evaluation) == 12
    assert set(class_names_of(evaluation)) == set(synthetic_classes()[1])
    texts = json.loads((directory / "label_texts.json").read_text())["label_texts"]
    assert texts["red circle moving left"] == ["a red circle moving left."]
    stamp = (directory / "manifest.json").stat().st_mtime_ns
    assert build_synthetic_motion_dataset(tmp_path, TINY_SPEC) == directory
    assert (directory / "manifest.json").stat().st_mtime_ns == stamp
    assert not list(tmp_path.glob(".*partial*"))


def test_synthetic_spec_that_does_not_fit_is_rejected():
    spec = SyntheticMotionSpec(pixels_per_frame=3.0)
    with pytest.raises(ValueError, match="does not fit"):
        render_motion_clip("red", "circle", "left", spec, np.random.default_rng(0))
