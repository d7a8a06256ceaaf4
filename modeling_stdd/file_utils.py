"""
Writing files and folders so that a reader never sees half of one and an interruption loses nothing, and reading
text and JSON files with errors that name the file.
"""

import errno
import json
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


def append_text_durably(path: str | os.PathLike, text: str) -> Path:
    """
    Append `text` (UTF-8) to `path` (created if missing) in one write, flushed to disk before returning. A write that
    fails (a full disk) is cut back off, so the file keeps only whole appends.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode("utf-8")
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        size_before = os.fstat(descriptor).st_size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(descriptor, view) :]
            os.fsync(descriptor)
        except BaseException:
            os.ftruncate(descriptor, size_before)
            raise
    finally:
        os.close(descriptor)
    return path


def read_text_file(path: str | os.PathLike, encoding: str = "utf-8") -> str:
    """The text of `path`; a file that is not valid `encoding` text is a ValueError naming it and the bad byte."""
    try:
        return Path(path).read_text(encoding=encoding)
    except UnicodeDecodeError as error:
        bad_byte = error.object[error.start : error.start + 1].hex()
        raise ValueError(
            f"{path} is not {error.encoding.upper().replace('-SIG', '')} text: byte 0x{bad_byte} at offset "
            f"{error.start}; save it as UTF-8."
        ) from error


def _refuse_duplicate_keys(pairs: list[tuple[str, object]]) -> dict:
    keys = [key for key, _ in pairs]
    duplicates = sorted({key for key in keys if keys.count(key) > 1})
    if duplicates:
        raise ValueError(f"duplicate keys {duplicates} (JSON would keep only the last value of each)")
    return dict(pairs)


def read_json_file(path: str | os.PathLike, encoding: str = "utf-8"):
    """
    The JSON value in `path`. Invalid JSON, text that is not `encoding`, and an object holding one key twice are
    ValueErrors naming the file.
    """
    text = read_text_file(path, encoding)
    try:
        return json.loads(text, object_pairs_hook=_refuse_duplicate_keys)
    except ValueError as error:  # json.JSONDecodeError is a ValueError
        kind = "not valid JSON: " if isinstance(error, json.JSONDecodeError) else ""
        raise ValueError(f"{path}: {kind}{error}") from error


def apply_default_permissions(folder: str | os.PathLike) -> None:
    """Give `folder` and everything in it the permissions of newly created files (temporary ones are owner-only)."""
    folder = Path(folder)
    umask = os.umask(0)
    os.umask(umask)
    for path in [folder, *folder.rglob("*")]:
        os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~umask)


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
