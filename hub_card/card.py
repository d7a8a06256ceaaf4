"""
The model card of an exported STDD repo: metadata, the evaluation results turned into a `model-index`, the
rendering of `model_card_template.md`, and the checks that can be made without the Hub.
"""

import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData
from huggingface_hub.repocard_data import eval_results_to_model_index, model_index_to_eval_results
from huggingface_hub.utils import HFValidationError, validate_repo_id


CARD_TEMPLATE = Path(__file__).with_name("model_card_template.md")
# The license of this project's code (pyproject.toml); CLIP's released weights are MIT-licensed as well.
LICENSE = "mit"
LIBRARY_NAME = "transformers"
# The Hub has no zero-shot video task; its video classification task is the closest, the tags say the rest.
PIPELINE_TAG = "video-classification"
TRANSFORMERS_TASK = "zero-shot-video-classification"
TAGS = ("stdd", "clip", "video", "action-recognition", "zero-shot", TRANSFORMERS_TASK, "custom_code")
TASK_NAME = "Zero-shot action recognition"
# Sections whose headings the rendered card must contain (checked by `check_model_card`).
REQUIRED_SECTIONS = ("How to use", "Training", "Label texts", "Limitations", "Citation")
REQUIRED_METADATA = ("library_name", "pipeline_tag", "license", "tags")
EVAL_RESULT_FIELDS = {
    "dataset": "dataset_type",
    "dataset_name": "dataset_name",
    "config": "dataset_config",
    "split": "dataset_split",
    "metric": "metric_type",
    "metric_name": "metric_name",
    "value": "metric_value",
}
REQUIRED_EVAL_FIELDS = ("dataset", "metric", "value")


@dataclass
class LabelTextSummary:
    """What the card says about one exported label-text set."""

    name: str
    num_classes: int
    num_prompts: int
    source: str | None
    templates: list[str] | None
    files: list[str]


@dataclass
class CardContext:
    """Everything the card template needs besides the metadata."""

    model_name: str
    repo_id: str
    base_model: str | None
    vision_settings: dict
    image_size: int
    patch_size: int
    num_parameters: int
    label_texts: list[LabelTextSummary] = field(default_factory=list)
    training_curves: str | None = None
    # The heading sentence of the evaluation table (`evaluation_scope`): zero-shot only when no class was seen.
    evaluation_scope: str | None = None
    # The training run's recipe and settings (its `training_settings.json`), and the weight patching of the export.
    recipe: str | None = None
    training_settings: dict = field(default_factory=dict)
    weight_patching: dict | None = None


def check_repo_id(repo_id: str) -> str:
    """A `namespace/name` repo id, checked with huggingface_hub's rules; raises `ValueError` saying what is wrong."""
    if not isinstance(repo_id, str) or repo_id.count("/") != 1:
        raise ValueError(f"invalid repo id {repo_id!r}: expected USER/NAME (or ORGANIZATION/NAME)")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise ValueError(f"invalid repo id {repo_id!r}: {error}") from error
    return repo_id


def is_hub_model_id(value: str | None) -> bool:
    """True for `namespace/name` strings that are valid Hub repo ids and not paths on this machine."""
    return bool(value) and value.count("/") == 1 and _is_repo_id_not_path(value)


def _is_repo_id_not_path(value: str) -> bool:
    """True when huggingface_hub accepts `value` as a repo id and no file or folder here has that name."""
    if os.path.exists(value):
        return False
    try:
        validate_repo_id(value)
    except HFValidationError:
        return False
    return True


def read_all_eval_results(paths: str | os.PathLike | Sequence[str | os.PathLike]) -> list[EvalResult]:
    """`read_eval_results` of one file or of several (one per protocol, say), in order."""
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    return [result for path in paths for result in read_eval_results(path)]


def read_eval_results(path: str | os.PathLike) -> list[EvalResult]:
    """
    Read evaluation results from a JSON file in one of three forms:

    - what `training/evaluate_zero_shot.py` writes (`{"protocol": "ucf101", "mean": {"top1": ...}, "std": ...}`):
      one result per metric, `mean ± std` over the protocol's splits;
    - what `training/train.py` writes (`eval_results.json`, `{"zero_shot": {"stdd": {"top1": ...}, ...}}`): the
      STDD run's zero-shot figures on the training job's held-out classes, the dataset named by the job's
      `eval_data` only when that is a Hub dataset id (a local path would leak onto the public card);
    - `{"results": [entry, ...]}` or a list of entries, each entry

        {"dataset": "ucf101", "dataset_name": "UCF101", "split": "test", "config": "split_1",
         "metric": "accuracy", "metric_name": "Top-1 accuracy", "value": 85.3, "std": 0.4,
         "num_classes": 101, "num_videos": 3783}

      with `dataset`, `metric` and `value` (a number) required; `std`, `num_classes` and `num_videos` are optional.

    The model-index value is always a number; the std over splits and how many classes and videos were scored go
    into the metric's name, so that the card says what a figure was measured on. The task is zero-shot action
    recognition. Errors name the file, the entry and the field.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"evaluation results file {path} does not exist") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON: {error}") from error
    entries = stdd_output_entries(data, path) if isinstance(data, Mapping) else None
    if entries is None:
        entries = data.get("results") if isinstance(data, Mapping) else data
    if not isinstance(entries, list) or not entries:
        raise ValueError(
            f'{path}: expected a non-empty list of results, an object with a "results" list, or the output of '
            "training/train.py or training/evaluate_zero_shot.py"
        )
    return [_eval_result(entry, f"{path}: results[{index}]") for index, entry in enumerate(entries)]


METRIC_NAMES = {"top1": "Top-1 accuracy", "top5": "Top-5 accuracy"}
# The dataset named on the card for train.py's results: its embedded job has no --eval-data, and an --eval-data that
# is a folder or list file on the training machine is not named, so the public card does not show a local path.
EMBEDDED_TRAINING_DATASET = "synthetic-motion"
LOCAL_TRAINING_DATASET = "local-video-data"


def stdd_output_entries(data: Mapping, path: Path) -> list[dict] | None:
    """Result entries from the JSON of `evaluate_zero_shot.py` or `train.py` read from `path`; None for others."""
    if isinstance(data.get("mean"), Mapping) and isinstance(data.get("std"), Mapping) and "protocol" in data:
        return protocol_entries(data, path)
    stdd_run = data.get("zero_shot", {}).get("stdd") if isinstance(data.get("zero_shot"), Mapping) else None
    if isinstance(stdd_run, Mapping):
        return training_entries(data, stdd_run, path)
    return None


def protocol_entries(data: Mapping, path: Path) -> list[dict]:
    """One entry per metric of `evaluate_zero_shot.py`'s output: the mean over the protocol's splits, and its std."""
    entries = []
    num_classes = _split_counts(data, "num_classes", path)
    num_videos = _split_counts(data, "num_videos", path)
    for name, mean in data["mean"].items():
        if name not in data["std"]:
            raise ValueError(f"{path}: std has no value for {name!r}, which mean has")
        entries.append(
            {
                "dataset": str(data["protocol"]),
                "split": "test",
                "metric": f"{name}_accuracy",
                "metric_name": METRIC_NAMES.get(name, name),
                "value": _finite_number(mean, f"{path}: mean[{name!r}]"),
                "std": _finite_number(data["std"][name], f"{path}: std[{name!r}]"),
                "num_splits": len(data.get("splits") or {}) or None,
                "num_classes": num_classes,
                "num_videos": num_videos,
            }
        )
    return entries


def _split_counts(data: Mapping, key: str, path: Path) -> int | list[int] | None:
    """A per-split count of evaluate_zero_shot.py's output (`{split: n}`): one number when all splits agree."""
    counts = data.get(key)
    if counts is None:
        return None
    if not isinstance(counts, Mapping) or not all(_is_count(count) for count in counts.values()):
        raise ValueError(f"{path}: {key} must map each split to a count, got {counts!r}")
    values = list(counts.values())
    return values[0] if len(set(values)) == 1 else values


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def training_entries(data: Mapping, stdd_run: Mapping, path: Path) -> list[dict]:
    """
    One entry per metric of the STDD run in `train.py`'s output, on the training job's evaluation classes ("held-out
    classes" only when none of them was a training class).
    """
    settings = data.get("settings")
    eval_data = settings.get("eval_data") if isinstance(settings, Mapping) else None
    if eval_data is None:
        dataset = EMBEDDED_TRAINING_DATASET
    else:
        dataset = eval_data if is_hub_dataset_id(eval_data) else LOCAL_TRAINING_DATASET
    overlaps = class_overlaps(data)
    split = "held-out classes" if overlaps and all(item.get("zero_shot") for item in overlaps) else "evaluation classes"
    videos = data.get("zero_shot_videos", {}).get("stdd", {}) if isinstance(data.get("zero_shot_videos"), Mapping) else {}
    return [
        {
            "dataset": dataset,
            "split": split,
            "metric": f"{name}_accuracy",
            "metric_name": METRIC_NAMES.get(name, name),
            "value": _finite_number(value, f"{path}: zero_shot.stdd[{name!r}]"),
            "num_classes": overlaps[0].get("num_eval_classes") if overlaps else None,
            "num_videos": videos.get("num_videos"),
        }
        for name, value in stdd_run.items()
    ]


def class_overlaps(data) -> list[Mapping]:
    """
    The `class_overlap` records of a results JSON: one for `train.py`'s output, one per split for that of
    `evaluate_zero_shot.py` (when the model's training run recorded its classes); [] when there are none.
    """
    overlap = data.get("class_overlap") if isinstance(data, Mapping) else None
    if isinstance(overlap, Mapping) and "zero_shot" in overlap:
        return [overlap]
    if isinstance(overlap, Mapping):
        return [item for item in overlap.values() if isinstance(item, Mapping) and "zero_shot" in item]
    return []


def evaluation_scope(paths: str | os.PathLike | Sequence[str | os.PathLike]) -> str:
    """
    What the card says the evaluation figures are: zero-shot (classes not seen in training) only when every results
    file records that no evaluation class was a training class; otherwise how many were seen, or that it is unknown.
    """
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    files_overlaps = [class_overlaps(json.loads(Path(path).read_text(encoding="utf-8"))) for path in paths]
    overlaps = [overlap for file_overlaps in files_overlaps for overlap in file_overlaps]
    if not all(files_overlaps):
        return "Results (whether the evaluation classes were seen in training was not recorded):"
    if all(item["zero_shot"] for item in overlaps):
        return "Zero-shot results (classes not seen in training):"
    seen = [item["description"] for item in overlaps if not item["zero_shot"]]
    return f"Results, not zero-shot ({'; '.join(dict.fromkeys(seen))}):"


def is_hub_dataset_id(value) -> bool:
    """
    True for `name` or `namespace/name` strings that `training/data.py` loads as Hub dataset ids (no file suffix) and
    huggingface_hub accepts as repo ids; False for paths, such as a local folder or list file, and for strings that
    name a file or folder here.
    """
    if not isinstance(value, str) or not re.fullmatch(r"[\w.-]+(/[\w.-]+)?", value) or Path(value).suffix:
        return False
    return _is_repo_id_not_path(value)


def _is_finite_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _finite_number(value, where: str) -> int | float:
    if not _is_finite_number(value):
        raise ValueError(f"{where} must be a finite number, got {value!r}")
    return value


# Optional entry fields that describe a figure; they become part of the metric's name on the card.
DESCRIPTION_FIELDS = ("std", "num_splits", "num_classes", "num_videos")


def _eval_result(entry, where: str) -> EvalResult:
    if not isinstance(entry, Mapping):
        raise ValueError(f"{where}: expected an object, got {type(entry).__name__}")
    entry = {name: value for name, value in entry.items() if not (name in DESCRIPTION_FIELDS and value is None)}
    unknown = sorted(set(entry) - set(EVAL_RESULT_FIELDS) - set(DESCRIPTION_FIELDS))
    if unknown:
        raise ValueError(
            f"{where}: unknown fields {unknown}; allowed: {sorted([*EVAL_RESULT_FIELDS, *DESCRIPTION_FIELDS])}"
        )
    missing = [name for name in REQUIRED_EVAL_FIELDS if entry.get(name) in (None, "")]
    if missing:
        raise ValueError(f"{where}: missing required fields {missing}")
    if not _is_finite_number(entry["value"]):
        raise ValueError(
            f"{where}: value must be a finite number (a mean over splits as the number, its spread as \"std\"), "
            f"got {entry['value']!r}"
        )
    if "std" in entry and not _is_finite_number(entry["std"]):
        raise ValueError(f"{where}: std must be a finite number, got {entry['std']!r}")
    for name in ("num_splits", "num_classes", "num_videos"):
        if name in entry and not (_is_count(entry[name]) or (
            isinstance(entry[name], list) and entry[name] and all(map(_is_count, entry[name]))
        )):
            raise ValueError(f"{where}: {name} must be a count (or a list of counts per split), got {entry[name]!r}")
    for name in set(entry) - {"value", *DESCRIPTION_FIELDS}:
        if not isinstance(entry[name], str):
            raise ValueError(f"{where}: {name} must be a string, got {entry[name]!r}")
    fields = {EVAL_RESULT_FIELDS[name]: entry[name] for name in entry if name in EVAL_RESULT_FIELDS}
    fields.setdefault("dataset_name", entry["dataset"])
    fields["metric_name"] = described_metric_name(entry.get("metric_name") or entry["metric"], entry)
    return EvalResult(task_type=PIPELINE_TAG, task_name=TASK_NAME, **fields)


def described_metric_name(name: str, entry: Mapping) -> str:
    """
    `name` followed by what the figure was measured on, e.g. "Top-1 accuracy (mean ± std 9.4 over 3 splits; 101
    classes, 3783 videos)"; `name` alone when the entry says nothing more.
    """
    details = []
    if "std" in entry:
        splits = f" over {entry['num_splits']} splits" if "num_splits" in entry else " over splits"
        details.append(f"mean, std {entry['std']:.1f}{splits}")
    per_split = " per split" if "num_splits" in entry else ""
    counts = [
        f"{'/'.join(map(str, entry[key])) if isinstance(entry[key], list) else entry[key]} {noun}{per_split}"
        for key, noun in (("num_classes", "classes"), ("num_videos", "videos")) if key in entry
    ]
    if counts:
        details.append(", ".join(counts))
    return f"{name} ({'; '.join(details)})" if details else name


def card_metadata(
    model_name: str,
    base_model: str | None = None,
    datasets: Sequence[str] = (),
    eval_results: Sequence[EvalResult] = (),
) -> ModelCardData:
    """The card's YAML metadata; `model-index` is built from `eval_results` (named `model_name`)."""
    if base_model is not None and not is_hub_model_id(base_model):
        raise ValueError(f"base_model must be a Hub model id such as 'openai/clip-vit-base-patch16': {base_model!r}")
    metrics = sorted({result.metric_type for result in eval_results})
    return ModelCardData(
        library_name=LIBRARY_NAME,
        pipeline_tag=PIPELINE_TAG,
        license=LICENSE,
        tags=list(TAGS),
        base_model=base_model,
        datasets=list(datasets) or None,
        metrics=metrics or None,
        model_name=model_name,
        eval_results=list(eval_results) or None,
    )


def render_model_card(metadata: ModelCardData, context: CardContext) -> ModelCard:
    """Fill `model_card_template.md` with the metadata and the export's facts."""
    return ModelCard.from_template(
        metadata,
        template_path=str(CARD_TEMPLATE),
        transformers_task=TRANSFORMERS_TASK,
        eval_results=metadata.eval_results or [],
        **vars(context),
    )


def check_model_card(text: str) -> ModelCard:
    """
    Check a model card OFFLINE, as far as that is possible: the YAML block parses into huggingface_hub's
    `ModelCardData`, the required metadata fields are present, `base_model` is a Hub model id, `model-index`
    round-trips through huggingface_hub's eval-results parsing, and the body has the required sections.

    This is not the Hub's validation (`ModelCard.validate()`, which posts the card to the Hub API); the Hub may
    still reject, for example, a dataset or metric id it does not know. Returns the parsed card; raises
    `ValueError` naming the first problem.
    """
    if not text.startswith("---"):
        raise ValueError("model card has no YAML metadata block at its top")
    try:
        card = ModelCard(text)
    except ValueError as error:
        raise ValueError(f"model card metadata does not parse into huggingface_hub's ModelCardData: {error}") from error
    metadata = card.data.to_dict()
    missing = [name for name in REQUIRED_METADATA if not metadata.get(name)]
    if missing:
        raise ValueError(f"model card metadata lacks the required fields {missing}")
    if "base_model" in metadata and not is_hub_model_id(metadata["base_model"]):
        raise ValueError(f"model card base_model {metadata['base_model']!r} is not a Hub model id")
    if "model-index" in metadata:
        _check_model_index_round_trip(metadata["model-index"])
    headings = set(re.findall(r"^#+\s+(.+?)\s*$", card.text, flags=re.MULTILINE))
    absent = [section for section in REQUIRED_SECTIONS if section not in headings]
    if absent:
        raise ValueError(f"model card lacks the sections {absent}")
    return card


def _check_model_index_round_trip(model_index: list) -> None:
    try:
        model_name, eval_results = model_index_to_eval_results(model_index)
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"model card model-index cannot be parsed: {error!r}") from error
    if eval_results_to_model_index(model_name, eval_results) != model_index:
        raise ValueError("model card model-index does not round-trip through huggingface_hub's eval results")


__all__ = [
    "CardContext",
    "LabelTextSummary",
    "card_metadata",
    "check_model_card",
    "check_repo_id",
    "is_hub_model_id",
    "read_all_eval_results",
    "read_eval_results",
    "render_model_card",
]
