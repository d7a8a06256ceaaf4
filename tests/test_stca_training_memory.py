"""What the backward of an STCA layer keeps alive: the fast path recomputes its cross-attention inputs instead."""

import torch
from transformers.models.clip.modeling_clip import CLIPEncoderLayer

from modeling_stdd import STDDVisionConfig
from modeling_stdd.modeling_stdd import STDDEncoderLayer


def saved_bytes(layer: torch.nn.Module, hidden_states: torch.Tensor, **kwargs) -> int:
    """Bytes of the distinct storages that one forward of `layer` saves for its backward, beyond its weights and input."""
    excluded = {parameter.untyped_storage().data_ptr() for parameter in layer.parameters()}
    excluded.add(hidden_states.untyped_storage().data_ptr())
    saved = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in excluded:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        layer(hidden_states, None, **kwargs)
    return sum(saved.values())


def test_fast_path_keeps_about_one_cross_sized_tensor_beyond_clips_layer():
    config = STDDVisionConfig(
        hidden_size=64, intermediate_size=128, num_attention_heads=4, image_size=64, patch_size=8, channel_fold=8
    )
    config._attn_implementation = "sdpa"  # it saves the plain q/k/v projections themselves, which STCA reuses
    clip, stdd = CLIPEncoderLayer(config).train(), STDDEncoderLayer(config).train()
    stdd.load_state_dict(clip.state_dict())
    num_frames, kept = 4, 32  # 8x8 grid, half of it kept
    hidden_states = torch.randn(2 * num_frames, 1 + 64, 64, requires_grad=True)
    extra = saved_bytes(stdd, hidden_states, num_frames=num_frames) - saved_bytes(clip, hidden_states)
    cross_sized = hidden_states.shape[0] * (1 + kept) * config.hidden_size * 4  # one (B * T, 1 + n, D) float tensor
    # The output projection's input, the padding's source (index_copy keeps it) and the kept rows' indices; the
    # scales' tokens, q/k/v and attention outputs (13 more such tensors before) are recomputed in the backward.
    assert 0 < extra <= 2.5 * cross_sized
