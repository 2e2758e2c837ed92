"""Test helpers: tiny random models built from configs (nothing is downloaded)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from hf_rnn import LSTMSeq2SeqConfig, LSTMSeq2SeqForConditionalGeneration
from hf_rnn.data.tokenization import train_tokenizer

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def tiny_config(**overrides) -> LSTMSeq2SeqConfig:
    """A model small enough for exhaustive checks, with weights large enough that outputs are not near-uniform."""
    values = dict(
        vocab_size=23,
        decoder_vocab_size=19,
        embedding_size=8,
        hidden_size=10,
        dropout=0.0,
        init_range=0.6,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=1,
    )
    values.update(overrides)
    return LSTMSeq2SeqConfig(**values)


def tiny_model(seed: int = 0, **overrides) -> LSTMSeq2SeqForConditionalGeneration:
    torch.manual_seed(seed)
    return LSTMSeq2SeqForConditionalGeneration(tiny_config(**overrides)).eval()


def random_batch(lengths: list[int], vocab_size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded source ids (no special ids inside) and their mask."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.zeros(len(lengths), max(lengths), dtype=torch.long)
    for row, length in enumerate(lengths):
        ids[row, :length] = torch.randint(3, vocab_size, (length,), generator=generator)
    return ids, ids.ne(0).long()


SENTENCES = ["I am a student.", "You are a doctor.", "He eats an apple.", "We read books."]
TRANSLATIONS = ["나는 학생이다.", "너는 의사다.", "그는 사과를 먹는다.", "우리는 책을 읽는다."]


def sentence_tokenizer():
    """A byte-level BPE tokenizer trained on SENTENCES and TRANSLATIONS (the pipeline and CLI tests' text)."""
    return train_tokenizer(SENTENCES * 20 + TRANSLATIONS * 20, vocab_size=320, show_progress=False)


def untrained_translator(tokenizer) -> LSTMSeq2SeqForConditionalGeneration:
    """A seeded random translator for `tokenizer`, at most 8 new tokens: its outputs are arbitrary but fixed."""
    torch.manual_seed(0)
    config = LSTMSeq2SeqConfig(
        vocab_size=len(tokenizer), embedding_size=16, hidden_size=16, dropout=0.0, init_range=0.5
    )
    model = LSTMSeq2SeqForConditionalGeneration(config).eval()
    model.generation_config.max_new_tokens = 8
    return model


def subprocess_env(tmp_path: Path) -> dict[str, str]:
    """Environment for a child Python that must not find `hf_rnn` (proves remote code travels)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "HF_"))}
    env["HF_HOME"] = str(tmp_path / "hf_home")
    env["HF_HUB_OFFLINE"] = "1"
    return env


def hub_client_env(tmp_path: Path) -> dict[str, str]:
    """Environment for a child Python that downloads from the stand-in Hub (HF_ENDPOINT kept) into a fresh cache."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON") and k != "HF_HUB_CACHE"}
    env["HF_HOME"] = str(tmp_path / "fresh_home")
    return env


BLOCK_HF_RNN = (
    "import sys\n"
    "sys.modules['hf_rnn'] = None  # any `import hf_rnn` now fails: only remote code can load the model\n"
    "try:\n"
    "    import hf_rnn\n"
    "    raise SystemExit('hf_rnn should not be importable here')\n"
    "except ImportError:\n"
    "    pass\n"
)


def run_python(code: str, tmp_path: Path, *, cwd=None, env=None, options=()) -> subprocess.CompletedProcess:
    """Run `code` in a fresh Python (`options` before `-c`), offline with its own HF_HOME unless `env` is given,
    stdin closed (a prompt would fail), output captured as text."""
    return subprocess.run(
        [sys.executable, *options, "-c", code],
        cwd=cwd,
        env=env or subprocess_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )


def run_without_hf_rnn(script: str, tmp_path: Path, cwd=None, env=None) -> subprocess.CompletedProcess:
    """Run `script` with `run_python` (in `tmp_path` by default) where hf_rnn cannot be imported."""
    return run_python(BLOCK_HF_RNN + script, tmp_path, cwd=cwd or tmp_path, env=env)


def run_card_snippet(output_dir: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    """The first Python block of a saved model card, run without hf_rnn next to the folder, as a user would."""
    snippet = (output_dir / "README.md").read_text().split("```python\n", 1)[1].split("```", 1)[0]
    return run_without_hf_rnn(snippet, tmp_path, cwd=output_dir.parent)


def indexing_backward_nodes(loss: torch.Tensor) -> int:
    """How many indexing nodes (select, slice, index) the autograd graph of `loss` has. Each one's backward writes its
    gradient into a zero tensor of its input's full size, so a time loop that indexes step t of a (B, T, ...) tensor
    costs T such tensors in backward; `unbind` costs one."""
    seen, stack, count = set(), [loss.grad_fn], 0
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        count += any(kind in type(node).__name__ for kind in ("Select", "Slice", "Index"))
        stack.extend(function for function, _ in node.next_functions)
    return count


def most_allocations_alive(run, nbytes: int, trace_file: Path) -> int:
    """The most CPU allocations of at least `nbytes` alive at once while `run()` executes, read from the profiler's
    memory events (each allocation and free with its address) through a Chrome trace written to `trace_file`."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as profile:
        run()
    profile.export_chrome_trace(str(trace_file))
    events = [event for event in json.loads(trace_file.read_text())["traceEvents"] if event.get("name") == "[memory]"]
    alive, most = set(), 0
    for event in sorted(events, key=lambda event: event["ts"]):
        address, size = event["args"]["Addr"], event["args"]["Bytes"]
        if size >= nbytes:
            alive.add(address)
        elif size < 0:
            alive.discard(address)
        most = max(most, len(alive))
    return most


def beam_vocabulary_arrays(
    model, kwargs: dict, nbytes: int, trace_dir: Path, monkeypatch, stock=None
) -> tuple[int, int]:
    """The most allocations of at least `nbytes` alive at once in `model.generate(**kwargs)`, then in `stock(model,
    **kwargs)` (default: `model.generate`) with transformers' own top-k step in place of the model's; both runs must
    give the same output."""
    from transformers import GenerationMixin

    outputs = {}
    with torch.no_grad():
        ours = most_allocations_alive(
            lambda: outputs.setdefault("ours", model.generate(**kwargs)), nbytes, trace_dir / "ours.json"
        )
        monkeypatch.setattr(type(model), "_get_top_k_continuations", GenerationMixin._get_top_k_continuations)
        run_stock = stock or type(model).generate
        theirs = most_allocations_alive(
            lambda: outputs.setdefault("stock", run_stock(model, **kwargs)), nbytes, trace_dir / "stock.json"
        )
    assert torch.equal(outputs["ours"], outputs["stock"])
    return ours, theirs


def op_outputs(run) -> list[tuple[str, tuple[int, ...], torch.dtype]]:
    """(aten op, output shape, output dtype) of every tensor each op produces while `run()` executes, backward passes
    included: what a computation allocates, whichever Python code asked for it."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Recorder(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.outputs = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            result = func(*args, **(kwargs or {}))
            for value in result if isinstance(result, (tuple, list)) else (result,):
                if isinstance(value, torch.Tensor):
                    self.outputs.append((str(func.overloadpacket), tuple(value.shape), value.dtype))
            return result

    with Recorder() as recorder:
        run()
    return recorder.outputs
