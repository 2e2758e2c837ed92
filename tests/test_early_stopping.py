"""`--early_stopping_patience`: training stops once the validation metric stops improving, and ends with the best
model (transformers' EarlyStoppingCallback behind the runner's arguments)."""

import json

import pytest
import torch
from safetensors.torch import load_file

from hf_rnn import train
from hf_rnn.training.arguments import parse_args

TINY = ["synthetic_en_ko", "--model.embedding_size", "16", "--model.hidden_size", "32", "--model.dropout", "0.0"]
TINY += ["--tokenizer_vocab_size", "400", "--synthetic_train_size", "400", "--synthetic_eval_size", "20"]
TINY += ["--per_device_train_batch_size", "16", "--report_to", "none", "--disable_tqdm", "true"]
TINY += ["--num_examples_to_print", "0", "--generation_num_beams", "1"]


def test_training_stops_when_the_metric_stops_improving_and_keeps_the_best_model(tmp_path):
    # "Higher loss is better": the loss falls from the first evaluation to the second, so that one does not improve.
    argv = ["--max_steps", "100", "--eval_strategy", "steps", "--eval_steps", "5", "--save_strategy", "steps"]
    argv += ["--save_steps", "5"]
    argv += ["--load_best_model_at_end", "true", "--metric_for_best_model", "loss", "--greater_is_better", "true"]
    train.main([*TINY, *argv, "--early_stopping_patience", "1", "--output_dir", str(tmp_path / "run")])
    state = json.loads((tmp_path / "run" / "trainer_state.json").read_text())
    losses = [entry["eval_loss"] for entry in state["log_history"] if "eval_loss" in entry and entry["step"] <= 10]
    assert state["global_step"] == 10 and losses[1] < losses[0]
    assert state["best_model_checkpoint"].endswith("checkpoint-5")
    final, best = (load_file(tmp_path / "run" / p / "model.safetensors") for p in (".", "checkpoint-5"))
    assert all(torch.equal(final[name], best[name]) for name in best)


def test_early_stopping_needs_the_best_model_to_be_kept():
    with pytest.raises(ValueError, match="`early_stopping_patience` compares .* set `load_best_model_at_end`"):
        parse_args([*TINY, "--output_dir", "x", "--early_stopping_patience", "2"])
    with pytest.raises(ValueError, match="`early_stopping_patience` must be at least 1"):
        parse_args([*TINY, "--output_dir", "x", "--early_stopping_patience", "0"])
