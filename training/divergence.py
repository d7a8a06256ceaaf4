"""
Optimizer steps whose loss or gradients are not finite (NaN or inf): a diverged run stops with a clear error
instead of training on and reporting figures of a broken model.

`--skip-nonfinite-steps N` lets up to N such steps be skipped (their gradients are dropped and the weights keep their
values; the schedule still advances), each one printed and counted in the log; the next one stops the run. With fp16
mixed precision, non-finite gradients are the loss scaler's business (it skips the step and lowers the scale), so
only a non-finite loss counts there.
"""

import torch
from accelerate import Accelerator


class TrainingDivergedError(RuntimeError):
    """Training produced a non-finite loss or gradient norm more often than `--skip-nonfinite-steps` allows."""


class NonFiniteStepGuard:
    """Watches one gradient-accumulation window at a time: `watch_loss` per micro-batch, `check_step` at its end."""

    def __init__(self, accelerator: Accelerator, budget: int, name: str):
        self.accelerator = accelerator
        self.budget = budget
        self.name = name
        self.check_gradients = accelerator.scaler is None
        self.window_nonfinite_loss = False
        self.last_loss = None

    def watch_loss(self, loss: torch.Tensor) -> bool:
        """Note a micro-batch's loss; True when it is finite (and may be added to the epoch's means)."""
        finite = bool(torch.isfinite(loss.detach()).all())
        if not finite:
            self.window_nonfinite_loss = True
            self.last_loss = loss.item()
        return finite

    def check_step(self, grad_norm: torch.Tensor | None, progress, step: int) -> bool:
        """
        At an optimizer step: True when its loss and gradients are finite on every process. Otherwise the step is
        counted in `progress.nonfinite_steps_skipped` and False returned, or `TrainingDivergedError` raised once the
        budget is spent.
        """
        nonfinite_gradients = (
            self.check_gradients and grad_norm is not None and not bool(torch.isfinite(torch.as_tensor(grad_norm)))
        )
        flag = torch.tensor(float(self.window_nonfinite_loss or nonfinite_gradients), device=self.accelerator.device)
        nonfinite = bool(self.accelerator.reduce(flag, reduction="sum") > 0)
        what = ", ".join(
            part for part, bad in (
                (f"loss {self.last_loss}", self.window_nonfinite_loss),
                (f"gradient norm {float(grad_norm) if grad_norm is not None else None}", nonfinite_gradients),
            ) if bad
        ) or "on another process"
        self.window_nonfinite_loss = False
        if not nonfinite:
            return True
        if progress.nonfinite_steps_skipped >= self.budget:
            raise TrainingDivergedError(
                f"[{self.name}] optimizer step {step}: non-finite training ({what}); the run diverged (a learning "
                f"rate too high?) and stops here, without results. {progress.nonfinite_steps_skipped} such steps were "
                f"skipped before, --skip-nonfinite-steps allows {self.budget}."
            )
        progress.nonfinite_steps_skipped += 1
        self.accelerator.print(
            f"[{self.name}] optimizer step {step}: non-finite training ({what}), step skipped "
            f"({progress.nonfinite_steps_skipped} of --skip-nonfinite-steps {self.budget})"
        )
        self.accelerator.log({"nonfinite_steps_skipped": progress.nonfinite_steps_skipped}, step=step)
        return False
