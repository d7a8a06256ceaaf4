"""
What the training and evaluation scripts share at run time: the accelerator, the label texts of `--label-texts` and
results written as strict JSON. The processor for a checkpoint is `STDDProcessor.for_checkpoint`, the prompt embeddings
of a list of classes `modeling_stdd.prompt_sets_stdd.build_prompt_set`.
"""

import json
import os
from pathlib import Path

import torch
from accelerate import Accelerator

from modeling_stdd.askg import LabelTexts
from modeling_stdd.file_utils import write_text_atomically
from modeling_stdd.prompt_sets_stdd import resolve_label_texts


def make_accelerator(**kwargs) -> Accelerator:
    """
    An `Accelerator` that runs on the CPU when the machine has no accelerator: processes started by
    `accelerate launch --multi_gpu --num_processes N` then form a CPU (gloo) process group.
    """
    return Accelerator(cpu=not torch.accelerator.is_available(), **kwargs)


def load_label_texts(values: str | list[str] | None, templates: list[str] | None = None) -> LabelTexts | None:
    """
    `--label-texts`: nothing or "none" (plain template), or one or more of a shipped set's name, label-texts JSON and
    ASKG YAML files (an ASKG file followed by its clause file), merged in order (see `resolve_label_texts`).
    `templates` (`--templates`) build the prompt sets of shipped sets and ASKG files.
    """
    values = [values] if isinstance(values, str) else list(values or [])
    if values in ([], ["none"]):
        if templates is not None:
            raise ValueError("--templates builds the prompt sets of --label-texts; give --label-texts too")
        return None
    return resolve_label_texts(values, templates)[0]


def write_json_atomically(path: str | os.PathLike, data) -> Path:
    """Strict JSON (a NaN or inf is refused, naming the file, rather than written as the non-JSON `NaN`)."""
    try:
        text = json.dumps(data, indent=2, allow_nan=False)
    except ValueError as error:
        raise ValueError(f"{path}: refusing to write results holding a non-finite number ({error})") from None
    return write_text_atomically(path, text + "\n")
