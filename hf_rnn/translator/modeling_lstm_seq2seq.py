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

import contextlib
import gc
import weakref
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import ModelOutput, Seq2SeqLMOutput, Seq2SeqModelOutput
from transformers.utils import logging

from .configuration_lstm_seq2seq import LSTMSeq2SeqConfig
from .generation_lstm_seq2seq import MAX_NEW_TOKENS_OFFSET, MAX_NEW_TOKENS_RATIO, LSTMSeq2SeqGenerationMixin
from .pipeline_translation import CUSTOM_PIPELINES

logger = logging.get_logger(__name__)

RNN_CLASSES = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}
# Each translator's CUDA graphs of its decoding step, kept off the module so copies and state dicts never see them.
STEP_GRAPHS: "weakref.WeakKeyDictionary[nn.Module, LSTMSeq2SeqStepGraphs]" = weakref.WeakKeyDictionary()
TRAINING_GRAPHS: "weakref.WeakKeyDictionary[nn.Module, LSTMSeq2SeqTrainingGraphs]" = weakref.WeakKeyDictionary()


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


def check_rows_per_source(name: str, ids: torch.Tensor, sources: int) -> int:
    """How many consecutive rows of `ids` (rows, length) read each of `sources` encoded sources: 1, or k when every
    source has k rows (generate()'s beams). Raises a ValueError naming `name` when the rows are not a multiple."""
    if not isinstance(ids, torch.Tensor) or ids.dim() != 2:
        return 1  # check_token_ids names the shape
    if ids.shape[0] % sources or not ids.shape[0]:
        raise ValueError(f"`{name}` has {ids.shape[0]} rows but the batch has {sources}.")
    return ids.shape[0] // sources


def shift_tokens_right(labels: torch.Tensor, pad_token_id: int, decoder_start_token_id: int) -> torch.Tensor:
    """Teacher forcing: the decoder reads <start> y_1 ... y_{n-1} and predicts y_1 ... y_n."""
    shifted = labels.new_full(labels.shape, pad_token_id)
    shifted[:, 1:] = labels[:, :-1]
    shifted[:, 0] = decoder_start_token_id
    return shifted.masked_fill(shifted == -100, pad_token_id)


class TokenCrossEntropy(torch.autograd.Function):
    """Summed cross-entropy of `logits` (N, V) against `labels` (N,), whose -100 entries are ignored, with
    `label_smoothing` ε the target distribution (1 - ε)·one_hot + ε/V (Szegedy et al., 2016, "Rethinking the
    Inception Architecture", section 7).

    The same value and gradient as `nn.functional.cross_entropy(..., reduction="sum", label_smoothing=ε)` (and as
    Trainer's `LabelSmoother`, which reads the same distribution), computed in float32 (or
    float64) over blocks of rows: neither pass makes a full-size float32 copy of low-precision logits, their
    log-softmax or a zero-filled gradient, and the gradient softmax - target is written in the logits' own dtype.
    For bfloat16 logits under autocast, those copies took 44 ms of a 265 ms training step at the peer shape
    (benchmarks/README.md).
    """

    BLOCK_ELEMENTS = 1 << 21  # logits per block of rows: at most 8 MiB of float32 temporaries

    @staticmethod
    def forward(ctx, logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
        dtype = torch.promote_types(logits.dtype, torch.float32)
        rows = max(1, TokenCrossEntropy.BLOCK_ELEMENTS // logits.shape[-1])
        counted = labels != -100
        targets = labels.clamp(min=0).unsqueeze(1)  # (N, 1); ignored rows read column 0 and are masked out
        with torch.autocast(logits.device.type, enabled=False):
            log_normalizers, mean_logits = [], []
            for block in logits.split(rows):
                block = block.to(dtype)
                log_normalizers.append(block.logsumexp(-1))
                if label_smoothing:
                    mean_logits.append(block.mean(-1))
            log_normalizer = torch.cat(log_normalizers)  # (N,)
            # -log p(target) = log_normalizer - target logit; the uniform part's mean -log p is log_normalizer - mean.
            target_logits = logits.gather(1, targets).squeeze(1).to(dtype)
            if label_smoothing:
                target_logits = (1 - label_smoothing) * target_logits + label_smoothing * torch.cat(mean_logits)
            total = ((log_normalizer - target_logits) * counted).sum()
        ctx.save_for_backward(logits, targets, counted, log_normalizer)
        ctx.label_smoothing = label_smoothing
        return total

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_total: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        logits, targets, counted, log_normalizer = ctx.saved_tensors
        rows = max(1, TokenCrossEntropy.BLOCK_ELEMENTS // logits.shape[-1])
        weight = counted.to(log_normalizer.dtype) * grad_total  # (N,)
        grad = torch.empty_like(logits)
        uniform = ctx.label_smoothing / logits.shape[-1]
        with torch.autocast(logits.device.type, enabled=False):
            for start in range(0, logits.shape[0], rows):
                block = slice(start, start + rows)
                softmax = logits[block].to(log_normalizer.dtype, copy=True).sub_(log_normalizer[block, None]).exp_()
                if uniform:
                    softmax.sub_(uniform)
                softmax.scatter_add_(
                    1, targets[block], softmax.new_full(targets[block].shape, ctx.label_smoothing - 1)
                )
                grad[block] = softmax.mul_(weight[block, None])
        return grad, None, None


def token_cross_entropy(
    logits: torch.Tensor,
    labels: torch.Tensor,
    num_items_in_batch: int | torch.Tensor | None = None,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Cross-entropy of `logits` (batch, len, vocab) against `labels` (batch, len) over the labels that are not -100.

    Averaged over those tokens; with `num_items_in_batch` (the label tokens of the whole optimizer step, which
    Trainer counts over every gradient-accumulation micro-batch and every process) summed and divided by it
    instead, so that a step's loss and gradients do not depend on how its batch was split. `label_smoothing` in
    [0, 1] mixes the uniform distribution into the target as `nn.functional.cross_entropy` does. Computed in float32
    whatever the logits' dtype (see `TokenCrossEntropy`).

    Raises:
        ValueError: `label_smoothing` outside [0, 1].
    """
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"`label_smoothing` must be in [0, 1], got {label_smoothing}.")
    logits, labels = logits.reshape(-1, logits.shape[-1]), labels.reshape(-1).to(logits.device)
    total = TokenCrossEntropy.apply(logits, labels, float(label_smoothing))
    if num_items_in_batch is None:
        return total / (labels != -100).sum()
    if torch.is_tensor(num_items_in_batch):
        num_items_in_batch = num_items_in_batch.to(total.device)
    return total / num_items_in_batch


def lengths_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Packed sequences need right padding and no empty rows; say so plainly when that is not the case."""
    lengths = attention_mask.sum(dim=1)
    if torch.compiler.is_exporting():  # a graph cannot raise; the exported model's caller checks its inputs
        return lengths
    if attention_mask.is_cuda and torch.cuda.is_current_stream_capturing():  # nor can a CUDA graph read values back
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
        graph_session: int | None = None,
    ):
        self.hidden = hidden  # (num_layers, batch, hidden_size): nn.RNN's native layout
        self.cell = cell  # same, LSTM only
        self.input_feed = input_feed  # (batch, hidden_size), with input feeding
        self.attention_keys = attention_keys  # (sources, src_len, hidden_size), concat attention
        self.seen_tokens = seen_tokens
        # Which encoder memory a CUDA graph of the decoding step holds for this state (`LSTMSeq2SeqStepGraphs`).
        self.graph_session = graph_session

    def select(self, index: torch.LongTensor) -> "LSTMSeq2SeqCache":
        """The state of rows `index` (batch positions, repeats allowed): beam search's reordering, or dropping rows.

        With k rows per source (the attention keys one per source, see `LSTMSeq2SeqDecoder.forward`), `index` keeps
        a source's rows together: new rows i*k .. i*k+k-1 all come from one source, whose keys they keep."""

        def rows(tensor: torch.Tensor | None, dim: int = 0) -> torch.Tensor | None:
            return None if tensor is None else tensor.index_select(dim, index.to(tensor.device))

        keys = self.attention_keys
        if keys is not None:
            rows_per_source = self.hidden.shape[1] // keys.shape[0]
            keys = keys.index_select(0, (index[::rows_per_source] // rows_per_source).to(keys.device))
        return LSTMSeq2SeqCache(
            rows(self.hidden, 1),
            rows(self.cell, 1),
            rows(self.input_feed),
            keys,
            self.seen_tokens,
            self.graph_session,  # a beam's rows read the same source: the graph's memory stays valid
        )

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.seen_tokens

    @property
    def rnn_state(self) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        return self.hidden if self.cell is None else (self.hidden, self.cell)


def capture_cuda_graph(function, device: torch.device, pool=None) -> tuple["torch.cuda.CUDAGraph", object]:
    """Capture `function()` (no arguments: it reads and writes static tensors) as a CUDA graph in memory pool `pool`;
    returns the graph and what the captured call returned, whose tensors each replay rewrites.

    Warmed up twice on a side stream first, as `torch.cuda.graph` asks; captured with `garbage_collection_paused`.
    """
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for _ in range(2):
            function()
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with garbage_collection_paused(), torch.cuda.graph(graph, pool=pool):
        outputs = function()
    return graph, outputs


def parameter_addresses(module: nn.Module) -> tuple[int, ...]:
    """Where `module`'s parameters live: a captured graph reads these addresses, so it is stale once they change
    (`to()`, a dtype change, parameters replaced)."""
    return tuple(parameter.data_ptr() for parameter in module.parameters())


@contextlib.contextmanager
def garbage_collection_paused():
    """No garbage collection while CUDA graphs are captured, and a cheap one where torch.cuda.graph asks for it.

    Freeing another CUDA graph during a capture (a dropped model's, found by the collector) is an operation a capture
    forbids; it broke captures in a test session on an H200. torch.cuda.graph collects once before each capture:
    the objects alive before are frozen (`gc.freeze`), so that collection does not scan the whole heap.
    """
    collecting = gc.isenabled()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        gc.unfreeze()
        if collecting:
            gc.enable()


class LSTMSeq2SeqStepGraphs:
    """CUDA graphs of one decoding step (decoder step and softmax layer), replayed by `generate()` on a GPU.

    One step of a small recurrent decoder is a few dozen tiny kernels: on a GPU its time goes into launching them
    (1.8 ms a step for a batch of 128 at the Multi30k shape), not into arithmetic. A captured graph launches them
    all at once (PyTorch's `torch.cuda.graph`; "CUDA Graphs", NVIDIA CUDA Programming Guide). One graph per
    (batch, source length, dtype, state layout) is captured on its first use and replayed after; it runs the same
    kernels on the same shapes as the eager step, so the tokens are those of eager decoding.

    The graph reads the step's token and recurrent state from static tensors and writes the new state back into
    them, so the state a replay returns is those tensors: a greedy step copies in only its token, a beam search step
    also the reordered state. That state is valid until the next replay, which is all generate() needs (it reads the
    logits and the state of a step before the next one); generate() does not use graphs when it returns its cache.
    The encoder memory is copied in once per generate() call: a state made by a replay carries the graph's
    `graph_session`, and one without it (a new call, another batch) loads its memory first. Graphs are dropped when
    the model's parameters move (`to()`, a dtype change), and when more than `max_graphs` have been captured.

    `capture=False` runs the step eagerly on the static tensors instead: the same bookkeeping, on any device (tests).
    """

    max_graphs = 32

    def __init__(self, capture: bool = True):
        self.capture = capture
        self.graphs: dict[tuple, _StepGraph] = {}
        self.pool = None  # one memory pool shared by the graphs (they never run concurrently)
        self.parameters_at: tuple[int, ...] | None = None
        self.sessions = 0

    def check_parameters(self, model: nn.Module) -> None:
        """Drop the graphs if the model's parameters moved since they were captured (called once per generate())."""
        parameters_at = parameter_addresses(model)
        if parameters_at != self.parameters_at:
            self.graphs.clear()
            self.pool, self.parameters_at = None, parameters_at

    def __call__(
        self,
        model: "LSTMSeq2SeqForConditionalGeneration",
        input_ids: torch.LongTensor,
        encoder_outputs: LSTMSeq2SeqEncoderOutput,
        attention_mask: torch.Tensor,
        cache: LSTMSeq2SeqCache,
    ) -> tuple[torch.Tensor, LSTMSeq2SeqCache]:
        """input_ids (B, 1) the next target tokens after `cache` -> logits (B, 1, V) and the state after them."""
        memory = encoder_outputs.last_hidden_state
        key = (
            tuple(memory.shape),
            tuple(attention_mask.shape),
            memory.dtype,
            cache.cell is not None,
            cache.input_feed is not None,
            cache.attention_keys is not None,
        )
        graph = self.graphs.get(key)
        if graph is None:
            if len(self.graphs) >= self.max_graphs:
                self.graphs.clear()
                self.pool = None
            graph = self.graphs[key] = _StepGraph(self, model, input_ids, memory, attention_mask, cache)
        elif cache.graph_session != graph.session:
            graph.load_memory(memory, attention_mask, cache.attention_keys)
        if graph.session is None or cache.graph_session != graph.session:
            self.sessions += 1
            graph.session = self.sessions
        return graph.run(input_ids, cache)


class _StepGraph:
    """The static tensors and the captured graph of `LSTMSeq2SeqStepGraphs` for one key."""

    def __init__(
        self,
        owner: LSTMSeq2SeqStepGraphs,
        model: "LSTMSeq2SeqForConditionalGeneration",
        input_ids: torch.LongTensor,
        memory: torch.Tensor,
        attention_mask: torch.Tensor,
        cache: LSTMSeq2SeqCache,
    ):
        self.session: int | None = None
        # Static tensors outlive this call: made outside inference mode, so any later call may copy into them.
        with torch.inference_mode(False), torch.no_grad():

            def static(tensor: torch.Tensor | None) -> torch.Tensor | None:
                return None if tensor is None else tensor.clone()

            self.input_ids, self.memory, self.mask = static(input_ids), static(memory), static(attention_mask)
            self.hidden, self.cell, self.feed = static(cache.hidden), static(cache.cell), static(cache.input_feed)
            self.keys = static(cache.attention_keys)
            decoder, lm_head = model.model.decoder, model.lm_head
            # The closure holds the tensors, not `self`: no reference cycle, so a dropped graph is freed at once
            # instead of by a later garbage collection, which could fall inside another graph's capture.
            inputs = (self.input_ids, self.memory, self.mask, self.hidden, self.cell, self.feed, self.keys)

            def step() -> torch.Tensor:
                input_ids, memory, mask, hidden, cell, feed, keys = inputs
                state = LSTMSeq2SeqCache(hidden, cell, feed, keys)
                memory = LSTMSeq2SeqEncoderOutput(last_hidden_state=memory)
                vectors, new_state, *_ = decoder(input_ids, memory, mask, cache=state)
                for static, new in ((hidden, new_state.hidden), (cell, new_state.cell), (feed, new_state.input_feed)):
                    if static is not None:
                        static.copy_(new)
                return lm_head(vectors)

            self.step, self.graph = step, None
            if owner.capture:
                # The warm-up steps advance the static state: the caller's is copied in again before each replay.
                self.graph, self.logits = capture_cuda_graph(step, memory.device, owner.pool)
                owner.pool = self.graph.pool()

    def load_memory(self, memory: torch.Tensor, attention_mask: torch.Tensor, keys: torch.Tensor | None) -> None:
        self.memory.copy_(memory)
        self.mask.copy_(attention_mask)
        if keys is not None:
            self.keys.copy_(keys)

    def run(self, input_ids: torch.LongTensor, cache: LSTMSeq2SeqCache) -> tuple[torch.Tensor, LSTMSeq2SeqCache]:
        self.input_ids.copy_(input_ids)
        for static, given in ((self.hidden, cache.hidden), (self.cell, cache.cell), (self.feed, cache.input_feed)):
            if static is not None and given is not static:  # a greedy step's state already is the static one
                static.copy_(given)
        if self.graph is not None:
            self.graph.replay()
            logits = self.logits  # rewritten by the next replay: generate() copies a step's logits at once
        else:
            logits = self.step()
        new_cache = LSTMSeq2SeqCache(
            self.hidden, self.cell, self.feed, cache.attention_keys, cache.seen_tokens + 1, self.session
        )
        return logits, new_cache


class LSTMSeq2SeqTrainingGraphs:
    """CUDA graphs of the decoder's teacher-forced pass, forward and backward, for training on a GPU.

    The decoder (bridge, target embeddings, recurrent layers, attention over the source, attentional vectors) is
    where a training step launches most of its kernels: with input feeding it is a loop over the target, a dozen
    small kernels per token each way. `torch.cuda.make_graphed_callables` captures its forward and backward passes
    once per shape and replays them; the encoder (one packed cuDNN call), the softmax layer, the loss and the
    optimizer stay eager around it, and autograd joins the two.

    Shapes are made static by padding: the target to a multiple of `bucket` tokens with padding tokens, whose outputs
    are cut off again (a causal decoder's earlier outputs do not depend on them), the source memory with zeros that
    the attention mask hides. One graph pair per (batch, padded source and target length, dtype, autocast) is
    captured on first use; after `max_graphs` shapes, further shapes run eagerly. The dropout masks come from the
    same generator as eager training, but replays draw them in another order, so a graphed run is not the eager
    run's bit for bit.

    `capture=False` pads the same way and runs the pass eagerly: the bucketing on any device (tests).
    """

    bucket = 8
    max_graphs = 64

    def __init__(self, capture: bool = True):
        self.capture = capture
        self.passes: dict[tuple, nn.Module] = {}
        self.parameters_at: tuple[int, ...] | None = None

    def __call__(
        self,
        decoder: "LSTMSeq2SeqDecoder",
        input_ids: torch.LongTensor,
        encoder_outputs: LSTMSeq2SeqEncoderOutput,
        attention_mask: torch.Tensor,
    ) -> torch.Tensor:
        """input_ids (B, T) decoder inputs, the encoder's outputs and mask (B, S) -> attentional vectors (B, T, H)."""
        check_token_ids(
            "decoder_input_ids", input_ids, decoder.config.decoder_vocab_size, batch_size=attention_mask.shape[0]
        )
        parameters_at = parameter_addresses(decoder)
        if parameters_at != self.parameters_at:
            self.passes.clear()
            self.parameters_at = parameters_at
        memory, length = encoder_outputs.last_hidden_state, input_ids.shape[1]
        pad_target = -length % self.bucket
        pad_source = -memory.shape[1] % self.bucket
        finals = tuple(
            state
            for state in (encoder_outputs.final_hidden_state, encoder_outputs.final_cell_state)
            if state is not None and decoder.config.decoder_init == "bridge"
        )
        arguments = (
            nn.functional.pad(input_ids, (0, pad_target), value=decoder.config.pad_token_id),
            nn.functional.pad(attention_mask, (0, pad_source)),
            nn.functional.pad(memory, (0, 0, 0, pad_source)),
            *finals,
        )
        device = memory.device.type
        autocast = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None
        key = (tuple(arguments[0].shape), tuple(arguments[2].shape), memory.dtype, autocast, len(finals))
        decoder_pass = self.passes.get(key)
        if decoder_pass is None:
            decoder_pass = _DecoderPass(decoder)
            if self.capture and len(self.passes) < self.max_graphs:
                try:  # replaying under autocast needs autocast's weight cache off (make_graphed_callables)
                    with torch.autocast(device, dtype=autocast, enabled=autocast is not None, cache_enabled=False):
                        decoder_pass = _graphed(decoder_pass, arguments)
                except RuntimeError as error:  # the same computation runs eagerly: slower, never different
                    logger.warning(f"Training continues without CUDA graphs: capturing the decoder failed ({error}).")
                    self.capture = False
                self.passes[key] = decoder_pass
            elif not self.capture:
                self.passes[key] = decoder_pass
        with torch.autocast(device, dtype=autocast, enabled=autocast is not None, cache_enabled=False):
            vectors = decoder_pass(*arguments)
        return vectors[:, :length]


class _DecoderPass(nn.Module):
    """The decoder's teacher-forced pass as a function of tensors only, as `make_graphed_callables` takes it."""

    def __init__(self, decoder: "LSTMSeq2SeqDecoder"):
        super().__init__()
        self.decoder = decoder

    def forward(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor,
        memory: torch.Tensor,
        final_hidden_state: torch.Tensor | None = None,
        final_cell_state: torch.Tensor | None = None,
    ) -> torch.Tensor:
        encoder_outputs = LSTMSeq2SeqEncoderOutput(
            last_hidden_state=memory, final_hidden_state=final_hidden_state, final_cell_state=final_cell_state
        )
        return self.decoder(input_ids, encoder_outputs, attention_mask)[0]


def _graphed(decoder_pass: _DecoderPass, arguments: tuple[torch.Tensor, ...]) -> nn.Module:
    """`make_graphed_callables` (forward and backward graphs) with `garbage_collection_paused`."""
    sample = tuple(argument.detach().clone().requires_grad_(argument.requires_grad) for argument in arguments)
    with garbage_collection_paused():
        return torch.cuda.make_graphed_callables(decoder_pass, sample, allow_unused_input=True)


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


def recurrent_cell(
    cell_type: str,
    input_gates: torch.Tensor,
    hidden_gates: torch.Tensor,
    hidden: torch.Tensor,
    cell: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One step of an LSTM, GRU or tanh RNN cell from its gate pre-activations, as `torch.lstm_cell`, `gru_cell` and
    `rnn_tanh_cell` compute it: input_gates = x W_ih^T + b_ih and hidden_gates = h W_hh^T + b_hh (B, gates * H),
    hidden and cell (B, H) -> the new hidden and cell (cell None for GRU/RNN)."""
    if cell_type == "lstm":
        i, f, g, o = (input_gates + hidden_gates).chunk(4, dim=-1)
        cell = torch.sigmoid(f) * cell + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(cell), cell
    if cell_type == "gru":
        (r_x, z_x, n_x), (r_h, z_h, n_h) = input_gates.chunk(3, dim=-1), hidden_gates.chunk(3, dim=-1)
        r, z = torch.sigmoid(r_x + r_h), torch.sigmoid(z_x + z_h)
        n = torch.tanh(n_x + r * n_h)
        return (1 - z) * n + z * hidden, None
    return torch.tanh(input_gates + hidden_gates), None


def is_bare_module(module: nn.Module, kind: type) -> bool:
    """Whether `module` is exactly a `kind` with no forward hooks, so reading its weights is what calling it does."""
    hooks = (module._forward_hooks, module._forward_pre_hooks, nn.modules.module._global_forward_hooks)
    return type(module) is kind and not any(hooks) and not nn.modules.module._global_forward_pre_hooks


class TimeLoopLinear(torch.autograd.Function):
    """`x @ weight.T + bias` at one step of a loop over time, whose weight and bias gradients are one matrix product
    over all the loop's steps instead of a small product and an accumulation per step.

    Fused RNN kernels (cuDNN, oneDNN) compute weight gradients this way; a Python loop over time (input feeding)
    otherwise pays for T products of (gates, B) x (B, in) and T - 1 additions of a weight-sized gradient. Each
    step's backward keeps its input and output gradient in `steps` and returns the input's gradient only. The
    first step's backward comes last, since every later step's gradient flows through it (its output feeds the
    recurrence), so it multiplies everything kept at once and returns the weight and bias gradients.
    `x` is cast to the weight's dtype (the caller casts the weight once per loop, as autocast would per step).
    """

    @staticmethod
    def forward(ctx, x, weight, bias, steps: list, first: bool):
        ctx.x_dtype, ctx.steps, ctx.first = x.dtype, steps, first
        x = x.to(weight.dtype)
        ctx.save_for_backward(x, weight)
        with torch.autocast(x.device.type, enabled=False):
            return x @ weight.t() if bias is None else torch.addmm(bias, x, weight.t())

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grad_x = (grad @ weight).to(ctx.x_dtype) if ctx.needs_input_grad[0] else None
        if not (ctx.needs_input_grad[1] or ctx.needs_input_grad[2]):
            return grad_x, None, None, None, None
        ctx.steps.append((x, grad))
        if not ctx.first:
            return grad_x, None, None, None, None
        inputs, grads = (torch.cat(kept) for kept in zip(*ctx.steps))
        ctx.steps.clear()
        grad_weight = grads.t() @ inputs if ctx.needs_input_grad[1] else None
        grad_bias = grads.sum(0) if ctx.needs_input_grad[2] else None
        return grad_x, grad_weight, grad_bias, None, None


class TimeLoopMemoryProduct(torch.autograd.Function):
    """`bmm(a, memory)`, or `bmm(a, memory.transpose(1, 2))` when `transposed`, at one step of a loop over time that
    reads the same memory (B, S, H) at every step (attention scores and contexts): memory's gradient is one batched
    product over all steps instead of one per step and T - 1 accumulations of a (B, S, H) gradient. Kept steps and
    the first step's role as in `TimeLoopLinear`; `a` is cast to the memory's dtype."""

    @staticmethod
    def forward(ctx, a, memory, transposed: bool, steps: list, first: bool):
        ctx.a_dtype, ctx.transposed, ctx.steps, ctx.first = a.dtype, transposed, steps, first
        a = a.to(memory.dtype)
        ctx.save_for_backward(a, memory)
        with torch.autocast(a.device.type, enabled=False):
            return torch.bmm(a, memory.transpose(1, 2) if transposed else memory)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        a, memory = ctx.saved_tensors
        grad = grad.to(memory.dtype)
        grad_a = None
        if ctx.needs_input_grad[0]:
            grad_a = torch.bmm(grad, memory if ctx.transposed else memory.transpose(1, 2)).to(ctx.a_dtype)
        if not ctx.needs_input_grad[1]:
            return grad_a, None, None, None, None
        ctx.steps.append((a, grad))
        if not ctx.first:
            return grad_a, None, None, None, None
        reads, grads = (torch.cat(kept, dim=1) for kept in zip(*ctx.steps))  # (B, all steps' rows, ...)
        ctx.steps.clear()
        if ctx.transposed:
            return grad_a, torch.bmm(grads.transpose(1, 2), reads), None, None, None
        return grad_a, torch.bmm(reads.transpose(1, 2), grads), None, None, None


class TimeLoopAttention:
    """The attention's projections and the encoder memory for one training loop over time, cast once to the dtype of
    the loop's products, with the steps `TimeLoopLinear` and `TimeLoopMemoryProduct` keep for their gradients."""

    def __init__(self, attention: "LSTMSeq2SeqAttention", memory: torch.Tensor, dtype: torch.dtype):
        self.memory = memory.to(dtype)
        query_proj = getattr(attention, "query_proj", None)
        self.query_weight = None if query_proj is None else query_proj.weight.to(dtype)
        self.output_weight = attention.output_proj.weight.to(dtype)
        self.kept = {name: [] for name in ("query", "scores", "context", "output")}


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
        return recurrent_cell(self.cell_type, input_gates, hidden_gates, hidden, cell)

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
        for step in zip(input_gates.unbind(1), mask.unbind(1)):  # unbind: one backward node, not one per step
            state, output = advance(state, step)
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
        loop: TimeLoopAttention | None = None,
        first_step: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """query (B, T, H) decoder outputs, memory (B, S, H) encoder outputs, memory_mask (B, S) bool (True for real
        tokens), keys (B, S, H) from `project_keys` -> attentional vectors (B, T, H) and weights (B, T, S).

        `loop` (one step of a training loop over time; `first_step` for its first): the same arithmetic with the
        projections' and the memory's gradients deferred to one product per loop."""
        if loop is not None:
            return self._loop_step(query, memory_mask, keys, loop, first_step)
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

    def _loop_step(
        self, query: torch.Tensor, memory_mask: torch.Tensor, keys: torch.Tensor | None, loop: TimeLoopAttention, first
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`forward`'s arithmetic through `TimeLoopLinear` and `TimeLoopMemoryProduct`."""
        kept = loop.kept

        def project(values: torch.Tensor, weight: torch.Tensor, name: str) -> torch.Tensor:
            rows = values.reshape(-1, values.shape[-1])
            return TimeLoopLinear.apply(rows, weight, None, kept[name], first).view(*values.shape[:-1], -1)

        if self.attention_type == "concat":
            energy = torch.tanh(project(query, loop.query_weight, "query").unsqueeze(2) + keys.unsqueeze(1))
            scores = self.energy(energy).squeeze(-1)  # (B, T, S)
        else:
            queries = query if self.attention_type == "dot" else project(query, loop.query_weight, "query")
            scores = TimeLoopMemoryProduct.apply(queries, loop.memory, True, kept["scores"], first)  # (B, T, S)
        scores = scores.masked_fill(~memory_mask.unsqueeze(1), torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores, dim=-1)
        context = TimeLoopMemoryProduct.apply(weights, loop.memory, False, kept["context"], first)  # (B, T, H)
        combined = torch.cat([context, query.to(context.dtype)], dim=-1)  # (B, T, 2H)
        return torch.tanh(project(combined, loop.output_weight, "output")), weights


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
            packed_outputs, state = run_rnn(self.rnn, packed)
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

    def init_cache(self, encoder_outputs: LSTMSeq2SeqEncoderOutput, rows_per_source: int = 1) -> LSTMSeq2SeqCache:
        """State before the first target token: bridged encoder states (or zeros), empty input feed; the same for
        each of `rows_per_source` consecutive rows (beams) of a source. The attention keys stay one per source."""
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
        if rows_per_source > 1:
            hidden = hidden.repeat_interleave(rows_per_source, dim=1)  # (dec_layers, B * rows_per_source, H)
            cell = None if cell is None else cell.repeat_interleave(rows_per_source, dim=1)
        rows = batch * rows_per_source
        input_feed = memory.new_zeros(rows, config.hidden_size) if config.input_feeding else None
        keys = self.attention.project_keys(memory) if self.attention is not None else None  # (B, S, H)
        return LSTMSeq2SeqCache(hidden, cell, input_feed, keys)

    def forward(
        self,
        input_ids: torch.LongTensor,
        encoder_outputs: LSTMSeq2SeqEncoderOutput,
        encoder_attention_mask: torch.Tensor,
        cache: LSTMSeq2SeqCache | None = None,
    ) -> tuple[torch.Tensor, LSTMSeq2SeqCache, torch.Tensor | None, torch.Tensor, torch.Tensor]:
        """input_ids (R, T) target ids, read after the state in `cache` (from the encoder when None) ->
        attentional vectors (R, T, H), the state after the last token, attention weights (R, T, S) or None,
        embeddings (R, T, E) and RNN outputs (R, T, H).

        R is the number of sources B in `encoder_outputs` (B, S, H), or a multiple of it: k consecutive rows per
        source, as generate()'s beams read one encoding of their source (see `_attend`)."""
        memory = encoder_outputs.last_hidden_state  # (B, S, H)
        rows_per_source = check_rows_per_source("decoder_input_ids", input_ids, memory.shape[0])
        check_token_ids("decoder_input_ids", input_ids, self.config.decoder_vocab_size)
        if cache is None:
            cache = self.init_cache(encoder_outputs, rows_per_source)
        memory_mask = encoder_attention_mask.bool()  # (B, S)
        embeddings = self.embedding_dropout(self.embed_tokens(input_ids))  # (B, T, E)

        # Input feeding forces a loop over time. One step at a time (generate()) takes the loop too: the fused
        # nn.LSTM call makes oneDNN build and cache a primitive for every batch size it sees, and finished sentences
        # leaving the batch change its size every few steps (about 70 MiB of beam-5 decoding's peak memory).
        if self.config.input_feeding or input_ids.shape[1] == 1:
            hidden, cell, feed = list(cache.hidden.unbind(0)), cache.cell, cache.input_feed  # layers x (B, H)
            cell = None if cell is None else list(cell.unbind(0))
            vector_steps, weight_steps, rnn_steps = [], [], []
            loop_weights, attention_loop = self._time_loop_weights(), self._time_loop_attention(memory)
            # unbind: one backward node for all steps, where indexing step t adds a (B, T, E) gradient per step
            for step, embedding in enumerate(embeddings.unbind(1)):  # (B, E)
                step_input = embedding if feed is None else torch.cat([embedding, feed], dim=-1)
                rnn_output = self._cell_step(step_input, hidden, cell, loop_weights, step == 0)  # (B, H)
                vector, weights = self._attend(
                    rnn_output.unsqueeze(1), memory, memory_mask, cache.attention_keys, attention_loop, step == 0
                )
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
            rnn_outputs, state = run_rnn(self.rnn, embeddings, cache.rnn_state)  # (B, T, H), (layers, B, H)
            vectors, attention = self._attend(rnn_outputs, memory, memory_mask, cache.attention_keys)  # (B, T, H)

        hidden, cell = state if isinstance(state, tuple) else (state, None)
        new_cache = LSTMSeq2SeqCache(hidden, cell, feed, cache.attention_keys, cache.seen_tokens + input_ids.shape[1])
        return vectors, new_cache, attention, embeddings, rnn_outputs

    def _defers_loop_gradients(self, module: nn.Module) -> bool:
        """Whether a loop over time defers `module`'s gradients (`TimeLoopLinear`): when it trains on a CPU (measured
        there), not for a quantized RNN, without anything to differentiate, or while torch.compile traces the loop
        (the kept steps are Python state outside its graph)."""
        if (
            not torch.is_grad_enabled()
            or torch.compiler.is_compiling()
            or isinstance(self.rnn, LSTMSeq2SeqUnrolledRNN)
        ):
            return False  # generate()'s steps return here
        parameters = list(module.parameters())
        return any(parameter.requires_grad for parameter in parameters) and parameters[0].device.type == "cpu"

    @staticmethod
    def _loop_dtype(parameter: torch.Tensor) -> torch.dtype:
        """The dtype of a training loop's products: autocast's when it is on (the casts are made once per loop)."""
        return torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else parameter.dtype

    def _time_loop_weights(self) -> list[tuple[torch.Tensor, ...]] | None:
        """Per layer: (weight_ih, weight_hh, bias_ih, bias_hh) in the dtype of the loop's products and two empty lists
        for `TimeLoopLinear`'s kept steps, when the loop defers the cell's gradients; None otherwise (torch's cell
        functions)."""
        if not self._defers_loop_gradients(self.rnn):
            return None
        dtype, names = self._loop_dtype(self.rnn.weight_ih_l0), ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        return [
            (*(getattr(self.rnn, f"{name}_l{layer}").to(dtype) for name in names), [], [])
            for layer in range(self.config.num_decoder_layers)
        ]

    def _time_loop_attention(self, memory: torch.Tensor) -> TimeLoopAttention | None:
        """The attention's state for a loop that defers its gradients; None without attention, when activation
        checkpointing recomputes the attention layer (its recomputed steps would be kept twice), or when a
        projection is not a bare `nn.Linear` (an adapter that replaced it, or forward hooks, must run)."""
        attention = self.attention
        if attention is None or attention.gradient_checkpointing or not self._defers_loop_gradients(attention):
            return None
        projections = [getattr(attention, name, None) for name in ("query_proj", "output_proj")]
        if any(module is not None and not is_bare_module(module, nn.Linear) for module in projections):
            return None
        return TimeLoopAttention(attention, memory, self._loop_dtype(attention.output_proj.weight))

    def _cell_step(
        self,
        step_input: torch.Tensor,
        hidden: list[torch.Tensor],
        cell: list[torch.Tensor] | None,
        loop_weights: list[tuple[torch.Tensor, ...]] | None = None,
        first_step: bool = False,
    ) -> torch.Tensor:
        """One time step (B, E + H) through every layer, updating `hidden`/`cell` (one (B, H) per layer) in place;
        returns the top layer's output (B, H). With `loop_weights` (from `_time_loop_weights`; `first_step` for the
        loop's first) the cell's products defer their weight gradients to one product per loop.

        Input feeding forces a loop over time; calling `nn.LSTM` once per step costs about
        1.5x the forward+backward time of torch's cell functions on the very same weights.
        """
        rnn, layers = self.rnn, self.config.num_decoder_layers
        for layer in range(layers):
            state = None if cell is None else cell[layer]
            if isinstance(rnn, LSTMSeq2SeqUnrolledRNN):  # quantized: the cell's products go through nn.Linear
                hidden[layer], state = rnn.step(step_input, hidden[layer], state, layer)
            elif loop_weights is not None:
                weight_ih, weight_hh, bias_ih, bias_hh, input_steps, hidden_steps = loop_weights[layer]
                input_gates = TimeLoopLinear.apply(step_input, weight_ih, bias_ih, input_steps, first_step)
                hidden_gates = TimeLoopLinear.apply(hidden[layer], weight_hh, bias_hh, hidden_steps, first_step)
                hidden[layer], state = recurrent_cell(
                    self.config.cell_type, input_gates, hidden_gates, hidden[layer], state
                )
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
        self,
        rnn_output: torch.Tensor,
        memory: torch.Tensor,
        memory_mask: torch.Tensor,
        keys: torch.Tensor | None,
        loop: TimeLoopAttention | None = None,
        first_step: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(R, T, H) decoder outputs for R = k x B rows, k consecutive ones per source of memory (B, S, H) ->
        attentional vectors (R, T, H) after dropout, weights (R, T, S) or None. `loop`, `first_step`: see
        `LSTMSeq2SeqAttention.forward`.

        A source's k rows attend as one row of k x T queries: the memory is read once per source, not copied k
        times (beam search's beams)."""
        if self.attention is None:
            return self.dropout(rnn_output), None
        rows, steps = rnn_output.shape[:2]
        queries = rnn_output.reshape(memory.shape[0], -1, rnn_output.shape[-1])  # (B, k x T, H)
        vector, weights = self.attention(queries, memory, memory_mask, keys, loop, first_step)
        return self.dropout(vector.reshape(rows, steps, -1)), weights.reshape(rows, steps, -1)


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
    cuda_graph_training = False  # see `set_cuda_graph_training`

    def set_cuda_graph_training(self, enable: bool = True) -> None:
        """Train the decoder through CUDA graphs on a GPU (`LSTMSeq2SeqTrainingGraphs`): the same computation with
        far fewer kernel launches, which bound a small recurrent model's training speed there. No effect on a CPU,
        in eval mode, without gradients or with activation checkpointing. train.py turns it on with `cuda_graphs`."""
        for module in self.modules():
            if isinstance(module, LSTMSeq2SeqPreTrainedModel):
                module.cuda_graph_training = enable

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

    def _training_graphs(self) -> LSTMSeq2SeqTrainingGraphs | None:
        """The CUDA graphs of the decoder's training pass: with `cuda_graph_training` set, training with gradients
        on a GPU, without activation checkpointing (which recomputes the attention layer outside any graph)."""
        if not (self.cuda_graph_training and self.training and torch.is_grad_enabled()):
            return None
        if self.encoder.embed_tokens.weight.device.type != "cuda" or self.is_activation_checkpointing:
            return None
        if self not in TRAINING_GRAPHS:
            TRAINING_GRAPHS[self] = LSTMSeq2SeqTrainingGraphs()
        return TRAINING_GRAPHS[self]

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
        None), or (k x B, T) for k consecutive rows per source, as beam search's beams read one encoding of their
        source -> `last_hidden_state` (B, T, H) attentional vectors, `cache` the state after the last token,
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

        training_graphs = self._training_graphs() if cache is None else None
        if training_graphs is not None and not output_attentions and not output_hidden_states:
            vectors = training_graphs(self.decoder, decoder_input_ids, encoder_outputs, attention_mask)
            new_cache, attention, embeddings, rnn_outputs = None, None, None, None
        else:
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
    _beams_share_encoding = True  # the decoder reads k rows per encoded source (LSTMSeq2SeqDecoder.forward)

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

    def _step_graphs_for(self, generation_config) -> LSTMSeq2SeqStepGraphs | None:
        """The CUDA graphs generate() replays for each decoding step after the first: on a GPU, in eval mode, unless
        the generation config (or the call) sets `cuda_graphs=False`."""
        if self.device.type != "cuda" or self.training or not getattr(generation_config, "cuda_graphs", True):
            return None
        if self not in STEP_GRAPHS:
            STEP_GRAPHS[self] = LSTMSeq2SeqStepGraphs()
        STEP_GRAPHS[self].check_parameters(self)
        return STEP_GRAPHS[self]

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
        if (
            self._step_graphs is not None
            and cache is not None
            and labels is None
            and isinstance(encoder_outputs, LSTMSeq2SeqEncoderOutput)
            and attention_mask is not None
            and decoder_input_ids is not None
            and decoder_input_ids.shape[1] == 1
            and not output_attentions
            and not output_hidden_states
        ):  # generate()'s steps after the first, on a GPU: replay the step's graph
            logits, cache = self._step_graphs(self, decoder_input_ids, encoder_outputs, attention_mask, cache)
            output = Seq2SeqLMOutput(logits=logits, cache=cache)
            return output if return_dict else output.to_tuple()
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
