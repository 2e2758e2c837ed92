"""Parallel corpora from anywhere, normalised to `source`/`target` text and tokenised.

Sources: the package's own synthetic English→Korean corpus (`synthetic_en_ko`), any Hub
dataset, or local json/jsonl/csv/tsv/parquet files — in the HF translation layout
`{"translation": {"en": ..., "ko": ...}}` or as two named columns.
"""

import logging
from pathlib import Path

from datasets import DatasetDict, load_dataset

from .synthetic_en_ko import build_synthetic_en_ko

logger = logging.getLogger(__name__)

SYNTHETIC_EN_KO = "synthetic_en_ko"
FILE_BUILDERS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".tsv": "csv", ".parquet": "parquet"}


def load_raw_translation_data(
    dataset_name: str | None,
    dataset_config_name: str | None = None,
    data_files: dict[str, str] | None = None,
    splits: dict[str, str] | None = None,
    synthetic_sizes: tuple[int, int, int] = (20000, 500, 500),
    seed: int = 0,
) -> DatasetDict:
    """Load the raw corpus as a DatasetDict keyed by our split names (train/validation/test).

    `splits` maps our split names to the source's own (e.g. {"validation": "dev"}); local
    `data_files` win over `dataset_name`.
    """
    splits = splits or {"train": "train", "validation": "validation", "test": "test"}
    if data_files:
        missing = [path for path in data_files.values() if not Path(path).exists()]
        if missing:
            raise FileNotFoundError(f"Data file(s) not found: {', '.join(missing)}")
        suffixes = {Path(path).suffix.lower() for path in data_files.values()}
        unknown = suffixes - FILE_BUILDERS.keys()
        if unknown or len({FILE_BUILDERS[s] for s in suffixes}) != 1:
            raise ValueError(
                f"Data files must share one format among {sorted(FILE_BUILDERS)}; got extensions {sorted(suffixes)}."
            )
        suffix = suffixes.pop()
        options = {"delimiter": "\t"} if suffix == ".tsv" else {}
        raw = load_dataset(FILE_BUILDERS[suffix], data_files=data_files, **options)
        return DatasetDict({name: raw[name] for name in data_files})
    if dataset_name in (None, SYNTHETIC_EN_KO):
        num_train, num_validation, num_test = synthetic_sizes
        return build_synthetic_en_ko(num_train, num_validation, num_test, seed=seed)
    raw = load_dataset(dataset_name, dataset_config_name)
    result = {}
    for ours, theirs in splits.items():
        if theirs and theirs in raw:
            result[ours] = raw[theirs]
        elif theirs:
            logger.warning("Dataset %s has no split %r (has %s); skipping %s.", dataset_name, theirs, list(raw), ours)
    return DatasetDict(result)


def to_source_target(
    raw: DatasetDict,
    source_lang: str,
    target_lang: str,
    source_column: str | None = None,
    target_column: str | None = None,
    num_proc: int | None = None,
) -> DatasetDict:
    """Normalise every split to two string columns, `source` and `target`, dropping empty/blank pairs."""
    result = {}
    for split, dataset in raw.items():
        columns = dataset.column_names
        if source_column or target_column:
            pair_columns = (source_column or source_lang, target_column or target_lang)
        elif "translation" in columns:
            pair_columns = None
        else:
            pair_columns = (source_lang, target_lang)
        if pair_columns is not None and not set(pair_columns) <= set(columns):
            raise ValueError(
                f"Split {split!r} has columns {columns}: expected a `translation` column or the columns "
                f"{list(pair_columns)} (set `source_column`/`target_column`)."
            )
        if pair_columns is None:
            languages = set(dataset[0]["translation"]) if len(dataset) else {source_lang, target_lang}
            if not {source_lang, target_lang} <= languages:
                raise ValueError(
                    f"Split {split!r} translates between {sorted(languages)}, not {source_lang!r}→{target_lang!r}."
                )

        def extract(batch: dict, pair_columns=pair_columns) -> dict:
            if pair_columns is None:
                pairs = [(item[source_lang], item[target_lang]) for item in batch["translation"]]
            else:
                pairs = list(zip(batch[pair_columns[0]], batch[pair_columns[1]]))
            return {
                "source": [str(s).strip() if s is not None else "" for s, _ in pairs],
                "target": [str(t).strip() if t is not None else "" for _, t in pairs],
            }

        normalised = dataset.map(
            extract, batched=True, remove_columns=columns, num_proc=num_proc, desc=f"Reading {split} pairs"
        )
        kept = normalised.filter(
            lambda batch: [bool(s) and bool(t) for s, t in zip(batch["source"], batch["target"])],
            batched=True,
            num_proc=num_proc,
            desc=f"Dropping empty {split} pairs",
        )
        dropped = len(normalised) - len(kept)
        if dropped:
            logger.warning("Dropped %d empty or blank pair(s) from the %s split.", dropped, split)
        result[split] = kept
    return DatasetDict(result)


def tokenize_pairs(
    pairs: DatasetDict,
    tokenizer,
    max_source_length: int,
    max_target_length: int,
    num_proc: int | None = None,
) -> DatasetDict:
    """Tokenise with truncation (EOS is kept); `datasets` caches the result and can run it in parallel."""

    def encode(batch: dict) -> dict:
        model_inputs = tokenizer(batch["source"], max_length=max_source_length, truncation=True)
        labels = tokenizer(text_target=batch["target"], max_length=max_target_length, truncation=True)
        return {
            "input_ids": model_inputs["input_ids"],
            "attention_mask": model_inputs["attention_mask"],
            "labels": labels["input_ids"],
        }

    return DatasetDict(
        {
            split: dataset.map(
                encode,
                batched=True,
                num_proc=num_proc,
                remove_columns=["source", "target"],
                desc=f"Tokenizing {split}",
            )
            for split, dataset in pairs.items()
        }
    )


__all__ = ["SYNTHETIC_EN_KO", "load_raw_translation_data", "to_source_target", "tokenize_pairs"]
