"""The recurrent encoder-only family (model_type `lstm`): a text classifier and a character-level language model."""

from .configuration_lstm import LSTMConfig
from .modeling_lstm import (
    LSTMCache,
    LSTMCausalLMOutput,
    LSTMForCausalLM,
    LSTMForSequenceClassification,
    LSTMModel,
    LSTMModelOutput,
    LSTMPreTrainedModel,
)

__all__ = [
    "LSTMCache",
    "LSTMCausalLMOutput",
    "LSTMConfig",
    "LSTMForCausalLM",
    "LSTMForSequenceClassification",
    "LSTMModel",
    "LSTMModelOutput",
    "LSTMPreTrainedModel",
]
