"""Hub model cards (README.md with YAML metadata) for trained hf-rnn models.

The metadata is built with huggingface_hub's `ModelCardData`, so the Hub shows the
languages, license, datasets, pipeline widget and a model-index of evaluation results.
"""

from dataclasses import dataclass, field

from huggingface_hub import EvalResult, ModelCard, ModelCardData


@dataclass
class CardInfo:
    """Everything a card says; filled in by the training script."""

    model_name: str
    pipeline_tag: str  # "translation" | "image-to-text"
    auto_class: str  # the Auto class the usage snippet loads
    languages: list[str]
    license: str
    dataset_id: str
    dataset_name: str
    eval_split: str | None  # None: trained without held-out data, so no results to report
    metrics: dict[str, float]
    hyperparameters: dict[str, object]
    log_history: list[dict]
    example_input: str
    description: str
    limitations: list[str]
    tags: list[str] = field(default_factory=list)


METRIC_NAMES = {
    "bleu": "BLEU",
    "chrf": "chrF",
    "keyword_f1": "Keyword F1 (micro)",
    "keyword_precision": "Keyword precision",
    "keyword_recall": "Keyword recall",
    "exact_set_match": "Exact keyword-set match",
}


def build_model_card(info: CardInfo, repo_id: str) -> ModelCard:
    """`repo_id` appears in the usage snippet: a Hub id, or the local folder for a model kept on disk."""
    task_type = "translation" if info.pipeline_tag == "translation" else "image-to-text"
    eval_results = [
        EvalResult(
            task_type=task_type,
            dataset_type=info.dataset_id,
            dataset_name=info.dataset_name,
            dataset_split=info.eval_split,
            metric_type=key,
            metric_name=METRIC_NAMES[key],
            metric_value=round(float(value), 4),
        )
        for key, value in info.metrics.items()
        if key in METRIC_NAMES and info.eval_split is not None
    ]
    data = ModelCardData(
        language=info.languages or None,
        license=info.license,
        library_name="transformers",
        pipeline_tag=info.pipeline_tag,
        tags=["hf-rnn", "lstm", "recurrent", *info.tags],
        datasets=[info.dataset_id],
        model_name=info.model_name,
        eval_results=eval_results or None,
    )
    body = "\n".join(
        [
            f"# {info.model_name}",
            "",
            info.description,
            "",
            "## Usage",
            "",
            "```python",
            _usage_snippet(info, repo_id),
            "```",
            "",
            "## Evaluation",
            "",
            *_evaluation_lines(info),
            "",
            "## Training hyperparameters",
            "",
            "| name | value |",
            "|---|---|",
            *[f"| {name} | {value} |" for name, value in info.hyperparameters.items()],
            "",
            "## Training loss",
            "",
            _loss_table(info.log_history),
            "",
            "## Limitations",
            "",
            *[f"- {item}" for item in info.limitations],
            "",
            "Trained with [hf-rnn](https://github.com/hf-rnn/hf-rnn): recurrent encoder-decoders for the Hugging Face "
            "stack.",
            "",
        ]
    )
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}")


def _evaluation_lines(info: CardInfo) -> list[str]:
    if info.eval_split is None:
        return ["Not evaluated: the training data had no validation or test split."]
    return [
        f"On the `{info.eval_split}` split of {info.dataset_name}:",
        "",
        "| metric | value |",
        "|---|---|",
        *[f"| {METRIC_NAMES[k]} | {float(v):.4g} |" for k, v in info.metrics.items() if k in METRIC_NAMES],
    ]


def _usage_snippet(info: CardInfo, repo_id: str) -> str:
    if info.pipeline_tag == "translation":
        return "\n".join(
            [
                "from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, pipeline",
                "",
                f'model = AutoModelForSeq2SeqLM.from_pretrained("{repo_id}", trust_remote_code=True)',
                f'tokenizer = AutoTokenizer.from_pretrained("{repo_id}", trust_remote_code=True)',
                f'inputs = tokenizer([{info.example_input!r}], return_tensors="pt")',
                "print(tokenizer.batch_decode(model.generate(**inputs, num_beams=5), skip_special_tokens=True))",
                "",
                "# or, as a pipeline (transformers 5 has no built-in translation task; this model brings its own):",
                f'translator = pipeline("translation", model="{repo_id}", trust_remote_code=True)',
                f"print(translator({info.example_input!r}))",
            ]
        )
    return "\n".join(
        [
            "from PIL import Image",
            "from transformers import AutoModelForImageTextToText, AutoProcessor, pipeline",
            "",
            f'model = AutoModelForImageTextToText.from_pretrained("{repo_id}", trust_remote_code=True)',
            f'processor = AutoProcessor.from_pretrained("{repo_id}", trust_remote_code=True)',
            f'image = Image.open("{info.example_input}")',
            'inputs = processor(images=image, return_tensors="pt")',
            "print(processor.batch_decode(model.generate(**inputs), skip_special_tokens=True))",
            "",
            '# or, as a pipeline ("image-to-text" is an alias of this task):',
            f'captioner = pipeline("image-text-to-text", model="{repo_id}", trust_remote_code=True)',
            'print(captioner(images=image, text=""))',
        ]
    )


def _loss_table(log_history: list[dict]) -> str:
    """One row per logging step: training loss, and the evaluation figures logged at that step if any."""
    rows: dict[int, dict] = {}
    for entry in log_history:
        if "step" not in entry:
            continue
        row = rows.setdefault(entry["step"], {"epoch": entry.get("epoch")})
        for key in ("loss", "eval_loss", "eval_bleu", "eval_chrf", "eval_keyword_f1"):
            if key in entry:
                row[key] = entry[key]
    if not rows:
        return "No losses were logged."
    columns = [
        c
        for c in ("loss", "eval_loss", "eval_bleu", "eval_chrf", "eval_keyword_f1")
        if any(c in r for r in rows.values())
    ]
    lines = ["| step | epoch | " + " | ".join(columns) + " |", "|---|---|" + "---|" * len(columns)]
    for step, row in sorted(rows.items()):
        if not any(c in row for c in columns):
            continue
        epoch = f"{row['epoch']:.2f}" if row.get("epoch") is not None else ""
        cells = [f"{row[c]:.4f}" if c in row else "" for c in columns]
        lines.append(f"| {step} | {epoch} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


__all__ = ["CardInfo", "build_model_card"]
