"""
Video files with PyAV: writing them (synthetic training data, tests and benchmarks all make their clips here), and
the reading that decord gets wrong or does not do: a stream's display rotation and frames decord lays out badly.
"""

import os
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np


_CODEC_BY_SUFFIX = {".mp4": "libx264", ".mkv": "libx264", ".avi": "mpeg4", ".webm": "libvpx", ".mov": "libx264"}
# Time base of files written with explicit frame times (MPEG's 90 kHz clock): exact for 10, 25, 30 and 60 fps.
_TIMESTAMP_TIME_BASE = Fraction(1, 90000)


def write_video(
    path: str | os.PathLike,
    frames: np.ndarray,
    fps: int = 10,
    rotation: int = 0,
    frame_times: Sequence[float] | None = None,
) -> Path:
    """
    Encode `frames` (T, H, W, 3) uint8 RGB into `path`; the container and codec follow the file suffix
    (.mp4/.mkv/.mov: H.264, .avi: MPEG-4, .webm: VP8). H and W are rounded down to even sizes, as yuv420p needs.
    `rotation` (degrees, counterclockwise, a multiple of 90) is stored as the stream's display matrix, as phones do;
    `frame_times` (seconds, increasing, one per frame) make a variable-frame-rate file (default: frame k at k / fps).
    The file is written next to its final name and renamed into place, so a reader never sees half a video.
    """
    path = Path(path)
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 of shape (T, H, W, 3), got {frames.dtype} {frames.shape}")
    codec = _CODEC_BY_SUFFIX.get(path.suffix.lower())
    if codec is None:
        raise ValueError(f"{path}: unsupported video suffix {path.suffix!r}; use one of {sorted(_CODEC_BY_SUFFIX)}")
    if rotation % 90:
        raise ValueError(f"rotation must be a multiple of 90 degrees, got {rotation}")
    if frame_times is not None and (len(frame_times) != len(frames) or np.any(np.diff(frame_times) <= 0)):
        raise ValueError(f"frame_times must hold {len(frames)} increasing times, got {list(frame_times)}")
    import av

    height, width = frames.shape[1] // 2 * 2, frames.shape[2] // 2 * 2
    partial = path.with_name(f".{path.stem}.partial{path.suffix}")
    with av.open(str(partial), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if rotation:
            stream.set_display_rotation(rotation)
        if frame_times is not None:
            stream.codec_context.time_base = _TIMESTAMP_TIME_BASE
        for index, frame in enumerate(frames[:, :height, :width]):
            video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            if frame_times is not None:
                video_frame.pts = round(frame_times[index] / _TIMESTAMP_TIME_BASE)
                video_frame.time_base = _TIMESTAMP_TIME_BASE
            container.mux(stream.encode(video_frame))
        container.mux(stream.encode())
    os.replace(partial, path)
    return path


def quarter_turns(rotation: float) -> int:
    """A display rotation in degrees (counterclockwise) as a number of quarter turns in 0..3."""
    return round(rotation / 90) % 4


def display_rotation(container, stream) -> int:
    """
    The display rotation (degrees, counterclockwise) of a video stream of an open PyAV container: phones store a
    portrait recording as landscape frames and a display matrix. Read from the first frame, which FFmpeg gives the
    stream's matrix; 0 for a stream without frames.
    """
    frame = next(container.decode(stream), None)
    return 0 if frame is None else frame.rotation


def decode_frames_with_pyav(source, indices: Sequence[int], size: tuple[int, int] | None) -> np.ndarray:
    """
    The frames at sorted `indices` (in presentation order, as decord counts them) of the best video stream of
    `source` (a path or a binary file object) as (len(indices), H, W, 3) uint8 RGB, display rotation applied like
    decord does it; at `size` (height, width, of the displayed frame) or at full size when it is None.
    """
    import av

    wanted = {index: position for position, index in enumerate(indices)}
    frames, decoded = [None] * len(indices), 0
    with av.open(source) as container:
        for frame in container.decode(container.streams.best("video")):
            if decoded in wanted:
                turns = quarter_turns(frame.rotation)
                coded_size = (frame.height, frame.width) if size is None else size[:: -1 if turns % 2 else 1]
                pixels = frame.to_ndarray(format="rgb24", height=coded_size[0], width=coded_size[1])
                frames[wanted[decoded]] = np.rot90(pixels, turns)
            decoded += 1
            if decoded > indices[-1]:
                break
    if decoded <= indices[-1]:
        raise ValueError(f"it has {decoded} frames, frame {indices[-1]} was asked for")
    return np.ascontiguousarray(np.stack(frames))
