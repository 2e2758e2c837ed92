"""The text-classification task through train.py: labels of every kind, named data errors, metrics that match the
saved model, the card, and the stock pipeline in fresh processes."""

import json
import logging

import pytest
import torch
from helpers import run_card_snippet, run_python, run_without_hf_rnn
from huggingface_hub import ModelCard
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from hf_rnn import train
from hf_rnn.data.files import DataFileError
from hf_rnn.tasks.classification import classification_scores
from hf_rnn.training.arguments import parse_args

POSITIVE = ["정말 재밌어요", "최고의 영화", "great film", "감동적이네요 강추", "loved it", "배우 연기 최고"]
NEGATIVE = ["지루하고 별로", "최악의 영화", "boring plot", "시간 아깝다", "hated it", "연기 너무 못함"]
TINY = [
    "--task",
    "text-classification",
    "--model.embedding_size",
    "8",
    "--model.hidden_size",
    "12",
    "--model.dropout",
    "0.0",
    "--per_device_train_batch_size",
    "4",
    "--per_device_eval_batch_size",
    "5",
    "--report_to",
    "none",
    "--disable_tqdm",
    "true",
    "--num_examples_to_print",
    "3",
    "--learning_rate",
    "0.01",
]


def reviews(count: int, offset: int = 0) -> list[dict]:
    """Alternating positive (1) and negative (0) reviews, numbered so that texts differ."""
    rows = []
    for index in range(offset, offset + count):
        words = POSITIVE if index % 2 else NEGATIVE
        rows.append({"text": f"{words[index % len(words)]} {index}", "label": index % 2})
    return rows


def write_jsonl(path, rows) -> str:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return str(path)


def files(tmp_path, train_rows, validation_rows=None, test_rows=None) -> list[str]:
    argv = ["--train_file", write_jsonl(tmp_path / "train.jsonl", train_rows)]
    if validation_rows is not None:
        argv += ["--validation_file", write_jsonl(tmp_path / "validation.jsonl", validation_rows)]
    if test_rows is not None:
        argv += ["--test_file", write_jsonl(tmp_path / "test.jsonl", test_rows)]
    return argv


def load(tmp_path, *argv: str):
    run = parse_args([*TINY, "--output_dir", str(tmp_path / "out"), *argv])
    return run.task, run.task.load_data()


# -- labels ---------------------------------------------------------------------------------------------------------


def test_integer_labels_are_class_ids_and_declared_names_name_them(tmp_path):
    task, data = load(tmp_path, *files(tmp_path, reviews(6), reviews(4)))
    assert task.classes.names == ["LABEL_0", "LABEL_1"] and data["train"]["label"] == [0, 1, 0, 1, 0, 1]

    argv = [*files(tmp_path, reviews(6), reviews(4)), "--model.id2label", "{0: negative, 1: positive}"]
    task, data = load(tmp_path, *argv)
    assert task.classes.names == ["negative", "positive"] and data["validation"]["label"] == [0, 1, 0, 1]
    model = task.build_model(task.build_processor(data["train"], tmp_path, False, False), task.model_overrides)
    assert model.config.id2label == {0: "negative", 1: "positive"} and model.config.label2id["positive"] == 1


def test_string_labels_become_sorted_classes_and_csv_digits_are_ids(tmp_path):
    rows = [{"text": t, "label": label} for t, label in [("a", "sad"), ("b", "happy"), ("c", "angry"), ("d", "sad")]]
    task, data = load(tmp_path, *files(tmp_path, rows, rows[:2]))
    assert task.classes.names == ["angry", "happy", "sad"]
    assert data["train"]["label"] == [2, 1, 0, 2] and data["validation"]["label"] == [2, 1]

    # CSV has no numbers: a label of digits is a class id, a declared name is that class.
    (tmp_path / "train.csv").write_text("text,label\nfine,1\nbad,0\nok,positive\n", encoding="utf-8")
    argv = ["--train_file", str(tmp_path / "train.csv"), "--model.id2label", "{0: negative, 1: positive}"]
    task, data = load(tmp_path, *argv, "--eval_strategy", "no")
    assert data["train"]["label"] == [1, 0, 1]


@pytest.mark.parametrize(
    "train_labels, validation_labels, model_flags, message",
    [
        ([0, 1, 5], [0], ["--model.num_labels", "2"], r"train.jsonl, line 3: column `label`: label 5 is outside"),
        ([0, 1], [0, 2], [], r"validation.jsonl, line 2: column `label`: label 2 is outside the class ids 0..1"),
        (["a", "b"], ["a", "c"], [], r"validation.jsonl, line 2: column `label`: label 'c' is not one of the classes"),
        ([0, "neutral"], [0], ["--model.id2label", "{0: neg, 1: pos}"], r"line 2: column `label`: label 'neutral'"),
        ([0, "b"], [0], [], r"train.jsonl, line 2: column `label`: label 'b' mixes class names and class ids"),
        ([0, 1.5], [0], [], r"train.jsonl, line 2: column `label`: label 1.5 is a float"),
        ([0, None], [0], [], r"train.jsonl, line 2: column `label`: label None is missing"),
        ([0, -1], [0], [], r"train.jsonl, line 2: column `label`: label -1 is negative"),
        ([0, 0], [0], [], r"The training split has one class only \('LABEL_0'\)"),
    ],
)
def test_bad_labels_are_named_with_file_line_and_column(
    tmp_path, train_labels, validation_labels, model_flags, message
):
    train_rows = [{"text": f"text {i}", "label": label} for i, label in enumerate(train_labels)]
    validation_rows = [{"text": f"text {i}", "label": label} for i, label in enumerate(validation_labels)]
    with pytest.raises((DataFileError, ValueError), match=message):
        load(tmp_path, *files(tmp_path, train_rows, validation_rows), *model_flags)


@pytest.mark.parametrize(
    "flags, message",
    [
        (
            ["--model.num_labels", "3", "--model.id2label", "{0: a, 1: b}"],
            "`model.num_labels` is 3 but `model.id2label`",
        ),
        (["--model.id2label", "{1: a, 2: b}"], "`model.id2label` must map the class ids 0, 1, ..."),
        (["--model.problem_type", "regression"], "`model.problem_type` 'regression'"),
        (["--model.label2id", "{a: 0}"], "`model.label2id` is set by the text-classification task"),
        (["--model.num_labels", "1"], "`model.num_labels` must be an integer of at least 2"),
    ],
)
def test_declared_classes_that_disagree_are_named(tmp_path, flags, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load(tmp_path, *files(tmp_path, reviews(4)), *flags)


def test_rows_with_empty_text_are_dropped_and_counted_by_line(tmp_path, caplog):
    rows = [*reviews(3), {"text": "  ", "label": 0}, {"text": "", "label": 1}, *reviews(2, offset=3)]
    with caplog.at_level(logging.WARNING):
        _, data = load(tmp_path, *files(tmp_path, rows), "--eval_strategy", "no")
    assert len(data["train"]) == 5
    assert "Dropped 2 of 7 rows" in caplog.text and "train.jsonl" in caplog.text and "lines 4, 5" in caplog.text
    with pytest.raises(DataFileError, match="train.jsonl: no row has text in every one of `text`"):
        load(tmp_path, *files(tmp_path, [{"text": " ", "label": 0}]))


def test_scores_equal_a_hand_count():
    predicted = torch.tensor([0, 0, 1, 2, 2, 2]).numpy()
    labels = torch.tensor([0, 1, 1, 2, 2, 0]).numpy()
    scores = classification_scores(predicted, labels)
    # class 0: tp 1, fp 1, fn 1 → F1 1/2; class 1: tp 1, fp 0, fn 1 → 2/3; class 2: tp 2, fp 1, fn 0 → 4/5
    assert scores["accuracy"] == pytest.approx(4 / 6)
    assert scores["macro_f1"] == pytest.approx((1 / 2 + 2 / 3 + 4 / 5) / 3)


# -- end to end -----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("classification")
    argv = [*TINY, *files(folder, reviews(40), reviews(10, offset=40), reviews(9, offset=50))]
    argv += ["--model.id2label", "{0: negative, 1: positive}", "--model.bidirectional", "true"]
    argv += ["--model.pooling", "attention", "--max_steps", "12", "--eval_strategy", "no", "--save_strategy", "no"]
    argv += ["--train_sampling_strategy", "group_by_length"]  # batches of equal length; evaluation keeps file order
    output_dir = folder / "sentiment"
    metrics = train.main([*argv, "--output_dir", str(output_dir), "--languages", "ko", "en"])
    return folder, output_dir, metrics


@pytest.mark.slow
def test_metrics_equal_the_saved_models_predictions_on_the_raw_rows(trained):
    folder, output_dir, metrics = trained
    model = AutoModelForSequenceClassification.from_pretrained(output_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(output_dir)
    rows = [json.loads(line) for line in (folder / "test.jsonl").read_text(encoding="utf-8").splitlines()]
    predicted = []
    for row in rows:  # one at a time: no padding involved
        with torch.no_grad():
            predicted.append(model(**tokenizer(row["text"], return_tensors="pt")).logits.argmax(-1).item())
    labels = [row["label"] for row in rows]
    accuracy = sum(p == t for p, t in zip(predicted, labels)) / len(rows)
    f1 = []
    for cls in set(predicted) | set(labels):
        tp = sum(p == t == cls for p, t in zip(predicted, labels))
        f1.append(2 * tp / (predicted.count(cls) + labels.count(cls)))
    assert metrics["test_accuracy"] == pytest.approx(accuracy, abs=1e-9)
    assert metrics["test_macro_f1"] == pytest.approx(sum(f1) / len(f1), abs=1e-9)
    assert metrics["test_num_texts"] == 9 and "eval_accuracy" in metrics

    card = ModelCard.load(output_dir / "README.md")
    data = card.data.to_dict()
    assert data["pipeline_tag"] == "text-classification" and data["language"] == ["ko", "en"]
    assert data["widget"][0]["text"] in {row["text"] for row in rows}
    results = {m["type"]: m["value"] for r in data["model-index"][0]["results"] for m in r["metrics"]}
    assert results == {"accuracy": round(accuracy, 4), "macro_f1": pytest.approx(round(sum(f1) / len(f1), 4))}
    assert 'pipeline("text-classification"' in card.text and "negative, positive" in card.text


@pytest.mark.slow
def test_saved_classifier_works_with_the_stock_pipeline_with_and_without_hf_rnn(trained, tmp_path):
    folder, output_dir, _ = trained
    texts = ["정말 재밌어요 99", "boring plot 7", "x"]
    model = AutoModelForSequenceClassification.from_pretrained(output_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(output_dir)
    with torch.no_grad():
        probabilities = [torch.softmax(model(**tokenizer(t, return_tensors="pt")).logits[0], -1) for t in texts]
    expected = [{model.config.id2label[i]: p.item() for i, p in enumerate(row)} for row in probabilities]

    script = f"""
import json
from transformers import pipeline
classifier = pipeline("text-classification", model={str(output_dir)!r}{{remote}})
print(json.dumps([{{d["label"]: d["score"] for d in row}} for row in classifier({texts!r}, top_k=None)]))
"""
    with_hf_rnn = run_python("import hf_rnn\n" + script.replace("{remote}", ""), tmp_path)
    without = run_without_hf_rnn(script.replace("{remote}", ", trust_remote_code=True"), tmp_path)
    for result in (with_hf_rnn, without):
        assert result.returncode == 0, result.stderr[-3000:]
        got = json.loads(result.stdout.strip().splitlines()[-1])
        for row, want in zip(got, expected):
            assert row == pytest.approx(want, abs=1e-6)


@pytest.mark.slow
def test_card_usage_snippet_runs_without_hf_rnn(trained, tmp_path):
    _, output_dir, _ = trained
    result = run_card_snippet(output_dir, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "'label': 'negative'" in result.stdout and "'label': 'positive'" in result.stdout


def test_naming_the_task_without_a_config_file_takes_nothing_from_the_default_config(tmp_path):
    run = parse_args(["--task", "text-classification", "--output_dir", str(tmp_path), "--train_file", "x.jsonl"])
    assert run.config_file is None and run.task.name == "text-classification"
    assert run.task_args.text_column == "text" and run.model == {}


def test_equal_length_sampler_batches_rows_of_one_length_where_it_can():
    from hf_rnn.tasks.classification import EqualLengthSampler

    generator = torch.Generator().manual_seed(0)
    lengths = torch.randint(1, 9, (203,), generator=generator).tolist()
    sampler = EqualLengthSampler(lengths, batch_size=8)
    torch.manual_seed(0)
    order = list(sampler)
    assert sorted(order) == list(range(203))
    batches = [order[start : start + 8] for start in range(0, 203, 8)]
    mixed = [batch for batch in batches if len({lengths[i] for i in batch}) > 1]
    leftovers = sum(lengths.count(length) % 8 for length in set(lengths))
    assert len(mixed) <= -(-leftovers // 8) and len(batches[-1]) == 203 % 8
    torch.manual_seed(0)
    assert list(sampler) == order  # the global generator decides: a resumed run draws the same order
    assert list(sampler) != order  # and every epoch another one


def test_evaluation_keeps_file_order_under_group_by_length(tmp_path):
    """The metrics compare predictions with the raw rows in file order; transformers' Trainer would evaluate in
    length-grouped order under group_by_length."""
    from datasets import Dataset
    from transformers import DataCollatorWithPadding

    from hf_rnn import LSTMConfig, LSTMForSequenceClassification
    from hf_rnn.data.tokenization import train_char_tokenizer
    from hf_rnn.tasks.classification import ClassificationTrainer
    from hf_rnn.training.arguments import TrainingArguments

    texts = [text for row in reviews(30) for text in [row["text"] * (1 + len(row["text"]) % 3)]]
    tokenizer = train_char_tokenizer(texts)
    torch.manual_seed(0)
    config = LSTMConfig(vocab_size=len(tokenizer), embedding_size=8, hidden_size=8, num_labels=3, init_range=0.5)
    model = LSTMForSequenceClassification(config).eval()
    rows = Dataset.from_dict({**tokenizer(texts), "labels": [0] * len(texts)})
    args = TrainingArguments(
        output_dir=str(tmp_path),
        per_device_eval_batch_size=4,
        train_sampling_strategy="group_by_length",
        predict_with_generate=False,
        report_to="none",
    )
    trainer = ClassificationTrainer(model=model, args=args, data_collator=DataCollatorWithPadding(tokenizer))
    predicted = trainer.predict(rows).predictions
    with torch.no_grad():
        expected = torch.cat([model(**tokenizer(text, return_tensors="pt")).logits for text in texts])
    torch.testing.assert_close(torch.as_tensor(predicted), expected, atol=1e-5, rtol=0)
