"""Converting OpenAI CLIP files and PySlowFast checkpoints, checked against open_clip's OpenAI CLIP."""

import argparse

import pytest
import torch
from checkpoint_testing import (
    TINY_TEXT,
    TINY_VISION,
    open_clip_module,
    open_clip_reference,
    pyslowfast_checkpoint,
    save_torchscript_archive,
    tiny_openai_state_dict,
)
from safetensors.torch import save_file

from modeling_stdd import STDDModel, STDDProcessor, STDDVisionConfig
from modeling_stdd.convert_checkpoint import CheckpointError, convert_checkpoint, main


TEXTS = ["a video of a person dancing.", "playing guitar", "a person riding a bike down a hill, fast &amp; far"]


@pytest.fixture(scope="module")
def openai_state_dict():
    return tiny_openai_state_dict()


@pytest.fixture(scope="module")
def images():
    size = TINY_VISION["image_size"]
    return torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(5))


def assert_features_match_open_clip(output_dir, state_dict, images):
    """The converted model's image and text features equal open_clip's for the same OpenAI tensors, to 1e-5."""
    reference = open_clip_reference(state_dict)
    model = STDDModel.from_pretrained(output_dir).eval()
    processor = STDDProcessor.from_pretrained(output_dir)
    text_inputs = processor.tokenizer(TEXTS, padding=True, return_tensors="pt")
    openai_tokens = open_clip_module("tokenizer").tokenize(TEXTS, context_length=TINY_TEXT["context_length"])
    with torch.no_grad():
        image_features = model.get_image_features(pixel_values=images).pooler_output
        text_features = model.get_text_features(**text_inputs).pooler_output
        expected_image, expected_text = reference.encode_image(images), reference.encode_text(openai_tokens)
    assert expected_image.abs().mean() > 0.1 and expected_text.abs().mean() > 0.1
    torch.testing.assert_close(image_features, expected_image, atol=1e-5, rtol=0)
    torch.testing.assert_close(text_features, expected_text, atol=1e-5, rtol=0)
    torch.testing.assert_close(model.logit_scale.detach(), reference.logit_scale.detach(), atol=0, rtol=0)


def test_openai_state_dict_converts_to_open_clips_features(openai_state_dict, images, tmp_path):
    torch.save(openai_state_dict, tmp_path / "ViT-tiny.pt")
    result = convert_checkpoint(tmp_path / "ViT-tiny.pt", tmp_path / "stdd")

    assert result.layout == "openai-torch" and result.ignored == []
    config = STDDModel.from_pretrained(tmp_path / "stdd").config
    vision, text = config.vision_config, config.text_config
    assert (vision.hidden_size, vision.num_hidden_layers, vision.num_attention_heads) == (128, 2, 2)
    assert (vision.patch_size, vision.image_size, vision.intermediate_size) == (16, 32, 512)
    assert (text.hidden_size, text.num_hidden_layers, text.num_attention_heads) == (128, 2, 2)
    assert (text.max_position_embeddings, text.vocab_size, text.eos_token_id) == (77, 49408, 49407)
    assert vision.hidden_act == text.hidden_act == "quick_gelu" and config.projection_dim == 32
    assert_features_match_open_clip(tmp_path / "stdd", openai_state_dict, images)
    processor = STDDProcessor.from_pretrained(tmp_path / "stdd")
    assert processor.video_processor.crop_size.height == 32 and processor.tokenizer.model_max_length == 77


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated", "ignore:`torch.jit.load` is deprecated")
def test_openai_torchscript_archive_converts(openai_state_dict, images, tmp_path):
    archive = save_torchscript_archive(openai_state_dict, tmp_path / "ViT-tiny.pt")
    loaded = torch.jit.load(str(archive)).state_dict()
    assert {"input_resolution", "context_length", "vocab_size", "visual.proj"} <= set(loaded)
    result = convert_checkpoint(archive, tmp_path / "stdd", vision_settings={"temporal_scales": [1], "num_frames": 4})

    assert result.layout == "openai-torchscript"
    config = STDDModel.from_pretrained(tmp_path / "stdd").config.vision_config
    assert (config.temporal_scales, config.num_frames) == ([1], 4)
    assert STDDProcessor.from_pretrained(tmp_path / "stdd").video_processor.num_frames == 4
    # The archive holds float16 weights, as OpenAI's do; the reference gets the same rounded values.
    half_rounded = {key: value.half().float() for key, value in openai_state_dict.items()}
    assert_features_match_open_clip(tmp_path / "stdd", half_rounded, images)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")
def test_torchscript_metadata_must_agree_with_the_tensors(openai_state_dict, tmp_path):
    archive = save_torchscript_archive(openai_state_dict, tmp_path / "ViT-tiny.pt", input_resolution=224)
    with pytest.raises(CheckpointError, match=r"ViT-tiny\.pt: input_resolution is 224, but the tensors give 32"):
        convert_checkpoint(archive, tmp_path / "stdd")


@pytest.mark.parametrize("wrapped", [True, False])
def test_pyslowfast_checkpoint_converts_the_tuned_clip_and_lists_the_rest(openai_state_dict, images, tmp_path, wrapped):
    torch.save(pyslowfast_checkpoint(openai_state_dict, wrapped=wrapped), tmp_path / "checkpoint_epoch_00003.pyth")
    result = convert_checkpoint(tmp_path / "checkpoint_epoch_00003.pyth", tmp_path / "stdd")

    assert result.layout == "pyslowfast"
    ignored = "\n".join(result.ignored)
    for part in ("epoch", "optimizer_state", "cfg", "raw_model.* (62 tensors): the frozen copy", "projector_v.*"):
        assert part in ignored
    # The tuned CLIP under model., not the raw copy: the features are those of `openai_state_dict`.
    assert_features_match_open_clip(tmp_path / "stdd", openai_state_dict, images)
    # The STDD settings the checkpoint's cfg records (STDD_CODE_CFG).
    vision = STDDModel.from_pretrained(tmp_path / "stdd").config.vision_config
    assert (vision.channel_fold, vision.temporal_scales, vision.num_frames) == (16, [1], 8)
    assert any("STDD settings from the checkpoint's cfg" in note for note in result.notes)


def test_given_settings_override_the_checkpoints_other_temporal_models_get_the_defaults(openai_state_dict, tmp_path):
    torch.save(pyslowfast_checkpoint(openai_state_dict), tmp_path / "stdd.pyth")
    convert_checkpoint(tmp_path / "stdd.pyth", tmp_path / "a", vision_settings={"temporal_scales": [1, 2, 3]})
    vision = STDDModel.from_pretrained(tmp_path / "a").config.vision_config
    assert (vision.temporal_scales, vision.channel_fold) == ([1, 2, 3], 16)

    open_vclip_cfg = {"DATA": {"NUM_FRAMES": 16}, "MODEL": {"TEMPORAL_MODELING_TYPE": "expand_temporal_view"}}
    torch.save(pyslowfast_checkpoint(openai_state_dict, cfg=open_vclip_cfg), tmp_path / "open_vclip.pyth")
    result = convert_checkpoint(tmp_path / "open_vclip.pyth", tmp_path / "b")
    defaults = STDDVisionConfig()
    vision = STDDModel.from_pretrained(tmp_path / "b").config.vision_config
    assert (vision.num_frames, vision.channel_fold) == (defaults.num_frames, defaults.channel_fold)
    assert "'expand_temporal_view', not STDD's 'stcross_attend'" in result.notes[0]


def test_safetensors_state_dict_converts(openai_state_dict, images, tmp_path):
    save_file({key: value.contiguous() for key, value in openai_state_dict.items()}, tmp_path / "clip.safetensors")
    assert convert_checkpoint(tmp_path / "clip.safetensors", tmp_path / "stdd").layout == "openai-safetensors"
    assert_features_match_open_clip(tmp_path / "stdd", openai_state_dict, images)


def test_command_line_says_what_it_wrote_and_left_out(openai_state_dict, tmp_path, capsys):
    torch.save(pyslowfast_checkpoint(openai_state_dict), tmp_path / "checkpoint.pyth")
    argv = [str(tmp_path / "checkpoint.pyth"), str(tmp_path / "stdd"), "--temporal-scales", "1", "2", "3"]
    assert main([*argv, "--no-temporal-shuffle", "--dtype", "float16"]) == 0

    out = capsys.readouterr().out
    assert "pyslowfast layout" in out and "ViT width 128, 2 layers, 2 heads, patch 16, 32 px" in out
    assert "left out: raw_model.* (62 tensors)" in out and "left out: optimizer_state" in out
    model = STDDModel.from_pretrained(tmp_path / "stdd")
    assert model.config.vision_config.temporal_scales == [1, 2, 3] and not model.config.vision_config.temporal_shuffle
    assert model.dtype == torch.float16

    assert main(argv) == 1
    assert "exists and is not empty; pass --overwrite" in capsys.readouterr().err
    assert main([*argv, "--overwrite", "--temporal-scales", "1"]) == 0
    assert STDDModel.from_pretrained(tmp_path / "stdd").config.vision_config.temporal_scales == [1]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["checkpoint.pyth", "stdd"]


def test_num_heads_overrides_openais_rule(tmp_path):
    state_dict = tiny_openai_state_dict(width=96)
    torch.save(state_dict, tmp_path / "clip.pt")
    with pytest.raises(CheckpointError, match=r"vision width 96 is not a multiple of 64.*--num-heads"):
        convert_checkpoint(tmp_path / "clip.pt", tmp_path / "stdd")
    convert_checkpoint(tmp_path / "clip.pt", tmp_path / "stdd", vision_num_heads=3)
    assert STDDModel.from_pretrained(tmp_path / "stdd").config.vision_config.num_attention_heads == 3


def save(tmp_path, content, name="input.pt"):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save(content, path)
    return path


def test_not_a_checkpoint(tmp_path):
    for content in (b"", b"hello, this is text\n", b"garbage\n", b"PK\x03\x04 broken zip"):
        with pytest.raises(CheckpointError, match=r"input\.pt: not a PyTorch checkpoint"):
            convert_checkpoint(save(tmp_path, content), tmp_path / "stdd")
    with pytest.raises(CheckpointError, match=r"input\.pt: holds a list, not a state dict"):
        convert_checkpoint(save(tmp_path, [torch.zeros(2)]), tmp_path / "stdd")
    with pytest.raises(CheckpointError, match=r"missing\.pt: no such file"):
        convert_checkpoint(tmp_path / "missing.pt", tmp_path / "stdd")
    assert not (tmp_path / "stdd").exists()


def test_unknown_layout_lists_the_first_keys(tmp_path):
    content = {"encoder.weight": torch.zeros(2), "decoder.weight": torch.zeros(2)}
    with pytest.raises(CheckpointError, match=r"input\.pt: unknown layout.*First keys: encoder\.weight, decoder\."):
        convert_checkpoint(save(tmp_path, content), tmp_path / "stdd")
    content = {"model_state": {"module.backbone.visual.proj": torch.zeros(2)}}
    with pytest.raises(CheckpointError, match=r"unknown layout.*First keys: module\.backbone\.visual\.proj"):
        convert_checkpoint(save(tmp_path, content), tmp_path / "stdd")


def test_resnet_clip_is_refused(tmp_path):
    content = {"visual.layer1.0.conv1.weight": torch.zeros(1), "visual.attnpool.positional_embedding": torch.zeros(1)}
    with pytest.raises(CheckpointError, match=r"input\.pt: a ResNet CLIP.*ViT"):
        convert_checkpoint(save(tmp_path, content), tmp_path / "stdd")
    content = {"model_state": {f"model.{key}": value for key, value in content.items()}}
    with pytest.raises(CheckpointError, match=r"a ResNet CLIP"):
        convert_checkpoint(save(tmp_path, content), tmp_path / "stdd")


def test_shapes_that_disagree_are_named(openai_state_dict, tmp_path):
    content = dict(openai_state_dict, text_projection=torch.zeros(128, 48))
    with pytest.raises(CheckpointError, match=r"input\.pt: tensor shapes that disagree.*text_projection \(128, 48\)"):
        convert_checkpoint(save(tmp_path, content), tmp_path / "stdd")
    content = dict(openai_state_dict)
    content["visual.transformer.resblocks.1.mlp.c_proj.weight"] = torch.zeros(128, 256)
    with pytest.raises(CheckpointError, match=r"visual\.transformer\.resblocks\.1\.mlp\.c_proj\.weight \(128, 256\)"):
        convert_checkpoint(save(tmp_path, content), tmp_path / "stdd")
    content = {key: value for key, value in openai_state_dict.items() if key != "transformer.resblocks.1.ln_2.bias"}
    with pytest.raises(CheckpointError, match=r"tensors missing: transformer\.resblocks\.1\.ln_2\.bias"):
        convert_checkpoint(save(tmp_path, content), tmp_path / "stdd")


def test_modules_stdd_does_not_have_are_refused(openai_state_dict, tmp_path):
    content = pyslowfast_checkpoint(openai_state_dict)
    content["model_state"]["module.model.visual.transformer.resblocks.0.message_fc.weight"] = torch.zeros(128, 128)
    with pytest.raises(CheckpointError, match=r"does not have: visual\.transformer\.resblocks\.0\.message_fc\.weight"):
        convert_checkpoint(save(tmp_path, content), tmp_path / "stdd")


def test_pickled_objects_need_allow_pickle(openai_state_dict, tmp_path):
    model_state = {f"model.{key}": value for key, value in openai_state_dict.items()}
    path = save(tmp_path, {"model_state": model_state, "cfg": argparse.Namespace(lr=1)})
    with pytest.raises(CheckpointError, match=r"input\.pt: holds pickled Python objects.*--allow-pickle"):
        convert_checkpoint(path, tmp_path / "stdd")
    result = convert_checkpoint(path, tmp_path / "stdd", allow_pickle=True)
    assert "cfg (checkpoint entry)" in result.ignored


def test_output_folder_holding_the_input_is_refused(openai_state_dict, tmp_path):
    (tmp_path / "stdd").mkdir()
    path = save(tmp_path / "stdd", openai_state_dict, "clip.pt")
    with pytest.raises(CheckpointError, match=r"holds the input"):
        convert_checkpoint(path, tmp_path / "stdd", overwrite=True)
    assert path.is_file()
