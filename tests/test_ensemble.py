"""Ensemble decoding (`hf_rnn.ensemble.Seq2SeqEnsemble`): each check against an independent computation — the
single model, teacher-forced member log-probabilities averaged by hand, stock `generate()`."""

import pytest
import torch
from helpers import most_allocations_alive, random_batch, tiny_model
from transformers import GenerationMixin, pipeline

from hf_rnn import TranslationPipeline
from hf_rnn.data.tokenization import train_tokenizer
from hf_rnn.ensemble import EnsembleCache, Seq2SeqEnsemble

EOS = 2


def members(*, eos_bias: float = 0.6) -> list:
    """Three translators sharing a vocabulary, unlike in everything else: LSTM with concat attention and input
    feeding; GRU, general attention, no input feeding, wider; two-layer tanh RNN with dot attention. A bias on `</s>`
    makes their hypotheses end at different lengths (a few are cut at the limit)."""
    models = [
        tiny_model(seed=3, attention_type="concat"),
        tiny_model(seed=4, cell_type="gru", input_feeding=False, hidden_size=16),
        tiny_model(seed=5, cell_type="rnn", attention_type="dot", hidden_size=12, num_decoder_layers=2),
    ]
    for model in models:
        with torch.no_grad():
            model.lm_head.bias[EOS] += eos_bias
    return models


def batch():
    return random_batch([6, 2, 4, 5], 23, seed=7)


def target_tokens(sequence: torch.Tensor) -> torch.Tensor:
    """The generated tokens of `sequence` (start token first), up to and including `</s>`, without padding."""
    tokens = sequence[1:]
    if (tokens == EOS).any():
        return tokens[: int((tokens == EOS).nonzero()[0, 0]) + 1]
    return tokens


def ensemble_log_probs(models, source: torch.Tensor, sequence: torch.Tensor) -> torch.Tensor:
    """By hand: each member's teacher-forced log-probabilities, their mean, normalised; those of the tokens taken."""
    tokens = target_tokens(sequence)
    decoder_input = torch.cat([sequence[:1], tokens[:-1]]).unsqueeze(0)
    per_member = [
        torch.log_softmax(m(input_ids=source, decoder_input_ids=decoder_input).logits[0], -1) for m in models
    ]
    mean = torch.stack(per_member).mean(dim=0)
    return torch.log_softmax(mean, dim=-1).gather(1, tokens.unsqueeze(1)).squeeze(1)


@pytest.mark.parametrize("num_beams", [1, 4])
def test_an_ensemble_of_one_is_the_model(num_beams):
    model = members()[0]
    ensemble = Seq2SeqEnsemble([model]).eval()
    source, mask = batch()
    kwargs = dict(input_ids=source, attention_mask=mask, max_new_tokens=9, num_beams=num_beams)
    scored = dict(kwargs, return_dict_in_generate=True, output_scores=True)
    with torch.no_grad():
        assert torch.equal(ensemble.generate(**kwargs), model.generate(**kwargs))
        ours, alone = ensemble.generate(**scored), model.generate(**scored)
    assert torch.equal(ours.sequences, alone.sequences)
    if num_beams == 1:  # greedy scores are the raw logits: the ensemble's are log-probabilities, equal once normalised
        torch.testing.assert_close(
            ensemble.compute_transition_scores(ours.sequences, ours.scores, normalize_logits=True),
            model.compute_transition_scores(alone.sequences, alone.scores, normalize_logits=True),
        )
    else:
        torch.testing.assert_close(ours.sequences_scores, alone.sequences_scores)


def test_an_ensemble_of_one_samples_what_the_model_samples():
    """Sampling draws from the softmax of the scores: the model's logits and the ensemble's log-probabilities give
    the same distribution, hence the same draws from the same seed."""
    model = members()[0]
    source, mask = batch()
    kwargs = dict(input_ids=source, attention_mask=mask, max_new_tokens=9, do_sample=True, num_return_sequences=3)
    with torch.no_grad():
        torch.manual_seed(11)
        alone = model.generate(**kwargs)
        torch.manual_seed(11)
        ours = Seq2SeqEnsemble([model]).generate(**kwargs)
    assert torch.equal(ours, alone) and len(ours) == 3 * len(source)


@pytest.mark.parametrize("length_penalty", [1.0, 0.0])
def test_beam_scores_equal_the_teacher_forced_mean_of_member_log_probabilities(length_penalty):
    """Members of different cell types and attention: every returned hypothesis' score is its log-probability under
    the normalised mean of the members' teacher-forced log-probabilities, so every member's state followed its beam."""
    models = members()
    ensemble = Seq2SeqEnsemble(models).eval()
    source, mask = batch()
    with torch.no_grad():
        out = ensemble.generate(
            input_ids=source,
            attention_mask=mask,
            num_beams=4,
            num_return_sequences=2,
            length_penalty=length_penalty,
            max_new_tokens=9,
            output_scores=True,
            return_dict_in_generate=True,
        )
        lengths = set()
        for index, sequence in enumerate(out.sequences):
            row = index // 2
            steps = ensemble_log_probs(models, source[row : row + 1, : int(mask[row].sum())], sequence)
            lengths.add((len(steps), bool(target_tokens(sequence)[-1] == EOS)))
            expected = steps.sum() / len(steps) ** length_penalty
            assert out.sequences_scores[index].item() == pytest.approx(expected.item(), abs=1e-4), index
    assert len(lengths) >= 3, "the test needs hypotheses of different lengths"


def test_the_rescore_check_detects_a_member_state_that_does_not_follow_its_beam(monkeypatch):
    """Negative control: with the members' states not reordered, the check above fails."""
    monkeypatch.setattr(EnsembleCache, "select", lambda self, index: self)
    models = members()
    source, mask = batch()
    with torch.no_grad():
        out = Seq2SeqEnsemble(models).generate(
            input_ids=source,
            attention_mask=mask,
            num_beams=4,
            max_new_tokens=9,
            output_scores=True,
            return_dict_in_generate=True,
        )
        mismatches = 0
        for row, sequence in enumerate(out.sequences):
            steps = ensemble_log_probs(models, source[row : row + 1, : int(mask[row].sum())], sequence)
            mismatches += abs(out.sequences_scores[row].item() - (steps.sum() / len(steps)).item()) > 1e-4
    assert mismatches > 0


@pytest.mark.parametrize("num_beams", [1, 4])
def test_dropping_finished_sentences_leaves_the_ensemble_output_unchanged(num_beams):
    """Our generate() takes finished sentences out of the batch, the members' states included; stock generate()
    computes every row to the end."""
    ensemble = Seq2SeqEnsemble(members()).eval()
    source, mask = batch()
    kwargs = dict(input_ids=source, attention_mask=mask, max_new_tokens=9, num_beams=num_beams)
    rows = []
    hook = ensemble.members[0].lm_head.register_forward_hook(lambda module, args, out: rows.append(args[0].shape[0]))
    with torch.no_grad():
        ours = ensemble.generate(**kwargs)
        hook.remove()
        stock = GenerationMixin.generate(ensemble, **kwargs)
    assert torch.equal(ours, stock)
    assert min(rows) < rows[0], "no rows were dropped: the test needs sentences that end early"


def test_cross_attentions_are_the_mean_of_the_members_that_attend():
    models = [*members(), tiny_model(seed=9, attention_type="none")]
    source, mask = batch()
    decoder_input_ids = torch.tensor([[1, 5, 7, 4]] * len(source))
    with torch.no_grad():
        ours = Seq2SeqEnsemble(models)(
            input_ids=source, attention_mask=mask, decoder_input_ids=decoder_input_ids, output_attentions=True
        )
        each = [
            m(input_ids=source, attention_mask=mask, decoder_input_ids=decoder_input_ids, output_attentions=True)
            for m in models
        ]
    weights = [output.cross_attentions[0] for output in each if output.cross_attentions is not None]
    assert len(weights) == 3
    torch.testing.assert_close(ours.cross_attentions[0], torch.stack(weights).mean(dim=0))
    logits = torch.stack([torch.log_softmax(output.logits, dim=-1) for output in each]).mean(dim=0)
    torch.testing.assert_close(ours.logits, logits)


def test_a_decoder_step_holds_as_many_vocabulary_arrays_for_four_members_as_for_two(tmp_path):
    """The (B, T, V) arrays alive at once in one forward step do not grow with the members (before: each member's
    log-probabilities, their stack and their mean, 5 for two members and 7 for four); the logits are the mean of the
    members' log-probabilities."""
    models = [tiny_model(seed=seed, decoder_vocab_size=4000) for seed in range(4)]
    source, mask = batch()
    step = dict(input_ids=source, attention_mask=mask, decoder_input_ids=torch.tensor([[1, 5, 7, 4]] * len(source)))
    nbytes = step["decoder_input_ids"].numel() * 4000 * 4

    def count(size: int) -> int:
        ensemble, outputs = Seq2SeqEnsemble(models[:size]), []
        most = most_allocations_alive(lambda: outputs.append(ensemble(**step)), nbytes, tmp_path / f"{size}.json")
        each = [torch.log_softmax(m(**step).logits, dim=-1) for m in models[:size]]
        torch.testing.assert_close(outputs[0].logits, torch.stack(each).mean(dim=0))
        return most

    with torch.no_grad():
        assert [count(2), count(4)] == [3, 3]  # a member's logits, its log-probabilities and the sum


@pytest.mark.parametrize(
    "other, field",
    [
        ({"decoder_vocab_size": 20}, "decoder_vocab_size` is 19 in model 1 and 20 in model 2"),
        ({"vocab_size": 25}, "vocab_size` is 23 in model 1 and 25 in model 2"),
        ({"eos_token_id": 3}, "eos_token_id` is 2 in model 1 and 3 in model 2"),
    ],
)
def test_members_with_different_vocabularies_are_refused(other, field):
    with pytest.raises(ValueError, match=f"Ensemble members must share one tokenizer .*, but `{field}"):
        Seq2SeqEnsemble([tiny_model(seed=1), tiny_model(seed=2, **other)])


def test_saved_members_load_with_their_tokenizers_checked_and_serve_the_translation_pipeline(tmp_path):
    sentences = ["I am a student.", "You are a doctor.", "나는 학생이다.", "너는 의사다."]
    tokenizer = train_tokenizer(sentences * 10, vocab_size=300, show_progress=False)
    other = train_tokenizer([s[::-1] for s in sentences] * 10, vocab_size=300, show_progress=False)
    shape = dict(vocab_size=len(tokenizer), decoder_vocab_size=len(tokenizer))
    models = [tiny_model(seed=1, **shape), tiny_model(seed=2, cell_type="gru", **shape)]
    for index, model in enumerate(models):
        TranslationPipeline(model=model, tokenizer=tokenizer).save_pretrained(tmp_path / f"m{index}")
    TranslationPipeline(model=models[1], tokenizer=other).save_pretrained(tmp_path / "other")

    with pytest.raises(ValueError, match=r"share one tokenizer, but token id \d+ is .* in the tokenizer of .*m0"):
        Seq2SeqEnsemble.from_pretrained([tmp_path / "m0", tmp_path / "other"])
    ensemble = Seq2SeqEnsemble.from_pretrained([tmp_path / "m0", tmp_path / "m1"])
    assert ensemble.config.member_names == [str(tmp_path / "m0"), str(tmp_path / "m1")]
    inputs = tokenizer(sentences[:2], return_tensors="pt", padding=True)
    with torch.no_grad():
        expected = tokenizer.batch_decode(
            Seq2SeqEnsemble(models).generate(**inputs, num_beams=3, max_new_tokens=6), skip_special_tokens=True
        )
    translator = pipeline("translation", model=ensemble, tokenizer=tokenizer)
    outputs = translator(sentences[:2], num_beams=3, max_new_tokens=6, batch_size=2)
    assert [output["translation_text"] for output in outputs] == expected
    with pytest.raises(NotImplementedError, match=r"saved as its members' folders.*from_pretrained\(\["):
        ensemble.save_pretrained(tmp_path / "ensemble")
