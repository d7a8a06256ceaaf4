"""
Action Semantic Knowledge Graph (ASKG) entries: typed classes, the YAML file format and validation.

One YAML file maps each class name to an entry. An ASKG file holds the graph fields, a clause file holds the
three verbalized clause lists, and a combined file holds both:

    apply lipstick:
      label: apply lipstick
      obj_en_li: [lipstick, lips, mirror]                       # objects
      obj_rel_triples: ["<hand, holds, lipstick>"]              # object-object triples
      act_obj_triples: ["<apply lipstick, uses, lipstick>"]     # action-object triples
      sub_act_en_li: [opening the lipstick, ...]                # ordered sub-actions
      act_rel_triples: ["<apply lipstick, starts with, opening the lipstick>", ...]
      xprompt_oo: [where the hand holds the lipstick]          # clauses from object-object triples
      xprompt_ao: [which uses the lipstick]                    # clauses from action-object triples
      xprompt_aa: [starting with opening the lipstick]         # clauses from the sub-action order

Reading is strict about structure (a mapping of mappings of string lists) and lenient about content, so any
well-formed file loads; `validate_entries` then reports content problems per class and field, as errors
(the entry cannot be used as written) or warnings (it departs from the authoring rules but is usable).
"""

import dataclasses
import json
import logging
import os
import re
from collections import Counter
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..file_utils import read_text_file, write_text_atomically


logger = logging.getLogger(__name__)


def class_key(name: str) -> str:
    """A spelling-independent key of a class name: "ApplyEyeMakeup", "apply_eye_makeup" and "Apply Eye Makeup" agree."""
    return re.sub(r"[^0-9a-z]", "", name.lower())


@dataclass(frozen=True)
class Triple:
    """One `<head, relation, tail>` triple of the graph."""

    head: str
    relation: str
    tail: str

    @classmethod
    def parse(cls, text: str) -> "Triple":
        """Parse `"<head, relation, tail>"`; raises `ValueError` saying why the text is not such a triple."""
        stripped = text.strip()
        if not (stripped.startswith("<") and stripped.endswith(">")):
            raise ValueError(f"{text!r} is not enclosed in '<' and '>'")
        inner = stripped[1:-1]
        if "<" in inner or ">" in inner:
            raise ValueError(f"{text!r} has '<' or '>' inside a part")
        parts = [part.strip() for part in inner.split(",")]
        if len(parts) != 3:
            raise ValueError(f"{text!r} has {len(parts)} comma-separated parts, expected three")
        if not all(parts):
            raise ValueError(f"{text!r} has an empty part")
        return cls(*parts)

    def __str__(self) -> str:
        return f"<{self.head}, {self.relation}, {self.tail}>"


def _yaml_field(name: str):
    """A list field of `ASKGEntry`, stored in YAML under `name`; None means the file does not have the field."""
    return field(default=None, metadata={"yaml": name})


@dataclass
class ASKGEntry:
    """
    The ASKG of one action class and its verbalized clauses. Triples are kept as written (`"<a, b, c>"`) so that
    a malformed one survives a read/write round trip and is reported by validation; `Triple.parse` reads them.
    A list field is None when the file it came from does not have it (an ASKG file has no clause lists).
    """

    label: str
    objects: list[str] | None = _yaml_field("obj_en_li")
    object_triples: list[str] | None = _yaml_field("obj_rel_triples")
    action_object_triples: list[str] | None = _yaml_field("act_obj_triples")
    sub_actions: list[str] | None = _yaml_field("sub_act_en_li")
    sub_action_triples: list[str] | None = _yaml_field("act_rel_triples")
    xprompt_oo: list[str] | None = _yaml_field("xprompt_oo")
    xprompt_ao: list[str] | None = _yaml_field("xprompt_ao")
    xprompt_aa: list[str] | None = _yaml_field("xprompt_aa")

    @property
    def clauses(self) -> list[str]:
        """The union of the three clause lists (object-object, action-object, order), first occurrences kept."""
        union = (self.xprompt_oo or []) + (self.xprompt_ao or []) + (self.xprompt_aa or [])
        return list(dict.fromkeys(union))

    def subset(self, fields: Iterable[str]) -> "ASKGEntry":
        """A copy with only the YAML list `fields` (e.g. `GRAPH_FIELDS`); the other lists become None."""
        kept = set(fields)
        return dataclasses.replace(
            self, **{f.name: None for f in dataclasses.fields(self)[1:] if f.metadata["yaml"] not in kept}
        )

    def has_any(self, fields: Iterable[str]) -> bool:
        """Whether the entry has at least one of the YAML list `fields` (present, possibly empty)."""
        return any(name in self.to_yaml_dict() for name in fields)

    def to_yaml_dict(self) -> dict:
        """The entry as the YAML mapping of the file format (fields that are None left out)."""
        data = {"label": self.label}
        for list_field in dataclasses.fields(self)[1:]:
            value = getattr(self, list_field.name)
            if value is not None:
                data[list_field.metadata["yaml"]] = list(value)
        return data


ATTRIBUTE_BY_YAML_FIELD = {
    entry_field.metadata["yaml"]: entry_field.name for entry_field in dataclasses.fields(ASKGEntry)[1:]
}
GRAPH_FIELDS = ("obj_en_li", "obj_rel_triples", "act_obj_triples", "sub_act_en_li", "act_rel_triples")
TRIPLE_FIELDS = ("obj_rel_triples", "act_obj_triples", "act_rel_triples")
CLAUSE_FIELDS = ("xprompt_oo", "xprompt_ao", "xprompt_aa")
# Count limits of the authoring rules (inclusive), checked on non-empty lists and reported as warnings.
COUNT_LIMITS = {
    "obj_en_li": (5, 10),
    "obj_rel_triples": (3, 10),
    "act_obj_triples": (3, 10),
    "sub_act_en_li": (3, 8),
    "xprompt_oo": (3, 10),
    "xprompt_ao": (3, 10),
    "xprompt_aa": (3, 10),
}
CLAUSE_OPENINGS = {
    "xprompt_oo": ("where ",),
    "xprompt_ao": ("which ",),
    "xprompt_aa": ("starting with ", "where ", "ending with "),
}


# ----------------------------------------------------------------------------------------------------------
# Reading and writing


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe YAML loader that refuses a mapping with the same key twice (plain PyYAML keeps the last one)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, Hashable):
                raise yaml.constructor.ConstructorError(
                    None, None, f"a key must be a name, got the {type(key).__name__} {key!r}", key_node.start_mark
                )
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _string_list(value, where: str, triples: bool) -> list[str]:
    """Check one list field; a triple written as a YAML list (`[a, b, c]`) is read as `"<a, b, c>"`."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"{where} must be a list, got {type(value).__name__}")
    items = []
    for index, item in enumerate(value):
        if triples and isinstance(item, list) and all(isinstance(part, str) for part in item):
            item = "<" + ", ".join(item) + ">"
        if not isinstance(item, str):
            raise ValueError(f"{where} item {index} must be a string, got {type(item).__name__} {item!r}")
        items.append(item)
    return items


def entry_from_dict(key: str, data: Mapping, source: str = "<input>") -> ASKGEntry:
    """Build the entry stored under `key` from its YAML mapping; `source` names the file in error messages."""
    where = f"{source}: class {key!r}"
    if not isinstance(data, Mapping):
        raise ValueError(f"{where} must be a mapping of fields, got {type(data).__name__}")
    unknown = sorted(set(data) - {"label", *ATTRIBUTE_BY_YAML_FIELD}, key=repr)  # YAML keys need not be strings
    if unknown:
        raise ValueError(f"{where} has unknown fields {unknown}; known: label, {', '.join(ATTRIBUTE_BY_YAML_FIELD)}")
    label = data.get("label")
    if not isinstance(label, str):
        raise ValueError(f"{where} field 'label' must be a string, got {label!r}")
    lists = {
        ATTRIBUTE_BY_YAML_FIELD[name]: _string_list(value, f"{where} field {name!r}", triples=name in TRIPLE_FIELDS)
        for name, value in data.items()
        if name != "label"
    }
    return ASKGEntry(label=label, **lists)


def entries_from_yaml_text(text: str, source: str = "<input>") -> dict[str, ASKGEntry]:
    """Parse the YAML text of an ASKG, clause or combined file into class key -> entry."""
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as error:
        raise ValueError(f"{source}: not valid YAML: {error}") from error
    if not isinstance(data, dict) or not data:
        raise ValueError(f"{source}: expected a mapping from class names to entries, got {type(data).__name__}")
    entries = {}
    for key, entry_data in data.items():
        if not isinstance(key, str):
            raise ValueError(f"{source}: class key {key!r} is not a string; quote it")
        entries[key] = entry_from_dict(key, entry_data, source)
    return entries


def read_askg_file(path: str | os.PathLike) -> dict[str, ASKGEntry]:
    """Read one ASKG, clause or combined YAML file into class key -> entry (file order kept)."""
    path = Path(path)
    return entries_from_yaml_text(read_text_file(path), source=str(path))


def _merge_entry(key: str, merged: ASKGEntry, file_key: str, entry: ASKGEntry, source: str) -> None:
    """
    Fill `merged` (class `key`) with the fields of `entry`, stored under `file_key` in `source`; a field both give
    differently is an error.
    """
    if merged.label == key and entry.label != file_key:
        merged.label = entry.label  # keep a label that differs from its key in any file, so that validation reports it
    for attribute, yaml_name in ((f.name, f.metadata["yaml"]) for f in dataclasses.fields(ASKGEntry)[1:]):
        value, existing = getattr(entry, attribute), getattr(merged, attribute)
        if value is None:
            continue
        if existing is not None and existing != value:
            raise ValueError(f"{source}: class {key!r} field {yaml_name!r} differs from an earlier file")
        setattr(merged, attribute, value)


def merge_label_files(
    files: Iterable[tuple[str, Mapping[str, ASKGEntry]]], report: "ValidationReport | None" = None
) -> dict[str, ASKGEntry]:
    """
    Merge `(source, entries)` pairs (files in order) by `class_key`, as `read_label_db` does; a class spelled
    differently in a later file becomes a warning in `report` when given, else a logged warning.
    """
    merged: dict[str, ASKGEntry] = {}
    key_of: dict[str, str] = {}  # class_key -> the class key of its first appearance
    for source, entries in files:
        in_this_file: dict[str, str] = {}
        for file_key, entry in entries.items():
            spelling_free = class_key(file_key)
            if spelling_free in in_this_file:
                raise ValueError(
                    f"{source}: classes {in_this_file[spelling_free]!r} and {file_key!r} differ only in spelling; "
                    "keep one of them"
                )
            in_this_file[spelling_free] = file_key
            if spelling_free not in key_of:
                key_of[spelling_free] = file_key
                merged[file_key] = dataclasses.replace(entry)
                continue
            key = key_of[spelling_free]
            if file_key != key:
                message = f"spelled {file_key!r} in {source}; merged by its spelling-independent class key"
                if report is None:
                    logger.warning("class %r %s", key, message)
                else:
                    report.issues.append(Issue(key, "class key", message, "warning"))
            _merge_entry(key, merged[key], file_key, entry, source)
    return merged


def read_label_db(*paths: str | os.PathLike, report: "ValidationReport | None" = None) -> dict[str, ASKGEntry]:
    """
    Read one or more YAML files and merge them by class, e.g. an ASKG file and its clause file, as written: for
    validation (`read_usable_label_db` reads them for use). Classes are matched by `class_key` and keep the key and
    order of their first appearance; a field given by two files must agree. A class spelled differently in a later
    file becomes a warning in `report` when given, else a logged warning.
    """
    if not paths:
        raise ValueError("read_label_db needs at least one file")
    return merge_label_files(((str(path), read_askg_file(path)) for path in paths), report)


def usable_entries(
    entries: Mapping[str, ASKGEntry], source: str, fields: Iterable[str] | None = None
) -> dict[str, ASKGEntry]:
    """
    Copies of `entries` ready for use: the label is the class key, and every item that validation calls an error in
    the YAML `fields` (default: all) is left out (a malformed triple, an empty clause, a sub-action triple naming an
    unlisted sub-action); the rest of the class is kept. Each change is logged as a warning naming `source`, the
    class, the field and the item.
    """
    wanted = None if fields is None else set(fields)
    usable = {}
    for key, entry in entries.items():
        dropped: dict[str, set[int]] = {}
        for issue in validate_entry(key, entry):
            if issue.severity == "error" and issue.item is not None and (wanted is None or issue.field in wanted):
                dropped.setdefault(issue.field, set()).add(issue.item)
                logger.warning("%s: class %r field %r: skipped, %s", source, key, issue.field, issue.message)
        if entry.label != key:
            logger.warning("%s: class %r: label %r differs from the class key, which is used", source, key, entry.label)
        changes = {
            ATTRIBUTE_BY_YAML_FIELD[name]: [
                item for index, item in enumerate(getattr(entry, ATTRIBUTE_BY_YAML_FIELD[name])) if index not in items
            ]
            for name, items in dropped.items()
        }
        usable[key] = dataclasses.replace(entry, label=key, **changes)
    return usable


def read_usable_label_db(*paths: str | os.PathLike, fields: Iterable[str] | None = None) -> dict[str, ASKGEntry]:
    """
    Read and merge YAML files as `read_label_db` does, for use: each file's entries pass through `usable_entries`
    (items with errors in `fields` skipped, labels replaced by their class keys, each logged naming the file) first.
    """
    if not paths:
        raise ValueError("read_usable_label_db needs at least one file")
    fields = None if fields is None else tuple(fields)
    return merge_label_files((str(path), usable_entries(read_askg_file(path), str(path), fields)) for path in paths)


def _quote_if_needed(text: str) -> str:
    """
    `text` as a YAML scalar that reads back unchanged both as a list item and as a mapping key: plain if it can be,
    else double-quoted, with non-ASCII characters escaped when YAML cannot hold them as they are.
    """
    for scalar in (text, json.dumps(text, ensure_ascii=False)):
        if _reads_back(scalar, text):
            return scalar
    return json.dumps(text)


def _reads_back(scalar: str, text: str) -> bool:
    try:
        return yaml.safe_load(f"- {scalar}") == [text] and yaml.safe_load(f"{scalar}: x") == {text: "x"}
    except yaml.YAMLError:
        return False


def dump_entries(entries: Mapping[str, ASKGEntry]) -> str:
    """YAML text of `entries` in the authors' layout: 2-space indentation, one item a line, classes apart."""
    blocks = []
    for key, entry in entries.items():
        lines = [f"{_quote_if_needed(key)}:"]
        for name, value in entry.to_yaml_dict().items():
            if name == "label":
                lines.append(f"  label: {_quote_if_needed(value)}")
            elif value:
                lines.append(f"  {name}:")
                lines.extend(f"  - {_quote_if_needed(item)}" for item in value)
            else:
                lines.append(f"  {name}: []")
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)


def write_askg_file(entries: Mapping[str, ASKGEntry], path: str | os.PathLike) -> Path:
    """Write `entries` as a YAML file (atomically); the fields each entry has decide the kind of file."""
    return write_text_atomically(path, dump_entries(entries))


# ----------------------------------------------------------------------------------------------------------
# Validation


@dataclass(frozen=True)
class Issue:
    """One validation finding for class `key`, in YAML field `field`."""

    key: str
    field: str
    message: str
    severity: str  # "error" or "warning"
    item: int | None = None  # the index of the item in `field` the finding is about, if it is about one

    def __str__(self) -> str:
        return f"{self.severity}: {self.key!r} {self.field}: {self.message}"


@dataclass
class ValidationReport:
    """The findings of `validate_entries`, in class order."""

    issues: list[Issue] = field(default_factory=list)

    @property
    def errors(self) -> list[Issue]:
        return [issue for issue in self.issues if issue.severity == "error"]

    @property
    def warnings(self) -> list[Issue]:
        return [issue for issue in self.issues if issue.severity == "warning"]

    def ok(self, strict: bool = False) -> bool:
        """No errors (and, when `strict`, no warnings either)."""
        return not (self.issues if strict else self.errors)

    def format(self) -> str:
        """One line per issue, then a summary line."""
        lines = [str(issue) for issue in self.issues]
        lines.append(f"{len(self.errors)} error(s), {len(self.warnings)} warning(s)")
        return "\n".join(lines)


class _EntryChecker:
    """Collects the issues of one entry; each `check_*` method covers one rule family."""

    def __init__(self, key: str, entry: ASKGEntry):
        self.key, self.entry = key, entry
        self.fields = {name: value for name, value in entry.to_yaml_dict().items() if name != "label"}
        self.issues: list[Issue] = []

    def error(self, field_name: str, message: str, item: int | None = None) -> None:
        self.issues.append(Issue(self.key, field_name, message, "error", item))

    def warn(self, field_name: str, message: str, item: int | None = None) -> None:
        self.issues.append(Issue(self.key, field_name, message, "warning", item))

    def is_label(self, name: str) -> bool:
        """Whether `name` names this class, whatever its spelling (see `class_key`)."""
        return class_key(name) == class_key(self.key)

    def run(self) -> list[Issue]:
        self.check_label()
        for name, items in self.fields.items():
            self.check_list(name, items)
        for name in TRIPLE_FIELDS:
            if name in self.fields:
                self.check_triples(name)
        self.check_action_object_triples()
        self.check_sub_action_triples()
        for name in CLAUSE_FIELDS:
            if name in self.fields:
                self.check_clauses(name)
        return self.issues

    def parsed(self, name: str) -> list[tuple[int, Triple]]:
        """The (index, triple) pairs of a triple field that parse; the others are reported by `check_triples`."""
        triples = []
        for index, text in enumerate(self.fields.get(name) or []):
            try:
                triples.append((index, Triple.parse(text)))
            except ValueError:
                continue
        return triples

    def check_label(self) -> None:
        if not self.entry.label.strip():
            self.error("label", "is empty")
        elif self.entry.label != self.key:
            self.warn("label", f"{self.entry.label!r} differs from the class key {self.key!r}, which is used")

    def check_list(self, name: str, items: list[str]) -> None:
        if not items:
            self.warn(name, "is empty")
            return
        for index, item in enumerate(items):
            if not item.strip():
                self.error(name, f"item {index} is an empty string", index)
            elif item != item.strip() or "\t" in item:
                self.warn(name, f"item {index} {item!r} has surrounding whitespace or a tab")
        duplicates = sorted(item for item, count in Counter(items).items() if count > 1)
        if duplicates:
            self.warn(name, f"has duplicates {duplicates}")
        if name in COUNT_LIMITS:
            low, high = COUNT_LIMITS[name]
            if not low <= len(items) <= high:
                self.warn(name, f"has {len(items)} items, the authoring rules ask for {low} to {high}")

    def check_triples(self, name: str) -> None:
        for index, text in enumerate(self.fields[name]):
            if not text.strip():
                continue  # reported by check_list
            try:
                Triple.parse(text)
            except ValueError as error:
                self.error(name, f"item {index}: {error}", index)

    def check_action_object_triples(self) -> None:
        objects = set(self.fields.get("obj_en_li") or [])
        for index, triple in self.parsed("act_obj_triples"):
            if not self.is_label(triple.head):
                self.warn("act_obj_triples", f"item {index} {str(triple)!r}: the head is not the label {self.key!r}")
            elif "obj_en_li" in self.fields and triple.tail not in objects:
                self.warn("act_obj_triples", f"item {index} {str(triple)!r}: {triple.tail!r} is not in obj_en_li")

    def check_sub_action_triples(self) -> None:
        if "act_rel_triples" not in self.fields:
            return
        sub_actions = self.fields.get("sub_act_en_li") or []
        triples = self.parsed("act_rel_triples")
        for index, triple in triples:
            for end in (triple.head, triple.tail):
                if end not in sub_actions and not self.is_label(end):
                    self.error(
                        "act_rel_triples",
                        f"item {index} {str(triple)!r} names {end!r}, which is neither the label nor in sub_act_en_li",
                        index,
                    )
        expected = [Triple(self.key, "starts with", sub_actions[0])] if sub_actions else []
        expected += [Triple(before, "precedes", after) for before, after in zip(sub_actions, sub_actions[1:])]
        written = [
            Triple(self.key, triple.relation, triple.tail) if self.is_label(triple.head) else triple
            for _, triple in triples
        ]
        if len(triples) == len(self.fields["act_rel_triples"]) and written != expected:
            self.warn(
                "act_rel_triples",
                "is not the chain '<label, starts with, first>', then '<sub-action, precedes, next>' for each "
                "consecutive pair of sub_act_en_li",
            )

    def check_clauses(self, name: str) -> None:
        openings = CLAUSE_OPENINGS[name]
        for index, clause in enumerate(self.fields[name]):
            text = clause.strip()
            if not text:
                continue  # reported by check_list
            if not text.startswith(openings):
                self.warn(name, f"item {index} {clause!r} does not start with {' / '.join(repr(o) for o in openings)}")
            if text.endswith("."):
                self.warn(name, f"item {index} {clause!r} ends with a period")


def validate_entry(key: str, entry: ASKGEntry) -> list[Issue]:
    """The issues of the entry stored under class key `key`."""
    return _EntryChecker(key, entry).run()


def validate_entries(entries: Mapping[str, ASKGEntry]) -> ValidationReport:
    """
    Validate every entry, and that every class has the fields the others have (a class missing from one of
    several merged files shows up as a class without those fields).
    """
    present = set().union(*(entry.to_yaml_dict() for entry in entries.values())) - {"label"}
    ordered_present = [name for name in ATTRIBUTE_BY_YAML_FIELD if name in present]
    report = ValidationReport()
    for key, entry in entries.items():
        missing = [name for name in ordered_present if getattr(entry, ATTRIBUTE_BY_YAML_FIELD[name]) is None]
        if missing:
            report.issues.append(Issue(key, ", ".join(missing), "missing, other classes have it", "warning"))
        report.issues.extend(validate_entry(key, entry))
    return report
