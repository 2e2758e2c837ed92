"""Correctness of the translator, each check against an independent computation."""

import copy
import itertools
import json
import logging
from functools import partial

import pytest
import torch
from helpers import (
    BLOCK_HF_RNN,
    FIXTURES,
    beam_vocabulary_arrays,
    indexing_backward_nodes,
    op_outputs,
    random_batch,
    run_python,
    tiny_config,
    tiny_model,
)
from huggingface_hub.errors import StrictDataclassError
from torch import nn
from torch.func import functional_call
from transformers import AutoConfig, GenerationConfig, GenerationMixin
from transformers.generation import utils as generation_utils
from transformers.generation.logits_process import SequenceBiasLogitsProcessor
from transformers.testing_utils import CaptureLogger

from hf_rnn import LSTMSeq2SeqConfig, LSTMSeq2SeqForConditionalGeneration
from hf_rnn.translator import generation_lstm_seq2seq as generation
from hf_rnn.translator import modeling_lstm_seq2seq as modeling
from hf_rnn.translator.configuration_lstm_seq2seq import ATTENTION_TYPES, CELL_TYPES
from hf_rnn.translator.generation_lstm_seq2seq import LiveRows
from hf_rnn.translator.modeling_lstm_seq2seq import LSTMSeq2SeqUnrolledRNN, token_cross_entropy

COMBINATIONS = list(itertools.product(CELL_TYPES, ATTENTION_TYPES, [True, False]))


@pytest.mark.parametrize("cell_type,attention_type,input_feeding", COMBINATIONS)
def test_incremental_logits_equal_teacher_forced(cell_type, attention_type, input_feeding):
    """One token per call with the state carried must reproduce the one-shot teacher-forced pass."""
    model = tiny_model(
        cell_type=cell_type, attention_type=attention_type, input_feeding=input_feeding, num_decoder_layers=2
    )
    source, mask = random_batch([6, 3, 5], model.config.vocab_size)
    target = torch.randint(3, model.config.decoder_vocab_size, (3, 7), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = model(input_ids=source, attention_mask=mask, decoder_input_ids=target).logits
        encoder_outputs = model.get_encoder()(source, attention_mask=mask)
        cache, steps = None, []
        for t in range(target.shape[1]):
            out = model(
                encoder_outputs=encoder_outputs,
                attention_mask=mask,
                decoder_input_ids=target[:, t : t + 1],
                cache=cache,
                use_cache=True,
            )
            cache = out.cache
            steps.append(out.logits)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)
    assert cache.get_seq_length() == target.shape[1]


def test_the_time_loops_index_no_step_for_backward():
    """The decoder's loop (input feeding) and the unrolled RNN's (int8, export) read their steps by `unbind`: the
    number of indexing nodes in the training graph does not grow with the target or source length."""
    model = tiny_model(input_feeding=True, num_decoder_layers=2)
    source, mask = random_batch([6, 3], model.config.vocab_size)

    def decoder_nodes(length: int) -> int:
        labels = torch.randint(3, model.config.decoder_vocab_size, (2, length))
        return indexing_backward_nodes(model(input_ids=source, attention_mask=mask, labels=labels).loss)

    unrolled = LSTMSeq2SeqUnrolledRNN(torch.nn.LSTM(4, 5, num_layers=2, bidirectional=True, batch_first=True))

    def unrolled_nodes(length: int) -> int:
        outputs, _ = unrolled(torch.randn(2, length, 4, requires_grad=True), lengths=torch.tensor([length, 2]))
        return indexing_backward_nodes(outputs.sum())

    assert decoder_nodes(3) == decoder_nodes(9)
    assert unrolled_nodes(3) == unrolled_nodes(9)


@pytest.mark.parametrize("cell_type,attention_type", [("lstm", "general"), ("gru", "concat"), ("rnn", "dot")])
def test_padding_invariance_of_encoder_and_generation(cell_type, attention_type):
    """A sentence batched with longer ones must encode and translate exactly as when alone."""
    model = tiny_model(cell_type=cell_type, attention_type=attention_type, num_encoder_layers=2)
    lengths = [3, 7, 5, 1]
    source, mask = random_batch(lengths, model.config.vocab_size, seed=3)
    with torch.no_grad():
        batched = model.get_encoder()(source, attention_mask=mask)
        greedy = model.generate(input_ids=source, attention_mask=mask, max_new_tokens=8)
        beam = model.generate(input_ids=source, attention_mask=mask, max_new_tokens=8, num_beams=3)
        for row, length in enumerate(lengths):
            alone_ids, alone_mask = source[row : row + 1, :length], mask[row : row + 1, :length]
            alone = model.get_encoder()(alone_ids, attention_mask=alone_mask)
            torch.testing.assert_close(
                batched.last_hidden_state[row, :length], alone.last_hidden_state[0], atol=1e-5, rtol=0
            )
            assert (batched.last_hidden_state[row, length:] == 0).all()
            torch.testing.assert_close(batched.final_hidden_state[row], alone.final_hidden_state[0], atol=1e-5, rtol=0)
            for batched_out, kwargs in ((greedy, {}), (beam, {"num_beams": 3})):
                single = model.generate(input_ids=alone_ids, attention_mask=alone_mask, max_new_tokens=8, **kwargs)[0]
                got = batched_out[row][: single.shape[0]]
                assert torch.equal(got, single), (row, kwargs)
                # Finished rows are filled (greedy pads, beam search repeats EOS).
                filler = batched_out[row][single.shape[0] :]
                assert ((filler == model.config.pad_token_id) | (filler == model.config.eos_token_id)).all()


def manual_greedy(model, source, mask, max_new_tokens):
    """Greedy decoding by re-running the full teacher-forced pass each step (no cache, no generate())."""
    sequence = torch.tensor([[model.config.decoder_start_token_id]])
    for _ in range(max_new_tokens):
        logits = model(input_ids=source, attention_mask=mask, decoder_input_ids=sequence, use_cache=False).logits
        next_token = logits[0, -1].argmax()
        sequence = torch.cat([sequence, next_token.view(1, 1)], dim=1)
        if next_token.item() == model.config.eos_token_id:
            break
    return sequence[0]


@pytest.mark.parametrize("input_feeding", [True, False])
def test_greedy_and_single_beam_match_manual_decoding(input_feeding):
    model = tiny_model(input_feeding=input_feeding, seed=4)
    source, mask = random_batch([5, 4], model.config.vocab_size, seed=5)
    with torch.no_grad():
        greedy = model.generate(input_ids=source, attention_mask=mask, max_new_tokens=10)
        one_beam = model.generate(input_ids=source, attention_mask=mask, max_new_tokens=10, num_beams=1)
        for row in range(2):
            expected = manual_greedy(model, source[row : row + 1, : int(mask[row].sum())], None, 10)
            assert torch.equal(greedy[row][: expected.shape[0]], expected)
    assert torch.equal(greedy, one_beam)


@pytest.mark.parametrize("cell_type,input_feeding", [("lstm", True), ("lstm", False), ("gru", True)])
def test_dropping_ended_sentences_leaves_greedy_output_unchanged(cell_type, input_feeding):
    """Our generate() stops computing finished rows; stock GenerationMixin.generate computes them all."""
    # A slightly wider model than tiny_model's default, whose sentences end at different steps.
    model = tiny_model(seed=3, cell_type=cell_type, input_feeding=input_feeding, hidden_size=32, embedding_size=16)
    source, mask = random_batch([6, 2, 5, 3, 6, 4, 1, 5], model.config.vocab_size, seed=9)
    rows_through_softmax = []
    hook = model.lm_head.register_forward_hook(lambda module, args, out: rows_through_softmax.append(args[0].shape[0]))
    with torch.no_grad():
        ours = model.generate(input_ids=source, attention_mask=mask, max_new_tokens=12)
        hook.remove()
        stock = GenerationMixin.generate(model, input_ids=source, attention_mask=mask, max_new_tokens=12)
    assert torch.equal(ours, stock)
    eos = model.config.eos_token_id
    ended_at = {(row == eos).nonzero()[0, 0].item() if (row == eos).any() else None for row in stock}
    assert len(ended_at) >= 3, "the test needs sentences that end at different steps"
    assert rows_through_softmax[0] == len(stock) and min(rows_through_softmax) < len(stock)
    assert model._live_rows is None  # only set while generate() runs


@pytest.mark.parametrize(
    "early_stopping,length_penalty,num_return_sequences",
    [(False, 1.0, 1), (True, 1.0, 2), ("never", 0.0, 1), (False, -0.5, 3), (False, 0.0, 1), (True, 0.0, 2)],
)
def test_dropping_done_sentences_leaves_beam_search_output_unchanged(
    early_stopping, length_penalty, num_return_sequences
):
    """Our generate() stops computing sentences no running beam can improve; stock generate computes them all."""
    model = tiny_model(seed=3, hidden_size=32, embedding_size=16)
    source, mask = random_batch([6, 2, 5, 3, 6, 4, 1, 5], model.config.vocab_size, seed=9)
    kwargs = dict(
        input_ids=source,
        attention_mask=mask,
        max_new_tokens=12,
        num_beams=4,
        early_stopping=early_stopping,
        length_penalty=length_penalty,
        num_return_sequences=num_return_sequences,
    )
    rows_through_softmax = []
    hook = model.lm_head.register_forward_hook(lambda module, args, out: rows_through_softmax.append(args[0].shape[0]))
    with torch.no_grad():
        ours = model.generate(**kwargs)
        hook.remove()
        stock = GenerationMixin.generate(model, **kwargs)
    assert torch.equal(ours, stock)
    assert rows_through_softmax[0] == 4 * len(source) and min(rows_through_softmax) < 4 * len(source)
    assert model._live_rows is None


@pytest.mark.parametrize(
    "attention_type,input_feeding,cell_type",
    [("concat", False, "lstm"), ("general", True, "gru"), ("dot", True, "rnn")],
)
def test_beams_read_one_encoding_of_their_sentence(attention_type, input_feeding, cell_type):
    """Beam search keeps the encoder memory (and the concat attention's keys) one per sentence, also as finished
    sentences leave the batch, and gives stock generate()'s output, whose memory is copied for every beam."""
    model = tiny_model(
        seed=3,
        hidden_size=32,
        embedding_size=16,
        attention_type=attention_type,
        input_feeding=input_feeding,
        cell_type=cell_type,
    )
    with torch.no_grad():  # sentences that end at different steps (a random model rarely ends)
        model.lm_head.bias[model.config.eos_token_id] += 1.5
    source, mask = random_batch([6, 2, 5, 3, 6, 4, 1, 5], model.config.vocab_size, seed=9)
    kwargs = dict(input_ids=source, attention_mask=mask, max_new_tokens=12, num_beams=4, length_penalty=0.0)
    seen = []  # (decoder rows, memory rows, attention key rows) of every step

    def record(module, args, kwargs):
        keys = kwargs["cache"].attention_keys if kwargs.get("cache") is not None else None
        seen.append((args[0].shape[0], args[1].last_hidden_state.shape[0], None if keys is None else keys.shape[0]))

    hook = model.model.decoder.register_forward_pre_hook(record, with_kwargs=True)
    with torch.no_grad():
        ours = model.generate(**kwargs)
        hook.remove()
        stock = GenerationMixin.generate(model, **kwargs)
    assert torch.equal(ours, stock)
    assert seen[0][:2] == (4 * len(source), len(source))
    assert all(rows == 4 * memory and keys in (None, memory) for rows, memory, keys in seen)
    assert min(memory for _, memory, _ in seen) < len(source)  # sentences left the batch


def test_beam_search_holds_three_vocabulary_arrays_at_most(tmp_path, monkeypatch):
    """A beam step needs the model's logits, their float32 copy and its log-softmax, then the scores summed with
    the beams' (rows, vocabulary each). transformers' loop also keeps the previous step's summed scores until the
    next are computed (four arrays at once), and a full-batch logits array kept across steps would be one more:
    neither outlives its step here. Stock generate(), with transformers' own top-k step, gives the output (and
    shows that the count sees the fourth array)."""
    model = tiny_model(seed=3, hidden_size=32, embedding_size=16, decoder_vocab_size=2000)
    with torch.no_grad():  # sentences that end at different steps, so rows are dropped
        model.lm_head.bias[model.config.eos_token_id] += 3.0
    source, mask = random_batch([6, 2, 5, 3, 6, 4, 1, 5], model.config.vocab_size, seed=9)
    kwargs = dict(input_ids=source, attention_mask=mask, max_new_tokens=12, num_beams=4)
    one_sentence = 4 * 2000 * 4  # its beams' float32 scores: less than any (rows, vocabulary) array, more than others
    counts = beam_vocabulary_arrays(model, kwargs, one_sentence, tmp_path, monkeypatch, stock=GenerationMixin.generate)
    assert counts == (3, 4)


def test_dropping_finished_sentences_takes_encoder_outputs_in_every_form():
    """Finished sentences leave the batch whatever form the encoder outputs come in: with hidden states
    (`output_hidden_states`, or precomputed with them), or a caller's plain tuple; stock generate() is the oracle
    (it expands a caller's encoder outputs in place, hence the copies). Without the mask the model names what is
    missing."""
    model = tiny_model(seed=3, hidden_size=16, embedding_size=8, attention_type="concat", input_feeding=True)
    with torch.no_grad():  # sentences that end at different steps
        model.lm_head.bias[model.config.eos_token_id] += 1.5
    source, mask = random_batch([6, 2, 5, 3, 6, 4, 1, 5], model.config.vocab_size, seed=9)
    with torch.no_grad():
        encoded = model.get_encoder()(source, attention_mask=mask, output_hidden_states=True)
    calls = [
        dict(input_ids=source, attention_mask=mask, output_hidden_states=True),
        dict(input_ids=source, attention_mask=mask, output_hidden_states=True, num_beams=3),
        dict(encoder_outputs=encoded, attention_mask=mask, num_beams=3),
        dict(encoder_outputs=encoded.to_tuple()[:3], attention_mask=mask),
    ]
    with torch.no_grad():
        for kwargs in calls:
            ours = model.generate(**copy.deepcopy(kwargs), max_new_tokens=10)
            stock = GenerationMixin.generate(model, **copy.deepcopy(kwargs), max_new_tokens=10)
            assert torch.equal(ours, stock), kwargs.keys()
        with pytest.raises(ValueError, match="precomputed `encoder_outputs` together with `attention_mask`"):
            model.generate(encoder_outputs=encoded, max_new_tokens=10)


def test_a_sentence_settles_once_no_running_beam_can_reach_its_returned_hypotheses():
    """The bound is the best running score at the length that favours it most; hand-computed cases."""
    running = torch.tensor([[-3.0, -5.0], [-3.0, -5.0]])
    finished = torch.tensor([[-2.5, -4.0], [-3.5, -1e9]])
    filled = torch.tensor([[True, True], [True, False]])
    at = dict(cur_len=5, max_length=11, decoder_prompt_len=1)
    rows = LiveRows(num_beams=2)
    assert not rows.sentences_settled(running, finished, filled, length_penalty=0.0, **at).any()  # processors unknown
    rows.scores_never_rise = True
    # No penalty: -2.5 > -3.0 settles sentence 0; sentence 1's best (-3.5) could still be beaten.
    assert rows.sentences_settled(running, finished, filled, length_penalty=0.0, **at).tolist() == [True, False]
    # Positive penalty: the bound is -3.0 / 10 (the longest allowed length), above both finished scores.
    assert rows.sentences_settled(running, finished, filled, length_penalty=1.0, **at).tolist() == [False, False]
    # Negative penalty: the bound is -3.0 * 4**0.5 = -6.0 (the shortest length still to come).
    assert rows.sentences_settled(running, finished, filled, length_penalty=-0.5, **at).tolist() == [True, True]
    # Two returned hypotheses: sentence 0's second (-4.0) is below -3.0, sentence 1 has only one.
    rows.num_return_sequences = 2
    assert rows.sentences_settled(running, finished, filled, length_penalty=0.0, **at).tolist() == [False, False]


def test_beam_search_keeps_every_sentence_open_when_a_processor_can_raise_scores(monkeypatch):
    """A positive sequence bias can lift a later hypothesis above an early best one: no settling then."""
    model = tiny_model(seed=3, hidden_size=32, embedding_size=16)
    source, mask = random_batch([6, 2, 5, 3, 6, 4, 1, 5], model.config.vocab_size, seed=9)
    kwargs = dict(
        input_ids=source,
        attention_mask=mask,
        max_new_tokens=12,
        num_beams=4,
        length_penalty=0.0,
        sequence_bias={(3, model.config.eos_token_id): 10.0},
    )
    with torch.no_grad():
        stock = GenerationMixin.generate(model, **kwargs)
        assert torch.equal(model.generate(**kwargs), stock)
        # The case is sensitive: settling anyway (as if the bias could not raise scores) changes the output.
        raising = (SequenceBiasLogitsProcessor,)
        monkeypatch.setattr(generation, "NON_RAISING_PROCESSORS", generation.NON_RAISING_PROCESSORS + raising)
        forced = model.generate(**kwargs)
    assert forced.shape != stock.shape or not torch.equal(forced, stock)


def test_rows_are_kept_when_generate_returns_per_row_scores():
    model = tiny_model(seed=3, hidden_size=32, embedding_size=16)
    source, mask = random_batch([6, 2, 5, 3, 6, 4, 1, 5], model.config.vocab_size, seed=9)
    with torch.no_grad():
        ours = model.generate(
            input_ids=source, attention_mask=mask, max_new_tokens=8, return_dict_in_generate=True, output_scores=True
        )
        stock = GenerationMixin.generate(
            model,
            input_ids=source,
            attention_mask=mask,
            max_new_tokens=8,
            return_dict_in_generate=True,
            output_scores=True,
        )
    assert all(torch.equal(a, b) for a, b in zip(ours.scores, stock.scores))


def token_log_probs(model, source, sequence: torch.Tensor) -> torch.Tensor:
    """Log-probability of each token of `sequence` (start token first, up to `</s>`) under a teacher-forced pass."""
    tokens = sequence[1:]
    pad, eos = model.config.pad_token_id, model.config.eos_token_id
    if (tokens == eos).any():
        tokens = tokens[: int((tokens == eos).nonzero()[0, 0]) + 1]
    else:
        tokens = tokens[tokens != pad] if (tokens == pad).any() else tokens
    decoder_input = torch.cat([sequence[:1], tokens[:-1]]).unsqueeze(0)
    logits = model(input_ids=source, decoder_input_ids=decoder_input).logits[0]
    return torch.log_softmax(logits, dim=-1).gather(1, tokens.unsqueeze(1)).squeeze(1)


def rescore(model, source, sequence: torch.Tensor) -> tuple[float, int]:
    """Sum of log-probabilities of `sequence` (start token first) under a teacher-forced pass, and its length."""
    steps = token_log_probs(model, source, sequence)
    return steps.sum().item(), steps.shape[0]


@pytest.mark.parametrize("length_penalty", [1.0, 0.0, 2.0])
@pytest.mark.parametrize("input_feeding", [True, False])
def test_beam_scores_equal_teacher_forced_rescore(length_penalty, input_feeding):
    """Each returned hypothesis' score is its true log-probability (normalised): proves states follow their beams."""
    model = tiny_model(seed=6, input_feeding=input_feeding, attention_type="concat")
    source, mask = random_batch([6, 2, 4], model.config.vocab_size, seed=7)
    with torch.no_grad():
        out = model.generate(
            input_ids=source,
            attention_mask=mask,
            num_beams=4,
            num_return_sequences=3,
            length_penalty=length_penalty,
            early_stopping=True,
            max_new_tokens=9,
            output_scores=True,
            return_dict_in_generate=True,
        )
        for index, sequence in enumerate(out.sequences):
            row = index // 3
            length = int(mask[row].sum())
            log_prob, n_tokens = rescore(model, source[row : row + 1, :length], sequence)
            expected = log_prob / (n_tokens**length_penalty)
            assert out.sequences_scores[index].item() == pytest.approx(expected, abs=1e-4), index
    # Hypotheses come out best first.
    scores = out.sequences_scores.view(3, 3)
    assert (scores[:, :-1] >= scores[:, 1:] - 1e-6).all()


def test_transition_scores_of_beams_are_target_log_probabilities():
    """`compute_transition_scores` on beam output, with a target vocabulary narrower than the source one: each
    step's score is the teacher-forced log-probability of the chosen token, and they add up to the beam's score."""
    model = tiny_model(seed=6)
    assert model.config.decoder_vocab_size < model.config.vocab_size
    source, mask = random_batch([6, 2, 4], model.config.vocab_size, seed=7)
    with torch.no_grad():
        out = model.generate(
            input_ids=source,
            attention_mask=mask,
            num_beams=4,
            num_return_sequences=2,
            length_penalty=0.0,
            max_new_tokens=9,
            output_scores=True,
            return_dict_in_generate=True,
        )
        transition = model.compute_transition_scores(out.sequences, out.scores, out.beam_indices)
        for index, sequence in enumerate(out.sequences):
            row = index // 2
            length = int(mask[row].sum())
            steps = token_log_probs(model, source[row : row + 1, :length], sequence)
            torch.testing.assert_close(transition[index, : len(steps)], steps, atol=1e-4, rtol=0)
    torch.testing.assert_close(transition.sum(-1), out.sequences_scores, atol=1e-4, rtol=0)


def test_beam_scores_detect_a_broken_reorder(monkeypatch):
    """Negative control: with reordering disabled, the re-score check above must fail."""
    monkeypatch.setattr(LSTMSeq2SeqForConditionalGeneration, "_reorder_cache", lambda self, cache, beam_idx: cache)
    model = tiny_model(seed=6)
    source, mask = random_batch([6, 2, 4], model.config.vocab_size, seed=7)
    with torch.no_grad():
        out = model.generate(
            input_ids=source,
            attention_mask=mask,
            num_beams=4,
            num_return_sequences=3,
            max_new_tokens=9,
            output_scores=True,
            return_dict_in_generate=True,
        )
        mismatches = 0
        for index, sequence in enumerate(out.sequences):
            row = index // 3
            log_prob, n_tokens = rescore(model, source[row : row + 1, : int(mask[row].sum())], sequence)
            mismatches += abs(out.sequences_scores[index].item() - log_prob / n_tokens) > 1e-4
    assert mismatches > 0


@pytest.mark.parametrize("num_beams", [1, 3])
def test_generate_without_attention_mask_reads_it_from_the_padding(num_beams):
    """`model.generate(input_ids)` masks the padding as transformers does (from `pad_token_id`)."""
    model = tiny_model(seed=3)
    source, mask = random_batch([5, 2, 4], model.config.vocab_size, seed=2)
    with torch.no_grad():
        expected = model.generate(input_ids=source, attention_mask=mask, max_new_tokens=8, num_beams=num_beams)
        assert torch.equal(model.generate(source, max_new_tokens=8, num_beams=num_beams), expected)


def test_sampling_options_and_constraints():
    model = tiny_model(seed=8)
    source, mask = random_batch([5, 3], model.config.vocab_size, seed=9)
    torch.manual_seed(0)
    out = model.generate(
        input_ids=source,
        attention_mask=mask,
        do_sample=True,
        temperature=0.7,
        top_k=5,
        top_p=0.9,
        min_new_tokens=4,
        max_new_tokens=12,
        no_repeat_ngram_size=2,
        output_scores=True,
        return_dict_in_generate=True,
    )
    eos = model.config.eos_token_id
    for sequence in out.sequences:
        body = sequence[1:].tolist()
        assert eos not in body[:4]  # min_new_tokens
        bigrams = [
            tuple(body[i : i + 2]) for i in range(len(body) - 1) if model.config.pad_token_id not in body[i : i + 2]
        ]
        assert len(bigrams) == len(set(bigrams))  # no_repeat_ngram_size=2
    assert len(out.scores) == out.sequences.shape[1] - 1
    assert out.sequences.shape[1] <= 13


@pytest.mark.parametrize(
    "cell_type,attention_type,input_feeding", [("lstm", "general", True), ("gru", "concat", False)]
)
def test_gradcheck_through_time(cell_type, attention_type, input_feeding):
    """Analytic gradients of the loss w.r.t. every parameter equal finite differences (BPTT is right)."""
    torch.manual_seed(0)
    config = tiny_config(
        vocab_size=7,
        decoder_vocab_size=6,
        embedding_size=3,
        hidden_size=4,
        cell_type=cell_type,
        attention_type=attention_type,
        input_feeding=input_feeding,
        init_range=0.5,
    )
    model = LSTMSeq2SeqForConditionalGeneration(config).double().eval()
    names, values = zip(*[(n, p.detach().clone().requires_grad_(True)) for n, p in model.named_parameters()])
    source = torch.tensor([[3, 4, 5, 2], [6, 2, 0, 0]])
    labels = torch.tensor([[3, 4, 2], [5, 2, -100]])

    def loss(*params):
        return functional_call(
            model,
            dict(zip(names, params)),
            (),
            {
                "input_ids": source,
                "attention_mask": source.ne(0),
                "labels": labels,
            },
        ).loss

    assert torch.autograd.gradcheck(loss, values, eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1, 1.0])
@pytest.mark.parametrize("num_items_in_batch", [None, 9, torch.tensor(11)])
@pytest.mark.parametrize("block_elements", [1 << 21, 40])
def test_token_cross_entropy_equals_torch_s(monkeypatch, num_items_in_batch, block_elements, label_smoothing):
    """The loss (computed over blocks of rows) gives `nn.functional.cross_entropy`'s value and gradient, -100 ignored,
    with and without label smoothing; a small block makes several blocks of the 21 rows."""
    monkeypatch.setattr(modeling.TokenCrossEntropy, "BLOCK_ELEMENTS", block_elements)
    torch.manual_seed(0)
    logits = torch.randn(3, 7, 13, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, 13, (3, 7))
    labels[0, 4:] = -100
    before = logits.detach().clone()
    ours = token_cross_entropy(logits, labels, num_items_in_batch, label_smoothing)
    flat_logits, flat_labels = logits.reshape(-1, 13), labels.reshape(-1)
    torch_loss = partial(nn.functional.cross_entropy, flat_logits, flat_labels, label_smoothing=label_smoothing)
    if num_items_in_batch is None:
        reference = torch_loss(ignore_index=-100)
    else:
        reference = torch_loss(reduction="sum") / num_items_in_batch
    torch.testing.assert_close(ours, reference)
    torch.testing.assert_close(torch.autograd.grad(ours, logits)[0], torch.autograd.grad(reference, logits)[0])
    assert torch.equal(logits.detach(), before)  # float64 blocks are not cast: they must be copied, not overwritten
    smoothed = partial(token_cross_entropy, labels=labels, label_smoothing=label_smoothing)
    assert torch.autograd.gradcheck(smoothed, (logits,))


def test_label_smoothing_outside_0_to_1_is_named():
    with pytest.raises(ValueError, match="`label_smoothing` must be in \\[0, 1\\], got 1.5"):
        token_cross_entropy(torch.randn(2, 3, 5), torch.zeros(2, 3, dtype=torch.long), label_smoothing=1.5)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_bfloat16_logits_get_a_float32_loss_without_a_float32_copy(monkeypatch, label_smoothing):
    """bfloat16 logits (autocast's) get the loss of their values computed in float64, to float32 rounding, and a
    bfloat16 gradient; no float32 tensor larger than a block is made in either pass, where
    `nn.functional.cross_entropy` makes several of the logits' full size (copy, log-softmax, zero-filled gradient)."""
    monkeypatch.setattr(modeling.TokenCrossEntropy, "BLOCK_ELEMENTS", 64)
    torch.manual_seed(0)
    logits = torch.randn(40, 32).bfloat16().requires_grad_()
    labels = torch.randint(0, 32, (40,))
    labels[::5] = -100
    exact = logits.detach().double().requires_grad_()
    reference = nn.functional.cross_entropy(exact, labels, ignore_index=-100, label_smoothing=label_smoothing)
    reference.backward()

    def loss_and_gradient():
        loss = token_cross_entropy(logits, labels, label_smoothing=label_smoothing)
        loss.backward()
        return loss

    outputs = op_outputs(loss_and_gradient)
    float32_sizes = [torch.Size(shape).numel() for _, shape, dtype in outputs if dtype == torch.float32]
    assert max(float32_sizes) <= 64
    loss = token_cross_entropy(logits, labels, label_smoothing=label_smoothing)
    assert loss.dtype == torch.float32 and logits.grad.dtype == torch.bfloat16
    torch.testing.assert_close(loss.double(), reference.detach(), rtol=1e-6, atol=0)
    torch.testing.assert_close(logits.grad.double(), exact.grad, rtol=1e-2, atol=1e-4)


def _gradients(model, source, labels, torch_cells: bool, monkeypatch, backward_passes: int = 1) -> dict:
    """Every parameter's gradient after `backward_passes` backward passes of one forward (retain_graph), through the
    loop's deferred products (`TimeLoopLinear`, `TimeLoopMemoryProduct`) or (`torch_cells`) torch's own cell
    functions and attention arithmetic."""
    with monkeypatch.context() as patch:
        if torch_cells:
            patch.setattr(modeling.LSTMSeq2SeqDecoder, "_time_loop_weights", lambda self: None)
            patch.setattr(modeling.LSTMSeq2SeqDecoder, "_time_loop_attention", lambda self, memory: None)
        model.zero_grad()
        loss = model(input_ids=source, labels=labels).loss
        for _ in range(backward_passes):
            loss.backward(retain_graph=True)
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize(
    "cell_type,layers,attention_type",
    [("lstm", 1, "general"), ("lstm", 2, "concat"), ("gru", 2, "dot"), ("rnn", 1, "none")],
)
def test_the_input_feeding_loop_s_weight_gradients_equal_torch_s_cells(monkeypatch, cell_type, layers, attention_type):
    """float64: the loop's deferred weight gradients (one product per loop) equal those of torch's cell functions,
    labels partly ignored, for two backward passes of one graph and with a frozen recurrent weight."""
    torch.manual_seed(0)
    config = tiny_config(
        cell_type=cell_type,
        num_decoder_layers=layers,
        attention_type=attention_type,
        input_feeding=True,
        dropout=0.0,
        embedding_dropout=0.0,
    )
    model = LSTMSeq2SeqForConditionalGeneration(config).double()
    source, _ = random_batch([5, 3, 4], config.vocab_size)
    labels = torch.randint(4, config.decoder_vocab_size, (3, 6))
    labels[1, 3:] = -100
    for passes in (1, 2):
        ours = _gradients(model, source, labels, False, monkeypatch, passes)
        reference = _gradients(model, source, labels, True, monkeypatch, passes)
        assert ours.keys() == reference.keys()
        for name in reference:
            torch.testing.assert_close(ours[name], reference[name], msg=name)
    model.model.decoder.rnn.weight_hh_l0.requires_grad_(False)
    ours = _gradients(model, source, labels, False, monkeypatch)
    reference = _gradients(model, source, labels, True, monkeypatch)
    assert "model.decoder.rnn.weight_hh_l0" not in ours and ours.keys() == reference.keys()
    for name in reference:
        torch.testing.assert_close(ours[name], reference[name], msg=name)


def test_a_hooked_or_replaced_projection_still_runs_in_the_training_loop():
    """Deferring gradients reads the projections' weights; a forward hook or an adapter that replaced the layer must
    still see every step, so the loop then calls the modules as before."""
    model = tiny_model(input_feeding=True).train()
    source, _ = random_batch([5, 3], model.config.vocab_size)
    labels = torch.randint(4, model.config.decoder_vocab_size, (2, 7))
    attention = model.model.decoder.attention
    calls = []
    hook = attention.output_proj.register_forward_hook(lambda module, args, out: calls.append(out.shape))
    model(input_ids=source, labels=labels).loss.backward()
    hook.remove()
    assert len(calls) == 7

    class Scaled(nn.Linear):  # an adapter's stand-in: a subclass whose forward differs from its weight's product
        def forward(self, x):
            return 2 * super().forward(x)

    torch.manual_seed(0)
    plain = model(input_ids=source, labels=labels).loss
    scaled = Scaled(attention.output_proj.in_features, attention.output_proj.out_features, bias=False)
    scaled.weight = attention.output_proj.weight
    attention.output_proj = scaled
    torch.manual_seed(0)
    assert not torch.allclose(model(input_ids=source, labels=labels).loss, plain)


@pytest.mark.parametrize("attention_type", ["general", "dot"])
def test_the_input_feeding_loop_computes_each_weight_gradient_in_one_product(attention_type):
    """Backward through T input-feeding steps multiplies once for the recurrent weight's and the attention output
    projection's gradients, and twice (scores, contexts) for the encoder memory's, not once per step (T small
    products and T - 1 accumulations of a weight- or memory-sized tensor); under autocast as well."""
    model = tiny_model(input_feeding=True, dropout=0.0, attention_type=attention_type)
    source, _ = random_batch([5, 3], model.config.vocab_size)
    labels = torch.randint(4, model.config.decoder_vocab_size, (2, 7))
    decoder = model.model.decoder
    weight_shapes = [tuple(decoder.rnn.weight_hh_l0.shape), tuple(decoder.attention.output_proj.weight.shape)]
    memory_shape = (2, 5, model.config.hidden_size)
    for autocast in (False, True):
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = model(input_ids=source, labels=labels).loss
        outputs = op_outputs(loss.backward)
        for weight_shape in weight_shapes:
            products = [op for op, shape, _ in outputs if op in ("aten.mm", "aten.addmm") and shape == weight_shape]
            assert len(products) == 1, (autocast, weight_shape, len(products))
        memory_products = [op for op, shape, _ in outputs if op == "aten.bmm" and shape == memory_shape]
        assert len(memory_products) == 2, (autocast, len(memory_products))
        assert decoder.rnn.weight_hh_l0.grad.dtype == torch.float32


@pytest.mark.parametrize("cell_type,input_feeding", list(itertools.product(CELL_TYPES, [True, False])))
def test_training_under_cpu_bf16_autocast_is_close_to_float32(cell_type, input_feeding):
    """`--bf16 true` on a CPU: a training step under torch.autocast(bfloat16) runs on any CPU (the fused decoder
    call failed inside oneDNN on CPUs without AVX-512) and gives the float32 loss and gradients to bf16
    rounding."""
    model = tiny_model(cell_type=cell_type, input_feeding=input_feeding, dropout=0.0)
    source, mask = random_batch([5, 3], model.config.vocab_size)
    labels = torch.randint(4, model.config.decoder_vocab_size, (2, 6))
    results = []
    for autocast in (False, True):
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = model(input_ids=source, attention_mask=mask, labels=labels).loss
        loss.backward()
        results.append((loss.detach().float(), [p.grad.float() for p in model.parameters()]))
    (loss, grads), (bf16_loss, bf16_grads) = results
    torch.testing.assert_close(bf16_loss, loss, atol=0.02, rtol=0.02)
    for grad, bf16_grad in zip(grads, bf16_grads):
        torch.testing.assert_close(bf16_grad, grad, atol=0.02, rtol=0.1)


@pytest.mark.parametrize("supported", [True, False])
def test_fused_rnn_runs_in_float32_where_the_cpu_has_no_reduced_precision_lstm(monkeypatch, supported):
    """Where oneDNN has no bfloat16 LSTM, the call leaves autocast and equals the float32 call exactly; where it
    has one, autocast keeps it (bfloat16 outputs)."""
    if supported and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        pytest.skip("this CPU has no bfloat16 LSTM in oneDNN (it needs AVX-512 or AMX)")
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: supported)
    torch.manual_seed(0)
    rnn = nn.LSTM(6, 8, batch_first=True)
    inputs, state = torch.randn(2, 4, 6), (torch.randn(1, 2, 8), torch.randn(1, 2, 8))
    expected, _ = rnn(inputs, state)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outputs, _ = modeling.run_rnn(rnn, inputs, state)
    if supported:
        assert outputs.dtype == torch.bfloat16
    else:
        torch.testing.assert_close(outputs, expected, rtol=0, atol=0)


def test_loss_ignores_minus_100_and_matches_manual_cross_entropy():
    model = tiny_model(seed=10)
    source, mask = random_batch([4, 3], model.config.vocab_size)
    labels = torch.tensor([[5, 6, 7, 2], [8, 2, -100, -100]])
    out = model(input_ids=source, attention_mask=mask, labels=labels)
    log_probs = torch.log_softmax(out.logits, dim=-1)
    picked = [log_probs[b, t, labels[b, t]] for b in range(2) for t in range(4) if labels[b, t] != -100]
    assert out.loss.item() == pytest.approx(-torch.stack(picked).mean().item(), rel=1e-5)
    # Padding the labels further must not change the loss.
    padded = torch.cat([labels, torch.full((2, 3), -100)], dim=1)
    assert model(input_ids=source, attention_mask=mask, labels=padded).loss.item() == pytest.approx(
        out.loss.item(), rel=1e-5
    )


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"cell_type": "transformer"}, "field 'cell_type'"),
        ({"attention_type": "luong"}, "field 'attention_type'"),
        ({"decoder_init": "copy"}, "field 'decoder_init'"),
        ({"dropout": 1.0}, "field 'dropout':\n    ValueError: must be in [0, 1), got 1.0"),
        ({"hidden_size": 0}, "field 'hidden_size':\n    ValueError: must be positive, got 0"),
        ({"num_encoder_layers": 1.5}, "Field 'num_encoder_layers' expected int, got float"),
        ({"bidirectional_encoder": "yes"}, "Field 'bidirectional_encoder' expected bool"),
        ({"hidden_size": 7}, "`hidden_size` must be even"),
        ({"share_embeddings": True, "decoder_vocab_size": 11}, "`share_embeddings=True` needs one joint vocabulary"),
        ({"tie_word_embeddings": True, "embedding_size": 6}, "`tie_word_embeddings=True` needs `embedding_size`"),
        ({"eos_token_id": 50}, "`eos_token_id` must be None or an id in [0, 19)"),
        ({"hiden_size": 12}, "LSTMSeq2SeqConfig has no field `hiden_size`; did you mean `hidden_size`?"),
    ],
)
def test_config_validation_names_the_field(kwargs, message):
    with pytest.raises((ValueError, TypeError, StrictDataclassError)) as error:
        tiny_config(**kwargs)
    assert message in str(error.value)
    with pytest.raises((ValueError, TypeError, StrictDataclassError), match=list(kwargs)[0]):  # as when loading
        LSTMSeq2SeqConfig.from_dict({**tiny_config().to_diff_dict(), **kwargs})


def test_config_validation_also_applies_when_loading_and_assigning(tmp_path):
    tiny_config().save_pretrained(tmp_path)
    text = (tmp_path / "config.json").read_text().replace('"cell_type": "lstm"', '"cell_type": "lstmm"')
    (tmp_path / "config.json").write_text(text)
    with pytest.raises(StrictDataclassError, match="field 'cell_type'"):
        LSTMSeq2SeqConfig.from_pretrained(tmp_path)
    config = tiny_config()
    with pytest.raises(StrictDataclassError, match="field 'dropout'"):
        config.dropout = -0.1


@pytest.mark.parametrize("name", ["translator", "translator_shared"])
def test_configs_saved_before_typed_fields_still_load(name, tmp_path):
    """config.json files written by the untyped config class (with auto_map and custom_pipelines) load unchanged."""
    saved = json.loads((FIXTURES / "configs_saved_before_strict" / f"{name}.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps(saved))
    loaded = AutoConfig.from_pretrained(tmp_path).to_dict()
    assert {key: loaded[key] for key in saved if key != "transformers_version"} == {
        key: value for key, value in saved.items() if key != "transformers_version"
    }


@pytest.mark.parametrize(
    "field,make",
    [
        (
            "input_ids",
            lambda s, m: dict(
                input_ids=s.masked_fill(s == s[0, 0], 99), attention_mask=m, decoder_input_ids=s[:, :2] % 5
            ),
        ),
        (
            "decoder_input_ids",
            lambda s, m: dict(input_ids=s, attention_mask=m, decoder_input_ids=torch.full((2, 2), 19)),
        ),
        ("labels", lambda s, m: dict(input_ids=s, attention_mask=m, labels=torch.tensor([[3, -5], [4, 2]]))),
    ],
)
def test_out_of_range_token_ids_give_a_clear_error(field, make):
    model = tiny_model()
    source, mask = random_batch([3, 2], model.config.vocab_size)
    with pytest.raises(ValueError, match=f"`{field}` contains token id .* outside the vocabulary"):
        model(**make(source, mask))


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda s, m: dict(input_ids=s, labels=s[:1] % 5), "`labels` has 1 rows but the batch has 2"),
        (lambda s, m: dict(input_ids=s, decoder_input_ids=s[:1] % 5), "`decoder_input_ids` has 1 rows but the batch"),
        (lambda s, m: dict(input_ids=s, labels=(s % 5).float()), "`labels` must be a tensor of integer token ids"),
        (lambda s, m: dict(input_ids=s.float(), labels=s % 5), "`input_ids` must be a tensor of integer token ids"),
        (
            lambda s, m: dict(input_ids=s[0], labels=s % 5),
            r"`input_ids` must have shape \(batch, length\), got \(3,\)",
        ),
        (lambda s, m: dict(input_ids=s, labels=(s % 5).flatten()), r"`labels` must have shape \(batch, length\)"),
        (lambda s, m: dict(input_ids=s, attention_mask=m[:, :2], labels=s % 5), "`attention_mask` has shape"),
    ],
)
def test_inputs_of_the_wrong_kind_shape_or_batch_are_named_before_torch_sees_them(make, message):
    """These used to fail inside torch (a concatenation or an embedding) with a shape or dtype message."""
    model = tiny_model()
    source, mask = random_batch([3, 2], model.config.vocab_size)
    with pytest.raises(ValueError, match=message):
        model(**make(source, mask))


def test_left_padding_and_empty_rows_are_rejected():
    model = tiny_model()
    source = torch.tensor([[0, 5, 6], [4, 5, 6]])
    with pytest.raises(ValueError, match="right-padded"):
        model.generate(input_ids=source, attention_mask=source.ne(0).long(), max_new_tokens=2)
    with pytest.raises(ValueError, match="Source sequence 1 of the batch is empty"):
        model(input_ids=source, attention_mask=torch.tensor([[1, 1, 1], [0, 0, 0]]), decoder_input_ids=source)


def test_cross_attentions_are_distributions_over_real_source_tokens():
    model = tiny_model()
    source, mask = random_batch([5, 2], model.config.vocab_size)
    out = model(input_ids=source, attention_mask=mask, decoder_input_ids=source[:, :3] % 7 + 3, output_attentions=True)
    (weights,) = out.cross_attentions
    assert weights.shape == (2, 1, 3, 5)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 1, 3))
    assert weights[1, :, :, 2:].abs().max() < 1e-12


def test_tied_and_shared_embeddings_stay_tied_after_loading(tmp_path):
    model = tiny_model(
        tie_word_embeddings=True, share_embeddings=True, decoder_vocab_size=23, embedding_size=10, hidden_size=10
    )
    decoder_embedding = model.model.decoder.embed_tokens.weight
    assert model.lm_head.weight is decoder_embedding
    assert model.model.encoder.embed_tokens.weight is decoder_embedding
    model.save_pretrained(tmp_path)
    loaded = LSTMSeq2SeqForConditionalGeneration.from_pretrained(tmp_path)
    assert loaded.lm_head.weight is loaded.model.decoder.embed_tokens.weight
    assert loaded.model.encoder.embed_tokens.weight is loaded.model.decoder.embed_tokens.weight
    torch.testing.assert_close(loaded.lm_head.weight, model.lm_head.weight)
    # Untied models keep independent matrices.
    untied = tiny_model()
    assert untied.lm_head.weight is not untied.model.decoder.embed_tokens.weight


VOCABULARIES = {
    "joint": dict(decoder_vocab_size=23),
    "joint-tied": dict(decoder_vocab_size=23, tie_word_embeddings=True, embedding_size=10),
    "shared": dict(decoder_vocab_size=23, share_embeddings=True),
    "shared-tied": dict(decoder_vocab_size=23, share_embeddings=True, tie_word_embeddings=True, embedding_size=10),
    "smaller-target": dict(decoder_vocab_size=19),
    "larger-target": dict(decoder_vocab_size=29),
}


def vocabulary_parts(model) -> dict[str, int]:
    """Rows of every vocabulary-sized tensor, and the two sizes in the config."""
    return {
        "source embeddings": model.model.encoder.embed_tokens.weight.shape[0],
        "target embeddings": model.model.decoder.embed_tokens.weight.shape[0],
        "output weight": model.lm_head.weight.shape[0],
        "output bias": model.lm_head.bias.shape[0],
        "output features": model.lm_head.out_features,
        "vocab_size": model.config.vocab_size,
        "decoder_vocab_size": model.config.decoder_vocab_size,
    }


@pytest.mark.parametrize("new_size", [31, 17], ids=["grow", "shrink"])
@pytest.mark.parametrize("vocabulary", list(VOCABULARIES))
def test_resize_token_embeddings_resizes_every_part_and_the_model_reloads(vocabulary, new_size, tmp_path):
    """The source vocabulary takes the new size; the target side follows when it is the same vocabulary
    (`decoder_vocab_size == vocab_size`) and keeps its size otherwise. Shared and tied matrices stay one matrix,
    kept rows keep their values, and the saved model loads and computes the same logits."""
    model = tiny_model(**VOCABULARIES[vocabulary])
    before = vocabulary_parts(model)
    kept = min(new_size, before["vocab_size"])
    old_source = model.model.encoder.embed_tokens.weight[:kept].clone()
    model.resize_token_embeddings(new_size)

    target_size = new_size if before["decoder_vocab_size"] == before["vocab_size"] else before["decoder_vocab_size"]
    source_parts, target_parts = ("source embeddings", "vocab_size"), set(before) - {"source embeddings", "vocab_size"}
    assert vocabulary_parts(model) == {
        **dict.fromkeys(source_parts, new_size),
        **dict.fromkeys(target_parts, target_size),
    }
    torch.testing.assert_close(model.model.encoder.embed_tokens.weight[:kept], old_source, atol=0, rtol=0)
    if model.config.share_embeddings:
        assert model.model.decoder.embed_tokens.weight is model.model.encoder.embed_tokens.weight
    if model.config.tie_word_embeddings:
        assert model.lm_head.weight is model.model.decoder.embed_tokens.weight

    source = torch.tensor([[new_size - 1, 3, 4], [5, new_size - 1, 0]])
    target = torch.tensor([[1, target_size - 1, 3], [1, 4, target_size - 1]])
    model.save_pretrained(tmp_path)
    loaded, info = LSTMSeq2SeqForConditionalGeneration.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    with torch.no_grad():
        expected = model(input_ids=source, decoder_input_ids=target).logits
        torch.testing.assert_close(loaded.eval()(input_ids=source, decoder_input_ids=target).logits, expected)
    assert expected.shape[-1] == target_size


@pytest.mark.parametrize("vocabulary", ["joint", "smaller-target", "joint-tied"])
def test_resize_decoder_token_embeddings_resizes_the_target_side(vocabulary):
    model = tiny_model(**VOCABULARIES[vocabulary])
    source_size = model.config.vocab_size
    model.resize_decoder_token_embeddings(37)
    assert vocabulary_parts(model) == {
        "source embeddings": source_size,
        "vocab_size": source_size,
        **dict.fromkeys(("target embeddings", "output weight", "output bias", "output features"), 37),
        "decoder_vocab_size": 37,
    }
    if model.config.tie_word_embeddings:
        assert model.lm_head.weight is model.model.decoder.embed_tokens.weight
    logits = model(input_ids=torch.tensor([[3, 4]]), decoder_input_ids=torch.tensor([[1, 36]])).logits
    assert logits.shape == (1, 2, 37)


def test_resize_decoder_token_embeddings_refuses_a_shared_matrix():
    model = tiny_model(**VOCABULARIES["shared"])
    with pytest.raises(ValueError, match="`share_embeddings=True`.*resize_token_embeddings"):
        model.resize_decoder_token_embeddings(30)


@pytest.mark.parametrize("vocabulary", ["joint", "shared", "shared-tied", "smaller-target"])
def test_input_embeddings_can_be_replaced_and_parameters_are_counted_once(vocabulary):
    model = tiny_model(**VOCABULARIES[vocabulary])
    # Counted from the saved tensors, where a shared matrix appears under each of its names.
    sizes = {tensor.data_ptr(): tensor.numel() for tensor in model.state_dict().values()}
    assert model.num_parameters() == sum(sizes.values())
    embeddings = {id(m.weight): m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    assert model.num_parameters(exclude_embeddings=True) == sum(sizes.values()) - sum(embeddings.values())

    source, mask = random_batch([4, 2], model.config.vocab_size)
    target = torch.tensor([[1, 5, 6], [1, 7, 2]])
    replacement = torch.nn.Embedding(model.config.vocab_size, model.config.embedding_size, padding_idx=0)
    model.set_input_embeddings(replacement)
    assert model.get_input_embeddings() is replacement
    if model.config.share_embeddings:
        assert model.model.decoder.embed_tokens.weight is replacement.weight
    with torch.no_grad():
        before = model(input_ids=source, attention_mask=mask, decoder_input_ids=target).logits
        token = next(t for t in source[0].tolist() if t not in source[1].tolist() + target.flatten().tolist())
        replacement.weight[token] += 1.0
        after = model(input_ids=source, attention_mask=mask, decoder_input_ids=target).logits
    assert not torch.allclose(before[0], after[0]) and torch.equal(before[1], after[1])  # only row 0 reads it


def never_ending(seed: int = 3):
    """A tiny translator that never emits `</s>`: every output runs to the limit."""
    model = tiny_model(seed=seed)
    with torch.no_grad():
        model.lm_head.bias[model.config.eos_token_id] = -1e4
    return model


def cut_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "without `</s>` and were cut" in r.getMessage()]


@pytest.mark.parametrize("num_beams", [1, 3])
@pytest.mark.parametrize("source_length", [3, 30])
def test_default_output_limit_scales_with_the_source_and_cuts_are_reported(source_length, num_beams, caplog):
    """No limit chosen: ceil(2 x source tokens) + 10 new tokens (the generation config's ratio and offset), and one
    warning per call naming how many outputs were cut."""
    model = never_ending()
    assert (model.generation_config.max_new_tokens_ratio, model.generation_config.max_new_tokens_offset) == (2.0, 10)
    source, mask = random_batch([source_length, 2], model.config.vocab_size, seed=4)
    with torch.no_grad(), caplog.at_level(logging.WARNING):
        out = model.generate(input_ids=source, attention_mask=mask, num_beams=num_beams)
    assert out.shape[1] == 1 + 2 * source_length + 10
    assert cut_warnings(caplog) == [
        f"2 of 2 generated sequences reached the length limit ({2 * source_length + 10} new tokens) without `</s>` "
        "and were cut. Pass a larger `max_new_tokens` to generate() (or raise `max_new_tokens_ratio` / "
        "`max_new_tokens_offset` in the generation config) to allow longer outputs."
    ]


@pytest.mark.parametrize("num_beams", [1, 3])
def test_outputs_that_end_are_not_reported(num_beams, caplog):
    model = tiny_model(seed=2)
    with torch.no_grad():
        model.lm_head.bias[model.config.eos_token_id] += 0.5  # most outputs end early; some run to the limit
        source, mask = random_batch([6, 2, 5, 3, 4, 7], model.config.vocab_size, seed=9)
        with caplog.at_level(logging.WARNING):
            out = model.generate(input_ids=source, attention_mask=mask, max_new_tokens=6, num_beams=num_beams)
    ended = (out == model.config.eos_token_id).any(dim=1)
    assert 0 < int(ended.sum()) < len(out)
    assert cut_warnings(caplog) == [cut_warnings(caplog)[0]] and cut_warnings(caplog)[0].startswith(
        f"{len(out) - int(ended.sum())} of {len(out)} generated sequences"
    )


@pytest.mark.parametrize(
    "limit,new_tokens", [({"max_new_tokens": 5}, 5), ({"max_length": 7}, 6), ({"generation_config": 9}, 8)]
)
def test_a_chosen_limit_replaces_the_default_and_cuts_are_still_reported(limit, new_tokens, caplog):
    model = never_ending()
    if "generation_config" in limit:  # a GenerationConfig passed to generate() with its own max_length
        limit = {"generation_config": GenerationConfig(**{**model.generation_config.to_dict(), "max_length": 9})}
    source, mask = random_batch([30, 2], model.config.vocab_size, seed=4)
    with torch.no_grad(), caplog.at_level(logging.WARNING):
        out = model.generate(input_ids=source, attention_mask=mask, **limit)
    assert out.shape[1] == 1 + new_tokens
    assert len(cut_warnings(caplog)) == 1 and f"({new_tokens} new tokens)" in cut_warnings(caplog)[0]


def test_the_max_length_seq2seq_trainer_writes_into_the_generation_config_is_not_a_choice(caplog):
    """Seq2SeqTrainer's evaluation fills `model.generation_config` with transformers' defaults (max_length 20): the
    default limit must still scale, and a caller's max_new_tokens must not be reported as clashing with it."""
    model = never_ending()
    model.generation_config.update(**GenerationConfig._get_default_generation_params(), defaults_only=True)
    assert model.generation_config.max_length == 20
    source, mask = random_batch([30, 2], model.config.vocab_size, seed=4)
    with torch.no_grad(), CaptureLogger(generation_utils.logger) as transformers_log:
        assert model.generate(input_ids=source, attention_mask=mask).shape[1] == 1 + 70
        assert model.generate(input_ids=source, attention_mask=mask, max_new_tokens=5).shape[1] == 6
    assert "max_length" not in transformers_log.out


def test_generation_code_travels_with_the_model(tmp_path):
    """`save_pretrained` copies the generation file beside the modeling file; a process without hf_rnn loads the
    model as remote code, generates with the same hooks (finished sentences dropped) and gets the same tokens."""
    model = tiny_model(seed=3, hidden_size=32, embedding_size=16)
    model.save_pretrained(tmp_path / "model")
    assert (tmp_path / "model" / "generation_lstm_seq2seq.py").is_file()
    source, mask = random_batch([6, 2, 5, 3, 6, 4, 1, 5], model.config.vocab_size, seed=9)
    torch.save({"input_ids": source, "attention_mask": mask}, tmp_path / "inputs.pt")
    with torch.no_grad():
        expected = [
            model.generate(source, attention_mask=mask, num_beams=k, max_new_tokens=12).tolist() for k in (1, 4)
        ]
    script = (
        BLOCK_HF_RNN
        + f"""
import json, torch
from transformers import AutoModelForSeq2SeqLM
model = AutoModelForSeq2SeqLM.from_pretrained({str(tmp_path / "model")!r}, trust_remote_code=True).eval()
mixin = next(c for c in type(model).__mro__ if c.__name__ == "LSTMSeq2SeqGenerationMixin")
assert mixin.__module__.startswith("transformers_modules"), mixin.__module__
inputs = torch.load({str(tmp_path / "inputs.pt")!r})
rows = []
model.lm_head.register_forward_hook(lambda module, args, out: rows.append(args[0].shape[0]))
with torch.no_grad():
    out = [model.generate(**inputs, num_beams=k, max_new_tokens=12).tolist() for k in (1, 4)]
print(json.dumps([out, min(rows) < len(inputs["input_ids"])]))
"""
    )
    result = run_python(script, tmp_path, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == [expected, True]


@pytest.mark.parametrize("attention_type,input_feeding", [("concat", True), ("general", False)])
def test_activation_checkpointing_recomputes_attention_and_keeps_every_gradient(attention_type, input_feeding):
    """With checkpointing on, the attention layer runs again in the backward pass and the gradients of every
    parameter equal those computed without it."""
    model = tiny_model(seed=5, attention_type=attention_type, input_feeding=input_feeding).train()
    source, mask = random_batch([5, 3, 4], model.config.vocab_size, seed=2)
    labels = torch.tensor([[5, 6, 7, 2], [8, 2, -100, -100], [9, 10, 2, -100]])

    def gradients() -> tuple[dict[str, torch.Tensor], int]:
        calls = []
        # A layer inside the attention: its hooks also fire when the backward pass recomputes the attention.
        hook = model.model.decoder.attention.output_proj.register_forward_hook(lambda *_: calls.append(1))
        model.zero_grad()
        model(input_ids=source, attention_mask=mask, labels=labels).loss.backward()
        hook.remove()
        return {n: p.grad.clone() for n, p in model.named_parameters()}, len(calls)

    plain, plain_calls = gradients()
    model.activation_checkpointing_enable()
    checkpointed, checkpointed_calls = gradients()
    assert model.is_activation_checkpointing and checkpointed_calls == 2 * plain_calls
    for name, gradient in plain.items():
        torch.testing.assert_close(checkpointed[name], gradient, atol=1e-6, rtol=1e-5, msg=name)


def test_activation_checkpointing_without_attention_says_why_not():
    model = tiny_model(attention_type="none")
    with pytest.raises(ValueError, match="not supported with `attention_type='none'`: it recomputes the attention"):
        model.activation_checkpointing_enable()
