"""Zero-shot evaluation: the shipped top-k metric module, the section-5 protocols and the evaluation script."""

import json

import evaluate
import numpy as np
import pytest
import torch

from askg_testing import make_entry, reference_label_db

from modeling_stdd import STDDModel, STDDProcessor
from modeling_stdd.askg import LabelTexts, write_askg_file
from modeling_stdd.askg.schema import CLAUSE_FIELDS, GRAPH_FIELDS
from training.evaluate_zero_shot import main
from training.evaluation import TOP_K_METRIC, summarize, top_k_accuracy
from training.protocols import (
    KINETICS600_CLASSES_PER_SPLIT,
    KINETICS600_DATA,
    class_key,
    hmdb51_splits,
    kinetics400_class_keys,
    kinetics600_novel_classes,
    kinetics600_novel_splits,
    kinetics600_published_splits,
    match_class_names,
    ucf101_splits,
)
from training.runtime import load_label_texts


@pytest.fixture(scope="module")
def metric():
    return evaluate.load(str(TOP_K_METRIC))


def test_metric_module_top_k(metric):
    scores = [[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.3, 0.5]]
    assert metric.compute(predictions=scores, references=[2, 0, 0], k=[1, 2, 3]) == {
        "top1": pytest.approx(1 / 3), "top2": pytest.approx(2 / 3), "top3": 1.0
    }


def test_metric_module_breaks_ties_by_class_index_and_caps_k(metric):
    tied = [[0.5, 0.5, 0.5]]
    assert metric.compute(predictions=tied, references=[0], k=1) == {"top1": 1.0}
    assert metric.compute(predictions=tied, references=[2], k=[1, 2]) == {"top1": 0.0, "top2": 0.0}
    assert metric.compute(predictions=tied, references=[2], k=[5]) == {"top5": 1.0}


def test_metric_module_rejects_bad_input(metric):
    with pytest.raises(ValueError, match="class indices"):
        metric.compute(predictions=[[0.1, 0.9]], references=[2])
    with pytest.raises(ValueError, match="positive integer"):
        metric.compute(predictions=[[0.1, 0.9]], references=[1], k=[0])


def test_top_k_accuracy_agrees_with_a_direct_count():
    rng = np.random.default_rng(0)
    scores, labels = rng.random((50, 10)), rng.integers(0, 10, 50)
    result = top_k_accuracy(scores, labels, k=(1, 5))
    top5 = np.argsort(-scores, axis=1)[:, :5]
    assert result["top1"] == pytest.approx(100 * np.mean(scores.argmax(1) == labels))
    assert result["top5"] == pytest.approx(100 * np.mean([label in row for label, row in zip(labels, top5)]))


def test_summarize_mean_and_std():
    summary = summarize({"split_1": {"top1": 50.0}, "split_2": {"top1": 70.0}})
    assert summary["mean"] == {"top1": 60.0} and summary["std"] == {"top1": 10.0}


def test_class_names_are_matched_across_spellings():
    assert class_key("ApplyEyeMakeup") == class_key("Apply Eye Makeup") == class_key("apply_eye_makeup")
    assert match_class_names(["brush_hair", "YoYo"], ["Yo Yo", "brush hair"], "x") == ["brush hair", "Yo Yo"]
    assert match_class_names(["brush_hair"], None, "x") == ["brush hair"]
    with pytest.raises(ValueError, match="no label texts"):
        match_class_names(["Surfing"], ["Yo Yo"], "UCF101")


def write_ucf101_layout(root):
    """A UCF101-like tree with two classes and its ucfTrainTestlist folder (three test lists)."""
    split_dir = root / "ucfTrainTestlist"
    split_dir.mkdir(parents=True)
    (split_dir / "classInd.txt").write_text("1 ApplyEyeMakeup\n2 YoYo\n")
    for split in (1, 2, 3):
        lines = [f"ApplyEyeMakeup/v_ApplyEyeMakeup_g0{split}_c01.avi", f"YoYo/v_YoYo_g0{split}_c01.avi"]
        (split_dir / f"testlist0{split}.txt").write_text("\n".join(lines) + "\n")
    return split_dir


def test_ucf101_three_splits(tmp_path):
    split_dir = write_ucf101_layout(tmp_path)
    splits = ucf101_splits(tmp_path / "videos", split_dir, ["Apply Eye Makeup", "Yo Yo"])
    assert [split.name for split in splits] == ["split_1", "split_2", "split_3"]
    assert splits[0].class_names == ["Apply Eye Makeup", "Yo Yo"]
    assert splits[2].dataset["label"] == [0, 1]
    assert splits[1].dataset[1]["video"]["path"] == str(tmp_path / "videos" / "YoYo" / "v_YoYo_g02_c01.avi")
    (split_dir / "testlist02.txt").write_text("Surfing/v_Surfing_g01_c01.avi\n")
    with pytest.raises(ValueError, match="no class of classInd"):
        ucf101_splits(tmp_path / "videos", split_dir)


def test_ucf101_missing_split_file_is_named(tmp_path):
    split_dir = write_ucf101_layout(tmp_path)
    (split_dir / "testlist03.txt").unlink()
    with pytest.raises(FileNotFoundError, match="testlist03.txt"):
        ucf101_splits(tmp_path, split_dir)


def test_hmdb51_splits_keep_test_videos_only(tmp_path):
    for split in (1, 2, 3):
        for folder in ("brush_hair", "cartwheel"):
            lines = [f"{folder}_a.avi 1", f"{folder}_b.avi 2", f"{folder}_c.avi 0", f"{folder}_d{split}.avi 2"]
            (tmp_path / f"{folder}_test_split{split}.txt").write_text("\n".join(lines) + "\n")
    splits = hmdb51_splits(tmp_path / "hmdb", tmp_path)
    assert splits[0].class_names == ["brush hair", "cartwheel"]
    assert len(splits[1].dataset) == 4
    paths = [video["path"] for video in splits[2].dataset["video"]]
    assert str(tmp_path / "hmdb" / "cartwheel" / "cartwheel_d3.avi") in paths
    assert not any(path.endswith(("_a.avi", "_c.avi")) for path in paths)


def kinetics600_reference():
    """The authors' Kinetics-600 split files in the shared reference folder; skips where it is absent."""
    return reference_label_db() / "k600_novel_splits"


def reference_split_names(folder, split: int) -> list[str]:
    index_to_class = json.loads((folder / f"split{split}-index2cls.json").read_text())
    return [index_to_class[str(index)] for index in range(len(index_to_class))]


def test_shipped_kinetics600_splits_are_the_published_ones():
    folder = kinetics600_reference()
    words = [entry["word"] for entry in json.loads((folder / "classes620_label_defn.json").read_text())]
    assert kinetics600_novel_classes() == {index: words[index] for index in range(400, 620)}
    assert json.loads((KINETICS600_DATA / "splits.json").read_text()) == json.loads(
        (folder / "tst_class_idxs.json").read_text()
    )
    for split, names in enumerate(kinetics600_published_splits(), start=1):
        assert len(names) == KINETICS600_CLASSES_PER_SPLIT
        assert names == reference_split_names(folder, split)


def test_no_kinetics600_novel_class_is_a_kinetics400_class():
    novel = {class_key(name) for name in kinetics600_novel_classes().values()}
    assert len(novel) == 220
    assert not novel & kinetics400_class_keys()
    # The Kinetics-600 names of renamed Kinetics-400 classes count as Kinetics-400 classes.
    assert {class_key("dyeing hair"), class_key("tying necktie"), class_key("tying tie")} <= kinetics400_class_keys()


def test_kinetics600_protocol_scores_exactly_the_published_test_lists(tmp_path, caplog):
    """
    A list of every video of the authors' three test lists plus videos of the 12 non-novel classes of their
    232-name file: each split gets exactly the videos of its published test list, labelled in its published order.
    """
    folder = kinetics600_reference()
    published = [
        [line.rsplit(",", 1) for line in (folder / f"split{split}-test.csv").read_text().split()] for split in (1, 2, 3)
    ]
    classes = sorted({path.split("/")[1] for rows in published for path, _ in rows})
    seen_in_kinetics400 = [
        "dyeing_hair", "tying_necktie", "hugging_(not_baby)", "passing_American_football_(not_in_game)"
    ]
    all_classes = classes + seen_in_kinetics400
    (tmp_path / "index.json").write_text(json.dumps({str(index): name for index, name in enumerate(all_classes)}))
    lines = sorted({f"{path},{all_classes.index(path.split('/')[1])}" for rows in published for path, _ in rows})
    lines += [f"val/{name}/clip.mp4,{all_classes.index(name)}" for name in seen_in_kinetics400]
    (tmp_path / "list.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "k600").mkdir()
    with caplog.at_level("WARNING", logger="training.protocols"):
        splits = kinetics600_novel_splits(tmp_path / "k600", tmp_path / "list.csv", tmp_path / "index.json")
    assert "4 Kinetics-400 classes" in caplog.text and all(name in caplog.text for name in seen_in_kinetics400)
    for split, rows in zip(splits, published):
        assert len(split.class_names) == 160 and len(split.dataset) == len(rows)
        expected = sorted((str(tmp_path / "k600" / path), int(label)) for path, label in rows)
        got = sorted((video["path"], label) for video, label in zip(split.dataset["video"], split.dataset["label"]))
        assert got == expected
    assert [len(split.dataset) for split in splits] == [7276, 7226, 7261]


def test_kinetics600_protocol_works_from_the_shipped_data_on_a_folder(tmp_path, caplog):
    splits_by_name = kinetics600_published_splits()
    in_split_1_only = next(name for name in splits_by_name[0] if name not in splits_by_name[1] + splits_by_name[2])
    in_all = next(name for name in splits_by_name[0] if name in splits_by_name[1] and name in splits_by_name[2])
    for name, count in ((in_split_1_only, 2), (in_all, 1), ("dying hair", 1), ("tying necktie", 1), ("juggling", 1)):
        (tmp_path / name.replace(" ", "_")).mkdir()
        for index in range(count):
            (tmp_path / name.replace(" ", "_") / f"{index}.mp4").write_bytes(b"")
    with caplog.at_level("WARNING", logger="training.protocols"):
        label_names = list(LabelTexts.for_dataset("kinetics600_novel").labels)
        splits = kinetics600_novel_splits(tmp_path, label_names=label_names)
    assert "2 Kinetics-400 classes" in caplog.text and "dying_hair" in caplog.text and "tying_necktie" in caplog.text
    assert "not Kinetics-600 classes" in caplog.text and "juggling" in caplog.text
    assert "159 of its 160 classes have no videos" in caplog.text
    assert [len(split.dataset) for split in splits] == [3, 1, 1]
    assert all(len(split.class_names) == 160 for split in splits)
    first = splits[0]
    scored = sorted(first.class_names[label] for label in first.dataset["label"])
    assert scored == sorted([in_all, in_split_1_only, in_split_1_only])


def test_kinetics600_protocol_without_any_split_video_is_an_error(tmp_path):
    (tmp_path / "tying_tie").mkdir()
    (tmp_path / "tying_tie" / "0.mp4").write_bytes(b"")
    with pytest.raises(ValueError, match="no video of the 160 classes of Kinetics-600 split 1"):
        kinetics600_novel_splits(tmp_path)


def test_evaluation_script_on_a_folder_with_multi_view_testing(stdd_folder, tmp_path, make_video, monkeypatch):
    from training import evaluation

    shapes = []
    score_videos = evaluation.video_scores

    def recording_video_scores(model, pixel_values, *args):
        shapes.append(tuple(pixel_values.shape))
        return score_videos(model, pixel_values, *args)

    monkeypatch.setattr(evaluation, "video_scores", recording_video_scores)
    for name in ("waving", "clapping"):
        (tmp_path / "data" / name).mkdir(parents=True)
        for index in range(2):
            make_video(f"{name}{index}.mp4", num_frames=8).rename(tmp_path / "data" / name / f"{index}.mp4")
    (tmp_path / "texts.json").write_text(json.dumps({"waving": ["a person waving.", "someone waves a hand."]}))
    output = tmp_path / "results" / "custom.json"
    results = main([
        "--model", str(stdd_folder), "--data", str(tmp_path / "data"), "--num-clips", "2", "--num-crops", "2",
        "--batch-size", "3", "--num-workers", "0", "--label-texts", str(tmp_path / "texts.json"),
        "--output", str(output),
    ])
    assert json.loads(output.read_text()) == results
    assert results["views"] == {
        "num_clips": 2, "num_crops": 2, "view_aggregation": "softmax-mean", "frame_sampling": "segments",
        "sampling_rate": 16,
    }
    # Every video reaches the model as 2 clips x 2 crops of 4 frames: (B, views, T, 3, S, S).
    assert shapes and all(len(shape) == 6 and shape[1:3] == (4, 4) for shape in shapes)
    assert results["num_videos"] == {"test": 4} and results["num_classes"] == {"test": 2}
    assert results["class_overlap"] is None  # a checkpoint without a training run's record: not known
    assert set(results["splits"]["test"]) == {"top1"}  # two classes: top-5 is always 100, so it is not reported
    assert 0 <= results["mean"]["top1"] <= 100 and results["std"]["top1"] == 0.0


def test_unreadable_videos_are_left_out_of_the_scores_and_counted(stdd_folder, tmp_path, make_video, caplog):
    for name in ("waving", "clapping"):
        (tmp_path / "data" / name).mkdir(parents=True)
        for index in range(3):
            make_video(f"{name}{index}.mp4", num_frames=8).rename(tmp_path / "data" / name / f"{index}.mp4")
    (tmp_path / "data" / "waving" / "1.mp4").write_bytes(b"not a video")
    (tmp_path / "data" / "clapping" / "0.mp4").write_bytes(b"")
    results = main([
        "--model", str(stdd_folder), "--data", str(tmp_path / "data"), "--batch-size", "2", "--num-workers", "0",
        "--label-texts", "none", "--output", str(tmp_path / "out.json"),
    ])
    # The two bad files are neither scored nor replaced by a neighbour, which would count that neighbour twice.
    assert results["num_videos"] == {"test": 4}
    assert results["num_unreadable"] == {"test": 2}
    assert "1.mp4" in caplog.text and "0.mp4" in caplog.text


def test_data_classes_match_label_texts_whatever_their_spelling():
    from datasets import Dataset

    from training.data import video_features
    from training.protocols import with_label_text_names

    def dataset(names):
        videos = [{"path": f"{name}/0.mp4", "bytes": None} for name in names]
        return Dataset.from_dict({"video": videos, "label": list(range(len(names)))}, features=video_features(names))

    folders = dataset(["ApplyEyeMakeup", "brush_hair", "my own class"])
    renamed = with_label_text_names(folders, ["Apply Eye Makeup", "brush hair", "archery"])
    assert renamed.features["label"].names == ["Apply Eye Makeup", "brush hair", "my own class"]
    assert renamed["label"] == folders["label"]
    with pytest.raises(ValueError, match="all match the label texts of \\['apply eye makeup'\\]"):
        with_label_text_names(dataset(["ApplyEyeMakeup", "apply_eye_makeup"]), ["apply eye makeup"])


def test_a_split_without_a_readable_video_is_an_error(stdd_folder, tmp_path):
    (tmp_path / "data" / "waving").mkdir(parents=True)
    (tmp_path / "data" / "waving" / "0.mp4").write_bytes(b"not a video")
    with pytest.raises(ValueError, match="no readable video in split 'test'"):
        main([
            "--model", str(stdd_folder), "--data", str(tmp_path / "data"), "--num-workers", "0",
            "--label-texts", "none", "--output", str(tmp_path / "out.json"),
        ])


def test_evaluation_script_runs_the_ucf101_protocol(stdd_folder, tmp_path, make_video):
    split_dir = write_ucf101_layout(tmp_path)
    listed = [line for split in (1, 2, 3) for line in (split_dir / f"testlist0{split}.txt").read_text().split()]
    for line in listed:
        target = tmp_path / "videos" / line
        target.parent.mkdir(parents=True, exist_ok=True)
        make_video(target.name, num_frames=6).rename(target)
    results = main([
        "--model", str(stdd_folder), "--protocol", "ucf101", "--video-root", str(tmp_path / "videos"),
        "--split-dir", str(split_dir), "--label-texts", "none", "--num-workers", "0",
        "--output", str(tmp_path / "ucf101.json"),
    ])
    assert list(results["splits"]) == ["split_1", "split_2", "split_3"]
    top1 = [split["top1"] for split in results["splits"].values()]
    assert results["mean"]["top1"] == pytest.approx(np.mean(top1))
    assert results["std"]["top1"] == pytest.approx(np.std(top1))


@pytest.mark.parametrize(
    "arguments, message",
    [
        ([], "give --protocol"),
        (["--protocol", "ucf101"], "needs --video-root and --split-dir"),
        (["--protocol", "kinetics600_novel"], "kinetics600_novel needs --video-root"),
        (["--protocol", "kinetics600_novel", "--video-root", "x", "--list-file", "l"], "needs --index-to-class"),
        (["--data", "x", "--sampling-rate", "0"], "--sampling-rate must be >= 1"),
        (["--data", "x", "--frame-sampling", "sparse"], "invalid choice: 'sparse'"),
        (["--data", "x", "--view-aggregation", "max"], "invalid choice: 'max'"),
        (["--data", "x", "--num-clips", "0"], "--num-clips must be >= 1"),
        (["--data", "x", "--num-frames", "0"], "--num-frames must be >= 1"),
        (["--data", "x", "--num-templates", "2"], "--num-templates needs --templates FILE"),
        (["--data", "x", "--templates", "no/such/templates.txt"], "--templates: templates file not found"),
    ],
)
def test_evaluation_script_rejects_bad_arguments(arguments, message, capsys):
    with pytest.raises(SystemExit):
        main(["--model", "m", "--output", "o.json", *arguments])
    assert message in capsys.readouterr().err


def test_predictions_average_softmax_over_views(stdd_folder):
    from accelerate import Accelerator

    from modeling_stdd.prompt_sets_stdd import build_prompt_set
    from training.evaluation import predict

    model = STDDModel.from_pretrained(stdd_folder).eval()
    processor = STDDProcessor.from_pretrained(stdd_folder)
    prompts = build_prompt_set(model, processor.tokenizer, ["a.", "b.", "c."], "{}")
    torch.manual_seed(0)
    views = torch.randn(2, 3, 4, 3, 32, 32)
    # The middle video of the first batch and the whole second batch could not be read.
    batches = [
        {"pixel_values": views, "labels": torch.tensor([0, 2, 1]), "readable": torch.tensor([True, False, True])},
        {"pixel_values": None, "labels": torch.tensor([2]), "readable": torch.tensor([False])},
    ]
    scores, labels, num_unreadable = predict(model, batches, prompts, Accelerator())
    with torch.no_grad():
        logits = model(pixel_values=views.flatten(0, 1), text_embeds=prompts.text_embeds).logits_per_video
    expected = logits.softmax(-1).unflatten(0, (2, 3)).mean(1)
    assert np.allclose(scores, expected.numpy(), atol=1e-6) and labels.tolist() == [0, 1] and num_unreadable == 2


def test_logit_sum_ranks_videos_by_the_sum_of_their_views_logits(stdd_folder):
    from accelerate import Accelerator

    from modeling_stdd.prompt_sets_stdd import build_prompt_set
    from training.evaluation import predict

    model = STDDModel.from_pretrained(stdd_folder).eval()
    processor = STDDProcessor.from_pretrained(stdd_folder)
    prompts = build_prompt_set(model, processor.tokenizer, ["a.", "b.", "c.", "d."], "{}")
    torch.manual_seed(1)
    views = torch.randn(3, 3, 4, 3, 32, 32)
    batch = {"pixel_values": views, "labels": torch.tensor([0, 1, 2]), "readable": torch.tensor([True] * 3)}
    scores, _, _ = predict(model, [batch], prompts, Accelerator(), view_aggregation="logit-sum")
    with torch.no_grad():
        logits = model(pixel_values=views.flatten(0, 1), text_embeds=prompts.text_embeds).logits_per_video
    logit_sum = logits.unflatten(0, (3, 3)).sum(1)
    assert np.allclose(scores, (logit_sum / 3).softmax(-1).numpy(), atol=1e-6)
    assert (scores.argsort(-1) == logit_sum.argsort(-1).numpy()).all()


def test_evaluation_script_with_dense_sampling_and_logit_sum(stdd_folder, tmp_path, make_video, monkeypatch):
    """The flags override the saved processor's sampling, three dense clips reach the model, and both are recorded."""
    from modeling_stdd import video_processing_stdd

    sampled = []
    dense_frame_indices = video_processing_stdd.dense_frame_indices

    def recording_dense_frame_indices(*args, **kwargs):
        sampled.append(dense_frame_indices(*args, **kwargs))
        return sampled[-1]

    monkeypatch.setattr(video_processing_stdd, "dense_frame_indices", recording_dense_frame_indices)
    for name in ("waving", "clapping"):
        (tmp_path / "data" / name).mkdir(parents=True)
        make_video(f"{name}.mp4", num_frames=40, fps=10).rename(tmp_path / "data" / name / "0.mp4")
    results = main([
        "--model", str(stdd_folder), "--data", str(tmp_path / "data"), "--num-clips", "3", "--frame-sampling",
        "dense", "--sampling-rate", "15", "--view-aggregation", "logit-sum", "--num-workers", "0",
        "--label-texts", "none", "--output", str(tmp_path / "out.json"),
    ])
    assert results["views"] == {
        "num_clips": 3, "num_crops": 1, "view_aggregation": "logit-sum", "frame_sampling": "dense",
        "sampling_rate": 15,
    }
    # 40 frames at 10 fps: a window of 15 * 4 / 30 * 10 = 20 frames, starts 0, 10, 20 (floor(20 / 2) apart).
    expected = [[0, 6, 12, 19], [10, 16, 22, 29], [20, 26, 32, 39]]
    assert len(sampled) == 2 and all(indices.tolist() == expected for indices in sampled)


def test_predictions_follow_the_mixed_precision_setting(stdd_folder):
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    from modeling_stdd.prompt_sets_stdd import build_prompt_set
    from training.evaluation import predict

    model = STDDModel.from_pretrained(stdd_folder).eval()
    prompts = build_prompt_set(model, STDDProcessor.from_pretrained(stdd_folder).tokenizer, ["a.", "b."], "{}")
    dtypes = set()
    layer = model.vision_model.encoder.layers[0].mlp.fc1
    layer.register_forward_hook(lambda module, inputs, output: dtypes.add(output.dtype))
    batch = {
        "pixel_values": torch.randn(1, 1, 4, 3, 32, 32), "labels": torch.tensor([0]), "readable": torch.tensor([True])
    }
    AcceleratorState._reset_state()  # the other tests' accelerators run in full precision
    try:
        scores, _, _ = predict(model, [batch], prompts, Accelerator(cpu=True, mixed_precision="bf16"))
    finally:
        AcceleratorState._reset_state()
    assert dtypes == {torch.bfloat16} and np.isfinite(scores).all()


def test_metric_module_never_counts_a_non_finite_score_as_correct(metric):
    scores = [[float("nan"), 0.1, 0.2], [0.1, float("nan"), 0.2], [float("inf"), 0.0, 0.0], [0.7, 0.2, 0.1]]
    assert metric.compute(predictions=scores, references=[0, 2, 0, 0], k=[1, 3]) == {"top1": 0.25, "top3": 0.25}


def test_a_model_with_broken_weights_is_an_error_not_figures(stdd_folder, tmp_path, make_video):
    model = STDDModel.from_pretrained(stdd_folder)
    with torch.no_grad():
        model.visual_projection.weight.fill_(float("nan"))
    model.save_pretrained(stdd_folder)
    for name in ("waving", "clapping"):
        (tmp_path / "data" / name).mkdir(parents=True)
        make_video(f"{name}.mp4", num_frames=8).rename(tmp_path / "data" / name / "0.mp4")
    with pytest.raises(ValueError, match=r"evaluation \(test\): the model's class scores are not finite"):
        main(["--model", str(stdd_folder), "--data", str(tmp_path / "data"), "--num-workers", "0",
              "--label-texts", "none", "--output", str(tmp_path / "out.json")])
    assert not (tmp_path / "out.json").exists()


def test_results_are_strict_json(tmp_path):
    from training.runtime import write_json_atomically

    with pytest.raises(ValueError, match=r"bad\.json: refusing to write results holding a non-finite number"):
        write_json_atomically(tmp_path / "bad.json", {"top1": float("nan")})
    assert not (tmp_path / "bad.json").exists()


def test_an_unwritable_output_is_refused_before_any_work(tmp_path, capsys):
    (tmp_path / "a_file").write_text("")
    not_a_folder = f"its folder cannot be written ({tmp_path / 'a_file'} is a file, not a folder)"
    for output, message in ((tmp_path / "a_file" / "out.json", not_a_folder), (tmp_path, "is a folder")):
        with pytest.raises(SystemExit):  # the model and data are not even looked at
            main(["--model", "no/such/model", "--data", "no/such/data", "--output", str(output)])
        error = capsys.readouterr().err
        assert message in error and "Traceback" not in error


def test_a_class_whose_videos_are_all_unreadable_is_named(stdd_folder, tmp_path, make_video):
    for name in ("waving", "clapping", "jumping"):
        (tmp_path / "data" / name).mkdir(parents=True)
        make_video(f"{name}.mp4", num_frames=8).rename(tmp_path / "data" / name / "0.mp4")
    (tmp_path / "data" / "jumping" / "0.mp4").write_bytes(b"not a video")
    arguments = ["--model", str(stdd_folder), "--data", str(tmp_path / "data"), "--num-workers", "0",
                 "--label-texts", "none", "--output", str(tmp_path / "out.json")]
    results = main(arguments)
    assert results["classes_without_readable_videos"] == {"test": ["jumping"]}
    assert json.loads((tmp_path / "out.json").read_text())["classes_without_readable_videos"] == {"test": ["jumping"]}
    with pytest.raises(ValueError, match="0.mp4"):
        main([*arguments, "--fail-on-unreadable-video"])


def test_evaluation_builds_askg_label_texts_with_the_templates_flags(stdd_folder, tmp_path, make_video, monkeypatch):
    from training import evaluate_zero_shot

    used = []

    def recording_load_label_texts(*args):
        used.append(load_label_texts(*args))
        return used[-1]

    monkeypatch.setattr(evaluate_zero_shot, "load_label_texts", recording_load_label_texts)
    for name in ("waving", "clapping"):
        (tmp_path / "data" / name).mkdir(parents=True)
        make_video(f"{name}.mp4", num_frames=8).rename(tmp_path / "data" / name / "0.mp4")
    entries = {label: make_entry(label) for label in ("waving", "clapping")}
    write_askg_file({label: entry.subset(GRAPH_FIELDS) for label, entry in entries.items()}, tmp_path / "graph.yml")
    write_askg_file({label: entry.subset(CLAUSE_FIELDS) for label, entry in entries.items()}, tmp_path / "clauses.yml")
    (tmp_path / "templates.txt").write_text("a clip of {}.\nfootage of {}.\n")
    results = main([
        "--model", str(stdd_folder), "--data", str(tmp_path / "data"), "--num-workers", "0",
        "--label-texts", str(tmp_path / "graph.yml"), str(tmp_path / "clauses.yml"),
        "--templates", str(tmp_path / "templates.txt"), "--output", str(tmp_path / "out.json"),
    ])
    assert results["num_videos"] == {"test": 2}
    assert used[0].templates == ["a clip of {}.", "footage of {}."]
    assert used[0].texts == LabelTexts.from_label_db(entries, templates=used[0].templates).texts
    with pytest.raises(ValueError, match="--templates builds the prompt sets of --label-texts"):
        load_label_texts("none", ["{}."])
