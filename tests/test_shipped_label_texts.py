"""The label texts stdd ships (modeling_stdd/label_texts/*.yml): coverage, validity, prompts per class."""

import csv
import functools
import json
import statistics

import pytest
from askg_testing import reference_label_db

from modeling_stdd.askg import LabelTexts
from modeling_stdd.askg.prompts import DATASETS, DEFAULT_TEMPLATES, PACKAGE_DATA_DIR
from modeling_stdd.askg.schema import entries_from_yaml_text, validate_entries


CLASS_COUNTS = {"ucf101": 101, "hmdb51": 51, "kinetics400": 400, "kinetics600_novel": 232}


@functools.cache
def shipped_entries(name):
    resource = PACKAGE_DATA_DIR.joinpath(f"{name}.yml")
    return entries_from_yaml_text(resource.read_text(encoding="utf-8"), source=str(resource))


def reference_class_names(name):
    folder = reference_label_db()
    if name == "hmdb51":
        with open(folder / "hmdb51-classes.csv", newline="") as file:
            return [row["name"] for row in csv.DictReader(file)]
    index_file = {
        "ucf101": "ucf101-index2cls.json",
        "kinetics400": "k400-index2cls.json",
        "kinetics600_novel": "k600-openset-index2cls.json",
    }[name]
    index_to_class = json.loads((folder / index_file).read_text())
    return [index_to_class[str(index)] for index in range(len(index_to_class))]


@pytest.mark.parametrize("name", DATASETS)
def test_every_class_of_the_dataset_list_is_covered_in_order(name):
    assert list(shipped_entries(name)) == reference_class_names(name)


@pytest.mark.parametrize("name", DATASETS)
def test_shipped_files_pass_validation_without_errors_or_warnings(name):
    entries = shipped_entries(name)
    assert len(entries) == CLASS_COUNTS[name]
    report = validate_entries(entries)
    assert report.errors == [] and report.warnings == [], [str(issue) for issue in report.issues[:10]]


@pytest.mark.parametrize("name", DATASETS)
def test_every_class_has_the_full_graph_and_all_three_clause_lists(name):
    for entry in shipped_entries(name).values():
        assert 5 <= len(entry.objects) <= 10
        assert 3 <= len(entry.sub_actions) <= 8
        assert len(entry.sub_action_triples) == len(entry.sub_actions)
        assert entry.object_triples and entry.action_object_triples
        assert entry.xprompt_oo and entry.xprompt_ao and entry.xprompt_aa


@pytest.mark.parametrize("name", DATASETS)
def test_for_dataset_builds_prompt_sets_for_every_class(name):
    label_texts = LabelTexts.for_dataset(name)
    assert len(label_texts) == CLASS_COUNTS[name]
    counts = [len(label_texts[label]) for label in label_texts.labels]
    # every template gives the plain label and at least the nine clauses each class has as a minimum
    assert min(counts) >= len(DEFAULT_TEMPLATES) * (1 + 9)
    assert statistics.median(counts) >= len(DEFAULT_TEMPLATES) * (1 + 12)
    for label in label_texts.labels:
        prompts = label_texts[label]
        assert len(prompts) == len(set(prompts))
        assert DEFAULT_TEMPLATES[0].format(label) in prompts
