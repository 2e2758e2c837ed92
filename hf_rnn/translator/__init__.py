"""The LSTM encoder-decoder translator (model_type `lstm_seq2seq`)."""

from .configuration_lstm_seq2seq import LSTMSeq2SeqConfig
from .modeling_lstm_seq2seq import (
    LSTMSeq2SeqCache,
    LSTMSeq2SeqEncoderOutput,
    LSTMSeq2SeqForConditionalGeneration,
    LSTMSeq2SeqModel,
    LSTMSeq2SeqPreTrainedModel,
)
from .pipeline_translation import TranslationPipeline

__all__ = [
    "LSTMSeq2SeqCache",
    "LSTMSeq2SeqConfig",
    "LSTMSeq2SeqEncoderOutput",
    "LSTMSeq2SeqForConditionalGeneration",
    "LSTMSeq2SeqModel",
    "LSTMSeq2SeqPreTrainedModel",
    "TranslationPipeline",
]
