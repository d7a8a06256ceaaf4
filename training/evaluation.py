"""
Zero-shot evaluation of a model on a video data set: the class probabilities of its videos (their views combined),
top-k accuracy from the shipped `evaluate` metric module (`training/metrics/top_k_accuracy`, loaded by path, no
download), the mean and std over a protocol's splits, and the splits of a published protocol or of one data set.
"""

from pathlib import Path

import evaluate
import numpy as np
import torch
from accelerate import Accelerator
from tqdm.auto import tqdm

from modeling_stdd import STDDModel
from modeling_stdd.askg import LabelTexts
from modeling_stdd.pipeline_stdd import check_finite_scores
from modeling_stdd.prompt_sets_stdd import PromptSet
from modeling_stdd.view_aggregation import DEFAULT_VIEW_AGGREGATION, video_scores
from training.data import VideoClipDataset, collate_clips, load_video_dataset
from training.protocols import (
    EvaluationSplit,
    hmdb51_splits,
    kinetics600_novel_splits,
    ucf101_splits,
    with_label_text_names,
)


TOP_K_METRIC = Path(__file__).resolve().parent / "metrics" / "top_k_accuracy"


@torch.no_grad()
def predict(
    model: STDDModel, loader, prompts: PromptSet, accelerator: Accelerator, description: str = "eval",
    interpolate_pos_encoding: bool = False, view_aggregation: str = DEFAULT_VIEW_AGGREGATION,
):
    """
    Class probabilities of every readable video of `loader` (its views combined by `view_aggregation`) and their
    labels, gathered from all processes, and how many videos could not be read:
    `(scores (N, K) float numpy, labels (N,) int numpy, num_unreadable int)`. Non-finite scores (a broken model) are
    an error, not figures.
    """
    model.eval()
    prompts = prompts.to(accelerator.device)
    all_scores, all_labels, all_readable = [], [], []
    for batch in tqdm(loader, desc=description, disable=not accelerator.is_local_main_process, leave=False):
        readable = batch["readable"].to(accelerator.device)
        # Every process gathers a row per item, readable or not, so that the processes' gathers stay the same size.
        scores = torch.full((len(readable), prompts.num_classes), float("nan"), device=accelerator.device)
        if batch["pixel_values"] is not None:
            with accelerator.autocast():  # --mixed-precision
                scores[readable] = video_scores(
                    model, batch["pixel_values"], prompts, view_aggregation, interpolate_pos_encoding
                )
        scores, labels, readable = accelerator.gather_for_metrics((scores, batch["labels"], readable.long()))
        all_scores.append(scores.cpu())
        all_labels.append(labels.cpu())
        all_readable.append(readable.cpu().bool())
    readable = torch.cat(all_readable)
    scores, labels = torch.cat(all_scores)[readable], torch.cat(all_labels)[readable]
    check_finite_scores(scores, f"evaluation ({description})")
    return scores.numpy(), labels.numpy(), int((~readable).sum())


def top_k_accuracy(scores: np.ndarray, labels: np.ndarray, k=(1, 5)) -> dict[str, float]:
    """Top-k accuracies in percent, computed by the shipped `evaluate` metric module."""
    metric = evaluate.load(str(TOP_K_METRIC))
    result = metric.compute(predictions=scores.tolist(), references=labels.tolist(), k=list(k))
    return {name: 100 * value for name, value in result.items()}


def summarize(per_split: dict[str, dict[str, float]]) -> dict:
    """Per-split figures plus their mean and (population) std over splits."""
    names = next(iter(per_split.values())).keys()
    values = {name: np.array([split[name] for split in per_split.values()]) for name in names}
    return {
        "splits": per_split,
        "mean": {name: float(array.mean()) for name, array in values.items()},
        "std": {name: float(array.std()) for name, array in values.items()},
    }


def evaluation_loader(dataset, processor, batch_size: int, num_workers: int, skip_unreadable: bool, **views):
    clips = VideoClipDataset(dataset, processor.video_processor, training=False, skip_unreadable=skip_unreadable,
                             **views)
    return torch.utils.data.DataLoader(
        clips, batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=collate_clips
    )


def protocol_splits(args, label_texts: LabelTexts | None) -> list[EvaluationSplit]:
    label_names = None if label_texts is None else label_texts.labels
    if args.protocol == "ucf101":
        return ucf101_splits(args.video_root, args.split_dir, label_names)
    if args.protocol == "hmdb51":
        return hmdb51_splits(args.video_root, args.split_dir, label_names)
    if args.protocol == "kinetics600_novel":
        return kinetics600_novel_splits(args.video_root, args.list_file, args.index_to_class, label_names)
    dataset = load_video_dataset(args.data, args.video_root, args.index_to_class, split=args.split)
    return [EvaluationSplit(args.split, with_label_text_names(dataset, label_names))]
