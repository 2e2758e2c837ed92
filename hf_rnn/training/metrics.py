"""Metrics computed on generated outputs (not on teacher-forced logits)."""

from collections.abc import Callable

import numpy as np
import sacrebleu
from transformers import EvalPrediction


def decode_generated(tokenizer, token_ids: np.ndarray) -> list[str]:
    """Generated ids come padded with -100 across processes and batches: map that back to padding first."""
    token_ids = np.where(token_ids < 0, tokenizer.pad_token_id, token_ids)
    return tokenizer.batch_decode(token_ids, skip_special_tokens=True)


def translation_metrics(tokenizer) -> Callable[[EvalPrediction], dict[str, float]]:
    """sacreBLEU BLEU (13a tokenisation) and chrF — chrF because word-level BLEU under-rates agglutinative
    languages such as Korean, where one wrong particle makes a whole word wrong."""

    def compute(prediction: EvalPrediction) -> dict[str, float]:
        predictions = (
            prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        )
        hypotheses = decode_generated(tokenizer, predictions)
        references = decode_generated(tokenizer, prediction.label_ids)
        return {
            "bleu": sacrebleu.corpus_bleu(hypotheses, [references]).score,
            "chrf": sacrebleu.corpus_chrf(hypotheses, [references]).score,
            "num_sentences": float(len(hypotheses)),
        }

    return compute


__all__ = ["decode_generated", "translation_metrics"]
