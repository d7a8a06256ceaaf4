"""Upload an exported STDD repo folder to the Hugging Face Hub, or list what would be uploaded (`dry_run`)."""

import os
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import HfApi, get_token
from huggingface_hub.utils import DEFAULT_IGNORE_PATTERNS, filter_repo_objects

from .card import check_repo_id
from .export import check_repo_folder


# Remote files that the upload deletes unless the folder holds them too: the repo mirrors the export, so files of an
# earlier push (a single weights file next to a new sharded index, a label-text set no longer exported) do not stay.
# huggingface_hub always keeps `.gitattributes`.
DELETE_PATTERNS = "*"


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


def plan_upload(repo_dir: str | os.PathLike) -> UploadPlan:
    """Check that `repo_dir` is a complete export, then list the files `upload_folder` would send."""
    repo_dir = check_repo_folder(repo_dir)
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
    folder, and `PermissionError` when no Hugging Face token is available; all before any network call.
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
    return commit.commit_url


__all__ = ["UploadPlan", "format_size", "plan_upload", "push_repo"]
