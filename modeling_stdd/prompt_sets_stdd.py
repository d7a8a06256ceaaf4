"""
Prompt sets: the text side of zero-shot classification, from the label texts a user names to the encoded prompts
that videos are scored against. The pipeline, training, evaluation and the Hub export all go this one way:

    a label-text source           --resolve_label_texts-->  label texts (label -> prompts, a `LabelTexts`)
    candidate labels + template
        + label texts             --label_prompts-------->  each label's prompts (its label texts, else the template's)
    each label's prompts          --encode_prompt_set---->  a `PromptSet` (labels, prompts, text embeddings, groups)

A `PromptSet`'s text embeddings are the text tower's outputs L2-normalized, in float32: the form class scores take,
and the form stored next to a label-texts JSON file (`save_prompt_embeddings`) by training and by the export.

This file is also shipped as Hub remote code with the pipeline: it imports its siblings relatively and flat, reads
label-texts JSON files itself, and reads ASKG YAML files and shipped sets through the installed `modeling_stdd.askg`
package only when asked to.
"""

import hashlib
import importlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from transformers.utils import cached_file, logging

from .file_utils import read_json_file
from .hypothesis_template import check_hypothesis_template
from .modeling_stdd import check_prompts


logger = logging.get_logger(__name__)

DEFAULT_HYPOTHESIS_TEMPLATE = "a video of a person {}."
# Prompts encoded per text-tower call (label texts can hold thousands of prompts).
TEXT_BATCH_SIZE = 256
# Folder of a model repo that holds exported label-text sets (NAME.json) and their prompt embeddings (NAME.safetensors).
EXPORTED_LABEL_TEXTS_DIR = "label_texts"
# Stored prompt embeddings are used only if re-encoding this many of their prompts gives the same directions.
PROMPTS_TO_VERIFY = 4
MIN_VERIFIED_COSINE = 0.9999


class LabelTextsNotFoundError(FileNotFoundError, ValueError):
    """A label-text source that is no file and no set of that name: a missing file, and a bad argument."""


# ----------------------------------------------------------------------------------------------------------------------
# Labels
# ----------------------------------------------------------------------------------------------------------------------


def candidate_label_list(candidate_labels: str | Sequence[str]) -> list[str]:
    """
    Labels from a list or a comma-separated string, stripped; empty, blank or duplicate labels (also ones that differ
    only in case) are errors.
    """
    if isinstance(candidate_labels, str):
        candidate_labels = candidate_labels.split(",")
    if not isinstance(candidate_labels, Sequence) or not all(isinstance(label, str) for label in candidate_labels):
        raise ValueError(
            f"candidate_labels must be a list of strings or a comma-separated string, got {candidate_labels!r}."
        )
    labels = [label.strip() for label in candidate_labels]
    if not labels:
        raise ValueError("candidate_labels is empty; give at least one label.")
    if "" in labels:
        raise ValueError(f"candidate_labels contains an empty label: {list(candidate_labels)!r}.")
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise ValueError(f"candidate_labels contains duplicates: {duplicates}.")
    folded = [label.casefold() for label in labels]
    case_duplicates = sorted(label for label, key in zip(labels, folded) if folded.count(key) > 1)
    if case_duplicates:
        raise ValueError(
            f"candidate_labels contains labels that differ only in case: {case_duplicates}; CLIP's tokenizer "
            "lower-cases text, so they would always tie. Keep one of each."
        )
    return labels


# ----------------------------------------------------------------------------------------------------------------------
# Label texts: resolving a source
# ----------------------------------------------------------------------------------------------------------------------


def resolve_label_texts(label_texts, templates=None, model_repo: str | None = None) -> tuple[object, str | None]:
    """
    The label texts (label -> prompts) a source names, and the file of their stored prompt embeddings (None when
    they have none). A source is:
    - a `LabelTexts` or a dict label -> prompts: used as it is;
    - the path of a label-texts JSON file (its embeddings: the `.safetensors` file next to it) or of an ASKG YAML file;
    - a name: a set exported with the model (`label_texts/NAME.json` in `model_repo`, a folder or Hub id, with its
      `NAME.safetensors`), else a set shipped with stdd (`modeling_stdd.askg.DATASETS`);
    - a list of those paths and names, merged by label in order (an ASKG file, then its clause file; see
      `modeling_stdd.askg.LabelTexts.from_sources`).
    `templates` (a list, or a templates file read with `modeling_stdd.askg.read_templates`) build the prompt sets of
    ASKG files and shipped sets; finished prompts refuse them. What is read from files is a `LabelTexts` (one source
    keeps its own `source` and `templates`); remote code without stdd installed reads a JSON file into its mapping.
    """
    if isinstance(label_texts, (str, os.PathLike)) or _is_source_list(label_texts):
        sources = [label_texts] if isinstance(label_texts, (str, os.PathLike)) else list(label_texts)
        located = [locate_label_texts(source, model_repo) for source in sources]
        embeddings_file = located[0][1] if len(located) == 1 else None
        return _read_label_texts([file for file, _ in located], templates), embeddings_file
    if templates is not None:
        raise ValueError("templates= builds prompt sets from ASKG YAML files; give label_texts as their path(s).")
    return label_texts, None


def locate_label_texts(source: str | os.PathLike, model_repo: str | None = None) -> tuple[str, str | None]:
    """
    `(label-texts file or shipped set name, its stored prompt embeddings or None)` of one source (see
    `resolve_label_texts`). Raises `LabelTextsNotFoundError` for a path that is no file and a name that is no set.
    """
    if os.path.isfile(source):
        embeddings_file = prompt_embeddings_file(source)
        return str(source), str(embeddings_file) if embeddings_file.is_file() else None
    name = str(source)
    if os.path.basename(name) != name or "." in name:
        raise LabelTextsNotFoundError(f"Label-texts file not found: {name}")
    texts_file = _model_repo_file(model_repo, f"{EXPORTED_LABEL_TEXTS_DIR}/{name}.json")
    if texts_file is not None:
        return texts_file, _model_repo_file(model_repo, f"{EXPORTED_LABEL_TEXTS_DIR}/{name}.safetensors")
    askg = _askg_package()
    shipped = () if askg is None else askg.DATASETS
    if name in shipped:
        return name, None
    reasons = ["no such file"]
    if askg is not None:
        reasons.append(f"not one of the shipped datasets {list(shipped)}")
    if model_repo:
        reasons.append(f"not a set exported with the model ({EXPORTED_LABEL_TEXTS_DIR}/{name}.json in {model_repo})")
    raise LabelTextsNotFoundError(f"label texts {name!r}: {', and '.join(reasons)}")


def _is_source_list(value) -> bool:
    return isinstance(value, (list, tuple)) and bool(value) and all(isinstance(v, (str, os.PathLike)) for v in value)


def _model_repo_file(model_repo: str | None, filename: str) -> str | None:
    """Local path of `filename` in a model's folder or Hub repo (downloaded if needed), or None if it has none."""
    if not model_repo:
        return None
    return cached_file(model_repo, filename, _raise_exceptions_for_missing_entries=False)


def _askg_package():
    """`modeling_stdd.askg`, or None where it is not installed (remote code on a machine without stdd)."""
    try:
        return importlib.import_module("modeling_stdd.askg")
    except ImportError:
        return None


def _read_label_texts(sources: list[str], templates=None):
    """The label texts of located sources (files and shipped set names), merged in order."""
    askg = _askg_package()
    if askg is None:
        if len(sources) == 1 and templates is None and sources[0].lower().endswith(".json"):
            return _read_label_texts_json(sources[0])
        raise ValueError(
            f"Reading the label-texts files {sources} needs the `modeling_stdd` package (pip install stdd); without "
            "it, pass label_texts as a dict label -> list of prompts or a label-texts JSON file."
        )
    try:
        if isinstance(templates, (str, os.PathLike)):
            templates = askg.read_templates(templates)
        return askg.LabelTexts.from_sources(sources, templates=templates)
    except ValueError as error:
        raise ValueError(f"Could not read label texts from {', '.join(sources)}: {error}") from error


def _read_label_texts_json(path: str | os.PathLike) -> Mapping:
    """Label -> prompts of a label-texts JSON file (`LabelTexts.save` output or a plain mapping); no stdd needed."""
    try:
        data = read_json_file(path)
    except ValueError as error:
        raise ValueError(f"Could not read label texts from {error}") from error
    if not isinstance(data, Mapping):
        raise ValueError(f"Could not read label texts from {path}: expected a JSON object, got {type(data).__name__}.")
    return data["label_texts"] if isinstance(data.get("label_texts"), Mapping) else data


def label_texts_mapping(label_texts) -> dict[str, list[str]]:
    """Label -> prompts of a `LabelTexts` (any object with a `.texts` mapping) or a plain mapping, checked."""
    texts = getattr(label_texts, "texts", label_texts)
    if not isinstance(texts, Mapping):
        raise ValueError(
            "label_texts must be a LabelTexts, a dict label -> list of prompts, or the path of a label-texts file; "
            f"got {type(label_texts).__name__}."
        )
    for label, prompts in texts.items():
        if (
            isinstance(prompts, str)
            or not isinstance(prompts, Sequence)
            or not prompts
            or not all(isinstance(prompt, str) and prompt.strip() for prompt in prompts)
        ):
            raise ValueError(f"label_texts[{label!r}] must be a non-empty list of non-empty prompts, got {prompts!r}.")
    return {label: list(prompts) for label, prompts in texts.items()}


# ----------------------------------------------------------------------------------------------------------------------
# Prompts of the candidate labels
# ----------------------------------------------------------------------------------------------------------------------


def label_prompts(
    candidate_labels: str | Sequence[str] | None,
    hypothesis_template: str = DEFAULT_HYPOTHESIS_TEMPLATE,
    label_texts=None,
) -> dict[str, list[str]]:
    """
    Each candidate label's prompts, in label order: its own prompts in `label_texts` (a `LabelTexts` or a mapping
    label -> prompts), else the one prompt `hypothesis_template.format(label)`. Without `candidate_labels`, the
    labels of `label_texts` are the candidates.
    """
    check_hypothesis_template(hypothesis_template)
    texts = None if label_texts is None else label_texts_mapping(label_texts)
    if candidate_labels is None:
        if texts is None:
            raise ValueError("Give candidate_labels (or label_texts, whose labels then are the candidates).")
        candidate_labels = list(texts)
    labels = candidate_label_list(candidate_labels)
    texts = texts or {}
    missing = [label for label in labels if label not in texts]
    if label_texts is not None and missing:
        logger.warning(f"label_texts has no prompts for {missing}; they use the template {hypothesis_template!r}.")
    return {label: texts.get(label, [hypothesis_template.format(label)]) for label in labels}


# ----------------------------------------------------------------------------------------------------------------------
# Encoded prompt sets
# ----------------------------------------------------------------------------------------------------------------------


def flat_prompts(label_prompts: Mapping[str, Sequence[str]]) -> list[str]:
    """The prompts of label -> prompts, label by label: the order of a prompt set's text embeddings."""
    return [prompt for prompts in label_prompts.values() for prompt in prompts]


def check_text_embeds_shape(text_embeds: torch.Tensor, num_prompts: int):
    """Refuse text embeddings that are not `(num_prompts, projection_dim)`, naming both shapes."""
    if text_embeds.ndim != 2 or text_embeds.shape[0] != num_prompts:
        raise ValueError(
            f"text_embeds has shape {tuple(text_embeds.shape)}; expected ({num_prompts}, projection_dim)."
        )



@dataclass(frozen=True, eq=False)
class PromptSet:
    """
    The labels videos are ranked over and their prompts, encoded by the text tower.

    labels: the K labels, in score order.
    prompts: the P prompts, label by label.
    text_embeds: `(P, projection_dim)` float32, the text tower's embedding of each prompt, L2-normalized.
    prompt_class_ids: `(P,)` the label index of each prompt when prompts are grouped per label (label texts: scored
        frame-level x prompt-level); None when label k has exactly the one prompt k (scored by its mean over frames).
    """

    labels: tuple[str, ...]
    prompts: tuple[str, ...]
    text_embeds: torch.Tensor
    prompt_class_ids: torch.Tensor | None = None

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def to(self, device) -> "PromptSet":
        class_ids = None if self.prompt_class_ids is None else self.prompt_class_ids.to(device)
        return replace(self, text_embeds=self.text_embeds.to(device), prompt_class_ids=class_ids)

    @classmethod
    def from_label_prompts(
        cls, label_prompts: Mapping[str, Sequence[str]], text_embeds: torch.Tensor, grouped: bool
    ) -> "PromptSet":
        """
        The set of `label_prompts` (label -> prompts, see `label_prompts`) whose prompts, in order, `text_embeds`
        `(P, projection_dim)` encode. `grouped` (label texts) gives the prompts their label indices; without it each
        label must have one prompt.
        """
        prompts = flat_prompts(label_prompts)
        if not grouped and len(prompts) != len(label_prompts):
            raise ValueError("Ungrouped prompts are one per label; label texts with several prompts need grouped=True.")
        check_text_embeds_shape(text_embeds, len(prompts))
        class_ids = None
        if grouped:
            class_ids = torch.tensor(
                [index for index, prompts in enumerate(label_prompts.values()) for _ in prompts],
                device=text_embeds.device,
            )
        text_embeds = torch.nn.functional.normalize(text_embeds.float(), dim=-1)
        return cls(tuple(label_prompts), tuple(prompts), text_embeds, class_ids)


def encode_prompts(model, tokenizer, prompts: Sequence[str], batch_size: int = TEXT_BATCH_SIZE) -> torch.Tensor:
    """The text tower's embeddings `(len(prompts), projection_dim)` of `prompts`, `batch_size` at a time."""
    embeds = []
    with torch.no_grad():
        for start in range(0, len(prompts), batch_size):
            batch = list(prompts[start : start + batch_size])
            inputs = tokenizer(batch, padding=True, truncation=True, return_tensors="pt").to(model.device)
            embeds.append(model.get_text_features(**inputs).pooler_output)
    return torch.cat(embeds)


def encode_prompt_set(
    model, tokenizer, label_prompts: Mapping[str, Sequence[str]], grouped: bool, batch_size: int = TEXT_BATCH_SIZE,
) -> PromptSet:
    """
    The `PromptSet` of `label_prompts` (label -> prompts, see `label_prompts`), encoded by `model`'s text tower,
    checked against its `projection_dim`. `grouped`: the prompts come from label texts (see `PromptSet`).
    """
    text_embeds = encode_prompts(model, tokenizer, flat_prompts(label_prompts), batch_size)
    prompt_set = PromptSet.from_label_prompts(label_prompts, text_embeds, grouped)
    check_prompts(text_embeds, prompt_set.prompt_class_ids, model.config.projection_dim, prompt_set.num_classes)
    return prompt_set


def build_prompt_set(
    model, tokenizer, candidate_labels: str | Sequence[str] | None,
    hypothesis_template: str = DEFAULT_HYPOTHESIS_TEMPLATE, label_texts=None,
) -> PromptSet:
    """The encoded prompts of `candidate_labels`: their `label_texts`, else `hypothesis_template` (`label_prompts`)."""
    prompts = label_prompts(candidate_labels, hypothesis_template, label_texts)
    return encode_prompt_set(model, tokenizer, prompts, grouped=label_texts is not None)


# ----------------------------------------------------------------------------------------------------------------------
# Stored prompt embeddings
# ----------------------------------------------------------------------------------------------------------------------


def prompts_digest(prompts: Sequence[str]) -> str:
    """SHA-256 of a prompt list, in order: ties stored prompt embeddings to the prompts they encode."""
    return hashlib.sha256(json.dumps(list(prompts), ensure_ascii=False).encode("utf-8")).hexdigest()


def prompt_embeddings_file(texts_file: str | os.PathLike) -> Path:
    """Where the prompt embeddings of a label-texts JSON file are stored: next to it, as `.safetensors`."""
    return Path(texts_file).with_suffix(".safetensors")


def save_prompt_embeddings(texts_file: str | os.PathLike, prompts: Sequence[str], text_embeds: torch.Tensor) -> Path:
    """
    Store `text_embeds` `(num_prompts, projection_dim)`, the text-tower embeddings of `prompts` (the prompts of
    `texts_file`, label by label), L2-normalized in float32, next to `texts_file`, written atomically. Returns the
    file's path.
    """
    check_text_embeds_shape(text_embeds, len(prompts))
    path = prompt_embeddings_file(texts_file)
    partial = path.with_name(f".{path.name}.partial")
    normalized = torch.nn.functional.normalize(text_embeds.detach().float(), dim=-1)
    metadata = {"prompts_sha256": prompts_digest(prompts)}
    save_file({"text_embeds": normalized.cpu().contiguous()}, partial, metadata=metadata)
    os.replace(partial, path)
    return path


def read_prompt_embeddings(
    embeddings_file: str | os.PathLike, prompts: Sequence[str], projection_dim: int
) -> torch.Tensor | None:
    """
    The embeddings `(len(prompts), projection_dim)` stored in `embeddings_file` for exactly `prompts`, L2-normalized
    (files exported before they were stored normalized hold the text tower's raw outputs), or None, with a warning
    saying why, when the file cannot be read or holds embeddings of other prompts or of another shape.
    """
    try:
        with safe_open(embeddings_file, framework="pt") as file:
            if (file.metadata() or {}).get("prompts_sha256") != prompts_digest(prompts):
                logger.warning(f"{embeddings_file} holds embeddings of other prompts; ignoring it.")
                return None
            text_embeds = file.get_tensor("text_embeds")
    except (SafetensorError, OSError) as error:
        logger.warning(f"Could not read the prompt embeddings in {embeddings_file} ({error}); ignoring it.")
        return None
    expected_shape = (len(prompts), projection_dim)
    if tuple(text_embeds.shape) != expected_shape:
        logger.warning(
            f"{embeddings_file} holds embeddings of shape {tuple(text_embeds.shape)}, not {expected_shape} (one per "
            "prompt, of the model's projection_dim); ignoring it."
        )
        return None
    return torch.nn.functional.normalize(text_embeds.float(), dim=-1)


def read_verified_prompt_embeddings(
    model, tokenizer, embeddings_file: str | os.PathLike, prompts: Sequence[str]
) -> torch.Tensor | None:
    """
    The embeddings stored in `embeddings_file` for `prompts` (see `read_prompt_embeddings`), if re-encoding the first
    `PROMPTS_TO_VERIFY` of them with `model` gives the same directions; None, with a warning, otherwise.
    """
    text_embeds = read_prompt_embeddings(embeddings_file, prompts, model.config.projection_dim)
    if text_embeds is None:
        return None
    sample = encode_prompts(model, tokenizer, prompts[:PROMPTS_TO_VERIFY]).float().cpu()
    cosine = torch.nn.functional.cosine_similarity(sample, text_embeds[: len(sample)], dim=-1)
    if cosine.min() < MIN_VERIFIED_COSINE:
        logger.warning(f"{embeddings_file} was computed by another model (cosine {cosine.min():.4f}); ignoring it.")
        return None
    return text_embeds


__all__ = [
    "DEFAULT_HYPOTHESIS_TEMPLATE",
    "EXPORTED_LABEL_TEXTS_DIR",
    "LabelTextsNotFoundError",
    "PromptSet",
    "build_prompt_set",
    "candidate_label_list",
    "encode_prompt_set",
    "flat_prompts",
    "label_prompts",
    "locate_label_texts",
    "prompt_embeddings_file",
    "prompts_digest",
    "read_prompt_embeddings",
    "read_verified_prompt_embeddings",
    "resolve_label_texts",
    "save_prompt_embeddings",
]
