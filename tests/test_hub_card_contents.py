"""What the exported card says about a trained model folder: numbers, counts, its name, its label sets, its curves."""

import json

import pytest
import yaml

from hub_card import export_repo
from hub_card.__main__ import main as hub_card_main
from modeling_stdd import STDDModel, STDDProcessor
from modeling_stdd.askg import LabelTexts
from training.reporting import TrainingCurves, plot_training_curves


REPO_ID = "someone/stdd-ucf-demo"


@pytest.fixture
def training_output(tiny_clip_dir, tmp_path):
    """A train.py-like output folder: `model/` with its train/eval label sets, the curves picture, the results."""
    output = tmp_path / "outputs" / "stdd"
    model_dir = output / "model"
    STDDModel.from_pretrained(tiny_clip_dir, num_frames=4).save_pretrained(model_dir)
    STDDProcessor.from_clip_defaults(image_size=32, num_frames=4).save_pretrained(model_dir)
    LabelTexts({"waving": ["a person waving."], "clapping": ["hands clapping."]}).save(
        model_dir / "label_texts" / "train.json"
    )
    LabelTexts({"jumping": ["a person jumping."]}).save(model_dir / "label_texts" / "eval.json")
    curves = TrainingCurves(steps=[1, 2, 3], loss=[2.0, 1.5, 1.2], learning_rate=[1e-3, 5e-4, 0.0],
                            epochs=[1], epoch_loss=[1.6])
    plot_training_curves({"stdd": curves}, {"stdd": (1, 40.0)}, output / "training_curves.png", chance=20.0)
    (output / "eval_results.json").write_text(json.dumps({
        "zero_shot": {"stdd": {"top1": 40.0}}, "zero_shot_videos": {"stdd": {"num_videos": 10, "num_unreadable": 0}},
        "class_overlap": {"num_eval_classes": 5, "num_seen_in_training": 0, "seen_in_training": [], "zero_shot": True,
                          "description": "5 unseen classes"},
        "settings": {"eval_data": None},
    }))
    (tmp_path / "ucf101.json").write_text(json.dumps({
        "model": str(model_dir), "protocol": "ucf101", "splits": {"split_1": {"top1": 20.0}, "split_2": {"top1": 30.0}},
        "mean": {"top1": 25.0}, "std": {"top1": 5.0}, "num_videos": {"split_1": 40, "split_2": 38},
        "num_classes": {"split_1": 5, "split_2": 5},
    }))
    return output


def card_parts(repo_dir):
    text = (repo_dir / "README.md").read_text()
    _, metadata, body = text.split("---\n", 2)
    return yaml.safe_load(metadata), body


def test_the_card_of_a_trained_model_folder(training_output, tmp_path):
    result = export_repo(
        training_output / "model", tmp_path / "repo", repo_id=REPO_ID,
        eval_results=[tmp_path / "ucf101.json", training_output / "eval_results.json"],
    )
    metadata, body = card_parts(result.repo_dir)
    (model_index,) = metadata["model-index"]
    assert model_index["name"] == "stdd-ucf-demo"
    assert body.lstrip().startswith("# stdd-ucf-demo\n")
    metrics = [metric for entry in model_index["results"] for metric in entry["metrics"]]
    assert [metric["value"] for metric in metrics] == [25.0, 40.0]
    assert all(isinstance(metric["value"], float) for metric in metrics)
    assert metrics[0]["name"] == "Top-1 accuracy (mean, std 5.0 over 2 splits; 5 classes per split, 40/38 videos per split)"
    assert metrics[1]["name"] == "Top-1 accuracy (5 classes, 10 videos)"
    assert "5 classes per split, 40/38 videos per split" in body
    # the model folder's own label sets, with their embeddings, and the training curves
    assert {"label_texts/train.json", "label_texts/train.safetensors", "label_texts/eval.json",
            "training_curves.png"} <= set(result.files)
    assert "![Training loss, learning rate and zero-shot accuracy per run](training_curves.png)" in body
    assert "## How to use" in body
    assert (f'classifier = pipeline("zero-shot-video-classification", model="{REPO_ID}", trust_remote_code=True)'
            in body)


def test_several_eval_results_files_on_the_command_line(training_output, tmp_path):
    status = hub_card_main([
        "export", "--model-dir", str(training_output / "model"), "--output-dir", str(tmp_path / "repo"),
        "--eval-results", str(tmp_path / "ucf101.json"), str(training_output / "eval_results.json"),
    ])
    assert status == 0
    metadata, body = card_parts(tmp_path / "repo")
    assert metadata["model-index"][0]["name"] == "repo"  # no --repo-id: the folder's name
    assert [entry["dataset"]["type"] for entry in metadata["model-index"][0]["results"]] == ["ucf101", "synthetic-motion"]


def test_a_truncated_weights_file_is_named_by_the_export(training_output, tmp_path, capsys):
    weights = training_output / "model" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    status = hub_card_main(["export", "--model-dir", str(training_output / "model"), "--output-dir",
                            str(tmp_path / "repo")])
    assert status == 1
    assert f"{weights} is truncated or damaged" in capsys.readouterr().err
