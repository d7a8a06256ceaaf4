"""
The model folder a training run saves (`<run dir>/model`): the model and processor (`save_pretrained`), the prompts of
the training and evaluation classes with their prompt embeddings (`label_texts/{train,eval}.json`, the layout the
pipeline and the Hub export read) and the run's record (`training_settings.json`, see training/run_record.py).
"""

import shutil
from pathlib import Path

from modeling_stdd.askg import LabelTexts
from modeling_stdd.file_utils import move_into_place
from modeling_stdd.pipeline_stdd import build_label_set, save_prompt_embeddings
from training.data import class_names_of
from training.job import Job, TrainedRun, eval_class_names
from training.objective import encode_class_prompts
from training.run_record import write_run_record


def save_model_folder(run: TrainedRun, job: Job, folder: Path, record: dict):
    """
    `save_pretrained` of the model and processor, plus `label_texts/{train,eval}.json`: the prompts of the training
    and evaluation classes with their prompt embeddings next to them (the layout the pipeline and Hub export read),
    and the run's `record` (`training_settings.json`).
    """
    if run.interpolate_pos_encoding:
        run.model.adopt_image_size(job.processor.video_processor.crop_size.height)
        run.interpolate_pos_encoding = False
    partial = folder.with_name(f".{folder.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    run.model.save_pretrained(partial)
    job.processor.save_pretrained(partial)
    for split, class_names in (("train", class_names_of(job.train_dataset)), ("eval", eval_class_names(job))):
        if not class_names:
            continue
        label_set = build_label_set(class_names, job.template, job.label_texts)
        texts = LabelTexts(label_set_texts(label_set), source=f"{split} classes of {job.base_model}")
        texts_file = texts.save(partial / "label_texts" / f"{split}.json")
        prompts = encode_class_prompts(run.model, job.processor.tokenizer, list(label_set.prompts),
                                       label_set.prompt_class_ids, len(class_names))
        save_prompt_embeddings(texts_file, list(label_set.prompts), prompts.text_embeds)
    write_run_record(partial, record)
    move_into_place(partial, folder)


def label_set_texts(label_set) -> dict[str, list[str]]:
    """Label -> prompts of a pipeline `LabelSet` (one prompt per label when it has no prompt groups)."""
    class_ids = label_set.prompt_class_ids or range(len(label_set.labels))
    texts = {label: [] for label in label_set.labels}
    for prompt, class_id in zip(label_set.prompts, class_ids):
        texts[label_set.labels[class_id]].append(prompt)
    return texts
