"""
Prompt sets: each class becomes templates x (plain label + label with each clause), the text side of STDD.

For every template, the class contributes `template.format(label)` and `template.format(f"{label}, {clause}")`
for every clause of the union of `xprompt_oo`, `xprompt_ao` and `xprompt_aa`; duplicates are dropped, first
occurrence kept. `LabelTexts` holds the result (label -> prompts, plus the templates and source used) and is what
the pipeline, the training and the Hub export consume. Templates are ours (`DEFAULT_TEMPLATES`) unless read from a
file (`read_templates`), such as the `templates:` list of the authors' `classes_label_<dataset>.yml`.
"""

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from ..file_utils import read_json_file, read_text_file, write_text_atomically
from ..hypothesis_template import check_hypothesis_template
from .schema import (
    CLAUSE_FIELDS,
    ASKGEntry,
    entries_from_yaml_text,
    merge_label_files,
    read_askg_file,
    read_usable_label_db,
    usable_entries,
)


# Our eight templates. They mix the video framing with the photo framing CLIP was pretrained on (each frame is
# an image), vary viewpoint and quality (close-up, blurry), include several people, and end with label-only
# framings ("an example of the action {}.") that read well whether a class name is a verb, a gerund or a noun.
DEFAULT_TEMPLATES = (
    "a video of a person {}.",
    "a photo of a person {}.",
    "a video clip of someone {}.",
    "a close-up video of a person {}.",
    "a blurry video of a person {}.",
    "footage of people {}.",
    "an example of the action {}.",
    "a demonstration of {}.",
)
# The authors build their prompts from the first 8 templates of their class file's `templates:` list.
AUTHORS_TEMPLATE_COUNT = 8
DATASETS = ("ucf101", "hmdb51", "kinetics400", "kinetics600_novel")
# Shipped ASKG + clause files, one per dataset: modeling_stdd/label_texts/{name}.yml.
PACKAGE_DATA_DIR = resources.files("modeling_stdd").joinpath("label_texts")


def _check_templates(templates: Sequence[str]) -> list[str]:
    """Every template must put the label in exactly once (`check_hypothesis_template`, the pipeline's rule)."""
    if isinstance(templates, str):
        raise ValueError(f"templates must be a list of templates, got the string {templates!r}")
    templates = list(templates)
    if not templates:
        raise ValueError("templates must not be empty")
    for index, template in enumerate(templates):
        check_hypothesis_template(template, name=f"template {index}")
    return templates


def read_templates(path: str | os.PathLike, num_templates: int | None = None) -> list[str]:
    """
    Templates from a file: the `templates:` list of a YAML file (`.yml` / `.yaml`, such as the authors'
    `classes_label_<dataset>.yml`), or a text file with one template a line (blank lines skipped). The first
    `num_templates` are used; by default `AUTHORS_TEMPLATE_COUNT` (8) of a YAML file, as the authors do, and all
    lines of a text file. Each must contain one bare `{}`.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"templates file not found: {path}")
    if path.suffix.lower() in (".yml", ".yaml"):
        try:
            data = yaml.safe_load(read_text_file(path))
        except yaml.YAMLError as error:
            raise ValueError(f"{path}: not valid YAML: {error}") from error
        templates = data.get("templates") if isinstance(data, Mapping) else None
        if not isinstance(templates, list) or not all(isinstance(template, str) for template in templates):
            raise ValueError(f"{path}: expected a 'templates:' list of strings")
        default_count = AUTHORS_TEMPLATE_COUNT
    else:
        templates = [line.strip() for line in read_text_file(path).splitlines() if line.strip()]
        default_count = len(templates)
    if not templates:
        raise ValueError(f"{path}: holds no templates")
    count = default_count if num_templates is None else num_templates
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"the number of templates must be an integer >= 1, got {num_templates!r}")
    if count > len(templates):
        raise ValueError(f"{path}: asked for {count} templates, the file has {len(templates)}")
    try:
        return _check_templates(templates[:count])
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from error


# Help of the command lines' `--templates FILE` and `--num-templates N` (askg prompts, training, evaluation).
TEMPLATES_HELP = (
    "templates of the prompt sets built from ASKG files or shipped sets: the 'templates:' list of a YAML file (such as "
    "the authors' classes_label_<dataset>.yml) or a text file with one template a line (default: ours)"
)
NUM_TEMPLATES_HELP = "use the first N templates of --templates (default: 8 of a YAML file, as the authors do; all lines)"


def templates_from_options(templates_file: str | os.PathLike | None, num_templates: int | None) -> list[str] | None:
    """The templates of the command lines' `--templates FILE` and `--num-templates N`; None without a file."""
    if templates_file is None:
        if num_templates is not None:
            raise ValueError("--num-templates needs --templates FILE")
        return None
    try:
        return read_templates(templates_file, num_templates)
    except ValueError as error:
        raise ValueError(f"--templates: {error}") from error


def _clean_clause(clause: str) -> str:
    """
    A clause without surrounding whitespace, stray leading or trailing commas, semicolons or colons (the prompt joins
    it with ", "), or a final period (the templates end the sentence).
    """
    return clause.strip(" \t\n,;:").rstrip(".").strip(" \t\n,;:")


def build_prompts(label: str, clauses: Sequence[str], templates: Sequence[str] = DEFAULT_TEMPLATES) -> list[str]:
    """For each template: the plain label, then the label with each clause; de-duplicated, order kept."""
    clauses = [_clean_clause(clause) for clause in clauses]
    prompts = []
    for template in _check_templates(templates):
        prompts.append(template.format(label))
        prompts.extend(template.format(f"{label}, {clause}") for clause in clauses if clause)
    return list(dict.fromkeys(prompts))


@dataclass
class LabelTexts:
    """
    Class label -> its prompts, in class order. `templates` and `source` record how they were made (None for
    prompts given directly). Build one from a plain dict (`LabelTexts({"jumping": ["a video of jumping."]})`),
    from ASKG entries (`from_label_db`), a file (`from_file`) or a shipped dataset (`for_dataset`).
    """

    texts: dict[str, list[str]]
    templates: list[str] | None = None
    source: str | None = None

    def __post_init__(self):
        if not isinstance(self.texts, Mapping) or not self.texts:
            raise ValueError("LabelTexts needs a non-empty mapping from labels to prompt lists")
        for label, prompts in self.texts.items():
            if not isinstance(label, str) or not label.strip():
                raise ValueError(f"label {label!r} must be a non-empty string")
            if isinstance(prompts, str) or not isinstance(prompts, Sequence) or not prompts:
                raise ValueError(f"prompts of {label!r} must be a non-empty list of strings, got {prompts!r}")
            if not all(isinstance(prompt, str) and prompt.strip() for prompt in prompts):
                raise ValueError(f"prompts of {label!r} must all be non-empty strings")
        self.texts = {label: list(prompts) for label, prompts in self.texts.items()}
        if self.templates is not None:
            self.templates = _check_templates(self.templates)

    @property
    def labels(self) -> list[str]:
        return list(self.texts)

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, label: str) -> list[str]:
        return self.texts[label]

    def flatten(self) -> tuple[list[str], list[int]]:
        """All prompts in one list, and for each the index of its class in `labels` (to encode them in one pass)."""
        prompts, class_indices = [], []
        for class_index, class_prompts in enumerate(self.texts.values()):
            prompts.extend(class_prompts)
            class_indices.extend([class_index] * len(class_prompts))
        return prompts, class_indices

    def to_dict(self) -> dict:
        return {"source": self.source, "templates": self.templates, "label_texts": self.texts}

    @classmethod
    def from_dict(cls, data: Mapping) -> "LabelTexts":
        """From `to_dict()` output (with a "label_texts" mapping) or from a plain label -> prompts mapping."""
        if isinstance(data.get("label_texts"), Mapping):
            return cls(texts=data["label_texts"], templates=data.get("templates"), source=data.get("source"))
        return cls(texts=dict(data))

    def save(self, path: str | os.PathLike) -> Path:
        """Write the JSON form (see `to_dict`) atomically."""
        return write_text_atomically(path, json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n")

    @classmethod
    def from_label_db(
        cls, entries: Mapping[str, ASKGEntry], templates: Sequence[str] = DEFAULT_TEMPLATES, source: str | None = None
    ) -> "LabelTexts":
        """
        Prompt sets from entries that have clause lists (a clause or combined file), one per class key. A clause that
        cannot be used (an empty one) is skipped with a warning; a label that differs from its class key is a warning
        and the key is used. Raises `ValueError` when a class has no clause lists.
        """
        where = f"{source}: " if source else ""
        without_clauses = [key for key, entry in entries.items() if not entry.has_any(CLAUSE_FIELDS)]
        if without_clauses:
            raise ValueError(
                f"{where}classes {without_clauses[:10]} have no clause lists ({', '.join(CLAUSE_FIELDS)}); "
                "add a clause file or run `python -m modeling_stdd.askg verbalize` first"
            )
        templates = _check_templates(templates)
        entries = usable_entries(entries, source or "label texts", fields=CLAUSE_FIELDS)
        texts = {key: build_prompts(key, entry.clauses, templates) for key, entry in entries.items()}
        return cls(texts=texts, templates=templates, source=source)

    @classmethod
    def from_askg_files(
        cls, *paths: str | os.PathLike, templates: Sequence[str] = DEFAULT_TEMPLATES
    ) -> "LabelTexts":
        """
        Prompt sets from ASKG YAML files merged by class (e.g. the authors' `classes_ASKG_<dataset>.yml` and
        `classes_xprompt_<dataset>.yml`), read with `read_usable_label_db`: classes matched by `class_key`,
        unusable clauses skipped with a warning naming the file, class, field and item.
        """
        entries = read_usable_label_db(*paths, fields=CLAUSE_FIELDS)
        return cls.from_label_db(entries, templates=templates, source=", ".join(str(path) for path in paths))

    @classmethod
    def from_file(cls, path: str | os.PathLike, templates: Sequence[str] = DEFAULT_TEMPLATES) -> "LabelTexts":
        """
        Load a label-texts JSON file (as written by `save`, or a plain label -> prompts object), or build prompt
        sets from an ASKG clause or combined YAML file (`.yml` / `.yaml`) with `templates`.
        """
        path = Path(path)
        if path.suffix.lower() in (".yml", ".yaml"):
            return cls.from_askg_files(path, templates=templates)
        if path.suffix.lower() != ".json":
            raise ValueError(f"{path}: expected a .json label-texts file or a .yml/.yaml ASKG file")
        data = read_json_file(path)
        if not isinstance(data, Mapping):
            raise ValueError(f"{path}: expected a JSON object, got {type(data).__name__}")
        try:
            return cls.from_dict(data)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from error

    @classmethod
    def from_sources(
        cls, sources: Sequence[str | os.PathLike], templates: Sequence[str] | None = None
    ) -> "LabelTexts":
        """
        Label texts from several sources, merged by label in order (a label in several keeps the prompts of the last
        one): shipped set names (`DATASETS`), label-texts JSON files and ASKG YAML files. A graph-only YAML file (no
        clause lists, like the authors' `classes_ASKG_<dataset>.yml`) is read together with the YAML files after
        it up to one with clause lists (its clause file), merged by class. `templates` (default `DEFAULT_TEMPLATES`)
        build the prompts of shipped sets and YAML files; JSON files hold finished prompts and refuse them. One
        source gives its own label texts, with its `source` and `templates`.
        """
        if isinstance(sources, (str, os.PathLike)) or not sources:
            raise ValueError(f"sources must be a non-empty list of set names or files, got {sources!r}")
        build_templates = DEFAULT_TEMPLATES if templates is None else _check_templates(templates)
        parts, graph_files = [], []
        for source in sources:
            name = str(source)
            if name in DATASETS:
                parts.append(cls.for_dataset(name, templates=build_templates))
            elif name.lower().endswith((".yml", ".yaml")):
                entries = usable_entries(read_askg_file(name), name, CLAUSE_FIELDS)
                graph_files.append((name, entries))
                if any(entry.has_any(CLAUSE_FIELDS) for entry in entries.values()):
                    merged = merge_label_files(graph_files)
                    source_names = ", ".join(file_name for file_name, _ in graph_files)
                    parts.append(cls.from_label_db(merged, templates=build_templates, source=source_names))
                    graph_files = []
            elif templates is not None:
                raise ValueError(f"{name}: a label-texts JSON file holds finished prompts; templates do not apply")
            else:
                if not os.path.isfile(name):
                    raise ValueError(f"{name!r} is neither a file nor a shipped label-text set ({', '.join(DATASETS)})")
                parts.append(cls.from_file(name))
        if graph_files:
            listed = ", ".join(file_name for file_name, _ in graph_files)
            raise ValueError(f"{listed}: no clause lists; give the clause file after its ASKG file")
        if len(sources) == 1:
            return parts[0]
        texts = {label: prompts for part in parts for label, prompts in part.texts.items()}
        return cls(texts, templates=None if templates is None else build_templates, source=", ".join(map(str, sources)))

    @classmethod
    def for_dataset(cls, name: str, templates: Sequence[str] = DEFAULT_TEMPLATES) -> "LabelTexts":
        """Prompt sets from the ASKG + clause file shipped for dataset `name` (one of `DATASETS`)."""
        if name not in DATASETS:
            raise ValueError(f"unknown dataset {name!r}; label texts exist for the datasets {list(DATASETS)}")
        resource = PACKAGE_DATA_DIR.joinpath(f"{name}.yml")
        if not resource.is_file():
            available = [dataset for dataset in DATASETS if PACKAGE_DATA_DIR.joinpath(f"{dataset}.yml").is_file()]
            raise FileNotFoundError(
                f"no label texts are installed for {name!r} (missing package file {resource}); "
                f"available datasets: {', '.join(available) if available else 'none'}"
            )
        source = f"modeling_stdd/label_texts/{name}.yml"
        entries = entries_from_yaml_text(resource.read_text(encoding="utf-8"), source=source)
        return cls.from_label_db(entries, templates=templates, source=source)
