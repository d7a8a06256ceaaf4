"""`python -m hub_card export ...` / `python -m hub_card push ...`: export an STDD model as a Hub repo, upload it."""

import argparse
import sys

from .export import DEFAULT_MAX_SHARD_SIZE, export_repo
from .push import push_repo


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m hub_card", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    export = commands.add_parser("export", help="write a complete Hub repo folder for a trained model")
    export.add_argument("--model-dir", required=True, help="saved STDDModel or CLIPModel folder (or a CLIP Hub id)")
    export.add_argument("--output-dir", required=True, help="the repo folder to write")
    export.add_argument(
        "--eval-results",
        nargs="+",
        metavar="FILE",
        help="evaluation results for the card's model-index, one file per protocol: the JSON of "
        "training/evaluate_zero_shot.py or training/train.py, or a list of results",
    )
    export.add_argument(
        "--label-texts",
        nargs="+",
        default=[],
        metavar="FILE",
        help="label-texts JSON or ASKG YAML files, or shipped dataset names (ucf101, hmdb51, ...), "
        "exported with their prompt embeddings, as are the model folder's own sets (train, eval)",
    )
    export.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    export.add_argument(
        "--repo-id", help="the Hub repo it is meant for (USER/NAME): the card's title, model name and examples"
    )
    export.add_argument(
        "--base-model",
        help="Hub id of the checkpoint the model was fine-tuned from (default: the training run's record); also the "
        "starting weights of --patch-ratio",
    )
    export.add_argument(
        "--patch-ratio", type=float,
        help="export r * starting checkpoint + (1 - r) * the model (weight patching, r in [0, 1])",
    )
    export.add_argument("--datasets", nargs="+", default=[], metavar="ID", help="Hub ids of the training data")
    export.add_argument("--max-shard-size", default=DEFAULT_MAX_SHARD_SIZE, help="split larger weights files")

    push = commands.add_parser(
        "push", help="upload an exported repo folder to the Hub, deleting the repo's files the folder does not hold"
    )
    push.add_argument("--repo-dir", required=True, help="folder written by `export`")
    push.add_argument("--repo-id", required=True, help="USER/NAME or ORGANIZATION/NAME")
    push.add_argument("--private", action="store_true", help="create the repo as private")
    push.add_argument("--revision", help="branch to upload to (created if missing; default main)")
    push.add_argument("--commit-message", help="message of the upload commit")
    push.add_argument("--dry-run", action="store_true", help="list the files and sizes that would be uploaded")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "export":
            result = export_repo(
                args.model_dir,
                args.output_dir,
                eval_results=args.eval_results,
                label_texts=args.label_texts,
                overwrite=args.overwrite,
                repo_id=args.repo_id,
                base_model=args.base_model,
                datasets=args.datasets,
                max_shard_size=args.max_shard_size,
                patch_ratio=args.patch_ratio,
            )
            for folder in result.removed_partial_dirs:
                print(f"Removed {folder}, left by an export that was interrupted")
            print(f"Exported {len(result.files)} files to {result.repo_dir}")
        else:
            print(
                push_repo(
                    args.repo_dir,
                    args.repo_id,
                    private=args.private,
                    revision=args.revision,
                    commit_message=args.commit_message,
                    dry_run=args.dry_run,
                )
            )
    except (ConnectionError, FileExistsError, FileNotFoundError, PermissionError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
