"""Configuration of the LSTM encoder-decoder translator (Luong/Bahdanau-style attention).

Self-contained on purpose: `save_pretrained` copies this file next to the weights so
the model loads with `trust_remote_code=True` where `hf_rnn` is not installed.
"""

import dataclasses
import difflib
from typing import Literal, get_args

from huggingface_hub.dataclasses import strict, validated_field
from transformers import GenerationConfig, PreTrainedConfig

CellType = Literal["lstm", "gru", "rnn"]
AttentionType = Literal["general", "dot", "concat", "none"]
DecoderInit = Literal["bridge", "zeros"]
CELL_TYPES, ATTENTION_TYPES, DECODER_INIT_TYPES = get_args(CellType), get_args(AttentionType), get_args(DecoderInit)

# Keys transformers itself passes to a config besides its fields: metadata it writes into config.json, loading
# options `from_dict` forwards, and generation parameters old config files still carry (dropped on load).
TRANSFORMERS_KEYS = frozenset(
    {"model_type", "transformers_version", "auto_map", "custom_pipelines", "_name_or_path", "name_or_path"}
    | {"num_labels", "attn_implementation", "experts_implementation", "output_attentions", "torch_dtype"}
    | set(GenerationConfig._get_default_generation_params())
)


def reject_unknown_keys(config_class: type, kwargs: dict) -> None:
    """A key that is neither a field nor one of transformers' own is a typo: name it, and the field it resembles."""
    fields = [field.name for field in dataclasses.fields(config_class)]
    for key in kwargs:
        if key not in TRANSFORMERS_KEYS:
            close = difflib.get_close_matches(key, fields, n=1)
            hint = f"; did you mean `{close[0]}`?" if close else f". Its fields: {', '.join(sorted(fields))}."
            raise TypeError(f"{config_class.__name__} has no field `{key}`{hint}")


def positive(value: int | float | None) -> None:
    if value is not None and value <= 0:
        raise ValueError(f"must be positive, got {value!r}")


def probability(value: float | None) -> None:
    if value is not None and not 0 <= value < 1:
        raise ValueError(f"must be in [0, 1), got {value!r}")


@strict
class LSTMSeq2SeqConfig(PreTrainedConfig):
    r"""
    Configuration for [`LSTMSeq2SeqModel`] and [`LSTMSeq2SeqForConditionalGeneration`].

    Defaults reproduce the classic OpenNMT-py / JoeyNMT recurrent baseline: a one-layer
    bidirectional LSTM encoder, a one-layer LSTM decoder with Luong "general" attention
    and input feeding, uniform(-0.1, 0.1) initialisation.

    Every field is typed and checked when the config is built, loaded or changed: a wrong type or
    value, an unknown key or a contradiction between fields raises an error that names the field.

    Args:
        vocab_size (`int`): Source vocabulary size (and target size unless `decoder_vocab_size` is set).
        decoder_vocab_size (`int`, *optional*): Target vocabulary size; defaults to `vocab_size`. When smaller,
            the targets are the tokenizer's first `decoder_vocab_size` ids (see `resize_token_embeddings`).
        embedding_size (`int`): Width of the token embeddings.
        hidden_size (`int`): Width of the decoder state and of the encoder outputs. A bidirectional
            encoder uses `hidden_size // 2` per direction so both sides meet at the same width.
        num_encoder_layers / num_decoder_layers (`int`): Stacked recurrent layers.
        bidirectional_encoder (`bool`): Read the source both ways.
        cell_type (`str`): One of `"lstm"`, `"gru"`, `"rnn"` (tanh Elman cell).
        attention_type (`str`): `"general"` (h·W·s), `"dot"` (h·s), `"concat"` (Bahdanau MLP
            v·tanh(W[h;s])), or `"none"` (plain encoder-decoder, no attention).
        input_feeding (`bool`): Feed the previous attentional vector into the next decoder step
            (Luong et al., 2015). Forces a step-by-step decoder loop while training.
        dropout (`float`): Dropout between stacked layers and on the attentional vector.
        embedding_dropout (`float`, *optional*): Dropout on embeddings; defaults to `dropout`.
        decoder_init (`str`): `"bridge"` (tanh-projected final encoder states) or `"zeros"`.
        share_embeddings (`bool`): One embedding matrix for source and target (joint vocabulary).
        tie_word_embeddings (`bool`): Output projection shares the target embedding matrix;
            needs `embedding_size == hidden_size`.
        init_range (`float`): Parameters start uniform in `[-init_range, init_range]`.
    """

    model_type = "lstm_seq2seq"
    keys_to_ignore_at_inference = ["cache"]

    vocab_size: int = validated_field(positive, default=8000)
    decoder_vocab_size: int | None = validated_field(positive, default=None)
    embedding_size: int = validated_field(positive, default=256)
    hidden_size: int = validated_field(positive, default=512)
    num_encoder_layers: int = validated_field(positive, default=1)
    num_decoder_layers: int = validated_field(positive, default=1)
    bidirectional_encoder: bool = True
    cell_type: CellType = "lstm"
    attention_type: AttentionType = "general"
    input_feeding: bool = True
    dropout: float | int = validated_field(probability, default=0.3)
    embedding_dropout: float | int | None = validated_field(probability, default=None)
    decoder_init: DecoderInit = "bridge"
    share_embeddings: bool = False
    tie_word_embeddings: bool = False
    init_range: float | int = validated_field(positive, default=0.1)
    pad_token_id: int | None = 0
    bos_token_id: int | None = 1
    eos_token_id: int | list[int] | None = 2
    decoder_start_token_id: int | None = 1
    use_cache: bool = True
    is_encoder_decoder: bool = True

    def __post_init__(self, **kwargs):
        reject_unknown_keys(type(self), kwargs)
        if self.decoder_vocab_size is None:
            self.decoder_vocab_size = self.vocab_size
        if self.embedding_dropout is None:
            self.embedding_dropout = self.dropout
        super().__post_init__(**kwargs)

    def validate_architecture(self) -> None:
        """Rules between fields (part of `@strict` validation, run when the config is built, loaded or saved)."""
        if self.bidirectional_encoder and self.hidden_size % 2:
            raise ValueError(
                f"`hidden_size` must be even when `bidirectional_encoder=True` (each direction gets half), "
                f"got {self.hidden_size}."
            )
        if self.share_embeddings and self.decoder_vocab_size != self.vocab_size:
            raise ValueError(
                f"`share_embeddings=True` needs one joint vocabulary, but `vocab_size`={self.vocab_size} and "
                f"`decoder_vocab_size`={self.decoder_vocab_size}."
            )
        if self.tie_word_embeddings and self.embedding_size != self.hidden_size:
            raise ValueError(
                f"`tie_word_embeddings=True` needs `embedding_size` == `hidden_size` (the output layer reads the "
                f"{self.hidden_size}-wide attentional vector), got {self.embedding_size} and {self.hidden_size}."
            )

    def validate_token_ids(self) -> None:
        """Special token ids must exist in the vocabulary they are looked up in (an error, not transformers'
        warning: an id outside it fails inside an embedding later)."""
        eos_ids = self.eos_token_id if isinstance(self.eos_token_id, list) else [self.eos_token_id]
        for name, values, size in (
            ("pad_token_id", [self.pad_token_id], min(self.vocab_size, self.decoder_vocab_size)),
            ("bos_token_id", [self.bos_token_id], self.decoder_vocab_size),
            ("eos_token_id", eos_ids, self.decoder_vocab_size),
            ("decoder_start_token_id", [self.decoder_start_token_id], self.decoder_vocab_size),
        ):
            for value in values:
                if value is not None and not 0 <= value < size:
                    raise ValueError(f"`{name}` must be None or an id in [0, {size}), got {value!r}.")


__all__ = ["LSTMSeq2SeqConfig", "CELL_TYPES", "ATTENTION_TYPES", "DECODER_INIT_TYPES"]
