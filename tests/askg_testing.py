"""Helpers shared by the tests/test_askg_*.py modules: small valid entries and the reference data folder."""

import os
from pathlib import Path

import pytest
from modeling_stdd.askg import ASKGEntry


REPO_ROOT = Path(__file__).resolve().parent.parent


def reference_label_db() -> Path:
    """The authors' files: `$STDD_SHARED_DIR/reference/stdd_label_db` (default `<repo>/../shared`); skips if absent."""
    shared = Path(os.environ.get("STDD_SHARED_DIR", REPO_ROOT.parent / "shared"))
    folder = shared / "reference" / "stdd_label_db"
    if not folder.is_dir():
        pytest.skip(f"reference label files not found at {folder} (set STDD_SHARED_DIR to the shared folder)")
    return folder


def make_graph(label: str) -> ASKGEntry:
    """A valid graph (no clause lists) that meets every authoring rule, for any class name."""
    objects = ["kitchen table", "coffee mug", "right hand", "spoon", "sugar bowl"]
    sub_actions = ["reaching for the spoon", "scooping some sugar", "stirring the coffee"]
    return ASKGEntry(
        label=label,
        objects=objects,
        object_triples=[
            "<right hand, holds, spoon>",
            "<coffee mug, placed on, kitchen table>",
            "<spoon, used for, scooping sugar>",
        ],
        action_object_triples=[
            f"<{label}, uses, spoon>",
            f"<{label}, fills, coffee mug>",
            f"<{label}, needs, right hand>",
        ],
        sub_actions=sub_actions,
        sub_action_triples=[
            f"<{label}, starts with, reaching for the spoon>",
            "<reaching for the spoon, precedes, scooping some sugar>",
            "<scooping some sugar, precedes, stirring the coffee>",
        ],
    )


def make_entry(label: str) -> ASKGEntry:
    """`make_graph(label)` with three valid clause lists."""
    graph = make_graph(label)
    graph.xprompt_oo = ["where a hand holds a spoon", "where a mug stands on a table", "where sugar falls into a mug"]
    graph.xprompt_ao = ["which uses a spoon", "which fills a coffee mug", "which is done with the right hand"]
    graph.xprompt_aa = [
        "starting with reaching for the spoon",
        "where scooping some sugar precedes stirring the coffee",
        "ending with stirring the coffee",
    ]
    return graph
