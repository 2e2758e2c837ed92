"""Checkpoint averaging: one model whose weights are the element-wise mean of several checkpoints.

    python -m hf_rnn.average --checkpoints run/checkpoint-5000 run/checkpoint-6000 run/checkpoint-7000 --output DIR
    python -m hf_rnn.average --run run --last 3 --output DIR

Averaging the parameters of a run's last checkpoints smooths out the noise of the final updates and usually gains a
few tenths of BLEU at no decoding cost (Vaswani et al., 2017, averaged their last 5 or 20 checkpoints; fairseq's
`scripts/average_checkpoints.py` and OpenNMT-py's `tools/average_models.py` do the same). `train.py
--average_last_checkpoints K` does it at the end of training and evaluates the average as the final model.

What is averaged: every floating-point parameter and buffer, in float64, cast back to the dtype of the last
checkpoint. BatchNorm's running mean and variance (the captioner's CNN) therefore become the mean of the checkpoints'
statistics, as in fairseq's script: an approximation, since the averaged network's activations
have statistics of their own (re-estimating them on training data, as SWA's `update_bn` does, would need the data).
Integer buffers (BatchNorm's `num_batches_tracked`) count batches and are taken from the last checkpoint.

The last checkpoint given (with `--run`: the newest) provides the config, generation config, tokenizer or processor
and model card of the result, which is an ordinary saved model folder: safetensors, the model code (it loads with
`trust_remote_code=True` where hf_rnn is not installed), the pipeline, and the run's card (when the checkpoints are
in a run folder that has one) saying which checkpoints were averaged. Checkpoints of different architectures or
vocabularies are refused, naming the first field that differs. Errors are one line on stderr and status 1.
"""

import argparse
import json
import sys
from pathlib import Path

import torch
import transformers
from huggingface_hub import ModelCard
from transformers import AutoConfig, AutoProcessor, AutoTokenizer, PreTrainedConfig, PreTrainedModel

import hf_rnn

from .cards.model_card import averaged_model_card
from .cli import load_error_reason
from .compatibility import architecture_difference, has_tokenizer, tokenizer_difference
from .training.checkpoints import CHECKPOINT_PATTERN, checkpoint_problem, checkpoint_step
from .training.run_record import RECORD_FILE

PROG = "python -m hf_rnn.average"


class AveragingError(ValueError):
    """Checkpoints that cannot be averaged, or an output that cannot be written; the message says which and why."""


def complete_checkpoints(run_dir: str | Path) -> list[Path]:
    """The checkpoints of a training output folder that hold complete weights, oldest first."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise AveragingError(f"{run_dir} is not a folder.")
    found = sorted(
        (p for p in run_dir.iterdir() if p.is_dir() and CHECKPOINT_PATTERN.match(p.name)), key=checkpoint_step
    )
    return [folder for folder in found if checkpoint_problem(folder, resumable=False) is None]


def run_checkpoints(run_dir: str | Path, last: int) -> list[Path]:
    """The newest `last` complete checkpoints of a training output folder, oldest first."""
    complete = complete_checkpoints(run_dir)
    if len(complete) < last:
        raise AveragingError(
            f"{run_dir} holds {len(complete)} complete checkpoint(s) ({', '.join(p.name for p in complete) or 'none'}"
            f"), fewer than --last {last}."
        )
    return complete[-last:]


def model_class_for(config: PreTrainedConfig, name: str) -> type[PreTrainedModel]:
    """The class a saved folder's config names (`architectures`), from hf_rnn or transformers."""
    architecture = (getattr(config, "architectures", None) or [None])[0]
    model_class = getattr(hf_rnn, architecture or "", None) or getattr(transformers, architecture or "", None)
    if model_class is None:
        raise AveragingError(
            f"{name}: its config.json names no model class that hf_rnn or transformers provides "
            f"(architectures: {getattr(config, 'architectures', None)})."
        )
    return model_class


def check_averageable(folders: list[Path]) -> list[PreTrainedConfig]:
    """The folders' configs, once every folder is known to hold the same model as the last one: same architecture
    and vocabularies (configs, dropout and initialisation aside) and, where tokenizers are saved, the same tokens."""
    names = [str(folder) for folder in folders]
    configs = [_load(AutoConfig, folder, "config") for folder in folders]
    for name, config in zip(names[:-1], configs[:-1]):
        difference = architecture_difference(config, configs[-1], (name, names[-1]))
        if difference:
            raise AveragingError(
                f"Cannot average {name} with {names[-1]}: {difference}. Only checkpoints of one model (the same "
                "architecture and vocabulary) can be averaged."
            )
    with_tokenizers = [(name, folder) for name, folder in zip(names, folders) if has_tokenizer(folder)]
    if len(with_tokenizers) > 1:
        newest_name, newest = with_tokenizers[-1]
        reference = _load(AutoTokenizer, newest, "tokenizer")
        for name, folder in with_tokenizers[:-1]:
            difference = tokenizer_difference(
                _load(AutoTokenizer, folder, "tokenizer"), reference, (name, newest_name)
            )
            if difference:
                raise AveragingError(
                    f"Cannot average {name} with {newest_name}: {difference}. Checkpoints trained with different "
                    "vocabularies cannot be averaged."
                )
    return configs


def average_checkpoints(
    folders: list[str | Path], model_class: type[PreTrainedModel] | None = None
) -> PreTrainedModel:
    """The last folder's model with every floating-point parameter and buffer replaced by its mean over `folders`
    (integer buffers stay the last folder's; see the module docstring).

    Raises:
        AveragingError: the folders hold different architectures or vocabularies (the message names the field), a
            folder cannot be loaded, or the parameters differ in name or shape.
    """
    folders = [Path(folder) for folder in folders]
    if not folders:
        raise AveragingError("No checkpoints to average.")
    configs = check_averageable(folders)
    model_class = model_class or model_class_for(configs[-1], str(folders[-1]))
    sums: dict[str, torch.Tensor] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    for index, folder in enumerate(folders):
        model = _load(model_class, folder, "model")
        state = model.state_dict()
        if index == 0:
            shapes = {key: tuple(value.shape) for key, value in state.items()}
        _check_same_parameters(shapes, state, str(folders[0]), str(folder))
        for key, value in state.items():
            if value.is_floating_point():
                sums[key] = value.double() if index == 0 else sums[key] + value.double()
    averaged = {
        key: (sums[key] / len(folders)).to(value.dtype) if key in sums else value
        for key, value in model.state_dict().items()
    }
    model.load_state_dict(averaged)
    return model


def _check_same_parameters(shapes: dict[str, tuple[int, ...]], state: dict, first: str, name: str) -> None:
    for key in sorted(set(shapes) | set(state)):
        if key not in state or key not in shapes:
            holder, other = (first, name) if key in shapes else (name, first)
            raise AveragingError(f"Cannot average {first} with {name}: `{key}` is in {holder} but not in {other}.")
        if tuple(state[key].shape) != shapes[key]:
            raise AveragingError(
                f"Cannot average {first} with {name}: `{key}` has shape {list(shapes[key])} in {first} and "
                f"{list(state[key].shape)} in {name}."
            )


def save_average(model: PreTrainedModel, folders: list[Path], output: Path) -> None:
    """Write `model` as a saved model folder: weights, config, generation config, code and pipeline, the last
    folder's tokenizer or processor, and a card that names the averaged checkpoints."""
    model.save_pretrained(output)
    newest = folders[-1]
    if has_tokenizer(newest):
        _load(AutoProcessor, newest, "tokenizer or processor").save_pretrained(output)
    # The task of the pipeline the saved folder serves (read from the file: in this process hf_rnn serves it).
    pipeline_tag = next(iter(json.loads((output / "config.json").read_text()).get("custom_pipelines") or {}), None)
    card = averaged_model_card(_run_card(newest), [_checkpoint_name(f) for f in folders], output.name, pipeline_tag)
    card.save(output / "README.md")


def _run_card(folder: Path) -> ModelCard | None:
    """The card of the folder itself, or of the training run whose checkpoint it is."""
    for candidate in (folder, folder.parent if (folder.parent / RECORD_FILE).exists() else None):
        if candidate is not None and (candidate / "README.md").exists():
            return ModelCard.load(candidate / "README.md")
    return None


def _checkpoint_name(folder: Path) -> str:
    """`run/checkpoint-N` for a run's checkpoint, the folder name otherwise (a card names no local paths)."""
    return f"{folder.parent.name}/{folder.name}" if CHECKPOINT_PATTERN.match(folder.name) else folder.name


def _load(loader, folder: Path, what: str):
    try:
        return loader.from_pretrained(folder)
    except (OSError, ValueError) as error:
        raise AveragingError(f"Cannot load the {what} of {folder}: {load_error_reason(folder, error)}") from error


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoints", nargs="+", metavar="FOLDER", help="Saved model or checkpoint folders.")
    source.add_argument("--run", metavar="FOLDER", help="A training output folder; with --last K.")
    parser.add_argument("--last", type=int, metavar="K", help="Average the run's K newest complete checkpoints.")
    parser.add_argument("--output", required=True, help="The folder to write (new or empty).")
    args = parser.parse_args(argv)
    if (args.run is None) != (args.last is None):
        parser.error("--run FOLDER and --last K go together")
    if args.last is not None and args.last < 1:
        parser.error("--last must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    transformers.utils.logging.disable_progress_bar()
    output = Path(args.output)
    try:
        if args.run is not None:
            folders = run_checkpoints(args.run, args.last)
        else:
            folders = [Path(folder) for folder in args.checkpoints]
            for folder in folders:
                if folder.is_dir() and not (folder / "config.json").exists() and any(folder.glob("checkpoint-*")):
                    raise AveragingError(f"{folder} is a training output folder: use --run {folder} --last K.")
        if output.exists() and (not output.is_dir() or any(output.iterdir())):
            raise AveragingError(f"{output} exists and is not an empty folder: choose a new --output.")
        model = average_checkpoints(folders)
        save_average(model, folders, output)
    except AveragingError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 1
    print(f"Saved the average of {', '.join(map(str, folders))} to {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
