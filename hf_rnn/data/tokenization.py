"""Train a joint source+target byte-level BPE tokenizer whose decoding gives the text back.

Text is read as written. The tokenizer works on the UTF-8 bytes of the text (GPT-2's byte-level BPE: every byte
is in the vocabulary, so there is no `<unk>` for a rare Hangul syllable, an emoji or a hanja), and each byte maps to
exactly one vocabulary symbol, so nothing in a sentence can collide with the tokenizer's own markup:

* spaces are kept as written: leading, trailing, repeated, tabs, newlines;
* a string that looks like a control token (`"</s>"`, `"<pad>"`, `"<0x41>"`) is text: only the post-processor
  adds `</s>`, and special tokens are never matched inside a sentence (`split_special_tokens=True`);
* the one normalisation is Unicode NFC (canonical composition): `"e\\u0301"` and `"é"`, or a decomposed and a
  composed Hangul syllable, are the same text and get the same ids. So for any string `t`,
  `decode(encode(t), skip_special_tokens=True) == unicodedata.normalize("NFC", t)` — `t` itself when it is NFC,
  as text typed or stored on almost every system is.

The result is a plain `PreTrainedTokenizerFast` folder that `AutoTokenizer.from_pretrained` loads without custom code.
"""

from collections import Counter
from collections.abc import Iterable, Iterator

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = {"pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
BYTE_ALPHABET = pre_tokenizers.ByteLevel.alphabet()
# Byte fallback pieces of the character-level tokenizer: a character it has no token for is spelled in bytes.
BYTE_TOKENS = [f"<0x{i:02X}>" for i in range(256)]


def train_tokenizer(
    texts: Iterable[str], vocab_size: int = 8000, min_frequency: int = 2, show_progress: bool = True
) -> PreTrainedTokenizerFast:
    """Learn BPE merges on `texts` (source and target sentences together: one joint vocabulary).

    Ids are fixed as `<pad>`=0, `<s>`=1, `</s>`=2, `<unk>`=3 (never produced) to match `LSTMSeq2SeqConfig`'s
    defaults, then the 256 byte symbols, then the merges; every encoded sequence ends with `</s>` so the model
    learns where to stop.
    """
    reserved = len(SPECIAL_TOKENS) + len(BYTE_ALPHABET)
    if vocab_size <= reserved:
        raise ValueError(
            f"`vocab_size` must exceed {reserved} (4 special tokens + 256 byte symbols), got {vocab_size}."
        )
    tokenizer = Tokenizer(models.BPE(unk_token=SPECIAL_TOKENS["unk_token"]))
    tokenizer.normalizer = normalizers.NFC()
    # No prefix space: a leading space is text like any other, and the decoder must not invent or drop one.
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        show_progress=show_progress,
        special_tokens=list(SPECIAL_TOKENS.values()),
        initial_alphabet=BYTE_ALPHABET,
    )
    tokenizer.train_from_iterator(_non_empty(texts), trainer=trainer)
    eos = SPECIAL_TOKENS["eos_token"]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"$A {eos}", pair=f"$A {eos} $B {eos}", special_tokens=[(eos, tokenizer.token_to_id(eos))]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        model_input_names=["input_ids", "attention_mask"],
        split_special_tokens=True,
        clean_up_tokenization_spaces=False,
        **SPECIAL_TOKENS,
    )


def _non_empty(texts: Iterable[str]) -> Iterator[str]:
    for text in texts:
        if text and text.strip():
            yield text


def train_char_tokenizer(
    texts: Iterable[str], min_frequency: int = 1, max_characters: int | None = None
) -> PreTrainedTokenizerFast:
    """A character-level tokenizer: one token per Unicode character (code point) seen in `texts`.

    Characters seen at least `min_frequency` times (the `max_characters` most frequent of them, when set) get
    a token each; any other character is spelled in its UTF-8 byte pieces `<0x00>`..`<0xFF>` (byte fallback),
    so nothing becomes `<unk>`. Decoding gives every string back exactly: there is no normaliser (NFC would
    merge decomposed Hangul jamo), no pre-tokeniser and no space handling, and text that merely looks like a
    special token (`"<s>"`) is spelled in characters (`split_special_tokens=True`).

    Ids: `<pad>`=0, `<s>`=1, `</s>`=2, `<unk>`=3 (`LSTMConfig`'s defaults), the 256 byte pieces, then the
    characters, most frequent first. Encoding puts `<s>` before a text and nothing after it (`add_bos_token`):
    `<s>` is where a fresh recurrent state starts reading (the text-generation pipeline encodes its prompt
    this way, an empty prompt included), while a language model trained on chunks of running text must not
    learn `</s>` at every chunk end. Raises `ValueError` for a bad `min_frequency` / `max_characters`.
    """
    if isinstance(min_frequency, bool) or not isinstance(min_frequency, int) or min_frequency < 1:
        raise ValueError(f"`min_frequency` must be a positive integer, got {min_frequency!r}.")
    if max_characters is not None and (not isinstance(max_characters, int) or max_characters < 0):
        raise ValueError(f"`max_characters` must be None or a non-negative integer, got {max_characters!r}.")
    counts = Counter()
    for text in texts:
        counts.update(text)
    characters = sorted((c for c, n in counts.items() if n >= min_frequency), key=lambda c: (-counts[c], c))
    vocab = {token: index for index, token in enumerate([*SPECIAL_TOKENS.values(), *BYTE_TOKENS])}
    for character in characters[:max_characters]:
        vocab.setdefault(character, len(vocab))

    # BPE without merges: every character is looked up on its own, unknown ones fall back to bytes.
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>", byte_fallback=True))
    tokenizer.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Fuse()])
    tokenizer.add_special_tokens(list(SPECIAL_TOKENS.values()))
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        model_input_names=["input_ids", "attention_mask"],
        add_bos_token=True,
        add_eos_token=False,
        split_special_tokens=True,
        clean_up_tokenization_spaces=False,
        **SPECIAL_TOKENS,
    )


__all__ = ["BYTE_ALPHABET", "BYTE_TOKENS", "SPECIAL_TOKENS", "train_char_tokenizer", "train_tokenizer"]
