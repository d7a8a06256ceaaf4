"""Processor for STDD: the video processor and CLIP's tokenizer behind one call."""

from transformers import AutoProcessor, CLIPConfig, CLIPProcessor, CLIPVisionConfig, PretrainedConfig
from transformers.image_utils import SizeDict
from transformers.processing_utils import ProcessingKwargs, ProcessorMixin
from transformers.utils import PROCESSOR_NAME, cached_file
from transformers.video_processing_utils import VideoProcessorMixin

from .configuration_stdd import STDDConfig, STDDVisionConfig
from .tokenization_stdd import STDDTokenizer
from .video_processing_stdd import STDDVideoProcessor, STDDVideosKwargs


class STDDProcessingKwargs(ProcessingKwargs, total=False):
    videos_kwargs: STDDVideosKwargs


class STDDProcessor(CLIPProcessor):
    r"""
    Turns videos and label texts into STDD inputs: `pixel_values` from an [`STDDVideoProcessor`] and `input_ids` /
    `attention_mask` from CLIP's tokenizer ([`STDDTokenizer`]). Texts are padded to the longest and truncated to
    CLIP's 77 tokens unless told otherwise. Video options (`training`, `num_clips`, `num_crops`, ...) can be passed
    per call.

    Example:

    ```python
    >>> import numpy as np
    >>> from modeling_stdd import STDDProcessor
    >>> processor = STDDProcessor.from_clip_defaults(image_size=32, num_frames=4)
    >>> video = np.zeros((16, 48, 64, 3), dtype=np.uint8)
    >>> inputs = processor(videos=video, text=["a video of a person dancing."], return_tensors="pt")
    >>> inputs["pixel_values"].shape, inputs["input_ids"].shape
    (torch.Size([1, 4, 3, 32, 32]), torch.Size([1, 9]))
    ```
    """

    valid_processor_kwargs = STDDProcessingKwargs
    text_kwargs = {"padding": True, "truncation": True}

    def __init__(self, video_processor=None, tokenizer=None, **kwargs):
        # CLIPProcessor's own __init__ takes an image processor; STDD's visual input is video.
        ProcessorMixin.__init__(self, video_processor, tokenizer, **kwargs)

    def validate_inputs(self, images=None, text=None, videos=None, audio=None, **kwargs):
        """
        As in [`ProcessorMixin`], and refuses `images`: STDD has no image processor, and CLIPProcessor's `__call__`
        would drop them silently.
        """
        if images is not None:
            raise ValueError(
                f"{type(self).__name__} takes videos, not images: pass `videos=` (the frames of one image can be a "
                "1-frame video, e.g. an array of shape (1, H, W, 3))."
            )
        super().validate_inputs(images=images, text=text, videos=videos, audio=audio, **kwargs)

    def check_argument_for_proper_class(self, argument_name, argument):
        """
        As in [`ProcessorMixin`], but checks the video processor directly against `VideoProcessorMixin`: without
        torchvision, transformers' own lookup of that class goes through a placeholder mapping and fails.
        """
        if argument_name != "video_processor":
            return super().check_argument_for_proper_class(argument_name, argument)
        if not isinstance(argument, VideoProcessorMixin):
            raise TypeError(
                f"video_processor must be a video processor (VideoProcessorMixin), got {type(argument).__name__}."
            )
        return VideoProcessorMixin

    @classmethod
    def from_clip_defaults(
        cls, image_size: int = 224, num_frames: int = 8, **video_processor_kwargs
    ) -> "STDDProcessor":
        """
        The processor for a CLIP checkpoint at `image_size`, built without any download: frames resized to
        `image_size` on their short side and centre-cropped to `image_size` x `image_size`, CLIP's mean and std,
        `num_frames` frames per video, and CLIP's tokenizer from the bundled BPE merges. Extra keyword arguments
        go to [`STDDVideoProcessor`].
        """
        video_processor = STDDVideoProcessor(
            size={"shortest_edge": image_size},
            crop_size={"height": image_size, "width": image_size},
            num_frames=num_frames,
            **video_processor_kwargs,
        )
        return cls(video_processor=video_processor, tokenizer=STDDTokenizer())

    @classmethod
    def for_model_config(
        cls, config: PretrainedConfig | dict, image_size: int | None = None, num_frames: int | None = None
    ) -> "STDDProcessor":
        """
        The processor of a model that has none saved: CLIP's defaults ([`~STDDProcessor.from_clip_defaults`]) at the
        image size and `num_frames` of its config (an STDD or CLIP config, or its dict; a CLIP config has STDD's
        default `num_frames`), unless `image_size` or `num_frames` are given.
        """
        config_dict = config if isinstance(config, dict) else config.to_dict()
        vision_config = config_dict.get("vision_config") or {}
        return cls.from_clip_defaults(
            image_size or vision_config.get("image_size", CLIPVisionConfig().image_size),
            num_frames or vision_config.get("num_frames", STDDVisionConfig().num_frames),
        )

    @classmethod
    def for_checkpoint(
        cls, pretrained_model_name_or_path, image_size: int | None = None, num_frames: int | None = None, **kwargs
    ) -> "STDDProcessor":
        """
        The processor to run a model checkpoint (folder or Hub id) with: the one saved with an STDD checkpoint, or
        CLIP's defaults ([`~STDDProcessor.from_clip_defaults`]) for a checkpoint saved without one, a plain CLIP
        checkpoint or an STDD model saved alone. `num_frames` frames per video and `image_size` pixels override the
        saved processor's (or the checkpoint's) settings. Keyword arguments go to the file look-up (`revision`,
        `local_files_only`, ...).
        """
        config_dict, _ = CLIPConfig.get_config_dict(pretrained_model_name_or_path, **kwargs)
        if config_dict.get("model_type") != STDDConfig.model_type or not _has_file(
            pretrained_model_name_or_path, PROCESSOR_NAME, **kwargs
        ):
            return cls.for_model_config(config_dict, image_size, num_frames)
        processor = cls.from_pretrained(pretrained_model_name_or_path, **kwargs)
        video_processor = processor.video_processor
        if num_frames is not None:
            video_processor.num_frames = num_frames
        if image_size is not None and video_processor.crop_size.height != image_size:
            video_processor.size = SizeDict(shortest_edge=image_size)
            video_processor.crop_size = SizeDict(height=image_size, width=image_size)
        return processor


def _has_file(pretrained_model_name_or_path, filename: str, **kwargs) -> bool:
    """Whether the checkpoint folder or Hub repo holds `filename` (a missing file is an answer, not an error)."""
    return (
        cached_file(
            pretrained_model_name_or_path,
            filename,
            _raise_exceptions_for_missing_entries=False,
            _raise_exceptions_for_connection_errors=False,
            **kwargs,
        )
        is not None
    )


AutoProcessor.register(STDDConfig, STDDProcessor)

__all__ = ["STDDProcessor"]
