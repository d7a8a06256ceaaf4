"""
Training throughput, side by side in one run: clips per second of

1. the data loader alone (decord decoding + training sampling and augmentation through `STDDVideoProcessor`, with
   the training run's DataLoader and worker count), and
2. a training step alone (forward, backward, optimizer step of `STDDTrainingModule` on a batch already in memory),
   for STDD and for the frame-mean baseline (`stca_layers=[]`),

so one can see whether a training run is bound by the data or by the model. The videos are those of the embedded
job's synthetic motion set (built once in a temporary folder, or read from `--data-dir`).

Run: `PYTHONPATH=. python benchmarks/train_throughput.py` (`--quick` for a short smoke run, `--size base` for a
ViT-B/16-sized random model at 224 px).
"""

import argparse
import itertools
import tempfile
import time
from pathlib import Path

# PyAV first: decord bundles its own FFmpeg libraries, and once they are loaded PyAV's VP8/VP9 encoders fail.
import av  # noqa: F401
import torch
from modeling_stdd import STDDConfig, STDDModel, STDDProcessor, STDDTokenizer
from modeling_stdd.prompt_sets_stdd import build_prompt_set
from training.data import (
    SyntheticMotionSpec,
    VideoClipDataset,
    build_synthetic_motion_dataset,
    class_names_of,
    collate_clips,
    load_video_dataset,
)
from training.job import TINY_CLIP_PROJECTION_DIM, TINY_CLIP_TEXT, TINY_CLIP_VISION
from training.objective import FrozenImageTower, STDDTrainingModule
from training.recipe import STCA_SETTINGS, TRAINING_RECIPES


SIZES = {
    "tiny": dict(
        image_size=32,
        config=dict(text_config=TINY_CLIP_TEXT, vision_config={**TINY_CLIP_VISION, "image_size": 32},
                    projection_dim=TINY_CLIP_PROJECTION_DIM),
        stca={name: value for name, value in TRAINING_RECIPES["embedded"].items() if name in STCA_SETTINGS},
    ),
    "base": dict(
        image_size=224,
        config=dict(
            text_config=dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=8),
            vision_config=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                               image_size=224, patch_size=16),
            projection_dim=512,
        ),
        stca={},
    ),
}


def loader_clips_per_second(loader, num_batches: int) -> float:
    batches = iter(loader)
    next(batches)  # workers started, first batch decoded
    started = time.perf_counter()
    clips = sum(batch["pixel_values"].shape[0] for batch in itertools.islice(batches, num_batches))
    return clips / (time.perf_counter() - started)


def step_clips_per_second(model: STDDModel, batch: dict, class_names: list[str], distillation_weight: float,
                          num_steps: int) -> float:
    prompts = build_prompt_set(model, STDDTokenizer(), [f"a {name}." for name in class_names], "{}")
    teacher = FrozenImageTower(model) if distillation_weight else None
    module = STDDTrainingModule(model, distillation_weight).train()
    optimizer = torch.optim.AdamW([parameter for parameter in module.parameters() if parameter.requires_grad])

    def step():
        teacher_embeds = teacher(batch["pixel_values"]) if teacher is not None else None
        module(batch["pixel_values"], batch["labels"], prompts, teacher_embeds)["loss"].backward()
        optimizer.step()
        optimizer.zero_grad()

    step()  # warm-up
    started = time.perf_counter()
    for _ in range(num_steps):
        step()
    return num_steps * batch["pixel_values"].shape[0] / (time.perf_counter() - started)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    parser.add_argument("--data-dir", help="folder of an existing synthetic motion set (default: build one)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--num-frames", type=int, default=8)
    parser.add_argument("--num-workers", type=int, default=1)
    parser.add_argument("--distillation-weight", type=float, default=0.0)
    parser.add_argument("--quick", action="store_true", help="few batches and steps (smoke run)")
    args = parser.parse_args()
    size = SIZES[args.size]
    num_batches, num_steps = (3, 2) if args.quick else (30, 20)

    with tempfile.TemporaryDirectory() as scratch:
        spec = SyntheticMotionSpec(train_videos_per_class=2 if args.quick else 16, eval_videos_per_class=1)
        data_dir = Path(args.data_dir) if args.data_dir else build_synthetic_motion_dataset(scratch, spec)
        dataset = load_video_dataset(str(data_dir / "train"), cache_dir=scratch)
        processor = STDDProcessor.from_clip_defaults(size["image_size"], args.num_frames, flip_probability=0.0)
        clips = VideoClipDataset(dataset, processor.video_processor, training=True)
        loader = torch.utils.data.DataLoader(clips, batch_size=args.batch_size, shuffle=True, drop_last=True,
                                             num_workers=args.num_workers, collate_fn=collate_clips)
        loader_rate = loader_clips_per_second(loader, min(num_batches, len(loader) - 1))
        batch = next(iter(loader))

    class_names = class_names_of(dataset)
    rates = {}
    for name, overrides in (("STDD", {}), ("frame-mean baseline", {"stca_layers": []})):
        torch.manual_seed(0)
        vision = {**size["config"]["vision_config"], **size["stca"], **overrides, "num_frames": args.num_frames}
        model = STDDModel(STDDConfig(**{**size["config"], "vision_config": vision}))
        rates[name] = step_clips_per_second(model, batch, class_names, args.distillation_weight, num_steps)

    print(f"{args.size} model, batch {args.batch_size} x {args.num_frames} frames at {size['image_size']} px, "
          f"{args.num_workers} loader worker(s), {torch.get_num_threads()} torch threads")
    print(f"  data loader alone:           {loader_rate:8.1f} clips/s")
    for name, rate in rates.items():
        print(f"  training step, {name + ':':<20} {rate:8.1f} clips/s   loader / step = {loader_rate / rate:5.2f}")
    print(f"  STDD step / baseline step:   {rates['STDD'] / rates['frame-mean baseline']:8.2f}")


if __name__ == "__main__":
    main()
