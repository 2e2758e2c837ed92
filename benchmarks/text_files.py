"""Corpora, hypotheses and JSON lines read as written: a line ends at LF, CRLF or CR, nowhere else.

`str.splitlines()` also ends lines at form feeds, U+0085, U+2028 and other separators. They can stand inside a
sentence, a model's output or (unescaped) a JSON string, and a line split in two pairs every later source with the
wrong reference. These readers split bytes instead, as `python -m hf_rnn.translate` reads its input.
"""

import codecs
import json
from pathlib import Path


def read_lines(path: str | Path) -> list[str]:
    """The UTF-8 lines of a text file (a leading byte-order mark dropped), without their line endings."""
    data = Path(path).read_bytes().removeprefix(codecs.BOM_UTF8)
    return [line.decode("utf-8") for line in data.splitlines()]


def read_jsonl(path: str | Path) -> list:
    """The values of a JSON-lines file; blank lines are skipped."""
    return [json.loads(line) for line in read_lines(path) if line.strip()]
