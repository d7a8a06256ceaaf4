"""
The paper's recipe and what it sets: presets and their overrides, the optimizer's parameter groups, the learning-rate
schedule, linear learning-rate scaling, the STCA flags, weight patching and the seen / unseen class count.
"""

import json
import math

import pytest
import torch
from safetensors.torch import load_file
from transformers import CLIPModel, get_cosine_schedule_with_warmup

from hub_card import export_repo
from modeling_stdd import STDDModel, STDDProcessor
from modeling_stdd.askg import LabelTexts
from tests.conftest import tiny_clip_config
from training import evaluate_zero_shot
from training.arguments import parse_args
from training.objective import STDDTrainingModule
from training.optim import learning_rate_factor, parameter_groups, scaled_learning_rate, warmup_cosine_schedule
from training.protocols import class_overlap
from training.recipe import TRAINING_RECIPES, check_model_overrides, stca_overrides
from training.run_record import RUN_RECORD_NAME
from training.train import main
from training.weight_patching import patch_weights, patched_model


# ----------------------------------------------------------------------------------------------------------------------
# Presets
# ----------------------------------------------------------------------------------------------------------------------


def test_your_data_defaults_to_the_paper_recipe_and_each_flag_overrides_it(tiny_clip_dir, tmp_path):
    args = parse_args(["--base-model", str(tiny_clip_dir), "--train-data", str(tmp_path)])
    assert args.recipe == "paper"
    # The authors' released recipe, STDD_METHOD.md section 6 (their train_tclip_k400.sh and config).
    assert (args.learning_rate, args.learning_rate_batch_size, args.batch_size, args.epochs) == (3.33e-6, 32, 32, 22)
    assert (args.warmup_epochs, args.min_lr_ratio, args.weight_decay, args.max_grad_norm) == (2, 0.01, 0.01, 1.0)
    assert args.train_logit_scale and args.distillation_weight == 2.0 and args.average_epochs == "from:2"
    assert (args.mask_rate, args.mask_stride, args.channel_fold, args.temporal_scales) == (0.5, [1, 2, 2], 32, [1, 2])
    assert args.mixed_precision == ("fp16" if torch.cuda.is_available() else "no")
    overridden = parse_args(["--base-model", str(tiny_clip_dir), "--train-data", str(tmp_path),
                             "--learning-rate", "1e-5", "--channel-fold", "16", "--freeze-logit-scale"])
    assert (overridden.learning_rate, overridden.channel_fold, overridden.train_logit_scale) == (1e-5, 16, False)
    assert overridden.epochs == 22


def test_a_config_file_overrides_the_recipe_and_flags_override_the_file(tiny_clip_dir, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(f"base-model: {tiny_clip_dir}\ntrain-data: {tmp_path}\nepochs: 5\nmin-lr-ratio: 0.1\n")
    args = parse_args(["--config", str(config), "--min-lr-ratio", "0"])
    assert (args.recipe, args.epochs, args.min_lr_ratio, args.learning_rate) == ("paper", 5, 0.0, 3.33e-6)


def test_the_embedded_job_keeps_its_own_settings():
    args = parse_args([])
    assert args.recipe == "embedded"
    assert (args.learning_rate, args.learning_rate_batch_size, args.batch_size, args.epochs) == (3e-3, 16, 16, 12)
    assert (args.min_lr_ratio, args.train_logit_scale, args.distillation_weight) == (0.0, False, 0.0)
    assert (args.mask_rate, args.channel_fold, args.average_epochs) == (0.0, 16, "last:3")
    assert args.mask_stride is None and args.temporal_scales is None  # the base model's


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--recipe", "paper"], "--recipe paper is for your data: give --train-data"),
        (["--recipe", "embedded", "--train-data", "x", "--base-model", "y"], "--recipe embedded is for the embedded"),
        (["--recipe", "mine"], "invalid choice: 'mine'"),
        (["--stca-layers", "first"], "--stca-layers: expected 'all', 'none' or layer indices"),
        (["--min-lr-ratio", "1"], "--min-lr-ratio must be in [0, 1)"),
        (["--mask-stride", "1", "2"], "--mask-stride: expected 3 arguments"),
    ],
)
def test_bad_recipe_and_stca_arguments_get_a_clear_message(arguments, message, capsys):
    with pytest.raises(SystemExit):
        parse_args(arguments)
    assert message in capsys.readouterr().err


def test_stca_settings_are_checked_by_the_config_against_the_base_model(tiny_clip_dir):
    config = check_model_overrides(str(tiny_clip_dir), {"channel_fold": 8, "temporal_scales": [1]})
    assert (config.vision_config.channel_fold, config.vision_config.temporal_scales) == (8, [1])
    with pytest.raises(ValueError, match=r"--channel-fold 64 do not fit the base model .*channel_fold must be"):
        check_model_overrides(str(tiny_clip_dir), {"channel_fold": 64})  # the tiny model is 32 channels wide


def test_evaluation_recipe_expands_and_flags_override_it():
    base = ["--model", "m", "--data", "d", "--output", "o.json"]
    assert evaluate_zero_shot.parse_args(base).num_clips == 1
    paper = evaluate_zero_shot.parse_args([*base, "--recipe", "paper"])
    assert (paper.num_clips, paper.num_crops) == (3, 1)
    assert paper.mixed_precision == ("fp16" if torch.cuda.is_available() else "no")
    assert evaluate_zero_shot.parse_args([*base, "--recipe", "paper", "--num-clips", "2"]).num_clips == 2


def test_test_time_temporal_shuffle_permutes_the_fixed_masks_in_time(tiny_clip_dir):
    model = STDDModel.from_pretrained(tiny_clip_dir, evaluation_temporal_shuffle=True).eval()
    layer = model.vision_model.encoder.layers[0]
    grid = layer.config.patch_grid
    torch.manual_seed(0)
    shuffled = layer.sample_kept_patches(16, 4, grid, "cpu")  # (videos, frames, kept)
    layer.config.evaluation_temporal_shuffle = False
    fixed = layer.sample_kept_patches(1, 4, grid, "cpu")[0]
    assert torch.equal(layer.sample_kept_patches(1, 4, grid, "cpu")[0], fixed)  # deterministic by default
    for video in shuffled:  # every frame keeps one of the fixed frames' patches, each frame's pattern once
        assert sorted(video.tolist()) == sorted(fixed.tolist())
    assert any(not torch.equal(video, fixed) for video in shuffled)


# ----------------------------------------------------------------------------------------------------------------------
# Optimizer and schedule
# ----------------------------------------------------------------------------------------------------------------------


def test_parameter_groups_leave_biases_and_1d_parameters_undecayed(tiny_clip_dir):
    model = STDDModel.from_pretrained(tiny_clip_dir)
    module = STDDTrainingModule(model, distillation_weight=2.0, train_logit_scale=True)
    decayed, undecayed = parameter_groups(module, weight_decay=0.01)
    assert (decayed["weight_decay"], undecayed["weight_decay"]) == (0.01, 0.0)
    names = {id(parameter): name for name, parameter in module.named_parameters()}
    decayed_names = {names[id(parameter)] for parameter in decayed["params"]}
    undecayed_names = {names[id(parameter)] for parameter in undecayed["params"]}
    # Picked by hand from the authors' rule (ZERO_WD_1D_PARAM: `len(p.shape) == 1 or name.endswith(".bias")`).
    for name in ("model.vision_model.embeddings.class_embedding", "model.vision_model.pre_layrnorm.weight",
                 "model.vision_model.encoder.layers.0.self_attn.q_proj.bias",
                 "model.vision_model.encoder.layers.1.layer_norm2.weight", "model.vision_model.post_layernorm.bias"):
        assert name in undecayed_names
    for name in ("model.vision_model.embeddings.patch_embedding.weight",
                 "model.vision_model.embeddings.position_embedding.weight",
                 "model.vision_model.encoder.layers.0.mlp.fc1.weight", "model.visual_projection.weight",
                 "projector.proj.0.weight",
                 "model.logit_scale"):  # 0-D, so decayed, as in the authors' optimizer
        assert name in decayed_names
    trained = decayed_names | undecayed_names
    assert not any(name.startswith(("model.text_model", "model.text_projection")) for name in trained)
    frozen_scale = STDDTrainingModule(STDDModel.from_pretrained(tiny_clip_dir), 0.0, train_logit_scale=False)
    assert "model.logit_scale" not in {name for name, p in frozen_scale.named_parameters() if p.requires_grad}


def test_schedule_warms_up_from_and_decays_to_a_hundredth_of_the_learning_rate():
    # The authors' run: base lr 3.33e-6, warm-up from 3.33e-8 over 2 of 22 epochs, cosine to 3.33e-8 (their
    # lr_policy: linear warm-up, then COSINE_END_LR + (BASE_LR - COSINE_END_LR) * (cos(pi * (e - 2) / 20) + 1) / 2).
    steps_per_epoch, base = 10, 3.33e-6
    warmup, total = 2 * steps_per_epoch, 22 * steps_per_epoch
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=base)
    scheduler = warmup_cosine_schedule(optimizer, warmup, total, min_lr_ratio=0.01)
    rates = []
    for _ in range(total + 1):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates[0] == pytest.approx(3.33e-8)
    assert rates[warmup // 2] == pytest.approx(3.33e-8 + (base - 3.33e-8) / 2)  # epoch 1: half-way up
    assert rates[warmup] == pytest.approx(base)
    assert rates[12 * steps_per_epoch] == pytest.approx(3.33e-8 + (base - 3.33e-8) * 0.5)  # epoch 12: cos(pi/2)
    assert rates[total] == pytest.approx(3.33e-8)
    assert max(rates) == pytest.approx(base)


def test_schedule_without_floor_is_transformers_cosine_with_warmup():
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=1.0)
    reference = get_cosine_schedule_with_warmup(optimizer, 7, 50)
    for step in range(51):
        assert learning_rate_factor(step, 7, 50, 0.0) == pytest.approx(reference.lr_lambdas[0](step), abs=1e-12)


def test_learning_rate_scales_linearly_with_the_global_batch():
    assert scaled_learning_rate(3.33e-6, 32, 32) == 3.33e-6
    assert scaled_learning_rate(3.33e-6, 4 * 32, 32) == pytest.approx(1.332e-5)
    assert scaled_learning_rate(3e-3, 8, 16) == pytest.approx(1.5e-3)


# ----------------------------------------------------------------------------------------------------------------------
# Weight patching
# ----------------------------------------------------------------------------------------------------------------------


@pytest.fixture
def fine_tuned_dir(tiny_clip_dir, tmp_path):
    """The tiny CLIP with every weight moved, saved as an STDD model with a run record naming its start."""
    model = STDDModel.from_pretrained(tiny_clip_dir)
    torch.manual_seed(1)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter))
    folder = tmp_path / "fine_tuned"
    model.save_pretrained(folder)
    STDDProcessor.from_clip_defaults(image_size=32, num_frames=4).save_pretrained(folder)
    (folder / RUN_RECORD_NAME).write_text(json.dumps({"base_model": str(tiny_clip_dir), "train_classes": ["Waving"]}))
    return folder


@pytest.mark.parametrize("ratio", [0.0, 0.3, 1.0])
def test_patched_weights_interpolate_start_and_fine_tuned(tiny_clip_dir, fine_tuned_dir, ratio):
    start = CLIPModel.from_pretrained(tiny_clip_dir).state_dict()
    fine = STDDModel.from_pretrained(fine_tuned_dir).state_dict()
    model, base_model = patched_model(STDDModel.from_pretrained(fine_tuned_dir), fine_tuned_dir, ratio)
    assert base_model == str(tiny_clip_dir)  # from the run record
    patched = model.state_dict()
    for name in ("vision_model.encoder.layers.0.self_attn.q_proj.weight", "logit_scale",
                 "vision_model.embeddings.position_embedding.weight", "text_model.final_layer_norm.bias"):
        torch.testing.assert_close(patched[name], ratio * start[name] + (1 - ratio) * fine[name])
    assert set(patched) == set(fine)


def test_patching_refuses_another_geometry_and_a_missing_start(tmp_path, fine_tuned_dir):
    wider = STDDModel(STDDModel.config_class(**tiny_clip_config(hidden_size=48).to_dict()))
    with pytest.raises(ValueError, match=r"another geometry .*\(48,\) in the starting model, \(32,\) fine-tuned"):
        patch_weights(STDDModel.from_pretrained(fine_tuned_dir), wider, 0.5)
    (fine_tuned_dir / RUN_RECORD_NAME).unlink()
    with pytest.raises(ValueError, match="needs the starting checkpoint.*give --base-model"):
        patched_model(STDDModel.from_pretrained(fine_tuned_dir), fine_tuned_dir, 0.5)
    with pytest.raises(ValueError, match=r"must be in \[0, 1\]"):
        patch_weights(STDDModel.from_pretrained(fine_tuned_dir), wider, 1.5)


def test_evaluation_scores_the_patched_model_and_counts_seen_classes(
    tiny_clip_dir, fine_tuned_dir, tmp_path, make_video, monkeypatch
):
    evaluated = []
    predict = evaluate_zero_shot.predict

    def recording_predict(model, *args, **kwargs):
        evaluated.append({name: weight.clone() for name, weight in model.state_dict().items()})
        return predict(model, *args, **kwargs)

    monkeypatch.setattr(evaluate_zero_shot, "predict", recording_predict)
    for name in ("waving", "clapping"):
        (tmp_path / "data" / name).mkdir(parents=True)
        make_video(f"{name}.mp4", num_frames=8).rename(tmp_path / "data" / name / "0.mp4")
    results = evaluate_zero_shot.main([
        "--model", str(fine_tuned_dir), "--data", str(tmp_path / "data"), "--patch-ratio", "0.4",
        "--num-workers", "0", "--label-texts", "none", "--output", str(tmp_path / "out.json"),
    ])
    assert results["weight_patching"] == {"ratio": 0.4, "base_model": str(tiny_clip_dir)}
    start = CLIPModel.from_pretrained(tiny_clip_dir).state_dict()
    fine = STDDModel.from_pretrained(fine_tuned_dir).state_dict()
    name = "vision_model.encoder.layers.0.mlp.fc1.weight"
    torch.testing.assert_close(evaluated[0][name], 0.4 * start[name] + 0.6 * fine[name])
    overlap = results["class_overlap"]["test"]
    assert (overlap["num_seen_in_training"], overlap["seen_in_training"]) == (1, ["waving"])
    assert overlap["description"] == "1 of 2 evaluation classes seen in training"


def test_export_writes_the_patched_weights(tiny_clip_dir, fine_tuned_dir, tmp_path):
    export_repo(fine_tuned_dir, tmp_path / "hub", patch_ratio=0.25)
    exported = load_file(tmp_path / "hub" / "model.safetensors")
    start = CLIPModel.from_pretrained(tiny_clip_dir).state_dict()
    fine = STDDModel.from_pretrained(fine_tuned_dir).state_dict()
    name = "vision_model.encoder.layers.1.mlp.fc2.weight"
    torch.testing.assert_close(exported[name], 0.25 * start[name] + 0.75 * fine[name])
    card = (tmp_path / "hub" / "README.md").read_text()
    assert f"0.25 x the starting checkpoint\n`{tiny_clip_dir}` + 0.75 x the fine-tuned weights" in card


# ----------------------------------------------------------------------------------------------------------------------
# Seen or unseen, and what a run records
# ----------------------------------------------------------------------------------------------------------------------


def test_class_overlap_matches_names_whatever_their_spelling():
    overlap = class_overlap(["ApplyEyeMakeup", "running"], ["apply eye makeup", "sitting", "Running"])
    assert (overlap.seen, overlap.zero_shot) == (["apply eye makeup", "Running"], False)
    assert overlap.describe() == "2 of 3 evaluation classes seen in training"
    assert class_overlap(["a"], ["b", "c"]).describe() == "2 unseen classes"


def test_a_run_records_its_settings_and_how_many_evaluation_classes_it_saw(
    tiny_clip_dir, tmp_path, make_video, capsys
):
    for split, classes in (("train", ("clapping", "waving")), ("eval", ("Clapping", "sitting"))):
        for name in classes:
            (tmp_path / split / name).mkdir(parents=True)
            for index in range(2):
                make_video(f"{split}-{name}-{index}.mp4", num_frames=8).rename(tmp_path / split / name / f"{index}.mp4")
    LabelTexts({"clapping": ["hands clapping."]}).save(tmp_path / "texts.json")
    results = main([
        "--base-model", str(tiny_clip_dir), "--train-data", str(tmp_path / "train"),
        "--eval-data", str(tmp_path / "eval"), "--label-texts", str(tmp_path / "texts.json"),
        "--output-dir", str(tmp_path / "out"), "--num-frames", "4", "--batch-size", "2", "--num-workers", "0",
        "--learning-rate", "1e-3", "--max-steps", "1", "--channel-fold", "16", "--temporal-scales", "1",
        "--no-temporal-shuffle", "--stca-layers", "1",
    ])
    log = capsys.readouterr().out
    assert "1 of 2 evaluation classes seen in training" in log and "zero-shot on" not in log
    assert results["class_overlap"]["num_seen_in_training"] == 1
    assert results["class_overlap"]["seen_in_training"] == ["clapping"]
    assert results["training"]["stdd"]["learning_rate"] == pytest.approx(1e-3 * 2 / 32)
    settings = results["settings"]
    assert settings["recipe"] == "paper" and settings["recipe_settings"]["channel_fold"] == 16
    assert settings["recipe_settings"]["epochs"] == 22 and settings["recipe_settings"]["learning_rate"] == 1e-3
    assert set(TRAINING_RECIPES["paper"]) >= {"channel_fold", "learning_rate", "average_epochs"}
    saved = tmp_path / "out" / "model"
    vision_config = STDDModel.from_pretrained(saved).config.vision_config
    assert (vision_config.channel_fold, vision_config.temporal_scales) == (16, [1])
    assert (vision_config.temporal_shuffle, vision_config.stca_layers) == (False, [1])
    record = json.loads((saved / RUN_RECORD_NAME).read_text())
    assert record["base_model"] == str(tiny_clip_dir) and record["train_classes"] == ["clapping", "waving"]
    assert record["class_overlap"]["num_seen_in_training"] == 1

    export_repo(saved, tmp_path / "hub", eval_results=tmp_path / "out" / "eval_results.json")
    card = (tmp_path / "hub" / "README.md").read_text()
    assert "classes not seen in training" not in card and "held-out classes" not in card
    assert "Results, not zero-shot (1 of 2 evaluation classes seen in training)" in card
    assert "Settings of its training run (recipe `paper`)" in card and "| `channel_fold` | `16` |" in card
    assert not math.isnan(results["zero_shot"]["stdd"]["top1"])


def test_the_readme_commands_for_reproducing_the_paper_parse(tmp_path):
    """The commands of the README's "Reproducing the paper" (they need the data sets to run) use existing flags."""
    import shlex
    from pathlib import Path

    from hub_card.__main__ import build_parser as hub_card_parser

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("## Reproducing the paper", 1)[1]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    commands = [shlex.split(line) for line in block.replace("\\\n", " ").splitlines()
                if line.strip() and not line.lstrip().startswith("#")]
    scripts = []
    for words in commands:
        if "training/train.py" in words:
            args = parse_args(words[words.index("training/train.py") + 1:])
            assert (args.recipe, args.batch_size, args.learning_rate, args.average_epochs) == (
                "paper", 8, 3.33e-6, "from:2")
        elif "training/evaluate_zero_shot.py" in words:
            assert evaluate_zero_shot.parse_args(words[words.index("training/evaluate_zero_shot.py") + 1:]).num_clips == 3
        else:
            assert words[:3] == ["python", "-m", "hub_card"]
            hub_card_parser().parse_args(words[3:])
        scripts.append(next(word for word in words if word.endswith(".py") or word == "hub_card"))
    assert scripts.count("training/evaluate_zero_shot.py") == 3 and len(scripts) == 5


def test_stca_settings_come_from_a_config_file_like_flags(tiny_clip_dir, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(f"base-model: {tiny_clip_dir}\ntrain-data: {tmp_path}\nmask-stride: [1, 2, 2]\n"
                      "temporal-scales: [1]\nstca-layers: none\ntemporal-shuffle: false\n")
    args = parse_args(["--config", str(config)])
    assert (args.mask_stride, args.temporal_scales, args.temporal_shuffle) == ([1, 2, 2], [1], False)
    assert stca_overrides(args)["stca_layers"] == []


def test_the_card_calls_results_zero_shot_only_when_recorded_disjoint(tmp_path):
    from hub_card.card import evaluation_scope

    disjoint = class_overlap(["a"], ["b", "c"]).to_dict()
    seen = class_overlap(["a", "b"], ["b", "c"]).to_dict()
    cases = {
        "zero_shot.json": ({"zero_shot": {"stdd": {"top1": 50.0}}, "class_overlap": disjoint},
                           "Zero-shot results (classes not seen in training):"),
        "per_split.json": ({"protocol": "ucf101", "mean": {}, "std": {}, "class_overlap": {"1": disjoint, "2": seen}},
                           "Results, not zero-shot (1 of 2 evaluation classes seen in training):"),
        "unknown.json": ({"protocol": "ucf101", "mean": {}, "std": {}},
                         "Results (whether the evaluation classes were seen in training was not recorded):"),
    }
    for name, (data, heading) in cases.items():
        (tmp_path / name).write_text(json.dumps(data))
        assert evaluation_scope(tmp_path / name) == heading


def test_every_recipe_setting_is_an_option_of_its_script():
    from training.recipe import EVALUATION_RECIPES, apply_recipe
    from training.arguments import build_parser

    for recipe in TRAINING_RECIPES.values():
        apply_recipe(build_parser(), recipe)
    for recipe in EVALUATION_RECIPES.values():
        apply_recipe(evaluate_zero_shot.build_parser(), recipe)
    with pytest.raises(ValueError, match=r"the recipe sets \['no_such_option'\]"):
        apply_recipe(build_parser(), {"no_such_option": 1})


def test_the_paper_recipe_sets_the_authors_frames_crops_and_views(tiny_clip_dir, tmp_path):
    train_args = parse_args(["--base-model", str(tiny_clip_dir), "--train-data", str(tmp_path)])
    assert (train_args.frame_sampling, train_args.sampling_rate) == ("dense", 16)
    assert (train_args.train_crop, train_args.flip_probability) == ("jitter", 0.5)
    eval_args = evaluate_zero_shot.parse_args(["--model", "m", "--data", "d", "--output", "o.json", "--recipe", "paper"])
    assert (eval_args.frame_sampling, eval_args.sampling_rate, eval_args.view_aggregation) == ("dense", 16, "logit-sum")
    embedded = parse_args([])
    assert (embedded.frame_sampling, embedded.train_crop, embedded.flip_probability) == ("segments", "random-resized", 0.0)
