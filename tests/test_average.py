"""Checkpoint averaging (`python -m hf_rnn.average`, `train.py --average_last_checkpoints`): each average against a
hand computation of the parameter means, folders that load anywhere, and a clear refusal for different models."""

import json

import pytest
import torch
from helpers import run_without_hf_rnn, tiny_model
from huggingface_hub import ModelCard
from safetensors.torch import load_file
from transformers import AutoModelForImageTextToText, AutoModelForSeq2SeqLM, AutoProcessor, AutoTokenizer

from hf_rnn import (
    LSTMCaptionerConfig,
    LSTMCaptionerForConditionalGeneration,
    LSTMCaptionerImageProcessor,
    LSTMCaptionerProcessor,
    TranslationPipeline,
    build_keyword_tokenizer,
    train,
)
from hf_rnn.average import AveragingError, average_checkpoints
from hf_rnn.average import main as average_main
from hf_rnn.data.landscapes import KEYWORDS
from hf_rnn.data.tokenization import train_tokenizer

SENTENCES = ["I am a student.", "You are a doctor.", "He eats an apple.", "나는 학생이다.", "너는 의사다."]


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(SENTENCES * 10, vocab_size=300, show_progress=False)


def translator(tokenizer, seed: int, **overrides):
    return tiny_model(seed=seed, **{"vocab_size": len(tokenizer), "decoder_vocab_size": len(tokenizer), **overrides})


def save(model, tokenizer, folder):
    TranslationPipeline(model=model, tokenizer=tokenizer).save_pretrained(folder)
    return folder


def test_the_average_of_identical_checkpoints_is_the_model(tokenizer, tmp_path):
    model = translator(tokenizer, seed=1)
    folders = [save(model, tokenizer, tmp_path / f"copy-{i}") for i in range(3)]
    averaged = average_checkpoints(folders)
    expected = model.state_dict()
    assert averaged.state_dict().keys() == expected.keys()
    assert all(torch.equal(averaged.state_dict()[key], value) for key, value in expected.items())


@pytest.mark.parametrize("shape", [{}, {"share_embeddings": True, "tie_word_embeddings": True, "embedding_size": 10}])
def test_the_average_is_the_mean_of_each_parameter_and_the_folder_is_a_saved_model(tokenizer, tmp_path, shape):
    models = [translator(tokenizer, seed=seed, **shape) for seed in (1, 2, 3)]
    folders = [save(model, tokenizer, tmp_path / f"checkpoint-{i}") for i, model in enumerate(models)]
    output = tmp_path / "average"
    assert average_main(["--checkpoints", *map(str, folders), "--output", str(output)]) == 0

    loaded = AutoModelForSeq2SeqLM.from_pretrained(output).eval()
    for name, parameter in loaded.named_parameters():
        by_hand = torch.stack([dict(model.named_parameters())[name].detach() for model in models]).mean(dim=0)
        torch.testing.assert_close(parameter.detach(), by_hand)
    if shape:  # still one matrix for source, target and output layer after saving and loading
        model = loaded.model
        assert model.encoder.embed_tokens.weight is model.decoder.embed_tokens.weight is loaded.lm_head.weight
    saved = {path.name for path in output.iterdir()}
    assert {"model.safetensors", "config.json", "generation_config.json", "tokenizer.json", "README.md"} <= saved
    assert {"modeling_lstm_seq2seq.py", "pipeline_translation.py"} <= saved
    card = ModelCard.load(output / "README.md")
    assert card.data.pipeline_tag == "translation" and "checkpoint-average" in card.data.tags
    assert ", ".join(f"`{tmp_path.name}/checkpoint-{i}`" for i in range(3)) in card.text  # the run's name, no path


def test_batch_norm_statistics_are_averaged_and_batch_counters_come_from_the_last_checkpoint(tmp_path):
    processor = LSTMCaptionerProcessor(LSTMCaptionerImageProcessor(), build_keyword_tokenizer(list(KEYWORDS)))
    config = dict(vocab_size=len(KEYWORDS) + 4, embedding_size=8, hidden_size=12, attention_size=10, dropout=0.0)
    models, folders = [], []
    for seed in range(3):
        torch.manual_seed(seed)
        model = LSTMCaptionerForConditionalGeneration(LSTMCaptionerConfig(cnn_channels=[4, 8], **config))
        model.train()  # BatchNorm updates its running statistics and counts the batches it saw
        for _ in range(seed + 1):
            model.model.get_encoder()(torch.randn(2, 3, 64, 64) * (seed + 1))
        models.append(model.eval())
        model.save_pretrained(tmp_path / f"c{seed}")
        processor.save_pretrained(tmp_path / f"c{seed}")
        folders.append(tmp_path / f"c{seed}")
    averaged = average_checkpoints(folders)
    buffers = dict(averaged.named_buffers())
    counters = [name for name in buffers if name.endswith("num_batches_tracked")]
    statistics = [name for name in buffers if name.endswith(("running_mean", "running_var"))]
    assert counters and statistics
    for name in statistics:
        by_hand = torch.stack([dict(m.named_buffers())[name] for m in models]).mean(dim=0)
        torch.testing.assert_close(buffers[name], by_hand)
    for name in counters:
        assert buffers[name].item() == dict(models[-1].named_buffers())[name].item() == 3
    # The written folder holds the processor and loads with the Auto class.
    average_main(["--checkpoints", *map(str, folders), "--output", str(tmp_path / "average")])
    assert isinstance(AutoModelForImageTextToText.from_pretrained(tmp_path / "average"), type(models[0]))
    assert isinstance(AutoProcessor.from_pretrained(tmp_path / "average"), LSTMCaptionerProcessor)


@pytest.mark.parametrize(
    "other, message",
    [
        ({"hidden_size": 12}, r"`hidden_size` is 12 in .*b and 10 in .*a"),
        ({"cell_type": "gru"}, r"`cell_type` is 'gru' in .*b and 'lstm' in .*a"),
        ({"decoder_vocab_size": 40}, r"`decoder_vocab_size` is 40 in .*b"),
    ],
)
def test_checkpoints_of_different_models_are_refused_naming_the_field(tokenizer, tmp_path, other, message):
    first = save(translator(tokenizer, seed=1), tokenizer, tmp_path / "a")
    second = save(translator(tokenizer, seed=2, **other), tokenizer, tmp_path / "b")
    with pytest.raises(AveragingError, match=r"Cannot average .*b with .*a: " + message):
        average_checkpoints([second, first])


def test_checkpoints_with_different_vocabularies_of_one_size_are_refused(tokenizer, tmp_path):
    other_tokenizer = train_tokenizer([s[::-1] for s in SENTENCES] * 10, vocab_size=300, show_progress=False)
    assert len(other_tokenizer) == len(tokenizer)  # configs alike: only the tokens tell the runs apart
    first = save(translator(tokenizer, seed=1), tokenizer, tmp_path / "a")
    second = save(translator(tokenizer, seed=2), other_tokenizer, tmp_path / "b")
    with pytest.raises(AveragingError, match=r"token id \d+ is .* in the tokenizer of .*b and .* in that of .*a"):
        average_checkpoints([second, first])


def test_command_line_errors_are_one_line(tokenizer, tmp_path, capsys):
    save(translator(tokenizer, seed=1), tokenizer, tmp_path / "a")
    (tmp_path / "run" / "checkpoint-5").mkdir(parents=True)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("")
    capsys.readouterr()
    cases = [
        (["--run", str(tmp_path / "run"), "--last", "2"], "0 complete checkpoint(s) (none), fewer than --last 2"),
        (["--checkpoints", str(tmp_path / "run")], "is a training output folder: use --run"),
        (["--checkpoints", str(tmp_path / "a"), "--output", str(tmp_path / "taken")], "is not an empty folder"),
    ]
    for argv, message in cases:
        argv = argv if "--output" in argv else [*argv, "--output", str(tmp_path / "out")]
        assert average_main(argv) == 1
        stderr = capsys.readouterr().err
        assert stderr.startswith("python -m hf_rnn.average: error: ") and message in stderr
        assert stderr.count("\n") == 1


@pytest.mark.slow
def test_train_averages_the_last_checkpoints_and_the_average_loads_without_hf_rnn(tmp_path):
    """`--average_last_checkpoints 2`: the final model, its evaluation and its card are the mean of the last two
    checkpoints (checked against the checkpoint files); the folder then serves the pipeline without hf_rnn."""
    output_dir = tmp_path / "run"
    argv = ["synthetic_en_ko", "--model.embedding_size", "16", "--model.hidden_size", "32", "--model.dropout", "0.0"]
    argv += ["--tokenizer_vocab_size", "400", "--synthetic_train_size", "400", "--synthetic_eval_size", "20"]
    argv += ["--per_device_train_batch_size", "16", "--report_to", "none", "--disable_tqdm", "true"]
    argv += ["--max_steps", "25", "--eval_strategy", "no", "--save_strategy", "steps", "--save_steps", "10"]
    argv += ["--save_total_limit", "3", "--average_last_checkpoints", "2", "--num_examples_to_print", "0"]
    metrics = train.main([*argv, "--output_dir", str(output_dir)])

    final = load_file(output_dir / "model.safetensors")
    checkpoints = [load_file(output_dir / name / "model.safetensors") for name in ("checkpoint-20", "checkpoint-25")]
    assert not torch.equal(checkpoints[0]["lm_head.weight"], checkpoints[1]["lm_head.weight"])
    for name, value in final.items():
        torch.testing.assert_close(value, (checkpoints[0][name] + checkpoints[1][name]) / 2)
    card = ModelCard.load(output_dir / "README.md")
    assert "mean of 2 checkpoints: `checkpoint-20`, `checkpoint-25`" in card.text
    results = {m["type"]: m["value"] for r in card.data.to_dict()["model-index"][0]["results"] for m in r["metrics"]}
    assert results["bleu"] == pytest.approx(metrics["test_bleu"], abs=1e-3)

    # The same average from the command line, and a process without hf_rnn that loads and translates with it.
    assert average_main(["--run", str(output_dir), "--last", "2", "--output", str(tmp_path / "again")]) == 0
    again = load_file(tmp_path / "again" / "model.safetensors")
    assert all(torch.equal(again[name], value) for name, value in final.items())
    model = AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "again").eval()
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "again")
    expected = TranslationPipeline(model=model, tokenizer=tokenizer)("I am a student.", num_beams=3)
    script = (
        "import json\nfrom transformers import pipeline\n"
        "translator = pipeline('translation', model='again', trust_remote_code=True)\n"
        "print(json.dumps(translator('I am a student.', num_beams=3)))\n"
    )
    result = run_without_hf_rnn(script, tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == expected


def test_averaging_arguments_are_checked_before_training():
    from hf_rnn.training.arguments import parse_args

    base = ["synthetic_en_ko", "--output_dir", "x", "--average_last_checkpoints"]
    with pytest.raises(ValueError, match="`save_total_limit` 2 keeps fewer: raise it to at least 3"):
        parse_args([*base, "3"])
    with pytest.raises(ValueError, match="`save_strategy` is 'no'"):
        parse_args([*base, "2", "--save_strategy", "no"])
    with pytest.raises(ValueError, match="must be at least 2"):
        parse_args([*base, "1"])
    assert parse_args([*base, "2"]).training.average_last_checkpoints == 2
