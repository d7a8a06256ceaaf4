"""STDD (Spatiotemporal Dynamic Duo): zero-shot action recognition on top of any CLIP checkpoint."""

from .configuration_stdd import STDDConfig, STDDTextConfig, STDDVisionConfig
from .processing_stdd import STDDProcessor
from .tokenization_stdd import STDDTokenizer
from .video_processing_stdd import STDDVideoProcessor, load_video_frames


__all__ = [
    "STDDConfig",
    "STDDProcessor",
    "STDDTextConfig",
    "STDDTokenizer",
    "STDDVideoProcessor",
    "STDDVisionConfig",
    "load_video_frames",
]
