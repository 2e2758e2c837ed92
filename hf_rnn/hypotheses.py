"""n-best lists with scores and attention alignments of translations (`python -m hf_rnn.translate --n-best K
--alignment`).

Output lines (tab-separated; a tab or line break inside a translation is written as a space):

- `--n-best K`: K lines per input sentence, in input order, best first, one block per sentence as Marian and
  OpenNMT-py write n-best lists: `NUMBER<TAB>SCORE<TAB>TRANSLATION`, NUMBER the sentence's 0-based position in the
  input. A blank input line gives K lines `NUMBER<TAB><TAB>` (no score: nothing was translated).
- `--alignment` adds a last field `ALIGNMENT` (with `--n-best`) or makes each line `TRANSLATION<TAB>ALIGNMENT`.

SCORE is the log-probability of the hypothesis' tokens (its `</s>` included) divided by its length ** length_penalty
(the generation config's, 1.0 by default: the mean log-probability per token): the score beam search ranks by,
generate()'s `sequences_scores`. With an ensemble the log-probabilities are the ensemble's (see `hf_rnn.ensemble`).

ALIGNMENT is in Pharaoh format: space-separated `i-j` pairs, one per target token, where target token j is aligned to
the source token i it attended to most (the argmax of the attention weights with which it was predicted; an
ensemble's are the mean of its members'). i and j are 0-based positions among the tokenizer's tokens of the source
and of the translation, special tokens left out (the source's `</s>`, the start token, the translation's `</s>`):
the alignment is between subword tokens, as the model sees them, not words.

Scores and alignments come from one teacher-forced pass over the generated hypotheses (equal to the incremental
pass that produced them), so they are exact for beam search and greedy search alike.
"""

import re
from dataclasses import dataclass

import torch
from transformers import GenerationConfig


@dataclass
class Hypothesis:
    """One translation of one sentence; `score` and `alignment` are None for a blank sentence."""

    text: str
    token_ids: list[int]  # the generated tokens after the start token, `</s>` included when generated
    score: float | None = None
    alignment: list[tuple[int, int]] | None = None


def generated_tokens(ids: torch.Tensor, eos_token_ids: set[int], pad_token_id: int | None) -> list[int]:
    """The tokens generate() produced for one sequence (start token first): up to its first `</s>` included, or
    without trailing padding when it was cut at the length limit."""
    tokens = ids[1:].tolist()
    for position, token in enumerate(tokens):
        if token in eos_token_ids:
            return tokens[: position + 1]
    while tokens and tokens[-1] == pad_token_id:
        tokens.pop()
    return tokens


@torch.inference_mode()
def score_and_align(
    model, tokenizer, sentences: list[str], hypotheses: list[list[Hypothesis]], length_penalty: float, alignment: bool
) -> None:
    """Fill in `score` (and `alignment`, if asked) of every hypothesis of every non-blank sentence, in one
    teacher-forced pass of `model` (a translator or an ensemble) over all of them.

    Raises:
        ValueError: `alignment` with a model that has no attention.
    """
    pairs = [(sentence, h) for sentence, group in zip(sentences, hypotheses) if sentence.strip() for h in group]
    if not pairs:
        return
    start = model.generation_config.decoder_start_token_id
    start = model.config.decoder_start_token_id if start is None else start
    source = tokenizer(
        [sentence for sentence, _ in pairs], return_tensors="pt", padding=True, return_special_tokens_mask=True
    ).to(model.device)
    width = max(max(len(h.token_ids) for _, h in pairs), 1)
    labels = torch.full((len(pairs), width), -100, dtype=torch.long)
    for row, (_, hypothesis) in enumerate(pairs):
        labels[row, : len(hypothesis.token_ids)] = torch.tensor(hypothesis.token_ids, dtype=torch.long)
    decoder_input_ids = labels.roll(1, dims=1)  # start token, then every token but the last
    decoder_input_ids[:, 0] = start
    decoder_input_ids = decoder_input_ids.masked_fill(decoder_input_ids == -100, tokenizer.pad_token_id or 0)
    output = model(
        input_ids=source["input_ids"],
        attention_mask=source["attention_mask"],
        decoder_input_ids=decoder_input_ids.to(model.device),
        output_attentions=alignment,
    )
    log_probs = torch.log_softmax(output.logits.float(), dim=-1)  # (N, T, V)
    taken = log_probs.gather(2, labels.clamp(min=0).unsqueeze(2).to(log_probs.device)).squeeze(2).cpu()  # (N, T)
    taken = taken * (labels != -100)
    if alignment and output.cross_attentions is None:
        raise ValueError("Alignments need attention weights, and this model has no attention (attention_type='none').")
    special = set(tokenizer.all_special_ids)
    for row, (_, hypothesis) in enumerate(pairs):
        length = len(hypothesis.token_ids)
        hypothesis.score = float(taken[row].sum()) / max(length, 1) ** length_penalty
        if alignment:
            real_source = (source["attention_mask"][row].bool() & ~source["special_tokens_mask"][row].bool()).cpu()
            weights = output.cross_attentions[-1][row, 0, :length].float().cpu()[:, real_source]  # (T, S real)
            targets = [position for position, token in enumerate(hypothesis.token_ids) if token not in special]
            most = weights[targets].argmax(dim=-1).tolist() if targets and real_source.any() else []
            hypothesis.alignment = list(zip(most, range(len(targets))))


def has_attention(model) -> bool:
    """Whether the model (for an ensemble: any of its members) returns attention weights to align with."""
    return any(getattr(m.config, "attention_type", None) != "none" for m in getattr(model, "members", [model]))


def format_alignment(pairs: list[tuple[int, int]]) -> str:
    return " ".join(f"{source}-{target}" for source, target in pairs)


def hypothesis_lines(
    translator, sentences: list[str], numbers: list[int], n_best: int | None, alignment: bool, **generate_kwargs
) -> list[list[str]]:
    """The output lines of each sentence (see the module docstring), from a `TranslationPipeline`."""
    outputs = translator(
        sentences,
        batch_size=len(sentences),
        num_return_sequences=n_best or 1,
        return_tensors=True,
        return_text=True,
        **generate_kwargs,
    )
    outputs = [[group] if isinstance(group, dict) else group for group in outputs]
    config = translator.model.generation_config
    eos = config.eos_token_id if config.eos_token_id is not None else translator.model.config.eos_token_id
    eos = set(eos) if isinstance(eos, list) else {eos}
    pad = translator.tokenizer.pad_token_id  # what the pipeline pads its outputs with
    hypotheses = [
        [Hypothesis(o["translation_text"], generated_tokens(o["translation_token_ids"], eos, pad)) for o in group]
        for group in outputs
    ]
    length_penalty = generate_kwargs.get("length_penalty", config.length_penalty)
    if length_penalty is None:  # unset: generate() uses transformers' default
        length_penalty = GenerationConfig._get_default_generation_params()["length_penalty"]
    score_and_align(translator.model, translator.tokenizer, sentences, hypotheses, length_penalty, alignment)
    lines = []
    for number, group in zip(numbers, hypotheses):
        group_lines = []
        for hypothesis in group:
            fields = [_field(hypothesis.text)]
            if alignment:
                fields.append(format_alignment(hypothesis.alignment or []))
            if n_best:
                score = "" if hypothesis.score is None else f"{hypothesis.score:.6f}"
                fields = [str(number), score, *fields]
            group_lines.append("\t".join(fields))
        lines.append(group_lines)
    return lines


def _field(text: str) -> str:
    return re.sub(r"\r\n|[\r\n\t]", " ", text)


__all__ = [
    "Hypothesis",
    "format_alignment",
    "generated_tokens",
    "has_attention",
    "hypothesis_lines",
    "score_and_align",
]
