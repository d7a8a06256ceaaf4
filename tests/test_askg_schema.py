import dataclasses
import logging
import os
import subprocess
import sys

import pytest
from askg_testing import REPO_ROOT, make_entry, reference_label_db
from modeling_stdd.askg import Triple, read_askg_file, read_label_db, validate_entries, write_askg_file
from modeling_stdd.askg.__main__ import main
from modeling_stdd.askg.schema import (
    CLAUSE_FIELDS,
    GRAPH_FIELDS,
    ValidationReport,
    class_key,
    dump_entries,
    read_usable_label_db,
    usable_entries,
)


def issues_of(entry, key=None):
    return validate_entries({key or entry.label: entry}).issues


def test_triple_parse_and_format():
    assert Triple.parse(" <hand, holds,  lipstick> ") == Triple("hand", "holds", "lipstick")
    assert str(Triple("hand", "holds", "lipstick")) == "<hand, holds, lipstick>"
    for text, reason in [
        ("<eye, area where makeup goes>", "2 comma-separated parts"),
        ("<a, b, c, d>", "4 comma-separated parts"),
        ("<a, , c>", "empty part"),
        ("a, b, c", "not enclosed"),
        ("<a, <b>, c>", "'<' or '>' inside"),
    ]:
        with pytest.raises(ValueError, match=reason):
            Triple.parse(text)


def test_a_valid_entry_has_no_issues():
    assert issues_of(make_entry("stirring coffee")) == []


def test_write_then_read_round_trips_including_awkward_names(tmp_path):
    names = ["massaging person's head", "yes", "tying knot: bowline", "#1 dance"]
    entries = {name: make_entry(name) for name in names}
    path = write_askg_file(entries, tmp_path / "db.yml")
    assert read_askg_file(path) == entries
    assert validate_entries(read_askg_file(path)).issues == []


def test_write_then_read_round_trips_characters_yaml_cannot_hold_as_they_are(tmp_path):
    texts = ["nel\x85x", "del\x7fx", "line\u2028sep", "bom\ufeff", "caf\u00e9: au lait", "emoji \U0001F600", "x\ny"]
    entries = {}
    for index, text in enumerate(texts):
        entry = make_entry(f"class {index}")
        entry.xprompt_oo = [f"where {text}"]
        entries[text] = dataclasses.replace(entry, label=text)
    path = write_askg_file(entries, tmp_path / "db.yml")
    assert read_askg_file(path) == entries


def test_graph_and_clause_files_merge_by_class(tmp_path):
    entry = make_entry("stirring coffee")
    graph, clauses = entry.subset(GRAPH_FIELDS), entry.subset(CLAUSE_FIELDS)
    write_askg_file({entry.label: graph}, tmp_path / "graph.yml")
    write_askg_file({entry.label: clauses}, tmp_path / "clauses.yml")
    assert read_label_db(tmp_path / "graph.yml", tmp_path / "clauses.yml") == {entry.label: entry}

    changed = dataclasses.replace(clauses, label="stirring coffee", xprompt_oo=["where something else happens"])
    write_askg_file({entry.label: dataclasses.replace(graph, xprompt_oo=entry.xprompt_oo)}, tmp_path / "both.yml")
    write_askg_file({entry.label: changed}, tmp_path / "other.yml")
    with pytest.raises(ValueError, match="other.yml: class 'stirring coffee' field 'xprompt_oo' differs"):
        read_label_db(tmp_path / "both.yml", tmp_path / "other.yml")


def test_label_mismatch_in_a_merged_file_is_a_warning_and_the_key_wins(tmp_path, caplog):
    entry = make_entry("wave")
    write_askg_file({"wave": entry.subset(GRAPH_FIELDS)}, tmp_path / "a.yml")
    clauses = dataclasses.replace(entry.subset(CLAUSE_FIELDS), label="waving")
    (tmp_path / "b.yml").write_text(dump_entries({"wave": clauses}))
    report = validate_entries(read_label_db(tmp_path / "a.yml", tmp_path / "b.yml"))
    assert [(issue.key, issue.field, issue.severity) for issue in report.issues] == [("wave", "label", "warning")]
    assert "'waving' differs from the class key 'wave', which is used" in report.issues[0].message
    with caplog.at_level(logging.WARNING):
        usable = read_usable_label_db(tmp_path / "a.yml", tmp_path / "b.yml")
    assert usable == {"wave": entry}
    assert f"{tmp_path / 'b.yml'}: class 'wave': label 'waving' differs from the class key" in caplog.text


def test_files_merge_by_the_spelling_independent_class_key(tmp_path, caplog):
    assert class_key("Passing American Football (in game)") == class_key("passing_american_football_in_game")
    entry = make_entry("Wave Hand")
    write_askg_file({"Wave Hand": entry.subset(GRAPH_FIELDS)}, tmp_path / "graph.yml")
    clauses = dataclasses.replace(entry.subset(CLAUSE_FIELDS), label="wave hand")
    write_askg_file({"wave hand": clauses}, tmp_path / "clauses.yml")
    report = ValidationReport()
    merged = read_label_db(tmp_path / "graph.yml", tmp_path / "clauses.yml", report=report)
    assert list(merged) == ["Wave Hand"] and merged["Wave Hand"].clauses == entry.clauses
    note = f"spelled 'wave hand' in {tmp_path / 'clauses.yml'}; merged by its spelling-independent class key"
    assert [(issue.key, issue.message, issue.severity) for issue in report.issues] == [("Wave Hand", note, "warning")]
    with caplog.at_level(logging.WARNING):
        read_label_db(tmp_path / "graph.yml", tmp_path / "clauses.yml")
    assert note in caplog.text
    # the label of the clause file differs from the merged key only in case: no error anywhere
    assert validate_entries(merged).errors == []
    (tmp_path / "twice.yml").write_text("Wave Hand:\n  label: Wave Hand\nwave_hand:\n  label: wave_hand\n")
    with pytest.raises(ValueError, match="twice.yml: classes 'Wave Hand' and 'wave_hand' differ only in spelling"):
        read_label_db(tmp_path / "twice.yml")


def test_a_label_spelled_otherwise_in_triples_is_not_an_error():
    entry = make_entry("stirring coffee")
    entry.action_object_triples = [triple.replace("stirring coffee", "Stirring Coffee") for triple in
                                   entry.action_object_triples]  # fmt: skip
    entry.sub_action_triples[0] = entry.sub_action_triples[0].replace("stirring coffee", "Stirring Coffee")
    assert issues_of(entry) == []


def test_usable_entries_skip_unusable_items_with_a_warning_naming_file_class_field_and_item(caplog):
    entry = make_entry("stirring coffee")
    entry.object_triples.insert(1, "<spoon, sugar>")
    entry.sub_action_triples.append("<stirring the coffee, precedes, pouring milk>")
    entry.xprompt_ao.insert(0, " ")
    with caplog.at_level(logging.WARNING):
        graph_only = usable_entries({"stirring coffee": entry}, "db.yml", fields=GRAPH_FIELDS)["stirring coffee"]
    clean = make_entry("stirring coffee")
    assert graph_only.object_triples == clean.object_triples
    assert graph_only.sub_action_triples == clean.sub_action_triples
    assert graph_only.xprompt_ao == entry.xprompt_ao  # not a graph field: kept as written
    assert "db.yml: class 'stirring coffee' field 'obj_rel_triples': skipped, item 1: '<spoon, sugar>'" in caplog.text
    assert "field 'act_rel_triples': skipped, item 3 '<stirring the coffee, precedes, pouring milk>'" in caplog.text
    assert usable_entries({"stirring coffee": entry}, "db.yml")["stirring coffee"].xprompt_ao == clean.xprompt_ao
    assert entry.object_triples[1] == "<spoon, sugar>"  # the input is untouched


@pytest.mark.parametrize(
    "text, message",
    [
        ("[a, b]", "expected a mapping from class names"),
        ("a: [1, 2]", "class 'a' must be a mapping of fields"),
        ("a:\n  label: a\n  colour: red\n", "class 'a' has unknown fields \\['colour'\\]"),
        ("a:\n  label: a\n  1: [x]\n  notes: [z]\n", "class 'a' has unknown fields \\['notes', 1\\]"),
        ("a:\n  obj_en_li: [x]\n", "class 'a' field 'label' must be a string"),
        ("a:\n  label: a\n  obj_en_li: x\n", "class 'a' field 'obj_en_li' must be a list"),
        ("a:\n  label: a\n  obj_en_li: [{x: 1}]\n", "field 'obj_en_li' item 0 must be a string"),
        ("a:\n  label: a\na:\n  label: a\n", "duplicate key 'a'"),
        ("a:\n  label: [a\n", "not valid YAML"),
        ("[a, b]:\n  label: a\n", r"a key must be a name, got the list \['a', 'b'\]"),
        ("a:\n  label: a\n  ? [obj_en_li]\n  : [x]\n", r"a key must be a name, got the list \['obj_en_li'\]"),
        ("a:\n  {label: a}: x\n", r"a key must be a name, got the dict \{'label': 'a'\}"),
    ],
)
def test_structural_problems_name_the_file_class_and_field(tmp_path, text, message):
    path = tmp_path / "broken.yml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as error:
        read_askg_file(path)
    assert str(path) in str(error.value)


def test_triples_written_as_yaml_lists_are_read_as_triples(tmp_path):
    path = tmp_path / "db.yml"
    path.write_text("cut:\n  label: cut\n  act_obj_triples:\n  - [cut, uses, knife]\n  - <cut, needs, board>\n")
    assert read_askg_file(path)["cut"].action_object_triples == ["<cut, uses, knife>", "<cut, needs, board>"]


def test_errors_are_reported_per_class_with_the_field():
    entry = make_entry("stirring coffee")
    entry.label = "stirring tea"
    entry.object_triples[0] = "<right hand, holds spoon>"
    entry.objects[1] = "  "
    entry.sub_action_triples[2] = "<scooping some sugar, precedes, pouring milk>"
    errors = [issue for issue in issues_of(entry, "stirring coffee") if issue.severity == "error"]
    assert {issue.key for issue in errors} == {"stirring coffee"}
    assert [issue.field for issue in errors] == ["obj_en_li", "obj_rel_triples", "act_rel_triples"]
    assert [issue.item for issue in errors] == [1, 0, 2]
    assert "'pouring milk', which is neither the label nor in sub_act_en_li" in errors[-1].message
    assert [issue.field for issue in issues_of(entry, "stirring coffee") if issue.field == "label"] == ["label"]


def test_authoring_rules_are_warnings():
    entry = make_entry("stirring coffee")
    entry.objects = entry.objects[:4]
    entry.sub_actions.append("tasting the coffee")  # the order triples no longer form the chain
    entry.action_object_triples[0] = "<stirring coffee, uses, teaspoon>"
    entry.xprompt_oo[0] = "a hand holds a spoon."
    entry.xprompt_ao.append(entry.xprompt_ao[0])
    warnings = {issue.field: issue.message for issue in issues_of(entry) if issue.severity == "warning"}
    assert [issue for issue in issues_of(entry) if issue.severity == "error"] == []
    assert "has 4 items, the authoring rules ask for 5 to 10" in warnings["obj_en_li"]
    assert "'teaspoon' is not in obj_en_li" in warnings["act_obj_triples"]
    assert "is not the chain" in warnings["act_rel_triples"]
    assert "has duplicates" in warnings["xprompt_ao"]
    messages = [issue.message for issue in issues_of(entry) if issue.field == "xprompt_oo"]
    assert any("does not start with 'where '" in message for message in messages)
    assert any("ends with a period" in message for message in messages)


def test_empty_fields_warn_and_missing_fields_warn_when_other_classes_have_them():
    complete = make_entry("stirring coffee")
    empty = make_entry("smile")
    empty.sub_actions, empty.sub_action_triples, empty.xprompt_aa = [], [], []
    graph_only = make_entry("wave hand").subset(GRAPH_FIELDS)
    entries = {"stirring coffee": complete, "smile": empty, "wave hand": graph_only}
    report = validate_entries(entries)
    assert report.errors == []
    found = {(issue.key, issue.field, issue.message) for issue in report.warnings}
    for field_name in ("sub_act_en_li", "act_rel_triples", "xprompt_aa"):
        assert ("smile", field_name, "is empty") in found
    assert ("wave hand", "xprompt_oo, xprompt_ao, xprompt_aa", "missing, other classes have it") in found


def test_cli_validate_exit_codes(tmp_path, capsys):
    good, warned, broken = tmp_path / "good.yml", tmp_path / "warned.yml", tmp_path / "broken.yml"
    write_askg_file({"stirring coffee": make_entry("stirring coffee")}, good)
    entry = make_entry("stirring coffee")
    entry.objects.append(entry.objects[0])
    write_askg_file({"stirring coffee": entry}, warned)
    entry = make_entry("stirring coffee")
    entry.object_triples.append("<spoon, sugar>")
    write_askg_file({"stirring coffee": entry}, broken)

    assert main(["validate", str(good)]) == 0
    assert capsys.readouterr().out.strip() == "0 error(s), 0 warning(s)"
    assert main(["validate", str(warned)]) == 0
    assert "warning: 'stirring coffee' obj_en_li: has duplicates" in capsys.readouterr().out
    assert main(["validate", "--strict", str(warned)]) == 1
    assert main(["validate", str(broken)]) == 1
    assert "error: 'stirring coffee' obj_rel_triples: item 3" in capsys.readouterr().out
    assert main(["validate", str(tmp_path / "absent.yml")]) == 1
    assert "absent.yml" in capsys.readouterr().err


def test_module_runs_as_a_command(tmp_path):
    path = write_askg_file({"stirring coffee": make_entry("stirring coffee")}, tmp_path / "db.yml")
    completed = subprocess.run(
        [sys.executable, "-m", "modeling_stdd.askg", "validate", str(path)],
        capture_output=True, text=True, cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, timeout=120,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    assert "0 error(s), 0 warning(s)" in completed.stdout


def test_all_reference_entries_load_and_only_structural_gaps_warn():
    folder = reference_label_db()
    datasets = ("ucf101", "hmdb51", "k400")
    graphs = {name: read_askg_file(folder / f"classes_ASKG_{name}.yml") for name in datasets}
    clauses = {name: read_askg_file(folder / f"classes_xprompt_{name}.yml") for name in datasets}
    assert sum(len(entries) for entries in graphs.values()) == 552
    assert sum(len(entries) for entries in clauses.values()) == 552

    hmdb51 = read_label_db(folder / "classes_ASKG_hmdb51.yml", folder / "classes_xprompt_hmdb51.yml")
    empty = [issue for issue in validate_entries(hmdb51).issues if issue.message == "is empty"]
    assert {issue.key for issue in empty} == {"falling to the floor", "smile", "wave"}
    assert {issue.field for issue in empty} == {"sub_act_en_li", "act_rel_triples", "xprompt_aa"}
    assert {issue.severity for issue in empty} == {"warning"}


def test_validate_reports_every_defect_of_the_authors_files(capsys):
    folder = reference_label_db()
    errors = {}
    for dataset in ("ucf101", "hmdb51", "k400"):
        files = [str(folder / f"classes_ASKG_{dataset}.yml"), str(folder / f"classes_xprompt_{dataset}.yml")]
        assert main(["validate", *files]) == 1  # malformed triples stay errors
        lines = capsys.readouterr().out.splitlines()
        errors[dataset] = [line for line in lines if line.startswith("error:")]
        if dataset == "hmdb51":
            assert "warning: 'wave' label: 'waving' differs from the class key 'wave', which is used" in lines
        if dataset == "k400":
            spelled = [line for line in lines if "merged by its spelling-independent class key" in line]
            assert len(spelled) == 2 and all("passing American football" in line for line in spelled)
    assert all("comma-separated parts" in line or "'performing shiko'" in line for line in sum(errors.values(), []))
    assert [len(errors[dataset]) for dataset in ("ucf101", "hmdb51", "k400")] == [4, 3, 4]

def test_a_file_that_is_not_utf8_is_named(tmp_path, capsys):
    path = tmp_path / "latin1.yml"
    path.write_bytes("caf\xe9:\n  label: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ValueError, match=rf"{path} is not UTF-8 text: byte 0xe9 at offset 3; save it as UTF-8"):
        read_askg_file(path)
    assert main(["validate", str(path)]) == 1
    assert "latin1.yml is not UTF-8 text" in capsys.readouterr().err


def test_cli_validate_reports_a_list_key_as_an_error_not_a_traceback(tmp_path, capsys):
    path = tmp_path / "list_key.yml"
    path.write_text("[a, b]:\n  label: a\n")
    assert main(["validate", str(path)]) == 1
    assert "a key must be a name, got the list" in capsys.readouterr().err
