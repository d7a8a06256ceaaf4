"""
The `--output-dir` of a training run, claimed before any work:

- it must be writable (checked by writing a probe file, so a read-only folder fails now, not at the first checkpoint);
- it is locked while a run uses it (`.stdd-run.lock`, an advisory `flock` that the system releases when the process
  ends, so the lock of a run that died is detected as stale and taken over);
- a folder holding an earlier run is refused unless the run is resumed (`--resume-from-checkpoint`) or replaced
  (`--overwrite-output-dir`, which deletes the earlier run's files first);
- the run's settings are recorded (`run_settings.json`, and in every checkpoint), and a resume whose settings differ
  is refused, naming the fields.
"""

import contextlib
import errno
import fcntl
import json
import os
import shutil
import socket
import time
from pathlib import Path

from accelerate import Accelerator

from modeling_stdd.file_utils import check_writable_folder, write_text_atomically
from training.checkpointing import checkpoint_dirs, checkpoint_settings
from training.reporting import TRAINING_CURVES_NAME


LOCK_NAME = ".stdd-run.lock"
SETTINGS_NAME = "run_settings.json"
# What a run writes into its --output-dir: --overwrite-output-dir deletes these, and a folder holding any of them is
# a used one. "stdd" and "frame_mean_baseline" are the runs' tensorboard logs and the baseline's own run folder.
RUN_ENTRIES = (
    "checkpoints", "model", "eval_results.json", "log.jsonl", SETTINGS_NAME, TRAINING_CURVES_NAME, "stdd",
    "frame_mean_baseline",
)
# Options that may change when a run is resumed: they do not change what is trained or how it is evaluated.
RESUMABLE_OPTIONS = frozenset({
    "config", "output_dir", "resume_from_checkpoint", "overwrite_output_dir", "num_workers", "eval_batch_size",
    "report_to", "synthetic_data_dir", "fail_on_unreadable_video", "skip_nonfinite_steps", "save_total_limit",
    "gradient_checkpointing",
})


class RunFolderError(ValueError):
    """The --output-dir cannot be used as asked; the message says why and what to pass instead."""


def resume_settings(args, num_processes: int) -> dict:
    """The options a resume must repeat (all but `RESUMABLE_OPTIONS`) and the process count, as JSON values."""
    settings = {name: value for name, value in sorted(vars(args).items()) if name not in RESUMABLE_OPTIONS}
    settings["num_processes"] = num_processes
    return json.loads(json.dumps(settings, default=str))


def check_same_settings(recorded: dict, current: dict, source: str):
    """Refuse a resume whose settings differ from those `source` recorded, naming each differing field."""
    names = sorted(set(recorded) | set(current))
    differing = [name for name in names if recorded.get(name) != current.get(name)]
    if differing:
        changes = "; ".join(f"{name}: {recorded.get(name)!r} there, {current.get(name)!r} now" for name in differing)
        raise RunFolderError(
            f"--resume-from-checkpoint: {source} was written by a run with other settings ({changes}). Resume with "
            "the interrupted run's settings, or start a new run (--overwrite-output-dir or another --output-dir)."
        )


def run_entries(output_dir: Path) -> list[str]:
    return [name for name in RUN_ENTRIES if (output_dir / name).exists()]


class RunLock:
    """An exclusive advisory lock on `<folder>/.stdd-run.lock`, holding the owner's pid, host and start time."""

    def __init__(self, folder: Path):
        self.path = Path(folder) / LOCK_NAME
        self.handle = None

    def acquire(self):
        while True:
            handle = open(self.path, "a+", encoding="utf-8")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as error:
                handle.seek(0)
                holder = handle.read().strip()
                handle.close()
                if error.errno not in (errno.EAGAIN, errno.EACCES):
                    raise RunFolderError(f"--output-dir {self.path.parent}: cannot lock {self.path}: {error}") from None
                raise RunFolderError(
                    f"--output-dir {self.path.parent} is in use by another training run ({describe_holder(holder)}); "
                    "wait for it to end or choose another --output-dir."
                ) from None
            # The file may have been removed by the holder that released it just before: lock the one at the path.
            if os.path.exists(self.path) and os.path.samestat(os.fstat(handle.fileno()), os.stat(self.path)):
                break
            handle.close()
        handle.seek(0)
        stale = handle.read().strip()
        if stale:
            print(f"Note: {self.path} was left by a run that is no longer running ({describe_holder(stale)}); "
                  "taking it over.")
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "started": time.strftime("%Y-%m-%d %H:%M:%S")}))
        handle.flush()
        self.handle = handle
        return self

    def release(self):
        if self.handle is None:
            return
        self.path.unlink(missing_ok=True)
        self.handle.close()  # closing the file releases the lock
        self.handle = None


def describe_holder(text: str) -> str:
    try:
        holder = json.loads(text)
        return f"pid {holder['pid']} on {holder['host']}, started {holder['started']}"
    except (ValueError, KeyError, TypeError):
        return "holder unknown"


def check_output_dir_writable(output_dir: Path):
    try:
        check_writable_folder(output_dir)
    except OSError as error:
        raise RunFolderError(
            f"--output-dir {output_dir} is not writable ({error.strerror or error}); choose another --output-dir."
        ) from None


def prepare_output_dir(args, output_dir: Path, settings: dict):
    """Refuse, overwrite or resume the run in `output_dir` as the arguments ask; record the run's settings."""
    used = run_entries(output_dir)
    resume = args.resume_from_checkpoint
    if args.overwrite_output_dir and used:
        for name in used:
            path = output_dir / name
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        print(f"--overwrite-output-dir: deleted the earlier run's {', '.join(used)} in {output_dir}")
    elif resume is None and used:
        raise RunFolderError(
            f"--output-dir {output_dir} holds an earlier run ({', '.join(used)}). Pass --resume-from-checkpoint "
            "latest to continue it, --overwrite-output-dir to delete it and start again, or choose another "
            "--output-dir."
        )
    if resume == "latest" and not checkpoint_dirs(output_dir):
        raise RunFolderError(
            f"--resume-from-checkpoint latest: {output_dir / 'checkpoints'} holds no checkpoint to resume. Run "
            "without --resume-from-checkpoint to start a new run."
        )
    settings_file = output_dir / SETTINGS_NAME
    if resume is not None and settings_file.is_file():
        check_same_settings(json.loads(settings_file.read_text(encoding="utf-8")), settings, str(settings_file))
    if resume not in (None, "latest"):
        check_same_settings(checkpoint_settings(Path(resume)), settings, resume)
    write_text_atomically(settings_file, json.dumps(settings, indent=2, allow_nan=False) + "\n")


@contextlib.contextmanager
def claim_output_dir(args, accelerator: Accelerator):
    """
    Check, lock and prepare `--output-dir` on the main process before any work (the others wait), and release the
    lock when the run ends, however it ends.
    """
    output_dir = Path(args.output_dir)
    lock = None
    if accelerator.is_main_process:
        check_output_dir_writable(output_dir)
        lock = RunLock(output_dir).acquire()
        try:
            prepare_output_dir(args, output_dir, resume_settings(args, accelerator.num_processes))
        except BaseException:
            lock.release()
            raise
    accelerator.wait_for_everyone()
    try:
        yield output_dir
    finally:
        if lock is not None:
            lock.release()
