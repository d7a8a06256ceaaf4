"""STDD (Spatiotemporal Dynamic Duo): zero-shot action recognition on top of any CLIP checkpoint."""

from transformers import AutoConfig, AutoModel
from transformers.pipelines import PIPELINE_REGISTRY

from .askg import LabelTexts
from .checkpoint_files import CheckpointFolderError
from .configuration_stdd import STDDConfig, STDDTextConfig, STDDVisionConfig
from .modeling_stdd import STDDModel, STDDOutput, STDDVisionModel, class_scores
from .pipeline_stdd import ZeroShotVideoClassificationPipeline
from .processing_stdd import STDDProcessor
from .tokenization_stdd import STDDTokenizer
from .video_processing_stdd import STDDVideoProcessor, load_video_frames


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
