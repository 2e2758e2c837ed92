"""hf-rnn's character-level LSTM beside nanoGPT on tiny Shakespeare, at equal wall time on this machine.

    python benchmarks/char_lm_vs_nanogpt.py                      # both budgets, ~45 min on a 2-core machine
    python benchmarks/char_lm_vs_nanogpt.py --budgets recipe     # nanoGPT's CPU recipe only, ~8 min
    python benchmarks/char_lm_vs_nanogpt.py --stages report      # rebuild the table from OUT/results.json

For each budget, nanoGPT runs first (its README's CPU recipe through ../shared/bench/peers/nanogpt/run.sh, files
unchanged: 4 layers × 4 heads × 128, context 64, batch 12, 2,000 iterations, dropout 0, fp32), timed as a whole
process; then hf-rnn trains `configs/char_shakespeare.yaml` with `--max_train_minutes` set to nanoGPT's measured
time, so hf-rnn's training loop gets exactly the wall time of nanoGPT's whole run (its data preparation, periodic
evaluations and checkpointing included). The `15min` budget runs nanoGPT's recipe with its iterations (and
decay) scaled to fill 15 minutes at the speed the recipe run measured, then hf-rnn with nanoGPT's actual time.

Both final models are then scored here, on the same characters: the last 10 % of input.txt (nanoGPT's val.bin),
all but its first character, which nanoGPT cannot predict without context (111,539 characters):

- nanoGPT (the checkpoint it kept: its best periodic validation loss) twice: with every character predicted from
  the full 64 characters before it where there are that many (windows of 64 sliding by 16, the last 16 scored;
  the best it can do), and as it trains and estimates (consecutive blocks of 64, contexts of 0-63 characters);
  its own printed estimate (20 random batches) is listed too;
- hf-rnn reading the whole split as one stream from `<s>`, its state carried (it scores the first character
  as well, but that one is left out of the sum), plus the figure train.py reported (16 parallel streams, every
  character).

Everything runs with the same Python (this one: nanoGPT needs only torch and numpy) and torch's default threads.
The load average is recorded before and after each run: other jobs on a shared machine make time budgets unequal.
"""

import argparse
import json
import os
import pickle
import re
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
NANOGPT = SHARED / "bench" / "peers" / "nanogpt"
CORPUS = SHARED / "data" / "tinyshakespeare" / "input.txt"
RECIPE_ITERS = 2000  # run.sh's --max_iters
BLOCK = 64  # run.sh's --block_size: nanoGPT's context
STRIDE = 16


def load_average() -> str:
    """The 1-, 5- and 15-minute load averages (2 means two busy cores' worth of work)."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def run_timed(command: list[str], log: Path, env: dict | None = None) -> dict:
    """Run `command` with its output in `log`; wall seconds and the load average around it."""
    before = load_average()
    started = time.perf_counter()
    with open(log, "w") as stream:
        result = subprocess.run(command, stdout=stream, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}); see {log}")
    return {"seconds": round(seconds, 1), "load_before": before, "load_after": load_average(), "command": command}


def train_nanogpt(work: Path, iters: int, extra: list[str]) -> dict:
    command = ["bash", str(NANOGPT / "run.sh"), str(work), *extra]
    if iters != RECIPE_ITERS:  # the recipe's schedule, stretched: decay over all iterations
        command += [f"--max_iters={iters}", f"--lr_decay_iters={iters}"]
    work.mkdir(parents=True, exist_ok=True)
    run = run_timed(command, work.parent / f"{work.name}.log", env={**os.environ, "PYTHON": sys.executable})
    log = (work.parent / f"{work.name}.log").read_text()
    estimates = re.findall(r"step (\d+): train loss ([\d.]+), val loss ([\d.]+)", log)
    iteration_ms = [float(ms) for ms in re.findall(r"iter \d+: loss [\d.]+, time ([\d.]+)ms", log)]
    return {
        **run,
        "iters": iters,
        "own_estimate": {"step": int(estimates[-1][0]), "val_loss": float(estimates[-1][2])},
        "median_iteration_ms": sorted(iteration_ms)[len(iteration_ms) // 2],
    }


def train_hf(output_dir: Path, minutes: float, extra: list[str]) -> dict:
    command = [sys.executable, "train.py", "configs/char_shakespeare.yaml", "--train_file", str(CORPUS)]
    command += ["--output_dir", str(output_dir), "--overwrite_output_dir", "true", "--max_train_minutes"]
    command += [f"{minutes:.4f}", "--disable_tqdm", "true", *extra]
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    run = run_timed(command, output_dir.parent / f"{output_dir.name}.log")
    results = json.loads((output_dir / "all_results.json").read_text())
    return {
        **run,
        "train_seconds": results["train_runtime"],
        "steps": json.loads((output_dir / "trainer_state.json").read_text())["global_step"],
        "reported_nats_per_char": results["eval_nats_per_char"],
    }


def validation_text() -> str:
    text = CORPUS.read_text(encoding="utf-8")
    return text[int(len(text) * 0.9) :]


@torch.inference_mode()
def score_nanogpt(work: Path) -> dict:
    """Nats per character over validation[1:], with full sliding context and with nanoGPT's own blocks."""
    sys.path.insert(0, str(work))
    from model import GPT, GPTConfig  # nanoGPT's model.py, as run.sh copied it

    sys.path.pop(0)
    checkpoint = torch.load(work / "out-shakespeare-char" / "ckpt.pt", map_location="cpu", weights_only=False)
    model = GPT(GPTConfig(**checkpoint["model_args"]))
    model.load_state_dict({k.removeprefix("_orig_mod."): v for k, v in checkpoint["model"].items()})
    model.eval()
    stoi = pickle.loads((work / "data" / "shakespeare_char" / "meta.pkl").read_bytes())["stoi"]
    ids = torch.tensor([stoi[c] for c in validation_text()])

    def nats(windows: list[int], scored_from: list[int]) -> tuple[float, int]:
        total, count = 0.0, 0
        for start in range(0, len(windows), 256):
            starts = windows[start : start + 256]
            x = torch.stack([ids[s : s + BLOCK] for s in starts])
            y = torch.stack([ids[s + 1 : s + BLOCK + 1] for s in starts])
            logits, _ = model(x, y)
            losses = torch.nn.functional.cross_entropy(logits.transpose(1, 2), y, reduction="none")
            for row, first in enumerate(scored_from[start : start + 256]):
                total += losses[row, first:].double().sum().item()
                count += BLOCK - first
        return total, count

    last = len(ids) - BLOCK - 1  # the last window's start: it predicts up to the final character
    sliding = list(range(0, last, STRIDE)) + [last]
    sliding_first = [0] + [BLOCK - STRIDE] * (len(sliding) - 2) + [BLOCK - (last - sliding[-2])]
    blocks = list(range(0, last, BLOCK)) + [last]
    blocks_first = [0] * (len(blocks) - 1) + [BLOCK - (last - blocks[-2])]
    full_nats, full_count = nats(sliding, sliding_first)
    block_nats, block_count = nats(blocks, blocks_first)
    assert full_count == block_count == len(ids) - 1, (full_count, block_count, len(ids))
    return {
        "checkpoint_iter": checkpoint["iter_num"],
        "full_context": full_nats / full_count,
        "training_blocks": block_nats / block_count,
        "characters": full_count,
    }


@torch.inference_mode()
def score_hf(output_dir: Path) -> dict:
    """Nats per character over validation[1:]: the whole split as one stream from <s>, the state carried."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import hf_rnn  # noqa: F401  (registers the model)

    model = AutoModelForCausalLM.from_pretrained(output_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(output_dir)
    text = validation_text()
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(text), "every validation character has its own token (all occur in training)"
    inputs = torch.tensor([[tokenizer.bos_token_id, *ids[:-1]]])
    targets = torch.tensor([ids])
    total, cache = 0.0, None
    for start in range(0, inputs.shape[1], 4096):
        out = model(input_ids=inputs[:, start : start + 4096], cache=cache, use_cache=True)
        cache = out.cache
        losses = torch.nn.functional.cross_entropy(out.logits[0], targets[0, start : start + 4096], reduction="none")
        total += losses[1:].double().sum().item() if start == 0 else losses.double().sum().item()
    return {"one_stream": total / (len(ids) - 1), "characters": len(ids) - 1}


def report(results: dict) -> str:
    lines = [
        "| budget | tool | wall time (s) | iterations / steps | load before → after | val nats/char, same 111,539 "
        "characters | other figures |",
        "|---|---|---|---|---|---|---|",
    ]
    for budget, entry in results["budgets"].items():
        nano, hf = entry.get("nanogpt"), entry.get("hf")
        if nano:
            score = nano.get("score", {})
            lines.append(
                f"| {budget} | nanoGPT | {nano['seconds']} (whole run) | {nano['iters']} (checkpoint "
                f"{score.get('checkpoint_iter', '?')}) | {nano['load_before']} → {nano['load_after']} | "
                f"{score.get('full_context', float('nan')):.4f} (64-char context) | as trained (blocks): "
                f"{score.get('training_blocks', float('nan')):.4f}; own estimate at step "
                f"{nano['own_estimate']['step']}: {nano['own_estimate']['val_loss']:.4f} |"
            )
        if hf:
            score = hf.get("score", {})
            lines.append(
                f"| {budget} | hf-rnn | {hf['train_seconds']:.1f} training ({hf['seconds']} whole run) | "
                f"{hf['steps']} | {hf['load_before']} → {hf['load_after']} | "
                f"{score.get('one_stream', float('nan')):.4f} (one stream) | "
                f"train.py (16 streams, all characters): {hf['reported_nats_per_char']:.4f} |"
            )
        if nano and hf and "score" in nano and "score" in hf:
            difference = hf["score"]["one_stream"] - nano["score"]["full_context"]
            lines.append(f"| {budget} | hf-rnn − nanoGPT | | | | {difference:+.4f} | |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "char_lm")
    parser.add_argument("--work", type=Path, default=Path("/tmp/hf-rnn-char-lm"), help="Models and logs.")
    parser.add_argument("--budgets", nargs="+", default=["recipe", "15min"], choices=["recipe", "15min"])
    parser.add_argument("--stages", nargs="+", default=["nanogpt", "hf", "score", "report"])
    parser.add_argument("--long-minutes", type=float, default=15.0)
    parser.add_argument("--recipe-iters", type=int, default=RECIPE_ITERS, help="Smoke runs: fewer iterations.")
    parser.add_argument("--nanogpt-args", nargs="*", default=[], help="Extra run.sh flags, e.g. --eval_interval=10.")
    parser.add_argument("--hf-args", nargs=argparse.REMAINDER, default=[], help="Extra train.py flags (last).")
    args = parser.parse_args()
    if not CORPUS.is_file():
        raise SystemExit(f"{CORPUS} is missing: this benchmark needs the shared tiny Shakespeare file.")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "results.json"
    results = json.loads(path.read_text()) if path.exists() else {"budgets": {}}
    results.update(date=datetime.now().isoformat(timespec="seconds"), torch=torch.__version__)
    results["threads"] = torch.get_num_threads()

    def save() -> None:
        path.write_text(json.dumps(results, indent=2))

    for budget in args.budgets:
        entry = results["budgets"].setdefault(budget, {})
        nano_work, hf_dir = args.work / f"nanogpt-{budget}", args.work / f"hf-{budget}"
        if "nanogpt" in args.stages:
            iters = args.recipe_iters
            if budget == "15min":
                recipe = results["budgets"]["recipe"]["nanogpt"]
                iters = int(recipe["iters"] * args.long_minutes * 60 / recipe["seconds"])
            print(f"[{budget}] nanoGPT, {iters} iterations ...", flush=True)
            entry["nanogpt"] = train_nanogpt(nano_work, iters, args.nanogpt_args)
            save()
        if "hf" in args.stages:
            minutes = entry["nanogpt"]["seconds"] / 60
            print(f"[{budget}] hf-rnn, {minutes:.2f} minutes ...", flush=True)
            entry["hf"] = train_hf(hf_dir, minutes, args.hf_args)
            save()
        if "score" in args.stages:
            entry["nanogpt"]["score"] = score_nanogpt(nano_work)
            entry["hf"]["score"] = score_hf(hf_dir)
            save()
    if "report" in args.stages:
        table = report(results)
        (args.out / "README.md").write_text(
            f"# hf-rnn vs nanoGPT, tiny Shakespeare, equal wall time\n\n{results['date']}, torch {results['torch']}, "
            f"{results['threads']} threads. Produced by `python benchmarks/char_lm_vs_nanogpt.py`.\n\n{table}\n"
        )
        print(table)


if __name__ == "__main__":
    main()
