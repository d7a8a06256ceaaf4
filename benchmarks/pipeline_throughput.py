"""
Videos per second of zero-shot classification of a folder of videos (320x240, 10 s, 30 fps by default) with the
zero-shot-video-classification pipeline, next to its parts alone, side by side in one run: whether decoding or the
model bounds the pipeline, and which torch threads, `batch_size` and `num_workers` bring it closest to that bound.

- decode: the frames the pipeline samples, read by its video processor's reader (`load_frames`);
- preprocess: the pipeline's own preprocess step (decode, then resize, crop and normalize);
- model: the pipeline's forward step on preprocessed videos, `batch_size` at a time, label texts cached;
- pipeline: the pipeline end to end on the folder, label texts cached (`batch_size=`, `num_workers=`).

Every row runs once per round, the rows taking turns, and reports its median over rounds; the pipeline's defaults
(torch's default threads, batch_size 1, num_workers 0) are always among the rows. Before them, the first call (the
text tower encodes every prompt) is timed once, against the cached calls at the defaults.

A random STDD model of the chosen size, generated videos and generated label texts; nothing is downloaded.

    PYTHONPATH=. python benchmarks/pipeline_throughput.py [--size tiny|small|base] [--videos 2] [--rounds 1]
        [--threads 1 2] [--batch-sizes 1 2] [--num-workers 0 1]
"""

import argparse
import itertools
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

# PyAV first: decord bundles its own FFmpeg libraries, and once they are loaded PyAV's VP8/VP9 encoders fail.
import av  # noqa: F401
import torch
from transformers import pipeline

from decode_throughput import interleaved_rates, make_moving_video
from model_speed import check_counts
from modeling_stdd import STDDConfig, STDDModel, STDDProcessor


# (width, layers, heads, image size, patch size) of the vision and text towers.
SIZES = {
    "tiny": dict(hidden_size=64, layers=2, heads=2, image_size=64, patch_size=16),
    "small": dict(hidden_size=256, layers=4, heads=4, image_size=128, patch_size=16),
    "base": dict(hidden_size=768, layers=12, heads=12, image_size=224, patch_size=16),
}


def random_model(size: str, num_frames: int) -> STDDModel:
    geometry = SIZES[size]
    tower = dict(
        hidden_size=geometry["hidden_size"],
        intermediate_size=4 * geometry["hidden_size"],
        num_hidden_layers=geometry["layers"],
        num_attention_heads=geometry["heads"],
    )
    config = STDDConfig(
        text_config=dict(tower, projection_dim=geometry["hidden_size"]),
        vision_config=dict(
            tower,
            image_size=geometry["image_size"],
            patch_size=geometry["patch_size"],
            num_frames=num_frames,
            projection_dim=geometry["hidden_size"],
        ),
        projection_dim=geometry["hidden_size"],
    )
    torch.manual_seed(0)
    return STDDModel(config).eval()


def generated_videos(
    folder: Path, count: int, seconds: float, fps: int, height: int = 240, width: int = 320
) -> list[str]:
    """`count` videos of `seconds` at `fps` (gradients and a moving square), written as H.264 mp4."""
    num_frames = round(seconds * fps)
    return [
        str(make_moving_video(folder / f"video_{index}.mp4", num_frames, height, width, fps)) for index in range(count)
    ]


def label_texts(num_labels: int, prompts_per_label: int) -> dict[str, list[str]]:
    return {
        f"action {label}": [
            f"a video of a person doing action {label}, detail {prompt}." for prompt in range(prompts_per_label)
        ]
        for label in range(num_labels)
    }


class Row(NamedTuple):
    """One row of the table: a stage and the settings it ran with (None where a setting does not apply)."""

    stage: str
    threads: int
    batch_size: int | None = None
    num_workers: int | None = None

    def settings(self) -> str:
        named = (("threads", self.threads), ("batch_size", self.batch_size), ("num_workers", self.num_workers))
        return " ".join(f"{name}={value}" for name, value in named if value is not None)


def with_threads(threads: int, run: Callable[[], object]) -> Callable[[], object]:
    """`run` with torch using `threads` threads."""

    def threaded():
        torch.set_num_threads(threads)
        return run()

    return threaded


def preprocessed_batches(classifier, videos: list[str], batch_size: int) -> list[dict]:
    """The pipeline's preprocessed inputs of `videos`, `batch_size` videos a batch, as its forward step takes them."""
    pixel_values = [next(iter(classifier.preprocess(video)))["pixel_values"] for video in videos]
    return [
        dict(pixel_values=torch.cat(pixel_values[start : start + batch_size]), start=None, end=None, is_last=True)
        for start in range(0, len(videos), batch_size)
    ]


def table_rows(classifier, videos, texts, threads, batch_sizes, num_workers) -> dict[Row, Callable[[], object]]:
    """
    Per row, a callable that runs its stage over all of `videos` (see the module docstring). The thread counts of a
    stage and its settings are next to each other, so that they run side by side.
    """
    prompt_set = classifier.prompt_set(label_texts=texts)  # the encoded prompts of the pipeline calls below
    batches = {batch_size: preprocessed_batches(classifier, videos, batch_size) for batch_size in batch_sizes}
    runs = {
        ("decode", None, None): lambda: [classifier.video_processor.load_frames(video) for video in videos],
        ("preprocess", None, None): lambda: [list(classifier.preprocess(video)) for video in videos],
    }
    for batch_size in batch_sizes:
        runs["model", batch_size, None] = lambda batch_size=batch_size: [
            classifier.forward(batch, prompt_set=prompt_set) for batch in batches[batch_size]
        ]
    for batch_size, workers in itertools.product(batch_sizes, num_workers):
        runs["pipeline", batch_size, workers] = lambda batch_size=batch_size, workers=workers: classifier(
            videos, label_texts=texts, batch_size=batch_size, num_workers=workers
        )
    return {
        Row(stage, thread_count, batch_size, workers): with_threads(thread_count, run)
        for (stage, batch_size, workers), run in runs.items()
        for thread_count in threads
    }


def fastest(rates: dict[Row, float], stage: str) -> tuple[Row, float]:
    """The row of `stage` with the most videos/s, and its rate."""
    return max(((row, rate) for row, rate in rates.items() if row.stage == stage), key=lambda item: item[1])


def print_table(rates: dict[Row, float], bound: float):
    print("| stage | threads | batch_size | num_workers | videos/s | / bound |")
    print("|---|---:|---:|---:|---:|---:|")
    for row, rate in rates.items():
        settings = (row.threads, row.batch_size, row.num_workers)
        cells = " | ".join("" if value is None else str(value) for value in settings)
        print(f"| {row.stage} | {cells} | {rate:.3f} | {rate / bound:.2f} |")


def print_summary(rates: dict[Row, float], defaults: Row):
    """Which of preprocessing and the model bounds the pipeline, and the pipeline settings that came closest."""
    (decode, decode_rate), (preprocess, preprocess_rate) = fastest(rates, "decode"), fastest(rates, "preprocess")
    (model, model_rate), (pipeline_row, pipeline_rate) = fastest(rates, "model"), fastest(rates, "pipeline")
    bound_stage, bound = min(("model", model_rate), ("preprocessing", preprocess_rate), key=lambda item: item[1])
    slower = max(model_rate, preprocess_rate) / bound
    print(
        f"bound: {bound_stage}: model alone at best {model_rate:.3f} videos/s ({model.settings()}), preprocess at "
        f"best {preprocess_rate:.3f} videos/s ({preprocess.settings()}; decode alone {decode_rate:.3f}), "
        f"{slower:.1f}x apart"
    )
    print(
        f"best pipeline: {pipeline_rate:.3f} videos/s with {pipeline_row.settings()}, {pipeline_rate / bound:.2f} of "
        f"the bound; defaults ({defaults.settings()}): {rates[defaults]:.3f} videos/s, "
        f"best / defaults {pipeline_rate / rates[defaults]:.2f}x"
    )


def main():
    default_threads = torch.get_num_threads()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="base")
    parser.add_argument("--videos", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each generated video")
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--labels", type=int, default=50)
    parser.add_argument("--prompts-per-label", type=int, default=20)
    parser.add_argument("--num-frames", type=int, default=8)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, default_threads])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--num-workers", type=int, nargs="+", default=[0, 1], choices=[0, 1])
    parser.add_argument("--rounds", type=int, default=1, help="passes over all rows; each row reports its median")
    args = parser.parse_args()
    check_counts(parser, args, ("videos", "labels", "prompts_per_label", "num_frames", "fps", "rounds"))
    if not args.seconds > 0 or min(args.threads + args.batch_sizes) < 1:
        parser.error("--seconds, --threads and --batch-sizes must be > 0.")
    defaults = Row("pipeline", default_threads, 1, 0)
    threads = sorted({*args.threads, defaults.threads})
    batch_sizes = sorted({*args.batch_sizes, defaults.batch_size})
    num_workers = sorted({*args.num_workers, defaults.num_workers})

    model = random_model(args.size, args.num_frames)
    processor = STDDProcessor.from_clip_defaults(model.config.vision_config.image_size, args.num_frames)
    classifier = pipeline("zero-shot-video-classification", model=model, processor=processor)
    texts = label_texts(args.labels, args.prompts_per_label)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as folder:
        videos = generated_videos(Path(folder), args.videos, args.seconds, args.fps)
        start = time.perf_counter()
        classifier(videos, label_texts=texts)
        first = len(videos) / (time.perf_counter() - start)
        rows = table_rows(classifier, videos, texts, threads, batch_sizes, num_workers)
        rates = interleaved_rates(rows, len(videos), args.rounds)
    load_after = os.getloadavg()
    print(
        f"size={args.size} videos={args.videos} ({args.seconds:g} s, 320x240, {args.fps} fps) labels={args.labels} "
        f"prompts={args.labels * args.prompts_per_label} frames={args.num_frames} rounds={args.rounds}; "
        f"torch {torch.__version__}, {os.cpu_count()} CPUs, default threads {default_threads}; "
        f"load average (1 min) {load_before[0]:.2f} before, {load_after[0]:.2f} after"
    )
    cached = rates[defaults]
    print(f"{'first call (uncached)':>24}: {first:8.3f} videos/s")
    print(f"{'cached label texts':>24}: {cached:8.3f} videos/s")
    print(f"{'cached / first':>24}: {cached / first:8.2f}x")
    bound = min(fastest(rates, "model")[1], fastest(rates, "preprocess")[1])
    print()
    print_table(rates, bound)
    print()
    print_summary(rates, defaults)


if __name__ == "__main__":
    main()
