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

from collections.abc import Iterable, Iterator

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = {"pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
BYTE_ALPHABET = pre_tokenizers.ByteLevel.alphabet()


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


__all__ = ["BYTE_ALPHABET", "SPECIAL_TOKENS", "train_tokenizer"]
