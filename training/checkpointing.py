"""
Epoch checkpoints of a training run: accelerate's state (model, optimizer, scheduler, sampler, random states) plus the
run's own training state, written so that resuming runs no code from the checkpoint folder.

accelerate's `register_for_checkpointing` pickles the registered objects (`custom_checkpoint_N.pkl`) and unpickles
them with `weights_only=False` on resume, so a crafted file in the folder would run code. The run's own state is
therefore kept out of it: `training_state.json` (progress counters, the weight average's epochs, the run's settings)
and `weight_average.safetensors` (the running sum of the averaged weights), and accelerate's files are loaded with
`weights_only=True`, which reads tensors and plain containers only. A folder holding a `custom_checkpoint_*.pkl`
(from an older version, or crafted) is refused without reading it.
"""

import json
import pickle
import shutil
from pathlib import Path
from typing import Protocol

import torch
from accelerate import Accelerator
from safetensors.torch import load_file, save_file

from modeling_stdd.file_utils import move_into_place, write_text_atomically


CHECKPOINT_PREFIX = "epoch_"
TRAINING_STATE_NAME = "training_state.json"
TENSOR_STATE_NAME = "weight_average.safetensors"


class Stateful(Protocol):
    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict): ...


def checkpoint_dirs(run_dir: Path) -> list[Path]:
    """Finished epoch checkpoints of a run, oldest first (partial ones start with '.' and are not listed)."""
    folder = Path(run_dir) / "checkpoints"
    if not folder.is_dir():
        return []
    found = [path for path in folder.iterdir() if path.is_dir() and path.name.startswith(CHECKPOINT_PREFIX)]
    return sorted(found, key=lambda path: int(path.name[len(CHECKPOINT_PREFIX):]))


def checkpoint_to_resume(resume: str | None, run_dir: Path) -> Path | None:
    """The folder `--resume-from-checkpoint` names: a path, the newest checkpoint of `run_dir` for 'latest', or None."""
    if resume is None:
        return None
    if resume != "latest":
        return Path(resume)
    found = checkpoint_dirs(run_dir)
    return found[-1] if found else None


def save_checkpoint(
    accelerator: Accelerator, run_dir: Path, epoch: int, keep: int, states: dict[str, Stateful], settings: dict
) -> Path:
    """
    `accelerator.save_state` and the run's `states` (see `save_training_state`) into a hidden folder, renamed into
    place once every process has written its part; then only the newest `keep` checkpoints are kept.
    """
    final = Path(run_dir) / "checkpoints" / f"{CHECKPOINT_PREFIX}{epoch:04d}"
    partial = final.with_name(f".{final.name}.partial")
    if accelerator.is_main_process:
        shutil.rmtree(partial, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(partial))
    if accelerator.is_main_process:
        save_training_state(partial, states, settings)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        move_into_place(partial, final)
        for old in checkpoint_dirs(run_dir)[:-keep]:
            shutil.rmtree(old)
    accelerator.wait_for_everyone()
    return final


def save_training_state(folder: Path, states: dict[str, Stateful], settings: dict):
    """
    The `state_dict()` of each named object: its non-empty tensor mappings (`{name: tensor}` values) go to
    `weight_average.safetensors` under `object/key/name`, everything else (JSON values) to `training_state.json`,
    with the run's `settings`.
    """
    plain, tensors = {}, {}
    for object_name, state in ((name, stateful.state_dict()) for name, stateful in states.items()):
        plain[object_name] = {"values": {}, "tensor_groups": []}
        for key, value in state.items():
            if isinstance(value, dict) and value and all(isinstance(item, torch.Tensor) for item in value.values()):
                plain[object_name]["tensor_groups"].append(key)
                tensors.update({f"{object_name}/{key}/{name}": tensor.contiguous() for name, tensor in value.items()})
            else:
                plain[object_name]["values"][key] = value
    save_file(tensors, str(Path(folder) / TENSOR_STATE_NAME))
    write_text_atomically(
        Path(folder) / TRAINING_STATE_NAME,
        json.dumps({"states": plain, "settings": settings}, indent=2, allow_nan=False) + "\n",
    )


def read_training_state(folder: Path) -> dict:
    """`training_state.json` of a checkpoint folder: `{"states": ..., "settings": ...}`."""
    folder = Path(folder)
    state_file = folder / TRAINING_STATE_NAME
    if not state_file.is_file():
        old_pickles = sorted(path.name for path in folder.glob("custom_checkpoint_*.pkl"))
        found = f" (it holds {', '.join(old_pickles)}, pickles that are never loaded)" if old_pickles else ""
        raise ValueError(
            f"--resume-from-checkpoint {folder}: no {TRAINING_STATE_NAME}{found}; it is not a checkpoint of this "
            "version of training/train.py. Start a new run."
        )
    try:
        return json.loads(state_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ValueError(f"--resume-from-checkpoint {folder}: {TRAINING_STATE_NAME} cannot be read: {error}") from None


def checkpoint_settings(folder: Path) -> dict:
    """The run settings recorded in a checkpoint folder."""
    return read_training_state(folder)["settings"]


def load_training_state(folder: Path, states: dict[str, Stateful]):
    """Restore the named objects saved by `save_training_state` from `folder`."""
    saved = read_training_state(folder)
    try:
        tensors = load_file(str(Path(folder) / TENSOR_STATE_NAME))
    except (OSError, ValueError) as error:
        raise ValueError(f"--resume-from-checkpoint {folder}: {TENSOR_STATE_NAME} cannot be read: {error}") from None
    for object_name, stateful in states.items():
        if object_name not in saved["states"]:
            raise ValueError(f"--resume-from-checkpoint {folder}: {TRAINING_STATE_NAME} has no {object_name!r} state")
        entry = saved["states"][object_name]
        state = dict(entry["values"])
        for key in entry["tensor_groups"]:
            prefix = f"{object_name}/{key}/"
            state[key] = {name[len(prefix):]: tensor for name, tensor in tensors.items() if name.startswith(prefix)}
        stateful.load_state_dict(state)


def load_checkpoint(accelerator: Accelerator, folder: Path, states: dict[str, Stateful]):
    """`accelerator.load_state` with `weights_only=True` (tensors and plain containers only) and the run's own state."""
    pickles = sorted(path.name for path in Path(folder).glob("custom_checkpoint_*.pkl"))
    if pickles:
        raise ValueError(
            f"--resume-from-checkpoint {folder}: it holds {', '.join(pickles)}, pickled state that this version "
            "never writes and does not load (loading a pickle can run code); it comes from an older version or from "
            "elsewhere. Delete it only if you trust where the folder comes from."
        )
    load_training_state(folder, states)
    try:
        accelerator.load_state(str(folder), load_kwargs={"weights_only": True})
    except pickle.UnpicklingError as error:
        raise ValueError(
            f"--resume-from-checkpoint {folder}: a file there holds objects other than tensors; refused, since loading "
            f"it could run code ({str(error).splitlines()[0]})"
        ) from None
