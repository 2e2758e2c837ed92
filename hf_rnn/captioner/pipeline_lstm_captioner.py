"""`pipeline("image-text-to-text")` (alias `"image-to-text"`) for the keyword captioner: the prompt is optional.

transformers 5's `ImageTextToTextPipeline` requires `text`; a keyword captioner needs none. With this class
`captioner(image)` gives `[{"input_text": "", "generated_text": "evening, warm, sun"}]`, and `captioner([images])`
one such list per image (batched with `batch_size`); `text="evening"` still makes the decoder continue after that
keyword. Images go to the model's processor as given, so an unreadable file is reported by its name.

`import hf_rnn` makes this the class of the `image-text-to-text` task, for keyword captioners only: for any other
model constructing it gives transformers' own `ImageTextToTextPipeline`. A saved folder names it in config.json's
`custom_pipelines` (`CUSTOM_PIPELINES`, both task names) and carries this file, so
`pipeline("image-to-text", model=folder, trust_remote_code=True)` uses it where hf_rnn is not installed.
Self-contained, since it travels as remote code.
"""

import os
from typing import Any

from transformers import AutoModelForImageTextToText, ImageTextToTextPipeline, Pipeline

MODEL_TYPE = "lstm_captioner"
_ENTRY = {
    "impl": "pipeline_lstm_captioner.LSTMCaptionerPipeline",
    "pt": ["AutoModelForImageTextToText"],
    "type": "multimodal",
}
# What config.json's `custom_pipelines` records for a folder carrying this file (the JSON form of `_registered_impl`).
CUSTOM_PIPELINES = {"image-text-to-text": _ENTRY, "image-to-text": _ENTRY}


class LSTMCaptionerPipeline(ImageTextToTextPipeline):
    """`ImageTextToTextPipeline` whose prompt defaults to none (see the module docstring)."""

    def __new__(cls, model: Any = None, *args, **kwargs):
        if getattr(getattr(model, "config", None), "model_type", None) != MODEL_TYPE:
            # Registered for the whole task in-process: every other model keeps transformers' own class.
            return ImageTextToTextPipeline(model, *args, **kwargs)
        return super().__new__(cls)

    def __call__(self, images: Any = None, text: str | list[str] | None = None, **kwargs) -> list:
        if images is None:
            raise ValueError(
                "The keyword captioner describes images: pass `images` (a path, URL or image, or a list)."
            )
        if text is not None:
            return super().__call__(images, text=text, **kwargs)
        if isinstance(images, (list, tuple)):
            # Straight to the base Pipeline: the parent would read a list of dicts as a chat.
            prompts = [{"images": image, "text": ""} for image in images]
            return Pipeline.__call__(self, prompts, **kwargs) if prompts else []
        return super().__call__(images, text="", **kwargs)

    def preprocess(self, inputs: dict, **processing_kwargs) -> dict:
        # Images go to the processor as given: it opens paths itself and names an unreadable file.
        model_inputs = self.processor(images=inputs["images"], text=inputs["text"], return_tensors="pt")
        model_inputs = model_inputs.to(dtype=self.dtype)
        model_inputs["text"] = inputs["text"]
        return model_inputs

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs) -> None:
        """The base class saves the model, tokenizer and image processor; the processor ties them together."""
        super().save_pretrained(save_directory, **kwargs)
        self.processor.save_pretrained(save_directory, **kwargs)


# So that `save_pretrained` records and copies this class wherever it runs, registered with hf_rnn or not.
LSTMCaptionerPipeline._registered_impl = {
    task: {"impl": LSTMCaptionerPipeline, "pt": (AutoModelForImageTextToText,), "type": "multimodal"}
    for task in CUSTOM_PIPELINES
}

__all__ = ["CUSTOM_PIPELINES", "LSTMCaptionerPipeline"]
