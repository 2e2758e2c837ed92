"""What the command-line tools (`train.py`, `hf_rnn.translate`, `hf_rnn.average`, `hf_rnn.export`) say when a model
or tokenizer reference cannot be loaded."""

from pathlib import Path


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none)."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def path_problem(name: str | Path) -> str | None:
    """What is wrong with a model reference written as a path (`/models/x`, `./x`, `~/x`, `a/b/c`): nothing there,
    or a file instead of a folder; None for a folder or a Hub id. huggingface_hub would answer either mistake
    with "Repo id must use alphanumeric chars"."""
    path = Path(name).expanduser()
    if path.is_file():
        return f"{name} is a file; give the folder that holds it (config.json and the weights)"
    written_as_path = str(name).startswith(("/", ".", "~")) or str(name).count("/") > 1 or "\\" in str(name)
    if written_as_path and not path.exists():
        return f"there is no folder {name} (a Hub model id is written `owner/name`)"
    return None


def load_error_reason(name: str | Path, error: BaseException) -> str:
    """Why `from_pretrained(name)` failed, in one line."""
    return path_problem(name) or first_line(error)


__all__ = ["first_line", "load_error_reason", "path_problem"]
