"""Checkpoint safety for training runs: nothing complete is ever lost, nothing incomplete is ever resumed.

- A checkpoint is written into a hidden staging folder and renamed into place once every file is on disk
  (`commit_folder`): whatever kills the process, `checkpoint-N` is either complete or absent.
- The resume scan (`last_complete_checkpoint`, `resolve_resume`) still reads every file a resume needs, so folders
  written by other code (or damaged later) are caught too, and moved aside, never deleted.
- Interrupts (SIGINT, SIGTERM) only raise a flag; `StepBoundaryInterrupt` stops training at the next optimizer-step
  boundary with a checkpoint, so the saved RNG state is the one between two steps and resuming is exact.
- `guard_output_dir` gives one run at a time an output folder (an exclusive `flock`) and turns write failures (disk
  full, read-only, permission) into one sentence naming the file, the cause and the last complete checkpoint.
- `exit_cleanly` ends a command-line run on those errors with one line and the conventional exit status.
"""

import errno
import fcntl
import json
import logging
import os
import re
import shutil
import signal
import socket
import struct
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import torch
from transformers import TrainerCallback

logger = logging.getLogger(__name__)

CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")
LOCK_NAME = ".hf_rnn.lock"
# Folder names that Trainer's checkpoint rotation (a `checkpoint-*` glob) never sees, so it cannot delete them.
STAGING_SUFFIX = ".partial"  # `.checkpoint-N.partial`, hidden
ASIDE_PREFIX = "incomplete-"  # `incomplete-checkpoint-N`
SUPERSEDED_PREFIX = "superseded-"  # `superseded-<time>/checkpoint-N`

# Needed to resume exactly, besides the weights and trainer_state.json (Trainer resumes silently without them).
RESUME_FILES = ("optimizer.pt", "scheduler.pt")
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


# --------------------------------------------------------------------------------------------------------------------
# Checkpoint folders


def checkpoint_step(folder: Path) -> int | None:
    match = CHECKPOINT_PATTERN.match(Path(folder).name)
    return int(match.group(1)) if match else None


def staging_folder(final: Path) -> Path:
    """Where `final` is written before it is renamed into place."""
    return final.with_name(f".{final.name}{STAGING_SUFFIX}")


def checkpoint_problem(folder: str | os.PathLike, resumable: bool = True) -> str | None:
    """Why `folder` cannot be resumed from, or None when every file a resume reads is present and whole.

    Checks trainer_state.json (readable, for the folder's step), the weights, the optimizer, scheduler and RNG state
    (unless `resumable` is False: a `save_only_model` checkpoint), and the integrity of every JSON, safetensors and
    torch file in it: a file cut short by a crash or a full disk (even one of 0 bytes) makes the folder incomplete.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return "it is not a folder"
    try:
        state = json.loads((folder / "trainer_state.json").read_text())
    except FileNotFoundError:
        return "trainer_state.json is missing"
    except (OSError, ValueError) as error:
        return f"trainer_state.json is unreadable ({error})"
    step = checkpoint_step(folder)
    if step is not None and state.get("global_step") != step:
        return f"trainer_state.json is for step {state.get('global_step')}, not {step}"
    names = {path.name for path in folder.iterdir()}
    if not names & set(WEIGHT_FILES):
        return f"no model weights ({' or '.join(WEIGHT_FILES[::2])})"
    for name in RESUME_FILES if resumable else ():
        if name not in names:
            return f"{name} is missing"
    if resumable and not any(name.startswith("rng_state") for name in names):
        return "rng_state.pth is missing"
    for path in sorted(folder.iterdir()):
        problem = _file_problem(path) if path.is_file() else None
        if problem:
            return f"{path.name} {problem}"
    return None


def is_complete_checkpoint(folder: str | os.PathLike) -> bool:
    return checkpoint_problem(folder) is None


def _file_problem(path: Path) -> str | None:
    """How `path` is damaged, judged by its format; None when it is whole (or of a format not checked)."""
    size = path.stat().st_size
    if path.suffix in (".json", ".safetensors", ".pt", ".pth", ".bin") and size == 0:
        return "is empty"
    try:
        if path.suffix == ".json":
            content = json.loads(path.read_text())
            if path.name.endswith(".index.json"):
                missing = sorted(set(content.get("weight_map", {}).values()) - {p.name for p in path.parent.iterdir()})
                if missing:
                    return f"lists missing shard(s): {', '.join(missing)}"
        elif path.suffix == ".safetensors":
            with path.open("rb") as file:
                (header_size,) = struct.unpack("<Q", file.read(8))
                header = json.loads(file.read(header_size))
            end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
            if size != 8 + header_size + end:
                return f"is truncated ({size} bytes, its header says {8 + header_size + end})"
        elif path.suffix in (".pt", ".pth", ".bin"):
            with path.open("rb") as file:
                is_zip = file.read(2) == b"PK"
            if is_zip:  # torch.save's format; a legacy pickle cannot be checked without unpickling it
                with zipfile.ZipFile(path) as archive:
                    bad = archive.testzip()
                if bad is not None:
                    return f"is corrupt (bad CRC in {bad})"
    except (OSError, ValueError, KeyError, TypeError, struct.error, zipfile.BadZipFile) as error:
        return f"is truncated or corrupt ({type(error).__name__}: {error})"
    return None


def _checkpoints(output_dir: Path) -> list[Path]:
    found = [p for p in output_dir.iterdir() if p.is_dir() and checkpoint_step(p) is not None]
    return sorted(found, key=checkpoint_step)


def move_aside(folder: Path, reason: str) -> Path:
    """Rename an unusable checkpoint to `incomplete-checkpoint-N[-k]` (kept for inspection, never deleted)."""
    aside = folder.with_name(ASIDE_PREFIX + folder.name)
    k = 1
    while aside.exists():
        k += 1
        aside = folder.with_name(f"{ASIDE_PREFIX}{folder.name}-{k}")
    logger.warning("%s cannot be resumed from (%s); moving it to %s.", folder, reason, aside.name)
    folder.rename(aside)
    return aside


def last_complete_checkpoint(output_dir: str | os.PathLike, *, tidy: bool = True) -> Path | None:
    """The newest checkpoint in `output_dir` that can be resumed from.

    With `tidy` (the process that owns the folder), unusable checkpoints met on the way are moved aside
    (`move_aside`) and staging folders left by a killed save are removed; without it the folder is only read.
    """
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return None
    if tidy:
        for staging in output_dir.glob(f".checkpoint-*{STAGING_SUFFIX}"):
            logger.info("Removing %s, left by a save that was cut off.", staging)
            shutil.rmtree(staging, ignore_errors=True)
    for folder in reversed(_checkpoints(output_dir)):
        problem = checkpoint_problem(folder)
        if problem is None:
            return folder
        if tidy:
            move_aside(folder, problem)
    return None


def resolve_resume(resume_from_checkpoint: str | None, output_dir: str, *, tidy: bool = True) -> str | None:
    """The checkpoint `--resume_from_checkpoint` means: `last` (or true) picks the newest complete one in output_dir.

    Starting over (no resume) in a folder that holds checkpoints moves them to `superseded-<time>/` when `tidy`, so
    that a later `last` cannot pick a checkpoint of the abandoned attempt, and nothing is deleted.
    Raises FileNotFoundError, naming the reason, when the asked-for checkpoint cannot be resumed from.
    """
    value = None if resume_from_checkpoint is None else str(resume_from_checkpoint)
    if value is None or value.lower() in ("false", "no", "none", ""):
        output_dir = Path(output_dir)
        old = _checkpoints(output_dir) if tidy and output_dir.is_dir() else []
        if old:
            superseded = output_dir / f"{SUPERSEDED_PREFIX}{datetime.now():%Y%m%d-%H%M%S}"
            superseded.mkdir()
            for folder in old:
                folder.rename(superseded / folder.name)
            logger.warning(
                "%s held checkpoints of an earlier attempt; starting over, they were moved to %s. "
                "Pass `--resume_from_checkpoint last` to continue a run instead.",
                output_dir,
                superseded,
            )
        return None
    if value.lower() in ("last", "true", "yes"):
        last = last_complete_checkpoint(output_dir, tidy=tidy)
        if last is None:
            raise FileNotFoundError(f"No complete checkpoint to resume from in {output_dir}.")
        return str(last)
    problem = checkpoint_problem(value)
    if problem is not None:
        raise FileNotFoundError(f"Cannot resume from {value}: {problem}.")
    return value


def commit_folder(staging: Path, final: Path) -> None:
    """Make the fully written `staging` folder appear as `final` in one step, durable across a power cut.

    Files and folder are flushed to disk before the rename (otherwise the rename may reach the disk before the data),
    and the parent folder after it. `os.rename` never replaces a non-empty folder, so a complete checkpoint cannot be
    overwritten here.
    """
    for path in staging.rglob("*"):
        if path.is_file():
            with path.open("rb") as file:
                os.fsync(file.fileno())
    _fsync_folder(staging)
    os.rename(staging, final)
    _fsync_folder(final.parent)


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------------------------------------------------
# Interrupts


class TrainingInterrupted(KeyboardInterrupt):
    """Training was stopped by SIGINT or SIGTERM after saving its state; `exit_code` is 128 + the signal number.

    The message (where the state is, how to continue) is empty in all but the main process of a multi-process run.
    """

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class LaggedMax:
    """The largest of the DDP processes' values, agreed one step late: `start` hands this process's value to an
    all-reduce on a separate gloo group without waiting, and the next `result` waits for it (by then long done), so
    the agreement never waits on the computation. Every process must call both the same number of times."""

    def __init__(self):
        self._group = torch.distributed.new_group(backend="gloo")
        self._pending: tuple[torch.Tensor, object] | None = None

    @classmethod
    def for_run(cls, args) -> "LaggedMax | None":
        """One for a multi-process run (call it in every process, at the same point); None for a single process."""
        if args.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            return cls()
        return None

    def start(self, value: float) -> None:
        tensor = torch.tensor([value], dtype=torch.float64)
        work = torch.distributed.all_reduce(
            tensor, op=torch.distributed.ReduceOp.MAX, group=self._group, async_op=True
        )
        self._pending = (tensor, work)

    def result(self) -> float | None:
        """The agreed value of the last `start`, None if none is pending."""
        if self._pending is None:
            return None
        tensor, work = self._pending
        work.wait()
        self._pending = None
        return float(tensor.item())


class StepBoundaryInterrupt(TrainerCallback):
    """SIGINT and SIGTERM ask training to stop at the next optimizer-step boundary, with a checkpoint.

    The signal handler only records the signal: saving inside it would catch the model, optimizer and RNG in the
    middle of a step (a SIGTERM right after `optimizer.step` would save step N+1's weights as checkpoint-N, and the
    RNG state after some of the step's dropout draws, so a resumed run could not repeat the losses). At the next
    `on_step_end` the callback sets `should_save` and `should_training_stop`, so Trainer saves the state between two
    steps (also under `save_strategy="no"`) and leaves the loop. Further signals only say that the save is under way:
    launchers forward a terminal's Ctrl-C, so every process of a torchrun job sees it twice. Checkpoints are written
    atomically, so SIGKILL (or Ctrl-\\) stops at once without harming a complete one.

    Under DDP the processes agree (an all-reduce on a separate gloo group, one step late so that it never waits on
    the computation) before any of them stops, so all stop after the same step.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.signum: int | None = None
        self.stopped_at: int | None = None
        self._previous: dict[int, object] = {}
        self._verbose = True
        self._agreement: LaggedMax | None = None

    def install(self, args=None) -> None:
        """Take over SIGINT and SIGTERM (main thread only: Python delivers signals there)."""
        self._verbose = args is None or args.process_index == 0
        if threading.current_thread() is threading.main_thread():
            self._previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def _handle(self, signum, frame) -> None:
        # Only async-signal-safe work here: logging or print could re-enter a stream the main thread is writing.
        name = signal.Signals(signum).name
        if self.signum is None:
            self.signum = signum
            text = f"\n{name} received: training stops after this step, once a checkpoint is saved.\n"
        else:
            text = f"\n{name} received again: still saving the checkpoint, please wait (SIGKILL stops at once).\n"
        if self._verbose:
            os.write(sys.stderr.fileno(), text.encode())

    def on_train_begin(self, args, state, control, **kwargs):
        self._agreement = LaggedMax.for_run(args)

    def on_step_end(self, args, state, control, **kwargs):
        signum = self._agreed(blocking=False)
        if signum:
            self.signum, self.stopped_at = signum, state.global_step
            control.should_save = True
            control.should_training_stop = True
        return control

    def agreed_signal(self) -> int | None:
        """After training: the signal any process received (all processes call this), or None."""
        return self._agreed(blocking=True) or None

    def _agreed(self, blocking: bool) -> int:
        if self._agreement is None:
            return self.signum or 0
        agreed = int(self._agreement.result() or 0)
        if agreed:
            return agreed
        self._agreement.start(self.signum or 0)
        return int(self._agreement.result()) if blocking else 0


# --------------------------------------------------------------------------------------------------------------------
# One run per output folder; write failures explained


class OutputDirBusy(RuntimeError):
    """Another run holds the output folder."""


class OutputWriteError(OSError):
    """A file of the run could not be written; the message names it, the cause and the last complete checkpoint."""

    def __str__(self) -> str:
        return self.args[1]


# Causes that only a write can have (a read can also fail with EACCES/EPERM, so those need a named file).
_WRITE_ONLY_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS)
_WRITE_ERRNOS = (*_WRITE_ONLY_ERRNOS, errno.EACCES, errno.EPERM, errno.EIO)
# torch.save reports a failed write as "[enforce fail at inline_container.cc] unexpected pos ..." with no cause.
_TORCH_WRITE_FAILURE = re.compile(r"unexpected pos|file write failed|PytorchStreamWriter failed")


def _write_errno(error: BaseException, folder: Path) -> int | None:
    """The errno behind a failed write, from the exception or (torch hides it) from the file system's state."""
    if isinstance(error, OSError) and error.errno in _WRITE_ERRNOS:
        return error.errno
    text = str(error)
    found = re.search(r"os error (\d+)", text)  # safetensors: "I/O error: ... (os error 28)"
    if found and int(found.group(1)) in _WRITE_ERRNOS:
        return int(found.group(1))
    for code in _WRITE_ERRNOS:
        if os.strerror(code) in text:  # torch: "open file failed with strerror: Read-only file system"
            return code
    if _TORCH_WRITE_FAILURE.search(text):
        try:
            stats = os.statvfs(folder if folder.exists() else folder.parent)
        except OSError:
            return None
        if stats.f_flag & os.ST_RDONLY:
            return errno.EROFS
        if stats.f_bavail * stats.f_frsize < 1 << 16:
            return errno.ENOSPC
        if not os.access(folder, os.W_OK):
            return errno.EACCES
    return None


def _newest_file(folder: Path) -> Path | None:
    files = [p for p in folder.rglob("*") if p.is_file()] if folder.is_dir() else []
    return max(files, key=lambda p: p.stat().st_mtime_ns, default=None)


def explain_write_error(error: BaseException, folder: Path, output_dir: Path) -> OutputWriteError | None:
    """`error` as one sentence naming the file, the cause and the last complete checkpoint in `output_dir`;
    None when `error` is not a failed write into `folder` (or one whose cause can be told)."""
    folder, output_dir = Path(folder), Path(output_dir)
    code = _write_errno(error, folder)
    if code is None:
        return None
    filename = getattr(error, "filename", None) if isinstance(error, OSError) else None
    if filename is None and code not in _WRITE_ONLY_ERRNOS:
        return None
    if filename is None:
        # Files are written one after another: the newest one is the one whose write failed (a failed open,
        # e.g. on a read-only folder, leaves no file: then the folder is what could not be written).
        filename = (_newest_file(folder) if code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) else None) or folder
    try:
        last = last_complete_checkpoint(output_dir, tidy=False)
    except OSError:
        last = None
    then = (
        f"The last complete checkpoint is {last}: continue from it with `--resume_from_checkpoint last` once fixed."
        if last is not None
        else "No complete checkpoint had been written."
    )
    return OutputWriteError(code, f"Could not write {filename}: {os.strerror(code)}. {then}")


@contextmanager
def explained_write_errors(folder: str | os.PathLike, output_dir: str | os.PathLike) -> Iterator[None]:
    """Re-raise a failed write into `folder` as an `OutputWriteError` (see `explain_write_error`)."""
    try:
        yield
    except OutputWriteError:
        raise
    except Exception as error:
        explained = explain_write_error(error, Path(folder), Path(output_dir))
        if explained is None:
            raise
        raise explained from error


@contextmanager
def guard_output_dir(args) -> Iterator[None]:
    """Hold `args.output_dir` for this run: a second run on the same folder refuses at once, naming the holder.

    The lock is an exclusive `flock` on `output_dir/.hf_rnn.lock`, which records the holder's PID, host and start
    time. The kernel releases it when the process ends, however it ends (SIGKILL included), so it can never be
    left stale. In a multi-process run (`args.world_size > 1`) process 0 takes it for the whole job and the others
    learn the outcome from it. Inside the block, a failed write into the folder becomes an `OutputWriteError`.
    """
    output_dir = Path(args.output_dir)
    held, failure = None, None
    if args.process_index == 0:
        try:
            with explained_write_errors(output_dir, output_dir):
                held = _lock(output_dir)
        except (OutputDirBusy, OutputWriteError) as error:
            failure = error
    if args.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
        shared = [None if failure is None else (type(failure).__name__, str(failure))]
        torch.distributed.broadcast_object_list(shared, src=0)
        if shared[0] is not None and failure is None:
            kind, message = shared[0]
            failure = OutputDirBusy(message) if kind == "OutputDirBusy" else OutputWriteError(errno.EIO, message)
    if failure is not None:
        raise failure
    try:
        with explained_write_errors(output_dir, output_dir):
            yield
    finally:
        if held is not None:
            fcntl.flock(held, fcntl.LOCK_UN)
            os.close(held)


def _lock(output_dir: Path) -> int:
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read_holder(path)
        os.close(fd)
        raise OutputDirBusy(
            f"{output_dir} is in use by another training run ({holder}; lock file {path}). Wait for it to end, "
            "stop it, or give another `--output_dir`."
        ) from None
    # The file is never deleted (a waiting run could then lock a file nobody else sees): only its content changes.
    os.ftruncate(fd, 0)
    holder = {"pid": os.getpid(), "host": socket.gethostname(), "started": datetime.now(timezone.utc).isoformat()}
    os.write(fd, json.dumps(holder).encode())
    return fd


def _read_holder(path: Path) -> str:
    for _ in range(50):  # the holder writes its details right after locking: give it a moment
        try:
            holder = json.loads(path.read_text())
            return f"PID {holder['pid']} on {holder['host']}, started {holder['started']}"
        except (OSError, ValueError, KeyError):
            time.sleep(0.01)
    return "holder unknown"


# --------------------------------------------------------------------------------------------------------------------
# Command line


@contextmanager
def exit_cleanly(user_errors: tuple[type[Exception], ...] = ()) -> Iterator[None]:
    """For a `__main__` block: stop on an interrupt or a run-level error with one line and no traceback.

    Exit status 128 + the signal number after an interrupt (130 for Ctrl-C, 143 for SIGTERM, as a shell reports a
    process killed by the signal), 1 when the output folder is busy or cannot be written, or on one of
    `user_errors` (mistakes in the user's input, whose message says what to fix).
    """
    try:
        yield
    except TrainingInterrupted as interrupted:
        if str(interrupted):  # said once, by the main process
            print(interrupted, file=sys.stderr)
        sys.exit(interrupted.exit_code)
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        sys.exit(128 + signal.SIGINT)
    except (OutputDirBusy, OutputWriteError, *user_errors) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)


__all__ = [
    "CHECKPOINT_PATTERN",
    "LOCK_NAME",
    "OutputDirBusy",
    "OutputWriteError",
    "StepBoundaryInterrupt",
    "TrainingInterrupted",
    "checkpoint_problem",
    "checkpoint_step",
    "commit_folder",
    "exit_cleanly",
    "explain_write_error",
    "explained_write_errors",
    "guard_output_dir",
    "is_complete_checkpoint",
    "last_complete_checkpoint",
    "move_aside",
    "resolve_resume",
    "staging_folder",
]
