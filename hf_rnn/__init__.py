"""hf-rnn: recurrent encoder-decoders as first-class Hugging Face models.

Importing the package registers every model with the Auto classes (and the translation
pipeline), so `AutoModelForSeq2SeqLM.from_pretrained(dir)` works without remote code.
"""

from transformers import AutoConfig, AutoModel, AutoModelForSeq2SeqLM
from transformers.pipelines import PIPELINE_REGISTRY

from .translator import (
    LSTMSeq2SeqConfig,
    LSTMSeq2SeqForConditionalGeneration,
    LSTMSeq2SeqModel,
    TranslationPipeline,
)

__version__ = "0.1.0"

AutoConfig.register(LSTMSeq2SeqConfig.model_type, LSTMSeq2SeqConfig, exist_ok=True)
AutoModel.register(LSTMSeq2SeqConfig, LSTMSeq2SeqModel, exist_ok=True)
AutoModelForSeq2SeqLM.register(LSTMSeq2SeqConfig, LSTMSeq2SeqForConditionalGeneration, exist_ok=True)
# Saving writes the code and `auto_map`, so saved folders load with trust_remote_code anywhere.
LSTMSeq2SeqConfig.register_for_auto_class()
LSTMSeq2SeqModel.register_for_auto_class("AutoModel")
LSTMSeq2SeqForConditionalGeneration.register_for_auto_class("AutoModelForSeq2SeqLM")
PIPELINE_REGISTRY.register_pipeline(
    "translation", pipeline_class=TranslationPipeline, pt_model=AutoModelForSeq2SeqLM, type="text"
)

__all__ = [
    "LSTMSeq2SeqConfig",
    "LSTMSeq2SeqForConditionalGeneration",
    "LSTMSeq2SeqModel",
    "TranslationPipeline",
]
