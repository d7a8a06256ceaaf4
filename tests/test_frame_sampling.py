"""
The video processor's frame sampling (segments, and the authors' dense PySlowFast windows) and training crops (the
paper's short-side jitter, random resized crops). Dense indices are checked on video files whose frames show their
own index, against values worked out by hand from PySlowFast's rule (window of sampling_rate * num_frames / 30 * fps
frames, linspace over it, clamp, truncate; test windows k * floor(delta / (num_clips - 1)), centre for one).
"""

import numpy as np
import pytest
import torch

from modeling_stdd import STDDProcessor
from modeling_stdd.video_io import write_video
from modeling_stdd.video_processing_stdd import (
    STDDVideoProcessor,
    dense_frame_indices,
    load_video_frames,
    short_side_jitter_crop,
)


BITS = 12  # frame indices up to 4095; 12 stripes of 8 px make a width decord reads unpadded (96)
STRIPE = 8  # pixels per bit


def write_index_video(path, num_frames: int, fps: int):
    """A video whose frame i shows i in binary: BITS vertical stripes, white for a 1 bit (lossy-codec safe)."""
    bits = (np.arange(num_frames)[:, None] >> np.arange(BITS)[None]) & 1  # (T, BITS), lowest bit first
    row = np.repeat(bits * 255, STRIPE, axis=1).astype(np.uint8)  # (T, BITS * STRIPE)
    frames = np.broadcast_to(row[:, None, :, None], (num_frames, 16, BITS * STRIPE, 3))
    return write_video(path, np.ascontiguousarray(frames), fps=fps)


def shown_indices(frames: np.ndarray) -> np.ndarray:
    """The index each of `frames` (..., H, W, 3) shows."""
    stripes = frames.mean(axis=(-3, -1)).reshape(*frames.shape[:-3], BITS, STRIPE).mean(-1)
    return ((stripes > 127) * (1 << np.arange(BITS))).sum(-1)


@pytest.fixture
def index_video(tmp_path):
    def make(num_frames: int, fps: int):
        return write_index_video(tmp_path / f"index-{num_frames}-{fps}.mp4", num_frames, fps)

    return make


def test_index_video_shows_every_frame_index(index_video):
    frames = load_video_frames(index_video(300, 30), num_frames=None)
    np.testing.assert_array_equal(shown_indices(frames[0]), np.arange(300))


def test_dense_test_views_are_pyslowfast_windows(index_video):
    # 300 frames at 30 fps, 8 frames 16 apart: a window of 16 * 8 / 30 * 30 = 128 frames, delta = 172; three test
    # windows start at k * floor(172 / 2) = 0, 86, 172; linspace(s, s + 127, 8) truncated.
    path = index_video(300, 30)
    frames = load_video_frames(path, num_frames=8, num_clips=3, frame_sampling="dense", sampling_rate=16)
    np.testing.assert_array_equal(shown_indices(frames), [
        [0, 18, 36, 54, 72, 90, 108, 127],
        [86, 104, 122, 140, 158, 176, 194, 213],
        [172, 190, 208, 226, 244, 262, 280, 299],
    ])


def test_dense_windows_follow_the_file_frame_rate(index_video):
    # 200 frames at 25 fps: a window of 128 / 30 * 25 = 106.67 frames, delta = 93.33, one centred window starting at
    # floor(93.33 / 2) = 46: linspace(46, 151.67, 8) = 46, 61.1, 76.2, 91.3, 106.4, 121.5, 136.6, 151.7.
    frames = load_video_frames(index_video(200, 25), num_frames=8, frame_sampling="dense", sampling_rate=16)
    np.testing.assert_array_equal(shown_indices(frames), [[46, 61, 76, 91, 106, 121, 136, 151]])


def test_videos_shorter_than_a_window_repeat_their_last_frame(index_video):
    # 50 frames at 30 fps: the 128-frame window does not fit (delta 0), every clip is linspace(0, 127, 8) clamped to 49.
    frames = load_video_frames(index_video(50, 30), num_frames=8, num_clips=3, frame_sampling="dense")
    np.testing.assert_array_equal(shown_indices(frames), [[0, 18, 36, 49, 49, 49, 49, 49]] * 3)


def test_dense_training_takes_one_seeded_random_window(index_video):
    path = index_video(300, 30)

    def train(seed):
        return load_video_frames(path, num_frames=8, training=True, frame_sampling="dense",
                                 generator=torch.Generator().manual_seed(seed))

    starts = []
    for seed in range(40):
        indices = shown_indices(train(seed))
        assert indices.shape == (1, 8)
        start = float(indices[0, 0])
        # evenly spaced over a 128-frame window from a start in [0, 300 - 128]
        expected = np.linspace(start, start + 127, 8).astype(int)
        assert np.abs(indices[0] - expected).max() <= 1 and 0 <= start <= 172
        starts.append(start)
    np.testing.assert_array_equal(shown_indices(train(3)), shown_indices(train(3)))
    assert min(starts) < 30 and max(starts) > 142  # the start ranges over the whole video


def test_decoded_frames_count_as_thirty_fps():
    frames = np.zeros((300, 8, 8, 3), dtype=np.uint8)
    frames[:, 0, 0, 0] = np.arange(300) % 256  # frame i holds i (mod 256) in one pixel
    sampled = load_video_frames(frames, num_frames=8, num_clips=3, frame_sampling="dense")
    np.testing.assert_array_equal(sampled[..., 0, 0, 0], dense_frame_indices(300, 8, 16, 30.0, num_clips=3) % 256)
    assert sampled[1, 0, 0, 0, 0] == 86


def test_dense_sampling_needs_a_frame_rate():
    with pytest.raises(ValueError, match="needs the video's frame rate"):
        dense_frame_indices(100, 8, 16, fps=0.0)


def test_processor_setting_per_call_override_and_save(index_video, tmp_path):
    path = index_video(300, 30)
    processor = STDDProcessor.from_clip_defaults(image_size=32, num_frames=8)
    assert processor.video_processor.frame_sampling == "segments"
    per_call = processor(videos=path, frame_sampling="dense", sampling_rate=16, num_clips=3, return_tensors="pt")
    dense = STDDVideoProcessor(size={"shortest_edge": 32}, crop_size=32, num_frames=8, frame_sampling="dense",
                               sampling_rate=16, num_clips=3)
    torch.testing.assert_close(per_call["pixel_values"], dense(path, return_tensors="pt")["pixel_values"])
    assert per_call["pixel_values"].shape == (1, 3, 8, 3, 32, 32)
    segments = processor(videos=path, num_clips=3, return_tensors="pt")["pixel_values"]
    assert not torch.equal(segments, per_call["pixel_values"])

    dense.sampling_rate, dense.train_crop = 4, "jitter"
    dense.save_pretrained(tmp_path / "saved")
    reloaded = STDDVideoProcessor.from_pretrained(tmp_path / "saved")
    assert (reloaded.frame_sampling, reloaded.sampling_rate, reloaded.train_crop) == ("dense", 4, "jitter")
    assert shown_indices(reloaded.load_frames(path)).tolist() == [
        [0, 4, 8, 13, 17, 22, 26, 31],
        [134, 138, 142, 147, 151, 156, 160, 165],
        [268, 272, 276, 281, 285, 290, 294, 299],
    ]  # window 4 * 8 = 32 frames, delta 268, starts 0, 134, 268; linspace(s, s + 31, 8) steps 31 / 7 = 4.43


@pytest.mark.parametrize(
    "options, message",
    [
        ({"frame_sampling": "sparse"}, "frame_sampling must be one of 'segments', 'dense', got 'sparse'"),
        ({"sampling_rate": 0}, "sampling_rate must be an integer >= 1"),
        ({"train_crop": "centre"}, "train_crop must be one of 'jitter', 'random-resized', got 'centre'"),
    ],
)
def test_bad_sampling_and_crop_options_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        STDDVideoProcessor(**options)
    with pytest.raises(ValueError, match=message):
        STDDVideoProcessor()(np.zeros((4, 8, 8, 3), dtype=np.uint8), **options)


RAMP_STEP = 0.5  # pixel value per pixel of the ramps (kept inside [0, 255], where resizing clamps)


def ramp_frames(height: int, width: int) -> torch.Tensor:
    """(2, 3, H, W) float frames: channel 0 rises by RAMP_STEP per column, channel 1 per row, channel 2 is 0."""
    columns = RAMP_STEP * torch.arange(width, dtype=torch.float64).expand(height, width)
    rows = RAMP_STEP * torch.arange(height, dtype=torch.float64)[:, None].expand(height, width)
    return torch.stack([columns, rows, torch.zeros(height, width, dtype=torch.float64)]).expand(2, -1, -1, -1)


@pytest.mark.parametrize("crop_side, frame_size", [(224, (240, 320)), (32, (48, 64))])
def test_jitter_resizes_the_short_side_into_the_papers_range_and_crops_at_random(crop_side, frame_size):
    """
    On a ramp down the rows (the short side), the crop's slope is original / resized height, so it tells the short
    side the frames were resized to: always in [S, S * 256 / 224] ([224, 256] for 224-pixel crops), over all of it.
    """
    frames = ramp_frames(*frame_size).float()
    short_sides, lefts = set(), set()
    for seed in range(60):
        crop = short_side_jitter_crop(frames, (crop_side, crop_side), "bilinear", torch.Generator().manual_seed(seed))
        assert crop.shape == (2, 3, crop_side, crop_side)
        assert torch.equal(crop[0], crop[1])  # one crop for all frames
        middle = crop[0, 1, crop_side // 4 : 3 * crop_side // 4, crop_side // 2]  # down the rows: the short side
        slope = (middle[-1] - middle[0]).item() / (len(middle) - 1) / RAMP_STEP
        short_side = frame_size[0] / slope
        assert crop_side - 0.5 <= short_side <= crop_side * 256 / 224 + 0.5
        short_sides.add(round(short_side))
        lefts.add(round(crop[0, 0, 0, 0].item() / RAMP_STEP))
    assert min(short_sides) <= crop_side + 1 and max(short_sides) >= crop_side * 256 / 224 - 1
    assert len(lefts) > 10


def test_processor_trains_with_the_jitter_crop_and_flip_settings():
    ramps = ramp_frames(48, 64) / RAMP_STEP  # one pixel value per pixel: whole numbers, exact in uint8
    frames = ramps.permute(0, 2, 3, 1)[:1].expand(6, -1, -1, -1).numpy().astype(np.uint8)
    processor = STDDVideoProcessor(size={"shortest_edge": 32}, crop_size=32, num_frames=4, train_crop="jitter",
                                   do_normalize=False, do_rescale=False)

    def train(seed, **kwargs):
        torch.manual_seed(seed)
        return processor(frames, training=True, return_tensors="pt", **kwargs)["pixel_values"][0, 0]

    jitter = train(0, flip_probability=0.0)
    assert jitter.shape == (3, 32, 32)
    middle = jitter[1, 8:24, 16]
    short_side = 48 / ((middle[-1] - middle[0]).item() / 15)
    assert 31.5 <= short_side <= 32 * 256 / 224 + 0.5
    assert jitter[0, 0, -1] > jitter[0, 0, 0]  # columns rise to the right: not flipped
    flipped = train(0, flip_probability=1.0)
    torch.testing.assert_close(flipped, jitter.flip(-1))
    assert not torch.equal(train(0, train_crop="random-resized", flip_probability=0.0), jitter)
