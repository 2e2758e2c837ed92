"""Faults injected into real `train.py` processes: signals at any point of a step, SIGKILL during a checkpoint write,
concurrent runs (also 2-process DDP), full and read-only disks, and what a Hub push uploads.

Each run is a tiny model on the synthetic corpus, a few dozen steps, in its own process running train.py's
`__main__` block after installing its fault (a signal sent from inside a step, a torch.save that dies half-way, ...),
so that the fault lands at a known point. Plain runs are forked from one interpreter that has imported train.py's
modules (multiprocessing's forkserver), which keeps the whole file within its time budget; runs that need a launcher
(torchrun, a mount namespace, fewer capabilities, a Hub endpoint) start a fresh interpreter. Losses are compared
exactly (==): a resumed run must repeat the uninterrupted run bit for bit.
"""

import json
import multiprocessing
import os
import random
import runpy
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers import REPO_ROOT
from hub_server import FAKE_TOKEN, HubServer

from hf_rnn.training.checkpoints import LOCK_NAME, checkpoint_problem, guard_output_dir, last_complete_checkpoint

pytestmark = pytest.mark.slow

CONFIG = str(REPO_ROOT / "configs" / "synthetic_en_ko.yaml")
TINY = [
    *("--model.embedding_size", "16", "--model.hidden_size", "32", "--model.dropout", "0.3"),
    *("--tokenizer_vocab_size", "400"),
    *("--synthetic_train_size", "400", "--synthetic_eval_size", "4", "--max_source_length", "16"),
    *("--max_target_length", "16", "--per_device_train_batch_size", "8", "--per_device_eval_batch_size", "8"),
    *("--report_to", "none", "--disable_tqdm", "true", "--num_examples_to_print", "0", "--eval_strategy", "no"),
    *("--logging_steps", "1", "--seed", "3", "--save_strategy", "steps", "--save_steps", "5"),
    *("--save_total_limit", "100"),
]
STEPS = 30

# Faults, installed in the child before train.py runs. A signal sent with os.kill is handled as soon as os.kill
# returns, so each lands exactly where it is sent; `sent` records them for the faults that act during the save.
SIGNAL_IN_STEP = """
sent = []
from transformers import Trainer
_training_step = Trainer.training_step
def training_step(self, *args, **kwargs):
    loss = _training_step(self, *args, **kwargs)  # forward and backward have drawn their dropout masks
    if self.state.global_step == {step} - 1:
        sent.append(1)
        os.kill(os.getpid(), signal.{signal})
    return loss
Trainer.training_step = training_step
"""
SIGNAL_AFTER_OPTIMIZER_STEP = """
sent = []
from torch.optim.optimizer import register_optimizer_step_post_hook
calls = []
def after_step(optimizer, args, kwargs):
    calls.append(1)
    if len(calls) == {step}:
        sent.append(1)
        os.kill(os.getpid(), signal.{signal})
register_optimizer_step_post_hook(after_step)
"""
# After the signal: `action` while the interrupt save writes optimizer.pt.
WHILE_SAVING = """
_save = torch.save
def save(obj, f, *args, **kwargs):
    if sent and str(f).endswith("optimizer.pt"):
        sent.clear()
        {action}
    return _save(obj, f, *args, **kwargs)
torch.save = save
"""
DIE_HALF_WAY = "_save(obj, f); os.truncate(f, os.path.getsize(f) // 2); os.kill(os.getpid(), signal.SIGKILL)"


def train_command(output_dir, *args: str, fault: str = "", launcher: tuple[str, ...] = ()) -> list[str]:
    """A fresh interpreter running train.py (under `launcher` if given) after `fault`."""
    argv = [CONFIG, *TINY, "--output_dir", str(output_dir), *args]
    code = (
        "import os, runpy, signal, sys\nimport torch\n"
        f"sys.argv = [sys.argv[0], *{argv!r}]\n{fault}\n"
        "runpy.run_path('train.py', run_name='__main__')\n"
    )
    script = Path(output_dir).parent / f"{Path(output_dir).name}-launch.py"
    script.write_text(code)
    return [*(launcher or (sys.executable,)), str(script)]


CHILD_ENV = {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "PYTHON"))}
    return {**env, **CHILD_ENV, **extra}


def run(command: list[str], env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        command,
        cwd=REPO_ROOT,
        env=env or child_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


FORKSERVER = multiprocessing.get_context("forkserver")


@pytest.fixture(scope="module", autouse=True)
def preloaded_interpreter():
    """Start the forkserver with train.py's modules imported, in the children's environment."""
    with pytest.MonkeyPatch.context() as patch:
        for name in [k for k in os.environ if k.startswith("HF_")]:
            patch.delenv(name)
        for name, value in CHILD_ENV.items():
            patch.setenv(name, value)
        patch.syspath_prepend(str(REPO_ROOT))
        FORKSERVER.set_forkserver_preload(["train", __name__])
        process = FORKSERVER.Process(target=int)
        process.start()
        process.join()
    yield


def _run_train(argv: list[str], fault: str, log: str) -> None:
    """In a forked child: stdout and stderr to `log`, then `fault`, then train.py as `__main__`."""
    out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.chdir(REPO_ROOT)
    sys.argv = ["train.py", *argv]
    import torch

    exec(fault, {"os": os, "signal": signal, "torch": torch})
    runpy.run_path("train.py", run_name="__main__")


class Run:
    """A train.py process forked from the preloaded interpreter; `log` holds its stdout and stderr."""

    def __init__(self, output_dir, *args: str, fault: str = ""):
        self.log = Path(output_dir).parent / f"{Path(output_dir).name}.log"
        argv = [CONFIG, *TINY, "--output_dir", str(output_dir), *args]
        self.process = FORKSERVER.Process(target=_run_train, args=(argv, fault, str(self.log)))
        self.process.start()
        self.pid = self.process.pid
        self._pidfd = os.pidfd_open(self.pid)  # signals reach this process even if its pid were reused

    def send_signal(self, signum: int) -> bool:
        """False when the process has ended already."""
        try:
            signal.pidfd_send_signal(self._pidfd, signum)
        except ProcessLookupError:
            return False
        return True

    def wait(self, timeout: float = 300) -> "Run":
        self.process.join(timeout)
        assert self.process.exitcode is not None, f"still running:\n{self.output[-3000:]}"
        os.close(self._pidfd)
        return self

    @property
    def returncode(self) -> int | None:
        return self.process.exitcode

    @property
    def output(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def wait_for(self, condition, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert self.process.is_alive(), f"the run ended early:\n{self.output[-3000:]}"
            assert time.monotonic() < deadline, f"timed out:\n{self.output[-3000:]}"
            time.sleep(0.01)


def train(output_dir, *args: str, fault: str = "") -> Run:
    return Run(output_dir, *args, fault=fault).wait()


def losses(output_dir: Path) -> dict[int, float]:
    state = json.loads((output_dir / "trainer_state.json").read_text())
    return {entry["step"]: entry["loss"] for entry in state["log_history"] if "loss" in entry}


def assert_quiet(result: subprocess.CompletedProcess | Run) -> None:
    text = result.output if isinstance(result, Run) else result.stdout + result.stderr
    assert "Traceback" not in text and "--- Logging error ---" not in text, text[-3000:]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The uninterrupted run, with a checkpoint after every step to compare against."""
    output_dir = tmp_path_factory.mktemp("reference") / "run"
    result = train(output_dir, "--max_steps", str(STEPS), "--save_steps", "1")
    assert result.returncode == 0, result.output[-3000:]
    return output_dir


ALL_STATE = ("model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth")


def same_files(a: Path, b: Path, names=("model.safetensors", "rng_state.pth")) -> bool:
    return all((a / name).read_bytes() == (b / name).read_bytes() for name in names)


def test_sigterm_mid_step_with_dropout_saves_the_step_and_resumes_to_the_same_losses(reference, tmp_path):
    """Dropout 0.3, SIGTERM in the middle of a random step, `--save_strategy no`: the checkpoint is the state between
    two steps (the former handler saved mid-step state and RNG), the exit status is 143 without a traceback, and
    the next 20 losses equal the uninterrupted run's exactly."""
    step = random.Random().randint(3, STEPS - 20)
    output_dir = tmp_path / "run"
    fault = SIGNAL_IN_STEP.format(step=step, signal="SIGTERM")
    stopped = train(output_dir, "--max_steps", str(STEPS), "--save_strategy", "no", fault=fault)
    assert stopped.returncode == 128 + signal.SIGTERM, (step, stopped.output[-3000:])
    assert_quiet(stopped)
    assert f"Stopped by SIGTERM after step {step}" in stopped.output
    assert last_complete_checkpoint(output_dir, tidy=False) == output_dir / f"checkpoint-{step}", step
    assert same_files(output_dir / f"checkpoint-{step}", reference / f"checkpoint-{step}"), step

    resumed = train(output_dir, "--max_steps", str(STEPS), "--resume_from_checkpoint", "last")
    assert resumed.returncode == 0, resumed.output[-3000:]
    expected, got = losses(reference), losses(output_dir)
    assert {s: got[s] for s in range(step + 1, step + 21)} == {s: expected[s] for s in range(step + 1, step + 21)}
    assert lock_is_free(output_dir)


def test_ctrl_c_right_after_optimizer_step_saves_that_step_and_a_second_signal_waits_for_the_save(reference, tmp_path):
    """Ctrl-C just after step 11's optimizer.step, checkpoint-10 saved periodically: the former handler saved
    step-11 weights as checkpoint-10, over the good one. Then SIGTERM during that save (torchrun forwards a
    terminal's Ctrl-C, so a second signal is common): the save completes, the exit status is the first signal's."""
    output_dir = tmp_path / "run"
    fault = SIGNAL_AFTER_OPTIMIZER_STEP.format(step=11, signal="SIGINT")
    fault += WHILE_SAVING.format(action="os.kill(os.getpid(), signal.SIGTERM)")
    stopped = train(output_dir, "--max_steps", str(STEPS), fault=fault)
    assert stopped.returncode == 128 + signal.SIGINT, stopped.output[-3000:]
    assert "SIGTERM received again: still saving the checkpoint" in stopped.output
    assert_quiet(stopped)
    assert sorted(p.name for p in output_dir.glob("checkpoint-*")) == [
        "checkpoint-10",
        "checkpoint-11",
        "checkpoint-5",
    ]
    for step in (10, 11):
        assert checkpoint_problem(output_dir / f"checkpoint-{step}") is None
        assert same_files(output_dir / f"checkpoint-{step}", reference / f"checkpoint-{step}", names=ALL_STATE), step


def test_sigkill_during_the_interrupt_save_leaves_the_periodic_checkpoint_intact(reference, tmp_path):
    """Ctrl-C in step 11, SIGKILL half-way through the save it causes: the former handler rewrote checkpoint-10 in
    place, leaving a truncated optimizer.pt in a folder that still counted as complete."""
    output_dir = tmp_path / "run"
    fault = SIGNAL_IN_STEP.format(step=11, signal="SIGINT") + WHILE_SAVING.format(action=DIE_HALF_WAY)
    killed = train(output_dir, "--max_steps", str(STEPS), fault=fault)
    assert killed.returncode == -signal.SIGKILL, killed.output[-3000:]
    assert last_complete_checkpoint(output_dir, tidy=False) == output_dir / "checkpoint-10"
    assert same_files(output_dir / "checkpoint-10", reference / "checkpoint-10", names=ALL_STATE)
    assert checkpoint_problem(output_dir / ".checkpoint-11.partial") is not None  # the cut-off save, out of sight
    assert lock_is_free(output_dir)


def test_sigkill_a_few_milliseconds_after_sigterm_leaves_a_complete_checkpoint(reference, tmp_path):
    delay = random.Random().uniform(0, 0.06)
    output_dir = tmp_path / "run"
    running = Run(output_dir, "--max_steps", str(STEPS), "--save_steps", "3")
    running.wait_for(lambda: (output_dir / "checkpoint-3").is_dir())
    running.send_signal(signal.SIGTERM)
    time.sleep(delay)
    running.send_signal(signal.SIGKILL)  # unless the run has saved and stopped already
    assert running.wait().returncode in (-signal.SIGKILL, 128 + signal.SIGTERM)
    last = last_complete_checkpoint(output_dir, tidy=False)
    assert last is not None, (delay, sorted(p.name for p in output_dir.iterdir()))
    assert same_files(last, reference / last.name, names=ALL_STATE), delay
    assert lock_is_free(output_dir)


def lock_is_free(output_dir: Path) -> bool:
    try:
        with guard_output_dir(SimpleNamespace(output_dir=str(output_dir), process_index=0, world_size=1)):
            return True
    except RuntimeError:
        return False


def test_a_second_run_on_a_busy_output_folder_refuses_at_once_naming_the_holder(tmp_path):
    """The holder is this test process; release on SIGTERM, SIGKILL and normal exit is checked by the tests that
    end runs those ways."""
    output_dir = tmp_path / "run"
    with guard_output_dir(SimpleNamespace(output_dir=str(output_dir), process_index=0, world_size=1)):
        second = train(output_dir, "--max_steps", "5")
    assert second.returncode == 1
    holder = f"PID {os.getpid()} on {socket.gethostname()}, started "
    assert f"error: {output_dir} is in use by another training run ({holder}" in second.output
    assert "Reading train pairs" not in second.output  # refused before any work
    assert_quiet(second)
    assert sorted(p.name for p in output_dir.iterdir()) == [LOCK_NAME]


def test_a_two_process_run_holds_its_folder_as_one_run_and_stops_together(tmp_path):
    """torchrun, 2 CPU processes (gloo): a second 2-process run on the folder refuses in both of its processes;
    SIGTERM to the first launcher stops both processes after the same step, with one checkpoint holding both RNG
    states, and frees the folder."""
    output_dir = tmp_path / "ddp"
    launcher = (sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2")
    ddp_args = ("--save_strategy", "no", "--ddp_find_unused_parameters", "false", "--use_cpu", "true")
    log = tmp_path / "first.log"
    with log.open("w") as out:
        first = subprocess.Popen(
            train_command(output_dir, *ddp_args, "--max_steps", "100000", launcher=launcher),
            cwd=REPO_ROOT,
            env=child_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: nothing outlives the test, whatever fails
        )
    try:
        deadline = time.monotonic() + 240
        while "'loss'" not in log.read_text():
            assert first.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.05)
        holder = json.loads((output_dir / LOCK_NAME).read_text())
        second = run(train_command(output_dir, *ddp_args, "--max_steps", "3", launcher=launcher), timeout=240)
        assert second.returncode != 0
        busy = f"in use by another training run (PID {holder['pid']} on"
        assert second.stderr.count(busy) == 2, second.stderr[-3000:]

        first.send_signal(signal.SIGTERM)
        first.wait(timeout=240)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
    text = log.read_text()
    assert text.count("Stopped by SIGTERM after step") == 1, text[-3000:]
    (checkpoint,) = output_dir.glob("checkpoint-*")
    assert checkpoint_problem(checkpoint) is None
    assert sorted(p.name for p in checkpoint.glob("rng_state*")) == ["rng_state_0.pth", "rng_state_1.pth"]
    assert lock_is_free(output_dir)


def in_namespace(output_dir: Path, mount: str, command: list[str]) -> list[str]:
    """`command` in a private mount namespace where `output_dir` is a fresh tmpfs (`mount` options)."""
    script = 'mount -t tmpfs -o "$1" tmpfs "$0" && shift && exec "$@"'
    return ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script, str(output_dir), mount, *command]


def namespaces_available() -> bool:
    with tempfile.TemporaryDirectory() as folder:
        try:
            probe = subprocess.run(in_namespace(Path(folder), "size=64k", ["true"]), capture_output=True)
        except FileNotFoundError:
            return False
    return probe.returncode == 0


needs_namespaces = pytest.mark.skipif(
    not namespaces_available(), reason="a tiny tmpfs needs `unshare --user --mount` (user namespaces)"
)


@needs_namespaces
def test_a_full_disk_is_explained_in_one_line_naming_the_file_and_the_last_checkpoint(tmp_path):
    """1 MiB holds the tokenizer and checkpoint-2 (about 0.75 MiB), not checkpoint-4 as well."""
    output_dir = tmp_path / "full"
    output_dir.mkdir()
    command = train_command(output_dir, "--max_steps", "6", "--save_steps", "2")
    result = run(in_namespace(output_dir, "size=1m", command))
    assert result.returncode == 1, result.stderr[-3000:]
    assert_quiet(result)
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith(f"error: Could not write {output_dir}/.checkpoint-4.partial/"), error
    assert error.endswith(
        f": No space left on device. The last complete checkpoint is {output_dir}/checkpoint-2: continue from it "
        "with `--resume_from_checkpoint last` once fixed."
    ), error


@needs_namespaces
def test_a_read_only_output_folder_is_explained_before_any_work(tmp_path):
    output_dir = tmp_path / "read-only"
    output_dir.mkdir()
    result = run(in_namespace(output_dir, "size=1m,ro", train_command(output_dir, "--max_steps", "2")))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: Could not write {output_dir / LOCK_NAME}: Read-only file system. No complete checkpoint had been "
        "written."
    )
    assert_quiet(result)


def test_an_output_folder_without_write_permission_is_explained_before_any_work(tmp_path):
    output_dir = tmp_path / "locked"
    output_dir.mkdir(mode=0o555)
    command = train_command(output_dir, "--max_steps", "2")
    if os.geteuid() == 0:  # root writes anywhere: drop that capability, as an ordinary user has none
        drop = "-dac_override,-dac_read_search"
        command = ["setpriv", f"--inh-caps={drop}", f"--bounding-set={drop}", *command]
    result = run(command)
    assert result.returncode == 1, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: Could not write {output_dir / LOCK_NAME}: Permission denied. No complete checkpoint had been written."
    )
    assert_quiet(result)


@pytest.fixture(scope="module")
def pushed(tmp_path_factory):
    """A run with `--push_to_hub --hub_token T` and per-save pushes of the model and of the checkpoint
    (`--hub_strategy checkpoint`), against the stand-in Hub: every commit's files, as {(commit, path): content}."""
    root = tmp_path_factory.mktemp("hub")
    server = HubServer(root / "repos").start()
    token = "hf_TheTokenGivenOnTheCommandLine"
    output_dir = root / "pushed"
    env = child_env(HF_ENDPOINT=server.url, HF_TOKEN=FAKE_TOKEN, HF_HOME=str(root / "hf_home"), HF_HUB_OFFLINE="0")
    args = ("--max_steps", "4", "--save_steps", "2", "--push_to_hub", "true", "--hub_model_id", "user/scan")
    args += ("--hub_token", token, "--hub_strategy", "checkpoint")
    result = run(train_command(output_dir, *args), env=env)
    server.stop()
    assert result.returncode == 0, result.stderr[-3000:]
    commits = [c for c in server.commits if c["repo_id"] == "user/scan"]
    files = {
        (commit["oid"], path): (server.root / "models" / "user" / "scan" / commit["oid"] / path).read_bytes()
        for commit in commits
        for path in commit["added"]
    }
    return SimpleNamespace(files=files, commits=commits, output_dir=output_dir, secrets=[token, FAKE_TOKEN])


def local_paths(pushed) -> list[str]:
    return [str(pushed.output_dir), str(Path.home()) + "/", tempfile.gettempdir() + "/"]


def test_every_push_path_was_taken(pushed):
    summaries = [c["summary"] for c in pushed.commits]
    assert "Training in progress, step 2" in summaries and "Training in progress, step 2, checkpoint" in summaries
    assert summaries[-1] == "hf-rnn: trained model, code and model card"
    uploaded = {path for _, path in pushed.files}
    assert {"model.safetensors", "last-checkpoint/optimizer.pt", "README.md"} <= uploaded


def test_no_pushed_file_holds_the_token_or_training_args(pushed):
    assert not [path for _, path in pushed.files if path.endswith("training_args.bin")]
    holding = [
        path for (_, path), content in pushed.files.items() if any(t.encode() in content for t in pushed.secrets)
    ]
    assert holding == []
    local_args = (pushed.output_dir / "training_args.bin").read_bytes()
    assert pushed.secrets[0].encode() not in local_args  # not even kept locally


def test_no_pushed_file_holds_a_local_path(pushed):
    holding = {
        path for (_, path), content in pushed.files.items() if any(p.encode() in content for p in local_paths(pushed))
    }
    assert holding == set()
