"""
Rule-based second stage of the ASKG: graph triples -> the three clause lists, deterministically.

    <hand, holds, lipstick>                          -> "where the hand holds the lipstick"           (xprompt_oo)
    <lipstick, applied on, lips>                     -> "where the lipstick is applied on the lips"
    <apply lipstick, uses, lipstick>                 -> "which uses the lipstick"                     (xprompt_ao)
    <apply lipstick, starts with, opening the lipstick> -> "starting with opening the lipstick"      (xprompt_aa)
    <opening the lipstick, precedes, holding the mirror> -> "where opening the lipstick precedes holding the mirror"
    last item of sub_act_en_li                       -> "ending with ..."

Things get "the" unless they already start with a determiner, are a gerund after a preposition such as "for"
("used for applying eye shadow") or a verb after "used to"; a relation that starts with a past participle
("applied on") gets "is"/"are"; sub-actions are -ing phrases and are used as written.
"""

import dataclasses
from collections.abc import Mapping

from .schema import GRAPH_FIELDS, ASKGEntry, Triple, class_key, validate_entries


DETERMINERS = {
    "a", "an", "the", "this", "that", "these", "those", "his", "her", "their", "its", "my", "your", "our",
    "one's", "some", "any", "each", "every", "both", "all", "another", "other", "no", "two", "three", "four",
    "several", "many", "few",
}  # fmt: skip
AUXILIARIES = {
    "is", "are", "was", "were", "be", "been", "being", "has", "have", "had", "can", "could", "may", "might",
    "must", "should", "will", "would", "does", "do",
}  # fmt: skip
IRREGULAR_PARTICIPLES = {
    "worn", "held", "made", "shown", "thrown", "hung", "drawn", "seen", "blown", "sewn", "grown", "given",
    "taken", "ridden", "driven", "spun", "struck", "stuck", "bound", "wound", "hidden", "broken", "written",
    "eaten", "beaten", "known", "found", "kept", "built", "caught", "brought", "bought", "sold", "told", "sung",
    "swung", "flung", "dug", "fed", "led", "laid", "paid", "shot", "lit", "woven", "frozen", "chosen", "shaken",
    "torn", "borne", "done", "spread",
}  # fmt: skip
# Words ending in "ed" that are not past participles.
NOT_PARTICIPLES = {"shed", "shred", "embed", "bed", "sled", "wed", "red", "bred"}
# A gerund ("applying ...") after one of these is used without an article.
GERUND_PREPOSITIONS = {"for", "by", "after", "before", "while", "when", "without", "from", "through", "of"}
# A relation ending like this is followed by a verb ("used to secure the braid"), which takes no article.
INFINITIVE_ENDINGS = (
    "used to", "needed to", "need to", "needs to", "helps to", "help to", "in order to", "designed to",
)  # fmt: skip
IRREGULAR_PLURALS = {"people", "children", "men", "women", "feet", "teeth", "mice", "geese", "clothes"}
SINGULAR_ENDINGS = ("ss", "us", "is", "ics")
STARTS = {"starts with", "start with", "begins with", "begin with"}
ENDS = {"ends with", "end with", "finishes with", "finish with"}


def _first_word(text: str) -> str:
    return text.split()[0].lower()


def _is_plural(phrase: str) -> bool:
    last = phrase.split()[-1].lower()
    return last in IRREGULAR_PLURALS or (last.endswith("s") and not last.endswith(SINGULAR_ENDINGS))


def _is_participle(word: str) -> bool:
    if word in IRREGULAR_PARTICIPLES:
        return True
    return word.endswith("ed") and not word.endswith("eed") and word not in NOT_PARTICIPLES


def noun_phrase(phrase: str, preceding_word: str) -> str:
    """`phrase` with "the" in front, unless it has a determiner or is a gerund after a preposition like "for"."""
    first = _first_word(phrase)
    if first in DETERMINERS or first[0].isdigit():
        return phrase
    if first.endswith("ing") and preceding_word.lower() in GERUND_PREPOSITIONS:
        return phrase
    return f"the {phrase}"


def predicate(relation: str, plural_subject: bool) -> str:
    """The relation as a verb phrase: a bare past participle ("applied on") gets "is" / "are" in front."""
    first = _first_word(relation)
    if first not in AUXILIARIES and _is_participle(first):
        return f"{'are' if plural_subject else 'is'} {relation}"
    return relation


def complement(relation: str, tail: str) -> str:
    """The tail as it follows `relation`: a verb after "used to", else a noun phrase (see `noun_phrase`)."""
    if relation.lower().endswith(INFINITIVE_ENDINGS):
        return tail
    return noun_phrase(tail, relation.split()[-1])


def object_clause(triple: Triple) -> str:
    """A "where ..." clause for a triple between two things."""
    subject = noun_phrase(triple.head, "where")
    verb = predicate(triple.relation, _is_plural(triple.head))
    return f"where {subject} {verb} {complement(triple.relation, triple.tail)}"


def action_object_clause(triple: Triple, label: str) -> str:
    """A "which ..." clause for `<label, relation, object>`; a triple not headed by the label reads as "where ..."."""
    if class_key(triple.head) != class_key(label):
        return object_clause(triple)
    return f"which {predicate(triple.relation, False)} {complement(triple.relation, triple.tail)}"


def sub_action_clause(triple: Triple, label: str) -> str:
    """A clause for one temporal triple; sub-actions are -ing phrases, used as written (and singular)."""
    relation = triple.relation.lower()
    headed_by_label = class_key(triple.head) == class_key(label)
    if headed_by_label and relation in STARTS:
        return f"starting with {triple.tail}"
    if headed_by_label and relation in ENDS:
        return f"ending with {triple.tail}"
    if headed_by_label:
        return f"which {predicate(triple.relation, False)} {triple.tail}"
    return f"where {triple.head} {predicate(triple.relation, False)} {triple.tail}"


def _unique(clauses: list[str]) -> list[str]:
    return list(dict.fromkeys(clauses))


def verbalize_entry(entry: ASKGEntry) -> ASKGEntry:
    """
    A copy of `entry` with `xprompt_oo`, `xprompt_ao` and `xprompt_aa` made from its graph (replacing any
    clauses it had). The entry must be valid; `verbalize_entries` checks that and is the usual entry point.
    """
    label = entry.label
    object_triples = [Triple.parse(text) for text in entry.object_triples or []]
    action_object_triples = [Triple.parse(text) for text in entry.action_object_triples or []]
    sub_action_triples = [Triple.parse(text) for text in entry.sub_action_triples or []]
    order = [sub_action_clause(triple, label) for triple in sub_action_triples]
    has_end = any(
        class_key(triple.head) == class_key(label) and triple.relation.lower() in ENDS for triple in sub_action_triples
    )
    if len(entry.sub_actions or []) > 1 and not has_end:
        order.append(f"ending with {entry.sub_actions[-1]}")
    return dataclasses.replace(
        entry,
        xprompt_oo=_unique([object_clause(triple) for triple in object_triples]),
        xprompt_ao=_unique([action_object_clause(triple, label) for triple in action_object_triples]),
        xprompt_aa=_unique(order),
    )


def verbalize_entries(entries: Mapping[str, ASKGEntry]) -> dict[str, ASKGEntry]:
    """
    Verbalize every entry (see `verbalize_entry`). Raises `ValueError` listing the problems when an entry has
    no graph or its graph has validation errors (unparseable triples, unlisted sub-actions, wrong label).
    """
    problems = [
        f"{key!r}: has no graph fields ({', '.join(GRAPH_FIELDS)})"
        for key, entry in entries.items()
        if not entry.has_any(GRAPH_FIELDS)
    ]
    problems += [
        str(issue)
        for issue in validate_entries({key: entry.subset(GRAPH_FIELDS) for key, entry in entries.items()}).errors
    ]
    if problems:
        listed = "\n  ".join(problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise ValueError(f"cannot verbalize, fix these first:\n  {listed}{more}")
    return {key: verbalize_entry(entry) for key, entry in entries.items()}
