"""The time budget (`max_train_minutes`): the learning-rate schedule follows whichever runs out first, the steps or
the time, for every task, and the budget is the run's across resumes.

Translation and captioning, which use `RecurrentSeq2SeqTrainer` itself, used to keep the plain schedule: a run cut by
`max_train_minutes` ended with its learning rate still high. A resumed run used to get a whole new budget, its rate
jumping back up to the step schedule's."""

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from transformers import TrainerControl, TrainerState

from hf_rnn.tasks import TASKS
from hf_rnn.training import time_budget
from hf_rnn.training.arguments import TrainingArguments
from hf_rnn.training.time_budget import TimeBudgetCallback


def scheduler_after(
    tmp_path,
    monkeypatch,
    minutes,
    seconds_elapsed: float,
    step: int,
    schedule="linear",
    task="translation",
    resumed_state: TrainerState | None = None,
):
    """The learning rate of step `step` + 1 when `seconds_elapsed` seconds of this process's training had passed at
    the end of step `step` - 1, for a peak rate of 1 and 100 steps (the rate follows the clock one step late);
    `resumed_state`: the state a resumed run starts from."""
    clock = [1000.0]
    monkeypatch.setattr(time_budget.time, "perf_counter", lambda: clock[0])
    args = TrainingArguments(
        output_dir=str(tmp_path),
        learning_rate=1.0,
        lr_scheduler_type=schedule,
        warmup_steps=0,
        max_train_minutes=minutes,
        report_to="none",
    )
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    trainer = TASKS[task].trainer_class(model=model, args=args, optimizers=(optimizer, None))
    scheduler = trainer.create_scheduler(num_training_steps=100)
    state = resumed_state or TrainerState()
    trainer.callback_handler.on_train_begin(args, state, trainer.control)
    for _ in range(state.global_step):  # what loading the checkpoint's scheduler state does
        optimizer.step()
        scheduler.step()
    clock[0] += seconds_elapsed
    for completed in range(state.global_step + 1, step + 1):  # Trainer's order; the clock is read at step ends
        optimizer.step()
        scheduler.step()
        trainer.callback_handler.on_step_end(args, TrainerState(global_step=completed), trainer.control)
    return scheduler.get_last_lr()[0]


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize(
    "minutes, seconds, step, expected",
    [
        (1, 30, 10, 0.5),  # half the time gone, a tenth of the steps: the time decides
        (1, 6, 40, 0.6),  # the steps are ahead of the time
        (1, 90, 10, 0.0),  # past the budget: fully decayed
        (None, 30, 10, 0.9),  # no budget: the plain schedule
    ],
)
def test_linear_decay_follows_the_steps_or_the_time_whichever_runs_out_first(
    tmp_path, monkeypatch, minutes, seconds, step, expected, task
):
    assert scheduler_after(tmp_path, monkeypatch, minutes, seconds, step, task=task) == pytest.approx(expected)


def test_cosine_follows_the_time_too(tmp_path, monkeypatch):
    assert scheduler_after(tmp_path, monkeypatch, 1, 30, 2, schedule="cosine") == pytest.approx(0.5)


def resumed_at(step: int, trained_seconds: float) -> TrainerState:
    state = TrainerState(global_step=step)
    state.stateful_callbacks = {
        "TimeBudgetCallback": {"args": {"minutes": 1}, "attributes": {"trained_seconds": trained_seconds}}
    }
    return state


@pytest.mark.parametrize(
    "step, trained_seconds, seconds, expected",
    [
        (10, 30, 0, 0.5),  # resumed at step 10 after 30 s of a 1-minute budget: the rate stays where it was
        (10, 30, 15, 0.25),  # 15 s more: three quarters of the budget spent
        (10, 50, 10, 0.0),  # the budget ran out after the resume
    ],
)
def test_a_resumed_run_goes_on_with_the_budget_its_checkpoint_left(
    tmp_path, monkeypatch, step, trained_seconds, seconds, expected
):
    """The rate two steps after the resume."""
    resumed = resumed_at(step, trained_seconds)
    rate = scheduler_after(tmp_path, monkeypatch, 1, seconds, step + 2, resumed_state=resumed)
    assert rate == pytest.approx(expected)


def test_the_budget_stops_a_resumed_run_when_the_whole_run_has_spent_it(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(time_budget.time, "perf_counter", lambda: clock[0])
    args = TrainingArguments(output_dir="unused", report_to="none")
    budget = TimeBudgetCallback(1)
    budget.on_train_begin(args, resumed_at(10, 50), None)
    control = TrainerControl()
    clock[0] += 9
    assert not budget.on_step_end(args, TrainerState(global_step=11), control).should_training_stop
    clock[0] += 1
    assert budget.on_step_end(args, TrainerState(global_step=12), control).should_training_stop


def test_a_run_from_step_0_starts_a_new_budget(tmp_path, monkeypatch):
    """A state at step 0 that carries a record (a second `train()` of one trainer) does not spend the budget."""
    assert scheduler_after(tmp_path, monkeypatch, 1, 6, 10, resumed_state=resumed_at(0, 50)) == pytest.approx(0.9)


def _stop_step_of_a_process(rank: int, store: str, results: str) -> None:
    """One of two DDP processes: it starts its clock half a second after the other, and their steps end together
    every second; the budget is 10 s."""
    torch.distributed.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    clock = [rank * 0.5]
    time_budget.time.perf_counter = lambda: clock[0]
    args = SimpleNamespace(world_size=2)
    budget = TimeBudgetCallback(10 / 60)
    budget.on_train_begin(args, TrainerState(), None)
    for step in range(1, 30):
        clock[0] = float(step)
        control = budget.on_step_end(args, TrainerState(global_step=step), TrainerControl())
        if control.should_training_stop:
            break
    budget.on_train_end(args, None, None)
    Path(results, str(rank)).write_text(json.dumps([step, budget.elapsed_seconds()]))
    torch.distributed.destroy_process_group()


def test_ddp_processes_agree_on_the_time_and_stop_after_the_same_step(tmp_path):
    """Each process used to read its own clock: the one that started later stopped a step later, while the other
    already waited elsewhere (and their learning rates differed)."""
    torch.multiprocessing.spawn(_stop_step_of_a_process, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=2)
    first, second = (json.loads((tmp_path / str(rank)).read_text()) for rank in (0, 1))
    assert first == second
