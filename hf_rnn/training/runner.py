"""The one training runner every task uses (`train.py` → `run`).

    arguments → output folder checked → data → processor → model inputs → model → Trainer
    → train (resumable) → [average the last checkpoints] → evaluate with generation → save (model, processor, code,
    card) → push → examples

Each step that is the task's own is a method of its `Task` (hf_rnn/tasks/base.py); everything else is here,
once. Every process of a multi-process run executes it; writing is the main process's job.
"""

import logging
import time
from pathlib import Path

from datasets import DatasetDict
from transformers import set_seed

from ..average import average_checkpoints, complete_checkpoints
from ..cards.model_card import CardInfo, build_model_card
from .arguments import RunConfig
from .run_record import prepare_output_dir
from .trainer import push_output_folder, train_saving_on_interrupt

logger = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
MAX_CARVED_VALIDATION = 1000


def run(config: RunConfig) -> dict:
    """The whole job; returns the final metrics (also written to `all_results.json`)."""
    started = time.time()
    task, data_args, args, training = config.task, config.data, config.args, config.training
    output_dir = Path(training.output_dir)
    set_seed(training.seed)
    task.adjust_training_arguments(training)

    identity = {"task": task.name, **task.run_identity(), "model": config.model}
    with training.main_process_first(desc="checking the output folder"):
        state = prepare_output_dir(
            output_dir, identity, training.resume_from_checkpoint, training.overwrite_output_dir, training.should_save
        )
    with training.main_process_first(desc="loading data"):
        raw = _limit_and_split(task.load_data(), data_args, training.eval_strategy != "no", training.seed)
    with training.main_process_first(desc="processor"):
        processor = task.build_processor(raw["train"], output_dir, reuse=state.same_run, save=training.should_save)
    with training.main_process_first(desc="preprocessing"):
        features = task.preprocess(raw, processor)

    if args.model_name_or_path:
        model = task.auto_model_class.from_pretrained(args.model_name_or_path, **config.model)
    else:
        model = task.build_model(processor, config.model)
    logger.info("Model: %s parameters, %s", f"{model.num_parameters():,}", model.config.to_diff_dict())

    trainer = task.trainer_class(
        model=model,
        args=training,
        train_dataset=features["train"],
        eval_dataset=features.get("validation"),
        processing_class=processor,
        data_collator=task.data_collator(processor, model),
        train_data_collator=task.train_data_collator(processor, model),
        compute_metrics=task.compute_metrics(processor, raw["validation"]) if "validation" in raw else None,
    )
    train_result = train_saving_on_interrupt(trainer, state.resume_from_checkpoint)
    averaged = (
        _average_last_checkpoints(trainer, training.average_last_checkpoints)
        if training.average_last_checkpoints
        else []
    )
    # Not `save_model()`: with push_to_hub it would push Trainer's generic card; the final push is push_output_folder.
    trainer.save_model(_internal_call=True)
    trainer.save_state()  # trainer_state.json: the log history (losses, throughput) beside the final model
    metrics = {k if k.startswith("train_") else f"train_{k}": v for k, v in train_result.metrics.items()}
    for split, prefix in (("validation", "eval"), ("test", "test")):
        if split in features:
            # Scored against the raw rows of this split, not against (truncated) label ids.
            trainer.compute_metrics = task.compute_metrics(processor, raw[split])
            metrics.update(trainer.evaluate(features[split], metric_key_prefix=prefix))
    metrics["wall_seconds"] = round(time.time() - started, 1)
    metrics["world_size"] = training.world_size
    trainer.log_metrics("all", metrics)
    trainer.save_metrics("all", metrics)

    eval_split = next((split for split in ("test", "validation") if split in raw), None)
    if training.should_save:
        rows = raw[eval_split or "train"]
        examples = rows.select(range(min(args.num_examples_to_print, len(rows))))
        task.save_extras(trainer.model, processor, output_dir, examples)
        repo_id = training.hub_model_id or output_dir.name
        card = build_model_card(_card(config, trainer, metrics, eval_split, examples, averaged), repo_id)
        card.save(output_dir / "README.md")
        if training.push_to_hub:
            push_output_folder(trainer, output_dir)
        task.print_examples(trainer.model, processor, examples)
        scores = {
            k: round(v, 4) for k, v in metrics.items() if k.startswith(("eval_", "test_")) and "runtime" not in k
        }
        print(f"\nScores: {scores}")
        print(f"Model, processor and model card saved to {output_dir}")
    return metrics


def _average_last_checkpoints(trainer, k: int) -> list[Path]:
    """Make the trained model the mean of the run's last `k` checkpoints; the final step is saved first if the
    schedule did not save it (a time budget ended training). Returns the averaged checkpoints, oldest first.

    Every process averages the same files into its copy of the model, so that evaluation and saving see the average.
    """
    output_dir = Path(trainer.args.output_dir)
    trainer.accelerator.wait_for_everyone()
    if not (output_dir / f"checkpoint-{trainer.state.global_step}").exists():
        trainer._save_checkpoint(trainer.model, trial=None)
    trainer.accelerator.wait_for_everyone()
    folders = complete_checkpoints(output_dir)[-k:]
    if len(folders) < 2:
        logger.warning("average_last_checkpoints %d: the run saved one checkpoint, nothing to average.", k)
        return []
    if len(folders) < k:
        logger.warning("average_last_checkpoints %d: the run saved %d checkpoints, averaging those.", k, len(folders))
    model = trainer.accelerator.unwrap_model(trainer.model)
    model.load_state_dict(average_checkpoints(folders, type(model)).state_dict())
    logger.info("The final model is the average of %s.", ", ".join(folder.name for folder in folders))
    return folders


def _limit_and_split(data: DatasetDict, data_args, evaluates: bool, seed: int) -> DatasetDict:
    """Apply `max_*_samples`; without a validation split, hold out part of train when the run evaluates."""
    if "train" not in data:
        raise ValueError(
            f"No training split found (the data has {list(data) or 'none'}): give `train_file`, `data_dir` or a "
            f"dataset with a {data_args.train_split!r} split."
        )
    if "validation" not in data and evaluates:
        count = min(MAX_CARVED_VALIDATION, int(len(data["train"]) * data_args.validation_split_percentage / 100))
        if count == 0:
            raise ValueError(
                f"The run evaluates during training but there is no validation split and {len(data['train'])} "
                f"training rows are too few to hold some out: give `validation_file`, or `--eval_strategy no`."
            )
        held_out = data["train"].train_test_split(test_size=count, seed=seed)
        data = DatasetDict({**data, "train": held_out["train"], "validation": held_out["test"]})
        logger.warning(
            "No validation split: holding out %d of the training rows for validation "
            "(`validation_split_percentage` %.1f%%, at most %d).",
            count,
            data_args.validation_split_percentage,
            MAX_CARVED_VALIDATION,
        )
    limits = {"train": data_args.max_train_samples, "validation": data_args.max_eval_samples}
    limits["test"] = data_args.max_predict_samples
    return DatasetDict(
        {
            split: rows.select(range(min(limits[split], len(rows)))) if limits[split] is not None else rows
            for split, rows in data.items()
        }
    )


def _card(
    config: RunConfig, trainer, metrics: dict, eval_split: str | None, examples, averaged: list[Path]
) -> CardInfo:
    task, training, model = config.task, config.training, trainer.model
    data_args = config.data
    dataset_id, dataset_description = task.dataset_reference()
    details = task.card_details(model, dataset_description, examples)
    prefix = "test" if eval_split == "test" else "eval"
    return CardInfo(
        model_name=Path(training.output_dir).name,
        details=details,
        license=config.args.license,
        dataset_id=dataset_id or data_args.dataset_citation_name,
        dataset_description=dataset_description,
        eval_split=eval_split,
        metrics={k.removeprefix(f"{prefix}_"): v for k, v in metrics.items() if k.startswith(f"{prefix}_")},
        training_hyperparameters={
            "parameters": f"{model.num_parameters():,}",
            "learning rate": training.learning_rate,
            "batch size (per device)": training.per_device_train_batch_size,
            "gradient accumulation": training.gradient_accumulation_steps,
            "processes": training.world_size,
            "steps": trainer.state.global_step,
            "epochs": round(trainer.state.epoch or 0, 2),
            "optimizer": getattr(training.optim, "value", training.optim),
            "label smoothing": training.label_smoothing_factor,
            "seed": training.seed,
            "training time (s)": round(metrics.get("train_runtime", 0.0), 1),
        },
        log_history=trainer.state.log_history,
        averaged_checkpoints=[folder.name for folder in averaged],
    )


__all__ = ["run"]
