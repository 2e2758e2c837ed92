"""Training throughput of `LSTMSeq2SeqForConditionalGeneration` against a bare PyTorch twin.

Why this exists: the HF wrapper (config plumbing, input validation, output dataclasses,
the generate()-friendly cache) must not make training noticeably slower than the same
network written directly in PyTorch. The bare model below has identical shapes and
identical math; before anything is timed, the HF weights are copied into it and the two
losses (and gradients) are checked to agree, so the timing compares the same function.

Each training step is forward + backward + grad-norm clip 5 + Adam, with the loss taken
through `labels` (-100 on padding). Both models see the same batches, whose sentence
lengths follow Multi30k en->de. The machine is shared and noisy, so the two models are
timed in alternating blocks within one run and the HF/bare ratio is the number to read.

    python benchmarks/train_step.py                      # peer shape, input feeding off and on
    python benchmarks/train_step.py --small              # seconds-long smoke run
    python benchmarks/train_step.py --device cuda --bf16 # on a GPU, bf16 autocast (weights stay fp32)
    python benchmarks/train_step.py --device cuda --cuda-graphs   # hf-rnn's decoder through CUDA graphs
    python benchmarks/train_step.py --device cuda --profile 20   # + the 20 costliest operations of each model
"""

import argparse
import json
import os
import re
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path

import torch
import transformers
from machine import cpu_model  # sibling module: scripts here run with benchmarks/ on sys.path
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from hf_rnn.translator.configuration_lstm_seq2seq import LSTMSeq2SeqConfig
from hf_rnn.translator.modeling_lstm_seq2seq import LSTMSeq2SeqForConditionalGeneration

PAD, BOS, EOS = 0, 1, 2
FIRST_WORD_ID = 3
MULTI30K_TRAIN = Path(__file__).resolve().parents[2] / "shared" / "data" / "multi30k-en-de" / "train.jsonl"
# The peer recipes (../shared/bench/peers/prep_data.py) lowercase and split words from punctuation;
# counting tokens the same way gives their lengths: en 13.1 per sentence, de 12.6 (+ EOS = 13.6).
PEER_TOKEN = re.compile(r"\w+|[^\w\s]")

# HF parameter-name prefix -> bare parameter-name prefix; `load_state_dict(strict=True)` proves it complete.
HF_TO_BARE = {
    "model.encoder.embed_tokens.": "src_embed.",
    "model.decoder.embed_tokens.": "tgt_embed.",
    "model.encoder.rnn.": "encoder.",
    "model.decoder.rnn.": "decoder.",
    "model.decoder.bridge_hidden.": "bridge_hidden.",
    "model.decoder.bridge_cell.": "bridge_cell.",
    "model.decoder.attention.query_proj.": "attn_query.",
    "model.decoder.attention.output_proj.": "attn_output.",
    "lm_head.": "generator.",
}


@dataclass(frozen=True)
class Shape:
    """Model and batch dimensions; the default is the shape the OpenNMT-py / JoeyNMT peers train."""

    src_vocab: int = 5894
    tgt_vocab: int = 7878
    embedding: int = 256
    hidden: int = 512
    dropout: float = 0.3
    batch_size: int = 64


SMALL = Shape(src_vocab=300, tgt_vocab=400, embedding=32, hidden=64, batch_size=8)


@dataclass(frozen=True)
class Batch:
    """One training batch, built once and fed to both models so they do exactly the same work."""

    input_ids: torch.Tensor  # (B, S) source, right-padded with PAD
    attention_mask: torch.Tensor  # (B, S)
    labels: torch.Tensor  # (B, T) target + EOS, right-padded with -100
    target_tokens: int  # tokens the loss counts: what "tokens/s" means here

    def to(self, device: torch.device) -> "Batch":
        return replace(
            self,
            input_ids=self.input_ids.to(device),
            attention_mask=self.attention_mask.to(device),
            labels=self.labels.to(device),
        )


class BareSeq2Seq(nn.Module):
    """The HF translator's math at the default config (1 layer each, bi-LSTM, bridge, general attention)
    in plain PyTorch: the reference for what the wrapper costs."""

    def __init__(self, shape: Shape, input_feeding: bool):
        super().__init__()
        h = shape.hidden
        self.input_feeding = input_feeding
        self.src_embed = nn.Embedding(shape.src_vocab, shape.embedding, padding_idx=PAD)
        self.tgt_embed = nn.Embedding(shape.tgt_vocab, shape.embedding, padding_idx=PAD)
        self.encoder = nn.LSTM(shape.embedding, h // 2, bidirectional=True, batch_first=True)
        self.bridge_hidden = nn.Linear(h, h)
        self.bridge_cell = nn.Linear(h, h)
        self.decoder = nn.LSTM(shape.embedding + (h if input_feeding else 0), h, batch_first=True)
        self.attn_query = nn.Linear(h, h, bias=False)
        self.attn_output = nn.Linear(2 * h, h, bias=False)
        self.generator = nn.Linear(h, shape.tgt_vocab)
        self.dropout = nn.Dropout(shape.dropout)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Token-averaged cross-entropy of the teacher-forced target."""
        embedded = self.dropout(self.src_embed(input_ids))
        lengths = attention_mask.sum(dim=1).cpu()
        packed = pack_padded_sequence(embedded, lengths, batch_first=True, enforce_sorted=False)
        packed, (h_n, c_n) = self.encoder(packed)
        memory, _ = pad_packed_sequence(packed, batch_first=True, total_length=input_ids.shape[1])
        # Final forward and backward states side by side, bridged into the decoder's initial state.
        state = tuple(
            torch.tanh(bridge(torch.cat([final[0], final[1]], dim=-1))).unsqueeze(0)
            for bridge, final in ((self.bridge_hidden, h_n), (self.bridge_cell, c_n))
        )
        padding = attention_mask.eq(0).unsqueeze(1)  # (B, 1, S)

        def attend(query: torch.Tensor) -> torch.Tensor:
            scores = torch.bmm(self.attn_query(query), memory.transpose(1, 2))
            weights = torch.softmax(scores.masked_fill(padding, torch.finfo(scores.dtype).min), dim=-1)
            context = torch.bmm(weights, memory)
            return self.dropout(torch.tanh(self.attn_output(torch.cat([context, query], dim=-1))))

        decoder_ids = torch.cat([labels.new_full((labels.shape[0], 1), BOS), labels[:, :-1]], dim=1)
        target = self.dropout(self.tgt_embed(decoder_ids.masked_fill(decoder_ids.eq(-100), PAD)))
        if self.input_feeding:
            feed, vectors = memory.new_zeros(memory.shape[0], 1, memory.shape[2]), []
            for t in range(target.shape[1]):
                output, state = self.decoder(torch.cat([target[:, t : t + 1], feed], dim=-1), state)
                feed = attend(output)
                vectors.append(feed)
            attentional = torch.cat(vectors, dim=1)
        else:
            attentional = attend(self.decoder(target, state)[0])
        logits = self.generator(attentional)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)


def hf_model(shape: Shape, input_feeding: bool) -> LSTMSeq2SeqForConditionalGeneration:
    """The model under test, configured as the peers' recipe (bridge init and no tying are the config defaults)."""
    config = LSTMSeq2SeqConfig(
        vocab_size=shape.src_vocab,
        decoder_vocab_size=shape.tgt_vocab,
        embedding_size=shape.embedding,
        hidden_size=shape.hidden,
        attention_type="general",
        input_feeding=input_feeding,
        dropout=shape.dropout,
        pad_token_id=PAD,
        bos_token_id=BOS,
        eos_token_id=EOS,
        decoder_start_token_id=BOS,
    )
    return LSTMSeq2SeqForConditionalGeneration(config)


def bare_copy(hf: LSTMSeq2SeqForConditionalGeneration, shape: Shape, input_feeding: bool) -> BareSeq2Seq:
    """The bare twin carrying the HF model's exact weights."""
    bare = BareSeq2Seq(shape, input_feeding)
    mapped = {}
    for name, tensor in hf.state_dict().items():
        prefix = next(p for p in HF_TO_BARE if name.startswith(p))
        mapped[HF_TO_BARE[prefix] + name[len(prefix) :]] = tensor.clone()
    bare.load_state_dict(mapped, strict=True)
    return bare


def hf_loss(model: LSTMSeq2SeqForConditionalGeneration, batch: Batch) -> torch.Tensor:
    return model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=batch.labels).loss


def bare_loss(model: BareSeq2Seq, batch: Batch) -> torch.Tensor:
    return model(batch.input_ids, batch.attention_mask, batch.labels)


def check_same_function(hf: LSTMSeq2SeqForConditionalGeneration, bare: BareSeq2Seq, batch: Batch) -> float:
    """Eval-mode losses within 1e-5 and matching gradients: otherwise the timing would compare different work."""
    hf.eval()
    bare.eval()
    # cuDNN's recurrent kernels have no backward pass in eval mode (and use TF32 products): compare without them.
    with torch.backends.cudnn.flags(enabled=False):
        hf_value, bare_value = hf_loss(hf, batch), bare_loss(bare, batch)
        difference = abs(hf_value.item() - bare_value.item())
        assert difference <= 1e-5, f"losses differ by {difference:.2e}: the bare model is not the HF model's function"
        hf_value.backward()
        bare_value.backward()
    bare_parameters = dict(bare.named_parameters())
    for name, parameter in hf.named_parameters():
        prefix = next(p for p in HF_TO_BARE if name.startswith(p))
        twin = bare_parameters[HF_TO_BARE[prefix] + name[len(prefix) :]]
        assert torch.allclose(parameter.grad, twin.grad, rtol=1e-4, atol=1e-7), f"gradients of {name} differ"
    for model in (hf, bare):
        model.zero_grad(set_to_none=True)
        model.train()
    return difference


def sentence_lengths(generator: torch.Generator) -> list[tuple[int, int]]:
    """(source, target incl. EOS) lengths of Multi30k training pairs, tokenised like the peers; if the shared
    corpus is absent, a fixed seeded stand-in with the same means (13.1 / 13.6)."""
    if MULTI30K_TRAIN.is_file():
        pairs = []
        with MULTI30K_TRAIN.open(encoding="utf-8") as lines:
            for line in lines:
                pair = json.loads(line)["translation"]
                source, target = (len(PEER_TOKEN.findall(pair[lang].lower())) for lang in ("en", "de"))
                pairs.append((source, target + 1))
        return pairs
    source = 4 + torch.poisson(torch.full((29000,), 9.1), generator=generator).long()
    target = 3 + torch.poisson(torch.full((29000,), 10.6), generator=generator).long()
    return list(zip(source.tolist(), target.tolist()))


def make_batches(shape: Shape, count: int, seed: int = 1234) -> list[Batch]:
    """Random-order batches of real sentence lengths with random word ids (ids do not change the cost).
    Every timed block replays the same `count` batches, so all blocks do identical work."""
    generator = torch.Generator().manual_seed(seed)
    lengths = sentence_lengths(generator)
    batches = []
    for _ in range(count):
        picked = [lengths[i] for i in torch.randint(len(lengths), (shape.batch_size,), generator=generator).tolist()]
        src_len, tgt_len = max(s for s, _ in picked), max(t for _, t in picked)
        input_ids = torch.full((shape.batch_size, src_len), PAD)
        labels = torch.full((shape.batch_size, tgt_len), -100)
        for row, (s, t) in enumerate(picked):
            input_ids[row, :s] = torch.randint(FIRST_WORD_ID, shape.src_vocab, (s,), generator=generator)
            labels[row, : t - 1] = torch.randint(FIRST_WORD_ID, shape.tgt_vocab, (t - 1,), generator=generator)
            labels[row, t - 1] = EOS
        batches.append(Batch(input_ids, input_ids.ne(PAD).long(), labels, sum(t for _, t in picked)))
    return batches


def trainer(
    model: nn.Module, loss_fn: Callable[[nn.Module, Batch], torch.Tensor], bf16: bool = False
) -> Callable[[Batch], None]:
    """One optimisation step as the peers take it: Adam 1e-3, gradient norm clipped to 5; with `bf16`, the forward
    pass under bf16 autocast (weights, gradients and Adam stay fp32), as `--bf16 true` trains in train.py."""
    device = next(model.parameters()).device
    # torch's fused Adam on a GPU: one kernel for every parameter instead of several per tensor.
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=device.type == "cuda")

    def step(batch: Batch) -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = loss_fn(model, batch)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()

    return step


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work: GPU kernels run after the Python call that launched them returns."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def tokens_per_second(step: Callable[[Batch], None], batches: list[Batch], device: torch.device) -> float:
    """Loss-counted target tokens per wall-clock second: the unit the peer toolkits log (padding excluded)."""
    synchronize(device)
    start = time.perf_counter()
    for batch in batches:
        step(batch)
    synchronize(device)
    return sum(b.target_tokens for b in batches) / (time.perf_counter() - start)


def profile(step: Callable[[Batch], None], batches: list[Batch], device: torch.device, rows: int) -> str:
    """torch.profiler's table of the `rows` operations with the most self time over one pass of `batches`."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as profiler:
        for batch in batches:
            step(batch)
        synchronize(device)
    table = profiler.key_averages()
    # On a GPU both views matter: the kernels' own time, and the host time spent launching them.
    sorts = ["self_cpu_time_total"] + (["self_cuda_time_total"] if device.type == "cuda" else [])
    return "\n".join(table.table(sort_by=sort, row_limit=rows) for sort in sorts)


@dataclass(frozen=True)
class Result:
    input_feeding: bool
    hf: list[float]  # tokens/s per timed block
    bare: list[float]
    loss_difference: float
    mean_target: float  # target tokens per sentence, EOS included
    target_fill: float  # share of the padded target positions that are real tokens

    @property
    def ratio(self) -> float:
        return statistics.median(self.hf) / statistics.median(self.bare)

    @property
    def round_ratios(self) -> list[float]:
        return [h / b for h, b in zip(self.hf, self.bare)]


def measure(shape: Shape, input_feeding: bool, args: argparse.Namespace) -> Result:
    """Alternate blocks of `args.steps` steps (HF first on even rounds, bare first on odd ones) over the same batches,
    so load changes on the shared machine hit both models alike."""
    device = torch.device(args.device)
    torch.manual_seed(0)
    hf = hf_model(shape, input_feeding).to(device)
    bare = bare_copy(hf, shape, input_feeding).to(device)
    batches = [batch.to(device) for batch in make_batches(shape, args.steps)]
    loss_difference = check_same_function(hf, bare, batches[0])
    hf.set_cuda_graph_training(args.cuda_graphs)
    runners = {"hf": trainer(hf, hf_loss, args.bf16), "bare": trainer(bare, bare_loss, args.bf16)}
    for step in runners.values():
        tokens_per_second(step, batches[: args.warmup], device)
    if args.cuda_graphs:  # capture every batch shape before timing
        tokens_per_second(runners["hf"], batches, device)
    if args.profile:
        for name, step in runners.items():
            print(f"{name}, input feeding {'on' if input_feeding else 'off'}:")
            print(profile(step, batches, device, args.profile))
    timings: dict[str, list[float]] = {"hf": [], "bare": []}
    for round_index in range(args.rounds):
        for name in ("hf", "bare") if round_index % 2 == 0 else ("bare", "hf"):
            timings[name].append(tokens_per_second(runners[name], batches, device))
    tokens = sum(b.target_tokens for b in batches)
    return Result(
        input_feeding,
        timings["hf"],
        timings["bare"],
        loss_difference,
        mean_target=tokens / (len(batches) * shape.batch_size),
        target_fill=tokens / sum(b.labels.numel() for b in batches),
    )


def report(results: list[Result], shape: Shape, args: argparse.Namespace) -> str:
    software = f"torch {torch.__version__}, transformers {transformers.__version__}"
    machine = f"threads {torch.get_num_threads()}, CPU {cpu_model()} ({os.cpu_count()} logical cores)"
    if args.device.startswith("cuda"):
        machine = f"GPU {torch.cuda.get_device_name(torch.device(args.device))}, {machine}"
    precision = ("bf16 autocast" if args.bf16 else "fp32") + (", hf-rnn with CUDA graphs" if args.cuda_graphs else "")
    model = (
        f"vocab {shape.src_vocab}/{shape.tgt_vocab}, emb {shape.embedding}, hidden {shape.hidden}, "
        f"dropout {shape.dropout}, batch {shape.batch_size} sentences"
    )
    batches = (
        f"{results[0].mean_target:.1f} target tokens/sentence incl. EOS, "
        f"{results[0].target_fill:.0%} of padded target positions real (random, unbucketed)"
    )
    lines = [
        f"train_step.py, {date.today().isoformat()}: {software}, {machine}",
        f"shape: {model}; {precision}; {args.rounds} rounds x {args.steps} steps per model after {args.warmup} "
        "warm-up steps",
        f"batches: {batches}",
        "",
        "| input feeding | HF tok/s | bare tok/s | HF/bare | HF/bare per round (min-max) | HF sent/s "
        "| eval loss diff |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        hf_median = statistics.median(r.hf)
        lines.append(
            f"| {'on' if r.input_feeding else 'off'} | {hf_median:,.0f} | {statistics.median(r.bare):,.0f} "
            f"| {r.ratio:.2f} | {min(r.round_ratios):.2f}-{max(r.round_ratios):.2f} "
            f"| {hf_median / r.mean_target:,.1f} | {r.loss_difference:.1e} |"
        )
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, help="training steps per timed block (default 5; 2 with --small)")
    parser.add_argument(
        "--rounds", type=int, help="timed blocks per model, interleaved; keep it even (default 6; 2 with --small)"
    )
    parser.add_argument("--warmup", type=int, help="untimed steps per model first (default 2; 1 with --small)")
    parser.add_argument("--batch-size", type=int, help="sentences per batch (default 64; 8 with --small)")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's own choice)")
    parser.add_argument("--input-feeding", choices=("off", "on", "both"), default="both")
    parser.add_argument("--small", action="store_true", help="tiny model, 2 rounds x 2 steps: a smoke run")
    parser.add_argument("--device", default="cpu", help="where both models train: cpu (default), cuda, cuda:1, ...")
    parser.add_argument("--bf16", action="store_true", help="forward pass under bf16 autocast (weights stay fp32)")
    parser.add_argument(
        "--cuda-graphs", action="store_true", help="hf-rnn's decoder through CUDA graphs (set_cuda_graph_training)"
    )
    parser.add_argument(
        "--profile", type=int, default=0, metavar="N", help="print torch.profiler's N costliest operations per model"
    )
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: torch sees no CUDA device here")
    for name, full, small in (("steps", 5, 2), ("rounds", 6, 2), ("warmup", 2, 1)):
        if getattr(args, name) is None:
            setattr(args, name, small if args.small else full)
    for name in ("steps", "rounds", "batch_size", "threads"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    shape = SMALL if args.small else Shape()
    if args.batch_size:
        shape = replace(shape, batch_size=args.batch_size)
    settings = {"off": [False], "on": [True], "both": [False, True]}[args.input_feeding]
    results = [measure(shape, feeding, args) for feeding in settings]
    print(report(results, shape, args))


if __name__ == "__main__":
    main()
