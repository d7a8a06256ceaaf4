"""
How the class scores of a video's several test views (temporal clips x spatial crops) become one score per class.

- `"logit-sum"` (the paper's multi-view score): the views' class logits are summed. As probabilities this is the
  softmax of the views' mean logits, which ranks the classes exactly as the sum does and keeps one view's temperature.
- `"softmax-mean"`: a softmax over the classes per view, averaged over the views.

`video_scores` scores videos of several views with a model; the pipeline and the evaluation both use it, with
`DEFAULT_VIEW_AGGREGATION` when not told otherwise.
"""

from typing import TYPE_CHECKING

import torch


if TYPE_CHECKING:
    from .prompt_sets_stdd import PromptSet

VIEW_AGGREGATIONS = ("logit-sum", "softmax-mean")
DEFAULT_VIEW_AGGREGATION = "softmax-mean"


def check_view_aggregation(view_aggregation: str) -> str:
    """`view_aggregation` itself if it is one of `VIEW_AGGREGATIONS`, else a ValueError naming the choices."""
    if view_aggregation not in VIEW_AGGREGATIONS:
        raise ValueError(
            f"view_aggregation must be one of {', '.join(map(repr, VIEW_AGGREGATIONS))}, got {view_aggregation!r}."
        )
    return view_aggregation


def aggregate_views(logits: torch.Tensor, view_aggregation: str = DEFAULT_VIEW_AGGREGATION) -> torch.Tensor:
    """
    Class probabilities `(B, K)` of videos from the class logits of their views, `(B, V, K)`, combined by
    `view_aggregation` (see the module docstring). With one view both ways give the softmax of its logits.
    """
    if logits.ndim != 3:
        raise ValueError(f"Expected view logits of shape (videos, views, classes), got {tuple(logits.shape)}.")
    logits = logits.float()
    if check_view_aggregation(view_aggregation) == "logit-sum":
        return logits.mean(dim=1).softmax(dim=-1)
    return logits.softmax(dim=-1).mean(dim=1)


def video_scores(
    model,
    pixel_values: torch.Tensor,
    prompt_set: "PromptSet",
    view_aggregation: str = DEFAULT_VIEW_AGGREGATION,
    interpolate_pos_encoding: bool = False,
) -> torch.Tensor:
    """
    Class probabilities `(B, K)` of videos given as views `(B, V, T, 3, S, S)`: an STDD model's class logits of every
    view against the encoded prompts of `prompt_set` (its K labels), combined by `view_aggregation`.
    """
    if pixel_values.ndim != 6:
        raise ValueError(
            "Expected pixel_values of shape (videos, views, frames, 3, height, width), got "
            f"{tuple(pixel_values.shape)}."
        )
    batch_size, num_views = pixel_values.shape[:2]
    outputs = model(
        pixel_values=pixel_values.flatten(0, 1).to(model.dtype),
        text_embeds=prompt_set.text_embeds.to(model.dtype),
        prompt_class_ids=prompt_set.prompt_class_ids,
        interpolate_pos_encoding=interpolate_pos_encoding,
    )
    return aggregate_views(outputs.logits_per_video.unflatten(0, (batch_size, num_views)), view_aggregation)


__all__ = [
    "DEFAULT_VIEW_AGGREGATION",
    "VIEW_AGGREGATIONS",
    "aggregate_views",
    "check_view_aggregation",
    "video_scores",
]
