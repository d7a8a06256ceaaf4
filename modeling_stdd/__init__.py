"""
STDD (Spatiotemporal Dynamic Duo): zero-shot action recognition on top of any CLIP checkpoint.

`import modeling_stdd` registers STDD with transformers' Auto classes and the "zero-shot-video-classification"
pipeline task. One process defers this: `python -m modeling_stdd.askg`, whose file tools (`validate`, `verbalize`,
`prompts`) need no torch, yet Python imports this package before them. There the model classes and the registration
come on first use of any of the names below (PEP 562), so the tools start in a fraction of a second.
"""

import functools
import importlib
import sys

from .askg import LabelTexts


# The torch-free command lines: a process started as `python -m NAME` with one of these defers the model stack.
_TORCH_FREE_TOOLS = ("modeling_stdd.askg", "modeling_stdd.askg.__main__")
# The package's names that need torch or transformers, each with the module that defines it.
_MODEL_STACK_MODULES = {
    "CheckpointFolderError": "checkpoint_files",
    "STDDConfig": "configuration_stdd",
    "STDDTextConfig": "configuration_stdd",
    "STDDVisionConfig": "configuration_stdd",
    "STDDModel": "modeling_stdd",
    "STDDOutput": "modeling_stdd",
    "STDDVisionModel": "modeling_stdd",
    "class_scores": "modeling_stdd",
    "ZeroShotVideoClassificationPipeline": "pipeline_stdd",
    "STDDProcessor": "processing_stdd",
    "STDDTokenizer": "tokenization_stdd",
    "STDDVideoProcessor": "video_processing_stdd",
    "load_video_frames": "video_processing_stdd",
}


def _started_as_torch_free_tool() -> bool:
    """
    Whether this package is being imported while Python locates the module of `python -m NAME` (then `sys.argv[0]`
    is `"-m"` and the interpreter's own command line holds `NAME`, or `-mNAME`, just before `sys.argv[1:]`) and
    `NAME` is one of `_TORCH_FREE_TOOLS`.
    """
    if getattr(sys, "argv", [])[:1] != ["-m"]:
        return False
    module_argument = sys.orig_argv[-len(sys.argv)]
    return module_argument.removeprefix("-m") in _TORCH_FREE_TOOLS


@functools.cache
def _register_with_transformers() -> None:
    """
    Import the model stack (the processor, tokenizer and video processor modules register their classes with
    `AutoProcessor`, `AutoTokenizer` and `AutoVideoProcessor` on import), then register the configs and models with
    `AutoConfig` / `AutoModel` and the pipeline task. Runs once.
    """
    for module_name in sorted(set(_MODEL_STACK_MODULES.values())):
        importlib.import_module(f".{module_name}", __name__)
    from transformers import AutoConfig, AutoModel
    from transformers.pipelines import PIPELINE_REGISTRY

    from .configuration_stdd import STDDConfig, STDDTextConfig, STDDVisionConfig
    from .modeling_stdd import STDDModel, STDDVisionModel
    from .pipeline_stdd import ZeroShotVideoClassificationPipeline

    AutoConfig.register(STDDConfig.model_type, STDDConfig, exist_ok=True)
    AutoConfig.register(STDDVisionConfig.model_type, STDDVisionConfig, exist_ok=True)
    AutoConfig.register(STDDTextConfig.model_type, STDDTextConfig, exist_ok=True)
    AutoModel.register(STDDConfig, STDDModel, exist_ok=True)
    AutoModel.register(STDDVisionConfig, STDDVisionModel, exist_ok=True)
    PIPELINE_REGISTRY.register_pipeline(
        "zero-shot-video-classification",
        pipeline_class=ZeroShotVideoClassificationPipeline,
        pt_model=STDDModel,
        default={"model": ("openai/clip-vit-base-patch16", "main")},
        type="multimodal",
    )


def __getattr__(name: str):
    """The model stack's names, imported on first use (after `_register_with_transformers`)."""
    if name not in _MODEL_STACK_MODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    _register_with_transformers()
    value = getattr(importlib.import_module(f".{_MODEL_STACK_MODULES[name]}", __name__), name)
    globals()[name] = value
    return value


if not _started_as_torch_free_tool():
    _register_with_transformers()

__all__ = [
    "CheckpointFolderError",
    "LabelTexts",
    "STDDConfig",
    "STDDModel",
    "STDDOutput",
    "STDDProcessor",
    "STDDTextConfig",
    "STDDTokenizer",
    "STDDVideoProcessor",
    "STDDVisionConfig",
    "STDDVisionModel",
    "ZeroShotVideoClassificationPipeline",
    "class_scores",
    "load_video_frames",
]
