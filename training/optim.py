"""
STDD's optimizer and learning-rate schedule (STDD_METHOD.md, section 6), as the authors' released recipe sets them:

- AdamW whose weight decay skips biases and one-dimensional parameters (LayerNorm weights, the class embedding),
  the rule of their optimizer (`ndim == 1` or a name ending in `.bias`);
- a linear warm-up from `lr * min_lr_ratio` to `lr`, then a cosine from `lr` down to `lr * min_lr_ratio`
  (3.33e-8 for 3.33e-6 with the ratio 0.01), stepped once per optimizer step;
- the learning rate scaled linearly with the global batch: `--learning-rate` is the rate for
  `--learning-rate-batch-size` clips, and a run whose optimizer step sees `G` clips in all uses
  `learning_rate * G / learning_rate_batch_size`.
"""

import math

import torch
from torch import nn


def uses_weight_decay(name: str, parameter: nn.Parameter) -> bool:
    """False for biases and 1-D parameters, which AdamW then leaves undecayed (the authors' `ZERO_WD_1D_PARAM`)."""
    return not (parameter.ndim == 1 or name.endswith(".bias"))


def parameter_groups(module: nn.Module, weight_decay: float) -> list[dict]:
    """
    The trainable parameters of `module` in two AdamW groups: `weight_decay` for matrices (and scalars such as
    `logit_scale`, as in the authors' code), 0 for biases and 1-D parameters. Empty groups are left out.
    """
    decayed, undecayed = [], []
    for name, parameter in module.named_parameters():
        if parameter.requires_grad:
            (decayed if uses_weight_decay(name, parameter) else undecayed).append(parameter)
    groups = [{"params": decayed, "weight_decay": weight_decay}, {"params": undecayed, "weight_decay": 0.0}]
    return [group for group in groups if group["params"]]


def learning_rate_factor(step: int, warmup_steps: int, total_steps: int, min_lr_ratio: float) -> float:
    """
    The multiple of the peak learning rate at optimizer step `step`: linear from `min_lr_ratio` to 1 over
    `warmup_steps`, then a cosine from 1 to `min_lr_ratio` at `total_steps` (the authors' `lr_func_cosine` with
    `COSINE_AFTER_WARMUP`). With `min_lr_ratio` 0 this is transformers' `get_cosine_schedule_with_warmup`.
    """
    if step < warmup_steps:
        return min_lr_ratio + (1 - min_lr_ratio) * step / warmup_steps
    progress = min((step - warmup_steps) / max(1, total_steps - warmup_steps), 1.0)
    return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def warmup_cosine_schedule(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int, min_lr_ratio: float
) -> torch.optim.lr_scheduler.LambdaLR:
    """A `LambdaLR` following `learning_rate_factor`."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: learning_rate_factor(step, warmup_steps, total_steps, min_lr_ratio)
    )


def scaled_learning_rate(learning_rate: float, global_batch_size: int, learning_rate_batch_size: int) -> float:
    """The linear scaling rule: `learning_rate` is the rate for `learning_rate_batch_size` clips per step."""
    return learning_rate * global_batch_size / learning_rate_batch_size


def default_mixed_precision() -> str:
    """fp16 where a CUDA GPU trains, full precision (fp32) elsewhere: the CPU has no fp16 autocast to speak of."""
    return "fp16" if torch.cuda.is_available() else "no"


__all__ = [
    "default_mixed_precision",
    "learning_rate_factor",
    "parameter_groups",
    "scaled_learning_rate",
    "uses_weight_decay",
    "warmup_cosine_schedule",
]
