"""Make transformers' `pipeline()` use hf-rnn's pipelines in this process, with no `trust_remote_code`.

transformers 5 offers one way to ship a pipeline with a model: config.json's `custom_pipelines` plus the pipeline's
file, loaded as remote code. Our saved folders use it, so they work where hf_rnn is not installed. Three things in
`pipeline()` then stand between `import hf_rnn` and a plain `pipeline("translation", model=folder)`; each is undone
here, for our tasks and our configs only:

1. `"translation"` is in transformers' list of removed tasks, which is checked before its task registry, so
   registering the task is not enough: the entry for the task we provide again is taken off that list.
2. A task a folder lists under `custom_pipelines` always demands `trust_remote_code`, even when this process has
   the same class registered (the Auto classes, in the same situation, use the registered class). On our config
   classes, reading `custom_pipelines` leaves out the tasks registered here; saving still writes them.
3. `"image-to-text"` resolves to `"image-text-to-text"` through a warning whose `%`-format arguments are wrong in
   transformers 5.24 (`logger.warning_once(message, UserWarning)`), which prints a `--- Logging error ---`
   traceback; a filter on that logger drops a warning category passed as a format argument.
"""

import logging

from transformers import AutoModelForSeq2SeqLM
from transformers import pipelines as transformers_pipelines
from transformers.pipelines import PIPELINE_REGISTRY

from .captioner.configuration_lstm_captioner import LSTMCaptionerConfig
from .captioner.pipeline_lstm_captioner import CUSTOM_PIPELINES as CAPTIONER_PIPELINES
from .captioner.pipeline_lstm_captioner import LSTMCaptionerPipeline
from .translator.configuration_lstm_seq2seq import LSTMSeq2SeqConfig
from .translator.pipeline_translation import CUSTOM_PIPELINES as TRANSLATION_PIPELINES
from .translator.pipeline_translation import TranslationPipeline

LOCAL_TASKS = frozenset({*TRANSLATION_PIPELINES, *CAPTIONER_PIPELINES})


class _CustomPipelinesServedHere:
    """`config.custom_pipelines` without the tasks this process serves itself; stored (and saved) unchanged."""

    def __get__(self, config, owner=None):
        if config is None:
            return self
        if "custom_pipelines" not in config.__dict__:
            raise AttributeError("custom_pipelines")
        stored = config.__dict__["custom_pipelines"]
        return {task: info for task, info in stored.items() if task not in LOCAL_TASKS}

    def __set__(self, config, value) -> None:
        config.__dict__["custom_pipelines"] = value


class _WarningCategoryAsFormatArgument(logging.Filter):
    """Drops `%`-format arguments that are warning classes: a `warnings.warn` signature used with `logging`."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and args and all(isinstance(a, type) and issubclass(a, Warning) for a in args):
            record.args = ()
        return True


def register_pipelines() -> None:
    """Idempotent: `pipeline("translation")` and the captioner's `image-text-to-text` / `image-to-text` tasks."""
    transformers_pipelines.REMOVED_TASKS.pop("translation", None)
    PIPELINE_REGISTRY.supported_tasks.pop("translation", None)  # re-registering would log an "overwriting" warning
    PIPELINE_REGISTRY.register_pipeline(
        "translation", pipeline_class=TranslationPipeline, pt_model=AutoModelForSeq2SeqLM, type="text"
    )
    # Swapped in directly, keeping the task's default model: registering would log an "overwriting" warning, and the
    # class gives every model but ours transformers' own ImageTextToTextPipeline.
    PIPELINE_REGISTRY.supported_tasks["image-text-to-text"]["impl"] = LSTMCaptionerPipeline
    for config_class in (LSTMSeq2SeqConfig, LSTMCaptionerConfig):
        config_class.custom_pipelines = _CustomPipelinesServedHere()
    pipelines_logger = logging.getLogger(transformers_pipelines.__name__)
    if not any(isinstance(f, _WarningCategoryAsFormatArgument) for f in pipelines_logger.filters):
        pipelines_logger.addFilter(_WarningCategoryAsFormatArgument())


__all__ = ["LOCAL_TASKS", "register_pipelines"]
