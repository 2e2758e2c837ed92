"""Recurrent (LSTM / GRU / RNN) encoder-only models as transformers models: a text classifier and a language model.

`LSTMModel` embeds the tokens and runs one packed recurrent call over the real (unpadded)
positions of every row, padded on the left or on the right, so a row's outputs never depend
on how the other rows of its batch are padded. Two heads sit on it:

- `LSTMForSequenceClassification` (several words -> one label): the outputs pooled over the
  real positions (final state, mean, max or attention; Yang et al., 2016) and a linear layer,
  with the loss transformers uses for single-label, multi-label and regression problems.
- `LSTMForCausalLM` (the character-level language model of Karpathy's char-rnn, 2015): next-token
  logits for the stock `GenerationMixin`. The recurrent state after the last token read
  (`LSTMCache`) is the generation cache: it does not grow, so memory per generated token is
  constant. Passed back into `forward`, the same state carries a long text across chunks for
  truncated backpropagation through time.

Only sibling imports are used so this file travels as Hub remote code.
"""

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from transformers import GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import ModelOutput, SequenceClassifierOutput

from .configuration_lstm import LSTMConfig

RNN_CLASSES = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


# Copied from hf_rnn.translator.modeling_lstm_seq2seq.check_token_ids
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
    if ids.is_cuda and torch.cuda.is_current_stream_capturing():  # a CUDA graph cannot read values back either
        return
    valid = (ids >= 0) & (ids < vocab_size)
    if allow_ignore:
        valid |= ids == -100
    if not bool(valid.all()):
        bad = ids[~valid][0].item()
        raise ValueError(
            f"`{name}` contains token id {bad}, outside the vocabulary [0, {vocab_size}). Was the input made by a "
            f"different tokenizer than the one this model was trained with?"
        )


def padding_mask(
    input_ids: torch.Tensor | None, attention_mask: torch.Tensor | None, pad_token_id: int | None
) -> torch.Tensor:
    """(batch, seq_len) bool, True at real tokens: `attention_mask`, or every non-pad id when it is not given."""
    if input_ids is None:
        raise ValueError("Pass `input_ids` (token ids of shape (batch, seq_len)).")
    if input_ids.dim() != 2:
        raise ValueError(f"`input_ids` must have shape (batch, seq_len), got {tuple(input_ids.shape)}.")
    if attention_mask is None:
        return input_ids.ne(pad_token_id) if pad_token_id is not None else torch.ones_like(input_ids, dtype=torch.bool)
    if attention_mask.shape != input_ids.shape:
        raise ValueError(
            f"`attention_mask` has shape {tuple(attention_mask.shape)} but `input_ids` has {tuple(input_ids.shape)}."
        )
    return attention_mask.bool()


def spans_from_mask(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Where each row's tokens start and how many there are: packing needs one block of real tokens per row
    (padding on the left, the right or both) and no empty row; say so plainly when that is not the case."""
    lengths = mask.sum(dim=1)
    if bool((lengths == 0).any()):
        row = int((lengths == 0).nonzero()[0, 0])
        raise ValueError(
            f"Sequence {row} of the batch is empty (its attention_mask is all zeros): there is no text to read."
        )
    starts = mask.int().argmax(dim=1)
    positions = torch.arange(mask.shape[1], device=mask.device)
    block = (positions[None, :] >= starts[:, None]) & (positions[None, :] < (starts + lengths)[:, None])
    if not bool((block == mask).all()):
        row = int((block != mask).any(dim=1).nonzero()[0, 0])
        raise ValueError(
            f"Row {row} of `attention_mask` has padding between its tokens; pad each row on one side only "
            f"(the tokenizer's padding does)."
        )
    return starts, lengths


def roll_rows(x: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """out[b, t] = x[b, (t + shifts[b]) % seq_len] for x (batch, seq_len, features): moves left padding to the right
    (and back with -shifts), so that packing, which reads every row from position 0, sees only real tokens."""
    index = (torch.arange(x.shape[1], device=x.device)[None, :] + shifts[:, None]) % x.shape[1]
    return x.gather(1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


# Copied from hf_rnn.translator.modeling_lstm_seq2seq.run_rnn
def run_rnn(rnn: nn.RNNBase, inputs, state=None):
    """`rnn(inputs, state)` for a (B, T, E) batch or a `PackedSequence`, in float32 where CPU autocast cannot run it.

    Under CPU autocast torch (2.13) hands `nn.LSTM` calls (packed ones too, when every row has the same length) to
    oneDNN's reduced-precision LSTM, which only exists on CPUs with those instructions (AVX-512 or AMX for
    bfloat16): elsewhere, an AVX2 CPU for one, it fails with "could not create a primitive descriptor for the LSTM
    forward propagation primitive". There the call runs with autocast off, in float32, as autocast already runs
    GRUs and most packed calls.
    """
    if inputs.data.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
        supported = {
            torch.bfloat16: torch.ops.mkldnn._is_mkldnn_bf16_supported,
            torch.float16: torch.ops.mkldnn._is_mkldnn_fp16_supported,
        }.get(torch.get_autocast_dtype("cpu"))
        if supported is not None and not supported():
            if state is not None:  # the initial state may come from a layer autocast ran in bfloat16
                state = tuple(s.float() for s in state) if isinstance(state, tuple) else state.float()
            with torch.autocast("cpu", enabled=False):
                return rnn(inputs.float(), state)
    return rnn(inputs, state)


class LSTMCache:
    """
    The recurrent state after the last token read: what `generate()` carries from one step to the
    next, and truncated BPTT from one chunk of a long text to the next.

    Unlike a transformer's key/value cache it does not grow with the text: one vector per layer,
    direction and row. `reorder_cache` is the one hook beam search needs.
    """

    is_compileable = False

    def __init__(self, hidden: torch.Tensor, cell: torch.Tensor | None = None, seen_tokens: int = 0):
        self.hidden = hidden  # (num_layers * directions, batch, hidden_size // directions): nn.RNN's layout
        self.cell = cell  # the LSTM's cell state, same shape; None for GRU / RNN
        self.seen_tokens = seen_tokens  # positions read so far, padding included (generate's bookkeeping)

    @property
    def rnn_state(self) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        return self.hidden if self.cell is None else (self.hidden, self.cell)

    @property
    def batch_size(self) -> int:
        return self.hidden.shape[1]

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        """Beam search keeps the states of the surviving hypotheses (in place, as generate expects)."""
        self.hidden = self.hidden.index_select(1, beam_idx.to(self.hidden.device))
        if self.cell is not None:
            self.cell = self.cell.index_select(1, beam_idx.to(self.cell.device))

    def detach(self) -> "LSTMCache":
        """The same state cut from the autograd graph: truncated BPTT's chunk border (values carry on, gradients
        stop)."""
        return LSTMCache(self.hidden.detach(), None if self.cell is None else self.cell.detach(), self.seen_tokens)

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.seen_tokens


@dataclass
class LSTMModelOutput(ModelOutput):
    """
    Args:
        last_hidden_state: `(batch, seq_len, hidden_size)` top-layer outputs (both directions side by side when
            bidirectional), zero at padding.
        cache: the state after each row's last real token (an `LSTMCache`), when `use_cache`.
        hidden_states: `(embeddings, last_hidden_state)` when `output_hidden_states=True`.
    """

    last_hidden_state: torch.Tensor | None = None
    cache: LSTMCache | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None


@dataclass
class LSTMCausalLMOutput(ModelOutput):
    """
    Args:
        loss: next-token cross-entropy (nats per token), when `labels` or `shift_labels` are given.
        logits: `(batch, seq_len, vocab_size)` next-token scores (only the last `logits_to_keep` positions when set).
        cache: the state after the last token, to pass back as `cache` with the tokens that follow.
        hidden_states: `(embeddings, last_hidden_state)` when `output_hidden_states=True`.
    """

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    cache: LSTMCache | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None


class LSTMPreTrainedModel(PreTrainedModel):
    config: LSTMConfig
    config_class = LSTMConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = False
    _no_split_modules = ["LSTMModel"]
    # A state that only moves forward: generate() refuses assisted decoding, which must rewind it.
    _is_stateful = True

    # Copied from hf_rnn.translator.modeling_lstm_seq2seq.LSTMSeq2SeqPreTrainedModel._supports_default_dynamic_cache
    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        # The recurrent state is not a key/value cache: generate must not build a DynamicCache for it.
        return False

    # Copied from hf_rnn.translator.modeling_lstm_seq2seq.LSTMSeq2SeqPreTrainedModel._init_weights
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

    def save_pretrained(self, save_directory, *args, **kwargs) -> None:
        """When the code travels with the weights, point every Auto class at it, not just the one registered."""
        if self._auto_class is not None:
            module = type(self).__module__.split(".")[-1]
            self.config.auto_map = {
                **(getattr(self.config, "auto_map", None) or {}),
                "AutoModel": f"{module}.LSTMModel",
                "AutoModelForSequenceClassification": f"{module}.LSTMForSequenceClassification",
                "AutoModelForCausalLM": f"{module}.LSTMForCausalLM",
            }
        super().save_pretrained(save_directory, *args, **kwargs)


class LSTMModel(LSTMPreTrainedModel):
    """Embeddings and a packed, optionally bidirectional, recurrent stack; returns per-position outputs and the
    final state."""

    def __init__(self, config: LSTMConfig):
        super().__init__(config)
        directions = 2 if config.bidirectional else 1
        self.embed_tokens = nn.Embedding(config.vocab_size, config.embedding_size, padding_idx=config.pad_token_id)
        self.embedding_dropout = nn.Dropout(config.embedding_dropout)
        self.rnn = RNN_CLASSES[config.cell_type](
            config.embedding_size,
            config.hidden_size // directions,
            num_layers=config.num_layers,
            bidirectional=config.bidirectional,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
            batch_first=True,
        )
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embed_tokens = value

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        cache: LSTMCache | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> LSTMModelOutput | tuple:
        """
        Args:
            input_ids: `(batch, seq_len)` token ids.
            attention_mask: `(batch, seq_len)`, 1 at real tokens and 0 at padding (left or right); defaults to
                `input_ids != pad_token_id`.
            cache: the state to start from (an `LSTMCache` returned by an earlier call on the same rows), for
                generation and truncated BPTT; zeros when None. Unidirectional models only.
            use_cache: return the state after each row's last real token (default `config.use_cache`).

        Raises `ValueError` naming the input for ids outside the vocabulary, empty rows, padding inside a row and a
        cache that does not fit the batch.
        """
        use_cache = use_cache if use_cache is not None else self.config.use_cache
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        mask = padding_mask(input_ids, attention_mask, self.config.pad_token_id)
        check_token_ids("input_ids", input_ids, self.config.vocab_size)
        starts, lengths = spans_from_mask(mask)
        if cache is not None:
            self._check_cache(cache, input_ids.shape[0])

        embeddings = self.embedding_dropout(self.embed_tokens(input_ids))  # (B, T, E)
        initial = None if cache is None else cache.rnn_state
        if bool((lengths == input_ids.shape[1]).all()):
            # No padding: the same computation unpacked, which on CPUs runs the fused (oneDNN) kernel, several
            # times faster under bf16 autocast. Truncated BPTT chunks and batches of equal-length texts take it.
            outputs, state = run_rnn(self.rnn, embeddings, initial)  # (B, T, H)
        else:
            left_padded = bool((starts > 0).any())
            rows = roll_rows(embeddings, starts) if left_padded else embeddings  # real tokens first in every row
            packed = pack_padded_sequence(rows, lengths.cpu(), batch_first=True, enforce_sorted=False)
            packed_outputs, state = run_rnn(self.rnn, packed, initial)
            outputs, _ = pad_packed_sequence(packed_outputs, batch_first=True, total_length=input_ids.shape[1])
            if left_padded:
                outputs = roll_rows(outputs, -starts)  # (B, T, H), zeros back at the padding

        hidden, cell = state if isinstance(state, tuple) else (state, None)
        seen = (cache.seen_tokens if cache is not None else 0) + input_ids.shape[1]
        result = LSTMModelOutput(
            last_hidden_state=outputs,
            cache=LSTMCache(hidden, cell, seen) if use_cache else None,
            hidden_states=(embeddings, outputs) if output_hidden_states else None,
        )
        return result if return_dict else result.to_tuple()

    def _check_cache(self, cache: LSTMCache, batch_size: int) -> None:
        if not isinstance(cache, LSTMCache):
            raise ValueError(f"`cache` must be the `LSTMCache` an earlier call returned, got {type(cache).__name__}.")
        if self.config.bidirectional:
            raise ValueError(
                "A bidirectional model cannot continue from a carried `cache`: its backward direction reads each "
                "text from its end. Pass `cache=None`."
            )
        if cache.batch_size != batch_size:
            raise ValueError(f"`cache` holds the state of {cache.batch_size} rows but `input_ids` has {batch_size}.")


class LSTMPooler(nn.Module):
    """One vector per sequence from the per-position outputs, over the real positions only."""

    def __init__(self, config: LSTMConfig):
        super().__init__()
        self.pooling = config.pooling
        if self.pooling == "attention":  # Yang et al. (2016): u^T tanh(W h + b) scores each position
            self.projection = nn.Linear(config.hidden_size, config.hidden_size)
            self.query = nn.Linear(config.hidden_size, 1, bias=False)

    def forward(self, outputs: torch.Tensor, mask: torch.Tensor, final_hidden: torch.Tensor) -> torch.Tensor:
        """outputs (B, T, H) zero at padding, mask (B, T) bool, final_hidden (B, H) -> (B, H)."""
        if self.pooling == "last":
            return final_hidden
        if self.pooling == "mean":
            return outputs.sum(dim=1) / mask.sum(dim=1, keepdim=True).to(outputs.dtype)
        if self.pooling == "max":
            return outputs.masked_fill(~mask.unsqueeze(-1), torch.finfo(outputs.dtype).min).amax(dim=1)
        scores = self.query(torch.tanh(self.projection(outputs))).squeeze(-1)  # (B, T)
        # The scores' own dtype: under autocast they are bf16 while the outputs may be float32.
        weights = torch.softmax(scores.masked_fill(~mask, torch.finfo(scores.dtype).min), dim=-1)
        return torch.bmm(weights.unsqueeze(1), outputs).squeeze(1)


def sequence_classification_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    config: LSTMConfig,
    num_items_in_batch: torch.Tensor | int | None = None,
) -> torch.Tensor:
    """transformers' `ForSequenceClassificationLoss` (same problem-type inference, same losses), plus
    `num_items_in_batch` for every problem type.

    Without `num_items_in_batch` this is transformers' loss: mean cross-entropy (labels -100 ignored), mean binary
    cross-entropy over every (row, label), or mean squared error. With it (Trainer passes it to models that take
    `**kwargs`, and then no longer divides by the gradient-accumulation steps), the summed loss over
    `num_items_in_batch` items: transformers does that for single-label only, so its regression and multi-label
    losses come out `gradient_accumulation_steps` times too large under accumulation.
    """
    num_labels = config.num_labels
    if config.problem_type is None:
        if num_labels == 1:
            config.problem_type = "regression"
        elif labels.dtype in (torch.long, torch.int):
            config.problem_type = "single_label_classification"
        else:
            config.problem_type = "multi_label_classification"
    check_labels(labels, logits.shape[0], config)
    labels = labels.to(logits.device)
    reduction = "mean" if num_items_in_batch is None else "sum"
    if config.problem_type == "single_label_classification":
        loss = nn.functional.cross_entropy(
            logits.view(-1, num_labels), labels.view(-1), ignore_index=-100, reduction=reduction
        )
    elif config.problem_type == "multi_label_classification":
        loss = nn.functional.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype), reduction=reduction)
    else:
        logits, labels = (logits.squeeze(), labels.squeeze()) if num_labels == 1 else (logits, labels)
        loss = nn.functional.mse_loss(logits, labels.to(logits.dtype), reduction=reduction)
    if num_items_in_batch is not None:
        if torch.is_tensor(num_items_in_batch):
            num_items_in_batch = num_items_in_batch.to(loss.device)
        loss = loss / num_items_in_batch
    return loss


def check_labels(labels: torch.Tensor, batch_size: int, config: LSTMConfig) -> None:
    """Labels that do not fit the head fail here, by name, not inside a loss function."""
    num_labels, problem_type = config.num_labels, config.problem_type
    if problem_type == "single_label_classification":
        if labels.is_floating_point() or labels.numel() != batch_size:
            raise ValueError(
                f"`labels` must be {batch_size} integer class ids (one per row) for "
                f"problem_type='single_label_classification', got {labels.dtype} of shape {tuple(labels.shape)}."
            )
        valid = ((labels >= 0) & (labels < num_labels)) | (labels == -100)
        if not bool(valid.all()):
            raise ValueError(
                f"`labels` contains label id {labels[~valid][0].item()}, outside [0, num_labels={num_labels}). "
                f"Set `num_labels` (or `id2label`) to the dataset's number of classes."
            )
    elif problem_type == "multi_label_classification" or num_labels > 1:
        if tuple(labels.shape) != (batch_size, num_labels):
            raise ValueError(
                f"`labels` must have shape (batch, num_labels) = ({batch_size}, {num_labels}) for "
                f"problem_type={problem_type!r}, got {tuple(labels.shape)}."
            )
    elif labels.numel() != batch_size:
        raise ValueError(
            f"`labels` must hold one value per row ({batch_size}) for regression, got shape {tuple(labels.shape)}."
        )


class LSTMForSequenceClassification(LSTMPreTrainedModel):
    """Text classification / regression: pooled recurrent outputs and a linear layer (`num_labels` outputs)."""

    def __init__(self, config: LSTMConfig):
        super().__init__(config)
        self.model = LSTMModel(config)
        self.pooler = LSTMPooler(config)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> SequenceClassifierOutput | tuple:
        """
        Args:
            input_ids / attention_mask: as for `LSTMModel` (left or right padding).
            labels: `(batch,)` class ids in `[0, num_labels)` (-100 ignored) for single-label classification,
                `(batch, num_labels)` 0/1 floats for multi-label, `(batch,)` or `(batch, num_labels)` floats for
                regression.
            num_items_in_batch (keyword): divides the summed loss instead of taking the mean (Trainer's
                gradient accumulation).

        Returns `logits` `(batch, num_labels)` and the loss of `config.problem_type`.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        mask = padding_mask(input_ids, attention_mask, self.config.pad_token_id)
        outputs = self.model(
            input_ids,
            attention_mask=mask,
            use_cache=True,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        directions = 2 if self.config.bidirectional else 1
        top_layer = outputs.cache.hidden[-directions:]  # (D, B, H / D): final states of both directions
        final_hidden = top_layer.transpose(0, 1).reshape(input_ids.shape[0], -1)  # (B, H)
        pooled = self.dropout(self.pooler(outputs.last_hidden_state, mask, final_hidden))
        logits = self.classifier(pooled)  # (B, num_labels)
        loss = None
        if labels is not None:
            loss = sequence_classification_loss(logits, labels, self.config, kwargs.get("num_items_in_batch"))
        result = SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states)
        return result if return_dict else result.to_tuple()


class LSTMForCausalLM(LSTMPreTrainedModel, GenerationMixin):
    """Next-token language model (char-rnn), usable with `generate()`; the recurrent state is the cache."""

    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}

    def __init__(self, config: LSTMConfig):
        if config.bidirectional:
            raise ValueError(
                "`bidirectional=True` is for classification: a language model must not read the token it predicts. "
                "Set `bidirectional=False` for LSTMForCausalLM."
            )
        super().__init__(config)
        self.model = LSTMModel(config)
        self.dropout = nn.Dropout(config.dropout)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size)
        self.post_init()

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Linear) -> None:
        self.lm_head = value

    def prepare_inputs_for_generation(
        self,
        input_ids: torch.LongTensor,
        cache: LSTMCache | None = None,
        attention_mask: torch.Tensor | None = None,
        **kwargs,
    ) -> dict:
        model_inputs = super().prepare_inputs_for_generation(
            input_ids, cache=cache, attention_mask=attention_mask, **kwargs
        )
        if cache is not None:
            # The state holds the prompt's padding already skipped; every new token is real, even the pad_token_id
            # that generate() appends to finished rows.
            model_inputs["attention_mask"] = torch.ones_like(model_inputs["input_ids"])
        return model_inputs

    # Copied from hf_rnn.translator.generation_lstm_seq2seq.LSTMSeq2SeqGenerationMixin._get_top_k_continuations
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

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        cache: LSTMCache | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs,
    ) -> LSTMCausalLMOutput | tuple:
        """
        Args:
            input_ids / attention_mask / cache / use_cache: as for `LSTMModel`. For truncated BPTT pass the previous
                chunk's `cache` (detached: `out.cache.detach()`) with the next chunk of the same rows.
            labels: `(batch, seq_len)`, usually `input_ids`: shifted inside, position t is scored on token t+1,
                -100 ignored (transformers' `ForCausalLMLoss`).
            shift_labels (keyword): `(batch, seq_len)` targets already aligned with the positions (token t+1 at
                position t, -100 ignored). Truncated BPTT passes these so that a chunk's last position is scored on
                the next chunk's first token; `labels` are then not needed.
            num_items_in_batch (keyword): divides the summed loss instead of taking the mean (gradient accumulation).
            logits_to_keep: compute logits for the last `logits_to_keep` positions only (0: all), as generate asks.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        shift_labels = kwargs.get("shift_labels")
        for name, targets in (("labels", labels), ("shift_labels", shift_labels)):
            if targets is not None:
                # `input_ids` of the wrong shape are named by the model's own check.
                batch_size = (
                    input_ids.shape[0] if isinstance(input_ids, torch.Tensor) and input_ids.dim() == 2 else None
                )
                check_token_ids(name, targets, self.config.vocab_size, allow_ignore=True, batch_size=batch_size)
        outputs = self.model(
            input_ids,
            attention_mask=attention_mask,
            cache=cache,
            use_cache=use_cache,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        hidden = self.dropout(outputs.last_hidden_state)
        keep = slice(-logits_to_keep, None) if isinstance(logits_to_keep, int) else logits_to_keep
        logits = self.lm_head(hidden[:, keep])  # (B, T or logits_to_keep, V)
        loss = None
        if shift_labels is not None:  # transformers' loss flattens it with .view()
            kwargs["shift_labels"] = shift_labels.contiguous()
        if labels is not None or shift_labels is not None:
            loss = self.loss_function(logits=logits, labels=labels, vocab_size=self.config.vocab_size, **kwargs)
        result = LSTMCausalLMOutput(loss=loss, logits=logits, cache=outputs.cache, hidden_states=outputs.hidden_states)
        return result if return_dict else result.to_tuple()


__all__ = [
    "LSTMCache",
    "LSTMCausalLMOutput",
    "LSTMForCausalLM",
    "LSTMForSequenceClassification",
    "LSTMModel",
    "LSTMModelOutput",
    "LSTMPreTrainedModel",
]
