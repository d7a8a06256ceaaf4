"""
Named presets of training and evaluation settings (`--recipe`), and the STCA settings of the model being trained.

A recipe is a mapping from argparse destinations to values. `apply_recipe` makes them the parser's defaults, so every
flag given (or every key of a `--config` YAML file) still wins over the recipe; `recipe_settings` reads back what a
run actually used, for its output and the model card.

- `paper`: the authors' released recipe (STDD_METHOD.md, section 6) for ViT-B/16 on Kinetics-400.
- `embedded`: the settings of `train.py`'s embedded synthetic job (a tiny model on 32 px clips).
"""

import argparse

from modeling_stdd import STDDConfig
from modeling_stdd.prompt_sets_stdd import DEFAULT_HYPOTHESIS_TEMPLATE
from training.data import SYNTHETIC_PROMPT


# STCA settings of the model being trained, as `train.py` flags (dest names = STDDVisionConfig fields). None keeps
# the base model's value.
STCA_SETTINGS = ("mask_rate", "mask_stride", "channel_fold", "temporal_scales", "stca_layers", "temporal_shuffle")

# The authors' STCA settings in training: every layer, half of each 2x2 window masked, 2 * 768 / 32 channels moved,
# temporal scales 1 and 2, per-video mask schedules shuffled in time.
PAPER_STCA = dict(
    mask_rate=0.5, mask_stride=[1, 2, 2], channel_fold=32, temporal_scales=[1, 2], stca_layers="all",
    temporal_shuffle=True,
)
# The authors' frames: 8, 16 apart at 30 fps, evenly spaced in a window (random in training, 3 windows at test).
PAPER_FRAMES = dict(frame_sampling="dense", sampling_rate=16)
# Their training crop: short side jittered in [224, 256], a random square crop, flips with probability 0.5.
PAPER_TRAINING_CROP = dict(train_crop="jitter", flip_probability=0.5)
# Their test views: 3 temporal clips x 1 centre crop, the class logits of the views summed.
PAPER_TEST_VIEWS = dict(num_clips=3, num_crops=1, view_aggregation="logit-sum")
# The embedded job's STCA settings. Window masking is off: on its 4x4 patch grid the kept patches of consecutive frames
# sit a whole patch (8 px) apart, more than the object moves per frame, and the tiny model then does not learn the
# direction of motion within the budget. channel_fold 16 moves c = 4 of 64 channels to each temporal side.
EMBEDDED_STCA = dict(mask_rate=0.0, channel_fold=16)

TRAINING_RECIPES = {
    "paper": dict(
        num_frames=8,
        image_size=None,  # the model's (224 for ViT-B/16)
        batch_size=32,
        learning_rate=3.33e-6,
        learning_rate_batch_size=32,
        min_lr_ratio=0.01,
        epochs=22,
        warmup_epochs=2,
        weight_decay=0.01,
        max_grad_norm=1.0,
        train_logit_scale=True,
        distillation_weight=2.0,
        average_epochs="from:2",  # epochs 2..22: 21 checkpoints
        mixed_precision="auto",
        num_workers=4,
        template=DEFAULT_HYPOTHESIS_TEMPLATE,
        frame_mean_baseline=False,
        **PAPER_STCA,
        **PAPER_FRAMES,
        **PAPER_TRAINING_CROP,
    ),
    "embedded": dict(
        num_frames=8,
        image_size=32,
        batch_size=16,
        learning_rate=3e-3,
        learning_rate_batch_size=16,
        min_lr_ratio=0.0,
        epochs=12,
        warmup_epochs=1,
        weight_decay=0.01,
        max_grad_norm=1.0,
        train_logit_scale=False,
        distillation_weight=0.0,
        average_epochs="last:3",
        num_workers=1,
        template=SYNTHETIC_PROMPT,
        frame_mean_baseline=True,
        **EMBEDDED_STCA,
        frame_sampling="segments",
        train_crop="random-resized",
        # No flips (they turn "moving left" into "moving right") and mild crops that keep the shape in view.
        flip_probability=0.0,
        crop_scale=(0.8, 1.0),
    ),
}
EVALUATION_RECIPES = {
    "paper": dict(mixed_precision="auto", **PAPER_FRAMES, **PAPER_TEST_VIEWS),
}


def add_recipe_argument(parser: argparse.ArgumentParser, recipes: dict, default_text: str):
    parser.add_argument(
        "--recipe", choices=sorted(recipes),
        help=f"a preset of settings (flags still override each of them); {default_text}",
    )


def apply_recipe(parser: argparse.ArgumentParser, recipe: dict) -> dict:
    """
    Make the recipe's settings the parser's defaults (so flags given still win); returns them. A setting the
    parser has no option for is an error.
    """
    destinations = {action.dest for action in parser._actions}
    missing = sorted(set(recipe) - destinations)
    if missing:
        raise ValueError(f"the recipe sets {missing}, which {parser.prog} has no option for")
    parser.set_defaults(**recipe)
    return recipe


def recipe_settings(args: argparse.Namespace, recipe: dict) -> dict:
    """What the run used for each of the recipe's settings (the recipe's value or the flag that overrode it)."""
    return {name: _plain(getattr(args, name)) for name in recipe}


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


def parse_stca_layers(values) -> list[int] | None:
    """`--stca-layers`: `all` (None: every layer), `none` ([]: plain CLIP) or layer indices."""
    values = values if isinstance(values, (list, tuple)) else [values]
    words = [str(value).strip().lower() for value in values]
    if words == ["all"]:
        return None
    if words == ["none"]:
        return []
    if not all(word.isdigit() for word in words):
        raise ValueError(f"expected 'all', 'none' or layer indices such as '0 1 2', got {' '.join(map(str, values))}")
    return [int(word) for word in words]


def add_stca_arguments(parser: argparse.ArgumentParser):
    """The STCA settings of the model being trained (STDD_METHOD.md, section 1); default: the base model's."""
    add = parser.add_argument
    add("--mask-rate", type=float, help="share of each frame's patches hidden from the cross attention, in [0, 1)")
    add("--mask-stride", type=int, nargs=3, metavar=("S0", "S1", "S2"), help="masking window (S0 must be 1)")
    add("--channel-fold", type=int, help="hidden_size // channel_fold channels move to each temporal side")
    add("--temporal-scales", type=int, nargs="+", help="temporal reaches of channel mixing, e.g. 1 2")
    add("--stca-layers", nargs="+", help="layers that run STCA: all, none (plain CLIP) or indices")
    add("--temporal-shuffle", dest="temporal_shuffle", action="store_true", default=None,
        help="permute each training video's masks in time")
    add("--no-temporal-shuffle", dest="temporal_shuffle", action="store_false")


def stca_overrides(args: argparse.Namespace) -> dict:
    """The STCA settings given for the model being trained (`stca_layers` resolved), for `from_pretrained`."""
    overrides = {name: getattr(args, name) for name in STCA_SETTINGS if getattr(args, name) is not None}
    if "stca_layers" in overrides:
        overrides["stca_layers"] = parse_stca_layers(overrides["stca_layers"])
    if "mask_stride" in overrides:
        overrides["mask_stride"] = list(overrides["mask_stride"])
    return overrides


def check_model_overrides(base_model: str, overrides: dict) -> STDDConfig:
    """
    The base model's config with `overrides` applied, checked by the config itself; a setting it rejects becomes a
    `ValueError` that names the flag and the base model.
    """
    try:
        return STDDConfig.from_pretrained(base_model, **overrides)
    except ValueError as error:
        flags = ", ".join(f"--{name.replace('_', '-')} {value}" for name, value in overrides.items())
        raise ValueError(f"{flags} do not fit the base model {base_model}: {error}") from error


__all__ = [
    "EMBEDDED_STCA",
    "EVALUATION_RECIPES",
    "STCA_SETTINGS",
    "TRAINING_RECIPES",
    "add_recipe_argument",
    "add_stca_arguments",
    "apply_recipe",
    "check_model_overrides",
    "parse_stca_layers",
    "recipe_settings",
    "stca_overrides",
]
