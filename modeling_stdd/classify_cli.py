"""
`stdd-classify`: zero-shot action labels for video files from the command line.

    stdd-classify video.mp4 other.mp4 --labels "dancing, playing guitar" [--model DIR] [--label-texts FILE]
                  [--top-k K] [--num-clips N] [--segment-seconds S [--stride-seconds S]] [--batch-size B]
                  [--timeout S] [--json]
"""

import argparse
import json
import sys

from .pipeline_stdd import DEFAULT_HYPOTHESIS_TEMPLATE, TASK
from .video_download import DEFAULT_DOWNLOAD_TIMEOUT_SECONDS


DEFAULT_MODEL = "openai/clip-vit-base-patch16"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stdd-classify", description="Rank free-text action labels for videos with an STDD model (zero-shot)."
    )
    parser.add_argument("videos", nargs="+", metavar="VIDEO", help="video files or http(s) URLs")
    parser.add_argument("--labels", help='candidate labels, comma-separated: "dancing, playing guitar"')
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"model folder or Hub id (default: {DEFAULT_MODEL})")
    parser.add_argument("--label-texts", help="prompts per label: a label-texts .json file or an ASKG .yml file")
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
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return parser


def format_ranking(ranking: list[dict], indent: str = "  ") -> list[str]:
    return [f"{indent}{prediction['score']:.3f}  {prediction['label']}" for prediction in ranking]


def format_result(video: str, result: list[dict]) -> str:
    """Readable lines of one video's ranking, or of each window of its timeline."""
    lines = [video]
    for entry in result:
        if "labels" in entry:
            lines.append(f"  [{entry['start']:.2f}s - {entry['end']:.2f}s]")
            lines.extend(format_ranking(entry["labels"], indent="    "))
        else:
            lines.extend(format_ranking([entry]))
    return "\n".join(lines)


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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.labels is None and args.label_texts is None:
        parser.error("give --labels (or --label-texts, whose labels then are the candidates)")

    # Imported here so that `--help` and argument errors answer without loading torch and transformers.
    from transformers import pipeline

    import modeling_stdd  # noqa: F401  (registers the task and the STDD classes)

    check_device(args.device, parser)
    try:
        classifier = pipeline(TASK, model=args.model, device=args.device)
        results = classifier(
            list(args.videos),
            candidate_labels=args.labels,
            hypothesis_template=args.template,
            label_texts=args.label_texts,
            top_k=args.top_k,
            num_clips=args.num_clips,
            segment_seconds=args.segment_seconds,
            stride_seconds=args.stride_seconds,
            batch_size=args.batch_size,
            timeout=args.timeout,
        )
    except (ValueError, OSError) as error:  # OSError: a model folder or Hub id that cannot be loaded
        parser.exit(2, f"stdd-classify: error: {error}\n")
    if args.json:
        print(json.dumps([{"video": video, "result": result} for video, result in zip(args.videos, results)], indent=2))
    else:
        print("\n".join(format_result(video, result) for video, result in zip(args.videos, results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
