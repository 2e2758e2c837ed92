"""train.py end to end: arguments, data sources, the output folder, resume, multi-process metrics, card, Hub, CLI."""

import json
import logging
import os
import signal
import subprocess
import sys

import pytest
import sacrebleu
import torch
from helpers import BLOCK_HF_RNN, REPO_ROOT, hub_client_env, run_card_snippet, run_python
from huggingface_hub import ModelCard
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, Trainer

from hf_rnn import train
from hf_rnn.data.files import DataFileError
from hf_rnn.data.synthetic_en_ko import build_synthetic_en_ko
from hf_rnn.training.arguments import ConfigError, parse_args, shipped_configs
from hf_rnn.training.run_record import RECORD_FILE
from hf_rnn.training.trainer import last_complete_checkpoint

TINY = [
    "--model.embedding_size",
    "16",
    "--model.hidden_size",
    "32",
    "--model.dropout",
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
QUICK = ["--eval_strategy", "no", "--save_strategy", "no"]


def tiny_run(output_dir, *extra: str) -> list[str]:
    return ["synthetic_en_ko", *TINY, "--output_dir", str(output_dir), *extra]


def write_jsonl(path, pairs, source="en", target="ko"):
    path.write_text(
        "".join(json.dumps({"translation": {source: s, target: t}}, ensure_ascii=False) + "\n" for s, t in pairs)
    )
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny end-to-end run shared by the tests that only read its output."""
    output_dir = tmp_path_factory.mktemp("run") / "tiny-en-ko"
    metrics = train.main(tiny_run(output_dir, "--max_steps", "30", "--logging_steps", "10", *QUICK))
    return output_dir, metrics


# -- arguments ------------------------------------------------------------------------------------------------------


def test_yaml_model_section_and_command_line_overrides(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(
        "task: translation\nsource_lang: fr\ntarget_lang: en\noutput_dir: from-yaml\nlearning_rate: 0.01\n"
        "model:\n  hidden_size: 64\n  cell_type: gru\n"
    )
    run = parse_args([str(config), "--learning_rate", "0.5", "--source_lang", "de", "--model.hidden_size=128"])
    assert run.model == {"hidden_size": 128, "cell_type": "gru"}
    assert run.training.learning_rate == 0.5 and run.task_args.source_lang == "de"
    assert run.training.output_dir == "from-yaml" and run.training.predict_with_generate is True
    # --model.X values are YAML: numbers, booleans and lists keep their types.
    run = parse_args([str(config), "--model.input_feeding", "false", "--model.dropout", "0.25"])
    assert run.model["input_feeding"] is False and run.model["dropout"] == 0.25


@pytest.mark.parametrize(
    "yaml_text, argv, message",
    [
        ("hiden_size: 64\n", [], r"Unknown key\(s\) in .*bad\.yaml: hiden_size"),
        ("hidden_size: 64\n", [], r"hidden_size \(a LSTMSeq2SeqConfig field: put it under `model:`"),
        ("", ["--hidden_size", "64"], r"on the command line: hidden_size \(a LSTMSeq2SeqConfig field"),
        ("model:\n  hiden_size: 64\n", [], r"`model\.hiden_size` is not a field of LSTMSeq2SeqConfig; its fields: "),
        ("model:\n  vocab_size: 64\n", [], r"`model\.vocab_size` is set by the translation task"),
        ("model: 3\n", [], r"`model:` in .*bad\.yaml must be a mapping"),
        ("task: summarization\n", [], r"Unknown task 'summarization'; tasks: translation, captioning"),
        ("", ["--model.cell_type"], r"--model\.cell_type needs a value"),
        ("", ["--bpe_dropout", "1.5"], r"`bpe_dropout` must be in \[0, 1\), got 1.5"),
    ],
)
def test_argument_errors_name_the_key(tmp_path, yaml_text, argv, message):
    (tmp_path / "bad.yaml").write_text(yaml_text + "output_dir: x\n")
    with pytest.raises(ValueError, match=message):
        parse_args([str(tmp_path / "bad.yaml"), *argv])


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["--model.cell_type", "lstmm"],
            r"`model:` .*'cell_type' expected one of \('lstm', 'gru', 'rnn'\), got lstmm",
        ),
        (["--model.dropout", "1.5"], r"`model:` .*'dropout'.* must be in \[0, 1\), got 1.5"),
        (["--task", "text-classification", "--model.pooling", "median"], r"'pooling' expected one of"),
        (["--load_best_model_at_end", "true", "--eval_strategy", "steps", "--save_strategy", "epoch"], r"save"),
    ],
)
def test_values_the_model_config_or_trainer_refuses_are_config_errors_before_any_data_is_read(argv, message):
    with pytest.raises(ConfigError, match=message):
        parse_args([*argv, "--output_dir", "x"])


def test_help_lists_the_task_training_and_model_fields(capsys):
    with pytest.raises(SystemExit) as exited:
        parse_args(["nsmc_ko_sentiment", "--help"])
    assert exited.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "Task text-classification, defaults from" in text and "nsmc_ko_sentiment.yaml" in text
    for flag in ("--text_column", "--max_train_minutes", "--learning_rate", "--train_file"):
        assert flag in text
    assert "Model fields (LSTMConfig), set with --model.field value:" in text and "pooling='max'" in text


@pytest.mark.parametrize(
    "argv, message",
    [
        (["no_such_config"], "train.py: error: Config file no_such_config does not exist; shipped configs: "),
        (["--model.hidden_size", "-3"], "train.py: error: `model:` Validation error for field 'hidden_size'"),
        (["--hiden_size", "3"], "train.py: error: Unknown key(s) on the command line: hiden_size."),
    ],
)
def test_the_command_line_names_a_config_mistake_in_one_line_with_status_2(tmp_path, argv, message):
    result = run_python(
        f"import sys; sys.argv = ['train.py', *{argv!r}]; from hf_rnn.train import console_main; console_main()",
        tmp_path,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.splitlines()[-1].startswith(message) and "Traceback" not in result.stderr


def test_default_run_uses_the_embedded_config():
    run = parse_args([])
    assert run.data.dataset_name == "synthetic_en_ko" and run.task.name == "translation"
    assert run.training.output_dir == "outputs/synthetic-en-ko"
    with pytest.raises(ValueError, match="max_train_minutes"):
        parse_args(["--max_train_minutes", "0"])


@pytest.mark.parametrize("name", sorted(shipped_configs()))
def test_every_shipped_config_parses_by_name_and_path(name):
    by_name = parse_args([name])
    assert by_name.config_file.name == f"{name}.yaml"
    assert by_name.training.output_dir.startswith("outputs/")
    by_path = parse_args([str(REPO_ROOT / "configs" / f"{name}.yaml")])
    assert by_path.model == by_name.model
    # Every model section builds a valid config (typed fields, cross-field rules).
    by_name.task.config_class(**by_name.model)


def test_shipped_configs_are_the_repository_configs():
    assert {path.name for path in shipped_configs().values()} == {
        p.name for p in (REPO_ROOT / "configs").glob("*.yaml")
    }
    with pytest.raises(ConfigError, match="shipped configs: captioner_imagefolder, .*synthetic_en_ko"):
        parse_args(["no_such_config"])


# -- data through the translation task ------------------------------------------------------------------------------


def load_pairs(*argv):
    run = parse_args(["synthetic_en_ko", "--output_dir", "unused", *argv])
    data = run.task.load_data()
    return {split: list(zip(rows["source"], rows["target"])) for split, rows in data.items()}


def test_translation_layout_columns_and_language_named_columns(tmp_path):
    write_jsonl(tmp_path / "t.jsonl", [("one", "하나")])
    (tmp_path / "c.csv").write_text("english,korean\none,하나\n")
    (tmp_path / "l.tsv").write_text("ko\ten\n하나\tone\n")
    assert load_pairs("--train_file", str(tmp_path / "t.jsonl")) == {"train": [("one", "하나")]}
    columns = ["--source_column", "english", "--target_column", "korean"]
    assert load_pairs("--train_file", str(tmp_path / "c.csv"), *columns) == {"train": [("one", "하나")]}
    assert load_pairs("--train_file", str(tmp_path / "l.tsv")) == {"train": [("one", "하나")]}


def test_data_errors_name_the_file_and_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        load_pairs("--train_file", str(tmp_path / "missing.jsonl"))
    (tmp_path / "a.xml").write_text("x")
    with pytest.raises(DataFileError, match="share one format"):
        load_pairs("--train_file", str(tmp_path / "a.xml"))
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(DataFileError, match=r"a\.txt: has columns \['text'\], not \['en', 'ko'\]"):
        load_pairs("--train_file", str(tmp_path / "a.txt"))
    write_jsonl(tmp_path / "de.jsonl", [("a", "b")], target="de")
    with pytest.raises(DataFileError, match=r"de\.jsonl: no row has text in every one of `translation.en`, `transl"):
        load_pairs("--train_file", str(tmp_path / "de.jsonl"))
    (tmp_path / "c.csv").write_text("english,korean\none,하나\n")
    columns_error = r"c\.csv: has columns \['english', 'korean'\], not \['en', 'ko'\]: set `source_column`"
    with pytest.raises(DataFileError, match=columns_error):
        load_pairs("--train_file", str(tmp_path / "c.csv"))


def test_hub_dataset_source(hub_server, tmp_path):
    """`dataset_name` goes through `datasets.load_dataset` against the (stand-in) Hub."""
    from huggingface_hub import HfApi

    folder = tmp_path / "dataset"
    (folder / "data").mkdir(parents=True)
    for split in ("train", "validation"):
        write_jsonl(folder / "data" / f"{split}.jsonl", [(f"{split} {i}", f"{split} 번역 {i}") for i in range(3)])
    api = HfApi()
    api.create_repo("user/pairs", repo_type="dataset")
    api.upload_folder(repo_id="user/pairs", repo_type="dataset", folder_path=folder)
    pairs = load_pairs("--dataset_name", "user/pairs")
    assert sorted(pairs) == ["train", "validation"]
    assert [t for _, t in pairs["validation"]] == ["validation 번역 0", "validation 번역 1", "validation 번역 2"]


# -- end to end -----------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_trained_folder_loads_translates_and_has_a_truthful_card(trained):
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
    assert "datasets" not in data  # the embedded corpus is not a Hub dataset
    assert data["widget"][0]["text"] == build_synthetic_en_ko(400, 20, 20)["test"][0]["translation"]["en"]
    results = {m["type"]: m["value"] for r in data["model-index"][0]["results"] for m in r["metrics"]}
    assert results["bleu"] == pytest.approx(metrics["test_bleu"], abs=1e-3)
    assert "### Training loss" in card.text and "| step | epoch | loss |" in card.text
    assert "synthetic corpus covers a small grammar" in card.text
    assert str(output_dir.parent) not in card.text  # no local paths: the usage snippet names the folder
    assert "| optimizer | adamw_torch_fused |" in card.text


def test_training_log_reports_target_token_throughput(trained):
    output_dir, _ = trained
    history = json.loads((output_dir / "trainer_state.json").read_text())["log_history"]
    training_entries = [entry for entry in history if "loss" in entry]
    assert [entry["step"] for entry in training_entries] == [10, 20, 30]
    assert all(entry["target_tokens_per_second"] > 0 for entry in training_entries)


@pytest.mark.slow
def test_own_csv_alone_trains_with_held_out_validation_and_card_says_what_it_was(tmp_path, caplog):
    """`--train_file` alone: a validation split is held out (and said); the card names the file and the given
    languages, cites no dataset, claims no synthetic limitation; BLEU is against the raw (untruncated) references."""
    rows = build_synthetic_en_ko(200, 1, 1, seed=3)["train"]["translation"]
    csv_path = tmp_path / "mine.csv"
    csv_path.write_text("src,tgt\n" + "".join(f'"{p["en"]}","{p["ko"]}"\n' for p in rows))
    output_dir = tmp_path / "mine"
    argv = [*TINY, "--output_dir", str(output_dir), "--max_steps", "4", "--save_strategy", "no"]
    argv += ["--train_file", str(csv_path), "--source_column", "src", "--target_column", "tgt"]
    argv += ["--source_lang", "en", "--target_lang", "fr", "--max_target_length", "4", "--eval_strategy", "epoch"]
    with caplog.at_level(logging.WARNING):
        metrics = train.main(["synthetic_en_ko", *argv])
    assert "No validation split: holding out 10 of the training rows" in caplog.text
    assert metrics["eval_num_sentences"] == 10.0 and "test_bleu" not in metrics

    card = ModelCard.load(output_dir / "README.md")
    assert card.data.to_dict()["language"] == ["en", "fr"] and "datasets" not in card.data.to_dict()
    assert "local files mine.csv" in card.text and "synthetic corpus" not in card.text

    # Independently: the saved model's translations of the held-out rows, scored against their raw targets.
    from hf_rnn.training.runner import _limit_and_split

    held_out = parse_args(["synthetic_en_ko", *argv])
    validation = _limit_and_split(held_out.task.load_data(), held_out.data, True, held_out.training.seed)["validation"]
    model = AutoModelForSeq2SeqLM.from_pretrained(output_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(output_dir)
    inputs = tokenizer(list(validation["source"]), return_tensors="pt", padding=True, truncation=True, max_length=24)
    with torch.no_grad():
        hypotheses = tokenizer.batch_decode(model.generate(**inputs), skip_special_tokens=True)
    # Targets longer than 4 tokens: references decoded from truncated label ids would differ from these.
    assert max(len(tokenizer(text_target=t)["input_ids"]) for t in validation["target"]) > 4
    expected = sacrebleu.corpus_chrf(hypotheses, [list(validation["target"])]).score
    assert metrics["eval_chrf"] == pytest.approx(expected, abs=1e-6)


def test_time_budget_stops_training_then_saves_and_evaluates(tmp_path):
    output_dir = tmp_path / "budget"
    metrics = train.main(
        tiny_run(
            output_dir, "--max_steps", "100000", "--max_train_minutes", "0.05", *QUICK, "--num_examples_to_print", "0"
        )
    )
    state = json.loads((output_dir / "trainer_state.json").read_text())
    assert 0 < state["global_step"] < 100000
    assert metrics["train_runtime"] < 60 and "test_bleu" in metrics
    assert (output_dir / "model.safetensors").exists()


def test_each_checkpoint_records_the_time_budget_spent_up_to_it(tmp_path):
    """What a resumed run reads to go on with the run's budget (tests/test_time_budget.py)."""
    output_dir = tmp_path / "budget"
    metrics = train.main(
        tiny_run(
            output_dir,
            *("--max_steps", "4", "--eval_strategy", "no", "--save_strategy", "steps", "--save_steps", "2"),
            *("--max_train_minutes", "30", "--num_examples_to_print", "0"),
        )
    )
    spent = [
        json.loads((output_dir / f"checkpoint-{step}" / "trainer_state.json").read_text())["stateful_callbacks"][
            "TimeBudgetCallback"
        ]["attributes"]["trained_seconds"]
        for step in (2, 4)
    ]
    assert 0 < spent[0] < spent[1] <= metrics["train_runtime"]


def test_a_decoder_vocabulary_too_small_for_the_targets_is_named(tmp_path):
    """`--model.decoder_vocab_size N` keeps the first N tokenizer ids as targets; a target beyond them fails early
    and clearly."""
    with pytest.raises(ValueError, match="`labels` contains token id .* outside the vocabulary \\[0, 300\\)"):
        train.main(
            tiny_run(tmp_path / "small-target", "--max_steps", "2", "--model.decoder_vocab_size", "300", *QUICK)
        )


# -- the output folder holds one run --------------------------------------------------------------------------------


def test_a_different_run_never_replaces_an_earlier_one(tmp_path):
    """The issue's reproduction: a run on the user's own file into the default run's folder (no --output_dir)."""
    output_dir = tmp_path / "synthetic-en-ko"
    train.main(tiny_run(output_dir, "--max_steps", "2", *QUICK, "--num_examples_to_print", "0"))

    def files():  # the run's files (the lock file records each run's own PID and start time)
        return {p.name: p.read_bytes() for p in output_dir.iterdir() if p.is_file() and p.name != ".hf_rnn.lock"}

    before = files()
    mine = write_jsonl(tmp_path / "mine.jsonl", [("Hello there.", "Bonjour."), ("Thanks.", "Merci.")] * 20, "en", "fr")
    other = ["--train_file", str(mine), "--target_lang", "fr", "--max_steps", "2", *QUICK]
    with pytest.raises(
        FileExistsError, match=r'holds a different run \(.*pair\.languages: \["en", "ko"\] → \["en", "fr"\]'
    ):
        train.main(tiny_run(output_dir, *other))
    assert files() == before

    # With --overwrite_output_dir the new run gets its own tokenizer, trained on its own data.
    train.main(tiny_run(output_dir, *other, "--overwrite_output_dir", "true", "--num_examples_to_print", "0"))
    vocabulary = AutoTokenizer.from_pretrained(output_dir).get_vocab()
    assert not any("\uac00" <= character <= "\ud7a3" for token in vocabulary for character in token)  # no Hangul
    assert json.loads((output_dir / RECORD_FILE).read_text())["pair"]["languages"] == ["en", "fr"]


def test_a_finished_run_is_not_retrained_in_place_and_foreign_folders_are_refused(tmp_path):
    output_dir = tmp_path / "done"
    args = tiny_run(output_dir, "--max_steps", "2", *QUICK, "--num_examples_to_print", "0")
    train.main(args)
    with pytest.raises(FileExistsError, match="holds a finished run of this configuration"):
        train.main(args)
    # On the command line the refusal is one line, exit status 1, no traceback.
    result = subprocess.run([sys.executable, "-m", "hf_rnn.train", *args], capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: {output_dir} holds a finished run")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=r"already holds files that no hf-rnn run recorded \(notes\.txt\)"):
        train.main(tiny_run(foreign, "--max_steps", "2", *QUICK))
    assert (foreign / "notes.txt").read_text() == "mine"


@pytest.mark.slow
def test_interrupted_run_resumes_to_the_same_losses(tmp_path, monkeypatch):
    """Ctrl-C in the middle of step 7 (dropout masks drawn) saves checkpoint-7 at the step's end; resuming replays
    the same batches, dropout and losses."""
    args = ["--max_steps", "12", "--save_strategy", "steps", "--save_steps", "4", "--logging_steps", "1"]
    args += ["--eval_strategy", "no", "--model.dropout", "0.2", "--save_total_limit", "5"]
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
    """`accelerate launch --multi_gpu --num_processes 2` really starts 2 CPU processes (gloo DDP).

    The time budget ends the run, so the processes' agreement on the time (tests/test_time_budget.py) runs inside a
    real DDP training: both stop after the same step, or the run would hang."""
    output_dir = tmp_path / "ddp"
    launcher = ["-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1"]
    launcher += ["--mixed_precision", "no", "--dynamo_backend", "no", "train.py"]
    args = tiny_run(output_dir, "--max_steps", "100000", "--max_train_minutes", "0.05", "--synthetic_eval_size", "7")
    args += QUICK
    args += ["--ddp_find_unused_parameters", "false", "--use_cpu", "true"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    result = subprocess.run(
        [sys.executable, *launcher, *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    metrics = json.loads((output_dir / "all_results.json").read_text())
    assert 0 < json.loads((output_dir / "trainer_state.json").read_text())["global_step"] < 100000
    assert metrics["test_num_sentences"] == 7.0 and metrics["eval_num_sentences"] == 7.0
    assert metrics["world_size"] == 2

    # Independently: the saved model, decoded in this one process, scores the same against the raw references.
    model = AutoModelForSeq2SeqLM.from_pretrained(output_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(output_dir)
    test = build_synthetic_en_ko(400, 7, 7, seed=0)["test"]["translation"]
    inputs = tokenizer([p["en"] for p in test], return_tensors="pt", padding=True, truncation=True, max_length=24)
    with torch.no_grad():
        hypotheses = tokenizer.batch_decode(model.generate(**inputs), skip_special_tokens=True)
    references = [p["ko"] for p in test]
    assert sacrebleu.corpus_bleu(hypotheses, [references]).score == pytest.approx(metrics["test_bleu"], abs=1e-6)
    assert sacrebleu.corpus_chrf(hypotheses, [references]).score == pytest.approx(metrics["test_chrf"], abs=1e-6)


@pytest.mark.slow
def test_installed_entry_points_find_the_shipped_configs(tmp_path):
    """`python -m hf_rnn.train <config name>` from any folder: the configs travel inside the package."""
    output_dir = tmp_path / "from-module"
    result = subprocess.run(
        [sys.executable, "-m", "hf_rnn.train", *tiny_run(output_dir, "--max_steps", "2", *QUICK)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (output_dir / "model.safetensors").exists()


@pytest.mark.slow
def test_card_usage_snippet_runs_without_hf_rnn(trained, tmp_path):
    output_dir, _ = trained
    result = run_card_snippet(output_dir, tmp_path)
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
    command = [sys.executable, "-m", "hf_rnn.translate", "--model", str(output_dir), sentences[0]]
    command += ["--file", str(tmp_path / "in.txt"), "--num-beams", "2", "--batch-size", "2"]
    command += ["--plot-attention", str(tmp_path / "attention.png")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split("\n") == [*expected, ""]
    assert (tmp_path / "attention.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    piped = subprocess.run(
        [sys.executable, "-m", "hf_rnn.translate", "--model", str(output_dir), "--file", "-", "--num-beams", "2"],
        input=sentences[2] + "\n",
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert piped.stdout.split("\n") == [*expected[2:], ""]


@pytest.mark.slow
def test_push_to_hub_then_load_in_a_fresh_process(hub_server, tmp_path):
    output_dir = tmp_path / "pushed"
    push = ["--push_to_hub", "true", "--hub_model_id", "user/tiny-en-ko"]
    train.main(tiny_run(output_dir, "--max_steps", "5", *QUICK, *push))
    files = hub_server.files("user/tiny-en-ko")
    expected_files = {"model.safetensors", "config.json", "tokenizer.json", "modeling_lstm_seq2seq.py", "README.md"}
    assert expected_files | {"pipeline_translation.py"} <= set(files)
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
    result = run_python(script, tmp_path, cwd=tmp_path, env=hub_client_env(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    pulled, piped = json.loads(result.stdout.strip().splitlines()[-1])
    assert pulled == expected and piped == expected[0]


def test_missing_train_split_is_named_and_sample_limits_apply():
    from datasets import Dataset, DatasetDict

    from hf_rnn.training.runner import _limit_and_split

    run = parse_args(["--max_eval_samples", "2"])
    rows = Dataset.from_dict({"source": list("abcde"), "target": list("vwxyz")})
    with pytest.raises(ValueError, match="No training split found \\(the data has \\['validation'\\]\\)"):
        _limit_and_split(DatasetDict({"validation": rows}), run.data, True, 0)
    limited = _limit_and_split(DatasetDict({"train": rows, "validation": rows}), run.data, True, 0)
    assert (len(limited["train"]), len(limited["validation"])) == (5, 2)
    with pytest.raises(ValueError, match="5 training rows are too few to hold some out"):
        _limit_and_split(DatasetDict({"train": rows}), run.data, True, 0)
