"""Shared by the tests of `training/train.py`: the command line of a tiny run on the `tiny_data` fixture's folders."""


def tiny_arguments(tiny_data, tiny_clip_dir, output_dir, *extra) -> list[str]:
    """Arguments of a 4-frame run on `tiny_data` from the `tiny_clip_dir` checkpoint into `output_dir`, then `extra`."""
    return [
        "--base-model", str(tiny_clip_dir), "--train-data", str(tiny_data / "train"),
        "--eval-data", str(tiny_data / "eval"), "--label-texts", str(tiny_data / "texts.json"),
        "--output-dir", str(output_dir), "--num-frames", "4", "--batch-size", "3", "--num-workers", "0",
        "--learning-rate", "1e-3", "--warmup-epochs", "0.5", *extra,
    ]  # fmt: skip
