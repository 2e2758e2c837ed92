"""The arguments of a training run: one YAML file plus command-line overrides.

    task: translation                 # which task module (hf_rnn.tasks)
    train_file: data/train.csv        # generic data fields (DataArguments), the task's own fields
    source_lang: en                   # (e.g. TranslationArguments) and Seq2SeqTrainingArguments, flat
    learning_rate: 0.001
    model:                            # fields of the task's config class (e.g. LSTMSeq2SeqConfig), passed to it
      hidden_size: 512
      cell_type: gru

On the command line every flat field is `--field value`, and a model field is `--model.field value`
(`--model.cell_type gru`, `--model.cnn_channels [16,32]`: values are read as YAML). The config class is the
only list of model hyperparameters: a key it does not declare is refused with its name.
"""

import dataclasses
import importlib.util
import logging
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import torch
import yaml
from huggingface_hub.errors import StrictDataclassError
from transformers import HfArgumentParser, Seq2SeqTrainingArguments

from ..cli import path_problem
from ..cpu_features import emulated_precision_warning
from ..tasks import TASKS, get_task
from ..tasks.base import Task

logger = logging.getLogger(__name__)

DEFAULT_CONFIG = "synthetic_en_ko"


class ConfigError(ValueError):
    """A mistake in a run's YAML file or command line; the message names the key and says what to fix."""


@dataclass
class RunArguments:
    """What to run, and from what."""

    task: str = field(default="translation", metadata={"help": f"One of: {', '.join(TASKS)}."})
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Continue training a saved folder or Hub model instead of a new one."}
    )
    tokenizer_name: str | None = field(
        default=None, metadata={"help": "An existing tokenizer (folder or Hub id); by default one is trained."}
    )
    license: str = field(default="apache-2.0", metadata={"help": "License written into the model card."})
    num_examples_to_print: int = field(default=5, metadata={"help": "Examples printed at the end."})


@dataclass
class DataArguments:
    """Where the data comes from and how much of it is used (every task)."""

    dataset_name: str | None = field(
        default=None, metadata={"help": "A Hub dataset, or an embedded corpus (`synthetic_en_ko`, `landscapes`)."}
    )
    dataset_config_name: str | None = None
    train_file: str | None = field(default=None, metadata={"help": "Local json/jsonl/csv/tsv/parquet file."})
    validation_file: str | None = None
    test_file: str | None = None
    train_split: str = "train"
    validation_split: str | None = "validation"
    test_split: str | None = "test"
    validation_split_percentage: float = field(
        default=5.0,
        metadata={"help": "Without a validation split, this share of train (at most 1,000 rows) is held out."},
    )
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    max_predict_samples: int | None = None
    synthetic_train_size: int = field(default=20000, metadata={"help": "Embedded corpora: training examples."})
    synthetic_eval_size: int = field(default=500, metadata={"help": "Embedded corpora: validation/test examples."})
    preprocessing_num_workers: int | None = None
    dataset_citation_name: str | None = field(
        default=None, metadata={"help": "Hub dataset id the model card cites when the data are local copies of it."}
    )

    @property
    def data_files(self) -> dict[str, str] | None:
        files = {"train": self.train_file, "validation": self.validation_file, "test": self.test_file}
        return {split: path for split, path in files.items() if path} or None

    @property
    def split_names(self) -> dict[str, str | None]:
        """Our split names (train/validation/test) → the names in the source data."""
        return {"train": self.train_split, "validation": self.validation_split, "test": self.test_split}


@dataclass
class TrainingArguments(Seq2SeqTrainingArguments):
    """Seq2SeqTrainingArguments with the defaults recurrent models want, a time budget and overwrite safety."""

    output_dir: str | None = field(default=None, metadata={"help": "Where the model and checkpoints are saved."})
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "Replace a different earlier run (or a finished one) found in output_dir."},
    )
    predict_with_generate: bool = True
    # Pinned memory only helps host→GPU copies; on a CPU-only machine it just prints a warning per epoch.
    dataloader_pin_memory: bool = field(default_factory=torch.cuda.is_available)
    max_train_minutes: float | None = field(
        default=None,
        metadata={"help": "Stop training after this many minutes (then save and evaluate as usual): equal-time runs."},
    )
    average_last_checkpoints: int | None = field(
        default=None,
        metadata={
            "help": "After training, make the final model the element-wise mean of the last K checkpoints (the "
            "final step's included), then evaluate, save and card that average (see hf_rnn/average.py)."
        },
    )
    cuda_graphs: bool = field(
        default=True,
        metadata={
            "help": "On a GPU, train the translator's decoder through CUDA graphs of each batch shape "
            "(`set_cuda_graph_training`): the same computation with far fewer kernel launches. No effect on a CPU."
        },
    )
    early_stopping_patience: int | None = field(
        default=None,
        metadata={
            "help": "Stop once the validation `metric_for_best_model` has not improved for this many evaluations "
            "(transformers' EarlyStoppingCallback); needs `load_best_model_at_end`, which then loads the best model."
        },
    )

    def __post_init__(self):
        if self.output_dir is None:
            raise ConfigError("`output_dir` is required: set it in the YAML file or pass `--output_dir DIR`.")
        if (self.bf16 or self.bf16_full_eval) and (self.use_cpu or not torch.accelerator.is_available()):
            if warning := emulated_precision_warning("bfloat16", "`bf16`"):
                # The configs that set bf16 mean "where it is faster"; nobody wants a run 25 times slower.
                logger.warning(f"{warning} Training in float32 instead.")
                self.bf16 = self.bf16_full_eval = False
            else:
                # No accelerator: bf16 means autocast on the CPU, which transformers only allows with use_cpu.
                self.use_cpu = True
        super().__post_init__()
        if self.max_train_minutes is not None and self.max_train_minutes <= 0:
            raise ConfigError(f"`max_train_minutes` must be positive, got {self.max_train_minutes}.")
        if self.average_last_checkpoints is not None:
            self._check_averaging(self.average_last_checkpoints)
        if self.early_stopping_patience is not None and self.early_stopping_patience < 1:
            raise ConfigError(f"`early_stopping_patience` must be at least 1, got {self.early_stopping_patience}.")
        if self.early_stopping_patience is not None and not self.load_best_model_at_end:
            raise ConfigError(
                "`early_stopping_patience` compares evaluations by `metric_for_best_model` and keeps the best model: "
                "set `load_best_model_at_end` (with `eval_strategy` and `save_strategy` alike)."
            )

    def _check_averaging(self, k: int) -> None:
        """Averaging needs K checkpoints on disk at the end, and one final model."""
        if k < 2:
            raise ConfigError(f"`average_last_checkpoints` must be at least 2 (checkpoints to average), got {k}.")
        if self.save_strategy == "no":
            raise ConfigError(
                "`average_last_checkpoints` averages saved checkpoints, but `save_strategy` is 'no': set it to "
                "'steps' (with `save_steps`) or 'epoch'."
            )
        if self.save_total_limit is not None and self.save_total_limit < k:
            raise ConfigError(
                f"`average_last_checkpoints` {k} needs the last {k} checkpoints, but `save_total_limit` "
                f"{self.save_total_limit} keeps fewer: raise it to at least {k}."
            )
        if self.load_best_model_at_end:
            raise ConfigError(
                "`average_last_checkpoints` and `load_best_model_at_end` each choose the final model: use one."
            )


@dataclass
class RunConfig:
    """A parsed run: the generic arguments, the task's own, the training arguments and the model overrides."""

    task: Task
    args: RunArguments
    data: DataArguments
    task_args: Any
    training: TrainingArguments
    model: dict[str, Any]
    config_file: Path | None


def shipped_configs() -> dict[str, Path]:
    """The YAML files that come with the package (`configs/` in the repository), by name."""
    folder = resources.files("hf_rnn") / "configs"
    return {Path(entry.name).stem: Path(str(entry)) for entry in folder.iterdir() if entry.name.endswith(".yaml")}


def resolve_config_file(name: str) -> Path:
    """A YAML path, or the name of a shipped config (`multi30k_en_de`, `configs/multi30k_en_de.yaml`)."""
    path = Path(name)
    if path.is_file():
        return path
    shipped = shipped_configs()
    if path.stem in shipped and path.suffix in ("", ".yaml", ".yml"):
        return shipped[path.stem]
    raise ConfigError(f"Config file {name} does not exist; shipped configs: {', '.join(sorted(shipped))}.")


def parse_args(argv: list[str], default_config: str | None = DEFAULT_CONFIG) -> RunConfig:
    """`[config] [--field value ...] [--model.field value ...]`: YAML values are defaults, flags override them.

    Without a config file the embedded default runs, unless `--task` names the task: then every field comes from
    the command line (the default config belongs to the translation task). `-h` / `--help` prints every field of
    the chosen task (training arguments included) and its model fields, then exits.

    Raises:
        ConfigError: a config file that is missing or not YAML, an unknown key, a value the fields or the model
            config refuse (`--model.cell_type lstmm`), or rules across training arguments, before any data is read.
    """
    try:
        return _parse_args(argv, default_config)
    except ConfigError:
        raise
    except (ValueError, StrictDataclassError) as error:  # the dataclasses' and the model config's own checks
        raise ConfigError(str(error)) from error


def _parse_args(argv: list[str], default_config: str | None) -> RunConfig:
    config_file = None
    if argv and not argv[0].startswith("-"):
        config_file, argv = resolve_config_file(argv[0]), argv[1:]
    elif default_config is not None and _flag_value(argv, "--task") is None:
        config_file = resolve_config_file(default_config)
    values = _read_yaml(config_file) if config_file else {}
    model_values = values.pop("model", None) or {}
    if not isinstance(model_values, dict):
        raise ConfigError(f"`model:` in {config_file} must be a mapping of config fields, got {model_values!r}.")
    argv, model_flags = _split_model_flags(argv)
    task = get_task(_flag_value(argv, "--task") or values.get("task", RunArguments.task))

    dataclass_types = (RunArguments, DataArguments, task.arguments_class, TrainingArguments)
    known = {f.name for cls in dataclass_types for f in dataclasses.fields(cls)}
    _refuse_unknown(set(values), known, task, f"in {config_file}")
    _refuse_unknown(
        {flag[2:].split("=")[0] for flag in argv if flag.startswith("--")},
        known | {"help"},
        task,
        "on the command line",
    )
    model = _check_model_fields({**model_values, **model_flags}, task)
    if "report_to" not in values:
        values["report_to"] = "tensorboard" if importlib.util.find_spec("tensorboard") else "none"
    parser = HfArgumentParser(
        dataclass_types,
        description=f"Task {task.name}" + (f", defaults from {config_file}." if config_file else "."),
        epilog=_model_fields_help(task, model_values),
    )
    parser.set_defaults(**values)
    args, data_args, task_args, training_args = parser.parse_args_into_dataclasses(args=argv)
    for key in ("model_name_or_path", "tokenizer_name"):
        problem = path_problem(getattr(args, key)) if getattr(args, key) else None
        if problem:
            raise ConfigError(f"`{key}`: {problem}.")
    task_instance = task(args, data_args, task_args, training_args, model)
    return RunConfig(task_instance, args, data_args, task_args, training_args, model, config_file)


def _read_yaml(path: Path) -> dict:
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {error}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path} must be a mapping of field: value, got {type(values).__name__}.")
    return values


def _split_model_flags(argv: list[str]) -> tuple[list[str], dict[str, Any]]:
    """Take `--model.field value` / `--model.field=value` out of argv; values are read as YAML scalars/lists."""
    rest, model = [], {}
    index = 0
    while index < len(argv):
        flag = argv[index]
        if flag.startswith("--model."):
            name, sep, value = flag[len("--model.") :].partition("=")
            if not sep:
                if index + 1 >= len(argv):
                    raise ConfigError(f"{flag} needs a value.")
                index += 1
                value = argv[index]
            model[name] = yaml.safe_load(value)
        else:
            rest.append(flag)
        index += 1
    return rest, model


def _flag_value(argv: list[str], flag: str) -> str | None:
    for index, item in enumerate(argv):
        if item == flag and index + 1 < len(argv):
            return argv[index + 1]
        if item.startswith(flag + "="):
            return item.split("=", 1)[1]
    return None


def _refuse_unknown(names: set[str], known: set[str], task: type[Task], where: str) -> None:
    unknown = sorted(names - known)
    if not unknown:
        return
    config_fields = {f.name for f in dataclasses.fields(task.config_class)}
    hints = [
        f"{name} (a {task.config_class.__name__} field: put it under `model:` or pass --model.{name})"
        if name in config_fields
        else name
        for name in unknown
    ]
    raise ConfigError(f"Unknown key(s) {where}: {', '.join(hints)}.")


def _model_fields_help(task: type[Task], config_values: dict[str, Any]) -> str:
    """The `--model.field` part of `--help`: the config class's own fields with the values this run starts from."""
    defaults = task.config_class()
    fields = [
        f"{name}={config_values.get(name, getattr(defaults, name))!r}"
        for name in vars(task.config_class).get("__annotations__", {})
        if name not in task.derived_config_fields
    ]
    return f"Model fields ({task.config_class.__name__}), set with --model.field value: {', '.join(fields)}."


def _check_model_fields(values: dict[str, Any], task: type[Task]) -> dict[str, Any]:
    """Model overrides must be fields of the task's config class that the task does not set itself, with values
    the config class accepts (checked now, not after the tokenizer has been trained)."""
    # `num_labels` is no dataclass field: PreTrainedConfig takes it as an argument and keeps it as id2label's size.
    config_fields = {f.name for f in dataclasses.fields(task.config_class)} | {"num_labels"}
    for name in values:
        if name in task.derived_config_fields:
            raise ConfigError(f"`model.{name}` is set by the {task.name} task from the data/tokenizer; remove it.")
        if name not in config_fields:
            own = [
                n for n in vars(task.config_class).get("__annotations__", {}) if n not in task.derived_config_fields
            ]
            raise ConfigError(
                f"`model.{name}` is not a field of {task.config_class.__name__}; its fields: {', '.join(own)}."
            )
    try:
        task.config_class(**values)
    except (ValueError, StrictDataclassError) as error:
        raise ConfigError(f"`model:` {' '.join(str(error).split())}") from error
    return values


__all__ = [
    "DEFAULT_CONFIG",
    "ConfigError",
    "DataArguments",
    "RunArguments",
    "RunConfig",
    "TrainingArguments",
    "parse_args",
]
