"""Decoding speed, peak memory and BLEU of a saved translator on a test set (default: Multi30k test2016).

    python benchmarks/decode.py --model outputs/multi30k-en-de
    python benchmarks/decode.py --model DIR --test-file data.jsonl --source-lang en --target-lang ko --beams 1 5
    python benchmarks/decode.py --model DIR --source-file test.tok.en --reference-file test.tok.de --keep-unk
    python benchmarks/decode.py --model DIR --dtype bfloat16        # or --quantize int8, or --onnx EXPORTED_DIR

With --onnx the decoding process imports neither torch nor transformers: the exported folder's tokenizer.json is
read with `tokenizers` and `hf_rnn/onnx_translator.py` (numpy, onnxruntime) is loaded on its own, so its time and
peak RSS are those of serving with onnxruntime.

The second form reads plain text, one sentence per line, already tokenised the way the model
was trained (e.g. the peer recipes' lowercased word-level files); BLEU is then computed on the
hypotheses exactly as produced, with `tokenize="none"`, as the peers' `sacrebleu -tok none` does.
`--hypotheses-dir` keeps the translations (beam{k}.hyp) and their token ids (beam{k}.ids), `--json` the figures;
`--single K` decodes once in the current process (for timing it from outside, e.g. GNU time).

Each setting (greedy, beam k) runs in its own fresh process so that the peak RSS and the
whole-process time are that setting's alone, as when the peers' `translate` commands are
timed. Reported per setting: the decode loop (tokenise → generate → detokenise, batched by
length like the peer toolkits), the whole process (interpreter start to exit, model loading
included), sentences/s, peak RSS, and BLEU both as sacreBLEU's default (cased, 13a) and as
the peer recipes compute it (lowercased, `\\w+|[^\\w\\s]` tokens, `-tok none`).
"""

import argparse
import importlib.util
import json
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from text_files import read_jsonl, read_lines  # sibling module: corpora read as written

REPO = Path(__file__).resolve().parents[1]
DEFAULT_TEST = REPO.parent / "shared" / "data" / "multi30k-en-de" / "test_2016_flickr.jsonl"
PEER_TOKENS = re.compile(r"\w+|[^\w\s]")


def peer_tokenise(text: str) -> str:
    """The tokenisation of ../shared/bench/peers/prep_data.py, so BLEU is computed the way the peers report it."""
    return " ".join(PEER_TOKENS.findall(text.strip().lower()))


class TorchTranslator:
    """`model.generate()` on a saved folder (fp32, bf16 or int8), with its transformers tokenizer."""

    def __init__(self, args: argparse.Namespace):
        import hf_rnn  # noqa: F401, I001  (registers the model classes; first, as the CLI does: its MKL setting)
        import torch
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        if args.threads:
            torch.set_num_threads(args.threads)
        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(args.model)
        self.pad_token_id = self.tokenizer.pad_token_id
        self.model = AutoModelForSeq2SeqLM.from_pretrained(args.model, dtype=getattr(torch, args.dtype)).eval()
        if args.quantize == "int8":
            self.model.quantize_int8()
        self.device = torch.device(args.device)
        self.model.to(self.device)

    def length(self, text: str) -> int:
        return len(self.tokenizer.tokenize(text))

    def translate(self, texts: list[str], keep_unk: bool, settings: dict) -> tuple[list[str], list[list[int]]]:
        inputs = self.tokenizer(texts, return_tensors="pt", padding=True).to(self.device)
        with self.torch.inference_mode():
            output = self.model.generate(**inputs, **settings).cpu()
        return detokenise(self.tokenizer, output, keep_unk), output.tolist()


class OnnxRuntimeTranslator:
    """`OnnxTranslator` over an exported folder, with its `tokenizers` tokenizer: numpy and onnxruntime only, so
    the process's memory is what serving with onnxruntime takes (torch and transformers are never imported)."""

    def __init__(self, args: argparse.Namespace):
        from tokenizers import Tokenizer

        # The module file alone: `import hf_rnn.onnx_translator` would run hf_rnn/__init__.py, which imports
        # transformers and torch.
        spec = importlib.util.spec_from_file_location("onnx_translator", REPO / "hf_rnn" / "onnx_translator.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        OnnxTranslator = module.OnnxTranslator

        folder = Path(args.onnx)
        self.translator = OnnxTranslator(folder, threads=args.threads)
        # transformers' fast tokenizers encode without the file's truncation or padding unless asked to.
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        special = json.loads((folder / "tokenizer_config.json").read_text())
        self.pad_token_id = self.tokenizer.token_to_id(special["pad_token"])
        self.dropped = {self.tokenizer.token_to_id(special[name]) for name in ("pad_token", "bos_token", "eos_token")}

    def length(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def translate(self, texts: list[str], keep_unk: bool, settings: dict) -> tuple[list[str], list[list[int]]]:
        import numpy as np

        encodings = [encoding.ids for encoding in self.tokenizer.encode_batch(texts)]
        input_ids = np.full((len(texts), max(map(len, encodings))), self.pad_token_id, dtype=np.int64)
        for row, ids in enumerate(encodings):
            input_ids[row, : len(ids)] = ids
        attention_mask = (np.arange(input_ids.shape[1]) < np.array([[len(ids)] for ids in encodings])).astype(np.int64)
        output = self.translator.generate(input_ids, attention_mask, **settings).tolist()
        if keep_unk:
            kept = [[i for i in row if i not in self.dropped] for row in output]
            return self.tokenizer.decode_batch(kept, skip_special_tokens=False), output
        return self.tokenizer.decode_batch(output, skip_special_tokens=True), output


def run_one(args: argparse.Namespace) -> dict:
    """Child process: decode the whole test set once with one beam size and report the figures as JSON."""
    sources, references = read_test_set(args)
    translator = OnnxRuntimeTranslator(args) if args.onnx else TorchTranslator(args)
    # max_length counts the start token; it is also the limit the saved generation config uses.
    settings = {"num_beams": args.single, "max_length": args.max_new_tokens + 1, "length_penalty": args.length_penalty}
    if args.early_stopping is not None:
        settings["early_stopping"] = args.early_stopping

    started = time.perf_counter()
    order = sorted(range(len(sources)), key=lambda i: translator.length(sources[i]))
    hypotheses: list[str] = [""] * len(sources)
    token_ids: list[list[int]] = [[]] * len(sources)
    for start in range(0, len(order), args.batch_size):
        batch = order[start : start + args.batch_size]
        texts, ids = translator.translate([sources[i] for i in batch], args.keep_unk, settings)
        for index, text, row in zip(batch, texts, ids):
            hypotheses[index], token_ids[index] = text, row
    loop_seconds = time.perf_counter() - started

    if args.hypotheses_dir:
        folder = Path(args.hypotheses_dir)
        folder.mkdir(parents=True, exist_ok=True)
        # One line per sentence, as `python -m hf_rnn.translate` writes them: a produced line break is a space.
        lines = (h.replace("\r\n", " ").replace("\r", " ").replace("\n", " ") + "\n" for h in hypotheses)
        (folder / f"beam{args.single}.hyp").write_text("".join(lines), encoding="utf-8")
        # The ids as generated, padding removed: equal files mean equal tokens, whatever the backend.
        pad = translator.pad_token_id
        lines = (" ".join(str(i) for i in ids if i != pad) + "\n" for ids in token_ids)
        (folder / f"beam{args.single}.ids").write_text("".join(lines), encoding="utf-8")
    figures = {"beams": args.single, "sentences": len(sources), "loop_seconds": loop_seconds}
    if args.no_score:  # scored elsewhere: keep sacrebleu out of the process, whose peak RSS is measured
        return {**figures, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    import sacrebleu

    if args.source_file:
        # Already tokenised like the references: score the text as it is, as `sacrebleu -tok none` does
        # (force: the tokenisation is deliberate, sacrebleu need not warn about it).
        peer_style = sacrebleu.corpus_bleu(hypotheses, [references], tokenize="none", force=True).score
    else:
        peer_style = sacrebleu.corpus_bleu(
            [peer_tokenise(h) for h in hypotheses],
            [[peer_tokenise(r) for r in references]],
            tokenize="none",
            force=True,
        ).score
    return {
        **figures,
        "bleu_cased_13a": sacrebleu.corpus_bleu(hypotheses, [references], force=bool(args.source_file)).score,
        "chrf": sacrebleu.corpus_chrf(hypotheses, [references]).score,
        "bleu_peer_style": peer_style,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def read_test_set(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """Sources and references: two plain-text files (one sentence a line) or one JSONL in the translation layout."""
    if args.source_file:
        sources, references = read_lines(args.source_file), read_lines(args.reference_file)
        if len(sources) != len(references):
            sys.exit(f"{args.source_file} has {len(sources)} lines but {args.reference_file} has {len(references)}")
        return sources, references
    pairs = [row["translation"] for row in read_jsonl(args.test_file)]
    return [pair[args.source_lang] for pair in pairs], [pair[args.target_lang] for pair in pairs]


def detokenise(tokenizer, output, keep_unk: bool) -> list[str]:
    """Generated ids → text; with `keep_unk`, `<unk>` stays in the text, as the peer toolkits print it.

    skip_special_tokens would drop `<unk>` too, which shortens hypotheses the peers leave
    `<unk>` in; so only padding, start and end tokens are removed before decoding.
    """
    if not keep_unk:
        return tokenizer.batch_decode(output, skip_special_tokens=True)
    dropped = {tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id}
    return [
        tokenizer.decode([i for i in row if i not in dropped], skip_special_tokens=False) for row in output.tolist()
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="Saved translator folder.")
    parser.add_argument("--test-file", default=str(DEFAULT_TEST), help="JSONL in the HF translation layout.")
    parser.add_argument("--source-file", help="Plain-text sources, one a line (instead of --test-file).")
    parser.add_argument("--reference-file", help="Plain-text references, one a line (with --source-file).")
    parser.add_argument("--keep-unk", action="store_true", help="Leave <unk> in the hypotheses, as the peers do.")
    parser.add_argument("--hypotheses-dir", help="Write the translations to DIR/beam{k}.hyp.")
    parser.add_argument("--no-score", action="store_true", help="With --single: decode and time only, no BLEU/chrF.")
    parser.add_argument("--json", help="Also write the figures (one row per beam size) to this JSON file.")
    parser.add_argument("--source-lang", default="en")
    parser.add_argument("--target-lang", default="de")
    parser.add_argument("--beams", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--batch-size", type=int, default=64, help="Sentences per batch (the peers use 64).")
    parser.add_argument("--max-new-tokens", type=int, default=100, help="The peers decode up to 100 tokens.")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default).")
    parser.add_argument(
        "--length-penalty",
        type=float,
        default=0.0,
        help="Beam score = log-probability / length**penalty; 0 ranks by log-probability, as the peers' `none`.",
    )
    parser.add_argument(
        "--early-stopping",
        type=lambda v: {"true": True, "false": False}.get(v.lower(), v),
        choices=[True, False, "never"],
        help="Beam search stops a sentence once num_beams hypotheses ended (true), once no running one can beat them "
        "(false), or never; unset: the model's generation config.",
    )
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="Weights and compute.")
    parser.add_argument("--quantize", choices=["int8"], help="int8 weights and activations (model.quantize_int8()).")
    parser.add_argument("--onnx", metavar="DIR", help="Decode with onnxruntime from `python -m hf_rnn.export` output.")
    parser.add_argument("--device", default="cpu", help="Where generate() runs: cpu (default), cuda, cuda:1, ...")
    parser.add_argument(
        "--single",
        type=int,
        metavar="K",
        help="Decode once with beam size K in this process and print its figures as JSON (no whole-process time).",
    )
    args = parser.parse_args()
    if args.no_score and args.single is None:
        parser.error("--no-score goes with --single (the table needs the scores)")
    if args.onnx and args.device != "cpu":
        parser.error("--onnx decodes on the CPU with onnxruntime; --device is for the torch model")
    if bool(args.source_file) != bool(args.reference_file):
        parser.error("--source-file and --reference-file go together")
    for path in [args.source_file, args.reference_file] if args.source_file else [args.test_file]:
        if not Path(path).exists():
            parser.error(f"test file {path} not found (the default needs ../shared/data beside the repo)")

    if args.single is not None:
        row = run_one(args)
        if args.json:
            Path(args.json).write_text(json.dumps([row], indent=2))
        print(json.dumps(row))
        return

    rows = []
    for beams in args.beams:
        command = [sys.executable, __file__, *sys.argv[1:], "--single", str(beams)]
        started = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        whole = time.perf_counter() - started
        if result.returncode != 0:
            sys.exit(f"beam {beams} failed:\n{result.stderr[-3000:]}")
        row = json.loads(result.stdout.strip().splitlines()[-1])
        row["process_seconds"] = whole
        rows.append(row)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))

    import torch

    test = f"{args.source_file} → {args.reference_file}" if args.source_file else args.test_file
    print(
        f"model {args.model}; test {test}; torch {torch.__version__}, "
        f"threads {args.threads or torch.get_num_threads()}, batch {args.batch_size} sentences\n"
    )
    print(
        "| beams | decode loop s | whole process s | sentences/s (loop) | peak RSS MiB | BLEU (cased 13a) "
        "| BLEU (peer style) | chrF |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['beams']} | {r['loop_seconds']:.1f} | {r['process_seconds']:.1f} | "
            f"{r['sentences'] / r['loop_seconds']:.0f} | {r['peak_rss_mib']:.0f} | {r['bleu_cased_13a']:.2f} | "
            f"{r['bleu_peer_style']:.2f} | {r['chrf']:.2f} |"
        )


if __name__ == "__main__":
    main()
