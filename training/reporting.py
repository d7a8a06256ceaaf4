"""
The end of a training or evaluation run: which top-k figures mean something, the results table with the chance level
and the class and video counts, the paths a run wrote, the training log (`log.jsonl`, written by the jsonl tracker)
and the training curves picture drawn from it.
"""

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from accelerate.tracking import GeneralTracker


TRAINING_CURVES_NAME = "training_curves.png"
# Top-5 is reported only when it can miss: with 5 classes or fewer every label is in the top 5.
TOP5_MIN_CLASSES = 6


def reported_top_k(num_classes: int) -> tuple[int, ...]:
    """The top-k accuracies worth reporting over `num_classes` classes: top-1, and top-5 from 6 classes on."""
    return (1, 5) if num_classes >= TOP5_MIN_CLASSES else (1,)


def chance_top1(num_classes: int) -> float:
    """Top-1 accuracy (percent) of a uniform random guess over `num_classes` classes."""
    return 100.0 / num_classes


@dataclass
class ResultRow:
    """One line of the end-of-run table: a model's zero-shot figures (percent) on one evaluation."""

    model: str
    top1: float
    top5: float | None
    num_classes: int
    num_videos: int
    classes_seen: int | None  # None: not known (a checkpoint without a training run's record)
    top1_std: float | None = None

    @property
    def classes_seen_unseen(self) -> str:
        if self.classes_seen is None:
            return f"unknown of {self.num_classes}"
        return f"{self.classes_seen}/{self.num_classes - self.classes_seen}"


RESULT_COLUMNS = ("model", "top-1 %", "top-5 %", "chance %", "videos", "classes seen/unseen")


def results_table(rows: list[ResultRow], first_column: str = "model") -> str:
    """
    The rows as an aligned text table, the first column headed `first_column` ("split" for one model's splits). Top-5
    reads "-" where it is not reported (5 classes or fewer); a top-1 with a std over splits reads "mean ± std".
    """
    cells = [(first_column, *RESULT_COLUMNS[1:])]
    for row in rows:
        top1 = f"{row.top1:.1f}" if row.top1_std is None else f"{row.top1:.1f} ± {row.top1_std:.1f}"
        cells.append((
            row.model,
            top1,
            "-" if row.top5 is None else f"{row.top5:.1f}",
            f"{chance_top1(row.num_classes):.1f}",
            str(row.num_videos),
            row.classes_seen_unseen,
        ))
    widths = [max(len(line[column]) for line in cells) for column in range(len(RESULT_COLUMNS))]
    lines = ["  ".join(cell.ljust(width) if column == 0 else cell.rjust(width)
                       for column, (cell, width) in enumerate(zip(line, widths))).rstrip() for line in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def paths_block(paths: Mapping[str, str | os.PathLike | None]) -> str:
    """`name: path` lines for the files and folders a run wrote (entries that are None are left out)."""
    present = {name: path for name, path in paths.items() if path is not None}
    width = max(map(len, present), default=0) + 1
    return "\n".join(f"{f'{name}:':<{width}} {path}" for name, path in present.items())


# ----------------------------------------------------------------------------------------------------------------------
# Training curves
# ----------------------------------------------------------------------------------------------------------------------


class JsonLinesTracker(GeneralTracker):
    """An accelerate tracker that appends one JSON object per `log` call to `<run dir>/log.jsonl`."""

    name = "jsonl"
    requires_logging_directory = False

    def __init__(self, run_dir: Path):
        super().__init__()
        self.path = Path(run_dir) / "log.jsonl"

    @property
    def tracker(self):
        return self.path

    def store_init_configuration(self, values: dict):
        self.log({"config": values})

    def log(self, values: dict, step: int | None = None, **kwargs):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as file:
            file.write(json.dumps({"step": step, **values}, default=str, allow_nan=False) + "\n")


def trackers(report_to: str, run_dir: Path):
    if report_to == "none":
        return None
    names = [name.strip() for name in report_to.split(",")]
    return [JsonLinesTracker(run_dir) if name == "jsonl" else name for name in names]


@dataclass
class TrainingCurves:
    """What a run's `log.jsonl` holds for the picture: loss and learning rate per optimizer step, loss per epoch."""

    steps: list[int]
    loss: list[float]
    learning_rate: list[float]
    epochs: list[int]
    epoch_loss: list[float]


def read_training_curves(log_file: str | os.PathLike) -> TrainingCurves:
    """The step and epoch entries of a `log.jsonl` written by `training/train.py`'s jsonl tracker."""
    curves = TrainingCurves([], [], [], [], [])
    for line in Path(log_file).read_text(encoding="utf-8").splitlines():
        entry = json.loads(line) if line.strip() else {}
        if "loss" in entry and "lr" in entry:
            curves.steps.append(entry["step"])
            curves.loss.append(entry["loss"])
            curves.learning_rate.append(entry["lr"])
        elif "epoch" in entry and "epoch_loss" in entry:
            curves.epochs.append(entry["epoch"])
            curves.epoch_loss.append(entry["epoch_loss"])
    return curves


def plot_training_curves(
    curves: Mapping[str, TrainingCurves],
    zero_shot_top1: Mapping[str, tuple[int, float]],
    output: str | os.PathLike,
    chance: float | None = None,
) -> Path:
    """
    Draw the runs side by side into `output` (PNG): training loss and learning rate per optimizer step, and the
    zero-shot top-1 accuracy (percent) at the epochs it was evaluated (`zero_shot_top1`: run -> (epoch, top-1)),
    with the `chance` level. Written atomically.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot
    from matplotlib.ticker import MaxNLocator

    output = Path(output)
    figure, (loss_axis, lr_axis, accuracy_axis) = pyplot.subplots(1, 3, figsize=(13, 3.6), layout="constrained")
    for name, run in curves.items():
        (line,) = loss_axis.plot(run.steps, run.loss, label=name, linewidth=1)
        lr_axis.plot(run.steps, run.learning_rate, label=name, color=line.get_color(), linewidth=1)
        if name in zero_shot_top1:
            epoch, top1 = zero_shot_top1[name]
            accuracy_axis.plot([epoch], [top1], "o", color=line.get_color(), label=f"{name}: {top1:.1f}")
    loss_axis.set(title="training loss", xlabel="optimizer step", ylabel="loss")
    lr_axis.set(title="learning rate", xlabel="optimizer step", ylabel="learning rate")
    lr_axis.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    accuracy_axis.set(title="zero-shot top-1 (evaluated epochs)", xlabel="epoch", ylabel="top-1 %", ylim=(0, 105))
    if chance is not None:
        accuracy_axis.axhline(chance, color="gray", linestyle="--", linewidth=1, label=f"chance: {chance:.1f}")
    last_epoch = max([epoch for epoch, _ in zero_shot_top1.values()], default=1)
    accuracy_axis.set_xlim(0.5, last_epoch + 0.5)
    accuracy_axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    for axis in (loss_axis, lr_axis, accuracy_axis):
        axis.grid(alpha=0.3)
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize=8, loc="center left" if axis is accuracy_axis else "best")
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(f".{output.stem}.{os.getpid()}.partial.png")
    try:
        figure.savefig(partial, dpi=80)
        os.replace(partial, output)
    finally:
        pyplot.close(figure)
        partial.unlink(missing_ok=True)
    return output



# ----------------------------------------------------------------------------------------------------------------------
# The end of a run
# ----------------------------------------------------------------------------------------------------------------------


def training_report(results: Mapping, run_dirs: Mapping[str, Path], output_dir: Path) -> str:
    """
    The end of `training/train.py`: the results table of every run evaluated, the training curves picture drawn into
    `output_dir` (from the runs' `log.jsonl`, when the jsonl tracker wrote one) and the paths the job wrote.
    """
    sections = []
    overlap = results["class_overlap"]
    if results["zero_shot"]:
        rows = [
            ResultRow(name, figures["top1"], figures.get("top5"), overlap["num_eval_classes"],
                      results["zero_shot_videos"][name]["num_videos"], overlap["num_seen_in_training"])
            for name, figures in results["zero_shot"].items()
        ]
        sections.append("zero-shot results on the evaluation data:\n" + results_table(rows))
    logs = {name: run_dir / "log.jsonl" for name, run_dir in run_dirs.items() if (run_dir / "log.jsonl").is_file()}
    picture = None
    if logs:
        evaluated = {name: (results["training"][name]["epochs"], figures["top1"])
                     for name, figures in results["zero_shot"].items()}
        curves = {name: read_training_curves(log) for name, log in logs.items()}
        chance = chance_top1(overlap["num_eval_classes"]) if overlap["num_eval_classes"] else None
        picture = plot_training_curves(curves, evaluated, output_dir / TRAINING_CURVES_NAME, chance)
    paths = {}
    for name, run_dir in run_dirs.items():
        paths[f"{name} model"] = run_dir / "model"
        paths[f"{name} log"] = logs.get(name)
    paths["results"] = output_dir / "eval_results.json"
    paths["training curves"] = picture if picture is not None else "(not drawn: --report-to has no jsonl log)"
    sections.append(paths_block(paths))
    return "\n\n".join(sections)


def evaluation_report(results: dict, output: str) -> str:
    """The end of an evaluation: a table row per split (and their mean when there are several), then the paths."""
    overlaps = results["class_overlap"] or {}
    rows = [
        ResultRow(name, figures["top1"], figures.get("top5"), results["num_classes"][name],
                  results["num_videos"][name], overlaps.get(name, {}).get("num_seen_in_training"))
        for name, figures in results["splits"].items()
    ]
    if len(rows) > 1:  # the protocols' splits: the same number of classes, mean ± std over the splits
        rows.append(ResultRow(
            "mean ± std", results["mean"]["top1"], results["mean"].get("top5"),
            rows[0].num_classes, sum(row.num_videos for row in rows), rows[0].classes_seen,
            top1_std=results["std"]["top1"],
        ))
    heading = f"results of {results['model']} ({results['protocol']}):"
    table = results_table(rows, first_column="split")
    return f"{heading}\n{table}\n\n" + paths_block({"model": results["model"], "results": output})
