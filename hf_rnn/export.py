"""Export a translator to ONNX: the encoder and one decoder step, the recurrent state as plain tensors.

    python -m hf_rnn.export --model outputs/multi30k-en-de --output exported/
    python -m hf_rnn.export --model outputs/multi30k-en-de --output exported-int8/ --quantize int8
    python -c "from hf_rnn.onnx_translator import OnnxTranslator; ..."      # decode with onnxruntime

Writes to the output folder:

- `encoder.onnx`: input_ids, attention_mask (B, S) -> memory (B, S, H), the encoder outputs, and the
  decoder's initial state: hidden (layers, B, H), cell (layers, B, H; LSTM), input_feed (B, H; with
  input feeding), attention_keys (B, S, H; concat attention).
- `decoder_step.onnx`: decoder_input_ids (B, K) for K beams of each source (1 for greedy search), memory,
  attention_mask, attention_keys as the encoder gave them, and the state per beam, hidden and cell (layers, B, K, H),
  input_feed (B, K, H) -> logits (B, K, V) and the state after the token, named new_hidden, new_cell, new_input_feed.
- `log_softmax_top_k.onnx`: logits (B, V), k (1,) -> top_log_probs, top_tokens (B, k): each row's k best
  tokens and their log-probabilities, best first, for beam search.
- `onnx_decoding.json`: the generation settings and the state's names, read by `OnnxTranslator`;
  config.json and generation_config.json; the tokenizer when the model folder has one.
- `onnx_translator.py`: `OnnxTranslator` itself (numpy and onnxruntime only), for machines without torch:
  `sys.path.insert(0, "exported/"); from onnx_translator import OnnxTranslator`.

Batch size, beams and source length are dynamic. The graphs come from `torch.onnx.export(..., dynamo=True)`;
the recurrent layers are exported as explicit projections (`LSTMSeq2SeqUnrolledRNN`, whose time loop
becomes an ONNX Scan), so variable source lengths behave as packed sequences do in PyTorch.
`OnnxTranslator.generate` reproduces `model.generate()`'s greedy and beam search over them.
"""

import argparse
import contextlib
import io
import json
import logging
import shutil
import sys
import warnings
from pathlib import Path

import torch
from torch import nn
from transformers import AutoModelForSeq2SeqLM, GenerationConfig

from .cli import first_line, load_error_reason
from .onnx_translator import FORMAT, SETTINGS, TOP_K
from .translator.generation_lstm_seq2seq import MAX_NEW_TOKENS_OFFSET, MAX_NEW_TOKENS_RATIO, chosen_length_limits
from .translator.modeling_lstm_seq2seq import (
    LSTMSeq2SeqForConditionalGeneration,
    LSTMSeq2SeqUnrolledRNN,
)

PROG = "python -m hf_rnn.export"
OPSET = 18
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
# Generation settings that add logits processors or sampling, which the ONNX decoding loop does not replicate.
UNSUPPORTED = {
    "do_sample": False,
    "min_length": 0,
    "min_new_tokens": None,
    "repetition_penalty": 1.0,
    "encoder_repetition_penalty": 1.0,
    "no_repeat_ngram_size": 0,
    "encoder_no_repeat_ngram_size": 0,
    "bad_words_ids": None,
    "suppress_tokens": None,
    "begin_suppress_tokens": None,
    "forced_bos_token_id": None,
    "forced_eos_token_id": None,
    "sequence_bias": None,
    "exponential_decay_length_penalty": None,
    "renormalize_logits": False,
    "remove_invalid_values": False,
    "num_beam_groups": 1,
}


class ExportError(Exception):
    """A model or generation config the export cannot represent, said in one sentence."""


def state_names(config) -> list[str]:
    """The recurrent state tensors of this architecture, in graph order."""
    names = ["hidden"]
    if config.cell_type == "lstm":
        names.append("cell")
    if config.input_feeding:
        names.append("input_feed")
    if config.attention_type == "concat":
        names.append("attention_keys")
    return names


class EncoderGraph(nn.Module):
    """The source through the encoder, and the decoder's state before the first target token."""

    def __init__(self, model: LSTMSeq2SeqForConditionalGeneration):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        encoder_outputs = self.model.get_encoder()(input_ids, attention_mask=attention_mask)
        cache = self.model.model.decoder.init_cache(encoder_outputs)
        state = (cache.hidden, cache.cell, cache.input_feed, cache.attention_keys)
        return encoder_outputs.last_hidden_state, *(tensor for tensor in state if tensor is not None)


class DecoderStepGraph(nn.Module):
    """One target token for every beam of every source through the decoder and the softmax layer, the state as plain
    tensors. The encoder memory, its mask and the attention keys come once per source, not once per beam: the beams
    of a source attend together, as T = beams queries (`LSTMSeq2SeqAttention` takes any T), which reads the memory
    once instead of once per beam and leaves the decoding loop no memory to copy when beams are reordered."""

    def __init__(self, model: LSTMSeq2SeqForConditionalGeneration):
        super().__init__()
        self.model = model
        self.names = state_names(model.config)

    def forward(
        self, decoder_input_ids: torch.Tensor, memory: torch.Tensor, attention_mask: torch.Tensor, *state
    ) -> tuple[torch.Tensor, ...]:
        """decoder_input_ids (B, K) for B sources and K beams, memory (B, S, H), attention_mask (B, S), state
        (hidden and cell (layers, B, K, H), input_feed (B, K, H), attention_keys (B, S, H)) -> logits (B, K, V) and
        the state after the token, shaped as given."""
        decoder, given = self.model.model.decoder, dict(zip(self.names, state))
        sources, beams = decoder_input_ids.shape
        hidden = list(given["hidden"].flatten(1, 2).unbind(0))  # layers x (B * K, H)
        cell = None if "cell" not in given else list(given["cell"].flatten(1, 2).unbind(0))
        feed = given.get("input_feed")
        step_input = decoder.embed_tokens(decoder_input_ids.flatten())  # (B * K, E)
        if feed is not None:
            step_input = torch.cat([step_input, feed.flatten(0, 1)], dim=-1)
        output = decoder._cell_step(step_input, hidden, cell)  # (B * K, H)
        vectors, _ = decoder._attend(
            output.view(sources, beams, -1), memory, attention_mask.bool(), given.get("attention_keys")
        )  # (B, K, H)

        def shaped(tensors: list[torch.Tensor]) -> torch.Tensor:
            return torch.stack(tensors).view(len(tensors), sources, beams, -1)

        updated = (shaped(hidden), None if cell is None else shaped(cell), vectors if feed is not None else None)
        return self.model.lm_head(vectors), *(tensor for tensor in updated if tensor is not None)


def decoding_settings(model: LSTMSeq2SeqForConditionalGeneration) -> dict:
    """What `OnnxTranslator` needs of the config and generation config to decode as `model.generate()` does."""
    generation = model.generation_config
    defaults = GenerationConfig._get_default_generation_params()  # what generate() uses for the fields left None

    def setting(name: str):
        value = getattr(generation, name, None)
        return defaults.get(name) if value is None else value

    changed = [name for name, default in UNSUPPORTED.items() if setting(name) not in (None, default)]
    if changed:
        raise ExportError(
            f"the generation config sets {', '.join(changed)}, which the ONNX decoding loop does not replicate "
            "(greedy and beam search without logits processors); reset them in generation_config.json"
        )
    max_length_chosen, max_new_tokens_chosen = chosen_length_limits(generation, None, {})
    eos = model.config.eos_token_id if generation.eos_token_id is None else generation.eos_token_id
    config = model.config
    return {
        "vocab_size": config.vocab_size,
        "pad_token_id": config.pad_token_id,
        "eos_token_ids": eos if isinstance(eos, list) else [eos],
        "decoder_start_token_id": config.decoder_start_token_id,
        "num_beams": setting("num_beams"),
        "length_penalty": setting("length_penalty"),
        "early_stopping": setting("early_stopping"),
        "max_new_tokens": generation.max_new_tokens if max_new_tokens_chosen else None,
        "max_length": generation.max_length if max_length_chosen else None,
        "max_new_tokens_ratio": getattr(generation, "max_new_tokens_ratio", MAX_NEW_TOKENS_RATIO),
        "max_new_tokens_offset": getattr(generation, "max_new_tokens_offset", MAX_NEW_TOKENS_OFFSET),
        "state": state_names(config),
    }


def export_translator(
    model: LSTMSeq2SeqForConditionalGeneration, output: str | Path, verbose: bool = False, quantize: str | None = None
) -> Path:
    """Write `encoder.onnx`, `decoder_step.onnx` and `onnx_decoding.json` for `model` into `output` (see the module
    docstring). Returns the folder.

    quantize="int8": onnxruntime's dynamic quantization of both graphs (`onnxruntime.quantization.quantize_dynamic`:
    int8 weights, activations quantized per call, integer matrix products that use AVX512-VNNI where the CPU has
    it). Weights keep 7 bits (`reduce_range`): without VNNI, onnxruntime sums pairs of uint8 x int8 products in 16
    bits, which 8-bit weights overflow (on an AVX2 CPU a tiny model's logits were 14-19 % off, against 0.6-1.1 %
    with 7 bits). Outputs are close to the float graphs', not equal: measure BLEU (benchmarks/decode.py --onnx DIR).

    Raises:
        ExportError: a quantized or non-translator model, generation settings the ONNX loop cannot replicate, or
            an unknown `quantize`.
    """
    if quantize not in (None, "int8"):
        raise ExportError(f"quantize must be None or 'int8', got {quantize!r}")
    settings = {**decoding_settings(model), "quantization": quantize, "format": FORMAT}
    source = model
    if any(type(p.data) is not torch.Tensor for p in source.parameters()):
        raise ExportError("the model is quantized: export the model as loaded, before quantize_int8()")
    model = LSTMSeq2SeqForConditionalGeneration(source.config).eval()
    model.load_state_dict(source.state_dict())
    model.float()
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.RNNBase):
            parent, _, attribute = name.rpartition(".")
            setattr(model.get_submodule(parent), attribute, LSTMSeq2SeqUnrolledRNN(module))

    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    config, names = model.config, settings["state"]
    batch, source_len = torch.export.Dim("batch"), torch.export.Dim("source_length")
    beams = torch.export.Dim("beams")
    input_ids = torch.randint(3, config.vocab_size, (2, 3))
    mask = torch.ones(2, 3, dtype=torch.long)
    with torch.no_grad():
        encoded = EncoderGraph(model)(input_ids, mask)
    # The decoder step's example: 3 beams per source, every state tensor but the attention keys per beam.
    beam_axis = {"hidden": 2, "cell": 2, "input_feed": 1}
    step_state = [
        tensor.unsqueeze(beam_axis[name]).repeat_interleave(3, beam_axis[name]) if name in beam_axis else tensor
        for name, tensor in zip(names, encoded[1:])
    ]
    state_shapes = {
        "hidden": {1: batch, 2: beams},
        "cell": {1: batch, 2: beams},
        "input_feed": {0: batch, 1: beams},
        "attention_keys": {0: batch, 1: source_len},
    }
    exports = [
        (
            "encoder.onnx",
            EncoderGraph(model),
            (input_ids, mask),
            ["input_ids", "attention_mask"],
            ["memory", *names],
            ({0: batch, 1: source_len}, {0: batch, 1: source_len}),
        ),
        (
            "decoder_step.onnx",
            DecoderStepGraph(model),
            (torch.full((2, 3), config.decoder_start_token_id), encoded[0], mask, *step_state),
            ["decoder_input_ids", "memory", "attention_mask", *names],
            ["logits", *(f"new_{name}" for name in names if name != "attention_keys")],
            (
                {0: batch, 1: beams},
                {0: batch, 1: source_len},
                {0: batch, 1: source_len},
                tuple(state_shapes[name] for name in names),  # *state
            ),
        ),
    ]
    for file, graph, args, input_names, output_names, dynamic_shapes in exports:
        # The exporter reports its progress on stdout and warns and logs about its own internals (e.g. that
        # torchvision's operators are not registered): shown with --verbose only.
        with contextlib.redirect_stdout(sys.stdout if verbose else io.StringIO()), warnings.catch_warnings():
            if not verbose:
                warnings.simplefilter("ignore")
            exporter_log = logging.getLogger("torch.onnx")
            level = exporter_log.level
            exporter_log.setLevel(logging.NOTSET if verbose else logging.ERROR)
            torch.onnx.export(
                graph,
                args,
                str(output / file),
                dynamo=True,
                opset_version=OPSET,
                input_names=input_names,
                output_names=output_names,
                dynamic_shapes=dynamic_shapes,
                external_data=False,
            )
            exporter_log.setLevel(level)
        if quantize == "int8":
            quantize_graph_int8(output / file, verbose)
    write_top_k_graph(output / TOP_K)
    (output / SETTINGS).write_text(json.dumps(settings, indent=2) + "\n")
    # The decoding loop travels with the graphs, as remote code does with a model folder: it needs only numpy and
    # onnxruntime, so a machine without torch or hf_rnn imports it from the folder.
    shutil.copy(Path(__file__).with_name("onnx_translator.py"), output / "onnx_translator.py")
    source.config.save_pretrained(output)
    source.generation_config.save_pretrained(output)
    return output


def write_top_k_graph(path: Path) -> None:
    """Beam search's ranking step as an ONNX graph (see `onnx_translator.TOP_K`): onnxruntime's LogSoftmax and TopK
    run multithreaded in a few milliseconds where numpy's log-softmax and argpartition took about 40 % of a beam-5
    decode. TopK ranks equal values by lower index, as a stable sort does."""
    from onnx import TensorProto, helper, save_model

    nodes = [
        helper.make_node("LogSoftmax", ["logits"], ["log_probs"], axis=-1),
        helper.make_node("TopK", ["log_probs", "k"], ["top_log_probs", "top_tokens"], axis=-1, largest=1, sorted=1),
    ]
    graph = helper.make_graph(
        nodes,
        "log_softmax_top_k",
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["rows", "vocabulary"]),
            helper.make_tensor_value_info("k", TensorProto.INT64, [1]),
        ],
        [
            helper.make_tensor_value_info("top_log_probs", TensorProto.FLOAT, ["rows", "k"]),
            helper.make_tensor_value_info("top_tokens", TensorProto.INT64, ["rows", "k"]),
        ],
    )
    save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)]), path)


def quantize_graph_int8(path: Path, verbose: bool = False) -> None:
    """Replace the float graph at `path` by onnxruntime's dynamically quantized one (int8 weights, a scale per output
    channel: on a Multi30k model, beam-5 BLEU moved by +0.27 against -0.28 with one scale per tensor; 7-bit weights,
    which AVX2's 16-bit sums of products cannot overflow)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    staged = path.with_suffix(".int8.onnx")
    # It logs through the root logger about tensors it leaves in float (e.g. boolean masks) and suggests a
    # pre-processing step meant for static quantization: shown with --verbose only.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.NOTSET if verbose else logging.ERROR)
    try:
        quantize_dynamic(path, staged, weight_type=QuantType.QInt8, per_channel=True, reduce_range=True)
    finally:
        root.setLevel(level)
    staged.replace(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="Saved translator folder or Hub id.")
    parser.add_argument("--output", required=True, help="Folder to write the ONNX files into.")
    parser.add_argument("--trust-remote-code", action="store_true", help="Needed only for models not made by hf_rnn.")
    parser.add_argument(
        "--quantize",
        choices=["int8"],
        help="Quantize both graphs with onnxruntime (int8 weights, dynamic activations): smaller and faster, "
        "close to the float model's output; check BLEU with benchmarks/decode.py --onnx.",
    )
    parser.add_argument("--verbose", action="store_true", help="Show the exporter's progress.")
    args = parser.parse_args(argv)
    try:
        model = AutoModelForSeq2SeqLM.from_pretrained(args.model, trust_remote_code=args.trust_remote_code)
    except (OSError, ValueError) as error:
        print(f"{PROG}: error: cannot load {args.model}: {load_error_reason(args.model, error)}", file=sys.stderr)
        return 1
    try:
        folder = export_translator(model, args.output, verbose=args.verbose, quantize=args.quantize)
    except (OSError, ValueError, ExportError) as error:
        print(f"{PROG}: error: {first_line(error)}", file=sys.stderr)
        return 1
    model_folder = Path(args.model)
    for name in TOKENIZER_FILES:
        if (model_folder / name).exists():
            shutil.copy(model_folder / name, folder / name)
    print(f"ONNX encoder and decoder step written to {folder}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
