"""
The command-line options of the video processor shared by `training/train.py` and `training/evaluate_zero_shot.py`:
frame sampling (`--frame-sampling`, `--sampling-rate`), training augmentation (`--train-crop`, `--flip-probability`,
`--crop-scale`) and multi-view scoring (`--view-aggregation`).

A flag left out keeps the processor's own setting (the one saved with the checkpoint, or the defaults of
`STDDVideoProcessor`); a flag given overrides it, and the processor saved after training records the result.
"""

import argparse

from modeling_stdd.video_processing_stdd import FRAME_SAMPLINGS, TRAIN_CROPS
from modeling_stdd.view_aggregation import DEFAULT_VIEW_AGGREGATION, VIEW_AGGREGATIONS


SAMPLING_OPTIONS = ("frame_sampling", "sampling_rate")
AUGMENTATION_OPTIONS = ("train_crop", "flip_probability", "crop_scale")


def add_sampling_arguments(parser: argparse.ArgumentParser):
    """`--frame-sampling` and `--sampling-rate`."""
    parser.add_argument(
        "--frame-sampling", dest="frame_sampling", choices=FRAME_SAMPLINGS,
        help="segments: one frame per temporal segment; dense: the authors' windows of frames --sampling-rate apart "
        "(default: the processor's setting)",
    )
    parser.add_argument(
        "--sampling-rate", dest="sampling_rate", type=int,
        help="dense sampling: frames between sampled frames at 30 fps (paper: 16; default: the processor's setting)",
    )


def add_augmentation_arguments(parser: argparse.ArgumentParser):
    """`--train-crop`, `--flip-probability` and `--crop-scale`."""
    parser.add_argument(
        "--train-crop", dest="train_crop", choices=TRAIN_CROPS,
        help="jitter: short side resized to a random size in [S, S*256/224], random S crop (paper); random-resized: "
        "a random box of --crop-scale area resized to S",
    )
    parser.add_argument(
        "--flip-probability", dest="flip_probability", type=float,
        help="probability of a horizontal flip per training video; 0 turns flips off (left/right motion classes)",
    )
    parser.add_argument(
        "--crop-scale", dest="crop_scale", type=float, nargs=2, metavar=("MIN", "MAX"),
        help="random-resized crop: range of the crop's area as a fraction of the frame's",
    )


def add_view_aggregation_argument(parser: argparse.ArgumentParser):
    """`--view-aggregation`; left out (None), it means `DEFAULT_VIEW_AGGREGATION`."""
    parser.add_argument(
        "--view-aggregation", dest="view_aggregation", choices=VIEW_AGGREGATIONS,
        help=f"how the views of --num-clips x --num-crops combine: logit-sum (paper) or softmax-mean "
        f"(default: {DEFAULT_VIEW_AGGREGATION})",
    )


def check_video_arguments(args: argparse.Namespace, parser: argparse.ArgumentParser):
    """Out-of-range values of the options above get a message naming the flag."""
    sampling_rate = getattr(args, "sampling_rate", None)
    if sampling_rate is not None and sampling_rate < 1:
        parser.error(f"--sampling-rate must be >= 1, got {sampling_rate}")
    flip_probability = getattr(args, "flip_probability", None)
    if flip_probability is not None and not 0 <= flip_probability <= 1:
        parser.error(f"--flip-probability must be in [0, 1], got {flip_probability}")
    crop_scale = getattr(args, "crop_scale", None)
    if crop_scale is not None and (len(crop_scale) != 2 or not 0 < crop_scale[0] <= crop_scale[1] <= 1):
        parser.error(f"--crop-scale must be MIN MAX with 0 < MIN <= MAX <= 1, got {crop_scale}")


def apply_video_options(video_processor, args: argparse.Namespace, names=SAMPLING_OPTIONS + AUGMENTATION_OPTIONS):
    """Set the options among `names` that `args` gives (not None) on `video_processor`, in place."""
    for name in names:
        value = getattr(args, name, None)
        if value is not None:
            setattr(video_processor, name, tuple(value) if name == "crop_scale" else value)


def video_settings(video_processor, names=SAMPLING_OPTIONS + AUGMENTATION_OPTIONS) -> dict:
    """The processor's values of `names`, for a run's record (tuples as lists, as JSON writes them)."""
    settings = {name: getattr(video_processor, name) for name in names}
    return {name: list(value) if isinstance(value, tuple) else value for name, value in settings.items()}


__all__ = [
    "AUGMENTATION_OPTIONS",
    "SAMPLING_OPTIONS",
    "add_augmentation_arguments",
    "add_sampling_arguments",
    "add_view_aggregation_argument",
    "apply_video_options",
    "check_video_arguments",
    "video_settings",
]
