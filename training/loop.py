"""
The training loop of a job: train each of its models (STDD, and the frame-mean baseline when asked) for the chosen
epochs with a checkpoint per epoch, resume an interrupted run, average the weights of the chosen epochs, evaluate each
model zero-shot and save it with `eval_results.json`.
"""

import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator, DataLoaderConfiguration
from accelerate.scheduler import AcceleratedScheduler
from accelerate.utils import set_seed
from tqdm.auto import tqdm

from modeling_stdd.prompt_sets_stdd import PromptSet, build_prompt_set
from training.arguments import parse_average_epochs
from training.checkpointing import checkpoint_settings, checkpoint_to_resume, load_checkpoint, save_checkpoint
from training.class_coverage import TrainingClassCoverage, check_training_classes, classes_without_readable_videos
from training.data import VideoClipDataset, class_names_of, collate_clips
from training.divergence import NonFiniteStepGuard
from training.evaluation import evaluation_loader, predict, top_k_accuracy
from training.job import Job, TrainedRun, eval_class_names, load_model, prepare_job, run_settings
from training.model_folder import save_model_folder
from training.objective import FrozenImageTower, STDDTrainingModule
from training.optim import parameter_groups, scaled_learning_rate, warmup_cosine_schedule
from training.protocols import class_overlap
from training.reporting import reported_top_k, trackers, training_report
from training.run_folder import check_same_settings, resume_settings
from training.run_state import TrainingProgress, WeightAverager
from training.runtime import make_accelerator, write_json_atomically


BASELINE_NAME = "frame_mean_baseline"
RUN_DESCRIPTIONS = {
    "stdd": "STDD",
    BASELINE_NAME: "the frame-mean baseline (plain CLIP, stca_layers=[]) with the same budget",
}


def run_job(args, accelerator: Accelerator, output_dir: Path) -> dict:
    """Train the job's runs, evaluate them zero-shot and save their models and `eval_results.json`."""
    job = prepare_job(args, accelerator)
    check_training_classes(job.train_dataset)
    overlap = class_overlap(class_names_of(job.train_dataset), eval_class_names(job))
    if job.eval_dataset is not None and not overlap.zero_shot:
        accelerator.print(f"warning: {overlap.describe()} ({', '.join(overlap.seen[:10])}"
                          f"{', ...' if len(overlap.seen) > 10 else ''}): the evaluation is not zero-shot")
    settings = run_settings(args, job, accelerator)
    runs = [("stdd", {}, output_dir)]
    if args.frame_mean_baseline:
        runs.append((BASELINE_NAME, {"stca_layers": []}, output_dir / BASELINE_NAME))
    results = {"zero_shot": {}, "zero_shot_videos": {}, "training": {}, "class_overlap": overlap.to_dict()}
    for index, (name, overrides, run_dir) in enumerate(runs, start=1):
        position = f"run {index}/{len(runs)}" if len(runs) > 1 else ""
        accelerator.print(f"\n[{name}] {position + ': ' if position else ''}training {RUN_DESCRIPTIONS[name]}")
        run = train_run(args, job, name, overrides, run_dir, position)
        results["training"][name] = run.summary
        if job.eval_dataset is not None:
            results["zero_shot"][name], videos = evaluate_run(args, job, run)
            results["zero_shot_videos"][name] = videos
            unreadable = f" ({videos['num_unreadable']} unreadable left out)" if videos["num_unreadable"] else ""
            kind = "zero-shot" if overlap.zero_shot else "evaluation (not zero-shot)"
            accelerator.print(f"[{name}] {kind} on {videos['num_videos']} videos{unreadable} of "
                              f"{overlap.describe()}: " +
                              ", ".join(f"{k} {v:.1f}" for k, v in results["zero_shot"][name].items()))
            if videos["classes_without_readable_videos"]:
                accelerator.print(f"[{name}] warning: no video of {videos['classes_without_readable_videos']} could "
                                  "be read; the figures are over the other classes only")
        if accelerator.is_main_process:
            record = {**settings, "model_overrides": {**job.model_overrides, **overrides},
                      "train_classes": class_names_of(job.train_dataset), "class_overlap": overlap.to_dict()}
            save_model_folder(run, job, run_dir / "model", record)
        accelerator.wait_for_everyone()
    results["settings"] = settings
    if accelerator.is_main_process:
        write_json_atomically(output_dir / "eval_results.json", results)
        run_dirs = {name: run_dir for name, _, run_dir in runs}
        print("\n" + training_report(results, run_dirs, output_dir))
    accelerator.end_training()
    return results


def training_loader(job: Job, args, accelerator: Accelerator):
    clips = VideoClipDataset(
        job.train_dataset, job.processor.video_processor, training=True,
        skip_unreadable=not args.fail_on_unreadable_video,
    )
    if len(clips) < args.batch_size * accelerator.num_processes:
        raise ValueError(
            f"--train-data has {len(clips)} videos, fewer than one batch ({args.batch_size} x "
            f"{accelerator.num_processes} processes); lower --batch-size."
        )
    return torch.utils.data.DataLoader(
        clips, batch_size=args.batch_size, shuffle=True, drop_last=True, num_workers=args.num_workers,
        collate_fn=collate_clips, persistent_workers=False,
    )


def train_run(args, job: Job, name: str, overrides: dict, run_dir: Path, position: str = "") -> TrainedRun:
    """Train one model (`position`: "run 2/2" in the job, shown with its progress); returns it with its weights
    averaged over the chosen epochs."""
    accelerator = make_accelerator(
        mixed_precision=args.mixed_precision,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        log_with=trackers(args.report_to, run_dir),
        project_dir=str(run_dir),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
    )
    set_seed(args.seed)
    image_size = args.image_size or job.processor.video_processor.crop_size["height"]
    model, interpolate = load_model(job, overrides, image_size)
    model.to(accelerator.device)  # the class prompts below are encoded on the training device
    if args.gradient_checkpointing:
        model.activation_checkpointing_enable()
    teacher = FrozenImageTower(model).to(accelerator.device) if args.distillation_weight else None
    prompts = build_prompt_set(model, job.processor.tokenizer, class_names_of(job.train_dataset), job.template,
                               job.label_texts).to(accelerator.device)
    module = STDDTrainingModule(model, args.distillation_weight, args.train_logit_scale)
    module.train()
    global_batch_size = args.batch_size * accelerator.num_processes * args.gradient_accumulation_steps
    learning_rate = scaled_learning_rate(args.learning_rate, global_batch_size, args.learning_rate_batch_size)
    optimizer = torch.optim.AdamW(parameter_groups(module, args.weight_decay), lr=learning_rate)
    loader = training_loader(job, args, accelerator)
    module, optimizer, loader = accelerator.prepare(module, optimizer, loader)

    steps_per_epoch = math.ceil(len(loader) / args.gradient_accumulation_steps)
    total_steps = args.max_steps or steps_per_epoch * args.epochs
    num_epochs = math.ceil(total_steps / steps_per_epoch)
    warmup_steps = min(round(args.warmup_epochs * steps_per_epoch), total_steps)
    # The prepared scheduler advances once per process at every optimizer step.
    scheduler = accelerator.prepare(warmup_cosine_schedule(
        optimizer, warmup_steps * accelerator.num_processes, total_steps * accelerator.num_processes,
        args.min_lr_ratio,
    ))
    progress = TrainingProgress()
    averager = WeightAverager(parse_average_epochs(args.average_epochs, num_epochs))
    coverage = TrainingClassCoverage(class_names_of(job.train_dataset))
    training_state = {"progress": progress, "weight_average": averager, "class_coverage": coverage}
    settings = resume_settings(args, accelerator.num_processes)

    resume_from = checkpoint_to_resume(args.resume_from_checkpoint, run_dir)
    if resume_from is not None:
        accelerator.print(f"[{name}] resuming from {resume_from}")
        check_same_settings(checkpoint_settings(resume_from), settings, str(resume_from))
        load_checkpoint(accelerator, resume_from, training_state)
    accelerator.init_trackers(name, config=vars(args))
    accelerator.print(
        f"[{name}] {len(job.train_dataset)} training videos, {prompts.num_classes} classes, {num_epochs} epochs x "
        f"{steps_per_epoch} steps, {accelerator.num_processes} process(es), "
        f"averaging epochs {averager.epochs or 'none'}; learning rate {args.learning_rate:g} for "
        f"{args.learning_rate_batch_size} clips -> {learning_rate:g} for the global batch of {global_batch_size}"
    )
    guard = NonFiniteStepGuard(accelerator, args.skip_nonfinite_steps, name)
    timer = time.perf_counter()
    bar = tqdm(total=total_steps, initial=progress.global_step, desc=f"{name} {position}".strip(),
               disable=not accelerator.is_local_main_process)
    setup = TrainingSetup(
        accelerator=accelerator, module=module, teacher=teacher, prompts=prompts, optimizer=optimizer,
        scheduler=scheduler, loader=loader, interpolate_pos_encoding=interpolate, max_grad_norm=args.max_grad_norm,
        total_steps=total_steps, guard=guard, bar=bar,
    )
    for epoch in range(progress.epoch + 1, num_epochs + 1):
        loader.set_epoch(epoch)
        epoch_loss = train_epoch(setup, progress, coverage)
        coverage.end_epoch(accelerator, name)
        progress.epoch, progress.last_epoch_loss = epoch, epoch_loss
        progress.training_seconds += time.perf_counter() - timer
        timer = time.perf_counter()
        averager.add(accelerator.unwrap_model(module).model, epoch)
        accelerator.log({"epoch": epoch, **{f"epoch_{k}": v for k, v in epoch_loss.items()}},
                        step=progress.global_step)
        if accelerator.is_local_main_process:  # through the bar's writer, so that the line lands above the bar
            bar.write(f"[{name}] epoch {epoch}/{num_epochs}: " +
                      ", ".join(f"{k} {v:.4f}" for k, v in epoch_loss.items()) +
                      f", skipped videos {progress.skipped_videos}, skipped non-finite steps "
                      f"{progress.nonfinite_steps_skipped}")
        save_checkpoint(accelerator, run_dir, epoch, args.save_total_limit, training_state, settings)
    bar.close()
    model = accelerator.unwrap_model(module).model
    averaged = averager.apply_to(model)
    for tracker in accelerator.trackers:  # end_training would also end the process group that evaluation needs
        tracker.finish()
    summary = {
        "epochs": num_epochs,
        "optimizer_steps": progress.global_step,
        "seconds": round(progress.training_seconds, 1),
        "skipped_videos": progress.skipped_videos,
        "nonfinite_steps_skipped": progress.nonfinite_steps_skipped,
        "classes_without_readable_videos": coverage.lost_classes(),
        "averaged_epochs": averager.epochs if averaged else [],
        "global_batch_size": global_batch_size,
        "learning_rate": learning_rate,
        **{f"last_epoch_{k}": v for k, v in progress.last_epoch_loss.items()},
    }
    return TrainedRun(model.eval(), interpolate, summary)


@dataclass
class TrainingSetup:
    """What every optimizer step of one model's training works with, as `train_run` prepares it."""

    accelerator: Accelerator
    module: torch.nn.Module  # the `STDDTrainingModule`, prepared by accelerate
    teacher: FrozenImageTower | None  # the distillation target; None without distillation
    prompts: PromptSet  # of the training classes, on the training device
    optimizer: torch.optim.Optimizer
    scheduler: AcceleratedScheduler
    loader: torch.utils.data.DataLoader
    interpolate_pos_encoding: bool
    max_grad_norm: float  # gradient clipping; 0: the norm is measured only
    total_steps: int  # optimizer steps of the whole run
    guard: NonFiniteStepGuard
    bar: tqdm


def train_epoch(setup: TrainingSetup, progress: TrainingProgress, coverage: TrainingClassCoverage) -> dict[str, float]:
    """
    One pass over the loader (stopping at `setup.total_steps`), counting steps and skipped videos in `progress` and
    the classes seen in `coverage`; returns the epoch's mean loss terms, over its batches of finite loss. An optimizer
    step with a non-finite loss or gradient is skipped or stops the run (`setup.guard`).
    """
    accelerator, module, optimizer, scheduler, guard = (
        setup.accelerator, setup.module, setup.optimizer, setup.scheduler, setup.guard
    )
    interpolate = setup.interpolate_pos_encoding
    module.train()
    totals = {"loss": 0.0, "cross_entropy": 0.0, "distillation": 0.0}
    batches = 0
    for batch in setup.loader:
        if progress.global_step >= setup.total_steps:
            break
        with accelerator.accumulate(module):
            teacher_embeds = None
            if setup.teacher is not None:
                with accelerator.autocast():
                    teacher_embeds = setup.teacher(batch["pixel_values"], interpolate_pos_encoding=interpolate)
            outputs = module(batch["pixel_values"], batch["labels"], setup.prompts, teacher_embeds, interpolate)
            finite_loss = guard.watch_loss(outputs["loss"])
            accelerator.backward(outputs["loss"])
            finite_step = True
            if accelerator.sync_gradients:  # the gradient norm is clipped to --max-grad-norm (0: measured only)
                grad_norm = accelerator.clip_grad_norm_(module.parameters(), setup.max_grad_norm or math.inf)
                finite_step = guard.check_step(grad_norm, progress, progress.global_step + 1)
            if finite_step:
                optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
        progress.skipped_videos += int(accelerator.reduce(batch["num_skipped"], reduction="sum"))
        coverage.add(batch["labels"], batch["skipped_labels"])
        if finite_loss:
            batches += 1
            for key in totals:
                totals[key] += outputs[key].item()
        if accelerator.sync_gradients:
            progress.global_step += 1
            setup.bar.update(1)
            setup.bar.set_postfix(loss=f"{outputs['loss'].item():.3f}")
            if finite_loss:
                accelerator.log({"loss": outputs["loss"].item(), "cross_entropy": outputs["cross_entropy"].item(),
                                 "distillation": outputs["distillation"].item(), "lr": scheduler.get_last_lr()[0],
                                 "skipped_videos": progress.skipped_videos}, step=progress.global_step)
    return {key: value / batches for key, value in totals.items()} if batches else {}


def evaluate_run(args, job: Job, run: TrainedRun) -> tuple[dict[str, float], dict]:
    """
    Zero-shot top-1 / top-5 (percent) on the evaluation data, one view per video, the counts of videos scored and
    left out as unreadable, and the classes none of whose videos could be read (the figures leave them out).
    """
    accelerator = make_accelerator(mixed_precision=args.mixed_precision)
    prompts = build_prompt_set(run.model, job.processor.tokenizer, eval_class_names(job), job.template, job.label_texts)
    loader = evaluation_loader(job.eval_dataset, job.processor, args.eval_batch_size, args.num_workers,
                               not args.fail_on_unreadable_video)
    scores, labels, num_unreadable = predict(run.model.to(accelerator.device), accelerator.prepare(loader), prompts,
                                             accelerator, interpolate_pos_encoding=run.interpolate_pos_encoding)
    if len(labels) == 0:
        raise ValueError(f"There is no readable video in the evaluation data ({num_unreadable} unreadable).")
    lost = classes_without_readable_videos(eval_class_names(job), job.eval_dataset["label"], labels)
    videos = {"num_videos": len(labels), "num_unreadable": num_unreadable, "classes_without_readable_videos": lost}
    return top_k_accuracy(scores, labels, k=reported_top_k(prompts.num_classes)), videos
