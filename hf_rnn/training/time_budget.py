"""The time budget (`max_train_minutes`): training stops when it is spent, and the learning rate decays over it.

A run stopped by its time budget before `max_steps` would end with its learning rate still high, which costs
accuracy at equal wall time: budget-aware decay is what makes fixed-time training work well (Li, Yumer and
Ramanan, 2020, "Budgeted Training: Rethinking Deep Neural Network Training Under Resource Constraints"). Here
each step takes the schedule's value at max(step, elapsed / budget × steps): the schedule follows whichever runs
out first, the steps or the time. Without a budget, or when the steps run out first, it is the plain schedule.

The budget is the run's, not the process's: each checkpoint records the training time spent up to it, and a run
resumed from that checkpoint goes on from there (time spent after the checkpoint, whose steps are trained again, is
not counted). Otherwise a resumed run would get a whole new budget, and its learning rate would jump back up to
the step schedule's value.
"""

import logging
import time

from torch.optim.lr_scheduler import LambdaLR
from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

from .checkpoints import LaggedMax

logger = logging.getLogger(__name__)


class TimeBudgetCallback(TrainerCallback, ExportableState):
    """Ends training once `minutes` of training have passed (equal-time comparisons); the usual save and evaluation
    follow. Saved with each checkpoint (`trained_seconds`: training time up to it) and read back on resume.

    The clock is read at each step's end. Under DDP the processes take the largest of their readings, one step late
    (`LaggedMax`, as for the stop signals): all of them then see the same time, stop after the same step (one
    stopping alone would leave the others waiting in the next step's gradient all-reduce) and set the same learning
    rate (replicas with different rates drift apart).
    """

    def __init__(self, minutes: float):
        self.seconds = minutes * 60
        self.trained_seconds = 0.0  # before this process's training began (read from the checkpoint on resume)
        self.started: float | None = None
        self.elapsed = 0.0  # the run's training time at the last step end, agreed between processes
        self._agreement: LaggedMax | None = None

    def elapsed_seconds(self) -> float:
        """Training time of the run at the last step's end: this process's and that of the runs it resumed."""
        return self.elapsed

    def on_train_begin(self, args, state, control, **kwargs):
        # Trainer restores callbacks only under `restore_callback_states_from_checkpoint`; the budget is always the
        # run's. A run from step 0 starts a new budget.
        saved = state.stateful_callbacks.get(type(self).__name__) if state.global_step else None
        saved = saved[0] if isinstance(saved, list) and saved else saved
        self.trained_seconds = float(saved.get("attributes", {}).get("trained_seconds", 0.0)) if saved else 0.0
        self.elapsed = self.trained_seconds
        self.started = time.perf_counter()
        self._agreement = LaggedMax.for_run(args)
        if self.trained_seconds:
            logger.info(
                "Time budget: %.1f of %.1f min spent before this resume.", self.trained_seconds / 60, self.seconds / 60
            )

    def on_step_end(self, args, state, control, **kwargs):
        if self.started is None:
            return control
        reading = self.trained_seconds + time.perf_counter() - self.started
        if self._agreement is None:
            self.elapsed = reading
        else:
            agreed = self._agreement.result()
            self.elapsed = self.elapsed if agreed is None else agreed
            self._agreement.start(reading)
        if self.elapsed >= self.seconds:
            logger.info("Time budget of %.1f min reached at step %d: stopping.", self.seconds / 60, state.global_step)
            control.should_training_stop = True
        return control

    def on_train_end(self, args, state, control, **kwargs):
        if self._agreement is not None:  # every process started one: finish it before the group goes
            self._agreement.result()

    def state(self) -> dict:
        return {"args": {"minutes": self.seconds / 60}, "attributes": {"trained_seconds": self.elapsed}}


class TimeBudgetScheduleMixin:
    """For a `Trainer` subclass: put it first among the bases. With `max_train_minutes` set, the trainer gets a
    `TimeBudgetCallback` and its learning-rate schedule follows the callback's clock."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        minutes = getattr(self.args, "max_train_minutes", None)
        if minutes:
            self.add_callback(TimeBudgetCallback(minutes))

    def time_budget(self) -> TimeBudgetCallback | None:
        # Looked up at each use: Trainer replaces restored callbacks with new objects.
        return next((c for c in self.callback_handler.callbacks if isinstance(c, TimeBudgetCallback)), None)

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        scheduler = super().create_scheduler(num_training_steps, optimizer)
        if self.time_budget() is not None and isinstance(scheduler, LambdaLR):

            def over_time(schedule):
                def factor(step: int) -> float:
                    budget = self.time_budget()
                    elapsed_steps = int(budget.elapsed_seconds() / budget.seconds * num_training_steps)
                    return schedule(min(num_training_steps, max(step, elapsed_steps)))

                return factor

            scheduler.lr_lambdas = [over_time(schedule) for schedule in scheduler.lr_lambdas]
        return scheduler


__all__ = ["TimeBudgetCallback", "TimeBudgetScheduleMixin"]
