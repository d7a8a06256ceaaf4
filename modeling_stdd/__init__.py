"""STDD (Spatiotemporal Dynamic Duo): zero-shot action recognition on top of any CLIP checkpoint."""

from .askg import LabelTexts
from .configuration_stdd import STDDConfig, STDDTextConfig, STDDVisionConfig


__all__ = ["LabelTexts", "STDDConfig", "STDDTextConfig", "STDDVisionConfig"]
