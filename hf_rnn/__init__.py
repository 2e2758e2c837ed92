"""hf-rnn: recurrent encoder-decoders as first-class Hugging Face models.

Importing the package registers every model with the Auto classes and its pipelines with `pipeline()`, so
`AutoModelForSeq2SeqLM.from_pretrained(dir)` and `pipeline("translation", model=dir)` work without remote code.

Imported before torch (`python -m hf_rnn.translate`, `hf-rnn-train`), it also sets `MKL_DISABLE_FAST_MM=1` unless the
environment already sets it: MKL otherwise keeps its matrix products' packing buffers for the life of the process,
about 37 MiB of beam-5 decoding's peak memory, and reads the setting only when torch loads it (benchmarks/README.md).
"""

import os
import sys

if "torch" not in sys.modules:
    os.environ.setdefault("MKL_DISABLE_FAST_MM", "1")

from transformers import (  # after the MKL setting, which must precede torch
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForImageTextToText,
    AutoModelForSeq2SeqLM,
    AutoModelForSequenceClassification,
    AutoProcessor,
)

from .captioner import (
    LSTMCaptionerConfig,
    LSTMCaptionerForConditionalGeneration,
    LSTMCaptionerImageProcessor,
    LSTMCaptionerModel,
    LSTMCaptionerPipeline,
    LSTMCaptionerProcessor,
    build_keyword_tokenizer,
)
from .lstm import LSTMConfig, LSTMForCausalLM, LSTMForSequenceClassification, LSTMModel
from .pipelines import register_pipelines
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

AutoConfig.register(LSTMCaptionerConfig.model_type, LSTMCaptionerConfig, exist_ok=True)
AutoModel.register(LSTMCaptionerConfig, LSTMCaptionerModel, exist_ok=True)
AutoModelForImageTextToText.register(LSTMCaptionerConfig, LSTMCaptionerForConditionalGeneration, exist_ok=True)
AutoImageProcessor.register(
    LSTMCaptionerConfig, image_processor_classes={"pil": LSTMCaptionerImageProcessor}, exist_ok=True
)
AutoProcessor.register(LSTMCaptionerConfig, LSTMCaptionerProcessor, exist_ok=True)
# Saving writes auto_map and copies the config/model/image-processor/processor code next to the files.
LSTMCaptionerConfig.register_for_auto_class()
LSTMCaptionerModel.register_for_auto_class("AutoModel")
LSTMCaptionerForConditionalGeneration.register_for_auto_class("AutoModelForImageTextToText")
LSTMCaptionerImageProcessor.register_for_auto_class("AutoImageProcessor")
LSTMCaptionerProcessor.register_for_auto_class("AutoProcessor")

AutoConfig.register(LSTMConfig.model_type, LSTMConfig, exist_ok=True)
AutoModel.register(LSTMConfig, LSTMModel, exist_ok=True)
AutoModelForSequenceClassification.register(LSTMConfig, LSTMForSequenceClassification, exist_ok=True)
AutoModelForCausalLM.register(LSTMConfig, LSTMForCausalLM, exist_ok=True)
# Saving writes auto_map and the config/model code, so saved folders load with trust_remote_code anywhere.
LSTMConfig.register_for_auto_class()
LSTMModel.register_for_auto_class("AutoModel")
LSTMForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")
LSTMForCausalLM.register_for_auto_class("AutoModelForCausalLM")

register_pipelines()

__all__ = [
    "LSTMCaptionerConfig",
    "LSTMCaptionerForConditionalGeneration",
    "LSTMCaptionerImageProcessor",
    "LSTMCaptionerModel",
    "LSTMCaptionerPipeline",
    "LSTMCaptionerProcessor",
    "LSTMConfig",
    "LSTMForCausalLM",
    "LSTMForSequenceClassification",
    "LSTMModel",
    "LSTMSeq2SeqConfig",
    "LSTMSeq2SeqForConditionalGeneration",
    "LSTMSeq2SeqModel",
    "TranslationPipeline",
    "build_keyword_tokenizer",
]
