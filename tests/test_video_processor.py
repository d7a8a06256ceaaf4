import io
import re

import av
import numpy as np
import pytest
import torch
from modeling_stdd.video_processing_stdd import (
    DecodedVideo,
    EncodedVideo,
    STDDVideoProcessor,
    evaluation_frame_indices,
    load_video_frames,
    reduced_decode_size,
    sample_frame_indices,
    training_frame_indices,
)
from PIL import Image
from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
from transformers.models.auto.video_processing_auto import AutoVideoProcessor


SIZE = 32


@pytest.fixture
def processor():
    return STDDVideoProcessor(size={"shortest_edge": SIZE}, crop_size=SIZE, num_frames=8)


def source_indices(frames: np.ndarray, path) -> np.ndarray:
    """Index of each of `frames` (..., H, W, 3) in the video at `path`: the closest of PyAV's decoded frames."""
    with av.open(str(path)) as container:
        decoded = np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]).astype(float)
    distances = np.abs(frames[..., None, :, :, :].astype(float) - decoded).mean(axis=(-3, -2, -1))
    return distances.argmin(-1)


def test_evaluation_sampling_takes_segment_centres_and_interleaves_clips():
    np.testing.assert_array_equal(evaluation_frame_indices(16, 8), [[1, 3, 5, 7, 9, 11, 13, 15]])
    clips = evaluation_frame_indices(80, 4, num_clips=2)
    np.testing.assert_array_equal(clips, [[5, 25, 45, 65], [15, 35, 55, 75]])


def test_short_and_single_frame_videos_repeat_frames():
    np.testing.assert_array_equal(evaluation_frame_indices(3, 8), [[0, 0, 0, 1, 1, 2, 2, 2]])
    np.testing.assert_array_equal(evaluation_frame_indices(1, 8), np.zeros((1, 8)))
    assert training_frame_indices(1, 8).max() == 0


def test_training_sampling_stays_inside_segments_and_follows_the_seed():
    indices = training_frame_indices(80, 8, torch.Generator().manual_seed(0))[0]
    assert all(10 * t <= index < 10 * (t + 1) for t, index in enumerate(indices))
    same = training_frame_indices(80, 8, torch.Generator().manual_seed(0))[0]
    other = training_frame_indices(80, 8, torch.Generator().manual_seed(1))[0]
    np.testing.assert_array_equal(indices, same)
    assert not np.array_equal(indices, other)
    with pytest.raises(ValueError, match="one clip"):
        sample_frame_indices(80, 8, training=True, num_clips=3)


def test_reduced_decode_size_scales_only_large_sources():
    assert reduced_decode_size(2160, 3840, 224) == (224, 398)
    assert reduced_decode_size(3840, 2160, 224) == (398, 224)
    assert reduced_decode_size(200, 3000, 224) is None


def test_decoded_frames_are_the_sampled_ones(make_video):
    path = make_video("clip.mp4", num_frames=16)
    frames = load_video_frames(path, num_frames=8)
    assert frames.shape == (1, 8, 48, 64, 3) and frames.dtype == np.uint8
    np.testing.assert_array_equal(source_indices(frames, path), [[1, 3, 5, 7, 9, 11, 13, 15]])


def test_large_sources_are_decoded_at_reduced_size(make_video):
    path = make_video("clip.mp4", num_frames=4, height=48, width=64)
    assert load_video_frames(path, num_frames=2, decode_short_side=24).shape == (1, 2, 24, 32, 3)
    assert load_video_frames(path, num_frames=2, decode_short_side=100).shape == (1, 2, 48, 64, 3)


def write_multi_stream_video(path, streams: list[tuple[int, int, int]]):
    """An mkv with one H.264 stream per (height, width, num_frames) in `streams`, in that order."""
    with av.open(str(path), mode="w") as container:
        encoders = []
        for height, width, num_frames in streams:
            stream = container.add_stream("libx264", rate=10)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            encoders.append((stream, height, width, num_frames))
        for stream, height, width, num_frames in encoders:
            frame = np.zeros((height, width, 3), dtype=np.uint8)
            for _ in range(num_frames):
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            container.mux(stream.encode())
    return path


def test_decode_size_comes_from_the_stream_decord_decodes(tmp_path):
    # A square 48x48 thumbnail stream first, then the 60x80 main stream that FFmpeg (and so decord) picks as best.
    path = write_multi_stream_video(tmp_path / "two_streams.mkv", [(48, 48, 2), (60, 80, 12)])
    frames = load_video_frames(path, num_frames=4, decode_short_side=40)
    assert frames.shape == (1, 4, 40, 53, 3)


def test_reduced_size_decoding_matches_full_size_decoding_and_resizing(processor, make_video):
    path = make_video("clip.mp4", num_frames=8)
    reduced = processor(path, decode_short_side=40, return_tensors="pt")["pixel_values"]  # decoded at 40x53
    full = processor(path, return_tensors="pt")["pixel_values"]  # decoded at 48x64, resized
    assert (reduced - full).abs().mean() < 0.1 * full.abs().mean()


def test_sources_up_to_twice_the_resize_target_are_decoded_at_full_size(processor, make_video):
    # 48x64 is above the 32 px target but not twice it: FFmpeg's bilinear scaler would replace the bicubic resize.
    path = make_video("clip.mp4", num_frames=8)
    with av.open(str(path)) as container:
        decoded = np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])
    from_file = processor(path, return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(from_file, processor(decoded, return_tensors="pt")["pixel_values"], atol=0.02, rtol=0)
    assert processor.load_frames(path).shape == (1, 8, 48, 64, 3)


def test_sources_over_twice_the_resize_target_are_decoded_at_twice_the_target(make_video):
    processor = STDDVideoProcessor(size={"shortest_edge": 16}, crop_size=16, num_frames=4)
    path = make_video("clip.mp4", num_frames=8, height=48, width=64)
    assert processor.load_frames(path).shape == (1, 4, 32, 42, 3)
    assert processor(path, return_tensors="pt")["pixel_values"].shape == (1, 4, 3, 16, 16)


def test_open_video_reads_any_frames_at_the_processors_decode_size(make_video):
    processor = STDDVideoProcessor(size={"shortest_edge": 16}, crop_size=16, num_frames=4)
    path = make_video("clip.mp4", num_frames=8, height=48, width=64, fps=10)
    video = processor.open_video(path)  # 48 > 2 x 16: decoded at a short side of 32
    assert isinstance(video, EncodedVideo) and len(video) == 8 and video.average_fps == 10
    frames = video.read(np.array([[0, 7], [7, 7]]))
    assert frames.shape == (2, 2, 32, 42, 3)
    np.testing.assert_array_equal(frames[0, 1], frames[1, 0])
    np.testing.assert_array_equal(frames[0, 0], processor.load_frames(path, num_frames=8)[0, 0])
    decoded = processor.open_video(load_video_frames(path, num_frames=None)[0])  # decoded frames stay as they are
    assert isinstance(decoded, DecodedVideo) and decoded.average_fps is None
    assert len(decoded) == 8 and decoded.read(np.array([3])).shape == (1, 48, 64, 3)


def test_all_source_kinds_give_the_same_pixel_values(processor, make_video):
    path = make_video("clip.mp4", num_frames=12)
    frames = load_video_frames(path, num_frames=None)[0]  # every frame, decoded once: (12, 48, 64, 3)
    sources = [
        path,
        str(path),
        path.read_bytes(),
        io.BytesIO(path.read_bytes()),
        frames,
        torch.from_numpy(frames),
        torch.from_numpy(frames).permute(0, 3, 1, 2),
        [Image.fromarray(frame) for frame in frames],
    ]
    # Full-size decoding, so that files go through the same resize as decoded frames.
    pixel_values = processor(sources, decode_short_side=48, return_tensors="pt")["pixel_values"]
    assert pixel_values.shape == (len(sources), 8, 3, SIZE, SIZE)
    for values in pixel_values[1:]:
        torch.testing.assert_close(values, pixel_values[0])


def test_normalization_uses_clip_mean_and_std(processor):
    video = np.full((4, 40, 40, 3), 128, dtype=np.uint8)
    pixel_values = processor(video, return_tensors="pt")["pixel_values"][0]
    expected = (128 / 255 - torch.tensor(OPENAI_CLIP_MEAN)) / torch.tensor(OPENAI_CLIP_STD)
    torch.testing.assert_close(pixel_values[:, :, 5, 5], expected.expand(8, 3))


def test_multi_view_layout_is_clip_major_with_crops_across_the_long_side(processor, make_video):
    path = make_video("wide.mp4", num_frames=16, height=32, width=96)
    views = processor(path, num_clips=2, num_crops=3, return_tensors="pt")["pixel_values"]
    assert views.shape == (1, 6, 8, 3, SIZE, SIZE)
    full = processor(path, num_clips=2, do_center_crop=False, return_tensors="pt")["pixel_values"][0]
    assert full.shape == (2, 8, 3, SIZE, 96)
    for clip in range(2):
        for crop, left in enumerate((0, 32, 64)):
            torch.testing.assert_close(views[0, clip * 3 + crop], full[clip, ..., left : left + SIZE])
    assert not torch.equal(views[0, 0], views[0, 3])


def test_keep_view_axis_gives_one_view_its_axis(processor, make_video):
    path = make_video("clip.mp4", num_frames=16)
    one_view = processor(path, return_tensors="pt")["pixel_values"]
    kept = processor(path, keep_view_axis=True, return_tensors="pt")["pixel_values"]
    assert one_view.shape == (1, 8, 3, SIZE, SIZE) and kept.shape == (1, 1, 8, 3, SIZE, SIZE)
    torch.testing.assert_close(kept[:, 0], one_view, atol=0, rtol=0)
    views = processor(path, num_clips=2, return_tensors="pt")["pixel_values"]
    kept_views = processor(path, num_clips=2, keep_view_axis=True, return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(kept_views, views, atol=0, rtol=0)
    unstacked = processor([path, path], keep_view_axis=True)["pixel_values"]  # return_tensors=None: one per video
    assert [tuple(video.shape) for video in unstacked] == [(1, 8, 3, SIZE, SIZE)] * 2


def test_training_is_seeded_random_crop_and_flip(processor, make_video):
    path = make_video("clip.mp4", num_frames=40)

    def train(seed, **kwargs):
        torch.manual_seed(seed)
        return processor(path, training=True, num_clips=3, return_tensors="pt", **kwargs)["pixel_values"]

    assert train(0).shape == (1, 8, 3, SIZE, SIZE)
    torch.testing.assert_close(train(0), train(0))
    assert not torch.equal(train(0), train(1))
    torch.testing.assert_close(train(2, flip_probability=1.0), train(2, flip_probability=0.0).flip(-1))
    assert not torch.equal(train(0), processor(path, return_tensors="pt")["pixel_values"])


def test_training_crops_are_random_resized_crops(processor):
    """Frames equal in time and no flip: only the crop box can make two draws differ, or a draw differ from eval."""
    ramp = np.arange(64)[None, :, None] * 4 + np.arange(48)[:, None, None]  # brighter to the right and down
    frames = np.broadcast_to(ramp.astype(np.uint8), (6, 48, 64, 3)).copy()

    def train(seed):
        torch.manual_seed(seed)
        return processor(frames, training=True, flip_probability=0.0, return_tensors="pt")["pixel_values"]

    assert not torch.equal(train(0), train(1))
    assert not torch.equal(train(0), processor(frames, return_tensors="pt")["pixel_values"])
    torch.testing.assert_close(train(0)[0, 1:], train(0)[0, :1].expand(7, -1, -1, -1))  # one box for all frames


def test_one_processor_serves_training_and_evaluation_frames(processor, make_video):
    path = make_video("clip.mp4", num_frames=80)
    evaluation = processor.load_frames(path)
    torch.manual_seed(0)
    training = processor.load_frames(path, training=True)
    assert evaluation.shape == training.shape == (1, 8, 48, 64, 3)
    np.testing.assert_array_equal(source_indices(evaluation, path), [[5, 15, 25, 35, 45, 55, 65, 75]])
    training_indices = source_indices(training, path)[0]
    assert all(10 * t <= index < 10 * (t + 1) for t, index in enumerate(training_indices))
    assert list(training_indices) != [5, 15, 25, 35, 45, 55, 65, 75]


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".avi", ".webm"])
def test_containers(processor, make_video, suffix):
    path = make_video(f"clip{suffix}", num_frames=16)
    frames = load_video_frames(path, num_frames=8)
    np.testing.assert_array_equal(source_indices(frames, path), [[1, 3, 5, 7, 9, 11, 13, 15]])
    assert processor(path, return_tensors="pt")["pixel_values"].shape == (1, 8, 3, SIZE, SIZE)


@pytest.mark.parametrize(
    "name, num_frames, height, width",
    [
        ("short.mp4", 3, 48, 64),
        ("single_frame.mp4", 1, 48, 64),
        ("portrait.mp4", 10, 96, 40),
        ("very_wide.mp4", 10, 16, 200),
        ("vidéo d'été 日本.mkv", 10, 48, 64),
    ],
)
def test_unusual_videos_are_processed(processor, make_video, name, num_frames, height, width):
    path = make_video(name, num_frames=num_frames, height=height, width=width)
    pixel_values = processor(path, return_tensors="pt")["pixel_values"]
    assert pixel_values.shape == (1, 8, 3, SIZE, SIZE)
    assert torch.isfinite(pixel_values).all()


def test_grayscale_video_file(processor, tmp_path):
    path = tmp_path / "gray.mkv"
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("ffv1", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "gray"
        for level in range(0, 250, 25):
            frame = np.full((48, 64), level, dtype=np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="gray")))
        container.mux(stream.encode())
    frames = load_video_frames(path, num_frames=4)
    assert frames.shape == (1, 4, 48, 64, 3)
    assert (frames[..., 0] == frames[..., 1]).all() and (frames[..., 1] == frames[..., 2]).all()
    assert processor(path, return_tensors="pt")["pixel_values"].shape == (1, 8, 3, SIZE, SIZE)


def test_grayscale_and_rgba_decoded_input(processor):
    gray = np.random.default_rng(0).integers(0, 256, (6, 40, 50), dtype=np.uint8)
    rgb = np.repeat(gray[..., None], 3, axis=-1)
    rgba = np.concatenate([rgb, np.full_like(gray[..., None], 7)], axis=-1)
    as_rgb = processor(rgb, return_tensors="pt")["pixel_values"]
    for video in (gray, gray[..., None], rgba, [Image.fromarray(frame) for frame in gray], rgb / 255.0):
        torch.testing.assert_close(processor(video, return_tensors="pt")["pixel_values"], as_rgb)
    pil_rgba = [Image.fromarray(frame, mode="RGBA") for frame in rgba]
    torch.testing.assert_close(processor(pil_rgba, return_tensors="pt")["pixel_values"], as_rgb)


@pytest.mark.parametrize("shape", [(48, 64, 3), (48, 64, 4)])
def test_one_color_image_is_refused_not_read_as_a_grayscale_video(processor, shape):
    image = np.zeros(shape, dtype=np.uint8)
    for video in (image, torch.from_numpy(image)):
        with pytest.raises(ValueError, match=rf"{re.escape(str(shape))}.*\(T, H, W, C\)"):
            processor(video, return_tensors="pt")
    assert processor(image[None], return_tensors="pt")["pixel_values"].shape == (1, 8, 3, SIZE, SIZE)
    gray = np.zeros((6, 40, 50), dtype=np.uint8)
    assert processor(gray, return_tensors="pt")["pixel_values"].shape == (1, 8, 3, SIZE, SIZE)


@pytest.mark.parametrize("shape", [(8, 3, 40, 3), (8, 4, 40, 1), (8, 1, 40, 4)])
def test_videos_whose_channel_axis_reads_both_ways_are_refused(processor, shape):
    video = np.zeros(shape, dtype=np.uint8)
    with pytest.raises(ValueError, match=rf"{re.escape(str(shape))}.*unambiguous"):
        processor(video, return_tensors="pt")
    # The same frames in the other layout are unambiguous.
    assert processor(video.transpose(0, 2, 3, 1), return_tensors="pt")["pixel_values"].shape == (1, 8, 3, SIZE, SIZE)


def test_lists_of_frames_must_hold_pil_images_only(processor):
    frame = np.zeros((40, 48, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="PIL images only, got ndarray"):
        processor([Image.fromarray(frame), frame], return_tensors="pt")
    with pytest.raises(ValueError, match="PIL images only, got NoneType"):
        processor([Image.fromarray(frame), None], return_tensors="pt")


@pytest.mark.parametrize("bad_value", [float("nan"), float("inf"), -float("inf")])
def test_float_frames_with_nan_or_inf_are_refused(processor, bad_value):
    video = np.full((4, 40, 40, 3), 0.5, dtype=np.float32)
    video[:, :5] = bad_value
    with pytest.raises(ValueError, match="NaN or infinite"):
        processor(video, return_tensors="pt")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_tensors_are_read_as_float32(processor, dtype):
    video = torch.rand(4, 3, 40, 40)
    expected = processor(video.to(dtype).float(), return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(processor(video.to(dtype), return_tensors="pt")["pixel_values"], expected)


def test_bad_files_raise_errors_that_name_them(processor, make_video, tmp_path):
    missing = tmp_path / "missing.mp4"
    with pytest.raises(FileNotFoundError, match="missing.mp4"):
        processor(missing)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty.mp4"):
        processor(empty)
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 20)
    with pytest.raises(ValueError, match="notes.mp4"):
        processor(text)
    data = make_video("whole.mp4", num_frames=16).read_bytes()
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated.mp4"):
        processor(truncated)
    with pytest.raises(ValueError, match="empty"):
        processor(b"")


def truncated(data: bytes) -> bytes:
    return data[: len(data) // 20]


def zeroed_in_the_middle(data: bytes) -> bytes:
    quarter = len(data) // 4
    return data[: 2 * quarter] + bytes(quarter) + data[3 * quarter :]


@pytest.mark.parametrize("suffix, damage", [("mkv", truncated), ("webm", truncated), ("mkv", zeroed_in_the_middle)])
def test_files_decord_cannot_decode_raise_value_errors_that_name_them(processor, make_video, tmp_path, suffix, damage):
    """decord fails on these with its own DECORDError (not a RuntimeError): it must become the same ValueError."""
    damaged = tmp_path / f"damaged.{suffix}"
    damaged.write_bytes(damage(make_video(f"whole.{suffix}", num_frames=120, height=96, width=128).read_bytes()))
    with pytest.raises(ValueError, match=f"Could not decode .*damaged.{suffix}"):
        processor(damaged)


def test_bad_arguments_are_refused(processor):
    video = np.zeros((4, 40, 40, 3), dtype=np.uint8)
    with pytest.raises(TypeError, match="unexpected keyword"):
        processor(video, num_frame=4)
    with pytest.raises(ValueError, match="fps"):
        processor(video, fps=2)
    with pytest.raises(ValueError, match="num_clips"):
        processor(video, num_clips=0)
    with pytest.raises(ValueError, match="crop_scale"):
        processor(video, training=True, crop_scale=(0.5, 2.0))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        processor(video.astype(np.float32) + 2)
    with pytest.raises(ValueError, match="channel axis"):
        processor(np.zeros((4, 40, 40, 5), dtype=np.uint8))
    with pytest.raises(TypeError, match="videos must be"):
        processor(42)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"crop_size": 0}, r"crop_size\['height'\] must be an integer >= 1, got 0"),
        ({"crop_size": {"height": 32, "width": -4}}, r"crop_size\['width'\] must be an integer >= 1, got -4"),
        ({"size": {"shortest_edge": 0}}, r"size\['shortest_edge'\] must be an integer >= 1, got 0"),
        ({"size": {"shortest_edge": -5}}, r"size\['shortest_edge'\] must be an integer >= 1, got -5"),
        ({"decode_short_side": 0}, "decode_short_side must be an integer >= 1, got 0"),
        ({"decode_short_side": -32}, "decode_short_side must be an integer >= 1, got -32"),
        ({"image_mean": [0.5]}, "image_mean must hold 3 values"),
        ({"image_mean": [0.5] * 4}, "image_mean must hold 3 values"),
        ({"image_std": [0.5, 0.5]}, "image_std must hold 3 values"),
        ({"image_std": [0.5, 0.0, 0.5]}, "image_std values must be > 0"),
        ({"image_std": [0.5, -0.2, 0.5]}, "image_std values must be > 0"),
    ],
)
def test_out_of_range_sizes_and_statistics_are_refused_by_calls_and_constructor(processor, options, message):
    video = np.zeros((4, 40, 40, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match=message):
        processor(video, return_tensors="pt", **options)
    with pytest.raises(ValueError, match=message):
        STDDVideoProcessor(**options)


def test_load_frames_refuses_a_decode_short_side_below_one(processor, make_video):
    with pytest.raises(ValueError, match="decode_short_side must be an integer >= 1, got -32"):
        processor.load_frames(make_video("clip.mp4", num_frames=4), decode_short_side=-32)


def test_unstacked_output_without_return_tensors(processor):
    videos = [np.zeros((4, 40, 40, 3), dtype=np.uint8), np.zeros((9, 30, 60, 3), dtype=np.uint8)]
    pixel_values = processor(videos)["pixel_values"]
    assert isinstance(pixel_values, list) and [tuple(v.shape) for v in pixel_values] == [(8, 3, SIZE, SIZE)] * 2


def test_save_and_load(processor, tmp_path):
    processor = STDDVideoProcessor(size={"shortest_edge": 48}, crop_size=40, num_frames=4, num_clips=3)
    processor.save_pretrained(tmp_path)
    for reloaded in (STDDVideoProcessor.from_pretrained(tmp_path), AutoVideoProcessor.from_pretrained(tmp_path)):
        assert isinstance(reloaded, STDDVideoProcessor)
        assert reloaded.to_json_string() == processor.to_json_string()
    video = np.random.default_rng(0).integers(0, 256, (10, 50, 60, 3), dtype=np.uint8)
    torch.testing.assert_close(
        reloaded(video, return_tensors="pt")["pixel_values"], processor(video, return_tensors="pt")["pixel_values"]
    )
