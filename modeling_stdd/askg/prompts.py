"""
Prompt sets: each class becomes templates x (plain label + label with each clause), the text side of STDD.

For every template, the class contributes `template.format(label)` and `template.format(f"{label}, {clause}")`
for every clause of the union of `xprompt_oo`, `xprompt_ao` and `xprompt_aa`; duplicates are dropped, first
occurrence kept. `LabelTexts` holds the result (label -> prompts, plus the templates and source used) and is what
the pipeline, the training and the Hub export consume.
"""

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from .schema import CLAUSE_FIELDS, ASKGEntry, entries_from_yaml_text, read_label_db, validate_entries
from ..file_utils import read_json_file, write_text_atomically
from .schema import entries_with_errors


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
DATASETS = ("ucf101", "hmdb51", "kinetics400", "kinetics600_novel")
# Shipped ASKG + clause files, one per dataset: modeling_stdd/label_texts/{name}.yml.
PACKAGE_DATA_DIR = resources.files("modeling_stdd").joinpath("label_texts")


def _check_templates(templates: Sequence[str]) -> list[str]:
    templates = list(templates)
    if not templates:
        raise ValueError("templates must not be empty")
    for template in templates:
        if not isinstance(template, str) or template.count("{}") != 1 or "{" in template.replace("{}", ""):
            raise ValueError(f"template {template!r} must contain exactly one '{{}}' and no other braces")
    return templates


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
        Prompt sets from entries that have clause lists (a clause or combined file). Raises `ValueError` when a
        class has no clause lists, or its label or clauses have validation errors; graph problems do not matter here.
        """
        where = f"{source}: " if source else ""
        without_clauses = [key for key, entry in entries.items() if not entry.has_any(CLAUSE_FIELDS)]
        if without_clauses:
            raise ValueError(
                f"{where}classes {without_clauses[:10]} have no clause lists ({', '.join(CLAUSE_FIELDS)}); "
                "add a clause file or run `python -m modeling_stdd.askg verbalize` first"
            )
        errors = entries_with_errors(validate_entries(entries), fields=("label", *CLAUSE_FIELDS))
        if errors:
            listed = "\n  ".join(str(issue) for issues in errors.values() for issue in issues)
            raise ValueError(f"{where}cannot build prompts, fix these first:\n  {listed}")
        templates = _check_templates(templates)
        texts = {entry.label: build_prompts(entry.label, entry.clauses, templates) for entry in entries.values()}
        return cls(texts=texts, templates=templates, source=source)

    @classmethod
    def from_file(cls, path: str | os.PathLike, templates: Sequence[str] = DEFAULT_TEMPLATES) -> "LabelTexts":
        """
        Load a label-texts JSON file (as written by `save`, or a plain label -> prompts object), or build prompt
        sets from an ASKG clause or combined YAML file (`.yml` / `.yaml`) with `templates`.
        """
        path = Path(path)
        if path.suffix.lower() in (".yml", ".yaml"):
            return cls.from_label_db(read_label_db(path), templates=templates, source=str(path))
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
