"""Loading model folders: a CLIP checkpoint loads quietly, a folder without a processor gets CLIP's, bad folders are named."""

import logging
import shutil
import warnings

import pytest
from transformers.utils import logging as transformers_logging

from modeling_stdd import CheckpointFolderError, STDDConfig, STDDModel, STDDProcessor, STDDVisionConfig
from conftest import tiny_clip_config


@pytest.fixture
def transformers_log():
    """Everything transformers logs (warnings included) while the test runs, as one string."""
    records = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = records.append
    library_logger = transformers_logging.get_logger()
    library_logger.addHandler(handler)
    transformers_logging.set_verbosity_warning()
    try:
        yield lambda: "\n".join(record.getMessage() for record in records)
    finally:
        library_logger.removeHandler(handler)


@pytest.fixture
def stdd_folder_without_processor(tiny_clip_dir, tmp_path):
    folder = tmp_path / "stdd-model-only"
    STDDModel.from_pretrained(tiny_clip_dir, num_frames=4).save_pretrained(folder)
    return folder


def test_a_clip_checkpoint_loads_without_a_model_type_warning(tiny_clip_dir, transformers_log):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = STDDModel.from_pretrained(tiny_clip_dir)
        config = STDDConfig.from_pretrained(tiny_clip_dir)
        vision_config = STDDVisionConfig.from_pretrained(tiny_clip_dir)
    text = transformers_log() + "\n".join(str(warning.message) for warning in caught)
    assert "model of type" not in text and "can yield errors" not in text
    assert model.config.model_type == config.model_type == "stdd"
    assert vision_config.model_type == "stdd_vision_model" and vision_config.hidden_size == 32


def test_a_replaced_mask_window_is_one_warning_line(tmp_path, transformers_log):
    from transformers import CLIPModel

    # 28 px images in 4 px patches: a 7x7 grid that 2x2 windows do not tile.
    CLIPModel(tiny_clip_config(image_size=28, patch_size=4)).save_pretrained(tmp_path / "clip-7x7")
    transformers_logging.set_verbosity_warning()
    model = STDDModel.from_pretrained(tmp_path / "clip-7x7")
    assert model.config.vision_config.mask_stride == [1, 7, 7]
    lines = [line for line in transformers_log().splitlines() if line.strip()]
    assert len([line for line in lines if "mask_stride" in line]) <= 1
    assert not any("model of type" in line for line in lines)


def test_a_folder_without_a_processor_gets_clip_defaults(stdd_folder_without_processor, tiny_clip_dir):
    from_stdd = STDDProcessor.for_checkpoint(stdd_folder_without_processor)
    from_clip = STDDProcessor.for_checkpoint(tiny_clip_dir, num_frames=4)
    assert from_stdd.video_processor.to_dict() == from_clip.video_processor.to_dict()
    assert from_stdd.video_processor.num_frames == 4 and from_stdd.video_processor.crop_size.height == 32
    resized = STDDProcessor.for_checkpoint(stdd_folder_without_processor, image_size=48, num_frames=2)
    assert resized.video_processor.crop_size.height == 48 and resized.video_processor.num_frames == 2


def test_a_saved_processor_is_used_and_its_settings_kept(stdd_folder_without_processor):
    STDDProcessor.from_clip_defaults(32, 4, flip_probability=0.0).save_pretrained(stdd_folder_without_processor)
    processor = STDDProcessor.for_checkpoint(stdd_folder_without_processor)
    assert processor.video_processor.flip_probability == 0.0 and processor.video_processor.num_frames == 4


def test_a_folder_without_a_processor_trains_and_evaluates(stdd_folder_without_processor, tmp_path, make_video):
    from training import evaluate_zero_shot, train

    for name in ("waving", "clapping"):
        (tmp_path / "data" / name).mkdir(parents=True)
        for index in range(2):
            make_video(f"{name}{index}.mp4", num_frames=8).rename(tmp_path / "data" / name / f"{index}.mp4")
    results = evaluate_zero_shot.main([
        "--model", str(stdd_folder_without_processor), "--data", str(tmp_path / "data"), "--num-workers", "0",
        "--label-texts", "none", "--output", str(tmp_path / "eval.json"),
    ])
    assert results["num_videos"] == {"test": 4}
    trained = train.main([
        "--base-model", str(stdd_folder_without_processor), "--train-data", str(tmp_path / "data"),
        "--output-dir", str(tmp_path / "run"), "--num-frames", "4", "--batch-size", "2", "--num-workers", "0",
        "--max-steps", "1", "--epochs", "1", "--average-epochs", "none", "--report-to", "none",
    ])
    assert trained["training"]["stdd"]["optimizer_steps"] == 1
    assert STDDProcessor.from_pretrained(tmp_path / "run" / "model").video_processor.num_frames == 4


def test_a_folder_without_config_is_named(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointFolderError, match=f"{tmp_path / 'empty'} is not a model folder: it has no config.json"):
        STDDModel.from_pretrained(tmp_path / "empty")


def test_a_truncated_weights_file_is_named(stdd_folder_without_processor, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(stdd_folder_without_processor, broken)
    weights = broken / "model.safetensors"
    with open(weights, "r+b") as handle:
        handle.truncate(weights.stat().st_size - 100)
    with pytest.raises(CheckpointFolderError, match=f"{weights} is truncated or damaged"):
        STDDModel.from_pretrained(broken)
    weights.write_bytes(b"\x10\x00")
    with pytest.raises(CheckpointFolderError, match="too short for a safetensors header"):
        STDDModel.from_pretrained(broken)
