"""`python -m hf_rnn.translate`: input taken as written, one output line per input line, clear errors for closed or
unreadable streams and missing tokenizers, death by the signal that ended it, and a console free of our warnings."""

import copy
import functools
import os
import re
import signal
import subprocess
import sys

import pytest
import torch
from helpers import BLOCK_HF_RNN, SENTENCES, run_python, sentence_tokenizer, subprocess_env, untrained_translator
from PIL import Image
from transformers import pipeline

from hf_rnn import (
    LSTMCaptionerConfig,
    LSTMCaptionerForConditionalGeneration,
    LSTMCaptionerImageProcessor,
    LSTMCaptionerProcessor,
    LSTMSeq2SeqForConditionalGeneration,
    TranslationPipeline,
    average,
    build_keyword_tokenizer,
    export,
)
from hf_rnn.data.landscapes import KEYWORDS, render_landscape
from hf_rnn.training.arguments import ConfigError
from hf_rnn.training.arguments import parse_args as train_args
from hf_rnn.translate import CLIError, load_translator, parse_args, translate_in_batches

# Lines that only look like line breaks to str.splitlines, blank lines, spaces, a last line without its newline.
LINES = (
    b"I am a student.\r\nYou are\ra doctor.\n\n   \nHe eats\xe2\x80\xa8an apple.\x0b\x0c\x1c\xc2\x85 x\n\t\r\nWe read"
)


@pytest.fixture(scope="module")
def tokenizer():
    return sentence_tokenizer()


@pytest.fixture(scope="module")
def translator(tokenizer):
    return untrained_translator(tokenizer)


@pytest.fixture(scope="module")
def folder(tmp_path_factory, tokenizer, translator):
    path = tmp_path_factory.mktemp("translator")
    TranslationPipeline(model=translator, tokenizer=tokenizer).save_pretrained(path)
    return path


def cli(*args, tmp_path, stdin=None, python=(), **popen) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *python, "-m", "hf_rnn.translate", *map(str, args)],
        input=stdin,
        capture_output=True,
        env=subprocess_env(tmp_path),
        timeout=300,
        **popen,
    )


def translation(model, tokenizer, sentence: str, **generate_kwargs) -> str:
    """The independent computation: tokenizer -> generate -> decode for one sentence, or "" for a blank one."""
    if not sentence.strip():
        return ""
    with torch.no_grad():
        output = model.generate(**tokenizer(sentence, return_tensors="pt"), **generate_kwargs)
    return tokenizer.decode(output[0], skip_special_tokens=True).replace("\r", " ").replace("\n", " ")


def test_one_line_is_one_sentence_whatever_the_line_ending(folder, tokenizer, translator, tmp_path):
    lines = [line.decode() for line in LINES.splitlines()]
    assert len(lines) == 8 and lines[1] == "You are"
    expected = [translation(translator, tokenizer, line, num_beams=2) for line in lines]
    (tmp_path / "in.txt").write_bytes(b"\xef\xbb\xbf" + LINES)
    for source in (["--file", tmp_path / "in.txt"], ["--file", "-"]):
        result = cli("--model", folder, *source, "--num-beams", 2, "--batch-size", 3, tmp_path=tmp_path, stdin=LINES)
        assert result.returncode == 0, result.stderr.decode()[-2000:]
        assert result.stdout.decode().split("\n") == [*expected, ""]  # one line per input line, each ended by LF


def test_blank_sentences_give_empty_lines_without_calling_the_model(tokenizer, translator, monkeypatch):
    sentences = ["", " ", SENTENCES[0], "\t", SENTENCES[1], "\u3000"]
    expected = [translation(translator, tokenizer, s) for s in sentences]
    rows = []
    generate = translator.generate
    monkeypatch.setattr(
        translator, "generate", lambda **kwargs: rows.append(len(kwargs["input_ids"])) or generate(**kwargs)
    )
    pipe = TranslationPipeline(model=translator, tokenizer=tokenizer)
    assert list(translate_in_batches(pipe, sentences, batch_size=4, num_beams=1)) == expected
    assert sum(rows) == 2  # only the two real sentences reached generate()
    assert list(translate_in_batches(pipe, ["", "  "], batch_size=4)) == ["", ""]
    assert sum(rows) == 2


def test_an_argument_or_line_that_is_blank_gives_an_empty_line(folder, tmp_path):
    result = cli("--model", folder, "", "   ", tmp_path=tmp_path)
    assert result.returncode == 0 and result.stdout == b"\n\n"


def test_a_model_folder_without_tokenizer_files_is_one_sentence(translator, tmp_path, folder, tokenizer):
    translator.save_pretrained(tmp_path / "model")
    result = cli("--model", tmp_path / "model", "I am a student.", tmp_path=tmp_path)
    assert result.returncode == 1
    assert result.stderr.decode().strip().splitlines()[-1] == (
        f"python -m hf_rnn.translate: error: {tmp_path / 'model'} has no tokenizer files (tokenizer.json, "
        "tokenizer_config.json): save the model's tokenizer next to it (tokenizer.save_pretrained) or give --tokenizer"
    )
    with_tokenizer = cli("--model", tmp_path / "model", "--tokenizer", folder, SENTENCES[0], tmp_path=tmp_path)
    assert with_tokenizer.stdout.decode() == translation(translator, tokenizer, SENTENCES[0], num_beams=5) + "\n"


@pytest.mark.parametrize(
    "content,message",
    [
        (None, "cannot read {path}: No such file or directory"),
        (b"ok\n\xff\xfe bad\n", "{path}, line 2, byte 1: not UTF-8"),
    ],
    ids=["missing", "not-utf8"],
)
def test_unreadable_input_names_the_file_and_line(folder, tmp_path, content, message):
    path = tmp_path / "in.txt"
    if content is not None:
        path.write_bytes(content)
    result = cli("--model", folder, "--file", path, tmp_path=tmp_path)
    assert result.returncode == 1 and message.format(path=path) in result.stderr.decode()
    assert "Traceback" not in result.stderr.decode()


def test_closed_stdin_is_a_clear_error(folder, tmp_path):
    result = cli("--model", folder, "--file", "-", tmp_path=tmp_path, preexec_fn=lambda: os.close(0))
    assert result.returncode == 1
    assert "standard input is closed" in result.stderr.decode() and "Traceback" not in result.stderr.decode()


def test_closed_or_full_stdout_fails_loudly_instead_of_losing_output(folder, tmp_path):
    closed = cli("--model", folder, "I am a student.", tmp_path=tmp_path, preexec_fn=lambda: os.close(1))
    assert closed.returncode == 1 and "standard output is closed" in closed.stderr.decode()

    process = subprocess.Popen(
        [sys.executable, "-m", "hf_rnn.translate", "--model", str(folder), *SENTENCES],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=subprocess_env(tmp_path),
    )
    process.stdout.close()  # the reader goes away, like `| head -0`
    stderr = process.communicate(timeout=300)[1].decode()
    assert process.returncode == 1, stderr
    assert "cannot write to standard output after 0 translation(s): Broken pipe" in stderr
    assert "Traceback" not in stderr and "Exception ignored" not in stderr

    if os.path.exists("/dev/full"):
        full = cli("--model", folder, "I am a student.", "--output", "/dev/full", tmp_path=tmp_path)
        assert full.returncode == 1 and "cannot write to /dev/full" in full.stderr.decode()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_ends_the_run_by_that_signal_without_a_traceback(folder, tmp_path, signum):
    (tmp_path / "many.txt").write_text("\n".join(f"{SENTENCES[i % 4]} {i}" for i in range(20000)) + "\n")
    process = subprocess.Popen(
        [sys.executable, "-m", "hf_rnn.translate", "--model", str(folder), "--file", str(tmp_path / "many.txt")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=subprocess_env(tmp_path),
    )
    process.stdout.readline()  # translating has begun
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == -signum, stderr.decode()[-2000:]
    assert "Traceback" not in stderr.decode()


def test_output_file_and_attention_heatmap(folder, tmp_path):
    result = cli(
        "--model",
        folder,
        *SENTENCES,
        "--output",
        tmp_path / "out.txt",
        "--plot-attention",
        tmp_path / "a.png",
        tmp_path=tmp_path,
    )
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    assert (tmp_path / "out.txt").read_bytes() == cli("--model", folder, *SENTENCES, tmp_path=tmp_path).stdout
    with Image.open(tmp_path / "a.png") as image:
        assert image.size[0] > 28 * 4 and image.size[1] > 28


@pytest.mark.parametrize("option", [("--dtype", "bfloat16"), ("--quantize", "int8")])
def test_reduced_precision_translates_as_the_converted_model_does(option, folder, tokenizer, translator, tmp_path):
    """--dtype bfloat16 and --quantize int8 translate as the model converted in this process (`.to(torch.bfloat16)`,
    `.quantize_int8()`) does."""
    pytest.importorskip("torchao")
    converted = copy.deepcopy(translator)
    converted = converted.to(torch.bfloat16) if option[0] == "--dtype" else converted.quantize_int8()
    result = cli("--model", folder, *SENTENCES, *option, "--batch-size", 1, "--num-beams", 2, tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    expected = [translation(converted, tokenizer, s, num_beams=2) for s in SENTENCES]
    assert result.stdout.decode().split("\n") == [*expected, ""]  # a form feed in a translation ends no line


@pytest.mark.parametrize("native", [True, False], ids=["native", "emulated"])
@pytest.mark.parametrize("option", [("--dtype", "bfloat16"), ("--quantize", "int8")], ids=["bf16", "int8"])
def test_reduced_precision_on_a_cpu_that_emulates_it_warns_on_stderr(folder, monkeypatch, capsys, option, native):
    """--dtype bfloat16 / --quantize int8 where the CPU has no instructions for them (an AVX2 CPU: greedy decoding
    2.7 / 10 times slower than float32) say so in one line on stderr and still convert; stdout stays for
    translations."""
    if option[1] == "int8":
        pytest.importorskip("torchao")
    x86 = {"architecture": "x86_64", **dict.fromkeys(("avx2", "avx512_vnni"), True)}
    capabilities = x86 if native else {**x86, "avx512_vnni": False}
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: native)
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: capabilities)
    translator = load_translator(parse_args(["--model", str(folder), *option, "a sentence"]))
    if option[1] == "bfloat16":
        assert translator.model.get_input_embeddings().weight.dtype == torch.bfloat16
    else:
        assert not any(isinstance(module, torch.nn.RNNBase) for module in translator.model.modules())
    captured = capsys.readouterr()
    assert captured.out == ""
    warnings = [line for line in captured.err.splitlines() if "warning" in line]
    prefix = f"python -m hf_rnn.translate: warning: {' '.join(option)}: this CPU has no native {option[1]} products"
    assert len(warnings) == (0 if native else 1) and all(line.startswith(prefix) for line in warnings), warnings


def test_reduced_precision_applies_to_every_ensemble_member(folder):
    """With several --model, --dtype and --quantize convert each member (the ensemble holds no weights itself)."""
    pytest.importorskip("torchao")
    models = ["--model", str(folder), "--model", str(folder)]
    args = parse_args([*models, "--dtype", "bfloat16", "--quantize", "int8", "a sentence"])
    members = load_translator(args).model.members
    assert len(members) == 2
    for member in members:
        assert member.get_input_embeddings().weight.dtype == torch.bfloat16
        assert not any(isinstance(module, torch.nn.RNNBase) for module in member.modules())  # unrolled for int8


def test_int8_on_a_model_without_it_is_one_sentence(folder, tmp_path, monkeypatch):
    """A model class without `quantize_int8` (remote code not made by hf_rnn) gets one line, not a traceback."""
    monkeypatch.delattr("hf_rnn.translator.modeling_lstm_seq2seq.LSTMSeq2SeqPreTrainedModel.quantize_int8")
    args = parse_args(["--model", str(folder), "--quantize", "int8", "x"])
    with pytest.raises(CLIError, match="--quantize int8: LSTMSeq2SeqForConditionalGeneration has no int8 mode"):
        load_translator(args)


def test_the_model_s_warnings_reach_the_console_and_no_limit_is_added(folder, tokenizer, translator, tmp_path):
    """The CLI leaves logging alone: what generate() warns (here: two length limits) is shown, and the length is the
    model's or --max-new-tokens, never the CLI's own."""
    model = LSTMSeq2SeqForConditionalGeneration(translator.config).eval()
    model.load_state_dict(translator.state_dict())
    model.generation_config.max_length = 40
    model.generation_config.suppress_tokens = [tokenizer.eos_token_id]  # never stops on its own
    TranslationPipeline(model=model, tokenizer=tokenizer).save_pretrained(tmp_path / "long")
    result = cli("--model", tmp_path / "long", SENTENCES[0], "--num-beams", 1, tmp_path=tmp_path)
    assert result.stdout.decode() == translation(model, tokenizer, SENTENCES[0]) + "\n"
    with torch.no_grad():
        assert model.generate(**tokenizer(SENTENCES[0], return_tensors="pt"), num_beams=1).shape[1] == 40
    capped = cli("--model", tmp_path / "long", SENTENCES[0], "--max-new-tokens", 3, tmp_path=tmp_path)
    assert "`max_new_tokens` will take precedence" in capped.stderr.decode()


# --- a clean console ---------------------------------------------------------------------------------------------

# transformers' progress bars are not warnings; every other line on stderr is one.
PROGRESS = ("Loading weights", "Writing model shards")
# torch's C++-style log prefix (level, date, time, thread id), which differs between two runs of the same line, and
# the logged file's path, which torch shortens by whichever sys.path entry holds it (`-m` puts the working folder
# first: a virtual environment inside the repository then shows as `.venv/lib/.../site-packages/torch/...`).
LOG_PREFIX = re.compile(r"^[IWEF]\d{4} [\d:.]+ +\d+ (\S*site-packages/)?")


def stderr_lines(stderr: str) -> set[str]:
    return {LOG_PREFIX.sub("", line) for line in stderr.replace("\r", "\n").splitlines() if line.strip()}


@functools.cache
def import_noise() -> frozenset[str]:
    """What importing transformers prints in this environment before any code of ours runs (e.g. torchao, which
    transformers imports whenever it is installed, logs that its CUDA kernels do not load on a CPU-only machine)."""
    result = subprocess.run(
        [sys.executable, "-W", "default", "-c", "import transformers.modeling_utils"],
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    return frozenset(stderr_lines(result.stderr))


def our_warnings(stderr: str) -> list[str]:
    lines = stderr_lines(stderr) - import_noise()
    return sorted(line for line in lines if not line.lstrip().startswith(PROGRESS))


def test_cli_and_pipelines_print_nothing_but_results(tokenizer, translator, tmp_path):
    """Runs as a user would, Python warnings on: the CLI, both pipelines with hf_rnn, both without it.

    The translator here ends its sentences (a random one never does, and each cut output is rightly reported)."""
    stopping = copy.deepcopy(translator)
    with torch.no_grad():
        stopping.lm_head.bias[stopping.config.eos_token_id] += 20.0
    folder = tmp_path / "stopping-translator"
    TranslationPipeline(model=stopping, tokenizer=tokenizer).save_pretrained(folder)
    processor = LSTMCaptionerProcessor(LSTMCaptionerImageProcessor(), build_keyword_tokenizer(list(KEYWORDS)))
    torch.manual_seed(0)
    captioner = LSTMCaptionerForConditionalGeneration(
        LSTMCaptionerConfig(vocab_size=len(KEYWORDS) + 4, embedding_size=8, hidden_size=8, attention_size=8)
    ).eval()
    pipeline("image-text-to-text", model=captioner, processor=processor).save_pretrained(tmp_path / "captioner")
    render_landscape(0)[0].save(tmp_path / "scene.png")

    result = cli("--model", folder, *SENTENCES, tmp_path=tmp_path, python=("-W", "default"))
    assert result.returncode == 0 and our_warnings(result.stderr.decode()) == []

    script = f"""
from transformers import pipeline
print(pipeline("translation", model={str(folder)!r}{{trust}})({SENTENCES!r}, num_beams=2))
captioner = pipeline("image-text-to-text", model={str(tmp_path / "captioner")!r}{{trust}})
print(captioner({str(tmp_path / "scene.png")!r}))
"""
    for code in (
        "import hf_rnn\n" + script.format(trust=""),
        BLOCK_HF_RNN + script.format(trust=", trust_remote_code=True"),
    ):
        result = run_python(code, tmp_path, options=("-W", "default"))
        assert result.returncode == 0, result.stderr[-3000:]
        assert our_warnings(result.stderr) == []


@pytest.mark.parametrize("written", ["missing", "file"])
def test_a_model_path_naming_nothing_or_a_file_is_said_so_by_every_tool(tmp_path, capsys, written):
    """Each tool used to pass huggingface_hub's "Repo id must use alphanumeric chars" through for these."""
    (tmp_path / "model.safetensors").write_bytes(b"")
    name = tmp_path / ("missing" if written == "missing" else "model.safetensors")
    reason = (
        f"there is no folder {name} (a Hub model id is written `owner/name`)"
        if written == "missing"
        else f"{name} is a file; give the folder that holds it (config.json and the weights)"
    )
    sentence_tokenizer().save_pretrained(tmp_path / "tokenizer")
    with pytest.raises(CLIError, match=re.escape(reason)):
        load_translator(parse_args(["--model", str(name), "--tokenizer", str(tmp_path / "tokenizer"), "Hi."]))
    with pytest.raises(CLIError, match=re.escape(reason)):
        load_translator(parse_args(["--model", str(name), "Hi."]))
    assert average.main(["--checkpoints", str(name), str(name), "--output", str(tmp_path / "out")]) == 1
    assert capsys.readouterr().err.strip().endswith(reason)
    assert export.main(["--model", str(name), "--output", str(tmp_path / "out")]) == 1
    assert capsys.readouterr().err.strip().endswith(reason)
    with pytest.raises(ConfigError, match=re.escape(f"`model_name_or_path`: {reason}")):
        train_args(["--model_name_or_path", str(name), "--output_dir", str(tmp_path / "out")])


@pytest.mark.parametrize(
    "code,preset,expected",
    [
        ("import hf_rnn", None, "1"),  # the CLI's order: the package before torch
        ("import hf_rnn", "0", "0"),  # the user's own setting wins
        ("import torch, hf_rnn", None, "None"),  # MKL is loaded already: nothing to change
    ],
)
def test_importing_hf_rnn_before_torch_frees_mkl_s_buffers(code, preset, expected, tmp_path):
    """MKL keeps its matrix products' buffers for the life of the process unless MKL_DISABLE_FAST_MM is set when
    torch loads it (about 37 MiB of beam-5 decoding's peak): the package sets it when it is imported first."""
    env = {key: value for key, value in subprocess_env(tmp_path).items() if key != "MKL_DISABLE_FAST_MM"}
    if preset is not None:
        env["MKL_DISABLE_FAST_MM"] = preset
    result = run_python(f"{code}\nimport os\nprint(os.environ.get('MKL_DISABLE_FAST_MM'))", tmp_path, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == expected
