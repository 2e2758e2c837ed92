"""hf-rnn beside OpenNMT-py and JoeyNMT on Multi30k en->de: training speed, decoding, equal-time quality.

    python benchmarks/peers.py                                   # every stage, ~1.5 h on a 2-core machine
    python benchmarks/peers.py --stages report                   # rebuild the Markdown from the JSON files
    python benchmarks/peers.py --stages decode report --tools hf # redo one tool's part
    python benchmarks/peers.py --throughput-steps 20 --quality-minutes 0.5 --reps 1 --out /tmp/smoke  # smoke run

Why one script: the peers' figures in ../shared/bench/peers/README.md come from another day's
idle machine; a comparison only means something when all three toolkits run back to back,
on the same machine, under the same load, and are timed the same way. The peer recipes
(../shared/bench/peers/*.sh, prep_data.py, ...) are called as they are, never copied.

Each tool runs from its own virtual environment holding only what it installs: what a process
imports sets its memory floor (importing transformers in an environment that also has scipy and
boto3 pulls both in, ~50 MiB), so every hf-rnn run uses PEERS_DIR/hf/bin/python (--hf-python).

Stages (each writes its raw results to OUT/<stage>.json, so any stage can be rerun alone and
`report` rebuilds OUT/README.md from whatever JSON is there):

- prep: the peers' venvs and data (install.sh, make_raw.py, prep_data.py, skipped when present),
  hf-rnn's own venv PEERS_DIR/hf (the README's install: `pip install torch==2.13.0`, then this
  repo, editable), then hf-rnn's copy of the same data in PEERS_DIR/hf-data: the peers' tokenised text with
  every out-of-vocabulary word replaced by `<unk>` (their two frequency>=2 vocabularies) and a
  word-level tokenizer listing the German words first, so `--model.decoder_vocab_size` gives hf-rnn
  exactly the peers' target vocabulary.
- throughput: --throughput-steps training steps of the common shape (batch 64 sentences, Adam 1e-3
  constant, no label smoothing: hf-rnn's config is overridden where it differs) per tool,
  interleaved (ONMT, hf-rnn input feeding on, Joey, hf-rnn input feeding off). Steady speed =
  median over the logging intervals after --warmup-steps, in sentences/s (64 x steps / seconds
  between log lines, the same for every tool), target tokens/s as each tool counts them, and
  target tokens/s counted uniformly (sentences/s x mean target length incl. EOS).
- decode: test2016 greedy and beam 5 with the quality-stage models (--decode-models throughput:
  the short same-shape runs' models), --reps fresh processes each, tools interleaved; decode
  loop and whole-process seconds (medians), peak RSS (GNU time, max), BLEU the peer way
  (`-tok none` on the lowercased tokenised reference) and chrF. --hf-decode-modes adds hf-rnn
  rows in its fast CPU modes (bf16 weights; onnxruntime, float and int8, from `python -m hf_rnn.export`),
  interleaved with the others.
- quality: --quality-minutes of training per tool. hf-rnn runs its own recipe (--hf-config; on the
  peers' word-level data, or with --hf-quality-data raw on the raw text with its own tokenizer)
  with --max_train_minutes and no mid-run evaluation or checkpoints;
  the peers get the number of steps their measured steady speed fits into the same minutes.
  BLEU/chrF the peer way, greedy and beam 5.
- ceiling (optional, not in the default list): benchmarks/train_step.py, the bare-PyTorch twin.
- report: OUT/README.md.
"""

import argparse
import ast
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
RECIPES = SHARED / "bench" / "peers"
MULTI30K = SHARED / "data" / "multi30k-en-de"
STAGES = ("prep", "throughput", "quality", "decode", "report")
OPTIONAL_STAGES = ("ceiling",)
TOOLS = ("onmt", "joey", "hf")
NAMES = {
    "onmt": "OpenNMT-py",
    "joey": "JoeyNMT",
    "hf": "hf-rnn",
    "hf-if-on": "hf-rnn IF on",
    "hf-if-off": "hf-rnn IF off",
    "hf-bf16": "hf-rnn, bf16 weights",
    "hf-onnx": "hf-rnn, onnxruntime",
    "hf-onnx-int8": "hf-rnn, onnxruntime int8",
}
# hf-rnn's reduced-precision and exported decoding modes (rows beside fp32): decode.py's flags, or the flags of
# `python -m hf_rnn.export` for a mode that decodes the decode stage's model exported to ONNX (`--onnx DIR`).
HF_DECODE_MODES = {
    "bf16": {"decode": ["--dtype", "bfloat16"]},
    "onnx": {"export": []},
    "onnx-int8": {"export": ["--quantize", "int8"]},
}
BATCH = 64  # sentences per training batch: the peer recipes' shape (and configs/multi30k_en_de.yaml's)
BEAMS = (1, 5)
SPECIALS = ("<pad>", "<s>", "</s>", "<unk>")  # ids 0-3, as hf_rnn/data/tokenization.py fixes them
THREADS_ENV = {"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}  # what the peer scripts export
# Same-shape runs (throughput stage, whose models the decode stage scores): the peers' optimisation
# (Adam 1e-3 constant, no label smoothing) whatever the hf-rnn config's own time-budget recipe says.
HF_PEER_RECIPE = ["--learning_rate", "0.001", "--lr_scheduler_type", "constant", "--label_smoothing_factor", "0"]
# Equal-time runs: the whole budget goes to training, as in the peers' runs (no mid-run evaluation or checkpoints).
HF_QUALITY_OVERRIDES = ["--eval_strategy", "no", "--save_strategy", "no"]
PEER_DATA_FILES = [f"{split}.tok.{lang}" for split in ("train", "val", "test") for lang in ("en", "de")] + [
    f"vocab.{kind}.{lang}" for kind in ("onmt", "joey") for lang in ("en", "de")
]

sys.path.insert(0, str(Path(__file__).resolve().parent))
from decode import peer_tokenise  # noqa: E402  (the tokenisation decode.py scores "peer style" with)
from machine import cpu_model  # noqa: E402
from text_files import read_lines  # noqa: E402


class StageError(RuntimeError):
    """A step of a stage failed; the message says which command and shows the end of its log."""


# ----------------------------------------------------------------------------------------- helpers


def say(message: str) -> None:
    """Progress line with a timestamp: stages take minutes to hours, the log should say when things happened."""
    print(f"[{datetime.now():%Y-%m-%d %H:%M:%S}] {message}", flush=True)


def load_average() -> str:
    """`uptime`'s load averages: on 2 cores any other job changes every figure, so each stage records it."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f}"


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


def run(
    command: Sequence[str], log: Path, env: dict[str, str] | None = None, timeout: float | None = None
) -> list[tuple[float, str]]:
    """Run a command with stdout+stderr into `log`; return its lines with their arrival times (time.time()).

    The arrival times are how hf-rnn's training speed is read between log lines (the Trainer
    prints a dict per logging interval but no time), the way the peers' log timestamps are.
    A non-zero exit raises StageError with the end of the log.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    stamped: list[tuple[float, str]] = []
    printable = " ".join(shlex.quote(str(c)) for c in command)
    with open(log, "w", encoding="utf-8") as sink:
        process = subprocess.Popen(
            [str(c) for c in command],
            cwd=REPO,
            env={**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            bufsize=1,
        )

        def pump() -> None:
            for line in process.stdout:
                stamped.append((time.time(), line.rstrip("\n")))
                sink.write(line)
                sink.flush()

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise StageError(f"timed out after {timeout:.0f} s: {printable}\nlog {log}:\n{tail(log)}") from None
        reader.join()
    if code != 0:
        raise StageError(f"exit status {code}: {printable}\nlog {log}:\n{tail(log)}")
    return stamped


def gnu_time(path: Path) -> dict:
    """Wall seconds, peak RSS (MiB) and CPU seconds from a `/usr/bin/time -v -o` file (as summarize.py reads it)."""
    if not path.exists():
        raise StageError(f"GNU time output {path} is missing (did /usr/bin/time run?)")
    fields = {}
    for line in path.read_text().splitlines():
        key, _, value = line.strip().rpartition(": ")
        fields[key] = value
    clock = fields["Elapsed (wall clock) time (h:mm:ss or m:ss)"].split(":")
    return {
        "wall_s": sum(float(x) * 60**i for i, x in enumerate(reversed(clock))),
        "peak_rss_mib": int(fields["Maximum resident set size (kbytes)"]) / 1024,
        "cpu_s": float(fields["User time (seconds)"]) + float(fields["System time (seconds)"]),
    }


def read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def stage_record(args: argparse.Namespace, out_json: Path) -> dict:
    """The stage's JSON so far (other tools' entries survive a rerun with --tools), stamped with this run."""
    record = read_json(out_json)
    record.update(
        command="python " + " ".join(shlex.quote(a) for a in sys.argv),
        load_before=load_average(),
        started=datetime.now().isoformat(timespec="seconds"),
    )
    if "hf" in args.tools and out_json.stem != "prep":
        record["hf_python"] = str(args.hf_python)
    record.setdefault("results", {})
    return record


def peer_env(args: argparse.Namespace, out: Path, steps: int, reps: int = 1) -> dict[str, str]:
    return {
        "PEERS_DIR": str(args.peers_dir),
        "OUT": str(out),
        "STEPS": str(steps),
        "LOG_EVERY": str(args.log_every_effective),
        "REPS": str(reps),
    }


def score(hypotheses: list[str], references: list[str]) -> dict:
    """BLEU as the peer recipes compute it (`sacrebleu REF -i HYP -tok none`), chrF on the same text, and the
    mean hypothesis length in tokens (decoding time grows with it: an undertrained model that never emits
    EOS runs to the 100-token limit)."""
    import sacrebleu

    if len(hypotheses) != len(references):
        raise StageError(f"{len(hypotheses)} hypotheses for {len(references)} references")
    return {
        "hyp_tokens": round(sum(len(h.split()) for h in hypotheses) / max(len(hypotheses), 1), 2),
        # force: the text is tokenised on purpose (sacrebleu would warn about "tokenized periods").
        "bleu": round(sacrebleu.corpus_bleu(hypotheses, [references], tokenize="none", force=True).score, 2),
        "chrf": round(sacrebleu.corpus_chrf(hypotheses, [references]).score, 2),
    }


# -------------------------------------------------------------------------------------------- prep


def stage_prep(args: argparse.Namespace) -> None:
    """Peer venvs and data (the recipes' own steps, only when missing), hf-rnn's venv, hf-rnn's copy of the data."""
    record = stage_record(args, args.out / "prep.json")
    env = {"PEERS_DIR": str(args.peers_dir)}
    for tool, package in (("onmt", "onmt"), ("joey", "joeynmt")):
        if tool not in args.tools:
            continue
        venv = args.peers_dir / tool
        if (venv / "bin" / "python").exists() and any(venv.glob(f"lib/python*/site-packages/{package}")):
            say(f"prep: {NAMES[tool]} venv present ({args.peers_dir / tool})")
            continue
        say(f"prep: installing {NAMES[tool]} (install.sh {tool}; minutes, needs the package index)")
        run(["bash", RECIPES / "install.sh", tool], args.peers_dir / f"install.{tool}.log", env)
    install_hf(args)
    data = args.peers_dir / "data"
    if all((data / name).exists() for name in PEER_DATA_FILES):
        say(f"prep: peer data present ({data})")
    else:
        if not MULTI30K.exists():
            raise StageError(f"{MULTI30K} is missing: the shared Multi30k copy must sit beside the repo")
        say("prep: make_raw.py + prep_data.py")
        run([sys.executable, RECIPES / "make_raw.py", MULTI30K, data], args.peers_dir / "make_raw.log", env)
        run([sys.executable, RECIPES / "prep_data.py", data], args.peers_dir / "prep_data.log", env)
    record["results"] = build_hf_data(data, args.peers_dir / "hf-data")
    write_json(args.out / "prep.json", record)
    r = record["results"]
    say(
        f"prep: hf-data ready: tokenizer {r['tokenizer_size']} ids, decoder vocabulary {r['decoder_vocab_size']}, "
        f"mean target length {r['mean_target_tokens']:.2f} tokens incl. EOS"
    )


def install_hf(args: argparse.Namespace) -> None:
    """hf-rnn's venv, installed as the README says (editable: it always runs the code in this checkout)."""
    venv = args.peers_dir / "hf"
    if (venv / "bin" / "python").exists() and any(venv.glob("lib/python*/site-packages/__editable__*hf_rnn*")):
        say(f"prep: hf-rnn venv present ({venv})")
        return
    say(f"prep: installing hf-rnn into {venv} (pip install torch==2.13.0, then -e {REPO}[export]; minutes)")
    log = args.peers_dir / "install.hf.log"
    run([sys.executable, "-m", "venv", "--clear", venv], log)
    run([venv / "bin" / "pip", "install", "--quiet", "torch==2.13.0"], log)
    # The export extra (onnx, onnxscript, onnxruntime) is for the ONNX decoding rows; transformers does not import
    # it, so the other rows' memory is unchanged. The int8 extra (torchao) is left out: transformers imports it.
    run([venv / "bin" / "pip", "install", "--quiet", "-e", f"{REPO}[export]"], log)


def hf_python(args: argparse.Namespace) -> Path:
    """The interpreter every hf-rnn run uses (see the module docstring)."""
    if not args.hf_python.exists():
        raise StageError(
            f"{args.hf_python} is missing: run the prep stage (it installs hf-rnn's venv) or pass --hf-python"
        )
    return args.hf_python


def vocabulary(path: Path) -> list[str]:
    """An OpenNMT-py vocab file (`word<TAB>count`, most frequent first): the words, in order."""
    return [line.split("\t")[0] for line in read_lines(path) if line.strip()]


def build_hf_data(data: Path, hf_data: Path) -> dict:
    """JSONL splits with the peers' out-of-vocabulary words as `<unk>`; a word-level tokenizer over both vocabularies.

    The tokenizer lists `<pad> <s> </s> <unk>`, then the German words, then the English words
    that are not German words too: target ids are 0..4+|de|-1, so `--model.decoder_vocab_size` cuts
    hf-rnn's output layer to exactly the peers' target vocabulary; the encoder's embedding has
    the whole tokenizer's rows (the German-only rows are never used by a source sentence).
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    english, german = vocabulary(data / "vocab.onmt.en"), vocabulary(data / "vocab.onmt.de")
    known = {"en": set(english), "de": set(german)}
    hf_data.mkdir(parents=True, exist_ok=True)

    def unk(line: str, lang: str) -> str:
        return " ".join(w if w in known[lang] else "<unk>" for w in line.split())

    stats = {}
    for ours, theirs in (("train", "train"), ("validation", "val"), ("test", "test")):
        en, de = read_lines(data / f"{theirs}.tok.en"), read_lines(data / f"{theirs}.tok.de")
        if len(en) != len(de):
            raise StageError(f"{theirs}.tok.en has {len(en)} lines but {theirs}.tok.de has {len(de)}")
        pairs = [(unk(s, "en"), unk(t, "de")) for s, t in zip(en, de)]
        with open(hf_data / f"{ours}.jsonl", "w", encoding="utf-8") as f:
            f.writelines(json.dumps({"translation": {"en": s, "de": t}}, ensure_ascii=False) + "\n" for s, t in pairs)
        # Plain sources for decode.py --source-file: the model must see `<unk>` where the peers do.
        (hf_data / f"{ours}.unk.en").write_text("".join(s + "\n" for s, _ in pairs), encoding="utf-8")
        words = {lang: sum(len(x.split()) for x in side) for lang, side in (("en", en), ("de", de))}
        unks = {lang: sum(pair[i].split().count("<unk>") for pair in pairs) for i, lang in enumerate(("en", "de"))}
        stats[ours] = {
            "sentences": len(pairs),
            **{f"unk_rate_{k}": round(unks[k] / max(words[k], 1), 4) for k in unks},
        }
        if ours == "train":
            stats["mean_target_tokens"] = (words["de"] + len(de)) / len(de)  # + EOS, as the losses count it
            stats["mean_source_tokens"] = words["en"] / len(en)

    vocab = {token: i for i, token in enumerate(SPECIALS)}
    for word in german + english:
        vocab.setdefault(word, len(vocab))
    decoder_vocab_size = len(SPECIALS) + len(german)
    if any(vocab[w] >= decoder_vocab_size for w in german):
        raise StageError("a German vocabulary word clashes with a special token; the target ids would not be first")
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.add_special_tokens(list(SPECIALS))
    tokenizer.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", vocab["</s>"])]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        model_input_names=["input_ids", "attention_mask"],
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        clean_up_tokenization_spaces=False,  # "a man ." must stay "a man ." (the references are tokenised)
    )
    fast.save_pretrained(hf_data / "tokenizer")
    check = fast.decode(fast("a man .")["input_ids"], skip_special_tokens=True)
    if check != "a man .":
        raise StageError(f"word-level tokenizer does not round-trip: 'a man .' -> {check!r}")
    return {
        "hf_data": str(hf_data),
        "vocab_en": len(english),
        "vocab_de": len(german),
        "tokenizer_size": len(vocab),
        "decoder_vocab_size": decoder_vocab_size,
        "unused_encoder_rows": len(vocab) - len(SPECIALS) - len(english),
        **stats,
    }


# -------------------------------------------------------------------------------------- throughput


def intervals(points: list[tuple[int, float]], own: list[float | None], warmup: int) -> dict:
    """Steady speed from (step, time) log points: per-interval sentences/s after `warmup`, median and window mean.

    `own[i]` is the tool's own target tokens/s for the interval ending at point i (None if unknown).
    """
    rows = []
    for i in range(1, len(points)):
        (s0, t0), (s1, t1) = points[i - 1], points[i]
        if s0 >= warmup and s1 > s0 and t1 > t0:
            rows.append((BATCH * (s1 - s0) / (t1 - t0), own[i]))
    if not rows:
        return {"intervals": 0}
    first = next(p for p in points if p[0] >= warmup)
    last = points[-1]
    own_known = [o for _, o in rows if o is not None]
    return {
        "intervals": len(rows),
        "window_steps": [first[0], last[0]],
        "sent_per_s": statistics.median(r for r, _ in rows),
        "sent_per_s_min": min(r for r, _ in rows),
        "sent_per_s_max": max(r for r, _ in rows),
        "sent_per_s_window": BATCH * (last[0] - first[0]) / (last[1] - first[1]),
        "own_tok_per_s": statistics.median(own_known) if own_known else None,
    }


STAMP = r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})"
ONMT_REPORT = re.compile(
    r"^\[" + STAMP + r" INFO\] Step (\d+)/\s*\d+;.*?sents:\s*(\d+);.*?(\d+)/\s*(\d+) tok/s;\s*(\d+) sec"
)
JOEY_REPORT = re.compile(
    r"^" + STAMP + r" - INFO - joeynmt\.training - Epoch\s+\d+, Step:\s+(\d+),.*Tokens per Sec:\s+(\d+)"
)
JOEY_START = re.compile(r"^" + STAMP + r" - INFO - joeynmt\.training - EPOCH 1\b")


def log_time(stamp: str) -> float:
    return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()


def parse_onmt(run_dir: Path, warmup: int) -> dict:
    """OpenNMT-py's report lines: `[time INFO] Step N/M; ... sents: S; ... src/tgt tok/s; E sec;`.

    OpenNMT-py 3.5.1 prints them to stdout (train.out); -log_file (train.log) is read if it has them instead.
    """
    points, own, elapsed = [], [], None
    logs = [run_dir / "train.log", run_dir / "train.out"]
    lines = next((read_lines(f) for f in logs if f.exists() and " INFO] Step " in f.read_text(errors="replace")), [])
    for line in lines:
        if m := ONMT_REPORT.match(line):
            points.append((int(m.group(2)), log_time(m.group(1))))
            own.append(float(m.group(5)))  # target tokens/s over the interval, OpenNMT-py's count
            elapsed = float(m.group(6))
    return {**intervals(points, own, warmup), "log_points": len(points), "train_loop_s": elapsed}


def parse_joey(run_dir: Path, warmup: int) -> dict:
    """JoeyNMT's `time - INFO - joeynmt.training - Epoch e, Step: N, ..., Tokens per Sec: T, Lr: ...` lines."""
    points, own, start = [], [], None
    for line in read_lines(run_dir / "train.out"):
        if m := JOEY_REPORT.match(line):
            points.append((int(m.group(2)), log_time(m.group(1))))
            own.append(float(m.group(3)))
        elif start is None and (m := JOEY_START.match(line)):
            start = log_time(m.group(1))
    loop = points[-1][1] - start if points and start is not None else None
    return {**intervals(points, own, warmup), "log_points": len(points), "train_loop_s": loop}


def parse_hf(run_dir: Path, stamped: list[tuple[float, str]], log_every: int, warmup: int) -> dict:
    """hf-rnn: the Trainer's log entries, timed by the arrival of their printed dicts (+ `target_tokens_per_second`).

    The printed dicts carry no step and format numbers as strings; trainer_state.json's
    log_history has the same entries in the same order with their steps (entry n is step
    n x logging_steps when it is missing). Without log lines the fallback is the Trainer's own
    train_runtime, which includes the warm-up.
    """
    arrivals = []
    for arrived, line in stamped:
        text = line.strip()
        if text.startswith("{") and "'loss'" in text:
            try:
                entry = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                continue
            if isinstance(entry, dict) and "loss" in entry:
                arrivals.append((arrived, entry))
    history = [e for e in read_json(run_dir / "trainer_state.json").get("log_history", []) if "loss" in e]
    if len(history) != len(arrivals):
        history = [{"step": (n + 1) * log_every, **entry} for n, (_, entry) in enumerate(arrivals)]
    points = [(int(e["step"]), arrived) for e, (arrived, _) in zip(history, arrivals)]
    own = [float(e["target_tokens_per_second"]) if "target_tokens_per_second" in e else None for e in history]
    result = {**intervals(points, own, warmup), "log_points": len(points), "own_count_logged": any(own)}
    metrics = read_json(run_dir / "all_results.json")
    result["train_loop_s"] = metrics.get("train_runtime")
    if not result.get("intervals") and metrics.get("train_runtime"):
        steps = metrics.get("train_steps_per_second", 0) * metrics["train_runtime"]
        result.update(sent_per_s=BATCH * steps / metrics["train_runtime"], fallback="train_runtime (warm-up included)")
    return result


def hf_train_command(args: argparse.Namespace, run_dir: Path, extra: list[str]) -> list[str]:
    return [
        "/usr/bin/time",
        "-v",
        "-o",
        run_dir / "train.time",
        hf_python(args),
        "train.py",
        args.hf_config,
        *extra,
        "--output_dir",
        run_dir,
        # The folder already holds this script's logs of the run (train.out, train.time), which train.py would
        # otherwise refuse as files no hf-rnn run recorded; it is made fresh for every run.
        "--overwrite_output_dir",
        "true",
        "--disable_tqdm",
        "true",
        *shlex.split(args.hf_train_args),
    ]


def fresh(run_dir: Path) -> Path:
    """An empty run folder (stale checkpoints or results would be read as this run's)."""
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    return run_dir


def prep_results(args: argparse.Namespace) -> dict:
    """The prep stage's results (hf-rnn's copy of the peers' data, its tokenizer and vocabulary sizes)."""
    prep = read_json(args.out / "prep.json").get("results")
    if not prep:
        raise StageError(f"{args.out / 'prep.json'} is missing: run the prep stage first")
    return prep


def stage_throughput(args: argparse.Namespace) -> None:
    """Same-shape training speed, interleaved ONMT, hf-rnn IF on, Joey, hf-rnn IF off."""
    prep = prep_results(args)
    record = stage_record(args, args.out / "throughput.json")
    steps, warmup, every = args.throughput_steps, args.warmup_effective, args.log_every_effective
    record.update(
        steps=steps,
        warmup_steps=warmup,
        log_every=every,
        batch_sentences=BATCH,
        mean_target_tokens=prep["mean_target_tokens"],
        hf_config=args.hf_config,
        hf_overrides=" ".join(HF_PEER_RECIPE),
    )
    hf_data = Path(prep["hf_data"])
    order = [t for t in ("onmt", "hf-if-on", "joey", "hf-if-off") if t.split("-")[0] in args.tools]
    record["results"].update({tool: [] for tool in order})
    for rep in range(1, args.throughput_reps + 1):
        for tool in order:
            run_dir = args.runs_dir / throughput_run(tool)
            load = load_average()
            say(f"throughput rep {rep}: {NAMES[tool]}, {steps} steps (load {load}) -> {run_dir}")
            started = time.time()
            if tool in ("onmt", "joey"):
                run(
                    ["bash", RECIPES / f"{tool}_run.sh", "train"],
                    run_dir / "peers.py.log",
                    peer_env(args, run_dir, steps),
                )
                parsed = parse_onmt(run_dir, warmup) if tool == "onmt" else parse_joey(run_dir, warmup)
            else:
                fresh(run_dir)
                feeding = "true" if tool == "hf-if-on" else "false"
                stamped = run(
                    hf_train_command(
                        args,
                        run_dir,
                        [
                            "--train_file",
                            hf_data / "train.jsonl",
                            "--tokenizer_name",
                            hf_data / "tokenizer",
                            "--model.decoder_vocab_size",
                            str(prep["decoder_vocab_size"]),
                            "--model.input_feeding",
                            feeding,
                            "--max_steps",
                            str(steps),
                            "--logging_steps",
                            str(every),
                            "--eval_strategy",
                            "no",
                            "--save_strategy",
                            "no",
                            *HF_PEER_RECIPE,
                        ],
                    ),
                    run_dir / "train.out",
                    THREADS_ENV,
                )
                parsed = parse_hf(run_dir, stamped, every, warmup)
            entry = {
                "run_dir": str(run_dir),
                "steps": steps,
                "load_before": load,
                "command_s": time.time() - started,
                **gnu_time(run_dir / "train.time"),
                **parsed,
            }
            if entry.get("sent_per_s"):
                entry["uniform_tok_per_s"] = entry["sent_per_s"] * prep["mean_target_tokens"]
            record["results"][tool].append(entry)
            write_json(args.out / "throughput.json", record)
            say(
                f"  {NAMES[tool]}: wall {entry['wall_s']:.0f} s, steady {fmt(entry.get('sent_per_s'), '.1f')} sent/s "
                f"over {entry.get('intervals', 0)} intervals, peak RSS {entry['peak_rss_mib']:.0f} MiB"
            )


def throughput_run(tool: str) -> str:
    """Run folder names: onmt-throughput, joey-throughput, hf-throughput-if-on, hf-throughput-if-off."""
    return f"hf-throughput-{tool.removeprefix('hf-')}" if tool.startswith("hf") else f"{tool}-throughput"


def steady(record: dict, tool: str) -> dict:
    """A tool's throughput entry; with several reps, the one with the median speed."""
    entries = [e for e in record.get("results", {}).get(tool, []) if e.get("sent_per_s")]
    if not entries:
        return {}
    return sorted(entries, key=lambda e: e["sent_per_s"])[len(entries) // 2]


# ------------------------------------------------------------------------------------------ decode


def peer_decode_once(args: argparse.Namespace, tool: str, run_dir: Path, steps: int, keep: Path) -> dict:
    """One `{tool}_run.sh translate` (greedy then beam 5, each its own process); copies its files to `keep`."""
    run(["bash", RECIPES / f"{tool}_run.sh", "translate"], keep / "peers.py.log", peer_env(args, run_dir, steps))
    pattern = r"Total translation time \(s\): ([\d.]+)" if tool == "onmt" else r"Generation took ([\d.]+)\[sec\]"
    rows = {}
    for beam in BEAMS:
        for suffix in ("log", "time", "hyp"):
            shutil.copy(run_dir / f"test.beam{beam}.{suffix}", keep / f"beam{beam}.{suffix}")
        found = re.search(pattern, (keep / f"beam{beam}.log").read_text(errors="replace"))
        if not found:
            log = keep / f"beam{beam}.log"
            raise StageError(f"no decode time ({pattern}) in {log}:\n{tail(log)}")
        timing = gnu_time(keep / f"beam{beam}.time")
        rows[beam] = {
            "loop_s": float(found.group(1)),
            "process_s": timing["wall_s"],
            "peak_rss_mib": timing["peak_rss_mib"],
            "hyp": str(keep / f"beam{beam}.hyp"),
        }
    return rows


def peer_text(hypotheses: list[str], data: str) -> list[str]:
    """hf-rnn's output as the peers score theirs: raw-text output is lowercased and regex-tokenised first;
    word-level output already is (tokenising it again would split `<unk>` into `< unk >`)."""
    return [peer_tokenise(h) for h in hypotheses] if data == "raw" else hypotheses


def hf_test_set(args: argparse.Namespace, data: str) -> list[str]:
    """decode.py's test-set arguments for a model trained on the peers' word-level data or on the raw text."""
    if data == "raw":
        return ["--test-file", MULTI30K / "test_2016_flickr.jsonl"]
    return [
        "--source-file",
        Path(prep_results(args)["hf_data"]) / "test.unk.en",
        "--reference-file",
        args.peers_dir / "data" / "test.tok.de",
        "--keep-unk",
    ]


def hf_decode_once(args: argparse.Namespace, model: Path, data: str, keep: Path, mode: list[str]) -> dict:
    """decode.py --single per beam size under GNU time: one fresh process each, as the peers' translate commands;
    `mode`: decode.py's flags for a fast CPU mode (HF_DECODE_MODES), empty for fp32.

    --no-score: the peers' translate processes do not score either (and sacrebleu would add to the peak RSS).
    """
    rows = {}
    for beam in BEAMS:
        stamped = run(
            [
                "/usr/bin/time",
                "-v",
                "-o",
                keep / f"beam{beam}.time",
                hf_python(args),
                "benchmarks/decode.py",
                "--model",
                model,
                *hf_test_set(args, data),
                "--no-score",
                *mode,
                "--batch-size",
                str(args.hf_decode_batch_size if beam > 1 else args.hf_greedy_batch_size),
                "--single",
                str(beam),
                "--hypotheses-dir",
                keep,
            ],
            keep / f"beam{beam}.log",
            THREADS_ENV,
        )
        figures = json.loads(next(line for _, line in reversed(stamped) if line.startswith("{")))
        timing = gnu_time(keep / f"beam{beam}.time")
        rows[beam] = {
            "loop_s": figures["loop_seconds"],
            "process_s": timing["wall_s"],
            "peak_rss_mib": timing["peak_rss_mib"],
            "hyp": str(keep / f"beam{beam}.hyp"),
        }
    return rows


def decode_models(args: argparse.Namespace) -> dict[str, dict]:
    """Each tool's model for the decode stage: its equal-time (quality) model, or with --decode-models
    throughput its same-shape throughput model (hf-rnn: the input-feeding one)."""
    if args.decode_models == "quality":
        entries = read_json(args.out / "quality.json").get("results", {})
        models = {
            tool: {**entries[tool], "data": entries[tool].get("data", "raw") if tool == "hf" else None}
            for tool in args.tools
            if tool in entries
        }
    else:
        throughput = read_json(args.out / "throughput.json")
        models = {}
        for tool in args.tools:
            entries = throughput.get("results", {}).get("hf-if-on" if tool == "hf" else tool) or [{}]
            models[tool] = {"steps": throughput.get("steps"), **entries[-1], "data": "peers"}  # the last run's model
    for tool in args.tools:
        entry = models.get(tool, {})
        saved = (
            Path(entry.get("run_dir", "?"))
            / {
                "onmt": f"model_step_{entry.get('steps')}.pt",
                "joey": f"model/{entry.get('steps')}.ckpt",
                "hf": "config.json",
            }[tool]
        )
        if not saved.exists():
            raise StageError(f"no {NAMES[tool]} model at {saved}: run the {args.decode_models} stage for it first")
    return models


def stage_decode(args: argparse.Namespace) -> None:
    """test2016 greedy and beam 5 with each tool's model (see `decode_models`), --reps rounds, tools interleaved."""
    references = read_lines(args.peers_dir / "data" / "test.tok.de")
    models = decode_models(args)
    record = stage_record(args, args.out / "decode.json")
    record.update(
        reps=args.reps,
        hf_decode_batch_size=args.hf_decode_batch_size,
        hf_greedy_batch_size=args.hf_greedy_batch_size,
        models=args.decode_models,
    )
    counts = record.get("model_steps") if isinstance(record.get("model_steps"), dict) else {}
    record["model_steps"] = {**counts, **{tool: entry["steps"] for tool, entry in models.items()}}
    order = [t for t in ("onmt", "hf", "joey") if t in args.tools]
    flags = {tool: [] for tool in order}
    if "hf" in order and args.hf_decode_modes:  # reported apart: not the arithmetic the peers do
        for position, mode in enumerate(args.hf_decode_modes, start=order.index("hf") + 1):
            order.insert(position, f"hf-{mode}")
            models[f"hf-{mode}"] = models["hf"]
            flags[f"hf-{mode}"] = HF_DECODE_MODES[mode].get("decode", [])
            if "export" in HF_DECODE_MODES[mode]:
                folder = args.runs_dir / "decode" / f"export-{mode}"
                export = HF_DECODE_MODES[mode]["export"]
                say(f"decode: exporting hf-rnn's model to {folder} {' '.join(export)}")
                shutil.rmtree(folder, ignore_errors=True)
                command = [hf_python(args), "-m", "hf_rnn.export", "--model", models["hf"]["run_dir"], *export]
                run([*command, "--output", folder], args.runs_dir / "decode" / f"export-{mode}.log")
                flags[f"hf-{mode}"] = ["--onnx", folder]
    if "hf" in order:  # fast-mode rows are read against this run's hf-rnn row: earlier runs' would mix two runs
        for stale in [key for key in record["results"] if key.startswith("hf-") and key not in order]:
            del record["results"][stale]
    runs = {tool: [] for tool in order}
    for rep in range(1, args.reps + 1):
        for tool in order:
            keep = args.runs_dir / "decode" / tool / f"rep{rep}"
            keep.mkdir(parents=True, exist_ok=True)
            say(f"decode rep {rep}/{args.reps}: {NAMES[tool]} greedy + beam 5 (load {load_average()})")
            run_dir = Path(models[tool]["run_dir"])
            if tool.startswith("hf"):
                rows = hf_decode_once(args, run_dir, models[tool]["data"], keep, flags[tool])
            else:
                rows = peer_decode_once(args, tool, run_dir, models[tool]["steps"], keep)
            runs[tool].append(rows)
            say(
                "  "
                + "; ".join(
                    f"beam {b}: loop {r['loop_s']:.1f} s, process {r['process_s']:.1f} s" for b, r in rows.items()
                )
            )
    for tool, reps in runs.items():
        record["results"][tool] = {}
        for beam in BEAMS:
            per_rep = [r[beam] for r in reps]
            hypotheses = read_lines(Path(per_rep[-1]["hyp"]))
            if tool.startswith("hf"):
                hypotheses = peer_text(hypotheses, models[tool]["data"])
            record["results"][tool][str(beam)] = {
                "loop_s": statistics.median(r["loop_s"] for r in per_rep),
                "process_s": statistics.median(r["process_s"] for r in per_rep),
                "peak_rss_mib": max(r["peak_rss_mib"] for r in per_rep),
                "loop_s_all": [round(r["loop_s"], 2) for r in per_rep],
                "process_s_all": [round(r["process_s"], 2) for r in per_rep],
                "sentences": len(references),
                **score(hypotheses, references),
            }
    write_json(args.out / "decode.json", record)


# ----------------------------------------------------------------------------------------- quality


def hf_step_budget(throughput: dict, seconds: float, input_feeding: bool) -> list[str]:
    """`--max_steps` so that the recipe's linear learning-rate decay ends inside the time budget.

    The estimate is hf-rnn's same-shape steady speed (with the run's input feeding) less 3 %:
    on 2026-11-27 the recipe's subword run went as fast as the word-level one (104 vs 102
    sent/s; a 15 % margin left it 2.4 of its 15 minutes unused). The time budget still stops
    the run if the machine is slower than that.
    """
    speed = steady(throughput, "hf-if-on" if input_feeding else "hf-if-off").get("sent_per_s")
    return ["--max_steps", str(max(1, round(0.97 * speed / BATCH * seconds)))] if speed else []


def hf_input_feeding(args: argparse.Namespace) -> bool:
    """Whether hf-rnn's quality run feeds attention back, as train.py reads --hf-config plus --hf-train-args."""
    code = (
        "import sys; from hf_rnn.training.arguments import parse_args; "
        "run = parse_args(sys.argv[1:]); print(run.task.config_class(**run.model).input_feeding)"
    )
    result = subprocess.run(
        [hf_python(args), "-c", code, args.hf_config, *shlex.split(args.hf_train_args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise StageError(f"train.py cannot read {args.hf_config} {args.hf_train_args}:\n{result.stderr[-2000:]}")
    return result.stdout.split()[-1] == "True"


def stage_quality(args: argparse.Namespace) -> None:
    """Equal training time: hf-rnn stops itself after M minutes; each peer gets the steps its steady speed fits in
    M."""
    throughput = read_json(args.out / "throughput.json")
    if not throughput and ({"onmt", "joey"} & set(args.tools)):
        raise StageError("quality needs throughput.json: the peers' step budgets come from their measured speed")
    references = read_lines(args.peers_dir / "data" / "test.tok.de")
    record = stage_record(args, args.out / "quality.json")
    record.update(
        minutes=args.quality_minutes,
        hf_config=args.hf_config,
        hf_overrides=" ".join(HF_QUALITY_OVERRIDES + shlex.split(args.hf_train_args)),
    )
    seconds = args.quality_minutes * 60
    for tool in [t for t in ("onmt", "hf", "joey") if t in args.tools]:
        run_dir = args.runs_dir / f"{tool}-quality"
        load = load_average()
        if tool == "hf":
            fresh(run_dir)
            say(f"quality: hf-rnn, {args.quality_minutes} min of training (load {load}) -> {run_dir}")
            if args.hf_quality_data == "peers":  # the peers' lowercased words, their vocabularies, <unk> kept
                prep = prep_results(args)
                hf_data = Path(prep["hf_data"])
                data = [
                    "--train_file",
                    hf_data / "train.jsonl",
                    "--tokenizer_name",
                    hf_data / "tokenizer",
                    "--model.decoder_vocab_size",
                    str(prep["decoder_vocab_size"]),
                ]
            else:  # raw cased text, hf-rnn's own subword tokenizer; test BLEU (cased 13a) at the end
                data = [
                    "--train_file",
                    MULTI30K / "train.jsonl",
                    "--validation_file",
                    MULTI30K / "validation.jsonl",
                    "--test_file",
                    MULTI30K / "test_2016_flickr.jsonl",
                ]
            feeding = hf_input_feeding(args)
            stamped = run(
                hf_train_command(
                    args,
                    run_dir,
                    [
                        *data,
                        "--max_train_minutes",
                        str(args.quality_minutes),
                        *hf_step_budget(throughput, seconds, feeding),
                        *HF_QUALITY_OVERRIDES,
                    ],
                ),
                run_dir / "train.out",
                THREADS_ENV,
            )
            metrics = read_json(run_dir / "all_results.json")
            step_lines = [int(m.group(1)) for _, line in stamped if (m := re.search(r"reached at step (\d+)", line))]
            steps = read_json(run_dir / "trainer_state.json").get("global_step") or (
                step_lines[-1]
                if step_lines
                else round(metrics.get("train_steps_per_second", 0) * metrics.get("train_runtime", 0))
            )
            say("  decoding test2016 greedy + beam 5 (benchmarks/decode.py)")
            hyps = run_dir / "test-hypotheses"
            run(
                [
                    hf_python(args),
                    "benchmarks/decode.py",
                    "--model",
                    run_dir,
                    *hf_test_set(args, args.hf_quality_data),
                    "--beams",
                    *map(str, BEAMS),
                    "--batch-size",
                    str(args.hf_decode_batch_size),
                    "--hypotheses-dir",
                    hyps,
                    "--json",
                    run_dir / "decode.json",
                ],
                run_dir / "decode.out",
                THREADS_ENV,
            )
            scores = {
                beam: score(peer_text(read_lines(hyps / f"beam{beam}.hyp"), args.hf_quality_data), references)
                for beam in BEAMS
            }
            entry = {
                "steps": steps,
                "train_loop_s": metrics.get("train_runtime"),
                "data": args.hf_quality_data,
                "input_feeding": feeding,
                "trainer_test_bleu_cased_13a": metrics.get("test_bleu"),
            }
        else:
            speed = steady(throughput, tool).get("sent_per_s")
            if not speed:
                raise StageError(f"no steady speed for {NAMES[tool]} in throughput.json")
            steps = max(1, round(speed / BATCH * seconds))
            say(
                f"quality: {NAMES[tool]}, {steps} steps (= {speed:.1f} sent/s x {args.quality_minutes} min; "
                f"load {load}) -> {run_dir}"
            )
            run(["bash", RECIPES / f"{tool}_run.sh", "all"], run_dir / "peers.py.log", peer_env(args, run_dir, steps))
            parsed = (parse_onmt if tool == "onmt" else parse_joey)(run_dir, args.warmup_effective)
            scores = {beam: score(read_lines(run_dir / f"test.beam{beam}.hyp"), references) for beam in BEAMS}
            recipe_bleu = {beam: (run_dir / f"test.beam{beam}.bleu").read_text().strip() for beam in BEAMS}
            entry = {"steps": steps, "train_loop_s": parsed.get("train_loop_s"), "recipe_bleu": recipe_bleu}
        entry.update(
            run_dir=str(run_dir),
            load_before=load,
            **{f"train_{k}": v for k, v in gnu_time(run_dir / "train.time").items()},
            **{f"beam{b}": s for b, s in scores.items()},
        )
        record["results"][tool] = entry
        write_json(args.out / "quality.json", record)
        say(f"  {NAMES[tool]}: {steps} steps, BLEU greedy {scores[1]['bleu']:.2f}, beam 5 {scores[5]['bleu']:.2f}")


# ----------------------------------------------------------------------------------------- ceiling


def stage_ceiling(args: argparse.Namespace) -> None:
    """benchmarks/train_step.py: hf-rnn's model against its bare-PyTorch twin (minutes; not in the default list)."""
    record = stage_record(args, args.out / "ceiling.json")
    command = [hf_python(args), "benchmarks/train_step.py", "--input-feeding", "on", "--rounds", "3"]
    say("ceiling: " + " ".join(command[1:]))
    stamped = run(command, args.runs_dir / "ceiling.log", THREADS_ENV)
    record["results"] = {
        "command": "python " + " ".join(command[1:]),
        "output": "\n".join(line for _, line in stamped),
    }
    write_json(args.out / "ceiling.json", record)


# ------------------------------------------------------------------------------------------ report


def fmt(value, spec: str = ".1f", none: str = "–") -> str:
    return none if value is None else format(value, spec)


def ratio(a, b) -> str:
    return f"{a / b:.2f}" if a and b else "–"


def versions(args: argparse.Namespace) -> list[str]:
    """Package versions in each tool's venv, and the hf_rnn commit (with '+dirty' for local changes)."""

    def installed(python: Path, *names: str) -> list[str]:
        code = (
            "import importlib.metadata as m, platform, sys; print(platform.python_version(), "
            "' '.join(m.version(n) for n in sys.argv[1:]))"
        )
        result = (
            subprocess.run([python, "-c", code, *names], capture_output=True, text=True, check=False)
            if python.exists()
            else None
        )
        found = result.stdout.split() if result and result.returncode == 0 else []
        return found if len(found) == len(names) + 1 else ["?"] * (len(names) + 1)

    git = {"cwd": REPO, "capture_output": True, "text": True}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], check=False, **git).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], check=False, **git).stdout.strip()
    python, torch, transformers, tokenizers, sacrebleu = installed(
        args.hf_python, "torch", "transformers", "tokenizers", "sacrebleu"
    )
    _, onmt, onmt_torch = installed(args.peers_dir / "onmt" / "bin" / "python", "OpenNMT-py", "torch")
    _, joey, joey_torch = installed(args.peers_dir / "joey" / "bin" / "python", "joeynmt", "torch")
    lines = {
        "hf": (
            f"- hf-rnn: commit {commit}{'+dirty' if dirty else ''}, torch {torch}, transformers {transformers}, "
            f"tokenizers {tokenizers}, sacrebleu {sacrebleu}, Python {python} (venv {args.hf_python.parent.parent})"
        ),
        "onmt": f"- OpenNMT-py {onmt} (torch {onmt_torch})",
        "joey": f"- JoeyNMT {joey} (torch {joey_torch})",
    }
    return [lines[tool] for tool in TOOLS if tool in args.tools]


def recipe(data: dict, joiner: str) -> str:
    """`config.yaml` JOINER `--overrides` as a stage recorded them."""
    if not data.get("hf_config"):
        return "its config"
    return f"`{Path(data['hf_config']).name}` {joiner} `{data.get('hf_overrides', '')}`"


def report_throughput(data: dict) -> list[str]:
    if not data.get("results"):
        return ["(no throughput.json)"]
    lines = [
        f"{data['steps']} steps of 64 sentences per tool; steady = median over the {data['log_every']}-step logging "
        f"intervals after step {data['warmup_steps']}; uniform tok/s = sent/s × {data['mean_target_tokens']:.2f} "
        "(mean target tokens incl. EOS, train.tok.de); own count = each toolkit's own target tokens/s (a "
        "short window of length-sorted batches can be shorter or longer than the mean). With several interleaved "
        "rounds a row is the round with the median steady speed; `rounds` lists every round's. hf-rnn: "
        f"{recipe(data, 'with the peers’ optimisation')}. Load before the stage: " + data["load_before"] + ".",
        "",
        (
            "| tool | wall s | steady sent/s | (min–max, intervals) | rounds sent/s | tok/s own count | tok/s uniform "
            "| peak RSS MiB | load before | sent/s vs OpenNMT-py | sent/s vs JoeyNMT |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    onmt, joey = steady(data, "onmt").get("sent_per_s"), steady(data, "joey").get("sent_per_s")
    for tool in ("onmt", "joey", "hf-if-on", "hf-if-off"):
        e = steady(data, tool) or (data["results"].get(tool) or [{}])[0]
        if not e:
            continue
        speed = e.get("sent_per_s")
        spread = (
            f"{e['sent_per_s_min']:.1f}–{e['sent_per_s_max']:.1f}, {e['intervals']}"
            if e.get("intervals")
            else e.get("fallback", "–")
        )
        hf = tool.startswith("hf")
        rounds = ", ".join(fmt(r.get("sent_per_s")) for r in data["results"].get(tool, []))
        lines.append(
            f"| {NAMES[tool]} | {e['wall_s']:.0f} | {fmt(speed)} | {spread} | {rounds} "
            f"| {fmt(e.get('own_tok_per_s'), ',.0f')} "
            f"| {fmt(e.get('uniform_tok_per_s'), ',.0f')} | {e['peak_rss_mib']:,.0f} | {e['load_before']} "
            f"| {ratio(speed, onmt) if hf else '–'} | {ratio(speed, joey) if hf else '–'} |"
        )
    return lines


def report_decode(data: dict) -> list[str]:
    if not data.get("results"):
        return ["(no decode.json)"]
    results = data["results"]
    counts = data.get("model_steps", {})
    steps = (
        ", ".join(f"{NAMES[t]} {n}" for t, n in counts.items())
        if len(set(counts.values())) > 1
        else next(iter(counts.values()), "?")
    )
    origin = (
        "the equal-time (quality) stage, so of similar quality"
        if data.get("models") == "quality"
        else "the throughput stage (hf-rnn: input feeding on)"
    )
    lines = [
        f"test2016 (1,000 sentences), models from {origin} ({steps} steps), "
        f"batch 64 sentences (hf-rnn: greedy {data.get('hf_greedy_batch_size', data['hf_decode_batch_size'])}, "
        f"beam {data['hf_decode_batch_size']}), max 100 tokens, no length penalty; "
        f"medians of {data['reps']} fresh processes per setting, peak RSS the max. BLEU: `-tok none` against the "
        "lowercased tokenised reference, `<unk>` left in every hypothesis. Speed ratio: hf-rnn sent/s over the "
        "faster peer's. Decoding time grows with the length of what a model writes, and models "
        "write different lengths (hyp tokens/sent), so output tokens/s is given too, with its own ratio. "
        "Load before the stage: " + data["load_before"] + ".",
        "",
        (
            "| beams | tool | decode loop s | whole process s | sent/s (loop) | hyp tokens/sent | output tok/s (loop) "
            "| peak RSS MiB | BLEU | chrF | loop speed vs faster peer | output tok/s vs faster peer "
            "| process speed vs faster peer |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for beam in map(str, BEAMS):
        peers = [results[t][beam] for t in ("onmt", "joey") if t in results]
        best_loop = min((p["loop_s"] for p in peers), default=None)
        best_process = min((p["process_s"] for p in peers), default=None)

        def token_rate(r: dict) -> float | None:
            return r["sentences"] * r["hyp_tokens"] / r["loop_s"] if r.get("hyp_tokens") else None

        best_rate = max((token_rate(p) or 0 for p in peers), default=None) or None
        for tool in ("onmt", "joey", "hf", *(f"hf-{mode}" for mode in HF_DECODE_MODES)):
            if tool not in results:
                continue
            r = results[tool][beam]
            hf = tool.startswith("hf")
            rate = token_rate(r)
            lines.append(
                f"| {beam} | {NAMES[tool]} | {r['loop_s']:.1f} | {r['process_s']:.1f} "
                f"| {r['sentences'] / r['loop_s']:.0f} | {fmt(r.get('hyp_tokens'))} | {fmt(rate, ',.0f')} "
                f"| {r['peak_rss_mib']:,.0f} | {r['bleu']:.2f} | {r['chrf']:.2f} "
                f"| {ratio(best_loop, r['loop_s']) if hf else '–'} "
                f"| {ratio(rate, best_rate) if hf and rate and best_rate else '–'} "
                f"| {ratio(best_process, r['process_s']) if hf else '–'} |"
            )
    return lines


def report_quality(data: dict) -> list[str]:
    if not data.get("results"):
        return ["(no quality.json)"]
    results = data["results"]
    hf = results.get("hf", {})
    hf_data = (
        "the peers' lowercased word-level data and vocabularies"
        if hf.get("data") == "peers"
        else "the raw cased text with its own subword tokenizer"
    )
    feeding = {True: ", input feeding on", False: ", input feeding off"}.get(hf.get("input_feeding"), "")
    lines = [
        f"{data['minutes']} minutes of training each. hf-rnn: its own recipe ({recipe(data, 'with')}{feeding}) on "
        f"{hf_data}, stopped by `--max_train_minutes`; "
        "the peers: the recipes with the steps their steady speed (throughput stage) fits into the same time, so "
        "their actual training time depends on the load then and now (see the columns). "
        "BLEU the peer way, `-tok none` against the lowercased tokenised reference"
        + (" (hf-rnn's hypotheses lowercased and regex-tokenised first)" if hf.get("data") != "peers" else "")
        + "; chrF of the beam-5 output on the same text. Load before the stage: "
        + data["load_before"]
        + ".",
        "",
        (
            "| tool | training loop min | wall min (GNU time) | steps | BLEU greedy | BLEU beam 5 | chrF beam 5 "
            "| beam-5 BLEU vs better peer |"
        ),
        "|---|---|---|---|---|---|---|---|",
    ]
    best = max((results[t]["beam5"]["bleu"] for t in ("onmt", "joey") if t in results), default=None)
    for tool in ("onmt", "joey", "hf"):
        if tool not in results:
            continue
        r = results[tool]
        delta = f"{r['beam5']['bleu'] - best:+.2f}" if tool == "hf" and best is not None else "–"
        loop = r.get("train_loop_s")
        lines.append(
            f"| {NAMES[tool]} | {fmt(loop / 60 if loop else None)} | {r['train_wall_s'] / 60:.1f} | {r['steps']} "
            f"| {r['beam1']['bleu']:.2f} | {r['beam5']['bleu']:.2f} | {r['beam5']['chrf']:.2f} | {delta} |"
        )
    return lines


def stage_report(args: argparse.Namespace) -> None:
    """OUT/README.md from the stage JSON files that exist."""
    data = {name: read_json(args.out / f"{name}.json") for name in (*STAGES[:-1], *OPTIONAL_STAGES)}
    prep = data["prep"].get("results", {})
    commands = sorted({d["command"] for d in data.values() if d.get("command")})
    tools = " vs ".join(NAMES[tool] for tool in ("hf", "onmt", "joey") if tool in args.tools)
    lines = [
        f"# {tools} on Multi30k en→de (CPU)",
        "",
        f"Written {datetime.now():%Y-%m-%d %H:%M} by `benchmarks/peers.py`. Machine: {cpu_model()}, "
        f"{os.cpu_count()} logical cores, 2 threads per tool (OMP_NUM_THREADS=2). Load (1, 5, 15 min) before each "
        "stage: " + ", ".join(f"{name} {d['load_before']}" for name, d in data.items() if d.get("load_before")) + ".",
        "",
        *versions(args),
        "",
        "hf-rnn's interpreter per stage: "
        + "; ".join(
            f"{name} "
            + (
                f"`{d['hf_python']}`"
                if d.get("hf_python")
                else "not recorded (before hf-rnn had its own venv: the environment peers.py ran in)"
            )
            for name, d in data.items()
            if name != "prep" and d.get("results")
        )
        + ".",
        "",
        "Command(s):",
        "",
        *[f"    {c}" for c in commands],
        "",
        "Common shape (../shared/bench/peers/README.md): emb 256, bi-LSTM 2×256, LSTM decoder 512, general "
        "attention, input feeding, dropout 0.3, Adam 1e-3, clip 5, batch 64 sentences. Throughput and decoding use "
        "the peers' data for everyone: lowercased `\\w+|[^\\w\\s]` tokens, frequency ≥ 2 vocabularies "
        + (
            f"(en {prep['vocab_en']:,}, de {prep['vocab_de']:,}); hf-rnn reads them through a word-level tokenizer "
            f"of {prep['tokenizer_size']:,} ids with `--model.decoder_vocab_size {prep['decoder_vocab_size']}`."
            if prep
            else "(prep.json missing)"
        ),
        "",
        "## 1. Training throughput (same shape, same data)",
        "",
        *report_throughput(data["throughput"]),
        "",
        "## 2. Decoding test2016",
        "",
        *report_decode(data["decode"]),
        "",
        "## 3. Equal-time quality",
        "",
        *report_quality(data["quality"]),
        "",
        "## Bare PyTorch ceiling",
        "",
    ]
    ceiling = data["ceiling"].get("results")
    if ceiling:
        output = ceiling["output"].splitlines()
        start = max((i for i, line in enumerate(output) if line.startswith("train_step.py")), default=0)
        lines += [
            f"`{ceiling['command']}` (hf-rnn's model vs a bare-PyTorch twin, same batches):",
            "",
            *output[start:],
        ]
    else:
        lines.append("Not measured in this run (`--stages ceiling report` adds it; a few minutes).")
    lines += [
        "",
        "## Known differences between the recipes",
        "",
        (
            "- Batching: OpenNMT-py fills length-sorted buckets (its bucket pool is most of its training RSS), hf-rnn "
            "groups by length (`group_by_length`), JoeyNMT draws random batches (more padding per real token)."
        ),
        (
            "- JoeyNMT sets the LSTM forget-gate bias to 1 and starts its decoder from the last encoder state; "
            "OpenNMT-py has no bridge; hf-rnn uses a tanh bridge."
        ),
        "- hf-rnn's source embedding has one row per tokenizer id "
        + (
            f"({prep['unused_encoder_rows']:,} German-only rows never used by a source sentence, but updated by Adam)."
            if prep
            else "."
        ),
        (
            "- Equal-time quality with `--hf-quality-data raw`: hf-rnn learns cased raw text with subwords and is "
            "scored "
            "after lowercasing and tokenising; the peers learn lowercased words and print `<unk>` for rare ones "
            "(never a match). With `peers` (the default) all three learn, and print, the same words."
        ),
        (
            "- Decoding time grows with the hypothesis length (column `hyp tokens/sent`): an undertrained model "
            "that rarely emits EOS runs to the 100-token limit. Whole-process time includes each toolkit's start-up."
        ),
        "",
    ]
    (args.out / "README.md").write_text("\n".join(lines))
    say(f"report: {args.out / 'README.md'}")


# -------------------------------------------------------------------------------------------- main


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument(
        "--stages",
        nargs="+",
        choices=STAGES + OPTIONAL_STAGES,
        default=list(STAGES),
        help="stages to run, in the order given; `ceiling` (train_step.py, minutes) only when named",
    )
    parser.add_argument("--peers-dir", type=Path, default=REPO / "peers-work", help="venvs, data, hf-data (PEERS_DIR)")
    parser.add_argument("--runs-dir", type=Path, help="training/decoding run folders; unset: PEERS_DIR/runs")
    parser.add_argument(
        "--out", type=Path, default=REPO / "benchmarks" / "results" / "peers", help="stage JSON files and README.md"
    )
    parser.add_argument("--tools", nargs="+", choices=TOOLS, default=list(TOOLS))
    parser.add_argument("--throughput-steps", type=int, default=200, help="training steps per tool")
    parser.add_argument("--throughput-reps", type=int, default=1, help="rounds of the interleaved throughput runs")
    parser.add_argument("--warmup-steps", type=int, default=50, help="steps left out of the steady speed")
    parser.add_argument("--log-every", type=int, default=25, help="logging interval (steps) for every tool")
    parser.add_argument("--quality-minutes", type=float, default=15.0, help="training minutes per tool")
    parser.add_argument("--reps", type=int, default=3, help="fresh decoding processes per tool and beam size")
    parser.add_argument("--hf-config", default="configs/multi30k_en_de.yaml", help="hf-rnn's training config")
    parser.add_argument(
        "--hf-quality-data",
        choices=("peers", "raw"),
        default="peers",
        help="hf-rnn's equal-time training data: the peers' lowercased words, or the raw cased text",
    )
    parser.add_argument(
        "--hf-decode-modes",
        nargs="*",
        choices=list(HF_DECODE_MODES),
        default=list(HF_DECODE_MODES),
        help="hf-rnn's fast CPU decoding modes, each a row beside fp32 (not the peers' arithmetic): bf16 weights, "
        "onnxruntime, onnxruntime int8; none: fp32 only",
    )
    parser.add_argument(
        "--decode-models",
        choices=("quality", "throughput"),
        default="quality",
        help="decode the equal-time models (similar quality) or the short same-shape runs' models",
    )
    parser.add_argument(
        "--hf-decode-batch-size", type=int, default=64, help="hf-rnn's beam-search batch (sentences; x beams rows)"
    )
    parser.add_argument(
        "--hf-greedy-batch-size",
        type=int,
        default=128,
        help="hf-rnn's greedy batch (sentences): ended sentences leave the batch, so larger is faster "
        "(256: ~5%% faster than 128, ~55 MiB more peak RSS)",
    )
    parser.add_argument(
        "--hf-python",
        type=Path,
        help="interpreter for hf-rnn's runs; unset: PEERS_DIR/hf/bin/python, made by the prep stage",
    )
    parser.add_argument(
        "--hf-train-args",
        default="",
        help="extra train.py flags for every hf-rnn run, e.g. '--max_train_samples 2000'",
    )
    args = parser.parse_args()
    for name in (
        "throughput_steps",
        "throughput_reps",
        "reps",
        "log_every",
        "hf_decode_batch_size",
        "hf_greedy_batch_size",
    ):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.quality_minutes <= 0 or args.warmup_steps < 0:
        parser.error("--quality-minutes must be positive and --warmup-steps not negative")
    args.peers_dir = args.peers_dir.resolve()
    args.runs_dir = (args.runs_dir or args.peers_dir / "runs").resolve()
    args.hf_python = (
        args.hf_python or args.peers_dir / "hf" / "bin" / "python"
    )  # not resolved: a venv's python is a link
    args.out = args.out.resolve()
    args.hf_config = str(Path(args.hf_config).resolve())
    if not Path(args.hf_config).exists():
        parser.error(f"--hf-config {args.hf_config} not found")
    # Short runs still need a few log lines after the warm-up: at least 4 intervals, warm-up at most half the run.
    args.log_every_effective = min(args.log_every, max(1, args.throughput_steps // 4))
    half = args.throughput_steps // 2 // args.log_every_effective * args.log_every_effective
    args.warmup_effective = min(args.warmup_steps, half)
    return args


def main() -> None:
    args = parse_args()
    if not RECIPES.exists():
        sys.exit(f"peer recipes not found at {RECIPES} (../shared must sit beside the repo)")
    if not Path("/usr/bin/time").exists():
        sys.exit("/usr/bin/time (GNU time) is needed for wall time and peak RSS: apt-get install time")
    runners = {
        "prep": stage_prep,
        "throughput": stage_throughput,
        "decode": stage_decode,
        "quality": stage_quality,
        "ceiling": stage_ceiling,
        "report": stage_report,
    }
    say(
        f"peers.py: stages {' '.join(args.stages)}; tools {' '.join(args.tools)}; out {args.out}; "
        f"runs {args.runs_dir}; load {load_average()}"
    )
    for stage in args.stages:
        say(f"== {stage} (load {load_average()})")
        try:
            runners[stage](args)
        except StageError as error:
            sys.exit(f"[{datetime.now():%H:%M:%S}] stage {stage} failed: {error}")
    say("done")


if __name__ == "__main__":
    main()
