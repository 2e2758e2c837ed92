"""`python -m hf_rnn.translate` with `--n-best`, `--alignment` and several `--model`s: every printed score against
generate()'s own `sequences_scores`, every alignment against the argmax of the model's cross-attentions (the
incremental ones generate() returns, or a teacher-forced pass), ensembles against `Seq2SeqEnsemble.generate`."""

import pytest
import torch
from transformers import AutoTokenizer

from hf_rnn import LSTMSeq2SeqConfig, LSTMSeq2SeqForConditionalGeneration, TranslationPipeline
from hf_rnn.data.tokenization import train_tokenizer
from hf_rnn.ensemble import Seq2SeqEnsemble
from hf_rnn.translate import CLIError, parse_args, run

SENTENCES = ["I am a student.", "You are a doctor.", "He eats an apple.", "We read books."]
TRANSLATIONS = ["나는 학생이다.", "너는 의사다.", "그는 사과를 먹는다.", "우리는 책을 읽는다."]
# A blank line, a sentence with a tab (written as a space), and a long one: blocks stay in input order.
INPUT = [SENTENCES[0], "", "You are\ta doctor.", SENTENCES[2] + " " + SENTENCES[3], SENTENCES[1]]


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(SENTENCES * 20 + TRANSLATIONS * 20, vocab_size=320, show_progress=False)


def translator(tokenizer, seed: int, eos_bias: float = 1.0, **overrides) -> LSTMSeq2SeqForConditionalGeneration:
    """Random weights, with a bias towards `</s>` so that hypotheses end at different lengths."""
    torch.manual_seed(seed)
    config = LSTMSeq2SeqConfig(
        vocab_size=len(tokenizer), embedding_size=16, hidden_size=16, dropout=0.0, init_range=0.5, **overrides
    )
    model = LSTMSeq2SeqForConditionalGeneration(config).eval()
    with torch.no_grad():
        model.lm_head.bias[config.eos_token_id] += eos_bias
    model.generation_config.max_new_tokens = 10
    return model


@pytest.fixture(scope="module")
def folders(tmp_path_factory, tokenizer):
    """Two saved translators sharing the tokenizer (LSTM with general attention; GRU with concat attention, no input
    feeding) and one without attention."""
    saved = {}
    for name, seed, overrides in [
        ("lstm", 0, {}),
        ("gru", 4, {"cell_type": "gru", "attention_type": "concat", "input_feeding": False, "eos_bias": 1.5}),
        ("plain", 2, {"attention_type": "none"}),
    ]:
        saved[name] = tmp_path_factory.mktemp(name)
        model = translator(tokenizer, seed, **overrides)
        TranslationPipeline(model=model, tokenizer=tokenizer).save_pretrained(saved[name])
    return saved


def translate(tmp_path, *argv) -> list[str]:
    (tmp_path / "in.txt").write_text("\n".join(INPUT) + "\n", encoding="utf-8")
    run(parse_args(["--file", str(tmp_path / "in.txt"), "--output", str(tmp_path / "out.txt"), *map(str, argv)]))
    return (tmp_path / "out.txt").read_text(encoding="utf-8").split("\n")[:-1]


def real_positions(ids: torch.Tensor, tokenizer) -> list[int]:
    """Positions of the tokens that are not special (what alignment indices count)."""
    return [position for position, token in enumerate(ids.tolist()) if token not in tokenizer.all_special_ids]


def alignment_from(weights: torch.Tensor, source_ids: torch.Tensor, generated: torch.Tensor, tokenizer) -> str:
    """`weights` (generated tokens, source tokens): for each non-special generated token, the argmax over the
    non-special source tokens, as `i-j` pairs."""
    sources, targets = real_positions(source_ids, tokenizer), real_positions(generated, tokenizer)
    return " ".join(f"{int(weights[j, sources].argmax())}-{k}" for k, j in enumerate(targets))


@pytest.mark.parametrize("models", [["lstm"], ["lstm", "gru"]], ids=["one-model", "ensemble"])
def test_n_best_blocks_carry_the_beam_scores_of_generate(folders, tokenizer, tmp_path, models):
    lines = translate(tmp_path, *[f"--model={folders[m]}" for m in models], "--n-best", 3, "--num-beams", 4)
    assert len(lines) == 3 * len(INPUT)
    loaded = [LSTMSeq2SeqForConditionalGeneration.from_pretrained(folders[m]).eval() for m in models]
    model = loaded[0] if len(loaded) == 1 else Seq2SeqEnsemble(loaded)
    ended = set()
    for number, sentence in enumerate(INPUT):
        block = [line.split("\t") for line in lines[3 * number : 3 * number + 3]]
        assert all(fields[0] == str(number) for fields in block)
        if not sentence.strip():
            assert block == [[str(number), "", ""]] * 3
            continue
        with torch.no_grad():
            out = model.generate(
                **tokenizer(sentence, return_tensors="pt"),
                num_beams=4,
                num_return_sequences=3,
                output_scores=True,
                return_dict_in_generate=True,
            )
        texts = tokenizer.batch_decode(out.sequences, skip_special_tokens=True)
        assert [fields[2] for fields in block] == [text.replace("\t", " ") for text in texts]
        for fields, score in zip(block, out.sequences_scores.tolist()):
            assert float(fields[1]) == pytest.approx(score, abs=2e-5)
        assert [float(fields[1]) for fields in block] == sorted((float(fields[1]) for fields in block), reverse=True)
        ended.update(len(sequence[sequence != tokenizer.pad_token_id]) for sequence in out.sequences)
    assert len(ended) >= 3, "the test needs hypotheses of different lengths"


def test_greedy_alignments_are_the_argmax_of_the_attention_generate_used(folders, tokenizer, tmp_path):
    lines = translate(tmp_path, "--model", folders["lstm"], "--num-beams", 1, "--alignment")
    assert len(lines) == len(INPUT) and lines[1] == "\t"
    model = LSTMSeq2SeqForConditionalGeneration.from_pretrained(folders["lstm"]).eval()
    for line, sentence in zip(lines, INPUT):
        if not sentence.strip():
            continue
        inputs = tokenizer(sentence, return_tensors="pt")
        with torch.no_grad():
            out = model.generate(**inputs, num_beams=1, output_attentions=True, return_dict_in_generate=True)
        # One (1, 1, 1, source) attention per generated token, from the incremental steps themselves.
        weights = torch.cat([step[0][0, 0] for step in out.cross_attentions])  # (generated, source)
        generated = out.sequences[0, 1:]
        text, alignment = line.split("\t")
        assert text == tokenizer.decode(out.sequences[0], skip_special_tokens=True).replace("\t", " ")
        assert alignment == alignment_from(weights, inputs["input_ids"][0], generated, tokenizer)
        assert alignment and all(len(pair.split("-")) == 2 for pair in alignment.split(" "))


def test_n_best_alignments_of_an_ensemble_follow_its_mean_attention(folders, tokenizer, tmp_path):
    lines = translate(tmp_path, "--model", folders["lstm"], "--model", folders["gru"], "--n-best", 2, "--alignment")
    members = [LSTMSeq2SeqForConditionalGeneration.from_pretrained(folders[m]).eval() for m in ("lstm", "gru")]
    ensemble = Seq2SeqEnsemble(members)
    eos = tokenizer.eos_token_id
    for number, sentence in enumerate(INPUT):
        block = [line.split("\t") for line in lines[2 * number : 2 * number + 2]]
        assert all(len(fields) == 4 for fields in block)
        if not sentence.strip():
            assert all(fields[1:] == ["", "", ""] for fields in block)
            continue
        source = tokenizer(sentence, return_tensors="pt")
        with torch.no_grad():
            sequences = ensemble.generate(**source, num_beams=5, num_return_sequences=2)
        for fields, sequence in zip(block, sequences):
            generated = sequence[1:]
            if (generated == eos).any():
                generated = generated[: int((generated == eos).nonzero()[0, 0]) + 1]
            decoder_input_ids = torch.cat([sequence[:1], generated[:-1]])[None]
            with torch.no_grad():  # each member's teacher-forced attention, averaged here
                attentions = [
                    m(**source, decoder_input_ids=decoder_input_ids, output_attentions=True).cross_attentions[0]
                    for m in members
                ]
            weights = torch.stack(attentions).mean(dim=0)[0, 0]  # (generated, source)
            assert fields[2] == tokenizer.decode(sequence, skip_special_tokens=True).replace("\t", " ")
            assert fields[3] == alignment_from(weights, source["input_ids"][0], generated, tokenizer)


def test_option_errors_are_named(folders, tmp_path):
    with pytest.raises(SystemExit):
        parse_args(["--model", "x", "a", "--n-best", "6", "--num-beams", "5"])
    with pytest.raises(CLIError, match="--alignment: the model has no attention"):
        translate(tmp_path, "--model", folders["plain"], "--alignment")
    other = AutoTokenizer.from_pretrained(folders["gru"])
    other.add_tokens(["extra-token"])
    TranslationPipeline(model=translator(other, 1), tokenizer=other).save_pretrained(tmp_path / "other")
    with pytest.raises(CLIError, match=r"cannot load the model .*lstm.*other: Ensemble members must share one token"):
        translate(tmp_path, "--model", folders["lstm"], "--model", tmp_path / "other")
