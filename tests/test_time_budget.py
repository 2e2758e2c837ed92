"""The learning-rate schedule follows whichever runs out first: the steps or the time budget, for every task.

Translation and captioning, which use `RecurrentSeq2SeqTrainer` itself, used to keep the plain schedule: a run cut by
`max_train_minutes` ended with its learning rate still high."""

import pytest
import torch

from hf_rnn.tasks import TASKS
from hf_rnn.training import time_budget
from hf_rnn.training.arguments import TrainingArguments


def scheduler_after(
    tmp_path, monkeypatch, minutes, seconds_elapsed: float, step: int, schedule="linear", task="translation"
):
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
    clock[0] += seconds_elapsed
    for _ in range(step):
        optimizer.step()
        scheduler.step()
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
    assert scheduler_after(tmp_path, monkeypatch, 1, 30, 1, schedule="cosine") == pytest.approx(0.5)
