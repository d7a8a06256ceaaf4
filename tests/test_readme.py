"""The README's commands and examples, run as a reader would run them."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path


REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()
HUB_ID = "openai/clip-vit-base-patch16"


def fenced_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.DOTALL)


def test_ci_runs_exactly_the_readme_set_up_and_test_commands():
    ci_lines = (REPO / ".ci" / "run").read_text().splitlines()
    bash_blocks = fenced_blocks("bash")
    set_up, test_command = bash_blocks[0].strip().splitlines(), bash_blocks[1].strip()
    assert any("pip install -c constraints-cpu.txt" in line for line in set_up)
    start = ci_lines.index(set_up[0])
    assert ci_lines[start : start + len(set_up)] == set_up
    assert ci_lines[-1] == test_command


def test_readme_python_examples_run(tiny_clip_dir, tmp_path, make_video):
    blocks = fenced_blocks("python")
    assert blocks, "the README has python examples"
    video_path = make_video("video.mp4", num_frames=24)
    script = "\n".join(
        f"print('--- README example {index}')\n{block.replace(HUB_ID, str(tiny_clip_dir))}"
        for index, block in enumerate(blocks)
    )
    (tmp_path / "readme_examples.py").write_text(script)
    assert video_path.parent == tmp_path
    result = subprocess.run(
        [sys.executable, "readme_examples.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def readme_commands(script: str) -> list[list[str]]:
    """The README's shell commands that run `script`, continuation lines joined, split as the shell would."""
    commands = []
    for block in fenced_blocks("bash"):
        for command in block.replace("\\\n", " ").splitlines():
            words = shlex.split(command, comments=True)
            if script in words:
                commands.append(words[words.index(script) + 1 :])
    return commands


def test_readme_evaluation_commands_are_valid_arguments():
    """The evaluation commands need the real data sets to run; their arguments must at least be accepted as given."""
    from training.evaluate_zero_shot import build_parser, check_args

    commands = readme_commands("training/evaluate_zero_shot.py")
    assert len(commands) >= 4
    for arguments in commands:
        parser = build_parser()
        args = parser.parse_args(arguments)
        check_args(args, parser)
    kinetics600 = next(arguments for arguments in commands if "kinetics600_novel" in arguments)
    args = build_parser().parse_args(kinetics600)
    assert (args.frame_sampling, args.sampling_rate, args.num_clips, args.view_aggregation) == (
        "dense", 16, 3, "logit-sum"
    )
