"""
Convert existing CLIP checkpoints into STDD model folders.

    python -m modeling_stdd.convert_checkpoint INPUT OUTPUT_DIR [--temporal-scales 1 2] [--num-heads N] [--overwrite]

INPUT is one of

- OpenAI CLIP in OpenAI's layout (`visual.conv1.weight`, `visual.transformer.resblocks.N.attn.in_proj_weight`,
  `visual.proj`, `token_embedding.weight`, `transformer.resblocks.N...`, `ln_final`, `text_projection`,
  `logit_scale`): OpenAI's TorchScript archives (`ViT-B-16.pt`), or a plain state dict (`torch.save` or
  safetensors);
- a PySlowFast checkpoint of the STDD, FROSTER or Open-VCLIP code, `{"model_state": {"model.<OpenAI key>": ...},
  "optimizer_state": ..., ...}`, with or without DistributedDataParallel's `module.` prefix. Only the tuned CLIP
  (`model.*`) is converted; the rest (the distillation projector `projector_v`, the frozen copy of the original CLIP
  `raw_model`, the optimizer state, ...) is left out and listed.

The geometry comes from the tensors (as OpenAI's own loader infers it), with OpenAI's `width // 64` attention heads
unless told otherwise. The output folder holds an `STDDModel` (config and safetensors weights) and an `STDDProcessor`
for the inferred image size, ready for the pipeline, the protocols, training and `hub_card export`.

Loading: plain files are read with `torch.load(weights_only=True)`, which refuses pickled Python objects; a file that
holds some only loads with `allow_pickle=True` (`--allow-pickle`), which runs whatever code the pickle names, so only
for files from a trusted source. TorchScript archives are read with `torch.jit.load`, which deserializes TorchScript
code (not arbitrary Python) and runs none of it here: only their `state_dict()` is read.
"""

import argparse
import pickle
import re
import shutil
import sys
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import load_file

from .configuration_stdd import STDD_VISION_FIELDS, STDDConfig
from .file_utils import apply_default_permissions, make_staging_dir, move_into_place, remove_stale_staging_dirs
from .modeling_stdd import STDDModel
from .processing_stdd import STDDProcessor
from .tokenization_stdd import CLIP_VOCAB_SIZE


# The metadata entries of OpenAI's TorchScript archives, next to the tensors in their `state_dict()`.
OPENAI_METADATA_KEYS = ("input_resolution", "context_length", "vocab_size")
# Where the CLIP of a checkpoint lives: OpenAI's files at the top, the PySlowFast video models under `model.`.
CLIP_PREFIXES = ("", "model.")
WRAPPER_PREFIX = "module."
# What the STDD / FROSTER / Open-VCLIP video models keep next to their CLIP, by attribute name.
KNOWN_NON_CLIP_PARTS = {
    "raw_model": "the frozen copy of the original CLIP kept for distillation",
    "projector_v": "the distillation projector",
    "prompt_embed": "learned prompt tokens",
    "head": "a learned classifier",
}
# The modules of OpenAI's ResNet image towers (ViT towers have none).
RESNET_PARTS = ("layer1.", "attnpool.")
OPENAI_HEAD_WIDTH = 64
# The STDD code records its settings in the checkpoint's `cfg` (a YAML dump); its STDD layers are "stcross_attend".
STDD_TEMPORAL_MODELING_TYPE = "stcross_attend"
PYSLOWFAST_STDD_SETTINGS = {
    ("DATA", "NUM_FRAMES"): "num_frames",
    ("MODEL", "MASK_RATE"): "mask_rate",
    ("MODEL", "MASK_STRIDE"): "mask_stride",
    ("MODEL", "CHANNEL_FOLD"): "channel_fold",
    ("MODEL", "TEMPORAL_SCALE"): "temporal_scales",
    ("MODEL", "SPATIAL_REPEAT"): "spatial_repeat",
    ("MODEL", "TEMPORAL_SHUFFLE"): "temporal_shuffle",
}
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}

# OpenAI key -> STDDModel key, for tensors copied as they are.
RENAMED_PARAMETERS = {
    "visual.conv1.weight": "vision_model.embeddings.patch_embedding.weight",
    "visual.class_embedding": "vision_model.embeddings.class_embedding",
    "visual.positional_embedding": "vision_model.embeddings.position_embedding.weight",
    "visual.ln_pre.weight": "vision_model.pre_layrnorm.weight",
    "visual.ln_pre.bias": "vision_model.pre_layrnorm.bias",
    "visual.ln_post.weight": "vision_model.post_layernorm.weight",
    "visual.ln_post.bias": "vision_model.post_layernorm.bias",
    "token_embedding.weight": "text_model.embeddings.token_embedding.weight",
    "positional_embedding": "text_model.embeddings.position_embedding.weight",
    "ln_final.weight": "text_model.final_layer_norm.weight",
    "ln_final.bias": "text_model.final_layer_norm.bias",
    "logit_scale": "logit_scale",
}
# OpenAI's projections are applied as `x @ proj`; transformers' as `Linear(x) = x @ weight.T`.
TRANSPOSED_PROJECTIONS = {"visual.proj": "visual_projection.weight", "text_projection": "text_projection.weight"}
# Inside a residual block: OpenAI module -> transformers module.
RENAMED_BLOCK_MODULES = {
    "attn.out_proj": "self_attn.out_proj",
    "ln_1": "layer_norm1",
    "ln_2": "layer_norm2",
    "mlp.c_fc": "mlp.fc1",
    "mlp.c_proj": "mlp.fc2",
}
TOWERS = {"visual.transformer": "vision_model", "transformer": "text_model"}
RESIDUAL_BLOCK_KEY = re.compile(r"(visual\.transformer|transformer)\.resblocks\.(\d+)\.(.+)")


class CheckpointError(ValueError):
    """A checkpoint that cannot be converted; the message names the file and the problem."""


@dataclass(frozen=True)
class OpenAIClipGeometry:
    """The sizes of an OpenAI-layout ViT CLIP, read off its tensors."""

    vision_width: int
    vision_layers: int
    vision_intermediate_size: int
    patch_size: int
    image_size: int
    text_width: int
    text_layers: int
    text_intermediate_size: int
    context_length: int
    vocab_size: int
    projection_dim: int

    @property
    def patch_grid(self) -> int:
        return self.image_size // self.patch_size


@dataclass
class ConversionResult:
    """What `convert_checkpoint` wrote and what it left out."""

    output_dir: Path
    layout: str
    geometry: OpenAIClipGeometry
    config: STDDConfig
    ignored: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------------------------
# Reading the file
# --------------------------------------------------------------------------------------------------------------


def is_torchscript_archive(path: Path) -> bool:
    """TorchScript archives are zip files whose record holds `constants.pkl` (plain `torch.save` files do not)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.split("/", 1)[-1] == "constants.pkl" for name in archive.namelist())


def looks_like_torch_save(path: Path) -> bool:
    """
    Whether `path` starts as `torch.save` writes: a zip archive (the format since PyTorch 1.6) or a pickle of
    protocol 2 or later (the legacy format). Text and other files would otherwise reach the weights-only unpickler,
    whose message then blames "pickled objects".
    """
    if zipfile.is_zipfile(path):
        return True
    with open(path, "rb") as file:
        return file.read(1) == b"\x80"


def read_checkpoint(path: str | Path, allow_pickle: bool = False) -> tuple[dict, str]:
    """
    The top-level dict of a checkpoint file and how it was stored (`"torchscript"`, `"torch"` or `"safetensors"`).
    A TorchScript archive gives its `state_dict()`.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file.")
    if path.suffix == ".safetensors":
        try:
            return load_file(path), "safetensors"
        except SafetensorError as error:
            raise CheckpointError(f"{path}: not a readable safetensors file ({error}).") from error
    if is_torchscript_archive(path):
        try:
            with warnings.catch_warnings():
                # Deprecated, yet the only reader of the archives OpenAI released.
                warnings.filterwarnings("ignore", message=".*torch.jit.load.*", category=DeprecationWarning)
                return dict(torch.jit.load(path, map_location="cpu").state_dict()), "torchscript"
        except RuntimeError as error:
            raise CheckpointError(f"{path}: a TorchScript archive that torch.jit.load cannot read: {error}") from error
    if not looks_like_torch_save(path):
        raise CheckpointError(f"{path}: not a PyTorch checkpoint (neither a zip archive nor a pickle).")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=not allow_pickle)
    except pickle.UnpicklingError as error:
        if "Weights only load failed" not in str(error):
            raise CheckpointError(f"{path}: not a PyTorch checkpoint ({error}).") from error
        raise CheckpointError(
            f"{path}: holds pickled Python objects besides tensors, which loading with weights_only=True refuses. "
            "Loading them runs code the file names: if you trust its source, pass --allow-pickle "
            "(allow_pickle=True)."
        ) from error
    except (RuntimeError, EOFError, KeyError, ValueError, OSError) as error:
        raise CheckpointError(f"{path}: not a PyTorch checkpoint ({type(error).__name__}: {error}).") from error
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{path}: holds a {type(checkpoint).__name__}, not a state dict or checkpoint dict.")
    return checkpoint, "torch"


def describe_ignored(keys: list[str]) -> list[str]:
    """One line per top-level part of `keys` ("raw_model.* (198 tensors): the frozen copy ...")."""
    parts: dict[str, int] = {}
    for key in keys:
        part = key.split(".", 1)[0]
        parts[part] = parts.get(part, 0) + 1
    lines = []
    for part, count in parts.items():
        name = part if count == 1 and part in keys else f"{part}.*"
        line = f"{name} ({count} tensor{'s' if count > 1 else ''})"
        if part in KNOWN_NON_CLIP_PARTS:
            line += f": {KNOWN_NON_CLIP_PARTS[part]}"
        lines.append(line)
    return lines


def first_keys(mapping: dict, count: int = 12) -> str:
    keys = list(mapping)
    shown = ", ".join(map(str, keys[:count]))
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > count else "")


def without_wrapper_prefix(state_dict: dict, path: Path) -> dict:
    """The keys without DistributedDataParallel's `module.` prefix, where they have it."""
    unwrapped = {}
    for key, value in state_dict.items():
        name = str(key).removeprefix(WRAPPER_PREFIX)
        if name in unwrapped:
            raise CheckpointError(f"{path}: holds both {name} and {WRAPPER_PREFIX}{name}.")
        unwrapped[name] = value
    return unwrapped


def extract_openai_state_dict(
    checkpoint: dict, path: Path, stored_as: str
) -> tuple[dict[str, torch.Tensor], dict[str, int], str, list[str]]:
    """
    The OpenAI-layout CLIP tensors of a checkpoint dict, OpenAI's metadata entries, the layout's name and a
    description of everything left out.
    """
    ignored = []
    layout = f"openai-{stored_as}"
    state_dict = checkpoint
    if "model_state" in checkpoint:
        state_dict = checkpoint["model_state"]
        layout = "pyslowfast"
        ignored += [f"{key} (checkpoint entry)" for key in checkpoint if key != "model_state"]
        if not isinstance(state_dict, dict):
            raise CheckpointError(f"{path}: model_state holds a {type(state_dict).__name__}, not a state dict.")
    stored_keys = state_dict
    state_dict = without_wrapper_prefix(state_dict, path)
    resnet_keys = tuple(f"{prefix}visual.{part}" for prefix in CLIP_PREFIXES for part in RESNET_PARTS)
    if any(key.startswith(resnet_keys) for key in state_dict):
        raise CheckpointError(
            f"{path}: a ResNet CLIP (visual.layer1..., visual.attnpool... keys). STDD's space-time cross attention "
            "works on the tokens of a ViT image tower; convert a ViT CLIP (ViT-B/32, ViT-B/16, ViT-L/14)."
        )
    prefix = next((p for p in CLIP_PREFIXES if f"{p}visual.proj" in state_dict), None)
    if prefix is None:
        raise CheckpointError(
            f"{path}: unknown layout, neither OpenAI CLIP's (visual.proj, visual.conv1.weight, ...) nor a PySlowFast "
            "checkpoint of a video CLIP (model_state with model.visual.proj, ...). "
            f"First keys: {first_keys(stored_keys)}"
        )
    clip = {key[len(prefix) :]: value for key, value in state_dict.items() if key.startswith(prefix)}
    ignored += describe_ignored([key for key in state_dict if not key.startswith(prefix)])
    metadata = {key: clip.pop(key) for key in OPENAI_METADATA_KEYS if key in clip}
    not_tensors = [key for key, value in clip.items() if not isinstance(value, torch.Tensor)]
    if not_tensors:
        raise CheckpointError(f"{path}: entries that are not tensors: {', '.join(not_tensors[:12])}.")
    return clip, {key: int(value) for key, value in metadata.items()}, layout, ignored


def stdd_settings_of_pyslowfast_cfg(checkpoint: dict) -> tuple[dict, str | None]:
    """
    The STDD settings a PySlowFast checkpoint was trained with, from its `cfg`, and a note on where the settings
    come from. A checkpoint of another temporal model (FROSTER's, Open-VCLIP's) or without a readable `cfg` gives
    none: STDD's defaults then apply.
    """
    cfg = checkpoint.get("cfg")
    if isinstance(cfg, str):
        try:
            cfg = yaml.safe_load(cfg)
        except yaml.YAMLError:
            cfg = None
    if not isinstance(cfg, dict) or not isinstance(cfg.get("MODEL"), dict):
        return {}, None
    temporal_modeling = cfg["MODEL"].get("TEMPORAL_MODELING_TYPE")
    if temporal_modeling != STDD_TEMPORAL_MODELING_TYPE:
        return {}, (
            f"trained with MODEL.TEMPORAL_MODELING_TYPE {temporal_modeling!r}, not STDD's "
            f"{STDD_TEMPORAL_MODELING_TYPE!r}: its CLIP weights run with STDD's space-time cross attention, "
            "at the settings given here or STDD's defaults"
        )
    settings = {
        name: cfg[section][key]
        for (section, key), name in PYSLOWFAST_STDD_SETTINGS.items()
        if isinstance(cfg.get(section), dict) and key in cfg[section]
    }
    if isinstance(settings.get("temporal_scales"), int):
        settings["temporal_scales"] = [settings["temporal_scales"]]
    listed = ", ".join(f"{name}={value}" for name, value in settings.items())
    return settings, f"STDD settings from the checkpoint's cfg ({listed}); those given here take precedence"


# --------------------------------------------------------------------------------------------------------------
# Geometry and shapes
# --------------------------------------------------------------------------------------------------------------


def count_layers(state_dict: dict, tower: str) -> int:
    indices = {int(m[2]) for key in state_dict if (m := RESIDUAL_BLOCK_KEY.fullmatch(key)) and m[1] == tower}
    return max(indices) + 1 if indices else 0


def infer_geometry(state_dict: dict[str, torch.Tensor], path: Path) -> OpenAIClipGeometry:
    """Read the sizes off the tensors, as OpenAI's `build_model` does."""

    def shape(key: str) -> torch.Size:
        if key not in state_dict:
            raise CheckpointError(f"{path}: OpenAI CLIP key {key} is missing.")
        return state_dict[key].shape

    def dimension(key: str, index: int, ndim: int) -> int:
        found = shape(key)
        if len(found) != ndim:
            raise CheckpointError(f"{path}: {key} has shape {tuple(found)}, expected {ndim} dimensions.")
        return found[index]

    vision_width, patch_size = dimension("visual.conv1.weight", 0, 4), dimension("visual.conv1.weight", -1, 4)
    positions = dimension("visual.positional_embedding", 0, 2)
    grid = round((positions - 1) ** 0.5)
    if grid * grid + 1 != positions:
        raise CheckpointError(
            f"{path}: visual.positional_embedding has {positions} rows, not a square patch grid plus the class token."
        )
    geometry = OpenAIClipGeometry(
        vision_width=vision_width,
        vision_layers=count_layers(state_dict, "visual.transformer"),
        vision_intermediate_size=dimension("visual.transformer.resblocks.0.mlp.c_fc.weight", 0, 2),
        patch_size=patch_size,
        image_size=patch_size * grid,
        text_width=dimension("ln_final.weight", 0, 1),
        text_layers=count_layers(state_dict, "transformer"),
        text_intermediate_size=dimension("transformer.resblocks.0.mlp.c_fc.weight", 0, 2),
        context_length=dimension("positional_embedding", 0, 2),
        vocab_size=dimension("token_embedding.weight", 0, 2),
        projection_dim=dimension("visual.proj", 1, 2),
    )
    check_tensor_shapes(state_dict, geometry, path)
    return geometry


def openai_clip_shapes(geometry: OpenAIClipGeometry) -> dict[str, tuple[int, ...]]:
    """Every tensor of an OpenAI-layout ViT CLIP of this geometry, with its shape."""
    g = geometry
    shapes = {
        "visual.conv1.weight": (g.vision_width, 3, g.patch_size, g.patch_size),
        "visual.class_embedding": (g.vision_width,),
        "visual.positional_embedding": (g.patch_grid**2 + 1, g.vision_width),
        "visual.ln_pre.weight": (g.vision_width,),
        "visual.ln_pre.bias": (g.vision_width,),
        "visual.ln_post.weight": (g.vision_width,),
        "visual.ln_post.bias": (g.vision_width,),
        "visual.proj": (g.vision_width, g.projection_dim),
        "token_embedding.weight": (g.vocab_size, g.text_width),
        "positional_embedding": (g.context_length, g.text_width),
        "ln_final.weight": (g.text_width,),
        "ln_final.bias": (g.text_width,),
        "text_projection": (g.text_width, g.projection_dim),
        "logit_scale": (),
    }
    towers = (
        ("visual.transformer", g.vision_width, g.vision_layers, g.vision_intermediate_size),
        ("transformer", g.text_width, g.text_layers, g.text_intermediate_size),
    )
    for tower, width, layers, intermediate in towers:
        for index in range(layers):
            block = f"{tower}.resblocks.{index}"
            shapes |= {
                f"{block}.attn.in_proj_weight": (3 * width, width),
                f"{block}.attn.in_proj_bias": (3 * width,),
                f"{block}.attn.out_proj.weight": (width, width),
                f"{block}.attn.out_proj.bias": (width,),
                f"{block}.ln_1.weight": (width,),
                f"{block}.ln_1.bias": (width,),
                f"{block}.mlp.c_fc.weight": (intermediate, width),
                f"{block}.mlp.c_fc.bias": (intermediate,),
                f"{block}.mlp.c_proj.weight": (width, intermediate),
                f"{block}.mlp.c_proj.bias": (width,),
                f"{block}.ln_2.weight": (width,),
                f"{block}.ln_2.bias": (width,),
            }
    return shapes


def check_tensor_shapes(state_dict: dict[str, torch.Tensor], geometry: OpenAIClipGeometry, path: Path):
    """Every tensor present, none extra, each of the shape the geometry implies."""
    expected = openai_clip_shapes(geometry)
    missing = [key for key in expected if key not in state_dict]
    if missing:
        raise CheckpointError(f"{path}: OpenAI CLIP tensors missing: {', '.join(missing[:12])}.")
    extra = [key for key in state_dict if key not in expected]
    if extra:
        raise CheckpointError(
            f"{path}: tensors that OpenAI's ViT CLIP does not have: {', '.join(extra[:12])}"
            f"{f', ... ({len(extra)} in all)' if len(extra) > 12 else ''}. They belong to modules STDD does not have "
            "(another model's temporal layers, adapters or experts) and cannot be dropped without changing the model."
        )
    wrong = [
        f"{key} {tuple(state_dict[key].shape)} (expected {shape})"
        for key, shape in expected.items()
        if tuple(state_dict[key].shape) != shape
    ]
    if wrong:
        raise CheckpointError(
            f"{path}: tensor shapes that disagree with the geometry {geometry}: {'; '.join(wrong[:8])}."
        )


def check_metadata(metadata: dict[str, int], geometry: OpenAIClipGeometry, path: Path):
    """OpenAI's archives state image size, context length and vocabulary; they must agree with the tensors."""
    inferred = {
        "input_resolution": geometry.image_size,
        "context_length": geometry.context_length,
        "vocab_size": geometry.vocab_size,
    }
    for key, value in metadata.items():
        if value != inferred[key]:
            raise CheckpointError(f"{path}: {key} is {value}, but the tensors give {inferred[key]}.")


def attention_heads(width: int, num_heads: int | None, tower: str, path: Path) -> int:
    """OpenAI's rule, one head per 64 channels, unless `num_heads` says otherwise."""
    if num_heads is None:
        if width % OPENAI_HEAD_WIDTH:
            raise CheckpointError(
                f"{path}: the {tower} width {width} is not a multiple of {OPENAI_HEAD_WIDTH}, so OpenAI's rule "
                "(width / 64 heads) does not apply; give the number of heads (--num-heads)."
            )
        return width // OPENAI_HEAD_WIDTH
    if num_heads < 1 or width % num_heads:
        raise CheckpointError(f"{path}: {num_heads} attention heads do not divide the {tower} width {width}.")
    return num_heads


# --------------------------------------------------------------------------------------------------------------
# Conversion
# --------------------------------------------------------------------------------------------------------------


def stdd_config(
    geometry: OpenAIClipGeometry,
    vision_num_heads: int,
    text_num_heads: int,
    vision_settings: dict | None = None,
) -> STDDConfig:
    """The STDD configuration of an OpenAI CLIP: its geometry, QuickGELU, LayerNorm eps 1e-5, STDD's settings."""
    g = geometry
    shared = dict(hidden_act="quick_gelu", layer_norm_eps=1e-5, projection_dim=g.projection_dim)
    text_config = dict(
        hidden_size=g.text_width,
        intermediate_size=g.text_intermediate_size,
        num_hidden_layers=g.text_layers,
        num_attention_heads=text_num_heads,
        max_position_embeddings=g.context_length,
        vocab_size=g.vocab_size,
        **shared,
    )
    vision_config = dict(
        hidden_size=g.vision_width,
        intermediate_size=g.vision_intermediate_size,
        num_hidden_layers=g.vision_layers,
        num_attention_heads=vision_num_heads,
        image_size=g.image_size,
        patch_size=g.patch_size,
        **shared,
        **(vision_settings or {}),
    )
    return STDDConfig(text_config=text_config, vision_config=vision_config, projection_dim=g.projection_dim)


def openai_to_stdd_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """
    Rename a checked OpenAI-layout state dict into `STDDModel`'s: the fused `in_proj` of each attention split into
    q, k and v, the projections transposed.
    """
    converted = {}
    for key, tensor in state_dict.items():
        if key in RENAMED_PARAMETERS:
            converted[RENAMED_PARAMETERS[key]] = tensor
        elif key in TRANSPOSED_PROJECTIONS:
            converted[TRANSPOSED_PROJECTIONS[key]] = tensor.t().contiguous()
        else:
            tower, index, name = RESIDUAL_BLOCK_KEY.fullmatch(key).groups()
            layer = f"{TOWERS[tower]}.encoder.layers.{index}"
            if name.startswith("attn.in_proj_"):
                parameter = name.removeprefix("attn.in_proj_")
                for projection, part in zip("qkv", tensor.chunk(3)):
                    converted[f"{layer}.self_attn.{projection}_proj.{parameter}"] = part.contiguous()
            else:
                module, parameter = name.rsplit(".", 1)
                converted[f"{layer}.{RENAMED_BLOCK_MODULES[module]}.{parameter}"] = tensor
    return converted


def check_output_dir(output_dir: Path, input_path: Path, overwrite: bool):
    if input_path.resolve().is_relative_to(output_dir.resolve()):
        raise CheckpointError(f"{output_dir}: holds the input {input_path}; choose another output folder.")
    if output_dir.exists() and not output_dir.is_dir():
        raise CheckpointError(f"{output_dir}: exists and is not a folder.")
    if output_dir.is_dir() and any(output_dir.iterdir()) and not overwrite:
        raise CheckpointError(
            f"{output_dir}: exists and is not empty; pass --overwrite (overwrite=True) to replace it."
        )


def convert_checkpoint(
    input_path: str | Path,
    output_dir: str | Path,
    *,
    vision_num_heads: int | None = None,
    text_num_heads: int | None = None,
    vision_settings: dict | None = None,
    dtype: str = "float32",
    overwrite: bool = False,
    allow_pickle: bool = False,
) -> ConversionResult:
    """
    Convert an OpenAI CLIP file or a PySlowFast video-CLIP checkpoint into an STDD model folder.

    Args:
        input_path: the checkpoint (see the module docstring for the layouts read).
        output_dir: the folder to write: `config.json`, `model.safetensors` and the processor's files. It is
            assembled next to its place and renamed into it once complete.
        vision_num_heads, text_num_heads: attention heads per tower; OpenAI's `width // 64` when not given.
        vision_settings: STDD settings of the vision tower (`num_frames`, `temporal_scales`, ... of
            [`STDDVisionConfig`]). A checkpoint of the STDD code brings the settings it was trained with (its
            `cfg`); these override them, and STDD's defaults fill the rest.
        dtype: dtype of the written weights (`"float32"`, `"float16"` or `"bfloat16"`).
        overwrite: replace a non-empty `output_dir`.
        allow_pickle: load a plain file with `weights_only=False`, which runs the code its pickle names.

    Returns:
        A [`ConversionResult`] with the layout found, the geometry, the config and what was left out.
    """
    input_path, output_dir = Path(input_path), Path(output_dir)
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}.")
    check_output_dir(output_dir, input_path, overwrite)
    checkpoint, stored_as = read_checkpoint(input_path, allow_pickle=allow_pickle)
    state_dict, metadata, layout, ignored = extract_openai_state_dict(checkpoint, input_path, stored_as)
    trained_settings, settings_note = stdd_settings_of_pyslowfast_cfg(checkpoint)
    geometry = infer_geometry(state_dict, input_path)
    check_metadata(metadata, geometry, input_path)
    if geometry.vocab_size != CLIP_VOCAB_SIZE:
        raise CheckpointError(
            f"{input_path}: a vocabulary of {geometry.vocab_size} tokens, not CLIP's {CLIP_VOCAB_SIZE}; the bundled "
            "CLIP tokenizer would not match it."
        )
    config = stdd_config(
        geometry,
        vision_num_heads=attention_heads(geometry.vision_width, vision_num_heads, "vision", input_path),
        text_num_heads=attention_heads(geometry.text_width, text_num_heads, "text", input_path),
        vision_settings={**trained_settings, **(vision_settings or {})},
    )
    model = STDDModel(config)
    model.load_state_dict(openai_to_stdd_state_dict(state_dict), strict=True)
    model.to(DTYPES[dtype]).eval()
    processor = STDDProcessor.for_model_config(config)
    processor.tokenizer.model_max_length = geometry.context_length

    output_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging_dirs(output_dir)
    staging_dir = make_staging_dir(output_dir)
    try:
        model.save_pretrained(staging_dir)
        processor.save_pretrained(staging_dir)
        apply_default_permissions(staging_dir)
        move_into_place(staging_dir, output_dir)
    finally:
        shutil.rmtree(staging_dir, ignore_errors=True)
    notes = [settings_note] if settings_note else []
    return ConversionResult(
        output_dir=output_dir, layout=layout, geometry=geometry, config=config, ignored=ignored, notes=notes
    )


# --------------------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m modeling_stdd.convert_checkpoint",
        description="Convert an OpenAI CLIP file or a PySlowFast (STDD / FROSTER / Open-VCLIP) checkpoint into an "
        "STDD model folder.",
    )
    parser.add_argument("input", type=Path, help="OpenAI CLIP .pt (TorchScript or state dict) or PySlowFast .pyth")
    parser.add_argument("output_dir", type=Path, help="the STDD model folder to write")
    parser.add_argument("--num-heads", type=int, help="attention heads of both towers (default: width / 64)")
    parser.add_argument("--vision-num-heads", type=int, help="attention heads of the vision tower")
    parser.add_argument("--text-num-heads", type=int, help="attention heads of the text tower")
    parser.add_argument("--dtype", choices=list(DTYPES), default="float32", help="dtype of the written weights")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty OUTPUT_DIR")
    parser.add_argument(
        "--allow-pickle",
        action="store_true",
        help="load a file holding pickled Python objects (runs code from the file: trusted sources only)",
    )
    stdd = parser.add_argument_group("STDD settings (default: the paper's)")
    stdd.add_argument("--num-frames", type=int)
    stdd.add_argument("--mask-rate", type=float)
    stdd.add_argument("--mask-stride", type=int, nargs=3, metavar=("S0", "S1", "S2"))
    stdd.add_argument("--channel-fold", type=int)
    stdd.add_argument("--temporal-scales", type=int, nargs="+")
    stdd.add_argument("--spatial-repeat", action=argparse.BooleanOptionalAction)
    stdd.add_argument("--temporal-shuffle", action=argparse.BooleanOptionalAction)
    stdd.add_argument("--evaluation-temporal-shuffle", action=argparse.BooleanOptionalAction,
                      help="random test-time masks, as the authors' test code (default: deterministic)")
    stdd.add_argument("--stca-layers", type=int, nargs="*", help="layers that run STCA (none given: plain CLIP)")
    stdd.add_argument("--stca-implementation", choices=["fast", "reference"])
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    vision_settings = {name: getattr(args, name) for name in STDD_VISION_FIELDS if getattr(args, name) is not None}
    try:
        result = convert_checkpoint(
            args.input,
            args.output_dir,
            vision_num_heads=args.vision_num_heads or args.num_heads,
            text_num_heads=args.text_num_heads or args.num_heads,
            vision_settings=vision_settings,
            dtype=args.dtype,
            overwrite=args.overwrite,
            allow_pickle=args.allow_pickle,
        )
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    g, vision = result.geometry, result.config.vision_config
    print(f"{args.input}: {result.layout} layout")
    print(
        f"  vision: ViT width {g.vision_width}, {g.vision_layers} layers, {vision.num_attention_heads} heads, "
        f"patch {g.patch_size}, {g.image_size} px"
    )
    print(
        f"  text: width {g.text_width}, {g.text_layers} layers, {result.config.text_config.num_attention_heads} heads, "
        f"context {g.context_length}, vocabulary {g.vocab_size}; projection {g.projection_dim}"
    )
    print(f"  STDD: {', '.join(f'{name}={getattr(vision, name)}' for name in STDD_VISION_FIELDS)}")
    for line in result.notes:
        print(f"  note: {line}")
    for line in result.ignored:
        print(f"  left out: {line}")
    print(f"wrote {result.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
