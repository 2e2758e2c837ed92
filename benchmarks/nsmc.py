"""Korean sentiment (NSMC): test accuracy after at most 15 minutes of CPU training, and inference speed beside a
bare PyTorch model of the same shape.

    python benchmarks/nsmc.py                                   # train (15 min budget) + speed, ~20 min
    python benchmarks/nsmc.py --stages speed --model DIR        # speed of an already trained folder
    python benchmarks/nsmc.py --train-args --max_steps 50       # smoke run (extra train.py flags come last)

Training: `configs/nsmc_ko_sentiment.yaml` on ../shared/data/nsmc-ko (train 80,000 / validation 5,000 /
test 5,000 reviews) through train.py, its `max_train_minutes: 15` bounding the training loop; the test accuracy
and macro-F1 are train.py's own (argmax of the saved model's logits against the raw test labels).

Speed: the test reviews, tokenised once (tokenisation is not timed), in batches of `--batch-size` in file order,
classified by

- `LSTMForSequenceClassification` called as a user would (`model(input_ids=..., attention_mask=...).logits`,
  with its input checks, packing and output dataclass), and
- a bare PyTorch twin written here: `nn.Embedding`, a packed `nn.LSTM` / `nn.GRU` / `nn.RNN` (bidirectional as
  configured), the same pooling over the real positions, `nn.Linear`; the saved weights are copied into it
  (`strict=True`) and its logits must equal the model's before anything is timed.

Both run under `torch.inference_mode()` with torch's default threads, interleaved (`--rounds` rounds, the order
alternating), and the table gives sentences/s per round, the medians and the ratio of the medians. The load
average is recorded around every stage: other jobs on a shared machine skew time budgets and speeds.
"""

import argparse
import json
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
from text_files import read_jsonl  # sibling module: corpora read as written

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "nsmc-ko"
RNN = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


def load_average() -> str:
    """The 1-, 5- and 15-minute load averages (2 means two busy cores' worth of work)."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def train(output_dir: Path, extra: list[str]) -> dict:
    command = [sys.executable, "train.py", "configs/nsmc_ko_sentiment.yaml", "--output_dir", str(output_dir)]
    for split in ("train", "validation", "test"):
        command += [f"--{split}_file", str(DATA / f"{split}.jsonl")]
    command += ["--overwrite_output_dir", "true", "--disable_tqdm", "true", *extra]
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    before, started = load_average(), time.perf_counter()
    with open(output_dir.parent / f"{output_dir.name}.log", "w") as log:
        result = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    if result.returncode != 0:
        raise RuntimeError(f"training failed ({result.returncode}); see {output_dir.parent / output_dir.name}.log")
    metrics = json.loads((output_dir / "all_results.json").read_text())
    return {
        "command": command,
        "seconds": round(time.perf_counter() - started, 1),
        "load_before": before,
        "load_after": load_average(),
        "train_seconds": metrics["train_runtime"],
        "steps": json.loads((output_dir / "trainer_state.json").read_text())["global_step"],
        "epochs": metrics.get("train_epoch"),
        **{key: metrics[key] for key in ("test_accuracy", "test_macro_f1", "eval_accuracy", "eval_macro_f1")},
    }


class BareClassifier(nn.Module):
    """The classifier's shape in plain PyTorch, parameter names chosen to match the saved state dict."""

    def __init__(self, config):
        super().__init__()
        directions = 2 if config.bidirectional else 1
        self.pooling = config.pooling
        self.embed_tokens = nn.Embedding(config.vocab_size, config.embedding_size, padding_idx=config.pad_token_id)
        self.rnn = RNN[config.cell_type](
            config.embedding_size,
            config.hidden_size // directions,
            num_layers=config.num_layers,
            batch_first=True,
            bidirectional=config.bidirectional,
        )
        if self.pooling == "attention":
            self.projection = nn.Linear(config.hidden_size, config.hidden_size)
            self.query = nn.Linear(config.hidden_size, 1, bias=False)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.directions = directions

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        lengths = attention_mask.sum(dim=1)
        packed = pack_padded_sequence(self.embed_tokens(input_ids), lengths, batch_first=True, enforce_sorted=False)
        packed_outputs, state = self.rnn(packed)
        outputs, _ = pad_packed_sequence(packed_outputs, batch_first=True, total_length=input_ids.shape[1])
        mask = attention_mask.bool().unsqueeze(-1)
        if self.pooling == "last":
            hidden = state[0] if isinstance(state, tuple) else state
            pooled = hidden[-self.directions :].transpose(0, 1).reshape(input_ids.shape[0], -1)
        elif self.pooling == "mean":
            pooled = outputs.sum(dim=1) / lengths.unsqueeze(-1)
        elif self.pooling == "max":
            pooled = outputs.masked_fill(~mask, torch.finfo(outputs.dtype).min).amax(dim=1)
        else:
            scores = self.query(torch.tanh(self.projection(outputs)))
            pooled = (torch.softmax(scores.masked_fill(~mask, torch.finfo(scores.dtype).min), dim=1) * outputs).sum(1)
        return self.classifier(pooled)


def bare_twin(model) -> BareClassifier:
    twin = BareClassifier(model.config).eval()
    state = {}
    for name, value in model.state_dict().items():
        state[name.removeprefix("model.").removeprefix("pooler.")] = value
    twin.load_state_dict(state, strict=True)
    return twin


@torch.inference_mode()
def speed(model_dir: Path, batch_size: int, rounds: int) -> dict:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    import hf_rnn  # noqa: F401  (registers the model)

    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    texts = [row["text"] for row in read_jsonl(DATA / "test.jsonl")]
    batches = [
        tokenizer(texts[i : i + batch_size], padding=True, truncation=True, max_length=512, return_tensors="pt")
        for i in range(0, len(texts), batch_size)
    ]
    twin = bare_twin(model)
    for batch in batches:
        expected = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        torch.testing.assert_close(twin(batch["input_ids"], batch["attention_mask"]), expected, rtol=1e-5, atol=1e-5)

    def hf() -> None:
        for batch in batches:
            model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])

    def bare() -> None:
        for batch in batches:
            twin(batch["input_ids"], batch["attention_mask"])

    rates = {"hf": [], "bare": []}
    before = load_average()
    for index in range(rounds):
        order = (("hf", hf), ("bare", bare)) if index % 2 == 0 else (("bare", bare), ("hf", hf))
        for name, classify in order:
            started = time.perf_counter()
            classify()
            rates[name].append(len(texts) / (time.perf_counter() - started))
    medians = {name: statistics.median(values) for name, values in rates.items()}
    return {
        "sentences": len(texts),
        "batch_size": batch_size,
        "threads": torch.get_num_threads(),
        "rounds": {name: [round(rate, 1) for rate in values] for name, values in rates.items()},
        "median_sentences_per_second": {name: round(rate, 1) for name, rate in medians.items()},
        "hf_over_bare": round(medians["hf"] / medians["bare"], 3),
        "load_before": before,
        "load_after": load_average(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "nsmc")
    parser.add_argument("--model", type=Path, default=Path("/tmp/hf-rnn-nsmc/nsmc-ko-sentiment"))
    parser.add_argument("--stages", nargs="+", default=["train", "speed"], choices=["train", "speed"])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--train-args", nargs=argparse.REMAINDER, default=[], help="Extra train.py flags (last).")
    args = parser.parse_args()
    if not DATA.is_dir():
        raise SystemExit(f"{DATA} is missing: this benchmark needs the shared NSMC files.")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "results.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    results.update(date=datetime.now().isoformat(timespec="seconds"), torch=torch.__version__)
    if "train" in args.stages:
        results["train"] = train(args.model, args.train_args)
        path.write_text(json.dumps(results, indent=2))
        print(json.dumps(results["train"], indent=2))
    if "speed" in args.stages:
        results["speed"] = speed(args.model, args.batch_size, args.rounds)
        path.write_text(json.dumps(results, indent=2))
        print(json.dumps(results["speed"], indent=2))


if __name__ == "__main__":
    main()
