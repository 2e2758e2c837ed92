"""Auto classes, the saved folder format, remote code and the translation pipeline."""

import json
import random
import unicodedata

import pytest
import torch
from helpers import BLOCK_HF_RNN, random_batch, run_python, tiny_model
from transformers import AutoConfig, AutoModel, AutoModelForSeq2SeqLM, AutoTokenizer

from hf_rnn import LSTMSeq2SeqConfig, LSTMSeq2SeqForConditionalGeneration, LSTMSeq2SeqModel, TranslationPipeline
from hf_rnn.data.tokenization import train_tokenizer

SENTENCES = ["I am a student.", "You are a doctor.", "He eats an apple.", "We read books."]
TRANSLATIONS = ["나는 학생이다.", "너는 의사다.", "그는 사과를 먹는다.", "우리는 책을 읽는다."]


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(SENTENCES * 20 + TRANSLATIONS * 20, vocab_size=300, show_progress=False)


@pytest.fixture(scope="module")
def translator(tokenizer):
    torch.manual_seed(0)
    config = LSTMSeq2SeqConfig(
        vocab_size=len(tokenizer),
        embedding_size=16,
        hidden_size=16,
        dropout=0.0,
        init_range=0.5,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.bos_token_id,
    )
    model = LSTMSeq2SeqForConditionalGeneration(config).eval()
    model.generation_config.max_new_tokens = 12
    return model


def test_auto_classes_resolve_our_models():
    config = AutoConfig.for_model("lstm_seq2seq", vocab_size=11, hidden_size=8, embedding_size=4)
    assert isinstance(config, LSTMSeq2SeqConfig)
    assert isinstance(AutoModel.from_config(config), LSTMSeq2SeqModel)
    assert isinstance(AutoModelForSeq2SeqLM.from_config(config), LSTMSeq2SeqForConditionalGeneration)


def test_save_writes_hub_format_and_round_trips(tmp_path):
    model = tiny_model(num_encoder_layers=2, cell_type="gru", attention_type="concat")
    model.generation_config.num_beams = 3
    model.save_pretrained(tmp_path)
    files = {p.name for p in tmp_path.iterdir()}
    assert {
        "model.safetensors",
        "config.json",
        "generation_config.json",
        "configuration_lstm_seq2seq.py",
        "modeling_lstm_seq2seq.py",
    } <= files
    auto_map = json.loads((tmp_path / "config.json").read_text())["auto_map"]
    assert auto_map == {
        "AutoConfig": "configuration_lstm_seq2seq.LSTMSeq2SeqConfig",
        "AutoModel": "modeling_lstm_seq2seq.LSTMSeq2SeqModel",
        "AutoModelForSeq2SeqLM": "modeling_lstm_seq2seq.LSTMSeq2SeqForConditionalGeneration",
    }
    loaded = AutoModelForSeq2SeqLM.from_pretrained(tmp_path).eval()
    assert loaded.generation_config.num_beams == 3
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name]), name
    source, mask = random_batch([4, 2], model.config.vocab_size)
    with torch.no_grad():
        assert torch.equal(
            model.generate(input_ids=source, attention_mask=mask),
            loaded.generate(input_ids=source, attention_mask=mask),
        )
    base = AutoModel.from_pretrained(tmp_path)
    assert isinstance(base, LSTMSeq2SeqModel)
    torch.testing.assert_close(base.encoder.rnn.weight_hh_l0, model.model.encoder.rnn.weight_hh_l0)


def test_remote_code_loads_where_hf_rnn_cannot_be_imported(tmp_path, tokenizer, translator):
    """The saved folder alone is enough: a fresh process without `hf_rnn` gets identical outputs."""
    folder = tmp_path / "model"
    translator.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    inputs = tokenizer(SENTENCES, return_tensors="pt", padding=True)
    with torch.no_grad():
        expected = translator.generate(**inputs, num_beams=3).tolist()
        expected_logits = translator(**inputs, decoder_input_ids=inputs["input_ids"][:, :3] % 50).logits
    script = (
        BLOCK_HF_RNN
        + f"""
import json, torch
from transformers import AutoModel, AutoModelForSeq2SeqLM, AutoTokenizer
folder = {str(folder)!r}
tok = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
model = AutoModelForSeq2SeqLM.from_pretrained(folder, trust_remote_code=True).eval()
assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
assert isinstance(AutoModel.from_pretrained(folder, trust_remote_code=True), torch.nn.Module)
inputs = tok({SENTENCES!r}, return_tensors="pt", padding=True)
with torch.no_grad():
    out = model.generate(**inputs, num_beams=3).tolist()
    logits = model(**inputs, decoder_input_ids=inputs["input_ids"][:, :3] % 50).logits
torch.save(logits, {str(tmp_path / "logits.pt")!r})
print(json.dumps(out))
"""
    )
    result = run_python(script, tmp_path, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == expected
    torch.testing.assert_close(torch.load(tmp_path / "logits.pt"), expected_logits, atol=0, rtol=0)


def test_translation_pipeline_in_process(tokenizer, translator):
    pipe = TranslationPipeline(model=translator, tokenizer=tokenizer)
    inputs = tokenizer(SENTENCES[0], return_tensors="pt")
    with torch.no_grad():
        expected = tokenizer.decode(translator.generate(**inputs, num_beams=2)[0], skip_special_tokens=True)
    assert pipe(SENTENCES[0], num_beams=2) == [{"translation_text": expected}]
    batched = pipe(SENTENCES, num_beams=2, batch_size=4)
    assert [item["translation_text"] for item in batched] == [
        pipe(sentence, num_beams=2)[0]["translation_text"] for sentence in SENTENCES
    ]
    several = pipe(SENTENCES[1], num_beams=3, num_return_sequences=3)
    assert len(several) == 3 and all(set(item) == {"translation_text"} for item in several)


def test_translation_pipeline_from_saved_folder_in_fresh_process(tmp_path, tokenizer, translator):
    """`pipeline("translation", model=dir, trust_remote_code=True)` — the task v5 removed — works from the folder."""
    folder = tmp_path / "model"
    TranslationPipeline(model=translator, tokenizer=tokenizer).save_pretrained(folder)
    assert "translation" in json.loads((folder / "config.json").read_text())["custom_pipelines"]
    inputs = tokenizer(SENTENCES[2], return_tensors="pt")
    with torch.no_grad():
        expected = tokenizer.decode(translator.generate(**inputs, max_new_tokens=6)[0], skip_special_tokens=True)
    script = (
        BLOCK_HF_RNN
        + f"""
import json
from transformers import pipeline
pipe = pipeline("translation", model={str(folder)!r}, trust_remote_code=True)
print(json.dumps(pipe({SENTENCES[2]!r}, max_new_tokens=6)))
"""
    )
    result = run_python(script, tmp_path, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == [{"translation_text": expected}]


def test_pipeline_rejects_non_text(tokenizer, translator):
    pipe = TranslationPipeline(model=translator, tokenizer=tokenizer)
    with pytest.raises(ValueError, match="takes text"):
        pipe(123)


def test_tokenizer_round_trip_with_unseen_characters(tmp_path, tokenizer):
    text = "나는 뷁을 먹었다 😀 漢字 naïve"
    ids = tokenizer(text)["input_ids"]
    assert tokenizer.unk_token_id not in ids
    assert ids[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(ids, skip_special_tokens=True) == text
    tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert reloaded(text)["input_ids"] == ids
    assert (reloaded.pad_token_id, reloaded.bos_token_id, reloaded.eos_token_id) == (0, 1, 2)


def _random_texts(count: int, seed: int = 0) -> list[str]:
    """Strings a user might send, and strings built to break a tokenizer: its own markup, every kind of space,
    decomposed characters, emoji sequences, any code point."""
    rng = random.Random(seed)
    pieces = [
        *"abcXYZ019.,!?'\"-",
        *["</s>", "<s>", "<pad>", "<unk>", "<0x41>", "<0xEB>", "\u2581", "\u0120", "\u010a", "##", "@@"],
        *[" ", "  ", "\t", "\n", "\r", "\r\n", "\u00a0", "\u2028", "\u2029", "\u3000", "\x0b", "\x0c", "\x85"],
        *["나는", "학생", "뷁", "\u1100\u1161\u11a8", "e\u0301", "\u00e9", "Å", "ﬁ", "Ａ", "漢字", "مرحبا"],
        *["😀", "👍🏽", "👩\u200d💻", "🇰🇷", "\ufe0f", "\u200b", "\x00", "\ufffd"],
    ]
    texts = []
    for _ in range(count):
        parts = [rng.choice(pieces) for _ in range(rng.randint(0, 12))]
        parts += [chr(rng.choice([rng.randint(0x20, 0xD7FF), rng.randint(0xE000, 0x10FFFF)])) for _ in range(2)]
        rng.shuffle(parts)
        texts.append("".join(parts))
    return texts


def test_any_text_round_trips_through_the_trained_tokenizer(tmp_path):
    """decode(encode(t)) == NFC(t) for every string: markup look-alikes are text, spaces are kept as written."""
    texts = _random_texts(1500)
    tokenizer = train_tokenizer(texts[:500] + SENTENCES * 5 + TRANSLATIONS * 5, vocab_size=400, show_progress=False)
    tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    batch = reloaded(texts, padding=True)
    decoded = reloaded.batch_decode(batch["input_ids"], skip_special_tokens=True)
    for text, ids, back in zip(texts, batch["input_ids"], decoded):
        assert back == unicodedata.normalize("NFC", text), (text, back)
        assert reloaded.unk_token_id not in ids
        assert ids == tokenizer(text, padding="max_length", max_length=len(ids))["input_ids"]
    for text in ["a </s> b", "<pad>", "x<s>y", "<unk>", "<0x41>", " lead", "  two  spaces  ", " ", "a\u2581b"]:
        ids = reloaded(text)["input_ids"]
        assert ids.count(reloaded.eos_token_id) == 1 and ids[-1] == reloaded.eos_token_id, text
        assert reloaded.decode(ids, skip_special_tokens=True) == text
