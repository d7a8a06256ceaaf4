"""The README's commands and examples, run as a reader would run them."""

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from askg_testing import reference_label_db

from modeling_stdd.askg.__main__ import main as askg_main


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


def test_readme_commands_on_the_authors_label_files(tmp_path, monkeypatch, capsys):
    folder = reference_label_db()
    block = next(block for block in fenced_blocks("bash") if "--templates classes_label_ucf101.yml" in block)
    commands = [shlex.split(line) for line in block.replace("\\\n", " ").splitlines() if line.strip()]
    assert commands and all(command[:3] == ["python", "-m", "modeling_stdd.askg"] for command in commands)
    for path in folder.iterdir():
        (tmp_path / path.name).symlink_to(path)
    monkeypatch.chdir(tmp_path)
    for command in commands:
        expected = 1 if command[3] == "validate" else 0  # validate: the authors' malformed triples are errors
        assert askg_main(command[3:]) == expected, command
    assert "wrote the clauses of 101 classes" in capsys.readouterr().out
    assert len(json.loads((tmp_path / "ucf101_their_templates.json").read_text())["templates"]) == 8

def section(title: str) -> str:
    start = README.index(f"## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end != -1 else len(README)]


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")
def test_readme_checkpoint_conversion_commands_run(tmp_path, make_video):
    """The commands of "Use an existing checkpoint", on a tiny OpenAI archive and a tiny PySlowFast checkpoint."""
    import torch
    from checkpoint_testing import pyslowfast_checkpoint, save_torchscript_archive, tiny_openai_state_dict

    (commands,) = re.findall(r"```bash\n(.*?)```", section("Use an existing checkpoint"), flags=re.DOTALL)
    state_dict = tiny_openai_state_dict()
    save_torchscript_archive(state_dict, tmp_path / "ViT-B-16.pt")
    torch.save(pyslowfast_checkpoint(state_dict), tmp_path / "checkpoint_epoch_00022.pyth")
    make_video("video.mp4", num_frames=24)
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", commands],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env={
            **os.environ,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "PYTHONPATH": str(REPO),
            "HF_HUB_OFFLINE": "1",
        },
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "left out: raw_model.*" in result.stdout and "playing guitar" in result.stdout
    assert (tmp_path / "stdd-vit-b-16" / "model.safetensors").is_file()
    assert (tmp_path / "stdd-k400-hub" / "label_texts" / "hmdb51.json").is_file()


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
    from training.evaluate_zero_shot import parse_args

    commands = readme_commands("training/evaluate_zero_shot.py")
    assert len(commands) >= 4
    parsed = [parse_args(arguments) for arguments in commands]
    kinetics600 = [args for args in parsed if args.protocol == "kinetics600_novel"]
    assert kinetics600 and all(
        (args.frame_sampling, args.sampling_rate, args.num_clips, args.view_aggregation) == ("dense", 16, 3, "logit-sum")
        for args in kinetics600
    )
