"""Character-level language modelling: running text → a character tokenizer → `LSTMForCausalLM`, trained with
truncated backpropagation through time the way char-rnn does it (Karpathy, 2015).

Data: plain-text files (`train_file: corpus.txt`, one document each), or json/jsonl/csv/tsv/parquet files or a
Hub dataset whose `text_column` holds one document per row. Without validation data, the last
`validation_fraction` of the training characters is held out (tiny Shakespeare's customary split: first 90 %
train, last 10 % validation).

Training. The split's documents become one token stream (`</s>` between documents), cut into S contiguous
streams, S = batch size × processes, each read from `<s>` and a zero state. Every batch holds the next
`block_size` tokens of each of its streams; the recurrent state after a batch is carried into the next one and
detached there (gradients stop at chunk borders, values carry on). No shuffling: row b of every batch continues
row b of the one before; a new epoch restarts every stream. The carried state is saved with each checkpoint so
that a resumed run computes what the uninterrupted one did.

Evaluation reads the held-out text the same way with the state carried, scoring every token once, and reports
nats per character (the summed loss over the characters of the raw text), bits per character (nats / ln 2) and
the per-token loss. At the end, samples are generated from `<s>` alone and from a prompt.
"""

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset, DatasetDict
from transformers import (
    AutoModelForCausalLM,
    TextGenerationPipeline,
    default_data_collator,
    set_seed,
)

from ..data.files import TEXT_COLUMN, Field, check_files_exist, file_identity, load_fields
from ..data.tokenization import train_char_tokenizer
from ..lstm import LSTMConfig, LSTMForCausalLM
from ..lstm.modeling_lstm import LSTMCache
from ..training.trainer import RecurrentSeq2SeqTrainer
from .base import CardDetails, Task

logger = logging.getLogger(__name__)


@dataclass
class LanguageModelingArguments:
    """The causal-lm task's own fields."""

    text_column: str = field(
        default="text", metadata={"help": "Column holding one document per row (not for .txt files)."}
    )
    validation_fraction: float = field(
        default=0.1,
        metadata={"help": "Without validation data: this last share of the training characters is held out."},
    )
    block_size: int = field(
        default=128, metadata={"help": "Tokens per chunk: how far back gradients reach (truncated BPTT length)."}
    )
    tokenizer_min_frequency: int = field(
        default=1, metadata={"help": "Characters seen fewer times in training are spelled in UTF-8 byte pieces."}
    )
    sample_prompt: str | None = field(
        default=None, metadata={"help": "Prompt of the printed sample (default: a line of the held-out text)."}
    )
    sample_length: int = field(default=300, metadata={"help": "Characters (tokens) per printed sample."})
    sample_temperature: float = field(default=0.8, metadata={"help": "Sampling temperature of the samples."})
    languages: list[str] | None = field(default=None, metadata={"help": "Language codes for the model card."})


class TruncatedBPTTTrainer(RecurrentSeq2SeqTrainer):
    """Carries the recurrent state from one batch to the next (training and evaluation apart) and saves the
    training state with every checkpoint.

    Each batch row says whether its stream starts there (`stream_start`): then the state is reset.
    """

    STATE_FILE = "recurrent_state_{}.pt"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._train_state: LSTMCache | None = None
        self._step_state: LSTMCache | None = None  # the state after the last optimizer step: what a checkpoint holds
        self._eval_state: LSTMCache | None = None

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = dict(inputs)
        starts = inputs.pop("stream_start")
        inputs["cache"] = None if bool(starts.any()) else self._train_state
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
        self._train_state = outputs["cache"].detach()
        if self.accelerator.sync_gradients:  # the last micro-batch of an optimizer step
            self._step_state = self._train_state
        return (loss, outputs) if return_outputs else loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """Returns no loss, and per row the summed nats and the number of scored tokens (metrics add them up)."""
        inputs = self._prepare_inputs(dict(inputs))
        starts, targets = inputs.pop("stream_start"), inputs.pop("shift_labels")
        cache = None if bool(starts.any()) else self._eval_state
        with torch.no_grad(), self.compute_loss_context_manager():
            outputs = model(**inputs, cache=cache, use_cache=True)
        self._eval_state = outputs["cache"]
        logits = outputs["logits"].float()  # (B, T, V)
        nats = torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets, ignore_index=-100, reduction="none")
        return None, nats.sum(dim=1), targets.ne(-100).sum(dim=1)

    def _save_rng_state(self, output_dir: str) -> None:
        # Trainer's hook for "what else a resumed run needs to continue exactly", one file per process.
        super()._save_rng_state(output_dir)
        if self._step_state is not None:
            state = {"hidden": self._step_state.hidden, "cell": self._step_state.cell}
            torch.save(state, Path(output_dir) / self.STATE_FILE.format(self.args.process_index))

    def _load_rng_state(self, checkpoint: str | None) -> None:
        super()._load_rng_state(checkpoint)
        if checkpoint is None:
            return
        path = Path(checkpoint) / self.STATE_FILE.format(self.args.process_index)
        if not path.is_file():
            logger.warning("%s has no %s: the resumed streams start from a zero state.", checkpoint, path.name)
            return
        state = torch.load(path, map_location=self.args.device, weights_only=True)
        self._train_state = self._step_state = LSTMCache(state["hidden"], state["cell"])


class LanguageModelingTask(Task):
    name = "causal-lm"
    arguments_class = LanguageModelingArguments
    config_class = LSTMConfig
    model_class = LSTMForCausalLM
    auto_model_class = AutoModelForCausalLM
    derived_config_fields = ("vocab_size", "pad_token_id", "bos_token_id", "eos_token_id")
    trainer_class = TruncatedBPTTTrainer

    def adjust_training_arguments(self, training) -> None:
        task = self.task_args
        if not 0 <= task.validation_fraction < 1:
            raise ValueError(f"`validation_fraction` must be in [0, 1), got {task.validation_fraction}.")
        if task.block_size < 1:
            raise ValueError(f"`block_size` must be a positive number of tokens, got {task.block_size}.")
        if training.n_gpu > 1:
            raise ValueError(
                "Truncated BPTT carries each stream's state across batches, which DataParallel's row split cannot "
                "follow: run one process per GPU (accelerate launch / torchrun) instead."
            )
        changes = {
            "predict_with_generate": False,  # scored by loss, not by generated text
            "remove_unused_columns": False,  # `shift_labels` and `stream_start` are no forward() arguments
            "train_sampling_strategy": "sequential",  # row b of a batch continues row b of the previous batch
            "label_smoothing_factor": 0.0,  # the loss is per-character nats: no smoothing
            "use_cache": True,  # the state after a chunk is the cache; Trainer writes this into model.config
        }
        for name, value in changes.items():
            if getattr(training, name) != value:
                logger.info("causal-lm: %s set to %r (was %r).", name, value, getattr(training, name))
                setattr(training, name, value)

    # -- data -------------------------------------------------------------------------------------------------

    def run_identity(self) -> dict:
        data, task, run = self.data_args, self.task_args, self.args
        if data.data_files:
            check_files_exist(data.data_files)
            source = {split: file_identity(path) for split, path in data.data_files.items()}
        else:
            source = {"dataset": data.dataset_name, "config": data.dataset_config_name, "splits": data.split_names}
        tokenizer = (
            run.tokenizer_name or run.model_name_or_path or {"char_min_frequency": task.tokenizer_min_frequency}
        )
        return {
            "data": source,
            "text_column": task.text_column,
            "validation_fraction": task.validation_fraction,
            "block_size": task.block_size,
            "tokenizer": tokenizer,
            "base_model": run.model_name_or_path,
        }

    def load_data(self) -> DatasetDict:
        data, task = self.data_args, self.task_args
        if not data.data_files and not data.dataset_name:
            raise ValueError("No data: give `train_file` (a .txt file, say), or `dataset_name`.")

        def fields(columns: list[str]) -> dict[str, Field]:
            column = TEXT_COLUMN if columns == [TEXT_COLUMN] else task.text_column  # a .txt file has only `text`
            if column not in columns:
                raise ValueError(f"has columns {columns}, not {column!r}: set `text_column`")
            return {"text": Field((column,))}

        raw = load_fields(
            fields,
            data_files=data.data_files,
            dataset_name=data.dataset_name,
            dataset_config_name=data.dataset_config_name,
            splits=data.split_names,
        )
        if "train" in raw and "validation" not in raw and task.validation_fraction > 0:
            train, validation = split_tail(list(raw["train"]["text"]), task.validation_fraction)
            raw = DatasetDict({**raw, "train": train, "validation": validation})
        self.raw = raw
        return raw

    def dataset_reference(self) -> tuple[str | None, str]:
        data, task = self.data_args, self.task_args
        sizes = ", ".join(f"{split} {sum(map(len, rows['text'])):,} characters" for split, rows in self.raw.items())
        held_out = (
            f"; validation: the last {task.validation_fraction:.0%} of the training text"
            if "validation" not in (data.data_files or {}) and task.validation_fraction > 0
            else ""
        )
        return self.files_or_hub_reference(sizes + held_out)

    # -- model ------------------------------------------------------------------------------------------------

    def build_processor(self, train: Dataset, output_dir: Path, reuse: bool, save: bool):
        if (tokenizer := self.given_tokenizer(output_dir, reuse)) is not None:
            return tokenizer
        tokenizer = train_char_tokenizer(train["text"], min_frequency=self.task_args.tokenizer_min_frequency)
        if save:
            tokenizer.save_pretrained(output_dir)
        return tokenizer

    def preprocess(self, data: DatasetDict, tokenizer) -> DatasetDict:
        """Each split as batches of chunks of parallel streams (see `stream_chunks`)."""
        training, block_size = self.training_args, self.task_args.block_size
        processes = max(1, training.world_size)
        features = {}
        for split, rows in data.items():
            ids = token_stream(rows["text"], tokenizer)
            streams = (training.train_batch_size if split == "train" else training.eval_batch_size) * processes
            features[split] = stream_chunks(
                ids, streams, block_size, tokenizer.bos_token_id, tokenizer.pad_token_id, whole=split != "train"
            )
            logger.info("%s: %s tokens in %d streams, %d chunks of %d", split, f"{len(ids):,}", streams,
                        len(features[split]) // streams, block_size)  # fmt: skip
        return DatasetDict(features)

    def build_model(self, tokenizer, config_overrides: dict) -> LSTMForCausalLM:
        config = LSTMConfig(
            **config_overrides,
            vocab_size=len(tokenizer),
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        model = LSTMForCausalLM(config)
        task = self.task_args
        # What `pipeline("text-generation", model=...)` does by default: a sample of sample_length characters.
        model.generation_config.update(
            do_sample=True, temperature=task.sample_temperature, top_k=0, max_new_tokens=task.sample_length
        )
        return model

    def data_collator(self, tokenizer, model):
        return default_data_collator

    def compute_metrics(self, tokenizer, references: Dataset):
        """Nats per character: the summed loss over the characters of the raw text (a token spelled in byte pieces,
        and a `</s>` between documents, count towards the character they belong to). Checks that every token of the
        split was scored exactly once."""
        texts = list(references["text"])
        characters = sum(map(len, texts))
        expected_tokens = len(token_stream(texts, tokenizer))

        def compute(prediction) -> dict[str, float]:
            nats = float(np.sum(prediction.predictions, dtype=np.float64))
            tokens = int(np.sum(prediction.label_ids))
            if tokens != expected_tokens:
                raise ValueError(f"{tokens} tokens were scored but the split has {expected_tokens}.")
            return {
                "loss": nats / tokens,
                "nats_per_char": nats / characters,
                "bits_per_char": nats / characters / math.log(2),
                "num_characters": float(characters),
            }

        return compute

    # -- what the folder, the card and the console show -------------------------------------------------------

    def save_extras(self, model, tokenizer, output_dir: Path, examples: Dataset) -> None:
        tokenizer.save_pretrained(output_dir)
        model.generation_config.save_pretrained(output_dir)

    def prompt(self, examples: Dataset) -> str:
        """The sample prompt: as given, or the first line of the held-out text that has a letter in it."""
        if self.task_args.sample_prompt is not None:
            return self.task_args.sample_prompt
        text = examples[0]["text"] if len(examples) else ""
        return next((line for line in text.splitlines() if any(c.isalpha() for c in line)), text[:20])[:60]

    def card_details(self, model, dataset_description: str, examples: Dataset) -> CardDetails:
        config, task = model.config, self.task_args
        prompt = self.prompt(examples)
        usage = "\n".join(
            [
                "from transformers import pipeline",
                "",
                "# trust_remote_code: the model's code travels with it (not needed where `import hf_rnn` was run)",
                'generator = pipeline("text-generation", model="{repo_id}", trust_remote_code=True)',
                f"print(generator({prompt!r}, max_new_tokens=200)[0]['generated_text'])",
            ]
        )
        streams = self.training_args.train_batch_size * max(1, self.training_args.world_size)
        return CardDetails(
            pipeline_tag="text-generation",
            description=(
                f"A character-level recurrent ({config.cell_type.upper()}) language model in the manner of char-rnn: "
                f"it reads text one character at a time and predicts the next, with a fixed-size state instead of a "
                f"growing cache. Trained with hf-rnn on {dataset_description}."
            ),
            languages=task.languages or [],
            usage=usage,
            metric_names={"nats_per_char": "Loss (nats per character)", "bits_per_char": "Bits per character"},
            hyperparameters={
                "architecture": f"{config.num_layers}-layer {config.cell_type.upper()}, tied embeddings "
                f"{'on' if config.tie_word_embeddings else 'off'}",
                "embedding / hidden size": f"{config.embedding_size} / {config.hidden_size}",
                "dropout (outputs / embeddings)": f"{config.dropout} / {config.embedding_dropout}",
                "vocabulary": f"{config.vocab_size} tokens (characters, 256 byte pieces, 4 special)",
                "truncated BPTT": f"{streams} streams × {task.block_size} characters per batch, state carried",
            },
            limitations=[
                "A small character-level model: it imitates the spelling, layout and style of its training text, "
                "not its meaning; samples are often ungrammatical and never factual.",
                "Characters never seen in training are spelled in UTF-8 byte pieces, which it predicts poorly.",
            ],
            tags=["text-generation", "character-level", config.cell_type],
            widget=[{"text": prompt}] if prompt else None,
            main_metric="nats_per_char",
        )

    def print_examples(self, model, tokenizer, rows: Dataset) -> None:
        task = self.task_args
        generator = TextGenerationPipeline(model=model, tokenizer=tokenizer, device=model.device)
        set_seed(self.training_args.seed)
        for title, prompt in (("from <s> alone", ""), ("from a prompt", self.prompt(rows))):
            with torch.inference_mode():
                text = generator(prompt, max_new_tokens=task.sample_length, do_sample=True,
                                 temperature=task.sample_temperature, top_k=0)[0]["generated_text"]  # fmt: skip
            print(f"\nSample {title} ({task.sample_length} characters, temperature {task.sample_temperature}):")
            print(text)


# -- text as streams -------------------------------------------------------------------------------------------


def split_tail(documents: list[str], fraction: float) -> tuple[Dataset, Dataset]:
    """The documents with their last `fraction` of characters moved to a second split (a cut may fall inside a
    document): train = the first int(n · (1 - fraction)) characters, as nanoGPT and char-rnn count them."""
    total = sum(map(len, documents))
    cut = int(total * (1 - fraction))
    if cut == 0 or cut == total:
        raise ValueError(
            f"The training text ({total} characters) is too short to hold out {fraction:.0%} for validation: give "
            f"`validation_file`, or `--validation_fraction 0 --eval_strategy no`."
        )
    head, tail, seen = [], [], 0
    for text in documents:
        if seen + len(text) <= cut:
            head.append(text)
        elif seen >= cut:
            tail.append(text)
        else:
            head.append(text[: cut - seen])
            tail.append(text[cut - seen :])
        seen += len(text)
    return Dataset.from_dict({"text": head}), Dataset.from_dict({"text": tail})


def token_stream(documents: list[str], tokenizer) -> list[int]:
    """The documents' tokens, `</s>` between two documents, no `<s>` (the streams add it where they start)."""
    encoded = tokenizer(list(documents), add_special_tokens=False)["input_ids"]
    ids = []
    for index, tokens in enumerate(encoded):
        if index:
            ids.append(tokenizer.eos_token_id)
        ids.extend(tokens)
    return ids


def stream_chunks(
    ids: list[int], streams: int, block_size: int, bos_token_id: int, pad_token_id: int, whole: bool
) -> Dataset:
    """Rows for truncated BPTT: `ids` cut into `streams` contiguous streams, each read from `<s>`, in chunks of
    `block_size`, ordered chunk by chunk (rows k·S .. k·S + S - 1 are chunk k of streams 0 .. S - 1).

    Each row has `input_ids` (block_size), `attention_mask` (all ones), `shift_labels` (the token after each
    position, the next chunk's first token included; -100 where there is none) and `stream_start` (1 in a
    stream's first chunk). With `whole` (evaluation), every token is scored once: the last chunks are padded
    (their inputs are read after the stream ended, and never scored). Otherwise (training) the streams are of
    equal length and a tail shorter than one chunk per stream is dropped, as char-rnn does.

    With P processes and S = P · B streams, process p reads batches p, p + P, ... (accelerate's sharding of
    sequential batches), so it always holds the same B streams.
    """
    ids = np.asarray(ids, dtype=np.int64)
    length = math.ceil(len(ids) / streams) if whole else len(ids) // streams
    chunks = math.ceil(length / block_size) if whole else length // block_size
    if chunks == 0:
        raise ValueError(
            f"The training text ({len(ids):,} tokens) is too short for {streams} streams of at least {block_size} "
            f"tokens: lower `per_device_train_batch_size` or `block_size`."
        )
    width = chunks * block_size + 1
    sequences = np.full((streams, width), -100, dtype=np.int64)
    for stream in range(streams):
        part = ids[stream * length : (stream + 1) * length]
        sequences[stream, 0] = bos_token_id
        sequences[stream, 1 : 1 + min(len(part), width - 1)] = part[: width - 1]
    inputs = np.where(sequences[:, :-1] == -100, pad_token_id, sequences[:, :-1])
    targets = sequences[:, 1:]

    def by_chunk(array: np.ndarray) -> list[list[int]]:  # (S, K·T) → (K·S, T), chunk-major
        return array.reshape(streams, chunks, block_size).transpose(1, 0, 2).reshape(-1, block_size).tolist()

    return Dataset.from_dict(
        {
            "input_ids": by_chunk(inputs),
            "attention_mask": by_chunk(np.ones_like(inputs)),
            "shift_labels": by_chunk(targets),
            "stream_start": np.repeat(np.arange(chunks) == 0, streams).astype(np.int64).tolist(),
        }
    )


__all__ = [
    "LanguageModelingArguments",
    "LanguageModelingTask",
    "TruncatedBPTTTrainer",
    "split_tail",
    "stream_chunks",
    "token_stream",
]
