"""Hub model cards (README.md with YAML metadata) for trained hf-rnn models.

The metadata is built with huggingface_hub's `ModelCardData`, so the Hub shows the languages, license,
datasets, pipeline widget and a model-index of evaluation results. A card states only what the run knows:
a `datasets:` entry only for a Hub dataset, the languages the data or the user named, limitations that
apply, metrics computed on raw references, and no local paths.
"""

import re
from dataclasses import dataclass, field

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from ..tasks.base import CardDetails

LOSS_COLUMNS = ("loss", "eval_loss")


@dataclass
class CardInfo:
    """Everything a card says: the task's details plus the run's data, figures and history."""

    model_name: str
    details: CardDetails
    license: str
    dataset_id: str | None  # a Hub dataset id, or None for local/embedded data
    dataset_description: str  # what the data were, in words (file names, sizes)
    eval_split: str | None  # None: trained without held-out data, so no results to report
    metrics: dict[str, float]
    training_hyperparameters: dict[str, object]
    log_history: list[dict]
    averaged_checkpoints: list[str] = field(default_factory=list)  # the model is their average (names, oldest first)


def build_model_card(info: CardInfo, repo_id: str) -> ModelCard:
    """`repo_id` appears in the usage snippet: a Hub id, or the folder name for a model kept on disk."""
    details = info.details
    eval_results = [
        EvalResult(
            task_type=details.pipeline_tag,
            dataset_type=info.dataset_id or "local",
            dataset_name=info.dataset_id or info.dataset_description,
            dataset_split=info.eval_split,
            metric_type=key,
            metric_name=name,
            metric_value=round(float(info.metrics[key]), 4),
        )
        for key, name in details.metric_names.items()
        if key in info.metrics and info.eval_split is not None
    ]
    data = ModelCardData(
        language=details.languages or None,
        license=info.license,
        library_name="transformers",
        pipeline_tag=details.pipeline_tag,
        tags=["hf-rnn", "recurrent", *details.tags],
        datasets=[info.dataset_id] if info.dataset_id else None,
        model_name=info.model_name,
        eval_results=eval_results or None,
        widget=details.widget,
    )
    body = [
        f"# {info.model_name}",
        "",
        details.description,
        "",
        *(averaging_lines(info.averaged_checkpoints) if info.averaged_checkpoints else []),
        "## Usage",
        "",
        "```python",
        details.usage.replace("{repo_id}", repo_id),
        "```",
        "",
        "## Evaluation",
        "",
        *_evaluation_lines(info),
        "",
        "## Training",
        "",
        f"Data: {info.dataset_description}.",
        "",
        "| hyperparameter | value |",
        "|---|---|",
        *[
            f"| {name} | {value} |"
            for name, value in {**details.hyperparameters, **info.training_hyperparameters}.items()
        ],
        "",
        "### Training loss",
        "",
        _loss_table(info.log_history, [f"eval_{key}" for key in details.metric_names]),
        "",
        "## Limitations",
        "",
        *[f"- {item}" for item in details.limitations],
        "",
        "Trained with [hf-rnn](https://github.com/hf-rnn/hf-rnn): recurrent networks for the Hugging Face stack.",
        "",
    ]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(body))


def averaging_lines(checkpoints: list[str]) -> list[str]:
    """The card section saying that the weights are an average, and of what."""
    names = ", ".join(f"`{name}`" for name in checkpoints)
    return [
        "## Checkpoint averaging",
        "",
        f"The weights are the element-wise mean of {len(checkpoints)} checkpoints: {names}. Floating-point "
        "parameters and buffers (e.g. BatchNorm running statistics) are averaged; integer buffers (BatchNorm's batch "
        "counters) are those of the last one.",
        "",
    ]


def averaged_model_card(
    base: ModelCard | None, checkpoints: list[str], model_name: str, pipeline_tag: str | None
) -> ModelCard:
    """The card of a checkpoint average made after training (`python -m hf_rnn.average`): the run's card `base`
    with the averaging section added, renamed to `model_name`, and its evaluation results moved out of the metadata
    (they were measured on another model: the run's final one); a short card when the run left none."""
    tag = "checkpoint-average"
    if base is None:
        data = ModelCardData(
            library_name="transformers", pipeline_tag=pipeline_tag, tags=["hf-rnn", tag], model_name=model_name
        )
        body = [f"# {model_name}", "", *averaging_lines(checkpoints), "## Evaluation", "", "Not evaluated.", ""]
        return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(body))
    data, old_name = base.data, base.data.model_name
    data.eval_results, data.model_name = None, model_name
    data.tags = [*(data.tags or []), tag]
    preamble, *sections = re.split(r"(?m)^(?=## )", base.text)
    if old_name:
        preamble = preamble.replace(f"# {old_name}", f"# {model_name}", 1)
    parts = [preamble.strip("\n") + "\n\n" + "\n".join(averaging_lines(checkpoints)) + "\n"]
    for section in sections:
        if section.startswith("## Evaluation"):
            measured = section.removeprefix("## Evaluation").strip("\n")
            section = (
                "## Evaluation\n\nThis average has not been evaluated. The run's card reported, for its final "
                f"model:\n\n{measured}\n\n"
            )
        elif section.startswith("## Usage") and old_name:
            section = section.replace(f'"{old_name}"', f'"{model_name}"')
        parts.append(section)
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "".join(parts))


def _evaluation_lines(info: CardInfo) -> list[str]:
    if info.eval_split is None:
        return ["Not evaluated: the training data had no validation or test split."]
    names = info.details.metric_names
    return [
        f"On the `{info.eval_split}` split of {info.dataset_id or info.dataset_description}:",
        "",
        "| metric | value |",
        "|---|---|",
        *[f"| {name} | {float(info.metrics[key]):.4g} |" for key, name in names.items() if key in info.metrics],
    ]


def _loss_table(log_history: list[dict], eval_columns: list[str]) -> str:
    """One row per logging step: training loss, and the evaluation figures logged at that step if any."""
    columns = [*LOSS_COLUMNS, *eval_columns]
    rows: dict[int, dict] = {}
    for entry in log_history:
        if "step" not in entry:
            continue
        row = rows.setdefault(entry["step"], {"epoch": entry.get("epoch")})
        row.update({key: entry[key] for key in columns if key in entry})
    columns = [c for c in columns if any(c in r for r in rows.values())]
    if not columns:
        return "No losses were logged."
    lines = ["| step | epoch | " + " | ".join(columns) + " |", "|---|---|" + "---|" * len(columns)]
    for step, row in sorted(rows.items()):
        if any(c in row for c in columns):
            epoch = f"{row['epoch']:.2f}" if row.get("epoch") is not None else ""
            cells = [f"{row[c]:.4f}" if c in row else "" for c in columns]
            lines.append(f"| {step} | {epoch} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


__all__ = ["CardInfo", "averaged_model_card", "averaging_lines", "build_model_card"]
