"""
A literal reading of one STCA layer in evaluation (STDD_METHOD.md section 1, steps 1-6), written with plain loops over
videos, frames, windows and slots, for tests to hold `modeling_stdd` against. It shares no code with the package.

Each function restates, in our own words, the behaviour of a part of the authors' released layer
(`slowfast/models/customize_visiontransformer.py` in Mia-YatingYu/STDD, the STCA block's methods):
- `literal_kept_positions`: `_window_masking`, evaluation branch, lines 380-394 (m masked slots per window, the base
  pattern rotated right by `t % K` for frame t), 423-424 (one pattern per frame, shared by every video and window;
  the evaluation shuffle of lines 425-430 is the off-by-default `evaluation_temporal_shuffle`, not read here) and
  431-436 (kept tokens listed window by window, row-major, slot by slot inside a window);
- `literal_channel_mixing`: `_channel_mixing`, lines 443-461 (channels [2c:] stay, [0:2c] start at zero, step i
  shifts [0:d] from frame t - (i + 1) and [2c - d:2c] from frame t + (i + 1) where that frame exists, d halving);
- `literal_cross_sequences`: `forward`, lines 498-501 (`[CLS, mixed kept tokens]` at each temporal scale);
- `literal_stca_layer`: `forward`, lines 502-510 (cross attention with its residual per scale, mean over scales, the
  plain path), with `_padding`, lines 463-492 (the plain path's tokens, CLS and kept positions replaced by the cross
  attention's), and the MLP on the plain path.
"""

import torch


def literal_kept_positions(config, num_frames: int) -> list[list[int]]:
    """Per frame, the token positions (1 + patch index, CLS being 0) window masking keeps in evaluation, in order."""
    rows, columns = config.patch_grid
    window_rows, window_columns = config.mask_stride[1:]
    slots = window_rows * window_columns
    num_windows = (rows // window_rows) * (columns // window_columns)
    masked = int(config.mask_rate * num_frames * rows * columns) // (num_frames * num_windows)
    kept_positions = []
    for t in range(num_frames):
        offset = t % slots
        base = [1] * masked + [0] * (slots - masked)
        pattern = base[-offset:] + base[:-offset] if offset else base
        positions = []
        for window_row in range(rows // window_rows):
            for window_column in range(columns // window_columns):
                for slot in range(slots):
                    if not pattern[slot]:
                        r = window_row * window_rows + slot // window_columns
                        col = window_column * window_columns + slot % window_columns
                        positions.append(1 + r * columns + col)
        kept_positions.append(positions)
    return kept_positions


def literal_channel_mixing(kept: torch.Tensor, scale: int, channels_per_side: int) -> torch.Tensor:
    """The kept tokens `(T, n, D)` of one video after channel mixing at `scale` with c = `channels_per_side`."""
    num_frames = kept.shape[0]
    c = channels_per_side
    mixed = kept.clone()
    mixed[:, :, : 2 * c] = 0
    d = c
    for step in range(scale):
        for t in range(num_frames):
            source = t - (step + 1)
            if source >= 0:
                mixed[t, :, :d] = kept[source, :, :d]
            source = t + (step + 1)
            if source < num_frames:
                mixed[t, :, 2 * c - d : 2 * c] = kept[source, :, 2 * c - d : 2 * c]
        d //= 2
    return mixed


def literal_cross_sequences(layer, hidden_states: torch.Tensor, num_frames: int) -> list[torch.Tensor]:
    """
    The sequences `[CLS, mixed kept tokens]` the cross attention of `layer` reads, one `(B * T, 1 + n, D)` per
    temporal scale in `config.temporal_scales` order. hidden_states: the layer's input `(B * T, L, D)`.
    """
    config = layer.config
    kept_positions = literal_kept_positions(config, num_frames)
    c = hidden_states.shape[-1] // config.channel_fold
    sequences = []
    for scale in config.temporal_scales:
        per_video = []
        for b in range(hidden_states.shape[0] // num_frames):
            frames = hidden_states[b * num_frames : (b + 1) * num_frames]
            kept = torch.stack([frames[t, kept_positions[t]] for t in range(num_frames)])  # (T, n, D)
            per_video.append(torch.cat([frames[:, :1], literal_channel_mixing(kept, scale, c)], dim=1))
        sequences.append(torch.cat(per_video))
    return sequences


def literal_stca_layer(layer, hidden_states: torch.Tensor, num_frames: int) -> torch.Tensor:
    """One STCA layer (`layer`'s weights) on `(B * T, L, D)` frames, the T frames of a video adjacent: `(B * T, L, D)`."""
    full = hidden_states + layer.self_attn(layer.layer_norm1(hidden_states))[0]
    cross_sum = 0
    for sequence in literal_cross_sequences(layer, hidden_states, num_frames):
        cross_sum = cross_sum + sequence + layer.self_attn(layer.layer_norm1(sequence))[0]
    cross = cross_sum / len(layer.config.temporal_scales)
    kept_positions = literal_kept_positions(layer.config, num_frames)
    output = full.clone()
    for row in range(hidden_states.shape[0]):
        output[row, 0] = cross[row, 0]
        for j, position in enumerate(kept_positions[row % num_frames]):
            output[row, position] = cross[row, 1 + j]
    return output + layer.mlp(layer.layer_norm2(full))
