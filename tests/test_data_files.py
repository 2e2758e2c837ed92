"""Data files are read as written and checked before any work: errors name the file, line and column."""

import json
import logging

import pandas as pd
import pytest
from datasets import Dataset, DatasetDict, Features, Value

from hf_rnn.data.files import DataFileError, Field, iter_rows, load_fields


def by_language(columns):
    """The translation task's resolution, reduced: the translation layout or columns named en/ko."""
    if "translation" in columns:
        return {"source": Field(("translation", "en")), "target": Field(("translation", "ko"))}
    if not {"en", "ko"} <= set(columns):
        raise ValueError(f"has columns {columns}")
    return {"source": Field(("en",)), "target": Field(("ko",))}


def load(path):
    return load_fields(by_language, data_files={"train": str(path)})["train"]


def pairs(dataset):
    return list(zip(dataset["source"], dataset["target"]))


def test_tsv_text_keeps_its_quotes_and_an_unbalanced_quote_stays_on_its_line(tmp_path):
    path = tmp_path / "pairs.tsv"
    path.write_text('en\tko\n"Hi," he said.\t"안녕," 그가 말했다.\n"He left\t그는 떠났다\nA\tB\n', encoding="utf-8")
    assert pairs(load(path)) == [('"Hi," he said.', '"안녕," 그가 말했다.'), ('"He left', "그는 떠났다"), ("A", "B")]


@pytest.mark.parametrize("suffix", [".tsv", ".csv", ".jsonl"])
def test_values_that_look_missing_are_text(tmp_path, suffix):
    """pandas would turn these into NaN (and the pair would vanish); they are words."""
    words = ["NA", "null", "None", "nan", "N/A", "#N/A", "0", "1e5", "TRUE"]
    path = tmp_path / f"pairs{suffix}"
    if suffix == ".jsonl":
        path.write_text("".join(json.dumps({"en": w, "ko": w}) + "\n" for w in words))
    else:
        separator = "\t" if suffix == ".tsv" else ","
        path.write_text(f"en{separator}ko\n" + "".join(f"{w}{separator}{w}\n" for w in words))
    assert pairs(load(path)) == [(w, w) for w in words]


def test_csv_follows_rfc_4180_quoting(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text('en,ko\n"Hi, he said.","""안녕"", 그가"\r\nplain,text\r\n', encoding="utf-8")
    assert pairs(load(path)) == [("Hi, he said.", '"안녕", 그가'), ("plain", "text")]


def test_crlf_and_a_byte_order_mark_are_line_syntax_not_text(tmp_path):
    path = tmp_path / "pairs.tsv"
    path.write_bytes("\ufeffen\tko\r\na b\tc d\r\n".encode())
    assert pairs(load(path)) == [("a b", "c d")]


@pytest.mark.parametrize(
    "name, content, message",
    [
        (
            "bad.jsonl",
            '{"en": "a", "ko": "b"}\n{"en": "a", "ko": }\n',
            r"bad\.jsonl, line 2, column 19: invalid JSON \(",
        ),
        ("list.jsonl", '["a", "b"]\n', r"list\.jsonl, line 1: expected a JSON object, got list"),
        ("number.jsonl", '{"en": "a", "ko": 5}\n', r"number\.jsonl, line 1: column `ko` holds int 5; it must be text"),
        ("empty.jsonl", "", r"empty\.jsonl has no rows"),
        ("blank.jsonl", "\n\n", r"blank\.jsonl has no rows"),
        ("empty.csv", "", r"empty\.csv is empty: it needs a header"),
        ("header.csv", "en,ko\n", r"header\.csv has a header but no rows"),
        ("fields.tsv", "en\tko\na\tb\nc\td\te\n", r"fields\.tsv, line 3: 3 field\(s\) where the header has 2"),
        ("quote.csv", 'en,ko\na,b\n"x"y,z\n', r"quote\.csv, line 3: malformed CSV"),
        ("columns.csv", "english,korean\na,b\n", r"columns\.csv: has columns \['english', 'korean'\]"),
        ("array.json", '[{"en": "a", "ko": "b"},\n 7]', r"array\.json, record 2: expected a JSON object, got int"),
    ],
)
def test_malformed_files_are_named_with_line_and_column(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataFileError, match=message):
        load(path)


def test_non_utf8_bytes_are_named_by_line_and_column(tmp_path):
    path = tmp_path / "latin1.tsv"
    path.write_bytes(b"en\tko\nok\tfine\ncaf" + b"\xe9\tx\n")
    with pytest.raises(DataFileError, match=r"latin1\.tsv, line 3, column 4: byte 0xe9 is not UTF-8"):
        load(path)


@pytest.mark.parametrize("values, dtype", [([1, 2], "int64"), ([["a", "x"], ["b"]], "List")])
def test_parquet_and_hub_columns_must_hold_text(tmp_path, values, dtype):
    frame = pd.DataFrame({"en": ["a", "b"], "ko": values})
    frame.to_parquet(tmp_path / "pairs.parquet")
    with pytest.raises(DataFileError, match=f"pairs.parquet: column `ko` has dtype {dtype}"):
        load(tmp_path / "pairs.parquet")
    in_memory = DatasetDict({"train": Dataset.from_pandas(frame)})
    with pytest.raises(DataFileError, match=f"column `ko` has dtype {dtype}"):
        load_fields(by_language, dataset=in_memory)


def test_rows_without_text_or_language_are_dropped_and_counted(tmp_path, caplog):
    path = tmp_path / "pairs.jsonl"
    rows = [
        {"translation": {"en": "one", "ko": "하나"}},
        {"translation": {"en": "two"}},  # no target language
        {"translation": {"en": "  ", "ko": "셋"}},  # blank source
        {"translation": {"en": "four", "ko": None}},
        {"translation": {"en": "five", "ko": "다섯"}},
    ]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    with caplog.at_level(logging.WARNING):
        assert pairs(load(path)) == [("one", "하나"), ("five", "다섯")]
    assert "Dropped 3 of 5 rows" in caplog.text and "lines 2, 3, 4" in caplog.text

    features = Features({"translation": {"en": Value("string"), "ko": Value("string")}})
    dataset = DatasetDict({"train": Dataset.from_list(rows, features=features)})
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert pairs(load_fields(by_language, dataset=dataset)["train"]) == [("one", "하나"), ("five", "다섯")]
    assert "Dropped 3 of 5 rows" in caplog.text and "rows 2, 3, 4" in caplog.text


def test_every_format_gives_the_same_rows(tmp_path):
    expected = [("I am a student.", "나는 학생이다."), ('Say "hi"', "'안녕'이라고 해"), ("a\tb?", "c")]
    frame = pd.DataFrame({"en": [s for s, _ in expected], "ko": [t for _, t in expected]})
    frame.to_json(tmp_path / "p.jsonl", orient="records", lines=True, force_ascii=False)
    frame.to_csv(tmp_path / "p.csv", index=False)
    frame.to_parquet(tmp_path / "p.parquet")
    (tmp_path / "p.json").write_text(json.dumps(frame.to_dict("records"), ensure_ascii=False))
    for name in ("p.jsonl", "p.json", "p.csv", "p.parquet"):
        assert pairs(load(tmp_path / name)) == expected, name


def test_iter_rows_numbers_lines_of_multi_line_csv_records(tmp_path, caplog):
    path = tmp_path / "rows.csv"
    path.write_text('en,ko\na,b\n"two\nlines",c\nd,e\n')
    with caplog.at_level(logging.WARNING):
        assert [line for line, _ in iter_rows(path)] == [2, 3, 5]
    assert "lines 3-4: one quoted field spans several lines" in caplog.text


def even_number(value):
    """A `Field.parse` that accepts even integers and doubles them."""
    if not isinstance(value, int) or value % 2:
        raise ValueError(f"{value!r} is not an even integer")
    return 2 * value


def text_and_number(columns):
    return {"text": Field(("text",)), "number": Field(("n",), kind="value", parse=even_number)}


def test_a_parse_error_names_the_file_line_and_column_or_the_row(tmp_path):
    rows = [{"text": "a", "n": 2}, {"text": " ", "n": 3}, {"text": "c", "n": 4}]
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    # The blank row is dropped before its value is parsed; the kept ones are converted.
    assert load_fields(text_and_number, data_files={"train": str(path)})["train"]["number"] == [4, 8]
    path.write_text(path.read_text() + json.dumps({"text": "d", "n": 5}) + "\n")
    with pytest.raises(DataFileError, match=r"rows.jsonl, line 4: column `n`: 5 is not an even integer"):
        load_fields(text_and_number, data_files={"train": str(path)})

    dataset = DatasetDict({"train": Dataset.from_list([*rows, {"text": "d", "n": 5}])})
    with pytest.raises(DataFileError, match=r"the dataset \(train\), row 4: column `n`: 5 is not an even integer"):
        load_fields(text_and_number, dataset=dataset)
    assert load_fields(text_and_number, dataset=DatasetDict({"train": Dataset.from_list(rows)}))["train"][
        "number"
    ] == [4, 8]


def test_a_text_file_is_one_document(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_bytes("First line,\r\nsecond 줄.\n\n".encode())
    assert load_fields(lambda columns: {"text": Field(("text",))}, data_files={"train": str(path)})["train"][
        "text"
    ] == ["First line,\r\nsecond 줄.\n\n"]
    path.write_bytes(b"ok\n\xff\n")
    with pytest.raises(DataFileError, match=r"corpus.txt, line 2, column 1: byte 0xff is not UTF-8"):
        load_fields(lambda columns: {"text": Field(("text",))}, data_files={"train": str(path)})
