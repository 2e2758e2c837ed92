"""What the command-line tools (`train.py`, `hf_rnn.translate`, `hf_rnn.average`, `hf_rnn.export`) say when a model
or tokenizer reference cannot be loaded, and the decoding command's allocator setting."""

import ctypes
import os
import sys
from pathlib import Path

M_MMAP_THRESHOLD = -3  # mallopt's parameter number (glibc malloc.h)
MMAP_THRESHOLD_BYTES = 4 << 20


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


def fix_mmap_threshold() -> bool:
    """Make glibc's malloc serve every block of 4 MiB or more from its own mapping, unmapped when freed, for the rest
    of the process; True when set. What `MALLOC_MMAP_THRESHOLD_=4194304` does for a process started with it, which
    a service that decodes with `generate()` can export itself.

    glibc starts with a 128 KiB threshold but raises it to the size of each larger mapped block that is freed, so
    after the first steps beam search's per-step (rows, vocabulary) buffers, 10 MiB at 64 sentences x 5 beams, come
    from the heap, where smaller blocks split the freed ones and the heap keeps growing (one pair of runs on a loaded
    machine: beam-5 decoding at the peer shape peaked at 488 MiB with it against 514 without; speed not yet
    measured on an idle machine). Leaves the process alone when the environment already sets the threshold or the
    C library is not glibc.
    """
    if sys.platform != "linux" or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    libc = ctypes.CDLL(None)
    if not hasattr(libc, "gnu_get_libc_version"):  # musl and others: no mallopt threshold to set
        return False
    return libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1


__all__ = ["first_line", "fix_mmap_threshold", "load_error_reason", "path_problem"]
