"""Configuration of the recurrent encoder-only family: `LSTMModel`, its sequence classifier and its language model.

Self-contained on purpose: `save_pretrained` copies this file next to the weights so
the model loads with `trust_remote_code=True` where `hf_rnn` is not installed.
"""

from typing import Literal

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig


@strict
class LSTMConfig(PreTrainedConfig):
    r"""
    Configuration for [`LSTMModel`], [`LSTMForSequenceClassification`] and [`LSTMForCausalLM`].

    Defaults give a one-layer unidirectional LSTM, the shape of the char-rnn language model
    (Karpathy, 2015) and of the recurrent sentence-classification baselines; uniform(-0.1, 0.1)
    initialisation and dropout on the non-recurrent connections only (Zaremba et al., 2014).

    Args:
        vocab_size (`int`): Number of token ids the embedding (and the language model's output layer) holds.
        embedding_size (`int`): Width of the token embeddings.
        hidden_size (`int`): Width of the per-position outputs. A bidirectional stack uses
            `hidden_size // 2` per direction so that both directions together are `hidden_size` wide.
        num_layers (`int`): Stacked recurrent layers.
        cell_type (`str`): `"lstm"`, `"gru"` or `"rnn"` (tanh Elman cell).
        bidirectional (`bool`): Read the text both ways. Classification only: the language model
            predicts the next token, so it must not see it (`LSTMForCausalLM` refuses it).
        dropout (`float`): Dropout between stacked layers and on the outputs (before the pooling /
            the output layer).
        embedding_dropout (`float`, *optional*): Dropout on the embeddings; defaults to `dropout`.
        pooling (`str`): How [`LSTMForSequenceClassification`] turns the per-position outputs into one
            vector, over the unpadded positions only: `"last"` (the final state of the top layer, both
            directions), `"mean"`, `"max"` (element-wise), or `"attention"` (a learned query scores every
            position, as in Yang et al., 2016).
        tie_word_embeddings (`bool`): The language model's output layer shares the embedding matrix
            (Press & Wolf, 2017); needs `embedding_size == hidden_size`.
        init_range (`float`): Parameters start uniform in `[-init_range, init_range]`.
        pad_token_id / bos_token_id / eos_token_id (`int`): Special token ids, as the tokenizer sets them
            (`hf_rnn.data.tokenization.train_char_tokenizer`: 0, 1, 2).
        num_labels / id2label / label2id / problem_type: As in every transformers classifier: `problem_type` is
            `"single_label_classification"` (cross-entropy), `"multi_label_classification"` (binary
            cross-entropy per label) or `"regression"` (mean squared error); inferred from the labels when unset.
    """

    model_type = "lstm"
    keys_to_ignore_at_inference = ["cache"]

    vocab_size: int = 8000
    embedding_size: int = 256
    hidden_size: int = 512
    num_layers: int = 1
    cell_type: Literal["lstm", "gru", "rnn"] = "lstm"
    bidirectional: bool = False
    dropout: float | int = 0.2
    embedding_dropout: float | int | None = None
    pooling: Literal["last", "mean", "max", "attention"] = "last"
    tie_word_embeddings: bool = False
    init_range: float | int = 0.1
    pad_token_id: int | None = 0
    bos_token_id: int | None = 1
    eos_token_id: int | list[int] | None = 2
    use_cache: bool = True

    def __post_init__(self, **kwargs):
        if self.embedding_dropout is None:
            self.embedding_dropout = self.dropout
        super().__post_init__(**kwargs)

    def validate_architecture(self):
        """Part of `@strict`-powered validation: value ranges and cross-field rules, each error naming its field."""
        for name in ("vocab_size", "embedding_size", "hidden_size", "num_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {getattr(self, name)!r}.")
        for name in ("dropout", "embedding_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"`{name}` must be in [0, 1), got {getattr(self, name)!r}.")
        if self.init_range <= 0:
            raise ValueError(f"`init_range` must be positive, got {self.init_range!r}.")
        if self.bidirectional and self.hidden_size % 2:
            raise ValueError(
                f"`hidden_size` must be even when `bidirectional=True` (each direction gets half), "
                f"got {self.hidden_size}."
            )
        if self.tie_word_embeddings and self.embedding_size != self.hidden_size:
            raise ValueError(
                f"`tie_word_embeddings=True` needs `embedding_size` == `hidden_size` (the output layer reads the "
                f"{self.hidden_size}-wide outputs), got {self.embedding_size} and {self.hidden_size}."
            )
        eos_ids = self.eos_token_id if isinstance(self.eos_token_id, list) else [self.eos_token_id]
        for name, values in (
            ("pad_token_id", [self.pad_token_id]),
            ("bos_token_id", [self.bos_token_id]),
            ("eos_token_id", eos_ids),
        ):
            for value in values:
                if value is not None and not 0 <= value < self.vocab_size:
                    raise ValueError(f"`{name}` must be None or an id in [0, {self.vocab_size}), got {value!r}.")


__all__ = ["LSTMConfig"]
