import json

import pytest
from askg_testing import make_entry, make_graph, reference_label_db
from modeling_stdd.askg import DEFAULT_TEMPLATES, LabelTexts, build_prompts, read_label_db, write_askg_file
from modeling_stdd.askg import prompts as prompts_module
from modeling_stdd.askg.__main__ import main


def test_build_prompts_is_templates_times_plain_and_clauses_deduplicated():
    clauses = ["where a rope turns.", "which uses a rope", "where a rope turns"]
    prompts = build_prompts("jumping", clauses, ["a video of {}.", "{}!"])
    assert prompts == [
        "a video of jumping.",
        "a video of jumping, where a rope turns.",
        "a video of jumping, which uses a rope.",
        "jumping!",
        "jumping, where a rope turns!",
        "jumping, which uses a rope!",
    ]
    assert len(DEFAULT_TEMPLATES) == 8 and len(set(DEFAULT_TEMPLATES)) == 8
    with pytest.raises(ValueError, match="exactly one"):
        build_prompts("jumping", [], ["a video of {label}."])


def test_stray_punctuation_around_clauses_does_not_reach_the_prompts():
    prompts = build_prompts("jump", [", where c", "where d ,", "which e.;"], ["a video of a person {}."])
    assert prompts == [
        "a video of a person jump.",
        "a video of a person jump, where c.",
        "a video of a person jump, where d.",
        "a video of a person jump, which e.",
    ]


def test_label_texts_from_a_plain_dict_and_flatten():
    texts = LabelTexts({"jumping": ["a video of jumping."], "running": ["running.", "a person running."]})
    assert texts.labels == ["jumping", "running"] and len(texts) == 2 and texts["running"][1] == "a person running."
    assert texts.templates is None and texts.source is None
    assert texts.flatten() == (["a video of jumping.", "running.", "a person running."], [0, 1, 1])
    for bad in ({}, {"jumping": []}, {"jumping": "a video."}, {"": ["x"]}, {"jumping": ["ok", " "]}):
        with pytest.raises(ValueError):
            LabelTexts(bad)


def test_label_texts_from_entries_and_json_round_trip(tmp_path):
    entries = {label: make_entry(label) for label in ("stirring coffee", "sweetening tea")}
    texts = LabelTexts.from_label_db(entries, source="mine")
    clauses = entries["stirring coffee"].clauses
    assert len(texts["stirring coffee"]) == len(DEFAULT_TEMPLATES) * (1 + len(clauses))
    assert texts["stirring coffee"][:2] == [
        "a video of a person stirring coffee.",
        f"a video of a person stirring coffee, {clauses[0]}.",
    ]
    path = texts.save(tmp_path / "label_texts.json")
    assert json.loads(path.read_text())["source"] == "mine"
    assert LabelTexts.from_file(path) == texts
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps({"jumping": ["a video of jumping."]}))
    assert LabelTexts.from_file(plain) == LabelTexts({"jumping": ["a video of jumping."]})


def test_label_texts_from_yaml_file(tmp_path):
    path = write_askg_file({"stirring coffee": make_entry("stirring coffee")}, tmp_path / "db.yml")
    texts = LabelTexts.from_file(path, templates=["{}."])
    assert texts.source == str(path) and texts.templates == ["{}."]
    assert texts["stirring coffee"][0] == "stirring coffee."


def test_from_file_errors_name_the_file(tmp_path):
    cases = {
        "broken.json": "{not json",
        "list.json": "[1, 2]",
        "empty_prompts.json": '{"jumping": []}',
        "broken.yml": "a: [",
        "notes.txt": "hello",
    }
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(ValueError, match=name):
            LabelTexts.from_file(tmp_path / name)


def test_entries_without_usable_clauses_are_refused(tmp_path):
    with pytest.raises(ValueError, match="have no clause lists.*verbalize"):
        LabelTexts.from_label_db({"stirring coffee": make_graph("stirring coffee")})
    entry = make_entry("stirring coffee")
    entry.xprompt_ao[1] = ""
    entry.object_triples.append("<spoon, sugar>")  # graph errors do not matter for prompts, clause errors do
    with pytest.raises(ValueError, match="xprompt_ao: item 1 is an empty string") as error:
        LabelTexts.from_label_db({"stirring coffee": entry})
    assert "obj_rel_triples" not in str(error.value)


def test_for_dataset_reads_package_data(tmp_path, monkeypatch):
    monkeypatch.setattr(prompts_module, "PACKAGE_DATA_DIR", tmp_path)
    known = "'ucf101', 'hmdb51', 'kinetics400', 'kinetics600_novel'"
    with pytest.raises(ValueError, match=f"unknown dataset 'ucf'.*{known}"):
        LabelTexts.for_dataset("ucf")
    with pytest.raises(FileNotFoundError, match="no label texts are installed for 'hmdb51'.*available datasets: none"):
        LabelTexts.for_dataset("hmdb51")
    write_askg_file({"stirring coffee": make_entry("stirring coffee")}, tmp_path / "ucf101.yml")
    with pytest.raises(FileNotFoundError, match="available datasets: ucf101"):
        LabelTexts.for_dataset("hmdb51")
    texts = LabelTexts.for_dataset("ucf101")
    assert texts.labels == ["stirring coffee"] and texts.source == "modeling_stdd/label_texts/ucf101.yml"


def test_cli_prompts(tmp_path, capsys):
    write_askg_file({label: make_entry(label) for label in ("stirring coffee", "sweetening tea")}, tmp_path / "db.yml")
    (tmp_path / "templates.txt").write_text("a video of {}.\n\n{}.\n")
    out = tmp_path / "label_texts.json"
    templates = str(tmp_path / "templates.txt")
    arguments = ["prompts", str(tmp_path / "db.yml"), "--out", str(out), "--templates", templates]
    assert main(arguments) == 0
    assert "2 classes, prompts per class: min 20, median 20, max 20" in capsys.readouterr().out
    texts = LabelTexts.from_file(out)
    assert texts.templates == ["a video of {}.", "{}."] and len(texts["sweetening tea"]) == 2 * (1 + 9)


def test_reference_ucf101_prompt_sets():
    folder = reference_label_db()
    entries = read_label_db(folder / "classes_ASKG_ucf101.yml", folder / "classes_xprompt_ucf101.yml")
    texts = LabelTexts.from_label_db(entries)
    assert len(texts) == 101
    for label, entry in entries.items():
        prompts = texts[label]
        assert len(prompts) == len(set(prompts)) <= len(DEFAULT_TEMPLATES) * (1 + len(entry.clauses))
        assert prompts[0] == DEFAULT_TEMPLATES[0].format(label)
