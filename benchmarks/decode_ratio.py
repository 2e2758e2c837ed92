"""Decoding speed of the translator code in the working tree against the same code at a git revision.

    python benchmarks/decode_ratio.py --baseline HEAD~1             # greedy and beam 5, 5 interleaved rounds (~10 min)
    python benchmarks/decode_ratio.py --baseline 5c7e22a --rounds 9 --threads 1

Both versions of `hf_rnn/translator/` (configuration, modeling and generation files) are loaded
in one process (the baseline from `git show REV:path`, as remote code would be), given the same
random weights of the peer shape (vocab 5,894 / 7,878, emb 256, bi-LSTM 2x256, decoder 512,
general attention, input feeding) and decode the same batches of random sources (5-30 tokens)
with `generate()`. A random model either never ends or ends at once, so a logits processor
ends each sentence near its source length (± 3 tokens), as a trained translator does: sentences
of a batch end at different steps, and the finished-sentence logic is part of what is timed. Each
round times baseline and working tree back to back, alternating which goes first, in CPU
seconds of this process; the report gives the median seconds of each and the median of the
per-round ratios (working tree / baseline), and checks that both produced identical tokens.
"""

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers.generation.logits_process import ForcedEOSTokenLogitsProcessor

REPO = Path(__file__).resolve().parents[1]
FILES = ("configuration_lstm_seq2seq.py", "modeling_lstm_seq2seq.py", "generation_lstm_seq2seq.py")


def load_translator(folder: Path, name: str):
    """Import `folder`'s translator files as package `name` (sibling imports resolve inside it)."""
    spec = importlib.util.spec_from_file_location(
        name, folder / "__init__.py", submodule_search_locations=[str(folder)]
    )
    package = importlib.util.module_from_spec(spec)
    sys.modules[name] = package
    spec.loader.exec_module(package)
    return importlib.import_module(f"{name}.configuration_lstm_seq2seq"), importlib.import_module(
        f"{name}.modeling_lstm_seq2seq"
    )


def checkout(revision: str, folder: Path) -> Path:
    """The translator files at `revision` (those that exist there) in `folder`."""
    folder.mkdir(parents=True)
    (folder / "__init__.py").write_text("")
    for name in FILES:
        result = subprocess.run(
            ["git", "show", f"{revision}:hf_rnn/translator/{name}"], cwd=REPO, capture_output=True, text=True
        )
        if result.returncode == 0:
            (folder / name).write_text(result.stdout)
    return folder


class EndAtLengths(ForcedEOSTokenLogitsProcessor):
    """Forces `</s>` once a sentence has `lengths[i]` tokens (start token included). A subclass of transformers'
    forced-EOS processor, so that generate() still counts it among the processors that cannot raise a score."""

    def __init__(self, lengths: torch.Tensor, eos_token_id: int):
        super().__init__(max_length=int(lengths.max()), eos_token_id=eos_token_id, device="cpu")
        self.lengths = lengths

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        due = input_ids.shape[1] >= self.lengths.repeat_interleave(len(input_ids) // len(self.lengths))
        scores[due] = -float("inf")
        scores[due, self.eos_token_id] = 0
        return scores


def build(modules, state_dict: dict | None):
    configuration, modeling = modules
    config = configuration.LSTMSeq2SeqConfig(
        vocab_size=5894, decoder_vocab_size=7878, embedding_size=256, hidden_size=512, dropout=0.3
    )
    model = modeling.LSTMSeq2SeqForConditionalGeneration(config).eval()
    if state_dict is not None:
        model.load_state_dict(state_dict)
    return model


def batches(
    count: int, size: int, generator: torch.Generator
) -> list[tuple[torch.Tensor, torch.Tensor, EndAtLengths]]:
    """Right-padded random sources of 5-30 tokens ending with `</s>`, and where each translation ends."""
    out = []
    for _ in range(count):
        lengths = torch.randint(5, 31, (size,), generator=generator)
        ids = torch.zeros(size, int(lengths.max()), dtype=torch.long)
        for row, length in enumerate(lengths.tolist()):
            ids[row, : length - 1] = torch.randint(3, 5894, (length - 1,), generator=generator)
            ids[row, length - 1] = 2
        target_lengths = (lengths + torch.randint(-3, 4, (size,), generator=generator)).clamp(min=2)
        out.append((ids, ids.ne(0).long(), EndAtLengths(target_lengths, eos_token_id=2)))
    return out


def decode(model, data, num_beams: int) -> tuple[float, list[torch.Tensor]]:
    """CPU seconds (`time.process_time`: other jobs on a shared machine disturb it less than wall time) and tokens."""
    started = time.process_time()
    with torch.inference_mode():
        outputs = [
            model.generate(
                input_ids=i, attention_mask=m, num_beams=num_beams, max_new_tokens=60, logits_processor=[end]
            )
            for i, m, end in data
        ]
    return time.process_time() - started, outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", required=True, help="git revision of the code to compare against")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batches", type=int, default=2, help="batches per timed block")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--beams", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        baseline = load_translator(checkout(args.baseline, Path(tmp) / "baseline_translator"), "baseline_translator")
        current = load_translator(REPO / "hf_rnn" / "translator", "current_translator")
        torch.manual_seed(0)
        new = build(current, None)
        old = build(baseline, new.state_dict())
        data = batches(args.batches, args.batch_size, torch.Generator().manual_seed(1))
        print(
            f"baseline {args.baseline} vs working tree; torch {torch.__version__}, threads {torch.get_num_threads()}, "
            f"{args.batches} batches of {args.batch_size}, {args.rounds} rounds\n"
        )
        print(
            "| beams | baseline CPU s (median) | working tree CPU s (median) | ratio (median) | ratios | same tokens |"
        )
        print("|---|---|---|---|---|---|")
        for beams in args.beams:
            decode(new, data[:1], beams), decode(old, data[:1], beams)  # warm-up
            times = {"old": [], "new": []}
            same = True
            for round_ in range(args.rounds):
                order = [("old", old), ("new", new)] if round_ % 2 == 0 else [("new", new), ("old", old)]
                produced = {}
                for label, model in order:
                    seconds, produced[label] = decode(model, data, beams)
                    times[label].append(seconds)
                same &= all(torch.equal(a, b) for a, b in zip(produced["old"], produced["new"]))
            ratios = [n / o for n, o in zip(times["new"], times["old"])]
            print(
                f"| {beams} | {statistics.median(times['old']):.2f} | {statistics.median(times['new']):.2f} | "
                f"{statistics.median(ratios):.3f} | {', '.join(f'{r:.2f}' for r in ratios)} | {same} |"
            )


if __name__ == "__main__":
    main()
