"""
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

import argparse
import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

# PyAV first: decord bundles its own FFmpeg libraries, and once they are loaded PyAV's VP8/VP9 encoders fail.
import av  # noqa: F401
import torch
import yaml
from accelerate import Accelerator, DataLoaderConfiguration
from accelerate.tracking import GeneralTracker
from accelerate.utils import set_seed
from datasets import Dataset
from tqdm.auto import tqdm
from transformers import CLIPConfig, CLIPModel

from modeling_stdd import STDDModel, STDDProcessor
from modeling_stdd.askg import LabelTexts
from modeling_stdd.askg.prompts import NUM_TEMPLATES_HELP, TEMPLATES_HELP, templates_from_options
from modeling_stdd.file_utils import move_into_place
from modeling_stdd.hypothesis_template import check_hypothesis_template
from modeling_stdd.prompt_sets_stdd import (
    EXPORTED_LABEL_TEXTS_DIR,
    LabelTextsNotFoundError,
    PromptSet,
    build_prompt_set,
    encode_prompt_set,
    label_prompts,
    locate_label_texts,
    save_prompt_embeddings,
)
from training.checkpointing import checkpoint_settings, checkpoint_to_resume, load_checkpoint, save_checkpoint
from training.class_coverage import (
    TrainingClassCoverage,
    check_training_classes,
    classes_without_readable_videos,
)
from training.data import (
    VideoClipDataset,
    build_synthetic_motion_dataset,
    class_names_of,
    collate_clips,
    load_video_dataset,
)
from training.evaluate_zero_shot import (
    evaluation_loader,
    load_label_texts,
    make_accelerator,
    predict,
    top_k_accuracy,
    write_json_atomically,
)
from training.divergence import NonFiniteStepGuard, TrainingDivergedError
from training.objective import FrozenImageTower, STDDTrainingModule
from training.optim import default_mixed_precision, parameter_groups, scaled_learning_rate, warmup_cosine_schedule
from training.protocols import class_overlap, with_label_text_names
from training.recipe import (
    TRAINING_RECIPES,
    add_recipe_argument,
    add_stca_arguments,
    apply_recipe,
    check_model_overrides,
    parse_stca_layers,
    recipe_settings,
    stca_overrides,
)
from training.reporting import reported_top_k, training_report
from training.run_folder import RunFolderError, check_same_settings, claim_output_dir, resume_settings
from training.run_record import write_run_record
from training.video_options import (
    add_augmentation_arguments,
    add_sampling_arguments,
    apply_video_options,
    check_video_arguments,
    video_settings,
)


# ----------------------------------------------------------------------------------------------------------------------
# Defaults: the embedded job (no data arguments) and the paper's recipe (your data)
# ----------------------------------------------------------------------------------------------------------------------

# Tiny random CLIP of the embedded job: 32 px frames, 8 px patches (4x4 grid), width 64, 3 vision layers.
TINY_CLIP_TEXT = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2)
TINY_CLIP_VISION = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4, patch_size=8)
TINY_CLIP_PROJECTION_DIM = 64
# CLIP's trained temperature (logit scale 100); the random text tower's prompt embeddings sit close together.
TINY_CLIP_LOGIT_SCALE = math.log(100.0)
# The settings of both jobs are the recipes of training/recipe.py: `embedded` without --train-data, `paper` with it.
BASELINE_NAME = "frame_mean_baseline"
RUN_DESCRIPTIONS = {
    "stdd": "STDD",
    BASELINE_NAME: "the frame-mean baseline (plain CLIP, stca_layers=[]) with the same budget",
}


# ----------------------------------------------------------------------------------------------------------------------
# Arguments
# ----------------------------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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


# ----------------------------------------------------------------------------------------------------------------------
# Trackers, progress and weight averaging
# ----------------------------------------------------------------------------------------------------------------------


class JsonLinesTracker(GeneralTracker):
    """An accelerate tracker that appends one JSON object per `log` call to `<run dir>/log.jsonl`."""

    name = "jsonl"
    requires_logging_directory = False

    def __init__(self, run_dir: Path):
        super().__init__()
        self.path = Path(run_dir) / "log.jsonl"

    @property
    def tracker(self):
        return self.path

    def store_init_configuration(self, values: dict):
        self.log({"config": values})

    def log(self, values: dict, step: int | None = None, **kwargs):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as file:
            file.write(json.dumps({"step": step, **values}, default=str, allow_nan=False) + "\n")


def trackers(report_to: str, run_dir: Path):
    if report_to == "none":
        return None
    names = [name.strip() for name in report_to.split(",")]
    return [JsonLinesTracker(run_dir) if name == "jsonl" else name for name in names]


@dataclass
class TrainingProgress:
    """Where a run stands, saved with every checkpoint."""

    epoch: int = 0
    global_step: int = 0
    skipped_videos: int = 0
    nonfinite_steps_skipped: int = 0
    training_seconds: float = 0.0
    last_epoch_loss: dict = field(default_factory=dict)

    def state_dict(self) -> dict:
        return dict(self.__dict__)

    def load_state_dict(self, state: dict):
        self.__dict__.update(state)


@dataclass
class WeightAverager:
    """Uniform average of the trainable weights at the end of the chosen epochs (kept as a float32 running sum)."""

    epochs: list[int]
    total: dict[str, torch.Tensor] = field(default_factory=dict)
    added: list[int] = field(default_factory=list)

    def add(self, model: STDDModel, epoch: int):
        if epoch not in self.epochs:
            return
        for name, parameter in model.named_parameters():
            if parameter.requires_grad:
                weights = parameter.detach().float().cpu()
                self.total[name] = self.total[name] + weights if name in self.total else weights.clone()
        self.added.append(epoch)

    def apply_to(self, model: STDDModel) -> bool:
        """Replace the model's trainable weights by the average; False when no epoch was averaged."""
        if not self.added:
            return False
        parameters = dict(model.named_parameters())
        with torch.no_grad():
            for name, total in self.total.items():
                parameters[name].copy_(total / len(self.added))
        return True

    def state_dict(self) -> dict:
        return {"epochs": self.epochs, "total": self.total, "added": self.added}

    def load_state_dict(self, state: dict):
        """Resume the running sum of a checkpoint, whose epochs must all be among this run's epochs to average."""
        stray = [epoch for epoch in state["added"] if epoch not in self.epochs]
        if stray:
            raise ValueError(
                f"The checkpoint's weight average already holds epochs {stray}, which this run would not average "
                f"(it averages {self.epochs or 'no epochs'}, from --average-epochs and --epochs); resume with the "
                "settings of the interrupted run, or start a new run."
            )
        self.total, self.added = state["total"], list(state["added"])


# ----------------------------------------------------------------------------------------------------------------------
# Model, processor and data
# ----------------------------------------------------------------------------------------------------------------------


@dataclass
class Job:
    """What a training run needs, resolved from the arguments."""

    base_model: str
    model_overrides: dict
    processor: STDDProcessor
    train_dataset: Dataset
    eval_dataset: Dataset | None
    label_texts: LabelTexts | None
    template: str


def save_tiny_random_clip(directory: Path, image_size: int, seed: int) -> Path:
    """The embedded job's starting point: a tiny random `CLIPModel`, saved once as a plain CLIP checkpoint."""
    if (directory / "config.json").is_file():
        return directory
    torch.manual_seed(seed)
    config = CLIPConfig(
        text_config=TINY_CLIP_TEXT,
        vision_config={**TINY_CLIP_VISION, "image_size": image_size},
        projection_dim=TINY_CLIP_PROJECTION_DIM,
        logit_scale_init_value=TINY_CLIP_LOGIT_SCALE,
    )
    partial = directory.with_name(f".{directory.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    CLIPModel(config).save_pretrained(partial)
    move_into_place(partial, directory)
    return directory


def default_cache_dir() -> Path:
    return Path(os.environ.get("STDD_CACHE", Path.home() / ".cache" / "stdd"))


def prepare_job(args: argparse.Namespace, accelerator: Accelerator) -> Job:
    """Data sets, processor and starting checkpoint; the embedded job builds its synthetic data and tiny CLIP."""
    model_overrides = {**stca_overrides(args), "num_frames": args.num_frames}
    if args.embedded:
        cache = Path(args.synthetic_data_dir) if args.synthetic_data_dir else default_cache_dir()
        with accelerator.main_process_first():  # the main process builds the cache, the others then read it
            data_dir = build_synthetic_motion_dataset(cache)
            base_model = args.base_model or str(
                save_tiny_random_clip(cache / f"tiny-random-clip-{args.image_size}px-seed{args.seed}",
                                      args.image_size, args.seed)
            )
        processor = STDDProcessor.from_clip_defaults(args.image_size, args.num_frames)
        apply_video_options(processor.video_processor, args)
        check_model_overrides(base_model, model_overrides)
        return Job(
            base_model=base_model,
            model_overrides=model_overrides,
            processor=processor,
            train_dataset=load_video_dataset(str(data_dir / "train")),
            eval_dataset=load_video_dataset(str(data_dir / "eval")),
            label_texts=LabelTexts.from_file(data_dir / "label_texts.json"),
            template=args.template,
        )
    config = check_model_overrides(args.base_model, model_overrides)
    image_size = args.image_size or config.vision_config.image_size
    with accelerator.main_process_first():
        train_dataset = load_video_dataset(
            args.train_data, args.video_root, args.index_to_class, args.train_split,
            args.video_column, args.label_column,
        )
        eval_dataset = None
        if args.eval_data is not None:
            eval_dataset = load_video_dataset(
                args.eval_data, args.eval_video_root or args.video_root,
                args.eval_index_to_class or args.index_to_class, args.eval_split,
                args.video_column, args.label_column,
            )
    label_texts = load_label_texts(args.label_texts, templates_from_options(args.templates, args.num_templates))
    label_names = None if label_texts is None else label_texts.labels
    processor = STDDProcessor.for_checkpoint(args.base_model, image_size, args.num_frames)
    apply_video_options(processor.video_processor, args)
    return Job(
        base_model=args.base_model,
        model_overrides=model_overrides,
        processor=processor,
        train_dataset=with_label_text_names(train_dataset, label_names),
        eval_dataset=None if eval_dataset is None else with_label_text_names(eval_dataset, label_names),
        label_texts=label_texts,
        template=args.template,
    )


def load_model(job: Job, overrides: dict, image_size: int) -> tuple[STDDModel, bool]:
    """The starting STDD model, and whether frames of `image_size` need interpolated position embeddings."""
    model = STDDModel.from_pretrained(job.base_model, **{**job.model_overrides, **overrides})
    return model, image_size != model.config.vision_config.image_size


def training_loader(job: Job, args, accelerator: Accelerator):
    clips = VideoClipDataset(
        job.train_dataset, job.processor.video_processor, training=True,
        skip_unreadable=not args.fail_on_unreadable_video,
    )
    if len(clips) < args.batch_size * accelerator.num_processes:
        raise ValueError(
            f"--train-data has {len(clips)} videos, fewer than one batch ({args.batch_size} x "
            f"{accelerator.num_processes} processes); lower --batch-size."
        )
    return torch.utils.data.DataLoader(
        clips, batch_size=args.batch_size, shuffle=True, drop_last=True, num_workers=args.num_workers,
        collate_fn=collate_clips, persistent_workers=False,
    )


# ----------------------------------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------------------------------


@dataclass
class TrainedRun:
    model: STDDModel
    interpolate_pos_encoding: bool
    summary: dict


def train_run(args, job: Job, name: str, overrides: dict, run_dir: Path, position: str = "") -> TrainedRun:
    """Train one model (`position`: "run 2/2" in the job, shown with its progress); returns it with its weights
    averaged over the chosen epochs."""
    accelerator = make_accelerator(
        mixed_precision=args.mixed_precision,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        log_with=trackers(args.report_to, run_dir),
        project_dir=str(run_dir),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
    )
    set_seed(args.seed)
    image_size = args.image_size or job.processor.video_processor.crop_size["height"]
    model, interpolate = load_model(job, overrides, image_size)
    model.to(accelerator.device)  # the class prompts below are encoded on the training device
    if args.gradient_checkpointing:
        model.activation_checkpointing_enable()
    teacher = FrozenImageTower(model).to(accelerator.device) if args.distillation_weight else None
    prompts = build_prompt_set(model, job.processor.tokenizer, class_names_of(job.train_dataset), job.template,
                               job.label_texts).to(accelerator.device)
    module = STDDTrainingModule(model, args.distillation_weight, args.train_logit_scale)
    module.train()
    global_batch_size = args.batch_size * accelerator.num_processes * args.gradient_accumulation_steps
    learning_rate = scaled_learning_rate(args.learning_rate, global_batch_size, args.learning_rate_batch_size)
    optimizer = torch.optim.AdamW(parameter_groups(module, args.weight_decay), lr=learning_rate)
    loader = training_loader(job, args, accelerator)
    module, optimizer, loader = accelerator.prepare(module, optimizer, loader)

    steps_per_epoch = math.ceil(len(loader) / args.gradient_accumulation_steps)
    total_steps = args.max_steps or steps_per_epoch * args.epochs
    num_epochs = math.ceil(total_steps / steps_per_epoch)
    warmup_steps = min(round(args.warmup_epochs * steps_per_epoch), total_steps)
    # The prepared scheduler advances once per process at every optimizer step.
    scheduler = accelerator.prepare(warmup_cosine_schedule(
        optimizer, warmup_steps * accelerator.num_processes, total_steps * accelerator.num_processes,
        args.min_lr_ratio,
    ))
    progress = TrainingProgress()
    averager = WeightAverager(parse_average_epochs(args.average_epochs, num_epochs))
    coverage = TrainingClassCoverage(class_names_of(job.train_dataset))
    training_state = {"progress": progress, "weight_average": averager, "class_coverage": coverage}
    settings = resume_settings(args, accelerator.num_processes)

    resume_from = checkpoint_to_resume(args.resume_from_checkpoint, run_dir)
    if resume_from is not None:
        accelerator.print(f"[{name}] resuming from {resume_from}")
        check_same_settings(checkpoint_settings(resume_from), settings, str(resume_from))
        load_checkpoint(accelerator, resume_from, training_state)
    accelerator.init_trackers(name, config=vars(args))
    accelerator.print(
        f"[{name}] {len(job.train_dataset)} training videos, {prompts.num_classes} classes, {num_epochs} epochs x "
        f"{steps_per_epoch} steps, {accelerator.num_processes} process(es), "
        f"averaging epochs {averager.epochs or 'none'}; learning rate {args.learning_rate:g} for "
        f"{args.learning_rate_batch_size} clips -> {learning_rate:g} for the global batch of {global_batch_size}"
    )
    guard = NonFiniteStepGuard(accelerator, args.skip_nonfinite_steps, name)
    timer = time.perf_counter()
    bar = tqdm(total=total_steps, initial=progress.global_step, desc=f"{name} {position}".strip(),
               disable=not accelerator.is_local_main_process)
    for epoch in range(progress.epoch + 1, num_epochs + 1):
        loader.set_epoch(epoch)
        epoch_loss = train_epoch(args, accelerator, module, teacher, prompts, optimizer, scheduler, loader,
                                 progress, total_steps, interpolate, bar, guard, coverage)
        coverage.end_epoch(accelerator, name)
        progress.epoch, progress.last_epoch_loss = epoch, epoch_loss
        progress.training_seconds += time.perf_counter() - timer
        timer = time.perf_counter()
        averager.add(accelerator.unwrap_model(module).model, epoch)
        accelerator.log({"epoch": epoch, **{f"epoch_{k}": v for k, v in epoch_loss.items()}},
                        step=progress.global_step)
        if accelerator.is_local_main_process:  # through the bar's writer, so that the line lands above the bar
            bar.write(f"[{name}] epoch {epoch}/{num_epochs}: " +
                      ", ".join(f"{k} {v:.4f}" for k, v in epoch_loss.items()) +
                      f", skipped videos {progress.skipped_videos}, skipped non-finite steps "
                      f"{progress.nonfinite_steps_skipped}")
        save_checkpoint(accelerator, run_dir, epoch, args.save_total_limit, training_state, settings)
    bar.close()
    model = accelerator.unwrap_model(module).model
    averaged = averager.apply_to(model)
    for tracker in accelerator.trackers:  # end_training would also end the process group that evaluation needs
        tracker.finish()
    summary = {
        "epochs": num_epochs,
        "optimizer_steps": progress.global_step,
        "seconds": round(progress.training_seconds, 1),
        "skipped_videos": progress.skipped_videos,
        "nonfinite_steps_skipped": progress.nonfinite_steps_skipped,
        "classes_without_readable_videos": coverage.lost_classes(),
        "averaged_epochs": averager.epochs if averaged else [],
        "global_batch_size": global_batch_size,
        "learning_rate": learning_rate,
        **{f"last_epoch_{k}": v for k, v in progress.last_epoch_loss.items()},
    }
    return TrainedRun(model.eval(), interpolate, summary)


def train_epoch(args, accelerator, module, teacher, prompts: PromptSet, optimizer, scheduler, loader,
                progress: TrainingProgress, total_steps: int, interpolate: bool, bar, guard: NonFiniteStepGuard,
                coverage: TrainingClassCoverage) -> dict[str, float]:
    """
    One pass over the loader (stopping at `total_steps`); returns the epoch's mean loss terms, over its batches of
    finite loss. An optimizer step with a non-finite loss or gradient is skipped or stops the run (`guard`).
    """
    module.train()
    totals = {"loss": 0.0, "cross_entropy": 0.0, "distillation": 0.0}
    batches = 0
    for batch in loader:
        if progress.global_step >= total_steps:
            break
        with accelerator.accumulate(module):
            teacher_embeds = None
            if teacher is not None:
                with accelerator.autocast():
                    teacher_embeds = teacher(batch["pixel_values"], interpolate_pos_encoding=interpolate)
            outputs = module(batch["pixel_values"], batch["labels"], prompts, teacher_embeds, interpolate)
            finite_loss = guard.watch_loss(outputs["loss"])
            accelerator.backward(outputs["loss"])
            finite_step = True
            if accelerator.sync_gradients:  # the gradient norm is clipped to --max-grad-norm (0: measured only)
                grad_norm = accelerator.clip_grad_norm_(module.parameters(), args.max_grad_norm or math.inf)
                finite_step = guard.check_step(grad_norm, progress, progress.global_step + 1)
            if finite_step:
                optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
        progress.skipped_videos += int(accelerator.reduce(batch["num_skipped"], reduction="sum"))
        coverage.add(batch["labels"], batch["skipped_labels"])
        if finite_loss:
            batches += 1
            for key in totals:
                totals[key] += outputs[key].item()
        if accelerator.sync_gradients:
            progress.global_step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{outputs['loss'].item():.3f}")
            if finite_loss:
                accelerator.log({"loss": outputs["loss"].item(), "cross_entropy": outputs["cross_entropy"].item(),
                                 "distillation": outputs["distillation"].item(), "lr": scheduler.get_last_lr()[0],
                                 "skipped_videos": progress.skipped_videos}, step=progress.global_step)
    return {key: value / batches for key, value in totals.items()} if batches else {}


# ----------------------------------------------------------------------------------------------------------------------
# Evaluation and saving
# ----------------------------------------------------------------------------------------------------------------------


def evaluate_run(args, job: Job, run: TrainedRun) -> tuple[dict[str, float], dict]:
    """
    Zero-shot top-1 / top-5 (percent) on the evaluation data, one view per video, the counts of videos scored and
    left out as unreadable, and the classes none of whose videos could be read (the figures leave them out).
    """
    accelerator = make_accelerator(mixed_precision=args.mixed_precision)
    prompts = build_prompt_set(run.model, job.processor.tokenizer, eval_class_names(job), job.template, job.label_texts)
    loader = evaluation_loader(job.eval_dataset, job.processor, args.eval_batch_size, args.num_workers,
                               not args.fail_on_unreadable_video)
    scores, labels, num_unreadable = predict(run.model.to(accelerator.device), accelerator.prepare(loader), prompts,
                                             accelerator, interpolate_pos_encoding=run.interpolate_pos_encoding)
    if len(labels) == 0:
        raise ValueError(f"There is no readable video in the evaluation data ({num_unreadable} unreadable).")
    lost = classes_without_readable_videos(eval_class_names(job), job.eval_dataset["label"], labels)
    videos = {"num_videos": len(labels), "num_unreadable": num_unreadable, "classes_without_readable_videos": lost}
    return top_k_accuracy(scores, labels, k=reported_top_k(prompts.num_classes)), videos


def save_model_folder(run: TrainedRun, job: Job, folder: Path, record: dict):
    """
    `save_pretrained` of the model and processor, plus `label_texts/{train,eval}.json`: the prompts of the training
    and evaluation classes with their prompt embeddings next to them (the layout the pipeline and Hub export read),
    and the run's `record` (`training_settings.json`).
    """
    if run.interpolate_pos_encoding:
        run.model.adopt_image_size(job.processor.video_processor.crop_size.height)
        run.interpolate_pos_encoding = False
    partial = folder.with_name(f".{folder.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    run.model.save_pretrained(partial)
    job.processor.save_pretrained(partial)
    for split, class_names in (("train", class_names_of(job.train_dataset)), ("eval", eval_class_names(job))):
        if not class_names:
            continue
        prompts = label_prompts(class_names, job.template, job.label_texts)
        texts = LabelTexts(prompts, source=f"{split} classes of {job.base_model}")
        texts_file = texts.save(partial / EXPORTED_LABEL_TEXTS_DIR / f"{split}.json")
        prompt_set = encode_prompt_set(run.model, job.processor.tokenizer, prompts, grouped=job.label_texts is not None)
        save_prompt_embeddings(texts_file, prompt_set.prompts, prompt_set.text_embeds)
    write_run_record(partial, record)
    move_into_place(partial, folder)


def eval_class_names(job: Job) -> list[str]:
    return class_names_of(job.eval_dataset) if job.eval_dataset is not None else []


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    accelerator = make_accelerator(mixed_precision=args.mixed_precision)
    with claim_output_dir(args, accelerator) as output_dir:  # writable, not used by another run, locked
        return run_job(args, accelerator, output_dir)


def run_job(args, accelerator: Accelerator, output_dir: Path) -> dict:
    """Train the job's runs, evaluate them zero-shot and save their models and `eval_results.json`."""
    job = prepare_job(args, accelerator)
    check_training_classes(job.train_dataset)
    overlap = class_overlap(class_names_of(job.train_dataset), eval_class_names(job))
    if job.eval_dataset is not None and not overlap.zero_shot:
        accelerator.print(f"warning: {overlap.describe()} ({', '.join(overlap.seen[:10])}"
                          f"{', ...' if len(overlap.seen) > 10 else ''}): the evaluation is not zero-shot")
    settings = run_settings(args, job, accelerator)
    runs = [("stdd", {}, output_dir)]
    if args.frame_mean_baseline:
        runs.append((BASELINE_NAME, {"stca_layers": []}, output_dir / BASELINE_NAME))
    results = {"zero_shot": {}, "zero_shot_videos": {}, "training": {}, "class_overlap": overlap.to_dict()}
    for index, (name, overrides, run_dir) in enumerate(runs, start=1):
        position = f"run {index}/{len(runs)}" if len(runs) > 1 else ""
        accelerator.print(f"\n[{name}] {position + ': ' if position else ''}training {RUN_DESCRIPTIONS[name]}")
        run = train_run(args, job, name, overrides, run_dir, position)
        results["training"][name] = run.summary
        if job.eval_dataset is not None:
            results["zero_shot"][name], videos = evaluate_run(args, job, run)
            results["zero_shot_videos"][name] = videos
            unreadable = f" ({videos['num_unreadable']} unreadable left out)" if videos["num_unreadable"] else ""
            kind = "zero-shot" if overlap.zero_shot else "evaluation (not zero-shot)"
            accelerator.print(f"[{name}] {kind} on {videos['num_videos']} videos{unreadable} of "
                              f"{overlap.describe()}: " +
                              ", ".join(f"{k} {v:.1f}" for k, v in results["zero_shot"][name].items()))
            if videos["classes_without_readable_videos"]:
                accelerator.print(f"[{name}] warning: no video of {videos['classes_without_readable_videos']} could "
                                  "be read; the figures are over the other classes only")
        if accelerator.is_main_process:
            record = {**settings, "model_overrides": {**job.model_overrides, **overrides},
                      "train_classes": class_names_of(job.train_dataset), "class_overlap": overlap.to_dict()}
            save_model_folder(run, job, run_dir / "model", record)
        accelerator.wait_for_everyone()
    results["settings"] = settings
    if accelerator.is_main_process:
        write_json_atomically(output_dir / "eval_results.json", results)
        run_dirs = {name: run_dir for name, _, run_dir in runs}
        print("\n" + training_report(results, run_dirs, output_dir))
    accelerator.end_training()
    return results


def run_settings(args, job: Job, accelerator: Accelerator) -> dict:
    """What the run used: its recipe's settings as expanded and overridden, the data and the starting checkpoint."""
    return {
        "job": "embedded synthetic motion" if args.embedded else "custom",
        "base_model": job.base_model,
        "model_overrides": job.model_overrides,
        "recipe": args.recipe,
        "recipe_settings": recipe_settings(args, TRAINING_RECIPES[args.recipe]),
        **{key: getattr(args, key) for key in ("train_data", "eval_data", "max_steps", "gradient_accumulation_steps",
                                              "seed")},
        "num_processes": accelerator.num_processes,
        "video": video_settings(job.processor.video_processor),
    }


if __name__ == "__main__":
    try:
        main()
    except (RunFolderError, TrainingDivergedError) as error:
        sys.exit(f"train.py: error: {error}")
