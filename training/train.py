"""
Train STDD (Yu et al., AAAI 2025) and evaluate it zero-shot on classes it never saw:

    accelerate launch training/train.py

`--help` says what the job does and writes (training/arguments.py holds the options, training/job.py the job they
describe, training/loop.py its training, evaluation and saving).
"""

import sys

# PyAV first: decord bundles its own FFmpeg libraries, and once they are loaded PyAV's VP8/VP9 encoders fail.
import av  # noqa: F401

from training.arguments import parse_args
from training.divergence import TrainingDivergedError
from training.loop import run_job
from training.run_folder import RunFolderError, claim_output_dir
from training.runtime import make_accelerator


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    accelerator = make_accelerator(mixed_precision=args.mixed_precision)
    with claim_output_dir(args, accelerator) as output_dir:  # writable, not used by another run, locked
        return run_job(args, accelerator, output_dir)


if __name__ == "__main__":
    try:
        main()
    except (RunFolderError, TrainingDivergedError) as error:
        sys.exit(f"train.py: error: {error}")
