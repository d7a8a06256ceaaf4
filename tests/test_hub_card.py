"""Hub export, model card and push: the exported repo loads with plain transformers in a process without stdd."""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub import ModelCard
from huggingface_hub.repocard_data import model_index_to_eval_results
from safetensors import safe_open
from safetensors.torch import load_file

from hub_card import check_model_card, check_repo_folder, export_repo, plan_upload, push_repo, read_eval_results
from hub_card.__main__ import main
from hub_card.card import LICENSE, card_metadata
from hub_card.export import CONFIG_AUTO_MAP, code_files
from modeling_stdd import STDDModel, STDDProcessor, STDDTokenizer
from modeling_stdd.askg import LabelTexts
from modeling_stdd.pipeline_stdd import ZeroShotVideoClassificationPipeline
from modeling_stdd.prompt_sets_stdd import prompts_digest, save_prompt_embeddings
from modeling_stdd.video_io import write_video


REPO_ROOT = Path(__file__).resolve().parent.parent
REPO_ID = "stdd-tests/tiny-stdd"
BASE_MODEL = "openai/clip-vit-base-patch16"
LABEL_TEXTS = {
    "dancing": ["a video of a person dancing.", "a video of a person dancing, where feet move to music."],
    "playing guitar": ["a video of a person playing guitar."],
    "riding a bike": ["a video of a person riding a bike.", "footage of people riding a bike, which uses pedals."],
}
EVAL_RESULTS = {
    "results": [
        {"dataset": "ucf101", "dataset_name": "UCF101", "split": "test", "metric": "accuracy", "value": 0.5},
        {"dataset": "hmdb51", "dataset_name": "HMDB51", "split": "test", "metric": "accuracy", "value": 31.0, "std": 1.2},
    ]
}
EXPECTED_CODE_FILES = {
    "checkpoint_files.py",  # the model's check of a local folder before loading
    "configuration_stdd.py",
    "file_utils.py",  # the pipeline's atomic save
    "hypothesis_template.py",  # the pipeline's template rule
    "modeling_stdd.py",
    "pipeline_stdd.py",
    "processing_stdd.py",
    "prompt_sets_stdd.py",  # the pipeline's label texts, prompts and stored prompt embeddings
    "tokenization_stdd.py",
    "video_download.py",  # the pipeline's bounded URL downloads
    "video_io.py",  # the video processor's display rotation and PyAV decoding
    "video_processing_stdd.py",
    "view_aggregation.py",  # the pipeline's multi-view scores
}


def moving_bars(num_frames=16, height=40, width=64) -> np.ndarray:
    times = np.arange(num_frames)[:, None, None]
    red = ((np.arange(width)[None, None, :] + 3 * times) % 16 < 8) * 255
    green = ((np.arange(height)[None, :, None] + times) % 12 < 6) * 255
    blue = np.broadcast_to(times * 16 % 256, red.shape)
    return np.stack(np.broadcast_arrays(red, green, blue), axis=-1).astype(np.uint8)


def folder_digest(folder: Path) -> dict[str, str]:
    return {
        path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def export_sources(folder: Path) -> tuple[Path, Path]:
    """A label-texts file `actions.json` and an evaluation results file in `folder`."""
    label_texts_file = LabelTexts(LABEL_TEXTS, source="written for the tests").save(folder / "actions.json")
    eval_results_file = folder / "eval_results.json"
    eval_results_file.write_text(json.dumps(EVAL_RESULTS))
    return label_texts_file, eval_results_file


@pytest.fixture(scope="module")
def exported(tiny_clip_dir, tmp_path_factory):
    """The tiny CLIP checkpoint exported with label texts and evaluation results, weights split into shards."""
    folder = tmp_path_factory.mktemp("export")
    label_texts_file, eval_results_file = export_sources(folder)
    result = export_repo(
        tiny_clip_dir,
        folder / "tiny-stdd",
        eval_results=eval_results_file,
        label_texts=[label_texts_file],
        repo_id=REPO_ID,
        base_model=BASE_MODEL,
        datasets=["kinetics400"],
        max_shard_size="100KB",
    )
    return result, label_texts_file


# ----------------------------------------------------------------------------------------------------------------------
# The exported folder
# ----------------------------------------------------------------------------------------------------------------------


def test_export_writes_a_complete_repo_folder(exported):
    result, _ = exported
    repo = result.repo_dir
    assert check_repo_folder(repo) == repo
    config = json.loads((repo / "config.json").read_text())
    assert config["auto_map"] == CONFIG_AUTO_MAP
    assert config["custom_pipelines"]["zero-shot-video-classification"]["impl"] == (
        "pipeline_stdd.ZeroShotVideoClassificationPipeline"
    )
    index = json.loads((repo / "model.safetensors.index.json").read_text())
    shards = set(index["weight_map"].values())
    assert len(shards) > 1 and all((repo / shard).is_file() for shard in shards)
    assert not (repo / "model.safetensors").exists()
    processor_config = json.loads((repo / "processor_config.json").read_text())
    assert processor_config["auto_map"] == {"AutoProcessor": "processing_stdd.STDDProcessor"}
    assert processor_config["video_processor"]["auto_map"] == {
        "AutoVideoProcessor": "video_processing_stdd.STDDVideoProcessor"
    }
    tokenizer_config = json.loads((repo / "tokenizer_config.json").read_text())
    assert tokenizer_config["auto_map"] == {"AutoTokenizer": ["tokenization_stdd.STDDTokenizer", None]}
    assert EXPECTED_CODE_FILES <= set(result.files)
    assert {"label_texts/actions.json", "label_texts/actions.safetensors", "README.md"} <= set(result.files)
    assert LabelTexts.from_file(repo / "label_texts" / "actions.json").texts == LABEL_TEXTS
    assert not [path for path in repo.parent.iterdir() if path.name.startswith(".")], "temporary folders remain"


def test_code_files_are_the_flat_modules_the_auto_map_reaches():
    assert {path.name for path in code_files()} == EXPECTED_CODE_FILES


def test_code_that_imports_a_subpackage_relatively_is_refused(tmp_path):
    for path in code_files():
        (tmp_path / path.name).write_text(path.read_text())
    pipeline_code = (tmp_path / "pipeline_stdd.py").read_text()
    (tmp_path / "pipeline_stdd.py").write_text("from .askg.prompts import LabelTexts\n" + pipeline_code)
    with pytest.raises(ValueError, match=r"pipeline_stdd\.py needs askg\.prompts\.py"):
        code_files(tmp_path)


def test_stored_prompt_embeddings_match_the_text_tower(exported):
    result, _ = exported
    repo = result.repo_dir
    model = STDDModel.from_pretrained(repo).eval()
    tokenizer = STDDTokenizer.from_pretrained(repo)
    prompts, _ = LabelTexts(LABEL_TEXTS).flatten()
    with safe_open(repo / "label_texts" / "actions.safetensors", framework="pt") as file:
        assert file.metadata()["prompts_sha256"] == prompts_digest(prompts)
        stored = file.get_tensor("text_embeds")
    with torch.no_grad():
        encoded = model.get_text_features(**tokenizer(prompts, padding=True, return_tensors="pt")).pooler_output
    torch.testing.assert_close(stored, torch.nn.functional.normalize(encoded, dim=-1), atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------------------------------------------------
# Loading it in a process where stdd cannot be imported
# ----------------------------------------------------------------------------------------------------------------------


BLOCK_STDD = textwrap.dedent(
    """
    import importlib.abc
    import sys


    class BlockStdd(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("modeling_stdd", "hub_card", "training"):
                raise ImportError(f"{name} is blocked: the exported repo must work without stdd")


    sys.meta_path.insert(0, BlockStdd())
    try:
        import modeling_stdd
    except ImportError:
        pass
    else:
        raise SystemExit("modeling_stdd could still be imported")
    import av  # PyAV before decord
    """
)

PARITY_CHECK = textwrap.dedent(
    """
    import json
    import sys

    import torch
    from transformers import AutoModel, AutoProcessor, pipeline

    repo, inputs_file, video_file, output_file = sys.argv[1:]
    model = AutoModel.from_pretrained(repo, trust_remote_code=True).eval()
    processor = AutoProcessor.from_pretrained(repo, trust_remote_code=True)
    inputs = torch.load(inputs_file)
    with torch.no_grad():
        logits = model(**inputs).logits_per_video
    texts = processor.tokenizer(["a video of a person dancing."])["input_ids"]
    classifier = pipeline(model=repo, trust_remote_code=True)
    results = {
        "model_module": type(model).__module__,
        "pipeline_module": type(classifier).__module__,
        "logits": logits.tolist(),
        "input_ids": texts,
        "candidate_labels": classifier(video_file, candidate_labels=["dancing", "playing guitar", "riding a bike"]),
        "label_texts": classifier(video_file, label_texts="actions"),
        "stored_prompts_used": len(classifier._stored_prompt_embeddings),
    }
    with open(output_file, "w") as file:
        json.dump(results, file)
    """
)


def card_examples(card_text: str, repo_dir: Path) -> str:
    """The card's python examples, the repo id pointing at the local export."""
    blocks = re.findall(r"```python\n(.*?)```", card_text, flags=re.DOTALL)
    assert len(blocks) == 3, "the card has a pipeline, a label-texts and an AutoModel example"
    return "\n".join(block.replace(REPO_ID, str(repo_dir)) for block in blocks)


@pytest.fixture(scope="module")
def without_stdd(exported, tmp_path_factory):
    """Runs the card's examples and the parity script in a fresh process that cannot import stdd."""
    result, _ = exported
    folder = tmp_path_factory.mktemp("without_stdd")
    write_video(folder / "video.mp4", moving_bars(), fps=8)
    torch.manual_seed(0)
    inputs = {
        "pixel_values": torch.randn(2, 4, 3, 32, 32),
        "input_ids": torch.tensor([[49406, 320, 1455, 49407], [49406, 2533, 49407, 49407]]),
        "attention_mask": torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]]),
    }
    torch.save(inputs, folder / "inputs.pt")
    script = "\n".join(
        [BLOCK_STDD, card_examples((result.repo_dir / "README.md").read_text(), result.repo_dir), PARITY_CHECK]
    )
    (folder / "run.py").write_text(script)
    environment = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_MODULES_CACHE": str(folder / "modules"),
        "PYTHONPATH": "",
    }
    process = subprocess.run(
        [sys.executable, "run.py", str(result.repo_dir), "inputs.pt", "video.mp4", "results.json"],
        cwd=folder,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-5000:]
    return json.loads((folder / "results.json").read_text()), inputs, folder / "video.mp4"


def test_card_examples_and_remote_code_run_without_stdd(without_stdd):
    results, _, _ = without_stdd
    assert results["model_module"].startswith("transformers_modules.")
    assert results["pipeline_module"].startswith("transformers_modules.")
    assert results["stored_prompts_used"] == sum(len(prompts) for prompts in LABEL_TEXTS.values())


def test_remote_code_gives_the_same_results_as_the_package(without_stdd, exported, tiny_clip_dir):
    results, inputs, video_file = without_stdd
    _, label_texts_file = exported
    from transformers import pipeline

    model = STDDModel.from_pretrained(tiny_clip_dir).eval()
    with torch.no_grad():
        logits = model(**inputs).logits_per_video
    torch.testing.assert_close(torch.tensor(results["logits"]), logits, atol=1e-5, rtol=1e-5)
    assert results["input_ids"] == STDDProcessor.from_clip_defaults(32).tokenizer(["a video of a person dancing."])[
        "input_ids"
    ]

    classifier = pipeline("zero-shot-video-classification", model=str(tiny_clip_dir))
    expected = {
        "candidate_labels": classifier(str(video_file), candidate_labels=list(LABEL_TEXTS)),
        "label_texts": classifier(str(video_file), label_texts=str(label_texts_file)),
    }
    for key, ranking in expected.items():
        assert [entry["label"] for entry in results[key]] == [entry["label"] for entry in ranking], key
        np.testing.assert_allclose(
            [entry["score"] for entry in results[key]], [entry["score"] for entry in ranking], atol=1e-5
        )


# ----------------------------------------------------------------------------------------------------------------------
# Stored prompt embeddings in the pipeline
# ----------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def package_classifier(exported):
    """The pipeline built from the installed package's classes on the exported folder."""
    result, _ = exported
    model = STDDModel.from_pretrained(result.repo_dir).eval()
    return ZeroShotVideoClassificationPipeline(model=model, processor=STDDProcessor.from_pretrained(result.repo_dir))


def test_pipeline_uses_embeddings_stored_for_the_same_prompts_and_model(exported, package_classifier, monkeypatch):
    result, _ = exported
    embeddings_file = result.repo_dir / "label_texts" / "actions.safetensors"
    assert package_classifier.load_prompt_embeddings(LABEL_TEXTS, embeddings_file)
    stored = load_file(embeddings_file)["text_embeds"]
    monkeypatch.setattr(package_classifier, "_prompt_sets", type(package_classifier._prompt_sets)())
    monkeypatch.setattr(package_classifier.model, "get_text_features", None)  # the text tower must not run
    package_classifier(np.zeros((8, 32, 32, 3), dtype=np.uint8), label_texts=LABEL_TEXTS)
    (prompt_set,) = package_classifier._prompt_sets.values()
    torch.testing.assert_close(prompt_set.text_embeds, stored.to(prompt_set.text_embeds.dtype))


def test_pipeline_ignores_embeddings_of_other_prompts(exported, package_classifier, caplog):
    result, _ = exported
    embeddings_file = result.repo_dir / "label_texts" / "actions.safetensors"
    other_texts = {**LABEL_TEXTS, "dancing": ["a video of a person dancing slowly."]}
    assert not package_classifier.load_prompt_embeddings(other_texts, embeddings_file)
    assert "other prompts" in caplog.text


def test_pipeline_ignores_embeddings_of_another_model(package_classifier, tmp_path, caplog):
    prompts, _ = LabelTexts(LABEL_TEXTS).flatten()
    torch.manual_seed(1)
    embeddings_file = save_prompt_embeddings(tmp_path / "actions.json", prompts, torch.randn(len(prompts), 16))
    assert not package_classifier.load_prompt_embeddings(LABEL_TEXTS, embeddings_file)
    assert "another model" in caplog.text


def test_unknown_label_text_set_names_the_repo(package_classifier):
    with pytest.raises(ValueError, match=r"label_texts/kinetics\.json"):
        package_classifier(np.zeros((8, 32, 32, 3), dtype=np.uint8), label_texts="kinetics")


# ----------------------------------------------------------------------------------------------------------------------
# The model card
# ----------------------------------------------------------------------------------------------------------------------


def test_card_passes_the_offline_checks(exported):
    """Offline checks only: `ModelCard.validate()` posts the card to the Hub API and is not called here."""
    result, _ = exported
    card = check_model_card((result.repo_dir / "README.md").read_text())
    metadata = card.data.to_dict()
    assert metadata["library_name"] == "transformers"
    assert metadata["pipeline_tag"] == "video-classification"
    assert metadata["license"] == "mit"
    assert metadata["base_model"] == BASE_MODEL
    assert metadata["datasets"] == ["kinetics400"]
    assert "zero-shot-video-classification" in metadata["tags"]
    [model_index] = metadata["model-index"]
    assert model_index["name"] == "tiny-stdd"
    values = [metric["value"] for entry in model_index["results"] for metric in entry["metrics"]]
    assert values == [0.5, 31.0]
    assert card.data.eval_results[1].dataset_name == "HMDB51"
    assert "arXiv" in card.text and "2412.09895" in card.text
    assert "| `actions` | 3 | 5 | written for the tests |" in card.text


def test_card_checks_catch_missing_fields_sections_and_a_broken_model_index(exported):
    result, _ = exported
    text = (result.repo_dir / "README.md").read_text()
    with pytest.raises(ValueError, match="license"):
        check_model_card(text.replace("license: mit\n", ""))
    with pytest.raises(ValueError, match="Citation"):
        check_model_card(text.replace("## Citation", "## References"))
    with pytest.raises(ValueError, match="model.index"):
        check_model_card(text.replace("- name: tiny-stdd\n", "- results_name: tiny-stdd\n"))
    with pytest.raises(ValueError, match="YAML"):
        check_model_card(ModelCard(text).text)


def test_card_license_is_the_project_license():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"]["text"].lower() == LICENSE


def test_eval_results_errors_name_the_file_entry_and_field(tmp_path):
    path = tmp_path / "results.json"
    results = [{"dataset": "ucf101", "metric": "accuracy", "value": 0.9}, {"dataset": "x"}]
    path.write_text(json.dumps({"results": results}))
    with pytest.raises(ValueError, match=r"results\.json: results\[1\]: missing required fields \['metric', 'value'\]"):
        read_eval_results(path)
    path.write_text(json.dumps([{"dataset": "ucf101", "metric": "accuracy", "value": 0.9, "top5": 1.0}]))
    with pytest.raises(ValueError, match=r"results\[0\]: unknown fields \['top5'\]"):
        read_eval_results(path)


@pytest.mark.parametrize(
    "results, message",
    [
        ({"protocol": "ucf101", "mean": {"top1": 80.0, "top5": 95.0}, "std": {"top1": 1.0}},
         r"std has no value for 'top5', which mean has"),
        ({"protocol": "ucf101", "mean": {"top1": "80"}, "std": {"top1": 1.0}},
         r"mean\['top1'\] must be a finite number, got '80'"),
        ({"protocol": "ucf101", "mean": {"top1": 80.0}, "std": {"top1": None}},
         r"std\['top1'\] must be a finite number, got None"),
        ({"zero_shot": {"stdd": {"top1": None}}}, r"zero_shot\.stdd\['top1'\] must be a finite number, got None"),
        ([{"dataset": "ucf101", "metric": "accuracy", "value": float("nan")}],
         r"results\[0\]: value must be a finite number \(a mean over splits as the number, its spread as \"std\"\), "
         r"got nan"),
        ([{"dataset": "ucf101", "metric": "accuracy", "value": "81.0 ± 1.0"}],
         r"results\[0\]: value must be a finite number"),
        # a diverged run's figures, as a bare NaN in train.py's JSON or as text
        ({"zero_shot": {"stdd": {"top1": float("nan")}}},
         r"zero_shot\.stdd\['top1'\] must be a finite number, got nan"),
        ([{"dataset": "ucf101", "metric": "accuracy", "value": "nan ± 0.0"}],
         r"results\[0\]: value must be a finite number .*got 'nan ± 0.0'"),
        ([{"dataset": "ucf101", "metric": "accuracy", "value": "-Infinity"}],
         r"results\[0\]: value must be a finite number .*got '-Infinity'"),
    ],
)
def test_eval_results_with_missing_or_non_numeric_figures_name_the_file_and_key(tmp_path, results, message):
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    with pytest.raises(ValueError, match=rf"results\.json: {message}"):
        read_eval_results(path)


def test_eval_results_read_the_outputs_of_training_and_zero_shot_evaluation(tmp_path):
    protocol = tmp_path / "ucf101.json"
    protocol.write_text(json.dumps({
        "model": "outputs/stdd/model", "protocol": "ucf101", "views": {"num_clips": 3, "num_crops": 1},
        "splits": {"split_1": {"top1": 80.0, "top5": 95.0}, "split_2": {"top1": 82.0, "top5": 96.0}},
        "mean": {"top1": 81.0, "top5": 95.5}, "std": {"top1": 1.0, "top5": 0.5},
    }))
    results = read_eval_results(protocol)
    assert [(r.dataset_type, r.metric_type, r.metric_value) for r in results] == [
        ("ucf101", "top1_accuracy", 81.0), ("ucf101", "top5_accuracy", 95.5)
    ]
    assert results[0].metric_name == "Top-1 accuracy (mean, std 1.0 over 2 splits)"
    training = tmp_path / "eval_results.json"
    training.write_text(json.dumps({
        "zero_shot": {"stdd": {"top1": 100.0, "top5": 100.0}, "frame_mean_baseline": {"top1": 33.3, "top5": 99.5}},
        "training": {}, "settings": {"job": "embedded synthetic motion", "eval_data": None},
    }))
    results = read_eval_results(training)
    assert [(r.dataset_type, r.metric_type, r.metric_value) for r in results] == [
        ("synthetic-motion", "top1_accuracy", 100.0), ("synthetic-motion", "top5_accuracy", 100.0)
    ]
    model_index = card_metadata("tiny-stdd", eval_results=results).to_dict()["model-index"]
    _, round_trip = model_index_to_eval_results(model_index)
    assert [(r.dataset_type, r.metric_value) for r in round_trip] == [("synthetic-motion", 100.0)] * 2


@pytest.mark.parametrize(
    "eval_data, dataset",
    [
        ("/home/alice/data/ucf101_val.csv", "local-video-data"),
        ("data/ucf101_val.csv", "local-video-data"),
        ("videos/ucf101_val", "local-video-data"),
        (["/home/alice/a.csv", "/home/alice/b.csv"], "local-video-data"),
        ("someone/ucf101-videos", "someone/ucf101-videos"),
        (None, "synthetic-motion"),
    ],
)
def test_training_results_name_the_eval_data_on_the_card_only_when_it_is_a_hub_dataset(
    tmp_path, monkeypatch, eval_data, dataset
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "videos" / "ucf101_val").mkdir(parents=True)
    training = tmp_path / "eval_results.json"
    training.write_text(json.dumps({"zero_shot": {"stdd": {"top1": 61.2}}, "settings": {"eval_data": eval_data}}))
    (result,) = read_eval_results(training)
    assert (result.dataset_type, result.dataset_name) == (dataset, dataset)
    assert "alice" not in card_metadata("tiny-stdd", eval_results=[result]).to_yaml()


# ----------------------------------------------------------------------------------------------------------------------
# Overwriting and failures
# ----------------------------------------------------------------------------------------------------------------------


def test_second_export_without_overwrite_is_refused_and_leaves_the_first_intact(tiny_clip_dir, tmp_path, capsys):
    label_texts_file, _ = export_sources(tmp_path)
    output_dir = tmp_path / "repo"
    export_arguments = ["export", "--model-dir", str(tiny_clip_dir), "--output-dir", str(output_dir)]
    assert main([*export_arguments, "--label-texts", str(label_texts_file)]) == 0
    first = folder_digest(output_dir)

    assert main([*export_arguments, "--repo-id", "someone/else"]) == 1
    assert "pass --overwrite" in capsys.readouterr().err
    assert folder_digest(output_dir) == first

    assert main([*export_arguments, "--repo-id", "someone/else", "--overwrite"]) == 0
    replaced = folder_digest(output_dir)
    assert "label_texts/actions.json" not in replaced
    assert "someone/else" in (output_dir / "README.md").read_text()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["actions.json", "eval_results.json", "repo"]


def test_bad_inputs_are_refused_before_anything_is_written(tiny_clip_dir, tmp_path):
    bad_texts = tmp_path / "bad.json"
    bad_texts.write_text(json.dumps({"dancing": []}))
    with pytest.raises(ValueError, match="dancing"):
        export_repo(tiny_clip_dir, tmp_path / "repo", label_texts=[bad_texts])
    with pytest.raises(FileNotFoundError, match="'kinetics': no such file, and not one of the shipped datasets"):
        export_repo(tiny_clip_dir, tmp_path / "repo", label_texts=["kinetics"])
    with pytest.raises(ValueError, match="invalid repo id"):
        export_repo(tiny_clip_dir, tmp_path / "repo", repo_id="not a repo")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["bad.json"]


def test_export_into_a_folder_that_is_or_holds_an_input_is_refused(tiny_clip_dir, tmp_path):
    run = tmp_path / "outputs" / "run"
    shutil.copytree(tiny_clip_dir, run / "model")
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "epoch_21.pt").write_text("weeks of training")
    label_texts_file, eval_results_file = export_sources(run)
    before = folder_digest(tmp_path)
    refused = [
        (run / "model", run / "model", {}),
        (run / "model", run, {}),
        (run / "model", run / "model" / ".." / "..", {}),
        (tiny_clip_dir, run, {"eval_results": eval_results_file}),
        (tiny_clip_dir, run, {"label_texts": [label_texts_file]}),
    ]
    for model_dir, output_dir, inputs in refused:
        with pytest.raises(ValueError, match=rf"output folder {re.escape(str(output_dir))} is or contains the input"):
            export_repo(model_dir, output_dir, overwrite=True, **inputs)
    assert folder_digest(tmp_path) == before


@pytest.mark.parametrize("as_string", [False, True])
def test_a_single_label_text_source_is_one_set(tiny_clip_dir, tmp_path, as_string):
    label_texts_file, _ = export_sources(tmp_path)
    source = str(label_texts_file) if as_string else label_texts_file
    result = export_repo(tiny_clip_dir, tmp_path / "repo", label_texts=source)
    assert [summary.name for summary in result.label_texts] == ["actions"]


def test_export_failing_midway_leaves_no_folder_behind(tiny_clip_dir, tmp_path, monkeypatch):
    def failing_card(*args):
        raise RuntimeError("card template broke")

    monkeypatch.setattr("hub_card.export.render_model_card", failing_card)
    with pytest.raises(RuntimeError, match="card template broke"):
        export_repo(tiny_clip_dir, tmp_path / "repo")
    assert list(tmp_path.iterdir()) == []


def test_export_of_a_missing_model_folder_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither a saved model folder"):
        export_repo(tmp_path / "nothing", tmp_path / "repo")


# ----------------------------------------------------------------------------------------------------------------------
# Pushing
# ----------------------------------------------------------------------------------------------------------------------


class RecordingApi:
    """Stands in for `HfApi`: records the calls `push_repo` makes."""

    token = "hf_test"

    def __init__(self):
        self.calls = []

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))

    def create_branch(self, repo_id, **kwargs):
        self.calls.append(("create_branch", repo_id, kwargs))

    def upload_folder(self, **kwargs):
        self.calls.append(("upload_folder", kwargs["repo_id"], kwargs))
        return type("Commit", (), {"commit_url": f"https://huggingface.co/{kwargs['repo_id']}/commit/0"})()


def test_push_creates_the_repo_and_uploads_the_folder(exported):
    result, _ = exported
    api = RecordingApi()
    url = push_repo(result.repo_dir, REPO_ID, private=True, revision="v1", commit_message="First", api=api)
    assert url == f"https://huggingface.co/{REPO_ID}/commit/0"
    (create, _, create_kwargs), (branch, _, branch_kwargs), (upload, _, upload_kwargs) = api.calls
    assert (create, branch, upload) == ("create_repo", "create_branch", "upload_folder")
    assert create_kwargs["exist_ok"] and create_kwargs["private"]
    assert branch_kwargs["branch"] == "v1" and branch_kwargs["exist_ok"]
    assert upload_kwargs["folder_path"] == result.repo_dir
    assert (upload_kwargs["revision"], upload_kwargs["commit_message"]) == ("v1", "First")


def test_push_deletes_remote_files_the_export_does_not_hold(exported):
    result, _ = exported
    api = RecordingApi()
    push_repo(result.repo_dir, REPO_ID, api=api)
    _, _, upload_kwargs = api.calls[-1]
    assert upload_kwargs["delete_patterns"] == "*"


def test_push_dry_run_lists_files_and_sizes(exported, capsys):
    result, _ = exported
    assert main(["push", "--repo-dir", str(result.repo_dir), "--repo-id", REPO_ID, "--dry-run", "--private"]) == 0
    output = capsys.readouterr().out
    plan = plan_upload(result.repo_dir)
    assert [path for path, _ in plan.files] == sorted(result.files)
    for path, _ in plan.files:
        assert re.search(rf"^{re.escape(path)}\s+\d+(\.\d)? (B|KiB|MiB)$", output, flags=re.MULTILINE), path
    assert f"{len(plan.files)} files" in output and f"private model repo {REPO_ID} (revision main)" in output
    assert "not listed here would be deleted" in output


@pytest.mark.parametrize("repo_id", ["no-namespace", "a/b/c", "user/bad--name", "user/name.git"])
def test_push_rejects_an_invalid_repo_id(exported, repo_id):
    result, _ = exported
    with pytest.raises(ValueError, match="invalid repo id"):
        push_repo(result.repo_dir, repo_id, dry_run=True)


def test_push_rejects_an_incomplete_folder(exported, tmp_path):
    result, _ = exported
    incomplete = tmp_path / "incomplete"
    incomplete.mkdir()
    for name in ("config.json", "modeling_stdd.py"):
        (incomplete / name).write_bytes((result.repo_dir / name).read_bytes())
    with pytest.raises(ValueError, match=r"missing: .*README\.md.*model\.safetensors.*pipeline_stdd\.py"):
        push_repo(incomplete, REPO_ID, dry_run=True)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        push_repo(tmp_path / "nowhere", REPO_ID, dry_run=True)


def test_push_without_a_token_says_how_to_get_one(exported, monkeypatch, capsys):
    result, _ = exported
    monkeypatch.setattr("hub_card.push.get_token", lambda: None)
    api = RecordingApi()
    api.token = None
    with pytest.raises(PermissionError, match="hf auth login"):
        push_repo(result.repo_dir, REPO_ID, api=api)
    assert api.calls == []
    assert main(["push", "--repo-dir", str(result.repo_dir), "--repo-id", REPO_ID]) == 1
    assert "HF_TOKEN" in capsys.readouterr().err


def broken_copy(repo_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "broken"
    shutil.copytree(repo_dir, copy)
    return copy


def test_push_refuses_truncated_or_mismatched_weights_before_any_upload_in_dry_run_too(exported, tmp_path, capsys):
    result, _ = exported
    repo_dir = broken_copy(result.repo_dir, tmp_path)
    shard = sorted(repo_dir.glob("model-*.safetensors"))[0]
    shard.write_bytes(shard.read_bytes()[:1000])
    api = RecordingApi()
    with pytest.raises(ValueError, match=rf"broken weights; nothing was uploaded.*\n  {shard.name}: .*header"):
        push_repo(repo_dir, REPO_ID, api=api)
    assert api.calls == []
    assert main(["push", "--repo-dir", str(repo_dir), "--repo-id", REPO_ID, "--dry-run"]) == 1
    assert shard.name in capsys.readouterr().err
    # An index that maps a tensor to a shard not holding it, and a padded label-text embeddings file.
    shard.write_bytes((result.repo_dir / shard.name).read_bytes())
    index_path = repo_dir / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    tensor = next(name for name, file in index["weight_map"].items() if file != shard.name)
    index["weight_map"][tensor] = shard.name
    index_path.write_text(json.dumps(index))
    embeddings = next(repo_dir.glob("label_texts/*.safetensors"))
    embeddings.write_bytes(embeddings.read_bytes() + b"\0" * 8)
    with pytest.raises(ValueError) as error_info:
        push_repo(repo_dir, REPO_ID, dry_run=True)
    assert f"maps {tensor} to {shard.name}, which does not hold it" in str(error_info.value)
    assert f"label_texts/{embeddings.name}:" in str(error_info.value)


def test_a_network_failure_of_push_is_one_clear_line(exported, monkeypatch, capsys):
    from hub_card.push import NETWORK_ERRORS

    class UnreachableApi(RecordingApi):
        def create_repo(self, repo_id, **kwargs):
            raise NETWORK_ERRORS[-1]("[Errno 111] Connection refused")

    result, _ = exported
    with pytest.raises(ConnectionError, match=rf"pushing to the Hub repo {REPO_ID} failed: \[Errno 111\] Connection"):
        push_repo(result.repo_dir, REPO_ID, api=UnreachableApi())
    monkeypatch.setattr("hub_card.push.HfApi", UnreachableApi)
    assert main(["push", "--repo-dir", str(result.repo_dir), "--repo-id", REPO_ID]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "Traceback" not in error and "Connection refused" in error


def test_export_removes_the_partial_folders_of_killed_exports_and_says_so(tiny_clip_dir, tmp_path, capsys):
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(finished.stdout)
    stale = tmp_path / f".repo.partial-{dead_pid}-k1ll3d00"
    running = tmp_path / f".repo.partial-{os.getpid()}-running0"
    other_folder = tmp_path / f".other.partial-{dead_pid}-k1ll3d00"
    for folder in (stale, running, other_folder):
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"half a file")
    assert main(["export", "--model-dir", str(tiny_clip_dir), "--output-dir", str(tmp_path / "repo")]) == 0
    assert f"Removed {stale}, left by an export that was interrupted" in capsys.readouterr().out
    assert not stale.exists() and running.is_dir() and other_folder.is_dir()
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted([running.name, other_folder.name, "repo"])
