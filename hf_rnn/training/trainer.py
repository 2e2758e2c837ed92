"""The Trainer used for every hf-rnn model: atomic checkpoints, exact resume, step-boundary interrupts and Hub
uploads that carry no secret."""

import copy
import logging
import mmap
import os
import posixpath
import shutil
import signal
import time
from fnmatch import fnmatch
from pathlib import Path

import datasets
import torch
from huggingface_hub import CommitOperationAdd, HfApi, get_token
from torch.utils.data import SequentialSampler
from transformers import EarlyStoppingCallback, Seq2SeqTrainer
from transformers.trainer import TRAINING_ARGS_NAME
from transformers.trainer_callback import ExportableState
from transformers.trainer_pt_utils import (
    LabelSmoother,
    LengthGroupedSampler,
    find_batch_size,
    get_length_grouped_indices,
)
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, HubStrategy, SaveStrategy, rotate_checkpoints
from transformers.utils.hub import PushInProgress

from ..translator.modeling_lstm_seq2seq import token_cross_entropy
from .checkpoints import (
    ASIDE_PREFIX,
    CHECKPOINT_PATTERN,
    SUPERSEDED_PREFIX,
    StepBoundaryInterrupt,
    TrainingInterrupted,
    checkpoint_problem,
    commit_folder,
    explained_write_errors,
    is_complete_checkpoint,
    last_complete_checkpoint,
    move_aside,
    resolve_resume,
    staging_folder,
)
from .time_budget import TimeBudgetCallback, TimeBudgetScheduleMixin

logger = logging.getLogger(__name__)

# State only a resume reads: uploaded with a checkpoint (hub_strategy "checkpoint"), not with the model.
RESUME_STATE = ("optimizer.pt", "scheduler.pt", "scaler.pt", "rng_state*.pth", "trainer_state.json")


class EpochSeededLengthGroupedSampler(LengthGroupedSampler):
    """`LengthGroupedSampler` whose order depends only on (seed, epoch), like accelerate's seedable random sampler.

    The stock sampler shuffles with the global RNG when an epoch's iteration starts; a run resumed mid-epoch starts
    that iteration with a different RNG state, so it would see other batches than the run it continues.
    """

    def __init__(self, batch_size: int, lengths: list[int], seed: int):
        super().__init__(batch_size, lengths=lengths)
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(get_length_grouped_indices(self.lengths, self.batch_size, generator=generator))


class Float32LabelSmoother(LabelSmoother):
    """Trainer's `LabelSmoother` (the same smoothed targets and normalisation) computed by `token_cross_entropy`: in
    float32 blocks whatever the logits' dtype. `LabelSmoother` takes the log-softmax in the logits' own dtype,
    bfloat16 under `--bf16` (a loss 0.1-0.35 % off on small models), and makes several full-size copies of them."""

    def __call__(self, model_output, labels, shift_labels=False, num_items_in_batch=None):
        if self.ignore_index != -100:
            return super().__call__(model_output, labels, shift_labels, num_items_in_batch)
        logits = model_output["logits"] if isinstance(model_output, dict) else model_output[0]
        if shift_labels:
            logits, labels = logits[..., :-1, :], labels[..., 1:]
        return token_cross_entropy(logits, labels, num_items_in_batch, self.epsilon)


class RecurrentSeq2SeqTrainer(TimeBudgetScheduleMixin, Seq2SeqTrainer):
    """`Seq2SeqTrainer` with safe checkpoints, exact multi-process metrics, a target-token throughput log, a time
    budget (`max_train_minutes`: training stops there, and the learning rate decays over it, see
    `TimeBudgetScheduleMixin`) and early stopping (`early_stopping_patience`).

    Checkpoints are staged in a hidden folder and renamed into place when complete; a step that already has a
    complete checkpoint is never written again (see `hf_rnn.training.checkpoints`). Hub uploads (Trainer's per-save
    pushes, `push_to_hub`) go through `publish_folder`, which never uploads `training_args.bin`, local state or a file
    holding the Hub token.

    transformers 5 gathers generated predictions with `accelerator.gather`, which keeps the samples DDP repeats to
    even out the last batch, so BLEU would count some sentences twice; `gather_for_metrics` drops them but counts
    rows, not examples, and so cuts all but one of the last example's sequences when generate returns several per
    example. `_gather_examples` drops exactly the repeats.

    Each training log entry gets `target_tokens_per_second`: the label tokens (padding excluded) this process
    trained on since the previous entry, per second — the unit translation toolkits report, which makes runs
    comparable across batchings.
    """

    def __init__(self, *args, train_data_collator=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.train_data_collator = train_data_collator
        patience = getattr(self.args, "early_stopping_patience", None)
        if patience:
            self.add_callback(EarlyStoppingCallback(early_stopping_patience=patience))
        self._target_tokens, self._tokens_since = 0, time.perf_counter()
        self._examples_in_step = None
        if self.label_smoother is not None:
            self.label_smoother = Float32LabelSmoother(self.label_smoother.epsilon, self.label_smoother.ignore_index)
        if getattr(self.args, "cuda_graphs", False) and hasattr(self.model, "set_cuda_graph_training"):
            self.model.set_cuda_graph_training(True)

    # -- training -------------------------------------------------------------------------------------------------

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

    def get_train_dataloader(self):
        """transformers' training loader, batched by `train_data_collator` when one is set (evaluation and prediction
        keep `data_collator`)."""
        if self.train_data_collator is None:
            return super().get_train_dataloader()
        collator, self.data_collator = self.data_collator, self.train_data_collator
        try:
            return super().get_train_dataloader()
        finally:
            self.data_collator = collator

    def get_eval_dataloader(self, eval_dataset=None):
        """transformers' evaluation loader, never another dataset's: with `dataloader_persistent_workers` it keeps
        one loader under the name "eval" for whatever dataset it was made for, and gave train.py's test evaluation the
        validation set's loader (on Multi30k: 1,014 outputs for 1,000 test references). A dataset passed in gets a
        loader of its own; the cached one stays the validation set's."""
        if eval_dataset is None or isinstance(eval_dataset, str) or eval_dataset is self.eval_dataset:
            return super().get_eval_dataloader(eval_dataset)
        cached = getattr(self, "_eval_dataloaders", {})
        validation = cached.pop("eval", None)
        try:
            return super().get_eval_dataloader(eval_dataset)
        finally:
            cached = getattr(self, "_eval_dataloaders", {})
            cached.pop("eval", None)
            if validation is not None:
                cached["eval"] = validation

    def _get_eval_sampler(self, eval_dataset):
        # Every task scores the predictions against the raw rows in file order (Task.compute_metrics), but
        # transformers evaluates in a shuffled length-grouped order under `train_sampling_strategy:
        # group_by_length`, which paired each output with another sentence's reference.
        return SequentialSampler(eval_dataset) if self.args.world_size <= 1 else None

    def _get_train_sampler(self, train_dataset=None):
        """`group_by_length` groups by *target* length (the decoder's time loop and the softmax layer run over
        target positions, so that is where padding costs; transformers groups by the first input's length), in an
        order fixed by the seed and the epoch so that a resumed run sees the same batches."""
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        batch_size = self.args.train_batch_size * self.args.gradient_accumulation_steps
        if (
            self.args.train_sampling_strategy == "group_by_length"
            and isinstance(dataset, datasets.Dataset)
            and "labels" in dataset.column_names
        ):
            lengths = [len(labels) for labels in dataset["labels"]]
            return EpochSeededLengthGroupedSampler(batch_size, lengths=lengths, seed=seed)
        sampler = super()._get_train_sampler(train_dataset)
        if isinstance(sampler, LengthGroupedSampler):
            return EpochSeededLengthGroupedSampler(sampler.batch_size, lengths=sampler.lengths, seed=seed)
        return sampler

    # -- checkpoints ----------------------------------------------------------------------------------------------

    def _save_checkpoint(self, model, trial) -> None:
        """Trainer's checkpoint (transformers 5.24 `Trainer._save_checkpoint`), written atomically.

        Every file goes into a hidden staging folder that is renamed to `checkpoint-N` once all processes have
        written theirs; only then is it pushed and are older checkpoints rotated out. A complete `checkpoint-N` is
        never written again; an incomplete one (written by other code) is moved aside first.
        """
        step = self.state.global_step
        run_dir = self._get_output_dir(trial=trial)
        final = Path(run_dir) / f"{PREFIX_CHECKPOINT_DIR}-{step}"
        problem = checkpoint_problem(final, resumable=not self.args.save_only_model)
        if problem is None:
            logger.info("%s is complete already: not saving step %d again.", final, step)
            return
        staging = staging_folder(final)
        if self.args.should_save:
            if final.exists():
                move_aside(final, problem)
            if staging.exists():
                shutil.rmtree(staging)
        self.accelerator.wait_for_everyone()
        with explained_write_errors(staging, run_dir):
            self._write_checkpoint(trial, staging, run_dir)
            self.accelerator.wait_for_everyone()  # every process has written its RNG state
            if self.args.should_save:
                commit_folder(staging, final)
        self.accelerator.wait_for_everyone()
        if self.args.push_to_hub:
            self._push_from_checkpoint(str(final))
        if self.args.should_save:
            rotate_checkpoints(
                output_dir=run_dir,
                save_total_limit=self.args.save_total_limit,
                best_model_checkpoint=self.state.best_model_checkpoint,
                use_mtime=True,
            )

    def _write_checkpoint(self, trial, staging: Path, run_dir: str) -> None:
        if self.hp_search_backend is None and trial is None:
            self.store_flos()
        self.save_model(str(staging), _internal_call=True)
        best_step = self.state.best_global_step
        if self.args.save_strategy in (SaveStrategy.STEPS, SaveStrategy.EPOCH, SaveStrategy.BEST) and best_step:
            best = os.path.join(run_dir, f"{PREFIX_CHECKPOINT_DIR}-{best_step}")
            if best_step == self.state.global_step or os.path.exists(best):
                self.state.best_model_checkpoint = best
        if not self.args.save_only_model:
            self._save_optimizer_and_scheduler(str(staging))
            self._save_scaler(str(staging))
            self._save_rng_state(str(staging))
        if self.args.should_save:
            for callback in [*self.callback_handler.callbacks, self.control]:
                if isinstance(callback, ExportableState):
                    name, callback_state = type(callback).__name__, callback.state()
                    if isinstance(self.state.stateful_callbacks[name], list):
                        self.state.stateful_callbacks[name].append(callback_state)
                    else:
                        self.state.stateful_callbacks[name] = callback_state
            self.state.save_to_json(str(staging / "trainer_state.json"))

    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        """Trainer's save, with `training_args.bin` pickled without the Hub token (folders get copied and shared)."""
        super()._save(output_dir, state_dict)
        if self.args.should_save and self.args.hub_token is not None:
            local_args = copy.copy(self.args)
            local_args.hub_token = None
            torch.save(local_args, os.path.join(output_dir or self.args.output_dir, TRAINING_ARGS_NAME))

    # -- Hub ------------------------------------------------------------------------------------------------------

    def _push_from_checkpoint(self, checkpoint_folder: str) -> None:
        """Trainer's per-save push (`hub_strategy`), through `publish_folder`: the model files straight from the
        committed checkpoint, and with `checkpoint`/`all_checkpoints` the checkpoint itself, without
        `training_args.bin`."""
        if not self.is_world_process_zero() or self.args.hub_strategy == HubStrategy.END:
            return
        if not self.args.hub_always_push and self.push_in_progress is not None and not self.push_in_progress.is_done():
            return
        self.callback_handler.on_push_begin(self.args, self.state, self.control)
        if self.args.save_strategy == SaveStrategy.STEPS:
            message = f"Training in progress, step {self.state.global_step}"
        else:
            message = f"Training in progress, epoch {int(self.state.epoch)}"
        upload = {"token": self.args.hub_token, "revision": self.args.hub_revision, "run_as_future": True}
        secrets = hub_secrets(self.args)
        jobs = [
            publish_folder(
                self.hub_model_id, checkpoint_folder, message, exclude=RESUME_STATE, secrets=secrets, **upload
            )
        ]
        if self.args.hub_strategy in (HubStrategy.CHECKPOINT, HubStrategy.ALL_CHECKPOINTS):
            in_repo = (
                "last-checkpoint" if self.args.hub_strategy == HubStrategy.CHECKPOINT else Path(checkpoint_folder).name
            )
            jobs.append(
                publish_folder(
                    self.hub_model_id,
                    checkpoint_folder,
                    message + ", checkpoint",
                    path_in_repo=in_repo,
                    secrets=secrets,
                    **upload,
                )
            )
        if self.push_in_progress is None or self.push_in_progress.is_done():
            self.push_in_progress = PushInProgress(jobs)
        else:
            self.push_in_progress.jobs.extend(jobs)

    def push_to_hub(
        self, commit_message="End of training", blocking=True, token=None, revision=None, private=None, **kwargs
    ):
        """`Trainer.push_to_hub` through `publish_folder`; an existing README.md (our model card) is kept rather than
        replaced by Trainer's generic card."""
        self.callback_handler.on_push_begin(self.args, self.state, self.control)
        token = token if token is not None else self.args.hub_token
        if self.hub_model_id is None:
            self.init_hf_repo(token=token, private=private)
        self.save_model(_internal_call=True)
        if not self.is_world_process_zero():
            return None
        if not (Path(self.args.output_dir) / "README.md").exists():
            model_name = (
                kwargs.pop("model_name", None) or (self.args.hub_model_id or self.args.output_dir).split("/")[-1]
            )
            self.create_model_card(model_name=model_name, **kwargs)
        self._finish_current_push()
        return publish_folder(
            self.hub_model_id,
            self.args.output_dir,
            commit_message,
            token=token,
            revision=revision or self.args.hub_revision,
            run_as_future=not blocking,
            secrets=hub_secrets(self.args),
        )

    # -- evaluation -----------------------------------------------------------------------------------------------

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None, **gen_kwargs):
        self._examples_in_step = find_batch_size(inputs)
        return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys=ignore_keys, **gen_kwargs)

    def evaluation_loop(
        self, dataloader, description, prediction_loss_only=None, ignore_keys=None, metric_key_prefix="eval"
    ):
        """Seq2SeqTrainer's loop, counting examples as `_gather_examples` says, and with generation the number of
        outputs cut by the length limit as the metric `<prefix>_cut_sequences` (summed over processes) instead of
        the model's warning per batch."""
        self.gather_function = self._gather_examples
        model = self.accelerator.unwrap_model(self.model)
        arguments = (dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix)
        if not self.args.predict_with_generate or prediction_loss_only or not hasattr(model, "cut_sequences"):
            return super().evaluation_loop(*arguments)
        model.cut_sequences = 0
        try:
            output = super().evaluation_loop(*arguments)
            cut = torch.tensor([model.cut_sequences], device=self.args.device)
        finally:
            model.cut_sequences = None
        output.metrics[f"{metric_key_prefix}_cut_sequences"] = self.accelerator.gather(cut).sum().item()
        return output

    def _gather_examples(self, tensor):
        """`accelerator.gather_for_metrics` that counts examples, not rows.

        At the end of the data, accelerate keeps the first `remainder` rows of the last gathered batch (the rest
        repeat samples to even out the processes). Generated sequences come `num_return_sequences` rows per example,
        so the cut is `remainder` times that for them; 1-D tensors (the repeated loss) keep one row per example.
        """
        if not isinstance(tensor, torch.Tensor):
            return self.accelerator.gather_for_metrics(tensor)
        gathered = self.accelerator.gather(tensor)
        state = self.accelerator.gradient_state
        if not state.end_of_dataloader or state.remainder <= 0:
            return gathered
        rows_per_example = 1
        examples = self._examples_in_step
        if tensor.ndim > 1 and examples and tensor.shape[0] % examples == 0:
            rows_per_example = tensor.shape[0] // examples
        return gathered[: state.remainder * rows_per_example]


# ---------------------------------------------------------------------------------------------------------------------
# Running a training job


def train_saving_on_interrupt(trainer: Seq2SeqTrainer, resume_from_checkpoint: str | None):
    """Run `trainer.train`; SIGINT or SIGTERM stop it at the next step boundary with a checkpoint.

    Raises `TrainingInterrupted` (exit status 128 + the signal number) once that checkpoint is saved, also under
    `save_strategy="no"`, so that the run can continue with `--resume_from_checkpoint last`.
    """
    interrupt = StepBoundaryInterrupt()
    trainer.add_callback(interrupt)
    interrupt.install(trainer.args)
    try:
        result = trainer.train(resume_from_checkpoint=resume_from_checkpoint)
        signum = interrupt.agreed_signal()
        step = trainer.state.global_step
        checkpoint = Path(trainer.args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{step}"
        if signum and not checkpoint.exists():  # the signal came after the last step boundary
            trainer._save_checkpoint(trainer.model, trial=None)
    finally:
        interrupt.restore()
        trainer.remove_callback(interrupt)
    if not signum:
        return result
    message = (
        f"Stopped by {signal.Signals(signum).name} after step {step}; {checkpoint} holds the run's state. "
        "Continue with `--resume_from_checkpoint last`."
    )
    raise TrainingInterrupted(signum, message if trainer.is_world_process_zero() else "")


# ---------------------------------------------------------------------------------------------------------------------
# Hub uploads


def hub_secrets(args) -> list[str]:
    """The tokens an upload must never contain: `--hub_token` and the one huggingface_hub would use."""
    tokens = {args.hub_token, get_token()}
    return sorted(token for token in tokens if token and len(token) >= 8)


def is_publishable(path_in_folder: str) -> bool:
    """Whether a file of an output or checkpoint folder may be uploaded.

    Never: `training_args.bin` (a pickle of this machine's settings: Hub token, absolute paths), hidden files (the
    run lock, staging folders), `_*` (Trainer's private files), TensorBoard `runs/` (local paths), and checkpoints
    (only their own push uploads them).
    """
    parts = path_in_folder.split("/")
    if any(part.startswith((".", "_")) for part in parts) or parts[-1] == TRAINING_ARGS_NAME:
        return False
    top = parts[0]
    return not (
        len(parts) > 1
        and (top == "runs" or CHECKPOINT_PATTERN.match(top) or top.startswith((ASIDE_PREFIX, SUPERSEDED_PREFIX)))
    )


def publish_folder(
    repo_id: str,
    folder: str | os.PathLike,
    commit_message: str,
    *,
    token: str | None = None,
    revision: str | None = None,
    path_in_repo: str = "",
    exclude: tuple[str, ...] = (),
    secrets: list[str] = (),
    run_as_future: bool = False,
):
    """Upload the publishable files of `folder` (`is_publishable`, minus `exclude` name patterns) in one commit.

    Every file is read first: one that holds any of `secrets` is left out, with a warning naming it. Returns the
    `CommitInfo` (a Future of it with `run_as_future`).
    """
    folder = Path(folder)
    operations = []
    for path in sorted(folder.rglob("*")):
        name = path.relative_to(folder).as_posix()
        if not path.is_file() or not is_publishable(name) or any(fnmatch(path.name, p) for p in exclude):
            continue
        if _holds_any(path, secrets):
            logger.warning("Not uploading %s: it contains the Hub token.", path)
            continue
        operations.append(
            CommitOperationAdd(
                path_in_repo=posixpath.join(path_in_repo, name) if path_in_repo else name, path_or_fileobj=str(path)
            )
        )
    return HfApi().create_commit(
        repo_id=repo_id,
        operations=operations,
        commit_message=commit_message,
        token=token,
        revision=revision,
        run_as_future=run_as_future,
    )


def _holds_any(path: Path, needles: list[str]) -> bool:
    if not needles or path.stat().st_size == 0:
        return False
    with path.open("rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as content:
        return any(content.find(needle.encode()) != -1 for needle in needles)


def push_output_folder(trainer: Seq2SeqTrainer, output_dir: Path) -> None:
    """Upload the finished folder: weights, tokenizer/processor, code, pipeline and our card.

    Trainer's own `push_to_hub` would replace README.md with its generic card, so the final
    upload is ours; checkpoints, TensorBoard runs, `training_args.bin` and anything holding
    the token stay local (`publish_folder`).
    """
    trainer._finish_current_push()  # a per-save push still running must not land after this one
    publish_folder(
        trainer.hub_model_id,
        output_dir,
        "hf-rnn: trained model, code and model card",
        token=trainer.args.hub_token,
        revision=trainer.args.hub_revision,
        secrets=hub_secrets(trainer.args),
    )
    logger.info("Pushed %s to %s", output_dir, trainer.hub_model_id)


__all__ = [
    "EpochSeededLengthGroupedSampler",
    "RecurrentSeq2SeqTrainer",
    "TimeBudgetCallback",
    "hub_secrets",
    "is_complete_checkpoint",
    "is_publishable",
    "last_complete_checkpoint",
    "publish_folder",
    "push_output_folder",
    "resolve_resume",
    "train_saving_on_interrupt",
]
