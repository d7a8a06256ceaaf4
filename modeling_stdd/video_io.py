"""Writing video files with PyAV: synthetic training data, tests and benchmarks all make their clips here."""

import os
from pathlib import Path

import numpy as np


_CODEC_BY_SUFFIX = {".mp4": "libx264", ".mkv": "libx264", ".avi": "mpeg4", ".webm": "libvpx", ".mov": "libx264"}


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: int = 10) -> Path:
    """
    Encode `frames` (T, H, W, 3) uint8 RGB into `path`; the container and codec follow the file suffix
    (.mp4/.mkv/.mov: H.264, .avi: MPEG-4, .webm: VP8). H and W are rounded down to even sizes, as yuv420p needs.
    The file is written next to its final name and renamed into place, so a reader never sees half a video.
    """
    path = Path(path)
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 of shape (T, H, W, 3), got {frames.dtype} {frames.shape}")
    codec = _CODEC_BY_SUFFIX.get(path.suffix.lower())
    if codec is None:
        raise ValueError(f"{path}: unsupported video suffix {path.suffix!r}; use one of {sorted(_CODEC_BY_SUFFIX)}")
    import av

    height, width = frames.shape[1] // 2 * 2, frames.shape[2] // 2 * 2
    partial = path.with_name(f".{path.stem}.partial{path.suffix}")
    with av.open(str(partial), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for frame in frames[:, :height, :width]:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        container.mux(stream.encode())
    os.replace(partial, path)
    return path
