"""Time per decoding step of `generate()`, eager against CUDA-graph steps, in one run.

Why this exists: on a GPU a step of a small recurrent decoder is a few dozen tiny kernels, so its cost is
launching them, not arithmetic; `generate()` replays a CUDA graph of the step there (see
`LSTMSeq2SeqStepGraphs`). This script decodes one batch (default 128 sentences with Multi30k's source lengths)
with a model of the peer shape (random weights, or a saved folder), with graphs and without, interleaved, and
reports milliseconds per generated step (the call's wall time over the steps it took) and whether both modes
produced the same tokens. Random weights rarely emit `</s>`, so every call runs its `--new-tokens` steps.

    python benchmarks/decode_step.py --device cuda                   # greedy and beam 5, fp32
    python benchmarks/decode_step.py --device cuda --dtype bfloat16
    python benchmarks/decode_step.py --device cuda --model outputs/multi30k-en-de
    python benchmarks/decode_step.py --small                         # seconds-long smoke run (CPU: eager only)
"""

import argparse
import statistics
import time
from dataclasses import replace

import torch
import transformers
from machine import cpu_model  # sibling module: scripts here run with benchmarks/ on sys.path
from train_step import SMALL, Shape, hf_model, make_batches, synchronize

from hf_rnn import LSTMSeq2SeqForConditionalGeneration


def decode(model, source: torch.Tensor, mask: torch.Tensor, beams: int, new_tokens: int, graphs: bool):
    """One generate() call -> (sequences, seconds, steps)."""
    device = source.device
    synchronize(device)
    started = time.perf_counter()
    with torch.inference_mode():
        sequences = model.generate(
            input_ids=source,
            attention_mask=mask,
            num_beams=beams,
            max_new_tokens=new_tokens,
            cuda_graphs=graphs,
            **({"length_penalty": 0.0} if beams > 1 else {}),
        )
    synchronize(device)
    return sequences, time.perf_counter() - started, sequences.shape[1] - 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu (graphs need cuda), cuda, cuda:1, ...")
    parser.add_argument("--model", help="a saved translator folder (default: random weights of the peer shape)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--batch-size", type=int, default=128, help="sentences per generate() call (default 128)")
    parser.add_argument("--beams", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--new-tokens", type=int, default=40, help="max_new_tokens of each call (default 40)")
    parser.add_argument("--rounds", type=int, default=6, help="timed calls per mode, interleaved (default 6)")
    parser.add_argument("--input-feeding", choices=("off", "on"), default="on", help="random model only")
    parser.add_argument("--small", action="store_true", help="tiny random model, 2 rounds: a smoke run")
    parser.add_argument(
        "--profile", type=int, default=0, metavar="N", help="print torch.profiler's N costliest operations per call"
    )
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: torch sees no CUDA device here")
    shape = replace(SMALL if args.small else Shape(), batch_size=args.batch_size, dropout=0.0)
    rounds = 2 if args.small else args.rounds

    dtype = getattr(torch, args.dtype)
    if args.model:
        model = LSTMSeq2SeqForConditionalGeneration.from_pretrained(args.model, dtype=dtype)
        shape = replace(shape, src_vocab=model.config.vocab_size)
    else:
        torch.manual_seed(0)
        model = hf_model(shape, args.input_feeding == "on").to(dtype)
    model = model.to(device).eval()
    model.cut_sequences = 0  # count outputs cut at --new-tokens instead of warning on every call
    batch = make_batches(shape, 1)[0]
    source, mask = batch.input_ids.to(device), batch.attention_mask.to(device)
    modes = {"eager": False, "graphs": True} if device.type == "cuda" else {"eager": False}

    print(
        f"decode_step.py: torch {torch.__version__}, transformers {transformers.__version__}, "
        + (f"GPU {torch.cuda.get_device_name(device)}" if device.type == "cuda" else f"CPU {cpu_model()}")
    )
    print(
        f"model: {args.model or 'random, peer shape'} ({model.config.input_feeding=}), {args.dtype}; "
        f"batch {len(source)} sentences, source {source.shape[1]} tokens at most; {rounds} timed calls per mode "
        "after one warm-up call (graph capture)\n"
    )
    print("| beams | mode | ms per step (median) | min-max | steps per call | tokens equal to eager |")
    print("|---|---|---|---|---|---|")
    for beams in args.beams:
        outputs, times, steps = {}, {name: [] for name in modes}, {}
        for name, graphs in modes.items():  # warm-up: cuDNN/cuBLAS handles, graph capture
            outputs[name] = decode(model, source, mask, beams, args.new_tokens, graphs)[0]
        for round_index in range(rounds):
            order = list(modes.items()) if round_index % 2 == 0 else list(reversed(modes.items()))
            for name, graphs in order:
                sequences, seconds, steps[name] = decode(model, source, mask, beams, args.new_tokens, graphs)
                times[name].append(1000 * seconds / steps[name])
                assert torch.equal(sequences, outputs[name]), f"{name} decoding is not repeatable"
        if args.profile:
            for name, graphs in modes.items():
                with torch.profiler.profile() as profiler:
                    decode(model, source, mask, beams, args.new_tokens, graphs)
                print(f"beams {beams}, {name}: host time by operation")
                print(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.profile))
        for name in modes:
            equal = torch.equal(outputs[name].cpu(), outputs["eager"].cpu())
            print(
                f"| {beams} | {name} | {statistics.median(times[name]):.3f} | {min(times[name]):.3f}-"
                f"{max(times[name]):.3f} | {steps[name]} | {'yes' if equal else 'NO'} |"
            )


if __name__ == "__main__":
    main()
