"""
A training job resolved from the arguments (`Job`): its data sets, processor, starting checkpoint and label texts;
the embedded job builds its synthetic data and a tiny random CLIP. `TrainedRun` is what training one model of the job
gives back.
"""

import argparse
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from datasets import Dataset
from transformers import CLIPConfig, CLIPModel

from modeling_stdd import STDDModel, STDDProcessor
from modeling_stdd.askg import LabelTexts
from modeling_stdd.askg.prompts import templates_from_options
from modeling_stdd.file_utils import move_into_place
from training.data import build_synthetic_motion_dataset, class_names_of, load_video_dataset
from training.protocols import with_label_text_names
from training.recipe import TRAINING_RECIPES, check_model_overrides, recipe_settings, stca_overrides
from training.runtime import load_label_texts
from training.video_options import apply_video_options, video_settings


# Tiny random CLIP of the embedded job: 32 px frames, 8 px patches (4x4 grid), width 64, 3 vision layers.
TINY_CLIP_TEXT = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2)
TINY_CLIP_VISION = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4, patch_size=8)
TINY_CLIP_PROJECTION_DIM = 64
# CLIP's trained temperature (logit scale 100); the random text tower's prompt embeddings sit close together.
TINY_CLIP_LOGIT_SCALE = math.log(100.0)
# The settings of both jobs are the recipes of training/recipe.py: `embedded` without --train-data, `paper` with it.


@dataclass
class Job:
    """What a training run needs, resolved from the arguments."""

    base_model: str
    model_overrides: dict
    processor: STDDProcessor
    train_dataset: Dataset
    eval_dataset: Dataset | None
    label_texts: LabelTexts | None
    template: str


def save_tiny_random_clip(directory: Path, image_size: int, seed: int) -> Path:
    """The embedded job's starting point: a tiny random `CLIPModel`, saved once as a plain CLIP checkpoint."""
    if (directory / "config.json").is_file():
        return directory
    torch.manual_seed(seed)
    config = CLIPConfig(
        text_config=TINY_CLIP_TEXT,
        vision_config={**TINY_CLIP_VISION, "image_size": image_size},
        projection_dim=TINY_CLIP_PROJECTION_DIM,
        logit_scale_init_value=TINY_CLIP_LOGIT_SCALE,
    )
    partial = directory.with_name(f".{directory.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    CLIPModel(config).save_pretrained(partial)
    move_into_place(partial, directory)
    return directory


def default_cache_dir() -> Path:
    return Path(os.environ.get("STDD_CACHE", Path.home() / ".cache" / "stdd"))


def prepare_job(args: argparse.Namespace, accelerator: Accelerator) -> Job:
    """Data sets, processor and starting checkpoint; the embedded job builds its synthetic data and tiny CLIP."""
    model_overrides = {**stca_overrides(args), "num_frames": args.num_frames}
    if args.embedded:
        cache = Path(args.synthetic_data_dir) if args.synthetic_data_dir else default_cache_dir()
        with accelerator.main_process_first():  # the main process builds the cache, the others then read it
            data_dir = build_synthetic_motion_dataset(cache)
            base_model = args.base_model or str(
                save_tiny_random_clip(cache / f"tiny-random-clip-{args.image_size}px-seed{args.seed}",
                                      args.image_size, args.seed)
            )
        processor = STDDProcessor.for_checkpoint(base_model, args.image_size, args.num_frames)
        apply_video_options(processor.video_processor, args)
        check_model_overrides(base_model, model_overrides)
        return Job(
            base_model=base_model,
            model_overrides=model_overrides,
            processor=processor,
            train_dataset=load_video_dataset(str(data_dir / "train")),
            eval_dataset=load_video_dataset(str(data_dir / "eval")),
            label_texts=LabelTexts.from_file(data_dir / "label_texts.json"),
            template=args.template,
        )
    config = check_model_overrides(args.base_model, model_overrides)
    image_size = args.image_size or config.vision_config.image_size
    with accelerator.main_process_first():
        train_dataset = load_video_dataset(
            args.train_data, args.video_root, args.index_to_class, args.train_split,
            args.video_column, args.label_column,
        )
        eval_dataset = None
        if args.eval_data is not None:
            eval_dataset = load_video_dataset(
                args.eval_data, args.eval_video_root or args.video_root,
                args.eval_index_to_class or args.index_to_class, args.eval_split,
                args.video_column, args.label_column,
            )
    label_texts = load_label_texts(args.label_texts, templates_from_options(args.templates, args.num_templates))
    label_names = None if label_texts is None else label_texts.labels
    processor = STDDProcessor.for_checkpoint(args.base_model, image_size, args.num_frames)
    apply_video_options(processor.video_processor, args)
    return Job(
        base_model=args.base_model,
        model_overrides=model_overrides,
        processor=processor,
        train_dataset=with_label_text_names(train_dataset, label_names),
        eval_dataset=None if eval_dataset is None else with_label_text_names(eval_dataset, label_names),
        label_texts=label_texts,
        template=args.template,
    )


def load_model(job: Job, overrides: dict, image_size: int) -> tuple[STDDModel, bool]:
    """The starting STDD model, and whether frames of `image_size` need interpolated position embeddings."""
    model = STDDModel.from_pretrained(job.base_model, **{**job.model_overrides, **overrides})
    return model, image_size != model.config.vision_config.image_size


@dataclass
class TrainedRun:
    model: STDDModel
    interpolate_pos_encoding: bool
    summary: dict


def eval_class_names(job: Job) -> list[str]:
    return class_names_of(job.eval_dataset) if job.eval_dataset is not None else []


def run_settings(args, job: Job, accelerator: Accelerator) -> dict:
    """What the run used: its recipe's settings as expanded and overridden, the data and the starting checkpoint."""
    return {
        "job": "embedded synthetic motion" if args.embedded else "custom",
        "base_model": job.base_model,
        "model_overrides": job.model_overrides,
        "recipe": args.recipe,
        "recipe_settings": recipe_settings(args, TRAINING_RECIPES[args.recipe]),
        **{key: getattr(args, key) for key in ("train_data", "eval_data", "max_steps", "gradient_accumulation_steps",
                                              "seed")},
        "num_processes": accelerator.num_processes,
        "video": video_settings(job.processor.video_processor),
    }
