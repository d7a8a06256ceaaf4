"""
Where STDD's extra time goes: one encoder layer of STDD against CLIP's encoder layer with the same weights, profiled op
by op in one run.

`model_speed.py` says how much slower a whole STDD tower is than per-frame CLIP; this script says why. Both layers run
the same input (B*T frames of L tokens), taking turns for a number of profiled steps; the self time of every aten op is
averaged per step and the table lists, op by op, what STDD spends beyond CLIP, as a share of CLIP's layer. The ops
fall into two groups:

    matrix products   addmm, mm, bmm, baddbmm and scaled dot-product attention (forward and backward): the work that
                      the extra floating-point operations pay for
    memory-bound      everything else: LayerNorm, gathers and scatters, elementwise arithmetic, copies

Next to the matrix products' extra time the script prints their extra floating-point operations, counted with
`torch.utils.flop_counter` on the same layers (with eager attention so that every product is counted): if the extra
time of the matrix products matched that share, they would run as efficiently as CLIP's own.

The profiler adds a few microseconds per op, so its totals run slightly above the plain timings of `model_speed.py`.
As there, glibc's malloc thresholds are fixed first (`malloc_settings.py`; `--system-malloc` leaves them adaptive).

    PYTHONPATH=. python benchmarks/stca_overhead.py                       # ViT-B/16 geometry, fast STCA, eval and train
    PYTHONPATH=. python benchmarks/stca_overhead.py --implementation reference --modes eval
"""

import argparse
import os
import platform
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402
from transformers.models.clip.modeling_clip import CLIPEncoderLayer  # noqa: E402

from malloc_settings import fix_malloc_thresholds  # noqa: E402
from model_speed import add_shared_arguments, check_counts, check_shared_arguments, vision_geometry  # noqa: E402
from modeling_stdd.configuration_stdd import STDDVisionConfig  # noqa: E402
from modeling_stdd.modeling_stdd import STDDEncoderLayer  # noqa: E402


MATRIX_PRODUCTS = ("aten::addmm", "aten::mm", "aten::bmm", "aten::baddbmm")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--implementation", default="fast", choices=["fast", "reference"])
    parser.add_argument("--modes", nargs="+", default=["eval", "train"], choices=["eval", "train"])
    parser.add_argument("--steps", type=int, default=20, help="profiled steps of each layer, taking turns")
    add_shared_arguments(parser)
    parser.add_argument("--rows", type=int, default=12, help="ops listed, largest extra time first")
    parser.set_defaults(num_layers=1)
    args = parser.parse_args(argv)
    check_shared_arguments(parser, args)
    check_counts(parser, args, ("steps", "rows"))
    if args.image_size % args.patch_size:
        parser.error(f"--image-size {args.image_size} is not a multiple of --patch-size {args.patch_size}.")
    return args


def build_layers(args: argparse.Namespace, attn_implementation: str) -> dict[str, torch.nn.Module]:
    """CLIP's encoder layer and an STCA layer holding the same random weights."""
    config = STDDVisionConfig(
        **vision_geometry(args),
        num_frames=args.num_frames,
        temporal_scales=args.temporal_scales,
        stca_implementation=args.implementation,
    )
    config._attn_implementation = attn_implementation
    torch.manual_seed(0)
    clip = CLIPEncoderLayer(config)
    stdd = STDDEncoderLayer(config)
    stdd.load_state_dict(clip.state_dict())
    return {"clip": clip, "stdd": stdd}


def make_step(name: str, layer: torch.nn.Module, mode: str, args: argparse.Namespace):
    """One eval forward, or one forward + backward as in a training step (the input needs a gradient, as between
    layers)."""
    num_tokens = 1 + (args.image_size // args.patch_size) ** 2
    hidden_states = torch.randn(args.batch_size * args.num_frames, num_tokens, args.hidden_size)
    frame_kwargs = {} if name == "clip" else {"num_frames": args.num_frames}
    layer.train(mode == "train")
    if mode == "eval":

        def step():
            with torch.inference_mode():
                layer(hidden_states, None, **frame_kwargs)

    else:
        hidden_states.requires_grad_(True)

        def step():
            layer(hidden_states, None, **frame_kwargs).square().mean().backward()
            layer.zero_grad(set_to_none=True)
            hidden_states.grad = None

    return step


def op_milliseconds(steps: dict[str, Callable[[], None]], rounds: int) -> dict[str, dict[str, float]]:
    """Self CPU time of every aten op, in milliseconds per step, for each of `steps`; the steps take turns, one
    profiled step each per round, so that the machine's drift hits both alike."""
    totals = {name: defaultdict(float) for name in steps}
    for round_index in range(rounds + 3):
        for name, step in steps.items():
            with profile(activities=[ProfilerActivity.CPU]) as profiler:
                step()
            if round_index >= 3:  # warm-up rounds
                for event in profiler.key_averages():
                    totals[name][event.key] += event.self_cpu_time_total / 1000 / rounds
    return totals


def is_matrix_product(op: str) -> bool:
    return op in MATRIX_PRODUCTS or "scaled_dot_product" in op


def step_flops(name: str, layer: torch.nn.Module, mode: str, args: argparse.Namespace) -> int:
    """Floating-point operations of one step, as `model_speed.py` counts them (eager attention)."""
    step = make_step(name, layer, mode, args)
    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops()


def report(mode: str, args: argparse.Namespace):
    layers = build_layers(args, "sdpa")
    steps = {name: make_step(name, layer, mode, args) for name, layer in layers.items()}
    milliseconds = op_milliseconds(steps, args.steps)
    counting_layers = build_layers(args, "eager")
    flops = {name: step_flops(name, layer, mode, args) for name, layer in counting_layers.items()}

    clip_total = sum(milliseconds["clip"].values())
    extra = {
        op: milliseconds["stdd"].get(op, 0.0) - milliseconds["clip"].get(op, 0.0)
        for op in set(milliseconds["clip"]) | set(milliseconds["stdd"])
    }
    group_extra = defaultdict(float)
    for op, value in extra.items():
        group_extra["matrix products" if is_matrix_product(op) else "memory-bound"] += value

    print(f"\n## {mode}: one layer, {args.implementation} STCA against CLIP's layer, ms per step (profiled self time)")
    print()
    print("| op | CLIP | STDD | extra | extra, % of CLIP layer |")
    print("|---|---:|---:|---:|---:|")
    for op in sorted(extra, key=lambda op: -abs(extra[op]))[: args.rows]:
        print(
            f"| {op} | {milliseconds['clip'].get(op, 0.0):.2f} | {milliseconds['stdd'].get(op, 0.0):.2f} "
            f"| {extra[op]:+.2f} | {100 * extra[op] / clip_total:+.1f} |"
        )
    stdd_total = sum(milliseconds["stdd"].values())
    flop_share = 100 * (flops["stdd"] - flops["clip"]) / flops["clip"]
    print(f"\nlayer total: CLIP {clip_total:.2f} ms, STDD {stdd_total:.2f} ms, ratio {stdd_total / clip_total:.3f}")
    print(
        f"extra in matrix products and attention: {100 * group_extra['matrix products'] / clip_total:+.1f}% of CLIP's "
        f"layer time, for {flop_share:+.1f}% floating-point operations"
    )
    print(
        f"extra in memory-bound ops:               {100 * group_extra['memory-bound'] / clip_total:+.1f}% of CLIP's "
        "layer time"
    )


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    malloc = "system malloc (adaptive thresholds)" if args.system_malloc else fix_malloc_thresholds()
    print(
        f"# {time.strftime('%Y-%m-%d %H:%M')}  {platform.processor() or platform.machine()}  "
        f"torch {torch.__version__}  "
        f"threads {args.threads}  fp32  B={args.batch_size} T={args.num_frames}  scales {args.temporal_scales}  "
        f"width {args.hidden_size} /{args.patch_size} @ {args.image_size}px  steps {args.steps}  "
        f"load avg {tuple(round(load, 2) for load in os.getloadavg())}  {malloc}"
    )
    for mode in args.modes:
        report(mode, args)


if __name__ == "__main__":
    main()
