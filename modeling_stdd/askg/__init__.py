"""
Spatiotemporal text augmentation (STDD section 3): Action Semantic Knowledge Graphs (ASKG), their clause lists,
generation with a language model, the rule-based verbalizer and the per-class prompt sets (`LabelTexts`).
Command line: `python -m modeling_stdd.askg --help`.
"""

from .generator import (
    ASKGGenerator,
    BackendError,
    ChatBackend,
    GenerationError,
    GenerationResult,
    OpenAIChatBackend,
    TransformersChatBackend,
    read_labels,
)
from .prompts import AUTHORS_TEMPLATE_COUNT, DATASETS, DEFAULT_TEMPLATES, LabelTexts, build_prompts, read_templates
from .schema import (
    ASKGEntry,
    Issue,
    Triple,
    ValidationReport,
    class_key,
    read_askg_file,
    read_label_db,
    read_usable_label_db,
    validate_entries,
    validate_entry,
    write_askg_file,
)
from .verbalizer import verbalize_entries, verbalize_entry


__all__ = [
    "ASKGEntry",
    "ASKGGenerator",
    "AUTHORS_TEMPLATE_COUNT",
    "BackendError",
    "ChatBackend",
    "DATASETS",
    "DEFAULT_TEMPLATES",
    "GenerationError",
    "GenerationResult",
    "Issue",
    "LabelTexts",
    "OpenAIChatBackend",
    "TransformersChatBackend",
    "Triple",
    "ValidationReport",
    "build_prompts",
    "class_key",
    "read_askg_file",
    "read_label_db",
    "read_labels",
    "read_templates",
    "read_usable_label_db",
    "validate_entries",
    "validate_entry",
    "verbalize_entries",
    "verbalize_entry",
    "write_askg_file",
]
