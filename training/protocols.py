"""
The zero-shot evaluation protocols of STDD_METHOD.md, section 5, over videos a user has locally:

- UCF101: all 101 classes, the three official test splits (`testlist0{1,2,3}.txt` + `classInd.txt`).
- HMDB51: all 51 classes, the three official splits (`<class>_test_split{1,2,3}.txt`, id 2 marks a test video).
- Kinetics-600 novel classes: the authors' three published splits of 160 of the 220 classes that are not in
  Kinetics-400, shipped in `protocol_data/kinetics600/` (see its README); videos of any other class, Kinetics-400
  classes under their Kinetics-600 names included, are never scored.

Each protocol yields `EvaluationSplit`s, each a video data set whose class names match the label texts shipped for
that data set (`LabelTexts.for_dataset`), so prompts are found by class name.
"""

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from datasets import ClassLabel, Dataset

from modeling_stdd.askg import LabelTexts, class_key

from .data import class_names_of, load_video_folder, load_video_list, video_features


logger = logging.getLogger(__name__)

KINETICS600_DATA = Path(__file__).resolve().parent / "protocol_data" / "kinetics600"
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


def kinetics600_novel_classes() -> dict[int, str]:
    """The 220 novel Kinetics-600 classes by their index in the authors' 620-class list (400..619)."""
    mapping = json.loads((KINETICS600_DATA / "novel_classes.json").read_text(encoding="utf-8"))
    return {int(index): name for index, name in mapping.items()}


def kinetics600_published_splits() -> list[list[str]]:
    """The class names of the authors' three published splits, 160 novel classes each, in their label order."""
    novel = kinetics600_novel_classes()
    splits = json.loads((KINETICS600_DATA / "splits.json").read_text(encoding="utf-8"))
    return [[novel[index] for index in split] for split in splits]


def kinetics400_class_keys() -> set[str]:
    """`class_key`s of the Kinetics-400 classes under their Kinetics-400 names and their Kinetics-600 renames."""
    renamed = json.loads((KINETICS600_DATA / "kinetics400_renamed.json").read_text(encoding="utf-8"))
    names = list(LabelTexts.for_dataset("kinetics400").labels) + list(renamed.values())
    return {class_key(name) for name in names}


def kinetics600_novel_splits(
    video_root: str, list_file: str | None = None, index_to_class: str | None = None,
    label_names: list[str] | None = None,
) -> list[EvaluationSplit]:
    """
    The authors' three published Kinetics-600 splits (`kinetics600_published_splits`) over the videos you have: a
    list file (`relative/path,label_index` under `video_root`, with its `index_to_class` JSON, e.g. the Kinetics-600
    validation list) or, without one, the folder `video_root` of class sub-folders. Class names are matched by
    `class_key`; each split scores exactly its 160 classes (labels 0..159 in the published order), and videos of
    other classes are left out, with a warning naming the Kinetics-400 classes among them.
    """
    if list_file is None:
        full = load_video_folder(video_root)
    else:
        full = load_video_list(list_file, video_root, index_to_class)
    source = list_file or video_root
    names = class_names_of(full)
    novel_keys = {class_key(name) for name in kinetics600_novel_classes().values()}
    kinetics400_keys = kinetics400_class_keys()
    seen = sorted(name for name in names if class_key(name) in kinetics400_keys)
    if seen:
        logger.warning(
            f"{source}: {len(seen)} Kinetics-400 classes (seen in Kinetics-400 training) are left out of the "
            f"Kinetics-600 novel-class protocol: {seen}"
        )
    unknown = sorted(name for name in names if class_key(name) not in novel_keys and name not in seen)
    if unknown:
        logger.warning(f"{source}: {len(unknown)} classes are not Kinetics-600 classes and are left out: {unknown}")
    labels = full["label"]
    paths = [video["path"] for video in full["video"]]
    splits = []
    for number, split_names in enumerate(kinetics600_published_splits(), start=1):
        split_label = {class_key(name): label for label, name in enumerate(split_names)}
        new_label = {
            old: split_label[class_key(name)] for old, name in enumerate(names) if class_key(name) in split_label
        }
        rows = [row for row, label in enumerate(labels) if label in new_label]
        if not rows:
            raise ValueError(f"{source}: no video of the 160 classes of Kinetics-600 split {number}.")
        missing = sorted(set(range(len(split_names))) - {new_label[labels[row]] for row in rows})
        if missing:
            logger.warning(
                f"Kinetics-600 split {number}: {len(missing)} of its 160 classes have no videos in {source} (they "
                f"stay candidates): {[split_names[label] for label in missing][:10]}"
            )
        class_names = match_class_names(split_names, label_names, "Kinetics-600")
        split_dataset = _split_dataset(
            [paths[row] for row in rows], [new_label[labels[row]] for row in rows], class_names
        )
        splits.append(EvaluationSplit(f"split_{number}", split_dataset))
    return splits


__all__ = [
    "EvaluationSplit",
    "KINETICS600_CLASSES_PER_SPLIT",
    "PROTOCOLS",
    "hmdb51_splits",
    "kinetics400_class_keys",
    "kinetics600_novel_classes",
    "kinetics600_novel_splits",
    "kinetics600_published_splits",
    "match_class_names",
    "ucf101_splits",
]


@dataclass
class ClassOverlap:
    """Which evaluation classes a model also saw in training, matched by `class_key` (spelling-independent)."""

    num_eval_classes: int
    seen: list[str]

    @property
    def zero_shot(self) -> bool:
        """True when no evaluation class was a training class: only then is the result zero-shot."""
        return not self.seen

    def describe(self) -> str:
        """"12 unseen classes" when disjoint, else "3 of 12 evaluation classes seen in training"."""
        if self.zero_shot:
            return f"{self.num_eval_classes} unseen classes"
        return f"{len(self.seen)} of {self.num_eval_classes} evaluation classes seen in training"

    def to_dict(self) -> dict:
        return {"num_eval_classes": self.num_eval_classes, "num_seen_in_training": len(self.seen),
                "seen_in_training": self.seen, "zero_shot": self.zero_shot, "description": self.describe()}


def class_overlap(train_class_names: list[str], eval_class_names: list[str]) -> ClassOverlap:
    """The evaluation classes whose `class_key` is that of a training class ("ApplyEyeMakeup" = "apply eye makeup")."""
    train_keys = {class_key(name) for name in train_class_names}
    return ClassOverlap(len(eval_class_names), [name for name in eval_class_names if class_key(name) in train_keys])
