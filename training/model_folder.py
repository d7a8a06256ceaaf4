"""
The model folder a training run saves (`<run dir>/model`): the model and processor (`save_pretrained`), the prompts of
the training and evaluation classes with their prompt embeddings (`label_texts/{train,eval}.json`, the layout the
pipeline and the Hub export read) and the run's record (`training_settings.json`, see training/run_record.py).
"""

import shutil
from pathlib import Path

from modeling_stdd.askg import LabelTexts
from modeling_stdd.file_utils import move_into_place
from modeling_stdd.prompt_sets_stdd import (
    EXPORTED_LABEL_TEXTS_DIR,
    encode_prompt_set,
    label_prompts,
    save_prompt_embeddings,
)
from training.data import class_names_of
from training.job import Job, TrainedRun, eval_class_names
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
        prompts = label_prompts(class_names, job.template, job.label_texts)
        texts = LabelTexts(prompts, source=f"{split} classes of {job.base_model}")
        texts_file = texts.save(partial / EXPORTED_LABEL_TEXTS_DIR / f"{split}.json")
        prompt_set = encode_prompt_set(run.model, job.processor.tokenizer, prompts, grouped=job.label_texts is not None)
        save_prompt_embeddings(texts_file, prompt_set.prompts, prompt_set.text_embeds)
    write_run_record(partial, record)
    move_into_place(partial, folder)
