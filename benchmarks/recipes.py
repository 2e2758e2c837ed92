"""Recipe experiments for Multi30k en→de within one hour of training on 2 CPU cores (issue 16).

    python benchmarks/recipes.py list                                   # variants: what they change, step budgets
    python benchmarks/recipes.py speed baseline hidden768 bpe4000       # steps/s: the budget that fills the hour
    python benchmarks/recipes.py train baseline ls0.2 emb-dropout0       # one run after the other, ~63 min each
    python benchmarks/recipes.py train ls0.2+hidden384 --seeds 1 2 3 4   # combined variants, one run per seed
    python benchmarks/recipes.py length-penalty baseline                # decode-time: pick on validation, report test
    python benchmarks/recipes.py average baseline                       # last checkpoint vs averages of the last 2..5
    python benchmarks/recipes.py ensemble ls0.2-seed1 ls0.2-seed2 ls0.2-seed3 [--average-last 3]
    python benchmarks/recipes.py tatoeba ls0.2                          # that recipe on Tatoeba en→ko
    python benchmarks/recipes.py report                                 # the results as a markdown table
    python benchmarks/recipes.py train baseline --smoke                 # a few minutes: checks the whole chain

A variant is the recipe the experiments started from (configs/multi30k_en_de.yaml: bi-LSTM 2x256, LSTM decoder 512
without input feeding, general attention, dropout 0.3, Adam 2e-3 decaying linearly to zero, BPE 8000, beam 5; with
label smoothing 0.1, which `BASE` keeps although the config ships 0.2 since 2026-12-01, so that every documented
command reproduces its figure) with a few overrides and a fixed step budget meant to fill the hour on an idle 2-core
machine (the recipe's 7,000 steps run at about 1.95 steps/s; the other budgets are estimates from the cost of each
change: `speed` measures them on the machine, ~1 min per variant, and suggests the budget to set in VARIANTS or pass as
`--max-steps`). The 60-minute guard (`max_train_minutes`) stays on; a run it cuts is marked `cut_by_time_budget`: its
learning rate decayed over the minutes instead of the steps (translation runs cut before 2026-12-01 kept the step
schedule: their rate stayed high), so it is not the step budget's run: compare it with runs of equal time, or rerun it
with a smaller budget.

Every run keeps its last 6 checkpoints, 500 steps apart, so that `average` can compare the last checkpoint with the
averages of the last 2..5 after the fact (`train.py --average_last_checkpoints K` does the same at the end of a run).
BLEU and chrF are sacreBLEU's defaults (cased, 13a) against the raw references, with beam 5 and length penalty 1
unless stated: the figures train.py reports. Commands append one JSON object per figure to
benchmarks/results/recipes/results.jsonl (`--smoke`: outputs/recipes-smoke/results.jsonl) with the date, the git
revision and the load average, and print it. Runs go to outputs/recipes/NAME (NAME: the variant, `-seedN` for
`--seeds`); a run whose folder holds a finished model is not trained again.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from text_files import read_jsonl  # sibling module: corpora read as written

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
MULTI30K = DATA / "multi30k-en-de"
TATOEBA = DATA / "tatoeba-en-ko"
TATOEBA_SHIPPED_CHRF = 13.6  # configs/tatoeba_en_ko.yaml as shipped: validation chrF, beam 5 (README results table)


@dataclass
class Variant:
    description: str
    args: list[str]
    max_steps: int


DROP = "--model.dropout"
EMB_DROP = "--model.embedding_dropout"
# The config as the experiments found it: each variant's overrides come after these.
BASE = ["--label_smoothing_factor", "0.1"]
VARIANTS = {
    "baseline": Variant("the recipe with label smoothing 0.1", [], 7000),
    # Dropout placement: the recipe drops 0.3 of the embeddings, between layers and of the attentional vector.
    "emb-dropout0": Variant("no embedding dropout (0.3 on the attentional vector only)", [EMB_DROP, "0"], 7000),
    "emb-dropout0.1": Variant("embedding dropout 0.1", [EMB_DROP, "0.1"], 7000),
    "dropout0.2": Variant("dropout 0.2 everywhere", [DROP, "0.2", EMB_DROP, "0.2"], 7000),
    "dropout0.4": Variant("dropout 0.4, embeddings 0.2", [DROP, "0.4", EMB_DROP, "0.2"], 7000),
    # Sizes: the softmax layer (hidden x vocabulary) and the decoder LSTM dominate a step.
    "emb512": Variant("embeddings 512", ["--model.embedding_size", "512"], 6300),
    "emb512-tied": Variant(
        "embeddings 512, tied with the output layer",
        ["--model.embedding_size", "512", "--model.tie_word_embeddings", "true"],
        6500,
    ),
    "hidden384": Variant("hidden 384 (encoder 2x192)", ["--model.hidden_size", "384"], 8500),
    "hidden768": Variant("hidden 768 (encoder 2x384)", ["--model.hidden_size", "768"], 4800),
    "input-feeding": Variant("input feeding on (a decoder loop over time)", ["--model.input_feeding", "true"], 4700),
    # Label smoothing.
    "ls0": Variant("no label smoothing", ["--label_smoothing_factor", "0"], 7000),
    "ls0.2": Variant("label smoothing 0.2", ["--label_smoothing_factor", "0.2"], 7000),
    # Learning-rate schedule.
    "lr1e-3": Variant("peak learning rate 1e-3", ["--learning_rate", "1e-3"], 7000),
    "lr3e-3": Variant("peak learning rate 3e-3", ["--learning_rate", "3e-3"], 7000),
    "cosine": Variant("cosine decay", ["--lr_scheduler_type", "cosine"], 7000),
    "warmup-cosine": Variant(
        "500 warm-up steps, cosine decay", ["--lr_scheduler_type", "cosine", "--warmup_steps", "500"], 7000
    ),
    # Arithmetic: bfloat16 autocast (AMX/avx512_bf16 products, the loss in float32) trains more steps in the hour.
    "bf16": Variant("bf16 autocast training", ["--bf16", "true"], 10000),
    # BPE size (fewer merges: longer sequences, a cheaper softmax).
    "bpe4000": Variant("joint BPE of 4,000", ["--tokenizer_vocab_size", "4000"], 8000),
    # Subword regularisation: every sentence segmented afresh each time it is batched.
    "bpe-dropout0.1": Variant("BPE-dropout 0.1 while training", ["--bpe_dropout", "0.1"], 7000),
    "bpe12000": Variant("joint BPE of 12,000", ["--tokenizer_vocab_size", "12000"], 6000),
    # Model selection on validation BLEU: beam-5 decoding of the validation set every 1,000 steps (~25 s each).
    "best-valid-bleu": Variant(
        "the checkpoint with the best validation BLEU (evaluated every 1,000 steps; early stopping, patience 3)",
        [
            "--eval_strategy",
            "steps",
            "--eval_steps",
            "1000",
            "--save_steps",
            "1000",
            "--load_best_model_at_end",
            "true",
        ]
        + ["--metric_for_best_model", "bleu", "--greater_is_better", "true", "--early_stopping_patience", "3"],
        6600,
    ),
}

COMMON = [
    "--save_strategy", "steps", "--save_steps", "500", "--save_total_limit", "6",
    "--max_train_minutes", "60", "--report_to", "none", "--disable_tqdm", "true", "--num_examples_to_print", "0",
]  # fmt: skip
# --smoke: the same chain on a sliver of the data, a few steps, 40 sentences decoded.
SMOKE = ["--max_train_samples", "600", "--max_eval_samples", "40", "--max_predict_samples", "40"]
SMOKE += ["--save_steps", "4", "--eval_steps", "4"]
SMOKE_STEPS, SMOKE_SENTENCES = 12, 40


def variant(name: str) -> Variant:
    """A variant by name, `BASE` first; `a+b` combines variants (later overrides win; the smaller step budget)."""
    parts = name.split("+")
    unknown = [part for part in parts if part not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variant(s) {', '.join(unknown)}; `python benchmarks/recipes.py list` shows them")
    chosen = [VARIANTS[part] for part in parts]
    return Variant(
        "; ".join(v.description for v in chosen),
        [*BASE, *(arg for v in chosen for arg in v.args)],
        min(v.max_steps for v in chosen),
    )


class Recorder:
    """Appends result rows (with date, git revision and load) to the results file and prints them."""

    def __init__(self, smoke: bool):
        folder = outputs(smoke) if smoke else REPO / "benchmarks" / "results" / "recipes"
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / "results.jsonl"
        revision = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True)
        self.git = revision.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")

    def add(self, row: dict) -> None:
        row = {
            **row,
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "git": self.git,
            "load_average": round(os.getloadavg()[0], 2),
        }
        with self.path.open("a", encoding="utf-8") as file:
            file.write(json.dumps(row, ensure_ascii=False) + "\n")
        print(json.dumps(row, ensure_ascii=False), flush=True)


def outputs(smoke: bool) -> Path:
    return REPO / "outputs" / ("recipes-smoke" if smoke else "recipes")


def read_pairs(path: Path, source: str, target: str, limit: int | None) -> tuple[list[str], list[str]]:
    rows = [row["translation"] for row in read_jsonl(path)]
    rows = rows[:limit] if limit else rows
    return [row[source] for row in rows], [row[target] for row in rows]


# --------------------------------------------------------------------------------------------------------------------
# Training


def train(args: argparse.Namespace, recorder: Recorder) -> None:
    for name in args.variants:
        chosen = variant(name)
        for seed in args.seeds or [None]:
            run_name = name if seed is None else f"{name}-seed{seed}"
            steps = args.max_steps or (SMOKE_STEPS if args.smoke else chosen.max_steps)
            extra = [*SMOKE] if args.smoke else []
            extra += [] if seed is None else ["--seed", str(seed)]
            data = ["--train_file", MULTI30K / "train.jsonl", "--validation_file", MULTI30K / "validation.jsonl"]
            data += ["--test_file", MULTI30K / "test_2016_flickr.jsonl"]
            argv = ["multi30k_en_de", *data, *COMMON, *chosen.args, *extra, "--max_steps", str(steps)]
            metrics = run_training(run_name, argv, outputs(args.smoke) / run_name)
            if metrics is None:
                continue
            metrics["test2016_bleu"], metrics["test2016_chrf"] = metrics.pop("test_bleu"), metrics.pop("test_chrf")
            row = {
                "command": "train",
                "run": run_name,
                "variant": chosen.description,
                "overrides": chosen.args + extra,
            }
            recorder.add({**row, "max_steps": steps, **metrics})


def run_training(run_name: str, argv: list, output_dir: Path) -> dict | None:
    """Train in a fresh process (its log beside the folder); the figures of its all_results.json."""
    if (output_dir / "all_results.json").exists():
        print(f"{output_dir} holds a finished run: not training it again.", flush=True)
        return None
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    log = output_dir.parent / f"{run_name}.log"
    command = [sys.executable, "-m", "hf_rnn.train", *map(str, argv), "--output_dir", str(output_dir)]
    print(f"{run_name}: training, log in {log}", flush=True)
    started = time.time()
    with log.open("w") as file:
        result = subprocess.run(command, cwd=REPO, stdout=file, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        raise SystemExit(f"{run_name}: training failed (status {result.returncode}); see {log}")
    results = json.loads((output_dir / "all_results.json").read_text())
    state = json.loads((output_dir / "trainer_state.json").read_text())
    max_steps = int(argv[argv.index("--max_steps") + 1]) if "--max_steps" in argv else state["max_steps"]
    return {
        "steps": state["global_step"],
        "cut_by_time_budget": state["global_step"] < max_steps and "early_stopping_patience" not in argv,
        "train_minutes": round(results["train_runtime"] / 60, 1),
        "steps_per_second": round(results["train_steps_per_second"], 3),
        "wall_minutes": round((time.time() - started) / 60, 1),
        **{
            f"{split}_{metric}": round(results[f"{prefix}_{metric}"], 2) if f"{prefix}_{metric}" in results else None
            for split, prefix in (("validation", "eval"), ("test", "test"))
            for metric in ("bleu", "chrf")
        },
    }


def speed(args: argparse.Namespace, recorder: Recorder) -> None:
    """Training steps per second of each variant's model and vocabulary (`--steps` steps, no evaluation), and the
    step budget that fills the hour with 3 % to spare for checkpoints and logging."""
    for name in args.variants:
        chosen = variant(name)
        cost = [
            item
            for flag, value in zip(chosen.args[::2], chosen.args[1::2])
            if flag.startswith("--model.") or flag in ("--tokenizer_vocab_size", "--bf16")
            for item in (flag, value)
        ]
        quiet = ["--report_to", "none", "--disable_tqdm", "true", "--num_examples_to_print", "0"]
        argv = ["multi30k_en_de", "--train_file", MULTI30K / "train.jsonl", *cost, *quiet]
        argv += ["--eval_strategy", "no", "--save_strategy", "no", "--max_steps", str(args.steps)]
        folder = outputs(args.smoke).with_name("recipes-speed") / name
        shutil.rmtree(folder, ignore_errors=True)
        metrics = run_training(f"speed-{name}", argv, folder)
        suggested = int(0.97 * 3600 * metrics["steps_per_second"]) // 100 * 100
        row = {"command": "speed", "run": name, "steps": metrics["steps"], "overrides": cost}
        recorder.add({**row, "steps_per_second": metrics["steps_per_second"], "suggested_max_steps": suggested})


# --------------------------------------------------------------------------------------------------------------------
# Decoding experiments (in this process)


def decode(model, tokenizer, sources: list[str], length_penalty: float = 1.0, batch_size: int = 64):
    """Beam-5 translations of `sources` in input order (batches of similar length), and the seconds they took."""
    import torch

    order = sorted(range(len(sources)), key=lambda i: len(tokenizer.tokenize(sources[i])))
    hypotheses = [""] * len(sources)
    started = time.perf_counter()
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            inputs = tokenizer([sources[i] for i in batch], return_tensors="pt", padding=True)
            output = model.generate(**inputs, num_beams=5, length_penalty=length_penalty)
            for index, text in zip(batch, tokenizer.batch_decode(output, skip_special_tokens=True)):
                hypotheses[index] = text
    return hypotheses, time.perf_counter() - started


def scores(hypotheses: list[str], references: list[str]) -> dict:
    import sacrebleu

    return {
        "bleu": round(sacrebleu.corpus_bleu(hypotheses, [references]).score, 2),
        "chrf": round(sacrebleu.corpus_chrf(hypotheses, [references]).score, 2),
    }


def evaluate(model, tokenizer, sets: dict, length_penalty: float = 1.0) -> dict:
    """BLEU, chrF and decoding seconds (beam 5) of `model` on each of `sets`: `{split}_bleu`, `{split}_chrf` and
    `{split}_seconds`."""
    row = {}
    for split, (sources, references) in sets.items():
        hypotheses, seconds = decode(model, tokenizer, sources, length_penalty=length_penalty)
        row.update({f"{split}_{key}": value for key, value in scores(hypotheses, references).items()})
        row[f"{split}_seconds"] = round(seconds, 1)
    return row


def evaluation_sets(smoke: bool) -> dict[str, tuple[list[str], list[str]]]:
    limit = SMOKE_SENTENCES if smoke else None
    return {
        "validation": read_pairs(MULTI30K / "validation.jsonl", "en", "de", limit),
        "test2016": read_pairs(MULTI30K / "test_2016_flickr.jsonl", "en", "de", limit),
    }


def load(folder: Path):
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer
    from transformers.utils import logging

    import hf_rnn  # noqa: F401  (registers the model classes)

    logging.disable_progress_bar()
    return AutoModelForSeq2SeqLM.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)


def run_folder(name: str, smoke: bool) -> Path:
    folder = Path(name) if Path(name).is_dir() else outputs(smoke) / name
    if not (folder / "config.json").exists():
        raise SystemExit(f"{folder} holds no trained model: `python benchmarks/recipes.py train {name}` first")
    return folder


def length_penalty(args: argparse.Namespace, recorder: Recorder) -> None:
    """Decode validation and test2016 with each length penalty; the best on validation is the one to report."""
    sets = evaluation_sets(args.smoke)
    for name in args.runs:
        model, tokenizer = load(run_folder(name, args.smoke))
        rows = []
        for penalty in args.penalties:
            row = {"command": "length-penalty", "run": name, "length_penalty": penalty}
            rows.append({**row, **evaluate(model, tokenizer, sets, length_penalty=penalty)})
        best = max(rows, key=lambda row: row["validation_bleu"])
        for row in rows:
            recorder.add({**row, "best_on_validation": row is best})


def average(args: argparse.Namespace, recorder: Recorder) -> None:
    """The run's last checkpoint against the averages of its last k checkpoints (k = 2..--max-k)."""
    from hf_rnn.average import average_checkpoints, complete_checkpoints

    sets = evaluation_sets(args.smoke)
    for name in args.runs:
        checkpoints = complete_checkpoints(run_folder(name, args.smoke))
        _, tokenizer = load(checkpoints[-1])
        for k in range(1, min(args.max_k, len(checkpoints)) + 1):
            chosen = checkpoints[-k:]
            model = average_checkpoints(chosen).eval()
            row = {"command": "average", "run": name, "last_k": k, "checkpoints": [p.name for p in chosen]}
            recorder.add({**row, **evaluate(model, tokenizer, sets)})


def ensemble(args: argparse.Namespace, recorder: Recorder) -> None:
    """Each member alone on test2016 (beam 5), then the ensemble on validation (to choose between ensembles without
    looking at the test set) and test2016: BLEU, chrF, and the ensemble's test2016 decoding time over the members'
    mean. With --average-last K each member is first the average of its last K checkpoints."""
    from hf_rnn.average import average_checkpoints, run_checkpoints
    from hf_rnn.compatibility import tokenizer_difference
    from hf_rnn.ensemble import Seq2SeqEnsemble

    sets = evaluation_sets(args.smoke)
    sources, references = sets["test2016"]
    members, tokenizer, row = [], None, {"command": "ensemble", "runs": args.runs, "average_last": args.average_last}
    for name in args.runs:
        folder = run_folder(name, args.smoke)
        model, own_tokenizer = load(folder)
        difference = tokenizer and tokenizer_difference(tokenizer, own_tokenizer, (args.runs[0], name))
        if difference:
            raise SystemExit(f"the runs cannot form an ensemble: {difference}")
        tokenizer = tokenizer or own_tokenizer
        if args.average_last:
            model = average_checkpoints(run_checkpoints(folder, args.average_last)).eval()
        hypotheses, seconds = decode(model, tokenizer, sources)
        row.setdefault("member_test2016_bleu", []).append(scores(hypotheses, references)["bleu"])
        row.setdefault("member_seconds", []).append(round(seconds, 1))
        members.append(model)
    row.update(evaluate(Seq2SeqEnsemble(members, args.runs), tokenizer, sets))
    row["seconds"] = row.pop("test2016_seconds")
    row["time_ratio_to_one_model"] = round(row["seconds"] / (sum(row["member_seconds"]) / len(members)), 2)
    recorder.add(row)


def tatoeba(args: argparse.Namespace, recorder: Recorder) -> None:
    """The Multi30k recipe's model and label smoothing with the variant's changes, on configs/tatoeba_en_ko.yaml,
    whose data, vocabulary, epochs, batch size, schedule and best-by-chrF selection stay: validation chrF beside the
    shipped config's 13.6."""
    for name in args.variants:
        data = ["--train_file", TATOEBA / "train.jsonl", "--validation_file", TATOEBA / "validation.jsonl"]
        extra = ["--max_steps", str(SMOKE_STEPS), "--max_train_samples", "300", "--max_eval_samples", "40"]
        carried = tatoeba_arguments(variant(name))
        run_name = f"tatoeba-{name}"
        argv = ["tatoeba_en_ko", *data, *carried, *(extra if args.smoke else [])]
        metrics = run_training(run_name, argv, outputs(args.smoke) / run_name)
        if metrics is not None:
            metrics = {k: v for k, v in metrics.items() if not k.startswith("test")}
            row = {"command": "tatoeba", "run": run_name, "overrides": carried, **metrics}
            recorder.add({**row, "shipped_validation_chrf": TATOEBA_SHIPPED_CHRF})


def yaml_value(value) -> str:
    """A `--model.field` value as train.py reads it (YAML)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def tatoeba_arguments(chosen: Variant) -> list[str]:
    """What a variant carries to Tatoeba: the Multi30k recipe's model section, then the variant's model fields and
    label smoothing, `BASE`'s included (each a flag and its value)."""
    import yaml

    recipe = yaml.safe_load((REPO / "configs" / "multi30k_en_de.yaml").read_text())
    model = [item for field, value in recipe["model"].items() for item in (f"--model.{field}", yaml_value(value))]
    carried = [
        item
        for flag, value in zip(chosen.args[::2], chosen.args[1::2])
        if flag.startswith("--model.") or flag == "--label_smoothing_factor"
        for item in (flag, value)
    ]
    quiet = ["--report_to", "none", "--disable_tqdm", "true", "--num_examples_to_print", "0"]
    return [*quiet, *model, *carried]


# --------------------------------------------------------------------------------------------------------------------


def report(args: argparse.Namespace, recorder: Recorder) -> None:
    """The training runs as a markdown table (for benchmarks/README.md), best test2016 BLEU first."""
    rows = read_jsonl(recorder.path) if recorder.path.exists() else []
    runs = sorted((r for r in rows if r["command"] == "train"), key=lambda r: -(r["test2016_bleu"] or 0))
    print("| run | change | steps | train min | validation BLEU | test2016 BLEU | chrF |")
    print("|---|---|---|---|---|---|---|")
    for r in runs:
        steps = f"{r['steps']}" + (" (cut)" if r["cut_by_time_budget"] else "")
        print(
            f"| {r['run']} | {r['variant']} | {steps} | {r['train_minutes']} | {r['validation_bleu']:.2f} | "
            f"{r['test2016_bleu']:.2f} | {r['test2016_chrf']:.2f} |"
        )


def list_variants(args: argparse.Namespace, recorder: Recorder) -> None:
    for name, chosen in VARIANTS.items():
        print(f"{name:16} {chosen.max_steps:5} steps  {chosen.description}  {' '.join(chosen.args)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--smoke", action="store_true", help="A few steps on a sliver of the data (checks the chain).")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", parents=[common]).set_defaults(func=list_variants)
    commands.add_parser("report", parents=[common]).set_defaults(func=report)
    command = commands.add_parser("train", parents=[common])
    command.add_argument("variants", nargs="+")
    command.add_argument("--seeds", type=int, nargs="+", help="One run per seed, named VARIANT-seedN.")
    command.add_argument("--max-steps", type=int, help="Replace the variant's step budget.")
    command.set_defaults(func=train)
    command = commands.add_parser("speed", parents=[common])
    command.add_argument("variants", nargs="+")
    command.add_argument("--steps", type=int, default=60)
    command.set_defaults(func=speed)
    command = commands.add_parser("length-penalty", parents=[common])
    command.add_argument("runs", nargs="+")
    command.add_argument("--penalties", type=float, nargs="+", default=[0.6, 0.8, 1.0, 1.2, 1.5])
    command.set_defaults(func=length_penalty)
    command = commands.add_parser("average", parents=[common])
    command.add_argument("runs", nargs="+")
    command.add_argument("--max-k", type=int, default=5)
    command.set_defaults(func=average)
    command = commands.add_parser("ensemble", parents=[common])
    command.add_argument("runs", nargs="+")
    command.add_argument("--average-last", type=int, help="Each member: the average of its last K checkpoints.")
    command.set_defaults(func=ensemble)
    command = commands.add_parser("tatoeba", parents=[common])
    command.add_argument("variants", nargs="+")
    command.set_defaults(func=tatoeba)
    args = parser.parse_args()
    args.func(args, Recorder(args.smoke))


if __name__ == "__main__":
    main()
