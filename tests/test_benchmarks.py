"""The benchmark scripts run end to end at tiny sizes and report what they promise. No timing is asserted: these
machines are shared, and the figures belong in BENCHMARKS.md, not in tests."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path


REPO = Path(__file__).resolve().parent.parent
TINY_VIT = ["--hidden-size", "64", "--num-heads", "2", "--image-size", "32", "--patch-size", "8", "--num-frames", "4"]


def run_benchmark(script: str, *arguments: str) -> str:
    environment = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, f"benchmarks/{script}", *arguments],
        cwd=REPO, capture_output=True, text=True, timeout=600, env=environment,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def test_model_speed_reports_every_row_and_mode(tmp_path):
    output = run_benchmark(
        "model_speed.py", *TINY_VIT, "--num-layers", "1", "--rounds", "2", "--no-memory",
        "--json", str(tmp_path / "r.json"),
    )
    assert "glibc malloc, mmap threshold 32 MiB" in output.splitlines()[0]
    rows = {(row["model"], row["mode"]): row for row in json.loads((tmp_path / "r.json").read_text())["rows"]}
    names = ("clip", "stdd-reference", "stdd-fast", "x-clip")
    assert set(rows) == {(name, mode) for name in names for mode in ("eval", "train")}
    for (name, mode), row in rows.items():
        assert row["median_ms"] > 0 and row["faults_per_step"] >= 0
        assert f"| {name} | {mode} |" in output
        if name == "clip":
            assert row["ratio"] == row["paired_ratio"] == row["flop_ratio"] == 1.0
    for mode in ("eval", "train"):  # the fast path saves arithmetic; this is counted, not timed
        assert 1.0 < rows[("stdd-fast", mode)]["flop_ratio"] < rows[("stdd-reference", mode)]["flop_ratio"]


def test_model_speed_can_leave_malloc_adaptive():
    output = run_benchmark(
        "model_speed.py", *TINY_VIT, "--num-layers", "1", "--rounds", "1", "--no-memory", "--no-flops",
        "--modes", "eval", "--rows", "clip", "stdd-fast", "--system-malloc",
    )
    assert "system malloc (adaptive thresholds)" in output.splitlines()[0]
    assert "| stdd-fast | eval |" in output and "x-clip" not in output


def test_stca_overhead_splits_the_extra_time_into_matrix_products_and_the_rest():
    output = run_benchmark("stca_overhead.py", *TINY_VIT, "--steps", "2", "--implementation", "reference")
    for mode in ("eval", "train"):
        assert f"## {mode}: one layer, reference STCA against CLIP's layer" in output
    totals = re.findall(r"layer total: CLIP ([\d.]+) ms, STDD ([\d.]+) ms, ratio ([\d.]+)", output)
    assert len(totals) == 2 and all(float(clip) > 0 and float(stdd) > 0 for clip, stdd, _ in totals)
    flop_shares = re.findall(r"for \+([\d.]+)% floating-point operations", output)
    assert len(flop_shares) == 2 and all(float(share) > 10 for share in flop_shares)  # the reference path re-projects
    assert "aten::addmm" in output


def test_pipeline_throughput_times_decode_model_and_pipeline_per_setting():
    output = run_benchmark(
        "pipeline_throughput.py", "--size", "tiny", "--videos", "2", "--seconds", "1", "--labels", "3",
        "--threads", "1", "--batch-sizes", "1", "2", "--num-workers", "0", "1",
    )
    assert re.search(r"first call \(uncached\):\s+[\d.]+ videos/s", output)
    assert re.search(r"cached label texts:\s+[\d.]+ videos/s", output)
    rows = re.findall(r"^\| (\w+) \| (\d+) \| (\d*) \| (\d*) \| ([\d.]+) \| ([\d.]+) \|$", output, re.MULTILINE)
    stages = {(stage, batch_size, workers) for stage, threads, batch_size, workers, _, _ in rows if threads == "1"}
    assert stages == {
        ("decode", "", ""), ("preprocess", "", ""), ("model", "1", ""), ("model", "2", ""),
        *{("pipeline", batch_size, workers) for batch_size in "12" for workers in "01"},
    }
    assert all(float(rate) > 0 for *_, rate, _ in rows)
    # the bound is the slower of the two sides, each at its best settings
    sides = ("model", "preprocess")
    best_share = {side: max(float(share) for stage, *_, share in rows if stage == side) for side in sides}
    assert min(best_share.values()) == 1.0
    assert re.search(r"^bound: (model|preprocessing): model alone at best [\d.]+ videos/s", output, re.MULTILINE)
    best = r"^best pipeline: [\d.]+ videos/s with threads=\d+ batch_size=[12] num_workers=[01], [\d.]+ of the bound"
    assert re.search(best, output, re.MULTILINE)


def test_train_throughput_quick_run():
    output = run_benchmark("train_throughput.py", "--quick")
    assert re.search(r"data loader alone:\s+[\d.]+ clips/s", output)
    assert re.search(r"training step, STDD:\s+[\d.]+ clips/s", output)
    assert re.search(r"STDD step / baseline step:\s+[\d.]+", output)


def test_decode_throughput_quick_run():
    output = run_benchmark("decode_throughput.py", "--quick")
    assert output.count("x PyAV") >= 6  # three readers, throughput and peak memory
