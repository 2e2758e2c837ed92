"""Train an hf-rnn model with the Hugging Face Trainer.

    accelerate launch train.py                                    # the embedded English→Korean default
    accelerate launch train.py configs/multi30k_en_de.yaml        # a config file (or a shipped config's name)
    accelerate launch train.py multi30k_en_de --learning_rate 5e-4 --model.hidden_size 256 --output_dir outputs/x
    python -m hf_rnn.train ... / hf-rnn-train ...                 # the same from an installed package

A run is a YAML file (keys: the generic, task and `Seq2SeqTrainingArguments` fields, plus a `model:` section
of config fields) overridden by `--field value` and `--model.field value`; see hf_rnn/training/arguments.py.
With no config named, the embedded default `configs/synthetic_en_ko.yaml` runs (unless `--task` names another task).
"""

import logging
import sys
from pathlib import Path

import datasets
import transformers

from .data.files import DataFileError
from .training.arguments import ConfigError, parse_args
from .training.checkpoints import exit_cleanly, guard_output_dir
from .training.run_record import OutputDirHoldsAnotherRun
from .training.runner import run


def main(argv: list[str] | None = None) -> dict:
    config = parse_args(sys.argv[1:] if argv is None else argv)
    training = config.training
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        level=logging.INFO if training.should_log else logging.WARNING,
    )
    transformers.utils.logging.set_verbosity(training.get_process_log_level())
    datasets.utils.logging.set_verbosity(training.get_process_log_level())
    with guard_output_dir(training):  # one run per output folder; failed writes explained
        return run(config)


def console_main() -> None:
    """`python -m hf_rnn.train`, `train.py`, `hf-rnn-train`: errors the user can fix end with one line, interrupts
    with the signal's exit status. Mistakes in the config or flags exit with status 2, as argparse's own do."""
    try:
        with exit_cleanly(user_errors=(DataFileError, OutputDirHoldsAnotherRun)):
            main()
    except ConfigError as error:
        print(f"{Path(sys.argv[0]).name}: error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    console_main()
