"""Data for training, read as written and checked before any work starts.

Every task describes the columns it needs as `Field`s (a column, or a key inside a dict column such as
`translation.en`). `load_fields` reads them from local files (json/jsonl/csv/tsv/parquet, or .txt: one document
in a column `text`), a Hub dataset or an in-memory `DatasetDict`, and returns one `Dataset` per split with
exactly those columns.

What "as written" means here:

- text is never reinterpreted: no quote stripping in TSV (tabs separate, quotes are text), no value such as
  `NA`, `null` or `None` turned into "missing", no number guessing for CSV/TSV text;
- CSV follows RFC 4180 (quotes are syntax there); TSV has no quoting at all: one line is one row;
- problems are reported before training with the file, the line (or row) and the column: malformed JSON,
  a non-UTF-8 byte, a row with too many or too few fields, an empty file, a missing column, a text column
  holding numbers or lists (named with its type);
- rows whose text is empty, blank or missing (for instance a translation without the target language) are
  dropped and counted in the log, never trained on.
"""

import csv
import hashlib
import io
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datasets import Dataset, DatasetDict, Value, load_dataset

logger = logging.getLogger(__name__)

FORMATS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".txt": "text"}
# A .txt file is one document, the way a language model reads a corpus: one row whose `text` column is the whole file.
TEXT_COLUMN = "text"


@dataclass(frozen=True)
class Field:
    """Where one output column comes from: `path` is the column, then keys inside dict values.

    `kind` is "text" (a non-blank string; rows without one are dropped and counted) or "value" (any JSON scalar
    or list, checked by the task). `parse`, for a value, checks and converts it (a class name to its id, say); the
    `ValueError` it raises for a bad value is reported with the file and line (or row) and the column.
    """

    path: tuple[str, ...]
    kind: str = "text"
    parse: Callable[[Any], Any] | None = None

    @property
    def name(self) -> str:
        return ".".join(self.path)


# A task's choice of fields given the columns a source actually has (it raises ValueError when none fits).
FieldResolver = Callable[[list[str]], dict[str, Field]]


class DataFileError(ValueError):
    """A data file that cannot be used as it is; the message names the file and, where known, line and column."""


def load_fields(
    resolve_fields: FieldResolver,
    data_files: dict[str, str] | None = None,
    dataset: DatasetDict | None = None,
    dataset_name: str | None = None,
    dataset_config_name: str | None = None,
    splits: dict[str, str | None] | None = None,
) -> DatasetDict:
    """Read the fields `resolve_fields` picks from local files, an in-memory dataset or a Hub dataset.

    Args:
        resolve_fields: maps a source's column names to `{output column: Field}`.
        data_files: `{split: path}`; all files share one format (by extension).
        dataset: an in-memory `DatasetDict` keyed by our split names (the embedded corpora).
        dataset_name / dataset_config_name: a Hub dataset, used when neither of the above is given.
        splits: our split names (train/validation/test) → the source's names, for Hub datasets.

    Returns:
        A `DatasetDict` keyed by our split names, each split with exactly the output columns.

    Raises:
        FileNotFoundError: a data file does not exist.
        DataFileError: a file is empty, malformed, not UTF-8, lacks a column, or holds a wrongly typed value.
    """
    if data_files:
        check_files_exist(data_files)
        return DatasetDict({split: _load_file(Path(path), resolve_fields) for split, path in data_files.items()})
    if dataset is None:
        raw = load_dataset(dataset_name, dataset_config_name)
        splits = splits or {"train": "train", "validation": "validation", "test": "test"}
        dataset = DatasetDict({ours: raw[theirs] for ours, theirs in splits.items() if theirs and theirs in raw})
        for ours, theirs in splits.items():
            if theirs and theirs not in raw:
                logger.warning(
                    "Dataset %s has no split %r (it has %s): no %s split.", dataset_name, theirs, list(raw), ours
                )
    source = dataset_name or "the dataset"
    return DatasetDict(
        {split: _select(data, resolve_fields, f"{source} ({split})") for split, data in dataset.items()}
    )


def check_files_exist(data_files: dict[str, str]) -> str:
    """All files exist and share one known format; returns that format."""
    missing = [path for path in data_files.values() if not Path(path).is_file()]
    if missing:
        raise FileNotFoundError(f"Data file(s) not found: {', '.join(missing)}")
    formats = {FORMATS.get(Path(path).suffix.lower()) for path in data_files.values()}
    if None in formats or len(formats) != 1:
        suffixes = sorted({Path(path).suffix for path in data_files.values()})
        raise DataFileError(f"Data files must share one format among {sorted(FORMATS)}; got extensions {suffixes}.")
    return formats.pop()


def file_identity(path: str) -> dict[str, str]:
    """A data file by name and content, so that moving it keeps a run the same and editing it does not."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return {"file": Path(path).name, "sha256": digest.hexdigest()}


# -- local files ---------------------------------------------------------------------------------------------------


def _load_file(path: Path, resolve_fields: FieldResolver) -> Dataset:
    file_format = check_files_exist({"": str(path)})
    if file_format == "parquet":
        return _load_parquet(path, resolve_fields)
    columns: dict[str, list] | None = None
    fields: dict[str, Field] = {}
    dropped: list[int] = []
    for line, row in iter_rows(path):
        if columns is None:
            fields = _resolve(resolve_fields, list(row), path)
            columns = {name: [] for name in fields}
        values = {}
        for name, field in fields.items():
            value = _value_at(row, field.path)
            if field.kind == "text" and value is not None and not isinstance(value, str):
                raise DataFileError(
                    f"{path}, line {line}: column `{field.name}` holds {type(value).__name__} {value!r}; "
                    f"it must be text (a string)."
                )
            values[name] = value
        if any(f.kind == "text" and not (values[n] and values[n].strip()) for n, f in fields.items()):
            dropped.append(line)
            continue
        values = _parse_values(values, fields, f"{path}, line {line}")
        for name, value in values.items():
            columns[name].append(value)
    if columns is None:
        raise DataFileError(f"{path} has no rows (it is empty).")
    kept = len(next(iter(columns.values()), []))
    _log_dropped(str(path), dropped, len(dropped) + kept, "line")
    if kept == 0:
        raise DataFileError(f"{path}: no row has text in every one of {_field_names(fields)}.")
    return Dataset.from_dict(columns)


def _read_utf8(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        column = error.start - (data.rfind(b"\n", 0, error.start) + 1) + 1
        raise DataFileError(
            f"{path}, line {line}, column {column}: byte 0x{data[error.start]:02x} is not UTF-8 (save the file as "
            f"UTF-8)."
        ) from None


def iter_rows(path: str | Path) -> Iterator[tuple[int, dict]]:
    """(line, row) of a json/jsonl/csv/tsv file, checked as `load_fields` checks it (UTF-8, syntax, fields)."""
    path = Path(path)
    file_format = check_files_exist({"": str(path)})
    if file_format == "parquet":
        raise DataFileError(f"{path}: parquet has no lines; read it with `load_fields`.")
    text = _read_utf8(path)
    if file_format == "text":
        yield 1, {TEXT_COLUMN: text}
    else:
        yield from _json_rows(path, text) if file_format == "json" else _delimited_rows(path, text, file_format)


def _json_rows(path: Path, text: str) -> Iterator[tuple[int, dict]]:
    """JSON Lines (one object a line), or for .json one JSON array of objects (numbered by record, not line)."""
    if path.suffix.lower() == ".json" and text.lstrip().startswith("["):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as error:
            raise DataFileError(
                f"{path}, line {error.lineno}, column {error.colno}: invalid JSON ({error.msg})."
            ) from None
        for index, record in enumerate(records, start=1):
            if not isinstance(record, dict):
                raise DataFileError(f"{path}, record {index}: expected a JSON object, got {type(record).__name__}.")
            yield index, record
        return
    for line_number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataFileError(
                f"{path}, line {line_number}, column {error.colno}: invalid JSON ({error.msg})."
            ) from None
        if not isinstance(record, dict):
            raise DataFileError(f"{path}, line {line_number}: expected a JSON object, got {type(record).__name__}.")
        yield line_number, record


def _delimited_rows(path: Path, text: str, file_format: str) -> Iterator[tuple[int, dict]]:
    """CSV (RFC 4180 quoting) or TSV (no quoting: every character between tabs is text), with a header line."""
    if file_format == "tsv":
        dialect = {"delimiter": "\t", "quoting": csv.QUOTE_NONE}
    else:
        dialect = {"delimiter": ",", "quotechar": '"', "doublequote": True, "strict": True}
    reader = csv.reader(io.StringIO(text, newline=""), **dialect)
    try:
        header = next(reader, None)
        if header is None or not any(header):
            raise DataFileError(f"{path} is empty: it needs a header line naming the columns, then rows.")
        if len(set(header)) != len(header) or not all(header):
            raise DataFileError(f"{path}, line 1: the header must name every column once, got {header}.")
        row_count = 0
        start = reader.line_num + 1
        for fields in reader:
            end = reader.line_num
            if not fields:
                start = end + 1
                continue
            if len(fields) != len(header):
                raise DataFileError(
                    f"{path}, line {start}: {len(fields)} field(s) where the header has {len(header)} "
                    f"({'tab' if file_format == 'tsv' else 'comma'}-separated)."
                )
            if end != start:
                logger.warning(
                    "%s, lines %d-%d: one quoted field spans several lines (is a quote unbalanced?).", path, start, end
                )
            row_count += 1
            yield start, dict(zip(header, fields))
            start = end + 1
    except csv.Error as error:
        raise DataFileError(f"{path}, line {reader.line_num}: malformed CSV ({error}).") from None
    if row_count == 0:
        raise DataFileError(f"{path} has a header but no rows.")


def _load_parquet(path: Path, resolve_fields: FieldResolver) -> Dataset:
    dataset = Dataset.from_parquet(str(path))
    if len(dataset) == 0:
        raise DataFileError(f"{path} has no rows (it is empty).")
    return _select(dataset, resolve_fields, str(path))


# -- datasets (Hub, in memory, parquet) ---------------------------------------------------------------------------


def _select(dataset: Dataset, resolve_fields: FieldResolver, source: str) -> Dataset:
    """Check the feature types of the fields, extract them and drop rows without text (counted)."""
    fields = _resolve(resolve_fields, dataset.column_names, source)
    for field in fields.values():
        if field.kind == "text":
            _check_text_feature(dataset.features, field, source)

    def extract(batch: dict) -> dict:
        return {
            name: [_value_at({field.path[0]: value}, field.path) for value in batch[field.path[0]]]
            for name, field in fields.items()
        }

    selected = dataset.map(extract, batched=True, remove_columns=dataset.column_names, desc=f"Reading {source}")
    text_columns = [name for name, field in fields.items() if field.kind == "text"]
    has_text = []
    for batch in selected.select_columns(text_columns).iter(batch_size=10_000):
        has_text.extend(all(v and v.strip() for v in values) for values in zip(*batch.values()))
    kept = [i for i, ok in enumerate(has_text) if ok]
    if not all(has_text):
        _log_dropped(source, [i + 1 for i, ok in enumerate(has_text) if not ok], len(selected), "row")
        selected = selected.select(kept)
    if len(selected) == 0:
        raise DataFileError(f"{source}: no row has text in every one of {_field_names(fields)}.")
    parsed = [name for name, field in fields.items() if field.parse is not None]
    if parsed:

        def parse(batch: dict, indices: list[int]) -> dict:
            rows = [dict(zip(parsed, values)) for values in zip(*(batch[name] for name in parsed))]
            rows = [_parse_values(row, fields, f"{source}, row {kept[i] + 1}") for row, i in zip(rows, indices)]
            return {name: [row[name] for row in rows] for name in parsed}

        selected = selected.map(parse, batched=True, with_indices=True, desc=f"Checking {source}")
    return selected


def _check_text_feature(features, field: Field, source: str) -> None:
    feature = features
    for key in field.path:
        if hasattr(feature, "languages") and key in feature.languages:  # datasets' `Translation` feature
            return
        feature = feature.get(key) if isinstance(feature, dict) else None
        if feature is None:
            return  # resolved from the data itself (e.g. an untyped dict); rows are checked when read
    dtype = feature.dtype if isinstance(feature, Value) else repr(feature)
    if dtype not in ("string", "large_string"):
        raise DataFileError(f"{source}: column `{field.name}` has dtype {dtype}; it must hold text (strings).")


# -- helpers -------------------------------------------------------------------------------------------------------


def _resolve(resolve_fields: FieldResolver, columns: list[str], source) -> dict[str, Field]:
    try:
        return resolve_fields(columns)
    except ValueError as error:
        raise DataFileError(f"{source}: {error}") from None


def _parse_values(values: dict[str, Any], fields: dict[str, Field], where: str) -> dict[str, Any]:
    parsed = dict(values)
    for name, field in fields.items():
        if field.parse is not None and name in values:
            try:
                parsed[name] = field.parse(values[name])
            except ValueError as error:
                raise DataFileError(f"{where}: column `{field.name}`: {error}") from None
    return parsed


def _field_names(fields: dict[str, Field]) -> str:
    return ", ".join(f"`{field.name}`" for field in fields.values() if field.kind == "text")


def _value_at(row: dict, path: tuple[str, ...]):
    value = row
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _log_dropped(source: str, dropped: list[int], total: int, unit: str) -> None:
    if dropped:
        shown = ", ".join(map(str, dropped[:10])) + (" ..." if len(dropped) > 10 else "")
        logger.warning(
            "Dropped %d of %d rows of %s: empty, blank or missing text (%s %s).",
            len(dropped),
            total,
            source,
            f"{unit}s" if len(dropped) > 1 else unit,
            shown,
        )


__all__ = [
    "FORMATS",
    "TEXT_COLUMN",
    "DataFileError",
    "Field",
    "FieldResolver",
    "check_files_exist",
    "file_identity",
    "iter_rows",
    "load_fields",
]
