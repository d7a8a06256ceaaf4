"""
Speed and peak memory of STDD's video tower against plain per-frame CLIP and X-CLIP, measured side by side.

Every model gets random weights of one geometry (ViT-B/16 at 224 px by default); the STDD rows load the very CLIP
weights. Each round times every model once, in turn, so that load on the machine hits all rows alike; the table
reports medians over rounds and their ratio to CLIP's median.

    eval   forward under `torch.inference_mode`
    train  forward + backward of `pooler_output.float().square().mean()` (no optimizer update)

"paired ratio" is the median over rounds of a row's time over CLIP's time in the same round, which cancels most of the
drift of a shared machine. "FLOP ratio" counts the floating-point operations of one step with
`torch.utils.flop_counter` (matrix products and attention, with eager attention so that every product is counted): the
cost a perfectly efficient implementation would pay, free of timing noise.

Peak memory is what one step allocates beyond the weights and the input: on CUDA from the caching allocator's
statistics, on CPU from the process's peak resident set (each measured in a fresh process).

The timings run with glibc's malloc thresholds fixed (see `malloc_settings.py`; `--system-malloc` leaves them adaptive)
and report the median page faults per step, which show when memory handed back to the system is touched again.

    python benchmarks/model_speed.py                      # CPU, 2 threads, fp32
    python benchmarks/model_speed.py --device cuda --dtype bfloat16 --compile
"""

import argparse
import json
import multiprocessing
import os
import platform
import statistics
import sys
import time
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402
from transformers import CLIPConfig, CLIPModel, XCLIPConfig, XCLIPModel  # noqa: E402

from malloc_settings import fix_malloc_thresholds, page_faults  # noqa: E402
from modeling_stdd import STDDConfig, STDDModel  # noqa: E402


TINY_TEXT_TOWER = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=2)
ROWS = ("clip", "stdd-reference", "stdd-fast", "x-clip")


def add_shared_arguments(parser: argparse.ArgumentParser):
    """The threads, input geometry and malloc arguments that `stca_overhead.py` takes too."""
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--num-frames", type=int, default=8)
    parser.add_argument("--temporal-scales", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--patch-size", type=int, default=16)
    parser.add_argument("--hidden-size", type=int, default=768)
    parser.add_argument("--num-heads", type=int, default=12)
    parser.add_argument(
        "--system-malloc", action="store_true", help="leave glibc's adaptive malloc thresholds as they are"
    )


def check_counts(parser: argparse.ArgumentParser, args: argparse.Namespace, counts: tuple[str, ...]):
    """Refuse any of the integer arguments `counts` below 1."""
    for name in counts:
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")


def check_shared_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace):
    """The values of `add_shared_arguments`: counts of at least 1, and a width that the heads divide."""
    check_counts(parser, args, ("threads", "batch_size", "num_frames", "num_heads"))
    if args.hidden_size % args.num_heads:
        parser.error(f"--hidden-size {args.hidden_size} is not divisible by --num-heads {args.num_heads}.")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--compile", action="store_true", help="time torch.compile'd models")
    add_shared_arguments(parser)
    parser.add_argument("--num-layers", type=int, default=12)
    parser.add_argument("--attn-implementation", default="sdpa", choices=["sdpa", "eager"])
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds (after one warm-up round)")
    parser.add_argument("--modes", nargs="+", default=["eval", "train"], choices=["eval", "train"])
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=ROWS)
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurements")
    parser.add_argument("--no-flops", action="store_true", help="skip counting floating-point operations")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda was given but torch.cuda.is_available() is False on this machine.")
    check_shared_arguments(parser, args)
    check_counts(parser, args, ("num_layers", "rounds"))
    if "clip" not in args.rows:
        parser.error("--rows must include clip: every ratio is relative to it.")
    return args


def vision_geometry(args: argparse.Namespace) -> dict:
    return dict(
        hidden_size=args.hidden_size,
        intermediate_size=4 * args.hidden_size,
        num_hidden_layers=args.num_layers,
        num_attention_heads=args.num_heads,
        image_size=args.image_size,
        patch_size=args.patch_size,
    )


def build_model(name: str, args: argparse.Namespace) -> torch.nn.Module:
    """One row's model, random weights from a fixed seed; the STDD rows hold CLIP's weights."""
    torch.manual_seed(0)
    geometry = vision_geometry(args)
    if name == "x-clip":
        config = XCLIPConfig(
            text_config=TINY_TEXT_TOWER, vision_config={**geometry, "num_frames": args.num_frames}, projection_dim=512
        )
        config.vision_config._attn_implementation = args.attn_implementation
        model = XCLIPModel(config)
    else:
        clip_config = CLIPConfig(text_config=TINY_TEXT_TOWER, vision_config=geometry, projection_dim=512)
        model = CLIPModel(clip_config)
        if name != "clip":
            implementation = name.removeprefix("stdd-")
            config = STDDConfig(
                text_config=TINY_TEXT_TOWER,
                vision_config={
                    **geometry,
                    "num_frames": args.num_frames,
                    "temporal_scales": args.temporal_scales,
                    "stca_implementation": implementation,
                },
                projection_dim=512,
            )
            stdd = STDDModel(config)
            stdd.load_state_dict(model.state_dict())
            model = stdd
        model.config.vision_config._attn_implementation = args.attn_implementation
    return model.to(device=args.device, dtype=getattr(torch, args.dtype))


def video_features(name: str, model: torch.nn.Module):
    """`video (B, T, 3, H, W) -> features`: CLIP embeds every frame alone; STDD and X-CLIP take the whole video."""
    if name == "clip":
        return lambda video: model.get_image_features(video.flatten(0, 1)).pooler_output
    return lambda video: model.get_video_features(video).pooler_output


def make_step(name: str, model: torch.nn.Module, mode: str, args: argparse.Namespace):
    features = video_features(name, model)
    if args.compile:
        features = torch.compile(features)
    if mode == "eval":
        model.eval()

        def step(video):
            with torch.inference_mode():
                features(video)

    else:
        model.train()

        def step(video):
            features(video).float().square().mean().backward()
            model.zero_grad(set_to_none=True)

    return step


def synchronize(device: str):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def make_video(args: argparse.Namespace) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    shape = (args.batch_size, args.num_frames, 3, args.image_size, args.image_size)
    return torch.randn(shape, generator=generator).to(device=args.device, dtype=getattr(torch, args.dtype))


def time_rows(args: argparse.Namespace, mode: str) -> tuple[dict[str, list[float]], dict[str, list[int]]]:
    """Seconds and page faults per step of every row, `args.rounds` rounds, rows interleaved inside each round."""
    video = make_video(args)
    steps = {name: make_step(name, build_model(name, args), mode, args) for name in args.rows}
    for step in steps.values():  # warm-up (and compilation)
        step(video)
    synchronize(args.device)
    seconds = {name: [] for name in steps}
    faults = {name: [] for name in steps}
    for _ in range(args.rounds):
        for name, step in steps.items():
            synchronize(args.device)
            faults_before, start = page_faults(), time.perf_counter()
            step(video)
            synchronize(args.device)
            seconds[name].append(time.perf_counter() - start)
            faults[name].append(page_faults() - faults_before)
    return seconds, faults


def step_flops(name: str, mode: str, args: argparse.Namespace) -> int:
    """Floating-point operations of one step of a row, counted with eager attention so that every product shows."""
    counting = argparse.Namespace(**{**vars(args), "attn_implementation": "eager", "compile": False})
    step = make_step(name, build_model(name, counting), mode, counting)
    with FlopCounterMode(display=False) as counter:
        step(make_video(counting))
    return counter.get_total_flops()


def _resident_kib(field: str) -> int:
    """`VmRSS` or `VmHWM` of this process, in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not found in /proc/self/status.")


def _peak_memory_worker(name: str, mode: str, args: argparse.Namespace, queue):
    torch.set_num_threads(args.threads)
    video = make_video(args)
    model = build_model(name, args)
    step = make_step(name, model, mode, args)
    step(video)  # warm-up: lazily built buffers and compilation are not part of a step's peak
    synchronize(args.device)
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        step(video)
        synchronize(args.device)
        queue.put((torch.cuda.max_memory_allocated() - before) / 2**20)
        return
    before = _resident_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak resident set (VmHWM) to the current one
    step(video)
    queue.put((_resident_kib("VmHWM") - before) / 2**10)


def peak_memory_mib(name: str, mode: str, args: argparse.Namespace) -> float:
    """Peak MiB one step allocates beyond weights and input, measured in a fresh process."""
    # Large blocks go straight to mmap and back to the system when freed, so the resident set follows live tensors.
    os.environ["MALLOC_MMAP_THRESHOLD_"] = "65536"
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_peak_memory_worker, args=(name, mode, args, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    malloc = "system malloc (adaptive thresholds)" if args.system_malloc else fix_malloc_thresholds()
    started = time.strftime("%Y-%m-%d %H:%M")
    results = {}
    for mode in args.modes:
        seconds, faults = time_rows(args, mode)
        base = statistics.median(seconds["clip"])
        clip_flops = None if args.no_flops else step_flops("clip", mode, args)
        for name, values in seconds.items():
            results[(name, mode)] = dict(
                median_ms=1000 * statistics.median(values),
                ratio=statistics.median(values) / base,
                paired_ratio=statistics.median(value / clip for value, clip in zip(values, seconds["clip"])),
                best_ratio=min(values) / min(seconds["clip"]),
                faults_per_step=statistics.median(faults[name]),
            )
            if not args.no_flops:
                flops = step_flops(name, mode, args)
                results[(name, mode)].update(gflops=flops / 1e9, flop_ratio=flops / clip_flops)
            if not args.no_memory:
                results[(name, mode)]["peak_mib"] = peak_memory_mib(name, mode, args)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or "cpu"
    print(
        f"# {started}  {device}  torch {torch.__version__}  threads {args.threads}  dtype {args.dtype}  "
        f"compile {args.compile}  attn {args.attn_implementation}  B={args.batch_size} T={args.num_frames}  "
        f"scales {args.temporal_scales}  ViT {args.hidden_size}w x {args.num_layers}L /{args.patch_size} "
        f"@ {args.image_size}px  rounds {args.rounds}  load avg {load}  {malloc}"
    )
    print(
        "| model | mode | median ms | ratio vs CLIP | paired ratio | best/best ratio | GFLOP | FLOP ratio | peak MiB "
        "| faults/step |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for (name, mode), row in results.items():
        peak = f"{row['peak_mib']:.0f}" if "peak_mib" in row else "-"
        gflops, flop_ratio = (f"{row['gflops']:.1f}", f"{row['flop_ratio']:.3f}") if "gflops" in row else ("-", "-")
        print(
            f"| {name} | {mode} | {row['median_ms']:.0f} | {row['ratio']:.3f} | {row['paired_ratio']:.3f} "
            f"| {row['best_ratio']:.3f} | {gflops} | {flop_ratio} | {peak} | {row['faults_per_step']:.0f} |"
        )
    if args.json:
        rows = [dict(model=name, mode=mode, **row) for (name, mode), row in results.items()]
        temporary = args.json.with_name(args.json.name + ".tmp")
        report = dict(arguments=vars(args) | {"json": str(args.json)}, rows=rows)
        temporary.write_text(json.dumps(report, indent=2, allow_nan=False))
        os.replace(temporary, args.json)


if __name__ == "__main__":
    main()
