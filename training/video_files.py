"""Checking, before any decoding, that the video files an evaluation split lists are where it looks for them."""

import logging
from pathlib import Path

from datasets import Dataset


logger = logging.getLogger(__name__)

# Paths shown in a message about missing files.
SHOWN_MISSING_PATHS = 3


class MissingVideosError(FileNotFoundError):
    """Every video an evaluation split lists is missing: the video root is most likely the wrong folder."""


def missing_video_rows(dataset: Dataset) -> list[int]:
    """Rows of `dataset` whose video is a path (no stored bytes) to no file."""
    return [
        row for row, video in enumerate(dataset["video"])
        if not video.get("bytes") and not Path(video["path"]).is_file()
    ]


def drop_missing_videos(dataset: Dataset, split_name: str, video_root: str | None, fail_on_missing: bool) -> Dataset:
    """
    `dataset` without the rows whose file does not exist, said in one warning line (count and first paths). Raises
    `MissingVideosError` naming the video root, the count and the first paths when every file is missing, or when
    any is and `fail_on_missing` is set.
    """
    rows = missing_video_rows(dataset)
    if not rows:
        return dataset
    paths = [dataset[row]["video"]["path"] for row in rows[:SHOWN_MISSING_PATHS]]
    listing = ", ".join(paths) + (", ..." if len(rows) > len(paths) else "")
    counted = f"{len(rows)} of the {len(dataset)} videos of {split_name} do not exist ({listing})"
    if len(rows) == len(dataset) or fail_on_missing:
        root = f"--video-root {video_root}" if video_root else "the data folder"
        raise MissingVideosError(
            f"{counted}. Check {root}: it must be the folder the split's paths are relative to (for UCF101 and "
            "HMDB51 the folder holding one sub-folder per class, e.g. UCF-101/ApplyEyeMakeup/...)."
        )
    logger.warning(f"{counted}; they are left out of the scores and counted as unreadable.")
    missing = set(rows)
    return dataset.select([row for row in range(len(dataset)) if row not in missing])
