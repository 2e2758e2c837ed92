"""The model can learn: a toy reversal task reaches >= 95% exact match in a few hundred steps."""

import pytest
import torch

from hf_rnn import LSTMSeq2SeqConfig, LSTMSeq2SeqForConditionalGeneration

PAD, BOS, EOS, FIRST_SYMBOL, VOCAB = 0, 1, 2, 3, 13


def reversal_batch(generator: torch.Generator, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sources of 3-7 random symbols + EOS; targets are the reversed symbols + EOS, padded with -100."""
    lengths = torch.randint(3, 8, (batch_size,), generator=generator)
    source = torch.full((batch_size, 8), PAD)
    labels = torch.full((batch_size, 8), -100)
    for row, length in enumerate(lengths.tolist()):
        symbols = torch.randint(FIRST_SYMBOL, VOCAB, (length,), generator=generator)
        source[row, : length + 1] = torch.cat([symbols, torch.tensor([EOS])])
        labels[row, : length + 1] = torch.cat([symbols.flip(0), torch.tensor([EOS])])
    return source, labels


@pytest.mark.slow
@pytest.mark.parametrize("input_feeding", [True, False])
def test_reversal_task_is_learned(input_feeding):
    torch.manual_seed(0)
    config = LSTMSeq2SeqConfig(
        vocab_size=VOCAB,
        embedding_size=32,
        hidden_size=64,
        dropout=0.0,
        input_feeding=input_feeding,
        pad_token_id=PAD,
        bos_token_id=BOS,
        eos_token_id=EOS,
        decoder_start_token_id=BOS,
    )
    model = LSTMSeq2SeqForConditionalGeneration(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(1)
    model.train()
    for _ in range(400):
        source, labels = reversal_batch(generator, 64)
        loss = model(input_ids=source, attention_mask=source.ne(PAD), labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()

    model.eval()
    source, labels = reversal_batch(torch.Generator().manual_seed(999), 200)
    with torch.no_grad():
        generated = model.generate(input_ids=source, attention_mask=source.ne(PAD), max_new_tokens=10)
    correct = 0
    for row in range(200):
        target = labels[row][labels[row] != -100].tolist()
        correct += generated[row, 1 : 1 + len(target)].tolist() == target
    assert correct / 200 >= 0.95, f"exact match {correct / 200:.2%}"
