import logging

import pytest
from askg_testing import make_entry, make_graph, reference_label_db
from modeling_stdd.askg import ASKGEntry, Triple, read_askg_file, validate_entries, verbalize_entries, write_askg_file
from modeling_stdd.askg.__main__ import main
from modeling_stdd.askg.verbalizer import action_object_clause, object_clause, sub_action_clause


@pytest.mark.parametrize(
    "triple, clause",
    [
        ("<hand, holds, lipstick>", "where the hand holds the lipstick"),
        ("<lipstick, applied on, lips>", "where the lipstick is applied on the lips"),
        ("<boots, worn in, stirrups>", "where the boots are worn in the stirrups"),
        ("<hand, is part of, arm>", "where the hand is part of the arm"),
        ("<brush, used for, applying eye shadow>", "where the brush is used for applying eye shadow"),
        ("<dough, mixed in, mixing bowl>", "where the dough is mixed in the mixing bowl"),
        ("<hair tie, used to, secure the braid>", "where the hair tie is used to secure the braid"),
        ("<player, throws, a ball>", "where the player throws a ball"),
    ],
)
def test_object_clauses(triple, clause):
    assert object_clause(Triple.parse(triple)) == clause


def test_action_object_clauses():
    assert action_object_clause(Triple.parse("<apply lipstick, uses, lipstick>"), "apply lipstick") == (
        "which uses the lipstick"
    )
    assert action_object_clause(Triple.parse("<archery, practised on, range>"), "archery") == (
        "which is practised on the range"
    )
    assert action_object_clause(Triple.parse("<hoop, attached to, backboard>"), "basketball") == (
        "where the hoop is attached to the backboard"
    )


def test_sub_action_clauses():
    label = "apply lipstick"
    assert sub_action_clause(Triple(label, "starts with", "opening the lipstick"), label) == (
        "starting with opening the lipstick"
    )
    assert sub_action_clause(Triple(label, "ends with", "pressing the lips"), label) == "ending with pressing the lips"
    assert sub_action_clause(Triple("opening the lipstick", "precedes", "holding the mirror"), label) == (
        "where opening the lipstick precedes holding the mirror"
    )
    assert sub_action_clause(Triple("lifting weights", "followed by", "resting"), label) == (
        "where lifting weights is followed by resting"
    )


def test_verbalized_entries_are_valid_and_deterministic():
    entries = {label: make_graph(label) for label in ("stirring coffee", "sweetening tea")}
    first, second = verbalize_entries(entries), verbalize_entries(entries)
    assert first == second
    assert validate_entries(first).issues == []
    entry = first["stirring coffee"]
    assert entry.objects == entries["stirring coffee"].objects
    assert entry.xprompt_oo == [
        "where the right hand holds the spoon",
        "where the coffee mug is placed on the kitchen table",
        "where the spoon is used for scooping sugar",
    ]
    assert entry.xprompt_ao == ["which uses the spoon", "which fills the coffee mug", "which needs the right hand"]
    assert entry.xprompt_aa == [
        "starting with reaching for the spoon",
        "where reaching for the spoon precedes scooping some sugar",
        "where scooping some sugar precedes stirring the coffee",
        "ending with stirring the coffee",
    ]


def test_existing_clauses_are_replaced_and_an_explicit_end_is_not_repeated():
    entry = make_entry("stirring coffee")
    entry.sub_action_triples.append("<stirring coffee, ends with, stirring the coffee>")
    clauses = verbalize_entries({entry.label: entry})[entry.label].xprompt_aa
    assert clauses[-1] == "ending with stirring the coffee" and clauses.count("ending with stirring the coffee") == 1


def test_invalid_graphs_are_refused_with_the_reasons():
    broken = make_graph("stirring coffee")
    broken.object_triples.append("<spoon, sugar>")
    clauses_only = ASKGEntry("sweetening tea", xprompt_oo=["where tea steams"])
    with pytest.raises(ValueError, match="cannot verbalize") as error:
        verbalize_entries({"stirring coffee": broken, "sweetening tea": clauses_only})
    assert "'sweetening tea': has no graph fields" in str(error.value)
    assert "'stirring coffee' obj_rel_triples: item 3" in str(error.value)


def test_cli_verbalize_writes_a_combined_file(tmp_path, capsys):
    write_askg_file({"stirring coffee": make_graph("stirring coffee")}, tmp_path / "graph.yml")
    assert main(["verbalize", str(tmp_path / "graph.yml"), "--out", str(tmp_path / "combined.yml")]) == 0
    combined = read_askg_file(tmp_path / "combined.yml")
    assert combined["stirring coffee"].xprompt_aa[0] == "starting with reaching for the spoon"
    assert main(["validate", str(tmp_path / "combined.yml")]) == 0


def test_cli_verbalize_skips_unusable_triples_with_a_warning_and_uses_the_rest(tmp_path, caplog):
    graph = make_graph("stirring coffee")
    graph.object_triples.insert(0, "<spoon, sugar>")
    graph.label = "stirring the coffee"
    write_askg_file({"stirring coffee": graph}, tmp_path / "graph.yml")
    with caplog.at_level(logging.WARNING):
        assert main(["verbalize", str(tmp_path / "graph.yml"), "--out", str(tmp_path / "combined.yml")]) == 0
    assert f"{tmp_path / 'graph.yml'}: class 'stirring coffee' field 'obj_rel_triples': skipped, item 0" in caplog.text
    combined = read_askg_file(tmp_path / "combined.yml")["stirring coffee"]
    expected = verbalize_entries({"stirring coffee": make_graph("stirring coffee")})["stirring coffee"]
    assert combined == expected  # the label is the class key; the other triples are all verbalized


def test_cli_verbalize_reads_the_authors_graphs(tmp_path, caplog):
    folder = reference_label_db()
    with caplog.at_level(logging.WARNING):
        assert main(["verbalize", str(folder / "classes_ASKG_hmdb51.yml"), "--out", str(tmp_path / "out.yml")]) == 0
    assert len(read_askg_file(tmp_path / "out.yml")) == 51
    skipped = [record.getMessage() for record in caplog.records if "skipped" in record.getMessage()]
    assert len(skipped) == 3 and all("comma-separated parts" in message for message in skipped)
