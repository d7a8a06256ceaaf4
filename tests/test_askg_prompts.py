import dataclasses
import json
import logging
import statistics

import pytest
from askg_testing import make_entry, make_graph, reference_label_db
from modeling_stdd.askg import DEFAULT_TEMPLATES, LabelTexts, build_prompts, read_label_db, write_askg_file
from modeling_stdd.askg import prompts as prompts_module
from modeling_stdd.askg.__main__ import main
from modeling_stdd.askg.prompts import read_templates, templates_from_options
from modeling_stdd.askg.schema import CLAUSE_FIELDS, GRAPH_FIELDS, class_key, dump_entries


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
    for bad in (["a video of {label}."], ["a video of {}{}."], ["a video of {:>5}."], [], "a video of {}."):
        with pytest.raises(ValueError, match="exactly once|must not be empty|list of templates"):
            build_prompts("jumping", [], bad)
    assert build_prompts("jumping", [], ["{{literal}} {}."]) == ["{literal} jumping."]  # the pipeline's rule


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


def test_entries_without_clause_lists_are_refused_and_unusable_clauses_skipped(caplog):
    with pytest.raises(ValueError, match="have no clause lists.*verbalize"):
        LabelTexts.from_label_db({"stirring coffee": make_graph("stirring coffee")})
    entry = make_entry("stirring coffee")
    entry.xprompt_ao[1] = ""
    entry.object_triples.append("<spoon, sugar>")  # graph errors do not matter for prompts
    entry.label = "stirring the coffee"
    with caplog.at_level(logging.WARNING):
        texts = LabelTexts.from_label_db({"stirring coffee": entry}, source="mine.yml")
    assert texts.labels == ["stirring coffee"]  # the class key wins over the label
    clauses = [clause for clause in entry.clauses if clause]
    assert len(texts["stirring coffee"]) == len(DEFAULT_TEMPLATES) * (1 + len(clauses))
    assert "mine.yml: class 'stirring coffee' field 'xprompt_ao': skipped, item 1 is an empty string" in caplog.text
    assert "label 'stirring the coffee' differs from the class key" in caplog.text
    assert "obj_rel_triples" not in caplog.text


def test_label_texts_from_an_askg_file_and_its_clause_file(tmp_path):
    entry = make_entry("Wave Hand")
    write_askg_file({"Wave Hand": entry.subset(GRAPH_FIELDS)}, tmp_path / "graph.yml")
    clauses = dataclasses.replace(entry.subset(CLAUSE_FIELDS), label="waving hand")
    (tmp_path / "clauses.yml").write_text(dump_entries({"wave hand": clauses}))
    expected = LabelTexts.from_label_db({"Wave Hand": entry})
    both = LabelTexts.from_askg_files(tmp_path / "graph.yml", tmp_path / "clauses.yml")
    assert both.texts == expected.texts and both.source == f"{tmp_path / 'graph.yml'}, {tmp_path / 'clauses.yml'}"
    sources = [str(tmp_path / "graph.yml"), str(tmp_path / "clauses.yml")]
    assert LabelTexts.from_sources(sources).texts == expected.texts
    assert LabelTexts.from_file(tmp_path / "clauses.yml").labels == ["wave hand"]
    json_file = LabelTexts({"jumping": ["a video of jumping."]}).save(tmp_path / "extra.json")
    merged = LabelTexts.from_sources([*sources, str(json_file)])
    assert merged.labels == ["Wave Hand", "jumping"] and merged.templates is None
    with pytest.raises(ValueError, match="graph.yml: no clause lists; give the clause file after its ASKG file"):
        LabelTexts.from_sources([str(tmp_path / "graph.yml")])
    with pytest.raises(ValueError, match="extra.json: a label-texts JSON file holds finished prompts"):
        LabelTexts.from_sources([str(json_file)], templates=["{}."])
    with pytest.raises(ValueError, match="neither a file nor a shipped"):
        LabelTexts.from_sources(["absent"])


def test_templates_from_a_yaml_templates_list_or_a_text_file(tmp_path):
    templates = [f"template {index} of {{}}." for index in range(10)]
    (tmp_path / "classes.yml").write_text(yaml_templates_file(templates))
    assert read_templates(tmp_path / "classes.yml") == templates[:8]  # the authors use the first 8
    assert read_templates(tmp_path / "classes.yml", 3) == templates[:3]
    (tmp_path / "templates.txt").write_text("a video of {}.\n\n  {}.  \n")
    assert read_templates(tmp_path / "templates.txt") == ["a video of {}.", "{}."]
    assert templates_from_options(None, None) is None
    cases = [
        ((tmp_path / "classes.yml", 11), "asked for 11 templates, the file has 10"),
        ((tmp_path / "classes.yml", 0), "an integer >= 1"),
        ((tmp_path / "absent.txt", None), "templates file not found"),
        ((None, 4), "--num-templates needs --templates FILE"),
    ]
    (tmp_path / "no_list.yml").write_text("classes: [a, b]\n")
    (tmp_path / "bad.txt").write_text("a video of {}.\na video of {label}.\n")
    cases += [((tmp_path / "no_list.yml", None), "expected a 'templates:' list"), ((tmp_path / "bad.txt", None), "template 1")]
    for (path, count), message in cases:
        with pytest.raises(ValueError, match=message):
            templates_from_options(path, count)


def yaml_templates_file(templates):
    """A file laid out like the authors' classes_label_<dataset>.yml: classes, then a templates list."""
    return "classes:\n- jumping\n- running\ntemplates:\n" + "".join(f"- {template}\n" for template in templates)


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
    printed = "2 classes, 2 templates, prompts per class: min 20, median 20, max 20, total 40"
    assert printed in capsys.readouterr().out
    texts = LabelTexts.from_file(out)
    assert texts.templates == ["a video of {}.", "{}."] and len(texts["sweetening tea"]) == 2 * (1 + 9)
    (tmp_path / "classes.yml").write_text(yaml_templates_file([f"clip {index} of {{}}." for index in range(12)]))
    arguments = ["prompts", str(tmp_path / "db.yml"), "--out", str(tmp_path / "authors.json")]
    assert main([*arguments, "--templates", str(tmp_path / "classes.yml")]) == 0
    assert LabelTexts.from_file(tmp_path / "authors.json").templates == [f"clip {index} of {{}}." for index in range(8)]
    assert main([*arguments, "--templates", str(tmp_path / "classes.yml"), "--num-templates", "12"]) == 0
    assert len(LabelTexts.from_file(tmp_path / "authors.json").templates) == 12
    assert main([*arguments, "--num-templates", "3"]) == 1
    assert "--num-templates needs --templates FILE" in capsys.readouterr().err


def test_reference_ucf101_prompt_sets():
    folder = reference_label_db()
    entries = read_label_db(folder / "classes_ASKG_ucf101.yml", folder / "classes_xprompt_ucf101.yml")
    texts = LabelTexts.from_label_db(entries)
    assert len(texts) == 101
    for label, entry in entries.items():
        prompts = texts[label]
        assert len(prompts) == len(set(prompts)) <= len(DEFAULT_TEMPLATES) * (1 + len(entry.clauses))
        assert prompts[0] == DEFAULT_TEMPLATES[0].format(label)


@pytest.mark.parametrize("dataset, num_classes", [("ucf101", 101), ("hmdb51", 51), ("k400", 400)])
def test_the_authors_askg_and_clause_files_work_in_every_reader(dataset, num_classes, tmp_path, capsys):
    folder = reference_label_db()
    files = [str(folder / f"classes_ASKG_{dataset}.yml"), str(folder / f"classes_xprompt_{dataset}.yml")]
    assert main(["prompts", *files, "--out", str(tmp_path / "texts.json")]) == 0
    texts = LabelTexts.from_file(tmp_path / "texts.json")
    counts = [len(prompts) for prompts in texts.texts.values()]
    printed = (
        f"{num_classes} classes, 8 templates, prompts per class: min {min(counts)}, "
        f"median {statistics.median(counts):g}, max {max(counts)}, total {sum(counts)}"
    )
    assert printed in capsys.readouterr().out
    assert len(texts) == num_classes and min(counts) > len(DEFAULT_TEMPLATES)  # every class has clauses
    assert LabelTexts.from_sources(files).texts == texts.texts
    clauses_only = LabelTexts.from_file(files[1], templates=read_templates(folder / f"classes_label_{dataset}.yml"))
    assert [class_key(label) for label in clauses_only.labels] == [class_key(label) for label in texts.labels]
    if dataset == "hmdb51":
        assert {"wave", "chew", "shoot gun"} <= set(texts.labels) and "waving" not in texts.labels
    authors_templates = clauses_only.templates
    assert len(authors_templates) == 8 and authors_templates != list(DEFAULT_TEMPLATES)
    label = clauses_only.labels[0]
    assert clauses_only[label][0] == authors_templates[0].format(label)
