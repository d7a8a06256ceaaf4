"""
The zero-shot evaluation protocols of STDD_METHOD.md, section 5, over videos a user has locally:

- UCF101: all 101 classes, the three official test splits (`testlist0{1,2,3}.txt` + `classInd.txt`).
- HMDB51: all 51 classes, the three official splits (`<class>_test_split{1,2,3}.txt`, id 2 marks a test video).
- Kinetics-600 novel classes: the classes of a novel-class list file (the authors' `k600-novel-test.csv` with its
  index-to-class JSON), three random splits of 160 classes drawn with the fixed seeds `KINETICS600_SPLIT_SEEDS`.

Each protocol yields `EvaluationSplit`s, each a video data set whose class names match the label texts shipped for
that data set (`LabelTexts.for_dataset`), so prompts are found by class name.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from datasets import ClassLabel, Dataset

from modeling_stdd.askg import class_key

from .data import class_names_of, load_video_list, read_index_to_class, video_features


KINETICS600_SPLIT_SEEDS = (0, 1, 2)
KINETICS600_CLASSES_PER_SPLIT = 160
PROTOCOLS = ("ucf101", "hmdb51", "kinetics600_novel")
# HMDB51 split files mark each video 1 (train), 2 (test) or 0 (unused).
HMDB51_TEST_ID = "2"


@dataclass
class EvaluationSplit:
    name: str
    dataset: Dataset

    @property
    def class_names(self) -> list[str]:
        return list(self.dataset.features["label"].names)


def match_class_names(folder_names: list[str], label_names: list[str] | None, source: str) -> list[str]:
    """
    The label name (from the label texts) of each dataset folder name, matched by `class_key`; folder names with
    underscores turned into spaces when there are no label names.
    """
    if label_names is None:
        return [name.replace("_", " ") for name in folder_names]
    by_key = {class_key(name): name for name in label_names}
    missing = [name for name in folder_names if class_key(name) not in by_key]
    if missing:
        raise ValueError(f"{source}: classes {missing[:10]} have no label texts; pass --label-texts with all classes.")
    return [by_key[class_key(name)] for name in folder_names]


def with_label_text_names(dataset: Dataset, label_names: list[str] | None) -> Dataset:
    """
    `dataset` with every class that matches a label-text name by `class_key` renamed to it ("ApplyEyeMakeup" ->
    "Apply Eye Makeup"), so that its prompts are found whatever the folder's spelling; other classes keep their names.
    """
    if label_names is None:
        return dataset
    by_key = {class_key(name): name for name in label_names}
    names = class_names_of(dataset)
    renamed = [by_key.get(class_key(name), name) for name in names]
    if renamed == names:
        return dataset
    clashes = sorted({name for name in renamed if renamed.count(name) > 1})
    if clashes:
        sources = [name for name, new in zip(names, renamed) if new in clashes]
        raise ValueError(f"Classes {sources} all match the label texts of {clashes}; rename the folders apart.")
    return dataset.cast_column("label", ClassLabel(names=renamed))


def _split_dataset(paths: list[str], labels: list[int], class_names: list[str]) -> Dataset:
    videos = [{"path": path, "bytes": None} for path in paths]
    return Dataset.from_dict({"video": videos, "label": labels}, features=video_features(class_names))


def _require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    return path


def ucf101_splits(video_root: str, split_dir: str, label_names: list[str] | None = None) -> list[EvaluationSplit]:
    """UCF101's three test splits from the official `ucfTrainTestlist` folder (`classInd.txt`, `testlist0N.txt`)."""
    split_dir, video_root = Path(split_dir), Path(video_root)
    class_index_file = _require_file(split_dir / "classInd.txt", "UCF101 classInd.txt")
    folders = []
    for line_number, line in enumerate(class_index_file.read_text().splitlines(), start=1):
        if line.strip():
            index, _, folder = line.strip().partition(" ")
            if not index.isdigit() or int(index) != len(folders) + 1 or not folder:
                raise ValueError(f"{class_index_file}, line {line_number}: expected `{len(folders) + 1} ClassName`.")
            folders.append(folder.strip())
    class_names = match_class_names(folders, label_names, "UCF101")
    label_of_folder = {folder: index for index, folder in enumerate(folders)}
    splits = []
    for split in (1, 2, 3):
        list_file = _require_file(split_dir / f"testlist0{split}.txt", f"UCF101 test split {split}")
        paths, labels = [], []
        for line in list_file.read_text().splitlines():
            relative_path = line.strip().split(" ")[0]
            if not relative_path:
                continue
            folder = relative_path.split("/")[0]
            if folder not in label_of_folder:
                raise ValueError(f"{list_file}: {relative_path} is in no class of classInd.txt.")
            paths.append(str(video_root / relative_path))
            labels.append(label_of_folder[folder])
        splits.append(EvaluationSplit(f"split_{split}", _split_dataset(paths, labels, class_names)))
    return splits


def hmdb51_splits(video_root: str, split_dir: str, label_names: list[str] | None = None) -> list[EvaluationSplit]:
    """HMDB51's three test splits from the official `testTrainMulti_7030_splits` folder; videos in `root/<class>/`."""
    split_dir, video_root = Path(split_dir), Path(video_root)
    splits = []
    for split in (1, 2, 3):
        files = sorted(split_dir.glob(f"*_test_split{split}.txt"))
        if not files:
            raise FileNotFoundError(f"HMDB51 split {split}: no `<class>_test_split{split}.txt` files in {split_dir}.")
        folders = [file.name[: -len(f"_test_split{split}.txt")] for file in files]
        class_names = match_class_names(folders, label_names, "HMDB51")
        paths, labels = [], []
        for label, (folder, file) in enumerate(zip(folders, files)):
            for line in file.read_text().splitlines():
                fields = line.split()
                if len(fields) == 2 and fields[1] == HMDB51_TEST_ID:
                    paths.append(str(video_root / folder / fields[0]))
                    labels.append(label)
        splits.append(EvaluationSplit(f"split_{split}", _split_dataset(paths, labels, class_names)))
    return splits


def kinetics600_novel_splits(
    video_root: str, list_file: str, index_to_class: str, label_names: list[str] | None = None
) -> list[EvaluationSplit]:
    """
    Three splits of `KINETICS600_CLASSES_PER_SPLIT` novel classes each, drawn without replacement from the classes
    of `index_to_class` with the seeds `KINETICS600_SPLIT_SEEDS`; labels are re-indexed 0..159 within a split.
    """
    full = load_video_list(list_file, video_root, index_to_class)
    all_names = read_index_to_class(index_to_class)
    if len(all_names) < KINETICS600_CLASSES_PER_SPLIT:
        raise ValueError(f"{index_to_class}: {len(all_names)} classes, fewer than {KINETICS600_CLASSES_PER_SPLIT}.")
    names = match_class_names(all_names, label_names, "Kinetics-600")
    labels = np.asarray(full["label"])
    paths = [video["path"] for video in full["video"]]
    splits = []
    for split, seed in enumerate(KINETICS600_SPLIT_SEEDS, start=1):
        chosen = np.sort(np.random.default_rng(seed).choice(len(names), KINETICS600_CLASSES_PER_SPLIT, replace=False))
        new_label = {int(old): new for new, old in enumerate(chosen)}
        rows = [row for row, label in enumerate(labels) if int(label) in new_label]
        split_dataset = _split_dataset(
            [paths[row] for row in rows], [new_label[int(labels[row])] for row in rows], [names[i] for i in chosen]
        )
        splits.append(EvaluationSplit(f"split_{split}", split_dataset))
    return splits


__all__ = [
    "EvaluationSplit",
    "KINETICS600_SPLIT_SEEDS",
    "PROTOCOLS",
    "hmdb51_splits",
    "kinetics600_novel_splits",
    "match_class_names",
    "ucf101_splits",
]
