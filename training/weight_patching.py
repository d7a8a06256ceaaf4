"""
Weight patching (STDD_METHOD.md, section 6): evaluate or export `r * starting CLIP + (1 - r) * fine-tuned`, a
known lever for zero-shot transfer from the Open-VCLIP line the authors' code builds on (their scripts use r in
0.2-0.5). Every floating-point weight is interpolated; the two models must have the same weights of the same shapes.
"""

import os

import torch

from modeling_stdd import STDDModel
from training.run_record import RUN_RECORD_NAME, read_run_record


def check_patch_ratio(ratio: float) -> float:
    if not 0 <= ratio <= 1:
        raise ValueError(f"the patch ratio must be in [0, 1] (the starting model's share), got {ratio}")
    return ratio


def patch_weights(model: STDDModel, starting_model: STDDModel, ratio: float) -> STDDModel:
    """
    Replace, in place, every floating-point weight `w` of `model` by `ratio * w_start + (1 - ratio) * w`, `w_start`
    being the weight of the same name in `starting_model`; returns `model`. Raises `ValueError` listing the weights
    the two models do not share with the same shape (another geometry: width, depth, patch or image size).
    """
    check_patch_ratio(ratio)
    weights, starting_weights = model.state_dict(), starting_model.state_dict()
    problems = [f"{name} is missing from the starting model" for name in weights if name not in starting_weights]
    problems += [f"{name} is not in the fine-tuned model" for name in starting_weights if name not in weights]
    problems += [
        f"{name}: {tuple(starting_weights[name].shape)} in the starting model, {tuple(weight.shape)} fine-tuned"
        for name, weight in weights.items()
        if name in starting_weights and starting_weights[name].shape != weight.shape
    ]
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise ValueError(f"cannot patch: the starting model has another geometry than the fine-tuned one ({shown})")
    with torch.no_grad():
        for name, weight in weights.items():
            if weight.is_floating_point():
                start = starting_weights[name].to(device=weight.device, dtype=weight.dtype)
                weight.copy_(ratio * start + (1 - ratio) * weight)
    return model


def starting_checkpoint(model_dir: str | os.PathLike, base_model: str | None = None) -> str:
    """`base_model` when given, else the starting checkpoint recorded by the training run that saved `model_dir`."""
    if base_model is not None:
        return base_model
    record = read_run_record(model_dir) if os.path.isdir(model_dir) else None
    if record is None or not record.get("base_model"):
        raise ValueError(
            f"weight patching needs the starting checkpoint: {model_dir} has no {RUN_RECORD_NAME} naming it (only "
            "models saved by training/train.py do); give --base-model (e.g. openai/clip-vit-base-patch16)"
        )
    return record["base_model"]


def load_starting_model(base_model: str, model: STDDModel) -> STDDModel:
    """
    The starting checkpoint as an `STDDModel` at `model`'s frame size: a model trained at another frame side than its
    start was saved with the interpolated position embeddings it trained from, and the start gets the same ones.
    """
    starting_model = STDDModel.from_pretrained(base_model)
    image_size = model.config.vision_config.image_size
    same_patches = starting_model.config.vision_config.patch_size == model.config.vision_config.patch_size
    if same_patches and starting_model.config.vision_config.image_size != image_size:
        starting_model.adopt_image_size(image_size)
    return starting_model


def patched_model(
    model: STDDModel, model_dir: str | os.PathLike, ratio: float, base_model: str | None = None
) -> tuple[STDDModel, str]:
    """`model` (loaded from `model_dir`) patched with its starting checkpoint at `ratio`, and that checkpoint's id."""
    check_patch_ratio(ratio)
    base_model = starting_checkpoint(model_dir, base_model)
    return patch_weights(model, load_starting_model(base_model, model).to(model.device), ratio), base_model


__all__ = ["check_patch_ratio", "load_starting_model", "patch_weights", "patched_model", "starting_checkpoint"]
