"""
Videos per second through the zero-shot-video-classification pipeline: the first call (prompt embeddings not yet
cached: the text tower encodes every prompt) side by side with later calls on the same label set (cached).

A random STDD model of the chosen size, generated videos and generated label texts; nothing is downloaded.

    PYTHONPATH=. python benchmarks/pipeline_throughput.py [--size tiny|small|base] [--videos 8] [--prompts-per-label 20]
"""

import argparse
import tempfile
import time
from pathlib import Path

# PyAV first: decord bundles its own FFmpeg libraries, and once they are loaded PyAV's VP8/VP9 encoders fail.
import av  # noqa: F401
import numpy as np
import torch
from transformers import pipeline

from modeling_stdd import STDDConfig, STDDModel, STDDProcessor
from model_speed import check_counts
from modeling_stdd.video_io import write_video


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


def generated_videos(folder: Path, count: int, num_frames: int = 48, height: int = 128, width: int = 160) -> list[str]:
    """`count` short clips of moving noise blocks, written as mp4."""
    rng = np.random.default_rng(0)
    paths = []
    for index in range(count):
        blocks = rng.integers(0, 256, size=(num_frames, height // 16, width // 16, 3), dtype=np.uint8)
        frames = blocks.repeat(16, axis=1).repeat(16, axis=2)
        paths.append(str(write_video(folder / f"video_{index}.mp4", frames, fps=24)))
    return paths


def label_texts(num_labels: int, prompts_per_label: int) -> dict[str, list[str]]:
    return {
        f"action {label}": [f"a video of a person doing action {label}, detail {prompt}." for prompt in range(prompts_per_label)]
        for label in range(num_labels)
    }


def videos_per_second(classifier, videos, texts, batch_size) -> float:
    start = time.perf_counter()
    classifier(videos, candidate_labels=list(texts), label_texts=texts, batch_size=batch_size)
    return len(videos) / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--labels", type=int, default=50)
    parser.add_argument("--prompts-per-label", type=int, default=20)
    parser.add_argument("--num-frames", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3, help="cached calls to time after the first")
    args = parser.parse_args()
    check_counts(parser, args, ("videos", "labels", "prompts_per_label", "num_frames", "batch_size", "repeats"))

    model = random_model(args.size, args.num_frames)
    processor = STDDProcessor.from_clip_defaults(model.config.vision_config.image_size, args.num_frames)
    classifier = pipeline("zero-shot-video-classification", model=model, processor=processor)
    texts = label_texts(args.labels, args.prompts_per_label)
    with tempfile.TemporaryDirectory() as folder:
        videos = generated_videos(Path(folder), args.videos)
        first = videos_per_second(classifier, videos, texts, args.batch_size)
        cached = max(videos_per_second(classifier, videos, texts, args.batch_size) for _ in range(args.repeats))
    print(
        f"size={args.size} videos={args.videos} labels={args.labels} prompts={args.labels * args.prompts_per_label} "
        f"frames={args.num_frames} batch_size={args.batch_size} threads={torch.get_num_threads()}"
    )
    print(f"{'first call (uncached)':>24}: {first:8.2f} videos/s")
    print(f"{'cached label texts':>24}: {cached:8.2f} videos/s")
    print(f"{'cached / first':>24}: {cached / first:8.2f}x")


if __name__ == "__main__":
    main()
