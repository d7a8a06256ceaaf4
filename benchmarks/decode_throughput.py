"""
Decoding throughput and memory, side by side in one run: decord (this project's reader) against PyAV as transformers
reads videos by default (`transformers.video_utils.read_video_pyav`).

decord runs twice: at full size, and with reduced-size decoding as the video processor does it for a 224 px model
(sources whose short side is over 448, twice the resize target, decoded straight to a short side of 448).

1. Clips per second: 8-frame evaluation clips (segment centres) from 10-second 320x240 videos at 25 fps. These are
   below 448, so both decord rows decode them at full size.
2. Peak memory per clip: one 8-frame clip from a 1920x1080 video, each reader in a fresh subprocess, reported as the
   growth of the process's peak resident memory over the imports.

Run: `PYTHONPATH=. python benchmarks/decode_throughput.py` (add `--quick` for a short smoke run).
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Hashable
from pathlib import Path

# PyAV first: decord bundles its own FFmpeg libraries, and once they are loaded PyAV's VP8/VP9 encoders fail.
import av  # noqa: F401
import numpy as np

from modeling_stdd.video_io import write_video
from modeling_stdd.video_processing_stdd import default_decode_short_side, evaluation_frame_indices, load_video_frames


NUM_FRAMES = 8
# What the video processor decodes large sources at for a 224 px model: 448.
DECODE_SHORT_SIDE = default_decode_short_side(224)


def make_moving_video(path: Path, num_frames: int, height: int, width: int, fps: int) -> Path:
    """A video of gradients and a moving square, so that frames differ and the encoder does real work."""
    rows, columns = np.mgrid[0:height, 0:width]
    frames = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    for index in range(num_frames):
        frames[index, ..., 0] = (columns * 255 // width + 3 * index) % 256
        frames[index, ..., 1] = (rows * 255 // height + 5 * index) % 256
        frames[index, ..., 2] = 40
        top, left = (7 * index) % (height // 2), (11 * index) % (width // 2)
        frames[index, top : top + height // 4, left : left + width // 4] = 255
    return write_video(path, frames, fps=fps)


def read_with_pyav(path: Path) -> np.ndarray:
    """transformers' default PyAV reader, sampling the same segment centres as decord."""
    from transformers.video_utils import read_video_pyav

    def sample_indices_fn(metadata, **kwargs):
        return evaluation_frame_indices(metadata.total_num_frames, NUM_FRAMES)[0]

    frames, _ = read_video_pyav(str(path), sample_indices_fn=sample_indices_fn)
    return frames


READERS = {
    f"decord (reduced-size decode, short side {DECODE_SHORT_SIDE})": lambda path: load_video_frames(
        path, NUM_FRAMES, decode_short_side=DECODE_SHORT_SIDE
    ),
    "decord (full-size decode)": lambda path: load_video_frames(path, NUM_FRAMES),
    "PyAV (transformers read_video_pyav)": read_with_pyav,
}
BASELINE = "PyAV (transformers read_video_pyav)"


def interleaved_rates(runs: dict[Hashable, Callable[[], object]], items: int, repeats: int) -> dict[Hashable, float]:
    """
    Median items/s of each of `runs` (callables that each process `items` items) over `repeats` passes. The runs
    take turns pass by pass, so that a slow spell of the machine hits all of them alike.
    """
    pass_rates = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            pass_rates[name].append(items / (time.perf_counter() - start))
    return {name: float(np.median(rates)) for name, rates in pass_rates.items()}


def clips_per_second(paths: list[Path], repeats: int) -> dict[str, float]:
    """Median clips/s of each reader over `repeats` passes over `paths`, the readers taking turns pass by pass."""
    for reader in READERS.values():
        reader(paths[0])  # warm-up: library initialisation is not part of the steady state
    runs = {name: (lambda reader=reader: [reader(path) for path in paths]) for name, reader in READERS.items()}
    return interleaved_rates(runs, len(paths), repeats)


PEAK_MEMORY_CODE = """
import json, sys
sys.path[:0] = {sys_path}
from benchmarks.decode_throughput import READERS


def status_mib(field):
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith(field + ":"))
    return int(line.split()[1]) / 1024


with open("/proc/self/clear_refs", "w") as clear_refs:
    clear_refs.write("5")  # reset the peak (VmHWM) to the current resident size
before = status_mib("VmRSS")
frames = READERS[{reader_name!r}]({path!r})
print(json.dumps({{"peak_growth_mib": status_mib("VmHWM") - before, "shape": list(frames.shape)}}))
"""


def measure_peak_memory(reader_name: str, path: Path) -> dict:
    """
    Growth of peak resident memory (MiB) while `reader_name` reads one clip from `path`, in a fresh subprocess whose
    imports are done and whose peak is reset first (Linux: /proc/self/clear_refs).
    """
    code = PEAK_MEMORY_CODE.format(sys_path=json.dumps(sys.path), reader_name=reader_name, path=str(path))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-videos", type=int, default=4, help="distinct 10-second 320x240 videos")
    parser.add_argument("--repeats", type=int, default=7, help="passes over the videos per reader")
    parser.add_argument("--quick", action="store_true", help="1 video, 1 pass, a short 1080p source")
    args = parser.parse_args()
    num_videos, repeats = (1, 1) if args.quick else (args.num_videos, args.repeats)
    import decord

    print(f"python {sys.version.split()[0]}, decord {decord.__version__}, PyAV {av.__version__}")

    with tempfile.TemporaryDirectory() as directory:
        directory = Path(directory)
        paths = [
            make_moving_video(directory / f"clip_{index}.mp4", num_frames=250, height=240, width=320, fps=25)
            for index in range(num_videos)
        ]
        print(f"\n8-frame clips from {num_videos} x 10 s 320x240 H.264 videos (25 fps), median of {repeats} passes:")
        rates = clips_per_second(paths, repeats)
        for name, rate in rates.items():
            print(f"  {name:48s} {rate:8.1f} clips/s   {rate / rates[BASELINE]:5.2f}x PyAV")

        seconds = 1 if args.quick else 3
        large = make_moving_video(directory / "large.mp4", num_frames=25 * seconds, height=1080, width=1920, fps=25)
        print(f"\nPeak memory growth for one 8-frame clip of a {seconds} s 1920x1080 video (fresh process each):")
        memory = {name: measure_peak_memory(name, large) for name in READERS}
        for name, result in memory.items():
            ratio = result["peak_growth_mib"] / memory[BASELINE]["peak_growth_mib"]
            print(
                f"  {name:48s} {result['peak_growth_mib']:8.1f} MiB   {ratio:5.2f}x PyAV   "
                f"frames {tuple(result['shape'])}"
            )


if __name__ == "__main__":
    main()
