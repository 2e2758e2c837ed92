"""One output folder holds one run: a record of what the run is, checked before anything is written.

A run is identified by its task, its data (local files by content hash, Hub or embedded datasets by name and
size), the task's data/tokenizer settings (languages, columns, vocabulary size) and the model configuration.
Training into a folder that holds a *different* run, or a finished one, is refused unless
`--overwrite_output_dir` is given; the same run with a complete checkpoint is resumed, as the transformers
example scripts do. The record (`hf_rnn_run.json`) holds no absolute paths, only file names and hashes.
"""

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .checkpoints import last_complete_checkpoint, resolve_resume

logger = logging.getLogger(__name__)

RECORD_FILE = "hf_rnn_run.json"
# Written by a finished run: its presence without checkpoints means there is nothing left to resume.
FINISHED_MARKERS = ("model.safetensors", "all_results.json")


class OutputDirHoldsAnotherRun(FileExistsError):
    """The output folder holds a different run, a finished one, or files of something else."""


@dataclass
class OutputDirState:
    resume_from_checkpoint: str | None  # the checkpoint to resume from; None: start fresh
    same_run: bool  # the folder already held this very run: what it saved (a tokenizer) belongs to this run


def prepare_output_dir(
    output_dir: str | Path, identity: dict[str, Any], resume_from_checkpoint: str | None, overwrite: bool, write: bool
) -> OutputDirState:
    """Refuse a folder holding another run; say where to resume from.

    Args:
        identity: what this run is (see the module docstring); saved in the folder when `write`.
        resume_from_checkpoint: `--resume_from_checkpoint` as given (a path, "last"/"true", or None).
        overwrite: `--overwrite_output_dir`: checkpoints of an earlier run move to `superseded-<time>/`, its other
            files are overwritten.
        write: whether this process writes (the main process); the others only read.

    Raises:
        OutputDirHoldsAnotherRun: the folder holds a different run, a finished run, or files of something else.
        FileNotFoundError: `resume_from_checkpoint` names no complete checkpoint.
    """
    output_dir = Path(output_dir)
    identity = json.loads(json.dumps(identity))  # compared as it is stored (tuples become lists)
    recorded = _read_record(output_dir)
    contents = [p.name for p in output_dir.iterdir() if not p.name.startswith(".")] if output_dir.is_dir() else []
    if overwrite and contents:
        if write:  # nothing is deleted: earlier checkpoints move to superseded-<time>/, other files are overwritten
            resolve_resume(None, output_dir, tidy=True)
            (output_dir / RECORD_FILE).unlink(missing_ok=True)
        recorded, contents = None, []
    if recorded is None and contents:
        raise OutputDirHoldsAnotherRun(
            f"{output_dir} already holds files that no hf-rnn run recorded ({', '.join(sorted(contents)[:5])}"
            f"{', ...' if len(contents) > 5 else ''}). Choose another --output_dir, or pass --overwrite_output_dir "
            f"to train into it anyway."
        )
    if recorded is not None and recorded != identity:
        raise OutputDirHoldsAnotherRun(
            f"{output_dir} holds a different run ({_differences(recorded, identity)}). Choose another --output_dir, "
            f"or pass --overwrite_output_dir to replace it."
        )
    resume = _resume_point(output_dir, resume_from_checkpoint, recorded is not None, write)
    if resume is None and recorded is not None and any((output_dir / name).exists() for name in FINISHED_MARKERS):
        raise OutputDirHoldsAnotherRun(
            f"{output_dir} holds a finished run of this configuration. Choose another --output_dir, or pass "
            f"--overwrite_output_dir to train it again."
        )
    if write:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / RECORD_FILE).write_text(json.dumps(identity, indent=2, ensure_ascii=False, sort_keys=True))
    return OutputDirState(resume, same_run=recorded is not None)


def _resume_point(output_dir: Path, requested: str | None, same_run: bool, write: bool) -> str | None:
    """An explicit `--resume_from_checkpoint` as `resolve_resume` reads it; without one, the same run resumes from
    its newest complete checkpoint (as the transformers example scripts do)."""
    if requested is not None or not same_run:
        return resolve_resume(requested, str(output_dir), tidy=write)
    last = last_complete_checkpoint(output_dir, tidy=write)
    if last is not None:
        logger.warning(
            "Checkpoint detected in %s: resuming from %s. Pass --overwrite_output_dir to start over instead.",
            output_dir,
            last.name,
        )
    return None if last is None else str(last)


def _read_record(output_dir: Path) -> dict | None:
    try:
        return json.loads((output_dir / RECORD_FILE).read_text())
    except (OSError, ValueError):
        return None


def _differences(old: dict, new: dict, prefix: str = "") -> str:
    changes = []
    for key in sorted(set(old) | set(new)):
        before, after = old.get(key), new.get(key)
        if before == after:
            continue
        if isinstance(before, dict) and isinstance(after, dict):
            changes.append(_differences(before, after, f"{prefix}{key}."))
        else:
            changes.append(
                f"{prefix}{key}: {json.dumps(before, ensure_ascii=False)} → {json.dumps(after, ensure_ascii=False)}"
            )
    return "; ".join(changes)


__all__ = ["RECORD_FILE", "OutputDirHoldsAnotherRun", "OutputDirState", "prepare_output_dir"]
