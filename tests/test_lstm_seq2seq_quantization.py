"""Reduced-precision decoding: bfloat16 weights and int8 quantization (torchao) for every cell, attention and input
feeding, compared with the fp32 model they come from; checkpoints saved before either existed still load."""

import copy
import itertools
import sys
from pathlib import Path

import pytest
import sacrebleu
import torch
from helpers import FIXTURES, random_batch, tiny_model
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from transformers import AutoModelForSeq2SeqLM

from hf_rnn.translator.modeling_lstm_seq2seq import LSTMSeq2SeqUnrolledRNN

pytest.importorskip("torchao", reason="int8 quantization needs torchao (the `int8` extra)")

COMBINATIONS = list(itertools.product(["lstm", "gru", "rnn"], ["general", "dot", "concat", "none"], [True, False]))
SAVED_BY_MAIN = sorted((FIXTURES / "translators_saved_by_de5942c").glob("*/config.json"))


def medium_model(cell: str, attention: str, feeding: bool) -> nn.Module:
    """Wide enough that int8 rounding is averaged over many terms, as in a real model; small init, as trained."""
    return tiny_model(
        cell_type=cell,
        attention_type=attention,
        input_feeding=feeding,
        embedding_size=16,
        hidden_size=32,
        init_range=0.3,
    )


def as_text(sequences: torch.Tensor) -> list[str]:
    return [" ".join(map(str, row.tolist())) for row in sequences]


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("rnn_class", [nn.LSTM, nn.GRU, nn.RNN])
def test_unrolled_rnn_equals_the_fused_module(rnn_class, bidirectional):
    """The nn.Linear form of a recurrent module (what int8 quantizes and ONNX exports) computes what the fused module
    does: a right-padded batch with lengths as a packed one (final state at each row's last token, zeros at padding),
    and a full batch from a given state."""
    torch.manual_seed(0)
    rnn = rnn_class(5, 6, num_layers=2, bidirectional=bidirectional, batch_first=True).eval()
    unrolled = LSTMSeq2SeqUnrolledRNN(copy.deepcopy(rnn))
    x, lengths = torch.randn(3, 7, 5), torch.tensor([7, 2, 4])
    start = torch.randn(2 * (2 if bidirectional else 1), 3, 6)
    state = (start, start.flip(1)) if rnn_class is nn.LSTM else start
    with torch.no_grad():
        packed, packed_state = rnn(pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False))
        expected = pad_packed_sequence(packed, batch_first=True)[0]
        output, output_state = unrolled(x, lengths=lengths)
        torch.testing.assert_close(output, expected, rtol=0, atol=1e-6)
        torch.testing.assert_close(output_state, packed_state, rtol=0, atol=1e-6)
        torch.testing.assert_close(unrolled(x, state), rnn(x, state), rtol=0, atol=1e-6)


def test_int8_reaches_every_matrix_product():
    """No fused recurrent module is left, and every nn.Linear (recurrent projections included) holds int8 weights."""
    model = tiny_model(attention_type="concat", num_encoder_layers=2, num_decoder_layers=2).quantize_int8()
    assert not any(isinstance(module, nn.RNNBase) for module in model.modules())
    linears = {name: module for name, module in model.named_modules() if isinstance(module, nn.Linear)}
    assert {"model.encoder.rnn.hidden_projections.3", "model.decoder.rnn.input_projections.1", "lm_head"} <= set(
        linears
    )
    assert {type(module.weight).__name__ for module in linears.values()} == {"Int8Tensor"}


@pytest.mark.parametrize("cell, attention, feeding", COMBINATIONS)
def test_int8_and_bf16_translate_as_fp32_does(cell, attention, feeding):
    """Greedy and beam-3 outputs of the int8 and the bfloat16 model against the fp32 model's as reference (BLEU), and
    teacher-forced: the same argmax at almost every position, logits within quantization error but not identical."""
    model = medium_model(cell, attention, feeding)
    reduced = {"int8": copy.deepcopy(model).quantize_int8(), "bf16": copy.deepcopy(model).to(torch.bfloat16)}
    ids, mask = random_batch([3, 4, 5, 6, 7, 8, 9, 10] * 2, 23, seed=1)
    with torch.no_grad():
        for beams in (1, 3):
            reference = model.generate(input_ids=ids, attention_mask=mask, num_beams=beams, max_new_tokens=10)
            for name, other in reduced.items():
                output = other.generate(input_ids=ids, attention_mask=mask, num_beams=beams, max_new_tokens=10)
                bleu = sacrebleu.corpus_bleu(as_text(output), [as_text(reference)], tokenize="none").score
                assert bleu >= 80, (name, beams, bleu)
        labels = reference[:, 1:].masked_fill(reference[:, 1:] == 0, -100)
        expected = model(input_ids=ids, attention_mask=mask, labels=labels).logits
        for name, other in reduced.items():
            logits = other(input_ids=ids, attention_mask=mask, labels=labels).logits.float()
            assert (logits.argmax(-1) == expected.argmax(-1)).float().mean() >= 0.95, name
            assert 0 < (logits - expected).abs().max() < 0.1, name


def test_int8_on_bf16_weights():
    """The two modes combine: int8 weights with bfloat16 activations."""
    model = medium_model("lstm", "general", True)
    combined = copy.deepcopy(model).to(torch.bfloat16).quantize_int8()
    ids, mask = random_batch([4, 7, 9], 23)
    with torch.no_grad():
        expected = model(input_ids=ids, attention_mask=mask, decoder_input_ids=ids % 19).logits
        logits = combined(input_ids=ids, attention_mask=mask, decoder_input_ids=ids % 19).logits
    assert logits.dtype == torch.bfloat16
    assert (logits.float().argmax(-1) == expected.argmax(-1)).float().mean() >= 0.95


@pytest.mark.parametrize("config", SAVED_BY_MAIN, ids=lambda p: p.parent.name)
def test_checkpoints_saved_before_load_in_every_precision(config):
    """A folder written before int8/bf16/export existed loads with every key in place, in fp32 and in bfloat16, and
    quantizes; all three translate alike."""
    folder = config.parent
    model, info = AutoModelForSeq2SeqLM.from_pretrained(folder, output_loading_info=True)
    assert not any(info[kind] for kind in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    bf16 = AutoModelForSeq2SeqLM.from_pretrained(folder, dtype=torch.bfloat16)
    assert {p.dtype for p in bf16.parameters()} == {torch.bfloat16}
    int8 = AutoModelForSeq2SeqLM.from_pretrained(folder).quantize_int8()
    ids, mask = random_batch([5, 3, 8], model.config.vocab_size, seed=2)
    with torch.no_grad():
        expected = model(input_ids=ids, attention_mask=mask, decoder_input_ids=ids[:, :4] % 19).logits
        for other in (bf16, int8):
            logits = other(input_ids=ids, attention_mask=mask, decoder_input_ids=ids[:, :4] % 19).logits.float()
            torch.testing.assert_close(logits, expected, rtol=0, atol=0.15)


def test_a_quantized_model_is_not_saved(tmp_path):
    model = tiny_model().quantize_int8()
    with pytest.raises(ValueError, match="Cannot save quantized weights .* save the model before quantizing it"):
        model.save_pretrained(tmp_path)
    assert not any(Path(tmp_path).iterdir())


def test_int8_without_torchao_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchao.quantization", None)
    with pytest.raises(ImportError, match="Int8 quantization needs torchao: `pip install torchao`"):
        tiny_model().quantize_int8()
