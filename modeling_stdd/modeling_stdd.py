"""PyTorch STDD model: CLIP whose vision tower adds parameter-free space-time cross attention (STCA).

Each STCA layer (STDD_METHOD.md, section 1) runs next to CLIP's spatial attention:

    full    = x + Attn(LN1(x))                                   plain path, all tokens of each frame
    kept    = window_mask(x)                                     (B, T, n, D) patches kept per frame
    cross_s = [CLS, mix(kept, s)] + Attn(LN1([CLS, mix(kept, s)]))   for each temporal scale s
    padded  = full with CLS and kept positions replaced by mean_s cross_s
    y       = padded + MLP(LN2(full))

No weights are added, so every CLIP checkpoint loads as an STDD one.
"""

import os
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint
from transformers import CLIPModel, CLIPVisionModel
from transformers.conversion_mapping import register_checkpoint_conversion_mapping
from transformers.core_model_loading import PrefixChange
from transformers.modeling_outputs import BaseModelOutput, BaseModelOutputWithPooling
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.models.clip.modeling_clip import (
    CLIPAttention,
    CLIPEncoder,
    CLIPEncoderLayer,
    eager_attention_forward,
)
from transformers.processing_utils import Unpack
from transformers.utils import ModelOutput, TransformersKwargs
from transformers.utils.generic import can_return_tuple, merge_with_config_defaults
from transformers.utils.output_capturing import capture_outputs

from .checkpoint_files import check_model_folder
from .configuration_stdd import STDDConfig, STDDVisionConfig


@dataclass
class STDDOutput(ModelOutput):
    r"""
    loss (`torch.Tensor` of shape `()`, *optional*, returned when `labels` is given):
        Cross-entropy of `logits_per_video` against `labels`.
    logits_per_video (`torch.Tensor` of shape `(batch_size, num_classes)`):
        Class scores of each video (section 2 of the method: frame-level x prompt-level when prompts are grouped
        per class, the mean over frames of the per-frame logits when each class has one prompt).
    video_embeds (`torch.Tensor` of shape `(batch_size, num_frames, projection_dim)`):
        L2-normalized frame embeddings.
    text_embeds (`torch.Tensor` of shape `(num_prompts, projection_dim)`):
        L2-normalized prompt embeddings.
    text_model_output (`BaseModelOutputWithPooling`, *optional*):
        Output of the text tower, when `input_ids` were given.
    vision_model_output (`BaseModelOutputWithPooling`):
        Output of [`STDDVisionModel`].
    """

    loss: torch.Tensor | None = None
    logits_per_video: torch.Tensor | None = None
    video_embeds: torch.Tensor | None = None
    text_embeds: torch.Tensor | None = None
    text_model_output: BaseModelOutputWithPooling | None = None
    vision_model_output: BaseModelOutputWithPooling | None = None

    def to_tuple(self) -> tuple:
        return tuple(v.to_tuple() if isinstance(v, ModelOutput) else v for v in self.values())


# --------------------------------------------------------------------------------------------------------------
# Window masking (method step 2)
# --------------------------------------------------------------------------------------------------------------


def window_slot_patch_index(grid: tuple[int, int], window: tuple[int, int]) -> torch.LongTensor:
    """
    Patch index (row-major over the grid) of every slot of every window.

    Returns `(num_windows, K)` with windows in row-major order and, inside a window, slots in row-major order;
    `K = window[0] * window[1]`.
    """
    rows, columns = grid
    window_rows, window_columns = window
    patch = torch.arange(rows * columns).view(
        rows // window_rows, window_rows, columns // window_columns, window_columns
    )
    return patch.permute(0, 2, 1, 3).reshape(-1, window_rows * window_columns)


def masked_slots_per_window(mask_rate: float, num_frames: int, num_patches: int, num_windows: int) -> int:
    """m: masked slots in each window, `int(mask_rate * T * N) // (T * num_windows)`."""
    return int(mask_rate * num_frames * num_patches) // (num_frames * num_windows)


def kept_slots(rotation: torch.LongTensor, slots_per_window: int, masked_per_window: int) -> torch.LongTensor:
    """
    Slots a window keeps when the base pattern `[1] * m + [0] * (K - m)` (1 = masked) is rotated right by
    `rotation`: slot p is masked iff `(p - rotation) % K < m`, so the kept slots are `(rotation + m + j) % K`.

    rotation: `(...)` -> `(..., K - m)` kept slot indices, ascending (slot by slot inside the window).
    """
    offsets = torch.arange(masked_per_window, slots_per_window, device=rotation.device)
    return ((rotation.unsqueeze(-1) + offsets) % slots_per_window).sort(dim=-1).values


def evaluation_rotations(num_frames: int, slots_per_window: int, device=None) -> torch.LongTensor:
    """Evaluation schedule: frame t rotates the pattern by `t % K`, the same for every window. Returns `(T,)`."""
    return torch.arange(num_frames, device=device) % slots_per_window


def training_rotations(
    batch_size: int,
    num_frames: int,
    num_windows: int,
    slots_per_window: int,
    spatial_repeat: bool,
    temporal_shuffle: bool,
    device=None,
) -> torch.LongTensor:
    """
    Training schedule, drawn afresh at every call: schedule i gives frame t the rotation `(t + i) % K`; each video
    draws one i (`spatial_repeat`) or one per window, then optionally permutes its frames' patterns in time.

    Returns `(B, T, num_windows)`.
    """
    draws_per_video = 1 if spatial_repeat else num_windows
    schedule = torch.randint(slots_per_window, (batch_size, 1, draws_per_video), device=device)
    frame_position = torch.arange(num_frames, device=device).view(1, num_frames, 1).expand(batch_size, -1, 1)
    if temporal_shuffle:
        frame_position = torch.rand(batch_size, num_frames, device=device).argsort(dim=1).unsqueeze(-1)
    rotations = (frame_position + schedule) % slots_per_window
    return rotations.expand(batch_size, num_frames, num_windows)


def kept_patch_index(
    rotations: torch.LongTensor, slot_patch_index: torch.LongTensor, masked_per_window: int
) -> torch.LongTensor:
    """
    Patch indices that each frame keeps, window by window, slot by slot.

    rotations: `(B, T, num_windows)`; slot_patch_index: `(num_windows, K)` on the device of `rotations` ->
    `(B, T, n)`, n = num_windows * (K - m).
    """
    num_windows, slots_per_window = slot_patch_index.shape
    slots = kept_slots(rotations, slots_per_window, masked_per_window)  # (B, T, W, K - m)
    window = torch.arange(num_windows, device=slots.device).view(num_windows, 1)
    return slot_patch_index[window, slots].flatten(2)


# --------------------------------------------------------------------------------------------------------------
# Channel mixing (method step 3) and padding (method step 5)
# --------------------------------------------------------------------------------------------------------------


def mix_channels(tokens: torch.Tensor, scale: int, channels_per_side: int) -> torch.Tensor:
    """
    Temporal channel mixing of the kept tokens `(B, T, n, D)` at one temporal scale.

    With c = `channels_per_side`, channels `[2c:]` stay and channels `[0:2c]` start at zero. For i = 0 .. scale - 1
    and d = c >> i, channels `[0:d]` of frame t take frame `t - (i + 1)` and channels `[2c - d:2c]` of frame t take
    frame `t + (i + 1)`, written only for the frames that have such a source frame: a frame without one keeps what
    earlier steps wrote (zero where no step wrote). Example, scale 2: channels `[0:c/2]` of frame 1 hold frame 0's.
    """
    num_frames = tokens.shape[1]
    mixed = tokens.clone()
    mixed[..., : 2 * channels_per_side] = 0
    for step in range(scale):
        width, offset = channels_per_side >> step, step + 1
        if width == 0 or offset >= num_frames:
            break
        mixed[:, offset:, ..., :width] = tokens[:, :-offset, ..., :width]
        high = slice(2 * channels_per_side - width, 2 * channels_per_side)
        mixed[:, :-offset, ..., high] = tokens[:, offset:, ..., high]
    return mixed


def sequence_token_index(kept_index: torch.LongTensor) -> torch.LongTensor:
    """Token positions (0 = CLS, 1 + p = patch p) of the sequence `[CLS, kept]`: (BT, n) -> (BT, 1 + n)."""
    return torch.cat([torch.zeros_like(kept_index[:, :1]), kept_index + 1], dim=1)


def pad_cross_tokens(full: torch.Tensor, cross: torch.Tensor, kept_index: torch.LongTensor) -> torch.Tensor:
    """
    Padding: start from the plain path `full` (BT, L, D) and overwrite CLS and every kept patch with `cross`
    (BT, 1 + n, D); `kept_index` (BT, n) holds patch indices (0 .. N - 1). Masked patches keep `full`.
    """
    token_index = sequence_token_index(kept_index).unsqueeze(-1).expand(-1, -1, full.shape[-1])
    return full.scatter(1, token_index, cross)


# --------------------------------------------------------------------------------------------------------------
# Fast STCA: the cross-attention q/k/v derived from the plain path's (STDD_METHOD.md, "Cost")
#
# A mixed token x' differs from its kept token x only in its first 2c channels, by delta. With mu, sigma LayerNorm's
# statistics of x (sigma including eps), z = (x - mu) / sigma, and mu', sigma' those of x', every unchanged channel has
# z'_i = ratio * z_i + offset (ratio = sigma / sigma', offset = (mu - mu') / sigma'), and the first 2c channels have
# z' = ratio * z + offset + delta / sigma'. A projection P(y) = W y + b after LayerNorm (gamma, beta) therefore gives
#     P(LN(x')) = ratio * P(LN(x)) + (1 - ratio) * (W beta + b) + offset * W gamma
#                 + W[:, :2c] (gamma[:2c] * delta / sigma')
# so the q/k/v of every mixed token follow from the plain path's at rank 2c + 2 cost.
# --------------------------------------------------------------------------------------------------------------


def multi_head_attention(
    attention: CLIPAttention,
    queries: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    attention_mask: torch.Tensor | None,
    **kwargs: Unpack[TransformersKwargs],
) -> torch.Tensor:
    """
    `attention`'s multi-head attention on already projected queries, keys and values `(B', L', D)`, before its output
    projection, with the attention implementation (eager, sdpa, ...) of its config. Returns `(B', L', D)`.
    """
    input_shape = queries.shape[:-1]
    hidden_shape = (*input_shape, -1, attention.head_dim)
    attention_interface = ALL_ATTENTION_FUNCTIONS.get_interface(
        attention.config._attn_implementation, eager_attention_forward
    )
    output, _ = attention_interface(
        attention,
        queries.view(hidden_shape).transpose(1, 2),
        keys.view(hidden_shape).transpose(1, 2),
        values.view(hidden_shape).transpose(1, 2),
        attention_mask,
        scaling=attention.scale,
        dropout=attention.dropout if attention.training else 0.0,
        **kwargs,
    )
    return output.reshape(*input_shape, -1)


def normalized_projection_basis(layer_norm: nn.LayerNorm, projections: list[nn.Module], channels: int) -> torch.Tensor:
    """
    Rows `[W beta + b, W gamma, (W[:, :channels] * gamma[:channels])^T]` of the `projections`, stacked along their
    outputs, applied after `layer_norm` (gamma, beta): `(2 + channels, sum of out_features)`, what their outputs change
    along when channels move.

    Each projection is called, not read: any affine map `P(y) = W y + b` works, such as a `nn.Linear` wrapped by an
    adapter (LoRA), whose effective W and b are not its `weight` and `bias`. The rows are `P(beta)`, `P(gamma) - P(0)`
    and `P(gamma_i e_i) - P(0)` for the first `channels` channels i.
    """
    gamma = layer_norm.weight
    inputs = torch.cat([layer_norm.bias[None], gamma[None], torch.diag(gamma)[:channels], torch.zeros_like(gamma)[None]])
    outputs = torch.cat([projection(inputs) for projection in projections], dim=-1)  # (3 + channels, sum of outputs)
    origin = outputs[-1:]  # P(0) = b
    return torch.cat([outputs[:1], outputs[1:-1] - origin])


def layer_norm_change_coefficients(
    tokens: torch.Tensor, delta: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """
    How a projection after LayerNorm changes when the first 2c channels of `tokens` (..., D) change by `delta`
    (S, ..., 2c), one change per scale. Returns `ratio` (S, ..., 1) and `coefficients` (S, ..., 2 + 2c) such that
    `P(LN(tokens + delta)) = ratio * P(LN(tokens)) + coefficients @ normalized_projection_basis(...)`.
    """
    width = tokens.shape[-1]
    mean = tokens.mean(dim=-1, keepdim=True)
    centered = tokens - mean
    variance = centered.square().mean(dim=-1, keepdim=True)  # two passes: much faster than var_mean on CPU
    changed = centered[..., : delta.shape[-1]]  # (..., 2c)
    mean_shift = delta.sum(dim=-1, keepdim=True) / width
    new_variance = variance + (delta * (2 * changed + delta)).sum(dim=-1, keepdim=True) / width - mean_shift**2
    new_inverse_std = torch.rsqrt(new_variance + eps)
    ratio = torch.sqrt(variance + eps) * new_inverse_std
    return ratio, torch.cat([1 - ratio, -mean_shift * new_inverse_std, delta * new_inverse_std], dim=-1)


def sequence_rows(kept_index: torch.LongTensor, sequence_length: int) -> torch.LongTensor:
    """Rows of `(B * T * L, ...)` that make each frame's `[CLS, kept]` sequence: (B, T, n) -> (B * T * (1 + n),)."""
    token_index = sequence_token_index(kept_index.flatten(0, 1))  # (BT, 1 + n)
    frame_start = torch.arange(token_index.shape[0], device=token_index.device).unsqueeze(-1) * sequence_length
    return (frame_start + token_index).flatten()


# --------------------------------------------------------------------------------------------------------------
# Modules
# --------------------------------------------------------------------------------------------------------------


_WINDOW_GEOMETRY: dict[tuple, torch.LongTensor] = {}


def _window_geometry(grid: tuple[int, int], window: tuple[int, int], device: torch.device) -> torch.LongTensor:
    """`window_slot_patch_index` on `device`, built (and copied there) once per (grid, window, device)."""
    key = (grid, window, torch.device(device))
    if key not in _WINDOW_GEOMETRY:
        _WINDOW_GEOMETRY[key] = window_slot_patch_index(grid, window).to(device)
    return _WINDOW_GEOMETRY[key]


class STDDEncoderLayer(CLIPEncoderLayer):
    """
    A CLIP encoder layer that, given `num_frames`, also runs space-time cross attention with its own LN1 and
    attention weights. Without `num_frames` (images), or when `use_stca` is False, it is CLIP's layer unchanged.
    """

    def __init__(self, config: STDDVisionConfig, use_stca: bool = True):
        super().__init__(config)
        self.config = config
        self.use_stca = use_stca
        self.channels_per_side = config.hidden_size // config.channel_fold

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        num_frames: int | None = None,
        patch_grid: tuple[int, int] | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> torch.Tensor:
        """
        hidden_states: `(B * T, L, D)`, the T frames of a video adjacent; `patch_grid` is the (rows, columns) of
        patches of each frame (default: the config's). Returns `(B * T, L, D)`.

        The kept patches are drawn once (`sample_kept_patches`), then `config.stca_implementation` picks `fast_stca`
        or `reference_stca`; attention maps (`output_attentions`) are recorded from `self_attn` calls, which only the
        reference path makes, so it runs when they are requested.
        """
        if not self.use_stca or num_frames is None:
            return super().forward(hidden_states, attention_mask, **kwargs)
        kept_index = self.sample_kept_patches(
            hidden_states.shape[0] // num_frames, num_frames, patch_grid or self.config.patch_grid, hidden_states.device
        )
        if self.config.stca_implementation == "fast" and not kwargs.get("output_attentions"):
            full, padded = self.fast_stca(hidden_states, attention_mask, kept_index, **kwargs)
        else:
            full, padded = self.reference_stca(hidden_states, attention_mask, kept_index, **kwargs)
        return padded + self.mlp(self.layer_norm2(full))

    def reference_stca(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None,
        kept_index: torch.LongTensor,
        **kwargs: Unpack[TransformersKwargs],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Steps 1-5 as the method reads: the plain path, then LN1, attention and its projections on the mixed tokens of
        every scale. hidden_states: `(B * T, L, D)`, kept_index: `(B, T, n)` -> (`full`, `padded`), both
        `(B * T, L, D)`.
        """
        full = hidden_states + self.self_attn(self.layer_norm1(hidden_states), attention_mask, **kwargs)[0]
        cross = self.space_time_cross_attention(hidden_states, kept_index, **kwargs)
        return full, pad_cross_tokens(full, cross, kept_index.flatten(0, 1))

    def fast_stca(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None,
        kept_index: torch.LongTensor,
        **kwargs: Unpack[TransformersKwargs],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Steps 1-5 with the plain path's q/k/v reused: every scale's q/k/v are the plain ones at `[CLS, kept]` plus a
        rank-(2c + 2) correction (see `layer_norm_change_coefficients`); one attention call covers the sequences of all
        scales, and the output projection runs once on the mean over scales. Draws the same random numbers (attention
        dropout), in the same order, as `reference_stca`. With gradients on, `scale_attention` runs under activation
        checkpointing: the backward recomputes the scales' tokens, q/k/v and attention from the plain path's q/k/v
        (which the plain attention keeps anyway) instead of keeping them, about 13 tensors of `(B * T, 1 + n, D)`.
        hidden_states: `(B * T, L, D)`, kept_index: `(B, T, n)` -> (`full`, `padded`), both `(B * T, L, D)`.
        """
        attention = self.self_attn
        normed = self.layer_norm1(hidden_states)
        plain_qkv = [projection(normed) for projection in (attention.q_proj, attention.k_proj, attention.v_proj)]
        plain = multi_head_attention(attention, *plain_qkv, attention_mask, **kwargs)  # (BT, L, D)
        full = hidden_states + attention.out_proj(plain)
        rows = sequence_rows(kept_index, hidden_states.shape[1])  # (BT * (1 + n),)
        scale_attention = partial(self.scale_attention, num_videos=kept_index.shape[0], **kwargs)
        if torch.is_grad_enabled():
            scale_attention = partial(checkpoint, scale_attention, use_reentrant=False)
        sequence, delta, attended = scale_attention(hidden_states, *plain_qkv, rows)
        cross = sequence + attention.out_proj(attended)  # (BT, 1 + n, D)
        cross[..., : delta.shape[-1]] += delta
        padded = full.flatten(0, 1).index_copy(0, rows, cross.flatten(0, 1)).view_as(full)
        return full, padded

    def scale_attention(
        self,
        hidden_states: torch.Tensor,
        plain_queries: torch.Tensor,
        plain_keys: torch.Tensor,
        plain_values: torch.Tensor,
        rows: torch.LongTensor,
        num_videos: int,
        **kwargs: Unpack[TransformersKwargs],
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """
        The cross attention of every temporal scale, before the output projection, from the plain path's q/k/v.

        hidden_states and the plain q/k/v: `(B * T, L, D)`; rows: `sequence_rows` of the kept patches. Returns the
        `[CLS, kept]` tokens `(B * T, 1 + n, D)`, the mean over scales of what mixing adds to their first 2c channels
        `(B * T, 1 + n, 2c)`, and the mean over scales of the attention output `(B * T, 1 + n, D)`.
        """
        attention = self.self_attn
        projections = [attention.q_proj, attention.k_proj, attention.v_proj]
        frames, _, width = hidden_states.shape
        sequence, *sequence_qkv = [
            tokens.flatten(0, 1).index_select(0, rows).view(frames, -1, width)  # (BT, 1 + n, D)
            for tokens in (hidden_states, plain_queries, plain_keys, plain_values)
        ]
        delta = self.mixing_deltas(sequence[:, 1:].unflatten(0, (num_videos, -1)))  # (S, BT, 1 + n, 2c)
        ratio, coefficients = layer_norm_change_coefficients(sequence, delta, self.layer_norm1.eps)
        basis = normalized_projection_basis(self.layer_norm1, projections, delta.shape[-1])  # (2 + 2c, 3D)
        scale_qkv = [
            (coefficients @ projection_basis).addcmul_(ratio, plain_rows).flatten(0, 1)  # (S * BT, 1 + n, D)
            for projection_basis, plain_rows in zip(basis.split(width, dim=-1), sequence_qkv)
        ]
        attended = multi_head_attention(attention, *scale_qkv, None, **kwargs)  # (S * BT, 1 + n, D)
        return sequence, delta.mean(dim=0), attended.unflatten(0, (len(delta), frames)).mean(dim=0)

    def mixing_deltas(self, kept: torch.Tensor) -> torch.Tensor:
        """
        What channel mixing adds to the first 2c channels of each `[CLS, kept]` token, per temporal scale (0 for CLS).

        kept: `(B, T, n, D)` -> `(S, B * T, 1 + n, 2c)`.
        """
        kept_channels = kept[..., : 2 * self.channels_per_side]
        mixed = torch.stack(
            [mix_channels(kept_channels, scale, self.channels_per_side) for scale in self.config.temporal_scales]
        )
        return nn.functional.pad((mixed - kept_channels).flatten(1, 2), (0, 0, 1, 0))

    def sample_kept_patches(
        self, batch_size: int, num_frames: int, patch_grid: tuple[int, int], device
    ) -> torch.LongTensor:
        """
        Window masking: `(B, T, n)` patch indices kept per frame, random in training, fixed in evaluation. Drawn once
        per layer call, before either path runs its attention (the authors' layer also masks first).
        """
        slot_patch_index = _window_geometry(tuple(patch_grid), tuple(self.config.mask_stride[1:]), device)
        num_windows, slots_per_window = slot_patch_index.shape
        masked = masked_slots_per_window(
            self.config.mask_rate, num_frames, slot_patch_index.numel(), num_windows
        )
        if self.training:
            rotations = training_rotations(
                batch_size,
                num_frames,
                num_windows,
                slots_per_window,
                self.config.spatial_repeat,
                self.config.temporal_shuffle,
                device,
            )
        else:
            rotations = evaluation_rotations(num_frames, slots_per_window, device).expand(batch_size, num_frames)
            if self.config.evaluation_temporal_shuffle:  # the authors' released test code
                order = torch.rand(batch_size, num_frames, device=device).argsort(dim=1)
                rotations = rotations.gather(1, order)
            rotations = rotations.unsqueeze(-1).expand(batch_size, num_frames, num_windows)
        return kept_patch_index(rotations, slot_patch_index, masked)

    def space_time_cross_attention(
        self, hidden_states: torch.Tensor, kept_index: torch.LongTensor, **kwargs: Unpack[TransformersKwargs]
    ) -> torch.Tensor:
        """
        Cross attention over `[CLS, mixed kept tokens]` at each temporal scale, averaged over scales.

        hidden_states: `(B * T, L, D)`; kept_index: `(B, T, n)` -> `(B * T, 1 + n, D)`.
        """
        batch_size, num_frames, num_kept = kept_index.shape
        patches = hidden_states[:, 1:].unflatten(0, (batch_size, num_frames))  # (B, T, N, D)
        kept = patches.gather(2, kept_index.unsqueeze(-1).expand(-1, -1, -1, patches.shape[-1]))  # (B, T, n, D)
        cls_token = hidden_states[:, :1]  # (B * T, 1, D)
        cross = 0
        for scale in self.config.temporal_scales:
            mixed = mix_channels(kept, scale, self.channels_per_side).flatten(0, 1)  # (B * T, n, D)
            sequence = torch.cat([cls_token, mixed], dim=1)  # (B * T, 1 + n, D)
            cross = cross + sequence + self.self_attn(self.layer_norm1(sequence), None, **kwargs)[0]
        return cross / len(self.config.temporal_scales)


class STDDEncoder(CLIPEncoder):
    """CLIP's encoder with [`STDDEncoderLayer`]s; the layers in `config.stca_layer_indices` run STCA."""

    def __init__(self, config: STDDVisionConfig):
        super().__init__(config)
        stca_layers = set(config.stca_layer_indices)
        self.layers = nn.ModuleList(
            [STDDEncoderLayer(config, use_stca=index in stca_layers) for index in range(config.num_hidden_layers)]
        )


def check_pixel_values(pixel_values: torch.Tensor, config: STDDVisionConfig, interpolate_pos_encoding: bool):
    """Fail early, naming the shape, on input the vision tower cannot take: (B, 3, H, W) images or (B, T, 3, H, W)."""
    if not isinstance(pixel_values, torch.Tensor):
        raise ValueError(f"pixel_values must be a torch.Tensor, got {type(pixel_values).__name__}.")
    if pixel_values.ndim not in (4, 5):
        raise ValueError(
            "pixel_values must have shape (batch, frames, channels, height, width) for videos or "
            f"(batch, channels, height, width) for images, got {tuple(pixel_values.shape)}."
        )
    if 0 in pixel_values.shape:
        raise ValueError(f"pixel_values has an empty dimension: {tuple(pixel_values.shape)}.")
    if not pixel_values.is_floating_point():
        raise ValueError(
            f"pixel_values must be normalized floats, got dtype {pixel_values.dtype}; "
            "prepare videos with STDDProcessor (or STDDVideoProcessor)."
        )
    channels, height, width = pixel_values.shape[-3:]
    if channels != config.num_channels:
        raise ValueError(
            f"pixel_values has {channels} channels at dim {pixel_values.ndim - 3} (shape {tuple(pixel_values.shape)}); "
            f"the model expects {config.num_channels}."
        )
    if not interpolate_pos_encoding and (height, width) != (config.image_size, config.image_size):
        raise ValueError(
            f"pixel_values frames are {height}x{width} (shape {tuple(pixel_values.shape)}); the model expects "
            f"{config.image_size}x{config.image_size} (or pass interpolate_pos_encoding=True)."
        )


class STDDVisionModel(CLIPVisionModel):
    """
    CLIP's vision tower with space-time cross attention. Videos `(B, T, 3, H, W)` run STCA across their frames;
    images `(B, 3, H, W)` take CLIP's plain path, so CLIP's image features are unchanged.
    """

    config: STDDVisionConfig
    config_class = STDDVisionConfig
    input_modalities = ("image", "video")
    _no_split_modules = ["CLIPVisionEmbeddings", "STDDEncoderLayer"]

    def __init__(self, config: STDDVisionConfig):
        super().__init__(config)
        self.encoder = STDDEncoder(config)
        self.post_init()

    @merge_with_config_defaults
    @capture_outputs(tie_last_hidden_states=False)
    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        interpolate_pos_encoding: bool | None = False,
        **kwargs: Unpack[TransformersKwargs],
    ) -> BaseModelOutputWithPooling:
        r"""
        pixel_values (`torch.Tensor` of shape `(batch_size, num_frames, 3, height, width)` or `(batch_size, 3, height, width)`):
            Video frames (any `num_frames >= 1`), or images.

        Returns `last_hidden_state` `(B, T, L, D)` and `pooler_output` `(B, T, D)` (post-LayerNorm CLS of each frame)
        for videos, `(B, L, D)` and `(B, D)` for images. Recorded `hidden_states` are per frame, `(B * T, L, D)`.
        With `output_attentions` (eager attention), an STCA layer records 1 + S maps, in this order: the spatial
        attention over all L tokens `(B * T, heads, L, L)`, then the cross attention over `[CLS, kept]` of each
        temporal scale `(B * T, heads, 1 + n, 1 + n)`; a layer without STCA records one map, as CLIP's does.
        """
        check_pixel_values(pixel_values, self.config, interpolate_pos_encoding)
        is_video = pixel_values.ndim == 5
        frames = pixel_values.flatten(0, 1) if is_video else pixel_values
        patch_grid = self._patch_grid(frames.shape[-2:]) if is_video else None
        hidden_states = self.embeddings(frames, interpolate_pos_encoding=interpolate_pos_encoding)
        hidden_states = self.pre_layrnorm(hidden_states)
        encoder_outputs: BaseModelOutput = self.encoder(
            inputs_embeds=hidden_states,
            num_frames=pixel_values.shape[1] if is_video else None,
            patch_grid=patch_grid,
            **kwargs,
        )
        last_hidden_state = encoder_outputs.last_hidden_state
        pooled_output = self.post_layernorm(last_hidden_state[:, 0, :])
        if is_video:
            video_shape = pixel_values.shape[:2]
            last_hidden_state = last_hidden_state.unflatten(0, video_shape)
            pooled_output = pooled_output.unflatten(0, video_shape)
        return BaseModelOutputWithPooling(last_hidden_state=last_hidden_state, pooler_output=pooled_output)

    def _patch_grid(self, frame_size: tuple[int, int]) -> tuple[int, int]:
        """Patch grid of frames of `frame_size`, checked to be tiled by the mask window."""
        grid = (frame_size[0] // self.config.patch_size, frame_size[1] // self.config.patch_size)
        window = self.config.mask_stride[1:]
        if grid[0] % window[0] or grid[1] % window[1]:
            raise ValueError(
                f"Frames of {frame_size[0]}x{frame_size[1]} give a {grid[0]}x{grid[1]} patch grid that the "
                f"{window[0]}x{window[1]} mask window does not tile; choose a frame size whose grid it divides."
            )
        return grid


# CLIP and STDD checkpoints name the vision weights `vision_model.*`; transformers strips that prefix for
# `CLIPVisionModel` only (its conversion mappings are looked up by class name), so `STDDVisionModel` needs the same
# rule or `from_pretrained` leaves its weights random. `overwrite=True`: Hub remote code imports this module again.
register_checkpoint_conversion_mapping(
    STDDVisionModel.__name__, [PrefixChange(prefix_to_remove="vision_model")], overwrite=True
)


def class_scores(
    video_embeds: torch.Tensor,
    text_embeds: torch.Tensor,
    logit_scale: torch.Tensor | float,
    prompt_class_ids: torch.LongTensor | None = None,
    num_classes: int | None = None,
) -> torch.Tensor:
    r"""
    Class scores of videos from their frame embeddings (STDD_METHOD.md, section 2).

    Args:
        video_embeds (`torch.Tensor` of shape `(B, T, E)`): L2-normalized frame embeddings.
        text_embeds (`torch.Tensor` of shape `(P, E)`): L2-normalized prompt embeddings.
        logit_scale: the temperature `s` (already exponentiated).
        prompt_class_ids (`torch.LongTensor` of shape `(P,)`, *optional*): the class of each prompt. Without it,
            prompt k is class k and the score is the mean over frames of the per-frame logits.
        num_classes (`int`, *optional*): number of classes K (default: `max(prompt_class_ids) + 1`).

    Returns:
        `torch.Tensor` of shape `(B, K)`. With grouped prompts,
        `score[b, k] = (mean_n max_t sim[b, t, k, n] + mean_t max_n sim[b, t, k, n]) / 2` over each class's own
        prompts only, so classes with unequal prompt counts need no padding.

    The prompts are checked first (`check_prompts`); `class_scores_of_checked_prompts` scores prompts checked once
    already, as in training, where the same prompts come back at every step.
    """
    num_classes = check_prompts(text_embeds, prompt_class_ids, video_embeds.shape[-1], num_classes)
    return class_scores_of_checked_prompts(video_embeds, text_embeds, logit_scale, prompt_class_ids, num_classes)


def class_scores_of_checked_prompts(
    video_embeds: torch.Tensor,
    text_embeds: torch.Tensor,
    logit_scale: torch.Tensor | float,
    prompt_class_ids: torch.LongTensor | None = None,
    num_classes: int | None = None,
) -> torch.Tensor:
    """`class_scores` of prompts that have passed `check_prompts`. (B, T, E), (P, E) -> (B, K)."""
    text_embeds = text_embeds.to(video_embeds.dtype)
    similarity = logit_scale * torch.einsum("bte,pe->btp", video_embeds, text_embeds)  # (B, T, P)
    if prompt_class_ids is None:
        return similarity.mean(dim=1)
    prompt_class_ids = prompt_class_ids.to(similarity.device)
    num_classes = int(prompt_class_ids.max()) + 1 if num_classes is None else num_classes
    return (mean_of_frame_max(similarity, prompt_class_ids, num_classes)
            + mean_of_prompt_max(similarity, prompt_class_ids, num_classes)) / 2


def check_prompts(
    text_embeds: torch.Tensor, prompt_class_ids: torch.Tensor | None, width: int, num_classes: int | None = None
) -> int | None:
    """
    Fail early, naming the shape or the classes, on prompts `class_scores` cannot score (or would score NaN). Returns
    the number of classes K (`num_classes`, else `max(prompt_class_ids) + 1`; `num_classes` as given without
    `prompt_class_ids`), for `class_scores_of_checked_prompts`.
    """
    if (not isinstance(text_embeds, torch.Tensor) or text_embeds.ndim != 2 or text_embeds.shape[-1] != width
            or text_embeds.shape[0] == 0):
        shape = tuple(text_embeds.shape) if isinstance(text_embeds, torch.Tensor) else type(text_embeds).__name__
        raise ValueError(f"text_embeds must have shape (num_prompts >= 1, {width}), got {shape}.")
    if prompt_class_ids is None:
        return num_classes
    if not isinstance(prompt_class_ids, torch.Tensor) or prompt_class_ids.dtype not in (torch.int32, torch.int64):
        found = prompt_class_ids.dtype if isinstance(prompt_class_ids, torch.Tensor) else type(prompt_class_ids).__name__
        raise ValueError(f"prompt_class_ids must be a tensor of int64 (or int32) class indices, got {found}.")
    if prompt_class_ids.shape != text_embeds.shape[:1]:
        raise ValueError(
            f"prompt_class_ids has shape {tuple(prompt_class_ids.shape)}; expected ({text_embeds.shape[0]},), "
            "one class index per prompt."
        )
    num_classes = int(prompt_class_ids.max()) + 1 if num_classes is None else num_classes
    counts = torch.bincount(prompt_class_ids.clamp(min=-1) + 1, minlength=num_classes + 1)
    if counts[0] or counts.numel() > num_classes + 1:
        raise ValueError(f"prompt_class_ids must lie in 0 .. {num_classes - 1}, got {prompt_class_ids.tolist()[:20]}.")
    empty = (counts[1:] == 0).nonzero().flatten().tolist()
    if empty:
        raise ValueError(f"Classes {empty[:20]} have no prompts in prompt_class_ids; every class needs at least one.")
    return num_classes


def mean_of_frame_max(similarity: torch.Tensor, prompt_class_ids: torch.LongTensor, num_classes: int) -> torch.Tensor:
    """`mean_n max_t sim`: best frame per prompt, averaged over each class's prompts. (B, T, P) -> (B, K)."""
    best_frame = similarity.amax(dim=1)  # (B, P)
    totals = best_frame.new_zeros(best_frame.shape[0], num_classes).index_add(1, prompt_class_ids, best_frame)
    counts = torch.bincount(prompt_class_ids, minlength=num_classes).to(best_frame.dtype)
    return totals / counts


def mean_of_prompt_max(similarity: torch.Tensor, prompt_class_ids: torch.LongTensor, num_classes: int) -> torch.Tensor:
    """`mean_t max_n sim`: best prompt of each class per frame, averaged over frames. (B, T, P) -> (B, K)."""
    batch_size, num_frames, _ = similarity.shape
    best_prompt = similarity.new_full((batch_size, num_frames, num_classes), float("-inf"))
    index = prompt_class_ids.view(1, 1, -1).expand_as(similarity)
    best_prompt = best_prompt.scatter_reduce(2, index, similarity, reduce="amax", include_self=True)
    return best_prompt.mean(dim=1)


def _normalize(embeds: torch.Tensor) -> torch.Tensor:
    return embeds / embeds.norm(p=2, dim=-1, keepdim=True)


class STDDModel(CLIPModel):
    r"""
    STDD: a [`CLIPModel`] whose vision tower is an [`STDDVisionModel`]. Every CLIP checkpoint loads into it with no
    missing or unexpected weights; `get_image_features` and `get_text_features` behave as CLIP's.

    Example:

    ```python
    >>> import torch
    >>> from modeling_stdd import STDDModel
    >>> model = STDDModel.from_pretrained("openai/clip-vit-base-patch16", temporal_scales=[1, 2]).eval()
    >>> size = model.config.vision_config.image_size
    >>> video = torch.randn(1, 8, 3, size, size)  # (batch, frames, channels, height, width)
    >>> frame_embeds = model.get_video_features(video).pooler_output  # (1, 8, projection_dim)
    ```
    """

    config: STDDConfig
    config_class = STDDConfig
    input_modalities = ("video", "image", "text")
    _no_split_modules = ["CLIPTextEmbeddings", "CLIPEncoderLayer", "CLIPVisionEmbeddings", "STDDEncoderLayer"]

    def __init__(self, config: STDDConfig):
        super().__init__(config)
        self.vision_model = STDDVisionModel._from_config(config.vision_config)
        self.post_init()

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        """
        As [`~PreTrainedModel.from_pretrained`]; a local folder is checked first (`config.json` present, safetensors
        weights complete), so that a bad folder raises [`CheckpointFolderError`] naming it and the file.
        """
        if pretrained_model_name_or_path is not None and os.path.isdir(pretrained_model_name_or_path):
            check_model_folder(os.path.join(pretrained_model_name_or_path, kwargs.get("subfolder", "")))
        return super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)

    def adopt_image_size(self, image_size: int):
        """
        Make frames of `image_size` pixels this model's own size, in place: its position embeddings become the
        interpolation of the original ones that training at that size used, and the config says `image_size`, so the
        saved model runs on its saved processor's frames without `interpolate_pos_encoding`.
        """
        embeddings = self.vision_model.embeddings
        num_patches = (image_size // embeddings.patch_size) ** 2
        with torch.no_grad():
            positions = embeddings.interpolate_pos_encoding(
                embeddings.position_embedding.weight.new_empty(1, 1 + num_patches, embeddings.embed_dim), image_size,
                image_size,
            )[0]
        embeddings.position_embedding = torch.nn.Embedding.from_pretrained(positions.clone(), freeze=False)
        embeddings.image_size, embeddings.num_patches = image_size, num_patches
        embeddings.num_positions = num_patches + 1
        embeddings.position_ids = torch.arange(num_patches + 1, device=positions.device).expand((1, -1))
        self.config.vision_config.image_size = image_size

    @can_return_tuple
    def get_video_features(
        self,
        pixel_values: torch.Tensor,
        interpolate_pos_encoding: bool = False,
        **kwargs: Unpack[TransformersKwargs],
    ) -> BaseModelOutputWithPooling:
        r"""
        pixel_values (`torch.Tensor` of shape `(batch_size, num_frames, 3, height, width)`):
            Video frames.

        Returns the vision tower's output with `pooler_output` replaced by the projected, un-normalized frame
        embeddings `(batch_size, num_frames, projection_dim)`.
        """
        if not isinstance(pixel_values, torch.Tensor) or pixel_values.ndim != 5:
            shape = tuple(pixel_values.shape) if isinstance(pixel_values, torch.Tensor) else type(pixel_values)
            raise ValueError(
                f"get_video_features expects pixel_values of shape (batch, frames, channels, height, width), got {shape}."
            )
        vision_outputs: BaseModelOutputWithPooling = self.vision_model(
            pixel_values=pixel_values, interpolate_pos_encoding=interpolate_pos_encoding, return_dict=True, **kwargs
        )
        vision_outputs.pooler_output = self.visual_projection(vision_outputs.pooler_output)
        return vision_outputs

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        prompt_class_ids: torch.LongTensor | None = None,
        text_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        interpolate_pos_encoding: bool = False,
        **kwargs: Unpack[TransformersKwargs],
    ) -> STDDOutput:
        r"""
        input_ids (`torch.LongTensor` of shape `(num_prompts, sequence_length)`):
            Tokenized prompts: one per class, or several per class with `prompt_class_ids`.
        pixel_values (`torch.Tensor` of shape `(batch_size, num_frames, 3, height, width)`):
            Video frames.
        prompt_class_ids (`torch.LongTensor` of shape `(num_prompts,)`, *optional*):
            The class (0 .. K - 1) of each prompt when prompts are grouped per class; counts may differ per class.
        text_embeds (`torch.Tensor` of shape `(num_prompts, projection_dim)`, *optional*):
            Precomputed prompt embeddings (from `get_text_features`) used instead of `input_ids`.
        labels (`torch.LongTensor` of shape `(batch_size,)`, *optional*):
            Class index of each video; returns the cross-entropy of `logits_per_video` as `loss`.

        Returns [`STDDOutput`] with `logits_per_video` `(batch_size, num_classes)`.
        """
        if (input_ids is None) == (text_embeds is None):
            raise ValueError("Pass exactly one of input_ids (prompts to encode) or text_embeds (encoded prompts).")
        text_outputs = None
        if text_embeds is None:
            text_outputs = self.get_text_features(
                input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, **kwargs
            )
            text_embeds = text_outputs.pooler_output
        num_classes = check_prompts(text_embeds, prompt_class_ids, self.config.projection_dim)
        vision_outputs = self.get_video_features(
            pixel_values=pixel_values, interpolate_pos_encoding=interpolate_pos_encoding, **kwargs
        )
        video_embeds = _normalize(vision_outputs.pooler_output)
        text_embeds = _normalize(text_embeds)
        logits_per_video = class_scores_of_checked_prompts(
            video_embeds, text_embeds, self.logit_scale.exp(), prompt_class_ids, num_classes
        )
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(logits_per_video, labels.to(logits_per_video.device))
        return STDDOutput(
            loss=loss,
            logits_per_video=logits_per_video,
            video_embeds=video_embeds,
            text_embeds=text_embeds,
            text_model_output=text_outputs,
            vision_model_output=vision_outputs,
        )


__all__ = [
    "STDDModel",
    "STDDOutput",
    "STDDVisionModel",
    "check_prompts",
    "class_scores",
    "class_scores_of_checked_prompts",
    "kept_patch_index",
    "mix_channels",
    "pad_cross_tokens",
    "window_slot_patch_index",
]
