"""Recurrent (LSTM / GRU / RNN) encoder-decoder with global attention as a transformers model.

The architecture is the classic attentional NMT baseline (Luong et al., 2015; Bahdanau et
al., 2015): a packed, optionally bidirectional encoder; a decoder whose state is
initialised from the encoder's final states; global attention over the encoder outputs;
an attentional vector tanh(W[context; h]) optionally fed into the next step ("input
feeding"); a linear softmax layer.

It plugs into the stock `GenerationMixin`: the recurrent state travels between decoding
steps as `cache` (an `LSTMSeq2SeqCache`), which beam search reorders in place. Only
sibling imports are used so this file travels as Hub remote code.
"""

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from transformers import GenerationConfig, GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.generation import logits_process
from transformers.modeling_outputs import ModelOutput, Seq2SeqLMOutput, Seq2SeqModelOutput
from transformers.utils import logging

from .configuration_lstm_seq2seq import LSTMSeq2SeqConfig

logger = logging.get_logger(__name__)

RNN_CLASSES = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}
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


def check_token_ids(name: str, ids: torch.Tensor, vocab_size: int, allow_ignore: bool = False) -> None:
    """Raise a readable error instead of torch's opaque 'index out of range' inside an embedding."""
    valid = (ids >= 0) & (ids < vocab_size)
    if allow_ignore:
        valid |= ids == -100
    if not bool(valid.all()):
        bad = ids[~valid][0].item()
        raise ValueError(
            f"`{name}` contains token id {bad}, outside the vocabulary [0, {vocab_size}). Was the input made by a "
            f"different tokenizer than the one this model was trained with?"
        )


def shift_tokens_right(labels: torch.Tensor, pad_token_id: int, decoder_start_token_id: int) -> torch.Tensor:
    """Teacher forcing: the decoder reads <start> y_1 ... y_{n-1} and predicts y_1 ... y_n."""
    shifted = labels.new_full(labels.shape, pad_token_id)
    shifted[:, 1:] = labels[:, :-1]
    shifted[:, 0] = decoder_start_token_id
    return shifted.masked_fill(shifted == -100, pad_token_id)


def token_cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, num_items_in_batch: int | torch.Tensor | None = None
) -> torch.Tensor:
    """Cross-entropy of `logits` (batch, len, vocab) against `labels` (batch, len) over the labels that are not -100.

    Averaged over those tokens; with `num_items_in_batch` (the label tokens of the whole optimizer step, which
    Trainer counts over every gradient-accumulation micro-batch and every process) summed and divided by it
    instead, so that a step's loss and gradients do not depend on how its batch was split.
    """
    logits, labels = logits.reshape(-1, logits.shape[-1]), labels.reshape(-1).to(logits.device)
    if num_items_in_batch is None:
        return nn.functional.cross_entropy(logits, labels, ignore_index=-100)
    total = nn.functional.cross_entropy(logits, labels, ignore_index=-100, reduction="sum")
    if torch.is_tensor(num_items_in_batch):
        num_items_in_batch = num_items_in_batch.to(total.device)
    return total / num_items_in_batch


def lengths_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Packed sequences need right padding and no empty rows; say so plainly when that is not the case."""
    lengths = attention_mask.sum(dim=1)
    if bool((lengths == 0).any()):
        row = int((lengths == 0).nonzero()[0, 0])
        raise ValueError(f"Source sequence {row} of the batch is empty (its attention_mask is all zeros).")
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    if not bool((attention_mask.bool() == (positions[None, :] < lengths[:, None])).all()):
        raise ValueError(
            "The encoder needs right-padded inputs (ones then zeros in attention_mask); "
            "set `tokenizer.padding_side = 'right'`."
        )
    return lengths


@dataclass
class LSTMSeq2SeqEncoderOutput(ModelOutput):
    """
    Encoder outputs, all batch-first so `generate()` can expand them for beams along dim 0.

    Args:
        last_hidden_state: `(batch, src_len, hidden_size)` top-layer outputs (zero at padding).
        final_hidden_state: `(batch, num_encoder_layers, hidden_size)` last state of every layer
            (both directions concatenated).
        final_cell_state: same shape, LSTM cell states; `None` for GRU/RNN.
        hidden_states: `(embeddings, last_hidden_state)` when `output_hidden_states=True`.
    """

    last_hidden_state: torch.Tensor | None = None
    final_hidden_state: torch.Tensor | None = None
    final_cell_state: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


class EndedRows:
    """Which rows of a generate() batch are still decoded, so that finished sentences cost nothing.

    generate() keeps every sentence in the batch until the last one is done, although the
    rows of a finished sentence can no longer change the output. Greedy search and sampling
    pad a sentence after its end token: a row whose input token is one of `token_ids` has
    ended. Beam search (`num_beams` > 1) keeps decoding a sentence whose finished hypotheses
    no running beam can beat any more: generate() reports those in `done_items` and all their
    `num_beams` rows have ended. Ended rows are dropped once an eighth of the held rows have
    ended (dropping copies the encoder memory, so one row at a time would cost more than it saves).

    Beam search also ends a sentence as soon as its `num_return_sequences` best finished
    hypotheses are final, when `scores_never_rise` (see `sentences_settled`).
    """

    def __init__(self, token_ids: torch.Tensor | None = None, num_beams: int = 1, num_return_sequences: int = 1):
        self.token_ids = token_ids
        self.num_beams = num_beams
        self.num_return_sequences = num_return_sequences
        self.scores_never_rise = False  # set from generate()'s logits processors
        self.done_items: torch.Tensor | None = None  # (batch,) beam search: sentences that can no longer change
        self.rows: torch.Tensor | None = None  # batch positions still held
        self.memory: torch.Tensor | None = None  # their encoder outputs and mask
        self.memory_mask: torch.Tensor | None = None
        self.ended: torch.Tensor | None = None  # held rows that have ended (computed until the next drop)
        self.logits: torch.Tensor | None = None  # (batch, 1, vocab) returned every step, only held rows rewritten

    def ended_now(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Which held rows (whose next input tokens are `input_ids`) have ended."""
        if self.num_beams == 1:
            return torch.isin(input_ids[:, 0], self.token_ids.to(input_ids.device))
        if self.done_items is None:
            return torch.zeros(len(input_ids), dtype=torch.bool, device=input_ids.device)
        return self.done_items.to(input_ids.device).repeat_interleave(self.num_beams)[self.rows]

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

    def keep(self, keep: torch.Tensor) -> None:
        self.rows, self.ended = self.rows[keep], self.ended[keep]
        self.memory, self.memory_mask = self.memory[keep], self.memory_mask[keep]


class LSTMSeq2SeqCache:
    """
    The decoder's recurrent state between `generate()` steps.

    Unlike a transformer's key/value cache it does not grow: it holds the state after the
    last token (hidden, cell, the input-feeding vector) plus the projected attention keys,
    which depend only on the source and are worth computing once.

    With `ended_rows` set (see `LSTMSeq2SeqForConditionalGeneration.generate`) the cache may
    hold only the rows of the batch that are still being decoded.
    """

    is_compileable = False

    def __init__(
        self,
        hidden: torch.Tensor,
        cell: torch.Tensor | None,
        input_feed: torch.Tensor | None,
        attention_keys: torch.Tensor | None,
        seen_tokens: int = 0,
        ended_rows: "EndedRows | None" = None,
    ):
        self.hidden = hidden  # (num_layers, batch, hidden_size): nn.RNN's native layout
        self.cell = cell
        self.input_feed = input_feed  # (batch, hidden_size)
        self.attention_keys = attention_keys  # (batch, src_len, hidden_size)
        self.seen_tokens = seen_tokens
        self.ended_rows = ended_rows

    @property
    def rows(self) -> torch.Tensor | None:
        """Batch positions of the rows this cache holds; None when it holds the whole batch."""
        return None if self.ended_rows is None else self.ended_rows.rows

    def keep_rows(self, keep: torch.Tensor) -> None:
        """Drop the rows where `keep` is False from every per-row tensor."""
        self.hidden = self.hidden[:, keep]
        if self.cell is not None:
            self.cell = self.cell[:, keep]
        if self.input_feed is not None:
            self.input_feed = self.input_feed[keep]
        if self.attention_keys is not None:
            self.attention_keys = self.attention_keys[keep]
        self.ended_rows.keep(keep)

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        """Beam search keeps the states of the surviving hypotheses (in place, as generate expects).

        `beam_idx` indexes the whole batch. When rows were dropped, a held row's new state comes
        from a row of the same sentence, which is held too (a sentence's beams are dropped together).
        """
        rows = self.rows
        if rows is not None:
            position = torch.full_like(beam_idx, -1, dtype=torch.long)
            position[rows] = torch.arange(len(rows), device=beam_idx.device)
            beam_idx = position[beam_idx[rows]]
        self.hidden = self.hidden.index_select(1, beam_idx.to(self.hidden.device))
        if self.cell is not None:
            self.cell = self.cell.index_select(1, beam_idx.to(self.cell.device))
        if self.input_feed is not None:
            self.input_feed = self.input_feed.index_select(0, beam_idx.to(self.input_feed.device))
        if self.attention_keys is not None:
            self.attention_keys = self.attention_keys.index_select(0, beam_idx.to(self.attention_keys.device))

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.seen_tokens

    @property
    def rnn_state(self) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        return self.hidden if self.cell is None else (self.hidden, self.cell)


class LSTMSeq2SeqAttention(nn.Module):
    """Global attention over encoder outputs, followed by the attentional vector tanh(W[c; h])."""

    def __init__(self, config: LSTMSeq2SeqConfig):
        super().__init__()
        hidden = config.hidden_size
        self.attention_type = config.attention_type
        if self.attention_type in ("general", "concat"):
            self.query_proj = nn.Linear(hidden, hidden, bias=False)
        if self.attention_type == "concat":
            self.key_proj = nn.Linear(hidden, hidden)
            self.energy = nn.Linear(hidden, 1, bias=False)
        self.output_proj = nn.Linear(2 * hidden, hidden, bias=False)

    def project_keys(self, memory: torch.Tensor) -> torch.Tensor | None:
        """Bahdanau's key projection depends on the source only: computed once per sentence."""
        return self.key_proj(memory) if self.attention_type == "concat" else None

    def forward(
        self,
        query: torch.Tensor,
        memory: torch.Tensor,
        memory_mask: torch.Tensor,
        keys: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """query (B, T, H), memory (B, S, H), memory_mask (B, S) bool -> attentional vector (B, T, H), weights
        (B, T, S)."""
        if self.attention_type == "dot":
            scores = torch.bmm(query, memory.transpose(1, 2))
        elif self.attention_type == "general":
            scores = torch.bmm(self.query_proj(query), memory.transpose(1, 2))
        else:
            energy = torch.tanh(self.query_proj(query).unsqueeze(2) + keys.unsqueeze(1))
            scores = self.energy(energy).squeeze(-1)
        scores = scores.masked_fill(~memory_mask.unsqueeze(1), torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores, dim=-1)
        context = torch.bmm(weights, memory)
        return torch.tanh(self.output_proj(torch.cat([context, query], dim=-1))), weights


class LSTMSeq2SeqEncoder(nn.Module):
    """Embeds the source and runs one packed recurrent call over it (no Python loop over time)."""

    def __init__(self, config: LSTMSeq2SeqConfig, embed_tokens: nn.Embedding):
        super().__init__()
        self.config = config
        self.embed_tokens = embed_tokens
        self.embedding_dropout = nn.Dropout(config.embedding_dropout)
        directions = 2 if config.bidirectional_encoder else 1
        self.rnn = RNN_CLASSES[config.cell_type](
            config.embedding_size,
            config.hidden_size // directions,
            num_layers=config.num_encoder_layers,
            bidirectional=config.bidirectional_encoder,
            dropout=config.dropout if config.num_encoder_layers > 1 else 0.0,
            batch_first=True,
        )

    def forward(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> LSTMSeq2SeqEncoderOutput | tuple:
        if input_ids is None:
            raise ValueError("The LSTM encoder needs `input_ids` (source token ids).")
        check_token_ids("input_ids", input_ids, self.config.vocab_size)
        if attention_mask is None:
            attention_mask = input_ids.ne(self.config.pad_token_id)
        lengths = lengths_from_mask(attention_mask)

        embeddings = self.embedding_dropout(self.embed_tokens(input_ids))
        packed = pack_padded_sequence(embeddings, lengths.cpu(), batch_first=True, enforce_sorted=False)
        packed_outputs, state = self.rnn(packed)
        outputs, _ = pad_packed_sequence(packed_outputs, batch_first=True, total_length=input_ids.shape[1])

        hidden, cell = state if isinstance(state, tuple) else (state, None)
        result = LSTMSeq2SeqEncoderOutput(
            last_hidden_state=outputs,
            final_hidden_state=self._layer_major(hidden),
            final_cell_state=None if cell is None else self._layer_major(cell),
            hidden_states=(embeddings, outputs) if output_hidden_states else None,
        )
        return result if return_dict is not False else result.to_tuple()

    def _layer_major(self, state: torch.Tensor) -> torch.Tensor:
        """(layers*directions, B, H/d) -> (B, layers, H): directions side by side, batch first."""
        layers, directions = self.config.num_encoder_layers, 2 if self.config.bidirectional_encoder else 1
        batch = state.shape[1]
        state = state.view(layers, directions, batch, -1).permute(2, 0, 1, 3)
        return state.reshape(batch, layers, -1)


class LSTMSeq2SeqDecoder(nn.Module):
    """Attentional recurrent decoder; one fused RNN call over the target unless input feeding forces a loop."""

    def __init__(self, config: LSTMSeq2SeqConfig, embed_tokens: nn.Embedding):
        super().__init__()
        self.config = config
        self.embed_tokens = embed_tokens
        self.embedding_dropout = nn.Dropout(config.embedding_dropout)
        self.dropout = nn.Dropout(config.dropout)
        input_size = config.embedding_size + (config.hidden_size if config.input_feeding else 0)
        self.rnn = RNN_CLASSES[config.cell_type](
            input_size,
            config.hidden_size,
            num_layers=config.num_decoder_layers,
            dropout=config.dropout if config.num_decoder_layers > 1 else 0.0,
            batch_first=True,
        )
        self.attention = LSTMSeq2SeqAttention(config) if config.attention_type != "none" else None
        if config.decoder_init == "bridge":
            bridge_in = config.num_encoder_layers * config.hidden_size
            bridge_out = config.num_decoder_layers * config.hidden_size
            self.bridge_hidden = nn.Linear(bridge_in, bridge_out)
            self.bridge_cell = nn.Linear(bridge_in, bridge_out) if config.cell_type == "lstm" else None

    def init_cache(self, encoder_outputs: LSTMSeq2SeqEncoderOutput) -> LSTMSeq2SeqCache:
        """State before the first target token: bridged encoder states (or zeros), empty input feed."""
        config = self.config
        memory = encoder_outputs.last_hidden_state
        batch = memory.shape[0]

        def bridge(linear: nn.Linear, final: torch.Tensor) -> torch.Tensor:
            state = torch.tanh(linear(final.reshape(batch, -1)))
            return state.view(batch, config.num_decoder_layers, config.hidden_size).transpose(0, 1).contiguous()

        if config.decoder_init == "bridge":
            hidden = bridge(self.bridge_hidden, encoder_outputs.final_hidden_state)
            cell = bridge(self.bridge_cell, encoder_outputs.final_cell_state) if self.bridge_cell else None
        else:
            hidden = memory.new_zeros(config.num_decoder_layers, batch, config.hidden_size)
            cell = torch.zeros_like(hidden) if config.cell_type == "lstm" else None
        input_feed = memory.new_zeros(batch, config.hidden_size) if config.input_feeding else None
        keys = self.attention.project_keys(memory) if self.attention is not None else None
        return LSTMSeq2SeqCache(hidden, cell, input_feed, keys)

    def forward(
        self,
        input_ids: torch.LongTensor,
        encoder_outputs: LSTMSeq2SeqEncoderOutput,
        encoder_attention_mask: torch.Tensor,
        cache: LSTMSeq2SeqCache | None = None,
    ) -> tuple[torch.Tensor, LSTMSeq2SeqCache, torch.Tensor | None, torch.Tensor, torch.Tensor]:
        """Returns attentional vectors (B, T, H), the state after the last token, attention weights, embeddings and
        RNN outputs."""
        check_token_ids("decoder_input_ids", input_ids, self.config.decoder_vocab_size)
        if cache is None:
            cache = self.init_cache(encoder_outputs)
        memory = encoder_outputs.last_hidden_state
        memory_mask = encoder_attention_mask.bool()
        if cache.ended_rows is not None:
            input_ids, memory, memory_mask = self._drop_ended_rows(cache, input_ids, memory, memory_mask)
            if input_ids.shape[0] == 0:  # every sentence has ended: nothing left to compute
                nothing = memory.new_zeros(0, input_ids.shape[1], self.config.hidden_size)
                cache.seen_tokens += input_ids.shape[1]
                return nothing, cache, None, nothing, nothing
        embeddings = self.embedding_dropout(self.embed_tokens(input_ids))

        if self.config.input_feeding:
            hidden, cell, feed = list(cache.hidden.unbind(0)), cache.cell, cache.input_feed
            cell = None if cell is None else list(cell.unbind(0))
            vector_steps, weight_steps, rnn_steps = [], [], []
            for t in range(input_ids.shape[1]):
                rnn_output = self._cell_step(torch.cat([embeddings[:, t], feed], dim=-1), hidden, cell)
                vector, weights = self._attend(rnn_output.unsqueeze(1), memory, memory_mask, cache.attention_keys)
                feed = vector.squeeze(1)
                rnn_steps.append(rnn_output)
                vector_steps.append(vector)
                weight_steps.append(weights)
            rnn_outputs, vectors = torch.stack(rnn_steps, dim=1), torch.cat(vector_steps, dim=1)
            attention = torch.cat(weight_steps, dim=1) if self.attention is not None else None
            state = torch.stack(hidden) if cell is None else (torch.stack(hidden), torch.stack(cell))
        else:
            feed = None
            rnn_outputs, state = self.rnn(embeddings, cache.rnn_state)
            vectors, attention = self._attend(rnn_outputs, memory, memory_mask, cache.attention_keys)

        hidden, cell = state if isinstance(state, tuple) else (state, None)
        new_cache = LSTMSeq2SeqCache(
            hidden, cell, feed, cache.attention_keys, cache.seen_tokens + input_ids.shape[1], cache.ended_rows
        )
        return vectors, new_cache, attention, embeddings, rnn_outputs

    @staticmethod
    def _drop_ended_rows(
        cache: LSTMSeq2SeqCache, input_ids: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Shrink `cache` (in place) to the rows still decoded; returns their input ids, memory and mask."""
        state = cache.ended_rows
        if state.rows is None:
            state.rows = torch.arange(input_ids.shape[0], device=input_ids.device)
            state.memory, state.memory_mask = memory, memory_mask
        input_ids = input_ids[state.rows]
        ended = state.ended_now(input_ids)
        state.ended = ended if state.ended is None else state.ended | ended
        if int(state.ended.sum()) * 8 >= max(len(ended), 8) or bool(state.ended.all()):
            keep = ~state.ended
            cache.keep_rows(keep)
            input_ids = input_ids[keep]
        return input_ids, state.memory, state.memory_mask

    def _cell_step(
        self, step_input: torch.Tensor, hidden: list[torch.Tensor], cell: list[torch.Tensor] | None
    ) -> torch.Tensor:
        """One time step through every layer, updating `hidden`/`cell` (one tensor per layer) in place.

        Input feeding forces a loop over time; calling `nn.LSTM` once per step costs about
        1.5x the forward+backward time of torch's cell functions on the very same weights.
        """
        rnn, layers = self.rnn, self.config.num_decoder_layers
        for layer in range(layers):
            weights = (getattr(rnn, f"{name}_l{layer}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
            if cell is not None:
                hidden[layer], cell[layer] = torch.lstm_cell(step_input, (hidden[layer], cell[layer]), *weights)
            else:
                cell_fn = torch.gru_cell if self.config.cell_type == "gru" else torch.rnn_tanh_cell
                hidden[layer] = cell_fn(step_input, hidden[layer], *weights)
            step_input = hidden[layer]
            if layer < layers - 1:  # nn.LSTM's dropout between stacked layers
                step_input = nn.functional.dropout(step_input, self.config.dropout, self.training)
        return hidden[-1]

    def _attend(
        self, rnn_output: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor, keys: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.attention is None:
            return self.dropout(rnn_output), None
        vector, weights = self.attention(rnn_output, memory, memory_mask, keys)
        return self.dropout(vector), weights


class LSTMSeq2SeqPreTrainedModel(PreTrainedModel):
    config: LSTMSeq2SeqConfig
    config_class = LSTMSeq2SeqConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = False
    _no_split_modules = ["LSTMSeq2SeqEncoder", "LSTMSeq2SeqDecoder"]

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        # The recurrent state is not a key/value cache: generate must not build a DynamicCache for it.
        return False

    def _init_weights(self, module: nn.Module) -> None:
        """Uniform(-r, r) everywhere, as the OpenNMT/JoeyNMT baselines do; padding embeddings start at zero."""
        r = self.config.init_range
        if isinstance(module, nn.RNNBase):
            for parameter in module.parameters():
                init.uniform_(parameter, -r, r)
        elif isinstance(module, nn.Linear):
            # A tied output layer takes the embedding's values: drawing its weight anyway would shift its bias's draws.
            if not (self.config.tie_word_embeddings and module is self.get_output_embeddings()):
                init.uniform_(module.weight, -r, r)
            if module.bias is not None:
                init.uniform_(module.bias, -r, r)
        elif isinstance(module, nn.Embedding):
            init.uniform_(module.weight, -r, r)
            if module.padding_idx is not None and not getattr(module.weight, "_is_hf_initialized", False):
                init.zeros_(module.weight[module.padding_idx])

    def _resize_token_embeddings(
        self, new_num_tokens: int | None, pad_to_multiple_of: int | None = None, mean_resizing: bool = True
    ) -> nn.Embedding:
        """What `resize_token_embeddings(n)` does: the *source* vocabulary (encoder embeddings, `vocab_size`) gets
        n entries, and the target side (decoder embeddings, output layer, `decoder_vocab_size`) follows when source
        and target are one vocabulary (`decoder_vocab_size == vocab_size`: joint, shared or tied models).

        A separate target vocabulary keeps its size, whichever is larger: with `decoder_vocab_size < vocab_size`
        the targets are the tokenizer's first `decoder_vocab_size` ids (train.py's `--decoder_vocab_size`), so
        tokens added at the end of the tokenizer are source-only. Resize the target side with
        `resize_decoder_token_embeddings`.
        """
        target_follows = self.config.decoder_vocab_size == self.config.vocab_size
        source = self._get_resized_embeddings(
            self.base_model.encoder.embed_tokens, new_num_tokens, pad_to_multiple_of, mean_resizing
        )
        if target_follows:
            self._resize_target_vocabulary(source.num_embeddings, mean_resizing)
        return source

    def resize_decoder_token_embeddings(self, new_num_tokens: int, mean_resizing: bool = True) -> nn.Embedding:
        """Give the target vocabulary `new_num_tokens` entries: decoder embeddings, output layer (weight and bias)
        and `decoder_vocab_size`; kept rows keep their values. The source side does not change.

        Raises:
            ValueError: with `share_embeddings=True` (one matrix for both sides: use `resize_token_embeddings`).
        """
        if self.config.share_embeddings:
            raise ValueError(
                "`share_embeddings=True`: source and target share one embedding matrix, so resize both with "
                "`resize_token_embeddings`."
            )
        self._resize_target_vocabulary(new_num_tokens, mean_resizing)
        self.tie_weights()
        return self.base_model.decoder.embed_tokens

    def _resize_target_vocabulary(self, new_num_tokens: int, mean_resizing: bool) -> None:
        embeddings = self.base_model.decoder.embed_tokens
        # A shared matrix was already resized with the source one; the module's row count follows it.
        self._get_resized_embeddings(embeddings, new_num_tokens, mean_resizing=mean_resizing)
        embeddings.num_embeddings = new_num_tokens
        head = self.get_output_embeddings()
        if (
            head is not None and self.config.tie_word_embeddings
        ):  # its weight is that matrix; `tie_weights` pads the bias
            head.out_features = new_num_tokens
        elif head is not None:
            self.set_output_embeddings(self._get_resized_lm_head(head, new_num_tokens, mean_resizing=mean_resizing))
        self.config.decoder_vocab_size = new_num_tokens

    def save_pretrained(self, save_directory, *args, **kwargs) -> None:
        """When the code travels with the weights, point every Auto class at it, not just the one registered."""
        if self._auto_class is not None:
            module = type(self).__module__.split(".")[-1]
            self.config.auto_map = {
                **(getattr(self.config, "auto_map", None) or {}),
                "AutoModel": f"{module}.LSTMSeq2SeqModel",
                "AutoModelForSeq2SeqLM": f"{module}.LSTMSeq2SeqForConditionalGeneration",
            }
        super().save_pretrained(save_directory, *args, **kwargs)


class LSTMSeq2SeqModel(LSTMSeq2SeqPreTrainedModel):
    """Encoder + decoder, returning the attentional vectors (the input of the softmax layer)."""

    def __init__(self, config: LSTMSeq2SeqConfig):
        super().__init__(config)
        # Two modules even when shared: transformers ties the *parameters* (`share_embeddings` below), and one
        # module under two names would hide a shared matrix missing from a checkpoint from its loading report.
        source_embeddings = nn.Embedding(config.vocab_size, config.embedding_size, padding_idx=config.pad_token_id)
        target_embeddings = nn.Embedding(
            config.decoder_vocab_size, config.embedding_size, padding_idx=config.pad_token_id
        )
        self.encoder = LSTMSeq2SeqEncoder(config, source_embeddings)
        self.decoder = LSTMSeq2SeqDecoder(config, target_embeddings)
        if config.share_embeddings:
            self._tied_weights_keys = {"decoder.embed_tokens.weight": "encoder.embed_tokens.weight"}
        self.post_init()

    def get_expanded_tied_weights_keys(self, all_submodels: bool = False) -> dict:
        # transformers ties only under `tie_word_embeddings`; sharing source/target embeddings is its own switch.
        if all_submodels:
            return super().get_expanded_tied_weights_keys(all_submodels=True)
        return dict(self._tied_weights_keys) if self.config.share_embeddings else {}

    def get_input_embeddings(self) -> nn.Embedding:
        return self.encoder.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.encoder.embed_tokens = value
        if self.config.share_embeddings:
            self.decoder.embed_tokens.weight = value.weight

    def get_encoder(self, modality: str | None = None) -> LSTMSeq2SeqEncoder:
        return self.encoder

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.LongTensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        encoder_outputs: LSTMSeq2SeqEncoderOutput | tuple | None = None,
        cache: LSTMSeq2SeqCache | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> Seq2SeqModelOutput | tuple:
        """`decoder_attention_mask` is accepted for API compatibility: a causal RNN never looks ahead, and
        positions after a target's end only produce outputs the loss ignores."""
        output_attentions = output_attentions if output_attentions is not None else self.config.output_attentions
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        use_cache = use_cache if use_cache is not None else self.config.use_cache
        return_dict = return_dict if return_dict is not None else self.config.return_dict

        if attention_mask is None:
            if input_ids is None:
                raise ValueError("Pass `input_ids`, or precomputed `encoder_outputs` together with `attention_mask`.")
            attention_mask = input_ids.ne(self.config.pad_token_id)
        if encoder_outputs is None:
            encoder_outputs = self.encoder(
                input_ids, attention_mask=attention_mask, output_hidden_states=output_hidden_states
            )
        elif not isinstance(encoder_outputs, LSTMSeq2SeqEncoderOutput):
            encoder_outputs = LSTMSeq2SeqEncoderOutput(*encoder_outputs)
        if decoder_input_ids is None:
            raise ValueError("Pass `decoder_input_ids` or `labels` (they are shifted into decoder inputs).")

        vectors, new_cache, attention, embeddings, rnn_outputs = self.decoder(
            decoder_input_ids, encoder_outputs, attention_mask, cache=cache
        )
        if new_cache.rows is not None:  # ended rows were dropped: zeros in their place keep the batch shape
            vectors = vectors.new_zeros(decoder_input_ids.shape[0], *vectors.shape[1:]).index_copy(
                0, new_cache.rows, vectors
            )
        output = Seq2SeqModelOutput(
            last_hidden_state=vectors,
            cache=new_cache if use_cache else None,
            decoder_hidden_states=(embeddings, rnn_outputs, vectors) if output_hidden_states else None,
            cross_attentions=(attention.unsqueeze(1),) if output_attentions and attention is not None else None,
            encoder_last_hidden_state=encoder_outputs.last_hidden_state,
            encoder_hidden_states=encoder_outputs.hidden_states,
        )
        return output if return_dict else output.to_tuple()


class LSTMSeq2SeqForConditionalGeneration(LSTMSeq2SeqPreTrainedModel, GenerationMixin):
    """The translator: `LSTMSeq2SeqModel` plus the softmax layer, trainable with `labels`, usable with `generate()`."""

    # Trainer passes `num_items_in_batch` to a model that declares this; `token_cross_entropy` honours it.
    accepts_loss_kwargs = True
    _tied_weights_keys = {"lm_head.weight": "model.decoder.embed_tokens.weight"}  # with `tie_word_embeddings`
    _ended_rows: EndedRows | None = None  # set by generate() while it runs, when finished sentences may be dropped
    _max_new_tokens: int | None = None  # set by generate() while it runs, when nobody chose an output limit
    _max_length_chosen: bool = True  # cleared by generate() while it runs, when nobody chose a max_length
    _length_used: tuple[int, int] = (0, 0)  # the last generate()'s max_length and decoder prompt length

    def __init__(self, config: LSTMSeq2SeqConfig):
        super().__init__(config)
        self.model = LSTMSeq2SeqModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.decoder_vocab_size)
        if config.share_embeddings:
            # Every parameter tied to one matrix must name the same source (transformers follows no chains): with
            # shared embeddings that is the encoder's, the one a checkpoint holds.
            self._tied_weights_keys = {"lm_head.weight": "model.encoder.embed_tokens.weight"}
        self.post_init()
        self.generation_config.max_new_tokens_ratio = MAX_NEW_TOKENS_RATIO
        self.generation_config.max_new_tokens_offset = MAX_NEW_TOKENS_OFFSET

    def get_encoder(self, modality: str | None = None) -> LSTMSeq2SeqEncoder:
        return self.model.encoder

    def generate(
        self, inputs: torch.Tensor | None = None, generation_config: GenerationConfig | None = None, **kwargs
    ):
        """`GenerationMixin.generate`, with an output limit that scales with the source and finished sentences
        dropped from the batch (see `EndedRows`).

        Unless the call, a generation config passed to it, or `model.generation_config` sets `max_length` or
        `max_new_tokens`, a batch may generate `ceil(max_new_tokens_ratio * source length) + max_new_tokens_offset`
        new tokens (generation config fields; defaults 2 and 10; the source length is the longest in the batch).
        `max_length=20`, transformers' default that Seq2SeqTrainer writes into `model.generation_config`, counts as
        unset there. One warning per call says how many returned sequences reached the limit without `</s>`.

        The rows of a finished sentence can no longer change the output, so not computing
        them leaves it unchanged: greedy search and sampling pad a sentence after its end
        token; beam search stops extending a sentence once no running beam can beat its
        finished hypotheses. Skipped (all rows computed, as stock generate does) for beam
        sampling, whose random draws depend on every row, and when scores, logits,
        attentions or hidden states are returned, since those expose every row's values.
        """
        config = copy.deepcopy(generation_config or self.generation_config)
        config.update(**kwargs)
        eos, num_beams = config.eos_token_id, config.num_beams or 1
        returns_per_row_values = config.return_dict_in_generate and (
            config.output_scores or config.output_logits or config.output_attentions or config.output_hidden_states
        )
        speculative = kwargs.get("assistant_model") is not None or config.prompt_lookup_num_tokens is not None
        if eos is not None and not returns_per_row_values and not speculative:
            if num_beams == 1:
                self._ended_rows = EndedRows(token_ids=torch.tensor(eos if isinstance(eos, (list, tuple)) else [eos]))
            elif not config.do_sample:
                self._ended_rows = EndedRows(
                    num_beams=num_beams, num_return_sequences=config.num_return_sequences or 1
                )
        self._max_length_chosen, max_new_tokens_chosen = chosen_length_limits(
            self.generation_config, generation_config, kwargs
        )
        if not self._max_length_chosen and not max_new_tokens_chosen:
            self._max_new_tokens = self._source_scaled_limit(inputs, config, kwargs)
        try:
            output = super().generate(inputs, generation_config=generation_config, **kwargs)
        finally:
            self._ended_rows, self._max_new_tokens, self._max_length_chosen = None, None, True
        sequences = output if isinstance(output, torch.Tensor) else output.sequences
        cut = count_cut(sequences, self._length_used[0], eos)
        if cut:
            logger.warning(
                f"{cut} of {len(sequences)} generated sequences reached the length limit "
                f"({self._length_used[0] - self._length_used[1]} new tokens) without `</s>` and were cut. Pass a "
                f"larger `max_new_tokens` to generate() (or raise `max_new_tokens_ratio` / `max_new_tokens_offset` in "
                f"the generation config) to allow longer outputs."
            )
        return output

    def _source_scaled_limit(self, inputs: torch.Tensor | None, config: GenerationConfig, kwargs: dict) -> int:
        """New tokens allowed for this batch: ratio x the longest source (tokens, `</s>` included) + offset."""
        mask, input_ids = kwargs.get("attention_mask"), inputs if inputs is not None else kwargs.get("input_ids")
        if mask is not None:
            source_length = int(mask.sum(dim=-1).max())
        elif input_ids is not None:
            source_length = int(input_ids.ne(self.config.pad_token_id).sum(dim=-1).max())
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

    def _get_logits_processor(self, *args, **kwargs) -> logits_process.LogitsProcessorList:
        """generate()'s logits processors; notes whether any of them could raise a score above zero."""
        processors = super()._get_logits_processor(*args, **kwargs)
        if self._ended_rows is not None:
            self._ended_rows.scores_never_rise = all(isinstance(p, NON_RAISING_PROCESSORS) for p in processors) or (
                len(processors) > 0 and isinstance(processors[-1], logits_process.LogitNormalization)
            )
        return processors

    def _check_early_stop_heuristic(self, *args, **kwargs) -> torch.Tensor:
        """Beam search's per-sentence test "can a running beam still beat the finished ones?", whose
        negative marks a sentence done for good: its rows are then dropped (see `EndedRows`).

        A sentence whose returned hypotheses are final (`EndedRows.sentences_settled`) is reported
        done as well, so generate() neither extends it nor admits new hypotheses for it.
        """
        can_improve = super()._check_early_stop_heuristic(*args, **kwargs)
        # transformers 5 passes keywords; called any other way, every row is simply kept.
        if self._ended_rows is not None and self._ended_rows.num_beams > 1 and not args:
            settled = self._ended_rows.sentences_settled(
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
            self._ended_rows.done_items = done
        return can_improve

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Linear) -> None:
        self.lm_head = value

    def prepare_decoder_input_ids_from_labels(self, labels: torch.Tensor) -> torch.Tensor:
        return shift_tokens_right(labels, self.config.pad_token_id, self.config.decoder_start_token_id)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.LongTensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        encoder_outputs: LSTMSeq2SeqEncoderOutput | tuple | None = None,
        cache: LSTMSeq2SeqCache | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        num_items_in_batch: int | torch.Tensor | None = None,
        **kwargs,
    ) -> Seq2SeqLMOutput | tuple:
        """`labels` use -100 for positions the loss ignores (padding), as everywhere in transformers; the loss is
        their mean token cross-entropy, or the sum over `num_items_in_batch` when given (see `token_cross_entropy`)."""
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if labels is not None:
            check_token_ids("labels", labels, self.config.decoder_vocab_size, allow_ignore=True)
            use_cache = False
            if decoder_input_ids is None:
                decoder_input_ids = self.prepare_decoder_input_ids_from_labels(labels)

        outputs = self.model(
            input_ids,
            attention_mask=attention_mask,
            decoder_input_ids=decoder_input_ids,
            encoder_outputs=encoder_outputs,
            cache=cache,
            use_cache=use_cache,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        new_cache = outputs.cache
        if new_cache is not None and cache is None and self._ended_rows is not None:
            new_cache.ended_rows = self._ended_rows
        if new_cache is not None and new_cache.rows is not None:  # the softmax layer only for the rows held
            state, hidden = new_cache.ended_rows, outputs.last_hidden_state
            if state.logits is None:
                state.logits = hidden.new_zeros(*hidden.shape[:2], self.lm_head.out_features)
            # generate() copies the logits at once and ignores dropped rows, so one buffer serves every step.
            logits = state.logits.index_copy_(0, state.rows, self.lm_head(hidden[state.rows]))
        else:
            logits = self.lm_head(outputs.last_hidden_state)
        loss = None if labels is None else token_cross_entropy(logits, labels, num_items_in_batch)
        output = Seq2SeqLMOutput(
            loss=loss,
            logits=logits,
            cache=outputs.cache,
            decoder_hidden_states=outputs.decoder_hidden_states,
            cross_attentions=outputs.cross_attentions,
            encoder_last_hidden_state=outputs.encoder_last_hidden_state,
            encoder_hidden_states=outputs.encoder_hidden_states,
        )
        return output if return_dict else output.to_tuple()


__all__ = [
    "EndedRows",
    "LSTMSeq2SeqCache",
    "LSTMSeq2SeqEncoderOutput",
    "LSTMSeq2SeqForConditionalGeneration",
    "LSTMSeq2SeqModel",
    "LSTMSeq2SeqPreTrainedModel",
]
