"""
Export a trained STDD model as a self-contained Hub repo folder: weights, config with `auto_map` and the custom
pipeline, processor and tokenizer files, the model code, label texts with their precomputed text embeddings, and
the model card.

The folder is assembled in a temporary sibling directory and renamed into place at the end, so a failed export
leaves nothing half-written and an existing export is only replaced when asked to (`overwrite=True`).
"""

import copy
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from transformers.dynamic_module_utils import get_relative_imports
from transformers.utils import CONFIG_NAME

import modeling_stdd
from modeling_stdd import STDDModel, STDDProcessor
from modeling_stdd.askg import LabelTexts
from modeling_stdd.checkpoint_files import check_model_folder
from modeling_stdd.configuration_stdd import STDD_VISION_FIELDS
from modeling_stdd.file_utils import (
    apply_default_permissions,
    make_staging_dir,
    move_into_place,
    remove_stale_staging_dirs,
)
from modeling_stdd.pipeline_stdd import ZeroShotVideoClassificationPipeline
from modeling_stdd.prompt_sets_stdd import (
    EXPORTED_LABEL_TEXTS_DIR,
    encode_prompt_set,
    label_prompts,
    resolve_label_texts,
    save_prompt_embeddings,
)
from training.reporting import TRAINING_CURVES_NAME
from training.run_record import read_run_record
from training.weight_patching import check_patch_ratio, patched_model

from .card import (
    TRANSFORMERS_TASK,
    CardContext,
    LabelTextSummary,
    card_metadata,
    check_repo_id,
    evaluation_scope,
    is_hub_model_id,
    read_all_eval_results,
    render_model_card,
)


PACKAGE_DIR = Path(modeling_stdd.__file__).parent
# Where `from_pretrained(..., trust_remote_code=True)` finds each class: "module.Class", the module being a flat file
# at the top of the repo (transformers' remote-code loader only copies flat sibling modules).
CONFIG_AUTO_MAP = {
    "AutoConfig": "configuration_stdd.STDDConfig",
    "AutoModel": "modeling_stdd.STDDModel",
    "AutoProcessor": "processing_stdd.STDDProcessor",
}
TOKENIZER_AUTO_MAP = {"AutoTokenizer": ["tokenization_stdd.STDDTokenizer", None]}
VIDEO_PROCESSOR_AUTO_MAP = {"AutoVideoProcessor": "video_processing_stdd.STDDVideoProcessor"}
CUSTOM_PIPELINES = {
    TRANSFORMERS_TASK: {
        "impl": f"pipeline_stdd.{ZeroShotVideoClassificationPipeline.__name__}",
        "pt": ["AutoModel"],
        "type": "multimodal",
    }
}
PROCESSOR_CONFIG_NAME = "processor_config.json"
TOKENIZER_CONFIG_NAME = "tokenizer_config.json"
CARD_NAME = "README.md"
# Files every export has; `check_repo_folder` also requires the weights and every module the auto_map names.
REQUIRED_FILES = (CONFIG_NAME, PROCESSOR_CONFIG_NAME, TOKENIZER_CONFIG_NAME, CARD_NAME)
WEIGHTS_NAMES = ("model.safetensors", "model.safetensors.index.json")
DEFAULT_MAX_SHARD_SIZE = "5GB"


@dataclass
class ExportResult:
    """Where the export went and what it holds."""

    repo_dir: Path
    files: list[str]
    label_texts: list[LabelTextSummary]
    # Staging folders `.NAME.partial-PID-*` that killed exports left next to `repo_dir`, removed by this one.
    removed_partial_dirs: list[Path] = field(default_factory=list)


# ----------------------------------------------------------------------------------------------------------------------
# Code files
# ----------------------------------------------------------------------------------------------------------------------


def code_entry_modules() -> list[str]:
    """The modules every `auto_map` and the custom pipeline point to, e.g. `["configuration_stdd", ...]`."""
    references = [
        *CONFIG_AUTO_MAP.values(),
        *(name for name in TOKENIZER_AUTO_MAP["AutoTokenizer"] if name is not None),
        *VIDEO_PROCESSOR_AUTO_MAP.values(),
        *(task["impl"] for task in CUSTOM_PIPELINES.values()),
    ]
    return sorted({reference.split(".")[0] for reference in references})


def code_files(code_dir: Path = PACKAGE_DIR) -> list[Path]:
    """
    The entry modules in `code_dir` and every module they import relatively, read with transformers' remote-code
    loader's own rule (`from .name import ...` -> `name.py` in the same folder). Raises `ValueError` naming the
    importing file when an import is not such a flat file: the loader could not ship or find it.
    """
    pending = [(f"{module}.py", "the auto_map") for module in code_entry_modules()]
    found: dict[str, Path] = {}
    while pending:
        name, imported_by = pending.pop()
        if name in found:
            continue
        path = code_dir / name
        if not path.is_file():
            raise ValueError(
                f"{imported_by} needs {name}, which is not a file in {code_dir}; remote code can only import "
                "flat sibling modules (`from .module import name`)"
            )
        found[name] = path
        pending.extend((f"{module}.py", name) for module in get_relative_imports(path))
    return sorted(found.values())


def copy_code_files(repo_dir: Path) -> list[str]:
    """Copy the model code into `repo_dir`, then check that every relative import resolves inside it."""
    for source in code_files():
        shutil.copyfile(source, repo_dir / source.name)
    return [path.name for path in code_files(repo_dir)]


# ----------------------------------------------------------------------------------------------------------------------
# Model, processor, label texts
# ----------------------------------------------------------------------------------------------------------------------


def update_json_file(path: Path, updates: dict) -> None:
    """Merge `updates` into the JSON object stored at `path`."""
    data = json.loads(path.read_text(encoding="utf-8"))
    data.update(updates)
    path.write_text(json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n", encoding="utf-8")


def save_processor(processor: STDDProcessor, repo_dir: Path) -> None:
    """Save the processor and tokenizer, each config pointing at its class in the shipped code."""
    processor.save_pretrained(repo_dir)
    processor_config = json.loads((repo_dir / PROCESSOR_CONFIG_NAME).read_text(encoding="utf-8"))
    video_processor_config = {**processor_config["video_processor"], "auto_map": VIDEO_PROCESSOR_AUTO_MAP}
    update_json_file(
        repo_dir / PROCESSOR_CONFIG_NAME,
        {"auto_map": {"AutoProcessor": CONFIG_AUTO_MAP["AutoProcessor"]}, "video_processor": video_processor_config},
    )
    update_json_file(repo_dir / TOKENIZER_CONFIG_NAME, {"auto_map": TOKENIZER_AUTO_MAP})


def label_text_set_name(source: str | os.PathLike) -> str:
    """The name a label-text source is exported under: a file's stem, or the name of a dataset shipped with stdd."""
    return Path(source).stem if Path(source).is_file() else str(source)


def model_label_text_files(model_dir: Path) -> list[Path]:
    """The label-text sets saved in a model folder (`label_texts/NAME.json`, e.g. training's `train` and `eval`)."""
    return sorted((model_dir / EXPORTED_LABEL_TEXTS_DIR).glob("*.json")) if model_dir.is_dir() else []


def with_model_label_texts(sources: list[str | os.PathLike], model_dir: Path) -> list[str | os.PathLike]:
    """`sources` plus the sets saved in the model folder whose names no given source has (a given one wins)."""
    names = {label_text_set_name(source) for source in sources}
    return [*sources, *(path for path in model_label_text_files(model_dir) if path.stem not in names)]


def training_curves_of(model_dir: Path) -> Path | None:
    """
    The training curves picture of a model folder saved by `training/train.py`: `training_curves.png` in the folder,
    or in the run's output folder that holds it (`OUTPUT_DIR/model`); None when there is none.
    """
    for folder in (model_dir, model_dir.parent):
        if (folder / TRAINING_CURVES_NAME).is_file():
            return folder / TRAINING_CURVES_NAME
    return None


def label_text_sources(label_texts: str | os.PathLike | Sequence[str | os.PathLike]) -> list[str | os.PathLike]:
    """The label-text sources as a list; a single file or dataset name (`"ucf101"`) is one source, not characters."""
    if isinstance(label_texts, (str, os.PathLike)):
        return [label_texts]
    return list(label_texts)


def resolve_all_label_texts(sources: Sequence[str | os.PathLike]) -> list[tuple[str, LabelTexts]]:
    """`(name, texts)` of each label-text file or shipped set name; their names, which become file names, must differ."""
    resolved = [(label_text_set_name(source), resolve_label_texts(source)[0]) for source in sources]
    names = [name for name, _ in resolved]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"several label-text sources share the names {duplicates}; rename the files")
    return resolved


def export_label_texts(
    model: STDDModel, processor: STDDProcessor, label_texts: list[tuple[str, LabelTexts]], repo_dir: Path
) -> list[LabelTextSummary]:
    """Write each set as `label_texts/NAME.json` and its prompt embeddings as `label_texts/NAME.safetensors`."""
    summaries = []
    for name, texts in label_texts:
        texts_file = repo_dir / EXPORTED_LABEL_TEXTS_DIR / f"{name}.json"
        texts.save(texts_file)
        prompt_set = encode_prompt_set(model, processor.tokenizer, label_prompts(None, label_texts=texts), grouped=True)
        embeddings_file = save_prompt_embeddings(texts_file, prompt_set.prompts, prompt_set.text_embeds)
        summaries.append(
            LabelTextSummary(
                name=name,
                num_classes=len(texts),
                num_prompts=len(prompt_set.prompts),
                source=texts.source,
                templates=texts.templates,
                files=[path.relative_to(repo_dir).as_posix() for path in (texts_file, embeddings_file)],
            )
        )
    return summaries


# ----------------------------------------------------------------------------------------------------------------------
# The repo folder
# ----------------------------------------------------------------------------------------------------------------------


def check_repo_folder(repo_dir: str | os.PathLike) -> Path:
    """
    Check that `repo_dir` holds a complete export: config with `auto_map` and `custom_pipelines`, weights, processor
    and tokenizer configs, the modules the `auto_map` names, and the card. Raises `FileNotFoundError` when the folder
    does not exist, `ValueError` listing what is missing otherwise.
    """
    repo_dir = Path(repo_dir)
    if not repo_dir.is_dir():
        raise FileNotFoundError(f"repo folder {repo_dir} does not exist")
    missing = [name for name in REQUIRED_FILES if not (repo_dir / name).is_file()]
    if not any((repo_dir / name).is_file() for name in WEIGHTS_NAMES):
        missing.append(" or ".join(WEIGHTS_NAMES))
    missing += [f"{module}.py" for module in code_entry_modules() if not (repo_dir / f"{module}.py").is_file()]
    if (repo_dir / CONFIG_NAME).is_file():
        config = json.loads((repo_dir / CONFIG_NAME).read_text(encoding="utf-8"))
        missing += [f"{CONFIG_NAME}:{key}" for key in ("auto_map", "custom_pipelines") if key not in config]
    if missing:
        raise ValueError(
            f"{repo_dir} is not a complete STDD export; missing: {', '.join(missing)}. "
            "Create it with `python -m hub_card export`."
        )
    return repo_dir


def base_model_of(model: STDDModel, base_model: str | None, record: dict | None = None) -> str | None:
    """
    The given base model, else the starting checkpoint its training run recorded, else the model's `name_or_path`,
    whichever first is a Hub id. A given base model that is a folder here (the starting weights of weight patching)
    is not named on the card.
    """
    if base_model is not None and not os.path.exists(base_model):
        return base_model
    recorded = (record or {}).get("base_model")
    if is_hub_model_id(recorded):
        return recorded
    return model.name_or_path if is_hub_model_id(model.name_or_path) else None


def card_context(
    model: STDDModel, model_name: str, repo_id: str, base_model: str | None, label_texts: list[LabelTextSummary],
    **facts,
) -> CardContext:
    """The card's facts about `model`; `facts` are the further `CardContext` fields (evaluation scope, recipe, ...)."""
    vision_config = model.config.vision_config
    return CardContext(
        model_name=model_name,
        repo_id=repo_id,
        base_model=base_model,
        vision_settings={name: getattr(vision_config, name) for name in STDD_VISION_FIELDS},
        image_size=vision_config.image_size,
        patch_size=vision_config.patch_size,
        num_parameters=model.num_parameters(),
        label_texts=label_texts,
        **facts,
    )


def check_output_dir(output_dir: Path, overwrite: bool) -> None:
    """Refuse to replace an existing, non-empty folder unless `overwrite`; refuse to replace a file at all."""
    if output_dir.exists() and not output_dir.is_dir():
        raise FileExistsError(f"{output_dir} exists and is not a folder")
    if output_dir.is_dir() and any(output_dir.iterdir()) and not overwrite:
        raise FileExistsError(f"{output_dir} already exists and is not empty; pass --overwrite to replace it")


def input_paths(
    model_dir: Path, eval_results: Sequence[str | os.PathLike], label_texts: Sequence[str | os.PathLike]
) -> list[Path]:
    """
    The files and folders on this machine that the export reads: the model folder (unless it is a Hub id), the
    evaluation results files and the label-text files (not the names of shipped sets).
    """
    paths = [model_dir] if model_dir.is_dir() else []
    paths += [Path(path) for path in eval_results]
    paths += [Path(source) for source in label_texts if Path(source).is_file()]
    return paths


def check_output_outside_inputs(output_dir: Path, inputs: Sequence[Path]) -> None:
    """Refuse an output folder that is an input or holds one: writing the export there would delete that input."""
    resolved_output = output_dir.resolve()
    for path in inputs:
        resolved_input = path.resolve()
        if resolved_output == resolved_input or resolved_output in resolved_input.parents:
            raise ValueError(
                f"the output folder {output_dir} is or contains the input {path}; exporting there would delete it, "
                "choose another output folder"
            )


def export_repo(
    model_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    eval_results: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    label_texts: str | os.PathLike | Sequence[str | os.PathLike] = (),
    overwrite: bool = False,
    repo_id: str | None = None,
    base_model: str | None = None,
    datasets: Sequence[str] = (),
    max_shard_size: int | str = DEFAULT_MAX_SHARD_SIZE,
    patch_ratio: float | None = None,
) -> ExportResult:
    """
    Export the STDD (or plain CLIP) checkpoint in `model_dir` as a Hub repo folder at `output_dir`.

    Args:
        model_dir: a folder with a saved `STDDModel` or `CLIPModel` (with or without a saved `STDDProcessor`), or
            the Hub id of a CLIP checkpoint.
        output_dir: the repo folder to create; an existing non-empty one is replaced only with `overwrite=True`. It
            may not be, or contain, one of the inputs.
        eval_results: JSON files of evaluation results for the card's `model-index` (see `read_eval_results`), one
            per protocol, or a single one.
        label_texts: label-texts JSON or ASKG YAML files, or names of datasets shipped with stdd (`DATASETS`), or
            a single one of those; each is exported with its prompt embeddings, as are the sets saved in the model
            folder (training's `train` and `eval`) that none of these replaces by name.
        repo_id: the Hub repo the folder is meant for: the card's title, model name and examples (default: the
            output folder's name, under `your-username/`).
        base_model: the Hub id of the checkpoint the model was fine-tuned from (default: the one its training run
            recorded, else the model's `name_or_path`, when that is a Hub id); also the starting weights of
            `patch_ratio`.
        datasets: Hub ids of the training data sets, for the card's metadata.
        max_shard_size: weights files larger than this are split into shards.
        patch_ratio: export `patch_ratio * starting checkpoint + (1 - patch_ratio) * the model` (weight patching;
            the starting checkpoint is `base_model` or the one the training run recorded in `model_dir`).
    """
    if not (Path(model_dir) / CONFIG_NAME).is_file() and not is_hub_model_id(str(model_dir)):
        raise FileNotFoundError(f"{model_dir} is neither a saved model folder (with {CONFIG_NAME}) nor a Hub model id")
    model_dir, output_dir = Path(model_dir), Path(output_dir).absolute()
    if model_dir.is_dir():
        check_model_folder(model_dir)
    eval_results = [] if eval_results is None else label_text_sources(eval_results)
    label_texts = with_model_label_texts(label_text_sources(label_texts), model_dir)
    check_output_outside_inputs(output_dir, input_paths(model_dir, eval_results, label_texts))
    check_output_dir(output_dir, overwrite)
    evaluation = read_all_eval_results(eval_results)
    if patch_ratio is not None:
        check_patch_ratio(patch_ratio)
    resolved_label_texts = resolve_all_label_texts(label_texts)
    model_name = check_repo_id(repo_id).split("/")[1] if repo_id is not None else output_dir.name
    repo_id = repo_id or f"your-username/{model_name}"
    training_curves = training_curves_of(model_dir)

    model = STDDModel.from_pretrained(str(model_dir)).eval()
    processor = STDDProcessor.for_checkpoint(model_dir)
    record = read_run_record(model_dir) if model_dir.is_dir() else None
    weight_patching = None
    if patch_ratio is not None:
        model, patched_from = patched_model(model, model_dir, patch_ratio, base_model)
        weight_patching = {"ratio": patch_ratio, "fine_tuned": round(1 - patch_ratio, 6), "base_model": patched_from}
    base_model = base_model_of(model, base_model, record)
    metadata = card_metadata(model_name, base_model=base_model, datasets=datasets, eval_results=evaluation)

    output_dir.parent.mkdir(parents=True, exist_ok=True)
    removed_partial_dirs = remove_stale_staging_dirs(output_dir)
    staging_dir = make_staging_dir(output_dir)
    try:
        model.config.auto_map = copy.deepcopy(CONFIG_AUTO_MAP)
        model.config.custom_pipelines = copy.deepcopy(CUSTOM_PIPELINES)
        model.save_pretrained(staging_dir, max_shard_size=max_shard_size)
        save_processor(processor, staging_dir)
        copy_code_files(staging_dir)
        summaries = export_label_texts(model, processor, resolved_label_texts, staging_dir)
        if training_curves is not None:
            shutil.copyfile(training_curves, staging_dir / TRAINING_CURVES_NAME)
        facts = dict(
            evaluation_scope=evaluation_scope(eval_results) if eval_results else None,
            recipe=(record or {}).get("recipe"),
            training_settings=(record or {}).get("recipe_settings", {}),
            weight_patching=weight_patching,
            training_curves=TRAINING_CURVES_NAME if training_curves is not None else None,
        )
        card = render_model_card(metadata, card_context(model, model_name, repo_id, base_model, summaries, **facts))
        card.save(staging_dir / CARD_NAME)
        check_repo_folder(staging_dir)
        apply_default_permissions(staging_dir)
        files = sorted(path.relative_to(staging_dir).as_posix() for path in staging_dir.rglob("*") if path.is_file())
        check_output_dir(output_dir, overwrite)
        move_into_place(staging_dir, output_dir)
    finally:
        shutil.rmtree(staging_dir, ignore_errors=True)
    return ExportResult(output_dir, files, summaries, removed_partial_dirs)


__all__ = [
    "CONFIG_AUTO_MAP",
    "CUSTOM_PIPELINES",
    "ExportResult",
    "check_repo_folder",
    "code_files",
    "export_repo",
]
