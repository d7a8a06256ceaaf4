"""Top-k accuracy of class scores, as an `evaluate` metric module loaded by its local path (no Hub download)."""

import datasets
import evaluate
import numpy as np


_DESCRIPTION = """
Top-k accuracy: the share of examples whose reference class is among the k highest-scoring classes. Ties are
broken by class index (the lower index ranks first), so the result does not depend on the sort implementation. An
example with a non-finite score (NaN or inf, from a broken model) is never counted as correct: its ranking means
nothing.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `list` of `float`): class scores of each example, shape (num_examples, num_classes).
    references (`list` of `int`): the true class index of each example.
    k (`int` or `list` of `int`, defaults to `[1, 5]`): the k values to report; each k is capped at num_classes.
Returns:
    `{"top1": float, "top5": float, ...}`, one key per k, each in [0, 1].
Example:
    >>> metric = evaluate.load("training/metrics/top_k_accuracy")
    >>> metric.compute(predictions=[[0.1, 0.7, 0.2], [0.5, 0.3, 0.2]], references=[2, 0], k=[1, 2])
    {'top1': 0.5, 'top2': 1.0}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class TopKAccuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Sequence(datasets.Value("float32")), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references, k=(1, 5)):
        scores = np.asarray(predictions, dtype=np.float64)
        references = np.asarray(references, dtype=np.int64)
        if scores.ndim != 2 or scores.shape[0] != references.shape[0]:
            raise ValueError(
                f"predictions must have shape (num_examples, num_classes) matching {references.shape[0]} references, "
                f"got {scores.shape}."
            )
        num_classes = scores.shape[1]
        if references.size and (references.min() < 0 or references.max() >= num_classes):
            raise ValueError(f"references must be class indices in [0, {num_classes - 1}].")
        ks = [k] if isinstance(k, int) else list(k)
        if not ks or any(not isinstance(value, (int, np.integer)) or value < 1 for value in ks):
            raise ValueError(f"k must be a positive integer or a list of them, got {k!r}.")
        reference_scores = scores[np.arange(len(references)), references][:, None]
        class_index = np.arange(num_classes)[None]
        # Rank of the reference: classes scoring higher, plus tied classes with a lower index.
        higher = (scores > reference_scores).sum(1)
        tied_before = ((scores == reference_scores) & (class_index < references[:, None])).sum(1)
        ranks = higher + tied_before
        ranks[~np.isfinite(scores).all(1)] = num_classes  # below every k: never correct
        return {f"top{value}": float((ranks < min(value, num_classes)).mean()) for value in ks}
