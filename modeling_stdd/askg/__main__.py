"""
Command line for ASKG files and label texts:

    python -m modeling_stdd.askg validate FILE [FILE ...] [--strict]
    python -m modeling_stdd.askg verbalize FILE [FILE ...] --out FILE
    python -m modeling_stdd.askg generate --labels FILE --out FILE [--backend openai|transformers] [--model NAME]
    python -m modeling_stdd.askg prompts FILE [FILE ...] --out label_texts.json [--templates FILE [--num-templates N]]

Several input files (an ASKG file and its clause file) are merged by class name, whatever its spelling. `validate`
reports every problem of the files as written; `verbalize` and `prompts` skip the items they cannot use, with a
warning naming the file, class, field and item, and use the rest of the class.
"""

import argparse
import logging
import statistics
import sys
from pathlib import Path

from .generator import ASKGGenerator, BackendError, OpenAIChatBackend, TransformersChatBackend, read_labels
from .prompts import DEFAULT_TEMPLATES, NUM_TEMPLATES_HELP, TEMPLATES_HELP, LabelTexts, templates_from_options
from .schema import GRAPH_FIELDS, ValidationReport, read_label_db, read_usable_label_db, validate_entries
from .schema import write_askg_file
from .verbalizer import verbalize_entries


def _validate(args) -> int:
    report = ValidationReport()
    entries = read_label_db(*args.files, report=report)
    report.issues.extend(validate_entries(entries).issues)
    print(report.format())
    return 0 if report.ok(strict=args.strict) else 1


def _verbalize(args) -> int:
    entries = verbalize_entries(read_usable_label_db(*args.files, fields=GRAPH_FIELDS))
    write_askg_file(entries, args.out)
    print(f"wrote the clauses of {len(entries)} classes to {args.out}")
    return 0


def _backend(args):
    if args.backend == "transformers":
        if not args.model:
            raise ValueError("--backend transformers needs --model (a Hub id or a local path)")
        return TransformersChatBackend.from_pretrained(args.model, max_new_tokens=args.max_new_tokens)
    return OpenAIChatBackend(
        model=args.model,
        base_url=args.base_url,
        api_key_env=args.api_key_env,
        timeout_seconds=args.timeout,
        max_retries=args.max_retries,
        max_tokens=args.max_new_tokens,
    )


def _generate(args) -> int:
    generator = ASKGGenerator(_backend(args), clause_stage=args.clause_stage)
    result = generator.run(read_labels(args.labels), args.out)
    print(
        f"{len(result.written)} classes written, {len(result.skipped)} already in {args.out}, "
        f"{len(result.failed)} failed"
    )
    for label, reason in result.failed.items():
        print(f"failed {label!r}: {reason}", file=sys.stderr)
    return 1 if result.failed else 0


def _prompts(args) -> int:
    templates = templates_from_options(args.templates, args.num_templates) or DEFAULT_TEMPLATES
    label_texts = LabelTexts.from_askg_files(*args.files, templates=templates)
    label_texts.save(args.out)
    counts = [len(prompts) for prompts in label_texts.texts.values()]
    print(
        f"{len(label_texts)} classes, {len(label_texts.templates)} templates, prompts per class: min {min(counts)}, "
        f"median {statistics.median(counts):g}, max {max(counts)}, total {sum(counts)}; wrote {args.out}"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m modeling_stdd.askg", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    validate = commands.add_parser("validate", help="check ASKG / clause files; exit 1 on errors")
    validate.add_argument("files", nargs="+", type=Path)
    validate.add_argument("--strict", action="store_true", help="fail on warnings too")
    validate.set_defaults(run=_validate)

    verbalize = commands.add_parser("verbalize", help="make the three clause lists from the graphs, by rules")
    verbalize.add_argument("files", nargs="+", type=Path)
    verbalize.add_argument("--out", required=True, type=Path)
    verbalize.set_defaults(run=_verbalize)

    generate = commands.add_parser("generate", help="write graphs and clauses with a language model (resumable)")
    generate.add_argument("--labels", required=True, type=Path, help="class names: .txt (one a line), .json, .csv")
    generate.add_argument("--out", required=True, type=Path)
    generate.add_argument("--backend", choices=("openai", "transformers"), default="openai")
    generate.add_argument("--model", help="model name (default: $OPENAI_MODEL) or, for transformers, a Hub id/path")
    generate.add_argument("--base-url", help="chat-completions server (default: $OPENAI_BASE_URL or OpenAI)")
    generate.add_argument("--api-key-env", default="OPENAI_API_KEY", help="environment variable holding the key")
    generate.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
    generate.add_argument("--max-retries", type=int, default=3)
    generate.add_argument("--max-new-tokens", type=int, default=2048)
    generate.add_argument("--clause-stage", choices=("llm", "rules"), default="llm")
    generate.set_defaults(run=_generate)

    prompts = commands.add_parser("prompts", help="build the prompt set of every class as label-texts JSON")
    prompts.add_argument("files", nargs="+", type=Path)
    prompts.add_argument("--out", required=True, type=Path)
    prompts.add_argument("--templates", type=Path, help=TEMPLATES_HELP)
    prompts.add_argument("--num-templates", type=int, help=NUM_TEMPLATES_HELP)
    prompts.set_defaults(run=_prompts)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        return args.run(args)
    except (ValueError, OSError, BackendError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
