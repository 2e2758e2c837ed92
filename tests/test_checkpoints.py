"""Checkpoint safety, resume exactness, predict's shape and what an upload may carry, on tiny in-process trainers.

The faults that need a real process (signals, SIGKILL, full disks, concurrent runs, DDP) are in test_faults.py.
"""

import errno
import logging
import os
import shutil
import signal
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from datasets import Dataset
from helpers import tiny_model
from transformers import Seq2SeqTrainer, Seq2SeqTrainingArguments, set_seed

from hf_rnn.training.checkpoints import (
    OutputDirBusy,
    checkpoint_problem,
    explain_write_error,
    guard_output_dir,
    resolve_resume,
)
from hf_rnn.training.trainer import (
    RecurrentSeq2SeqTrainer,
    last_complete_checkpoint,
    push_output_folder,
    train_saving_on_interrupt,
)


def tiny_dataset(n: int, seed: int = 0) -> Dataset:
    """Source and target sequences of varied lengths (ids 3..18: inside both tiny vocabularies)."""
    generator = torch.Generator().manual_seed(seed)
    rows = {"input_ids": [], "attention_mask": [], "labels": []}
    for _ in range(n):
        source = torch.randint(3, 19, (int(torch.randint(2, 9, (1,), generator=generator)),), generator=generator)
        target = torch.randint(3, 19, (int(torch.randint(2, 9, (1,), generator=generator)),), generator=generator)
        rows["input_ids"].append(source.tolist())
        rows["attention_mask"].append([1] * len(source))
        rows["labels"].append([*target.tolist(), 2])
    return Dataset.from_dict(rows)


def pad_batch(features: list[dict]) -> dict[str, torch.Tensor]:
    def pad(key, value):
        width = max(len(f[key]) for f in features)
        return torch.tensor([f[key] + [value] * (width - len(f[key])) for f in features])

    return {
        "input_ids": pad("input_ids", 0),
        "attention_mask": pad("attention_mask", 0),
        "labels": pad("labels", -100),
    }


def tiny_trainer(output_dir, trainer_class=RecurrentSeq2SeqTrainer, dropout=0.3, n_train=16, **arguments):
    values = dict(
        output_dir=str(output_dir),
        per_device_train_batch_size=4,
        per_device_eval_batch_size=2,
        max_steps=10,
        learning_rate=0.05,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        seed=0,
        use_cpu=True,
        predict_with_generate=True,
        dataloader_pin_memory=False,
    )
    values.update(arguments)
    set_seed(0)
    model = tiny_model(dropout=dropout)
    model.generation_config.max_length = 8
    return trainer_class(
        model=model,
        args=Seq2SeqTrainingArguments(**values),
        train_dataset=tiny_dataset(n_train),
        data_collator=pad_batch,
    )


def losses(trainer) -> dict[int, float]:
    return {entry["step"]: entry["loss"] for entry in trainer.state.log_history if "loss" in entry}


@pytest.fixture(scope="module")
def complete_checkpoint(tmp_path_factory) -> Path:
    """A real checkpoint (checkpoint-2) written by the trainer."""
    output_dir = tmp_path_factory.mktemp("complete")
    tiny_trainer(output_dir, max_steps=2, save_strategy="steps", save_steps=2).train()
    return output_dir / "checkpoint-2"


def damaged_copy(checkpoint: Path, tmp_path: Path, damage) -> Path:
    output_dir = tmp_path / "run"
    shutil.copytree(checkpoint, output_dir / checkpoint.name)
    damage(output_dir / checkpoint.name)
    return output_dir


DAMAGES = {
    "optimizer.pt empty": ("optimizer.pt", lambda f: f.write_bytes(b"")),
    "optimizer.pt cut in half": ("optimizer.pt", lambda f: os.truncate(f, f.stat().st_size // 2)),
    "optimizer.pt missing": ("optimizer.pt", lambda f: f.unlink()),
    "scheduler.pt cut short": ("scheduler.pt", lambda f: os.truncate(f, f.stat().st_size - 10)),
    "rng_state.pth missing": ("rng_state.pth", lambda f: f.unlink()),
    "model.safetensors cut short": ("model.safetensors", lambda f: os.truncate(f, f.stat().st_size - 4)),
    "trainer_state.json cut short": ("trainer_state.json", lambda f: os.truncate(f, 40)),
}


def test_a_complete_checkpoint_passes_the_scan(complete_checkpoint):
    assert checkpoint_problem(complete_checkpoint) is None
    assert last_complete_checkpoint(complete_checkpoint.parent, tidy=False) == complete_checkpoint


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_a_checkpoint_with_any_damaged_file_is_not_resumed_but_moved_aside(complete_checkpoint, tmp_path, damage):
    name, action = DAMAGES[damage]
    output_dir = damaged_copy(complete_checkpoint, tmp_path, lambda folder: action(folder / name))
    assert name in checkpoint_problem(output_dir / "checkpoint-2")
    with pytest.raises(FileNotFoundError, match="No complete checkpoint to resume from"):
        resolve_resume("last", str(output_dir))
    # Kept for inspection under a name Trainer's rotation (a `checkpoint-*` glob) never deletes.
    assert [p.name for p in output_dir.iterdir()] == ["incomplete-checkpoint-2"]
    with pytest.raises(FileNotFoundError, match=f"Cannot resume from .*{name}"):
        resolve_resume(str(output_dir / "incomplete-checkpoint-2"), str(output_dir))


def test_the_scan_falls_back_to_the_newest_complete_checkpoint_and_clears_staging(complete_checkpoint, tmp_path):
    output_dir = damaged_copy(complete_checkpoint, tmp_path, lambda folder: None)
    newer = output_dir / "checkpoint-4"
    shutil.copytree(complete_checkpoint, newer)
    os.truncate(newer / "optimizer.pt", 100)
    staging = output_dir / ".checkpoint-6.partial"  # a save cut off by SIGKILL
    staging.mkdir()
    (staging / "model.safetensors").write_bytes(b"partial")
    assert resolve_resume("last", str(output_dir)) == str(output_dir / "checkpoint-2")
    assert sorted(p.name for p in output_dir.iterdir()) == ["checkpoint-2", "incomplete-checkpoint-4"]


def test_a_complete_checkpoint_is_never_written_again(tmp_path):
    trainer = tiny_trainer(tmp_path, max_steps=2, save_strategy="steps", save_steps=2)
    trainer.train()
    folder = tmp_path / "checkpoint-2"
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in folder.iterdir()}
    next(trainer.model.parameters()).data.add_(1.0)  # a different state under the same step number
    trainer._save_checkpoint(trainer.model, trial=None)
    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in folder.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith((".", "checkpoint"))) == ["checkpoint-2"]


def test_starting_over_moves_earlier_checkpoints_aside(complete_checkpoint, tmp_path):
    output_dir = damaged_copy(complete_checkpoint, tmp_path, lambda folder: None)
    assert resolve_resume(None, str(output_dir)) is None
    (superseded,) = output_dir.iterdir()
    assert superseded.name.startswith("superseded-") and (superseded / "checkpoint-2").is_dir()
    assert last_complete_checkpoint(output_dir) is None


def test_a_second_run_on_an_output_folder_is_refused_naming_the_first(tmp_path):
    args = SimpleNamespace(output_dir=str(tmp_path / "out"), process_index=0, world_size=1)
    busy = f"in use by another training run \\(PID {os.getpid()} on "
    with guard_output_dir(args), pytest.raises(OutputDirBusy, match=busy), guard_output_dir(args):
        pass
    with guard_output_dir(args):  # released on exit
        pass


def explain(error, folder, output_dir):
    explained = explain_write_error(error, folder, output_dir)
    return None if explained is None else str(explained)


def test_write_failures_are_explained_in_one_sentence(complete_checkpoint, tmp_path, monkeypatch):
    output_dir = damaged_copy(complete_checkpoint, tmp_path, lambda folder: None)
    staging = output_dir / ".checkpoint-4.partial"
    staging.mkdir()
    (staging / "model.safetensors").write_bytes(b"x")
    (staging / "optimizer.pt").write_bytes(b"half")  # the newest file: the one being written
    last = f"The last complete checkpoint is {output_dir / 'checkpoint-2'}"

    denied = PermissionError(errno.EACCES, "Permission denied", str(staging / "scheduler.pt"))
    assert explain(denied, staging, output_dir) == (
        f"Could not write {staging / 'scheduler.pt'}: Permission denied. {last}: continue from it with "
        "`--resume_from_checkpoint last` once fixed."
    )
    safetensors_error = RuntimeError("Error while serializing: I/O error: No space left on device (os error 28)")
    assert explain(safetensors_error, staging, output_dir).startswith(
        f"Could not write {staging / 'optimizer.pt'}: No space left on device. {last}"
    )
    # torch.save names neither file nor cause: the file system's state tells.
    torch_error = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")
    full = os.statvfs_result((4096, 4096, 100, 0, 0, 10, 0, 0, 0, 255))
    monkeypatch.setattr(os, "statvfs", lambda path: full)
    assert explain(torch_error, staging, output_dir).startswith(
        f"Could not write {staging / 'optimizer.pt'}: No space left on device. {last}"
    )
    read_only = os.statvfs_result((4096, 4096, 100, 50, 50, 10, 5, 5, os.ST_RDONLY, 255))
    monkeypatch.setattr(os, "statvfs", lambda path: read_only)
    assert explain(torch_error, staging, output_dir).startswith(f"Could not write {staging}: Read-only file system.")
    # Not a write failure, or a read that EACCES could also mean: left alone.
    assert explain(RuntimeError("shape mismatch"), staging, output_dir) is None
    assert explain(PermissionError(errno.EACCES, "Permission denied"), staging, output_dir) is None


def interrupt_in_step(trainer_class, step: int, signum: int):
    """A trainer class that sends itself `signum` inside step `step`, after its forward and backward have drawn
    their dropout masks (the point the former tests never reached)."""

    class Interrupted(trainer_class):
        def training_step(self, *args, **kwargs):
            loss = super().training_step(*args, **kwargs)
            if self.state.global_step == step - 1:
                os.kill(os.getpid(), signum)
            return loss

    return Interrupted


@pytest.mark.parametrize("strategy", ["random", "sequential", "group_by_length", "batch_rebalance"])
def test_resume_after_an_interrupt_repeats_the_losses_for_every_sampler(tmp_path, strategy):
    """16 examples in batches of 4: the interrupt falls in the second epoch, the resumed steps span two more."""
    straight = tiny_trainer(tmp_path / "straight", train_sampling_strategy=strategy)
    straight.train()
    output_dir = tmp_path / "interrupted"
    interrupted = tiny_trainer(
        output_dir, interrupt_in_step(RecurrentSeq2SeqTrainer, 6, signal.SIGTERM), train_sampling_strategy=strategy
    )
    with pytest.raises(KeyboardInterrupt):
        train_saving_on_interrupt(interrupted, None)
    assert last_complete_checkpoint(output_dir, tidy=False).name == "checkpoint-6"
    resumed = tiny_trainer(output_dir, train_sampling_strategy=strategy)
    train_saving_on_interrupt(resumed, resolve_resume("last", str(output_dir)))
    expected = losses(straight)
    assert {step: losses(resumed)[step] for step in range(7, 11)} == {step: expected[step] for step in range(7, 11)}


GENERATE_OPTIONS = {
    "greedy": {},
    "2 beams, 2 sequences": {"num_beams": 2, "num_return_sequences": 2},
    "3 beams, 3 sequences": {"num_beams": 3, "num_return_sequences": 3},
    "sampling, 2 sequences": {"do_sample": True, "num_return_sequences": 2},
}


@pytest.mark.parametrize("options", sorted(GENERATE_OPTIONS))
def test_predict_returns_what_seq2seq_trainer_returns(tmp_path, options):
    """5 examples in batches of 2: the last batch holds one example, whose every sequence must be kept (transformers'
    `gather_for_metrics` kept one row of it, so 2 sequences per example gave 9 rows)."""
    test = tiny_dataset(5, seed=1)
    outputs = []
    for trainer_class in (Seq2SeqTrainer, RecurrentSeq2SeqTrainer):
        trainer = tiny_trainer(tmp_path / trainer_class.__name__, trainer_class)
        set_seed(1)
        outputs.append(trainer.predict(test, **GENERATE_OPTIONS[options]))
    stock, ours = outputs
    rows = 5 * GENERATE_OPTIONS[options].get("num_return_sequences", 1)
    assert ours.predictions.shape[0] == stock.predictions.shape[0] == rows
    np.testing.assert_array_equal(ours.predictions, stock.predictions)
    np.testing.assert_array_equal(ours.label_ids, stock.label_ids)
    # The loss is a mean over examples (stock Seq2SeqTrainer also counts the repeats that even out the last batch).
    model = trainer.model.eval()
    with torch.no_grad():
        batch_losses = [
            (model(**pad_batch(test.select(range(i, min(i + 2, 5))))).loss, min(2, 5 - i)) for i in (0, 2, 4)
        ]
    assert ours.metrics["test_loss"] == pytest.approx(sum(loss * n for loss, n in batch_losses).item() / 5)


def test_evaluation_counts_cut_outputs_in_its_metrics_instead_of_warning(tmp_path, caplog):
    """An untrained model runs to the length limit: evaluation reports how many outputs were cut as a metric (no
    warning per batch); generate() outside the Trainer still warns."""
    trainer = tiny_trainer(tmp_path / "run")
    test = tiny_dataset(5, seed=1)
    with caplog.at_level(logging.WARNING):
        output = trainer.predict(test)
    eos = trainer.model.config.eos_token_id
    without_end = sum(eos not in row for row in output.predictions.tolist())
    assert without_end > 0 and output.metrics["test_cut_sequences"] == without_end
    assert not [r for r in caplog.records if "length limit" in r.getMessage()]
    assert trainer.model.cut_sequences is None
    with caplog.at_level(logging.WARNING), torch.no_grad():
        trainer.model.generate(**pad_batch(test.select(range(2))))
    assert [r for r in caplog.records if "length limit" in r.getMessage()]


def test_uploads_carry_no_local_state_and_no_token(hub_server, tmp_path):
    token = "hf_NotARealTokenButLongEnough"
    folder = tmp_path / "out"
    for name in ("config.json", "model.safetensors", "tokenizer.json", "README.md", "all_results.json"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(f"{name} content")
    local = {
        "training_args.bin": "pickled settings",
        ".hf_rnn.lock": '{"pid": 1}',
        "runs/events.out.tfevents": "tensorboard",
        "checkpoint-2/optimizer.pt": "state",
        "incomplete-checkpoint-4/model.safetensors": "partial",
        ".checkpoint-6.partial/model.safetensors": "partial",
        "_private": "trainer's",
        "notes.txt": f"token={token}",
    }
    for name, content in local.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(content)
    from huggingface_hub import HfApi

    HfApi().create_repo("user/tidy")
    trainer = SimpleNamespace(
        hub_model_id="user/tidy",
        args=SimpleNamespace(hub_token=token, hub_revision=None),
        _finish_current_push=lambda: None,
    )
    push_output_folder(trainer, folder)
    files = hub_server.files("user/tidy")
    assert sorted(files) == [
        ".gitattributes",
        "README.md",
        "all_results.json",
        "config.json",
        "model.safetensors",
        "tokenizer.json",
    ]
    assert not any(token.encode() in content for content in files.values())


@pytest.mark.parametrize("task", ["translation", "text-classification", "causal-lm"])
def test_evaluation_reads_the_rows_in_file_order_under_group_by_length(tmp_path, task):
    """Every task scores its predictions against the raw rows in file order, but transformers evaluates in a
    shuffled length-grouped order under `train_sampling_strategy: group_by_length`: train.py reported test2016
    BLEU 0.43 for a Multi30k model that scores 38.4 (each output paired with another sentence's reference)."""
    from datasets import Dataset
    from transformers import Seq2SeqTrainingArguments

    from hf_rnn.tasks import get_task

    lengths = [5, 1, 9, 2, 7, 3, 8, 4, 6, 2, 10, 1]
    dataset = Dataset.from_dict({"input_ids": [[3] * n for n in lengths]})
    args = Seq2SeqTrainingArguments(
        output_dir=str(tmp_path),
        train_sampling_strategy="group_by_length",
        per_device_eval_batch_size=4,
        use_cpu=True,
        report_to="none",
        remove_unused_columns=False,
    )
    trainer = get_task(task).trainer_class(model=torch.nn.Linear(1, 1), args=args, data_collator=lambda rows: rows)
    read = [len(row["input_ids"]) for batch in trainer.get_eval_dataloader(dataset) for row in batch]
    assert read == lengths


def test_each_evaluated_dataset_is_read_with_persistent_workers(tmp_path):
    """With `dataloader_persistent_workers`, transformers caches one evaluation loader under "eval" for whatever
    dataset it was made for: train.py's test evaluation read the validation set (1,014 outputs for 1,000 references
    on Multi30k, found on a GPU run with 4 workers)."""
    from datasets import Dataset
    from transformers import Seq2SeqTrainingArguments

    from hf_rnn.tasks import get_task

    validation = Dataset.from_dict({"input_ids": [[3] * n for n in (5, 1, 9)]})
    test = Dataset.from_dict({"input_ids": [[4] * n for n in (2, 7)]})
    args = Seq2SeqTrainingArguments(
        output_dir=str(tmp_path),
        per_device_eval_batch_size=2,
        use_cpu=True,
        report_to="none",
        remove_unused_columns=False,
        dataloader_num_workers=1,
        dataloader_persistent_workers=True,
    )
    trainer = get_task("translation").trainer_class(
        model=torch.nn.Linear(1, 1), args=args, eval_dataset=validation, data_collator=lambda rows: rows
    )

    def rows(loader):
        return [row["input_ids"] for batch in loader for row in batch]

    for _ in range(2):  # the validation loader is cached, the test set still gets its own
        assert rows(trainer.get_eval_dataloader()) == validation["input_ids"]
        assert rows(trainer.get_eval_dataloader(test)) == test["input_ids"]
        assert rows(trainer.get_eval_dataloader(validation)) == validation["input_ids"]
    for other in ("text-classification", "causal-lm"):  # the other tasks' trainers read their data the same way
        assert get_task(other).trainer_class.get_eval_dataloader is type(trainer).get_eval_dataloader
