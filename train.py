"""Train an hf-rnn model with the Hugging Face Trainer.

    accelerate launch train.py                                   # embedded English→Korean default
    accelerate launch train.py configs/multi30k_en_de.yaml       # a ready config
    accelerate launch train.py configs/tatoeba_en_ko.yaml --learning_rate 5e-4 --output_dir outputs/x

Arguments come from a YAML file in configs/ (keys: hf_rnn.training.arguments fields and
Seq2SeqTrainingArguments), overridden by `--field value`. With none given, the embedded
default `configs/synthetic_en_ko.yaml` runs.
"""

import logging
import sys
from pathlib import Path

import datasets
import transformers

import hf_rnn  # noqa: F401  (registers the models with the Auto classes)
from hf_rnn.training.arguments import parse_args
from hf_rnn.training.checkpoints import exit_cleanly, guard_output_dir

DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "synthetic_en_ko.yaml"


def main(argv: list[str]) -> dict:
    model_args, data_args, training_args = parse_args(argv, default_config=DEFAULT_CONFIG)
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        level=logging.INFO if training_args.should_log else logging.WARNING,
    )
    transformers.utils.logging.set_verbosity(training_args.get_process_log_level())
    datasets.utils.logging.set_verbosity(training_args.get_process_log_level())

    with guard_output_dir(training_args):  # one run per output folder; failed writes explained
        if model_args.task == "translation":
            from hf_rnn.training.translation import run_translation

            return run_translation(model_args, data_args, training_args)
        if model_args.task == "captioning":
            from hf_rnn.training.captioning import run_captioning

            return run_captioning(model_args, data_args, training_args)
    raise ValueError(f"`task` must be 'translation' or 'captioning', got {model_args.task!r}.")


if __name__ == "__main__":
    with exit_cleanly():  # interrupts and run-level errors: one line, exit status 128 + signal or 1
        main(sys.argv[1:])
