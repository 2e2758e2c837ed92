"""Image → keywords (1:N): images with keyword lists → `LSTMCaptionerForConditionalGeneration`.

Data: the embedded procedural landscapes (`landscapes`), an image folder whose `metadata.jsonl` gives a
`keywords` list per `file_name` (the `datasets` imagefolder layout, `data_dir`), or a Hub dataset with an image
column and a keyword-list column. Every image is opened once before training, so a broken file is named then.
Scored with keyword precision / recall / F1 (micro) and exact-set match against the raw keyword lists.
"""

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset, DatasetDict
from transformers import AutoModelForImageTextToText, AutoProcessor

from ..captioner import (
    LSTMCaptionerConfig,
    LSTMCaptionerForConditionalGeneration,
    LSTMCaptionerImageProcessor,
    LSTMCaptionerProcessor,
    build_keyword_tokenizer,
    normalize_keyword,
)
from ..captioner.image_processing_lstm_captioner import to_rgb_image
from ..data.captioning import LANDSCAPES, check_images, check_keywords, decode_image, load_captioning_data
from ..data.files import DataFileError, iter_rows
from .base import CardDetails, Task

logger = logging.getLogger(__name__)


@dataclass
class CaptioningArguments:
    """The captioning task's own fields."""

    data_dir: str | None = field(
        default=None, metadata={"help": "An image folder with metadata.jsonl holding a `keywords` list per file_name."}
    )
    image_column: str = "image"
    keywords_column: str = "keywords"
    vision_model_name: str | None = field(
        default=None,
        metadata={"help": "A transformers vision backbone (Hub id or folder) instead of the built-in CNN."},
    )


class CaptioningTask(Task):
    name = "captioning"
    arguments_class = CaptioningArguments
    config_class = LSTMCaptionerConfig
    model_class = LSTMCaptionerForConditionalGeneration
    auto_model_class = AutoModelForImageTextToText
    derived_config_fields = (
        "vocab_size",
        "pad_token_id",
        "bos_token_id",
        "eos_token_id",
        "decoder_start_token_id",
        "vision_config",
    )

    def adjust_training_arguments(self, training) -> None:
        if training.remove_unused_columns:
            logger.info("Keeping the raw `image` and `keywords` columns: the collator decodes images per batch.")
            training.remove_unused_columns = False

    @property
    def image_size(self) -> int:
        return self.model_overrides.get("image_size") or LSTMCaptionerConfig().image_size

    # -- data -------------------------------------------------------------------------------------------------

    def run_identity(self) -> dict:
        data, task = self.data_args, self.task_args
        if task.data_dir:
            source = {"image_folder": _folder_identity(Path(task.data_dir))}
        elif data.dataset_name == LANDSCAPES:
            sizes = (data.synthetic_train_size, data.synthetic_eval_size)
            source = {"embedded": LANDSCAPES, "sizes": sizes, "image_size": self.image_size}
            source["seed"] = self.training_args.data_seed or 0
        else:
            source = {"dataset": data.dataset_name, "config": data.dataset_config_name, "splits": data.split_names}
        columns = [task.image_column, task.keywords_column]
        return {
            "data": source,
            "columns": columns,
            "base_model": self.args.model_name_or_path or task.vision_model_name,
        }

    def load_data(self) -> DatasetDict:
        data, task = self.data_args, self.task_args
        if task.data_dir:
            _check_metadata(Path(task.data_dir), task.keywords_column)
        elif not data.dataset_name:
            raise ValueError("No data: give `data_dir` (an image folder), or `dataset_name`.")
        self.raw = load_captioning_data(
            None if task.data_dir else data.dataset_name,
            data.dataset_config_name,
            data_dir=task.data_dir,
            splits=data.split_names,
            image_column=task.image_column,
            keywords_column=task.keywords_column,
            landscape_sizes=(data.synthetic_train_size, data.synthetic_eval_size, data.synthetic_eval_size),
            image_size=self.image_size,
            seed=self.training_args.data_seed or 0,
        )
        if task.data_dir or data.dataset_name != LANDSCAPES:
            check_images(self.raw, num_proc=data.preprocessing_num_workers)
        self.keywords = check_keywords(self.raw)
        return self.raw

    def dataset_reference(self) -> tuple[str | None, str]:
        data, task = self.data_args, self.task_args
        sizes = ", ".join(f"{split} {len(rows):,} images" for split, rows in self.raw.items())
        if task.data_dir:
            return data.dataset_citation_name, f"a local image folder ({sizes})"
        if data.dataset_name == LANDSCAPES:
            return None, f"procedurally drawn landscapes generated by hf_rnn ({sizes})"
        return data.dataset_citation_name or data.dataset_name, f"{data.dataset_name} ({sizes})"

    # -- model ------------------------------------------------------------------------------------------------

    def build_processor(self, train: Dataset, output_dir: Path, reuse: bool, save: bool) -> LSTMCaptionerProcessor:
        if self.args.model_name_or_path:
            return AutoProcessor.from_pretrained(self.args.model_name_or_path)
        size = {"height": self.image_size, "width": self.image_size}
        return LSTMCaptionerProcessor(LSTMCaptionerImageProcessor(size=size), build_keyword_tokenizer(self.keywords))

    def build_model(self, processor, config_overrides: dict) -> LSTMCaptionerForConditionalGeneration:
        tokenizer = processor.tokenizer
        config = {
            "vocab_size": len(tokenizer),
            "max_keywords": min(len(self.keywords), 20),
            "pad_token_id": tokenizer.pad_token_id,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "decoder_start_token_id": tokenizer.bos_token_id,
            **config_overrides,
        }
        if self.task_args.vision_model_name:
            return LSTMCaptionerForConditionalGeneration.from_vision_pretrained(
                self.task_args.vision_model_name, **config
            )
        return LSTMCaptionerForConditionalGeneration(LSTMCaptionerConfig(**config))

    def data_collator(self, processor, model):
        return KeywordCollator(processor)

    def compute_metrics(self, processor, references: Dataset):
        """Micro precision/recall/F1 over predicted vs true keyword sets, and exact-set match."""
        expected = [{normalize_keyword(k) for k in keywords} for keywords in references["keywords"]]

        def compute(prediction) -> dict[str, float]:
            predictions = prediction.predictions
            predictions = predictions[0] if isinstance(predictions, tuple) else predictions
            ids = np.where(predictions < 0, processor.tokenizer.pad_token_id, predictions)
            predicted = [set(keywords) for keywords in processor.batch_decode(ids)]
            if len(predicted) != len(expected):
                raise ValueError(f"{len(predicted)} keyword lists for {len(expected)} images: one output per image.")
            return keyword_scores(predicted, expected)

        return compute

    # -- what the folder, the card and the console show -------------------------------------------------------

    def save_extras(self, model, processor, output_dir: Path, examples: Dataset) -> None:
        processor.save_pretrained(output_dir)
        if len(examples):
            to_rgb_image(decode_image(examples[0]["image"])).save(output_dir / "example.png")  # PNG has no CMYK

    def card_details(self, model, dataset_description: str, examples: Dataset) -> CardDetails:
        config = model.config
        backbone = (
            config.vision_config.model_type if config.vision_config is not None else f"CNN {config.cnn_channels}"
        )
        usage = "\n".join(
            [
                "from transformers import pipeline",
                "",
                "# trust_remote_code: the model's code travels with it (not needed where `import hf_rnn` was run)",
                'captioner = pipeline("image-text-to-text", model="{repo_id}", trust_remote_code=True)',
                'print(captioner(images="example.png", text=""))',
            ]
        )
        landscapes = self.data_args.dataset_name == LANDSCAPES and not self.task_args.data_dir
        return CardDetails(
            pipeline_tag="image-to-text",
            description=(
                f"An image-to-keywords captioner: a {backbone} image encoder and an LSTM decoder with soft attention "
                f"(Show, Attend and Tell) that lists the keywords of a picture, each at most once; trained with "
                f"hf-rnn "
                f"on {dataset_description}."
            ),
            languages=["en"] if landscapes else [],
            usage=usage,
            metric_names={
                "keyword_f1": "Keyword F1 (micro)",
                "keyword_precision": "Keyword precision",
                "keyword_recall": "Keyword recall",
                "exact_set_match": "Exact keyword-set match",
            },
            hyperparameters={
                "vision encoder": backbone,
                "embedding / hidden size": f"{config.embedding_size} / {config.hidden_size}",
                "keywords": config.vocab_size - 4,
                "image size": config.image_size,
                "dropout": config.dropout,
            },
            limitations=[
                "Knows only the keywords of its training data, and only images that resemble it.",
                *(
                    ["The landscapes are procedurally drawn cartoons: the model does not describe photographs."]
                    if landscapes
                    else []
                ),
            ],
            tags=["image-to-text", "keywords", "captioning"],
            main_metric="keyword_f1",
        )

    def print_examples(self, model, processor, rows: Dataset) -> None:
        if not len(rows):
            return
        inputs = processor(images=[decode_image(r["image"]) for r in rows], return_tensors="pt").to(model.device)
        with torch.inference_mode():
            predicted = processor.batch_decode(model.generate(**inputs))
        print("\nExample keywords (predicted | true):")
        for keywords, row in zip(predicted, rows):
            print(f"  {', '.join(keywords)}  |  {', '.join(row['keywords'])}")


class KeywordCollator:
    """Decodes images and builds `pixel_values` + `labels` per batch (images are not cached as tensors)."""

    def __init__(self, processor: LSTMCaptionerProcessor):
        self.processor = processor

    def __call__(self, examples: list[dict]) -> dict:
        images = [decode_image(example["image"]) for example in examples]
        return dict(self.processor(images=images, keywords=[e["keywords"] for e in examples], return_tensors="pt"))


def keyword_scores(predicted: list[set[str]], expected: list[set[str]]) -> dict[str, float]:
    """Micro precision/recall/F1 of keyword sets, and the share of exactly right sets."""
    hits = sum(len(p & e) for p, e in zip(predicted, expected))
    n_predicted, n_expected = sum(map(len, predicted)), sum(map(len, expected))
    precision = hits / n_predicted if n_predicted else 0.0
    recall = hits / n_expected if n_expected else 0.0
    return {
        "keyword_precision": precision,
        "keyword_recall": recall,
        "keyword_f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "exact_set_match": float(np.mean([p == e for p, e in zip(predicted, expected)])),
        "num_images": float(len(predicted)),
    }


def _check_metadata(data_dir: Path, keywords_column: str) -> None:
    """Every metadata file is readable and names a file and a list of keyword strings on every line."""
    if not data_dir.is_dir():
        raise FileNotFoundError(f"Image folder {data_dir} does not exist.")
    for path in sorted(data_dir.rglob("metadata.jsonl")):
        for line, row in iter_rows(path):
            keywords = row.get(keywords_column)
            if "file_name" not in row:
                raise DataFileError(f"{path}, line {line}: no `file_name`.")
            if not isinstance(keywords, list) or not keywords or not all(isinstance(k, str) for k in keywords):
                raise DataFileError(
                    f"{path}, line {line}: `{keywords_column}` must be a non-empty list of strings, got {keywords!r}."
                )


def _folder_identity(data_dir: Path) -> dict:
    """An image folder by its files' relative names and sizes (hashing every image would be slow)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in data_dir.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(data_dir)}\0{path.stat().st_size}\n".encode())
    return {"folder": data_dir.name, "files_sha256": digest.hexdigest()}


__all__ = ["CaptioningArguments", "CaptioningTask", "KeywordCollator", "keyword_scores"]
