"""`pipeline("translation")` for encoder-decoder models, as transformers 4's `TranslationPipeline` behaved.

transformers 5 removed the task. `import hf_rnn` registers this class for it; a saved folder names it in config.json's
`custom_pipelines` (`CUSTOM_PIPELINES`) and carries this file, so `pipeline("translation", model=folder,
trust_remote_code=True)` finds it where hf_rnn is not installed. Self-contained, since it travels as remote code.

Inputs and outputs follow transformers 4:

* a string gives `[{"translation_text": ...}]`, one dict per returned sequence (`num_return_sequences`);
* a list of strings gives a flat list of such dicts (a list of lists when a sentence returns several), `[]` gives
  `[]`; `batch_size=n` translates n sentences per `generate()` call;
* `src_lang` / `tgt_lang` reach tokenizers that build translation inputs (multilingual ones) and are ignored by
  single-pair tokenizers like ours; `truncation` is passed to the tokenizer;
* `return_tensors=True` gives `translation_token_ids` instead of the text (both with `return_text=True`);
* every other keyword goes to `generate()` (`num_beams`, `max_new_tokens`, ...).

Two differences, on purpose: an empty or whitespace-only input is translated to `""` without calling the model (there
is nothing to translate, and a model fed only `</s>` invents a sentence); and the pipeline sets no length limit of its
own (transformers 4 added `max_new_tokens=256`): the model's generation config decides, and its warnings pass through.
"""

from typing import Any

import torch
from transformers import AutoModelForSeq2SeqLM, Pipeline

# What config.json's `custom_pipelines` records for a folder carrying this file (the JSON form of `_registered_impl`).
CUSTOM_PIPELINES = {
    "translation": {
        "impl": "pipeline_translation.TranslationPipeline",
        "pt": ["AutoModelForSeq2SeqLM"],
        "type": "text",
    }
}


class TranslationPipeline(Pipeline):
    """Text in, `[{"translation_text": ...}]` out (see the module docstring for inputs, options and outputs)."""

    _pipeline_calls_generate = True
    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = False
    # Optional for the factory, so a folder without tokenizer files reaches the one clear error in __init__.
    _load_tokenizer = None
    _default_generation_config = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.tokenizer is None:
            raise ValueError(
                "The translation pipeline needs the model's tokenizer and none was found: save it next to the model "
                "(`tokenizer.save_pretrained(folder)`) or pass `tokenizer=`."
            )
        if not getattr(self.model.config, "is_encoder_decoder", False):
            raise ValueError(
                f"The translation pipeline needs an encoder-decoder model, got {type(self.model).__name__}."
            )

    def __call__(self, inputs: str | list[str], *args, **kwargs) -> list[dict[str, Any]] | list[list[dict]]:
        if isinstance(inputs, (list, tuple)):
            if not inputs:
                return []
            results = super().__call__(list(inputs), *args, **kwargs)
            if all(isinstance(text, str) for text in inputs) and all(len(result) == 1 for result in results):
                return [result[0] for result in results]
            return results
        return super().__call__(inputs, *args, **kwargs)

    def _sanitize_parameters(
        self,
        src_lang: str | None = None,
        tgt_lang: str | None = None,
        truncation: Any = None,
        return_text: bool | None = None,
        return_tensors: bool | None = None,
        clean_up_tokenization_spaces: bool | None = None,
        **generate_kwargs: Any,
    ) -> tuple[dict, dict, dict]:
        preprocess_params = {
            name: value
            for name, value in (("src_lang", src_lang), ("tgt_lang", tgt_lang), ("truncation", truncation))
            if value is not None
        }
        postprocess_params = {}
        if return_tensors is not None:
            postprocess_params["return_tensors"] = bool(return_tensors)
            postprocess_params["return_text"] = not return_tensors
        if return_text is not None:
            postprocess_params["return_text"] = bool(return_text)
        if postprocess_params and not any(postprocess_params.values()):
            raise ValueError("`return_text=False` without `return_tensors=True` leaves nothing to return.")
        if clean_up_tokenization_spaces is not None:
            postprocess_params["clean_up_tokenization_spaces"] = clean_up_tokenization_spaces
        return preprocess_params, generate_kwargs, postprocess_params

    def preprocess(
        self, text: str, truncation: Any = False, src_lang: str | None = None, tgt_lang: str | None = None
    ) -> dict[str, torch.Tensor]:
        if not isinstance(text, str):
            raise ValueError(
                f"The translation pipeline takes text (a string or a list of strings), got {type(text).__name__}."
            )
        if getattr(self.tokenizer, "_build_translation_inputs", None):
            encoded = self.tokenizer._build_translation_inputs(
                text, return_tensors="pt", truncation=truncation, src_lang=src_lang, tgt_lang=tgt_lang
            )
        else:
            encoded = self.tokenizer(text, return_tensors="pt", truncation=truncation)
        return {
            "input_ids": encoded["input_ids"],
            "attention_mask": encoded["attention_mask"],
            "blank": torch.tensor([not text.strip()]),
        }

    def _forward(self, model_inputs: dict[str, torch.Tensor], **generate_kwargs: Any) -> dict[str, torch.Tensor]:
        blank = model_inputs.pop("blank")
        generate_kwargs = self._prepare_generate_kwargs(generate_kwargs)
        rows = (~blank).nonzero().squeeze(1)
        if len(rows) == 0:
            config = generate_kwargs.get("generation_config") or self.model.generation_config
            per_input = generate_kwargs.get("num_return_sequences") or config.num_return_sequences or 1
            return {"output_ids": torch.zeros(len(blank), per_input, 0, dtype=torch.long), "blank": blank}
        output = self.model.generate(**{name: value[rows] for name, value in model_inputs.items()}, **generate_kwargs)
        output = output.reshape(len(rows), -1, output.shape[-1])  # (sentences, returned per sentence, length)
        output_ids = output.new_full((len(blank), *output.shape[1:]), self.tokenizer.pad_token_id or 0)
        output_ids[rows] = output
        return {"output_ids": output_ids, "blank": blank}

    def postprocess(
        self,
        model_outputs: dict[str, torch.Tensor],
        return_text: bool = True,
        return_tensors: bool = False,
        clean_up_tokenization_spaces: bool = False,
    ) -> list[dict[str, Any]]:
        blank = bool(model_outputs["blank"][0])
        records = []
        for ids in model_outputs["output_ids"][0]:
            record: dict[str, Any] = {}
            if return_tensors:
                record["translation_token_ids"] = ids[:0] if blank else ids
            if return_text:
                record["translation_text"] = (
                    ""
                    if blank
                    else self.tokenizer.decode(
                        ids, skip_special_tokens=True, clean_up_tokenization_spaces=clean_up_tokenization_spaces
                    )
                )
            records.append(record)
        return records


# So that `save_pretrained` records and copies this class wherever it runs, registered with hf_rnn or not.
TranslationPipeline._registered_impl = {
    "translation": {"impl": TranslationPipeline, "pt": (AutoModelForSeq2SeqLM,), "type": "text"}
}

__all__ = ["CUSTOM_PIPELINES", "TranslationPipeline"]
