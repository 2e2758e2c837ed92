"""Korean sentiment (NSMC): how far averaging several short classifier runs goes toward the 88 % goal.

    python benchmarks/nsmc_ensemble.py                          # train the members (~2 min each idle) and score
    python benchmarks/nsmc_ensemble.py --stages score           # score the members already trained in --runs

Each member is `configs/nsmc_ko_sentiment.yaml` for 2 epochs (2,500 steps; validation accuracy peaks at the
second, benchmarks/README.md) with one change that makes it differ from the others: seed, BPE vocabulary size,
cell type, pooling, characters instead of subwords. Scoring loads every saved member as a user would
(`AutoModelForSequenceClassification`, `AutoTokenizer`), computes its class probabilities on the validation and
test reviews, and reports each member's accuracy and that of every combination (mean of the probabilities, then
argmax), with the members' summed training time (train.py's `train_runtime`: the budget an ensemble spends).
Results: OUT/results.json (every combination, best validation accuracy first) and a Markdown table on stdout (the
members, all of them together, and the five best combinations by validation accuracy: choose on validation, read
test).
"""

import argparse
import itertools
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from text_files import read_jsonl  # sibling module: corpora read as written

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "nsmc-ko"
STEPS = "2500"  # 2 epochs of 80,000 reviews at 64 a batch
MEMBERS = {
    "bpe8k_s1": ["--seed", "1"],
    "bpe16k_s2": ["--seed", "2", "--tokenizer_vocab_size", "16000"],
    "bpe4k_s3": ["--seed", "3", "--tokenizer_vocab_size", "4000"],
    "bpe8k_gru_s4": ["--seed", "4", "--model.cell_type", "gru"],
    "bpe8k_attn_s5": ["--seed", "5", "--model.pooling", "attention"],
    "char_s6": ["--seed", "6", "--tokenizer_type", "char", "--tokenizer_min_frequency", "2"],
}


def train(runs: Path, name: str) -> None:
    command = [sys.executable, "train.py", "configs/nsmc_ko_sentiment.yaml", "--output_dir", str(runs / name)]
    for split in ("train", "validation", "test"):
        command += [f"--{split}_file", str(DATA / f"{split}.jsonl")]
    command += ["--overwrite_output_dir", "true", "--disable_tqdm", "true", "--max_steps", STEPS, *MEMBERS[name]]
    with open(runs / f"{name}.log", "w") as log:
        if subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO).returncode != 0:
            sys.exit(f"training {name} failed; see {runs / name}.log")


def probabilities(folder: Path, texts: list[str], batch_size: int = 256):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    import hf_rnn  # noqa: F401  (registers the model classes)

    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    batches = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            # NSMC reviews are under 140 characters: no review reaches the 160 tokens the members were trained on.
            inputs = tokenizer(texts[start : start + batch_size], padding=True, return_tensors="pt")
            batches.append(model(**inputs).logits.float().softmax(-1))
    return torch.cat(batches).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, default=Path("/tmp/hf-rnn-nsmc-ensemble"), help="members' folders")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "nsmc_ensemble")
    parser.add_argument("--stages", nargs="+", default=["train", "score"], choices=["train", "score"])
    parser.add_argument("--members", nargs="+", default=list(MEMBERS), choices=list(MEMBERS))
    args = parser.parse_args()
    args.runs.mkdir(parents=True, exist_ok=True)
    if "train" in args.stages:
        for name in args.members:
            train(args.runs, name)
    if "score" not in args.stages:
        return
    import numpy as np

    splits = {}
    for split in ("validation", "test"):
        rows = read_jsonl(DATA / f"{split}.jsonl")
        splits[split] = ([row["text"] for row in rows], np.array([row["label"] for row in rows]))
    members = {}
    for name in args.members:
        folder = args.runs / name
        if not (folder / "config.json").exists():
            sys.exit(f"{folder} holds no trained member: run the train stage first")
        members[name] = {
            "train_seconds": json.loads((folder / "all_results.json").read_text())["train_runtime"],
            **{split: probabilities(folder, texts) for split, (texts, _) in splits.items()},
        }
    table = []
    for size in range(1, len(members) + 1):
        for combination in itertools.combinations(members, size):
            accuracy = {
                split: float((sum(members[n][split] for n in combination).argmax(1) == labels).mean())
                for split, (_, labels) in splits.items()
            }
            seconds = sum(members[n]["train_seconds"] for n in combination)
            table.append({"members": list(combination), "train_seconds": seconds, **accuracy})
    table.sort(key=lambda row: -row["validation"])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(table, indent=2) + "\n")
    print("| members | summed training s | validation acc. | test acc. |\n|---|---|---|---|")
    singles = [r for r in table if len(r["members"]) == 1]
    everyone = [r for r in table if len(r["members"]) == len(members) > 1]
    for row in singles + everyone + [r for r in table if len(r["members"]) > 1][:5]:
        print(
            f"| {' + '.join(row['members'])} | {row['train_seconds']:.0f} | {100 * row['validation']:.2f} % "
            f"| {100 * row['test']:.2f} % |"
        )


if __name__ == "__main__":
    main()
