"""
How the class scores of a video's several test views (temporal clips x spatial crops) become one score per class.

- `"logit-sum"` (the paper's multi-view score): the views' class logits are summed. As probabilities this is the
  softmax of the views' mean logits, which ranks the classes exactly as the sum does and keeps one view's temperature.
- `"softmax-mean"`: a softmax over the classes per view, averaged over the views.

`DEFAULT_VIEW_AGGREGATION` is what the pipeline and the evaluation script use when not told otherwise.
"""

import torch


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


__all__ = ["DEFAULT_VIEW_AGGREGATION", "VIEW_AGGREGATIONS", "aggregate_views", "check_view_aggregation"]
