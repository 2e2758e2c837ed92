"""Correctness of the recurrent encoder-only family (classifier and language model), each check against an
independent computation."""

import itertools

import pytest
import torch
from helpers import beam_vocabulary_arrays
from huggingface_hub.errors import StrictDataclassError
from torch.func import functional_call
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    Trainer,
    TrainingArguments,
)
from transformers.loss.loss_utils import ForSequenceClassificationLoss

from hf_rnn import LSTMConfig, LSTMForCausalLM, LSTMForSequenceClassification, LSTMModel
from hf_rnn.lstm.modeling_lstm import LSTMCache

CELL_TYPES = ["lstm", "gru", "rnn"]
POOLINGS = ["last", "mean", "max", "attention"]
PROBLEM_TYPES = ["single_label_classification", "multi_label_classification", "regression"]


def tiny_config(**overrides) -> LSTMConfig:
    """Small enough for exhaustive checks, with weights large enough that outputs are far from uniform."""
    values = dict(vocab_size=17, embedding_size=6, hidden_size=8, num_layers=2, dropout=0.0, init_range=0.5)
    values.update(overrides)
    return LSTMConfig(**values)


def tiny_classifier(seed: int = 0, **overrides) -> LSTMForSequenceClassification:
    torch.manual_seed(seed)
    return LSTMForSequenceClassification(tiny_config(**overrides)).eval()


def tiny_lm(seed: int = 0, **overrides) -> LSTMForCausalLM:
    torch.manual_seed(seed)
    return LSTMForCausalLM(tiny_config(**overrides)).eval()


def random_rows(lengths: list[int], vocab_size: int, seed: int = 0) -> list[torch.Tensor]:
    """Token rows without special ids (0-2), one per length."""
    generator = torch.Generator().manual_seed(seed)
    return [torch.randint(3, vocab_size, (length,), generator=generator) for length in lengths]


def pad(rows: list[torch.Tensor], side: str, extra: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad `rows` with id 0 on `side` to the longest length plus `extra`; returns ids and mask."""
    width = max(len(row) for row in rows) + extra
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for index, row in enumerate(rows):
        span = slice(0, len(row)) if side == "right" else slice(width - len(row), width)
        ids[index, span], mask[index, span] = row, 1
    return ids, mask


# --- configuration and Auto classes -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,field",
    [
        (dict(cell_type="transformer"), "cell_type"),
        (dict(pooling="cls"), "pooling"),
        (dict(hidden_size=0), "hidden_size"),
        (dict(num_layers=0), "num_layers"),
        (dict(dropout=1.0), "dropout"),
        (dict(embedding_dropout=-0.1), "embedding_dropout"),
        (dict(init_range=0.0), "init_range"),
        (dict(bidirectional=True, hidden_size=7), "hidden_size"),
        (dict(tie_word_embeddings=True, embedding_size=6, hidden_size=8), "tie_word_embeddings"),
        (dict(pad_token_id=17), "pad_token_id"),
        (dict(eos_token_id=[2, 40]), "eos_token_id"),
        (dict(vocab_size="17"), "vocab_size"),
    ],
)
def test_config_errors_name_the_field(kwargs, field):
    with pytest.raises(StrictDataclassError, match=field):
        tiny_config(**kwargs)


def test_config_checks_also_run_when_loading(tmp_path):
    tiny_config().save_pretrained(tmp_path)
    config_file = tmp_path / "config.json"
    config_file.write_text(config_file.read_text().replace('"cell_type": "lstm"', '"cell_type": "lstn"'))
    with pytest.raises(StrictDataclassError, match="cell_type"):
        LSTMConfig.from_pretrained(tmp_path)


def test_auto_classes_resolve_the_family():
    config = AutoConfig.for_model("lstm", vocab_size=11, embedding_size=4, hidden_size=6)
    assert isinstance(config, LSTMConfig)
    assert isinstance(AutoModel.from_config(config), LSTMModel)
    assert isinstance(AutoModelForSequenceClassification.from_config(config), LSTMForSequenceClassification)
    assert isinstance(AutoModelForCausalLM.from_config(config), LSTMForCausalLM)


def test_language_model_refuses_a_bidirectional_config():
    with pytest.raises(ValueError, match="bidirectional"):
        LSTMForCausalLM(tiny_config(bidirectional=True))


# --- padding invariance ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cell_type,bidirectional,pooling", list(itertools.product(CELL_TYPES, [False, True], POOLINGS))
)
def test_classifier_is_padding_invariant(cell_type, bidirectional, pooling):
    """A row's logits are the same alone and in any batch, padded left or right by any amount."""
    model = tiny_classifier(cell_type=cell_type, bidirectional=bidirectional, pooling=pooling, num_labels=3)
    rows = random_rows([5, 1, 7, 3], model.config.vocab_size)
    with torch.no_grad():
        alone = torch.cat([model(input_ids=row[None]).logits for row in rows])
        for side, extra in [("right", 0), ("right", 3), ("left", 0), ("left", 2)]:
            ids, mask = pad(rows, side, extra)
            torch.testing.assert_close(model(input_ids=ids, attention_mask=mask).logits, alone, atol=1e-6, rtol=0)


@pytest.mark.parametrize("cell_type,bidirectional", list(itertools.product(CELL_TYPES, [False, True])))
def test_model_outputs_and_final_state_are_padding_invariant(cell_type, bidirectional):
    """Per-position outputs at real tokens equal the unpadded row's, zeros at padding; the state is the one after
    the row's last token."""
    torch.manual_seed(1)
    model = LSTMModel(tiny_config(cell_type=cell_type, bidirectional=bidirectional)).eval()
    rows = random_rows([4, 6, 2], model.config.vocab_size, seed=1)
    with torch.no_grad():
        singles = [model(input_ids=row[None]) for row in rows]
        for side in ("right", "left"):
            ids, mask = pad(rows, side, extra=1)
            batched = model(input_ids=ids, attention_mask=mask)
            for index, single in enumerate(singles):
                real = mask[index].bool()
                torch.testing.assert_close(batched.last_hidden_state[index, real], single.last_hidden_state[0])
                assert not batched.last_hidden_state[index, ~real].any()
                torch.testing.assert_close(batched.cache.hidden[:, index], single.cache.hidden[:, 0])
                if cell_type == "lstm":
                    torch.testing.assert_close(batched.cache.cell[:, index], single.cache.cell[:, 0])


@pytest.mark.parametrize("cell_type,bidirectional", list(itertools.product(CELL_TYPES, [False, True])))
def test_a_batch_without_padding_takes_the_unpacked_path_with_the_same_outputs_and_gradients(cell_type, bidirectional):
    """Rows of equal length skip packing (a faster kernel on CPUs); the same rows with one padded column go through
    the packed path: outputs, final state and gradients must agree."""
    torch.manual_seed(4)
    model = LSTMModel(tiny_config(cell_type=cell_type, bidirectional=bidirectional, dropout=0.0))
    ids, mask = pad(random_rows([5, 5, 5], model.config.vocab_size, seed=4), "right")
    padded_ids, padded_mask = pad(random_rows([5, 5, 5], model.config.vocab_size, seed=4), "right", extra=1)
    results = []
    for inputs, attention in ((ids, mask), (padded_ids, padded_mask)):
        model.zero_grad()
        out = model(input_ids=inputs, attention_mask=attention)
        outputs = out.last_hidden_state[:, :5]
        (outputs.pow(2).sum() + out.cache.hidden.sum()).backward()
        results.append((outputs.detach(), out.cache.hidden.detach(), [p.grad.clone() for p in model.parameters()]))
    (unpacked, hidden, grads), (packed, packed_hidden, packed_grads) = results
    torch.testing.assert_close(unpacked, packed)
    torch.testing.assert_close(hidden, packed_hidden)
    for grad, packed_grad in zip(grads, packed_grads):
        torch.testing.assert_close(grad, packed_grad)


@pytest.mark.parametrize("pooling", POOLINGS)
def test_every_pooling_trains_under_bf16_autocast_close_to_float32(pooling):
    """`--bf16 true` on a CPU: the classifier runs under torch.autocast(bfloat16) (padded and unpadded batches)."""
    model = tiny_classifier(seed=5, pooling=pooling, bidirectional=True)
    for lengths in ([4, 4, 4], [4, 3, 2]):
        ids, mask = pad(random_rows(lengths, model.config.vocab_size, seed=5), "right")
        with torch.no_grad():
            reference = model(input_ids=ids, attention_mask=mask).logits
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(input_ids=ids, attention_mask=mask, labels=torch.tensor([0, 1, 0]))
        out.loss.backward()
        torch.testing.assert_close(out.logits.float(), reference, atol=0.05, rtol=0.05)


def test_default_mask_treats_pad_ids_as_padding():
    model = tiny_classifier(seed=2)
    ids, mask = pad(random_rows([3, 5], model.config.vocab_size), "right")
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids).logits, model(input_ids=ids, attention_mask=mask).logits)


# --- pooling against hand computations ------------------------------------------------------------------------------


@pytest.mark.parametrize("pooling", POOLINGS)
def test_pooling_matches_a_hand_computation_over_real_positions(pooling):
    model = tiny_classifier(seed=3, pooling=pooling, bidirectional=True, num_layers=1)
    rows = random_rows([4, 2], model.config.vocab_size, seed=3)
    ids, mask = pad(rows, "right", extra=2)
    with torch.no_grad():
        base = model.model(input_ids=ids, attention_mask=mask)
        logits = model(input_ids=ids, attention_mask=mask).logits
        for index, row in enumerate(rows):
            outputs = base.last_hidden_state[index, : len(row)]  # (T, H): forward half, backward half
            half = model.config.hidden_size // 2
            if pooling == "last":  # forward direction after the last token, backward after the first
                pooled = torch.cat([outputs[-1, :half], outputs[0, half:]])
            elif pooling == "mean":
                pooled = outputs.mean(dim=0)
            elif pooling == "max":
                pooled = outputs.max(dim=0).values
            else:
                pooler = model.pooler
                scores = pooler.query(torch.tanh(pooler.projection(outputs))).squeeze(-1)
                pooled = torch.softmax(scores, dim=0) @ outputs
            torch.testing.assert_close(logits[index], model.classifier(pooled))


# --- losses ---------------------------------------------------------------------------------------------------------


def classification_batch(problem_type: str, num_labels: int, batch: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    if problem_type == "single_label_classification":
        labels = torch.randint(0, num_labels, (batch,), generator=generator)
        labels[1] = -100  # ignored, as everywhere in transformers
        return labels
    if problem_type == "multi_label_classification":
        return torch.randint(0, 2, (batch, num_labels), generator=generator).float()
    return torch.randn(batch, generator=generator) if num_labels == 1 else torch.randn(batch, num_labels)


@pytest.mark.parametrize("problem_type,num_labels", [(p, 3) for p in PROBLEM_TYPES] + [("regression", 1)])
def test_classification_loss_equals_hand_computation_and_transformers(problem_type, num_labels):
    model = tiny_classifier(seed=4, num_labels=num_labels, problem_type=problem_type)
    ids, mask = pad(random_rows([3, 5, 2, 4], model.config.vocab_size, seed=4), "right")
    labels = classification_batch(problem_type, num_labels, 4)
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, labels=labels)
    logits = out.logits
    if problem_type == "single_label_classification":
        kept = labels != -100
        expected = -torch.log_softmax(logits[kept], dim=-1).gather(1, labels[kept, None]).mean()
    elif problem_type == "multi_label_classification":
        p = torch.sigmoid(logits)
        expected = -(labels * torch.log(p) + (1 - labels) * torch.log(1 - p)).mean()
    else:
        expected = ((logits.view(labels.shape) - labels) ** 2).mean()
    torch.testing.assert_close(out.loss, expected)
    torch.testing.assert_close(out.loss, ForSequenceClassificationLoss(labels, logits, model.config))


@pytest.mark.parametrize(
    "labels,num_labels,inferred",
    [
        (torch.tensor([0, 2]), 3, "single_label_classification"),
        (torch.tensor([[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]]), 3, "multi_label_classification"),
        (torch.tensor([0.5, -1.0]), 1, "regression"),
    ],
)
def test_problem_type_is_inferred_from_the_labels_as_transformers_does(labels, num_labels, inferred):
    model = tiny_classifier(num_labels=num_labels)
    model(input_ids=torch.tensor([[3, 4], [5, 6]]), labels=labels)
    assert model.config.problem_type == inferred


def trainer_num_items(micro_labels: list[torch.Tensor]) -> torch.Tensor:
    """What Trainer passes as `num_items_in_batch` for one optimizer step (`_get_num_items_in_batch`)."""
    return sum(labels.ne(-100).sum() for labels in micro_labels)


@pytest.mark.parametrize("problem_type,num_labels", [(p, 3) for p in PROBLEM_TYPES] + [("regression", 1)])
def test_accumulated_micro_batch_losses_sum_to_the_full_batch_loss(problem_type, num_labels):
    """Trainer sums the micro-batch losses when the model takes `num_items_in_batch`: the sum must be the full-batch
    loss for every problem type (transformers' own heads get this right for single-label only)."""
    model = tiny_classifier(seed=5, num_labels=num_labels, problem_type=problem_type)
    ids, mask = pad(random_rows([3, 5, 2, 4, 6, 1], model.config.vocab_size, seed=5), "right")
    labels = classification_batch(problem_type, num_labels, 6, seed=5)
    with torch.no_grad():
        full = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        parts = [slice(0, 2), slice(2, 6)]  # unequal micro-batches
        count = trainer_num_items([labels[part] for part in parts])
        summed = sum(
            model(input_ids=ids[part], attention_mask=mask[part], labels=labels[part], num_items_in_batch=count).loss
            for part in parts
        )
    torch.testing.assert_close(summed, full)


@pytest.mark.parametrize("problem_type,num_labels", [("multi_label_classification", 3), ("regression", 1)])
def test_trainer_gradient_accumulation_takes_the_same_step_as_one_large_batch(tmp_path, problem_type, num_labels):
    """End to end through Trainer: two accumulated batches of 2 move the weights exactly as one batch of 4."""
    ids, mask = pad(random_rows([3, 5, 2, 4], 17, seed=6), "right")
    labels = classification_batch(problem_type, num_labels, 4, seed=6)
    dataset = [{"input_ids": ids[i], "attention_mask": mask[i], "labels": labels[i]} for i in range(4)]
    weights = []
    for batch_size, accumulation in [(4, 1), (2, 2)]:
        model = tiny_classifier(seed=6, num_labels=num_labels, problem_type=problem_type).train()
        args = TrainingArguments(
            output_dir=str(tmp_path / f"run{accumulation}"),
            per_device_train_batch_size=batch_size,
            gradient_accumulation_steps=accumulation,
            max_steps=1,
            learning_rate=1.0,
            optim="sgd",
            lr_scheduler_type="constant",
            max_grad_norm=0.0,
            save_strategy="no",
            report_to="none",
            use_cpu=True,
            seed=0,
        )
        Trainer(model=model, args=args, train_dataset=dataset).train()
        weights.append(model.classifier.weight.detach().clone())
    torch.testing.assert_close(weights[0], weights[1])


def test_causal_lm_loss_is_shifted_and_honours_num_items_in_batch():
    model = tiny_lm(seed=7)
    ids, mask = pad(random_rows([6, 4], model.config.vocab_size, seed=7), "right")
    labels = ids.masked_fill(mask == 0, -100)
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, labels=labels)
    log_probs = torch.log_softmax(out.logits[:, :-1], dim=-1)
    targets = labels[:, 1:]
    kept = targets != -100
    nll = -log_probs[kept].gather(1, targets[kept, None]).squeeze(1)
    torch.testing.assert_close(out.loss, nll.mean())
    with torch.no_grad():
        summed = model(input_ids=ids, attention_mask=mask, labels=labels, num_items_in_batch=torch.tensor(20)).loss
    torch.testing.assert_close(summed, nll.sum() / 20)


# --- the language model's state: incremental decoding and truncated BPTT --------------------------------------------


@pytest.mark.parametrize("cell_type", CELL_TYPES)
def test_incremental_logits_equal_full_sequence_logits(cell_type):
    """Reading one token at a time through the cache gives the full pass's logits; the cache never grows."""
    model = tiny_lm(seed=8, cell_type=cell_type)
    ids, mask = pad(random_rows([7, 4, 6], model.config.vocab_size, seed=8), "left")
    with torch.no_grad():
        full = model(input_ids=ids, attention_mask=mask).logits
        prompt = 4  # past every row's left padding (at most 3), so later steps read real tokens only
        out = model(input_ids=ids[:, :prompt], attention_mask=mask[:, :prompt])
        steps, shapes = [out.logits[:, -1]], {tuple(out.cache.hidden.shape)}
        for t in range(prompt, ids.shape[1]):
            out = model(input_ids=ids[:, t : t + 1], cache=out.cache)
            steps.append(out.logits[:, -1])
            shapes.add(tuple(out.cache.hidden.shape))
    torch.testing.assert_close(torch.stack(steps, dim=1), full[:, prompt - 1 :])
    assert shapes == {(model.config.num_layers, 3, model.config.hidden_size)}
    assert out.cache.get_seq_length() == ids.shape[1]


@pytest.mark.parametrize("cell_type", CELL_TYPES)
def test_chunks_with_the_carried_state_equal_the_whole_text(cell_type):
    """Truncated BPTT: consecutive chunks with the carried state give the logits, final state and (with
    `shift_labels` and `num_items_in_batch`) the loss and gradients of one pass over the concatenation."""
    model = tiny_lm(seed=9, cell_type=cell_type)
    text = torch.stack(random_rows([13, 13], model.config.vocab_size, seed=9))  # two streams
    inputs, targets = text[:, :-1], text[:, 1:]

    whole = model(input_ids=inputs, shift_labels=targets)
    whole.loss.backward()
    whole_grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()

    cache, logits, loss = None, [], 0.0
    for chunk in (slice(0, 5), slice(5, 7), slice(7, 12)):
        out = model(
            input_ids=inputs[:, chunk], cache=cache, shift_labels=targets[:, chunk], num_items_in_batch=targets.numel()
        )
        cache, loss = out.cache, loss + out.loss
        logits.append(out.logits)
    loss.backward()  # without detaching the border, gradients flow through the carried state
    torch.testing.assert_close(torch.cat(logits, dim=1), whole.logits)
    torch.testing.assert_close(loss, whole.loss)
    torch.testing.assert_close(cache.hidden, whole.cache.hidden)
    for name, parameter in model.named_parameters():
        torch.testing.assert_close(parameter.grad, whole_grads[name], msg=name)

    detached = cache.detach()
    assert not detached.hidden.requires_grad and torch.equal(detached.hidden, cache.hidden)


@pytest.mark.parametrize("cell_type", CELL_TYPES)
def test_gradcheck_through_time(cell_type):
    """Analytic gradients of the logits w.r.t. every parameter and the carried initial state equal finite
    differences, through packed, left- and right-padded rows. (Logits, not the loss: transformers' loss runs in
    float32, too coarse for finite differences.)"""
    torch.manual_seed(10)
    model = LSTMForCausalLM(
        LSTMConfig(vocab_size=7, embedding_size=3, hidden_size=4, num_layers=2, cell_type=cell_type, init_range=0.5)
    )
    model = model.double().eval()
    names, values = zip(*[(n, p.detach().clone().requires_grad_(True)) for n, p in model.named_parameters()])
    ids = torch.tensor([[3, 4, 5, 6], [0, 0, 5, 3], [6, 4, 0, 0]])
    hidden = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    cell = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True) if cell_type == "lstm" else None
    state = (hidden,) if cell is None else (hidden, cell)

    def logits(*inputs):
        params, carried = inputs[: len(names)], inputs[len(names) :]
        kwargs = {"input_ids": ids, "attention_mask": ids.ne(0), "cache": LSTMCache(*carried)}
        return functional_call(model, dict(zip(names, params)), (), kwargs).logits[ids.ne(0)]

    assert torch.autograd.gradcheck(logits, (*values, *state), eps=1e-6, atol=1e-5)


# --- generation -----------------------------------------------------------------------------------------------------


def manual_greedy(model, row: torch.Tensor, steps: int) -> torch.Tensor:
    """Greedy decoding with full re-reads and no cache: the reference for generate()."""
    sequence = row.clone()
    for _ in range(steps):
        next_token = (
            model(input_ids=sequence[None], attention_mask=torch.ones_like(sequence[None])).logits[0, -1].argmax()
        )
        sequence = torch.cat([sequence, next_token[None]])
        if next_token == model.config.eos_token_id:
            break
    return sequence


@pytest.mark.parametrize("cell_type", CELL_TYPES)
def test_greedy_generate_with_left_padded_batch_equals_manual_decoding(cell_type):
    model = tiny_lm(seed=11, cell_type=cell_type)
    rows = random_rows([5, 2, 4], model.config.vocab_size, seed=11)
    ids, mask = pad(rows, "left")
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=8, do_sample=False)
        without_cache = model.generate(
            input_ids=ids, attention_mask=mask, max_new_tokens=8, do_sample=False, use_cache=False
        )
        assert torch.equal(out, without_cache)  # re-reading the whole text each step gives the same tokens
        for index, row in enumerate(rows):
            expected = manual_greedy(model, row, 8)
            generated = out[index, ids.shape[1] :][: len(expected) - len(row)]
            assert generated.tolist() == expected[len(row) :].tolist(), index


def rescore(model, prompt: torch.Tensor, generated: torch.Tensor) -> tuple[float, int]:
    """Sum of log-probabilities of the generated tokens (up to `</s>`) under one full pass, and their number."""
    eos = model.config.eos_token_id
    if (generated == eos).any():  # finished: drop the filler after `</s>`; unfinished ones ran to full length
        generated = generated[: int((generated == eos).nonzero()[0, 0]) + 1]
    sequence = torch.cat([prompt, generated])[None, :-1]
    # Every token is real: a random tiny model may well generate the pad id.
    log_probs = torch.log_softmax(model(input_ids=sequence, attention_mask=torch.ones_like(sequence)).logits[0], -1)
    positions = torch.arange(len(prompt) - 1, sequence.shape[1])
    return log_probs[positions, generated].sum().item(), len(generated)


def beam_search(model, ids, mask, length_penalty: float = 1.0):
    return model.generate(
        input_ids=ids,
        attention_mask=mask,
        num_beams=4,
        num_return_sequences=3,
        length_penalty=length_penalty,
        early_stopping=True,
        max_new_tokens=7,
        do_sample=False,
        output_scores=True,
        return_dict_in_generate=True,
    )


def test_beam_search_holds_three_vocabulary_arrays_at_most(tmp_path, monkeypatch):
    """transformers' beam loop keeps the previous step's summed scores (rows, vocabulary) alive until the next are
    computed: four such arrays at once. The model gives them back after the top-k step, so three are the most;
    transformers' own top-k step is the oracle for the output."""
    model = tiny_lm(seed=12, vocab_size=2000, eos_token_id=5)
    ids, mask = pad(random_rows([4, 1, 3, 5, 2], model.config.vocab_size, seed=12), "left")
    kwargs = dict(input_ids=ids, attention_mask=mask, num_beams=4, max_new_tokens=8)
    one_prompt = 4 * 2000 * 4  # its beams' float32 scores: less than any (rows, vocabulary) array, more than the rest
    assert beam_vocabulary_arrays(model, kwargs, one_prompt, tmp_path, monkeypatch) == (3, 4)


@pytest.mark.parametrize("length_penalty", [1.0, 0.0, 2.0])
@pytest.mark.parametrize("cell_type", ["lstm", "gru"])
def test_beam_scores_equal_teacher_forced_rescore(length_penalty, cell_type):
    """Each returned hypothesis' score is its true log-probability (normalised): the state follows its beam."""
    model = tiny_lm(seed=12, cell_type=cell_type, eos_token_id=5)
    rows = random_rows([4, 1, 3], model.config.vocab_size, seed=12)
    ids, mask = pad(rows, "left")
    with torch.no_grad():
        out = beam_search(model, ids, mask, length_penalty)
        for index, sequence in enumerate(out.sequences):
            log_prob, n_tokens = rescore(model, rows[index // 3], sequence[ids.shape[1] :])
            assert out.sequences_scores[index].item() == pytest.approx(log_prob / n_tokens**length_penalty, abs=1e-4)
    scores = out.sequences_scores.view(3, 3)
    assert (scores[:, :-1] >= scores[:, 1:] - 1e-6).all()  # best first


def test_beam_scores_detect_a_broken_reorder(monkeypatch):
    """Negative control: with the state no longer following its beam, the re-score check above must fail."""
    monkeypatch.setattr(LSTMCache, "reorder_cache", lambda self, beam_idx: None)
    model = tiny_lm(seed=12, eos_token_id=5)
    rows = random_rows([4, 1, 3], model.config.vocab_size, seed=12)
    ids, mask = pad(rows, "left")
    with torch.no_grad():
        out = beam_search(model, ids, mask)
        mismatches = 0
        for index, sequence in enumerate(out.sequences):
            log_prob, n_tokens = rescore(model, rows[index // 3], sequence[ids.shape[1] :])
            mismatches += abs(out.sequences_scores[index].item() - log_prob / n_tokens) > 1e-4
    assert mismatches > 0


def test_sampling_is_reproducible_and_follows_its_options():
    model = tiny_lm(seed=13)
    ids, mask = pad(random_rows([3, 5], model.config.vocab_size, seed=13), "left")
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        runs.append(
            model.generate(
                input_ids=ids,
                attention_mask=mask,
                do_sample=True,
                top_k=4,
                temperature=0.8,
                num_return_sequences=3,
                min_new_tokens=6,
                max_new_tokens=6,
            )
        )
    assert torch.equal(runs[0], runs[1])
    assert runs[0].shape == (6, ids.shape[1] + 6)
    assert model.config.eos_token_id not in runs[0][:, ids.shape[1] :].tolist()


def test_assisted_decoding_is_refused_with_a_clear_error():
    model = tiny_lm(seed=14)
    with pytest.raises(ValueError, match="stateful"):
        model.generate(input_ids=torch.tensor([[3, 4]]), assistant_model=tiny_lm(seed=15), max_new_tokens=3)


# --- saving and loading ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model_class", [LSTMModel, LSTMForSequenceClassification, LSTMForCausalLM])
def test_save_load_round_trip_writes_code_and_auto_map(tmp_path, model_class):
    torch.manual_seed(16)
    config = tiny_config(cell_type="gru", id2label={0: "neg", 1: "pos"}, tie_word_embeddings=True, embedding_size=8)
    model = model_class(config).eval()
    model.save_pretrained(tmp_path)
    assert {"config.json", "model.safetensors", "configuration_lstm.py", "modeling_lstm.py"} <= {
        p.name for p in tmp_path.iterdir()
    }
    loaded = model_class.from_pretrained(tmp_path).eval()
    assert loaded.config.auto_map == {
        "AutoConfig": "configuration_lstm.LSTMConfig",
        "AutoModel": "modeling_lstm.LSTMModel",
        "AutoModelForSequenceClassification": "modeling_lstm.LSTMForSequenceClassification",
        "AutoModelForCausalLM": "modeling_lstm.LSTMForCausalLM",
    }
    assert loaded.config.id2label == {0: "neg", 1: "pos"}
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name]), name
    ids, mask = pad(random_rows([4, 2], config.vocab_size), "right")
    with torch.no_grad():
        # Equal weights, not equal addresses: on AVX2 a product's last bit can depend on the weight's alignment.
        torch.testing.assert_close(
            loaded(input_ids=ids, attention_mask=mask)[0], model(input_ids=ids, attention_mask=mask)[0]
        )
    if model_class is LSTMForCausalLM:
        assert loaded.lm_head.weight.data_ptr() == loaded.model.embed_tokens.weight.data_ptr()


# --- named errors for bad input -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda m: m(input_ids=torch.tensor([[3, 17]])), "`input_ids` contains token id 17"),
        (lambda m: m(input_ids=torch.tensor([[3, -1]])), "`input_ids` contains token id -1"),
        (lambda m: m(input_ids=torch.tensor([[3, 4]]), attention_mask=torch.tensor([[0, 0]])), "is empty"),
        (lambda m: m(input_ids=torch.tensor([[3, 4, 5]]), attention_mask=torch.tensor([[1, 0, 1]])), "between"),
        (lambda m: m(input_ids=torch.tensor([[3, 4]]), attention_mask=torch.tensor([[1, 1, 1]])), "attention_mask"),
        (lambda m: m(input_ids=torch.tensor([3, 4])), "batch, seq_len"),
        (lambda m: m(input_ids=torch.tensor([[3.0, 4.0]])), "`input_ids` must be a tensor of integer token ids, got "),
        (lambda m: m(input_ids=torch.tensor([[True, False]])), "integer token ids, got dtype torch.bool"),
        (lambda m: m(input_ids=torch.tensor([[3], [4]]), labels=torch.tensor([0, 2])), "num_labels=2"),
        (lambda m: m(input_ids=torch.tensor([[3], [4]]), labels=torch.tensor([0.0, 1.0])), "integer class ids"),
    ],
)
def test_bad_classifier_input_gets_a_named_error(make, message):
    model = tiny_classifier(num_labels=2, problem_type="single_label_classification")
    with pytest.raises(ValueError, match=message):
        make(model)


def test_multi_label_and_regression_labels_must_fit_the_head():
    ids = torch.tensor([[3, 4], [5, 6]])
    multi = tiny_classifier(num_labels=3, problem_type="multi_label_classification")
    with pytest.raises(ValueError, match=r"\(batch, num_labels\) = \(2, 3\)"):
        multi(input_ids=ids, labels=torch.ones(2, 2))
    regression = tiny_classifier(num_labels=1)
    with pytest.raises(ValueError, match="one value per row"):
        regression(input_ids=ids, labels=torch.ones(3))


def test_bad_language_model_input_gets_a_named_error():
    model = tiny_lm()
    ids = torch.tensor([[3, 4], [5, 6]])
    with pytest.raises(ValueError, match="`labels` contains token id 99"):
        model(input_ids=ids, labels=torch.tensor([[3, 99], [5, 6]]))
    with pytest.raises(ValueError, match="`shift_labels` contains token id 17"):
        model(input_ids=ids, shift_labels=torch.tensor([[3, 17], [5, 6]]))
    with pytest.raises(ValueError, match="`labels` has 1 rows but the batch has 2"):
        model(input_ids=ids, labels=ids[:1])
    with pytest.raises(ValueError, match=r"`shift_labels` must have shape \(batch, length\), got \(4,\)"):
        model(input_ids=ids, shift_labels=ids.flatten())
    with pytest.raises(ValueError, match="`labels` must be a tensor of integer token ids, got dtype torch.float32"):
        model(input_ids=ids, labels=ids.float())
    cache = model(input_ids=ids).cache
    with pytest.raises(ValueError, match="holds the state of 2 rows"):
        model(input_ids=ids[:1], cache=cache)
    with pytest.raises(ValueError, match="LSTMCache"):
        model(input_ids=ids, cache=(cache.hidden, cache.cell))
    bidirectional = LSTMModel(tiny_config(bidirectional=True))
    with pytest.raises(ValueError, match="bidirectional"):
        bidirectional(input_ids=ids, cache=bidirectional(input_ids=ids).cache)
