"""Writing files and folders so that a reader never sees half of one and an interruption loses nothing."""

import os
import re
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


def make_staging_dir(output_dir: str | os.PathLike, kind: str = "partial") -> Path:
    """
    A new empty sibling folder `.NAME.KIND-PID-XXXXXXXX` of `output_dir` to build it in; the process id in its name
    lets a later run tell a folder an interrupted run left (`remove_stale_staging_dirs`) from one still being built.
    """
    output_dir = Path(output_dir)
    return Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.{kind}-{os.getpid()}-", dir=output_dir.parent))


def process_is_running(pid: int) -> bool:
    """Whether a process with this id exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by another user
        return True
    return True


def remove_stale_staging_dirs(output_dir: str | os.PathLike, kind: str = "partial") -> list[Path]:
    """
    Remove the staging folders of `output_dir` (see `make_staging_dir`) whose process no longer runs: what a killed
    run left behind. Folders of running processes are kept. Returns the removed folders.
    """
    output_dir = Path(output_dir)
    pattern = re.compile(rf"\.{re.escape(output_dir.name)}\.{re.escape(kind)}-(\d+)-")
    removed = []
    if not output_dir.parent.is_dir():
        return removed
    for path in sorted(output_dir.parent.iterdir()):
        match = pattern.match(path.name)
        if match and path.is_dir() and not path.is_symlink() and not process_is_running(int(match[1])):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed
