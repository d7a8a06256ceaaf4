"""
Zero-shot evaluation of an STDD (or CLIP) checkpoint on videos you have locally, with the published protocols
(UCF101 and HMDB51: their three official test splits; Kinetics-600: three fixed splits of 160 novel classes), or on
any one video data set:

    python training/evaluate_zero_shot.py --model outputs/stdd/model --protocol ucf101 \
        --video-root UCF-101 --split-dir ucfTrainTestlist --num-clips 3 --output ucf101.json

Top-1 / top-5 (top-5 from 6 classes on) come from the `evaluate` metric module shipped in `training/metrics/top_k_accuracy` (loaded by path,
no download); the JSON holds every split's figures and their mean and std. Several processes work through
`accelerate launch`.
"""

import argparse
import os
import sys
from pathlib import Path

# PyAV first: decord bundles its own FFmpeg libraries, and once they are loaded PyAV's VP8/VP9 encoders fail.
import av  # noqa: F401

from modeling_stdd import STDDModel, STDDProcessor
from modeling_stdd.askg.prompts import NUM_TEMPLATES_HELP, TEMPLATES_HELP, templates_from_options
from modeling_stdd.file_utils import check_writable_folder
from modeling_stdd.prompt_sets_stdd import DEFAULT_HYPOTHESIS_TEMPLATE, build_prompt_set
from modeling_stdd.view_aggregation import DEFAULT_VIEW_AGGREGATION
from training.class_coverage import classes_without_readable_videos
from training.evaluation import evaluation_loader, predict, protocol_splits, summarize, top_k_accuracy
from training.optim import default_mixed_precision
from training.protocols import PROTOCOLS, class_overlap
from training.recipe import EVALUATION_RECIPES, add_recipe_argument, apply_recipe, recipe_settings
from training.reporting import evaluation_report, reported_top_k
from training.run_record import read_run_record
from training.runtime import load_label_texts, make_accelerator, write_json_atomically
from training.video_files import drop_missing_videos
from training.video_options import (
    SAMPLING_OPTIONS,
    add_sampling_arguments,
    add_view_aggregation_argument,
    apply_video_options,
    check_video_arguments,
    video_settings,
)
from training.weight_patching import check_patch_ratio, patched_model


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="folder or Hub id of an STDD or CLIP checkpoint")
    add_recipe_argument(parser, EVALUATION_RECIPES, "paper: the authors' test views; default: each flag's own")
    parser.add_argument("--protocol", choices=PROTOCOLS, help="a published protocol; without it, --data is evaluated")
    parser.add_argument("--data", help="a folder of class sub-folders, a list file or a Hub dataset id")
    parser.add_argument("--split", default="test", help="the split of a Hub dataset (default: test)")
    parser.add_argument("--video-root", help="folder the videos (or list-file paths) are under")
    parser.add_argument("--split-dir", help="UCF101 ucfTrainTestlist/ or HMDB51 testTrainMulti_7030_splits/")
    parser.add_argument(
        "--list-file",
        help="Kinetics-600: a list file of your videos (relative/path,label_index); without it --video-root is a "
        "folder of class sub-folders",
    )
    parser.add_argument("--index-to-class", help="JSON {index: class name} of a list file")
    parser.add_argument(
        "--label-texts",
        nargs="+",
        help="label-texts JSON / ASKG YAML files or shipped set names, or 'none' (default: the protocol's shipped set)",
    )
    parser.add_argument("--templates", help=TEMPLATES_HELP)
    parser.add_argument("--num-templates", type=int, help=NUM_TEMPLATES_HELP)
    parser.add_argument("--template", default=DEFAULT_HYPOTHESIS_TEMPLATE, help="prompt of classes without texts")
    parser.add_argument("--num-frames", type=int, help="frames per view (default: the model's num_frames)")
    parser.add_argument("--num-clips", type=int, default=1, help="temporal views per video (paper: 3)")
    parser.add_argument("--num-crops", type=int, default=1, help="spatial views per clip")
    add_sampling_arguments(parser)
    add_view_aggregation_argument(parser)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--num-workers", type=int, default=2, help="DataLoader worker processes")
    parser.add_argument("--fail-on-unreadable-video", action="store_true", help="stop instead of skipping a bad file")
    parser.add_argument("--mixed-precision", choices=("auto", "no", "fp16", "bf16"), default="no",
                        help="auto: fp16 on a GPU, none on the CPU")
    parser.add_argument("--test-temporal-shuffle", dest="evaluation_temporal_shuffle", action="store_true",
                        help="permute each video's STCA masks in time at random, as the authors' test code does")
    parser.add_argument("--patch-ratio", type=float,
                        help="evaluate r * starting checkpoint + (1 - r) * the model (weight patching, r in [0, 1])")
    parser.add_argument("--base-model",
                        help="the starting checkpoint of --patch-ratio (default: the one the training run recorded)")
    parser.add_argument("--output", required=True, help="JSON file for the results (written atomically)")
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    recipe = parser.parse_known_args(argv)[0].recipe
    if recipe is not None:
        apply_recipe(parser, EVALUATION_RECIPES[recipe])
    args = parser.parse_args(argv)
    if args.mixed_precision == "auto":
        args.mixed_precision = default_mixed_precision()
    check_args(args, parser)
    return args


def check_args(args, parser: argparse.ArgumentParser):
    if args.protocol is None and args.data is None:
        parser.error("give --protocol (ucf101, hmdb51, kinetics600_novel) or --data")
    if args.protocol in ("ucf101", "hmdb51") and (args.video_root is None or args.split_dir is None):
        parser.error(f"--protocol {args.protocol} needs --video-root and --split-dir")
    if args.protocol == "kinetics600_novel" and args.video_root is None:
        parser.error("--protocol kinetics600_novel needs --video-root (and --index-to-class with --list-file)")
    if args.protocol == "kinetics600_novel" and args.list_file is not None and args.index_to_class is None:
        parser.error("--protocol kinetics600_novel: --list-file needs --index-to-class")
    for name in ("num_frames", "num_clips", "num_crops", "batch_size"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.num_workers < 0:
        parser.error(f"--num-workers must be >= 0, got {args.num_workers}")
    check_video_arguments(args, parser)
    if args.view_aggregation is None:
        args.view_aggregation = DEFAULT_VIEW_AGGREGATION
    if args.label_texts is None and args.protocol is not None:
        args.label_texts = args.protocol
    if os.path.isdir(args.output):
        parser.error(f"--output {args.output} is a folder: give the path of the JSON file to write")
    try:  # before any work, not after the whole evaluation
        check_writable_folder(Path(args.output).parent)
    except OSError as error:
        parser.error(f"--output {args.output}: its folder cannot be written ({error.strerror or error})")
    try:
        templates_from_options(args.templates, args.num_templates)
    except ValueError as error:
        parser.error(str(error))

    if args.patch_ratio is not None:
        try:
            check_patch_ratio(args.patch_ratio)
        except ValueError as error:
            parser.error(f"--patch-ratio: {error}")
    elif args.base_model is not None:
        parser.error("--base-model is the starting checkpoint of weight patching: give --patch-ratio too")


def check_input_folders(args):
    """The folders the videos and split files are read from exist (checked before the model is loaded)."""
    for flag, folder in (("--video-root", args.video_root), ("--split-dir", args.split_dir)):
        if folder is not None and not os.path.isdir(folder):
            raise FileNotFoundError(f"{flag} {folder} is not a folder")


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    check_input_folders(args)
    accelerator = make_accelerator(mixed_precision=args.mixed_precision)
    model = STDDModel.from_pretrained(args.model, evaluation_temporal_shuffle=args.evaluation_temporal_shuffle)
    model = model.to(accelerator.device).eval()
    patching = None
    if args.patch_ratio is not None:
        model, base_model = patched_model(model, args.model, args.patch_ratio, args.base_model)
        patching = {"ratio": args.patch_ratio, "base_model": base_model}
        accelerator.print(f"weight patching: {args.patch_ratio} x {base_model} + {1 - args.patch_ratio:g} x {args.model}")
    record = read_run_record(args.model) if os.path.isdir(args.model) else None
    train_classes = record.get("train_classes") if record else None
    vision_config = model.config.vision_config
    num_frames = vision_config.num_frames if args.num_frames is None else args.num_frames
    processor = STDDProcessor.for_checkpoint(args.model, vision_config.image_size, num_frames)
    apply_video_options(processor.video_processor, args, SAMPLING_OPTIONS)
    label_texts = load_label_texts(args.label_texts, templates_from_options(args.templates, args.num_templates))
    per_split, counts, overlaps, lost_classes = {}, {}, {}, {}
    for split in protocol_splits(args, label_texts):
        if train_classes is not None:
            overlaps[split.name] = class_overlap(train_classes, split.class_names)
            if not overlaps[split.name].zero_shot:
                accelerator.print(f"{split.name}: {overlaps[split.name].describe()}, not zero-shot")
        dataset = drop_missing_videos(split.dataset, split.name, args.video_root, args.fail_on_unreadable_video)
        prompts = build_prompt_set(model, processor.tokenizer, split.class_names, args.template, label_texts)
        loader = evaluation_loader(
            dataset, processor, args.batch_size, args.num_workers, not args.fail_on_unreadable_video,
            num_clips=args.num_clips, num_crops=args.num_crops,
        )
        scores, labels, num_unreadable = predict(
            model, accelerator.prepare(loader), prompts, accelerator, split.name,
            view_aggregation=args.view_aggregation,
        )
        num_unreadable += len(split.dataset) - len(dataset)
        if len(labels) == 0:
            raise ValueError(f"There is no readable video in split '{split.name}' ({num_unreadable} unreadable).")
        per_split[split.name] = top_k_accuracy(scores, labels, k=reported_top_k(len(split.class_names)))
        counts[split.name] = {
            "num_classes": len(split.class_names), "num_videos": int(len(labels)), "num_unreadable": num_unreadable,
        }
        figures = {**per_split[split.name], **counts[split.name]}
        accelerator.print(f"{split.name}: " + ", ".join(
            f"{name} {value:.2f}" if isinstance(value, float) else f"{name} {value}" for name, value in figures.items()
        ))
        if num_unreadable:
            accelerator.print(f"{split.name}: {num_unreadable} unreadable videos were left out of the scores.")
        lost_classes[split.name] = classes_without_readable_videos(split.class_names, split.dataset["label"], labels)
        if lost_classes[split.name]:
            accelerator.print(f"{split.name}: warning: no video of {lost_classes[split.name]} could be read; its "
                              "figures are over the other classes only.")
    results = {
        "model": args.model,
        "protocol": args.protocol or "custom",
        "views": {
            "num_clips": args.num_clips, "num_crops": args.num_crops, "view_aggregation": args.view_aggregation,
            **video_settings(processor.video_processor, SAMPLING_OPTIONS),
        },
        "recipe": args.recipe,
        "test_temporal_shuffle": args.evaluation_temporal_shuffle,
        "recipe_settings": recipe_settings(args, EVALUATION_RECIPES[args.recipe]) if args.recipe else {},
        "weight_patching": patching,
        "class_overlap": {name: overlap.to_dict() for name, overlap in overlaps.items()} if overlaps else None,
        **summarize(per_split),
        **{count: {name: split[count] for name, split in counts.items()} for count in next(iter(counts.values()))},
        "classes_without_readable_videos": lost_classes,
    }
    if accelerator.is_main_process:
        write_json_atomically(args.output, results)
        accelerator.print("\n" + evaluation_report(results, args.output))
    return results


def command_line(argv: list[str] | None = None) -> int:
    """`main`, with the errors of bad input (a wrong folder, a missing file) as one message instead of a traceback."""
    try:
        main(argv)
    except (OSError, ValueError) as error:
        print(f"evaluate_zero_shot.py: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(command_line())
