import shutil

import numpy as np
import pytest
import torch
from modeling_stdd import STDDProcessor, STDDTokenizer, STDDVideoProcessor
from transformers import AutoProcessor, CLIPProcessor
from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD


TEXTS = ["a video of a person dancing.", "a video of a person playing basketball, which uses a ball."]


@pytest.fixture(scope="module")
def processor():
    return STDDProcessor.from_clip_defaults(image_size=32, num_frames=4)


def test_clip_defaults():
    processor = STDDProcessor.from_clip_defaults()
    assert isinstance(processor, CLIPProcessor)
    video_processor = processor.video_processor
    assert isinstance(video_processor, STDDVideoProcessor) and isinstance(processor.tokenizer, STDDTokenizer)
    assert video_processor.size.shortest_edge == 224
    assert (video_processor.crop_size.height, video_processor.crop_size.width) == (224, 224)
    assert video_processor.num_frames == 8
    assert tuple(video_processor.image_mean) == tuple(OPENAI_CLIP_MEAN)
    assert tuple(video_processor.image_std) == tuple(OPENAI_CLIP_STD)
    assert processor.tokenizer.model_max_length == 77


def test_videos_and_text_in_one_call(processor, make_video):
    videos = [make_video("a.mp4", num_frames=10), make_video("b.mkv", num_frames=20)]
    inputs = processor(videos=videos, text=TEXTS, return_tensors="pt")
    assert inputs["pixel_values"].shape == (2, 4, 3, 32, 32)
    expected = processor.tokenizer(TEXTS, padding=True, return_tensors="pt")
    torch.testing.assert_close(inputs["input_ids"], expected["input_ids"])
    torch.testing.assert_close(inputs["attention_mask"], expected["attention_mask"])
    expected_pixels = processor.video_processor(videos, return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(inputs["pixel_values"], expected_pixels)


def test_text_is_padded_and_truncated_to_clip_context(processor):
    inputs = processor(text=["short", "long " * 200], return_tensors="pt")
    assert inputs["input_ids"].shape == (2, 77)
    assert inputs["attention_mask"][0].sum() == 3
    assert "pixel_values" not in inputs


def test_video_options_per_call(processor):
    video = np.random.default_rng(0).integers(0, 256, (16, 40, 60, 3), dtype=np.uint8)
    views = processor(videos=video, num_clips=2, num_crops=3, return_tensors="pt")["pixel_values"]
    assert views.shape == (1, 6, 4, 3, 32, 32)
    torch.manual_seed(0)
    training = processor(videos=video, training=True, return_tensors="pt")["pixel_values"]
    torch.manual_seed(0)
    as_videos_kwargs = processor(videos=video, videos_kwargs={"training": True}, return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(training, as_videos_kwargs)
    assert not torch.equal(training, processor(videos=video, return_tensors="pt")["pixel_values"])


def test_save_and_load_round_trip(processor, tmp_path, tiny_clip_dir):
    """Saved next to a checkpoint, the processor comes back from `AutoProcessor` after `import modeling_stdd`."""
    checkpoint = tmp_path / "checkpoint"
    shutil.copytree(tiny_clip_dir, checkpoint)
    processor.save_pretrained(checkpoint)
    video = np.random.default_rng(1).integers(0, 256, (12, 40, 50, 3), dtype=np.uint8)
    expected = processor(videos=video, text=TEXTS, return_tensors="pt")
    for reloaded in (STDDProcessor.from_pretrained(checkpoint), AutoProcessor.from_pretrained(checkpoint)):
        assert isinstance(reloaded, STDDProcessor)
        assert isinstance(reloaded.video_processor, STDDVideoProcessor)
        assert isinstance(reloaded.tokenizer, STDDTokenizer)
        assert reloaded.video_processor.to_json_string() == processor.video_processor.to_json_string()
        inputs = reloaded(videos=video, text=TEXTS, return_tensors="pt")
        for name in ("pixel_values", "input_ids", "attention_mask"):
            torch.testing.assert_close(inputs[name], expected[name])


def test_wrong_sub_processor_is_refused():
    with pytest.raises(TypeError, match="video_processor"):
        STDDProcessor(video_processor=STDDTokenizer(), tokenizer=STDDTokenizer())


def test_images_are_refused_with_a_pointer_to_videos(processor):
    frame = np.zeros((40, 48, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="takes videos, not images: pass `videos=`"):
        processor(images=frame, return_tensors="pt")
    with pytest.raises(ValueError, match="takes videos, not images"):
        processor(images=frame[None], text=TEXTS, return_tensors="pt")
    pixel_values = processor(videos=frame[None], return_tensors="pt")["pixel_values"]
    assert pixel_values.shape == (1, 4, 3, 32, 32)
