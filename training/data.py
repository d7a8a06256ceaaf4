"""
Video classification data for training and zero-shot evaluation, held in Hugging Face Datasets.

A data set is a `datasets.Dataset` with a `video` column (`Video(decode=False)`: a path or bytes per row) and a
`label` column (`ClassLabel`, whose names are the class names). Three sources are read:

- a folder with one sub-folder per class (every video below a class folder, nested ones too, is of that class);
- a list file of `relative/path,label_index` lines, a video root and an index-to-class JSON (the authors' format);
- a Hub dataset id with a video column.

Videos are decoded lazily, when a batch is drawn, with decord through the project's `STDDVideoProcessor`
(training or evaluation sampling). The synthetic motion set of the embedded default job is built here too.
"""

import json
import logging
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from datasets import ClassLabel, Dataset, Features, Video, load_dataset

from modeling_stdd.askg import LabelTexts
from modeling_stdd.file_utils import move_into_place
from modeling_stdd.video_io import write_video


logger = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv")
# Errors the video processor raises for a file it cannot read (missing, empty, truncated, not a video).
UNREADABLE_VIDEO_ERRORS = (ValueError, FileNotFoundError, OSError, RuntimeError)
# A sample whose video is unreadable is replaced by the next readable one, looking at most this many files ahead.
MAX_REPLACEMENT_TRIES = 64


# ----------------------------------------------------------------------------------------------------------------------
# Sources
# ----------------------------------------------------------------------------------------------------------------------


def video_features(class_names: Sequence[str]) -> Features:
    return Features({"video": Video(decode=False), "label": ClassLabel(names=list(class_names))})


def load_video_folder(directory: str | os.PathLike) -> Dataset:
    """
    A folder with one sub-folder per class: the sub-folder name is the class name, and every video file below it
    (`VIDEO_SUFFIXES`, in nested folders too) belongs to that class.
    """
    directory = Path(directory)
    class_dirs = sorted(path for path in directory.iterdir() if path.is_dir()) if directory.is_dir() else []
    if not class_dirs:
        raise ValueError(f"{directory}: expected a folder with one sub-folder of videos per class, found none.")
    videos = {path.name: sorted(str(file) for file in path.rglob("*") if _is_video(file)) for path in class_dirs}
    empty = [name for name, files in videos.items() if not files]
    if empty:
        raise ValueError(f"{directory}: class folders without videos ({', '.join(VIDEO_SUFFIXES)}): {empty[:10]}")
    rows = [(file, label) for label, files in enumerate(videos.values()) for file in files]
    return Dataset.from_dict(
        {"video": [{"path": file, "bytes": None} for file, _ in rows], "label": [label for _, label in rows]},
        features=video_features(list(videos)),
    )


def _is_video(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES


def read_index_to_class(path: str | os.PathLike) -> list[str]:
    """Class names in index order from an index-to-class JSON object `{"0": "name", "1": ...}` (indices 0..K-1)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Index-to-class file not found: {path}")
    try:
        mapping = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON: {error}") from error
    if not isinstance(mapping, dict) or not mapping:
        raise ValueError(f'{path}: expected a non-empty JSON object {{"0": "class name", ...}}.')
    try:
        by_index = {int(key): name for key, name in mapping.items()}
    except ValueError as error:
        raise ValueError(f"{path}: every key must be a class index (an integer), got {list(mapping)[:5]}.") from error
    if sorted(by_index) != list(range(len(by_index))):
        raise ValueError(f"{path}: class indices must be 0..{len(by_index) - 1} without gaps.")
    names = [by_index[index] for index in range(len(by_index))]
    if not all(isinstance(name, str) and name.strip() for name in names):
        raise ValueError(f"{path}: every class name must be a non-empty string.")
    return names


def load_video_list(
    list_file: str | os.PathLike, video_root: str | os.PathLike | None, index_to_class: str | os.PathLike | None
) -> Dataset:
    """
    A list file of `relative/path,label_index` lines (blank lines ignored), the folder the paths are relative to,
    and the index-to-class JSON naming the classes. Paths are not opened here; unreadable videos are handled when
    they are decoded.
    """
    list_file = Path(list_file)
    if video_root is None:
        raise ValueError(f"{list_file} is a list file: give --video-root, the folder its paths are relative to.")
    if index_to_class is None:
        raise ValueError(f"{list_file} is a list file: give --index-to-class, the JSON naming its class indices.")
    video_root = Path(video_root)
    if not video_root.is_dir():
        raise ValueError(f"--video-root {video_root} is not a folder.")
    class_names = read_index_to_class(index_to_class)
    paths, labels = [], []
    for line_number, line in enumerate(list_file.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        relative_path, label = _parse_list_line(line, list_file, line_number, len(class_names))
        paths.append({"path": str(video_root / relative_path), "bytes": None})
        labels.append(label)
    if not paths:
        raise ValueError(f"{list_file}: no `relative/path,label_index` lines.")
    return Dataset.from_dict({"video": paths, "label": labels}, features=video_features(class_names))


def _parse_list_line(line: str, list_file: Path, line_number: int, num_classes: int) -> tuple[str, int]:
    relative_path, separator, label = line.strip().rpartition(",")
    where = f"{list_file}, line {line_number}"
    if not separator or not relative_path.strip() or not re.fullmatch(r"\s*\d+\s*", label):
        raise ValueError(f"{where}: expected `relative/path,label_index`, got {line.strip()!r}.")
    if int(label) >= num_classes:
        raise ValueError(f"{where}: label index {int(label)} is not in the index-to-class file (0..{num_classes - 1}).")
    return relative_path.strip(), int(label)


def load_hub_video_dataset(
    dataset_id: str, split: str, video_column: str = "video", label_column: str = "label", cache_dir: str | None = None
) -> Dataset:
    """A Hub (or local `load_dataset`-readable) dataset with a video column and a class label column."""
    dataset = load_dataset(dataset_id, split=split, cache_dir=cache_dir)
    for column, flag in ((video_column, "--video-column"), (label_column, "--label-column")):
        if column not in dataset.column_names:
            raise ValueError(
                f"{dataset_id} ({split}) has no column {column!r} (pass {flag}); its columns: {dataset.column_names}."
            )
    if not isinstance(dataset.features[label_column], ClassLabel):
        dataset = dataset.class_encode_column(label_column)
    dataset = dataset.select_columns([video_column, label_column])
    renames = {column: name for column, name in ((video_column, "video"), (label_column, "label")) if column != name}
    dataset = dataset.rename_columns(renames)
    return dataset.cast_column("video", Video(decode=False))


def load_video_dataset(
    source: str,
    video_root: str | None = None,
    index_to_class: str | None = None,
    split: str = "train",
    video_column: str = "video",
    label_column: str = "label",
    cache_dir: str | None = None,
) -> Dataset:
    """Dispatch on `source`: a folder of class folders, a list file (with root and index JSON), or a Hub dataset id."""
    path = Path(source)
    if path.is_dir():
        return load_video_folder(path)
    if path.is_file():
        return load_video_list(path, video_root, index_to_class)
    if re.fullmatch(r"[\w.-]+(/[\w.-]+)?", source) and not path.suffix:
        return load_hub_video_dataset(source, split, video_column, label_column, cache_dir=cache_dir)
    raise ValueError(
        f"Data source {source!r} is neither a folder of class sub-folders, a list file, nor a Hub dataset id."
    )


def class_names_of(dataset: Dataset) -> list[str]:
    return list(dataset.features["label"].names)


# ----------------------------------------------------------------------------------------------------------------------
# Lazy decoding
# ----------------------------------------------------------------------------------------------------------------------


class VideoClipDataset(torch.utils.data.Dataset):
    """
    Decodes the videos of a video data set on access with `video_processor` (training or evaluation sampling).

    Item: `{"pixel_values": (T, 3, S, S) in training, (V, T, 3, S, S) in evaluation (V views, also for one),
    "labels": int, "num_skipped": int, "skipped_labels": list[int]}`. A video that cannot be read is logged; with `skip_unreadable=False` the error is raised instead.
    - Training replaces it by the next readable one (`num_skipped` counts the files passed over, `skipped_labels`
      holds their classes), so an epoch never stops on one bad file.
    - Evaluation leaves it out: its item has `pixel_values` None and `num_skipped` 1, so that no video is scored in its
      place and none twice.
    """

    def __init__(self, dataset: Dataset, video_processor, training: bool, skip_unreadable: bool = True, **views):
        self.dataset = dataset
        self.video_processor = video_processor
        self.training = training
        self.skip_unreadable = skip_unreadable
        self.views = views

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        tries = min(MAX_REPLACEMENT_TRIES, len(self)) if self.training else 1
        skipped_labels = []
        for num_skipped in range(tries):
            row = self.dataset[(index + num_skipped) % len(self)]
            try:
                pixel_values = self.decode(row["video"])
            except UNREADABLE_VIDEO_ERRORS as error:
                if not self.skip_unreadable:
                    raise
                logger.warning(f"Skipping an unreadable video: {error}")
                skipped_labels.append(row["label"])
                continue
            return {"pixel_values": pixel_values, "labels": row["label"], "num_skipped": num_skipped,
                    "skipped_labels": skipped_labels}
        if not self.training:
            return {"pixel_values": None, "labels": row["label"], "num_skipped": 1, "skipped_labels": skipped_labels}
        raise RuntimeError(
            f"No readable video among {MAX_REPLACEMENT_TRIES} consecutive files from row {index}; check the data."
        )

    def decode(self, video: dict) -> torch.Tensor:
        """One row's video (`{"path", "bytes"}`) to `(T, 3, S, S)` in training, `(V, T, 3, S, S)` views in evaluation."""
        source = video["bytes"] if video.get("bytes") else video["path"]
        outputs = self.video_processor(
            source, training=self.training, keep_view_axis=not self.training, return_tensors="pt", **self.views
        )
        return outputs["pixel_values"][0]


def collate_clips(items: list[dict]) -> dict:
    """
    Stack items of `VideoClipDataset`. `labels` `(B,)` and `readable` `(B,)` cover every item, `pixel_values` the
    readable ones only (None when there are none), `num_skipped` sums the unreadable files behind the batch and
    `skipped_labels` lists their classes.
    """
    readable = [item["pixel_values"] is not None for item in items]
    return {
        "pixel_values": torch.stack([item["pixel_values"] for item in items if item["pixel_values"] is not None])
        if any(readable) else None,
        "labels": torch.tensor([item["labels"] for item in items]),
        "readable": torch.tensor(readable),
        "num_skipped": torch.tensor(sum(item["num_skipped"] for item in items)),
        "skipped_labels": torch.tensor([label for item in items for label in item["skipped_labels"]], dtype=torch.long),
    }


# ----------------------------------------------------------------------------------------------------------------------
# Synthetic motion data set (the embedded default job)
# ----------------------------------------------------------------------------------------------------------------------


SYNTHETIC_COLORS = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (50, 80, 230), "yellow": (230, 210, 40)}
SYNTHETIC_SHAPES = ("square", "circle", "triangle")
# Direction of motion of each motion word, (dx, dy) in image axes.
SYNTHETIC_MOTIONS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
# Appearances whose four motions are held out of training: each colour and shape still occurs in training.
SYNTHETIC_HELD_OUT = (("red", "circle"), ("green", "triangle"), ("blue", "square"))
SYNTHETIC_PROMPT = "a {}."


@dataclass(frozen=True)
class SyntheticMotionSpec:
    """How the synthetic motion set is drawn; the cache is rebuilt when any field changes."""

    train_videos_per_class: int = 24
    eval_videos_per_class: int = 16
    num_frames: int = 16
    frame_size: int = 32
    object_size: int = 8
    pixels_per_frame: float = 1.5
    fps: int = 10
    seed: int = 0
    version: int = 1


def synthetic_class_name(color: str, shape: str, motion: str) -> str:
    return f"{color} {shape} moving {motion}"


def synthetic_classes() -> tuple[list[str], list[str]]:
    """(training classes, held-out classes): colour x shape x motion, held out by appearance, 36 and 12."""
    train, held_out = [], []
    for color in SYNTHETIC_COLORS:
        for shape in SYNTHETIC_SHAPES:
            names = [synthetic_class_name(color, shape, motion) for motion in SYNTHETIC_MOTIONS]
            (held_out if (color, shape) in SYNTHETIC_HELD_OUT else train).extend(names)
    return train, held_out


def shape_mask(shape: str, size: int) -> np.ndarray:
    """(size, size) bool mask of a filled square, circle or upward triangle."""
    rows, columns = np.mgrid[0:size, 0:size] + 0.5
    center = size / 2
    if shape == "square":
        return np.ones((size, size), dtype=bool)
    if shape == "circle":
        return (rows - center) ** 2 + (columns - center) ** 2 <= center**2
    if shape == "triangle":
        return rows >= 2 * np.abs(columns - center)
    raise ValueError(f"Unknown shape {shape!r}; expected one of {SYNTHETIC_SHAPES}.")


def render_motion_clip(color: str, shape: str, motion: str, spec: SyntheticMotionSpec, rng: np.random.Generator):
    """
    (num_frames, S, S, 3) uint8 frames of one shape moving in a straight line on a noisy dark background.

    The start point along the motion axis is uniform over the positions that keep the whole path in the frame,
    so the frames of a clip moving one way and of one moving the other way are drawn from the same distribution:
    only their order tells the direction.
    """
    spec_size, object_size = spec.frame_size, spec.object_size
    travel = spec.pixels_per_frame * (spec.num_frames - 1)
    free = spec_size - object_size
    if travel > free:
        raise ValueError(
            f"A path of {travel:.0f} px does not fit a {spec_size} px frame with a {object_size} px object."
        )
    dx, dy = SYNTHETIC_MOTIONS[motion]
    position = rng.uniform(0, free, size=2)  # (x, y) of the top-left corner at frame 0
    along = rng.uniform(0, free - travel)
    for axis, step in enumerate((dx, dy)):
        if step:
            position[axis] = along if step > 0 else along + travel
    frames = rng.normal(rng.uniform(10, 60), 8, size=(spec.num_frames, spec_size, spec_size, 3))
    mask = shape_mask(shape, object_size)
    fill = np.array(SYNTHETIC_COLORS[color]) * rng.uniform(0.8, 1.0)
    for index, frame in enumerate(frames):
        left = int(round(position[0] + dx * spec.pixels_per_frame * index))
        top = int(round(position[1] + dy * spec.pixels_per_frame * index))
        frame[top : top + object_size, left : left + object_size][mask] = fill
    return np.clip(frames, 0, 255).astype(np.uint8)


def build_synthetic_motion_dataset(root: str | os.PathLike, spec: SyntheticMotionSpec = SyntheticMotionSpec()) -> Path:
    """
    Write the synthetic motion set under `root` once and return its folder, which holds `train/` (36 classes) and
    `eval/` (the 12 held-out classes) with one sub-folder of mp4 files per class, and `label_texts.json`.

    Class names compose appearance and motion ("red square moving left"). The held-out classes are the four
    motions of three appearances never seen in training, so they differ from each other only in colour and shape
    across groups and only in the direction of motion within a group. The folder is built next to its final name
    and renamed into place; a finished folder with the same `spec` is reused.
    """
    directory = Path(root) / f"synthetic-motion-v{spec.version}-seed{spec.seed}"
    manifest = directory / "manifest.json"
    expected = json.dumps(spec.__dict__, sort_keys=True)
    if manifest.is_file() and manifest.read_text() == expected:
        return directory
    partial = directory.with_name(f".{directory.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    rng = np.random.default_rng(spec.seed)
    train_classes, held_out_classes = synthetic_classes()
    for split, classes, count in (
        ("train", train_classes, spec.train_videos_per_class),
        ("eval", held_out_classes, spec.eval_videos_per_class),
    ):
        for name in classes:
            color, shape, _, motion = name.split()
            (partial / split / name).mkdir(parents=True)
            for index in range(count):
                frames = render_motion_clip(color, shape, motion, spec, rng)
                write_video(partial / split / name / f"{index:03d}.mp4", frames, fps=spec.fps)
    texts = {name: [SYNTHETIC_PROMPT.format(name)] for name in train_classes + held_out_classes}
    LabelTexts(texts, source="synthetic motion set").save(partial / "label_texts.json")
    (partial / "manifest.json").write_text(expected)
    move_into_place(partial, directory)
    return directory


__all__ = [
    "SyntheticMotionSpec",
    "VideoClipDataset",
    "build_synthetic_motion_dataset",
    "class_names_of",
    "collate_clips",
    "load_video_dataset",
    "load_video_folder",
    "load_video_list",
    "read_index_to_class",
    "render_motion_clip",
    "synthetic_classes",
]
