"""One optimizer step on the same 8 examples gives the same loss and gradient however the batch is split.

Trainer splits a batch over gradient-accumulation steps and processes and, for a model whose
`forward` takes loss keyword arguments, passes `num_items_in_batch` (the label tokens of the
whole step) so the model can normalise every micro-batch by the same count. A model that
ignores it returns per-micro-batch means that Trainer no longer divides: k micro-batches give
k times the loss and the gradients. Learning rate 0 keeps the weights fixed; the logged loss and
gradient norm of the one step are compared across splits, with and without label smoothing
(Trainer's `LabelSmoother` then computes the loss from the logits).

Run as a script (`torchrun --nproc_per_node 2 tests/test_loss_normalization.py MODEL BATCH ACCUM SMOOTHING DIR`),
this module trains one step and writes each process's figures to DIR/figures-RANK.json: the two-process test
starts it so.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import datasets
import pytest
import torch
from transformers import Seq2SeqTrainingArguments
from transformers.trainer_pt_utils import LabelSmoother

from hf_rnn import (
    LSTMCaptionerConfig,
    LSTMCaptionerForConditionalGeneration,
    LSTMSeq2SeqConfig,
    LSTMSeq2SeqForConditionalGeneration,
)
from hf_rnn.training.trainer import Float32LabelSmoother, RecurrentSeq2SeqTrainer

NUM_EXAMPLES = 8
SPLITS = [(8, 1), (4, 2), (2, 4)]  # (per-device batch, gradient accumulation steps)


def build(kind: str) -> tuple[torch.nn.Module, datasets.Dataset]:
    """A tiny model and 8 examples whose label lengths differ, so micro-batches hold different token counts."""
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(1)
    label_lengths = [2, 9, 3, 7, 1, 8, 5, 4]
    labels = torch.full((NUM_EXAMPLES, max(label_lengths)), -100)
    if kind == "translator":
        config = LSTMSeq2SeqConfig(
            vocab_size=31, decoder_vocab_size=27, embedding_size=8, hidden_size=12, dropout=0.0, init_range=0.3
        )
        model = LSTMSeq2SeqForConditionalGeneration(config)
        source_lengths = [5, 2, 7, 3, 6, 1, 4, 7]
        input_ids = torch.zeros(NUM_EXAMPLES, max(source_lengths), dtype=torch.long)
        for row, length in enumerate(source_lengths):
            input_ids[row, :length] = torch.randint(3, config.vocab_size, (length,), generator=generator)
        columns = {"input_ids": input_ids, "attention_mask": input_ids.ne(0).long()}
    else:
        # A ViT encoder (LayerNorm): the built-in CNN's BatchNorm normalises by micro-batch statistics, which
        # depend on the split whatever the loss does.
        vit = {"model_type": "vit", "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2}
        vit.update(intermediate_size=8, image_size=8, patch_size=4)
        config = LSTMCaptionerConfig(
            vocab_size=21, embedding_size=8, hidden_size=12, attention_size=8, vision_config=vit, dropout=0.0
        )
        model = LSTMCaptionerForConditionalGeneration(config)
        columns = {"pixel_values": torch.randn(NUM_EXAMPLES, 3, 8, 8, generator=generator)}
    vocab = getattr(config, "decoder_vocab_size", config.vocab_size)
    for row, length in enumerate(label_lengths):
        labels[row, :length] = torch.randint(3, vocab, (length,), generator=generator)
    # What DataCollatorForSeq2Seq adds: Trainer's label smoother takes `labels` away from the model's inputs.
    columns["decoder_input_ids"] = model.prepare_decoder_input_ids_from_labels(labels)
    columns["labels"] = labels
    return model, datasets.Dataset.from_dict({k: v.tolist() for k, v in columns.items()}).with_format("torch")


def one_step(kind: str, batch_size: int, accumulation: int, smoothing: float, output_dir: str) -> dict[str, float]:
    """Loss and gradient norm Trainer logs for one optimizer step over the 8 examples."""
    model, dataset = build(kind)
    args = Seq2SeqTrainingArguments(
        output_dir=output_dir,
        per_device_train_batch_size=batch_size,
        gradient_accumulation_steps=accumulation,
        learning_rate=0.0,
        max_steps=1,
        logging_steps=1,
        label_smoothing_factor=smoothing,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
    )
    trainer = RecurrentSeq2SeqTrainer(model=model, args=args, train_dataset=dataset)
    trainer.train()
    logged = next(entry for entry in trainer.state.log_history if "loss" in entry)
    return {"loss": logged["loss"], "grad_norm": float(logged["grad_norm"])}


@pytest.mark.parametrize("smoothing", [0.0, 0.1], ids=["no-smoothing", "label-smoothing"])
@pytest.mark.parametrize("kind", ["translator", "captioner"])
def test_gradient_accumulation_gives_the_loss_and_gradient_of_the_whole_batch(kind, smoothing, tmp_path):
    figures = [one_step(kind, batch, accumulation, smoothing, str(tmp_path)) for batch, accumulation in SPLITS]
    whole = figures[0]
    for (batch, accumulation), split in zip(SPLITS[1:], figures[1:]):
        assert split["loss"] == pytest.approx(whole["loss"], abs=1e-5), (batch, accumulation, figures)
        assert split["grad_norm"] == pytest.approx(whole["grad_norm"], abs=1e-5), (batch, accumulation, figures)


@pytest.mark.parametrize("kind", ["translator", "captioner"])
def test_label_smoothing_of_bfloat16_logits_is_computed_in_float32(kind, tmp_path):
    """Under `--bf16` the model returns bfloat16 logits; Trainer's `LabelSmoother` took their log-softmax in bfloat16
    (0.09-0.35 % off here). The trainer's smoother now gives the float64 value of those logits to float32
    rounding."""
    model, dataset = build(kind)
    args = Seq2SeqTrainingArguments(output_dir=str(tmp_path), label_smoothing_factor=0.1, use_cpu=True, report_to=[])
    trainer = RecurrentSeq2SeqTrainer(model=model, args=args, train_dataset=dataset)
    batch = dataset[:]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, outputs = trainer.compute_loss(model, dict(batch), return_outputs=True)
    assert outputs.logits.dtype == torch.bfloat16
    logits, labels = outputs.logits.double().flatten(0, 1), batch["labels"].flatten()
    reference = torch.nn.functional.cross_entropy(logits, labels, ignore_index=-100, label_smoothing=0.1)
    torch.testing.assert_close(loss.double(), reference, rtol=1e-6, atol=0)


@pytest.mark.parametrize("shift_labels", [False, True])
@pytest.mark.parametrize("num_items_in_batch", [None, 17])
def test_the_float32_label_smoother_equals_transformers_label_smoother(shift_labels, num_items_in_batch):
    """Same value and gradient as `LabelSmoother` in float64, for sequence-to-sequence and shifted (causal) labels."""
    torch.manual_seed(0)
    logits = torch.randn(3, 6, 11, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, 11, (3, 6))
    labels[1, 3:] = -100
    ours = Float32LabelSmoother(epsilon=0.2)({"logits": logits}, labels, shift_labels, num_items_in_batch)
    reference = LabelSmoother(epsilon=0.2)({"logits": logits}, labels, shift_labels, num_items_in_batch)
    torch.testing.assert_close(ours, reference)
    torch.testing.assert_close(torch.autograd.grad(ours, logits)[0], torch.autograd.grad(reference, logits)[0])


@pytest.mark.slow
@pytest.mark.parametrize("smoothing", [0.0, 0.1], ids=["no-smoothing", "label-smoothing"])
def test_two_processes_give_the_loss_and_gradient_of_one(smoothing, tmp_path):
    """A real two-process CPU run (torchrun, gloo): 2 processes x 4 examples equal 1 process x 8."""
    whole = one_step("translator", 8, 1, smoothing, str(tmp_path / "one"))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    command += [__file__, "translator", "4", "1", str(smoothing), str(tmp_path / "two")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr[-3000:]
    reported = [json.loads(path.read_text()) for path in sorted((tmp_path / "two").glob("figures-*.json"))]
    assert len(reported) == 2, result.stdout  # each process logs the same (reduced) figures
    for split in reported:
        assert split["loss"] == pytest.approx(whole["loss"], abs=1e-5), (reported, whole)
        assert split["grad_norm"] == pytest.approx(whole["grad_norm"], abs=1e-5), (reported, whole)


if __name__ == "__main__":
    kind, batch_size, accumulation, smoothing, output_dir = sys.argv[1:]
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    figures = one_step(kind, int(batch_size), int(accumulation), float(smoothing), output_dir)
    (Path(output_dir) / f"figures-{os.environ.get('RANK', '0')}.json").write_text(json.dumps(figures))
