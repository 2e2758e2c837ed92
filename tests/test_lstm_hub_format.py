"""The encoder-only family as a Hub model: saved folders, remote code where hf_rnn is missing, and the stock
text-classification and text-generation pipelines."""

import json

import pytest
import torch
from helpers import run_without_hf_rnn
from transformers import pipeline

from hf_rnn import LSTMConfig, LSTMForCausalLM, LSTMForSequenceClassification
from hf_rnn.data.tokenization import train_char_tokenizer

REVIEWS = ["정말 재밌어요! 최고", "지루하고 별로였다", "so-so 😐", "x"]
PROMPTS = ["First Citizen:", "재밌", ""]
ID2LABEL = {0: "negative", 1: "positive"}


@pytest.fixture(scope="module")
def tokenizer():
    return train_char_tokenizer(REVIEWS * 3 + ["First Citizen:\nBefore we proceed any further, hear me speak."])


def tiny_config(tokenizer, **overrides) -> LSTMConfig:
    values = dict(
        vocab_size=len(tokenizer),
        embedding_size=16,
        hidden_size=16,
        dropout=0.0,
        init_range=0.5,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    values.update(overrides)
    return LSTMConfig(**values)


@pytest.fixture(scope="module")
def classifier_folder(tmp_path_factory, tokenizer):
    torch.manual_seed(0)
    config = tiny_config(tokenizer, bidirectional=True, pooling="attention", num_layers=2, id2label=ID2LABEL)
    folder = tmp_path_factory.mktemp("classifier")
    LSTMForSequenceClassification(config).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def lm_folder(tmp_path_factory, tokenizer):
    torch.manual_seed(1)
    model = LSTMForCausalLM(tiny_config(tokenizer, cell_type="gru", tie_word_embeddings=True)).eval()
    folder = tmp_path_factory.mktemp("lm")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def label_scores(tokenizer, model, text: str) -> dict[str, float]:
    """The classifier's softmax over its labels, by label name: what the pipeline should report."""
    with torch.no_grad():
        probabilities = torch.softmax(model(**tokenizer(text, return_tensors="pt")).logits[0], dim=-1)
    return {model.config.id2label[i]: p.item() for i, p in enumerate(probabilities)}


def greedy_text(tokenizer, model, prompt: str, max_new_tokens: int = 8) -> str:
    """The prompt and its greedy continuation, decoded as the text-generation pipeline does."""
    inputs = tokenizer(prompt, return_tensors="pt")
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    return prompt + tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)


def test_text_classification_pipeline_in_process_without_remote_code(tokenizer, classifier_folder):
    pipe = pipeline("text-classification", model=str(classifier_folder))
    assert type(pipe.model) is LSTMForSequenceClassification  # hf_rnn's registered class, no remote code
    for text, scores in zip(REVIEWS, pipe(REVIEWS, top_k=None, batch_size=4)):  # batched: padded rows
        expected = label_scores(tokenizer, pipe.model, text)
        assert {item["label"] for item in scores} == set(ID2LABEL.values())
        assert [item["score"] for item in scores] == sorted((item["score"] for item in scores), reverse=True)
        for item in scores:
            assert item["score"] == pytest.approx(expected[item["label"]], abs=1e-6)
    best = pipe(REVIEWS[0])[0]
    expected = label_scores(tokenizer, pipe.model, REVIEWS[0])
    assert best["label"] == max(expected, key=expected.get)


def test_text_generation_pipeline_in_process_without_remote_code(tokenizer, lm_folder):
    pipe = pipeline("text-generation", model=str(lm_folder))
    assert type(pipe.model) is LSTMForCausalLM
    expected = [greedy_text(tokenizer, pipe.model, prompt) for prompt in PROMPTS]
    batched = pipe(PROMPTS, do_sample=False, max_new_tokens=8, batch_size=3)  # left-padded batch
    assert [item[0]["generated_text"] for item in batched] == expected
    assert pipe(PROMPTS[0], do_sample=False, max_new_tokens=8)[0]["generated_text"] == expected[0]
    beams = pipe(PROMPTS[1], num_beams=3, num_return_sequences=3, do_sample=False, max_new_tokens=5)
    assert len(beams) == 3 and all(item["generated_text"].startswith(PROMPTS[1]) for item in beams)


def test_remote_code_and_pipelines_where_hf_rnn_cannot_be_imported(tmp_path, tokenizer, classifier_folder, lm_folder):
    """The saved folders alone are enough: a fresh process without hf_rnn gets the same logits, generations and
    pipeline outputs (trust_remote_code=True, stdin closed so that no prompt can wait)."""
    classifier = LSTMForSequenceClassification.from_pretrained(classifier_folder).eval()
    lm = LSTMForCausalLM.from_pretrained(lm_folder).eval()
    inputs = tokenizer(REVIEWS, return_tensors="pt", padding=True)
    prompt = tokenizer(PROMPTS[:2], return_tensors="pt", padding=True, padding_side="left")
    with torch.no_grad():
        expected_logits = classifier(**inputs).logits
        expected_beams = lm.generate(**prompt, num_beams=3, max_new_tokens=6, do_sample=False).tolist()
    expected = {
        "classification": [
            sorted(label_scores(tokenizer, classifier, text).items(), key=lambda kv: -kv[1]) for text in REVIEWS
        ],
        "generation": [greedy_text(tokenizer, lm, text) for text in PROMPTS],
        "beams": expected_beams,
    }
    script = f"""
import json, torch
from transformers import AutoModel, AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer, pipeline
from transformers import PreTrainedTokenizerFast
classifier_folder, lm_folder = {str(classifier_folder)!r}, {str(lm_folder)!r}
# AutoTokenizer reads the model's config first, whose code needs the flag; the tokenizer class itself needs nothing.
tok = AutoTokenizer.from_pretrained(classifier_folder, trust_remote_code=True)
assert tok.get_vocab() == PreTrainedTokenizerFast.from_pretrained(lm_folder).get_vocab()
classifier = AutoModelForSequenceClassification.from_pretrained(classifier_folder, trust_remote_code=True).eval()
assert type(classifier).__module__.startswith("transformers_modules"), type(classifier).__module__
assert type(AutoModel.from_pretrained(classifier_folder, trust_remote_code=True)).__name__ == "LSTMModel"
lm = AutoModelForCausalLM.from_pretrained(lm_folder, trust_remote_code=True).eval()
assert type(lm).__module__.startswith("transformers_modules"), type(lm).__module__
with torch.no_grad():
    logits = classifier(**tok({REVIEWS!r}, return_tensors="pt", padding=True)).logits
    torch.save(logits, {str(tmp_path / "logits.pt")!r})
    prompt = tok({PROMPTS[:2]!r}, return_tensors="pt", padding=True, padding_side="left")
    beams = lm.generate(**prompt, num_beams=3, max_new_tokens=6, do_sample=False).tolist()
classify = pipeline("text-classification", model=classifier_folder, trust_remote_code=True)
generate = pipeline("text-generation", model=lm_folder, trust_remote_code=True)
print(json.dumps({{
    "classification": [[[d["label"], d["score"]] for d in row] for row in classify({REVIEWS!r}, top_k=None)],
    "generation": [row[0]["generated_text"] for row in generate({PROMPTS!r}, do_sample=False, max_new_tokens=8)],
    "beams": beams,
}}))
"""
    result = run_without_hf_rnn(script, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Do you wish to run the custom code" not in result.stdout
    got = json.loads(result.stdout.strip().splitlines()[-1])
    torch.testing.assert_close(torch.load(tmp_path / "logits.pt"), expected_logits, atol=0, rtol=0)
    assert got["generation"] == expected["generation"]
    assert got["beams"] == expected["beams"]
    for row, expected_row in zip(got["classification"], expected["classification"]):
        assert [label for label, _ in row] == [label for label, _ in expected_row]
        assert [score for _, score in row] == pytest.approx([score for _, score in expected_row], abs=1e-6)
