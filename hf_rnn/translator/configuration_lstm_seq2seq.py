"""Configuration of the LSTM encoder-decoder translator (Luong/Bahdanau-style attention).

Self-contained on purpose: `save_pretrained` copies this file next to the weights so
the model loads with `trust_remote_code=True` where `hf_rnn` is not installed.
"""

from transformers import PreTrainedConfig

CELL_TYPES = ("lstm", "gru", "rnn")
ATTENTION_TYPES = ("general", "dot", "concat", "none")
DECODER_INIT_TYPES = ("bridge", "zeros")


class LSTMSeq2SeqConfig(PreTrainedConfig):
    r"""
    Configuration for [`LSTMSeq2SeqModel`] and [`LSTMSeq2SeqForConditionalGeneration`].

    Defaults reproduce the classic OpenNMT-py / JoeyNMT recurrent baseline: a one-layer
    bidirectional LSTM encoder, a one-layer LSTM decoder with Luong "general" attention
    and input feeding, uniform(-0.1, 0.1) initialisation.

    Args:
        vocab_size (`int`): Source vocabulary size (and target size unless `decoder_vocab_size` is set).
        decoder_vocab_size (`int`, *optional*): Target vocabulary size; defaults to `vocab_size`.
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

    vocab_size: int = 8000
    decoder_vocab_size: int | None = None
    embedding_size: int = 256
    hidden_size: int = 512
    num_encoder_layers: int = 1
    num_decoder_layers: int = 1
    bidirectional_encoder: bool = True
    cell_type: str = "lstm"
    attention_type: str = "general"
    input_feeding: bool = True
    dropout: float = 0.3
    embedding_dropout: float | None = None
    decoder_init: str = "bridge"
    share_embeddings: bool = False
    tie_word_embeddings: bool = False
    init_range: float = 0.1
    pad_token_id: int | None = 0
    bos_token_id: int | None = 1
    eos_token_id: int | list[int] | None = 2
    decoder_start_token_id: int | None = 1
    use_cache: bool = True
    is_encoder_decoder: bool = True

    def __post_init__(self, **kwargs):
        if self.decoder_vocab_size is None:
            self.decoder_vocab_size = self.vocab_size
        if self.embedding_dropout is None:
            self.embedding_dropout = self.dropout
        self._check_fields()
        super().__post_init__(**kwargs)

    def _check_fields(self) -> None:
        """Fail at construction with the field's name, not later with a shape error inside torch."""
        for name in (
            "vocab_size",
            "decoder_vocab_size",
            "embedding_size",
            "hidden_size",
            "num_encoder_layers",
            "num_decoder_layers",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
        for name, value, allowed in (
            ("cell_type", self.cell_type, CELL_TYPES),
            ("attention_type", self.attention_type, ATTENTION_TYPES),
            ("decoder_init", self.decoder_init, DECODER_INIT_TYPES),
        ):
            if value not in allowed:
                raise ValueError(f"`{name}` must be one of {list(allowed)}, got {value!r}.")
        for name in ("dropout", "embedding_dropout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                raise ValueError(f"`{name}` must be a float in [0, 1), got {value!r}.")
        if not isinstance(self.init_range, (int, float)) or self.init_range <= 0:
            raise ValueError(f"`init_range` must be a positive float, got {self.init_range!r}.")
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
        eos_ids = self.eos_token_id if isinstance(self.eos_token_id, list) else [self.eos_token_id]
        for name, values, size in (
            ("pad_token_id", [self.pad_token_id], min(self.vocab_size, self.decoder_vocab_size)),
            ("bos_token_id", [self.bos_token_id], self.decoder_vocab_size),
            ("eos_token_id", eos_ids, self.decoder_vocab_size),
            ("decoder_start_token_id", [self.decoder_start_token_id], self.decoder_vocab_size),
        ):
            for value in values:
                if value is not None and not (isinstance(value, int) and 0 <= value < size):
                    raise ValueError(f"`{name}` must be None or an id in [0, {size}), got {value!r}.")


__all__ = ["LSTMSeq2SeqConfig", "CELL_TYPES", "ATTENTION_TYPES", "DECODER_INIT_TYPES"]
