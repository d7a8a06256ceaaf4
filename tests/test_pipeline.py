"""The zero-shot-video-classification pipeline, its CLI and its registration."""

import ast
import functools
import http.server
import io
import json
import os
import re
import subprocess
import sys
import threading
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch
from askg_testing import make_entry
from conftest import tiny_clip_config
from PIL import Image
from safetensors.torch import save_file
from transformers import pipeline
from transformers.pipelines import PIPELINE_REGISTRY

import modeling_stdd
from modeling_stdd import STDDModel, STDDProcessor, ZeroShotVideoClassificationPipeline, class_scores
from modeling_stdd.askg import LabelTexts, write_askg_file
from modeling_stdd.askg.schema import CLAUSE_FIELDS, GRAPH_FIELDS
from modeling_stdd.classify_cli import main as classify_main
from modeling_stdd.pipeline_stdd import timeline_frame_times, timeline_windows, window_frame_indices
from modeling_stdd.prompt_sets_stdd import prompts_digest
from modeling_stdd.video_io import write_video
from modeling_stdd.video_processing_stdd import load_video_frames, open_video
from modeling_stdd.view_aggregation import video_scores


REPO = Path(__file__).resolve().parent.parent
TASK = "zero-shot-video-classification"
LABELS = ["running", "swimming", "juggling"]
NUM_FRAMES = 4


@pytest.fixture(scope="module")
def stdd_dir(tmp_path_factory):
    """A tiny saved STDD folder: model (4 frames) and processor."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny_stdd")
    config = modeling_stdd.STDDConfig(**tiny_clip_config(num_frames=NUM_FRAMES).to_dict())
    STDDModel(config).eval().save_pretrained(path)
    STDDProcessor.from_clip_defaults(image_size=32, num_frames=NUM_FRAMES).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def classifier(stdd_dir):
    return pipeline(TASK, model=str(stdd_dir))


@pytest.fixture
def video_path(make_video):
    return make_video("clip.mp4", num_frames=20)


def scores_by_label(predictions: list[dict]) -> dict[str, float]:
    return {prediction["label"]: prediction["score"] for prediction in predictions}


def assert_same_predictions(actual: list[dict], expected: list[dict]):
    assert [prediction["label"] for prediction in actual] == [prediction["label"] for prediction in expected]
    assert [prediction["score"] for prediction in actual] == pytest.approx([p["score"] for p in expected], abs=1e-5)


def manual_probabilities(classifier, video, prompts, num_clips=1, prompt_class_ids=None) -> torch.Tensor:
    """Softmax class scores from the processor and the model's own forward, averaged over views."""
    inputs = classifier.processor(videos=video, text=prompts, return_tensors="pt", num_clips=num_clips)
    pixel_values = inputs["pixel_values"]
    views = pixel_values[0] if num_clips > 1 else pixel_values
    with torch.no_grad():
        outputs = classifier.model(
            input_ids=inputs["input_ids"],
            attention_mask=inputs["attention_mask"],
            pixel_values=views,
            prompt_class_ids=prompt_class_ids,
        )
    return outputs.logits_per_video.softmax(dim=-1).mean(dim=0)


# --------------------------------------------------------------------------------------------------------------
# Registration and loading
# --------------------------------------------------------------------------------------------------------------


def test_task_is_registered_with_stdd_as_the_default_model_class():
    task, task_info, _ = PIPELINE_REGISTRY.check_task(TASK)
    assert task_info["impl"] is ZeroShotVideoClassificationPipeline
    assert task_info["pt"] == (STDDModel,)
    assert task_info["default"]["model"][0] == "openai/clip-vit-base-patch16"


def test_pipeline_loads_stdd_model_and_processor(classifier):
    assert isinstance(classifier, ZeroShotVideoClassificationPipeline)
    assert isinstance(classifier.model, STDDModel)
    assert isinstance(classifier.processor, STDDProcessor)


def test_plain_clip_checkpoint_loads_as_stdd_with_default_processor(tiny_clip_dir, video_path):
    clip_classifier = pipeline(TASK, model=str(tiny_clip_dir))
    assert isinstance(clip_classifier.model, STDDModel)
    assert clip_classifier.video_processor.num_frames == clip_classifier.model.config.vision_config.num_frames
    predictions = clip_classifier(video_path, candidate_labels=LABELS)
    assert sum(prediction["score"] for prediction in predictions) == pytest.approx(1.0)


def test_saved_pipeline_folder_infers_the_task(classifier, tmp_path, video_path):
    """`pipeline(model=folder)` reads the task from the saved config and loads the pipeline code saved with it."""
    classifier.save_pretrained(tmp_path / "saved")
    script = (
        "import sys, json, modeling_stdd\n"
        "from transformers import pipeline\n"
        "classifier = pipeline(model=sys.argv[1], trust_remote_code=True)\n"
        "print(json.dumps([classifier.task, type(classifier).__name__, classifier(sys.argv[2], candidate_labels=sys.argv[3])]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "saved"), str(video_path), ",".join(LABELS)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO), "HF_MODULES_CACHE": str(tmp_path / "modules")},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    task, class_name, predictions = json.loads(result.stdout.strip().splitlines()[-1])
    assert (task, class_name) == (TASK, "ZeroShotVideoClassificationPipeline")
    assert_same_predictions(predictions, classifier(video_path, candidate_labels=LABELS))


def folder_contents(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def test_saving_replaces_the_folder_as_a_whole(stdd_dir, tmp_path, monkeypatch):
    """An interrupted save leaves the previous folder as it was; a finished one keeps the files it does not write."""
    classifier = pipeline(TASK, model=str(stdd_dir))
    saved = tmp_path / "saved"
    classifier.save_pretrained(saved)
    (saved / "notes.txt").write_text("the user's own file")
    before = folder_contents(saved)
    with torch.no_grad():
        classifier.model.logit_scale.fill_(1.0)
    with monkeypatch.context() as patch:
        patch.setattr(type(classifier.processor), "save_pretrained", interrupted)
        with pytest.raises(KeyboardInterrupt):
            classifier.save_pretrained(saved)
    assert folder_contents(saved) == before
    assert [path.name for path in tmp_path.iterdir()] == ["saved"]
    classifier.save_pretrained(saved)
    after = folder_contents(saved)
    assert after.keys() == before.keys() and after["notes.txt"] == before["notes.txt"]
    assert after["model.safetensors"] != before["model.safetensors"]
    assert [path.name for path in tmp_path.iterdir()] == ["saved"]
    with pytest.raises(ValueError, match="notes.txt: it is a file, not a folder"):
        classifier.save_pretrained(saved / "notes.txt")


def interrupted(*args, **kwargs):
    raise KeyboardInterrupt


def test_pipeline_module_imports_only_flat_siblings():
    """Hub remote code only has the sibling files: relative, flat imports; no `modeling_stdd.` at module level."""
    tree = ast.parse((REPO / "modeling_stdd" / "pipeline_stdd.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.level:
            assert node.level == 1 and "." not in (node.module or ""), ast.unparse(node)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [node.module] if isinstance(node, ast.ImportFrom) else [alias.name for alias in node.names]
            assert not any(name.startswith("modeling_stdd") for name in names), ast.unparse(node)


# --------------------------------------------------------------------------------------------------------------
# Scores
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("num_clips", [1, 2])
def test_scores_equal_processor_and_model_forward(classifier, video_path, num_clips):
    predictions = classifier(video_path, candidate_labels=LABELS, num_clips=num_clips)
    expected = manual_probabilities(classifier, video_path, [f"a video of a person {label}." for label in LABELS], num_clips)
    assert scores_by_label(predictions) == pytest.approx(dict(zip(LABELS, expected.tolist())), abs=1e-5)
    scores = [prediction["score"] for prediction in predictions]
    assert scores == sorted(scores, reverse=True)
    assert sum(scores) == pytest.approx(1.0)


def test_video_scores_take_videos_with_their_view_axis(classifier):
    prompt_set = classifier.prompt_set(LABELS)
    with pytest.raises(ValueError, match=r"\(videos, views, frames, 3, height, width\), got \(1, 4, 3, 32, 32\)"):
        video_scores(classifier.model, torch.zeros(1, 4, 3, 32, 32), prompt_set)


def test_logit_sum_ranks_by_the_summed_view_logits(classifier, video_path):
    predictions = classifier(video_path, candidate_labels=LABELS, num_clips=3, view_aggregation="logit-sum")
    prompts = [f"a video of a person {label}." for label in LABELS]
    inputs = classifier.processor(videos=video_path, text=prompts, return_tensors="pt", num_clips=3)
    with torch.no_grad():
        logits = classifier.model(
            input_ids=inputs["input_ids"],
            attention_mask=inputs["attention_mask"],
            pixel_values=inputs["pixel_values"][0],
        ).logits_per_video  # (views, labels)
    summed = logits.sum(dim=0)
    assert [prediction["label"] for prediction in predictions] == [LABELS[i] for i in summed.argsort(descending=True)]
    expected = (summed / 3).softmax(dim=-1)  # probabilities at one view's temperature, ranked as the sum
    assert scores_by_label(predictions) == pytest.approx(dict(zip(LABELS, expected.tolist())), abs=1e-5)
    softmax_mean = classifier(video_path, candidate_labels=LABELS, num_clips=3)
    assert scores_by_label(softmax_mean) == pytest.approx(
        dict(zip(LABELS, logits.softmax(dim=-1).mean(dim=0).tolist())), abs=1e-5
    )
    with pytest.raises(ValueError, match="view_aggregation must be one of 'logit-sum', 'softmax-mean'"):
        classifier(video_path, candidate_labels=LABELS, view_aggregation="max")


def test_timeline_windows_use_the_processors_dense_sampling(classifier, make_video):
    video = make_video("long.mp4", num_frames=24, fps=10)
    frames = load_video_frames(video, num_frames=None)[0]
    processor = classifier.video_processor
    try:
        processor.frame_sampling, processor.sampling_rate = "dense", 6
        timeline = classifier(video, candidate_labels=LABELS, segment_seconds=1.0)
    finally:
        processor.frame_sampling, processor.sampling_rate = "segments", 16
    # Windows of 10 frames; a dense window of 6 * 4 / 30 * 10 = 8 frames, delta 2, centred at floor(2 / 2) = 1:
    # linspace(1, 8, 4) = 1, 3.3, 5.7, 8. Four frames by segment sampling are the frames themselves.
    for window, first in zip(timeline[:2], (0, 10)):
        indices = first + np.array([1, 3, 5, 8])
        assert_same_predictions(window["labels"], classifier(frames[indices], candidate_labels=LABELS))


def test_comma_separated_labels_template_and_top_k(classifier, video_path):
    predictions = classifier(video_path, candidate_labels=" running,swimming , juggling", hypothesis_template="{}")
    expected = manual_probabilities(classifier, video_path, LABELS)
    assert scores_by_label(predictions) == pytest.approx(dict(zip(LABELS, expected.tolist())), abs=1e-5)
    assert classifier(video_path, candidate_labels=LABELS, hypothesis_template="{}", top_k=2) == predictions[:2]


def test_literal_braces_in_the_template_stay_braces(classifier, video_path):
    predictions = classifier(video_path, candidate_labels=LABELS, hypothesis_template="{{clip}} of a person {}.")
    expected = manual_probabilities(classifier, video_path, [f"{{clip}} of a person {label}." for label in LABELS])
    assert scores_by_label(predictions) == pytest.approx(dict(zip(LABELS, expected.tolist())), abs=1e-5)


def test_batch_equals_one_by_one(classifier, make_video):
    videos = [make_video(f"video_{index}.mp4", num_frames=12 + 6 * index, width=64 + 16 * index) for index in range(3)]
    batched = classifier(videos, candidate_labels=LABELS, batch_size=2)
    assert len(batched) == 3
    for video, predictions in zip(videos, batched):
        assert_same_predictions(predictions, classifier(video, candidate_labels=LABELS))


def test_tuple_of_videos_is_a_batch_like_a_list(classifier, make_video):
    videos = (make_video("first.mp4", num_frames=12), make_video("second.mp4", num_frames=9, height=96, width=64))
    batched = classifier(videos, candidate_labels=LABELS)
    assert len(batched) == 2
    for video, predictions in zip(videos, batched):
        assert_same_predictions(predictions, classifier(video, candidate_labels=LABELS))


def test_one_input_holding_several_videos_is_refused(classifier, video_path):
    batch = torch.rand(3, 6, 3, 32, 32)
    with pytest.raises(ValueError, match=r"holds 3 videos \(shape \(3, 6, 3, 32, 32\)\); pass a list of videos"):
        classifier([batch], candidate_labels=LABELS)
    with pytest.raises(ValueError, match="One input is a list of 2 videos; pass a list of videos"):
        classifier([[video_path, video_path]], candidate_labels=LABELS)


def test_encoded_inputs_agree(classifier, video_path, tmp_path):
    """A path, its bytes, a file object and an http URL (served on 127.0.0.1) give the same scores."""
    expected = classifier(video_path, candidate_labels=LABELS)
    data = video_path.read_bytes()
    assert_same_predictions(classifier(data, candidate_labels=LABELS), expected)
    assert_same_predictions(classifier(io.BytesIO(data), candidate_labels=LABELS), expected)
    handler = functools.partial(QuietHandler, directory=str(video_path.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/"
        assert_same_predictions(classifier(url + video_path.name, candidate_labels=LABELS, timeout=10), expected)
        with pytest.raises(ValueError, match="Could not download the video .*missing.mp4"):
            classifier(url + "missing.mp4", candidate_labels=LABELS, timeout=10)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


def test_decoded_inputs_agree(classifier):
    """An array, a tensor, a list of PIL frames and a (B, T, H, W, C) batch of one video give the same scores."""
    frames = np.random.default_rng(0).integers(0, 256, size=(10, 40, 56, 3), dtype=np.uint8)
    expected = classifier(frames, candidate_labels=LABELS)
    assert_same_predictions(classifier(torch.from_numpy(frames), candidate_labels=LABELS), expected)
    assert_same_predictions(classifier([Image.fromarray(frame) for frame in frames], candidate_labels=LABELS), expected)
    batch = classifier(frames[None], candidate_labels=LABELS)
    assert len(batch) == 1
    assert_same_predictions(batch[0], expected)


# --------------------------------------------------------------------------------------------------------------
# Label texts
# --------------------------------------------------------------------------------------------------------------


LABEL_TEXTS = {
    "running": ["a video of a person running.", "a video of a person running, where the feet leave the ground."],
    "swimming": [
        "a video of a person swimming.",
        "a video of a person swimming, which uses water.",
        "a video of a person swimming, where breathing follows a stroke.",
    ],
}


def test_label_texts_are_grouped_and_scored_with_class_scores(classifier, video_path):
    """Labels with texts use all their prompts; `juggling` (no texts) uses the template; class_scores' grouped rule."""
    predictions = classifier(video_path, candidate_labels=LABELS, label_texts=LABEL_TEXTS)
    prompts = [*LABEL_TEXTS["running"], *LABEL_TEXTS["swimming"], "a video of a person juggling."]
    prompt_class_ids = torch.tensor([0, 0, 1, 1, 1, 2])
    inputs = classifier.processor(videos=video_path, text=prompts, return_tensors="pt")
    model = classifier.model
    with torch.no_grad():
        frame_embeds = model.get_video_features(inputs["pixel_values"]).pooler_output
        text_embeds = model.get_text_features(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).pooler_output
    normalize = functools.partial(torch.nn.functional.normalize, dim=-1)
    logits = class_scores(normalize(frame_embeds), normalize(text_embeds), model.logit_scale.exp(), prompt_class_ids)
    expected = logits.softmax(dim=-1)[0]
    assert scores_by_label(predictions) == pytest.approx(dict(zip(LABELS, expected.tolist())), abs=1e-5)
    plain = classifier(video_path, candidate_labels=LABELS)
    assert scores_by_label(predictions) != pytest.approx(scores_by_label(plain), abs=1e-4)


def test_label_texts_as_object_file_or_dict_agree(classifier, video_path, tmp_path):
    expected = classifier(video_path, candidate_labels=LABELS, label_texts=LABEL_TEXTS)
    label_texts = LabelTexts(LABEL_TEXTS)
    path = label_texts.save(tmp_path / "label_texts.json")
    assert_same_predictions(classifier(video_path, candidate_labels=LABELS, label_texts=label_texts), expected)
    assert_same_predictions(classifier(video_path, candidate_labels=LABELS, label_texts=str(path)), expected)
    file_labels_only = classifier(video_path, label_texts=path)
    assert sorted(scores_by_label(file_labels_only)) == sorted(LABEL_TEXTS)


def test_label_texts_from_an_askg_file_and_its_clause_file_with_templates_from_a_file(classifier, video_path, tmp_path):
    entries = {label: make_entry(label) for label in LABELS}
    write_askg_file({label: entry.subset(GRAPH_FIELDS) for label, entry in entries.items()}, tmp_path / "graph.yml")
    write_askg_file({label: entry.subset(CLAUSE_FIELDS) for label, entry in entries.items()}, tmp_path / "clauses.yml")
    (tmp_path / "classes.yml").write_text("templates:\n" + "".join(f"- clip {index} of {{}}.\n" for index in range(9)))
    templates = [f"clip {index} of {{}}." for index in range(8)]  # the first 8 of a YAML templates list
    expected = classifier(video_path, label_texts=LabelTexts.from_label_db(entries, templates=templates))
    files = [tmp_path / "graph.yml", tmp_path / "clauses.yml"]
    assert_same_predictions(classifier(video_path, label_texts=files, templates=tmp_path / "classes.yml"), expected)
    assert_same_predictions(classifier(video_path, label_texts=str(files[1]), templates=templates), expected)
    with pytest.raises(ValueError, match="templates= builds prompt sets from ASKG YAML files"):
        classifier(video_path, label_texts=LABEL_TEXTS, templates=templates)
    with pytest.raises(ValueError, match="a label-texts JSON file holds finished prompts"):
        classifier(video_path, label_texts=LabelTexts(LABEL_TEXTS).save(tmp_path / "t.json"), templates=templates)


@pytest.mark.parametrize(
    "embeddings, warning",
    [
        (torch.randn(5, 24), r"shape \(5, 24\), not \(5, 16\)"),  # another model's projection_dim
        (torch.randn(2, 16), r"shape \(2, 16\), not \(5, 16\)"),  # fewer rows than prompts
        (b"\x10\x00\x00\x00garbage", "Could not read the prompt embeddings"),  # not a safetensors file
    ],
)
def test_unusable_stored_prompt_embeddings_are_ignored(stdd_dir, video_path, tmp_path, caplog, embeddings, warning):
    """Stored embeddings that cannot be these prompts' are logged and ignored: the prompts are encoded instead."""
    classifier = pipeline(TASK, model=str(stdd_dir))
    texts_file = LabelTexts(LABEL_TEXTS).save(tmp_path / "label_texts.json")
    embeddings_file = tmp_path / "label_texts.safetensors"
    if isinstance(embeddings, bytes):
        embeddings_file.write_bytes(embeddings)
    else:
        prompts = [prompt for label_prompts in LABEL_TEXTS.values() for prompt in label_prompts]
        save_file({"text_embeds": embeddings}, embeddings_file, metadata={"prompts_sha256": prompts_digest(prompts)})
    predictions = classifier(video_path, candidate_labels=LABELS, label_texts=texts_file)
    assert_same_predictions(predictions, classifier(video_path, candidate_labels=LABELS, label_texts=LABEL_TEXTS))
    assert re.search(warning, caplog.text) and "ignoring it" in caplog.text
    assert classifier._stored_prompt_embeddings == {}


def test_text_tower_runs_once_per_label_set(stdd_dir, video_path, monkeypatch):
    classifier = pipeline(TASK, model=str(stdd_dir))
    calls = []
    get_text_features = classifier.model.get_text_features
    monkeypatch.setattr(
        classifier.model, "get_text_features", lambda **inputs: calls.append(1) or get_text_features(**inputs)
    )
    first = classifier(video_path, candidate_labels=LABELS, label_texts=LABEL_TEXTS)
    second = classifier([video_path, video_path], candidate_labels=LABELS, label_texts=LABEL_TEXTS, batch_size=2)
    assert len(calls) == 1
    assert_same_predictions(second[0], first)
    classifier(video_path, candidate_labels=LABELS)
    assert len(calls) == 2


# --------------------------------------------------------------------------------------------------------------
# Timelines
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "duration, segment, stride",
    [(2.4, 1.0, 0.5), (2.4, 1.0, 1.0), (3.0, 1.0, 1.0), (0.5, 2.0, 1.0), (10.0, 3.0, 0.7)],
)
def test_timeline_windows_cover_the_duration(duration, segment, stride):
    windows = timeline_windows(duration, segment, stride)
    assert windows[0][0] == 0.0 and windows[-1][1] == duration
    for (start, end), (next_start, _) in zip(windows, windows[1:]):
        assert end - start == pytest.approx(segment)
        assert next_start == pytest.approx(start + stride) and next_start <= end
    assert windows[-1][0] < duration


@pytest.mark.parametrize(
    "duration, segment, stride, num_windows", [(2.1, 0.7, 0.7, 3), (1.6, 0.4, 0.2, 7), (10.0, 3.0, 0.7, 11)]
)
def test_timeline_windows_start_at_multiples_of_the_stride_with_no_sliver_at_the_end(
    duration, segment, stride, num_windows
):
    """Adding up the stride drifts (0.7 + 0.7 + 0.7 < 2.1): that must not add a ~1e-16 s last window."""
    windows = timeline_windows(duration, segment, stride)
    assert [start for start, _ in windows] == [index * stride for index in range(num_windows)]
    assert windows[-1][1] == duration


def test_timeline_of_a_video_a_whole_number_of_segments_long(classifier, make_video):
    timeline = classifier(make_video("2.1s.mp4", num_frames=21, fps=10), candidate_labels=LABELS, segment_seconds=0.7)
    assert [(window["start"], window["end"]) for window in timeline] == [(0.0, 0.7), (0.7, 1.4), (1.4, 2.1)]


def test_timeline_covers_the_video_and_each_window_is_classified_on_its_frames(classifier, make_video):
    video = make_video("long.mp4", num_frames=24, fps=10)  # 2.4 s
    timeline = classifier(video, candidate_labels=LABELS, segment_seconds=1.0, stride_seconds=0.5, batch_size=3)
    bounds = [bound for window in timeline for bound in (window["start"], window["end"])]
    assert bounds == pytest.approx([bound for window in timeline_windows(2.4, 1.0, 0.5) for bound in window])
    for window in timeline:
        assert sorted(scores_by_label(window["labels"])) == sorted(LABELS)
        assert sum(scores_by_label(window["labels"]).values()) == pytest.approx(1.0)
    # Each window is classified on its own frames: [start, end) at 10 frames per second, alone, ranks the same.
    frames = load_video_frames(video, num_frames=None)[0]
    for window in timeline:
        first, last = round(window["start"] * 10), round(window["end"] * 10)
        assert_same_predictions(window["labels"], classifier(frames[first:last], candidate_labels=LABELS))
    # Decoded frames need their frame rate to be cut into seconds.
    assert len(classifier(frames, candidate_labels=LABELS, segment_seconds=1.0, fps=10)) == 3


def variable_frame_rate_video(path: Path) -> Path:
    """Red for 10 s at 30 fps, then blue for 9 s at 1 fps (309 frames, 19 s; the average rate says 16.3 fps)."""
    frames = np.zeros((309, 32, 32, 3), np.uint8)
    frames[:300, ..., 0] = frames[300:, ..., 2] = 255
    return write_video(path, frames, fps=30, frame_times=[k / 30 for k in range(300)] + [10.0 + k for k in range(9)])


def test_timeline_windows_of_a_variable_frame_rate_video_hold_the_frames_shown_in_them(classifier, tmp_path):
    video = open_video(variable_frame_rate_video(tmp_path / "vfr.mp4"))
    frame_times, duration = timeline_frame_times(video, fps=None)
    assert duration == pytest.approx(19.0)
    blue = np.array([0, 0, 255])
    for (start, end), expected_blue in zip(timeline_windows(duration, 5.0, 5.0), [False, False, True, True]):
        colors = video.read(window_frame_indices(start, end, frame_times, num_frames=4, num_clips=2))
        assert (np.abs(colors[..., 16, 16, :].astype(int) - blue).max(axis=-1) < 8).all() == expected_blue
    timeline = classifier(tmp_path / "vfr.mp4", candidate_labels=LABELS, segment_seconds=5.0)
    assert [(window["start"], window["end"]) for window in timeline] == [(0, 5), (5, 10), (10, 15), (15, 19)]


def test_a_window_shorter_than_a_frame_takes_the_frame_on_screen():
    frame_times = np.array([0.0, 1.0, 2.0])
    assert window_frame_indices(1.25, 1.5, frame_times, num_frames=2, num_clips=1).tolist() == [[1, 1]]
    assert window_frame_indices(2.5, 2.75, frame_times, num_frames=1, num_clips=1).tolist() == [[2]]


def test_prompt_embedding_cache_evicts_the_least_recently_used_label_set(classifier, video_path, monkeypatch):
    from modeling_stdd import pipeline_stdd

    monkeypatch.setattr(pipeline_stdd, "TEXT_CACHE_SIZE", 2)
    monkeypatch.setattr(classifier, "_prompt_sets", type(classifier._prompt_sets)())
    for labels in (["a", "b"], ["c", "d"], ["a", "b"], ["e", "f"]):  # ["c", "d"] is the least recently used
        classifier(video_path, candidate_labels=labels)
    assert [prompt_set.labels for prompt_set in classifier._prompt_sets.values()] == [("a", "b"), ("e", "f")]


# --------------------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"candidate_labels": []}, "candidate_labels is empty"),
        ({"candidate_labels": "running, , swimming"}, "empty label"),
        ({"candidate_labels": ["running", "swimming", "running"]}, r"duplicates: \['running'\]"),
        ({"candidate_labels": ["dancing", "Dancing"]}, r"differ only in case: \['Dancing', 'dancing'\]; CLIP"),
        ({}, "Give candidate_labels"),
        ({"candidate_labels": LABELS, "hypothesis_template": "a video of a person"}, "hypothesis_template must"),
        ({"candidate_labels": LABELS, "hypothesis_template": "a video of a {role} {}."}, r"got 'a video of a \{role"),
        ({"candidate_labels": LABELS, "hypothesis_template": "a video {{}} of a person"}, "exactly once, bare"),
        ({"candidate_labels": LABELS, "hypothesis_template": "a video of a person {!r}"}, "exactly once, bare"),
        ({"candidate_labels": LABELS, "hypothesis_template": "a video of a person {"}, "exactly once, bare"),
        ({"candidate_labels": LABELS, "top_k": 0}, "top_k"),
        ({"candidate_labels": LABELS, "segment_seconds": 1.0, "stride_seconds": 2.0}, "stride_seconds"),
        ({"candidate_labels": LABELS, "label_texts": {"running": []}}, r"label_texts\['running'\]"),
        ({"candidate_labels": LABELS, "label_texts": "no/such/label_texts.json"}, "Label-texts file not found"),
    ],
)
def test_bad_arguments_raise_clear_value_errors(classifier, video_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        classifier(video_path, **kwargs)


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("repeated.json", b'{"running": ["a run."], "running": ["a jog."]}', r"duplicate keys \['running'\]"),
        ("latin1.json", '{"caf\xe9": ["a caf\xe9."]}'.encode("latin-1"), r"not UTF-8 text: byte 0xe9 at offset 5"),
        ("list_key.yml", b"[running, jogging]:\n  label: running\n", r"a key must be a name, got the list"),
    ],
)
def test_broken_label_text_files_are_refused_naming_the_file(classifier, video_path, tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as error_info:
        classifier(video_path, candidate_labels=LABELS, label_texts=path)
    assert name in str(error_info.value)
    with pytest.raises(ValueError, match=message):
        LabelTexts.from_file(path)


def test_missing_or_broken_videos_raise_value_errors_naming_them(classifier, tmp_path):
    with pytest.raises(ValueError, match="Video file not found: .*nowhere.mp4"):
        classifier(str(tmp_path / "nowhere.mp4"), candidate_labels=LABELS)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"this is not a video" * 50)
    with pytest.raises(ValueError, match="broken.mp4"):
        classifier(broken, candidate_labels=LABELS)


@pytest.mark.parametrize(
    "name, text",
    [("texts.json", '{"running": ["a video of'), ("texts.json", '["not", "an", "object"]'), ("askg.yml", "label: [")],
)
def test_unparsable_label_texts_files_raise_value_errors_naming_the_file(classifier, video_path, tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ValueError, match=f"Could not read label texts from .*{name}"):
        classifier(video_path, candidate_labels=LABELS, label_texts=path)


# --------------------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------------------


def test_console_script_is_declared():
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    module, function = scripts["stdd-classify"].split(":")
    assert module == "modeling_stdd.classify_cli" and function == "main"


def test_cli_prints_rankings_and_json(stdd_dir, video_path, classifier, capsys):
    assert classify_main([str(video_path), "--labels", ", ".join(LABELS), "--model", str(stdd_dir), "--top-k", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    expected = classifier(video_path, candidate_labels=LABELS, top_k=2)
    assert lines[0].split() == ["video", "rank", "label", "score"]
    rows = [line.split() for line in lines[2:]]
    assert [row[0] for row in rows] == [str(video_path)] * 2 and [row[1] for row in rows] == ["1", "2"]
    assert [" ".join(row[2:-1]) for row in rows] == [prediction["label"] for prediction in expected]

    label_texts = LabelTexts(LABEL_TEXTS).save(video_path.parent / "texts.json")
    arguments = [str(video_path), str(video_path), "--labels", ",".join(LABELS), "--model", str(stdd_dir)]
    assert classify_main([*arguments, "--label-texts", str(label_texts), "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert [result["video"] for result in results] == [str(video_path)] * 2
    expected = classifier(video_path, candidate_labels=LABELS, label_texts=LABEL_TEXTS)
    assert_same_predictions(results[0]["result"], expected)


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--labels", "running, running"], "duplicates"),
        (["--labels", "a, b", "--model", "{tmp}/no_such_model"], "no_such_model"),
        (["--labels", "a, b", "--device", "foo"], "--device 'foo' is not a torch device"),
        (["--labels", "a, b", "--device", "{absent}:0"], "no {absent} device available"),
    ],
)
def test_cli_reports_errors_with_exit_status_2(stdd_dir, video_path, capsys, tmp_path, arguments, message):
    absent = "xpu" if torch.cuda.is_available() else "cuda"  # a device type this machine lacks
    arguments = [argument.format(tmp=tmp_path, absent=absent) for argument in arguments]
    message = message.format(absent=absent)
    if "--model" not in arguments:
        arguments += ["--model", str(stdd_dir)]
    with pytest.raises(SystemExit) as exit_info:
        classify_main([str(video_path), *arguments])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert message in error and "Traceback" not in error


def test_a_model_with_broken_weights_gives_an_error_not_a_ranking(stdd_dir, video_path):
    broken = pipeline(TASK, model=str(stdd_dir))
    with torch.no_grad():
        broken.model.visual_projection.weight.fill_(float("nan"))
    with pytest.raises(ValueError, match="class scores are not finite .* for 1 of 1 videos"):
        broken(video_path, candidate_labels=LABELS)
