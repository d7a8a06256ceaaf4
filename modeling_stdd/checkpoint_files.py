"""Checks that a local model folder is complete before transformers reads it, so that a bad folder is named."""

import json
import os
import struct
from pathlib import Path

from transformers.utils import CONFIG_NAME, SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME


class CheckpointFolderError(ValueError):
    """A local model folder that cannot be loaded: a missing or unreadable `config.json` or weights file."""


def check_model_folder(folder: str | os.PathLike) -> None:
    """
    Raise [`CheckpointFolderError`] naming the folder and the file when `folder` lacks `config.json`, holds one that
    is not a JSON object, or holds a safetensors weights file (single or sharded) that is missing, truncated or has
    an unreadable header. Other files (a PyTorch `.bin` checkpoint) are left to transformers.
    """
    folder = Path(folder)
    config_file = folder / CONFIG_NAME
    if not config_file.is_file():
        raise CheckpointFolderError(
            f"{folder} is not a model folder: it has no {CONFIG_NAME} (a folder written by `save_pretrained`, "
            "e.g. the `model/` folder of a training run, has one)."
        )
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointFolderError(f"{config_file} is not valid JSON ({error}).") from None
    if not isinstance(config, dict):
        raise CheckpointFolderError(f"{config_file} holds a JSON {type(config).__name__}, not a configuration object.")
    for weights_file in safetensors_files(folder):
        check_safetensors_file(weights_file)


def safetensors_files(folder: Path) -> list[Path]:
    """The safetensors weights files a folder's loading reads: the shards its index names, or `model.safetensors`."""
    index_file = folder / SAFE_WEIGHTS_INDEX_NAME
    if index_file.is_file():
        try:
            weight_map = json.loads(index_file.read_text(encoding="utf-8"))["weight_map"]
            return [folder / name for name in sorted(set(weight_map.values()))]
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as error:
            raise CheckpointFolderError(f"{index_file} is not a safetensors index ({error!r}).") from None
    single = folder / SAFE_WEIGHTS_NAME
    return [single] if single.is_file() else []


def check_safetensors_file(path: Path) -> None:
    """The file exists, its header parses, and its size is the header's length plus the tensors' bytes it lists."""
    if not path.is_file():
        raise CheckpointFolderError(f"{path} is missing (the folder's {SAFE_WEIGHTS_INDEX_NAME} lists it).")
    size = path.stat().st_size
    damaged = f"{path} is truncated or damaged"
    with open(path, "rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise CheckpointFolderError(f"{damaged}: {size} bytes, too short for a safetensors header.")
        (header_length,) = struct.unpack("<Q", prefix)
        if header_length > size - 8:
            raise CheckpointFolderError(f"{damaged}: its header claims {header_length} bytes, the file has {size}.")
        try:
            header = json.loads(handle.read(header_length))
            data_end = max((entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"),
                           default=0)
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, IndexError, AttributeError):
            raise CheckpointFolderError(f"{damaged}: its header is not valid safetensors JSON.") from None
    expected = 8 + header_length + data_end
    if size != expected:
        raise CheckpointFolderError(f"{damaged}: {size} bytes, its header describes {expected}.")
