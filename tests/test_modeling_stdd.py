"""Tests that pin STDD's vision method (STDD_METHOD.md sections 1 and 2) and its transformers integration."""

import copy

import pytest
import torch
from conftest import tiny_clip_config
from stca_oracle import literal_channel_mixing, literal_cross_sequences, literal_kept_positions, literal_stca_layer
from transformers import AutoConfig, AutoModel, CLIPModel, CLIPVisionModel

from modeling_stdd import STDDConfig, STDDModel, STDDVisionConfig, STDDVisionModel, class_scores
from modeling_stdd.modeling_stdd import (
    evaluation_rotations,
    kept_patch_index,
    kept_slots,
    masked_slots_per_window,
    mix_channels,
    window_slot_patch_index,
)


STCA_KWARGS = dict(channel_fold=8)  # width 32: c = 4 channels per side, so both default scales move channels


@pytest.fixture(scope="module")
def clip_model():
    torch.manual_seed(0)
    return CLIPModel(tiny_clip_config()).eval()


@pytest.fixture(scope="module")
def clip_dir(clip_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("clip")
    clip_model.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def stdd_model(clip_dir):
    return STDDModel.from_pretrained(clip_dir, **STCA_KWARGS).eval()


def video(batch_size=2, num_frames=4, seed=1):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch_size, num_frames, 3, 32, 32, generator=generator)


# ------------------------------------------------------------------ loading and configuration


def test_clip_checkpoint_loads_with_no_missing_or_unexpected_keys(clip_dir):
    model, info = STDDModel.from_pretrained(clip_dir, output_loading_info=True)
    assert info["missing_keys"] == set() and info["unexpected_keys"] == set() and info["mismatched_keys"] == set()
    assert isinstance(model.vision_model, STDDVisionModel)


@pytest.mark.parametrize(
    "geometry", [dict(image_size=32, patch_size=8), dict(image_size=48, patch_size=16), dict(image_size=40, patch_size=8)]
)
def test_any_clip_geometry_loads_and_runs(tmp_path, geometry):
    config = tiny_clip_config(**geometry)
    CLIPModel(config).save_pretrained(tmp_path)
    model, info = STDDModel.from_pretrained(tmp_path, output_loading_info=True, **STCA_KWARGS)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    rows, columns = model.config.vision_config.patch_grid
    window = model.config.vision_config.mask_stride
    assert rows % window[1] == 0 and columns % window[2] == 0
    size = geometry["image_size"]
    assert model.eval().get_video_features(torch.randn(1, 3, 3, size, size)).pooler_output.shape == (1, 3, 16)


def test_stdd_kwargs_override_at_load_and_survive_save(clip_dir, tmp_path):
    model = STDDModel.from_pretrained(clip_dir, temporal_scales=[1], channel_fold=16, mask_rate=0.25)
    vision = model.config.vision_config
    assert (vision.temporal_scales, vision.channel_fold, vision.mask_rate) == ([1], 16, 0.25)
    model.save_pretrained(tmp_path)
    reloaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(reloaded, STDDConfig)
    assert reloaded.vision_config.temporal_scales == [1] and reloaded.vision_config.channel_fold == 16


@pytest.mark.parametrize("checkpoint", ["clip", "stdd"])
def test_vision_model_loads_the_vision_tower_of_a_clip_or_stdd_checkpoint(clip_model, stdd_model, tmp_path, checkpoint):
    source = clip_model if checkpoint == "clip" else stdd_model
    source.save_pretrained(tmp_path)
    vision_model, info = STDDVisionModel.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["mismatched_keys"]
    expected = source.vision_model.state_dict()
    assert vision_model.state_dict().keys() == expected.keys()
    assert all(torch.equal(value, expected[name]) for name, value in vision_model.state_dict().items())


def test_vision_model_save_and_load_roundtrip_is_exact(stdd_model, tmp_path):
    stdd_model.vision_model.save_pretrained(tmp_path)
    vision_model, info = STDDVisionModel.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    expected = stdd_model.vision_model.state_dict()
    assert all(torch.equal(value, expected[name]) for name, value in vision_model.state_dict().items())


def test_auto_classes_return_stdd(stdd_model, tmp_path):
    stdd_model.save_pretrained(tmp_path)
    assert type(AutoConfig.from_pretrained(tmp_path)) is STDDConfig
    assert type(AutoModel.from_pretrained(tmp_path)) is STDDModel


def test_clip_sub_configs_become_stdd_configs_with_default_stca_settings(clip_model):
    clip_config = clip_model.config
    config = STDDConfig(
        text_config=clip_config.text_config, vision_config=clip_config.vision_config, projection_dim=16
    )
    vision = config.vision_config
    assert type(vision) is STDDVisionConfig
    assert (vision.hidden_size, vision.image_size, vision.patch_size) == (32, 32, 8)
    assert (vision.num_frames, vision.mask_rate, vision.temporal_scales) == (8, 0.5, [1, 2])
    assert STDDConfig(vision_config=clip_config.vision_config, num_frames=4).vision_config.num_frames == 4
    model = STDDModel(config).eval()
    assert model.get_video_features(video(batch_size=1)).pooler_output.shape == (1, 4, 16)


def test_config_defaults_are_the_papers():
    vision = STDDConfig().vision_config
    assert (vision.num_frames, vision.mask_rate, vision.mask_stride, vision.channel_fold) == (8, 0.5, [1, 2, 2], 32)
    assert (vision.temporal_scales, vision.spatial_repeat, vision.temporal_shuffle) == ([1, 2], True, True)
    assert vision.stca_layers is None and vision.patch_grid == (14, 14)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("num_frames", 0, "num_frames must be an integer >= 1"),
        ("mask_rate", 1.0, r"mask_rate must be in \[0, 1\)"),
        ("mask_rate", -0.1, r"mask_rate must be in \[0, 1\)"),
        ("mask_stride", [1, 2], "mask_stride must be three integers"),
        ("mask_stride", [2, 2, 2], r"mask_stride\[0\] \(temporal stride\) must be 1"),
        ("channel_fold", 1, r"channel_fold must be an integer in \[2, hidden_size=768\]"),
        ("temporal_scales", [], "temporal_scales must be a non-empty list"),
        ("temporal_scales", [0], "temporal_scales must be a non-empty list of integers >= 1"),
        ("stca_layers", [12], r"stca_layers must be None or layer indices in \[0, 11\]"),
    ],
)
def test_invalid_settings_fail_at_construction_naming_the_field(field, value, message):
    with pytest.raises(ValueError, match=message):
        STDDVisionConfig(**{field: value})


def test_vit_b32_grid_gets_a_window_that_tiles_it_recorded_in_the_config():
    config = STDDVisionConfig(patch_size=32, image_size=224)
    assert config.patch_grid == (7, 7) and config.mask_stride == [1, 7, 7]
    assert STDDVisionConfig.from_dict(config.to_dict()).mask_stride == [1, 7, 7]


# ------------------------------------------------------------------ window masking


def test_kept_token_count_and_adjacent_frames_keep_different_slots():
    for grid, window, num_frames in [((14, 14), (2, 2), 8), ((4, 4), (2, 2), 5), ((7, 7), (7, 7), 8)]:
        slot_patch_index = window_slot_patch_index(grid, window)
        num_windows, slots = slot_patch_index.shape
        num_patches = grid[0] * grid[1]
        masked = masked_slots_per_window(0.5, num_frames, num_patches, num_windows)
        rotations = evaluation_rotations(num_frames, slots).view(1, num_frames, 1).expand(1, num_frames, num_windows)
        kept = kept_patch_index(rotations, slot_patch_index, masked)[0]  # (T, n)
        assert kept.shape == (num_frames, num_patches * (slots - masked) // slots)
        for t in range(num_frames - 1):
            if slots > 1:
                assert set(kept[t].tolist()) != set(kept[t + 1].tolist())
            per_window_now = kept[t].view(num_windows, -1)
            per_window_next = kept[t + 1].view(num_windows, -1)
            for window_now, window_next in zip(per_window_now, per_window_next):
                assert not torch.equal(window_now, window_next)


def test_vit_b16_keeps_98_tokens_and_vit_b32_keeps_25():
    b16 = window_slot_patch_index((14, 14), (2, 2))
    assert masked_slots_per_window(0.5, 8, 196, b16.shape[0]) == 2
    assert b16.shape[0] * (4 - 2) == 98
    b32 = window_slot_patch_index((7, 7), (7, 7))
    masked = masked_slots_per_window(0.5, 8, 49, b32.shape[0])
    assert b32.shape[0] * (49 - masked) == 25


def test_rotation_follows_the_base_pattern_rotated_right():
    slots, masked = 4, 2
    base = [1] * masked + [0] * (slots - masked)
    for offset in range(slots):
        rotated = base[-offset:] + base[:-offset] if offset else base
        expected = [slot for slot, is_masked in enumerate(rotated) if not is_masked]
        assert kept_slots(torch.tensor(offset), slots, masked).tolist() == expected


def test_window_slots_are_row_major_windows_then_row_major_slots():
    index = window_slot_patch_index((4, 4), (2, 2))
    assert index.tolist() == [[0, 1, 4, 5], [2, 3, 6, 7], [8, 9, 12, 13], [10, 11, 14, 15]]


def test_training_schedules_are_rotations_of_one_draw_per_video(stdd_model):
    layer = copy.deepcopy(stdd_model.vision_model.encoder.layers[0]).train()
    layer.config = copy.deepcopy(layer.config)
    num_frames, slots = 6, 4
    grid = layer.config.patch_grid
    eval_layer = copy.deepcopy(layer).eval()
    eval_kept = eval_layer.sample_kept_patches(1, slots, grid, "cpu")[0]  # rotation r -> kept patches
    torch.manual_seed(0)
    for shuffle in (False, True):
        layer.config.temporal_shuffle = shuffle
        kept = layer.sample_kept_patches(8, num_frames, grid, "cpu")
        rotations = [
            [next(r for r in range(slots) if torch.equal(frame, eval_kept[r])) for frame in video_kept]
            for video_kept in kept
        ]
        in_order = [all((rot[t] - rot[0]) % slots == t % slots for t in range(num_frames)) for rot in rotations]
        if not shuffle:
            assert all(in_order)
        else:  # a permutation in time of one schedule's rotations, and not the schedule's own order for every video
            assert all(
                any(sorted(rot) == sorted((t + draw) % slots for t in range(num_frames)) for draw in range(slots))
                for rot in rotations
            )
            assert not all(in_order)


def test_training_masks_vary_between_calls_and_with_the_seed(stdd_model):
    model = copy.deepcopy(stdd_model).train()
    pixel_values = video()
    torch.manual_seed(0)
    first = model.get_video_features(pixel_values).pooler_output
    second = model.get_video_features(pixel_values).pooler_output
    torch.manual_seed(0)
    again = model.get_video_features(pixel_values).pooler_output
    torch.manual_seed(1)
    other_seed = model.get_video_features(pixel_values).pooler_output
    assert not torch.allclose(first, second)
    assert torch.equal(first, again)
    assert not torch.allclose(first, other_seed)


def test_spatial_repeat_false_draws_per_window(stdd_model):
    layer = copy.deepcopy(stdd_model.vision_model.encoder.layers[0]).train()
    layer.config = copy.deepcopy(layer.config)
    layer.config.spatial_repeat, layer.config.temporal_shuffle = False, False
    torch.manual_seed(0)
    kept = layer.sample_kept_patches(16, 2, layer.config.patch_grid, "cpu")  # (16, 2, n)
    per_window = kept[:, 0].view(16, 4, 2) % 2  # column parity of kept slots differs between windows somewhere
    assert any(len({tuple(w.tolist()) for w in video_windows}) > 1 for video_windows in per_window)


# ------------------------------------------------------------------ channel mixing


def frame_channel_tokens(num_frames: int, channels: int) -> torch.Tensor:
    """Tokens `(1, T, 1, channels)` whose value encodes (frame, channel): 100 * (t + 1) + channel."""
    tokens = torch.tensor([[100.0 * (t + 1) + ch for ch in range(channels)] for t in range(num_frames)])
    return tokens.view(1, num_frames, 1, channels)


# Channels 0-3 of frames 0-3 after mixing with c = 2, worked out by hand from the authors' `_channel_mixing`
# (channels [0:2c] start at zero; step i writes only frames that have the source frame t -/+ (i + 1)).
# Scale 1, step 0 (d = 2): channels 0-1 <- frame t - 1, channels 2-3 <- frame t + 1.
MIXED_SCALE_1 = [
    [0, 0, 202, 203],
    [100, 101, 302, 303],
    [200, 201, 402, 403],
    [300, 301, 0, 0],
]
# Scale 2 adds step 1 (d = 1): channel 0 <- frame t - 2 for frames 2, 3; channel 3 <- frame t + 2 for frames 0, 1.
# Frame 1's channel 0 keeps step 0's 100 (frame 0) and frame 2's channel 3 keeps step 0's 403 (frame 3).
MIXED_SCALE_2 = [
    [0, 0, 202, 303],
    [100, 101, 302, 403],
    [100, 201, 402, 403],
    [200, 301, 0, 0],
]


@pytest.mark.parametrize("scale, expected", [(1, MIXED_SCALE_1), (2, MIXED_SCALE_2)])
def test_channel_mixing_on_a_hand_made_tensor(scale, expected):
    tokens = frame_channel_tokens(num_frames=4, channels=10)
    original = tokens.clone()
    mixed = mix_channels(tokens, scale, channels_per_side=2)[0, :, 0]
    assert mixed[:, :4].tolist() == expected
    assert torch.equal(mixed[:, 4:], tokens[0, :, 0, 4:])  # channels [2c:] stay
    assert torch.equal(tokens, original)  # input untouched


def test_channel_mixing_steps_past_the_clip_or_the_channels_change_nothing():
    tokens = frame_channel_tokens(num_frames=2, channels=10)
    assert torch.equal(mix_channels(tokens, 3, channels_per_side=2), mix_channels(tokens, 1, channels_per_side=2))
    tokens = frame_channel_tokens(num_frames=6, channels=10)  # c = 2: step 2 has d = 0
    assert torch.equal(mix_channels(tokens, 3, channels_per_side=2), mix_channels(tokens, 2, channels_per_side=2))


# ------------------------------------------------------------------ the whole layer, against a literal reading


@pytest.mark.parametrize("scale, expected", [(1, MIXED_SCALE_1), (2, MIXED_SCALE_2)])
def test_the_literal_oracle_mixes_channels_as_worked_out_by_hand(scale, expected):
    tokens = frame_channel_tokens(num_frames=4, channels=10)[0]  # (T, n, D) of one video
    mixed = literal_channel_mixing(tokens, scale, channels_per_side=2)[:, 0]
    assert mixed[:, :4].tolist() == expected
    assert torch.equal(mixed[:, 4:], tokens[:, 0, 4:])


def test_the_literal_oracle_keeps_the_patches_worked_out_by_hand():
    # 4x4 grid, 2x2 windows, mask rate 0.5: 2 of 4 slots masked, base pattern [1, 1, 0, 0] over the slots.
    # Frame 0 keeps slots 2, 3 (each window's bottom row); frame 1, rotated right by 1 ([0, 1, 1, 0]), slots 0, 3.
    config = STDDVisionConfig(image_size=32, patch_size=8)
    assert literal_kept_positions(config, num_frames=2) == [
        [5, 6, 7, 8, 13, 14, 15, 16],
        [1, 6, 3, 8, 9, 14, 11, 16],
    ]


@pytest.mark.parametrize("num_frames", [1, 3, 6])
@pytest.mark.parametrize("temporal_scales", [[1, 2], [1, 2, 3], [2]])
def test_stca_layer_matches_a_literal_reading_of_the_method(clip_dir, num_frames, temporal_scales):
    model = STDDModel.from_pretrained(clip_dir, temporal_scales=temporal_scales, **STCA_KWARGS).eval()
    layer = model.vision_model.encoder.layers[0]
    hidden_states = torch.randn(2 * num_frames, 17, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = literal_stca_layer(layer, hidden_states, num_frames)
        actual = layer(hidden_states, None, num_frames=num_frames)
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------ whole-model behaviour


def test_without_stca_frame_embeddings_equal_clip_image_features(clip_model, clip_dir):
    model = STDDModel.from_pretrained(clip_dir, stca_layers=[]).eval()
    pixel_values = video(batch_size=2, num_frames=3)
    with torch.no_grad():
        frames = model.get_video_features(pixel_values).pooler_output
        expected = clip_model.get_image_features(pixel_values.flatten(0, 1)).pooler_output.view(2, 3, -1)
    assert frames.shape == (2, 3, 16)
    assert (frames - expected).abs().max() <= 1e-5


def test_image_and_text_paths_stay_clip(stdd_model, clip_model):
    images = video(batch_size=3, num_frames=1)[:, 0]
    input_ids = torch.randint(0, 49406, (2, 6))
    input_ids[:, -1] = 49407
    with torch.no_grad():
        torch.testing.assert_close(
            stdd_model.get_image_features(images).pooler_output, clip_model.get_image_features(images).pooler_output
        )
        torch.testing.assert_close(
            stdd_model.get_text_features(input_ids).pooler_output, clip_model.get_text_features(input_ids).pooler_output
        )


@pytest.mark.parametrize("num_frames", [1, 2, 5, 8])
def test_any_number_of_frames_works(stdd_model, num_frames):
    with torch.no_grad():
        output = stdd_model.get_video_features(video(batch_size=1, num_frames=num_frames))
    assert output.pooler_output.shape == (1, num_frames, 16)
    assert output.last_hidden_state.shape == (1, num_frames, 17, 32)
    assert torch.isfinite(output.pooler_output).all()


def test_stca_changes_the_embeddings(stdd_model, clip_model):
    pixel_values = video()
    with torch.no_grad():
        stdd = stdd_model.get_video_features(pixel_values).pooler_output
        clip = clip_model.get_image_features(pixel_values.flatten(0, 1)).pooler_output.view_as(stdd)
    assert (stdd - clip).abs().max() > 1e-3


def test_evaluation_is_deterministic_and_a_batch_equals_videos_one_by_one(stdd_model):
    pixel_values = video(batch_size=3, num_frames=4)
    with torch.no_grad():
        batch = stdd_model.get_video_features(pixel_values).pooler_output
        again = stdd_model.get_video_features(pixel_values).pooler_output
        one_by_one = torch.cat([stdd_model.get_video_features(v[None]).pooler_output for v in pixel_values])
    assert torch.equal(batch, again)
    torch.testing.assert_close(batch, one_by_one, atol=1e-5, rtol=1e-5)


def test_eager_and_sdpa_attention_agree(clip_dir):
    pixel_values = video()
    outputs = {}
    for implementation in ("eager", "sdpa"):
        model = STDDModel.from_pretrained(clip_dir, attn_implementation=implementation, **STCA_KWARGS).eval()
        assert model.config.vision_config._attn_implementation == implementation
        with torch.no_grad():
            outputs[implementation] = model.get_video_features(pixel_values).pooler_output
    torch.testing.assert_close(outputs["eager"], outputs["sdpa"], atol=1e-5, rtol=1e-5)


# The tiny geometry by hand: 2 videos x 3 frames = 6 rows, 2 heads, L = 1 + 4 * 4 = 17 tokens. 2x2 windows: 4 windows of
# 4 slots. Mask rate 0.5 masks int(0.5 * 3 * 16) // (3 * 4) = 2 slots per window: n = 4 * 2 = 8 kept, 1 + n = 9 tokens;
# mask rate 0.25 masks 12 // 12 = 1: n = 12, 1 + n = 13.
SPATIAL_MAP = (6, 2, 17, 17)


@pytest.mark.parametrize(
    "settings, expected_shapes",
    [
        (dict(temporal_scales=[1, 2]), [SPATIAL_MAP, (6, 2, 9, 9), (6, 2, 9, 9)] * 2),
        (dict(stca_layers=[1], temporal_scales=[1, 2, 3], mask_rate=0.25), [SPATIAL_MAP] * 2 + [(6, 2, 13, 13)] * 3),
        (dict(stca_layers=[]), [SPATIAL_MAP] * 2),
    ],
)
def test_output_attentions_records_the_spatial_map_then_one_cross_map_per_scale(clip_dir, settings, expected_shapes):
    """
    The documented maps, layer by layer: an STCA layer records its spatial map over all L tokens, then the cross
    attention map over `[CLS, kept]` of each temporal scale in order; a layer without STCA records CLIP's one map.
    """
    model = STDDModel.from_pretrained(clip_dir, attn_implementation="eager", **STCA_KWARGS, **settings).eval()
    clip = CLIPVisionModel.from_pretrained(clip_dir, attn_implementation="eager").eval()
    pixel_values = video(batch_size=2, num_frames=3)
    with torch.no_grad():
        attentions = model.vision_model(pixel_values, output_attentions=True).attentions
        clip_outputs = clip(pixel_values.flatten(0, 1), output_attentions=True, output_hidden_states=True)
    assert [tuple(attention_map.shape) for attention_map in attentions] == expected_shapes
    for attention_map in attentions:  # every row a probability distribution over the keys
        assert (attention_map >= 0).all()
        torch.testing.assert_close(attention_map.sum(dim=-1), torch.ones(attention_map.shape[:-1]))
    # Up to the first STCA layer the layers see CLIP's own hidden states: plain maps are CLIP's, and the first STCA
    # layer's cross maps are attention over the literal reading's [CLS, mixed kept] sequences of that input.
    stca_layers = model.config.vision_config.stca_layer_indices
    first_stca = stca_layers[0] if stca_layers else clip.config.num_hidden_layers
    expected = list(clip_outputs.attentions[: first_stca + 1])
    if stca_layers:
        layer = model.vision_model.encoder.layers[first_stca]
        with torch.no_grad():
            for sequence in literal_cross_sequences(layer, clip_outputs.hidden_states[first_stca], num_frames=3):
                expected.append(layer.self_attn(layer.layer_norm1(sequence))[1])
    for index, expected_map in enumerate(expected):
        torch.testing.assert_close(attentions[index], expected_map, atol=1e-6, rtol=1e-5, msg=f"map {index}")


def test_gradient_checkpointing_gives_the_same_gradients(clip_dir):
    pixel_values = video()
    gradients = []
    for checkpointing in (False, True):
        model = STDDModel.from_pretrained(clip_dir, **STCA_KWARGS).train()
        if checkpointing:
            model.activation_checkpointing_enable()
            assert all(layer.gradient_checkpointing for layer in model.vision_model.encoder.layers)
        torch.manual_seed(0)
        model.get_video_features(pixel_values).pooler_output.pow(2).sum().backward()
        gradients.append({name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None})
    assert gradients[0].keys() == gradients[1].keys() and len(gradients[0]) > 0
    for name in gradients[0]:
        torch.testing.assert_close(gradients[0][name], gradients[1][name], atol=1e-6, rtol=1e-5)


def test_save_and_load_roundtrip_is_exact(stdd_model, tmp_path):
    stdd_model.save_pretrained(tmp_path)
    reloaded = STDDModel.from_pretrained(tmp_path).eval()
    ignored = {"_name_or_path", "transformers_version"}
    saved, loaded = stdd_model.config.to_dict(), reloaded.config.to_dict()
    assert {k: v for k, v in saved.items() if k not in ignored} == {k: v for k, v in loaded.items() if k not in ignored}
    pixel_values = video()
    with torch.no_grad():
        assert torch.equal(
            stdd_model.get_video_features(pixel_values).pooler_output,
            reloaded.get_video_features(pixel_values).pooler_output,
        )


@pytest.mark.parametrize(
    "pixel_values, message",
    [
        (torch.randn(2, 3, 32), "of shape"),
        (torch.randn(1, 2, 2, 4, 3, 32, 32), "of shape"),
        (torch.randn(1, 4, 3, 48, 48), "frames are 48x48"),
        (torch.randn(1, 4, 4, 32, 32), "has 4 channels"),
        (torch.randn(1, 0, 3, 32, 32), "empty dimension"),
        (torch.zeros(1, 4, 3, 32, 32, dtype=torch.uint8), "must be normalized floats"),
    ],
)
def test_bad_pixel_values_fail_before_any_layer_runs(stdd_model, pixel_values, message):
    calls = []
    hook = stdd_model.vision_model.embeddings.register_forward_pre_hook(lambda *args: calls.append(1))
    try:
        with pytest.raises(ValueError, match=message):
            stdd_model.get_video_features(pixel_values)
    finally:
        hook.remove()
    assert calls == []


def test_get_video_features_refuses_images(stdd_model):
    with pytest.raises(ValueError, match="get_video_features expects pixel_values of shape"):
        stdd_model.get_video_features(torch.randn(2, 3, 32, 32))


# ------------------------------------------------------------------ class scores


def brute_force_scores(video_embeds, text_embeds, scale, prompt_class_ids):
    num_classes = int(prompt_class_ids.max()) + 1
    scores = torch.zeros(video_embeds.shape[0], num_classes)
    for b in range(video_embeds.shape[0]):
        for k in range(num_classes):
            prompts = text_embeds[prompt_class_ids == k]
            sim = scale * video_embeds[b] @ prompts.T  # (T, N_k)
            scores[b, k] = (sim.max(dim=0).values.mean() + sim.max(dim=1).values.mean()) / 2
    return scores


def test_class_scores_match_the_formula_with_unequal_prompt_counts():
    generator = torch.Generator().manual_seed(0)
    video_embeds = torch.nn.functional.normalize(torch.randn(3, 5, 8, generator=generator), dim=-1)
    text_embeds = torch.nn.functional.normalize(torch.randn(7, 8, generator=generator), dim=-1)
    prompt_class_ids = torch.tensor([0, 0, 0, 1, 2, 2, 1])
    expected = brute_force_scores(video_embeds, text_embeds, 10.0, prompt_class_ids)
    torch.testing.assert_close(class_scores(video_embeds, text_embeds, 10.0, prompt_class_ids), expected)
    # Duplicating one class's prompt (cyclic padding) would change a plain mean; here each prompt counts once per copy
    # given, and other classes are untouched by it.
    padded_ids = torch.cat([prompt_class_ids, torch.tensor([1])])
    padded_text = torch.cat([text_embeds, text_embeds[3:4]])
    padded = class_scores(video_embeds, padded_text, 10.0, padded_ids)
    torch.testing.assert_close(padded[:, [0, 2]], expected[:, [0, 2]])


@pytest.mark.parametrize(
    "text_shape, prompt_class_ids, num_classes, message",
    [
        ((5, 8), torch.tensor([0, 0, 2, 2, 2]), None, r"Classes \[1\] have no prompts"),  # would score NaN
        ((5, 8), torch.tensor([0, 1, 1, 2, 2]), 4, r"Classes \[3\] have no prompts"),
        ((5, 8), torch.tensor([0, 1, 1, 2, -1]), None, r"must lie in 0 \.\. 2"),
        ((5, 8), torch.tensor([0, 1, 1, 2, 4]), 4, r"must lie in 0 \.\. 3"),
        ((5, 8), torch.tensor([0.0, 1, 1, 2, 2]), None, "int64 .* class indices, got torch.float32"),
        ((5, 8), [0, 1, 1, 2, 2], None, "int64 .* class indices, got list"),
        ((5, 9), None, None, r"text_embeds must have shape \(num_prompts >= 1, 8\), got \(5, 9\)"),
        ((8,), None, None, r"got \(8,\)"),
        ((0, 8), None, None, r"got \(0, 8\)"),
    ],
)
def test_class_scores_refuse_prompts_they_cannot_score(text_shape, prompt_class_ids, num_classes, message):
    with pytest.raises(ValueError, match=message):
        class_scores(torch.randn(2, 3, 8), torch.randn(text_shape), 10.0, prompt_class_ids, num_classes)


def test_class_scores_take_text_embeds_of_another_dtype():
    video_embeds, text_embeds = torch.randn(2, 3, 8), torch.randn(4, 8)
    expected = class_scores(video_embeds, text_embeds, 10.0)
    torch.testing.assert_close(class_scores(video_embeds, text_embeds.half(), 10.0), expected, atol=1e-2, rtol=1e-2)


def test_one_prompt_per_class_scores_are_the_frame_mean_of_per_frame_logits():
    generator = torch.Generator().manual_seed(1)
    video_embeds = torch.nn.functional.normalize(torch.randn(2, 4, 8, generator=generator), dim=-1)
    text_embeds = torch.nn.functional.normalize(torch.randn(3, 8, generator=generator), dim=-1)
    expected = (5.0 * video_embeds @ text_embeds.T).mean(dim=1)
    torch.testing.assert_close(class_scores(video_embeds, text_embeds, 5.0), expected)


def test_forward_scores_grouped_prompts_and_single_prompts(stdd_model):
    pixel_values = video(batch_size=2, num_frames=3)
    input_ids = torch.randint(0, 49406, (5, 6), generator=torch.Generator().manual_seed(2))
    input_ids[:, -1] = 49407
    prompt_class_ids = torch.tensor([0, 1, 1, 2, 2])
    with torch.no_grad():
        grouped = stdd_model(input_ids=input_ids, pixel_values=pixel_values, prompt_class_ids=prompt_class_ids)
        single = stdd_model(input_ids=input_ids, pixel_values=pixel_values)
        frames = stdd_model.get_video_features(pixel_values).pooler_output
        prompts = stdd_model.get_text_features(input_ids).pooler_output
    frames = frames / frames.norm(dim=-1, keepdim=True)
    prompts = prompts / prompts.norm(dim=-1, keepdim=True)
    scale = stdd_model.logit_scale.exp()
    assert grouped.logits_per_video.shape == (2, 3) and single.logits_per_video.shape == (2, 5)
    torch.testing.assert_close(grouped.logits_per_video, brute_force_scores(frames, prompts, scale, prompt_class_ids))
    torch.testing.assert_close(single.logits_per_video, (scale * frames @ prompts.T).mean(dim=1))
    with torch.no_grad():
        precomputed = stdd_model(
            text_embeds=prompts, pixel_values=pixel_values, prompt_class_ids=prompt_class_ids, labels=torch.tensor([0, 2])
        )
    torch.testing.assert_close(precomputed.logits_per_video, grouped.logits_per_video)
    torch.testing.assert_close(
        precomputed.loss, torch.nn.functional.cross_entropy(grouped.logits_per_video, torch.tensor([0, 2]))
    )


def test_forward_rejects_ambiguous_text_and_mismatched_prompt_classes(stdd_model):
    pixel_values = video(batch_size=1, num_frames=2)
    with pytest.raises(ValueError, match="exactly one of input_ids"):
        stdd_model(pixel_values=pixel_values)
    with pytest.raises(ValueError, match="one class index per prompt"):
        stdd_model(text_embeds=torch.randn(3, 16), pixel_values=pixel_values, prompt_class_ids=torch.tensor([0, 1]))
    stdd_model.vision_model.forward = None  # bad prompts are refused before any video is encoded
    try:
        with pytest.raises(ValueError, match=r"text_embeds must have shape \(num_prompts >= 1, 16\)"):
            stdd_model(text_embeds=torch.randn(3, 19), pixel_values=pixel_values)
        with pytest.raises(ValueError, match=r"Classes \[1\] have no prompts"):
            stdd_model(text_embeds=torch.randn(3, 16), pixel_values=pixel_values, prompt_class_ids=torch.tensor([0, 2, 2]))
    finally:
        del stdd_model.vision_model.forward
