"""What a training task is: the extension point of `train.py`.

The generic runner (`hf_rnn.training.runner`) does everything every task needs — arguments, the output
folder's safety, seeding, loading under `main_process_first`, sample limits, the Trainer, training,
evaluation, saving, the model card, the Hub upload, printed examples. A task module says only what is its
own, by subclassing `Task`:

- `arguments_class`: a dataclass of its own command-line/YAML fields (parsed with the generic ones);
  `adjust_training_arguments` enforces what the task needs of the Trainer, `trainer_class` picks it;
- `config_class` / `model_class` / `auto_model_class`: the model it trains; `derived_config_fields` are the
  config fields it fills from the data (vocabulary sizes, special ids), which users may not set;
- `load_data`, `run_identity`, `dataset_reference`: the data, normalised to the task's columns, what
  identifies the run and what the card says of the data;
- `build_processor`, `preprocess`, `build_model`, `data_collator`: from data to model inputs;
- `compute_metrics`: scores of generated (or predicted) outputs against the raw references;
- `save_extras`, `card_details`, `print_examples`: what a saved folder, its card and the console show.

Adding a task is one module like `hf_rnn/tasks/translation.py`, its config/modeling pair and a YAML file in
`configs/`; register it in `hf_rnn/tasks/__init__.py`.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from datasets import Dataset, DatasetDict
from transformers import (
    AutoTokenizer,
    EvalPrediction,
    PreTrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Trainer,
    TrainingArguments,
)

from ..training.trainer import RecurrentSeq2SeqTrainer


@dataclass
class CardDetails:
    """The task's part of a model card (the runner adds the run's figures)."""

    pipeline_tag: str
    description: str
    languages: list[str]
    usage: str  # Python code; `{repo_id}` is replaced by the Hub id or the folder name
    metric_names: dict[str, str]  # metric key (without split prefix) → display name, in display order
    hyperparameters: dict[str, object]
    limitations: list[str]
    tags: list[str] = field(default_factory=list)
    widget: list[dict] | None = None
    main_metric: str | None = None


class Task:
    """Base class of the training tasks; see the module docstring for the contract."""

    name: ClassVar[str]
    arguments_class: ClassVar[type]
    config_class: ClassVar[type[PreTrainedConfig]]
    model_class: ClassVar[type[PreTrainedModel]]
    auto_model_class: ClassVar[type]
    derived_config_fields: ClassVar[tuple[str, ...]] = ()
    trainer_class: ClassVar[type[Trainer]] = RecurrentSeq2SeqTrainer

    def __init__(self, args, data_args, task_args, training_args, model_overrides: dict[str, Any]):
        self.args, self.data_args, self.task_args, self.training_args = args, data_args, task_args, training_args
        self.model_overrides = model_overrides

    def adjust_training_arguments(self, training: TrainingArguments) -> None:
        """Settings the task cannot work without (e.g. keeping raw columns for its collator); logged when changed."""

    def run_identity(self) -> dict[str, Any]:
        """Everything about the data and the processor that makes two runs different runs (files by content,
        never by path)."""
        raise NotImplementedError

    def load_data(self) -> DatasetDict:
        """The raw data of every split present, normalised to the task's columns (`train` is required)."""
        raise NotImplementedError

    def dataset_reference(self) -> tuple[str | None, str]:
        """The Hub dataset id the card may cite (None for local or embedded data) and the data in words."""
        raise NotImplementedError

    def build_processor(self, train: Dataset, output_dir: Path, reuse: bool, save: bool) -> Any:
        """Tokenizer or processor: given (`tokenizer_name`, `model_name_or_path`), reused from `output_dir` when
        `reuse` (the folder holds this very run), or built from `train` and saved there when `save`."""
        raise NotImplementedError

    def given_tokenizer(self, output_dir: Path, reuse: bool) -> PreTrainedTokenizerBase | None:
        """For text tasks' `build_processor`: the tokenizer named by `tokenizer_name` / `model_name_or_path`, or the
        one this run saved in `output_dir` (when `reuse`); None when a new one is to be trained."""
        run = self.args
        if run.tokenizer_name or run.model_name_or_path:
            return AutoTokenizer.from_pretrained(run.tokenizer_name or run.model_name_or_path)
        if reuse and (output_dir / "tokenizer.json").exists():
            return AutoTokenizer.from_pretrained(output_dir)
        return None

    def files_or_hub_reference(self, sizes: str) -> tuple[str | None, str]:
        """For `dataset_reference`: data from `--train_file`... named by its files, or the Hub dataset (and its
        configuration) with the citation name it was given; `sizes` is said in brackets."""
        data = self.data_args
        if data.data_files:
            names = ", ".join(Path(path).name for path in data.data_files.values())
            return data.dataset_citation_name, f"local files {names} ({sizes})"
        name = data.dataset_name + (f" ({data.dataset_config_name})" if data.dataset_config_name else "")
        return data.dataset_citation_name or data.dataset_name, f"{name} ({sizes})"

    def preprocess(self, data: DatasetDict, processor: Any) -> DatasetDict:
        """Model inputs for every split (tokenised, truncated)."""
        return data

    def build_model(self, processor: Any, config_overrides: dict[str, Any]) -> PreTrainedModel:
        raise NotImplementedError

    def data_collator(self, processor: Any, model: PreTrainedModel) -> Callable:
        raise NotImplementedError

    def train_data_collator(self, processor: Any, model: PreTrainedModel) -> Callable | None:
        """A collator for training batches only (e.g. one that adds noise), or None to train with `data_collator`."""
        return None

    def compute_metrics(self, processor: Any, references: Dataset) -> Callable[[EvalPrediction], dict[str, float]]:
        """Scores against `references` (the raw rows of the split being scored, in order)."""
        raise NotImplementedError

    def save_extras(self, model: PreTrainedModel, processor: Any, output_dir: Path, example: Dataset) -> None:
        """Whatever else the saved folder needs beside the weights and config (processor, pipeline code)."""
        processor.save_pretrained(output_dir)

    def card_details(self, model: PreTrainedModel, dataset_description: str, examples: Dataset) -> CardDetails:
        """The task's part of the card; `examples` are held-out raw rows (for the widget and usage snippet)."""
        raise NotImplementedError

    def print_examples(self, model: PreTrainedModel, processor: Any, rows: Dataset) -> None:
        raise NotImplementedError


__all__ = ["CardDetails", "Task"]
