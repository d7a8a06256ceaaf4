"""STDD (Spatiotemporal Dynamic Duo): zero-shot action recognition on top of any CLIP checkpoint."""

from transformers import AutoConfig, AutoModel

from .askg import LabelTexts
from .configuration_stdd import STDDConfig, STDDTextConfig, STDDVisionConfig
from .modeling_stdd import STDDModel, STDDOutput, STDDVisionModel, class_scores


AutoConfig.register(STDDConfig.model_type, STDDConfig, exist_ok=True)
AutoConfig.register(STDDVisionConfig.model_type, STDDVisionConfig, exist_ok=True)
AutoConfig.register(STDDTextConfig.model_type, STDDTextConfig, exist_ok=True)
AutoModel.register(STDDConfig, STDDModel, exist_ok=True)
AutoModel.register(STDDVisionConfig, STDDVisionModel, exist_ok=True)

__all__ = [
    "LabelTexts",
    "STDDConfig",
    "STDDModel",
    "STDDOutput",
    "STDDTextConfig",
    "STDDVisionConfig",
    "STDDVisionModel",
    "class_scores",
]
