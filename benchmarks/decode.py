"""Decoding speed, peak memory and BLEU of a saved translator on a test set (default: Multi30k test2016).

    python benchmarks/decode.py --model outputs/multi30k-en-de
    python benchmarks/decode.py --model DIR --test-file data.jsonl --source-lang en --target-lang ko --beams 1 5

Each setting (greedy, beam k) runs in its own fresh process so that the peak RSS and the
whole-process time are that setting's alone, as when the peers' `translate` commands are
timed. Reported per setting: the decode loop (tokenise → generate → detokenise, batched by
length like the peer toolkits), the whole process (interpreter start to exit, model loading
included), sentences/s, peak RSS, and BLEU both as sacreBLEU's default (cased, 13a) and as
the peer recipes compute it (lowercased, `\\w+|[^\\w\\s]` tokens, `-tok none`).
"""

import argparse
import json
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_TEST = REPO.parent / "shared" / "data" / "multi30k-en-de" / "test_2016_flickr.jsonl"
PEER_TOKENS = re.compile(r"\w+|[^\w\s]")


def peer_tokenise(text: str) -> str:
    """The tokenisation of ../shared/bench/peers/prep_data.py, so BLEU is computed the way the peers report it."""
    return " ".join(PEER_TOKENS.findall(text.strip().lower()))


def run_one(args: argparse.Namespace) -> dict:
    """Child process: decode the whole test set once with one beam size and report the figures as JSON."""
    import sacrebleu
    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    import hf_rnn  # noqa: F401  (registers the model classes)

    if args.threads:
        torch.set_num_threads(args.threads)
    pairs = [json.loads(line)["translation"] for line in Path(args.test_file).read_text().splitlines() if line.strip()]
    sources = [pair[args.source_lang] for pair in pairs]
    references = [pair[args.target_lang] for pair in pairs]
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForSeq2SeqLM.from_pretrained(args.model).eval()

    started = time.perf_counter()
    order = sorted(range(len(sources)), key=lambda i: len(tokenizer.tokenize(sources[i])))
    hypotheses: list[str] = [""] * len(sources)
    with torch.inference_mode():
        for start in range(0, len(order), args.batch_size):
            batch = order[start : start + args.batch_size]
            inputs = tokenizer([sources[i] for i in batch], return_tensors="pt", padding=True)
            # max_length counts the start token; it is also the limit the saved generation config uses.
            output = model.generate(**inputs, num_beams=args.single, max_length=args.max_new_tokens + 1)
            for index, text in zip(batch, tokenizer.batch_decode(output, skip_special_tokens=True)):
                hypotheses[index] = text
    loop_seconds = time.perf_counter() - started

    return {
        "beams": args.single,
        "sentences": len(sources),
        "loop_seconds": loop_seconds,
        "bleu_cased_13a": sacrebleu.corpus_bleu(hypotheses, [references]).score,
        "chrf": sacrebleu.corpus_chrf(hypotheses, [references]).score,
        "bleu_peer_style": sacrebleu.corpus_bleu(
            [peer_tokenise(h) for h in hypotheses], [[peer_tokenise(r) for r in references]], tokenize="none"
        ).score,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="Saved translator folder.")
    parser.add_argument("--test-file", default=str(DEFAULT_TEST), help="JSONL in the HF translation layout.")
    parser.add_argument("--source-lang", default="en")
    parser.add_argument("--target-lang", default="de")
    parser.add_argument("--beams", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--batch-size", type=int, default=64, help="Sentences per batch (the peers use 64).")
    parser.add_argument("--max-new-tokens", type=int, default=100, help="The peers decode up to 100 tokens.")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default).")
    parser.add_argument("--single", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not Path(args.test_file).exists():
        parser.error(f"test file {args.test_file} not found (the default needs ../shared/data beside the repo)")

    if args.single is not None:
        print(json.dumps(run_one(args)))
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

    import torch

    print(f"model {args.model}; test {args.test_file}; torch {torch.__version__}, "
          f"threads {args.threads or torch.get_num_threads()}, batch {args.batch_size} sentences\n")
    print("| beams | decode loop s | whole process s | sentences/s (loop) | peak RSS MiB | BLEU (cased 13a) "
          "| BLEU (peer style) | chrF |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['beams']} | {r['loop_seconds']:.1f} | {r['process_seconds']:.1f} | "
              f"{r['sentences'] / r['loop_seconds']:.0f} | {r['peak_rss_mib']:.0f} | {r['bleu_cased_13a']:.2f} | "
              f"{r['bleu_peer_style']:.2f} | {r['chrf']:.2f} |")


if __name__ == "__main__":
    main()
