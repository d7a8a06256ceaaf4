"""Shared fixtures: tiny random CLIP checkpoints saved locally and small generated videos. Nothing is downloaded."""

import os

# PyAV first: decord bundles its own FFmpeg libraries, and once they are loaded PyAV's VP8/VP9 encoders fail.
import av  # noqa: F401
import numpy as np
import pytest
import torch


os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(2)


def tiny_clip_config(**vision_overrides):
    """A CLIP geometry small enough for CPU tests: 32 px images, 8 px patches (4x4 grid), width 32, 2 layers."""
    from transformers import CLIPConfig

    text_config = dict(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, projection_dim=16
    )
    vision_config = dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=32,
        patch_size=8,
        projection_dim=16,
    )
    vision_config.update(vision_overrides)
    return CLIPConfig(text_config=text_config, vision_config=vision_config, projection_dim=16)


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory):
    """A saved random `CLIPModel` (plain CLIP, model_type "clip")."""
    from transformers import CLIPModel

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny_clip")
    CLIPModel(tiny_clip_config()).eval().save_pretrained(path)
    return path


@pytest.fixture
def make_video(tmp_path):
    """`make_video(name, num_frames=16, height=48, width=64, fps=10)`: a video file of moving bars in tmp_path."""
    from modeling_stdd.video_io import write_video

    def make(name="clip.mp4", num_frames=16, height=48, width=64, fps=10):
        rows = np.arange(height)[None, :, None]
        columns = np.arange(width)[None, None, :]
        times = np.arange(num_frames)[:, None, None]
        red = ((columns + 4 * times) % 32 < 16) * 255
        green = ((rows + 2 * times) % 24 < 12) * 255
        blue = np.broadcast_to(times * 255 // max(num_frames - 1, 1), red.shape)
        frames = np.stack(np.broadcast_arrays(red, green, blue), axis=-1).astype(np.uint8)
        return write_video(tmp_path / name, frames, fps=fps)

    return make


@pytest.fixture
def stdd_folder(tiny_clip_dir, tmp_path):
    """A saved STDD model with its processor (4 frames at 32 px)."""
    from modeling_stdd import STDDModel, STDDProcessor

    folder = tmp_path / "stdd"
    STDDModel.from_pretrained(tiny_clip_dir, num_frames=4).save_pretrained(folder)
    STDDProcessor.from_clip_defaults(image_size=32, num_frames=4).save_pretrained(folder)
    return folder


@pytest.fixture
def tiny_data(tmp_path, make_video):
    """Training folder with 3 classes x 3 clips, evaluation folder with 2 other classes x 2 clips, label texts."""
    from modeling_stdd.askg import LabelTexts

    for split, classes, count in (("train", ("clapping", "waving", "jumping"), 3), ("eval", ("running", "sitting"), 2)):
        for name in classes:
            (tmp_path / split / name).mkdir(parents=True)
            for index in range(count):
                make_video(f"{split}-{name}-{index}.mp4", num_frames=8).rename(tmp_path / split / name / f"{index}.mp4")
    LabelTexts({"running": ["a person running.", "someone jogging."], "clapping": ["hands clapping."]}).save(
        tmp_path / "texts.json"
    )
    return tmp_path
