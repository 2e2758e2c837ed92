"""Training tasks (see `base.Task`): each module says what is its own; `hf_rnn.training.runner` does the rest."""

from .base import CardDetails, Task
from .captioning import CaptioningTask
from .classification import ClassificationTask
from .language_modeling import LanguageModelingTask
from .translation import TranslationTask

TASKS: dict[str, type[Task]] = {
    task.name: task for task in (TranslationTask, CaptioningTask, ClassificationTask, LanguageModelingTask)
}


def get_task(name: str) -> type[Task]:
    if name not in TASKS:
        raise ValueError(f"Unknown task {name!r}; tasks: {', '.join(TASKS)}.")
    return TASKS[name]


__all__ = ["TASKS", "CardDetails", "Task", "get_task"]
