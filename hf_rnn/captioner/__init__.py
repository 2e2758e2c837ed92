"""The LSTM image-to-keywords captioner (model_type `lstm_captioner`)."""

from .configuration_lstm_captioner import LSTMCaptionerConfig
from .image_processing_lstm_captioner import LSTMCaptionerImageProcessor
from .modeling_lstm_captioner import (
    LSTMCaptionerCache,
    LSTMCaptionerEncoderOutput,
    LSTMCaptionerForConditionalGeneration,
    LSTMCaptionerModel,
    LSTMCaptionerPreTrainedModel,
)
from .pipeline_lstm_captioner import LSTMCaptionerPipeline
from .processing_lstm_captioner import LSTMCaptionerProcessor, build_keyword_tokenizer, normalize_keyword

__all__ = [
    "LSTMCaptionerCache",
    "LSTMCaptionerConfig",
    "LSTMCaptionerEncoderOutput",
    "LSTMCaptionerForConditionalGeneration",
    "LSTMCaptionerImageProcessor",
    "LSTMCaptionerModel",
    "LSTMCaptionerPipeline",
    "LSTMCaptionerPreTrainedModel",
    "LSTMCaptionerProcessor",
    "build_keyword_tokenizer",
    "normalize_keyword",
]
