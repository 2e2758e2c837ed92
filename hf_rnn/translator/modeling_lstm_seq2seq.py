"""Recurrent (LSTM / GRU / RNN) encoder-decoder with global attention as a transformers model.

The architecture is the classic attentional NMT baseline (Luong et al., 2015, "Effective Approaches
to Attention-based Neural Machine Translation"; Bahdanau et al., 2015, "Neural Machine Translation by
Jointly Learning to Align and Translate"): a packed, optionally bidirectional encoder; a decoder
whose state is initialised from the encoder's final states; global attention over the encoder
outputs; an attentional vector tanh(W[context; h]) optionally fed into the next step ("input
feeding"); a linear softmax layer.

The file reads top-down like transformers' models: helpers, outputs and the recurrent state,
attention, encoder, decoder, the `PreTrainedModel` base, the heads. Between decoding steps the
state travels as `cache` (an `LSTMSeq2SeqCache`); how generate() uses it (finished sentences
dropped, output limits) lives in `generation_lstm_seq2seq.py`. Only sibling imports are used so
this file travels as Hub remote code.
"""

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import ModelOutput, Seq2SeqLMOutput, Seq2SeqModelOutput

from .configuration_lstm_seq2seq import LSTMSeq2SeqConfig
from .generation_lstm_seq2seq import MAX_NEW_TOKENS_OFFSET, MAX_NEW_TOKENS_RATIO, LSTMSeq2SeqGenerationMixin
from .pipeline_translation import CUSTOM_PIPELINES

RNN_CLASSES = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


def check_token_ids(
    name: str, ids: torch.Tensor, vocab_size: int, allow_ignore: bool = False, batch_size: int | None = None
) -> None:
    """Raise a readable error naming `name` instead of torch's opaque ones inside an embedding or a loss: `ids`
    must be integer token ids of shape (batch, length), with `batch_size` rows when given, inside the vocabulary
    (or -100 with `allow_ignore`)."""
    if torch.compiler.is_exporting():  # a graph cannot raise; the exported model's caller checks its inputs
        return
    if (
        not isinstance(ids, torch.Tensor)
        or ids.dtype.is_floating_point
        or ids.dtype.is_complex
        or ids.dtype == torch.bool
    ):
        kind = f"dtype {ids.dtype}" if isinstance(ids, torch.Tensor) else type(ids).__name__
        raise ValueError(f"`{name}` must be a tensor of integer token ids, got {kind}.")
    if ids.dim() != 2:
        raise ValueError(f"`{name}` must have shape (batch, length), got {tuple(ids.shape)}.")
    if batch_size is not None and ids.shape[0] != batch_size:
        raise ValueError(f"`{name}` has {ids.shape[0]} rows but the batch has {batch_size}.")
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
    if torch.compiler.is_exporting():  # a graph cannot raise; the exported model's caller checks its inputs
        return lengths
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


class LSTMSeq2SeqCache:
    """
    The decoder's recurrent state between `generate()` steps.

    Unlike a transformer's key/value cache it does not grow: it holds the state after the
    last token (hidden, cell, the input-feeding vector) plus the projected attention keys,
    which depend only on the source and are worth computing once.
    """

    is_compileable = False

    def __init__(
        self,
        hidden: torch.Tensor,
        cell: torch.Tensor | None,
        input_feed: torch.Tensor | None,
        attention_keys: torch.Tensor | None,
        seen_tokens: int = 0,
    ):
        self.hidden = hidden  # (num_layers, batch, hidden_size): nn.RNN's native layout
        self.cell = cell  # same, LSTM only
        self.input_feed = input_feed  # (batch, hidden_size), with input feeding
        self.attention_keys = attention_keys  # (batch, src_len, hidden_size), concat attention
        self.seen_tokens = seen_tokens

    def select(self, index: torch.LongTensor) -> "LSTMSeq2SeqCache":
        """The state of rows `index` (batch positions, repeats allowed): beam search's reordering, or dropping rows."""

        def rows(tensor: torch.Tensor | None, dim: int = 0) -> torch.Tensor | None:
            return None if tensor is None else tensor.index_select(dim, index.to(tensor.device))

        return LSTMSeq2SeqCache(
            rows(self.hidden, 1),
            rows(self.cell, 1),
            rows(self.input_feed),
            rows(self.attention_keys),
            self.seen_tokens,
        )

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.seen_tokens

    @property
    def rnn_state(self) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        return self.hidden if self.cell is None else (self.hidden, self.cell)


class LSTMSeq2SeqUnrolledRNN(nn.Module):
    """An `nn.LSTM` / `nn.GRU` / `nn.RNN` (tanh) taken apart into `nn.Linear` projections stepped through time.

    Weight quantization libraries (torchao) quantize `nn.Linear`, and a fused recurrent module keeps its
    matrices out of their reach; an exporter cannot follow a packed sequence. Here each layer and direction
    has an input projection (W_ih x + b_ih, applied to the whole sequence at once) and a hidden projection
    (W_hh h + b_hh, once per step); the gates follow torch's formulas for the three cells. Variable lengths
    come as `lengths` instead of a `PackedSequence`: a padded position leaves the state unchanged and outputs
    zeros, so the results are the packed module's. Under `torch.export` the time loop is a `scan` (an ONNX
    `Scan`), so the source length stays dynamic.

    Built from a trained module by `quantize_int8` and by the ONNX export, sharing its parameters; a fp32
    model keeps its fused module, whose outputs and checkpoint keys stay as they were.
    """

    def __init__(self, rnn: nn.RNNBase):
        super().__init__()
        cells = {"LSTM": "lstm", "GRU": "gru", "RNN_TANH": "rnn"}
        if rnn.mode not in cells or rnn.proj_size or not rnn.batch_first:
            raise ValueError(f"cannot unroll {rnn}: a batch-first LSTM, GRU or tanh RNN without projections is needed")
        self.cell_type = cells[rnn.mode]
        self.num_layers, self.hidden_size, self.dropout = rnn.num_layers, rnn.hidden_size, rnn.dropout
        self.directions = 2 if rnn.bidirectional else 1
        self.input_projections, self.hidden_projections = nn.ModuleList(), nn.ModuleList()
        for layer in range(self.num_layers):
            for suffix in ("", "_reverse")[: self.directions]:
                for kind, projections in (("ih", self.input_projections), ("hh", self.hidden_projections)):
                    weight = getattr(rnn, f"weight_{kind}_l{layer}{suffix}")
                    bias = getattr(rnn, f"bias_{kind}_l{layer}{suffix}") if rnn.bias else None
                    linear = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, device="meta")
                    linear.weight = weight
                    if bias is not None:
                        linear.bias = bias
                    projections.append(linear)

    def step(
        self, step_input: torch.Tensor, hidden: torch.Tensor, cell: torch.Tensor | None, index: int
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One time step of layer/direction `index` (layer * directions + direction): step_input (B, I), hidden and
        cell (B, H) -> the new hidden and cell (cell None for GRU/RNN)."""
        return self._cell(self.input_projections[index](step_input), hidden, cell, index)

    def _cell(
        self, input_gates: torch.Tensor, hidden: torch.Tensor, cell: torch.Tensor | None, index: int
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        hidden_gates = self.hidden_projections[index](hidden)  # (B, gates * H)
        if self.cell_type == "lstm":
            i, f, g, o = (input_gates + hidden_gates).chunk(4, dim=-1)
            cell = torch.sigmoid(f) * cell + torch.sigmoid(i) * torch.tanh(g)
            return torch.sigmoid(o) * torch.tanh(cell), cell
        if self.cell_type == "gru":
            (r_x, z_x, n_x), (r_h, z_h, n_h) = input_gates.chunk(3, dim=-1), hidden_gates.chunk(3, dim=-1)
            r, z = torch.sigmoid(r_x + r_h), torch.sigmoid(z_x + z_h)
            n = torch.tanh(n_x + r * n_h)
            return (1 - z) * n + z * hidden, None
        return torch.tanh(input_gates + hidden_gates), None

    def forward(
        self,
        input: torch.Tensor,
        hx: torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None = None,
        lengths: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | tuple[torch.Tensor, torch.Tensor]]:
        """input (B, T, I) right-padded, hx (layers * directions, B, H) (a pair for LSTM; zeros when None), lengths
        (B,) real steps per row (all T when None) -> outputs (B, T, directions * H), zero at padding, and the states
        after each row's last real step, as the replaced module returns for a packed batch."""
        batch, steps = input.shape[:2]
        if hx is None:
            zeros = input.new_zeros(self.num_layers * self.directions, batch, self.hidden_size)
            hx = (zeros, zeros) if self.cell_type == "lstm" else zeros
        hidden0, cell0 = hx if self.cell_type == "lstm" else (hx, None)
        positions = torch.arange(steps, device=input.device)
        if lengths is None:
            lengths = torch.full((batch,), steps, device=input.device)
        mask = positions < lengths[:, None]  # (B, T)
        reverse = (lengths[:, None] - 1 - positions).clamp(min=0)  # (B, T): a row's real steps backwards, then padding

        hiddens, cells, layer_input = [], [], input
        for layer in range(self.num_layers):
            outputs = []
            for direction in range(self.directions):
                index = layer * self.directions + direction
                sequence = layer_input if direction == 0 else _gather_steps(layer_input, reverse)
                input_gates = self.input_projections[index](sequence)  # (B, T, gates * H): one product for all steps
                state = (hidden0[index], cell0[index]) if cell0 is not None else (hidden0[index],)
                state, output = self._run(input_gates, mask, state, index)  # output (B, T, H)
                output = output.masked_fill(~mask[..., None], 0.0)
                if direction == 1:
                    output = _gather_steps(output, reverse).masked_fill(~mask[..., None], 0.0)
                outputs.append(output)
                hiddens.append(state[0])
                cells.extend(state[1:])
            layer_input = torch.cat(outputs, dim=-1)  # (B, T, directions * H)
            if layer < self.num_layers - 1:
                layer_input = nn.functional.dropout(layer_input, self.dropout, self.training)
        states = torch.stack(hiddens) if self.cell_type != "lstm" else (torch.stack(hiddens), torch.stack(cells))
        return layer_input, states

    def _run(
        self, input_gates: torch.Tensor, mask: torch.Tensor, state: tuple[torch.Tensor, ...], index: int
    ) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        """The time loop of one layer/direction: input_gates (B, T, gates * H), mask (B, T), state (hidden, [cell])
        -> the final state and every step's hidden output (B, T, H)."""

        def advance(state: tuple[torch.Tensor, ...], step: tuple[torch.Tensor, torch.Tensor]):
            gates, keep = step  # (B, gates * H), (B,)
            hidden, cell = self._cell(gates, state[0], state[1] if len(state) > 1 else None, index)
            new = (hidden,) if cell is None else (hidden, cell)
            # A padded position leaves the state as it was: a row's final state is the one after its last token.
            new = tuple(torch.where(keep[:, None], n, o) for n, o in zip(new, state))
            return new, new[0].clone()

        if torch.compiler.is_exporting() and not isinstance(input_gates.shape[1], int):
            from torch._higher_order_ops.scan import scan  # a dynamic number of steps: one ONNX Scan

            state = tuple(tensor.clone() for tensor in state)  # scan's carry must not alias (hx's rows share storage)
            state, outputs = scan(advance, state, (input_gates.transpose(0, 1), mask.transpose(0, 1)))
            return state, outputs.transpose(0, 1)
        outputs = []
        for t in range(input_gates.shape[1]):
            state, output = advance(state, (input_gates[:, t], mask[:, t]))
            outputs.append(output)
        return state, torch.stack(outputs, dim=1)


def _gather_steps(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """values (B, T, D) reordered along time by index (B, T)."""
    return values.gather(1, index[..., None].expand(-1, -1, values.shape[-1]))


class LSTMSeq2SeqAttention(GradientCheckpointingLayer):
    """Global attention over the encoder outputs, then the attentional vector tanh(W[c; h]) (Luong et al., 2015).

    Scores: "dot" h·s, "general" h·W·s (Luong), "concat" v·tanh(W_q h + W_k s) (Bahdanau et al., 2015).
    """

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
        """Bahdanau's key projection W_k s depends on the source only: computed once per sentence."""
        return self.key_proj(memory) if self.attention_type == "concat" else None

    def forward(
        self,
        query: torch.Tensor,
        memory: torch.Tensor,
        memory_mask: torch.Tensor,
        keys: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """query (B, T, H) decoder outputs, memory (B, S, H) encoder outputs, memory_mask (B, S) bool (True for real
        tokens), keys (B, S, H) from `project_keys` -> attentional vectors (B, T, H) and weights (B, T, S)."""
        if self.attention_type == "dot":
            scores = torch.bmm(query, memory.transpose(1, 2))  # (B, T, S)
        elif self.attention_type == "general":
            scores = torch.bmm(self.query_proj(query), memory.transpose(1, 2))  # (B, T, S)
        else:
            energy = torch.tanh(self.query_proj(query).unsqueeze(2) + keys.unsqueeze(1))  # (B, T, S, H)
            scores = self.energy(energy).squeeze(-1)  # (B, T, S)
        scores = scores.masked_fill(~memory_mask.unsqueeze(1), torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores, dim=-1)  # (B, T, S), zero at padding
        context = torch.bmm(weights, memory)  # (B, T, H)
        return torch.tanh(self.output_proj(torch.cat([context, query], dim=-1))), weights  # (B, T, 2H) -> (B, T, H)


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
    ) -> LSTMSeq2SeqEncoderOutput | tuple:
        """input_ids (B, S) right-padded source ids, attention_mask (B, S) (read from `pad_token_id` when omitted).

        `output_attentions` is accepted because generate() passes it to every encoder; a recurrent encoder has no
        attention to return.

        Raises:
            ValueError: ids outside the source vocabulary, an empty source, or left padding.
        """
        if input_ids is None:
            raise ValueError("The LSTM encoder needs `input_ids` (source token ids).")
        check_token_ids("input_ids", input_ids, self.config.vocab_size)
        if attention_mask is None:
            attention_mask = input_ids.ne(self.config.pad_token_id)
        elif attention_mask.shape != input_ids.shape:
            shapes = f"{tuple(attention_mask.shape)} but `input_ids` has {tuple(input_ids.shape)}"
            raise ValueError(f"`attention_mask` has shape {shapes}.")
        lengths = lengths_from_mask(attention_mask)  # (B,)

        embeddings = self.embedding_dropout(self.embed_tokens(input_ids))  # (B, S, E)
        if isinstance(self.rnn, LSTMSeq2SeqUnrolledRNN):  # int8 or exported: lengths instead of packing
            outputs, state = self.rnn(embeddings, lengths=lengths)  # (B, S, H)
        else:
            packed = pack_padded_sequence(embeddings, lengths.cpu(), batch_first=True, enforce_sorted=False)
            packed_outputs, state = self.rnn(packed)
            outputs, _ = pad_packed_sequence(
                packed_outputs, batch_first=True, total_length=input_ids.shape[1]
            )  # (B, S, H)

        hidden, cell = state if isinstance(state, tuple) else (state, None)  # (layers * directions, B, H / directions)
        result = LSTMSeq2SeqEncoderOutput(
            last_hidden_state=outputs,
            final_hidden_state=self._batch_major(hidden),  # (B, layers, H)
            final_cell_state=None if cell is None else self._batch_major(cell),
            hidden_states=(embeddings, outputs) if output_hidden_states else None,
        )
        return result if return_dict is not False else result.to_tuple()

    def _batch_major(self, state: torch.Tensor) -> torch.Tensor:
        """(layers * directions, B, H / directions) -> (B, layers, H): directions side by side, batch first."""
        layers, directions = self.config.num_encoder_layers, 2 if self.config.bidirectional_encoder else 1
        batch = state.shape[1]
        state = state.view(layers, directions, batch, -1).permute(2, 0, 1, 3)  # (B, layers, directions, H / d)
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
        memory = encoder_outputs.last_hidden_state  # (B, S, H)
        batch = memory.shape[0]

        def bridge(linear: nn.Linear, final: torch.Tensor) -> torch.Tensor:
            state = torch.tanh(linear(final.reshape(batch, -1)))  # (B, enc_layers * H) -> (B, dec_layers * H)
            return state.view(batch, config.num_decoder_layers, config.hidden_size).transpose(0, 1).contiguous()

        if config.decoder_init == "bridge":
            hidden = bridge(self.bridge_hidden, encoder_outputs.final_hidden_state)  # (dec_layers, B, H)
            cell = bridge(self.bridge_cell, encoder_outputs.final_cell_state) if self.bridge_cell else None
        else:
            hidden = memory.new_zeros(config.num_decoder_layers, batch, config.hidden_size)
            cell = torch.zeros_like(hidden) if config.cell_type == "lstm" else None
        input_feed = memory.new_zeros(batch, config.hidden_size) if config.input_feeding else None
        keys = self.attention.project_keys(memory) if self.attention is not None else None  # (B, S, H)
        return LSTMSeq2SeqCache(hidden, cell, input_feed, keys)

    def forward(
        self,
        input_ids: torch.LongTensor,
        encoder_outputs: LSTMSeq2SeqEncoderOutput,
        encoder_attention_mask: torch.Tensor,
        cache: LSTMSeq2SeqCache | None = None,
    ) -> tuple[torch.Tensor, LSTMSeq2SeqCache, torch.Tensor | None, torch.Tensor, torch.Tensor]:
        """input_ids (B, T) target ids, read after the state in `cache` (from the encoder when None) ->
        attentional vectors (B, T, H), the state after the last token, attention weights (B, T, S) or None,
        embeddings (B, T, E) and RNN outputs (B, T, H)."""
        memory = encoder_outputs.last_hidden_state  # (B, S, H)
        check_token_ids("decoder_input_ids", input_ids, self.config.decoder_vocab_size, batch_size=memory.shape[0])
        if cache is None:
            cache = self.init_cache(encoder_outputs)
        memory_mask = encoder_attention_mask.bool()  # (B, S)
        embeddings = self.embedding_dropout(self.embed_tokens(input_ids))  # (B, T, E)

        # Input feeding forces a loop over time. One step at a time (generate()) takes the loop too: the fused
        # nn.LSTM call makes oneDNN build and cache a primitive for every batch size it sees, and finished sentences
        # leaving the batch change its size every few steps (about 70 MiB of beam-5 decoding's peak memory).
        if self.config.input_feeding or input_ids.shape[1] == 1:
            hidden, cell, feed = list(cache.hidden.unbind(0)), cache.cell, cache.input_feed  # layers x (B, H)
            cell = None if cell is None else list(cell.unbind(0))
            vector_steps, weight_steps, rnn_steps = [], [], []
            for t in range(input_ids.shape[1]):
                step_input = embeddings[:, t] if feed is None else torch.cat([embeddings[:, t], feed], dim=-1)
                rnn_output = self._cell_step(step_input, hidden, cell)  # (B, H)
                vector, weights = self._attend(rnn_output.unsqueeze(1), memory, memory_mask, cache.attention_keys)
                if feed is not None:
                    feed = vector.squeeze(1)  # (B, 1, H) -> (B, H)
                rnn_steps.append(rnn_output)
                vector_steps.append(vector)
                weight_steps.append(weights)
            rnn_outputs, vectors = torch.stack(rnn_steps, dim=1), torch.cat(vector_steps, dim=1)  # (B, T, H)
            attention = torch.cat(weight_steps, dim=1) if self.attention is not None else None  # (B, T, S)
            state = torch.stack(hidden) if cell is None else (torch.stack(hidden), torch.stack(cell))
        else:
            feed = None
            rnn_outputs, state = self.rnn(embeddings, cache.rnn_state)  # (B, T, H), (layers, B, H)
            vectors, attention = self._attend(rnn_outputs, memory, memory_mask, cache.attention_keys)  # (B, T, H)

        hidden, cell = state if isinstance(state, tuple) else (state, None)
        new_cache = LSTMSeq2SeqCache(hidden, cell, feed, cache.attention_keys, cache.seen_tokens + input_ids.shape[1])
        return vectors, new_cache, attention, embeddings, rnn_outputs

    def _cell_step(
        self, step_input: torch.Tensor, hidden: list[torch.Tensor], cell: list[torch.Tensor] | None
    ) -> torch.Tensor:
        """One time step (B, E + H) through every layer, updating `hidden`/`cell` (one (B, H) per layer) in place;
        returns the top layer's output (B, H).

        Input feeding forces a loop over time; calling `nn.LSTM` once per step costs about
        1.5x the forward+backward time of torch's cell functions on the very same weights.
        """
        rnn, layers = self.rnn, self.config.num_decoder_layers
        for layer in range(layers):
            state = None if cell is None else cell[layer]
            if isinstance(rnn, LSTMSeq2SeqUnrolledRNN):  # quantized: the cell's products go through nn.Linear
                hidden[layer], state = rnn.step(step_input, hidden[layer], state, layer)
            else:
                weights = [
                    getattr(rnn, f"{name}_l{layer}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
                ]
                if cell is not None:
                    hidden[layer], state = torch.lstm_cell(step_input, (hidden[layer], state), *weights)
                else:
                    cell_fn = torch.gru_cell if self.config.cell_type == "gru" else torch.rnn_tanh_cell
                    hidden[layer] = cell_fn(step_input, hidden[layer], *weights)
            if cell is not None:
                cell[layer] = state
            step_input = hidden[layer]
            if layer < layers - 1:  # nn.LSTM's dropout between stacked layers
                step_input = nn.functional.dropout(step_input, self.config.dropout, self.training)
        return hidden[-1]

    def _attend(
        self, rnn_output: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor, keys: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, T, H) decoder outputs -> attentional vectors (B, T, H) after dropout, weights (B, T, S) or None."""
        if self.attention is None:
            return self.dropout(rnn_output), None
        vector, weights = self.attention(rnn_output, memory, memory_mask, keys)
        return self.dropout(vector), weights


class LSTMSeq2SeqPreTrainedModel(PreTrainedModel):
    config: LSTMSeq2SeqConfig
    config_class = LSTMSeq2SeqConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    # Activation checkpointing recomputes the attention layer in the backward pass (its largest activation, e.g.
    # concat attention's (batch, target, source, hidden) energies). The recurrent layers keep theirs: backpropagation
    # through time needs every step's state, and a fused nn.LSTM call has no layers to checkpoint one at a time.
    supports_gradient_checkpointing = True
    _no_split_modules = ["LSTMSeq2SeqEncoder", "LSTMSeq2SeqDecoder"]

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        # The recurrent state is not a key/value cache: generate must not build a DynamicCache for it.
        return False

    def _set_gradient_checkpointing(self, enable: bool = True, *args, **kwargs) -> None:
        if enable and self.config.attention_type == "none":
            raise ValueError(
                "Activation checkpointing is not supported with `attention_type='none'`: it recomputes the attention "
                "layer, and the recurrent layers keep their activations (backpropagation through time needs every "
                "step's state)."
            )
        super()._set_gradient_checkpointing(enable, *args, **kwargs)

    def quantize_int8(self) -> "LSTMSeq2SeqPreTrainedModel":
        """Int8 weights and int8 activations, quantized per call, for every matrix product, recurrent cells
        included: torchao's `Int8DynamicActivationInt8WeightConfig` (per-channel symmetric weights, per-token
        symmetric activations, int32 accumulation) on every `nn.Linear`, after each recurrent module is taken apart
        into `nn.Linear` projections (`LSTMSeq2SeqUnrolledRNN`). In place; returns the model.

        For inference on CPUs with int8 dot products (AVX512-VNNI, AMX). The outputs are close to, not equal to,
        the fp32 model's. Embedding lookups stay as they are; combines with `dtype=torch.bfloat16` (activations
        then bf16). The fp32 model's checkpoint is the one to keep: quantize after loading.

        Raises:
            ImportError: torchao is not installed (`pip install torchao`).
        """
        try:
            from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_
        except ImportError as error:
            raise ImportError("Int8 quantization needs torchao: `pip install torchao`.") from error
        for name, module in list(self.named_modules()):
            if isinstance(module, nn.RNNBase):
                parent, _, attribute = name.rpartition(".")
                setattr(self.get_submodule(parent), attribute, LSTMSeq2SeqUnrolledRNN(module))
        quantize_(self, Int8DynamicActivationInt8WeightConfig(set_inductor_config=False))
        return self

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
        """When the code travels with the weights, point every Auto class at it, not just the one registered.

        Raises:
            ValueError: the weights were quantized after loading (e.g. `quantize_int8()`, torchao's `quantize_`).
        """
        quantized = next((name for name, p in self.named_parameters() if type(p.data) is not torch.Tensor), None)
        if quantized is not None:
            kind = type(self.get_parameter(quantized).data).__name__
            raise ValueError(
                f"Cannot save quantized weights (`{quantized}` is a {kind}): save the model before quantizing it, and "
                "quantize it again after loading."
            )
        if self._auto_class is not None:
            module = type(self).__module__.split(".")[-1]
            self.config.auto_map = {
                **(getattr(self.config, "auto_map", None) or {}),
                "AutoModel": f"{module}.LSTMSeq2SeqModel",
                "AutoModelForSeq2SeqLM": f"{module}.LSTMSeq2SeqForConditionalGeneration",
            }
            # The pipeline travels too: `pipeline(task, model=folder, trust_remote_code=True)` finds it without hf_rnn.
            self.config.custom_pipelines = {
                **(getattr(self.config, "custom_pipelines", None) or {}),
                **CUSTOM_PIPELINES,
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
        """input_ids / attention_mask (B, S) the right-padded source (or precomputed `encoder_outputs` with the mask),
        decoder_input_ids (B, T) read after `cache` (the state after earlier target tokens; from the encoder when
        None) -> `last_hidden_state` (B, T, H) attentional vectors, `cache` the state after the last token,
        `cross_attentions` ((B, 1, T, S),) with `output_attentions`, `decoder_hidden_states` (embeddings, RNN
        outputs, attentional vectors) with `output_hidden_states`.

        `decoder_attention_mask` is accepted for API compatibility: a causal RNN never looks ahead, and
        positions after a target's end only produce outputs the loss ignores.

        Raises:
            ValueError: token ids outside the vocabularies, left padding or empty sources, missing inputs.
        """
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
        output = Seq2SeqModelOutput(
            last_hidden_state=vectors,
            cache=new_cache if use_cache else None,
            decoder_hidden_states=(embeddings, rnn_outputs, vectors) if output_hidden_states else None,
            cross_attentions=(attention.unsqueeze(1),) if output_attentions and attention is not None else None,
            encoder_last_hidden_state=encoder_outputs.last_hidden_state,
            encoder_hidden_states=encoder_outputs.hidden_states,
        )
        return output if return_dict else output.to_tuple()


class LSTMSeq2SeqForConditionalGeneration(LSTMSeq2SeqPreTrainedModel, LSTMSeq2SeqGenerationMixin):
    """The translator: `LSTMSeq2SeqModel` plus the softmax layer, trainable with `labels`, usable with `generate()`
    (see `generation_lstm_seq2seq.py` for its output limit and how finished sentences leave the batch)."""

    # Trainer passes `num_items_in_batch` to a model that declares this; `token_cross_entropy` honours it.
    accepts_loss_kwargs = True
    _tied_weights_keys = {"lm_head.weight": "model.decoder.embed_tokens.weight"}  # with `tie_word_embeddings`

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
        """`LSTMSeq2SeqModel.forward` plus the softmax layer: `logits` (B, T, decoder_vocab_size).

        `labels` (B, T) use -100 for positions the loss ignores (padding), as everywhere in transformers; without
        `decoder_input_ids` they are shifted right into them. The loss is their mean token cross-entropy, or the
        sum over `num_items_in_batch` when given (see `token_cross_entropy`).
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if labels is not None:
            source = (
                input_ids if input_ids is not None else (encoder_outputs[0] if encoder_outputs is not None else None)
            )
            # The source's own checks name a source of the wrong shape.
            batch_size = source.shape[0] if isinstance(source, torch.Tensor) and source.dim() >= 2 else None
            check_token_ids("labels", labels, self.config.decoder_vocab_size, allow_ignore=True, batch_size=batch_size)
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
        logits = self.lm_head(outputs.last_hidden_state)  # (B, T, H) -> (B, T, target vocabulary)
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
    "LSTMSeq2SeqCache",
    "LSTMSeq2SeqEncoderOutput",
    "LSTMSeq2SeqForConditionalGeneration",
    "LSTMSeq2SeqModel",
    "LSTMSeq2SeqPreTrainedModel",
]
