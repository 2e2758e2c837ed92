"""The causal-lm task through train.py: truncated BPTT as char-rnn does it (streams, carried state), the validation
loss against an independent computation, exact resume, the card and the stock pipeline in fresh processes."""

import json
import math
import os
import shutil
import signal
import subprocess
import sys

import pytest
import torch
from datasets import Dataset
from helpers import run_card_snippet, run_python, run_without_hf_rnn
from huggingface_hub import ModelCard
from transformers import AutoModelForCausalLM, AutoTokenizer, Seq2SeqTrainingArguments, Trainer, default_data_collator

from hf_rnn import LSTMConfig, LSTMForCausalLM, train
from hf_rnn.data.files import DataFileError
from hf_rnn.data.tokenization import train_char_tokenizer
from hf_rnn.tasks.language_modeling import TruncatedBPTTTrainer, split_tail, stream_chunks, token_stream
from hf_rnn.training.trainer import last_complete_checkpoint

VERSE = (
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
    "First Citizen:\nYou are all resolved rather to die than to famish?\n\n"
)
TINY = [
    "--task",
    "causal-lm",
    "--model.embedding_size",
    "12",
    "--model.hidden_size",
    "16",
    "--block_size",
    "8",
    "--per_device_train_batch_size",
    "4",
    "--per_device_eval_batch_size",
    "3",
    "--learning_rate",
    "0.01",
    "--report_to",
    "none",
    "--disable_tqdm",
    "true",
    "--sample_length",
    "20",
]


def corpus(tmp_path, text: str = VERSE * 8 + "Ω and 밤") -> str:
    path = tmp_path / "corpus.txt"
    path.write_text(text, encoding="utf-8")
    return str(path)


# -- streams --------------------------------------------------------------------------------------------------------


def streams_of(rows: Dataset, streams: int) -> list[dict[str, list[int]]]:
    """Each stream's inputs and targets, read back by concatenating its rows chunk after chunk."""
    out = [{"inputs": [], "targets": [], "starts": []} for _ in range(streams)]
    for index, row in enumerate(rows):
        stream = out[index % streams]
        stream["inputs"] += row["input_ids"]
        stream["targets"] += row["shift_labels"]
        stream["starts"].append(row["stream_start"])
    return out


def test_evaluation_streams_score_every_token_once_in_order():
    ids = list(range(10, 33))  # 23 tokens, 3 streams of at most 8, chunks of 3
    rows = stream_chunks(ids, streams=3, block_size=3, bos_token_id=1, pad_token_id=0, whole=True)
    assert len(rows) == 3 * 3 and all(mask == [1, 1, 1] for mask in rows["attention_mask"])
    read = streams_of(rows, 3)
    scored = [token for stream in read for token in stream["targets"] if token != -100]
    assert scored == ids  # every token once, stream after stream
    for number, stream in enumerate(read):
        part = ids[number * 8 : (number + 1) * 8]
        assert stream["inputs"][: len(part) + 1] == [1, *part]  # from <s>, each target is the next input
        assert stream["targets"] == part + [-100] * (9 - len(part))
        assert stream["starts"] == [1, 0, 0]


def test_training_streams_have_equal_length_and_drop_the_short_tail():
    ids = list(range(10, 33))  # 23 tokens: 3 streams of 7 targets, 2 chunks of 3 each; the 7th target is dropped
    rows = stream_chunks(ids, streams=3, block_size=3, bos_token_id=1, pad_token_id=0, whole=False)
    read = streams_of(rows, 3)
    for number, stream in enumerate(read):
        assert stream["inputs"] == [1, *ids[number * 7 : number * 7 + 5]]
        assert stream["targets"] == ids[number * 7 : number * 7 + 6]
        assert stream["starts"] == [1, 0]
    rows = stream_chunks(ids, streams=2, block_size=5, bos_token_id=1, pad_token_id=0, whole=False)
    assert streams_of(rows, 2)[1]["targets"] == ids[11:21]  # 11 tokens per stream → 2 chunks of 5
    with pytest.raises(ValueError, match="too short for 4 streams of at least 8 tokens"):
        stream_chunks(ids, streams=4, block_size=8, bos_token_id=1, pad_token_id=0, whole=False)


def test_held_out_tail_is_the_last_tenth_of_the_characters_as_nanogpt_splits():
    text = "abcdefghijklmnopqrstuvwxyz" * 3
    train_part, validation = split_tail([text], 0.1)
    assert train_part["text"] == [text[: int(len(text) * 0.9)]] and validation["text"] == [
        text[int(len(text) * 0.9) :]
    ]
    train_part, validation = split_tail(["abc", "defgh", "ij"], 0.5)  # the cut falls inside the second document
    assert train_part["text"] == ["abc", "de"] and validation["text"] == ["fgh", "ij"]
    with pytest.raises(ValueError, match="too short to hold out 10% for validation"):
        split_tail(["a"], 0.1)


def test_documents_are_joined_by_eos_without_bos():
    tokenizer = train_char_tokenizer(["ab", "ba"])
    ids = token_stream(["ab", "b"], tokenizer)
    assert ids == [*tokenizer("ab", add_special_tokens=False)["input_ids"], 2, tokenizer.convert_tokens_to_ids("b")]


# -- the trainer carries the state ----------------------------------------------------------------------------------


def tiny_lm(vocab_size: int, seed: int = 0) -> LSTMForCausalLM:
    torch.manual_seed(seed)
    config = LSTMConfig(vocab_size=vocab_size, embedding_size=6, hidden_size=8, num_layers=2, dropout=0.0)
    return LSTMForCausalLM(config)


@pytest.mark.parametrize("accumulation", [1, 2])
def test_trainer_steps_equal_a_hand_written_truncated_bptt_loop(tmp_path, accumulation):
    """SGD on chunks with the detached state carried from each chunk to the next, written out by hand; a loop that
    resets the state at every chunk (the negative control) takes different steps."""
    tokenizer = train_char_tokenizer([VERSE])
    ids = token_stream([VERSE * 2], tokenizer)
    rows = stream_chunks(ids, streams=2, block_size=5, bos_token_id=1, pad_token_id=0, whole=False)
    model = tiny_lm(len(tokenizer))
    reference, reset = tiny_lm(len(tokenizer)), tiny_lm(len(tokenizer))
    steps = 6
    args = Seq2SeqTrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=2,
        gradient_accumulation_steps=accumulation,
        max_steps=steps,
        learning_rate=0.5,
        optim="sgd",
        lr_scheduler_type="constant",
        max_grad_norm=0.0,
        weight_decay=0.0,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        remove_unused_columns=False,
        train_sampling_strategy="sequential",
        use_cache=True,
        disable_tqdm=True,
        dataloader_pin_memory=False,
    )
    trainer = TruncatedBPTTTrainer(model=model, args=args, train_dataset=rows, data_collator=default_data_collator)
    trainer.train()
    logged = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]

    def hand_loop(lm: LSTMForCausalLM, carry: bool) -> list[float]:
        optimizer = torch.optim.SGD(lm.parameters(), lr=0.5)
        state, losses = None, []
        for step in range(steps):
            step_loss = 0.0
            for micro in range(accumulation):
                batch = default_data_collator(
                    [rows[i] for i in range(2 * (step * accumulation + micro), 2 * (step * accumulation + micro) + 2)]
                )
                out = lm(
                    input_ids=batch["input_ids"],
                    cache=state if carry else None,
                    shift_labels=batch["shift_labels"],
                    use_cache=True,
                )
                (out.loss / accumulation).backward()
                step_loss += out.loss.item() / accumulation
                state = out.cache.detach()
            optimizer.step()
            optimizer.zero_grad()
            losses.append(step_loss)
        return losses

    expected = hand_loop(reference, carry=True)
    assert logged == pytest.approx(expected, rel=1e-5)
    for name, parameter in model.named_parameters():
        torch.testing.assert_close(parameter, dict(reference.named_parameters())[name], rtol=1e-5, atol=1e-6)
    assert logged[2:] != pytest.approx(hand_loop(reset, carry=False)[2:], rel=1e-5)


# -- end to end -----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lm")
    output_dir = folder / "char-lm"
    argv = [*TINY, "--train_file", corpus(folder), "--output_dir", str(output_dir), "--max_steps", "30"]
    argv += ["--save_strategy", "no", "--sample_prompt", "All:", "--languages", "en"]
    metrics = train.main(argv)
    return folder, output_dir, metrics


def sequence_nats(model, tokens: list[int], bos_token_id: int) -> float:
    """Summed next-token loss over `tokens` read from <s> in one forward pass (no chunks, no carried state)."""
    ids = [bos_token_id, *tokens]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids[:-1]])).logits[0]
    return torch.nn.functional.cross_entropy(logits, torch.tensor(ids[1:]), reduction="sum").item()


@pytest.mark.slow
def test_validation_loss_equals_an_independent_whole_stream_computation(trained):
    folder, output_dir, metrics = trained
    model = AutoModelForCausalLM.from_pretrained(output_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(output_dir)
    text = (folder / "corpus.txt").read_text(encoding="utf-8")
    validation = text[int(len(text) * 0.9) :]
    tokens = tokenizer(validation, add_special_tokens=False)["input_ids"]
    # Three evaluation streams (per_device_eval_batch_size 3), each the next ceil(n / 3) tokens, read from <s>.
    length = math.ceil(len(tokens) / 3)
    nats = 0.0
    for stream in range(3):
        nats += sequence_nats(model, tokens[stream * length : (stream + 1) * length], tokenizer.bos_token_id)
    assert len(tokens) > len(validation)  # "Ω" and "밤" appear only here: byte pieces, more tokens than characters
    assert metrics["eval_nats_per_char"] == pytest.approx(nats / len(validation), rel=1e-5)
    assert metrics["eval_bits_per_char"] == pytest.approx(nats / len(validation) / math.log(2), rel=1e-5)
    assert metrics["eval_loss"] == pytest.approx(nats / len(tokens), rel=1e-5)
    assert metrics["eval_num_characters"] == len(validation)

    card = ModelCard.load(output_dir / "README.md")
    data = card.data.to_dict()
    assert data["pipeline_tag"] == "text-generation" and data["widget"] == [{"text": "All:"}]
    results = {m["type"]: m["value"] for r in data["model-index"][0]["results"] for m in r["metrics"]}
    assert results["nats_per_char"] == round(metrics["eval_nats_per_char"], 4)
    assert "last 10% of the training text" in card.text and "4 streams × 8 characters" in card.text


@pytest.mark.slow
def test_interrupted_run_resumes_to_the_same_losses_with_the_carried_state(tmp_path, monkeypatch):
    """Ctrl-C during step 5 saves a checkpoint at the step's end with each stream's state; resuming continues the
    streams exactly. The same checkpoint without its state file (the negative control) resumes from a zero state:
    other losses."""
    args = [*TINY, "--train_file", corpus(tmp_path), "--max_steps", "9", "--logging_steps", "1"]
    args += ["--save_strategy", "steps", "--save_steps", "3", "--eval_strategy", "no", "--model.dropout", "0.2"]
    args += ["--num_examples_to_print", "0", "--save_total_limit", "5"]
    straight = tmp_path / "straight"
    train.main([*args, "--output_dir", str(straight)])
    reference = json.loads((straight / "checkpoint-9" / "trainer_state.json").read_text())["log_history"]
    reference = {e["step"]: e["loss"] for e in reference if "loss" in e}

    interrupted = tmp_path / "interrupted"
    original_step = Trainer.training_step

    def interrupt_in_step_5(self, *a, **k):
        loss = original_step(self, *a, **k)
        if self.state.global_step == 4:
            os.kill(os.getpid(), signal.SIGINT)
        return loss

    monkeypatch.setattr(Trainer, "training_step", interrupt_in_step_5)
    with pytest.raises(KeyboardInterrupt):
        train.main([*args, "--output_dir", str(interrupted)])
    monkeypatch.setattr(Trainer, "training_step", original_step)
    assert last_complete_checkpoint(interrupted).name == "checkpoint-5"
    assert (interrupted / "checkpoint-5" / "recurrent_state_0.pt").is_file()
    stateless = tmp_path / "stateless"
    shutil.copytree(interrupted, stateless)

    def losses_after_resume(output_dir) -> dict[int, float]:
        train.main([*args, "--output_dir", str(output_dir), "--resume_from_checkpoint", "last"])
        history = json.loads((output_dir / "checkpoint-9" / "trainer_state.json").read_text())["log_history"]
        return {e["step"]: e["loss"] for e in history if "loss" in e}

    resumed = losses_after_resume(interrupted)
    for step in range(6, 10):
        assert resumed[step] == pytest.approx(reference[step], rel=1e-5), step
    (stateless / "checkpoint-5" / "recurrent_state_0.pt").unlink()
    assert losses_after_resume(stateless)[6] != pytest.approx(reference[6], rel=1e-5)


@pytest.mark.slow
def test_saved_model_generates_with_the_stock_pipeline_with_and_without_hf_rnn(trained, tmp_path):
    _, output_dir, _ = trained
    model = AutoModelForCausalLM.from_pretrained(output_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(output_dir)
    prompts = ["All:", "", "밤"]
    expected = []
    for prompt in prompts:
        inputs = tokenizer(prompt, return_tensors="pt")
        with torch.no_grad():
            output = model.generate(**inputs, do_sample=False, max_new_tokens=12)
        expected.append(prompt + tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True))

    script = f"""
import json
from transformers import pipeline
generator = pipeline("text-generation", model={str(output_dir)!r}{{remote}})
outputs = generator({prompts!r}, do_sample=False, max_new_tokens=12)
print(json.dumps([row[0]["generated_text"] for row in outputs]))
"""
    with_hf_rnn = run_python("import hf_rnn\n" + script.replace("{remote}", ""), tmp_path)
    without = run_without_hf_rnn(script.replace("{remote}", ", trust_remote_code=True"), tmp_path)
    for result in (with_hf_rnn, without):
        assert result.returncode == 0, result.stderr[-3000:]
        assert json.loads(result.stdout.strip().splitlines()[-1]) == expected

    result = run_card_snippet(output_dir, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("All:")


# -- bad data -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, flags, error, message",
    [
        ("", [], DataFileError, r"corpus.txt: no row has text"),
        ("a", [], ValueError, r"too short to hold out 10% for validation"),
        (VERSE, ["--block_size", "100"], ValueError, r"too short for 4 streams of at least 100 tokens"),
        (VERSE, ["--validation_fraction", "1.0"], ValueError, r"`validation_fraction` must be in \[0, 1\)"),
        (VERSE, ["--block_size", "0"], ValueError, r"`block_size` must be a positive number of tokens"),
    ],
)
def test_bad_text_and_settings_are_named(tmp_path, text, flags, error, message):
    argv = [*TINY, "--train_file", corpus(tmp_path, text), "--output_dir", str(tmp_path / "out"), *flags]
    with pytest.raises(error, match=message):
        train.main([*argv, "--max_steps", "1", "--save_strategy", "no"])


def test_a_document_column_is_required_for_table_files(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text(json.dumps({"body": VERSE}) + "\n")
    argv = [*TINY, "--train_file", str(path), "--output_dir", str(tmp_path / "out"), "--max_steps", "1"]
    with pytest.raises(DataFileError, match=r"docs.jsonl: has columns \['body'\], not 'text': set `text_column`"):
        train.main(argv)


@pytest.mark.skipif(torch.accelerator.is_available(), reason="checks the machine without an accelerator")
@pytest.mark.parametrize("native", [True, False], ids=["native-bf16", "emulated-bf16"])
def test_bf16_without_an_accelerator_means_cpu_autocast_where_the_cpu_has_bf16(tmp_path, monkeypatch, caplog, native):
    """The shipped char_shakespeare config sets bf16: CPU autocast where the CPU runs bfloat16 natively; float32,
    with a warning, where it would be emulated (an AVX2 CPU: a training step about 25 times slower)."""
    from hf_rnn.training.arguments import parse_args

    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: native)
    with caplog.at_level("WARNING", logger="hf_rnn.training.arguments"):
        run = parse_args(["char_shakespeare", "--output_dir", str(tmp_path), "--train_file", corpus(tmp_path)])
    assert run.training.bf16 is native and run.training.use_cpu is native
    warnings = [r.getMessage() for r in caplog.records if r.name == "hf_rnn.training.arguments"]
    assert len(warnings) == (0 if native else 1), warnings
    if not native:
        assert "no native bfloat16" in warnings[0] and warnings[0].endswith("Training in float32 instead.")


@pytest.mark.slow
def test_two_processes_hold_their_own_streams_and_match_one_process_with_all_of_them(tmp_path):
    """Under DDP each process must read the same rows of the same streams at every step: two processes of 2 streams
    then train exactly as one process of 4 (gradients averaged over the same 4 rows), and evaluation over 2 × 2
    streams scores every validation token once."""
    import os

    from helpers import REPO_ROOT

    text = corpus(tmp_path)
    common = [*TINY, "--train_file", text, "--max_steps", "6", "--logging_steps", "1", "--save_strategy", "no"]
    common += ["--eval_strategy", "no", "--num_examples_to_print", "0", "--model.dropout", "0.0"]
    launcher = ["-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1"]
    launcher += ["--mixed_precision", "no", "--dynamo_backend", "no", "train.py"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    two = tmp_path / "two"
    flags = ["--per_device_train_batch_size", "2", "--per_device_eval_batch_size", "2", "--use_cpu", "true"]
    result = subprocess.run(
        [sys.executable, *launcher, *common, *flags, "--output_dir", str(two)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    one = tmp_path / "one"
    metrics = train.main([*common, "--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "4",
                          "--output_dir", str(one)])  # fmt: skip

    def losses(output_dir) -> list[float]:
        history = json.loads((output_dir / "trainer_state.json").read_text())["log_history"]
        return [entry["loss"] for entry in history if "loss" in entry]

    assert json.loads((two / "all_results.json").read_text())["world_size"] == 2
    assert losses(two) == pytest.approx(losses(one), rel=1e-4)
    two_metrics = json.loads((two / "all_results.json").read_text())
    assert two_metrics["eval_num_characters"] == metrics["eval_num_characters"]
    assert two_metrics["eval_nats_per_char"] == pytest.approx(metrics["eval_nats_per_char"], rel=1e-4)
