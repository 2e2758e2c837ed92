"""Decoding steps replayed from CUDA graphs (`LSTMSeq2SeqStepGraphs`) give the tokens of eager decoding.

Without a GPU the step runs eagerly on the graph's static tensors (`capture=False`): the same copying in and out and
the same per-call memory bookkeeping, everything but the capture. With `HF_RNN_TEST_DEVICE=cuda` (as
`benchmarks/gpu_check.sh` sets it) the same tests capture and replay real graphs, and the CUDA-only tests below
compare the GPU with the CPU.
"""

import os

import pytest
import torch
from helpers import random_batch, tiny_model

from hf_rnn.translator import modeling_lstm_seq2seq as modeling
from hf_rnn.translator.modeling_lstm_seq2seq import (
    STEP_GRAPHS,
    TRAINING_GRAPHS,
    LSTMSeq2SeqStepGraphs,
    LSTMSeq2SeqTrainingGraphs,
)

DEVICE = torch.device(os.environ.get("HF_RNN_TEST_DEVICE", "cpu"))
needs_cuda = pytest.mark.skipif(DEVICE.type != "cuda", reason="set HF_RNN_TEST_DEVICE=cuda on a machine with a GPU")

VARIANTS = [
    ("lstm", "general", True),
    ("lstm", "concat", False),
    ("gru", "dot", True),
    ("rnn", "none", False),
]


def model_on_device(seed=3, **overrides):
    overrides = {"hidden_size": 32, "embedding_size": 16, "num_decoder_layers": 2, **overrides}
    return tiny_model(seed=seed, **overrides).to(DEVICE)


def graph_steps(model) -> LSTMSeq2SeqStepGraphs:
    """Make `model.generate()` replay its steps through a runner: real graphs on a GPU, eager steps elsewhere."""
    runner = LSTMSeq2SeqStepGraphs(capture=DEVICE.type == "cuda")

    def step_graphs_for(generation_config):
        runner.check_parameters(model)
        return runner

    model._step_graphs_for = step_graphs_for
    return runner


def batches(vocab_size):
    """Two batches of one shape (the second reuses the first's graph) and one of another shape."""
    return [
        random_batch([6, 2, 5, 3, 6, 4, 1, 5], vocab_size, seed=9),
        random_batch([6, 3, 5, 3, 6, 2, 1, 5], vocab_size, seed=10),
        random_batch([4, 2, 3], vocab_size, seed=11),
    ]


def generate_all(model, num_beams, eager=False):
    """Each batch of `batches` decoded; `eager`: every step eagerly (on a GPU graphs are the default)."""
    outputs = []
    settings = dict(max_new_tokens=12, num_beams=num_beams, **({"cuda_graphs": False} if eager else {}))
    with torch.no_grad():
        for source, mask in batches(model.config.vocab_size):
            outputs.append(model.generate(input_ids=source.to(DEVICE), attention_mask=mask.to(DEVICE), **settings))
    return outputs


@pytest.mark.parametrize("num_beams", [1, 3])
@pytest.mark.parametrize("cell_type,attention_type,input_feeding", VARIANTS)
def test_replayed_steps_give_the_tokens_of_eager_steps(cell_type, attention_type, input_feeding, num_beams):
    model = model_on_device(cell_type=cell_type, attention_type=attention_type, input_feeding=input_feeding)
    eager = generate_all(model, num_beams, eager=True)
    runner = graph_steps(model)
    replayed = generate_all(model, num_beams)
    for expected, got in zip(eager, replayed):
        assert torch.equal(got, expected)
    assert len(runner.graphs) == 2  # the second batch of the first shape replayed the first batch's graph
    assert runner.sessions == 3  # ... after loading its own encoder memory


def test_a_graph_that_kept_the_previous_calls_memory_would_be_caught(monkeypatch):
    """The negative control of the test above: without reloading the memory, the second batch decodes wrongly."""
    model = model_on_device(input_feeding=True)
    eager = generate_all(model, 1, eager=True)
    graph_steps(model)
    monkeypatch.setattr(modeling._StepGraph, "load_memory", lambda self, memory, mask, keys: None)
    replayed = generate_all(model, 1)
    assert torch.equal(replayed[0], eager[0])
    assert not torch.equal(replayed[1], eager[1])


def test_a_cache_generate_returns_is_never_a_graphs_state():
    """A replay writes its new state into the graph's static tensors, which the next call's replays rewrite: a call
    that returns its cache (`return_dict_in_generate`) decodes eagerly."""
    model = model_on_device(input_feeding=True)
    runner = graph_steps(model)
    source, mask = (t.to(DEVICE) for t in batches(model.config.vocab_size)[0])
    with torch.no_grad():
        returned = model.generate(
            input_ids=source, attention_mask=mask, max_new_tokens=12, return_dict_in_generate=True
        )
        plain = model.generate(input_ids=source, attention_mask=mask, max_new_tokens=12)
    assert torch.equal(returned.sequences, plain) and plain.shape[1] > 2
    assert len(runner.graphs) == 1 and runner.sessions == 1  # the plain call alone used a graph


def test_graphs_are_dropped_when_the_parameters_move():
    model = model_on_device()
    runner = graph_steps(model)
    generate_all(model, 1)
    assert len(runner.graphs) == 2
    model.to(torch.float64)
    eager_model = model_on_device().to(torch.float64)
    for expected, got in zip(generate_all(eager_model, 1, eager=True), generate_all(model, 1)):
        assert torch.equal(got, expected)
    assert len(runner.graphs) == 2 and all(key[2] == torch.float64 for key in runner.graphs)


def test_cuda_graphs_can_be_turned_off_per_call_and_stay_off_the_cpu():
    model = tiny_model()
    source, mask = random_batch([4, 2], model.config.vocab_size)
    with torch.no_grad():
        default = model.generate(input_ids=source, attention_mask=mask, max_new_tokens=6)
        off = model.generate(input_ids=source, attention_mask=mask, max_new_tokens=6, cuda_graphs=False)
    assert torch.equal(default, off)
    assert model not in STEP_GRAPHS  # nothing is captured for a model on the CPU


@pytest.fixture
def full_fp32_products():
    """cuDNN's recurrent kernels use TF32 products by default (about 1e-4 off fp32 here): off for a comparison."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@needs_cuda
@pytest.mark.parametrize("cell_type,attention_type,input_feeding", VARIANTS)
def test_the_gpu_computes_what_the_cpu_computes(cell_type, attention_type, input_feeding, full_fp32_products):
    """Teacher-forced logits within 2e-5 of the CPU's (fp32 both, summed in other orders, on weights drawn from
    +-0.6), and the same greedy and beam tokens (graphs on by default)."""
    cpu = tiny_model(seed=5, cell_type=cell_type, attention_type=attention_type, input_feeding=input_feeding)
    gpu = tiny_model(seed=5, cell_type=cell_type, attention_type=attention_type, input_feeding=input_feeding)
    gpu.to(DEVICE)
    source, mask = random_batch([6, 2, 5, 3, 6, 4, 1, 5], cpu.config.vocab_size, seed=9)
    target = torch.randint(3, cpu.config.decoder_vocab_size, (8, 7), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = cpu(input_ids=source, attention_mask=mask, decoder_input_ids=target).logits
        got = gpu(input_ids=source.to(DEVICE), attention_mask=mask.to(DEVICE), decoder_input_ids=target.to(DEVICE))
        torch.testing.assert_close(got.logits.cpu(), expected, atol=2e-5, rtol=1e-5)
        for num_beams in (1, 3):
            settings = dict(max_new_tokens=12, num_beams=num_beams)
            on_cpu = cpu.generate(input_ids=source, attention_mask=mask, **settings)
            on_gpu = gpu.generate(input_ids=source.to(DEVICE), attention_mask=mask.to(DEVICE), **settings)
            assert torch.equal(on_gpu.cpu(), on_cpu), num_beams
    assert len(STEP_GRAPHS[gpu].graphs) == 2


def loss_and_gradients(model, source, mask, labels):
    model.zero_grad(set_to_none=True)
    loss = model(input_ids=source, attention_mask=mask, labels=labels).loss
    loss.backward()
    return loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("cell_type,attention_type,input_feeding", VARIANTS)
def test_the_graphed_training_pass_gives_the_loss_and_gradients_of_the_plain_pass(
    cell_type, attention_type, input_feeding, full_fp32_products
):
    """Source and target padded to buckets of 8 (the graphs' static shapes), and on a GPU the decoder's forward and
    backward replayed from graphs: the same loss and gradients as the plain pass, for batches of two shapes."""
    model = model_on_device(cell_type=cell_type, attention_type=attention_type, input_feeding=input_feeding).train()
    lengths = ([6, 2, 5, 3, 6, 4, 1, 5], [9, 3, 2, 7, 5, 1, 4, 3])
    batches = []
    for seed, source_lengths in enumerate(lengths):
        source, mask = random_batch(source_lengths, model.config.vocab_size, seed=seed)
        labels = torch.randint(3, model.config.decoder_vocab_size, (8, 7 + 4 * seed), generator=torch.Generator())
        labels[2, 4:] = -100
        batches.append([tensor.to(DEVICE) for tensor in (source, mask, labels)])
    plain = [loss_and_gradients(model, *batch) for batch in batches]
    model.set_cuda_graph_training(True)
    if DEVICE.type != "cuda":  # no GPU: the same padding, run eagerly
        runner = LSTMSeq2SeqTrainingGraphs(capture=False)
        model.model._training_graphs = lambda: runner
    for batch, (loss, gradients) in zip(batches * 2, plain * 2):  # the second round replays
        got_loss, got_gradients = loss_and_gradients(model, *batch)
        torch.testing.assert_close(got_loss, loss, atol=1e-6, rtol=1e-6)
        assert got_gradients.keys() == gradients.keys()
        for name, gradient in gradients.items():
            torch.testing.assert_close(got_gradients[name], gradient, atol=1e-6, rtol=1e-5, msg=name)
    runner = TRAINING_GRAPHS[model.model] if DEVICE.type == "cuda" else runner
    assert len(runner.passes) == 2  # one per padded shape: (8, 8) and (16, 16) targets and sources
