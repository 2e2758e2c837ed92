"""Image-to-keywords captioner: an image encoder plus an attentional LSTM decoder ("Show, Attend and Tell").

The encoder (a small built-in CNN or any transformers vision backbone) turns the image into a
grid of feature vectors, projected to the decoder width. The LSTM starts from tanh-projected
mean features; at every step it attends softly (additive attention) over the grid using its
previous hidden state, reads [keyword embedding; context] and predicts the next keyword
(Xu et al., 2015).

It plugs into the stock `GenerationMixin`: the recurrent state travels between decoding steps
as `cache` (an `LSTMCaptionerCache`), which beam search reorders through `_reorder_cache`. The default
generation config sets `no_repeat_ngram_size=1`, so a keyword never repeats within one output.
Only sibling imports are used so this file travels as Hub remote code.
"""

import os
from dataclasses import dataclass

import torch
from torch import nn
from transformers import AutoModel, GenerationConfig, GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import ModelOutput, Seq2SeqLMOutput, Seq2SeqModelOutput
from transformers.utils import logging

from .configuration_lstm_captioner import LSTMCaptionerConfig
from .pipeline_lstm_captioner import CUSTOM_PIPELINES

logger = logging.get_logger(__name__)

# transformers' own default `max_length`, which Seq2SeqTrainer writes into `model.generation_config` when evaluating:
# found there, it is nobody's choice.
# Copied from hf_rnn.translator.generation_lstm_seq2seq.TRANSFORMERS_DEFAULT_MAX_LENGTH
TRANSFORMERS_DEFAULT_MAX_LENGTH = GenerationConfig._get_default_generation_params()["max_length"]


# Copied from hf_rnn.translator.generation_lstm_seq2seq.chosen_length_limits
def chosen_length_limits(own: GenerationConfig, given: GenerationConfig | None, kwargs: dict) -> tuple[bool, bool]:
    """Whether a generate() call, the config passed to it or the model's generation config `own` chose a
    `max_length`, and whether any of them chose `max_new_tokens`."""
    given = given or GenerationConfig()
    max_length = kwargs.get("max_length", given.max_length)
    if max_length is None and own.max_length != TRANSFORMERS_DEFAULT_MAX_LENGTH:
        max_length = own.max_length
    max_new_tokens = kwargs.get("max_new_tokens", given.max_new_tokens)
    return max_length is not None, (max_new_tokens if max_new_tokens is not None else own.max_new_tokens) is not None


# Copied from hf_rnn.translator.generation_lstm_seq2seq.count_cut
def count_cut(sequences: torch.Tensor, max_length: int, eos_token_id: int | list[int] | None) -> int:
    """How many generated `sequences` (batch, length) reached `max_length` without an end token."""
    if eos_token_id is None or sequences.shape[1] < max_length:
        return 0
    eos = torch.tensor(eos_token_id if isinstance(eos_token_id, list) else [eos_token_id], device=sequences.device)
    return int((~torch.isin(sequences, eos).any(dim=1)).sum())


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


# Copied from hf_rnn.translator.modeling_lstm_seq2seq.shift_tokens_right
def shift_tokens_right(labels: torch.Tensor, pad_token_id: int, decoder_start_token_id: int) -> torch.Tensor:
    """Teacher forcing: the decoder reads <start> y_1 ... y_{n-1} and predicts y_1 ... y_n."""
    shifted = labels.new_full(labels.shape, pad_token_id)
    shifted[:, 1:] = labels[:, :-1]
    shifted[:, 0] = decoder_start_token_id
    return shifted.masked_fill(shifted == -100, pad_token_id)


# Copied from hf_rnn.translator.modeling_lstm_seq2seq.TokenCrossEntropy
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


# Copied from hf_rnn.translator.modeling_lstm_seq2seq.token_cross_entropy
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


@dataclass
class LSTMCaptionerEncoderOutput(ModelOutput):
    """
    Image features, batch-first so `generate()` can expand them for beams along dim 0.

    Args:
        last_hidden_state: `(batch, num_positions, hidden_size)` projected features (spatial cells or tokens).
        hidden_states: the CNN's per-block feature maps, or the backbone's `hidden_states`, when requested.
        attentions: the backbone's self-attentions when requested (transformer backbones only).
    """

    last_hidden_state: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


class LSTMCaptionerCache:
    """
    The decoder's recurrent state between `generate()` steps.

    Unlike a transformer's key/value cache it does not grow: it holds the LSTM state after the
    last keyword plus the projected attention keys, which depend only on the image.
    """

    is_compileable = False

    def __init__(self, hidden: torch.Tensor, cell: torch.Tensor, attention_keys: torch.Tensor, seen_tokens: int = 0):
        self.hidden = hidden  # (batch, hidden_size)
        self.cell = cell  # (batch, hidden_size)
        self.attention_keys = attention_keys  # (batch, num_positions, attention_size)
        self.seen_tokens = seen_tokens

    def select(self, index: torch.LongTensor) -> "LSTMCaptionerCache":
        """The state of rows `index` (batch positions, repeats allowed): beam search's reordering."""

        def rows(tensor: torch.Tensor) -> torch.Tensor:
            return tensor.index_select(0, index.to(tensor.device))

        return LSTMCaptionerCache(rows(self.hidden), rows(self.cell), rows(self.attention_keys), self.seen_tokens)

    # Copied from hf_rnn.translator.modeling_lstm_seq2seq.LSTMSeq2SeqCache.get_seq_length
    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.seen_tokens


class LSTMCaptionerCNN(nn.Module):
    """conv3x3-BatchNorm-ReLU-maxpool2 blocks; the last feature map is kept whole for attention."""

    def __init__(self, config: LSTMCaptionerConfig):
        super().__init__()
        blocks, in_channels = [], config.num_channels
        for out_channels in config.cnn_channels:
            blocks.append(
                nn.Sequential(
                    nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
                    nn.BatchNorm2d(out_channels),
                    nn.ReLU(),
                    nn.MaxPool2d(2),
                )
            )
            in_channels = out_channels
        self.blocks = nn.ModuleList(blocks)

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """(B, C, H, W) -> last map (B, C', H / 2^n, W / 2^n) and every block's output."""
        maps, hidden = [], pixel_values
        for block in self.blocks:
            hidden = block(hidden)
            maps.append(hidden)
        return hidden, tuple(maps)


class LSTMCaptionerVisionEncoder(nn.Module):
    """Image -> (B, positions, hidden_size) features, from the built-in CNN or a transformers backbone."""

    def __init__(self, config: LSTMCaptionerConfig):
        super().__init__()
        self.config = config
        if config.vision_config is None:
            self.cnn = LSTMCaptionerCNN(config)
        else:
            self.backbone = AutoModel.from_config(config.vision_config)
        self.projection = nn.Linear(config.encoder_feature_size, config.hidden_size)

    def check_pixel_values(self, pixel_values: torch.Tensor | None) -> None:
        """Name the expected shape instead of failing inside a convolution."""
        channels, size = self.config.num_channels, self.config.image_size
        expected = f"(batch, {channels}, {size}, {size})" if size else f"(batch, {channels}, height, width)"
        if pixel_values is None:
            raise ValueError(f"The captioner's encoder needs `pixel_values` of shape {expected}.")
        shape = tuple(pixel_values.shape)
        if (
            pixel_values.ndim != 4
            or shape[1] != channels
            or (size is not None and shape[2:] != (size, size))
            or not pixel_values.is_floating_point()
        ):
            raise ValueError(
                f"`pixel_values` must be a float tensor of shape {expected}, got {pixel_values.dtype} of shape "
                f"{shape}. Use the model's image processor (it resizes and normalises)."
            )

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> LSTMCaptionerEncoderOutput | tuple:
        # No **kwargs on purpose: generate() then filters out the decoder prompt instead of passing it here.
        self.check_pixel_values(pixel_values)
        pixel_values = pixel_values.to(self.projection.weight.dtype)
        attentions = None
        if self.config.vision_config is None:
            features, maps = self.cnn(pixel_values)
            hidden_states = maps if output_hidden_states else None
        else:
            extra = {"output_attentions": True} if output_attentions else {}
            outputs = self.backbone(
                pixel_values=pixel_values, output_hidden_states=output_hidden_states, return_dict=True, **extra
            )
            features = outputs.last_hidden_state
            hidden_states = outputs.hidden_states if output_hidden_states else None
            attentions = getattr(outputs, "attentions", None) if output_attentions else None
        if features.ndim == 4:  # (B, C, H, W) map -> (B, H*W, C) positions
            features = features.flatten(2).transpose(1, 2)
        elif features.ndim != 3:
            raise ValueError(
                f"The vision backbone's `last_hidden_state` has shape {tuple(features.shape)}; the captioner needs "
                f"(B, C, H, W) maps or (B, N, C) tokens."
            )
        result = LSTMCaptionerEncoderOutput(
            last_hidden_state=self.projection(features), hidden_states=hidden_states, attentions=attentions
        )
        return result if return_dict is not False else result.to_tuple()


class LSTMCaptionerAttention(GradientCheckpointingLayer):
    """Additive (Bahdanau) soft attention over image positions, queried with the previous LSTM state."""

    def __init__(self, config: LSTMCaptionerConfig):
        super().__init__()
        self.key_proj = nn.Linear(config.hidden_size, config.attention_size)
        self.query_proj = nn.Linear(config.hidden_size, config.attention_size, bias=False)
        self.energy = nn.Linear(config.attention_size, 1, bias=False)

    def forward(
        self, query: torch.Tensor, memory: torch.Tensor, keys: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """query (B, H) previous LSTM state, memory (B, N, H) image features, keys (B, N, A) from `key_proj` ->
        context (B, H) and weights (B, N): e = v·tanh(W_k m + W_q h), weights = softmax(e) (Xu et al., 2015)."""
        energy = torch.tanh(keys + self.query_proj(query).unsqueeze(1))  # (B, N, A)
        weights = torch.softmax(self.energy(energy).squeeze(-1), dim=-1)  # (B, N)
        return torch.bmm(weights.unsqueeze(1), memory).squeeze(1), weights  # (B, 1, N) @ (B, N, H) -> (B, H)


# Copied from hf_rnn.translator.modeling_lstm_seq2seq.is_bare_module
def is_bare_module(module: nn.Module, kind: type) -> bool:
    """Whether `module` is exactly a `kind` with no forward hooks, so reading its weights is what calling it does."""
    hooks = (module._forward_hooks, module._forward_pre_hooks, nn.modules.module._global_forward_hooks)
    return type(module) is kind and not any(hooks) and not nn.modules.module._global_forward_pre_hooks


# Copied from hf_rnn.translator.modeling_lstm_seq2seq.TimeLoopLinear
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


class LSTMCaptionerDecoder(nn.Module):
    """LSTM over keywords; each step reads [embedding; attention context] (a step loop: the context needs h_{t-1})."""

    def __init__(self, config: LSTMCaptionerConfig):
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.embedding_size, padding_idx=config.pad_token_id)
        self.init_hidden = nn.Linear(config.hidden_size, config.hidden_size)
        self.init_cell = nn.Linear(config.hidden_size, config.hidden_size)
        self.attention = LSTMCaptionerAttention(config)
        self.cell = nn.LSTMCell(config.embedding_size + config.hidden_size, config.hidden_size)
        self.dropout = nn.Dropout(config.dropout)

    def init_cache(self, memory: torch.Tensor) -> LSTMCaptionerCache:
        """State before the first keyword: tanh-projected mean feature; attention keys computed once per image."""
        mean = memory.mean(dim=1)  # (B, N, H) -> (B, H)
        return LSTMCaptionerCache(
            torch.tanh(self.init_hidden(mean)), torch.tanh(self.init_cell(mean)), self.attention.key_proj(memory)
        )

    def forward(
        self, input_ids: torch.LongTensor, memory: torch.Tensor, cache: LSTMCaptionerCache | None = None
    ) -> tuple[torch.Tensor, LSTMCaptionerCache, torch.Tensor, torch.Tensor]:
        """input_ids (B, T) keyword ids read after the state in `cache` (from the image when None), memory (B, N, H)
        -> LSTM outputs (B, T, H) after dropout, the state after the last token, attention weights (B, T, N) and
        embeddings (B, T, E)."""
        check_token_ids("decoder_input_ids", input_ids, self.config.vocab_size, batch_size=memory.shape[0])
        if cache is None:
            cache = self.init_cache(memory)
        embeddings = self.embed_tokens(input_ids)  # (B, T, E)
        hidden, cell = cache.hidden, cache.cell  # (B, H) each
        output_steps, weight_steps = [], []
        loop_weights = self._time_loop_weights()
        for step, embedding in enumerate(embeddings.unbind(1)):  # unbind: one backward node, not one per step
            context, weights = self.attention(hidden, memory, cache.attention_keys)  # (B, H), (B, N)
            step_input = torch.cat([embedding, context], dim=-1)  # (B, E + H)
            if loop_weights is None:
                hidden, cell = self.cell(step_input, (hidden, cell))
            else:  # nn.LSTMCell's arithmetic, with the weight gradients deferred to one product per loop
                weight_ih, weight_hh, bias_ih, bias_hh, input_steps, hidden_steps = loop_weights
                gates = TimeLoopLinear.apply(step_input, weight_ih, bias_ih, input_steps, step == 0)
                gates = gates + TimeLoopLinear.apply(hidden, weight_hh, bias_hh, hidden_steps, step == 0)
                i, f, g, o = gates.chunk(4, dim=-1)
                cell = torch.sigmoid(f) * cell + torch.sigmoid(i) * torch.tanh(g)
                hidden = torch.sigmoid(o) * torch.tanh(cell)
            output_steps.append(hidden)
            weight_steps.append(weights)
        outputs = self.dropout(torch.stack(output_steps, dim=1))  # (B, T, H)
        new_cache = LSTMCaptionerCache(hidden, cell, cache.attention_keys, cache.seen_tokens + input_ids.shape[1])
        return outputs, new_cache, torch.stack(weight_steps, dim=1), embeddings

    def _time_loop_weights(self) -> tuple | None:
        """The cell's (weight_ih, weight_hh, bias_ih, bias_hh) in the dtype of the loop's products (autocast's when
        it is on, cast once for the whole loop) and two empty lists for `TimeLoopLinear`'s kept steps, when the
        loop over time trains on a CPU; None otherwise (`nn.LSTMCell`: nothing to differentiate, another device,
        where this was not measured, a cell that was replaced or has forward hooks, which must run, or torch.compile
        tracing the loop)."""
        if not torch.is_grad_enabled() or torch.compiler.is_compiling() or not is_bare_module(self.cell, nn.LSTMCell):
            return None  # generate()'s steps return here
        parameters = list(self.cell.parameters())
        if not any(parameter.requires_grad for parameter in parameters) or parameters[0].device.type != "cpu":
            return None
        dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else parameters[0].dtype
        names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        return (*(getattr(self.cell, name).to(dtype) for name in names), [], [])


class LSTMCaptionerPreTrainedModel(PreTrainedModel):
    config: LSTMCaptionerConfig
    config_class = LSTMCaptionerConfig
    base_model_prefix = "model"
    main_input_name = "pixel_values"
    input_modalities = ("image", "text")
    # Activation checkpointing recomputes the attention layer in the backward pass (its largest activation, e.g.
    # concat attention's (batch, target, source, hidden) energies). The recurrent layers keep theirs: backpropagation
    # through time needs every step's state, and a fused nn.LSTM call has no layers to checkpoint one at a time.
    supports_gradient_checkpointing = True
    _no_split_modules = ["LSTMCaptionerVisionEncoder", "LSTMCaptionerDecoder"]

    # Copied from hf_rnn.translator.modeling_lstm_seq2seq.LSTMSeq2SeqPreTrainedModel._supports_default_dynamic_cache
    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        # The recurrent state is not a key/value cache: generate must not build a DynamicCache for it.
        return False

    def _init_weights(self, module: nn.Module) -> None:
        """Uniform(-r, r) for the recurrent part; He init for the CNN. A backbone keeps its own init (and weights)."""
        r = self.config.init_range
        if isinstance(module, nn.Conv2d):
            init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            init.ones_(module.weight)
            init.zeros_(module.bias)
            init.zeros_(module.running_mean)
            init.ones_(module.running_var)
            init.zeros_(module.num_batches_tracked)
        elif isinstance(module, nn.Linear):
            # A tied output layer takes the embedding's values: drawing its weight anyway would shift its bias's draws.
            if not (self.config.tie_word_embeddings and module is self.get_output_embeddings()):
                init.uniform_(module.weight, -r, r)
            if module.bias is not None:
                init.uniform_(module.bias, -r, r)
        elif isinstance(module, nn.LSTMCell):
            for parameter in module.parameters(recurse=False):
                init.uniform_(parameter, -r, r)
        elif isinstance(module, nn.Embedding):
            init.uniform_(module.weight, -r, r)
            if module.padding_idx is not None and not getattr(module.weight, "_is_hf_initialized", False):
                init.zeros_(module.weight[module.padding_idx])

    # Copied from hf_rnn.translator.modeling_lstm_seq2seq.LSTMSeq2SeqPreTrainedModel.save_pretrained with LSTMSeq2Seq->LSTMCaptioner, AutoModelForSeq2SeqLM->AutoModelForImageTextToText  # noqa: E501
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
                "AutoModel": f"{module}.LSTMCaptionerModel",
                "AutoModelForImageTextToText": f"{module}.LSTMCaptionerForConditionalGeneration",
            }
            # The pipeline travels too: `pipeline(task, model=folder, trust_remote_code=True)` finds it without hf_rnn.
            self.config.custom_pipelines = {
                **(getattr(self.config, "custom_pipelines", None) or {}),
                **CUSTOM_PIPELINES,
            }
        super().save_pretrained(save_directory, *args, **kwargs)


class LSTMCaptionerModel(LSTMCaptionerPreTrainedModel):
    """Encoder + decoder, returning the LSTM outputs (the input of the softmax layer)."""

    def __init__(self, config: LSTMCaptionerConfig):
        super().__init__(config)
        self.encoder = LSTMCaptionerVisionEncoder(config)
        self.decoder = LSTMCaptionerDecoder(config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.decoder.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.decoder.embed_tokens = value

    def get_encoder(self, modality: str | None = None) -> LSTMCaptionerVisionEncoder:
        return self.encoder

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        decoder_input_ids: torch.LongTensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        encoder_outputs: LSTMCaptionerEncoderOutput | tuple | None = None,
        cache: LSTMCaptionerCache | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> Seq2SeqModelOutput | tuple:
        """pixel_values (B, C, H, W) (or precomputed `encoder_outputs`), decoder_input_ids (B, T) keyword ids read
        after `cache` (from the image when None) -> `last_hidden_state` (B, T, hidden_size) LSTM outputs, `cache`
        the state after the last keyword, `cross_attentions` ((B, 1, T, positions),) with `output_attentions`.

        `decoder_attention_mask` is accepted for API compatibility: a causal RNN never looks ahead, and
        positions after a sequence's end only produce outputs the loss ignores. Every image position is
        attended to, so there is no encoder mask.

        Raises:
            ValueError: pixel values of the wrong shape or type, keyword ids outside the vocabulary.
        """
        output_attentions = output_attentions if output_attentions is not None else self.config.output_attentions
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        use_cache = use_cache if use_cache is not None else self.config.use_cache
        return_dict = return_dict if return_dict is not None else self.config.return_dict

        if encoder_outputs is None:
            encoder_outputs = self.encoder(
                pixel_values, output_attentions=output_attentions, output_hidden_states=output_hidden_states
            )
        elif not isinstance(encoder_outputs, LSTMCaptionerEncoderOutput):
            encoder_outputs = LSTMCaptionerEncoderOutput(*encoder_outputs)
        if decoder_input_ids is None:
            raise ValueError("Pass `decoder_input_ids` or `labels` (they are shifted into decoder inputs).")

        outputs, new_cache, attention, embeddings = self.decoder(
            decoder_input_ids, encoder_outputs.last_hidden_state, cache=cache
        )
        output = Seq2SeqModelOutput(
            last_hidden_state=outputs,
            cache=new_cache if use_cache else None,
            decoder_hidden_states=(embeddings, outputs) if output_hidden_states else None,
            cross_attentions=(attention.unsqueeze(1),) if output_attentions else None,
            encoder_last_hidden_state=encoder_outputs.last_hidden_state,
            encoder_hidden_states=encoder_outputs.hidden_states,
            encoder_attentions=encoder_outputs.attentions,
        )
        return output if return_dict else output.to_tuple()


class LSTMCaptionerForConditionalGeneration(LSTMCaptionerPreTrainedModel, GenerationMixin):
    """The captioner: `LSTMCaptionerModel` + softmax layer, trainable with `labels`, usable with `generate()`."""

    # Trainer passes `num_items_in_batch` to a model that declares this; `token_cross_entropy` honours it.
    accepts_loss_kwargs = True
    _tied_weights_keys = {"lm_head.weight": "model.decoder.embed_tokens.weight"}
    _keyword_cap = False  # set by generate() while it runs, when nobody chose an output limit
    _max_length_chosen: bool = True  # cleared by generate() while it runs, when nobody chose a max_length
    _length_used: tuple[int, int] = (0, 0)  # the last generate()'s max_length and decoder prompt length
    # An int while a caller counts cut outputs instead of a warning per call (the Trainer's evaluation: a model in
    # its first epochs may run on, and the count goes into the metrics).
    cut_sequences: int | None = None

    def __init__(self, config: LSTMCaptionerConfig):
        super().__init__(config)
        self.model = LSTMCaptionerModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size)
        self.post_init()
        self.generation_config.no_repeat_ngram_size = 1  # keywords form a set: never emit one twice

    @classmethod
    def from_vision_pretrained(
        cls, vision_model_name_or_path: str | os.PathLike, **config_kwargs
    ) -> "LSTMCaptionerForConditionalGeneration":
        """
        A new captioner on top of a pretrained vision backbone (a Hub id, downloaded if needed, or a local folder
        loadable with `AutoModel`). Only the backbone is pretrained; `config_kwargs` go to `LSTMCaptionerConfig`.
        Build the image processor to match the backbone (its `size`, `image_mean`, `image_std`).
        """
        backbone = AutoModel.from_pretrained(vision_model_name_or_path)
        model = cls(LSTMCaptionerConfig(vision_config=backbone.config, **config_kwargs))
        model.model.encoder.backbone.load_state_dict(backbone.state_dict())
        return model

    def get_encoder(self, modality: str | None = None) -> LSTMCaptionerVisionEncoder:
        return self.model.encoder

    def generate(
        self, inputs: torch.Tensor | None = None, generation_config: GenerationConfig | None = None, **kwargs
    ):
        """`GenerationMixin.generate`, capped at `config.max_keywords` keywords (start token and prompt keywords
        included: `max_length = max_keywords + 2`) unless the call, a generation config passed to it, or
        `model.generation_config` sets `max_length` or `max_new_tokens`. `max_length=20`, transformers' default that
        Seq2SeqTrainer writes into `model.generation_config`, counts as unset there. One warning per call says how
        many returned keyword lists reached the limit without `</s>`.
        """
        self._max_length_chosen, max_new_tokens_chosen = chosen_length_limits(
            self.generation_config, generation_config, kwargs
        )
        self._keyword_cap = not self._max_length_chosen and not max_new_tokens_chosen
        try:
            output = super().generate(inputs, generation_config=generation_config, **kwargs)
        finally:
            self._keyword_cap, self._max_length_chosen = False, True
        sequences = output if isinstance(output, torch.Tensor) else output.sequences
        eos = kwargs.get("eos_token_id", (generation_config or self.generation_config).eos_token_id)
        cut = count_cut(sequences, self._length_used[0], eos)
        if cut and self.cut_sequences is not None:
            self.cut_sequences += cut
        elif cut:
            logger.warning(
                f"{cut} of {len(sequences)} keyword lists reached the length limit "
                f"({self._length_used[0] - self._length_used[1]} new tokens) without `</s>` and were cut. Pass a "
                f"larger `max_new_tokens` to generate() (or raise `max_keywords` in the model config) to allow more."
            )
        return output

    def _prepare_generated_length(
        self,
        generation_config: GenerationConfig,
        has_default_max_length: bool,
        has_default_min_length: bool,
        model_input_name: str | None,
        input_ids_length: int,
        inputs_tensor: torch.Tensor,
    ) -> GenerationConfig:
        """generate()'s length limits; `max_keywords` when nobody chose a limit (see `generate`)."""
        if self._keyword_cap:
            generation_config.max_new_tokens = max(self.config.max_keywords + 2 - input_ids_length, 1)
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

    def _reorder_cache(self, cache: LSTMCaptionerCache, beam_idx: torch.LongTensor) -> LSTMCaptionerCache:
        """Beam search: each row takes the state of the beam it continues (`beam_idx`, over the whole batch)."""
        return cache.select(beam_idx)

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

    # Copied from hf_rnn.translator.modeling_lstm_seq2seq.LSTMSeq2SeqForConditionalGeneration.get_output_embeddings
    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    # Copied from hf_rnn.translator.modeling_lstm_seq2seq.LSTMSeq2SeqForConditionalGeneration.set_output_embeddings
    def set_output_embeddings(self, value: nn.Linear) -> None:
        self.lm_head = value

    # Copied from hf_rnn.translator.modeling_lstm_seq2seq.LSTMSeq2SeqForConditionalGeneration.prepare_decoder_input_ids_from_labels  # noqa: E501
    def prepare_decoder_input_ids_from_labels(self, labels: torch.Tensor) -> torch.Tensor:
        return shift_tokens_right(labels, self.config.pad_token_id, self.config.decoder_start_token_id)

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        decoder_input_ids: torch.LongTensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        encoder_outputs: LSTMCaptionerEncoderOutput | tuple | None = None,
        cache: LSTMCaptionerCache | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        num_items_in_batch: int | torch.Tensor | None = None,
        **kwargs,
    ) -> Seq2SeqLMOutput | tuple:
        """`LSTMCaptionerModel.forward` plus the softmax layer: `logits` (B, T, vocab_size).

        `labels` (B, T): keyword ids ending with `</s>`, -100 where the loss ignores them (padding); without
        `decoder_input_ids` they are shifted right into them. The loss is their mean token cross-entropy, or the
        sum over `num_items_in_batch` when given (see `token_cross_entropy`).
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if labels is not None:
            images = (
                pixel_values
                if pixel_values is not None
                else (encoder_outputs[0] if encoder_outputs is not None else None)
            )
            # The images' own checks name images of the wrong shape.
            batch_size = images.shape[0] if isinstance(images, torch.Tensor) and images.dim() >= 3 else None
            check_token_ids("labels", labels, self.config.vocab_size, allow_ignore=True, batch_size=batch_size)
            use_cache = False
            if decoder_input_ids is None:
                decoder_input_ids = self.prepare_decoder_input_ids_from_labels(labels)

        outputs = self.model(
            pixel_values,
            decoder_input_ids=decoder_input_ids,
            encoder_outputs=encoder_outputs,
            cache=cache,
            use_cache=use_cache,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
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
            encoder_attentions=outputs.encoder_attentions,
        )
        return output if return_dict else output.to_tuple()


__all__ = [
    "LSTMCaptionerCache",
    "LSTMCaptionerEncoderOutput",
    "LSTMCaptionerForConditionalGeneration",
    "LSTMCaptionerModel",
    "LSTMCaptionerPreTrainedModel",
]
