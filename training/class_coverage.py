"""
Which classes a run actually has videos of: training needs at least two, and a class whose videos are all unreadable
is reported by name (in training it gets no positive example; in evaluation top-k is then over the other classes).
"""

from collections.abc import Sequence

import torch
from accelerate import Accelerator
from datasets import Dataset

from training.data import class_names_of


def check_training_classes(dataset: Dataset, flag: str = "--train-data"):
    """Refuse training data with videos of fewer than two classes: the cross-entropy is 0 and nothing is learned."""
    names = class_names_of(dataset)
    present = sorted(set(dataset["label"]))
    if len(present) < 2:
        found = ", ".join(repr(names[label]) for label in present) or "none"
        raise ValueError(
            f"{flag} has videos of {len(present)} class ({found}); training needs at least 2 (with one class the "
            "cross-entropy is 0 and nothing is learned)."
        )


def classes_without_readable_videos(
    class_names: Sequence[str], all_labels: Sequence[int], readable_labels: Sequence[int]
) -> list[str]:
    """Classes that have videos (`all_labels`) of which none could be read (none in `readable_labels`)."""
    lost = set(int(label) for label in all_labels) - set(int(label) for label in readable_labels)
    return [class_names[label] for label in sorted(lost)]


class TrainingClassCoverage:
    """
    Per-class counts of the videos training read and of its attempts at unreadable ones: counted per process during
    an epoch, summed over processes at its end (`end_epoch`), and saved with every checkpoint.
    """

    def __init__(self, class_names: Sequence[str]):
        self.class_names = list(class_names)
        self.read = [0] * len(self.class_names)
        self.unreadable = [0] * len(self.class_names)
        self.reported = []
        self.epoch_counts = torch.zeros(2, len(self.class_names), dtype=torch.long)

    def add(self, labels: torch.Tensor, skipped_labels: torch.Tensor):
        num_classes = len(self.class_names)
        self.epoch_counts[0] += torch.bincount(labels.cpu(), minlength=num_classes)
        self.epoch_counts[1] += torch.bincount(skipped_labels.cpu(), minlength=num_classes)

    def end_epoch(self, accelerator: Accelerator, run_name: str):
        """Add the epoch's counts of all processes to the totals and print each class that lost all its videos, once."""
        counts = accelerator.reduce(self.epoch_counts.to(accelerator.device), reduction="sum").cpu()
        self.epoch_counts.zero_()
        self.read = [total + count for total, count in zip(self.read, counts[0].tolist())]
        self.unreadable = [total + count for total, count in zip(self.unreadable, counts[1].tolist())]
        for name in self.lost_classes():
            if name not in self.reported:
                accelerator.print(
                    f"[{run_name}] class {name!r} lost all its videos: none of them could be read, so it is trained "
                    "on no video (pass --fail-on-unreadable-video to stop on unreadable videos)"
                )
                self.reported.append(name)

    def lost_classes(self) -> list[str]:
        """Classes of which unreadable videos were met and no video was read."""
        return [name for name, read, unreadable in zip(self.class_names, self.read, self.unreadable)
                if unreadable and not read]

    def state_dict(self) -> dict:
        return {"read": self.read, "unreadable": self.unreadable, "reported": self.reported}

    def load_state_dict(self, state: dict):
        self.read, self.unreadable = list(state["read"]), list(state["unreadable"])
        self.reported = list(state["reported"])
