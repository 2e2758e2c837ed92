"""Text classification (N:1): texts with one label each → a trained tokenizer → `LSTMForSequenceClassification`.

Data: a Hub dataset or local json/jsonl/csv/tsv/parquet files with a text column and a label column
(`text_column` / `label_column`). A label is a class id (an integer, or in CSV/TSV a string of digits) or a class
name (a string). The classes are declared with `model.id2label` (names by id) or `model.num_labels`, or found in
the training split: ids 0 .. largest id, or the distinct names in sorted order. A label outside the classes, a
`num_labels` that disagrees with the labels, or a label that is neither an id nor a name is reported with its
file, line and column before training. Rows with empty text are dropped and counted.

Scored with accuracy and macro-F1 of the predicted classes against the labels of the raw rows.
"""

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from datasets import Dataset, DatasetDict
from torch.utils.data import Sampler
from transformers import (
    AutoModelForSequenceClassification,
    DataCollatorWithPadding,
    TextClassificationPipeline,
    Trainer,
)

from ..data.files import Field, check_files_exist, file_identity, load_fields
from ..data.tokenization import train_char_tokenizer, train_tokenizer
from ..lstm import LSTMConfig, LSTMForSequenceClassification
from ..training.trainer import RecurrentSeq2SeqTrainer
from .base import CardDetails, Task

logger = logging.getLogger(__name__)

INTEGER = re.compile(r"[+-]?\d+")


@dataclass
class ClassificationArguments:
    """The text-classification task's own fields."""

    text_column: str = field(default="text", metadata={"help": "Column holding the text to classify."})
    label_column: str = field(default="label", metadata={"help": "Column holding the class id or class name."})
    tokenizer_type: Literal["char", "bpe"] = field(
        default="char",
        metadata={"help": "Tokenizer trained on the training texts: one token per character, or BPE subwords."},
    )
    tokenizer_vocab_size: int = field(default=8000, metadata={"help": "`bpe`: vocabulary size."})
    tokenizer_min_frequency: int = field(
        default=1, metadata={"help": "`char`: characters seen fewer times are spelled in UTF-8 byte pieces."}
    )
    max_length: int = field(default=256, metadata={"help": "Tokens kept per text (longer texts are truncated)."})
    languages: list[str] | None = field(default=None, metadata={"help": "Language codes for the model card."})


class ClassificationTrainer(RecurrentSeq2SeqTrainer):
    """The project's Trainer for one label per text.

    `train_sampling_strategy: group_by_length` makes batches of texts of one length where the data allow it
    (`EqualLengthSampler`): a batch without padding runs the RNN's fused kernel.
    """

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if self.args.train_sampling_strategy == "group_by_length":
            return EqualLengthSampler([len(ids) for ids in dataset["input_ids"]], self.args.train_batch_size)
        # RecurrentSeq2SeqTrainer's own choice groups by target length; a label is no sequence.
        return Trainer._get_train_sampler(self, train_dataset)


class EqualLengthSampler(Sampler[int]):
    """Row indices in an order that the data loader cuts into batches of equal-length rows where it can.

    Each epoch, in random order: the rows of each length are shuffled and cut into full batches; the rows left over
    (fewer than a batch per length) are cut, in order of length, into batches of near-equal lengths, and one
    partial batch, if any, comes last. Then the full batches are shuffled. Randomness comes from torch's global
    generator, as transformers' `LengthGroupedSampler`, so a resumed run draws the same order.
    """

    def __init__(self, lengths: list[int], batch_size: int):
        self.lengths, self.batch_size = lengths, batch_size

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        by_length: dict[int, list[int]] = {}
        for index in torch.randperm(len(self.lengths)).tolist():
            by_length.setdefault(self.lengths[index], []).append(index)
        size, batches, leftovers = self.batch_size, [], []
        for _, rows in sorted(by_length.items()):
            full = len(rows) - len(rows) % size
            batches += [rows[start : start + size] for start in range(0, full, size)]
            leftovers += rows[full:]
        batches += [leftovers[start : start + size] for start in range(0, len(leftovers), size)]
        last = batches.pop() if batches and len(batches[-1]) < size else []
        for batch in torch.randperm(len(batches)).tolist():
            yield from batches[batch]
        yield from last


class ClassificationTask(Task):
    name = "text-classification"
    arguments_class = ClassificationArguments
    config_class = LSTMConfig
    model_class = LSTMForSequenceClassification
    auto_model_class = AutoModelForSequenceClassification
    derived_config_fields = ("vocab_size", "pad_token_id", "bos_token_id", "eos_token_id", "label2id")
    trainer_class = ClassificationTrainer

    def adjust_training_arguments(self, training) -> None:
        if training.predict_with_generate:
            logger.info("Scoring the classifier's logits: predict_with_generate set to False.")
            training.predict_with_generate = False

    # -- data -------------------------------------------------------------------------------------------------

    def run_identity(self) -> dict:
        data, task, run = self.data_args, self.task_args, self.args
        if data.data_files:
            check_files_exist(data.data_files)
            source = {split: file_identity(path) for split, path in data.data_files.items()}
        else:
            source = {"dataset": data.dataset_name, "config": data.dataset_config_name, "splits": data.split_names}
        tokenizer = run.tokenizer_name or run.model_name_or_path or self._tokenizer_settings()
        columns = [task.text_column, task.label_column]
        return {"data": source, "columns": columns, "tokenizer": tokenizer, "base_model": run.model_name_or_path}

    def _tokenizer_settings(self) -> dict:
        task = self.task_args
        if task.tokenizer_type == "bpe":
            return {"trained": "bpe", "vocab_size": task.tokenizer_vocab_size, "max_length": task.max_length}
        return {"trained": "char", "min_frequency": task.tokenizer_min_frequency, "max_length": task.max_length}

    def load_data(self) -> DatasetDict:
        """Training labels first (they define the classes unless the run declares them), then the other splits,
        whose labels must be among those classes."""
        data = self.data_args
        if not data.data_files and not data.dataset_name:
            raise ValueError("No data: give `train_file` (and `validation_file`, `test_file`), or `dataset_name`.")
        splits = list(data.data_files) if data.data_files else [s for s, name in data.split_names.items() if name]
        reader = LabelReader(declared_classes(self.model_overrides))
        train = self._load([s for s in splits if s == "train"], reader.read)
        self.classes = reader.classes() if "train" in train else reader.declared
        if "train" in train and self.classes.declared is None:
            train["train"] = train["train"].map(reader.to_ids, batched=True, desc="Class ids")
        held_out = [s for s in splits if s != "train"]
        if held_out and self.classes is None:
            raise ValueError("No training split to find the classes in: give `train_file` or a `train` split.")
        others = self._load(held_out, ClassChecker(self.classes).read) if held_out else DatasetDict()
        self.raw = DatasetDict({**train, **others})
        return self.raw

    def _load(self, splits: list[str], parse_label) -> DatasetDict:
        data, task = self.data_args, self.task_args

        def fields(columns: list[str]) -> dict[str, Field]:
            missing = [c for c in (task.text_column, task.label_column) if c not in columns]
            if missing:
                raise ValueError(f"has columns {columns}, not {missing}: set `text_column` / `label_column`")
            return {
                "text": Field((task.text_column,)),
                "label": Field((task.label_column,), kind="value", parse=parse_label),
            }

        if not splits:
            return DatasetDict()
        if data.data_files:
            return load_fields(fields, data_files={split: data.data_files[split] for split in splits})
        return load_fields(
            fields,
            dataset_name=data.dataset_name,
            dataset_config_name=data.dataset_config_name,
            splits={split: data.split_names[split] for split in splits},
        )

    def dataset_reference(self) -> tuple[str | None, str]:
        sizes = ", ".join(f"{split} {len(rows):,} texts" for split, rows in self.raw.items())
        return self.files_or_hub_reference(sizes)

    # -- model ------------------------------------------------------------------------------------------------

    def build_processor(self, train: Dataset, output_dir: Path, reuse: bool, save: bool):
        task = self.task_args
        if (tokenizer := self.given_tokenizer(output_dir, reuse)) is not None:
            return tokenizer
        texts = (text for batch in train.iter(batch_size=1000) for text in batch["text"])
        if task.tokenizer_type == "bpe":
            tokenizer = train_tokenizer(texts, vocab_size=task.tokenizer_vocab_size, show_progress=False)
        else:
            tokenizer = train_char_tokenizer(texts, min_frequency=task.tokenizer_min_frequency)
        if save:
            tokenizer.save_pretrained(output_dir)
        return tokenizer

    def preprocess(self, data: DatasetDict, tokenizer) -> DatasetDict:
        max_length = self.task_args.max_length

        def encode(batch: dict) -> dict:
            return {**tokenizer(batch["text"], max_length=max_length, truncation=True), "labels": batch["label"]}

        workers = self.data_args.preprocessing_num_workers
        return DatasetDict(
            {
                split: rows.map(encode, batched=True, num_proc=workers, remove_columns=rows.column_names, desc=split)
                for split, rows in data.items()
            }
        )

    def build_model(self, tokenizer, config_overrides: dict) -> LSTMForSequenceClassification:
        values = {
            **config_overrides,
            "vocab_size": len(tokenizer),
            "pad_token_id": tokenizer.pad_token_id,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "id2label": dict(enumerate(self.classes.names)),
            "label2id": {name: index for index, name in enumerate(self.classes.names)},
            "problem_type": "single_label_classification",
        }
        values.pop("num_labels", None)  # checked against the data when the classes were read; id2label sets it
        return LSTMForSequenceClassification(LSTMConfig(**values))

    def data_collator(self, tokenizer, model):
        return DataCollatorWithPadding(tokenizer)

    def compute_metrics(self, tokenizer, references: Dataset):
        """Accuracy and macro-F1 (the unweighted mean of per-class F1 over the classes that occur in the labels or
        the predictions, as scikit-learn computes it)."""
        labels = np.asarray(references["label"])

        def compute(prediction) -> dict[str, float]:
            logits = prediction.predictions
            logits = logits[0] if isinstance(logits, tuple) else logits
            if len(logits) != len(labels):
                raise ValueError(f"{len(logits)} predictions for {len(labels)} labelled texts.")
            return classification_scores(np.asarray(logits).argmax(axis=-1), labels)

        return compute

    # -- what the folder, the card and the console show -------------------------------------------------------

    def card_details(self, model, dataset_description: str, examples: Dataset) -> CardDetails:
        config, task = model.config, self.task_args
        names = [config.id2label[i] for i in range(config.num_labels)]
        example = min(examples["text"], key=len) if len(examples) else ""  # the widget's and the snippet's input
        usage = "\n".join(
            [
                "from transformers import pipeline",
                "",
                "# trust_remote_code: the model's code travels with it (not needed where `import hf_rnn` was run)",
                'classifier = pipeline("text-classification", model="{repo_id}", trust_remote_code=True)',
                f"print(classifier({example!r}, top_k=None))",
            ]
        )
        directions = "bidirectional " if config.bidirectional else ""
        tokenizer = (
            f"BPE ({config.vocab_size} tokens)"
            if task.tokenizer_type == "bpe"
            else f"characters ({config.vocab_size} tokens)"
        )
        return CardDetails(
            pipeline_tag="text-classification",
            description=(
                f"A recurrent ({directions}{config.cell_type.upper()}) text classifier with {config.pooling} pooling "
                f"that sorts a text into one of {len(names)} classes ({', '.join(names)}), trained with hf-rnn on "
                f"{dataset_description}."
            ),
            languages=task.languages or [],
            usage=usage,
            metric_names={"accuracy": "Accuracy", "macro_f1": "Macro F1"},
            hyperparameters={
                "architecture": f"{directions}{config.cell_type.upper()}, {config.num_layers} layer(s), "
                f"{config.pooling} pooling",
                "embedding / hidden size": f"{config.embedding_size} / {config.hidden_size}",
                "dropout (outputs / embeddings)": f"{config.dropout} / {config.embedding_dropout}",
                "tokens": tokenizer,
                "max length (tokens)": task.max_length,
                "labels": ", ".join(names),
            },
            limitations=[
                "A small recurrent model trained on a single corpus: expect errors on texts unlike its training data "
                "(other domains, sarcasm, mixed opinions).",
                f"Texts longer than {task.max_length} tokens are cut to their first {task.max_length}.",
            ],
            tags=["text-classification", config.cell_type],
            widget=[{"text": example}] if example else None,
            main_metric="accuracy",
        )

    def print_examples(self, model, tokenizer, rows: Dataset) -> None:
        if not len(rows):
            return
        classifier = TextClassificationPipeline(model=model, tokenizer=tokenizer, device=model.device)
        with torch.inference_mode():
            outputs = classifier(list(rows["text"]), batch_size=len(rows), truncation=True)
        print("\nExample predictions (text → predicted (score) | label):")
        for row, output in zip(rows, outputs):
            label = model.config.id2label[row["label"]]
            print(f"  {row['text']}  →  {output['label']} ({output['score']:.3f})  |  {label}")


# -- classes and labels ------------------------------------------------------------------------------------------


@dataclass
class Classes:
    """The classes of a run: `names[i]` is the name of class id i; `declared` says where they came from."""

    names: list[str]
    declared: str | None  # "model.id2label" / "model.num_labels", or None when found in the training split


def declared_classes(model_overrides: dict[str, Any]) -> Classes | None:
    """The classes the run declares with `model.id2label` or `model.num_labels` (both: they must agree)."""
    if model_overrides.get("problem_type", "single_label_classification") != "single_label_classification":
        raise ValueError(
            f"`model.problem_type` {model_overrides['problem_type']!r}: the text-classification task trains "
            f"single-label classifiers (one class per text); remove it."
        )
    id2label, num_labels = model_overrides.get("id2label"), model_overrides.get("num_labels")
    if num_labels is not None and (isinstance(num_labels, bool) or not isinstance(num_labels, int) or num_labels < 2):
        raise ValueError(f"`model.num_labels` must be an integer of at least 2, got {num_labels!r}.")
    if id2label is None:
        return None if num_labels is None else Classes([f"LABEL_{i}" for i in range(num_labels)], "model.num_labels")
    if not isinstance(id2label, dict) or sorted(map(_as_int, id2label)) != list(range(len(id2label))):
        raise ValueError(
            f"`model.id2label` must map the class ids 0, 1, ... (each once) to names, e.g. {{0: negative, 1: "
            f"positive}}; got {id2label!r}."
        )
    names = [str(id2label[key]) for key in sorted(id2label, key=_as_int)]
    if len(set(names)) != len(names) or len(names) < 2:
        raise ValueError(f"`model.id2label` must name at least two classes, each differently; got {id2label!r}.")
    if num_labels is not None and num_labels != len(names):
        raise ValueError(f"`model.num_labels` is {num_labels} but `model.id2label` names {len(names)} classes.")
    return Classes(names, "model.id2label")


def _as_int(key) -> int:
    return int(key) if isinstance(key, int) or (isinstance(key, str) and INTEGER.fullmatch(key)) else -1


def parse_label(value, names: list[str] | None) -> int | str:
    """One raw label → a class id (int) or, when it is not one of `names` nor an integer, a class name (str)."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(
            f"label {value!r} is {'missing' if value is None else 'a ' + type(value).__name__}: a label is a class "
            f"id (integer) or a class name (string)."
        )
    if isinstance(value, str):
        if not value.strip():
            raise ValueError("the label is empty.")
        if names is not None and value in names:
            return names.index(value)
        if INTEGER.fullmatch(value.strip()):
            return int(value)
    return value


class LabelReader:
    """Reads the training labels: checks each against the declared classes, or collects the classes."""

    def __init__(self, declared: Classes | None):
        self.declared = declared
        self.ids: set[int] = set()
        self.names: set[str] = set()

    def read(self, value) -> int | str:
        label = parse_label(value, self.declared.names if self.declared else None)
        if self.declared is not None:
            return _check_in_range(label, self.declared)
        if isinstance(label, int) and label < 0:
            raise ValueError(f"label {label} is negative: class ids count from 0.")
        if (isinstance(label, int) and self.names) or (isinstance(label, str) and self.ids):
            raise ValueError(
                f"label {value!r} mixes class names and class ids in one column; use one kind, or declare the "
                f"classes with `model.id2label`."
            )
        (self.ids if isinstance(label, int) else self.names).add(label)
        return label

    def classes(self) -> Classes:
        if self.declared is not None:
            return self.declared
        names = [f"LABEL_{i}" for i in range(max(self.ids) + 1)] if self.ids else sorted(self.names)
        if len(names) < 2:
            raise ValueError(
                f"The training split has one class only ({names[0]!r}): a classifier needs at least two. Declare the "
                f"classes with `model.id2label` if some are missing from it."
            )
        self.names_to_ids = {name: index for index, name in enumerate(names)}
        return Classes(names, None)

    def to_ids(self, batch: dict) -> dict:
        """Training rows read before the classes were known: their names become class ids."""
        return {"label": [self.names_to_ids[v] if isinstance(v, str) else v for v in batch["label"]]}


class ClassChecker:
    """Reads validation/test labels: each must be one of the run's classes; returns its id."""

    def __init__(self, classes: Classes):
        self.classes = classes

    def read(self, value) -> int:
        return _check_in_range(parse_label(value, self.classes.names), self.classes)


def _check_in_range(label: int | str, classes: Classes) -> int:
    source = classes.declared or "the training labels"
    if isinstance(label, str):
        raise ValueError(f"label {label!r} is not one of the classes of {source}: {', '.join(classes.names)}.")
    if not 0 <= label < len(classes.names):
        raise ValueError(
            f"label {label} is outside the class ids 0..{len(classes.names) - 1} of {source} "
            f"({', '.join(classes.names)}); declare every class with `model.id2label` or `model.num_labels`."
        )
    return label


def classification_scores(predicted: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Accuracy and macro-F1 of predicted class ids against label ids."""
    f1 = []
    for cls in np.union1d(predicted, labels):
        hits = np.sum((predicted == cls) & (labels == cls))
        denominator = np.sum(predicted == cls) + np.sum(labels == cls)
        f1.append(2 * hits / denominator)
    return {
        "accuracy": float(np.mean(predicted == labels)),
        "macro_f1": float(np.mean(f1)),
        "num_texts": float(len(labels)),
    }


__all__ = [
    "ClassificationArguments",
    "ClassificationTask",
    "ClassificationTrainer",
    "EqualLengthSampler",
    "classification_scores",
]
