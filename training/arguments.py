"""
The command line of `training/train.py`: its options (flags, or keys of a `--config` YAML file, over the `--recipe`'s
settings), and the checks that give every bad argument a message naming its flag before any work starts.
"""

import argparse
import os
from pathlib import Path

import yaml

from modeling_stdd.askg.prompts import NUM_TEMPLATES_HELP, TEMPLATES_HELP, templates_from_options
from modeling_stdd.hypothesis_template import check_hypothesis_template
from modeling_stdd.prompt_sets_stdd import LabelTextsNotFoundError, locate_label_texts
from training.optim import default_mixed_precision
from training.recipe import (
    TRAINING_RECIPES,
    add_recipe_argument,
    add_stca_arguments,
    apply_recipe,
    parse_stca_layers,
)
from training.video_options import add_augmentation_arguments, add_sampling_arguments, check_video_arguments


# The help of `training/train.py` (`--help`): what the job does and writes.
DESCRIPTION = """
Train STDD (Yu et al., AAAI 2025) and evaluate it zero-shot on classes it never saw:

    accelerate launch training/train.py

With no data arguments this runs the embedded job: it builds (once, cached) a synthetic motion data set of real
mp4 files whose class names compose appearance and motion, trains a tiny STDD from a tiny random CLIP, trains the
frame-mean baseline (plain CLIP, `stca_layers=[]`) with the same budget, evaluates both zero-shot on held-out
classes and writes `eval_results.json` and the trained model folder to `--output-dir`.

With your data (`--train-data`, `--eval-data`, `--base-model`), it is the paper's recipe (`--recipe paper`, see
training/recipe.py; every flag overrides it): frozen text tower and prompt embeddings from the label texts,
cross-entropy on the class scores plus distillation towards the frozen starting image tower, AdamW with warm-up and
cosine decay, gradient clipping, mixed precision and gradient accumulation through accelerate, a checkpoint per epoch
(resumable) and uniform weight averaging over chosen epochs. Every option can also come from a YAML file
(`--config run.yaml`, keys named like the flags).

The output folder (`--output-dir`, default outputs/stdd) receives checkpoints/, model/, log.jsonl,
eval_results.json, run_settings.json and training_curves.png (the baseline's run in frame_mean_baseline/ inside it);
the job ends with a results table and these paths.

A rerun into the same --output-dir is refused while it holds an earlier run: pass --resume-from-checkpoint latest to
continue that run (its settings must match; the differing ones are named), or --overwrite-output-dir to delete it
(its checkpoints, model/, eval_results.json, log.jsonl and run_settings.json) and start again. A folder is locked
while a run uses it. A non-finite loss or gradient stops the run (--skip-nonfinite-steps N skips up to N such steps).
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--config", help="YAML file of options (keys named like the flags); flags given here override it")
    add_recipe_argument(parser, TRAINING_RECIPES, "default: embedded without --train-data, paper with it")
    add("--base-model", help="Hub id or folder of a CLIP or STDD checkpoint (embedded job: a tiny random CLIP)")
    add("--train-data", help="folder of class sub-folders, list file (relative/path,label_index) or Hub dataset id")
    add("--eval-data", help="zero-shot evaluation data, same forms; its classes may be unseen in training")
    add("--video-root", help="folder the paths of a --train-data list file are relative to")
    add("--index-to-class", help='JSON {"0": "class name", ...} of a --train-data list file')
    add("--eval-video-root", help="as --video-root, for --eval-data (default: --video-root)")
    add("--eval-index-to-class", help="as --index-to-class, for --eval-data (default: --index-to-class)")
    add("--train-split", default="train", help="split of a Hub --train-data (default: train)")
    add("--eval-split", default="test", help="split of a Hub --eval-data (default: test)")
    add("--video-column", default="video", help="video column of a Hub dataset")
    add("--label-column", default="label", help="class label column of a Hub dataset")
    add("--label-texts", nargs="+",
        help="label-texts JSON / ASKG YAML files or shipped set names (ucf101, hmdb51, kinetics400, ...), merged")
    add("--templates", help=TEMPLATES_HELP)
    add("--num-templates", type=int, help=NUM_TEMPLATES_HELP)
    add("--template", help="prompt of classes without label texts (default: 'a video of a person {}.')")
    add("--output-dir", default="outputs/stdd",
        help="where checkpoints, the model and eval_results.json go; one holding an earlier run is refused unless "
             "--resume-from-checkpoint or --overwrite-output-dir is given")
    add("--overwrite-output-dir", action="store_true",
        help="delete the earlier run in --output-dir (checkpoints, model/, eval_results.json, log.jsonl, "
             "run_settings.json, the baseline's folder) and start again")
    add("--synthetic-data-dir", help="cache folder of the embedded job's synthetic data (default: ~/.cache/stdd)")
    add("--num-frames", type=int, help="frames per clip")
    add("--image-size", type=int, help="frame side in pixels (default: the model's)")
    add_sampling_arguments(parser)
    add_augmentation_arguments(parser)
    add("--batch-size", type=int, help="clips per process and step (the global batch: x processes x accumulation)")
    add("--gradient-accumulation-steps", type=int, default=1)
    add("--epochs", type=int, help="training epochs")
    add("--max-steps", type=int, help="optimizer steps in all; overrides --epochs")
    add("--learning-rate", type=float,
        help="peak AdamW learning rate for --learning-rate-batch-size clips, scaled linearly with the global batch")
    add("--learning-rate-batch-size", type=int, help="the global batch --learning-rate is given for")
    add("--min-lr-ratio", type=float, help="warm-up starts and cosine ends at learning rate x this ratio")
    add("--weight-decay", type=float, help="AdamW weight decay (biases and 1-D parameters: none)")
    add("--warmup-epochs", type=float, help="linear warm-up length in epochs, then cosine decay")
    add("--train-logit-scale", dest="train_logit_scale", action="store_true", default=None,
        help="train the temperature (logit_scale); the text tower stays frozen")
    add("--freeze-logit-scale", dest="train_logit_scale", action="store_false")
    add("--max-grad-norm", type=float, help="gradient clipping (0: off)")
    add("--distillation-weight", type=float, help="weight of the distillation term (paper: 2.0)")
    add("--mixed-precision", choices=("auto", "no", "fp16", "bf16"),
        help="auto: fp16 on a GPU, none on the CPU (paper recipe: auto; embedded: accelerate's configuration, else no)")
    add("--gradient-checkpointing", action="store_true", help="recompute activations in backward to save memory")
    add("--seed", type=int, default=0)
    add("--resume-from-checkpoint",
        help="a checkpoint folder, or 'latest' (the newest one in --output-dir); the run's settings must match")
    add("--skip-nonfinite-steps", type=int, default=0,
        help="optimizer steps with a non-finite loss or gradient that are skipped before the run stops (default 0)")
    add("--average-epochs",
        help="epochs whose weights are averaged: 'from:N' (N to the last), 'last:N', '18-22', '20,21,22' or 'none'")
    add("--save-total-limit", type=int, default=2, help="epoch checkpoints kept (the newest)")
    add("--num-workers", type=int, help="DataLoader worker processes")
    add("--eval-batch-size", type=int, help="clips per evaluation batch (default: --batch-size)")
    add("--fail-on-unreadable-video", action="store_true", help="stop on an unreadable video instead of skipping it")
    add("--frame-mean-baseline", dest="frame_mean_baseline", action="store_true", default=None,
        help="also train the frame-mean baseline (plain CLIP) with the same budget (default in the embedded job)")
    add("--no-frame-mean-baseline", dest="frame_mean_baseline", action="store_false")
    add("--report-to", default="jsonl",
        help="accelerate trackers, comma-separated (jsonl, tensorboard, wandb, all, none)")
    add_stca_arguments(parser)
    return parser


def read_config_file(path: str, parser: argparse.ArgumentParser) -> dict:
    """Options from a YAML mapping whose keys are flag names (`learning-rate` or `learning_rate`)."""
    if not os.path.isfile(path):
        parser.error(f"--config {path}: file not found")
    try:
        options = yaml.safe_load(Path(path).read_text()) or {}
    except yaml.YAMLError as error:
        parser.error(f"--config {path}: not valid YAML: {error}")
    if not isinstance(options, dict):
        parser.error(f"--config {path}: expected a mapping of option names to values")
    known = {action.dest for action in parser._actions} - {"help", "config"}
    options = {str(key).replace("-", "_"): value for key, value in options.items()}
    unknown = sorted(set(options) - known)
    if unknown:
        parser.error(f"--config {path}: unknown options {unknown}")
    parsed = vars(parser.parse_args(config_arguments(options, parser, path)))
    return {name: parsed[name] for name in options}


def config_arguments(options: dict, parser: argparse.ArgumentParser, path: str) -> list[str]:
    """
    The command-line form of the config file's options, so that the parser checks their types and choices as it does
    for flags. A list given to a single-value option becomes its comma-separated form (`average-epochs: [20, 21]`).
    """
    actions_by_name = {}
    for action in parser._actions:
        actions_by_name.setdefault(action.dest, []).append(action)
    arguments = []
    for name, value in options.items():
        actions = actions_by_name[name]
        if value is None:
            continue
        if actions[0].nargs == 0:  # a flag, or a pair of flags sharing the option (--x / --no-x)
            if not isinstance(value, bool):
                parser.error(f"--config {path}: {name} must be true or false, got {value!r}")
            arguments += [action.option_strings[0] for action in actions if action.const is value][:1]
        elif actions[0].nargs in ("+", "*") or isinstance(actions[0].nargs, int):
            arguments += [actions[0].option_strings[0], *map(str, value if isinstance(value, list) else [value])]
        else:
            text = ",".join(map(str, value)) if isinstance(value, list) else str(value)
            arguments.append(f"{actions[0].option_strings[0]}={text}")
    return arguments


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    known = parser.parse_known_args(argv)[0]
    config = read_config_file(known.config, parser) if known.config else {}
    embedded = (known.train_data or config.get("train_data")) is None
    args_recipe = known.recipe or config.get("recipe") or ("embedded" if embedded else "paper")
    if (args_recipe == "embedded") != embedded:
        parser.error(f"--recipe {args_recipe} is for " + ("the embedded job: leave out --train-data" if not embedded
                                                          else "your data: give --train-data and --base-model"))
    apply_recipe(parser, TRAINING_RECIPES[args_recipe])
    # The config file over the recipe (a null value leaves the recipe's), the flags over both.
    parser.set_defaults(**{name: value for name, value in config.items() if value is not None})
    args = parser.parse_args(argv)
    args.recipe, args.embedded = args_recipe, embedded
    if args.mixed_precision == "auto":
        args.mixed_precision = default_mixed_precision()
    if args.eval_batch_size is None:
        args.eval_batch_size = args.batch_size
    check_args(args, parser)
    return args


def check_args(args: argparse.Namespace, parser: argparse.ArgumentParser):
    """Every bad argument gets a message naming the flag."""
    positive = ("num_frames", "batch_size", "gradient_accumulation_steps", "epochs", "eval_batch_size",
                "save_total_limit")
    for name in positive + ("max_steps", "image_size"):
        value = getattr(args, name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            parser.error(f"--{name.replace('_', '-')} must be an integer >= 1, got {value!r}")
    for name in ("warmup_epochs", "distillation_weight", "weight_decay", "max_grad_norm"):
        if getattr(args, name) < 0:
            parser.error(f"--{name.replace('_', '-')} must be >= 0, got {getattr(args, name)}")
    if not 0 <= args.min_lr_ratio < 1:
        parser.error(f"--min-lr-ratio must be in [0, 1), got {args.min_lr_ratio}")
    if not isinstance(args.learning_rate_batch_size, int) or args.learning_rate_batch_size < 1:
        parser.error(f"--learning-rate-batch-size must be an integer >= 1, got {args.learning_rate_batch_size!r}")
    if args.stca_layers is not None:
        try:
            parse_stca_layers(args.stca_layers)
        except ValueError as error:
            parser.error(f"--stca-layers: {error}")
    if not args.learning_rate > 0:
        parser.error(f"--learning-rate must be > 0, got {args.learning_rate}")
    if args.num_workers < 0:
        parser.error(f"--num-workers must be >= 0, got {args.num_workers}")
    check_video_arguments(args, parser)
    if args.skip_nonfinite_steps < 0:
        parser.error(f"--skip-nonfinite-steps must be >= 0, got {args.skip_nonfinite_steps}")
    if args.overwrite_output_dir and args.resume_from_checkpoint is not None:
        parser.error("--overwrite-output-dir deletes the run that --resume-from-checkpoint would continue: give one")
    if args.embedded:
        data_flags = ("eval_data", "video_root", "index_to_class", "label_texts", "templates")
        given = [f"--{name.replace('_', '-')}" for name in data_flags if getattr(args, name) is not None]
        if given:
            parser.error(f"{', '.join(given)} need --train-data (without it the embedded synthetic job runs)")
    elif args.base_model is None:
        parser.error("--train-data needs --base-model (a CLIP or STDD checkpoint, e.g. openai/clip-vit-base-patch16)")
    if args.frame_mean_baseline and not args.embedded and args.eval_data is None:
        parser.error("--frame-mean-baseline compares zero-shot results: give --eval-data")
    resume = args.resume_from_checkpoint
    if resume not in (None, "latest"):
        if not os.path.isdir(resume):
            parser.error(f"--resume-from-checkpoint {resume}: not a folder (give a checkpoint folder or 'latest')")
        if args.frame_mean_baseline:
            parser.error("--resume-from-checkpoint PATH resumes one run; with --frame-mean-baseline use 'latest'")
    if args.template is not None:
        try:
            check_hypothesis_template(args.template, name="--template")
        except ValueError as error:
            parser.error(str(error))
    try:  # without --max-steps the number of epochs is known before the data is read
        parse_average_epochs(args.average_epochs, num_epochs=None if args.max_steps else args.epochs)
    except ValueError as error:
        parser.error(f"--average-epochs: {error}")
    for name in ("train_data", "eval_data"):
        check_list_file_flags(args, name, parser)
    for value in args.label_texts or []:
        try:
            if value != "none":
                locate_label_texts(value)
        except LabelTextsNotFoundError as error:
            parser.error(f"--label-texts {value}: {error}")
    try:
        templates_from_options(args.templates, args.num_templates)
    except ValueError as error:
        parser.error(str(error))
    if args.report_to not in ("none", "all"):
        for tracker in args.report_to.split(","):
            if not tracker.strip():
                parser.error(f"--report-to {args.report_to!r} has an empty tracker name")


def check_list_file_flags(args, name: str, parser: argparse.ArgumentParser):
    """A list-file source needs a video root and an index-to-class JSON."""
    source = getattr(args, name)
    if source is None or not os.path.isfile(source):
        return
    prefix = "eval_" if name == "eval_data" else ""
    root = getattr(args, f"{prefix}video_root") or args.video_root
    index = getattr(args, f"{prefix}index_to_class") or args.index_to_class
    flag = f"--{name.replace('_', '-')}"
    if root is None or not os.path.isdir(root):
        parser.error(f"{flag} {source} is a list file: give --{prefix.replace('_', '-')}video-root, an existing folder")
    if index is None or not os.path.isfile(index):
        parser.error(f"{flag} {source} is a list file: give --{prefix.replace('_', '-')}index-to-class, a JSON file")


def parse_average_epochs(value, num_epochs: int | None) -> list[int]:
    """
    The epochs (1-based) to average: 'none' -> [], 'last:N' -> the last N, 'from:N' -> N to the last, or a list of
    epochs and ranges ('18-22', '20,21,22', a YAML list). With `num_epochs` None only the syntax is checked.
    """
    if isinstance(value, (list, tuple)):
        value = ",".join(str(item) for item in value)
    text = str(value).strip().lower()
    if text == "none":
        return []
    if text.startswith(("last:", "from:")):
        form, count = text.split(":", 1)
        if not count.isdigit() or int(count) < 1:
            raise ValueError(f"'{form}:N' needs an integer N >= 1, got {value!r}")
        if num_epochs is None:
            return []
        if form == "from":
            return list(range(int(count), num_epochs + 1))
        return list(range(max(1, num_epochs - int(count) + 1), num_epochs + 1))
    epochs = set()
    for part in text.split(","):
        low, dash, high = part.strip().partition("-")
        if not low.isdigit() or (dash and not high.isdigit()):
            raise ValueError(f"expected 'none', 'last:N' or epochs like '18-22' / '20,21,22', got {value!r}")
        epochs.update(range(int(low), int(high if dash else low) + 1))
    if min(epochs) < 1:
        raise ValueError(f"epochs are counted from 1, got {value!r}")
    if num_epochs is not None and max(epochs) > num_epochs:
        raise ValueError(f"{value!r} names epoch {max(epochs)} but training runs {num_epochs} epochs (--epochs)")
    return sorted(epochs)
