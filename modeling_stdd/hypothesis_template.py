"""
The rule every prompt template obeys: `template.format(label)` puts the label in once.

A flat module without torch: the pipeline (also as Hub remote code, which ships only flat sibling modules) and the
prompt sets of `modeling_stdd.askg` check their templates with it, and so does the training's `--template`.
"""

import string


def check_hypothesis_template(hypothesis_template: str, name: str = "hypothesis_template") -> str:
    """
    Check that `hypothesis_template.format(label)` puts the label in: exactly one replacement field, a bare `{}` (no
    field name, format spec or conversion); `{{` and `}}` are literal braces. `name` is the template's name in errors.
    """
    if isinstance(hypothesis_template, str) and _replacement_fields(hypothesis_template) == [("", "", None)]:
        return hypothesis_template
    raise ValueError(
        f"{name} must contain '{{}}' exactly once, bare (no name, format spec or conversion; '{{{{' and '}}}}' are "
        f"literal braces), got {hypothesis_template!r}."
    )


def _replacement_fields(template: str) -> list[tuple[str, str, str | None]] | None:
    """`(field name, format spec, conversion)` of each replacement field of a format string; None if it does not parse."""
    try:
        return [
            (field_name, format_spec, conversion)
            for _, field_name, format_spec, conversion in string.Formatter().parse(template)
            if field_name is not None
        ]
    except ValueError:
        return None
