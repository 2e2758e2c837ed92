"""Translate from the command line with a saved (or Hub) model.

    python -m hf_rnn.translate --model outputs/synthetic-en-ko "I am a student."
    python -m hf_rnn.translate --model DIR --file sentences.txt --output out.txt --num-beams 5
    echo "I am a student." | python -m hf_rnn.translate --model DIR --file -
    python -m hf_rnn.translate --model DIR "I am a student." --plot-attention attention.png
    python -m hf_rnn.translate --model A --model B --model C --file test.en       # an ensemble
    python -m hf_rnn.translate --model DIR --file test.en --n-best 5 --alignment   # scored n-best lists, alignments
    python -m hf_rnn.translate --model DIR --file sentences.txt --dtype bfloat16   # or --quantize int8

Input is taken as written: each line of `--file` (`-` for stdin) is one sentence whatever its line ending (LF, CRLF
or CR; no other character ends a line), read as UTF-8, and an empty or blank line gives an empty line without
calling the model. The output has exactly one line per sentence, in input order (a line break inside a translation
is written as a space), and nothing limits its length but the model's generation config and `--max-new-tokens`.
`--n-best K` writes K lines per sentence and `--alignment` adds Pharaoh alignments: formats in hf_rnn/hypotheses.py.

Errors are one line on stderr: status 2 for bad arguments, 1 for input that cannot be read, output that cannot be
written (a closed stdout included, before or during the run) or a model that cannot be loaded. SIGINT and SIGTERM
end the process by that signal (status 128 + signal number), without a traceback.
"""

import argparse
import codecs
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import torch
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

from .cli import first_line, load_error_reason, path_problem
from .cpu_features import emulated_precision_warning
from .ensemble import Seq2SeqEnsemble
from .heatmap import attention_heatmap
from .hypotheses import has_attention, hypothesis_lines
from .translator import TranslationPipeline

PROG = "python -m hf_rnn.translate"
# Sentences are sorted by length within windows of this many batches: little padding, output still streams.
WINDOW_BATCHES = 32


class CLIError(Exception):
    """A problem the user can fix, reported as one line."""


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived (a BaseException, so no `except Exception` on the way swallows it)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n")[0])
    parser.add_argument("sentences", nargs="*", help="Sentences to translate.")
    parser.add_argument(
        "--model",
        required=True,
        action="append",
        help="Saved model folder or Hub id; repeated, an ensemble of models that share a tokenizer.",
    )
    parser.add_argument("--tokenizer", help="Tokenizer folder or Hub id (default: the model's).")
    parser.add_argument("--file", help="Read one sentence per line from this file ('-' for stdin).")
    parser.add_argument("--output", help="Write translations here (default: stdout).")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--num-beams", type=int, default=5)
    parser.add_argument("--max-new-tokens", type=int, default=None)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--trust-remote-code", action="store_true", help="Needed only for models not made by hf_rnn.")
    parser.add_argument("--plot-attention", metavar="PNG", help="Save the attention heatmap of the first sentence.")
    lists = parser.add_argument_group("n-best lists and alignments (formats: hf_rnn/hypotheses.py)")
    lists.add_argument("--n-best", type=int, metavar="K", help="Write the K best translations with their scores.")
    lists.add_argument("--alignment", action="store_true", help="Add each translation's attention alignment.")
    precision = parser.add_argument_group("reduced precision (faster on CPUs with bf16 / int8 instructions)")
    precision.add_argument(
        "--dtype", choices=["float32", "bfloat16"], help="Weights and arithmetic (default: the checkpoint's)."
    )
    precision.add_argument(
        "--quantize", choices=["int8"], help="int8 weights and activations for every matrix product (needs torchao)."
    )
    args = parser.parse_args(argv)
    if not args.sentences and not args.file:
        parser.error("give sentences as arguments or --file (use '-' for stdin)")
    if args.batch_size < 1 or args.num_beams < 1:
        parser.error("--batch-size and --num-beams must be at least 1")
    if args.n_best is not None and not 1 <= args.n_best <= args.num_beams:
        parser.error(f"--n-best must be between 1 and --num-beams ({args.num_beams}): beam search keeps that many")
    return args


def read_sentences(path: str) -> list[str]:
    """The lines of `path` (`-`: stdin) as sentences: LF, CRLF and CR end a line; a UTF-8 BOM is dropped."""
    name = "standard input" if path == "-" else path
    try:
        if path != "-":
            data = Path(path).read_bytes()
        elif sys.stdin is None:
            raise CLIError("standard input is closed: give sentences as arguments or --file PATH")
        else:
            data = sys.stdin.buffer.read()
    except OSError as error:
        raise CLIError(f"cannot read {name}: {error.strerror or error}") from error
    # bytes.splitlines() ends lines at exactly LF, CRLF and CR (str.splitlines would also split at U+2028, ...).
    lines = data.removeprefix(codecs.BOM_UTF8).splitlines()
    sentences = []
    for number, line in enumerate(lines, 1):
        try:
            sentences.append(line.decode("utf-8"))
        except UnicodeDecodeError as error:
            raise CLIError(f"{name}, line {number}, byte {error.start + 1}: not UTF-8 text") from error
    return sentences


def translate_in_batches(
    translator: TranslationPipeline,
    sentences: list[str],
    batch_size: int,
    n_best: int | None = None,
    alignment: bool = False,
    **generate_kwargs,
) -> Iterator[str]:
    """Output lines in input order: a translation per sentence, or (`n_best`, `alignment`) the lines described in
    hf_rnn/hypotheses.py. Each `generate()` call gets sentences of similar length, so little is padding."""
    window = batch_size * WINDOW_BATCHES
    for start in range(0, len(sentences), window):
        chunk = sentences[start : start + window]
        order = sorted(range(len(chunk)), key=lambda i: len(chunk[i]))
        lines: list[list[str]] = [[] for _ in chunk]
        for first in range(0, len(order), batch_size):
            indices = order[first : first + batch_size]
            texts = [chunk[i] for i in indices]
            if n_best is None and not alignment:
                outputs = [
                    [o["translation_text"]] for o in translator(texts, batch_size=len(texts), **generate_kwargs)
                ]
            else:
                numbers = [start + i for i in indices]
                outputs = hypothesis_lines(translator, texts, numbers, n_best, alignment, **generate_kwargs)
            for index, output in zip(indices, outputs):
                lines[index] = output
        for group in lines:
            yield from group


def load_translator(args: argparse.Namespace) -> TranslationPipeline:
    tokenizer_name = args.tokenizer or args.model[0]
    folder = Path(tokenizer_name)
    if folder.is_dir() and not any((folder / name).exists() for name in ("tokenizer.json", "tokenizer_config.json")):
        raise CLIError(
            f"{tokenizer_name} has no tokenizer files (tokenizer.json, tokenizer_config.json): save the model's "
            "tokenizer next to it (tokenizer.save_pretrained) or give --tokenizer"
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_name, trust_remote_code=args.trust_remote_code)
    except (OSError, ValueError) as error:
        raise CLIError(
            f"cannot load the tokenizer of {tokenizer_name}: {load_error_reason(tokenizer_name, error)}"
        ) from error
    precision = {"dtype": getattr(torch, args.dtype)} if args.dtype else {}
    for option, value in (("--dtype", args.dtype), ("--quantize", args.quantize)):
        if value in ("bfloat16", "int8") and (warning := emulated_precision_warning(value, f"{option} {value}")):
            print(f"{PROG}: warning: {warning}", file=sys.stderr)
    try:
        if len(args.model) == 1:
            model = AutoModelForSeq2SeqLM.from_pretrained(
                args.model[0], trust_remote_code=args.trust_remote_code, **precision
            )
        else:
            model = Seq2SeqEnsemble.from_pretrained(args.model, trust_remote_code=args.trust_remote_code, **precision)
    except (OSError, ValueError) as error:
        reason = next(filter(None, map(path_problem, args.model)), None) or first_line(error)
        raise CLIError(f"cannot load the model {', '.join(args.model)}: {reason}") from error
    if args.quantize:
        for member in model.members if isinstance(model, Seq2SeqEnsemble) else [model]:
            if not hasattr(member, "quantize_int8"):
                raise CLIError(f"--quantize int8: {type(member).__name__} has no int8 mode (quantize_int8)")
            try:
                member.quantize_int8()
            except ImportError as error:
                raise CLIError(f"--quantize int8: {first_line(error)}") from error
    return TranslationPipeline(model=model.eval(), tokenizer=tokenizer, device=args.device)


class Output:
    """Lines to --output or stdout as UTF-8 with LF endings, whatever the locale; write failures become CLIError."""

    def __init__(self, path: str | None):
        self.name = path or "standard output"
        if path is None and sys.stdout is None:
            raise CLIError("standard output is closed: nowhere to write the translations (use --output FILE)")
        try:
            self.stream = open(path, "wb") if path else sys.stdout.buffer  # noqa: SIM115  (closed in close())
        except OSError as error:
            raise CLIError(f"cannot write {path}: {error.strerror or error}") from error
        self.written = 0

    def write_line(self, text: str) -> None:
        line = text.replace("\r\n", " ").replace("\r", " ").replace("\n", " ")
        try:
            self.stream.write(line.encode("utf-8") + b"\n")
            self.stream.flush()
        except OSError as error:
            self._abandon()
            raise CLIError(
                f"cannot write to {self.name} after {self.written} translation(s): {error.strerror or error}"
            ) from error
        self.written += 1

    def close(self) -> None:
        if self.stream is not sys.stdout.buffer:
            self.stream.close()

    def _abandon(self) -> None:
        if self.name == "standard output":
            # Python flushes stdout at exit; on a closed pipe that would print a second error.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def run(args: argparse.Namespace) -> None:
    output = Output(args.output)
    sentences = list(args.sentences) + (read_sentences(args.file) if args.file else [])
    translator = load_translator(args)
    if args.alignment and not has_attention(translator.model):
        raise CLIError("--alignment: the model has no attention (attention_type='none') to align with")
    generate_kwargs = {"num_beams": args.num_beams}
    if args.max_new_tokens is not None:
        generate_kwargs["max_new_tokens"] = args.max_new_tokens
    lists = {"n_best": args.n_best, "alignment": args.alignment}
    try:
        for line in translate_in_batches(translator, sentences, args.batch_size, **lists, **generate_kwargs):
            output.write_line(line)
    finally:
        output.close()
    if args.plot_attention:
        sentence = next((s for s in sentences if s.strip()), None)
        if sentence is None:
            raise CLIError("--plot-attention: every sentence is blank, nothing to plot")
        attention_heatmap(translator.model, translator.tokenizer, sentence, args.plot_attention, **generate_kwargs)
        print(f"Attention heatmap saved to {args.plot_attention}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _interrupt)
    try:
        run(args)
    except CLIError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 1
    except Interrupted as interrupt:
        # Die by the signal itself, so the parent sees what ended us (status 128 + signal number).
        signal.signal(interrupt.signum, signal.SIG_DFL)
        os.kill(os.getpid(), interrupt.signum)
    return 0


def _interrupt(signum: int, frame) -> None:
    raise Interrupted(signum)


if __name__ == "__main__":
    sys.exit(main())
