"""Writing files and folders so that a reader never sees half of one and an interruption loses nothing."""

import errno
import os
import shutil
import tempfile
from pathlib import Path


def write_text_atomically(path: str | os.PathLike, text: str) -> Path:
    """Write `text` (UTF-8) to a temporary file next to `path`, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        with open(partial, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return path


def check_writable_folder(folder: str | os.PathLike) -> Path:
    """
    Create `folder` if needed and write and delete a probe file in it, so that a folder that cannot be written fails
    before any work rather than at the end of it. Raises `OSError` (e.g. `PermissionError`) when it cannot.
    """
    folder = Path(folder)
    blocking = next((path for path in (folder, *folder.parents) if path.exists() and not path.is_dir()), None)
    if blocking is not None:
        raise NotADirectoryError(errno.ENOTDIR, f"{blocking} is a file, not a folder", str(folder))
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-probe-"):
        pass
    return folder


def move_into_place(staging_dir: str | os.PathLike, output_dir: str | os.PathLike) -> None:
    """
    Replace `output_dir` by the finished folder `staging_dir` (a sibling of it). An existing `output_dir` is renamed
    aside first and removed only once the new one is in place, so at every moment one complete folder exists.
    """
    staging_dir, output_dir = Path(staging_dir), Path(output_dir)
    if not output_dir.exists():
        os.rename(staging_dir, output_dir)
        return
    replaced = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.replaced-", dir=output_dir.parent))
    os.rename(output_dir, replaced / output_dir.name)
    try:
        os.rename(staging_dir, output_dir)
    except BaseException:
        os.rename(replaced / output_dir.name, output_dir)
        raise
    finally:
        shutil.rmtree(replaced, ignore_errors=True)
