"""
The "zero-shot-video-classification" pipeline: rank free-text action labels for videos with an STDD model.

Each candidate label becomes one prompt (`hypothesis_template.format(label)`), or, with label texts (STDD's
spatiotemporal text augmentation), the label's own prompt set (see `prompt_sets_stdd.py`); the encoded prompt set of
a call is computed once per pipeline and reused. Videos are scored with the model's class scores (STDD_METHOD.md,
section 2) and the scores are a softmax over the candidates; with `num_clips > 1` the views are combined by
`view_aggregation` (see `view_aggregation.py`). With `segment_seconds`, each window of a long video is classified on
its own and the result is a timeline.

This file is also shipped as Hub remote code, where only its sibling files exist: it imports them relatively and
flat.

A model repo exported with `python -m hub_card export` holds label-text sets as `label_texts/NAME.json` with the
prompts' text embeddings in `label_texts/NAME.safetensors`; `label_texts="NAME"` (or the path of such a JSON file)
loads both, and the stored embeddings replace encoding once they are checked to belong to the prompts and the model.
"""

import os
import shutil
import tempfile
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers.dynamic_module_utils import custom_object_save
from transformers.pipelines.base import ChunkPipeline
from transformers.utils import logging

from .file_utils import move_into_place
from .processing_stdd import STDDProcessor
from .prompt_sets_stdd import (
    DEFAULT_HYPOTHESIS_TEMPLATE,
    PromptSet,
    encode_prompt_set,
    flat_prompts,
    label_prompts,
    label_texts_mapping,
    read_verified_prompt_embeddings,
    resolve_label_texts,
)
from .video_download import DEFAULT_DOWNLOAD_TIMEOUT_SECONDS, DEFAULT_MAX_DOWNLOAD_BYTES, download_video, is_url
from .video_processing_stdd import (
    DEFAULT_SAMPLING_RATE,
    FRAME_TIME_DECIMALS,
    DecodedVideo,
    EncodedVideo,
    frames_from_decoded,
    sample_frame_indices,
)
from .view_aggregation import DEFAULT_VIEW_AGGREGATION, check_view_aggregation, video_scores


logger = logging.get_logger(__name__)

TASK = "zero-shot-video-classification"
# Encoded prompt sets a pipeline keeps (least recently used ones are dropped first).
TEXT_CACHE_SIZE = 16
# A timeline window ending this close to the end of the video is its last one.
WINDOW_END_TOLERANCE_SECONDS = 1e-6
# A frame whose timestamp is this close before a window's start counts as inside it (decord gives float32 seconds).
FRAME_TIME_TOLERANCE_SECONDS = 1e-3


# ----------------------------------------------------------------------------------------------------------------------
# Scores
# ----------------------------------------------------------------------------------------------------------------------


def check_finite_scores(scores: torch.Tensor, where: str) -> torch.Tensor:
    """
    Refuse class scores `(videos, classes)` that hold NaN or inf: they come from broken weights (a diverged training
    run, say), and ranking them would put an arbitrary class first as if it were a prediction.
    """
    broken = ~torch.isfinite(scores).all(dim=-1)
    if broken.any():
        raise ValueError(
            f"{where}: the model's class scores are not finite (NaN or inf) for {int(broken.sum())} of {len(broken)} "
            "videos; its weights are broken (from a diverged training run?), so its output is no ranking."
        )
    return scores


# ----------------------------------------------------------------------------------------------------------------------
# Videos and timelines
# ----------------------------------------------------------------------------------------------------------------------


def fetch_video(
    video, timeout: float = DEFAULT_DOWNLOAD_TIMEOUT_SECONDS, max_download_bytes: int = DEFAULT_MAX_DOWNLOAD_BYTES
):
    """
    Download an http(s) URL into memory (bytes, see `download_video`); check that a local path exists; pass other
    videos through.
    """
    if is_url(video):
        return download_video(video, timeout, max_download_bytes)
    if isinstance(video, (str, os.PathLike)) and not os.path.isfile(video):
        raise ValueError(f"Video file not found: {video}")
    return video


def check_one_video(video):
    """Refuse an input that holds several videos (a 5-dim batch, a list of videos): the pipeline ranks it as one."""
    if isinstance(video, (np.ndarray, torch.Tensor)) and video.ndim == 5 and video.shape[0] > 1:
        raise ValueError(
            f"One input holds {video.shape[0]} videos (shape {tuple(video.shape)}); pass a list of videos instead."
        )
    if isinstance(video, (list, tuple)) and not all(isinstance(frame, Image.Image) for frame in video):
        raise ValueError(
            f"One input is a {type(video).__name__} of {len(video)} videos; pass a list of videos, not a list of "
            "lists (a list inside it can only be the PIL frames of one video)."
        )


def timeline_windows(duration: float, segment_seconds: float, stride_seconds: float) -> list[tuple[float, float]]:
    """
    `(start, end)` windows of `segment_seconds` starting at `k * stride_seconds`, until one reaches `duration` (within
    `WINDOW_END_TOLERANCE_SECONDS`, so rounding makes no sliver of a last window); that last one ends exactly at
    `duration`. With `stride_seconds <= segment_seconds` they cover `[0, duration]` with no gap.
    """
    windows = []
    while True:
        start = len(windows) * stride_seconds
        end = start + segment_seconds
        if end >= duration - WINDOW_END_TOLERANCE_SECONDS:
            return windows + [(start, duration)]
        windows.append((start, end))


def window_frame_indices(
    start: float, end: float, frame_times: np.ndarray, num_frames: int, num_clips: int,
    frame_sampling: str = "segments", sampling_rate: int = DEFAULT_SAMPLING_RATE,
) -> np.ndarray:
    """
    Frame indices of shape (num_clips, num_frames) sampled from the frames of `[start, end)`: those whose timestamp
    (`frame_times`, seconds, increasing) falls inside, or the frame on screen at `start` when no frame starts inside
    (a window shorter than a frame of a variable-frame-rate video). They are taken by the evaluation views of
    `frame_sampling`: segment centres, or dense windows of `sampling_rate`-spaced frames at the window's frame rate.
    """
    bounds = np.array([start, end]) - FRAME_TIME_TOLERANCE_SECONDS
    first, last = np.searchsorted(frame_times, bounds)
    if last <= first:
        first = max(int(first) - 1, 0)
        last = first + 1
    num_window_frames = int(last - first)
    return first + sample_frame_indices(
        num_window_frames, num_frames, num_clips=num_clips, frame_sampling=frame_sampling,
        sampling_rate=sampling_rate, fps=num_window_frames / (end - start),
    )


def timeline_frame_times(video: EncodedVideo | DecodedVideo, fps: float | None) -> tuple[np.ndarray, float]:
    """
    When each frame of an open video is shown (seconds from the first one, increasing) and the video's duration: the
    end of its last frame, which lasts as long as the one before it. The file's own frame times, or with `fps` (which
    decoded frames need) frame k at k / fps.
    """
    if fps is None and video.average_fps is None:
        raise ValueError("Segmenting decoded frames (an array, a tensor or a list of images) needs their fps=.")
    rate = video.average_fps if fps is None else fps
    if len(video) == 0 or not rate > 0:
        raise ValueError(f"The video has {len(video)} frames at {rate} fps; it cannot be cut in windows.")
    frame_times = video.frame_times() if fps is None else np.arange(len(video)) / fps
    last_frame_seconds = np.diff(frame_times[-2:])[0] if len(video) > 1 else 1 / rate
    return frame_times, round(float(frame_times[-1] + last_frame_seconds), FRAME_TIME_DECIMALS)


# ----------------------------------------------------------------------------------------------------------------------
# The pipeline
# ----------------------------------------------------------------------------------------------------------------------


class ZeroShotVideoClassificationPipeline(ChunkPipeline):
    """
    Zero-shot video classification with an STDD model: which of the `candidate_labels` does each video show?

    Example:

    ```python
    >>> import modeling_stdd  # registers the task
    >>> from transformers import pipeline
    >>> classifier = pipeline("zero-shot-video-classification", model="openai/clip-vit-base-patch16")
    >>> classifier("video.mp4", candidate_labels=["dancing", "playing guitar", "riding a bike"])
    [{'label': 'dancing', 'score': 0.93}, {'label': 'riding a bike', 'score': 0.05}, ...]
    ```

    Components: an [`STDDProcessor`] (tokenizer + video processor). A checkpoint without one (a plain CLIP checkpoint)
    gets the CLIP defaults for its image size and the model's `num_frames`.
    """

    _load_processor = None
    _load_tokenizer = False
    _load_image_processor = False
    _load_video_processor = False
    _load_feature_extractor = False

    def __init__(self, model, processor=None, **kwargs):
        if getattr(processor, "video_processor", None) is None:
            processor = STDDProcessor.for_model_config(model.config)
        kwargs.pop("tokenizer", None)
        super().__init__(model=model, processor=processor, tokenizer=processor.tokenizer, **kwargs)
        self.video_processor = processor.video_processor
        # Batching (`batch_size > 1`) reads padding settings from `feature_extractor`; video frames need no padding.
        self.feature_extractor = processor.video_processor
        # (label -> prompts, grouped) -> its encoded prompt set, least recently used first.
        self._prompt_sets: OrderedDict[tuple, PromptSet] = OrderedDict()
        # Prompt -> embedding, from stored prompt embeddings that passed `load_prompt_embeddings`' checks.
        self._stored_prompt_embeddings: dict[str, torch.Tensor] = {}

    def __call__(
        self,
        videos,
        candidate_labels: str | Sequence[str] | None = None,
        hypothesis_template: str = DEFAULT_HYPOTHESIS_TEMPLATE,
        label_texts=None,
        templates=None,
        **kwargs,
    ):
        """
        Rank `candidate_labels` for one video or a list of videos.

        Args:
            videos: a path, an http(s) URL, `bytes`, a binary file object, an array or tensor of frames
                `(T, H, W, C)` / `(T, C, H, W)` (a 5-dim one is several videos), a list of PIL frames, or a list
                or tuple of any of these, one video each.
            candidate_labels (`list[str]` or `str`): the labels, or one comma-separated string.
            hypothesis_template (`str`, defaults to `"a video of a person {}."`): the prompt of a label.
            label_texts: prompts per label (STDD's text augmentation): a `LabelTexts`, a dict label -> prompts, the
                path of a label-texts JSON or ASKG YAML file, the name of a set exported with the model
                (`label_texts/NAME.json` in its repo) or of a set shipped with stdd (`"ucf101"`, ...). Stored prompt
                embeddings next to a JSON file are used. Labels it lacks use `hypothesis_template`; without
                `candidate_labels`, its labels are the candidates. A list of paths and names merges them (an ASKG
                file, then its clause file). See `prompt_sets_stdd.resolve_label_texts`.
            templates (`list[str]` or path, *optional*): the templates that build the prompt sets of ASKG YAML
                `label_texts`: a list, or a file read by `modeling_stdd.askg.read_templates` (the first 8 of a YAML
                file's `templates:` list, such as the authors' `classes_label_<dataset>.yml`, or a text file).
            top_k (`int`, *optional*): keep the `top_k` best labels.
            num_clips (`int`, defaults to 1): temporal views per video (or window), sampled by the video
                processor's `frame_sampling` (segments, or the authors' dense windows).
            view_aggregation (`str`, defaults to `"softmax-mean"`): how the views' scores combine: `"logit-sum"`
                (the paper's: the views' class logits summed) or `"softmax-mean"` (per-view softmaxes averaged).
            segment_seconds (`float`, *optional*): classify windows of this length and return a timeline.
            stride_seconds (`float`, *optional*, defaults to `segment_seconds`): the step between window starts.
            fps (`float`, *optional*): frame rate of decoded frames (needed to segment them); overrides the file's.
            timeout (`float`, defaults to 300): seconds a URL's download may take in all (not per read).
            max_download_bytes (`int`, defaults to 2 GiB): larger videos at a URL are refused.
            batch_size (`int`, *optional*): videos (or windows) per model call.

        Returns:
            Per video, `[{"label", "score"}, ...]` best first (scores sum to 1 over all candidates), or with
            `segment_seconds` a timeline `[{"start", "end", "labels": [{"label", "score"}, ...]}, ...]` in seconds.
            A list of those for a list of videos.
        """
        prompt_set = self.prompt_set(candidate_labels, hypothesis_template, label_texts, templates)
        if isinstance(videos, tuple) or (isinstance(videos, (np.ndarray, torch.Tensor)) and videos.ndim == 5):
            videos = list(videos)
        elif isinstance(videos, list) and videos and all(isinstance(frame, Image.Image) for frame in videos):
            videos = frames_from_decoded(videos)
        return super().__call__(videos, prompt_set=prompt_set, **kwargs)

    def prompt_set(
        self,
        candidate_labels: str | Sequence[str] | None = None,
        hypothesis_template: str = DEFAULT_HYPOTHESIS_TEMPLATE,
        label_texts=None,
        templates=None,
    ) -> PromptSet:
        """
        The labels and encoded prompts a call with these arguments ranks videos against (see `__call__`), checked:
        a label-text source is resolved and the prompt embeddings stored with it loaded. Raises `ValueError` for bad
        labels or texts.
        """
        if label_texts is not None or templates is not None:
            label_texts, embeddings_file = resolve_label_texts(label_texts, templates, self.model.name_or_path)
            if embeddings_file is not None:
                self.load_prompt_embeddings(label_texts, embeddings_file)
        prompts = label_prompts(candidate_labels, hypothesis_template, label_texts)
        return self._encoded_prompt_set(prompts, grouped=label_texts is not None)

    def _sanitize_parameters(
        self,
        prompt_set: PromptSet | None = None,
        top_k: int | None = None,
        num_clips: int | None = None,
        view_aggregation: str | None = None,
        segment_seconds: float | None = None,
        stride_seconds: float | None = None,
        fps: float | None = None,
        timeout: float | None = None,
        max_download_bytes: int | None = None,
    ):
        preprocess_params, forward_params, postprocess_params = {}, {}, {}
        if view_aggregation is not None:
            forward_params["view_aggregation"] = check_view_aggregation(view_aggregation)
        if prompt_set is not None:
            forward_params["prompt_set"] = prompt_set
            postprocess_params["labels"] = prompt_set.labels
        if top_k is not None:
            if not isinstance(top_k, int) or top_k < 1:
                raise ValueError(f"top_k must be a positive integer, got {top_k!r}.")
            postprocess_params["top_k"] = top_k
        if num_clips is not None:
            if not isinstance(num_clips, int) or num_clips < 1:
                raise ValueError(f"num_clips must be a positive integer, got {num_clips!r}.")
            preprocess_params["num_clips"] = num_clips
        if segment_seconds is not None:
            stride_seconds = segment_seconds if stride_seconds is None else stride_seconds
            if not segment_seconds > 0 or not 0 < stride_seconds <= segment_seconds:
                raise ValueError(
                    "Need segment_seconds > 0 and 0 < stride_seconds <= segment_seconds (windows must cover the "
                    f"video), got segment_seconds={segment_seconds!r}, stride_seconds={stride_seconds!r}."
                )
            preprocess_params.update(segment_seconds=segment_seconds, stride_seconds=stride_seconds)
        elif stride_seconds is not None:
            raise ValueError("stride_seconds needs segment_seconds.")
        if fps is not None:
            preprocess_params["fps"] = fps
        for name, value in (("timeout", timeout), ("max_download_bytes", max_download_bytes)):
            if value is not None:
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                    raise ValueError(f"{name} must be a number > 0, got {value!r}.")
                preprocess_params[name] = value
        return preprocess_params, forward_params, postprocess_params

    def preprocess(
        self,
        video,
        num_clips: int = 1,
        segment_seconds: float | None = None,
        stride_seconds: float | None = None,
        fps: float | None = None,
        timeout: float = DEFAULT_DOWNLOAD_TIMEOUT_SECONDS,
        max_download_bytes: int = DEFAULT_MAX_DOWNLOAD_BYTES,
    ):
        """Yield `pixel_values` (1, views, T, 3, S, S) for the whole video, or per window with its start and end."""
        check_one_video(video)
        video = fetch_video(video, timeout, max_download_bytes)
        processor = self.video_processor
        if segment_seconds is None:
            inputs = processor(video, num_clips=num_clips, keep_view_axis=True, return_tensors="pt")
            yield {"pixel_values": inputs["pixel_values"], "start": None, "end": None, "is_last": True}
            return
        video = processor.open_video(video)
        frame_times, duration = timeline_frame_times(video, fps)
        windows = timeline_windows(duration, segment_seconds, stride_seconds)
        for index, (start, end) in enumerate(windows):
            frame_indices = window_frame_indices(
                start, end, frame_times, processor.num_frames, num_clips,
                processor.frame_sampling, processor.sampling_rate,
            )
            # Each clip is a video of its crops: (clips, T, H, W, 3) -> (clips, crops, T, ...) -> (1, views, T, ...)
            clips = video.read(frame_indices)
            views = processor(clips, do_sample_frames=False, keep_view_axis=True, return_tensors="pt")["pixel_values"]
            pixel_values = views.flatten(0, 1)[None]
            yield {"pixel_values": pixel_values, "start": start, "end": end, "is_last": index == len(windows) - 1}

    def _forward(self, model_inputs, prompt_set: PromptSet, view_aggregation: str = DEFAULT_VIEW_AGGREGATION):
        """Class probabilities (batch, labels): the views' class scores combined by `view_aggregation`."""
        scores = video_scores(self.model, model_inputs["pixel_values"], prompt_set, view_aggregation)
        scores = check_finite_scores(scores, TASK)
        return {
            "scores": scores,
            "start": model_inputs["start"],
            "end": model_inputs["end"],
            "is_last": model_inputs["is_last"],
        }

    def postprocess(self, model_outputs: list[dict], labels: tuple[str, ...], top_k: int | None = None):
        """Ranked labels of the video, or a timeline of ranked labels when it was cut into windows."""
        ranked = [self._ranked_labels(output["scores"][0], labels, top_k) for output in model_outputs]
        if model_outputs[0]["start"] is None:
            return ranked[0]
        return [
            {"start": output["start"], "end": output["end"], "labels": window_labels}
            for output, window_labels in zip(model_outputs, ranked)
        ]

    def _encoded_prompt_set(self, label_prompts: dict[str, list[str]], grouped: bool) -> PromptSet:
        """
        The prompt set of `label_prompts` (label -> prompts), encoded by the text tower on first use (or taken from
        loaded stored embeddings when they hold all its prompts) and cached per pipeline.
        """
        key = (tuple((label, tuple(prompts)) for label, prompts in label_prompts.items()), grouped)
        if key in self._prompt_sets:
            self._prompt_sets.move_to_end(key)
            return self._prompt_sets[key]
        stored = [self._stored_prompt_embeddings.get(prompt) for prompt in flat_prompts(label_prompts)]
        if all(embeds is not None for embeds in stored):
            prompt_set = PromptSet.from_label_prompts(label_prompts, torch.stack(stored), grouped)
        else:
            prompt_set = encode_prompt_set(self.model, self.tokenizer, label_prompts, grouped)
        self._prompt_sets[key] = prompt_set
        if len(self._prompt_sets) > TEXT_CACHE_SIZE:
            self._prompt_sets.popitem(last=False)
        return prompt_set

    def load_prompt_embeddings(self, label_texts, embeddings_file: str | os.PathLike) -> bool:
        """
        Use the prompt embeddings stored in `embeddings_file` (see `prompt_sets_stdd.save_prompt_embeddings`) for the
        prompts of `label_texts` (a `LabelTexts` or a dict label -> prompts) from now on, if they pass
        `read_verified_prompt_embeddings`' checks. Otherwise log why and return False: the prompts are then encoded
        as usual.
        """
        prompts = flat_prompts(label_texts_mapping(label_texts))
        text_embeds = read_verified_prompt_embeddings(self.model, self.tokenizer, embeddings_file, prompts)
        if text_embeds is None:
            return False
        self._stored_prompt_embeddings.update(zip(prompts, text_embeds.to(self.device)))
        return True

    @staticmethod
    def _ranked_labels(scores: torch.Tensor, labels: Sequence[str], top_k: int | None) -> list[dict]:
        order = scores.argsort(descending=True, stable=True).tolist()[:top_k]
        return [{"label": labels[index], "score": scores[index].item()} for index in order]

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs):
        """
        Save the model, the processor and this pipeline's code, with the task recorded in the config, so that
        `pipeline(model=save_directory, trust_remote_code=True)` rebuilds this pipeline.

        The folder is replaced as a whole: the save is written to a temporary sibling folder that is renamed into place
        once complete, so an interrupted or failed save leaves `save_directory` as it was. As with transformers' own
        `save_pretrained`, saving into an existing folder overwrites the files a save writes and keeps the others
        (they are copied into the new folder).
        """
        save_directory = Path(save_directory).resolve()
        if save_directory.exists() and not save_directory.is_dir():
            raise ValueError(f"Cannot save the pipeline to {save_directory}: it is a file, not a folder.")
        save_directory.parent.mkdir(parents=True, exist_ok=True)
        if kwargs.get("push_to_hub"):  # the Hub repo is named after the folder asked for, not the temporary one
            kwargs.setdefault("repo_id", save_directory.name)
        work_dir = Path(tempfile.mkdtemp(prefix=f".{save_directory.name}.saving-", dir=save_directory.parent))
        try:
            new_dir = work_dir / "new"
            if save_directory.is_dir():
                shutil.copytree(save_directory, new_dir, symlinks=True)
            else:
                new_dir.mkdir()
            self._write_pretrained(new_dir, **kwargs)
            move_into_place(new_dir, save_directory)
        finally:
            shutil.rmtree(work_dir, ignore_errors=True)

    def _write_pretrained(self, folder: Path, **kwargs):
        """Write the pipeline's code, the model (its config recording the task) and the processor into `folder`."""
        module_file = type(self).__module__.split(".")[-1]
        self.model.config.custom_pipelines = {
            TASK: {"impl": f"{module_file}.{type(self).__name__}", "pt": ["AutoModel"], "type": "multimodal"}
        }
        custom_object_save(self, folder)
        self.model.save_pretrained(folder, **kwargs)
        self.processor.save_pretrained(folder, **kwargs)


__all__ = [
    "ZeroShotVideoClassificationPipeline",
    "timeline_frame_times",
    "timeline_windows",
]
