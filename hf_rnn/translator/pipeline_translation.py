"""A `translation` pipeline for encoder-decoder models.

transformers 5 removed `pipeline("translation")`. This class restores it for our models
(and any seq2seq model with `generate`): saved beside a model it is recorded under
`custom_pipelines`, so `pipeline("translation", model=dir, trust_remote_code=True)`
finds it. Self-contained because it travels as remote code.
"""

from typing import Any

import torch
from transformers import Pipeline


class TranslationPipeline(Pipeline):
    """Text in, `[{"translation_text": ...}]` out; every generate() keyword passes through."""

    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = False
    _load_tokenizer = True

    def _sanitize_parameters(
        self,
        truncation: bool | None = None,
        max_source_length: int | None = None,
        skip_special_tokens: bool | None = None,
        clean_up_tokenization_spaces: bool | None = None,
        **generate_kwargs: Any,
    ) -> tuple[dict, dict, dict]:
        preprocess_params = {}
        if truncation is not None:
            preprocess_params["truncation"] = truncation
        if max_source_length is not None:
            preprocess_params["max_length"] = max_source_length
            preprocess_params.setdefault("truncation", True)
        postprocess_params = {}
        if skip_special_tokens is not None:
            postprocess_params["skip_special_tokens"] = skip_special_tokens
        if clean_up_tokenization_spaces is not None:
            postprocess_params["clean_up_tokenization_spaces"] = clean_up_tokenization_spaces
        return preprocess_params, generate_kwargs, postprocess_params

    def preprocess(self, text: str, truncation: bool = False, max_length: int | None = None) -> dict:
        if not isinstance(text, str):
            raise ValueError(
                f"The translation pipeline takes text (a string or a list of strings), got {type(text).__name__}."
            )
        encoded = self.tokenizer(text, return_tensors="pt", truncation=truncation, max_length=max_length)
        return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}

    def _forward(self, model_inputs: dict, **generate_kwargs: Any) -> dict:
        batch_size = model_inputs["input_ids"].shape[0]
        output_ids = self.model.generate(**model_inputs, **generate_kwargs)
        return {"output_ids": output_ids.reshape(batch_size, -1, output_ids.shape[-1])}

    def postprocess(
        self, model_outputs: dict, skip_special_tokens: bool = True, clean_up_tokenization_spaces: bool = False
    ) -> list[dict[str, str]]:
        sequences: torch.Tensor = model_outputs["output_ids"][0]
        return [
            {
                "translation_text": self.tokenizer.decode(
                    ids,
                    skip_special_tokens=skip_special_tokens,
                    clean_up_tokenization_spaces=clean_up_tokenization_spaces,
                )
            }
            for ids in sequences
        ]


__all__ = ["TranslationPipeline"]
