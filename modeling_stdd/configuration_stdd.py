"""STDD model configuration: CLIP's configs plus the space-time cross attention (STCA) settings."""

from dataclasses import field, fields

from huggingface_hub.dataclasses import strict
from transformers import CLIPConfig, CLIPTextConfig, CLIPVisionConfig
from transformers.utils import logging


logger = logging.get_logger(__name__)

STCA_IMPLEMENTATIONS = ("fast", "reference")

# A saved CLIP configuration's model types and the STDD types they load as (STDD adds no weights).
CLIP_TO_STDD_MODEL_TYPES = {"clip": "stdd", "clip_vision_model": "stdd_vision_model", "clip_text_model": "stdd_text_model"}


def _divisor_at_least(side: int, stride: int) -> int:
    """Smallest divisor of `side` that is >= `stride`; `side` itself when the stride is larger than the side."""
    return next((d for d in range(stride, side + 1) if side % d == 0), side)


class _LoadsCLIPConfigs:
    """
    `from_pretrained` of a CLIP checkpoint reads its configuration as the STDD one: the saved CLIP model types are
    converted to their STDD counterparts before transformers compares them with this class's `model_type`.
    """

    @classmethod
    def get_config_dict(cls, pretrained_model_name_or_path, **kwargs) -> tuple[dict, dict]:
        config_dict, kwargs = super().get_config_dict(pretrained_model_name_or_path, **kwargs)
        return _clip_config_dict_as_stdd(config_dict), kwargs


def _clip_config_dict_as_stdd(config_dict: dict) -> dict:
    """`config_dict` with every CLIP model type (top level and sub-configs) replaced by its STDD model type."""
    converted = {
        key: _clip_config_dict_as_stdd(value) if isinstance(value, dict) else value for key, value in config_dict.items()
    }
    if converted.get("model_type") in CLIP_TO_STDD_MODEL_TYPES:
        converted["model_type"] = CLIP_TO_STDD_MODEL_TYPES[converted["model_type"]]
    return converted


@strict
class STDDVisionConfig(_LoadsCLIPConfigs, CLIPVisionConfig):
    r"""
    Configuration of the STDD vision tower: a [`CLIPVisionConfig`] plus the parameter-free space-time cross
    attention (STCA) that every selected ViT layer runs next to its spatial attention. The default geometry is
    ViT-B/16 at 224 px (the paper's), a 14x14 patch grid.

    num_frames (`int`, defaults to 8):
        Frames per video that the model is trained and evaluated with; the model accepts any `T >= 1`.
    mask_rate (`float`, defaults to 0.5):
        Fraction of the patches of each frame that window masking hides from the cross attention, in `[0, 1)`.
    mask_stride (`list[int]`, defaults to `[1, 2, 2]`):
        `(s0, s1, s2)`: windows of `s1 x s2` patches (`K = s1 * s2` slots). `s0` must be 1. When the patch grid is
        not divisible by `s1`/`s2`, the smallest window side that divides the grid is used instead and recorded.
    channel_fold (`int`, defaults to 32):
        `c = hidden_size // channel_fold` channels are shifted to each temporal side; `2c` channels move in all.
    temporal_scales (`list[int]`, defaults to `[1, 2]`):
        Temporal reaches of channel mixing; the cross attention runs once per scale and the results are averaged.
    spatial_repeat (`bool`, defaults to `True`):
        Training: one random mask schedule per video (`True`) or one per window (`False`).
    temporal_shuffle (`bool`, defaults to `True`):
        Training: permute the per-frame masks of each video in time.
    evaluation_temporal_shuffle (`bool`, defaults to `False`):
        Evaluation: permute the fixed per-frame masks of each video in time at random, as the authors' released test
        code does (it leaves `temporal_shuffle` on at test time). Off: evaluation is deterministic.
    stca_layers (`list[int]`, *optional*):
        Indices of the layers that run STCA; `None` means every layer and `[]` turns STCA off (plain CLIP).
    stca_implementation (`str`, defaults to `"fast"`):
        How STCA is computed: `"reference"` runs LN1, q/k/v, attention and the output projection on the mixed tokens
        of every temporal scale, as the method reads; `"fast"` derives the mixed tokens' q/k/v from the plain path's
        plus a rank-2c correction and projects the mean over scales once. Both give the same result (up to float
        rounding) and draw the same random numbers in training.
    """

    model_type = "stdd_vision_model"
    base_config_key = "vision_config"

    patch_size: int | list[int] | tuple[int, int] | None = 16
    num_frames: int = 8
    mask_rate: float | int = 0.5
    mask_stride: list[int] | tuple[int, ...] = field(default_factory=lambda: [1, 2, 2])
    channel_fold: int = 32
    temporal_scales: list[int] | tuple[int, ...] = field(default_factory=lambda: [1, 2])
    spatial_repeat: bool = True
    temporal_shuffle: bool = True
    evaluation_temporal_shuffle: bool = False
    stca_layers: list[int] | tuple[int, ...] | None = None
    stca_implementation: str = "fast"

    def __post_init__(self, **kwargs):
        self.mask_stride = list(self.mask_stride)
        self.temporal_scales = list(self.temporal_scales)
        if self.stca_layers is not None:
            self.stca_layers = list(self.stca_layers)
        super().__post_init__(**kwargs)
        self._check_stca()
        self._fit_mask_window_to_grid()

    @property
    def patch_grid(self) -> tuple[int, int]:
        """(rows, columns) of the patch grid at `image_size`."""
        size = self.image_size if isinstance(self.image_size, (list, tuple)) else (self.image_size, self.image_size)
        patch = self.patch_size if isinstance(self.patch_size, (list, tuple)) else (self.patch_size, self.patch_size)
        return size[0] // patch[0], size[1] // patch[1]

    @property
    def stca_layer_indices(self) -> list[int]:
        """The layers that run STCA, resolved from `stca_layers`."""
        return list(range(self.num_hidden_layers)) if self.stca_layers is None else sorted(set(self.stca_layers))

    def _fit_mask_window_to_grid(self):
        """Replace a window that does not tile the patch grid by the smallest one that does, and say so."""
        rows, columns = self.patch_grid
        fitted = [1, _divisor_at_least(rows, self.mask_stride[1]), _divisor_at_least(columns, self.mask_stride[2])]
        if fitted != self.mask_stride:
            logger.warning_once(
                f"mask_stride={self.mask_stride} does not tile the {rows}x{columns} patch grid; "
                f"using mask_stride={fitted} instead."
            )
            self.mask_stride = fitted

    def _check_stca(self):
        """Reject STCA settings outside their valid ranges, naming the field."""
        if not isinstance(self.num_frames, int) or self.num_frames < 1:
            raise ValueError(f"num_frames must be an integer >= 1, got {self.num_frames!r}.")
        if not 0 <= self.mask_rate < 1:
            raise ValueError(f"mask_rate must be in [0, 1), got {self.mask_rate!r}.")
        if len(self.mask_stride) != 3 or any(not isinstance(s, int) or s < 1 for s in self.mask_stride):
            raise ValueError(f"mask_stride must be three integers >= 1 (s0, s1, s2), got {self.mask_stride!r}.")
        if self.mask_stride[0] != 1:
            raise ValueError(f"mask_stride[0] (temporal stride) must be 1, got {self.mask_stride[0]}.")
        if not isinstance(self.channel_fold, int) or not 2 <= self.channel_fold <= self.hidden_size:
            raise ValueError(
                f"channel_fold must be an integer in [2, hidden_size={self.hidden_size}], got {self.channel_fold!r}."
            )
        if not self.temporal_scales or any(not isinstance(s, int) or s < 1 for s in self.temporal_scales):
            raise ValueError(f"temporal_scales must be a non-empty list of integers >= 1, got {self.temporal_scales!r}.")
        if self.stca_layers is not None and any(
            not isinstance(i, int) or not 0 <= i < self.num_hidden_layers for i in self.stca_layers
        ):
            raise ValueError(
                f"stca_layers must be None or layer indices in [0, {self.num_hidden_layers - 1}], "
                f"got {self.stca_layers!r}."
            )
        if self.stca_implementation not in STCA_IMPLEMENTATIONS:
            raise ValueError(
                f"stca_implementation must be one of {', '.join(map(repr, STCA_IMPLEMENTATIONS))}, "
                f"got {self.stca_implementation!r}."
            )


@strict
class STDDTextConfig(_LoadsCLIPConfigs, CLIPTextConfig):
    r"""Configuration of the STDD text tower: CLIP's text tower unchanged."""

    model_type = "stdd_text_model"
    base_config_key = "text_config"


@strict
class STDDConfig(_LoadsCLIPConfigs, CLIPConfig):
    r"""
    Configuration of [`STDDModel`]: a [`CLIPConfig`] whose vision tower is an [`STDDVisionConfig`].

    STDD adds no weights, so any saved CLIP configuration loads as an STDD one, and a plain [`CLIPVisionConfig`]
    given as `vision_config` becomes an [`STDDVisionConfig`] with the default STDD settings. STDD vision settings
    given as top-level keyword arguments (`STDDConfig.from_pretrained(path, temporal_scales=[1])`) go to the vision
    config.

    Example:

    ```python
    >>> from modeling_stdd import STDDConfig
    >>> config = STDDConfig(vision_config={"num_frames": 16, "temporal_scales": [1]})
    >>> config.vision_config.num_frames
    16
    ```
    """

    model_type = "stdd"
    sub_configs_defaults = {"vision_config": STDDVisionConfig, "text_config": STDDTextConfig}

    def __post_init__(self, **kwargs):
        self.vision_config = _with_vision_overrides(_as_stdd_vision_config(self.vision_config), kwargs)
        super().__post_init__(**kwargs)

    @classmethod
    def from_dict(cls, config_dict: dict, **kwargs) -> "STDDConfig":
        """Also route STDD vision settings given at load time (`from_pretrained(path, channel_fold=16)`)."""
        config_dict = {**config_dict, "vision_config": _with_vision_overrides(config_dict.get("vision_config"), kwargs)}
        return super().from_dict(config_dict, **kwargs)


def _as_stdd_vision_config(vision_config):
    """
    A plain `CLIPVisionConfig` (`STDDConfig(vision_config=clip_config.vision_config)`) as an `STDDVisionConfig` with
    the STDD settings at their defaults; anything else unchanged.
    """
    if isinstance(vision_config, CLIPVisionConfig) and not isinstance(vision_config, STDDVisionConfig):
        return STDDVisionConfig(**vision_config.to_dict())
    return vision_config


def _with_vision_overrides(vision_config, kwargs: dict):
    """`vision_config` updated with the STDD vision settings popped from `kwargs` (unchanged when there are none)."""
    overrides = {name: kwargs.pop(name) for name in STDD_VISION_FIELDS if name in kwargs}
    if not overrides:
        return vision_config
    if isinstance(vision_config, CLIPVisionConfig):
        vision_config = vision_config.to_dict()
    return {**(vision_config or {}), **overrides}


def _added_fields(config_class: type, base_class: type) -> tuple[str, ...]:
    """Names of the dataclass fields `config_class` declares beyond `base_class`'s, in declaration order."""
    inherited = {field.name for field in fields(base_class)}
    return tuple(field.name for field in fields(config_class) if field.name not in inherited)


# The STCA settings: what STDDVisionConfig adds to CLIPVisionConfig.
STDD_VISION_FIELDS = _added_fields(STDDVisionConfig, CLIPVisionConfig)

__all__ = ["STDDConfig", "STDDTextConfig", "STDDVisionConfig"]
