"""train.py end to end: arguments, data sources, resume, multi-process metrics, card, Hub push, CLI."""

import json
import logging
import os
import signal
import subprocess
import sys

import pandas as pd
import pytest
import sacrebleu
import torch
from helpers import BLOCK_HF_RNN, REPO_ROOT, hub_client_env, subprocess_env
from huggingface_hub import ModelCard
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, Trainer

from hf_rnn.data.synthetic_en_ko import build_synthetic_en_ko
from hf_rnn.data.translation import load_raw_translation_data, to_source_target
from hf_rnn.training.arguments import parse_args
from hf_rnn.training.trainer import last_complete_checkpoint

sys.path.insert(0, str(REPO_ROOT))
import train

TINY = [
    "--embedding_size",
    "16",
    "--hidden_size",
    "32",
    "--dropout",
    "0.0",
    "--tokenizer_vocab_size",
    "400",
    "--synthetic_train_size",
    "400",
    "--synthetic_eval_size",
    "20",
    "--per_device_train_batch_size",
    "16",
    "--per_device_eval_batch_size",
    "16",
    "--max_source_length",
    "24",
    "--max_target_length",
    "24",
    "--report_to",
    "none",
    "--disable_tqdm",
    "true",
    "--num_examples_to_print",
    "2",
]


def tiny_run(output_dir, *extra: str) -> list[str]:
    return [str(train.DEFAULT_CONFIG), *TINY, "--output_dir", str(output_dir), *extra]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny end-to-end run shared by the tests that only read its output."""
    output_dir = tmp_path_factory.mktemp("run") / "tiny-en-ko"
    metrics = train.main(
        tiny_run(
            output_dir, "--max_steps", "30", "--logging_steps", "10", "--eval_strategy", "no", "--save_strategy", "no"
        )
    )
    return output_dir, metrics


def test_yaml_values_and_command_line_overrides(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("hidden_size: 64\nlearning_rate: 0.01\ncell_type: gru\nsource_lang: fr\noutput_dir: from-yaml\n")
    model_args, data_args, training_args = parse_args([str(config), "--learning_rate", "0.5", "--source_lang", "de"])
    assert (model_args.hidden_size, model_args.cell_type) == (64, "gru")
    assert training_args.learning_rate == 0.5 and data_args.source_lang == "de"
    assert training_args.output_dir == "from-yaml"
    assert training_args.predict_with_generate is True
    (tmp_path / "bad.yaml").write_text("hiden_size: 64\n")
    with pytest.raises(ValueError, match="Unknown key\\(s\\) in .*bad.yaml: hiden_size"):
        parse_args([str(tmp_path / "bad.yaml")])


def test_default_run_uses_the_embedded_config():
    model_args, data_args, training_args = parse_args([], default_config=train.DEFAULT_CONFIG)
    assert data_args.dataset_name == "synthetic_en_ko" and model_args.task == "translation"
    assert training_args.output_dir == "outputs/synthetic-en-ko"


PAIRS = [("I am a student.", "나는 학생이다."), ("  ", "빈"), ("You eat.", "너는 먹는다."), ("Tom runs.", "")]


@pytest.mark.parametrize("form", ["jsonl-translation", "json-columns", "csv", "tsv", "parquet"])
def test_every_local_file_form_gives_the_same_pairs(tmp_path, form, caplog):
    if form == "jsonl-translation":
        path = tmp_path / "train.jsonl"
        path.write_text(
            "".join(json.dumps({"translation": {"en": s, "ko": t}}, ensure_ascii=False) + "\n" for s, t in PAIRS)
        )
    else:
        frame = pd.DataFrame({"english": [s for s, _ in PAIRS], "korean": [t for _, t in PAIRS]})
        suffix = {"json-columns": ".jsonl", "csv": ".csv", "tsv": ".tsv", "parquet": ".parquet"}[form]
        path = tmp_path / f"train{suffix}"
        if form == "json-columns":
            frame.to_json(path, orient="records", lines=True, force_ascii=False)
        elif form == "parquet":
            frame.to_parquet(path)
        else:
            frame.to_csv(path, sep="\t" if form == "tsv" else ",", index=False)
    columns = {} if form == "jsonl-translation" else {"source_column": "english", "target_column": "korean"}
    raw = load_raw_translation_data(None, data_files={"train": str(path)})
    with caplog.at_level(logging.WARNING):
        pairs = to_source_target(raw, "en", "ko", **columns)
    assert list(zip(pairs["train"]["source"], pairs["train"]["target"])) == [PAIRS[0], PAIRS[2]]
    assert "Dropped 2 empty or blank pair(s) from the train split" in caplog.text


def test_data_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        load_raw_translation_data(None, data_files={"train": str(tmp_path / "missing.jsonl")})
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(ValueError, match="share one format"):
        load_raw_translation_data(None, data_files={"train": str(tmp_path / "a.txt")})
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps({"translation": {"en": "a", "de": "b"}}) + "\n")
    with pytest.raises(ValueError, match="translates between \\['de', 'en'\\], not 'en'→'ko'"):
        to_source_target(load_raw_translation_data(None, data_files={"train": str(path)}), "en", "ko")


def test_hub_dataset_source(hub_server, tmp_path):
    """`dataset_name` goes through `datasets.load_dataset` against the (stand-in) Hub."""
    from huggingface_hub import HfApi

    folder = tmp_path / "dataset"
    (folder / "data").mkdir(parents=True)
    for split in ("train", "validation"):
        rows = [{"translation": {"en": f"{split} {i}", "ko": f"{split} 번역 {i}"}} for i in range(3)]
        (folder / "data" / f"{split}.jsonl").write_text(
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        )
    api = HfApi()
    api.create_repo("user/pairs", repo_type="dataset")
    api.upload_folder(repo_id="user/pairs", repo_type="dataset", folder_path=folder)
    pairs = to_source_target(
        load_raw_translation_data("user/pairs", splits={"train": "train", "validation": "validation", "test": "test"}),
        "en",
        "ko",
    )
    assert sorted(pairs) == ["train", "validation"]
    assert pairs["validation"]["target"] == ["validation 번역 0", "validation 번역 1", "validation 번역 2"]


@pytest.mark.slow
def test_trained_folder_loads_translates_and_has_a_valid_card(trained):
    output_dir, metrics = trained
    assert {"test_bleu", "test_chrf", "eval_bleu"} <= set(metrics)
    model = AutoModelForSeq2SeqLM.from_pretrained(output_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(output_dir)
    inputs = tokenizer(["I am a student."], return_tensors="pt")
    assert model.generate(**inputs).shape[0] == 1

    card = ModelCard.load(output_dir / "README.md")
    data = card.data.to_dict()
    assert data["language"] == ["en", "ko"] and data["license"] == "apache-2.0"
    assert data["pipeline_tag"] == "translation" and "hf-rnn" in data["tags"]
    results = {m["type"]: m["value"] for r in data["model-index"][0]["results"] for m in r["metrics"]}
    assert results["bleu"] == pytest.approx(metrics["test_bleu"], abs=1e-3)
    assert "## Training loss" in card.text and "| step | epoch | loss |" in card.text


def test_training_log_reports_target_token_throughput(trained):
    output_dir, _ = trained
    history = json.loads((output_dir / "trainer_state.json").read_text())["log_history"]
    training_entries = [entry for entry in history if "loss" in entry]
    assert [entry["step"] for entry in training_entries] == [10, 20, 30]
    assert all(entry["target_tokens_per_second"] > 0 for entry in training_entries)


def test_time_budget_stops_training_then_saves_and_evaluates(tmp_path):
    output_dir = tmp_path / "budget"
    metrics = train.main(
        tiny_run(
            output_dir,
            "--max_steps",
            "100000",
            "--max_train_minutes",
            "0.05",
            "--eval_strategy",
            "no",
            "--save_strategy",
            "no",
            "--num_examples_to_print",
            "0",
        )
    )
    state = json.loads((output_dir / "trainer_state.json").read_text())
    assert 0 < state["global_step"] < 100000
    assert metrics["train_runtime"] < 60 and "test_bleu" in metrics
    assert (output_dir / "model.safetensors").exists()
    with pytest.raises(ValueError, match="max_train_minutes"):
        parse_args(["--max_train_minutes", "0"], default_config=train.DEFAULT_CONFIG)


def test_a_decoder_vocabulary_too_small_for_the_targets_is_named(tmp_path):
    """`--decoder_vocab_size N` keeps the first N tokenizer ids as targets; a target beyond them fails early and
    clearly."""
    with pytest.raises(ValueError, match="`labels` contains token id .* outside the vocabulary \\[0, 300\\)"):
        train.main(
            tiny_run(
                tmp_path / "small-target",
                "--max_steps",
                "2",
                "--decoder_vocab_size",
                "300",
                "--eval_strategy",
                "no",
                "--save_strategy",
                "no",
            )
        )


@pytest.mark.slow
def test_card_usage_snippet_runs_without_hf_rnn(trained, tmp_path):
    output_dir, _ = trained
    text = (output_dir / "README.md").read_text()
    snippet = text.split("```python\n", 1)[1].split("```", 1)[0]
    result = subprocess.run(
        [sys.executable, "-c", BLOCK_HF_RNN + snippet],
        cwd=tmp_path,
        env=subprocess_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "translation_text" in result.stdout


@pytest.mark.slow
def test_translate_cli_arguments_stdin_file_and_heatmap(trained, tmp_path):
    output_dir, _ = trained
    sentences = ["I am a student.", "You eat apples.", "He is not a doctor."]
    model = AutoModelForSeq2SeqLM.from_pretrained(output_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(output_dir)
    expected = [
        tokenizer.decode(model.generate(**tokenizer(s, return_tensors="pt"), num_beams=2)[0], skip_special_tokens=True)
        for s in sentences
    ]
    (tmp_path / "in.txt").write_text("\n".join(sentences[1:]) + "\n")
    command = [
        sys.executable,
        "-m",
        "hf_rnn.translate",
        "--model",
        str(output_dir),
        sentences[0],
        "--file",
        str(tmp_path / "in.txt"),
        "--num-beams",
        "2",
        "--batch-size",
        "2",
        "--plot-attention",
        str(tmp_path / "attention.png"),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines() == expected
    assert (tmp_path / "attention.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    piped = subprocess.run(
        [sys.executable, "-m", "hf_rnn.translate", "--model", str(output_dir), "--file", "-", "--num-beams", "2"],
        input=sentences[2] + "\n",
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert piped.stdout.splitlines() == expected[2:]


@pytest.mark.slow
def test_interrupted_run_resumes_to_the_same_losses(tmp_path, monkeypatch):
    """Ctrl-C in the middle of step 7 (dropout masks drawn) saves checkpoint-7 at the step's end; resuming replays
    the same batches, dropout and losses."""
    args = [
        "--max_steps",
        "12",
        "--save_strategy",
        "steps",
        "--save_steps",
        "4",
        "--logging_steps",
        "1",
        "--eval_strategy",
        "no",
        "--dropout",
        "0.2",
        "--save_total_limit",
        "5",
    ]
    straight = tmp_path / "straight"
    train.main(tiny_run(straight, *args))
    reference = json.loads((straight / "checkpoint-12" / "trainer_state.json").read_text())["log_history"]
    reference = {e["step"]: e["loss"] for e in reference if "loss" in e}

    interrupted = tmp_path / "interrupted"
    original_step = Trainer.training_step

    def interrupt_in_step_7(self, *a, **k):
        loss = original_step(self, *a, **k)
        if self.state.global_step == 6:
            os.kill(os.getpid(), signal.SIGINT)
        return loss

    monkeypatch.setattr(Trainer, "training_step", interrupt_in_step_7)
    with pytest.raises(KeyboardInterrupt):
        train.main(tiny_run(interrupted, *args))
    monkeypatch.setattr(Trainer, "training_step", original_step)
    assert last_complete_checkpoint(interrupted).name == "checkpoint-7"

    # A checkpoint damaged after the fact (here: written by other code) is moved aside, never resumed, never deleted.
    broken = interrupted / "checkpoint-8"
    broken.mkdir()
    (broken / "model.safetensors").write_bytes(b"partial")
    train.main(tiny_run(interrupted, *args, "--resume_from_checkpoint", "last"))
    assert (interrupted / "incomplete-checkpoint-8" / "model.safetensors").exists()
    resumed = json.loads((interrupted / "checkpoint-12" / "trainer_state.json").read_text())["log_history"]
    resumed = {e["step"]: e["loss"] for e in resumed if "loss" in e}
    assert {step: resumed[step] for step in range(8, 13)} == {step: reference[step] for step in range(8, 13)}


@pytest.mark.slow
def test_two_process_run_trains_saves_and_counts_each_sentence_once(tmp_path):
    """`accelerate launch --multi_gpu --num_processes 2` really starts 2 CPU processes (gloo DDP)."""
    output_dir = tmp_path / "ddp"
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "train.py",
        *tiny_run(
            output_dir,
            "--max_steps",
            "6",
            "--synthetic_eval_size",
            "7",
            "--eval_strategy",
            "no",
            "--save_strategy",
            "no",
            "--ddp_find_unused_parameters",
            "false",
            "--use_cpu",
            "true",
        ),
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    result = subprocess.run(
        command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL
    )
    assert result.returncode == 0, result.stderr[-4000:]
    metrics = json.loads((output_dir / "all_results.json").read_text())
    assert metrics["test_num_sentences"] == 7.0 and metrics["eval_num_sentences"] == 7.0
    assert metrics["world_size"] == 2

    # Independently: the saved model, decoded in this one process, scores the same on the same 7 sentences.
    model = AutoModelForSeq2SeqLM.from_pretrained(output_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(output_dir)
    test = build_synthetic_en_ko(400, 7, 7, seed=0)["test"]["translation"]
    inputs = tokenizer([p["en"] for p in test], return_tensors="pt", padding=True, truncation=True, max_length=24)
    with torch.no_grad():
        hypotheses = tokenizer.batch_decode(model.generate(**inputs), skip_special_tokens=True)
    references = [
        tokenizer.decode(
            tokenizer(text_target=p["ko"], truncation=True, max_length=24)["input_ids"], skip_special_tokens=True
        )
        for p in test
    ]
    assert sacrebleu.corpus_bleu(hypotheses, [references]).score == pytest.approx(metrics["test_bleu"], abs=1e-6)
    assert sacrebleu.corpus_chrf(hypotheses, [references]).score == pytest.approx(metrics["test_chrf"], abs=1e-6)


@pytest.mark.slow
def test_push_to_hub_then_load_in_a_fresh_process(hub_server, tmp_path):
    output_dir = tmp_path / "pushed"
    train.main(
        tiny_run(
            output_dir,
            "--max_steps",
            "5",
            "--eval_strategy",
            "no",
            "--save_strategy",
            "no",
            "--push_to_hub",
            "true",
            "--hub_model_id",
            "user/tiny-en-ko",
        )
    )
    files = hub_server.files("user/tiny-en-ko")
    assert {
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "modeling_lstm_seq2seq.py",
        "pipeline_translation.py",
        "README.md",
    } <= set(files)
    assert files["README.md"] == (output_dir / "README.md").read_bytes()
    assert not any(name.startswith("checkpoint-") for name in files)

    sentences = ["I am a student.", "They eat bread."]
    model = AutoModelForSeq2SeqLM.from_pretrained(output_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(output_dir)
    with torch.no_grad():
        expected = tokenizer.batch_decode(
            model.generate(**tokenizer(sentences, return_tensors="pt", padding=True), num_beams=3),
            skip_special_tokens=True,
        )
    script = (
        BLOCK_HF_RNN
        + f"""
import json
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, pipeline
model = AutoModelForSeq2SeqLM.from_pretrained("user/tiny-en-ko", trust_remote_code=True)
tok = AutoTokenizer.from_pretrained("user/tiny-en-ko", trust_remote_code=True)
inputs = tok({sentences!r}, return_tensors="pt", padding=True)
out = tok.batch_decode(model.generate(**inputs, num_beams=3), skip_special_tokens=True)
pipe = pipeline("translation", model="user/tiny-en-ko", trust_remote_code=True)
print(json.dumps([out, pipe({sentences[0]!r}, num_beams=3)[0]["translation_text"]]))
"""
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=hub_client_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    pulled, piped = json.loads(result.stdout.strip().splitlines()[-1])
    assert pulled == expected and piped == expected[0]


@pytest.mark.parametrize("config", sorted((REPO_ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_parses(config):
    model_args, data_args, training_args = parse_args([str(config)])
    assert model_args.task in ("translation", "captioning")
    assert training_args.output_dir.startswith("outputs/")


def test_missing_train_split_is_named_and_sample_limits_apply():
    from datasets import Dataset, DatasetDict

    _, data_args, _ = parse_args(["--max_eval_samples", "2"], default_config=train.DEFAULT_CONFIG)
    rows = Dataset.from_dict({"source": list("abcde"), "target": list("vwxyz")})
    with pytest.raises(ValueError, match="No training split found \\(the data has \\['validation'\\]\\)"):
        data_args.select_samples(DatasetDict({"validation": rows}))
    limited = data_args.select_samples(DatasetDict({"train": rows, "validation": rows}))
    assert (len(limited["train"]), len(limited["validation"])) == (5, 2)
