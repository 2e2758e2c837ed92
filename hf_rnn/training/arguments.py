"""Command-line and YAML arguments of `train.py` (HfArgumentParser over three dataclasses).

A run is described by a YAML file from `configs/` whose keys are the fields below and
those of `Seq2SeqTrainingArguments`; any `--field value` on the command line overrides it.
"""

import importlib.util
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch
import yaml
from datasets import DatasetDict
from transformers import HfArgumentParser, Seq2SeqTrainingArguments


@dataclass
class ModelArguments:
    """What to train: a new model built from these fields, or a saved one (`model_name_or_path`)."""

    task: str = field(default="translation", metadata={"help": "translation | captioning"})
    model_name_or_path: str | None = field(default=None, metadata={"help": "Continue from a saved/Hub model."})
    tokenizer_name: str | None = field(
        default=None, metadata={"help": "Existing tokenizer (path or Hub name); by default one is trained."}
    )
    tokenizer_vocab_size: int = field(default=8000, metadata={"help": "Size of the tokenizer trained on the data."})
    decoder_vocab_size: int | None = field(
        default=None,
        metadata={
            "help": "Target vocabulary: the first N tokenizer ids (a tokenizer that lists target words first); "
            "defaults to the whole tokenizer."
        },
    )
    embedding_size: int = 256
    hidden_size: int = 512
    num_encoder_layers: int = 1
    num_decoder_layers: int = 1
    bidirectional_encoder: bool = True
    cell_type: str = field(default="lstm", metadata={"help": "lstm | gru | rnn"})
    attention_type: str = field(default="general", metadata={"help": "general | dot | concat | none"})
    input_feeding: bool = True
    dropout: float = 0.3
    decoder_init: str = field(default="bridge", metadata={"help": "bridge | zeros"})
    share_embeddings: bool = False
    tie_word_embeddings: bool = False
    init_range: float = 0.1
    # Captioner only.
    cnn_channels: str = field(default="32,64,128", metadata={"help": "Built-in CNN widths, comma-separated."})
    vision_model_name: str | None = field(
        default=None, metadata={"help": "A transformers vision backbone (Hub name or path) instead of the CNN."}
    )
    image_size: int = 64
    license: str = field(default="apache-2.0", metadata={"help": "License written into the model card."})


@dataclass
class DataArguments:
    """Where the data comes from and how it is cut."""

    dataset_name: str | None = field(
        default="synthetic_en_ko",
        metadata={"help": "Hub dataset name, or `synthetic_en_ko` / `landscapes` for the embedded corpora."},
    )
    dataset_config_name: str | None = None
    data_dir: str | None = field(
        default=None, metadata={"help": "Captioning: an image folder with metadata.jsonl holding a `keywords` list."}
    )
    train_file: str | None = None
    validation_file: str | None = None
    test_file: str | None = None
    train_split: str = "train"
    validation_split: str | None = "validation"
    test_split: str | None = "test"
    source_lang: str = "en"
    target_lang: str = "ko"
    source_column: str | None = field(default=None, metadata={"help": "Column of source text (two-column files)."})
    target_column: str | None = field(default=None, metadata={"help": "Column of target text (two-column files)."})
    image_column: str = "image"
    keywords_column: str = "keywords"
    max_source_length: int = 64
    max_target_length: int = 64
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    max_predict_samples: int | None = None
    synthetic_train_size: int = 20000
    synthetic_eval_size: int = 500
    preprocessing_num_workers: int | None = None
    num_examples_to_print: int = 5
    dataset_citation_name: str | None = field(
        default=None, metadata={"help": "Dataset id written into the model card (defaults to dataset_name)."}
    )

    @property
    def split_names(self) -> dict[str, str | None]:
        """Our split names (train/validation/test) → the names in the source data."""
        return {"train": self.train_split, "validation": self.validation_split, "test": self.test_split}

    @property
    def synthetic_sizes(self) -> tuple[int, int, int]:
        return self.synthetic_train_size, self.synthetic_eval_size, self.synthetic_eval_size

    def select_samples(self, data: DatasetDict) -> DatasetDict:
        """Apply `max_*_samples`; every run trains, so a missing train split is an error here, before any work."""
        if "train" not in data:
            raise ValueError(
                f"No training split found (the data has {list(data)}): give `train_file`, `data_dir` or a dataset "
                f"with a {self.train_split!r} split."
            )
        limits = {
            "train": self.max_train_samples,
            "validation": self.max_eval_samples,
            "test": self.max_predict_samples,
        }
        return DatasetDict(
            {
                split: dataset.select(range(min(limits[split], len(dataset))))
                if limits.get(split) is not None
                else dataset
                for split, dataset in data.items()
            }
        )


@dataclass
class TrainingArguments(Seq2SeqTrainingArguments):
    """Seq2SeqTrainingArguments with the defaults our recurrent models want."""

    output_dir: str | None = field(default="outputs/synthetic-en-ko", metadata={"help": "Where the model is saved."})
    predict_with_generate: bool = True
    # Pinned memory only helps host→GPU copies; on a CPU-only machine it just prints a warning per epoch.
    dataloader_pin_memory: bool = field(default_factory=torch.cuda.is_available)
    max_train_minutes: float | None = field(
        default=None,
        metadata={"help": "Stop training after this many minutes (then save and evaluate as usual): equal-time runs."},
    )

    def __post_init__(self):
        super().__post_init__()
        if self.max_train_minutes is not None and self.max_train_minutes <= 0:
            raise ValueError(f"`max_train_minutes` must be positive, got {self.max_train_minutes}.")


def parse_args(
    argv: list[str], default_config: Path | None = None
) -> tuple[ModelArguments, DataArguments, TrainingArguments]:
    """`[config.yaml] [--field value ...]`: YAML values become defaults, command-line flags override them."""
    parser = HfArgumentParser((ModelArguments, DataArguments, TrainingArguments))
    config_path = default_config
    if argv and argv[0].endswith((".yaml", ".yml")):
        config_path, argv = Path(argv[0]), argv[1:]
    if config_path is not None:
        if not config_path.exists():
            raise FileNotFoundError(f"Config file {config_path} does not exist.")
        values = yaml.safe_load(config_path.read_text()) or {}
        known = {
            f.name
            for dataclass_type in (ModelArguments, DataArguments, TrainingArguments)
            for f in fields(dataclass_type)
        }
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"Unknown key(s) in {config_path}: {', '.join(unknown)}.")
    else:
        values = {}
    if "report_to" not in values:
        values["report_to"] = _tensorboard_if_installed()
    parser.set_defaults(**values)
    return tuple(parser.parse_args_into_dataclasses(args=argv))


def _tensorboard_if_installed() -> str:
    """TensorBoard logs when the package is there; no error and no other integration when it is not."""
    return "tensorboard" if importlib.util.find_spec("tensorboard") is not None else "none"


__all__ = ["DataArguments", "ModelArguments", "TrainingArguments", "parse_args"]
