"""
The record a training run leaves in its saved model folder (`training_settings.json`): the starting checkpoint, the
recipe and the settings the run used, its training classes and how many evaluation classes it had seen. Weight
patching finds the starting checkpoint there; the Hub export puts the settings on the model card.
"""

import json
import os
from pathlib import Path

from modeling_stdd.file_utils import write_text_atomically


RUN_RECORD_NAME = "training_settings.json"


def write_run_record(model_dir: str | os.PathLike, record: dict) -> Path:
    text = json.dumps(record, indent=2, default=str, allow_nan=False)
    return write_text_atomically(Path(model_dir) / RUN_RECORD_NAME, text + "\n")


def read_run_record(model_dir: str | os.PathLike) -> dict | None:
    """The record of the run that saved `model_dir`; None when the folder has none (a plain or downloaded model)."""
    path = Path(model_dir) / RUN_RECORD_NAME
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON: {error}") from error
    if not isinstance(record, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return record


__all__ = ["RUN_RECORD_NAME", "read_run_record", "write_run_record"]
