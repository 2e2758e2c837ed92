"""The character-level tokenizer: one token per character, byte fallback, exact round trips, a plain saved folder."""

import json
import random

import pytest
from helpers import run_without_hf_rnn
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from hf_rnn.data.tokenization import BYTE_TOKENS, train_char_tokenizer

CORPUS = ["First Citizen:\nBefore we proceed any further, hear me speak.", "나는 학생이다. 영화가 정말 재밌어요!"]

TRICKY = [
    "",
    " ",
    "   leading and trailing   ",
    "tab\there\r\nwindows\nunix\n\n",
    "뷁 똠방각하 햏",  # Hangul syllables not in the corpus
    "\u1112\u1161\u11ab\u1100\u1173\u11af",  # decomposed (NFD) Hangul jamo: must not be composed
    "e\u0301 vs \u00e9",  # combining accent vs precomposed
    "😀 👩‍👩‍👧 👍🏽 🇰🇷",  # astral plane, ZWJ sequence, skin tone, flag
    "漢字 かな カナ ｆｕｌｌｗｉｄｔｈ",
    "مرحبا שלום",
    "<s></s><pad><unk>",  # text that looks like the special tokens
    "<0x41><0xFF>▁",  # text that looks like byte pieces, and SentencePiece's space mark
    "\x00\x07\u200b\ufeff\u2028",  # control, zero-width and separator characters
    "a" * 500,
]


@pytest.fixture(scope="module")
def tokenizer():
    return train_char_tokenizer(CORPUS)


def random_strings(count: int, seed: int = 0) -> list[str]:
    """Strings of random code points from every plane (surrogates excluded: they are not valid text)."""
    rng = random.Random(seed)
    planes = [(0x20, 0x7F), (0xA0, 0xD7FF), (0xE000, 0xFFFD), (0x10000, 0x10FFFF)]
    strings = []
    for _ in range(count):
        characters = []
        for _ in range(rng.randint(0, 30)):
            low, high = rng.choice(planes)
            characters.append(chr(rng.randint(low, high)))
        strings.append("".join(characters))
    return strings


def test_round_trip_is_exact(tokenizer):
    for text in TRICKY + random_strings(300):
        ids = tokenizer(text)["input_ids"]
        assert tokenizer.unk_token_id not in ids, text
        assert tokenizer.decode(ids, skip_special_tokens=True) == text, repr(text)
        assert tokenizer.decode(ids[1:]) == text, repr(text)  # no special token inside the text's ids


def test_one_token_per_seen_character_and_bytes_for_the_rest(tokenizer):
    seen = "Before we 학생"
    ids = tokenizer(seen, add_special_tokens=False)["input_ids"]
    assert tokenizer.convert_ids_to_tokens(ids) == list(seen)
    unseen = "뷁"
    tokens = tokenizer.convert_ids_to_tokens(tokenizer(unseen, add_special_tokens=False)["input_ids"])
    assert tokens == [f"<0x{byte:02X}>" for byte in unseen.encode("utf-8")]


def test_special_looking_text_is_spelled_in_characters(tokenizer):
    ids = tokenizer("<s></s><pad><unk>", add_special_tokens=False)["input_ids"]
    assert not set(ids) & set(tokenizer.all_special_ids)
    assert len(ids) == len("<s></s><pad><unk>")


def test_texts_start_with_bos_and_never_get_eos(tokenizer):
    assert (tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id) == (
        0,
        1,
        2,
        3,
    )
    assert tokenizer("")["input_ids"] == [tokenizer.bos_token_id]
    ids = tokenizer("hear me")["input_ids"]
    assert ids[0] == tokenizer.bos_token_id and tokenizer.eos_token_id not in ids
    assert tokenizer("hear me", add_special_tokens=False)["input_ids"] == ids[1:]
    batch = tokenizer(["a", "hear"], padding=True)
    assert batch["attention_mask"] == [[1, 1, 0, 0, 0], [1, 1, 1, 1, 1]]


def test_vocabulary_layout_frequency_order_and_limits():
    tokenizer = train_char_tokenizer(["aaab", "bbc", "a"], min_frequency=2)
    vocab = tokenizer.get_vocab()
    assert [vocab[token] for token in ["<pad>", "<s>", "</s>", "<unk>"]] == [0, 1, 2, 3]
    assert [vocab[token] for token in BYTE_TOKENS] == list(range(4, 260))
    assert (vocab["a"], vocab["b"]) == (260, 261) and "c" not in vocab  # 4 a's, 3 b's; 1 c is too rare
    assert len(tokenizer) == 262
    capped = train_char_tokenizer(["aaab", "bbc", "a"], max_characters=1)
    assert "a" in capped.get_vocab() and "b" not in capped.get_vocab()
    assert capped.decode(capped("abc")["input_ids"], skip_special_tokens=True) == "abc"


@pytest.mark.parametrize("kwargs", [dict(min_frequency=0), dict(min_frequency=1.5), dict(max_characters=-1)])
def test_bad_arguments_are_named(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        train_char_tokenizer(CORPUS, **kwargs)


def test_saved_folder_is_a_plain_fast_tokenizer(tmp_path, tokenizer):
    tokenizer.save_pretrained(tmp_path)
    assert not list(tmp_path.glob("*.py"))
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert "auto_map" not in config and config["split_special_tokens"] is True
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert isinstance(reloaded, PreTrainedTokenizerFast)
    for text in TRICKY + random_strings(50, seed=1):
        assert reloaded(text)["input_ids"] == tokenizer(text)["input_ids"]
        assert reloaded.decode(reloaded(text)["input_ids"], skip_special_tokens=True) == text


def test_saved_folder_loads_without_hf_rnn_and_without_remote_code(tmp_path, tokenizer):
    """A fresh process that cannot import hf_rnn loads it with no trust_remote_code (stdin closed: no prompt)."""
    folder = tmp_path / "tokenizer"
    tokenizer.save_pretrained(folder)
    texts = TRICKY[4:12]
    script = f"""
import json
from transformers import AutoTokenizer
tok = AutoTokenizer.from_pretrained({str(folder)!r})
print(json.dumps([tok(text)["input_ids"] for text in {texts!r}]))
"""
    result = run_without_hf_rnn(script, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == [tokenizer(text)["input_ids"] for text in texts]
