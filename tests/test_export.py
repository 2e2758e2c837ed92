"""ONNX export (`python -m hf_rnn.export`) and decoding over onnxruntime (`OnnxTranslator`): the same tokens as
`model.generate()` for every cell, attention and input feeding, greedy and beam search with its settings."""

import copy
import json
import shutil
import subprocess
import sys
import weakref

import numpy as np
import pytest
import torch
from helpers import (
    FIXTURES,
    REPO_ROOT,
    SENTENCES,
    TRANSLATIONS,
    random_batch,
    run_python,
    sentence_tokenizer,
    tiny_model,
    untrained_translator,
)

pytest.importorskip("onnxruntime", reason="the export extra (onnx, onnxscript, onnxruntime) is not installed")
pytest.importorskip("onnxscript", reason="the export extra (onnx, onnxscript, onnxruntime) is not installed")

from hf_rnn.export import ExportError, export_translator, write_top_k_graph
from hf_rnn.onnx_translator import TOP_K, OnnxTranslator, Rows

pytestmark = pytest.mark.slow  # an export takes seconds

# Every cell type, attention type and input feeding setting appears at least once (the full grid, 24 exports, passed
# when this was written; each export takes seconds).
ARCHITECTURES = [
    dict(cell_type="lstm", attention_type="general", input_feeding=True),
    dict(cell_type="lstm", attention_type="concat", input_feeding=False, num_encoder_layers=2, num_decoder_layers=2),
    dict(cell_type="gru", attention_type="dot", input_feeding=True, num_decoder_layers=2),
    dict(cell_type="gru", attention_type="none", input_feeding=False, decoder_init="zeros"),
    dict(cell_type="rnn", attention_type="concat", input_feeding=True),
    dict(cell_type="rnn", attention_type="general", input_feeding=False, bidirectional_encoder=False),
]
# (num_beams, generate() keywords): greedy, and beam search with each early-stopping rule and length penalty sign.
SEARCHES = [
    (1, {}),
    (1, {"max_new_tokens": 4}),
    (3, {}),
    (3, {"early_stopping": True, "num_return_sequences": 2}),
    (4, {"early_stopping": "never", "length_penalty": 0.0}),
    (3, {"length_penalty": -0.5, "max_new_tokens": 6}),
    (2, {"early_stopping": False, "length_penalty": 2.0, "num_return_sequences": 2}),
]


@pytest.fixture(scope="module", params=ARCHITECTURES, ids=lambda a: "-".join(str(v) for v in a.values()))
def exported(request, tmp_path_factory):
    model = tiny_model(seed=1, **request.param)
    return model, OnnxTranslator(export_translator(model, tmp_path_factory.mktemp("onnx")))


@pytest.fixture(scope="module")
def default_export(tmp_path_factory):
    """`tiny_model()` and its export, made once for the tests that need an export but no particular model (an export
    takes seconds); a test that changes the files copies the folder first."""
    model = tiny_model()
    return model, export_translator(model, tmp_path_factory.mktemp("default-onnx"))


@pytest.mark.parametrize("num_beams, kwargs", SEARCHES)
def test_onnxruntime_decoding_gives_generate_s_tokens(exported, num_beams, kwargs):
    """Mixed source lengths (one-token sources included), so sentences end at different steps and rows are dropped;
    a batch of one; the output limit generate() would choose (source-scaled) or the one given."""
    model, translator = exported
    for lengths, seed in (([5, 1, 7, 3, 9, 2, 6, 4], 0), ([4], 1), ([1, 1], 2)):
        ids, mask = random_batch(lengths, model.config.vocab_size, seed=seed)
        with torch.no_grad():
            expected = model.generate(input_ids=ids, attention_mask=mask, num_beams=num_beams, **kwargs).numpy()
        output = translator.generate(ids.numpy(), mask.numpy(), num_beams=num_beams, **kwargs)
        np.testing.assert_array_equal(output, expected)


def test_a_model_that_ends_its_sentences(tmp_path):
    """A model whose sentences end at different steps before the limit (a random model rarely ends): greedy and
    beam search still give generate()'s tokens, and the outputs are shorter than the limit."""
    model = tiny_model(seed=2)
    with torch.no_grad():
        model.lm_head.bias[model.config.eos_token_id] += 1.5
    translator = OnnxTranslator(export_translator(model, tmp_path))
    ids, mask = random_batch([6, 3, 8, 5, 2, 7], model.config.vocab_size, seed=3)
    for beams in (1, 4):
        with torch.no_grad():
            expected = model.generate(input_ids=ids, attention_mask=mask, num_beams=beams).numpy()
        assert (expected == model.config.eos_token_id).any(axis=1).all()
        np.testing.assert_array_equal(translator.generate(ids.numpy(), mask.numpy(), num_beams=beams), expected)


def test_the_generation_config_travels(tmp_path):
    """num_beams, length_penalty and max_new_tokens saved in the model's generation config are the defaults."""
    model = tiny_model(seed=4)
    with torch.no_grad():
        model.lm_head.bias[model.config.eos_token_id] -= 10.0  # never ends: the limit shows
    model.generation_config.update(num_beams=3, length_penalty=0.5, max_new_tokens=5)
    translator = OnnxTranslator(export_translator(model, tmp_path))
    ids, mask = random_batch([4, 6, 2], model.config.vocab_size, seed=5)
    with torch.no_grad():
        expected = model.generate(input_ids=ids, attention_mask=mask).numpy()
    assert expected.shape[1] == 6
    np.testing.assert_array_equal(translator.generate(ids.numpy(), mask.numpy()), expected)


def test_the_command_exports_a_folder_saved_before_export_existed(tmp_path):
    """`python -m hf_rnn.export` on a checkpoint written by an earlier version, tokenizer files copied along."""
    folder = FIXTURES / "translators_saved_by_de5942c" / "gru_concat_2layers"
    model_folder = tmp_path / "model"
    model_folder.mkdir()
    for file in folder.iterdir():
        (model_folder / file.name).write_bytes(file.read_bytes())
    (model_folder / "tokenizer.json").write_text("{}")
    result = subprocess.run(
        [sys.executable, "-m", "hf_rnn.export", "--model", model_folder, "--output", tmp_path / "onnx"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "onnx" / "tokenizer.json").read_text() == "{}"
    assert json.loads((tmp_path / "onnx" / "config.json").read_text())["cell_type"] == "gru"
    from transformers import AutoModelForSeq2SeqLM

    model = AutoModelForSeq2SeqLM.from_pretrained(model_folder)
    ids, mask = random_batch([5, 2, 7], model.config.vocab_size, seed=6)
    with torch.no_grad():
        expected = model.generate(input_ids=ids, attention_mask=mask, num_beams=2).numpy()
    output = OnnxTranslator(tmp_path / "onnx").generate(ids.numpy(), mask.numpy(), num_beams=2)
    np.testing.assert_array_equal(output, expected)


def test_what_cannot_be_exported_is_one_sentence(tmp_path):
    model = tiny_model()
    model.generation_config.repetition_penalty = 1.3
    with pytest.raises(ExportError, match="generation config sets repetition_penalty, which the ONNX decoding loop"):
        export_translator(model, tmp_path)
    quantized = copy.deepcopy(tiny_model())
    pytest.importorskip("torchao")
    quantized.quantize_int8()
    with pytest.raises(ExportError, match="the model is quantized: export the model as loaded"):
        export_translator(quantized, tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "hf_rnn.export", "--model", tmp_path / "missing", "--output", tmp_path / "onnx"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    # (the lines before it, if any, are what importing transformers prints in this environment: see import_noise)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("python -m hf_rnn.export: error: ")


def test_bad_input_is_named_before_onnxruntime_sees_it(default_export):
    translator = OnnxTranslator(default_export[1])
    with pytest.raises(ValueError, match="token id 99, outside the vocabulary \\[0, 23\\)"):
        translator.generate(np.array([[5, 99]]))
    with pytest.raises(ValueError, match="right-padded"):
        translator.generate(np.array([[0, 5, 6]]), np.array([[0, 1, 1]]))
    with pytest.raises(ValueError, match="Source sequence 1 of the batch is empty"):
        translator.generate(np.array([[5, 6], [0, 0]]))
    with pytest.raises(ValueError, match="num_return_sequences \\(3\\) must not exceed num_beams \\(2\\)"):
        translator.generate(np.array([[5, 6]]), num_beams=2, num_return_sequences=3)


def test_the_top_k_graph_ranks_as_a_stable_sort_of_the_log_probabilities_ties_included(tmp_path):
    """log_softmax_top_k.onnx: the indices of a stable argsort of torch's log-softmax, in order, where ties straddle
    the k-th place (few distinct values) and where k is the whole row; the values equal torch's."""
    onnxruntime = pytest.importorskip("onnxruntime")
    write_top_k_graph(tmp_path / TOP_K)
    session = onnxruntime.InferenceSession(str(tmp_path / TOP_K))
    rng = np.random.default_rng(0)
    for logits in (rng.standard_normal((6, 500)), rng.integers(0, 4, (6, 500))):
        logits = logits.astype(np.float32)
        log_probs = torch.log_softmax(torch.from_numpy(logits), dim=-1).numpy()
        for k in (1, 10, 499, 500):
            values, tokens = session.run(None, {"logits": logits, "k": np.array([k])})
            np.testing.assert_array_equal(tokens, np.argsort(-log_probs, axis=1, kind="stable")[:, :k])
            np.testing.assert_allclose(values, np.take_along_axis(log_probs, tokens, axis=1), rtol=0, atol=1e-6)


def test_the_sessions_do_not_spin_between_runs(default_export):
    """The loop alternates three sessions and numpy: no session's threads may hold the cores after its run."""
    translator = OnnxTranslator(default_export[1])
    for session in (translator.encoder, translator.decoder, translator.top_k):
        options = session.get_session_options()
        assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


class RecordingSession:
    """Stands in for the decoder session: at each run, counts the logits arrays of earlier runs still alive."""

    def __init__(self, session):
        self.session, self.returned, self.alive_at_run = session, [], []

    def run(self, *args, **kwargs):
        self.alive_at_run.append(sum(ref() is not None for ref in self.returned))
        outputs = self.session.run(*args, **kwargs)
        self.returned.append(weakref.ref(outputs[0]))
        return outputs


@pytest.mark.parametrize("num_beams", [1, 4])
def test_a_decoder_step_runs_without_the_previous_step_s_logits_alive(default_export, num_beams):
    """The (rows, vocabulary) logits are the loop's largest arrays: a step's are spent once their top-k or argmax is
    taken, and must not stay bound while the next decoder step allocates its own (before: one alive at each step)."""
    model, folder = default_export
    translator = OnnxTranslator(folder)
    ids, mask = random_batch([5, 3, 7], model.config.vocab_size, seed=0)
    expected = translator.generate(ids.numpy(), mask.numpy(), num_beams=num_beams, max_new_tokens=6)
    translator.decoder = RecordingSession(translator.decoder)
    output = translator.generate(ids.numpy(), mask.numpy(), num_beams=num_beams, max_new_tokens=6)
    np.testing.assert_array_equal(output, expected)
    assert len(translator.decoder.alive_at_run) == 6
    assert translator.decoder.alive_at_run == [0] * 6


def test_a_folder_exported_by_another_version_is_named(default_export, tmp_path):
    """Folders from before the top-k graph, and from before the per-beam state (no "format"), or from a later one."""
    shutil.copytree(default_export[1], tmp_path, dirs_exist_ok=True)
    settings_file = tmp_path / "onnx_decoding.json"
    settings = json.loads(settings_file.read_text())
    for format in (None, 1, 3):
        written = {key: value for key, value in settings.items() if key != "format"}
        settings_file.write_text(json.dumps(written if format is None else {**written, "format": format}))
        with pytest.raises(ValueError, match=f"graph format {format or 1}, this loop reads format 2\\): export the"):
            OnnxTranslator(tmp_path)
    settings_file.write_text(json.dumps(settings))
    OnnxTranslator(tmp_path)
    (tmp_path / TOP_K).unlink()
    with pytest.raises(FileNotFoundError, match="export the model again"):
        OnnxTranslator(tmp_path)


@pytest.mark.parametrize("architecture", [ARCHITECTURES[0], ARCHITECTURES[3]], ids=["lstm-general-if", "gru-none"])
def test_int8_export_runs_integer_products_and_keeps_the_teacher_forced_logits_close(tmp_path, architecture):
    """Per step, over 6 given target tokens: the float graphs equal the model's logits, the int8 graphs stay
    within a few per cent of them (relative L2 error), and the decoding loop runs over the int8 graphs."""
    onnx = pytest.importorskip("onnx")
    model = tiny_model(seed=3, **architecture)
    ids, mask = random_batch([6, 2, 9, 4], model.config.vocab_size, seed=0)
    targets = torch.randint(3, model.config.decoder_vocab_size or model.config.vocab_size, (4, 6))
    with torch.no_grad():
        expected = model(input_ids=ids, attention_mask=mask, decoder_input_ids=targets).logits.numpy()

    def relative_error(folder):
        translator = OnnxTranslator(folder)
        memory, *state = translator.encoder.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
        rows = Rows(memory, mask.numpy(), dict(zip(translator.state_names, state)))
        logits = np.concatenate([translator._step(rows, targets[:, t : t + 1].numpy()) for t in range(6)], axis=1)
        return np.linalg.norm(logits - expected) / np.linalg.norm(expected), translator

    float_error, _ = relative_error(export_translator(model, tmp_path / "float"))
    int8_error, translator = relative_error(export_translator(model, tmp_path / "int8", quantize="int8"))
    assert float_error < 1e-5 and 1e-4 < int8_error < 0.05, (float_error, int8_error)
    ops = {node.op_type for node in onnx.load(tmp_path / "int8" / "decoder_step.onnx").graph.node}
    assert ops & {"MatMulInteger", "DynamicQuantizeMatMul"}, ops
    assert json.loads((tmp_path / "int8" / "onnx_decoding.json").read_text())["quantization"] == "int8"
    output = translator.generate(ids.numpy(), mask.numpy(), num_beams=3, max_new_tokens=5)
    assert output.shape[0] == 4 and (output[:, 0] == model.config.decoder_start_token_id).all()


@pytest.fixture(scope="module")
def text_model_export(tmp_path_factory):
    """A folder `model` (a translator and its tokenizer) and its export `onnx`, with the tokenizer files."""
    folder = tmp_path_factory.mktemp("text-model")
    tokenizer = sentence_tokenizer()
    model = untrained_translator(tokenizer)
    model.save_pretrained(folder / "model")
    tokenizer.save_pretrained(folder / "model")
    export_translator(model, folder / "onnx")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (folder / "onnx" / name).write_bytes((folder / "model" / name).read_bytes())
    return folder


@pytest.mark.parametrize("keep_unk", [False, True], ids=["text", "keep-unk"])
def test_the_decode_benchmark_over_onnxruntime_writes_what_the_torch_path_writes_without_importing_torch(
    text_model_export, tmp_path, keep_unk
):
    """benchmarks/decode.py --onnx tokenises and detokenises with `tokenizers` alone (to measure serving without
    torch); its hypotheses and ids must equal the transformers path's, and torch must stay unimported."""
    module_file = REPO_ROOT / "hf_rnn" / "onnx_translator.py"
    assert (text_model_export / "onnx" / "onnx_translator.py").read_text() == module_file.read_text()
    test_file = tmp_path / "test.jsonl"
    pairs = [{"translation": {"en": s, "ko": t}} for s, t in zip(SENTENCES * 3, TRANSLATIONS * 3)]
    test_file.write_text("".join(json.dumps(pair, ensure_ascii=False) + "\n" for pair in pairs), encoding="utf-8")
    common = ["--model", str(text_model_export / "model"), "--test-file", str(test_file), "--target-lang", "ko"]
    common += ["--max-new-tokens", "8", "--batch-size", "5", "--single", "3", "--no-score"]
    common += ["--keep-unk"] if keep_unk else []
    for backend, extra in (("torch", []), ("onnx", ["--onnx", str(text_model_export / "onnx")])):
        argv = ["decode.py", *common, *extra, "--hypotheses-dir", str(tmp_path / backend)]
        code = (
            f"import runpy, sys; sys.argv = {argv!r}\n"
            f"runpy.run_path({str(REPO_ROOT / 'benchmarks' / 'decode.py')!r}, run_name='__main__')\n"
            "print('torch imported:', 'torch' in sys.modules)"
        )
        result = run_python(code, tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
        assert result.stdout.strip().endswith(f"torch imported: {backend == 'torch'}")
    for suffix in ("hyp", "ids"):
        torch_lines = (tmp_path / "torch" / f"beam3.{suffix}").read_text(encoding="utf-8")
        assert (tmp_path / "onnx" / f"beam3.{suffix}").read_text(encoding="utf-8") == torch_lines
        assert torch_lines.count("\n") == len(pairs)  # one line per sentence, whatever it holds
