"""
Tiny checkpoints in the layouts `modeling_stdd.convert_checkpoint` reads, made with open_clip (an OpenAI CLIP
implementation we did not write): OpenAI state dicts, OpenAI-style TorchScript archives and PySlowFast checkpoints.
"""

import importlib
import importlib.util
import sys
import types
from pathlib import Path

import torch
import yaml
from torch import nn


OPEN_CLIP_DIR = Path(importlib.util.find_spec("open_clip").submodule_search_locations[0])
OPEN_CLIP_PACKAGE = "_open_clip_reference"
# A ViT with two heads per tower (width 128, OpenAI's 64 channels per head) on 32 px images in 16 px patches, with
# CLIP's real context length and vocabulary so that the bundled tokenizer fits.
TINY_VISION = dict(width=128, layers=2, patch_size=16, image_size=32)
TINY_TEXT = dict(width=128, heads=2, layers=2, context_length=77, vocab_size=49408)
TINY_EMBED_DIM = 32


def open_clip_module(name: str) -> types.ModuleType:
    """
    A module of open_clip (`"model"`, `"tokenizer"`) imported without `import open_clip`, whose package init imports
    torchvision, which the CPU set-up does not install. open_clip's folder becomes a bare package; where torchvision
    is missing, the one name open_clip's `utils` takes from it (`FrozenBatchNorm2d`, used to freeze ResNet towers,
    which these tests never build) is a stand-in while `utils` alone is imported.
    """
    if OPEN_CLIP_PACKAGE not in sys.modules:
        package = types.ModuleType(OPEN_CLIP_PACKAGE)
        package.__path__ = [str(OPEN_CLIP_DIR)]
        sys.modules[OPEN_CLIP_PACKAGE] = package
    if f"{OPEN_CLIP_PACKAGE}.utils" not in sys.modules:
        import_with_torchvision_stand_in(f"{OPEN_CLIP_PACKAGE}.utils")
    return importlib.import_module(f"{OPEN_CLIP_PACKAGE}.{name}")


def import_with_torchvision_stand_in(module_name: str) -> types.ModuleType:
    """Import `module_name` with `torchvision.ops.misc.FrozenBatchNorm2d` standing in where torchvision is missing."""
    if importlib.util.find_spec("torchvision") is not None:
        return importlib.import_module(module_name)
    misc = types.ModuleType("torchvision.ops.misc")
    misc.FrozenBatchNorm2d = type("FrozenBatchNorm2d", (nn.Module,), {})
    ops = types.ModuleType("torchvision.ops")
    ops.misc = misc
    torchvision = types.ModuleType("torchvision")
    torchvision.ops = ops
    stand_ins = {"torchvision": torchvision, "torchvision.ops": ops, "torchvision.ops.misc": misc}
    sys.modules.update(stand_ins)
    try:
        return importlib.import_module(module_name)
    finally:
        for stand_in in stand_ins:
            sys.modules.pop(stand_in, None)


def tiny_openai_state_dict(seed: int = 0, **vision_overrides) -> dict[str, torch.Tensor]:
    """
    The state dict of a random open_clip `CLIP` with QuickGELU (OpenAI's architecture and key names). LayerNorm
    weights and all biases are drawn too, so that a wrong mapping of any of them shows in the features.
    """
    open_clip_model = open_clip_module("model")
    torch.manual_seed(seed)
    model = open_clip_model.CLIP(
        TINY_EMBED_DIM,
        vision_cfg=open_clip_model.CLIPVisionCfg(**{**TINY_VISION, **vision_overrides}),
        text_cfg=open_clip_model.CLIPTextCfg(**TINY_TEXT),
        quick_gelu=True,
    )
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("bias") or ".ln_" in name or name.startswith("ln_final"):
                parameter.add_(0.1 * torch.randn_like(parameter))
        model.logit_scale.fill_(3.0)
    return {key: value.detach().clone() for key, value in model.state_dict().items()}


def open_clip_reference(state_dict: dict[str, torch.Tensor]) -> nn.Module:
    """
    open_clip's model built from an OpenAI-layout state dict by its own OpenAI loader, in float32 (the loader
    stores the weights in float16, as OpenAI's files hold them; they are loaded again in float32 here).
    """
    open_clip_model = open_clip_module("model")
    model = open_clip_model.build_model_from_openai_state_dict(dict(state_dict)).float()
    model.load_state_dict(state_dict)
    return model.eval()


class ParameterTree(nn.Module):
    """A module holding tensors under dotted names, so that a scripted copy's `state_dict()` gives those names."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def save_torchscript_archive(state_dict: dict[str, torch.Tensor], path: Path, **metadata: int) -> Path:
    """
    An archive like OpenAI's `ViT-B-16.pt`: TorchScript, with float16 weights and, by default, the metadata entries
    `input_resolution`, `context_length` and `vocab_size` in its `state_dict()`.
    """
    metadata = {
        "input_resolution": TINY_VISION["image_size"],
        "context_length": TINY_TEXT["context_length"],
        "vocab_size": TINY_TEXT["vocab_size"],
        **metadata,
    }
    root = ParameterTree()
    entries = {key: value.half() for key, value in state_dict.items()} | {
        key: torch.tensor(value) for key, value in metadata.items()
    }
    for key, value in entries.items():
        *parents, name = key.split(".")
        module = root
        for parent in parents:
            if not hasattr(module, parent):
                module.add_module(parent, ParameterTree())
            module = getattr(module, parent)
        if value.is_floating_point():
            module.register_parameter(name, nn.Parameter(value, requires_grad=False))
        else:
            module.register_buffer(name, value)
    torch.jit.script(root).save(str(path))
    return path


# The part of the STDD code's config (`cfg.dump()`, YAML) that holds its STDD settings.
STDD_CODE_CFG = {
    "DATA": {"NUM_FRAMES": 8},
    "MODEL": {
        "ARCH": "vitb16",
        "KEEP_RAW_MODEL": True,
        "RAW_MODEL_DISTILLATION": True,
        "TEMPORAL_MODELING_TYPE": "stcross_attend",
        "MASK_RATE": 0.5,
        "MASK_STRIDE": [1, 2, 2],
        "SPATIAL_REPEAT": True,
        "TEMPORAL_SHUFFLE": True,
        "CHANNEL_FOLD": 16,
        "TEMPORAL_SCALE": [1],
    },
}


def pyslowfast_checkpoint(
    state_dict: dict[str, torch.Tensor], wrapped: bool = True, seed: int = 1, cfg: dict = STDD_CODE_CFG
) -> dict:
    """
    A checkpoint as the STDD code's `save_checkpoint` writes it: the video model's state dict (tuned CLIP under
    `model.`, the frozen raw CLIP under `raw_model.`, the distillation projector `projector_v`), with
    DistributedDataParallel's `module.` prefix when `wrapped`, next to the epoch, optimizer state and the config
    as YAML text.
    """
    generator = torch.Generator().manual_seed(seed)
    raw_copy = {key: torch.randn(value.shape, generator=generator) for key, value in state_dict.items()}
    embed_dim = state_dict["text_projection"].shape[1]
    model_state = (
        {f"model.{key}": value for key, value in state_dict.items()}
        | {f"raw_model.{key}": value for key, value in raw_copy.items()}
        | {
            "projector_v.0.weight": torch.randn(embed_dim, embed_dim, generator=generator),
            "projector_v.2.weight": torch.zeros(embed_dim, embed_dim),
        }
    )
    if wrapped:
        model_state = {f"module.{key}": value for key, value in model_state.items()}
    return {
        "epoch": 3,
        "model_state": model_state,
        "optimizer_state": {
            "state": {0: {"momentum_buffer": torch.zeros(3)}},
            "param_groups": [{"lr": 3e-6, "momentum": 0.9, "params": [0]}],
        },
        "cfg": yaml.safe_dump(cfg),
    }
