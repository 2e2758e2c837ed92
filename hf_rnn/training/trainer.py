"""The Trainer used for every hf-rnn model, and checkpoint safety around it."""

import json
import logging
import os
import re
import signal
import time
from pathlib import Path

import datasets
import torch
from transformers import Seq2SeqTrainer, TrainerCallback
from transformers.trainer_pt_utils import LengthGroupedSampler

logger = logging.getLogger(__name__)

CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")


class TimeBudgetCallback(TrainerCallback):
    """Ends training once `minutes` of training have passed (equal-time comparisons); the usual save and evaluation
    follow."""

    def __init__(self, minutes: float):
        self.seconds = minutes * 60
        self.started: float | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.started = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if self.started is not None and time.perf_counter() - self.started >= self.seconds:
            logger.info("Time budget of %.1f min reached at step %d: stopping.", self.seconds / 60, state.global_step)
            control.should_training_stop = True
        return control


class RecurrentSeq2SeqTrainer(Seq2SeqTrainer):
    """`Seq2SeqTrainer` with exact multi-process metrics, a target-token throughput log and a time budget.

    transformers 5 gathers generated predictions with `accelerator.gather`, which keeps the
    samples DDP repeats to even out the last batch, so BLEU would count some sentences
    twice. `gather_for_metrics` drops exactly those repeats.

    Each training log entry gets `target_tokens_per_second`: the label tokens (padding
    excluded) this process trained on since the previous entry, per second — the unit
    translation toolkits report, which makes runs comparable across batchings.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        minutes = getattr(self.args, "max_train_minutes", None)
        if minutes:
            self.add_callback(TimeBudgetCallback(minutes))
        self._target_tokens, self._tokens_since = 0, time.perf_counter()

    def training_step(self, model, inputs, num_items_in_batch=None) -> torch.Tensor:
        labels = inputs.get("labels")
        if labels is not None:  # summed as a tensor: reading it every step would stall a GPU
            self._target_tokens = self._target_tokens + (labels != -100).sum()
        return super().training_step(model, inputs, num_items_in_batch)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        now = time.perf_counter()
        tokens = int(self._target_tokens)
        if "loss" in logs and tokens:
            logs["target_tokens_per_second"] = round(tokens / (now - self._tokens_since), 1)
        super().log(logs, start_time)
        # Every entry (evaluation too) starts a new interval, so evaluation time never counts as training.
        self._target_tokens, self._tokens_since = 0, time.perf_counter()

    def train(self, *args, **kwargs):
        self._target_tokens, self._tokens_since = 0, time.perf_counter()
        return super().train(*args, **kwargs)

    def _get_train_sampler(self, train_dataset=None):
        """`group_by_length` groups by *target* length: the decoder's time loop and the softmax layer run over
        target positions, so that is where padding costs (transformers groups by the first input's length)."""
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if (
            self.args.train_sampling_strategy == "group_by_length"
            and isinstance(dataset, datasets.Dataset)
            and "labels" in dataset.column_names
        ):
            lengths = [len(labels) for labels in dataset["labels"]]
            return LengthGroupedSampler(
                self.args.train_batch_size * self.args.gradient_accumulation_steps, lengths=lengths
            )
        return super()._get_train_sampler(train_dataset)

    def evaluation_loop(self, *args, **kwargs):
        self.gather_function = self.accelerator.gather_for_metrics
        return super().evaluation_loop(*args, **kwargs)


def is_complete_checkpoint(folder: Path) -> bool:
    """Trainer writes `trainer_state.json` last: a checkpoint without a readable one was cut off mid-save."""
    try:
        state = json.loads((folder / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return False
    match = CHECKPOINT_PATTERN.match(folder.name)
    return bool(match) and state.get("global_step") == int(match.group(1))


def last_complete_checkpoint(output_dir: str | os.PathLike) -> Path | None:
    """The newest checkpoint that can be resumed; incomplete ones are renamed aside (kept, never deleted)."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return None
    checkpoints = sorted(
        (p for p in output_dir.iterdir() if p.is_dir() and CHECKPOINT_PATTERN.match(p.name)),
        key=lambda p: int(CHECKPOINT_PATTERN.match(p.name).group(1)),
    )
    for folder in reversed(checkpoints):
        if is_complete_checkpoint(folder):
            return folder
        aside = folder.with_name(folder.name + ".incomplete")
        logger.warning("Checkpoint %s is incomplete (interrupted while saving); moving it to %s.", folder, aside)
        folder.rename(aside)
    return None


def resolve_resume(resume_from_checkpoint: str | None, output_dir: str) -> str | None:
    """`--resume_from_checkpoint last` (or true) picks the newest complete checkpoint in output_dir."""
    if resume_from_checkpoint is None or str(resume_from_checkpoint).lower() in ("false", "no", "none", ""):
        last = last_complete_checkpoint(output_dir) if Path(output_dir).is_dir() else None
        if last is not None:
            logger.warning(
                "%s already holds checkpoints (newest complete: %s); starting over. "
                "Pass `--resume_from_checkpoint last` to continue instead.",
                output_dir,
                last.name,
            )
        return None
    if str(resume_from_checkpoint).lower() in ("last", "true", "yes"):
        last = last_complete_checkpoint(output_dir)
        if last is None:
            raise FileNotFoundError(f"No complete checkpoint to resume from in {output_dir}.")
        return str(last)
    path = Path(resume_from_checkpoint)
    if not is_complete_checkpoint(path):
        raise FileNotFoundError(f"{path} is not a complete checkpoint (missing or unreadable trainer_state.json).")
    return str(path)


def train_saving_on_interrupt(trainer: Seq2SeqTrainer, resume_from_checkpoint: str | None):
    """Run `trainer.train`; on Ctrl-C or SIGTERM save a resumable checkpoint first, then stop."""

    def terminate(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        return trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    except KeyboardInterrupt:
        step = trainer.state.global_step
        if step > 0 and trainer.args.save_strategy != "no":
            trainer._save_checkpoint(trainer.model, trial=None)
            logger.warning(
                "Interrupted at step %d; saved %s. Continue with `--resume_from_checkpoint last`.",
                step,
                Path(trainer.args.output_dir) / f"checkpoint-{step}",
            )
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)


def train_and_evaluate(trainer: Seq2SeqTrainer, datasets: dict, started: float) -> tuple[dict, str | None]:
    """Train (resuming if asked), save, then score validation and test with generation.

    Returns all metrics (also written to `all_results.json`) and the split the model card
    reports: test when there is one, else validation, else None.
    """
    args = trainer.args
    train_result = train_saving_on_interrupt(trainer, resolve_resume(args.resume_from_checkpoint, args.output_dir))
    trainer.save_model()
    trainer.save_state()  # trainer_state.json: the log history (losses, throughput) beside the final model
    metrics = {k if k.startswith("train_") else f"train_{k}": v for k, v in train_result.metrics.items()}
    if "validation" in datasets:
        metrics.update(trainer.evaluate(metric_key_prefix="eval"))
    if "test" in datasets:
        metrics.update(trainer.predict(datasets["test"], metric_key_prefix="test").metrics)
    metrics["wall_seconds"] = round(time.time() - started, 1)
    metrics["world_size"] = args.world_size
    trainer.log_metrics("all", metrics)
    trainer.save_metrics("all", metrics)
    return metrics, next((split for split in ("test", "validation") if split in datasets), None)


def push_output_folder(trainer: Seq2SeqTrainer, output_dir: Path) -> None:
    """Upload the finished folder: weights, tokenizer/processor, code, pipeline and our card.

    Trainer's own `push_to_hub` would replace README.md with its generic card, so the final
    upload is ours; checkpoints and TensorBoard runs stay local.
    """
    from huggingface_hub import upload_folder

    upload_folder(
        repo_id=trainer.hub_model_id,
        folder_path=output_dir,
        token=trainer.args.hub_token,
        ignore_patterns=["checkpoint-*", "checkpoint-*/**", "runs/**", "*.incomplete/**"],
        commit_message="hf-rnn: trained model, code and model card",
    )
    logger.info("Pushed %s to %s", output_dir, trainer.hub_model_id)


__all__ = [
    "push_output_folder",
    "train_and_evaluate",
    "RecurrentSeq2SeqTrainer",
    "TimeBudgetCallback",
    "is_complete_checkpoint",
    "last_complete_checkpoint",
    "resolve_resume",
    "train_saving_on_interrupt",
]
