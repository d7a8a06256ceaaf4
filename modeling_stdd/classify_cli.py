"""
`stdd-classify`: zero-shot action labels for video files from the command line.

    stdd-classify video.mp4 other.mp4 --labels "dancing, playing guitar" [--model DIR] [--label-texts FILE]
                  [--top-k K] [--num-clips N] [--segment-seconds S [--stride-seconds S]] [--batch-size B]
                  [--timeout S] [--json]

Each video's ranking is printed as soon as it is ready, as rows of an aligned table (video, rank, label, score; with
a window column for a timeline). A video that cannot be read is reported by name on stderr and the others go on;
the exit status is then 1.
"""

import argparse
import json
import os
import sys
from pathlib import Path

from .pipeline_stdd import TASK
from .prompt_sets_stdd import DEFAULT_HYPOTHESIS_TEMPLATE, EXPORTED_LABEL_TEXTS_DIR
from .video_download import DEFAULT_DOWNLOAD_TIMEOUT_SECONDS


DEFAULT_MODEL = "openai/clip-vit-base-patch16"
# Exit statuses: some videos could not be classified; bad arguments or a model that cannot be loaded.
EXIT_SOME_VIDEOS_FAILED = 1
EXIT_USAGE = 2
# What a bad video raises from the pipeline's reading and decoding: the batch goes on without it.
VIDEO_ERRORS = (ValueError, OSError, RuntimeError)


def build_parser(model: str = DEFAULT_MODEL) -> argparse.ArgumentParser:
    """The parser; its help ends with the label-text sets saved with `model` (found without any download)."""
    parser = argparse.ArgumentParser(
        prog="stdd-classify",
        description="Rank free-text action labels for videos with an STDD model (zero-shot).",
        epilog=saved_label_sets_text(model),
    )
    parser.add_argument("videos", nargs="+", metavar="VIDEO", help="video files or http(s) URLs")
    parser.add_argument("--labels", help='candidate labels, comma-separated: "dancing, playing guitar"')
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"model folder or Hub id (default: {DEFAULT_MODEL})")
    parser.add_argument(
        "--label-texts",
        help="prompts per label: a label-texts .json file, an ASKG .yml file or the name of a set saved with the model",
    )
    parser.add_argument("--template", default=DEFAULT_HYPOTHESIS_TEMPLATE, help="prompt of a label without texts")
    parser.add_argument("--top-k", type=int, help="show the K best labels (default: all)")
    parser.add_argument("--num-clips", type=int, default=1, help="temporal views per video, averaged")
    parser.add_argument("--segment-seconds", type=float, help="classify windows of this length (a timeline)")
    parser.add_argument("--stride-seconds", type=float, help="step between windows (default: --segment-seconds)")
    parser.add_argument("--batch-size", type=int, default=1, help="videos or windows per model call")
    parser.add_argument(
        "--timeout", type=float, default=DEFAULT_DOWNLOAD_TIMEOUT_SECONDS,
        help=f"seconds a URL's download may take in all (default: {DEFAULT_DOWNLOAD_TIMEOUT_SECONDS:g})",
    )
    parser.add_argument("--device", help='torch device, e.g. "cuda:0" (default: CPU)')
    parser.add_argument("--json", action="store_true", help="print JSON (one object per video) instead of a table")
    return parser


# ----------------------------------------------------------------------------------------------------------------------
# The label-text sets saved with a model, for --help
# ----------------------------------------------------------------------------------------------------------------------


def saved_label_sets(model: str) -> list[str] | None:
    """
    Names of the label-text sets saved with `model` (`label_texts/NAME.json`): from its folder, or from the Hub
    cache for a Hub id (no download). None when the model is neither a folder nor in the cache.
    """
    folder = Path(model)
    if not folder.is_dir():
        from huggingface_hub import try_to_load_from_cache

        try:
            cached_config = try_to_load_from_cache(model, "config.json")
        except ValueError:  # not a valid Hub id either
            return None
        if not isinstance(cached_config, str):
            return None
        folder = Path(cached_config).parent
    return sorted(path.stem for path in (folder / EXPORTED_LABEL_TEXTS_DIR).glob("*.json"))


def saved_label_sets_text(model: str) -> str:
    names = saved_label_sets(model)
    if names is None:
        return f"Label-text sets saved with {model}: unknown ({model} is not a folder and not in the local Hub cache)."
    if not names:
        return f"Label-text sets saved with {model}: none (pass --label-texts FILE or --labels)."
    return f"Label-text sets saved with {model} (--label-texts NAME): {', '.join(names)}."


def model_from_argv(argv: list[str] | None) -> str:
    """The --model an argument list gives (the default when none), read before the full parse builds --help."""
    pre_parser = argparse.ArgumentParser(add_help=False)
    pre_parser.add_argument("--model", default=DEFAULT_MODEL)
    return pre_parser.parse_known_args(argv)[0].model


# ----------------------------------------------------------------------------------------------------------------------
# Output
# ----------------------------------------------------------------------------------------------------------------------


class ResultTable:
    """Rows `video  [window]  rank  label  score`, printed as each video's result comes, in fixed-width columns."""

    def __init__(self, videos: list[str], labels: tuple[str, ...], timeline: bool):
        self.timeline = timeline
        columns = ["video", "window"] if timeline else ["video"]
        self.headers = [*columns, "rank", "label", "score"]
        self.widths = [max(len("video"), *map(len, videos))]
        if timeline:
            self.widths.append(len("00000.00-00000.00s"))
        self.widths += [len("rank"), max(len("label"), *map(len, labels)), len("score")]
        self.printed_header = False

    def row(self, cells: list[str]) -> str:
        numeric = {len(cells) - 3, len(cells) - 1}  # rank and score, right-aligned
        return "  ".join(
            cell.rjust(width) if index in numeric else cell.ljust(width)
            for index, (cell, width) in enumerate(zip(cells, self.widths))
        ).rstrip()

    def print_result(self, video: str, result: list[dict]):
        if not self.printed_header:
            print(self.row(self.headers))
            print(self.row(["-" * width for width in self.widths]))
            self.printed_header = True
        windows = result if self.timeline else [{"labels": result}]
        for window in windows:
            span = [f"{window['start']:.2f}-{window['end']:.2f}s"] if self.timeline else []
            for rank, prediction in enumerate(window["labels"], start=1):
                cells = [video, *span, str(rank), prediction["label"], f"{prediction['score']:.3f}"]
                print(self.row(cells))
        sys.stdout.flush()


# ----------------------------------------------------------------------------------------------------------------------
# Running
# ----------------------------------------------------------------------------------------------------------------------


def check_device(device: str | None, parser: argparse.ArgumentParser):
    """`--device` must name a torch device that this machine has."""
    import torch

    if device is None:
        return
    try:
        device_type = torch.device(device).type
    except RuntimeError as error:
        parser.error(f"--device {device!r} is not a torch device: {error}")
    accelerator = torch.accelerator.current_accelerator() if torch.accelerator.is_available() else None
    if device_type != "cpu" and (accelerator is None or accelerator.type != device_type):
        parser.error(f"--device {device!r}: this machine has no {device_type} device available to torch.")


def load_classifier(args, parser: argparse.ArgumentParser):
    """The pipeline for `--model`; a model that cannot be loaded ends the program with one message naming it."""
    from transformers import pipeline

    import modeling_stdd  # noqa: F401  (registers the task and the STDD classes)

    from .checkpoint_files import check_model_folder

    try:
        if os.path.isdir(args.model):
            check_model_folder(args.model)
        return pipeline(TASK, model=args.model, device=args.device)
    except (ValueError, OSError) as error:  # OSError: a model folder or Hub id that cannot be loaded
        default = " (the default model)" if args.model == DEFAULT_MODEL else ""
        hint = "" if os.path.isdir(args.model) else (
            " Without network, pass --model with a model folder, or download the model once with network."
        )
        parser.exit(EXIT_USAGE, f"stdd-classify: error: cannot load {args.model}{default}: {error}{hint}\n")


def classify_all(classifier, videos: list[str], batch_size: int, on_result, on_error, **call_kwargs) -> int:
    """
    Classify `videos` in batches of `batch_size`, calling `on_result(video, result)` as each batch is ready; a batch
    that fails is retried one video at a time, so that a bad video only costs its own result
    (`on_error(video, error)`). Returns the number of videos that failed.
    """
    failed = 0
    for start in range(0, len(videos), batch_size):
        batch = videos[start : start + batch_size]
        try:
            results = classifier(batch, batch_size=batch_size, **call_kwargs)
        except VIDEO_ERRORS:
            results = None
        if results is not None:
            for video, result in zip(batch, results):
                on_result(video, result)
            continue
        for video in batch:
            try:
                (result,) = classifier([video], batch_size=1, **call_kwargs)
            except VIDEO_ERRORS as error:
                on_error(video, error)
                failed += 1
                continue
            on_result(video, result)
    return failed


def check_args(args, parser: argparse.ArgumentParser):
    """Settings the pipeline would refuse for every video, refused once here."""
    if args.labels is None and args.label_texts is None:
        parser.error("give --labels (or --label-texts, whose labels then are the candidates)")
    for flag, value in (("--top-k", args.top_k), ("--num-clips", args.num_clips), ("--batch-size", args.batch_size)):
        if value is not None and value < 1:
            parser.error(f"{flag} must be >= 1, got {value}")
    if not args.timeout > 0:
        parser.error(f"--timeout must be > 0 seconds, got {args.timeout}")
    if args.stride_seconds is not None and args.segment_seconds is None:
        parser.error("--stride-seconds needs --segment-seconds")
    if args.segment_seconds is not None:
        stride = args.segment_seconds if args.stride_seconds is None else args.stride_seconds
        if not args.segment_seconds > 0 or not 0 < stride <= args.segment_seconds:
            parser.error("need --segment-seconds > 0 and 0 < --stride-seconds <= --segment-seconds")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(model_from_argv(argv))
    args = parser.parse_args(argv)
    check_args(args, parser)
    check_device(args.device, parser)
    classifier = load_classifier(args, parser)
    label_kwargs = {"candidate_labels": args.labels, "hypothesis_template": args.template,
                    "label_texts": args.label_texts}
    try:
        prompt_set = classifier.prompt_set(**label_kwargs)
    except ValueError as error:
        parser.exit(EXIT_USAGE, f"stdd-classify: error: {error}\n")
    call_kwargs = {**label_kwargs, "top_k": args.top_k, "num_clips": args.num_clips,
                   "segment_seconds": args.segment_seconds, "stride_seconds": args.stride_seconds,
                   "timeout": args.timeout}
    table = ResultTable(list(args.videos), prompt_set.labels, timeline=args.segment_seconds is not None)
    printed_json = []

    def print_result(video: str, result: list[dict]):
        if args.json:  # a JSON list, written item by item
            text = json.dumps({"video": video, "result": result}, indent=2, allow_nan=False)
            print(("[\n" if not printed_json else ",\n") + text, end="", flush=True)
            printed_json.append(video)
        else:
            table.print_result(video, result)

    def report_error(video: str, error: Exception):
        print(f"stdd-classify: {video}: {error}", file=sys.stderr, flush=True)

    failed = classify_all(classifier, list(args.videos), args.batch_size, print_result, report_error, **call_kwargs)
    if args.json:
        print("\n]" if printed_json else "[]")
    if failed:
        print(f"stdd-classify: {failed} of {len(args.videos)} videos could not be classified.", file=sys.stderr)
        return EXIT_SOME_VIDEOS_FAILED
    return 0


if __name__ == "__main__":
    sys.exit(main())
