"""The image-to-keywords captioner: config, processor, decoding correctness, saved format, remote code, pipeline."""

import json
import logging

import numpy as np
import pytest
import torch
from helpers import BLOCK_HF_RNN, FIXTURES, beam_vocabulary_arrays, indexing_backward_nodes, op_outputs, run_python
from huggingface_hub.errors import StrictDataclassError
from transformers import (
    AutoModelForImageTextToText,
    AutoProcessor,
    ResNetConfig,
    ResNetModel,
    ViTConfig,
    pipeline,
)
from transformers.generation import utils as generation_utils
from transformers.testing_utils import CaptureLogger

from hf_rnn import (
    LSTMCaptionerConfig,
    LSTMCaptionerForConditionalGeneration,
    LSTMCaptionerImageProcessor,
    LSTMCaptionerProcessor,
    build_keyword_tokenizer,
)
from hf_rnn.data.landscapes import KEYWORDS, render_landscape

TINY_RESNET = dict(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic")


@pytest.fixture(scope="module")
def processor() -> LSTMCaptionerProcessor:
    return LSTMCaptionerProcessor(LSTMCaptionerImageProcessor(), build_keyword_tokenizer(list(KEYWORDS)))


@pytest.fixture(scope="module")
def scenes() -> tuple[list, list[list[str]]]:
    images, keywords = zip(*[render_landscape(seed) for seed in range(4)])
    return list(images), list(keywords)


def tiny_captioner(seed: int = 0, **overrides) -> LSTMCaptionerForConditionalGeneration:
    """Small, with weights large enough that outputs are far from uniform (so beams really diverge)."""
    values = dict(
        vocab_size=len(KEYWORDS) + 4,
        embedding_size=8,
        hidden_size=12,
        attention_size=10,
        cnn_channels=[4, 8, 8],
        dropout=0.0,
        init_range=0.5,
    )
    values.update(overrides)
    torch.manual_seed(seed)
    return LSTMCaptionerForConditionalGeneration(LSTMCaptionerConfig(**values)).eval()


def pixels(batch: int, seed: int = 0, size: int = 64) -> torch.Tensor:
    """Random blocky images: coarse structure survives the pooling, so different images get different keywords."""
    coarse = 2 * torch.randn(batch, 3, 4, 4, generator=torch.Generator().manual_seed(seed))
    return coarse.repeat_interleave(size // 4, dim=2).repeat_interleave(size // 4, dim=3)


# --- config -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"hidden_size": 0}, "field 'hidden_size':\n    ValueError: must be positive, got 0"),
        ({"attention_size": 2.5}, "Field 'attention_size' expected int, got float"),
        ({"cnn_channels": []}, "field 'cnn_channels':\n    ValueError: must be a non-empty list of positive integers"),
        ({"image_size": 4}, "`image_size`=4 is too small for 3 CNN blocks"),
        ({"dropout": 1.0}, "field 'dropout':\n    ValueError: must be in [0, 1), got 1.0"),
        ({"tie_word_embeddings": True, "embedding_size": 6}, "`tie_word_embeddings=True` needs `embedding_size`"),
        ({"eos_token_id": 50}, "`eos_token_id` must be None or an id in [0, 21)"),
        (
            {"vision_config": {"hidden_sizes": [8]}},
            "field 'vision_config':\n    ValueError: a dict needs a `model_type`",
        ),
        ({"vision_config": ResNetConfig(num_channels=1), "num_channels": 3}, "`num_channels`=3 contradicts"),
        ({"max_keyword": 3}, "LSTMCaptionerConfig has no field `max_keyword`; did you mean `max_keywords`?"),
    ],
)
def test_config_validation_names_the_field(kwargs, message):
    with pytest.raises((ValueError, TypeError, StrictDataclassError)) as error:
        LSTMCaptionerConfig(vocab_size=21, **kwargs)
    assert message in str(error.value)


@pytest.mark.parametrize("name", ["captioner", "captioner_resnet"])
def test_configs_saved_before_typed_fields_still_load(name, tmp_path):
    """config.json files written by the untyped config class (built-in CNN, ResNet backbone) load unchanged."""
    saved = json.loads((FIXTURES / "configs_saved_before_strict" / f"{name}.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps(saved))
    loaded = LSTMCaptionerConfig.from_pretrained(tmp_path).to_dict()
    for key, value in saved.items():
        if key == "vision_config" and value is not None:
            assert {k: loaded[key][k] for k in value} == value
        elif key != "transformers_version":
            assert loaded[key] == value, key


def test_config_fields_follow_the_encoder_and_round_trip(tmp_path):
    assert (LSTMCaptionerConfig().num_channels, LSTMCaptionerConfig().image_size) == (3, 64)
    config = LSTMCaptionerConfig(vision_config={"model_type": "resnet", "num_channels": 1, **TINY_RESNET})
    assert isinstance(config.vision_config, ResNetConfig)
    assert (config.num_channels, config.image_size, config.encoder_feature_size) == (1, None, 16)
    config.save_pretrained(tmp_path)
    loaded = LSTMCaptionerConfig.from_pretrained(tmp_path)
    assert isinstance(loaded.vision_config, ResNetConfig)
    assert loaded.vision_config.to_dict() == config.vision_config.to_dict()


# --- processor ----------------------------------------------------------------------------------


def test_processor_matches_hand_computation(processor, scenes):
    images, keywords = scenes
    tokenizer = processor.tokenizer
    assert [tokenizer.convert_ids_to_tokens(i) for i in range(4)] == ["<pad>", "<s>", "</s>", "<unk>"]
    assert tokenizer.convert_tokens_to_ids(list(KEYWORDS)) == list(range(4, 4 + len(KEYWORDS)))

    batch = processor(images=images[:2], keywords=keywords[:2], text="evening warm", return_tensors="pt")
    assert set(batch) == {"pixel_values", "labels", "input_ids"}  # no attention_mask: generate would misread it
    # Scenes are rendered at 64x64, so the resize is the identity: pixels are (x / 255 - 0.5) / 0.5, CHW.
    expected = np.stack([(np.asarray(image, np.float64) / 255 - 0.5) / 0.5 for image in images[:2]])
    expected = expected.transpose(0, 3, 1, 2)
    np.testing.assert_allclose(batch["pixel_values"].numpy(), expected, atol=1e-5)
    rows = [[4 + KEYWORDS.index(k) for k in kws] + [2] for kws in keywords[:2]]
    width = max(map(len, rows))
    assert batch["labels"].tolist() == [row + [-100] * (width - len(row)) for row in rows]
    prompt = [1, 4 + KEYWORDS.index("evening"), 4 + KEYWORDS.index("warm")]
    assert batch["input_ids"].tolist() == [prompt, prompt]
    night, cold = 4 + KEYWORDS.index("night"), 4 + KEYWORDS.index("cold")
    assert processor(keywords=["night", "cold"])["labels"] == [[night, cold, 2]]  # one flat list = one example

    generated = torch.tensor([[1, 7, 9, 2, 0], [1, 3, 11, 2, 2]])
    assert processor.batch_decode(generated) == [[KEYWORDS[3], KEYWORDS[5]], [KEYWORDS[7]]]
    assert processor.decode(generated[0]) == [KEYWORDS[3], KEYWORDS[5]]
    assert processor.post_process_image_text_to_text(generated) == [f"{KEYWORDS[3]}, {KEYWORDS[5]}", KEYWORDS[7]]


def test_keyword_tokenizer_normalises_and_rejects():
    tokenizer = build_keyword_tokenizer(["snowy peak", "sea"])
    processor = LSTMCaptionerProcessor(LSTMCaptionerImageProcessor(), tokenizer)
    assert tokenizer.convert_ids_to_tokens([4, 5]) == ["snowy_peak", "sea"]
    assert processor(keywords=[["sea", " snowy  peak "]])["labels"] == [[5, 4, 2]]
    with pytest.raises(ValueError, match="listed twice"):
        build_keyword_tokenizer(["snowy peak", "snowy_peak"])
    with pytest.raises(ValueError, match="clashes with the special token"):
        build_keyword_tokenizer(["</s>"])
    with pytest.raises(ValueError, match="'lake', which is not a keyword"):
        processor(keywords=[["sea", "lake"]])
    with pytest.raises(ValueError, match="2 text prompts for 1 images"):
        processor(images=np.zeros((8, 8, 3), np.uint8), text=["", "sea"])


# --- decoding correctness -----------------------------------------------------------------------


@pytest.mark.parametrize("backbone", [None, "resnet"])
def test_incremental_logits_equal_teacher_forced(backbone):
    """One keyword per call with the state carried must reproduce the one-shot teacher-forced pass."""
    model = tiny_captioner(vision_config=ResNetConfig(**TINY_RESNET) if backbone else None)
    images = pixels(3)
    target = torch.randint(3, model.config.vocab_size, (3, 6), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = model(pixel_values=images, decoder_input_ids=target).logits
        encoder_outputs = model.get_encoder()(images)
        cache, steps = None, []
        for t in range(target.shape[1]):
            step = target[:, t : t + 1]
            out = model(encoder_outputs=encoder_outputs, decoder_input_ids=step, cache=cache, use_cache=True)
            cache = out.cache
            steps.append(out.logits)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)
    assert cache.get_seq_length() == target.shape[1]


def test_the_time_loop_indexes_no_step_for_backward():
    """The decoder reads its steps by `unbind`: the training graph's indexing nodes do not grow with the length."""
    model = tiny_captioner()
    images = pixels(2)

    def nodes(length: int) -> int:
        labels = torch.randint(3, model.config.vocab_size, (2, length))
        return indexing_backward_nodes(model(pixel_values=images, labels=labels).loss)

    assert nodes(3) == nodes(9)


def test_the_decoder_loop_s_weight_gradients_equal_lstm_cell_s_in_one_product(monkeypatch):
    """float64: the loop's deferred weight gradients equal `nn.LSTMCell`'s, labels partly ignored, and backward
    multiplies once for the recurrent weight's gradient instead of once per step."""
    model = tiny_captioner(seed=1).double().train()
    images, labels = pixels(2).double(), torch.tensor([[5, 6, 7, 2, 9], [8, 2, -100, -100, -100]])

    def gradients(lstm_cell: bool) -> dict:
        with monkeypatch.context() as patch:
            if lstm_cell:
                patch.setattr(type(model.model.decoder), "_time_loop_weights", lambda self: None)
            model.zero_grad()
            loss = model(pixel_values=images, labels=labels).loss
            products = op_outputs(loss.backward)
        return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}, products

    (ours, products), (reference, _) = gradients(False), gradients(True)
    assert ours.keys() == reference.keys()
    for name in reference:
        torch.testing.assert_close(ours[name], reference[name], msg=name)
    weight_shape = tuple(model.model.decoder.cell.weight_hh.shape)
    assert [op for op, shape, _ in products if op in ("aten.mm", "aten.addmm") and shape == weight_shape] == [
        "aten.mm"
    ]


def test_loss_ignores_minus_100_and_attention_is_a_distribution_over_the_grid():
    model = tiny_captioner(seed=1)
    labels = torch.tensor([[5, 6, 7, 2], [8, 2, -100, -100]])
    out = model(pixel_values=pixels(2), labels=labels, output_attentions=True)
    log_probs = torch.log_softmax(out.logits, dim=-1)
    picked = [log_probs[b, t, labels[b, t]] for b in range(2) for t in range(4) if labels[b, t] != -100]
    assert out.loss.item() == pytest.approx(-torch.stack(picked).mean().item(), rel=1e-5)
    (weights,) = out.cross_attentions
    assert weights.shape == (2, 1, 4, 64)  # 64x64 image, three 2x2 poolings -> 8x8 positions
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 1, 4))


def rescore(model, pixel_values: torch.Tensor, sequence: torch.Tensor) -> tuple[float, int]:
    """Sum of log-probabilities of `sequence` (start token first) under a teacher-forced pass, and its length."""
    tokens = sequence[1:]
    eos = model.config.eos_token_id
    if (tokens == eos).any():  # finished: drop the filler after `</s>`; unfinished ones ran to full length
        tokens = tokens[: int((tokens == eos).nonzero()[0, 0]) + 1]
    decoder_input = torch.cat([sequence[:1], tokens[:-1]]).unsqueeze(0)
    log_probs = torch.log_softmax(model(pixel_values=pixel_values, decoder_input_ids=decoder_input).logits[0], dim=-1)
    return log_probs.gather(1, tokens.unsqueeze(1)).sum().item(), tokens.shape[0]


def beam_search(model, images: torch.Tensor, length_penalty: float = 1.0):
    return model.generate(
        pixel_values=images,
        num_beams=4,
        num_return_sequences=3,
        length_penalty=length_penalty,
        early_stopping=True,
        max_new_tokens=7,
        output_scores=True,
        return_dict_in_generate=True,
    )


def test_beam_search_holds_three_vocabulary_arrays_at_most(tmp_path, monkeypatch):
    """transformers' beam loop keeps the previous step's summed scores (rows, vocabulary) alive until the next are
    computed: four such arrays at once. The model gives them back after the top-k step, so three are the most;
    transformers' own top-k step is the oracle for the output. (The default no-repeat processor clones the scores,
    one array more in either case.)"""
    model = tiny_captioner(seed=2, vocab_size=20000)
    kwargs = dict(pixel_values=pixels(3, seed=3), num_beams=4, max_new_tokens=6, no_repeat_ngram_size=0)
    one_image = 4 * 20000 * 4  # its beams' float32 scores: less than any (rows, vocabulary) array, more than the rest
    assert beam_vocabulary_arrays(model, kwargs, one_image, tmp_path, monkeypatch) == (3, 4)


@pytest.mark.parametrize("length_penalty", [1.0, 0.0, 2.0])
def test_beam_scores_equal_teacher_forced_rescore(length_penalty):
    """Each returned hypothesis' score is its true log-probability (normalised): proves states follow their beams."""
    model = tiny_captioner(seed=2)
    images = pixels(3, seed=3)
    with torch.no_grad():
        out = beam_search(model, images, length_penalty)
        for index, sequence in enumerate(out.sequences):
            log_prob, n_tokens = rescore(model, images[index // 3 : index // 3 + 1], sequence)
            assert out.sequences_scores[index].item() == pytest.approx(log_prob / n_tokens**length_penalty, abs=1e-4)
    scores = out.sequences_scores.view(3, 3)
    assert (scores[:, :-1] >= scores[:, 1:] - 1e-6).all()


def test_beam_scores_detect_a_broken_reorder(monkeypatch):
    """Negative control: with reordering disabled, the re-score check above must fail."""
    monkeypatch.setattr(LSTMCaptionerForConditionalGeneration, "_reorder_cache", lambda self, cache, beam_idx: cache)
    model = tiny_captioner(seed=2)
    images = pixels(3, seed=3)
    with torch.no_grad():
        out = beam_search(model, images)
        mismatches = 0
        for index, sequence in enumerate(out.sequences):
            log_prob, n_tokens = rescore(model, images[index // 3 : index // 3 + 1], sequence)
            mismatches += abs(out.sequences_scores[index].item() - log_prob / n_tokens) > 1e-4
    assert mismatches > 0


def keyword_bodies(model, sequences: torch.Tensor) -> list[list[int]]:
    specials = {model.config.pad_token_id, model.config.eos_token_id, model.config.decoder_start_token_id}
    return [[t for t in row.tolist() if t not in specials] for row in sequences]


def test_no_keyword_repeats_by_default():
    model = tiny_captioner(seed=4)
    assert model.generation_config.no_repeat_ngram_size == 1
    images = pixels(6, seed=5)
    torch.manual_seed(0)
    with torch.no_grad():
        outputs = [
            model.generate(pixel_values=images),
            model.generate(pixel_values=images, num_beams=3),
            model.generate(pixel_values=images, do_sample=True, top_k=0),
        ]
        # Negative control: the same model without the constraint does repeat keywords.
        unconstrained = model.generate(pixel_values=images, no_repeat_ngram_size=0)
    for sequences in outputs:
        assert all(len(body) == len(set(body)) for body in keyword_bodies(model, sequences))
    assert any(len(body) != len(set(body)) for body in keyword_bodies(model, unconstrained))


def test_keyword_cap_applies_unless_a_limit_is_chosen_and_cuts_are_reported(caplog):
    """`max_keywords` caps an output (start, keywords, `</s>`); a caller's limit replaces it without transformers'
    "both max_new_tokens and max_length" warning; outputs that hit a limit without `</s>` are reported once."""
    model = tiny_captioner(seed=4, max_keywords=3)
    with torch.no_grad():
        model.lm_head.bias[model.config.eos_token_id] = -1e4  # never ends
    images = pixels(3, seed=5)
    with torch.no_grad(), caplog.at_level(logging.WARNING), CaptureLogger(generation_utils.logger) as transformers_log:
        assert model.generate(pixel_values=images).shape[1] == 3 + 2
        assert model.generate(pixel_values=images, num_beams=2).shape[1] == 3 + 2
        assert model.generate(pixel_values=images, max_new_tokens=6).shape[1] == 1 + 6
        prompt = torch.tensor([[1, 5]] * 3)  # a keyword prompt counts towards the cap
        assert model.generate(pixel_values=images, decoder_input_ids=prompt).shape[1] == 3 + 2
    assert "max_length" not in transformers_log.out
    cuts = [r.getMessage() for r in caplog.records if "without `</s>` and were cut" in r.getMessage()]
    assert [message.split(" (")[0] for message in cuts] == ["3 of 3 keyword lists reached the length limit"] * 4
    assert "(6 new tokens)" in cuts[2] and "`max_keywords`" in cuts[0]


def test_batched_generation_equals_one_image_at_a_time():
    model = tiny_captioner(seed=6)
    images = pixels(4, seed=7)
    with torch.no_grad():
        for kwargs in ({}, {"num_beams": 3}):
            batched = model.generate(pixel_values=images, **kwargs)
            for row in range(4):
                single = model.generate(pixel_values=images[row : row + 1], **kwargs)[0]
                assert torch.equal(batched[row][: single.shape[0]], single), (row, kwargs)
                filler = batched[row][single.shape[0] :]
                assert ((filler == model.config.pad_token_id) | (filler == model.config.eos_token_id)).all()


def test_errors_name_the_problem():
    model = tiny_captioner()
    with pytest.raises(ValueError, match=r"`pixel_values` must be a float tensor of shape \(batch, 3, 64, 64\)"):
        model(pixel_values=pixels(2, size=32), decoder_input_ids=torch.tensor([[1], [1]]))
    with pytest.raises(ValueError, match=r"shape \(batch, 3, 64, 64\), got .* \(3, 64, 64\)"):
        model.generate(pixel_values=pixels(1)[0])
    with pytest.raises(ValueError, match="`decoder_input_ids` contains token id 21, outside the vocabulary"):
        model(pixel_values=pixels(1), decoder_input_ids=torch.tensor([[1, 21]]))
    with pytest.raises(ValueError, match="`labels` contains token id -5"):
        model(pixel_values=pixels(1), labels=torch.tensor([[4, -5]]))
    with pytest.raises(ValueError, match="`labels` has 1 rows but the batch has 2"):
        model(pixel_values=pixels(2), labels=torch.tensor([[4, 5]]))
    with pytest.raises(ValueError, match="`decoder_input_ids` has 2 rows but the batch has 1"):
        model(pixel_values=pixels(1), decoder_input_ids=torch.tensor([[1], [1]]))
    with pytest.raises(ValueError, match="`labels` must be a tensor of integer token ids, got dtype torch.float32"):
        model(pixel_values=pixels(1), labels=torch.tensor([[4.0, 5.0]]))


@pytest.mark.parametrize("new_size", [27, 15], ids=["grow", "shrink"])
@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
def test_resize_token_embeddings_resizes_every_part_and_the_model_reloads(tied, new_size, tmp_path):
    """Keyword embeddings, softmax layer (weight, bias) and `vocab_size` take the new size; a tied softmax layer
    stays tied; kept rows keep their values; the saved model loads and computes the same logits."""
    model = tiny_captioner(tie_word_embeddings=tied, embedding_size=12)
    kept = min(new_size, model.config.vocab_size)
    old_rows = model.model.decoder.embed_tokens.weight[:kept].clone()
    model.resize_token_embeddings(new_size)
    parts = {
        "embeddings": model.model.decoder.embed_tokens.weight.shape[0],
        "output weight": model.lm_head.weight.shape[0],
        "output bias": model.lm_head.bias.shape[0],
        "output features": model.lm_head.out_features,
        "vocab_size": model.config.vocab_size,
    }
    assert parts == dict.fromkeys(parts, new_size)
    torch.testing.assert_close(model.model.decoder.embed_tokens.weight[:kept], old_rows, atol=0, rtol=0)
    assert (model.lm_head.weight is model.model.decoder.embed_tokens.weight) == tied
    model.save_pretrained(tmp_path)
    loaded, info = LSTMCaptionerForConditionalGeneration.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    prompt = torch.tensor([[1, new_size - 1], [1, 4]])
    with torch.no_grad():
        expected = model(pixel_values=pixels(2), decoder_input_ids=prompt).logits
        torch.testing.assert_close(loaded.eval()(pixel_values=pixels(2), decoder_input_ids=prompt).logits, expected)


def test_activation_checkpointing_recomputes_attention_and_keeps_every_gradient():
    model = tiny_captioner(seed=5).train()
    labels = torch.tensor([[5, 6, 7, 2], [8, 2, -100, -100]])
    images = pixels(2)

    def gradients() -> tuple[dict[str, torch.Tensor], int]:
        calls = []
        # A layer inside the attention: its hooks also fire when the backward pass recomputes the attention.
        hook = model.model.decoder.attention.energy.register_forward_hook(lambda *_: calls.append(1))
        model.zero_grad()
        torch.manual_seed(0)  # BatchNorm in training mode is deterministic; dropout is 0
        model(pixel_values=images, labels=labels).loss.backward()
        hook.remove()
        return {n: p.grad.clone() for n, p in model.named_parameters()}, len(calls)

    plain, plain_calls = gradients()
    model.activation_checkpointing_enable()
    checkpointed, checkpointed_calls = gradients()
    assert checkpointed_calls == 2 * plain_calls
    for name, gradient in plain.items():
        torch.testing.assert_close(checkpointed[name], gradient, atol=1e-6, rtol=1e-5, msg=name)


# --- vision backbones ---------------------------------------------------------------------------


def test_resnet_backbone_generates_and_round_trips(tmp_path):
    model = tiny_captioner(vision_config=ResNetConfig(**TINY_RESNET))
    images = pixels(2)
    out = model(pixel_values=images, decoder_input_ids=torch.tensor([[1, 5], [1, 6]]), output_hidden_states=True)
    assert out.encoder_last_hidden_state.shape == (2, 64, 12)  # stem /4, second stage /2: 8x8 positions
    assert len(out.encoder_hidden_states) == 3  # ResNet stem + two stages
    with torch.no_grad():
        expected = model.generate(pixel_values=images, num_beams=2)
    model.save_pretrained(tmp_path)
    loaded = AutoModelForImageTextToText.from_pretrained(tmp_path).eval()
    assert isinstance(loaded.config.vision_config, ResNetConfig)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name]), name
    with torch.no_grad():
        assert torch.equal(loaded.generate(pixel_values=images, num_beams=2), expected)


def test_from_vision_pretrained_loads_backbone_weights(tmp_path):
    torch.manual_seed(3)
    backbone = ResNetModel(ResNetConfig(**TINY_RESNET))
    backbone.save_pretrained(tmp_path)
    model = LSTMCaptionerForConditionalGeneration.from_vision_pretrained(tmp_path, vocab_size=21, hidden_size=12)
    assert model.config.hidden_size == 12 and model.config.vision_config.hidden_sizes == [8, 16]
    loaded = model.model.encoder.backbone.state_dict()
    for name, tensor in backbone.state_dict().items():
        assert torch.equal(tensor, loaded[name]), name


def test_vit_backbone_runs_forward_over_tokens():
    vit = ViTConfig(
        hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16, image_size=32, patch_size=8
    )
    model = tiny_captioner(vision_config=vit)
    out = model(pixel_values=pixels(2, size=32), decoder_input_ids=torch.tensor([[1, 5], [1, 6]]))
    assert out.encoder_last_hidden_state.shape == (2, 17, 12)  # CLS + 4x4 patches, projected to hidden_size
    assert out.logits.shape == (2, 2, model.config.vocab_size)


# --- saved format, remote code, pipeline --------------------------------------------------------


@pytest.fixture(scope="module")
def saved(tmp_path_factory, processor):
    """A tiny captioner and its processor saved to one folder, plus the model itself."""
    folder = tmp_path_factory.mktemp("captioner")
    model = tiny_captioner(seed=8)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder, model


def test_save_writes_code_and_auto_maps_and_round_trips(saved, processor, scenes):
    folder, model = saved
    files = {p.name for p in folder.iterdir()}
    assert {
        "configuration_lstm_captioner.py",
        "modeling_lstm_captioner.py",
        "image_processing_lstm_captioner.py",
        "processing_lstm_captioner.py",
        "generation_config.json",
        "processor_config.json",
        "tokenizer.json",
    } <= files
    assert json.loads((folder / "config.json").read_text())["auto_map"] == {
        "AutoConfig": "configuration_lstm_captioner.LSTMCaptionerConfig",
        "AutoModel": "modeling_lstm_captioner.LSTMCaptionerModel",
        "AutoModelForImageTextToText": "modeling_lstm_captioner.LSTMCaptionerForConditionalGeneration",
    }
    processor_config = json.loads((folder / "processor_config.json").read_text())
    assert processor_config["auto_map"]["AutoProcessor"] == "processing_lstm_captioner.LSTMCaptionerProcessor"
    assert processor_config["image_processor"]["auto_map"]["AutoImageProcessor"] == (
        "image_processing_lstm_captioner.LSTMCaptionerImageProcessor"
    )

    loaded = AutoModelForImageTextToText.from_pretrained(folder).eval()
    loaded_processor = AutoProcessor.from_pretrained(folder)
    assert isinstance(loaded, LSTMCaptionerForConditionalGeneration)
    assert isinstance(loaded_processor, LSTMCaptionerProcessor)
    assert loaded.generation_config.no_repeat_ngram_size == 1
    images, keywords = scenes
    inputs, reloaded_inputs = (
        p(images=images, keywords=keywords, return_tensors="pt") for p in (processor, loaded_processor)
    )
    for name in inputs:
        assert torch.equal(inputs[name], reloaded_inputs[name]), name
    with torch.no_grad():
        expected = model.generate(pixel_values=inputs["pixel_values"], num_beams=3)
        assert torch.equal(loaded.generate(pixel_values=inputs["pixel_values"], num_beams=3), expected)


def test_pipeline_returns_the_keywords_in_process(saved, processor, scenes):
    folder, model = saved
    images, _ = scenes
    with torch.no_grad():
        expected = processor.batch_decode(model.generate(**processor(images=images[:2], return_tensors="pt")))
    pipe = pipeline("image-to-text", model=str(folder))
    assert pipe(images=images[0], text="") == [{"input_text": "", "generated_text": ", ".join(expected[0])}]
    batched = pipe(images=images[:2], text=["", ""])
    assert [item["generated_text"] for item in batched] == [", ".join(keywords) for keywords in expected]


def test_remote_code_and_pipeline_where_hf_rnn_cannot_be_imported(tmp_path, saved, processor, scenes):
    """The saved folder alone is enough: a fresh process without `hf_rnn` gets identical keywords."""
    folder, model = saved
    images, _ = scenes
    for index, image in enumerate(images):
        image.save(tmp_path / f"scene{index}.png")
    with torch.no_grad():
        inputs = processor(images=images, return_tensors="pt")
        expected = processor.batch_decode(model.generate(**inputs, num_beams=3))
        greedy = processor.batch_decode(model.generate(**inputs))
    script = (
        BLOCK_HF_RNN
        + f"""
import json, torch
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor, pipeline
folder = {str(folder)!r}
model = AutoModelForImageTextToText.from_pretrained(folder, trust_remote_code=True).eval()
processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
for obj in (model, processor, processor.image_processor):
    assert type(obj).__module__.startswith("transformers_modules"), type(obj).__module__
images = [Image.open({str(tmp_path)!r} + f"/scene{{i}}.png") for i in range({len(images)})]
with torch.no_grad():
    keywords = processor.batch_decode(model.generate(**processor(images=images, return_tensors="pt"), num_beams=3))
pipe = pipeline("image-to-text", model=folder, trust_remote_code=True)
print(json.dumps([keywords, [pipe(images=image, text="")[0]["generated_text"] for image in images]]))
"""
    )
    result = run_python(script, tmp_path, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    keywords, piped = json.loads(result.stdout.strip().splitlines()[-1])
    assert keywords == expected
    assert piped == [", ".join(k) for k in greedy]


# --- learning -----------------------------------------------------------------------------------


def f1(predicted: list[list[str]], gold: list[list[str]]) -> float:
    """Micro-averaged keyword F1 (sets per image)."""
    hits = sum(len(set(p) & set(g)) for p, g in zip(predicted, gold))
    n_predicted, n_gold = sum(len(set(p)) for p in predicted), sum(len(set(g)) for g in gold)
    return 2 * hits / (n_predicted + n_gold) if hits else 0.0


@pytest.mark.slow
def test_learns_landscape_keywords_well_above_chance(processor):
    """~150 steps on 300 procedural scenes: F1 clearly above the best image-blind guess (the frequent keywords)."""
    from hf_rnn.data.landscapes import build_landscape_dataset

    data = build_landscape_dataset(num_train=300, num_validation=0, num_test=100, seed=3)
    gold_train, gold_test = list(data["train"]["keywords"]), list(data["test"]["keywords"])
    train = processor(images=list(data["train"]["image"]), keywords=gold_train, return_tensors="pt")
    test = processor(images=list(data["test"]["image"]), return_tensors="pt")
    model = tiny_captioner(
        seed=0, embedding_size=32, hidden_size=64, attention_size=32, cnn_channels=[8, 16, 32], init_range=0.1
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(150):
        index = torch.randint(0, 300, (24,), generator=generator)
        loss = model(pixel_values=train["pixel_values"][index], labels=train["labels"][index]).loss
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
    model.eval()
    with torch.no_grad():
        predicted = processor.batch_decode(model.generate(pixel_values=test["pixel_values"]))

    counts = {k: sum(k in g for g in gold_train) for k in KEYWORDS}
    blind = max(
        f1([sorted(counts, key=counts.get, reverse=True)[:n]] * len(gold_test), gold_test) for n in range(1, 8)
    )
    score = f1(predicted, gold_test)
    assert score > blind + 0.15, f"F1 {score:.3f} vs image-blind {blind:.3f}"
