"""
Video processor for STDD: decord decoding (at reduced size for sources over twice the resize target), segment-based
or dense (the authors') frame sampling, CLIP-sized crops and CLIP normalization. Works without torchvision.
"""

import io
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO, Union

# PyAV first: decord bundles its own FFmpeg libraries, and once they are loaded PyAV's VP8/VP9 encoders fail.
import av
import decord
import numpy as np
import torch
import torch.nn.functional as F
from huggingface_hub.dataclasses import validate_typed_dict
from PIL import Image
from transformers.image_processing_utils import BatchFeature
from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, PILImageResampling
from transformers.models.auto.video_processing_auto import AutoVideoProcessor
from transformers.processing_utils import Unpack, VideosKwargs
from transformers.video_processing_utils import VideoProcessorMixin

from .configuration_stdd import STDDConfig
from .video_io import decode_frames_with_pyav, display_rotation, quarter_turns


VideoSource = Union[str, os.PathLike, bytes, BinaryIO, np.ndarray, torch.Tensor, list[Image.Image]]

_INTERPOLATION_MODES = {
    PILImageResampling.NEAREST: "nearest",
    PILImageResampling.BILINEAR: "bilinear",
    PILImageResampling.BICUBIC: "bicubic",
}


class STDDVideosKwargs(VideosKwargs, total=False):
    r"""
    training (`bool`, *optional*, defaults to `False`):
        Training augmentation instead of evaluation views: random frames (a random frame inside each temporal
        segment, or a random dense window), one random crop (`train_crop`) and one random horizontal flip per video
        (shared by all its frames). Training always returns one view at `crop_size` (the random crop replaces
        resize and centre crop); `num_clips` and `num_crops` only apply to evaluation.
    frame_sampling (`str`, *optional*, defaults to `"segments"`):
        `"segments"`: `[0, N)` is cut into `num_frames` equal segments and one frame is taken in each (the centre in
        evaluation, a random one in training). `"dense"`: the authors' (PySlowFast's) sampling, `num_frames` evenly
        spaced frames of a window of `sampling_rate * num_frames` frames at 30 fps (rescaled to the video's frame
        rate; decoded frames count as 30 fps); a random window in training, and in evaluation `num_clips` windows
        from the start to the end of the video (the centre one for one clip).
    sampling_rate (`int`, *optional*, defaults to 16):
        Dense sampling: frames between two sampled frames, counted at 30 fps (the paper's 8x16: 8 frames, 16 apart).
    num_clips (`int`, *optional*, defaults to 1):
        Evaluation: temporal views per video. With segment sampling, clip `c` takes, in each of the `num_frames`
        segments, the frame at `(c + 0.5) / num_clips` of the segment (one clip takes the segment centres); with
        dense sampling, clip `c` is the `c`-th of `num_clips` windows spread over the video (the paper tests 3).
    num_crops (`int`, *optional*, defaults to 1):
        Evaluation: spatial views per clip, `crop_size` crops evenly spaced along the long side (1: centre crop,
        3: both ends and the centre).
    train_crop (`str`, *optional*, defaults to `"random-resized"`):
        Training crop. `"jitter"` (the paper's): the short side resized to a random size in `[S, S * 256 / 224]` (S
        the crop side: [224, 256] for 224-pixel crops), then a random `crop_size` crop. `"random-resized"`: a random
        box of `crop_scale` area and `crop_ratio` aspect ratio, resized to `crop_size`.
    crop_scale (`tuple[float, float]`, *optional*, defaults to `(0.4, 1.0)`):
        Training with `train_crop="random-resized"`: range of the random crop's area, as a fraction of the frame's.
    crop_ratio (`tuple[float, float]`, *optional*, defaults to `(3/4, 4/3)`):
        Training with `train_crop="random-resized"`: range of the random crop's aspect ratio (width / height),
        sampled log-uniformly.
    flip_probability (`float`, *optional*, defaults to 0.5):
        Training: probability of flipping a video horizontally; 0 turns flips off (for classes whose label a flip
        changes, such as left / right motion or rotation direction).
    decode_short_side (`int`, *optional*):
        Encoded sources whose short side is larger are decoded straight to this short side (aspect ratio kept), so a
        4K file costs the memory of a small one; the frames are then resized with `resample` as usual. Defaults to
        twice `size["shortest_edge"]` (see [`default_decode_short_side`]).
    keep_view_axis (`bool`, *optional*, defaults to `False`):
        Keep the view axis for one view too: `pixel_values` (B, V, T, 3, S, S) whatever V. By default one view gives
        (B, T, 3, S, S), the videos the model takes.
    """

    training: bool | None
    frame_sampling: str | None
    sampling_rate: int | None
    num_clips: int | None
    num_crops: int | None
    train_crop: str | None
    crop_scale: tuple[float, float] | list[float] | None
    crop_ratio: tuple[float, float] | list[float] | None
    flip_probability: float | None
    decode_short_side: int | None
    keep_view_axis: bool | None


# Keyword arguments of transformers' video processors that have no meaning here.
_UNSUPPORTED_OPTIONS = ("fps", "do_pad", "video_metadata", "return_metadata", "data_format", "input_data_format")


# Frame sampling


def segment_frame_indices(num_source_frames: int, num_frames: int, offsets: np.ndarray | float) -> np.ndarray:
    """
    One frame index per temporal segment: `[0, num_source_frames)` is cut into `num_frames` equal segments and
    `offsets` (in `[0, 1)`, one per segment or one for all) says where inside its segment each frame is taken.
    Videos shorter than `num_frames` repeat frames. Returns shape (num_frames,).
    """
    segment_length = num_source_frames / num_frames
    indices = np.floor((np.arange(num_frames) + offsets) * segment_length).astype(np.int64)
    return np.minimum(indices, num_source_frames - 1)


def evaluation_frame_indices(num_source_frames: int, num_frames: int, num_clips: int = 1) -> np.ndarray:
    """
    Deterministic sampling, shape (num_clips, num_frames): clip `c` takes the frame at `(c + 0.5) / num_clips` of
    every segment, so one clip takes the segment centres and several clips interleave evenly.
    """
    offsets = (np.arange(num_clips) + 0.5) / num_clips
    return np.stack([segment_frame_indices(num_source_frames, num_frames, offset) for offset in offsets])


def training_frame_indices(
    num_source_frames: int, num_frames: int, generator: torch.Generator | None = None
) -> np.ndarray:
    """Random sampling, shape (1, num_frames): a uniformly random frame inside each segment."""
    offsets = torch.rand(num_frames, generator=generator, dtype=torch.float64).numpy()
    return segment_frame_indices(num_source_frames, num_frames, offsets)[None]


# Dense sampling (PySlowFast's, which the authors' code uses): `sampling_rate` counts frames at this rate, and the
# window is rescaled to each video's own frame rate.
DENSE_REFERENCE_FPS = 30.0
FRAME_SAMPLINGS = ("segments", "dense")
# The authors' config samples 8 frames 16 frames apart (at 30 fps).
DEFAULT_SAMPLING_RATE = 16


def dense_window_length(num_frames: int, sampling_rate: int, fps: float) -> float:
    """Source frames a dense clip spans: `sampling_rate * num_frames` frames at 30 fps, in frames at `fps` (>= 1)."""
    return max(1.0, sampling_rate * num_frames / DENSE_REFERENCE_FPS * fps)


def dense_window_starts(num_source_frames: int, window_length: float, num_clips: int) -> list[float]:
    """
    First source frame of each of `num_clips` evaluation windows: the free room `delta` (frames not covered by one
    window) is split so that clip k starts at `k * floor(delta / (num_clips - 1))` (first window at the start, last
    near the end); one clip starts at `floor(delta / 2)`, the centred window.
    """
    delta = max(num_source_frames - window_length, 0.0)
    if num_clips == 1:
        return [float(math.floor(delta / 2))]
    step = math.floor(delta / (num_clips - 1))
    return [float(clip * step) for clip in range(num_clips)]


def dense_clip_indices(num_source_frames: int, num_frames: int, start: float, window_length: float) -> np.ndarray:
    """
    `num_frames` evenly spaced frame indices from `start` to the window's last frame `start + window_length - 1`:
    float32 positions (as PySlowFast computes them) clamped to the video and truncated to integers.
    """
    positions = torch.linspace(start, start + window_length - 1, num_frames, dtype=torch.float32)
    return positions.clamp(0, num_source_frames - 1).long().numpy()


def dense_frame_indices(
    num_source_frames: int,
    num_frames: int,
    sampling_rate: int,
    fps: float,
    training: bool = False,
    num_clips: int = 1,
    generator: torch.Generator | None = None,
) -> np.ndarray:
    """
    Dense sampling, shape (clips, num_frames): each clip takes `num_frames` evenly spaced frames of a window of
    `dense_window_length` source frames. Training draws the window start uniformly over the video (one clip);
    evaluation takes the `dense_window_starts` of `num_clips` windows. Videos shorter than a window repeat frames.
    """
    if not fps > 0:
        raise ValueError(f"Dense frame sampling needs the video's frame rate, got {fps!r} fps.")
    window_length = dense_window_length(num_frames, sampling_rate, fps)
    if training:
        delta = max(num_source_frames - window_length, 0.0)
        starts = [delta * torch.rand(1, generator=generator, dtype=torch.float64).item()]
    else:
        starts = dense_window_starts(num_source_frames, window_length, num_clips)
    return np.stack([dense_clip_indices(num_source_frames, num_frames, start, window_length) for start in starts])


def sample_frame_indices(
    num_source_frames: int,
    num_frames: int | None,
    training: bool = False,
    num_clips: int = 1,
    generator: torch.Generator | None = None,
    frame_sampling: str = "segments",
    sampling_rate: int = DEFAULT_SAMPLING_RATE,
    fps: float = DENSE_REFERENCE_FPS,
) -> np.ndarray:
    """
    Frame indices of shape (clips, frames) for a video of `num_source_frames` frames at `fps`: every frame as one clip
    when `num_frames` is None; else with `frame_sampling="segments"` one frame per temporal segment
    (`training_frame_indices` or `evaluation_frame_indices`), with `"dense"` the `dense_frame_indices` of windows of
    `sampling_rate`-spaced frames.
    """
    if num_frames is None:
        return np.arange(num_source_frames)[None]
    if training and num_clips != 1:
        raise ValueError(f"Training samples one clip per video, got num_clips={num_clips}.")
    if frame_sampling == "dense":
        return dense_frame_indices(num_source_frames, num_frames, sampling_rate, fps, training, num_clips, generator)
    if frame_sampling != "segments":
        raise ValueError(f"frame_sampling must be one of {FRAME_SAMPLINGS}, got {frame_sampling!r}.")
    if training:
        return training_frame_indices(num_source_frames, num_frames, generator)
    return evaluation_frame_indices(num_source_frames, num_frames, num_clips)


# Decoding


def shortest_edge_size(height: int, width: int, shortest_edge: int) -> tuple[int, int]:
    """(height, width) with the short side scaled to `shortest_edge`, aspect ratio kept (long side rounded down)."""
    short, long = min(height, width), max(height, width)
    new_long = int(shortest_edge * long / short)
    return (shortest_edge, new_long) if height <= width else (new_long, shortest_edge)


# decord's reduced-size decoding goes through FFmpeg's scaler (bilinear, in YUV), not the processor's resample. Sources
# are therefore decoded at reduced size only when their short side is more than this many times the resize target, and
# then to this many times the target, so that the final resize (CLIP's bicubic) still sets the pixel values.
DECODE_SIZE_FACTOR = 2


def default_decode_short_side(resize_short_side: int | None) -> int | None:
    """Short side to decode larger sources at for a resize to `resize_short_side`, or None (always full size)."""
    return None if resize_short_side is None else DECODE_SIZE_FACTOR * resize_short_side


def reduced_decode_size(height: int, width: int, short_side: int | None) -> tuple[int, int] | None:
    """(height, width) to decode a `height x width` video at, or None to decode at full size (small enough already)."""
    if short_side is None or min(height, width) <= short_side:
        return None
    return shortest_edge_size(height, width, short_side)


def read_encoded_video(source) -> tuple[str | bytes, str]:
    """
    Check an encoded source and return (path or bytes, name for messages). Paths stay paths (decord reads them
    itself); bytes and file-like objects are read into memory once.
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"Video file not found: {path}")
        if path.stat().st_size == 0:
            raise ValueError(f"Video file is empty (0 bytes): {path}")
        return str(path), str(path)
    if isinstance(source, (bytes, bytearray, memoryview)):
        data, name = bytes(source), f"<video bytes ({len(source)} bytes)>"
    else:
        data = source.read()
        name = str(getattr(source, "name", f"<file-like {type(source).__name__}>"))
    if len(data) == 0:
        raise ValueError(f"Video is empty (0 bytes): {name}")
    return data, name


def _as_input(encoded: str | bytes):
    """What PyAV and decord open: the path itself, or a fresh in-memory file over the bytes."""
    return io.BytesIO(encoded) if isinstance(encoded, bytes) else encoded


def probe_frame_size(encoded: str | bytes, name: str) -> tuple[int, int]:
    """
    Displayed (height, width) of the video stream decord decodes (FFmpeg's best one, not necessarily the first), read
    with PyAV from the container header and the first frame's display rotation: a phone's portrait video stored as
    1920x1080 frames with a 90-degree display matrix is 1920 high and 1080 wide, as decord returns its frames.
    """
    try:
        with av.open(_as_input(encoded)) as container:
            if not container.streams.video:
                raise ValueError(f"{name} has no video stream.")
            stream = container.streams.best("video")
            height, width = stream.codec_context.height, stream.codec_context.width
            if quarter_turns(display_rotation(container, stream)) % 2:
                height, width = width, height
    except av.FFmpegError as error:
        raise ValueError(f"Could not read {name} as a video (not a video file, or truncated): {error}") from error
    if height <= 0 or width <= 0:
        raise ValueError(f"{name}: the video stream reports no frame size ({width}x{height}); the file is damaged.")
    return height, width


# What decord raises for a file it cannot decode; its own `DECORDError` derives from `Exception` only.
DECODE_ERRORS = (decord.DECORDError, RuntimeError, AssertionError)
# decord's failure to copy frames whose rows FFmpeg padded (some narrow widths: 16, 24, 48, 72 px): a valid video.
DECORD_LAYOUT_ERROR = "DECORDArrayCopyFromTo"
# decord gives frame timestamps as float32 seconds; they are rounded to microseconds, below any frame interval.
FRAME_TIME_DECIMALS = 6


class EncodedVideo(decord.VideoReader):
    """
    The frames of an encoded video, decoded on demand by decord at `decode_size` (height, width; full size when it is
    None), display rotation applied. It keeps its source so that `read` can decode with PyAV the frames decord lays
    out wrong. `name` names the video in errors.
    """

    def __init__(self, encoded: str | bytes, name: str, decode_size: tuple[int, int] | None):
        height, width = decode_size or (-1, -1)
        super().__init__(_as_input(encoded), ctx=decord.cpu(0), width=width, height=height)
        self.encoded, self.name, self.decode_size = encoded, name, decode_size

    @property
    def average_fps(self) -> float:
        """The file's average frame rate."""
        return self.get_avg_fps()

    def frame_times(self) -> np.ndarray:
        """
        When each frame is shown, in seconds from the first one (float64, increasing): the frames' own timestamps,
        so variable-frame-rate videos are timed right; frame k at k / average fps where the timestamps are unusable.
        """
        times = self.get_frame_timestamp(list(range(len(self))))[:, 0].astype(np.float64)
        times = np.round(times - times[0], FRAME_TIME_DECIMALS)
        if len(times) > 1 and not (np.all(np.isfinite(times)) and np.all(np.diff(times) > 0)):
            times = np.arange(len(self)) / self.get_avg_fps()
        return times

    def read(self, indices: np.ndarray) -> np.ndarray:
        """
        Decode the frames at `indices` (any shape, repeats allowed) once each: indices.shape + (H, W, 3) uint8. Frames
        decord cannot lay out (padded rows of narrow videos: an error, or 4 channels) are decoded with PyAV instead.
        """
        unique_indices, positions = np.unique(indices, return_inverse=True)
        try:
            frames = self.get_batch(unique_indices.tolist()).asnumpy()
        except DECODE_ERRORS as error:
            if DECORD_LAYOUT_ERROR not in str(error):
                raise ValueError(
                    f"Could not decode frames of {self.name}; the file is truncated or corrupt: {error}"
                ) from error
            frames = None
        if frames is None or frames.shape[-1] != 3:
            try:
                frames = decode_frames_with_pyav(_as_input(self.encoded), unique_indices.tolist(), self.decode_size)
            except (av.FFmpegError, ValueError) as error:
                raise ValueError(
                    f"Could not decode frames of {self.name}; the file is truncated or corrupt: {error}"
                ) from error
        return frames[positions.reshape(indices.shape)]


class DecodedVideo:
    """The frames of an already decoded video, (N, H, W, 3) uint8 RGB (see `frames_from_decoded`), held in memory."""

    # Decoded frames carry no frame rate.
    average_fps = None

    def __init__(self, video: np.ndarray | torch.Tensor | Sequence[Image.Image]):
        self.frames = frames_from_decoded(video)

    def __len__(self) -> int:
        return len(self.frames)

    def read(self, indices: np.ndarray) -> np.ndarray:
        """The frames at `indices` (any shape): indices.shape + (H, W, 3) uint8."""
        return self.frames[indices]


def open_video(video: VideoSource, decode_short_side: int | None = None) -> EncodedVideo | DecodedVideo:
    """
    Random access to the frames of one video: `len(video)` frames, `video.read(indices)`, `video.average_fps` (None
    for decoded frames). An encoded video (a path, `bytes` or a binary file-like object) whose displayed short side is
    larger than `decode_short_side` is decoded straight to that short side; decoded frames are taken as they are.
    """
    if not is_encoded_video(video):
        return DecodedVideo(video)
    encoded, name = read_encoded_video(video)
    decode_size = reduced_decode_size(*probe_frame_size(encoded, name), decode_short_side)
    try:
        return EncodedVideo(encoded, name, decode_size)
    except DECODE_ERRORS as error:
        raise ValueError(f"Could not decode {name} as a video (not a video file, or truncated): {error}") from error


# Already decoded input


def frames_from_decoded(video: np.ndarray | torch.Tensor | Sequence[Image.Image]) -> np.ndarray:
    """
    Decoded frames as (N, H, W, 3) uint8 RGB. Accepts arrays or tensors of shape (N, H, W, C) or (N, C, H, W) with
    C in {1, 3, 4} (gray, RGB, RGBA: alpha is dropped) or (N, H, W) gray; uint8, or floats in [0, 1]; and lists of
    PIL images of one size, in any mode. Shapes that read two ways (an (H, W, 3) image, (8, 3, 40, 3)) are refused.
    """
    if isinstance(video, (list, tuple)):
        return _frames_from_images(video)
    frames = _tensor_to_numpy(video) if isinstance(video, torch.Tensor) else np.asarray(video)
    if frames.ndim == 3:
        frames = _gray_video_with_channel_axis(frames)
    if frames.ndim != 4 or 0 in frames.shape:
        raise ValueError(
            f"A decoded video must have shape (T, H, W, C), (T, C, H, W) or (T, H, W), got {frames.shape}."
        )
    frames = _to_uint8(_channels_last(frames))
    if frames.shape[-1] == 1:
        return np.repeat(frames, 3, axis=-1)
    return np.ascontiguousarray(frames[..., :3])


def _frames_from_images(images: Sequence[Image.Image]) -> np.ndarray:
    """A list of PIL images of one size, in any mode -> (N, H, W, 3) uint8 RGB."""
    others = sorted({type(image).__name__ for image in images if not isinstance(image, Image.Image)})
    if others:
        raise ValueError(
            f"A list of frames must hold PIL images only, got {', '.join(others)} among them; pass array frames "
            "stacked as one (T, H, W, C) array."
        )
    sizes = {image.size for image in images}
    if len(sizes) != 1:
        raise ValueError(f"All PIL frames of a video must have one size, got {sorted(sizes)}.")
    return np.stack([np.asarray(image.convert("RGB")) for image in images])


def _tensor_to_numpy(video: torch.Tensor) -> np.ndarray:
    """A tensor's values as numpy on the CPU; bfloat16 (which numpy lacks) and float16 as float32."""
    video = video.detach().cpu()
    if video.dtype in (torch.bfloat16, torch.float16):
        video = video.float()
    return video.numpy()


_CHANNEL_COUNTS = (1, 3, 4)


def _gray_video_with_channel_axis(frames: np.ndarray) -> np.ndarray:
    """(T, H, W) grayscale frames -> (T, H, W, 1); refuses (H, W, 3) / (H, W, 4), which read as one color image."""
    if frames.shape[-1] in (3, 4):
        raise ValueError(
            f"An input of shape {frames.shape} looks like one (H, W, C) image, not a (T, H, W) grayscale video; "
            "pass a video's frames as (T, H, W, C) (an image as a 1-frame video, shape (1, H, W, C))."
        )
    return frames[..., None]


def _channels_last(frames: np.ndarray) -> np.ndarray:
    """(T, H, W, C) or (T, C, H, W) frames -> (T, H, W, C), C in {1, 3, 4}; refuses shapes that read both ways."""
    last_is_channels = frames.shape[-1] in _CHANNEL_COUNTS
    second_is_channels = frames.shape[1] in _CHANNEL_COUNTS
    if last_is_channels and second_is_channels:
        raise ValueError(
            f"Cannot tell whether a video of shape {frames.shape} is (T, H, W, C) or (T, C, H, W): axis 1 and the "
            "last axis could both hold the 1, 3 or 4 channels. Make the layout unambiguous: pass the frames in the "
            "other layout, or as a list of PIL images."
        )
    if last_is_channels:
        return frames
    if second_is_channels:
        return frames.transpose(0, 2, 3, 1)
    raise ValueError(f"Cannot find the channel axis (1, 3 or 4 channels) of a video of shape {frames.shape}.")


def _to_uint8(frames: np.ndarray) -> np.ndarray:
    """uint8 frames as they are; float frames in [0, 1] scaled to [0, 255]."""
    if frames.dtype == np.uint8:
        return frames
    if np.issubdtype(frames.dtype, np.floating):
        if not np.isfinite(frames).all():
            raise ValueError("Float frames hold NaN or infinite values; they must lie in [0, 1].")
        if frames.min() < 0 or frames.max() > 1:
            raise ValueError(
                f"Float frames must lie in [0, 1], got values in [{frames.min()}, {frames.max()}]; "
                "pass uint8 for [0, 255]."
            )
        return np.round(frames * 255).astype(np.uint8)
    raise ValueError(f"Frames must be uint8 or float in [0, 1], got dtype {frames.dtype}.")


def is_encoded_video(video) -> bool:
    """Whether `video` is a path, bytes or a file-like object (decoded by decord) rather than decoded frames."""
    return isinstance(video, (str, os.PathLike, bytes, bytearray, memoryview)) or hasattr(video, "read")


def _is_single_video(video) -> bool:
    """Whether `video` is one video (encoded, a 3D/4D array or tensor, or a list of PIL images), not a batch."""
    if is_encoded_video(video):
        return True
    if isinstance(video, (np.ndarray, torch.Tensor)):
        return video.ndim in (3, 4)
    return isinstance(video, (list, tuple)) and len(video) > 0 and isinstance(video[0], Image.Image)


def make_video_list(videos) -> list:
    """A list of single videos from one video, a list of videos, or a (B, T, ...) array or tensor."""
    if _is_single_video(videos):
        return [videos]
    if isinstance(videos, (np.ndarray, torch.Tensor)) and videos.ndim == 5:
        return list(videos)
    if isinstance(videos, (list, tuple)) and len(videos) > 0 and all(_is_single_video(video) for video in videos):
        return list(videos)
    raise TypeError(
        "videos must be one video or a non-empty list of videos; a video is a path, bytes, a file-like object, an "
        "array or tensor of frames (T, H, W, C) / (T, C, H, W) / (T, H, W), or a list of PIL images. "
        f"Got {type(videos).__name__}."
    )


def load_video_frames(
    video: VideoSource,
    num_frames: int | None = 8,
    training: bool = False,
    num_clips: int = 1,
    decode_short_side: int | None = None,
    generator: torch.Generator | None = None,
    frame_sampling: str = "segments",
    sampling_rate: int = DEFAULT_SAMPLING_RATE,
    fps: float | None = None,
) -> np.ndarray:
    """
    Turn one video into sampled RGB frames of shape (num_clips, num_frames, H, W, 3), uint8.

    Args:
        video: a path, `bytes`, a binary file-like object (decoded with decord), or decoded frames (an array or
            tensor (T, H, W, C) / (T, C, H, W) / (T, H, W), or a list of PIL images).
        num_frames: frames per clip; None keeps every frame (one clip).
        training: random sampling (a random frame inside each segment, or a random dense window) instead of the
            deterministic evaluation views.
        num_clips: evaluation clips (temporal views); training takes one.
        decode_short_side: encoded sources with a larger short side are decoded straight to this short side.
        generator: random source for training sampling (defaults to torch's global generator).
        frame_sampling: `"segments"` (one frame per temporal segment) or `"dense"` (`num_frames` frames spread over
            a window of `sampling_rate * num_frames` frames at 30 fps); see [`sample_frame_indices`].
        sampling_rate: dense sampling's distance between sampled frames, in frames at 30 fps.
        fps: frame rate for dense sampling; defaults to the file's average rate, and to 30 for decoded frames.
    """
    video = open_video(video, decode_short_side)
    if not fps:
        fps = DENSE_REFERENCE_FPS if video.average_fps is None else video.average_fps
    indices = sample_frame_indices(
        len(video), num_frames, training, num_clips, generator, frame_sampling, sampling_rate, fps
    )
    return video.read(indices)


# Spatial transforms on float frames (..., 3, H, W)


def resize(frames: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """Resize (N, 3, H, W) float frames to `size` (height, width), antialiased; a no-op at the same size."""
    if tuple(frames.shape[-2:]) == tuple(size):
        return frames
    antialias = mode != "nearest"
    return F.interpolate(frames, size=size, mode=mode, antialias=antialias, align_corners=None).clamp_(0, 255)


def evenly_spaced_offsets(length: int, crop_length: int, count: int) -> list[int]:
    """Start offsets of `count` crops along one axis: the centre for one, both ends and evenly between for more."""
    if count == 1:
        return [(length - crop_length) // 2]
    return [round((length - crop_length) * index / (count - 1)) for index in range(count)]


def spatial_crops(frames: torch.Tensor, crop_height: int, crop_width: int, num_crops: int) -> torch.Tensor:
    """`num_crops` crops of (..., 3, H, W) frames spread along both axes: (num_crops, ..., 3, crop_h, crop_w)."""
    height, width = frames.shape[-2:]
    if crop_height > height or crop_width > width:
        raise ValueError(f"Cannot crop {crop_height}x{crop_width} out of frames of {height}x{width}.")
    tops = evenly_spaced_offsets(height, crop_height, num_crops)
    lefts = evenly_spaced_offsets(width, crop_width, num_crops)
    return torch.stack(
        [frames[..., top : top + crop_height, left : left + crop_width] for top, left in zip(tops, lefts)]
    )


def random_resized_crop_box(
    height: int,
    width: int,
    scale: Sequence[float],
    ratio: Sequence[float],
    generator: torch.Generator | None = None,
) -> tuple[int, int, int, int]:
    """
    (top, left, crop_height, crop_width) of a random crop whose area is a uniform fraction in `scale` of the frame and
    whose aspect ratio (width / height) is log-uniform in `ratio`. A box larger than the frame is clipped to it.
    """
    uniform = torch.rand(4, generator=generator, dtype=torch.float64).tolist()
    area = height * width * (scale[0] + (scale[1] - scale[0]) * uniform[0])
    aspect = math.exp(math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * uniform[1])
    crop_width = min(width, max(1, round(math.sqrt(area * aspect))))
    crop_height = min(height, max(1, round(math.sqrt(area / aspect))))
    top = int(uniform[2] * (height - crop_height + 1))
    left = int(uniform[3] * (width - crop_width + 1))
    return top, left, crop_height, crop_width


def random_resized_crop(
    frames: torch.Tensor,
    output_size: tuple[int, int],
    scale: Sequence[float],
    ratio: Sequence[float],
    mode: str,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One random box (see `random_resized_crop_box`) cut from all (T, 3, H, W) frames and resized to `output_size`."""
    top, left, crop_height, crop_width = random_resized_crop_box(*frames.shape[-2:], scale, ratio, generator)
    return resize(frames[..., top : top + crop_height, left : left + crop_width], output_size, mode)


# The paper's training crop: the short side resized to a random size in [224, 256] for 224-pixel crops, i.e. between
# the crop side and this many times it.
JITTER_MAX_SCALE = 256 / 224
TRAIN_CROPS = ("jitter", "random-resized")


def short_side_jitter_crop(
    frames: torch.Tensor,
    output_size: tuple[int, int],
    mode: str,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """
    Scale jittering (the paper's training crop) of (T, 3, H, W) frames: the short side resized to a uniform random
    size in `[S, S * JITTER_MAX_SCALE]` (rounded; S the crop's longer side, aspect ratio kept), then one random crop
    of `output_size` (height, width), the same for all frames.
    """
    crop_height, crop_width = output_size
    side = max(crop_height, crop_width)
    uniform = torch.rand(3, generator=generator, dtype=torch.float64).tolist()
    short_side = round(side + (side * JITTER_MAX_SCALE - side) * uniform[0])
    frames = resize(frames, shortest_edge_size(*frames.shape[-2:], short_side), mode)
    height, width = frames.shape[-2:]
    top = int(uniform[1] * (height - crop_height + 1))
    left = int(uniform[2] * (width - crop_width + 1))
    return frames[..., top : top + crop_height, left : left + crop_width]


def random_horizontal_flip(
    frames: torch.Tensor, probability: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Flip all frames left-right together with probability `probability`."""
    return frames.flip(-1) if torch.rand(1, generator=generator).item() < probability else frames


def _check_positive_integer(name: str, value) -> None:
    if not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}.")


def _check_channel_statistics(image_mean, image_std) -> None:
    """`image_mean` and `image_std` must hold one value per RGB channel, and the standard deviations must be > 0."""
    for name, values in (("image_mean", image_mean), ("image_std", image_std)):
        if np.ndim(values) != 1 or len(values) != 3:
            raise ValueError(f"{name} must hold 3 values, one per RGB channel, got {values!r}.")
    if not all(std > 0 for std in image_std):
        raise ValueError(f"image_std values must be > 0, got {image_std!r}.")


class STDDVideoProcessor(VideoProcessorMixin):
    r"""
    Turns videos into STDD's `pixel_values`: CLIP-sized, CLIP-normalized frames, `num_frames` per video, one per
    temporal segment.

    Videos are decoded with decord (paths, `bytes`, file-like objects; sources over twice the resize target at reduced
    size) or taken as decoded frames (arrays, tensors, lists of PIL images). Evaluation: segment centres (or, with
    `frame_sampling="dense"`, the authors' dense windows), shortest side resized to `size["shortest_edge"]`,
    `crop_size` centre crop; with `num_clips` x `num_crops` views for multi-view testing.
    Training (`training=True`, per call): a random frame in each segment (or a random dense window), a random crop
    (`train_crop`: random resized, or the paper's short-side jitter) and a random horizontal flip. Randomness comes
    from torch's global generator, so `torch.manual_seed` makes it repeatable.

    Output `pixel_values`: (B, T, 3, S, S), or (B, V, T, 3, S, S) with V = num_clips * num_crops > 1 views ordered
    clip by clip (and for one view with `keep_view_axis=True`); a list of per-video tensors when `return_tensors` is
    None.

    Example:

    ```python
    >>> import numpy as np
    >>> from modeling_stdd import STDDVideoProcessor
    >>> video_processor = STDDVideoProcessor(size={"shortest_edge": 32}, crop_size=32, num_frames=4)
    >>> video = np.zeros((20, 48, 64, 3), dtype=np.uint8)
    >>> video_processor(video, return_tensors="pt")["pixel_values"].shape
    torch.Size([1, 4, 3, 32, 32])
    >>> video_processor(video, num_clips=3, num_crops=3, return_tensors="pt")["pixel_values"].shape
    torch.Size([1, 9, 4, 3, 32, 32])
    ```
    """

    resample = PILImageResampling.BICUBIC
    image_mean = OPENAI_CLIP_MEAN
    image_std = OPENAI_CLIP_STD
    size = {"shortest_edge": 224}
    crop_size = {"height": 224, "width": 224}
    default_to_square = False
    do_resize = True
    do_center_crop = True
    do_rescale = True
    rescale_factor = 1 / 255
    do_normalize = True
    do_convert_rgb = True
    do_sample_frames = True
    num_frames = 8
    training = False
    frame_sampling = "segments"
    sampling_rate = DEFAULT_SAMPLING_RATE
    num_clips = 1
    num_crops = 1
    train_crop = "random-resized"
    crop_scale = (0.4, 1.0)
    crop_ratio = (3 / 4, 4 / 3)
    flip_probability = 0.5
    decode_short_side = None
    keep_view_axis = False
    valid_kwargs = STDDVideosKwargs
    model_input_names = ["pixel_values"]

    def __init__(self, **kwargs: Unpack[STDDVideosKwargs]):
        super().__init__(**kwargs)
        self._set_attributes(**kwargs)
        self._resolve_options({})  # bad settings fail here, not at the first call

    def preprocess(self, videos, **kwargs: Unpack[STDDVideosKwargs]) -> BatchFeature:
        """
        Process one video or a list of videos (see [`load_video_frames`] for the accepted forms) into
        `pixel_values`. Keyword arguments override this processor's settings for this call only.
        """
        options = self._resolve_options(kwargs)
        pixel_values = [self._process_video(video, options) for video in make_video_list(videos)]
        return_tensors = options["return_tensors"]
        if return_tensors is not None:
            shapes = {tuple(video.shape) for video in pixel_values}
            if len(shapes) > 1:
                raise ValueError(
                    f"Processed videos differ in shape {sorted(shapes)} and cannot be stacked; keep do_resize and "
                    "do_center_crop on, or pass return_tensors=None."
                )
            pixel_values = torch.stack(pixel_values)
        return BatchFeature(data={"pixel_values": pixel_values}, tensor_type=return_tensors)

    def load_frames(
        self,
        video: VideoSource,
        training: bool | None = None,
        num_frames: int | None = None,
        decode_short_side: int | None = None,
        generator: torch.Generator | None = None,
    ) -> np.ndarray:
        """
        [`load_video_frames`] with this processor's settings: (clips, T, H, W, 3) uint8 frames, decoded at reduced
        size for large sources. The arguments override the processor's settings for this call.
        """
        overrides = {"training": training, "num_frames": num_frames, "decode_short_side": decode_short_side}
        overrides = {name: value for name, value in overrides.items() if value is not None}
        return self._sampled_frames(video, self._resolve_options({"do_sample_frames": True, **overrides}), generator)

    def open_video(self, video: VideoSource) -> EncodedVideo | DecodedVideo:
        """[`open_video`] with this processor's decode size: random access to the frames of one video."""
        return open_video(video, self._decode_short_side(self._resolve_options({})))

    def _resolve_options(self, kwargs: dict) -> dict:
        """Call options over processor settings, standardized (`size` as a `SizeDict`) and checked."""
        unknown = set(kwargs) - set(self.valid_kwargs.__annotations__)
        if unknown:
            raise TypeError(f"{type(self).__name__} got unexpected keyword arguments: {sorted(unknown)}.")
        validate_typed_dict(self.valid_kwargs, kwargs)
        options = {name: kwargs.get(name, getattr(self, name, None)) for name in self.valid_kwargs.__annotations__}
        options = self._standardize_kwargs(**options)
        self._check_options(options)
        return options

    def _check_options(self, options: dict):
        """Reject unsupported or out-of-range options early, naming the option."""
        for name in _UNSUPPORTED_OPTIONS:
            if options[name]:
                raise ValueError(f"{type(self).__name__} does not support `{name}`.")
        if options["do_convert_rgb"] is False:
            raise ValueError("do_convert_rgb=False is not supported: frames are always converted to RGB.")
        for name in ("num_frames", "num_clips", "num_crops", "sampling_rate"):
            _check_positive_integer(name, options[name])
        for name, choices in (("frame_sampling", FRAME_SAMPLINGS), ("train_crop", TRAIN_CROPS)):
            if options[name] not in choices:
                raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {options[name]!r}.")
        if options["decode_short_side"] is not None:
            _check_positive_integer("decode_short_side", options["decode_short_side"])
        if options["do_resize"]:
            if options["size"].shortest_edge is None:
                raise ValueError(
                    f"size must give the shortest edge, e.g. {{'shortest_edge': 224}}, got {options['size']}."
                )
            _check_positive_integer("size['shortest_edge']", options["size"].shortest_edge)
        if options["do_center_crop"] or options["training"]:
            crop = options["crop_size"]
            if crop is None or crop.height is None or crop.width is None:
                raise ValueError(f"crop_size must give height and width, got {crop}.")
            _check_positive_integer("crop_size['height']", crop.height)
            _check_positive_integer("crop_size['width']", crop.width)
        if options["do_normalize"]:
            _check_channel_statistics(options["image_mean"], options["image_std"])
        if not options["do_center_crop"] and options["num_crops"] > 1:
            raise ValueError(f"num_crops={options['num_crops']} needs do_center_crop=True.")
        if options["resample"] not in _INTERPOLATION_MODES:
            raise ValueError(f"resample must be one of {[mode.name for mode in _INTERPOLATION_MODES]}.")
        scale, ratio = options["crop_scale"], options["crop_ratio"]
        if len(scale) != 2 or not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError(f"crop_scale must be (low, high) with 0 < low <= high <= 1, got {scale}.")
        if len(ratio) != 2 or not 0 < ratio[0] <= ratio[1]:
            raise ValueError(f"crop_ratio must be (low, high) with 0 < low <= high, got {ratio}.")
        if not 0 <= options["flip_probability"] <= 1:
            raise ValueError(f"flip_probability must be in [0, 1], got {options['flip_probability']}.")

    @staticmethod
    def _decode_short_side(options: dict) -> int | None:
        """
        Short side to decode large sources at under `options`: `decode_short_side`, else twice the resize target
        (see `DECODE_SIZE_FACTOR`), else None (full size, when frames are not resized).
        """
        if options["decode_short_side"] is not None:
            return options["decode_short_side"]
        return default_decode_short_side(options["size"].shortest_edge) if options["do_resize"] else None

    def _sampled_frames(
        self, video: VideoSource, options: dict, generator: torch.Generator | None = None
    ) -> np.ndarray:
        """[`load_video_frames`] under `options`: (clips, T, H, W, 3) uint8 (every frame, one clip, unsampled)."""
        training = options["training"]
        return load_video_frames(
            video,
            num_frames=options["num_frames"] if options["do_sample_frames"] else None,
            training=training,
            num_clips=1 if training else options["num_clips"],
            decode_short_side=self._decode_short_side(options),
            generator=generator,
            frame_sampling=options["frame_sampling"],
            sampling_rate=options["sampling_rate"],
        )

    def _process_video(self, video: VideoSource, options: dict) -> torch.Tensor:
        """One video to (V, T, 3, S, S) views, or (T, 3, S, S) for one view unless `keep_view_axis`."""
        training = options["training"]
        frames = self._sampled_frames(video, options)
        # (clips, T, H, W, 3) uint8 -> (clips, T, 3, H, W) float
        frames = torch.from_numpy(frames).permute(0, 1, 4, 2, 3).float()
        views = self._training_view(frames[0], options)[None] if training else self._evaluation_views(frames, options)
        views = self._rescale_and_normalize(views, options)
        if options["device"] is not None:
            views = views.to(options["device"])
        return views if options["keep_view_axis"] or views.shape[0] > 1 else views[0]

    def _evaluation_views(self, clips: torch.Tensor, options: dict) -> torch.Tensor:
        """(clips, T, 3, H, W) -> (clips * num_crops, T, 3, h, w): shortest-side resize, then evenly spread crops."""
        num_clips, num_frames = clips.shape[:2]
        frames = clips.flatten(0, 1)
        if options["do_resize"]:
            target = shortest_edge_size(*frames.shape[-2:], options["size"].shortest_edge)
            frames = resize(frames, target, _INTERPOLATION_MODES[options["resample"]])
        if not options["do_center_crop"]:
            return frames.unflatten(0, (num_clips, num_frames))
        crop = options["crop_size"]
        crops = spatial_crops(frames, crop.height, crop.width, options["num_crops"])  # (crops, clips * T, 3, h, w)
        crops = crops.unflatten(1, (num_clips, num_frames)).transpose(0, 1)  # (clips, crops, T, 3, h, w)
        return crops.flatten(0, 1)

    def _training_view(self, frames: torch.Tensor, options: dict) -> torch.Tensor:
        """(T, 3, H, W) -> (T, 3, h, w): one random crop (`train_crop`) and one random flip for all the frames."""
        crop = options["crop_size"]
        mode = _INTERPOLATION_MODES[options["resample"]]
        output_size = (crop.height, crop.width)
        if options["train_crop"] == "jitter":
            frames = short_side_jitter_crop(frames, output_size, mode)
        else:
            frames = random_resized_crop(frames, output_size, options["crop_scale"], options["crop_ratio"], mode)
        return random_horizontal_flip(frames, options["flip_probability"])

    @staticmethod
    def _rescale_and_normalize(frames: torch.Tensor, options: dict) -> torch.Tensor:
        """Scale pixel values by `rescale_factor` and standardize channels with `image_mean` / `image_std`."""
        if options["do_rescale"]:
            frames = frames * options["rescale_factor"]
        if options["do_normalize"]:
            mean = torch.tensor(options["image_mean"], dtype=frames.dtype).view(3, 1, 1)
            std = torch.tensor(options["image_std"], dtype=frames.dtype).view(3, 1, 1)
            frames = (frames - mean) / std
        return frames


# Imported from its module: `transformers.AutoVideoProcessor` is a placeholder that demands torchvision, which this
# processor does not use.
AutoVideoProcessor.register(STDDConfig, STDDVideoProcessor)

__all__ = [
    "STDDVideoProcessor",
    "DEFAULT_SAMPLING_RATE",
    "FRAME_SAMPLINGS",
    "TRAIN_CROPS",
    "DecodedVideo",
    "EncodedVideo",
    "default_decode_short_side",
    "dense_frame_indices",
    "evaluation_frame_indices",
    "load_video_frames",
    "make_video_list",
    "open_video",
    "reduced_decode_size",
    "sample_frame_indices",
    "training_frame_indices",
]
