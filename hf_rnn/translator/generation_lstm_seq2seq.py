"""How the translator generates: transformers' `GenerationMixin` with finished sentences taken out of the batch,
an output limit that scales with the source, and a warning for every output cut at the limit.

`LSTMSeq2SeqGenerationMixin` overrides only transformers' own hooks; the search itself stays
`GenerationMixin`'s. generate() keeps every sentence of a batch until the last one is done,
although the rows of a finished sentence can no longer change the output. While one generate()
call runs, `LiveRows` holds the rows still decoded:

- `prepare_inputs_for_generation` hands the model only those rows (decoder input, recurrent
  state, encoder memory and mask), dropping the rows that ended;
- `_update_model_kwargs_for_generation` scatters their logits into a full-batch array, which
  is what generate() reads (it ignores the rows of finished sentences);
- `_reorder_cache` maps beam search's batch-wide reordering onto the held rows;
- in beam search, `_expand_inputs_for_generation` leaves the encoder outputs and the source mask one
  per sentence instead of copying them for every beam: the model's forward reads a sentence's
  consecutive beam rows against one encoding (about 20 MiB less peak memory for beam 5 on test2016);
- `_get_top_k_continuations` gives back the step's summed beam scores (rows, vocabulary), which
  transformers' loop would keep alive through the next step (10 MiB less for beam 5 on test2016).

The model itself never sees the row bookkeeping: its cache is a plain state with `select(index)`.
This file travels as Hub remote code with `modeling_lstm_seq2seq.py` (it imports nothing of ours).
"""

import copy
import math

import torch
from transformers import GenerationConfig, GenerationMixin
from transformers.generation import logits_process
from transformers.utils import logging

logger = logging.get_logger(__name__)

# Logits processors that keep log-probabilities <= 0 (they mask tokens, force one, or scale a negative
# score by a positive factor): with only these, a beam's score can never rise as it grows.
NON_RAISING_PROCESSORS = tuple(
    getattr(logits_process, name)
    for name in (
        "MinLengthLogitsProcessor",
        "MinNewTokensLengthLogitsProcessor",
        "RepetitionPenaltyLogitsProcessor",
        "EncoderRepetitionPenaltyLogitsProcessor",
        "NoRepeatNGramLogitsProcessor",
        "EncoderNoRepeatNGramLogitsProcessor",
        "NoBadWordsLogitsProcessor",
        "PrefixConstrainedLogitsProcessor",
        "ForcedBOSTokenLogitsProcessor",
        "ForcedEOSTokenLogitsProcessor",
        "SuppressTokensLogitsProcessor",
        "SuppressTokensAtBeginLogitsProcessor",
        "LogitNormalization",
    )
    if hasattr(logits_process, name)
)
# What generate() hands `prepare_inputs_for_generation` at a step after the first, when the caller added nothing.
STEP_INPUTS = frozenset(
    ("cache", "attention_mask", "encoder_outputs", "use_cache", "next_sequence_length", "decoder_attention_mask")
)
# Default output limit: ceil(ratio * source tokens) + offset new tokens, as Marian's `--max-length-factor` and
# fairseq's `--max-len-a/-b` bound decoding. Stored in the generation config under these names.
MAX_NEW_TOKENS_RATIO, MAX_NEW_TOKENS_OFFSET = 2.0, 10
# transformers' own default `max_length`, which Seq2SeqTrainer writes into `model.generation_config` when evaluating:
# found there, it is nobody's choice.
TRANSFORMERS_DEFAULT_MAX_LENGTH = GenerationConfig._get_default_generation_params()["max_length"]


def chosen_length_limits(own: GenerationConfig, given: GenerationConfig | None, kwargs: dict) -> tuple[bool, bool]:
    """Whether a generate() call, the config passed to it or the model's generation config `own` chose a
    `max_length`, and whether any of them chose `max_new_tokens`."""
    given = given or GenerationConfig()
    max_length = kwargs.get("max_length", given.max_length)
    if max_length is None and own.max_length != TRANSFORMERS_DEFAULT_MAX_LENGTH:
        max_length = own.max_length
    max_new_tokens = kwargs.get("max_new_tokens", given.max_new_tokens)
    return max_length is not None, (max_new_tokens if max_new_tokens is not None else own.max_new_tokens) is not None


def count_cut(sequences: torch.Tensor, max_length: int, eos_token_id: int | list[int] | None) -> int:
    """How many generated `sequences` (batch, length) reached `max_length` without an end token."""
    if eos_token_id is None or sequences.shape[1] < max_length:
        return 0
    eos = torch.tensor(eos_token_id if isinstance(eos_token_id, list) else [eos_token_id], device=sequences.device)
    return int((~torch.isin(sequences, eos).any(dim=1)).sum())


def select_rows(value, index: torch.Tensor):
    """`value` at batch positions `index`: a tensor (batch first), or a tuple, list, dict or `ModelOutput` of them (as
    encoder outputs come: a caller's tuple, `hidden_states` inside), or None."""
    if isinstance(value, torch.Tensor):
        return value.index_select(0, index)
    if isinstance(value, dict):
        return type(value)(**{name: select_rows(item, index) for name, item in value.items()})
    if isinstance(value, (tuple, list)):
        return type(value)(select_rows(item, index) for item in value)
    return value


class LiveRows:
    """The rows of a generate() batch still being decoded, and their inputs.

    Greedy search and sampling pad a sentence after its end token: a row whose input token is
    one of `eos_token_ids` has ended. Beam search (`num_beams` > 1) keeps decoding a sentence
    whose finished hypotheses no running beam can beat any more: generate() reports those
    sentences in `done_sentences` and all their `num_beams` rows have ended. Ended rows are dropped
    once an eighth of the held rows have ended (dropping copies the encoder memory, so one row at
    a time would cost more than it saves); the last rows are never dropped, so the model always
    gets a batch.

    Beam search also ends a sentence as soon as its `num_return_sequences` best finished
    hypotheses are final, when `scores_never_rise` (see `sentences_settled`).
    """

    def __init__(
        self,
        eos_token_ids: torch.Tensor | None = None,
        num_beams: int = 1,
        num_return_sequences: int = 1,
        beams_share_encoding: bool = False,
    ):
        self.eos_token_ids = eos_token_ids
        self.num_beams = num_beams
        self.num_return_sequences = num_return_sequences
        # beam search: the encoder outputs and mask are one per sentence, not per row (held // num_beams of them)
        self.beams_share_encoding = beams_share_encoding and num_beams > 1
        self.scores_never_rise = False  # set from generate()'s logits processors
        self.done_sentences: torch.Tensor | None = None  # (batch,) beam search: sentences that can no longer change
        self.batch_size = 0
        self.rows: torch.Tensor | None = None  # (held,) batch positions of the rows still decoded
        self.encoder_outputs = None  # their encoder outputs, attention mask and ended flags (held, ...)
        self.attention_mask: torch.Tensor | None = None
        self.ended: torch.Tensor | None = None

    def select_inputs(self, inputs: dict) -> dict:
        """Model inputs for the held rows only; the first call (no state yet) holds the whole batch."""
        if inputs.get("cache") is None:
            self.batch_size = inputs["decoder_input_ids"].shape[0]
            self.rows = torch.arange(self.batch_size, device=inputs["decoder_input_ids"].device)
            # A missing mask is the model's to name (it needs one with precomputed encoder outputs).
            self.encoder_outputs, self.attention_mask = inputs["encoder_outputs"], inputs.get("attention_mask")
            self.ended = torch.zeros(self.batch_size, dtype=torch.bool, device=self.rows.device)
            return inputs
        decoder_input_ids = inputs["decoder_input_ids"][self.rows]
        self.ended |= self.ended_now(decoder_input_ids)
        cache = inputs["cache"]
        ended = int(self.ended.sum())
        if ended * 8 >= max(len(self.rows), 8) and ended < len(self.rows):
            kept = (~self.ended).nonzero().squeeze(1)
            self.rows, self.ended = self.rows[kept], self.ended[kept]
            # A sentence's beams end together, so with shared encodings every num_beams-th kept row names a sentence.
            sources = kept[:: self.num_beams] // self.num_beams if self.beams_share_encoding else kept
            self.encoder_outputs = select_rows(self.encoder_outputs, sources)
            self.attention_mask = select_rows(self.attention_mask, sources)
            cache, decoder_input_ids = cache.select(kept), decoder_input_ids[kept]
        return {
            **inputs,
            "decoder_input_ids": decoder_input_ids,
            "cache": cache,
            "encoder_outputs": self.encoder_outputs,
            "attention_mask": self.attention_mask,
            "decoder_attention_mask": None,  # ignored by the model (a recurrent decoder never looks ahead)
        }

    def ended_now(self, decoder_input_ids: torch.Tensor) -> torch.Tensor:
        """Which held rows (whose next input tokens are `decoder_input_ids`, shape (held, 1)) have ended."""
        if self.num_beams == 1:
            return torch.isin(decoder_input_ids[:, 0], self.eos_token_ids.to(decoder_input_ids.device))
        if self.done_sentences is None:
            return torch.zeros(len(decoder_input_ids), dtype=torch.bool, device=decoder_input_ids.device)
        return self.done_sentences.to(self.rows.device).repeat_interleave(self.num_beams)[self.rows]

    def scatter_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """The held rows' logits (held, 1, vocab) in their batch positions of a full-batch array (batch, 1, vocab).

        generate() copies the logits at once and ignores the rows of finished sentences. The array is new at every
        step: generate() lets go of the model's logits once it has copied them, and one kept across steps would be
        one more (rows, vocabulary) array alive at beam search's peak."""
        if len(self.rows) == self.batch_size:
            return logits
        dropped = torch.ones(self.batch_size, dtype=torch.bool, device=self.rows.device)
        dropped[self.rows] = False
        full = logits.new_empty(self.batch_size, *logits.shape[1:])
        full.index_fill_(0, dropped.nonzero().squeeze(1), 0.0)  # finite, though unread: each byte written once
        return full.index_copy_(0, self.rows, logits)

    def held_positions(self, beam_idx: torch.Tensor) -> torch.Tensor:
        """Beam search's reordering `beam_idx` (batch,) as positions among the held rows. A held row's new state
        comes from a row of the same sentence, which is held too (a sentence's beams are dropped together)."""
        position = torch.full_like(beam_idx, -1, dtype=torch.long)
        position[self.rows] = torch.arange(len(self.rows), device=beam_idx.device)
        return position[beam_idx[self.rows]]

    def sentences_settled(
        self,
        running_beam_scores: torch.Tensor,
        beam_scores: torch.Tensor,
        is_sent_finished: torch.Tensor,
        cur_len: int,
        max_length: int,
        decoder_prompt_len: int,
        length_penalty: float,
    ) -> torch.Tensor:
        """(batch,) beam search: sentences whose returned hypotheses can no longer change.

        transformers keeps a sentence until `num_beams` hypotheses have finished, though only the
        best `num_return_sequences` are returned. When no token score can be positive, a running
        beam's summed log-probability only falls as it grows, so its final score is at most
        `score / length**length_penalty` at the length that favours it most (the longest allowed
        for a positive penalty, the next step's otherwise). Once the k-th best finished hypothesis
        beats that bound for the best running beam, later hypotheses rank below it: the output is final.
        Without a length penalty this ends a sentence when its best hypothesis finishes, as
        OpenNMT-py's beam search does.
        """
        if not self.scores_never_rise:
            return torch.zeros(len(beam_scores), dtype=torch.bool, device=beam_scores.device)
        length = (max_length if length_penalty > 0 else cur_len) - decoder_prompt_len
        best_possible = running_beam_scores[:, 0] / length**length_penalty
        k = self.num_return_sequences
        return is_sent_finished[:, k - 1] & (beam_scores[:, k - 1] > best_possible)


class LSTMSeq2SeqGenerationMixin(GenerationMixin):
    """`GenerationMixin` for the translator: a source-scaled output limit, a warning for cut outputs, an attention
    mask read from the padding when none is given, and finished sentences taken out of the batch (`LiveRows`)."""

    _live_rows: LiveRows | None = None  # set by generate() while it runs, when finished sentences may be dropped
    # Whether the model's forward reads k consecutive decoder rows per encoded source: beam search then keeps one
    # encoding per source instead of generate()'s copy per beam (see `_expand_inputs_for_generation`).
    _beams_share_encoding: bool = False
    _step_graphs = None  # set by generate() while it runs, when its steps replay CUDA graphs (`_step_graphs_for`)
    _max_new_tokens: int | None = None  # set by generate() while it runs, when nobody chose an output limit
    _max_length_chosen: bool = True  # cleared by generate() while it runs, when nobody chose a max_length
    _length_used: tuple[int, int] = (0, 0)  # the last generate()'s max_length and decoder prompt length
    # An int while a caller counts cut outputs instead of a warning per call (the Trainer's evaluation: a model in
    # its first epochs may run on, and the count goes into the metrics).
    cut_sequences: int | None = None

    def generate(
        self, inputs: torch.Tensor | None = None, generation_config: GenerationConfig | None = None, **kwargs
    ):
        """`GenerationMixin.generate`, with an output limit that scales with the source and finished sentences
        dropped from the batch (see `LiveRows`).

        Unless the call, a generation config passed to it, or `model.generation_config` sets `max_length` or
        `max_new_tokens`, a batch may generate `ceil(max_new_tokens_ratio * source length) + max_new_tokens_offset`
        new tokens (generation config fields; defaults 2 and 10; the source length is the longest in the batch).
        `max_length=20`, transformers' default that Seq2SeqTrainer writes into `model.generation_config`, counts as
        unset there. One warning per call says how many returned sequences reached the limit without `</s>` (or,
        while `cut_sequences` is an int, that many are added to it).

        The rows of a finished sentence can no longer change the output, so not computing
        them leaves it unchanged: greedy search and sampling pad a sentence after its end
        token; beam search stops extending a sentence once no running beam can beat its
        finished hypotheses. Skipped (all rows computed, as stock generate does) for beam
        sampling, whose random draws depend on every row, and when scores, logits,
        attentions or hidden states are returned, since those expose every row's values.

        On a GPU, each step after the first replays a CUDA graph of the decoder step (see the model's
        `_step_graphs_for`; `cuda_graphs=False` in the call or the generation config turns this off). The batch then
        keeps its finished rows: computing them costs a graph nothing, while dropping them would change its shape.
        """
        config = copy.deepcopy(generation_config or self.generation_config)
        if "cuda_graphs" in kwargs:
            config.cuda_graphs = kwargs.pop("cuda_graphs")
        config.update(**kwargs)
        eos, num_beams = config.eos_token_id, config.num_beams or 1
        returns_per_row_values = config.return_dict_in_generate and (
            config.output_scores or config.output_logits or config.output_attentions or config.output_hidden_states
        )
        speculative = kwargs.get("assistant_model") is not None or config.prompt_lookup_num_tokens is not None
        # A returned cache must not be a graph's static state, which the next call's replays rewrite.
        step_graphs = None if config.return_dict_in_generate or speculative else self._step_graphs_for(config)
        if eos is not None and not returns_per_row_values and not speculative and step_graphs is None:
            if num_beams == 1:
                self._live_rows = LiveRows(
                    eos_token_ids=torch.tensor(eos if isinstance(eos, (list, tuple)) else [eos])
                )
            elif not config.do_sample:
                self._live_rows = LiveRows(
                    num_beams=num_beams,
                    num_return_sequences=config.num_return_sequences or 1,
                    beams_share_encoding=self._beams_share_encoding,
                )
        self._max_length_chosen, max_new_tokens_chosen = chosen_length_limits(
            self.generation_config, generation_config, kwargs
        )
        if not self._max_length_chosen and not max_new_tokens_chosen:
            self._max_new_tokens = self._source_scaled_limit(inputs, config, kwargs)
        self._step_graphs = step_graphs
        try:
            output = super().generate(inputs, generation_config=generation_config, **kwargs)
        finally:
            self._live_rows, self._max_new_tokens, self._max_length_chosen = None, None, True
            self._step_graphs = None
        sequences = output if isinstance(output, torch.Tensor) else output.sequences
        cut = count_cut(sequences, self._length_used[0], eos)
        if cut and self.cut_sequences is not None:
            self.cut_sequences += cut
        elif cut:
            logger.warning(
                f"{cut} of {len(sequences)} generated sequences reached the length limit "
                f"({self._length_used[0] - self._length_used[1]} new tokens) without `</s>` and were cut. Pass a "
                f"larger `max_new_tokens` to generate() (or raise `max_new_tokens_ratio` / `max_new_tokens_offset` in "
                f"the generation config) to allow longer outputs."
            )
        return output

    def _step_graphs_for(self, generation_config: GenerationConfig):
        """What replays each decoding step after the first (called with `step_graphs(model, decoder_input_ids,
        encoder_outputs, attention_mask, cache)` by the model's forward), or None for eager steps."""
        return None

    def _source_scaled_limit(self, inputs: torch.Tensor | None, config: GenerationConfig, kwargs: dict) -> int:
        """New tokens allowed for this batch: ratio x the longest source (tokens, `</s>` included) + offset."""
        mask, input_ids = kwargs.get("attention_mask"), inputs if inputs is not None else kwargs.get("input_ids")
        if mask is not None:
            source_length = int(mask.sum(dim=-1).max())
        elif input_ids is not None and self.config.pad_token_id is not None:
            source_length = int(input_ids.ne(self.config.pad_token_id).sum(dim=-1).max())
        elif input_ids is not None:
            source_length = input_ids.shape[-1]
        else:
            source_length = kwargs["encoder_outputs"][0].shape[1]
        ratio = getattr(config, "max_new_tokens_ratio", MAX_NEW_TOKENS_RATIO)
        return math.ceil(ratio * source_length) + getattr(config, "max_new_tokens_offset", MAX_NEW_TOKENS_OFFSET)

    def _prepare_generated_length(
        self,
        generation_config: GenerationConfig,
        has_default_max_length: bool,
        has_default_min_length: bool,
        model_input_name: str | None,
        input_ids_length: int,
        inputs_tensor: torch.Tensor,
    ) -> GenerationConfig:
        """generate()'s length limits; the source-scaled one when nobody chose a limit (see `generate`)."""
        if self._max_new_tokens is not None:
            generation_config.max_new_tokens = self._max_new_tokens
        # A max_length nobody chose must not be reported as clashing with max_new_tokens.
        has_default_max_length = has_default_max_length or not self._max_length_chosen
        generation_config = super()._prepare_generated_length(
            generation_config,
            has_default_max_length,
            has_default_min_length,
            model_input_name,
            input_ids_length,
            inputs_tensor,
        )
        self._length_used = (generation_config.max_length, input_ids_length)
        return generation_config

    def _maybe_prepare_encoder_kwargs_for_generation(
        self, inputs_tensor: torch.Tensor, model_kwargs: dict, model_input_name: str | None, generation_config
    ) -> dict:
        """Encode the source once; a missing `attention_mask` is first read from the padding (`pad_token_id`), as
        transformers does for decoder-only models: the decoder attends over the source at every step."""
        if model_kwargs.get("attention_mask") is None and model_kwargs.get("encoder_outputs") is None:
            model_kwargs["attention_mask"] = self._prepare_attention_mask_for_generation(
                inputs_tensor, generation_config, model_kwargs
            )
        return super()._maybe_prepare_encoder_kwargs_for_generation(
            inputs_tensor, model_kwargs, model_input_name, generation_config
        )

    def _expand_inputs_for_generation(
        self, expand_size: int = 1, is_encoder_decoder: bool = False, input_ids=None, **model_kwargs
    ) -> tuple[torch.LongTensor, dict]:
        """generate()'s copies of the inputs for each beam; with `LiveRows.beams_share_encoding` the encoder outputs
        and the source mask stay one per source (the model's forward reads a source's beams against one encoding),
        which saves the beams' copies of the memory and their reads at every step."""
        live = self._live_rows
        if live is None or not live.beams_share_encoding or expand_size != live.num_beams:
            return super()._expand_inputs_for_generation(expand_size, is_encoder_decoder, input_ids, **model_kwargs)
        shared = {
            name: model_kwargs.pop(name) for name in ("encoder_outputs", "attention_mask") if name in model_kwargs
        }
        input_ids, model_kwargs = super()._expand_inputs_for_generation(expand_size, False, input_ids, **model_kwargs)
        return input_ids, {**model_kwargs, **shared}

    def prepare_inputs_for_generation(self, input_ids: torch.LongTensor, **kwargs) -> dict:
        """transformers' inputs for the next step, narrowed to the rows still decoded (see `LiveRows`).

        A step after the first needs only the last token, the state and the encoder's memory: those are handed over
        directly instead of through transformers' general preparation, whose cost is a large part of a step's time
        once the step itself is a replayed CUDA graph.
        """
        if kwargs.get("cache") is not None and kwargs.keys() <= STEP_INPUTS:
            inputs = {
                "decoder_input_ids": input_ids[:, -1:],
                **{name: kwargs.get(name) for name in ("cache", "attention_mask", "encoder_outputs", "use_cache")},
            }
        else:
            inputs = super().prepare_inputs_for_generation(input_ids, **kwargs)
        return inputs if self._live_rows is None else self._live_rows.select_inputs(inputs)

    def _update_model_kwargs_for_generation(self, outputs, model_kwargs: dict, *args, **kwargs) -> dict:
        """Carry the new state to the next step; the held rows' logits go back to their batch positions first."""
        if self._live_rows is not None:
            outputs.logits = self._live_rows.scatter_logits(outputs.logits)
        return super()._update_model_kwargs_for_generation(outputs, model_kwargs, *args, **kwargs)

    def _reorder_cache(self, cache, beam_idx: torch.LongTensor):
        """Beam search: each row takes the state of the beam it continues (`beam_idx`, over the whole batch)."""
        if self._live_rows is not None and self._live_rows.rows is not None:
            beam_idx = self._live_rows.held_positions(beam_idx)
        return cache.select(beam_idx)

    def _get_top_k_continuations(self, accumulated_log_probs: torch.Tensor, *args, **kwargs):
        """Beam search's best continuations; then the memory of `accumulated_log_probs` (batch, beams x vocabulary)
        is given back.

        transformers' beam search reads that array only here, but its loop keeps the name bound until the next
        step has computed the next one, so two of them would be alive during every step's copy of the logits.
        Freeing it keeps beam search's peak at three (rows, vocabulary) float32 arrays instead of four (10 MiB
        less at 64 sentences x 5 beams x 8,000 tokens). The tensor is emptied in place (`set_()`, shape (0,)), so
        a transformers release that read it again would meet a shape error, not decode differently; so is the
        (batch, beams, vocabulary) tensor it is a view of, which outside inference mode holds the memory too.
        """
        continuations = super()._get_top_k_continuations(accumulated_log_probs, *args, **kwargs)
        for tensor in (accumulated_log_probs._base, accumulated_log_probs):
            if tensor is not None:
                tensor.set_()
        return continuations

    def _get_logits_processor(self, *args, **kwargs) -> logits_process.LogitsProcessorList:
        """generate()'s logits processors; notes whether any of them could raise a score above zero."""
        processors = super()._get_logits_processor(*args, **kwargs)
        if self._live_rows is not None:
            self._live_rows.scores_never_rise = all(isinstance(p, NON_RAISING_PROCESSORS) for p in processors) or (
                len(processors) > 0 and isinstance(processors[-1], logits_process.LogitNormalization)
            )
        return processors

    def _check_early_stop_heuristic(self, *args, **kwargs) -> torch.Tensor:
        """Beam search's per-sentence test "can a running beam still beat the finished ones?", whose
        negative marks a sentence done for good: its rows are then dropped (see `LiveRows`).

        A sentence whose returned hypotheses are final (`LiveRows.sentences_settled`) is reported
        done as well, so generate() neither extends it nor admits new hypotheses for it.
        """
        can_improve = super()._check_early_stop_heuristic(*args, **kwargs)
        # transformers 5 passes keywords; called any other way, every row is simply kept.
        if self._live_rows is not None and self._live_rows.num_beams > 1 and not args:
            settled = self._live_rows.sentences_settled(
                **{
                    key: kwargs[key]
                    for key in (
                        "running_beam_scores",
                        "beam_scores",
                        "is_sent_finished",
                        "cur_len",
                        "max_length",
                        "decoder_prompt_len",
                        "length_penalty",
                    )
                }
            )
            can_improve = can_improve & ~settled[:, None]
            done = ~can_improve[:, 0]
            if kwargs["early_stopping"] is True:  # a sentence with num_beams finished hypotheses takes no more
                done |= kwargs["is_sent_finished"].all(dim=-1)
            self._live_rows.done_sentences = done
        return can_improve

    def compute_transition_scores(
        self,
        sequences: torch.Tensor,
        scores: tuple[torch.Tensor, ...],
        beam_indices: torch.Tensor | None = None,
        normalize_logits: bool = False,
    ) -> torch.Tensor:
        """`GenerationMixin.compute_transition_scores`, reading the scores' width from the target vocabulary.

        transformers takes it from `config.vocab_size`, which is the *source* vocabulary here: with
        `decoder_vocab_size != vocab_size` beam scores would be gathered from the wrong rows.
        """
        source_size = self.config.vocab_size
        self.config.vocab_size = self.config.decoder_vocab_size
        try:
            return super().compute_transition_scores(sequences, scores, beam_indices, normalize_logits)
        finally:
            self.config.vocab_size = source_size


__all__ = ["LSTMSeq2SeqGenerationMixin", "LiveRows"]
