"""BPE-dropout (`--bpe_dropout`): training batches get fresh segmentations of the same text; evaluation keeps the
tokenizer's own."""

import torch
from datasets import Dataset
from helpers import SENTENCES, TRANSLATIONS, sentence_tokenizer, untrained_translator
from transformers import Seq2SeqTrainingArguments

from hf_rnn.tasks.translation import BPEDropoutCollator, TranslationTask
from hf_rnn.training.trainer import RecurrentSeq2SeqTrainer


def features(tokenizer, max_length=64):
    sources = tokenizer(SENTENCES, max_length=max_length, truncation=True)
    targets = tokenizer(text_target=TRANSLATIONS, max_length=max_length, truncation=True)
    return [
        {"input_ids": ids, "attention_mask": mask, "labels": labels}
        for ids, mask, labels in zip(sources["input_ids"], sources["attention_mask"], targets["input_ids"])
    ]


def texts(tokenizer, ids: torch.Tensor) -> list[str]:
    return tokenizer.batch_decode(ids.masked_fill(ids < 0, tokenizer.pad_token_id), skip_special_tokens=True)


def collator_for(tokenizer, dropout=0.5, max_length=64):
    model = untrained_translator(tokenizer)
    plain = TranslationTask.data_collator(None, tokenizer, model)
    return plain, BPEDropoutCollator(tokenizer, plain, dropout, max_length, max_length)


def test_batches_hold_the_same_text_in_other_segmentations_ending_with_eos():
    tokenizer = sentence_tokenizer()
    plain, collator = collator_for(tokenizer)
    reference = plain(features(tokenizer))
    segmentations = set()
    for _ in range(5):
        batch = collator(features(tokenizer))
        assert texts(tokenizer, batch["input_ids"]) == SENTENCES
        assert texts(tokenizer, batch["labels"]) == TRANSLATIONS
        lengths = batch["attention_mask"].sum(1)
        assert (batch["input_ids"][torch.arange(len(SENTENCES)), lengths - 1] == tokenizer.eos_token_id).all()
        assert ((batch["labels"] == -100) | (batch["labels"] >= 0)).all()
        segmentations.add(tuple(batch["input_ids"].flatten().tolist()))
        # Skipped merges leave more, shorter pieces: never fewer tokens than the usual segmentation.
        assert (lengths >= reference["attention_mask"].sum(1)).all()
    assert len(segmentations) > 1 and tuple(reference["input_ids"].flatten().tolist()) not in segmentations
    assert tokenizer.backend_tokenizer.model.dropout is None  # the saved tokenizer is untouched


def test_fresh_segmentations_are_truncated_to_the_run_s_lengths():
    tokenizer = sentence_tokenizer()
    _, collator = collator_for(tokenizer, dropout=0.9, max_length=6)
    batch = collator(features(tokenizer, max_length=6))
    assert batch["input_ids"].shape[1] == 6 and batch["labels"].shape[1] == 6
    assert (batch["input_ids"][:, -1] == tokenizer.eos_token_id).all()


def test_only_the_training_loader_uses_the_dropout_collator(tmp_path):
    tokenizer = sentence_tokenizer()
    plain, collator = collator_for(tokenizer)
    dataset = Dataset.from_list(features(tokenizer))
    args = Seq2SeqTrainingArguments(
        tmp_path, per_device_train_batch_size=4, per_device_eval_batch_size=4, report_to=[]
    )
    trainer = RecurrentSeq2SeqTrainer(
        model=untrained_translator(tokenizer),
        args=args,
        train_dataset=dataset,
        eval_dataset=dataset,
        data_collator=plain,
        train_data_collator=collator,
    )
    evaluation = next(iter(trainer.get_eval_dataloader()))
    assert torch.equal(evaluation["input_ids"], plain(features(tokenizer))["input_ids"])
    assert trainer.data_collator is plain
    usual = {
        text: row[row != tokenizer.pad_token_id].tolist() for text, row in zip(SENTENCES, evaluation["input_ids"])
    }
    resegmented = 0
    for _ in range(5):  # the sampler shuffles: compare each sentence with its own usual segmentation
        batch = next(iter(trainer.get_train_dataloader()))["input_ids"]
        for text, row in zip(texts(tokenizer, batch), batch):
            resegmented += row[row != tokenizer.pad_token_id].tolist() != usual[text]
    assert resegmented > 0
