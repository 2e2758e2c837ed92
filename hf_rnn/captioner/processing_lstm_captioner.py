"""Processor of the LSTM captioner: image processor + a one-token-per-keyword tokenizer.

Self-contained (transformers and tokenizers only) so `save_pretrained` can copy it next to a
checkpoint as remote code.

With the image-text-to-text pipeline (`"image-to-text"` is its alias; `pipeline_lstm_captioner.py`)::

    captioner = pipeline("image-text-to-text", model=folder)  # + trust_remote_code=True without hf_rnn
    captioner("scene.png")  # [{"input_text": "", "generated_text": "evening, warm, sun"}]

`text` is optional: none (or `""`) asks for keywords from scratch, while e.g. `text="evening"` makes the decoder
continue after that keyword. The pipeline calls `processor(images=..., text=..., return_tensors="pt")` — which
returns `pixel_values` and the decoder prompt as `input_ids` (`<s>` + prompt keywords, no attention mask:
`generate()` would take it for an encoder mask) — and decodes with `post_process_image_text_to_text`.
"""

from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import WhitespaceSplit
from transformers import BatchFeature, PreTrainedTokenizerFast, ProcessorMixin

# Fixed ids, matching the captioner config defaults (pad 0, bos/decoder start 1, eos 2).
SPECIAL_TOKENS = {"pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}


def normalize_keyword(keyword: str) -> str:
    """One token under whitespace splitting: inner whitespace becomes `_` ("snowy peak" -> "snowy_peak")."""
    if not isinstance(keyword, str):
        raise ValueError(f"Keywords must be strings, got {type(keyword).__name__} {keyword!r}.")
    normalized = "_".join(keyword.split())
    if not normalized:
        raise ValueError(f"Empty keyword {keyword!r}.")
    return normalized


def build_keyword_tokenizer(keywords: list[str]) -> PreTrainedTokenizerFast:
    """
    One token per keyword: `<pad>`=0, `<s>`=1, `</s>`=2, `<unk>`=3, then `keywords` in the given order.

    Keywords are normalised with `normalize_keyword` (whitespace -> `_`); one that is empty, clashes with a
    special token, or repeats after normalisation raises `ValueError`.
    """
    vocab = {token: index for index, token in enumerate(SPECIAL_TOKENS.values())}
    for keyword in keywords:
        normalized = normalize_keyword(keyword)
        if normalized in SPECIAL_TOKENS.values():
            raise ValueError(f"Keyword {keyword!r} clashes with the special token {normalized!r}.")
        if normalized in vocab:
            raise ValueError(f"Keyword {keyword!r} is listed twice (as {normalized!r} after normalisation).")
        vocab[normalized] = len(vocab)
    backend = Tokenizer(WordLevel(vocab, unk_token=SPECIAL_TOKENS["unk_token"]))
    backend.pre_tokenizer = WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=backend, model_input_names=["input_ids"], **SPECIAL_TOKENS)


def _as_tensor(rows: list[list[int]], return_tensors: str | None) -> Any:
    if return_tensors == "pt":
        return torch.tensor(rows, dtype=torch.long)
    if return_tensors == "np":
        return np.array(rows, dtype=np.int64)
    if return_tensors is None:
        return rows
    raise ValueError(f"`return_tensors` must be 'pt', 'np' or None, got {return_tensors!r}.")


class LSTMCaptionerProcessor(ProcessorMixin):
    """
    Wraps `LSTMCaptionerImageProcessor` and a keyword tokenizer from `build_keyword_tokenizer`.

    `processor(images=..., keywords=[[...], ...])` gives `pixel_values` and training `labels`;
    `processor.batch_decode(model.generate(**processor(images=..., return_tensors="pt")))` gives keyword lists.
    """

    def __init__(self, image_processor, tokenizer):
        super().__init__(image_processor, tokenizer)

    def keyword_ids(self, keywords: list[str], source: str) -> list[int]:
        """Ids of known keywords; an unknown one is an error, not a silent `<unk>` to learn or prompt with."""
        vocab = self.tokenizer.get_vocab()
        ids = []
        for keyword in keywords:
            normalized = normalize_keyword(keyword)
            if normalized not in vocab or normalized in SPECIAL_TOKENS.values():
                raise ValueError(f"{source} contains {keyword!r}, which is not a keyword of this tokenizer.")
            ids.append(vocab[normalized])
        return ids

    def __call__(
        self,
        images: Any = None,
        text: str | list[str] | None = None,
        keywords: list[str] | list[list[str]] | None = None,
        return_tensors: str | None = None,
        padding: Any = None,
        **image_kwargs,
    ) -> BatchFeature:
        """
        Args:
            images: one image or a list (anything `LSTMCaptionerImageProcessor` accepts) -> `pixel_values`.
            text: decoder prompt(s), whitespace-separated keywords (`""` for none) -> `input_ids` = `<s>` + prompt.
                One string serves every image; a list gives one prompt per image, all of the same length
                (a recurrent decoder has no prompt padding).
            keywords: target keyword list(s) -> `labels`: keyword ids + `</s>`, padded with -100 when
                `return_tensors` is set. One flat list of strings is one example.
            return_tensors: `"pt"`, `"np"` or None (lists).
            padding: accepted for the pipeline's sake and unused (see `text`).
            image_kwargs: passed to the image processor (e.g. `size`).
        """
        if images is None and text is None and keywords is None:
            raise ValueError("Give at least one of `images`, `text` (decoder prompt) or `keywords` (targets).")
        data: dict[str, Any] = {}
        num_images = None
        if images is not None:
            data.update(self.image_processor(images, return_tensors=return_tensors, **image_kwargs))
            num_images = len(data["pixel_values"])

        if text is not None:
            prompts = [text] * (num_images or 1) if isinstance(text, str) else list(text)
            if num_images is not None and len(prompts) != num_images:
                raise ValueError(f"Got {len(prompts)} text prompts for {num_images} images; give one per image.")
            rows = [[self.tokenizer.bos_token_id] + self.keyword_ids(p.split(), "The text prompt") for p in prompts]
            if len({len(row) for row in rows}) > 1:
                raise ValueError("All text prompts of a batch must hold the same number of keywords.")
            data["input_ids"] = _as_tensor(rows, return_tensors)

        if keywords is not None:
            examples = [keywords] if all(isinstance(k, str) for k in keywords) else list(keywords)
            if num_images is not None and len(examples) != num_images:
                raise ValueError(f"Got {len(examples)} keyword lists for {num_images} images; give one per image.")
            rows = [self.keyword_ids(example, "`keywords`") + [self.tokenizer.eos_token_id] for example in examples]
            if return_tensors is not None:
                width = max(len(row) for row in rows)
                rows = [row + [-100] * (width - len(row)) for row in rows]
            data["labels"] = _as_tensor(rows, return_tensors)
        return BatchFeature(data)

    def batch_decode(self, sequences: Any, skip_special_tokens: bool = True) -> list[list[str]]:
        """Generated ids (batch, length) -> keyword lists; stops at `</s>` unless `skip_special_tokens=False`."""
        rows = sequences.tolist() if isinstance(sequences, (torch.Tensor, np.ndarray)) else list(sequences)
        if rows and not isinstance(rows[0], (list, tuple, torch.Tensor, np.ndarray)):
            rows = [rows]  # a single sequence
        special_ids = set(self.tokenizer.all_special_ids)
        results = []
        for row in rows:
            row = [int(index) for index in row]
            if skip_special_tokens:
                if self.tokenizer.eos_token_id in row:
                    row = row[: row.index(self.tokenizer.eos_token_id)]
                row = [index for index in row if index not in special_ids]
            results.append(self.tokenizer.convert_ids_to_tokens(row))
        return results

    def decode(self, sequence: Any, skip_special_tokens: bool = True) -> list[str]:
        """One generated sequence -> its keyword list."""
        return self.batch_decode([sequence], skip_special_tokens=skip_special_tokens)[0]

    def post_process_image_text_to_text(
        self, generated_outputs: Any, skip_special_tokens: bool = True, **kwargs
    ) -> list[str]:
        """What the image-text-to-text pipeline shows: each keyword list joined with ", "."""
        return [", ".join(keywords) for keywords in self.batch_decode(generated_outputs, skip_special_tokens)]


__all__ = ["LSTMCaptionerProcessor", "build_keyword_tokenizer", "normalize_keyword", "SPECIAL_TOKENS"]
