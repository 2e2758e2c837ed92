"""Train a joint source+target subword tokenizer with byte fallback.

Why byte fallback: a translator trained on a small corpus still meets characters it never
saw (a rare Hangul syllable, an emoji, a hanja). With the 256 byte pieces `<0x00>`..`<0xFF>`
in the vocabulary such characters are spelled in bytes instead of becoming `<unk>`, and
decoding gives the text back exactly. The result is a plain `PreTrainedTokenizerFast`
folder that `AutoTokenizer.from_pretrained` loads without custom code.
"""

import json
from collections import Counter
from collections.abc import Iterable, Iterator

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = {"pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
BYTE_TOKENS = [f"<0x{i:02X}>" for i in range(256)]


def _pre_tokenized_pipeline(tokenizer: Tokenizer) -> Tokenizer:
    # NFC only: NFKC would rewrite full-width and compatibility characters, breaking exact round trips.
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    return tokenizer


def train_tokenizer(
    texts: Iterable[str], vocab_size: int = 8000, min_frequency: int = 2, show_progress: bool = True
) -> PreTrainedTokenizerFast:
    """Learn BPE merges on `texts` (source and target sentences together: one joint vocabulary).

    Ids are fixed as `<pad>`=0, `<s>`=1, `</s>`=2, `<unk>`=3 to match `LSTMSeq2SeqConfig`'s
    defaults; every encoded sequence ends with `</s>` so the model learns where to stop.
    """
    reserved = len(SPECIAL_TOKENS) + len(BYTE_TOKENS)
    if vocab_size <= reserved:
        raise ValueError(
            f"`vocab_size` must exceed {reserved} (4 special tokens + 256 byte pieces), got {vocab_size}."
        )

    draft = _pre_tokenized_pipeline(Tokenizer(models.BPE(unk_token="<unk>")))
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - reserved,
        min_frequency=min_frequency,
        show_progress=show_progress,
        special_tokens=[],
    )
    draft.train_from_iterator(_non_empty(texts), trainer=trainer)
    learned, merges = _vocab_and_merges(draft)

    vocab = {token: index for index, token in enumerate([*SPECIAL_TOKENS.values(), *BYTE_TOKENS])}
    for token in sorted(learned, key=learned.get):
        vocab.setdefault(token, len(vocab))

    tokenizer = _pre_tokenized_pipeline(
        Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True))
    )
    tokenizer.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    tokenizer.add_special_tokens(list(SPECIAL_TOKENS.values()))
    tokenizer.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", vocab["</s>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, model_input_names=["input_ids", "attention_mask"], **SPECIAL_TOKENS
    )


def _non_empty(texts: Iterable[str]) -> Iterator[str]:
    for text in texts:
        if text and text.strip():
            yield text


def _vocab_and_merges(tokenizer: Tokenizer) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """The trained BPE tables, read back from the serialised model (the Python API does not expose merges)."""
    model = json.loads(tokenizer.to_str())["model"]
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    return model["vocab"], merges


__all__ = ["train_tokenizer", "SPECIAL_TOKENS"]


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


__all__ += ["train_char_tokenizer"]
