"""Upload an exported STDD repo folder to the Hugging Face Hub, or list what would be uploaded (`dry_run`)."""

import json
import os
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import HfApi, get_token
from huggingface_hub.errors import HfHubHTTPError
from huggingface_hub.utils import DEFAULT_IGNORE_PATTERNS, filter_repo_objects
from safetensors import SafetensorError, safe_open

from .card import check_repo_id
from .export import check_repo_folder


# Remote files that the upload deletes unless the folder holds them too: the repo mirrors the export, so files of an
# earlier push (a single weights file next to a new sharded index, a label-text set no longer exported) do not stay.
# huggingface_hub always keeps `.gitattributes`.
DELETE_PATTERNS = "*"
SAFETENSORS_INDEX_NAME = "model.safetensors.index.json"
# What a failed Hub call raises: OSError, and the base error class of the HTTP library huggingface_hub uses (requests,
# httpx or httpx2 by version), whose connection errors are not OSErrors.
NETWORK_ERRORS = (OSError, *(cls for cls in HfHubHTTPError.__mro__ if cls.__name__ == "HTTPError"))


@dataclass
class UploadPlan:
    """The files of a repo folder, as `upload_folder` would send them: relative POSIX paths and sizes in bytes."""

    repo_dir: Path
    files: list[tuple[str, int]]

    @property
    def total_bytes(self) -> int:
        return sum(size for _, size in self.files)

    def describe(self, repo_id: str, revision: str | None, private: bool) -> str:
        """Lines listing every file with its size, then the total and the target."""
        width = max(len(path) for path, _ in self.files)
        lines = [f"{path:<{width}}  {format_size(size):>10}" for path, size in self.files]
        visibility = "private" if private else "public"
        lines.append(
            f"{len(self.files)} files, {format_size(self.total_bytes)} in all, would be uploaded to the {visibility} "
            f"model repo {repo_id} (revision {revision or 'main'}); files already in the repo that are not listed "
            "here would be deleted."
        )
        return "\n".join(lines)


def format_size(num_bytes: int) -> str:
    """`512` -> `"512 B"`, `1536` -> `"1.5 KiB"`."""
    if num_bytes < 1024:
        return f"{num_bytes} B"
    size = num_bytes / 1024
    for unit in ("KiB", "MiB"):
        if size < 1024:
            return f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def verify_weights(repo_dir: Path) -> None:
    """
    Check every weights file of an export before it is uploaded: each `.safetensors` file opens (its header parses and
    the file is exactly as long as the header says: a truncated or padded file fails), and a sharded index names
    shards that exist and hold the tensors it maps to them. Raises ValueError naming every broken file.
    """
    problems, tensors_by_file = [], {}
    for path in sorted(repo_dir.rglob("*.safetensors")):
        name = path.relative_to(repo_dir).as_posix()
        try:
            with safe_open(path, framework="pt") as file:
                tensors_by_file[name] = set(file.keys())
        except (SafetensorError, OSError) as error:
            problems.append(f"{name}: {error}")
    index_path = repo_dir / SAFETENSORS_INDEX_NAME
    if index_path.is_file():
        try:
            weight_map = json.loads(index_path.read_text(encoding="utf-8"))["weight_map"]
        except (ValueError, KeyError, TypeError) as error:
            problems.append(f"{SAFETENSORS_INDEX_NAME}: not a safetensors index ({type(error).__name__}: {error})")
            weight_map = {}
        for tensor, shard in weight_map.items():
            if shard not in tensors_by_file:
                problems.append(f"{SAFETENSORS_INDEX_NAME}: maps {tensor} to {shard}, which is missing or broken")
            elif tensor not in tensors_by_file[shard]:
                problems.append(f"{SAFETENSORS_INDEX_NAME}: maps {tensor} to {shard}, which does not hold it")
    if problems:
        raise ValueError(
            f"{repo_dir} holds broken weights; nothing was uploaded. Export it again with `python -m hub_card export`."
            "\n  " + "\n  ".join(problems)
        )


def plan_upload(repo_dir: str | os.PathLike) -> UploadPlan:
    """Check that `repo_dir` is a complete export with intact weights, then list the files `upload_folder` sends."""
    repo_dir = check_repo_folder(repo_dir)
    verify_weights(repo_dir)
    relative_paths = [path.relative_to(repo_dir).as_posix() for path in repo_dir.rglob("*") if path.is_file()]
    uploaded = filter_repo_objects(relative_paths, ignore_patterns=DEFAULT_IGNORE_PATTERNS)
    files = sorted((path, (repo_dir / path).stat().st_size) for path in uploaded)
    return UploadPlan(repo_dir=repo_dir, files=files)


def push_repo(
    repo_dir: str | os.PathLike,
    repo_id: str,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    dry_run: bool = False,
    api: HfApi | None = None,
) -> str:
    """
    Upload the export in `repo_dir` to the model repo `repo_id`, creating the repo (`exist_ok=True`) and the
    branch `revision` when they do not exist. The upload deletes the files of the repo (at `revision`) that the
    folder does not hold, so the repo mirrors the export. With `dry_run`, nothing touches the network: the returned
    text lists the files and sizes that would be uploaded. Otherwise returns the URL of the new commit.

    Raises `ValueError` for an invalid repo id, `FileNotFoundError` / `ValueError` for a missing or incomplete
    folder or broken weights (checked in `dry_run` too), and `PermissionError` when no Hugging Face token is
    available; all before any network call. A failed Hub call raises `ConnectionError` with the server's message.
    """
    check_repo_id(repo_id)
    plan = plan_upload(repo_dir)
    if dry_run:
        return plan.describe(repo_id, revision, private)
    api = api or HfApi()
    if (api.token or get_token()) is None:
        raise PermissionError(
            "no Hugging Face token found: run `hf auth login` or set the HF_TOKEN environment variable "
            "to a token with write access"
        )
    try:
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        if revision is not None:
            api.create_branch(repo_id, branch=revision, repo_type="model", exist_ok=True)
        commit = api.upload_folder(
            folder_path=plan.repo_dir,
            repo_id=repo_id,
            repo_type="model",
            revision=revision,
            commit_message=commit_message or "Upload STDD model",
            delete_patterns=DELETE_PATTERNS,
        )
    except NETWORK_ERRORS as error:
        message = " ".join(str(error).split()) or type(error).__name__
        raise ConnectionError(f"pushing to the Hub repo {repo_id} failed: {message}") from error
    return commit.commit_url


__all__ = ["UploadPlan", "format_size", "plan_upload", "push_repo", "verify_weights"]
