"""Translation (N:N): sentence pairs → a trained BPE tokenizer → `LSTMSeq2SeqForConditionalGeneration`.

Data: the embedded synthetic English→Korean corpus (`synthetic_en_ko`), a Hub dataset, or local
json/jsonl/csv/tsv/parquet files, either in the Hugging Face translation layout
`{"translation": {"en": ..., "ko": ...}}` (languages picked by `source_lang`/`target_lang`) or as two text
columns (`source_column`/`target_column`; by default the columns named like the languages).
Scored with sacreBLEU BLEU (13a) and chrF on generated translations against the raw reference strings.
"""

import copy
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import sacrebleu
from datasets import Dataset, DatasetDict
from transformers import AutoModelForSeq2SeqLM, DataCollatorForSeq2Seq

from ..data.files import Field, check_files_exist, file_identity, load_fields
from ..data.synthetic_en_ko import build_synthetic_en_ko
from ..data.tokenization import train_tokenizer
from ..translator import LSTMSeq2SeqConfig, LSTMSeq2SeqForConditionalGeneration, TranslationPipeline
from .base import CardDetails, Task

SYNTHETIC_EN_KO = "synthetic_en_ko"


@dataclass
class TranslationArguments:
    """The translation task's own fields."""

    source_lang: str | None = field(default=None, metadata={"help": "Source language code (e.g. en)."})
    target_lang: str | None = field(default=None, metadata={"help": "Target language code (e.g. ko)."})
    source_column: str | None = field(default=None, metadata={"help": "Column of source text (two-column files)."})
    target_column: str | None = field(default=None, metadata={"help": "Column of target text (two-column files)."})
    max_source_length: int = field(default=64, metadata={"help": "Source tokens kept for training (truncation)."})
    max_target_length: int = field(default=64, metadata={"help": "Target tokens kept for training (truncation)."})
    tokenizer_vocab_size: int = field(
        default=8000, metadata={"help": "Size of the BPE tokenizer trained on the data."}
    )
    bpe_dropout: float = field(
        default=0.0,
        metadata={
            "help": "BPE-dropout (Provilkov et al., 2020): while training, each merge is skipped with this "
            "probability every time a sentence is batched, so the model sees several segmentations of every word "
            "(0.1 in the paper). Evaluation, decoding and the saved tokenizer segment as usual."
        },
    )

    def __post_init__(self):
        if not 0.0 <= self.bpe_dropout < 1.0:
            raise ValueError(f"`bpe_dropout` must be in [0, 1), got {self.bpe_dropout}.")


class BPEDropoutCollator:
    """Segments each training pair afresh with BPE-dropout (Provilkov et al., 2020, https://arxiv.org/abs/1910.13267),
    then pads it with `collator`.

    The features hold the pair's ids under the tokenizer's usual segmentation; they are decoded back to text (the
    byte-level tokenizer gives the text back exactly) and encoded again by a copy of the tokenizer whose BPE model
    skips each merge with probability `dropout`, truncated to the same lengths. The draws come from the `tokenizers`
    library's own unseeded generator: two runs with the same seed see different segmentations, so their losses
    differ (and a resumed run does not repeat the interrupted one's).
    """

    def __init__(self, tokenizer, collator, dropout: float, max_source_length: int, max_target_length: int):
        self.tokenizer, self.collator = tokenizer, collator
        self.dropout_tokenizer = copy.deepcopy(tokenizer)
        self.dropout_tokenizer.backend_tokenizer.model.dropout = dropout
        self.max_source_length, self.max_target_length = max_source_length, max_target_length

    def __call__(self, features: list[dict]) -> dict:
        sources = self.tokenizer.batch_decode([f["input_ids"] for f in features], skip_special_tokens=True)
        targets = self.tokenizer.batch_decode([f["labels"] for f in features], skip_special_tokens=True)
        inputs = self.dropout_tokenizer(sources, max_length=self.max_source_length, truncation=True)
        labels = self.dropout_tokenizer(text_target=targets, max_length=self.max_target_length, truncation=True)
        return self.collator(
            [
                {"input_ids": ids, "attention_mask": mask, "labels": target}
                for ids, mask, target in zip(inputs["input_ids"], inputs["attention_mask"], labels["input_ids"])
            ]
        )


class TranslationTask(Task):
    name = "translation"
    arguments_class = TranslationArguments
    config_class = LSTMSeq2SeqConfig
    model_class = LSTMSeq2SeqForConditionalGeneration
    auto_model_class = AutoModelForSeq2SeqLM
    derived_config_fields = ("vocab_size", "pad_token_id", "bos_token_id", "eos_token_id", "decoder_start_token_id")

    # -- data -------------------------------------------------------------------------------------------------

    def run_identity(self) -> dict:
        data, task, run = self.data_args, self.task_args, self.args
        if data.data_files:
            check_files_exist(data.data_files)
            source = {split: file_identity(path) for split, path in data.data_files.items()}
        elif data.dataset_name == SYNTHETIC_EN_KO:
            sizes = (data.synthetic_train_size, data.synthetic_eval_size)
            source = {"embedded": SYNTHETIC_EN_KO, "sizes": sizes, "seed": self.training_args.data_seed or 0}
        else:
            source = {"dataset": data.dataset_name, "config": data.dataset_config_name, "splits": data.split_names}
        pair = {"languages": [task.source_lang, task.target_lang], "columns": [task.source_column, task.target_column]}
        tokenizer = run.tokenizer_name or run.model_name_or_path or {"trained_vocab_size": task.tokenizer_vocab_size}
        return {"data": source, "pair": pair, "tokenizer": tokenizer, "base_model": run.model_name_or_path}

    def load_data(self) -> DatasetDict:
        data = self.data_args
        if not data.data_files and not data.dataset_name:
            raise ValueError("No data: give `train_file` (and `validation_file`), or `dataset_name`.")
        embedded = None
        if not data.data_files and data.dataset_name == SYNTHETIC_EN_KO:
            sizes = (data.synthetic_train_size, data.synthetic_eval_size, data.synthetic_eval_size)
            embedded = build_synthetic_en_ko(*sizes, seed=self.training_args.data_seed or 0)
        self.raw = load_fields(
            self._fields,
            data_files=data.data_files,
            dataset=embedded,
            dataset_name=data.dataset_name,
            dataset_config_name=data.dataset_config_name,
            splits=data.split_names,
        )
        return self.raw

    def _fields(self, columns: list[str]) -> dict[str, Field]:
        """Which columns hold the pair: explicit columns, the translation layout, or columns named by language."""
        task = self.task_args
        if task.source_column or task.target_column:
            pair = (task.source_column or task.source_lang, task.target_column or task.target_lang)
            if None in pair:
                raise ValueError("give both `source_column` and `target_column`")
            paths = [(pair[0],), (pair[1],)]
        elif "translation" in columns:
            if not (task.source_lang and task.target_lang):
                raise ValueError("the `translation` column needs `source_lang` and `target_lang` to pick the pair")
            paths = [("translation", task.source_lang), ("translation", task.target_lang)]
        else:
            if not (task.source_lang and task.target_lang):
                raise ValueError(f"has columns {columns}: set `source_column` and `target_column`")
            paths = [(task.source_lang,), (task.target_lang,)]
        missing = [path[0] for path in paths if path[0] not in columns]
        if missing:
            raise ValueError(
                f"has columns {columns}, not {missing}: set `source_column`/`target_column`, or use the "
                f"`translation` layout with `source_lang`/`target_lang`"
            )
        return {"source": Field(paths[0]), "target": Field(paths[1])}

    def dataset_reference(self) -> tuple[str | None, str]:
        sizes = ", ".join(f"{split} {len(rows):,} pairs" for split, rows in self.raw.items())
        if not self.data_args.data_files and self.data_args.dataset_name == SYNTHETIC_EN_KO:
            return None, f"the synthetic English→Korean grammar corpus generated by hf_rnn ({sizes})"
        return self.files_or_hub_reference(sizes)

    # -- model ------------------------------------------------------------------------------------------------

    def build_processor(self, train: Dataset, output_dir: Path, reuse: bool, save: bool):
        if (tokenizer := self.given_tokenizer(output_dir, reuse)) is not None:
            return tokenizer
        texts = (text for batch in train.iter(batch_size=1000) for text in batch["source"] + batch["target"])
        tokenizer = train_tokenizer(texts, vocab_size=self.task_args.tokenizer_vocab_size)
        if save:
            tokenizer.save_pretrained(output_dir)
        return tokenizer

    def preprocess(self, data: DatasetDict, tokenizer) -> DatasetDict:
        task = self.task_args

        def encode(batch: dict) -> dict:
            inputs = tokenizer(batch["source"], max_length=task.max_source_length, truncation=True)
            labels = tokenizer(text_target=batch["target"], max_length=task.max_target_length, truncation=True)
            return {**inputs, "labels": labels["input_ids"]}

        workers = self.data_args.preprocessing_num_workers
        return DatasetDict(
            {
                split: rows.map(encode, batched=True, num_proc=workers, remove_columns=rows.column_names, desc=split)
                for split, rows in data.items()
            }
        )

    def build_model(self, tokenizer, config_overrides: dict) -> LSTMSeq2SeqForConditionalGeneration:
        config = LSTMSeq2SeqConfig(
            vocab_size=len(tokenizer),
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            decoder_start_token_id=tokenizer.bos_token_id,
            **config_overrides,
        )
        return LSTMSeq2SeqForConditionalGeneration(config)

    def data_collator(self, tokenizer, model):
        return DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100)

    def train_data_collator(self, tokenizer, model):
        task = self.task_args
        if not task.bpe_dropout:
            return None
        collator = self.data_collator(tokenizer, model)
        return BPEDropoutCollator(
            tokenizer, collator, task.bpe_dropout, task.max_source_length, task.max_target_length
        )

    def compute_metrics(self, tokenizer, references: Dataset):
        """sacreBLEU BLEU (13a tokenisation) and chrF — chrF because word-level BLEU under-rates agglutinative
        languages such as Korean, where one wrong particle makes a whole word wrong."""
        targets = list(references["target"])

        def compute(prediction) -> dict[str, float]:
            predictions = prediction.predictions
            predictions = predictions[0] if isinstance(predictions, tuple) else predictions
            # Generated ids come padded with -100 across processes and batches: map that back to padding.
            predictions = np.where(predictions < 0, tokenizer.pad_token_id, predictions)
            hypotheses = tokenizer.batch_decode(predictions, skip_special_tokens=True)
            if len(hypotheses) != len(targets):
                raise ValueError(
                    f"{len(hypotheses)} translations for {len(targets)} references: BLEU needs one output per "
                    f"sentence (num_return_sequences must be 1 when scoring)."
                )
            return {
                "bleu": sacrebleu.corpus_bleu(hypotheses, [targets]).score,
                "chrf": sacrebleu.corpus_chrf(hypotheses, [targets]).score,
                "num_sentences": float(len(hypotheses)),
            }

        return compute

    # -- what the folder, the card and the console show -------------------------------------------------------

    def save_extras(self, model, tokenizer, output_dir: Path, examples: Dataset) -> None:
        TranslationPipeline(model=model, tokenizer=tokenizer).save_pretrained(output_dir)

    def card_details(self, model, dataset_description: str, examples: Dataset) -> CardDetails:
        task, config = self.task_args, model.config
        languages = [lang for lang in (task.source_lang, task.target_lang) if lang]
        direction = f"{task.source_lang} → {task.target_lang}" if len(languages) == 2 else "its source to its target"
        example = examples[0]["source"] if len(examples) else ""
        usage = "\n".join(
            [
                "from transformers import pipeline",
                "",
                "# trust_remote_code: the model's code travels with it (not needed where `import hf_rnn` was run)",
                'translator = pipeline("translation", model="{repo_id}", trust_remote_code=True)',
                f"print(translator({example!r}, num_beams=5))",
            ]
        )
        synthetic = self.data_args.dataset_name == SYNTHETIC_EN_KO and not self.data_args.data_files
        return CardDetails(
            pipeline_tag="translation",
            description=(
                f"A recurrent ({config.cell_type.upper()}) encoder-decoder with {config.attention_type} attention "
                f"that "
                f"translates {direction}, trained with hf-rnn on {dataset_description}."
            ),
            languages=languages,
            usage=usage,
            metric_names={"bleu": "BLEU", "chrf": "chrF"},
            hyperparameters={
                "architecture": f"{config.cell_type.upper()} encoder-decoder, {config.attention_type} attention, "
                f"input feeding {'on' if config.input_feeding else 'off'}",
                "embedding / hidden size": f"{config.embedding_size} / {config.hidden_size}",
                "layers (encoder / decoder)": f"{config.num_encoder_layers} / {config.num_decoder_layers}",
                "bidirectional encoder": config.bidirectional_encoder,
                "dropout": config.dropout,
                "vocabulary (source / target)": f"{config.vocab_size} / {config.decoder_vocab_size}",
            },
            limitations=[
                "A small recurrent model trained on a single corpus: expect errors on sentences unlike the training "
                "data.",
                "Scores use sacreBLEU with its default 13a tokenisation; chrF is the more telling figure for "
                "agglutinative languages such as Korean.",
                *(
                    [
                        "The synthetic corpus covers a small grammar (pronouns, names, ~50 nouns, ~20 verbs, tense, "
                        "negation, a few questions); it is a demonstration, not a general translator."
                    ]
                    if synthetic
                    else []
                ),
            ],
            tags=["translation", "seq2seq", config.cell_type],
            widget=[{"text": example}] if example else None,
            main_metric="bleu",
        )

    def print_examples(self, model, tokenizer, rows: Dataset) -> None:
        if not len(rows):
            return
        translator = TranslationPipeline(model=model, tokenizer=tokenizer, device=model.device)
        outputs = translator(list(rows["source"]), num_beams=5, batch_size=len(rows))
        print("\nExample translations (source → output | reference):")
        for row, output in zip(rows, outputs):
            print(f"  {row['source']}  →  {output['translation_text']}  |  {row['target']}")


__all__ = ["SYNTHETIC_EN_KO", "BPEDropoutCollator", "TranslationArguments", "TranslationTask"]
