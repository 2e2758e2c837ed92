"""Train the image-to-keywords captioner with the same Trainer, card and Hub path as the translator."""

import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from transformers import AutoModelForImageTextToText, AutoProcessor, EvalPrediction, set_seed

from ..captioner import (
    LSTMCaptionerConfig,
    LSTMCaptionerForConditionalGeneration,
    LSTMCaptionerImageProcessor,
    LSTMCaptionerProcessor,
    build_keyword_tokenizer,
)
from ..cards.model_card import CardInfo, build_model_card
from ..data.captioning import LANDSCAPES, check_images, check_keywords, decode_image, load_captioning_data
from .arguments import DataArguments, ModelArguments, TrainingArguments
from .trainer import RecurrentSeq2SeqTrainer, push_output_folder, train_and_evaluate

logger = logging.getLogger(__name__)


class KeywordCollator:
    """Decodes images and builds `pixel_values` + `labels` per batch (images are not cached as tensors)."""

    def __init__(self, processor: LSTMCaptionerProcessor):
        self.processor = processor

    def __call__(self, examples: list[dict]) -> dict:
        images = [decode_image(example["image"]) for example in examples]
        return dict(self.processor(images=images, keywords=[e["keywords"] for e in examples], return_tensors="pt"))


def keyword_metrics(processor: LSTMCaptionerProcessor) -> Callable[[EvalPrediction], dict[str, float]]:
    """Micro precision/recall/F1 over predicted vs true keyword sets, and exact-set match."""

    def keyword_sets(ids: np.ndarray) -> list[set[str]]:
        ids = np.where(ids < 0, processor.tokenizer.pad_token_id, ids)
        return [set(keywords) for keywords in processor.batch_decode(ids)]

    def compute(prediction: EvalPrediction) -> dict[str, float]:
        predictions = (
            prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        )
        predicted, expected = keyword_sets(predictions), keyword_sets(prediction.label_ids)
        hits = sum(len(p & e) for p, e in zip(predicted, expected))
        n_predicted, n_expected = sum(map(len, predicted)), sum(map(len, expected))
        precision = hits / n_predicted if n_predicted else 0.0
        recall = hits / n_expected if n_expected else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return {
            "keyword_precision": precision,
            "keyword_recall": recall,
            "keyword_f1": f1,
            "exact_set_match": float(np.mean([p == e for p, e in zip(predicted, expected)])),
            "num_images": float(len(predicted)),
        }

    return compute


def run_captioning(model_args: ModelArguments, data_args: DataArguments, training_args: TrainingArguments) -> dict:
    started = time.time()
    set_seed(training_args.seed)
    output_dir = Path(training_args.output_dir)
    training_args.remove_unused_columns = False  # the collator needs the raw `image` and `keywords` columns

    with training_args.main_process_first(desc="loading images"):
        data = load_captioning_data(
            data_args.dataset_name,
            data_args.dataset_config_name,
            data_dir=data_args.data_dir,
            splits=data_args.split_names,
            image_column=data_args.image_column,
            keywords_column=data_args.keywords_column,
            landscape_sizes=data_args.synthetic_sizes,
            image_size=model_args.image_size,
            seed=training_args.data_seed or 0,
        )
        data = data_args.select_samples(data)
        if data_args.dataset_name != LANDSCAPES or data_args.data_dir:
            check_images(data, num_proc=data_args.preprocessing_num_workers)
        keywords = check_keywords(data)

    processor, model = _processor_and_model(model_args, keywords)
    n_params = sum(p.numel() for p in model.parameters())
    trainer = RecurrentSeq2SeqTrainer(
        model=model,
        args=training_args,
        train_dataset=data.get("train"),
        eval_dataset=data.get("validation"),
        processing_class=processor,
        data_collator=KeywordCollator(processor),
        compute_metrics=keyword_metrics(processor),
    )
    metrics, eval_split = train_and_evaluate(trainer, data, started)

    if training_args.should_save:
        processor.save_pretrained(output_dir)
        example = output_dir / "example.png"
        decode_image(data[eval_split or "train"][0]["image"]).save(example)
        card = _card(model_args, data_args, training_args, trainer, metrics, eval_split, n_params)
        build_model_card(card, training_args.hub_model_id or str(output_dir)).save(output_dir / "README.md")
    if training_args.push_to_hub and training_args.should_save:
        push_output_folder(trainer, output_dir)
    if training_args.should_save:
        _print_examples(
            trainer.model, processor, data[eval_split or "train"], data_args.num_examples_to_print, output_dir, metrics
        )
    return metrics


def _processor_and_model(model_args: ModelArguments, keywords: list[str]):
    if model_args.model_name_or_path:
        processor = AutoProcessor.from_pretrained(model_args.model_name_or_path)
        return processor, AutoModelForImageTextToText.from_pretrained(model_args.model_name_or_path)
    tokenizer = build_keyword_tokenizer(keywords)
    size = {"height": model_args.image_size, "width": model_args.image_size}
    config_kwargs = dict(
        vocab_size=len(tokenizer),
        embedding_size=model_args.embedding_size,
        hidden_size=model_args.hidden_size,
        attention_size=model_args.hidden_size,
        dropout=model_args.dropout,
        max_keywords=min(len(keywords), 20),
        init_range=model_args.init_range,
        image_size=model_args.image_size,
    )
    if model_args.vision_model_name:
        model = LSTMCaptionerForConditionalGeneration.from_vision_pretrained(
            model_args.vision_model_name, **config_kwargs
        )
    else:
        channels = [int(c) for c in model_args.cnn_channels.split(",")]
        model = LSTMCaptionerForConditionalGeneration(LSTMCaptionerConfig(cnn_channels=channels, **config_kwargs))
    processor = LSTMCaptionerProcessor(LSTMCaptionerImageProcessor(size=size), tokenizer)
    return processor, model


def _card(model_args, data_args, training_args, trainer, metrics, eval_split, n_params) -> CardInfo:
    prefix = "test" if eval_split == "test" else "eval"
    dataset_id = data_args.dataset_citation_name or (
        "hf-rnn/landscapes"
        if data_args.dataset_name == LANDSCAPES and not data_args.data_dir
        else data_args.dataset_name
        if not data_args.data_dir
        else "local image folder"
    )
    config = trainer.model.config
    backbone = config.vision_config.model_type if config.vision_config is not None else f"CNN {config.cnn_channels}"
    return CardInfo(
        model_name=Path(training_args.output_dir).name,
        pipeline_tag="image-to-text",
        auto_class="AutoModelForImageTextToText",
        languages=["en"],
        license=model_args.license,
        dataset_id=dataset_id,
        dataset_name=dataset_id,
        eval_split=eval_split,
        metrics={k.removeprefix(f"{prefix}_"): v for k, v in metrics.items() if k.startswith(f"{prefix}_")},
        hyperparameters={
            "vision encoder": backbone,
            "parameters": f"{n_params:,}",
            "embedding / hidden size": f"{config.embedding_size} / {config.hidden_size}",
            "keywords": config.vocab_size - 4,
            "image size": config.image_size,
            "dropout": config.dropout,
            "learning rate": training_args.learning_rate,
            "batch size (per device)": training_args.per_device_train_batch_size,
            "processes": training_args.world_size,
            "steps": trainer.state.global_step,
            "epochs": round(trainer.state.epoch or 0, 2),
            "seed": training_args.seed,
            "training time (s)": round(metrics.get("train_runtime", 0.0), 1),
        },
        log_history=trainer.state.log_history,
        example_input="example.png",
        description=(
            f"An image-to-keywords captioner: a {backbone} image encoder and an LSTM decoder with soft attention "
            f"(Show, Attend and Tell) that lists the keywords of a picture, each at most once; trained with hf-rnn on "
            f"{dataset_id}."
        ),
        limitations=[
            "Knows only the keywords of its training data, and only images that resemble it.",
            *(
                ["The landscapes are procedurally drawn cartoons: the model does not describe photographs."]
                if dataset_id == "hf-rnn/landscapes"
                else []
            ),
        ],
        tags=["image-to-text", "keywords", "captioning"],
    )


def _print_examples(model, processor, dataset, count, output_dir, metrics) -> None:
    import torch

    rows = dataset.select(range(min(count, len(dataset))))
    inputs = processor(images=[decode_image(r["image"]) for r in rows], return_tensors="pt").to(model.device)
    with torch.inference_mode():
        predicted = processor.batch_decode(model.generate(**inputs))
    print("\nExample keywords (predicted | true):")
    for keywords, row in zip(predicted, rows):
        print(f"  {', '.join(keywords)}  |  {', '.join(row['keywords'])}")
    scores = {k: round(v, 3) for k, v in metrics.items() if k.endswith(("keyword_f1", "exact_set_match"))}
    print(f"\nScores: {scores}")
    print(f"Model, processor and model card saved to {output_dir.resolve()}")


__all__ = ["KeywordCollator", "keyword_metrics", "run_captioning"]
