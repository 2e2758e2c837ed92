"""transformers' `pipeline()` with hf-rnn's models: the translation task transformers 5 removed, the keyword captioner
without a prompt, every saved folder with and without hf_rnn installed, and transformers 4's inputs and outputs."""

import json
import shutil
import subprocess

import pytest
import torch
from helpers import (
    BLOCK_HF_RNN,
    SENTENCES,
    hub_client_env,
    run_python,
    sentence_tokenizer,
    untrained_translator,
)
from helpers import run_without_hf_rnn as run_isolated
from PIL import Image
from transformers import ImageTextToTextPipeline, pipeline

from hf_rnn import (
    LSTMCaptionerConfig,
    LSTMCaptionerForConditionalGeneration,
    LSTMCaptionerImageProcessor,
    LSTMCaptionerPipeline,
    LSTMCaptionerProcessor,
    LSTMSeq2SeqForConditionalGeneration,
    TranslationPipeline,
    build_keyword_tokenizer,
)
from hf_rnn.captioner.pipeline_lstm_captioner import CUSTOM_PIPELINES as CAPTIONER_PIPELINES
from hf_rnn.data.landscapes import KEYWORDS, render_landscape
from hf_rnn.translator.pipeline_translation import CUSTOM_PIPELINES as TRANSLATION_PIPELINES


@pytest.fixture(scope="module")
def tokenizer():
    return sentence_tokenizer()


@pytest.fixture(scope="module")
def translator(tokenizer):
    return untrained_translator(tokenizer)


def expected_translation(model, tokenizer, sentence: str, **generate_kwargs) -> list[str]:
    """The independent computation: tokenizer -> generate -> decode, one sentence at a time."""
    inputs = tokenizer(sentence, return_tensors="pt")
    with torch.no_grad():
        output = model.generate(**inputs, **generate_kwargs)
    return tokenizer.batch_decode(output, skip_special_tokens=True)


def run_without_hf_rnn(script: str, tmp_path, env=None) -> subprocess.CompletedProcess:
    result = run_isolated(script, tmp_path, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


# --- translation: the task, in this process ----------------------------------------------------------------------


def test_translation_task_takes_a_model_a_folder_or_a_hub_id_without_trust_remote_code(
    hub_server, tmp_path, tokenizer, translator
):
    expected = [{"translation_text": expected_translation(translator, tokenizer, SENTENCES[0])[0]}]
    assert pipeline("translation", model=translator, tokenizer=tokenizer)(SENTENCES[0]) == expected

    model_folder, pipeline_folder = tmp_path / "model", tmp_path / "pipeline"
    translator.save_pretrained(model_folder)
    tokenizer.save_pretrained(model_folder)
    TranslationPipeline(model=translator, tokenizer=tokenizer).save_pretrained(pipeline_folder)
    assert json.loads((pipeline_folder / "config.json").read_text())["custom_pipelines"] == TRANSLATION_PIPELINES
    for folder in (model_folder, pipeline_folder):
        translate = pipeline("translation", model=str(folder))
        assert isinstance(translate, TranslationPipeline) and type(translate).__module__.startswith("hf_rnn.")
        assert translate(SENTENCES[0]) == expected

    TranslationPipeline(model=translator, tokenizer=tokenizer).push_to_hub("user/tiny-translator")
    assert pipeline("translation", model="user/tiny-translator")(SENTENCES[0]) == expected


def test_translation_output_and_options_follow_transformers_4(tokenizer, translator):
    translate = pipeline("translation", model=translator, tokenizer=tokenizer)
    singles = [translate(sentence) for sentence in SENTENCES]
    assert all(len(single) == 1 for single in singles)
    assert translate(SENTENCES) == [single[0] for single in singles]  # a flat list of dicts
    assert translate(tuple(SENTENCES), batch_size=3) == translate(SENTENCES)
    assert translate([]) == []
    assert translate(SENTENCES[:2], src_lang="en", tgt_lang="ko") == translate(SENTENCES[:2])

    several = translate(SENTENCES[:2], num_beams=3, num_return_sequences=2)
    assert [len(item) for item in several] == [2, 2]  # a list of lists when a sentence returns several
    assert [r["translation_text"] for r in several[1]] == expected_translation(
        translator, tokenizer, SENTENCES[1], num_beams=3, num_return_sequences=2
    )

    inputs = tokenizer(SENTENCES[2], return_tensors="pt")
    with torch.no_grad():
        ids = translator.generate(**inputs)[0]
    (tensors,) = translate(SENTENCES[2], return_tensors=True)
    assert set(tensors) == {"translation_token_ids"} and torch.equal(tensors["translation_token_ids"], ids)
    (both,) = translate(SENTENCES[2], return_tensors=True, return_text=True)
    assert both["translation_text"] == singles[2][0]["translation_text"]
    with pytest.raises(ValueError, match="nothing to return"):
        translate(SENTENCES[2], return_text=False)


def test_blank_input_is_translated_to_nothing_without_calling_the_model(tokenizer, translator, monkeypatch):
    calls = []
    generate = translator.generate

    def counting_generate(**kwargs):
        calls.append(kwargs["input_ids"].shape[0])
        return generate(**kwargs)

    monkeypatch.setattr(translator, "generate", counting_generate)
    translate = pipeline("translation", model=translator, tokenizer=tokenizer)
    for blank in ["", " ", "  \t ", "\u3000\u2028", "\n"]:
        assert translate(blank) == [{"translation_text": ""}]
    assert translate(["", "   "], batch_size=2) == [{"translation_text": ""}] * 2
    assert calls == []
    mixed = translate(["", SENTENCES[0], " "], batch_size=3)
    assert calls == [1]  # one generate() call, for the one sentence
    assert mixed == [{"translation_text": ""}, translate(SENTENCES[0])[0], {"translation_text": ""}]
    assert translate(" ", num_return_sequences=2, num_beams=2) == [{"translation_text": ""}] * 2


def test_the_pipeline_sets_no_length_limit_of_its_own(tokenizer, translator):
    """transformers 4 capped outputs at 256 new tokens; the model's generation config decides here."""
    model = LSTMSeq2SeqForConditionalGeneration(translator.config).eval()
    model.load_state_dict(translator.state_dict())
    model.generation_config.max_new_tokens = 300
    model.generation_config.suppress_tokens = [tokenizer.eos_token_id]  # never stops on its own
    (result,) = pipeline("translation", model=model, tokenizer=tokenizer)(SENTENCES[0], return_tensors=True)
    assert len(result["translation_token_ids"]) == 301  # decoder start + 300


def test_a_folder_without_tokenizer_files_fails_with_one_sentence(tmp_path, translator):
    translator.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="needs the model's tokenizer and none was found"):
        pipeline("translation", model=str(tmp_path))


# --- translation: saved folders where hf_rnn is not installed -----------------------------------------------------

REMOTE_TRANSLATE = """
import json
from transformers import pipeline
translate = pipeline("translation", model={folder!r}, trust_remote_code=True)
assert type(translate).__module__.startswith("transformers_modules"), type(translate).__module__
print(json.dumps(translate({sentences!r})))
"""


def test_pipeline_folders_and_their_resaves_translate_where_hf_rnn_is_not_installed(tmp_path, tokenizer, translator):
    expected = [{"translation_text": expected_translation(translator, tokenizer, s)[0]} for s in SENTENCES]
    folder, resaved = tmp_path / "saved", tmp_path / "resaved"
    TranslationPipeline(model=translator, tokenizer=tokenizer).save_pretrained(folder)
    script = (
        REMOTE_TRANSLATE.format(folder=str(folder), sentences=SENTENCES)
        + f"translate.save_pretrained({str(resaved)!r})\n"
    )
    assert json.loads(run_without_hf_rnn(script, tmp_path).stdout.splitlines()[-1]) == expected
    shutil.rmtree(tmp_path / "hf_home")  # the second process must find the code in the re-saved folder alone
    result = run_without_hf_rnn(REMOTE_TRANSLATE.format(folder=str(resaved), sentences=SENTENCES), tmp_path)
    assert json.loads(result.stdout.splitlines()[-1]) == expected


def test_model_folders_and_their_resaves_translate_where_hf_rnn_is_not_installed(tmp_path, tokenizer, translator):
    expected = [{"translation_text": expected_translation(translator, tokenizer, s)[0]} for s in SENTENCES]
    folder, resaved = tmp_path / "model", tmp_path / "resaved"
    translator.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    loaded = LSTMSeq2SeqForConditionalGeneration.from_pretrained(folder)
    loaded.save_pretrained(resaved)
    tokenizer.save_pretrained(resaved)
    for saved in (folder, resaved):
        result = run_without_hf_rnn(REMOTE_TRANSLATE.format(folder=str(saved), sentences=SENTENCES), tmp_path)
        assert json.loads(result.stdout.splitlines()[-1]) == expected


def test_a_pushed_pipeline_translates_from_the_hub_where_hf_rnn_is_not_installed(
    hub_server, tmp_path, tokenizer, translator
):
    expected = [{"translation_text": expected_translation(translator, tokenizer, s)[0]} for s in SENTENCES]
    TranslationPipeline(model=translator, tokenizer=tokenizer).push_to_hub("user/tiny-translator")
    script = REMOTE_TRANSLATE.format(folder="user/tiny-translator", sentences=SENTENCES)
    result = run_without_hf_rnn(script, tmp_path, env=hub_client_env(tmp_path))
    assert json.loads(result.stdout.splitlines()[-1]) == expected


def test_autotokenizer_asks_nothing_for_our_tokenizer(tmp_path, tokenizer, translator):
    """transformers resolves the folder's model config before its tokenizer: with hf_rnn imported, or with
    `trust_remote_code=True` where it is not, nothing is asked and nothing warns."""
    TranslationPipeline(model=translator, tokenizer=tokenizer).save_pretrained(tmp_path / "saved")
    script = f"""
import hf_rnn
from transformers import AutoTokenizer
tokenizer = AutoTokenizer.from_pretrained({str(tmp_path / "saved")!r})
assert tokenizer("a </s> b")["input_ids"] == {tokenizer("a </s> b")["input_ids"]!r}
"""
    for code in (
        script,
        BLOCK_HF_RNN + script.replace("import hf_rnn\n", "").replace(")\nassert", ", trust_remote_code=True)\nassert"),
    ):
        result = run_python(code, tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
        assert "custom code" not in result.stdout + result.stderr
        assert "to instantiate a model of type" not in result.stderr


# --- the keyword captioner ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def captioner_parts():
    processor = LSTMCaptionerProcessor(LSTMCaptionerImageProcessor(), build_keyword_tokenizer(list(KEYWORDS)))
    torch.manual_seed(8)
    config = LSTMCaptionerConfig(
        vocab_size=len(KEYWORDS) + 4, embedding_size=8, hidden_size=12, attention_size=10, cnn_channels=[4, 8, 8]
    )
    return LSTMCaptionerForConditionalGeneration(config).eval(), processor


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scenes")
    paths = []
    for seed in range(3):
        paths.append(folder / f"scene{seed}.png")
        render_landscape(seed)[0].save(paths[-1])
    return paths


def expected_keywords(model, processor, images) -> list[str]:
    with torch.no_grad():
        output = model.generate(**processor(images=images, return_tensors="pt"))
    return [", ".join(keywords) for keywords in processor.batch_decode(output)]


def test_captioner_needs_no_prompt_for_one_image_or_a_list(captioner_parts, scenes):
    model, processor = captioner_parts
    expected = expected_keywords(model, processor, [Image.open(path) for path in scenes])
    captioner = pipeline("image-text-to-text", model=model, processor=processor)
    assert isinstance(captioner, LSTMCaptionerPipeline)
    assert captioner(scenes[0]) == [{"input_text": "", "generated_text": expected[0]}]
    assert captioner(images=Image.open(scenes[1])) == [{"input_text": "", "generated_text": expected[1]}]
    listed = [[{"input_text": "", "generated_text": keywords}] for keywords in expected]
    assert captioner(scenes) == listed
    assert captioner([str(path) for path in scenes], batch_size=2) == listed
    assert captioner([]) == []
    assert captioner(images=scenes[2], text="") == [{"input_text": "", "generated_text": expected[2]}]


def test_image_text_to_text_for_other_models_stays_transformers_own(captioner_parts, translator):
    """`import hf_rnn` swaps the task's class; every model but the keyword captioner still gets transformers' own."""
    _, processor = captioner_parts
    assert type(pipeline("image-text-to-text", model=translator, processor=processor)) is ImageTextToTextPipeline


def test_captioner_names_an_unreadable_image(captioner_parts, tmp_path):
    model, processor = captioner_parts
    broken = tmp_path / "broken.png"
    render_landscape(0)[0].save(broken)
    broken.write_bytes(broken.read_bytes()[:200])
    captioner = pipeline("image-text-to-text", model=model, processor=processor)
    for call in (lambda: captioner(str(broken)), lambda: captioner([broken]), lambda: captioner(broken, text="")):
        with pytest.raises(ValueError, match="broken.png"):
            call()


def test_image_to_text_alias_logs_cleanly(captioner_parts, scenes, tmp_path):
    """transformers 5.24 logs the alias's deprecation with a broken %-format: a fresh process (the warning is logged
    once per process) must show the message, not a `--- Logging error ---` traceback."""
    model, processor = captioner_parts
    model.save_pretrained(tmp_path / "saved")
    processor.save_pretrained(tmp_path / "saved")
    script = f"""
import hf_rnn
from transformers import pipeline
print(pipeline("image-to-text", model={str(tmp_path / "saved")!r})({str(scenes[0])!r})[0]["generated_text"])
"""
    result = run_python(script, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Logging error" not in result.stderr and "Traceback" not in result.stderr
    assert "has been replaced by `image-text-to-text`" in result.stderr
    assert result.stdout.splitlines()[-1] == expected_keywords(model, processor, [Image.open(scenes[0])])[0]


def test_captioner_pipeline_folders_work_with_and_without_hf_rnn(captioner_parts, scenes, tmp_path):
    model, processor = captioner_parts
    expected = expected_keywords(model, processor, [Image.open(path) for path in scenes])
    folder = tmp_path / "saved"
    pipeline("image-text-to-text", model=model, processor=processor).save_pretrained(folder)
    assert json.loads((folder / "config.json").read_text())["custom_pipelines"] == CAPTIONER_PIPELINES
    for task in ("image-text-to-text", "image-to-text"):
        captioner = pipeline(task, model=str(folder))
        assert [r[0]["generated_text"] for r in captioner(scenes)] == expected
    script = f"""
import json
from transformers import pipeline
for task in ("image-text-to-text", "image-to-text"):
    captioner = pipeline(task, model={str(folder)!r}, trust_remote_code=True)
    assert type(captioner).__module__.startswith("transformers_modules"), type(captioner).__module__
    print(json.dumps([r[0]["generated_text"] for r in captioner({[str(p) for p in scenes]!r})]))
"""
    result = run_without_hf_rnn(script, tmp_path)
    assert [json.loads(line) for line in result.stdout.splitlines()[-2:]] == [expected, expected]
    assert "Logging error" not in result.stderr


def test_captioner_model_folders_caption_without_a_prompt_where_hf_rnn_is_not_installed(
    captioner_parts, scenes, tmp_path
):
    model, processor = captioner_parts
    expected = expected_keywords(model, processor, [Image.open(path) for path in scenes])
    model.save_pretrained(tmp_path / "saved")
    processor.save_pretrained(tmp_path / "saved")
    script = f"""
import json
from transformers import pipeline
captioner = pipeline("image-to-text", model={str(tmp_path / "saved")!r}, trust_remote_code=True)
print(json.dumps([r[0]["generated_text"] for r in captioner({[str(p) for p in scenes]!r})]))
"""
    assert json.loads(run_without_hf_rnn(script, tmp_path).stdout.splitlines()[-1]) == expected
