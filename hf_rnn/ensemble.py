"""Ensemble decoding: several translators that share a tokenizer, decoded as one model by transformers' `generate()`.

    from hf_rnn.ensemble import Seq2SeqEnsemble

    ensemble = Seq2SeqEnsemble.from_pretrained(["run-a", "run-b", "run-c"])
    ensemble.generate(**tokenizer(["I am a student."], return_tensors="pt"), num_beams=5)
    pipeline("translation", model=ensemble, tokenizer=tokenizer)
    python -m hf_rnn.translate --model run-a --model run-b --model run-c "I am a student."

The rule. At every step each member reads the same target prefix, with its own encoding of the source and its own
recurrent state, and the ensemble's next-token scores are the mean of the members' log-probabilities,
(1/N) sum_i log p_i(y | prefix, source): a product of experts. That is OpenNMT-py's default ensemble rule and Marian's
(with weights 1/N); fairseq averages the probabilities instead (a mixture; OpenNMT-py's `-avg_raw_probs`). generate()
takes the log-softmax of those scores for beam search and sampling, so the ensemble's distribution is the normalised
geometric mean of the members' distributions, and a beam's score is the log-probability of its tokens under it (as for
a single model): greedy choices are the same as without the normaliser, beam scores include it. Attention weights
(`output_attentions`) are the mean of the members' that have attention, as OpenNMT-py and fairseq average them.

Beam search reorders every member's state with the member's own `_reorder_cache` (transformers' hook), and the
translator's generation rules apply to the ensemble as to one model (`LSTMSeq2SeqGenerationMixin`: finished sentences
leave the batch, the output limit scales with the source, cut outputs are reported); the generation config is the
first member's.

Members may differ in anything but the vocabulary: cell type, attention, input feeding, sizes, layers, dtype. They must
share the tokenizer (source and target vocabularies, special token ids), or the ensemble is refused with the first
difference. A member is any encoder-decoder transformers model whose `get_encoder()` encodes the source, whose forward
takes `encoder_outputs`, `attention_mask`, `decoder_input_ids` and `cache` and returns `logits` and `cache`, and which
defines `_reorder_cache(cache, index)` (the state of rows `index`): the hf-rnn translators are.
"""

import copy
from collections.abc import Sequence
from pathlib import Path

import torch
from huggingface_hub.dataclasses import strict
from torch import nn
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, PreTrainedConfig, PreTrainedModel
from transformers.modeling_outputs import Seq2SeqLMOutput

from .compatibility import has_tokenizer, tokenizer_difference, vocabulary_difference
from .translator.generation_lstm_seq2seq import LSTMSeq2SeqGenerationMixin


@strict
class Seq2SeqEnsembleConfig(PreTrainedConfig):
    """What `generate()` reads of a model, common to every member of a `Seq2SeqEnsemble`: the vocabularies and special
    token ids (`member_names` records where the members came from)."""

    model_type = "seq2seq_ensemble"

    vocab_size: int = 8000
    decoder_vocab_size: int | None = None
    pad_token_id: int | None = 0
    bos_token_id: int | None = 1
    eos_token_id: int | list[int] | None = 2
    decoder_start_token_id: int | None = 1
    member_names: list[str] | None = None
    use_cache: bool = True
    is_encoder_decoder: bool = True

    def __post_init__(self, **kwargs):
        if self.decoder_vocab_size is None:
            self.decoder_vocab_size = self.vocab_size
        super().__post_init__(**kwargs)


class EnsembleEncoderOutput(dict):
    """Every member's encoder output, flat and batch-first (`"<member>.<field>"` -> tensor), because generate()
    expands, and our generation mixin selects rows of, the top-level tensors of an encoder output."""

    def member(self, index: int) -> dict[str, torch.Tensor]:
        prefix = f"{index}."
        return {key.removeprefix(prefix): value for key, value in self.items() if key.startswith(prefix)}


class EnsembleCache:
    """The members' decoder states between generate() steps, one per member."""

    is_compileable = False

    def __init__(self, members: Sequence[PreTrainedModel], states: list):
        self.members, self.states = members, states

    def select(self, index: torch.LongTensor) -> "EnsembleCache":
        """The states of rows `index` (beam search's reordering, or dropping finished rows), member by member."""
        return EnsembleCache(
            self.members, [member._reorder_cache(state, index) for member, state in zip(self.members, self.states)]
        )

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.states[0].get_seq_length(layer_idx)


class EnsembleEncoder:
    """What generate() calls to encode the source once: every member's encoder."""

    def __init__(self, ensemble: "Seq2SeqEnsemble"):
        self.ensemble = ensemble

    def forward(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> EnsembleEncoderOutput:
        """input_ids / attention_mask (B, S) -> each member's encoder outputs under `"<member>.<field>"`."""
        flat = EnsembleEncoderOutput()
        output_types = []
        for index, member in enumerate(self.ensemble.members):
            output = member.get_encoder()(input_ids, attention_mask=attention_mask, return_dict=True)
            output_types.append(type(output))
            flat.update({f"{index}.{name}": value for name, value in output.items() if torch.is_tensor(value)})
        self.ensemble.encoder_output_types = output_types
        return flat

    __call__ = forward


class Seq2SeqEnsemble(PreTrainedModel, LSTMSeq2SeqGenerationMixin):
    """Several encoder-decoder translators decoded as one: the mean of their log-probabilities at every step (see the
    module docstring for the rule, the members it takes and how generate() treats it).

    Args:
        members: loaded models sharing a tokenizer (e.g. `LSTMSeq2SeqForConditionalGeneration`s), at least one.
        names: where they came from, for messages and `config.member_names` (default: their `name_or_path`).

    Raises:
        ValueError: no members, a member that is not an encoder-decoder with `_reorder_cache`, or members whose
            vocabularies or special token ids differ (the message names the field and both members).
    """

    config_class = Seq2SeqEnsembleConfig
    main_input_name = "input_ids"
    _no_split_modules = []

    def __init__(self, members: Sequence[PreTrainedModel], names: Sequence[str] | None = None):
        members = list(members)
        names = list(names or [member.name_or_path or f"model {i + 1}" for i, member in enumerate(members)])
        _check_members(members, names)
        first = members[0].config
        config = Seq2SeqEnsembleConfig(
            vocab_size=first.vocab_size,
            decoder_vocab_size=getattr(first, "decoder_vocab_size", None) or first.vocab_size,
            pad_token_id=first.pad_token_id,
            bos_token_id=first.bos_token_id,
            eos_token_id=first.eos_token_id,
            decoder_start_token_id=first.decoder_start_token_id,
            member_names=names,
        )
        super().__init__(config)
        # Before the members join: they come trained, and post_init would initialise their weights again.
        self.post_init()
        self.members = nn.ModuleList(members)
        self.generation_config = copy.deepcopy(members[0].generation_config)
        self.encoder_output_types: list[type] | None = None  # set by `EnsembleEncoder` when it encodes a batch

    @classmethod
    def from_pretrained(cls, names: Sequence[str | Path], **kwargs) -> "Seq2SeqEnsemble":
        """Load every member with `AutoModelForSeq2SeqLM.from_pretrained(name, **kwargs)`, in eval mode.

        Raises:
            ValueError: as the constructor; also when saved tokenizers differ (the first token id that differs).
        """
        names = [str(name) for name in names]
        with_tokenizers = [name for name in names if has_tokenizer(name)]
        if len(with_tokenizers) > 1:
            reference = AutoTokenizer.from_pretrained(with_tokenizers[0])
            for name in with_tokenizers[1:]:
                difference = tokenizer_difference(reference, AutoTokenizer.from_pretrained(name), (names[0], name))
                if difference:
                    raise ValueError(f"Ensemble members must share one tokenizer, but {difference}.")
        members = [AutoModelForSeq2SeqLM.from_pretrained(name, **kwargs).eval() for name in names]
        return cls(members, names)

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        # The members' states are not key/value caches: generate must not build a DynamicCache for them.
        return False

    def save_pretrained(self, *args, **kwargs) -> None:
        raise NotImplementedError(
            "An ensemble is saved as its members' folders, not as one: load it again with "
            f"Seq2SeqEnsemble.from_pretrained({self.config.member_names})."
        )

    def get_encoder(self, modality: str | None = None) -> EnsembleEncoder:
        return EnsembleEncoder(self)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.LongTensor | None = None,
        encoder_outputs: EnsembleEncoderOutput | None = None,
        cache: EnsembleCache | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        **kwargs,
    ) -> Seq2SeqLMOutput:
        """input_ids / attention_mask (B, S) the source (or `encoder_outputs` from `get_encoder()` with the mask),
        decoder_input_ids (B, T) read after `cache` -> `logits` (B, T, target vocabulary): the mean of the members'
        log-probabilities; `cache` every member's state after the last token; with `output_attentions`,
        `cross_attentions` ((B, 1, T, S),) the mean of the members' attention weights (None if no member attends).
        """
        if encoder_outputs is None:
            if input_ids is None:
                raise ValueError("Pass `input_ids`, or `encoder_outputs` from `get_encoder()` with `attention_mask`.")
            encoder_outputs = self.get_encoder()(input_ids, attention_mask=attention_mask)
        states = cache.states if cache is not None else [None] * len(self.members)
        # A running sum, not a stack of every member's (B, T, V) log-probabilities: the most arrays of that size held
        # at once stays the same for any number of members.
        log_prob_sum, new_states, attentions = None, [], []
        for index, (member, state) in enumerate(zip(self.members, states)):
            output = member(
                attention_mask=attention_mask,
                decoder_input_ids=decoder_input_ids,
                encoder_outputs=self.encoder_output_types[index](**encoder_outputs.member(index)),
                cache=state,
                use_cache=use_cache,
                output_attentions=output_attentions,
                return_dict=True,
            )
            new_states.append(output.cache)
            if output.cross_attentions is not None:
                attentions.append(output.cross_attentions[-1].float())  # (B, 1, T, S)
            log_probs = torch.log_softmax(output.logits.float(), dim=-1)  # (B, T, V)
            del output  # and with it the member's logits, spent
            log_prob_sum = log_probs if log_prob_sum is None else log_prob_sum + log_probs
            del log_probs  # else alive through the next member's step
        return Seq2SeqLMOutput(
            logits=log_prob_sum / len(self.members),
            cache=EnsembleCache(self.members, new_states) if new_states[0] is not None else None,
            cross_attentions=(torch.stack(attentions).mean(dim=0),) if attentions else None,
        )


def _check_members(members: list[PreTrainedModel], names: list[str]) -> None:
    if not members:
        raise ValueError("An ensemble needs at least one model.")
    for member, name in zip(members, names):
        if not getattr(member.config, "is_encoder_decoder", False) or not hasattr(member, "_reorder_cache"):
            raise ValueError(
                f"{name} ({type(member).__name__}) cannot be an ensemble member: it must be an encoder-decoder model "
                "with `_reorder_cache` (e.g. an hf-rnn translator)."
            )
    for member, name in zip(members[1:], names[1:]):
        difference = vocabulary_difference(members[0].config, member.config, (names[0], name))
        if difference:
            raise ValueError(
                f"Ensemble members must share one tokenizer (source and target vocabularies), but {difference}."
            )


__all__ = ["EnsembleCache", "EnsembleEncoderOutput", "Seq2SeqEnsemble", "Seq2SeqEnsembleConfig"]
