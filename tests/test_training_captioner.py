"""train.py for the captioner: landscapes and user image folders, metrics, card, pipeline, Hub push."""

import json

import numpy as np
import pytest
from datasets import Dataset
from helpers import BLOCK_HF_RNN, REPO_ROOT, hub_client_env, run_python
from huggingface_hub import ModelCard
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor, EvalPrediction, pipeline

from hf_rnn import train
from hf_rnn.captioner import LSTMCaptionerImageProcessor, LSTMCaptionerProcessor, build_keyword_tokenizer
from hf_rnn.data.landscapes import render_landscape
from hf_rnn.tasks.captioning import keyword_scores
from hf_rnn.training.arguments import parse_args

CONFIG = str(REPO_ROOT / "configs" / "captioner_landscapes.yaml")
TINY = ["--model.cnn_channels", "[8, 16]", "--model.embedding_size", "8", "--model.hidden_size", "16"]
TINY += ["--model.attention_size", "16", "--synthetic_train_size", "64", "--synthetic_eval_size", "8"]
TINY += ["--per_device_train_batch_size", "16", "--per_device_eval_batch_size", "8", "--report_to", "none"]
TINY += ["--disable_tqdm", "true", "--eval_strategy", "no", "--save_strategy", "no", "--num_examples_to_print", "2"]
TINY += ["--logging_steps", "2"]


def test_keyword_metrics_against_hand_counts_and_raw_keyword_lists():
    tokenizer = build_keyword_tokenizer(["tree", "sun", "night", "snowy peak"])
    processor = LSTMCaptionerProcessor(LSTMCaptionerImageProcessor(), tokenizer)
    ids = tokenizer.convert_tokens_to_ids
    # predictions: start token, keywords, </s>, padding (-100 after cross-process padding)
    predictions = np.array([[1, ids("tree"), ids("sun"), 2, 0], [1, ids("night"), 2, -100, -100]])
    references = Dataset.from_dict({"keywords": [["tree", "snowy peak"], ["night"]]})
    task = parse_args(["captioner_landscapes"]).task
    metrics = task.compute_metrics(processor, references)(EvalPrediction(predictions=predictions, label_ids=None))
    # hits: tree, night = 2; predicted 3; expected 3
    assert metrics["keyword_precision"] == pytest.approx(2 / 3)
    assert metrics["keyword_recall"] == pytest.approx(2 / 3)
    assert metrics["keyword_f1"] == pytest.approx(2 / 3)
    assert metrics["exact_set_match"] == pytest.approx(0.5)
    assert keyword_scores([set()], [{"a"}])["keyword_f1"] == 0.0


@pytest.fixture(scope="module")
def trained_captioner(tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("cap") / "tiny-keywords"
    metrics = train.main([CONFIG, *TINY, "--output_dir", str(output_dir), "--max_steps", "8"])
    return output_dir, metrics


@pytest.mark.slow
def test_landscape_run_saves_a_loadable_captioner_with_card(trained_captioner):
    output_dir, metrics = trained_captioner
    assert {"test_keyword_f1", "test_exact_set_match", "eval_keyword_f1"} <= set(metrics)
    model = AutoModelForImageTextToText.from_pretrained(output_dir).eval()
    processor = AutoProcessor.from_pretrained(output_dir)
    image, _ = render_landscape(12345)
    keywords = processor.batch_decode(model.generate(**processor(images=image, return_tensors="pt")))[0]
    assert len(keywords) == len(set(keywords))
    pipe = pipeline("image-to-text", model=str(output_dir))
    assert pipe(images=image, text="")[0]["generated_text"] == ", ".join(keywords)

    data = ModelCard.load(output_dir / "README.md").data.to_dict()
    assert data["pipeline_tag"] == "image-to-text" and "hf-rnn" in data["tags"]
    results = {m["type"]: m["value"] for r in data["model-index"][0]["results"] for m in r["metrics"]}
    assert results["keyword_f1"] == pytest.approx(metrics["test_keyword_f1"], abs=1e-3)
    assert (output_dir / "example.png").exists()


def _image_folder(root, corrupt: bool):
    split = root / "train"
    split.mkdir(parents=True)
    rows = []
    for seed in range(12):
        image, keywords = render_landscape(seed)
        image.save(split / f"{seed}.png")
        rows.append({"file_name": f"{seed}.png", "keywords": keywords})
    if corrupt:
        (split / "broken.png").write_bytes((split / "0.png").read_bytes()[:60])
        rows.append({"file_name": "broken.png", "keywords": ["tree"]})
    (split / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


@pytest.mark.slow
def test_image_folder_with_metadata_trains(tmp_path):
    data_dir = _image_folder(tmp_path / "images", corrupt=False)
    output_dir = tmp_path / "out"
    metrics = train.main(
        [
            str(REPO_ROOT / "configs" / "captioner_imagefolder.yaml"),
            *TINY,
            "--data_dir",
            str(data_dir),
            "--model.image_size",
            "64",
            "--output_dir",
            str(output_dir),
            "--max_steps",
            "3",
            "--load_best_model_at_end",
            "false",
        ]
    )
    assert metrics["train_loss"] > 0
    assert (output_dir / "processor_config.json").exists()


@pytest.mark.slow
def test_corrupt_image_in_folder_is_named_before_training(tmp_path):
    data_dir = _image_folder(tmp_path / "images", corrupt=True)
    with pytest.raises(
        ValueError, match=r"1 unreadable image\(s\) in the train split:\n  Could not read image .*broken\.png"
    ):
        train.main(
            [
                str(REPO_ROOT / "configs" / "captioner_imagefolder.yaml"),
                *TINY,
                "--data_dir",
                str(data_dir),
                "--output_dir",
                str(tmp_path / "out"),
                "--max_steps",
                "3",
            ]
        )


@pytest.mark.slow
def test_captioner_push_then_pipeline_in_a_fresh_process(hub_server, tmp_path):
    output_dir = tmp_path / "pushed"
    train.main(
        [
            CONFIG,
            *TINY,
            "--output_dir",
            str(output_dir),
            "--max_steps",
            "3",
            "--push_to_hub",
            "true",
            "--hub_model_id",
            "user/tiny-keywords",
        ]
    )
    files = hub_server.files("user/tiny-keywords")
    assert {"model.safetensors", "config.json", "processor_config.json", "README.md"} <= set(files)
    image_path = tmp_path / "scene.png"
    render_landscape(777)[0].save(image_path)
    local = pipeline("image-to-text", model=str(output_dir))(images=Image.open(image_path), text="")
    script = (
        BLOCK_HF_RNN
        + f"""
import json
from PIL import Image
from transformers import pipeline
pipe = pipeline("image-to-text", model="user/tiny-keywords", trust_remote_code=True)
print(json.dumps(pipe(images=Image.open({str(image_path)!r}), text="")))
"""
    )
    result = run_python(script, tmp_path, cwd=tmp_path, env=hub_client_env(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1])[0]["generated_text"] == local[0]["generated_text"]
