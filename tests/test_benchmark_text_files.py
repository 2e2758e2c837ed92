"""The benchmarks read corpora, hypotheses and JSON lines as written: a line ends at LF, CRLF or CR only."""

import importlib.util
import json

from helpers import REPO_ROOT

spec = importlib.util.spec_from_file_location("text_files", REPO_ROOT / "benchmarks" / "text_files.py")
text_files = importlib.util.module_from_spec(spec)
spec.loader.exec_module(text_files)
recipes_spec = importlib.util.spec_from_file_location("recipes", REPO_ROOT / "benchmarks" / "recipes.py")
recipes = importlib.util.module_from_spec(recipes_spec)
recipes_spec.loader.exec_module(recipes)

# Characters str.splitlines() ends a line at, besides LF and CR.
SEPARATORS = "\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"


def test_lines_end_only_at_lf_crlf_and_cr(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_bytes(("\ufeff" + f"one{SEPARATORS}line\r\nsecond\rthird\n\nfifth").encode("utf-8"))
    assert text_files.read_lines(path) == [f"one{SEPARATORS}line", "second", "third", "", "fifth"]


def test_json_lines_keep_separators_inside_strings(tmp_path):
    """JSON needs no escape for U+2028, U+0085 and the like (json.dumps(ensure_ascii=False) leaves them)."""
    rows = [{"translation": {"en": f"a{c}b", "de": f"c{c}d"}} for c in SEPARATORS[5:]] + [
        {"translation": {"en": "x", "de": "y"}}
    ]
    path = tmp_path / "test.jsonl"
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows) + "\n", encoding="utf-8")
    assert text_files.read_jsonl(path) == rows
    sources, targets = recipes.read_pairs(path, "en", "de", None)
    assert sources == [row["translation"]["en"] for row in rows]
    assert targets == [row["translation"]["de"] for row in rows]
