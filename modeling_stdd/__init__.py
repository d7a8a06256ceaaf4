"""STDD (Spatiotemporal Dynamic Duo): zero-shot action recognition on top of any CLIP checkpoint."""

from .configuration_stdd import STDDConfig, STDDTextConfig, STDDVisionConfig
from .tokenization_stdd import STDDTokenizer


__all__ = ["STDDConfig", "STDDTextConfig", "STDDTokenizer", "STDDVisionConfig"]
