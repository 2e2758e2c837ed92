"""A learning-rate schedule that also runs over the time budget (`max_train_minutes`).

A run stopped by its time budget before `max_steps` would end with its learning rate still high, which costs
accuracy at equal wall time: budget-aware decay is what makes fixed-time training work well (Li, Yumer and
Ramanan, 2020, "Budgeted Training: Rethinking Deep Neural Network Training Under Resource Constraints"). Here
each step takes the schedule's value at max(step, elapsed / budget × steps): the schedule follows whichever runs
out first, the steps or the time. Without a budget, or when the steps run out first, it is the plain schedule.
"""

import time

from torch.optim.lr_scheduler import LambdaLR


class TimeBudgetScheduleMixin:
    """For a `Trainer` subclass: put it first among the bases."""

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        scheduler = super().create_scheduler(num_training_steps, optimizer)
        minutes = getattr(self.args, "max_train_minutes", None)
        if minutes and isinstance(scheduler, LambdaLR):
            started, seconds = time.perf_counter(), minutes * 60

            def over_time(schedule):
                def factor(step: int) -> float:
                    elapsed_steps = int((time.perf_counter() - started) / seconds * num_training_steps)
                    return schedule(min(num_training_steps, max(step, elapsed_steps)))

                return factor

            scheduler.lr_lambdas = [over_time(schedule) for schedule in scheduler.lr_lambdas]
        return scheduler


__all__ = ["TimeBudgetScheduleMixin"]
