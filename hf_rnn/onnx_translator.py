"""Greedy and beam-search translation over a translator exported by `python -m hf_rnn.export`, with onnxruntime.

    translator = OnnxTranslator("exported/")
    ids = translator.generate(input_ids, attention_mask, num_beams=5)   # numpy in, numpy out, no torch

Gives the tokens `model.generate()` gives for the same batch: the same output limit (the generation
config's, else the source-scaled one), and for beams transformers' `_beam_search` step for step
(top 2·k continuations, finished hypotheses ranked by score / length**length_penalty, its
`early_stopping` rules). Like the model's generate(), it stops computing the rows of a finished
sentence; that never changes the output. Two things can make the two differ, both at ties: continuations with
exactly equal scores are ranked by position (beam, then token id), where torch.topk, which generate() ranks with,
leaves their order unspecified; and onnxruntime's log-softmax can differ from torch's in the last bit, which can
reorder two continuations that close. Only numpy and onnxruntime are imported, so the folder and this file are
all a machine needs to translate.
"""

import json
import math
from pathlib import Path

import numpy as np
import onnxruntime

SETTINGS = "onnx_decoding.json"  # written by hf_rnn.export beside encoder.onnx and decoder_step.onnx
# The graphs' interface, written into SETTINGS: 2 since the decoder step takes the state per beam and the memory per
# source (its "format" is absent in earlier folders).
FORMAT = 2
# Beam search's candidates per row, also written by hf_rnn.export: logits (rows, V), k (1,) -> the log-probabilities
# of each row's k best tokens (rows, k), best first, ties to the lower token id, and those tokens. A graph apart from
# decoder_step.onnx because onnxruntime runs every node of a graph whatever outputs are fetched: greedy decoding
# would pay for the log-softmax it does not need.
TOP_K = "log_softmax_top_k.onnx"
# A finished hypothesis or a dead candidate gets this score added, as transformers does (float32: it swallows any
# log-probability, so such scores tie).
NEVER = np.float32(-1.0e9)


class OnnxTranslator:
    """The encoder and one decoder step as onnxruntime sessions, and the decoding loops around them.

    Args:
        folder: what `python -m hf_rnn.export` wrote (`encoder.onnx`, `decoder_step.onnx`, `onnx_decoding.json`).
        threads: onnxruntime intra-op threads (0: its default).
    """

    def __init__(self, folder: str | Path, threads: int = 0):
        folder = Path(folder)
        self.settings = json.loads((folder / SETTINGS).read_text())
        if self.settings.get("format", 1) != FORMAT:
            raise ValueError(
                f"{folder} was exported by another hf_rnn version (graph format {self.settings.get('format', 1)}, "
                f"this loop reads format {FORMAT}): export the model again (python -m hf_rnn.export)"
            )
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3  # its warnings about unused initializers concern the exporter, not the user
        # Every session has its own intra-op threads, which by default spin after each run waiting for more work:
        # with three sessions taking turns and numpy working between their runs, spinning threads hold the cores the
        # next run needs (int8 beam 5 over test2016 on 2 cores: 11.3 s of decoding with spinning, 4.5 s without).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.encoder = onnxruntime.InferenceSession(str(folder / "encoder.onnx"), options)
        self.decoder = onnxruntime.InferenceSession(str(folder / "decoder_step.onnx"), options)
        if not (folder / TOP_K).exists():
            raise FileNotFoundError(f"{folder / TOP_K} is missing: export the model again (python -m hf_rnn.export)")
        self.top_k = onnxruntime.InferenceSession(str(folder / TOP_K), options)
        self.state_names = self.settings["state"]  # the recurrent state tensors the encoder returns
        # what the decoder step returns besides logits (the attention keys stay as the encoder made them)
        self.step_state_names = [name for name in self.state_names if name != "attention_keys"]

    def generate(
        self,
        input_ids: np.ndarray,
        attention_mask: np.ndarray | None = None,
        num_beams: int | None = None,
        max_new_tokens: int | None = None,
        max_length: int | None = None,
        length_penalty: float | None = None,
        early_stopping: bool | str | None = None,
        num_return_sequences: int = 1,
    ) -> np.ndarray:
        """input_ids (B, S) right-padded source ids, attention_mask (B, S) (from the padding when None) -> (B *
        num_return_sequences, L) token ids starting with the decoder start token, as `model.generate()` returns.

        Unset arguments come from the model's generation config, saved at export. `max_length` counts the start
        token; with neither limit set, ceil(max_new_tokens_ratio * longest source) + max_new_tokens_offset.

        Raises:
            ValueError: ids outside the source vocabulary, left padding or an empty source, or more sequences
                asked for than beams.
        """
        settings = self.settings
        input_ids = np.asarray(input_ids, dtype=np.int64)
        if attention_mask is None:
            attention_mask = (input_ids != settings["pad_token_id"]).astype(np.int64)
        attention_mask = np.asarray(attention_mask, dtype=np.int64)
        self._check_source(input_ids, attention_mask)
        num_beams = num_beams or settings["num_beams"]
        if num_return_sequences > num_beams:
            raise ValueError(f"num_return_sequences ({num_return_sequences}) must not exceed num_beams ({num_beams})")
        max_length = self._max_length(attention_mask, max_new_tokens, max_length)
        memory, *state = self.encoder.run(None, {"input_ids": input_ids, "attention_mask": attention_mask})
        rows = Rows(memory, attention_mask, dict(zip(self.state_names, state)), beams=num_beams)
        if num_beams == 1:
            return self._greedy(rows, max_length)
        return self._beam_search(
            rows,
            num_beams,
            max_length,
            settings["length_penalty"] if length_penalty is None else length_penalty,
            settings["early_stopping"] if early_stopping is None else early_stopping,
            num_return_sequences,
        )

    def _check_source(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> None:
        vocab_size = self.settings["vocab_size"]
        bad = (input_ids < 0) | (input_ids >= vocab_size)
        if bad.any():
            raise ValueError(
                f"`input_ids` contains token id {input_ids[bad][0]}, outside the vocabulary [0, {vocab_size})."
            )
        lengths = attention_mask.sum(axis=1)
        if (lengths == 0).any():
            raise ValueError(f"Source sequence {int(np.flatnonzero(lengths == 0)[0])} of the batch is empty.")
        if (attention_mask.astype(bool) != (np.arange(attention_mask.shape[1]) < lengths[:, None])).any():
            raise ValueError("The encoder needs right-padded inputs (ones then zeros in attention_mask).")

    def _max_length(self, attention_mask: np.ndarray, max_new_tokens: int | None, max_length: int | None) -> int:
        """generate()'s limit, the start token included (see `LSTMSeq2SeqGenerationMixin.generate`)."""
        settings = self.settings
        # transformers' precedence: max_new_tokens (the call's, then the config's) over max_length.
        if max_new_tokens is not None or settings["max_new_tokens"] is not None:
            return 1 + (max_new_tokens if max_new_tokens is not None else settings["max_new_tokens"])
        if max_length is not None:
            return max_length
        if settings["max_length"] is not None:
            return settings["max_length"]
        source = int(attention_mask.sum(axis=1).max())
        return 1 + math.ceil(settings["max_new_tokens_ratio"] * source) + settings["max_new_tokens_offset"]

    def _step(self, rows: "Rows", tokens: np.ndarray) -> np.ndarray:
        """Feed `tokens` (held sources, beams) to the decoder; updates the rows' state, returns their logits (held
        sources, beams, V)."""
        logits, *state = self.decoder.run(None, {"decoder_input_ids": tokens, **rows.sources, **rows.state})
        rows.state.update(zip(self.step_state_names, state))
        return logits

    def _step_top_k(self, rows: "Rows", tokens: np.ndarray, keep: int) -> tuple[np.ndarray, np.ndarray, int]:
        """`_step`, then each row's `keep` best log-probabilities and their tokens, and the vocabulary size. The
        (rows, V) logits are not kept: bound in the beam loop, they would stay alive through the next decoder step
        beside the new ones."""
        logits = self._step(rows, tokens)
        vocab = logits.shape[-1]
        row_scores, row_tokens = self.top_k.run(
            None, {"logits": logits.reshape(-1, vocab), "k": np.array([min(keep, vocab)])}
        )
        return row_scores, row_tokens, vocab

    def _greedy(self, rows: "Rows", max_length: int) -> np.ndarray:
        settings = self.settings
        batch = rows.count
        eos = np.array(settings["eos_token_ids"])
        sequences = np.full((batch, 1), settings["decoder_start_token_id"], dtype=np.int64)
        finished = np.zeros(batch, dtype=bool)
        held = np.arange(batch)  # batch positions of the rows still computed
        while sequences.shape[1] < max_length and not finished.all():
            tokens = np.full(batch, settings["pad_token_id"], dtype=np.int64)
            # unbound, the (rows, V) logits die here instead of living through the next step (see _step_top_k)
            tokens[held] = self._step(rows, sequences[held, -1:])[:, 0].argmax(axis=-1)
            tokens[finished] = settings["pad_token_id"]
            sequences = np.concatenate([sequences, tokens[:, None]], axis=1)
            finished |= np.isin(tokens, eos)
            ended = finished[held]
            if ended.sum() * 8 >= max(len(held), 8) and not ended.all():  # drop in chunks: each drop copies memory
                kept = np.flatnonzero(~ended)
                held = held[kept]
                rows.select(kept)
        return sequences

    def _beam_search(
        self,
        rows: "Rows",
        num_beams: int,
        max_length: int,
        length_penalty: float,
        early_stopping: bool | str,
        num_return_sequences: int,
    ) -> np.ndarray:
        """transformers' `_beam_search` for a decoder prompt of one token and no logits processors, in numpy; a
        sentence whose returned hypotheses can no longer change leaves the computed rows."""
        settings = self.settings
        batch, k = rows.count, num_beams
        eos = np.array(settings["eos_token_ids"])
        keep = max(2, 1 + len(eos)) * k  # continuations considered per sentence
        in_top_k = np.arange(keep) < k
        fill = settings["pad_token_id"] or eos[0]  # transformers' `pad_token_id or eos_token_id[0]`

        def init(value, dtype):
            return np.full((batch, k, max_length), value, dtype=dtype)

        running = init(fill, np.int64)
        running[:, :, 0] = settings["decoder_start_token_id"]
        running_scores = np.zeros((batch, k), dtype=np.float32)
        running_scores[:, 1:] = NEVER
        finished = running.copy()  # the k best finished hypotheses per sentence, best first
        finished_scores = np.full((batch, k), NEVER, dtype=np.float32)
        finished_lengths = np.zeros((batch, k), dtype=np.int64)  # generated tokens, end token included
        is_finished = np.zeros((batch, k), dtype=bool)
        can_improve = np.ones(batch, dtype=bool)
        held = np.arange(batch)  # sentences still computed
        cur_len = 1
        while True:
            row_scores, row_tokens, vocab = self._step_top_k(rows, running[held, :, cur_len - 1], keep)
            # The best `keep` of a sentence's k × vocab continuations are among its rows' best `keep` each; ranked
            # by score, then by position in the k × vocab scores, as a stable sort of all of them ranks them.
            scores = (row_scores.reshape(len(held), k, -1) + running_scores[held, :, None]).reshape(len(held), -1)
            positions = (np.arange(k)[:, None] * vocab + row_tokens.reshape(len(held), k, -1)).reshape(len(held), -1)
            order = np.lexsort((positions, -scores), axis=1)[:, :keep]
            top = np.take_along_axis(positions, order, axis=1)  # (held, keep)
            top_scores = np.take_along_axis(scores, order, axis=1)
            source_beam, tokens = top // vocab, top % vocab
            candidates = np.take_along_axis(running[held], source_beam[:, :, None], axis=1)
            candidates[:, :, cur_len] = tokens
            hits = np.isin(tokens, eos) | (cur_len + 1 >= max_length)

            alive = top_scores + hits * NEVER
            order = np.argsort(-alive, axis=1, kind="stable")[:, :k]
            running[held] = np.take_along_axis(candidates, order[:, :, None], axis=1)
            running_scores[held] = np.take_along_axis(alive, order, axis=1)
            beam_sources = np.take_along_axis(source_beam, order, axis=1)  # (held, k)

            ended_now = hits & in_top_k
            new_scores = top_scores / np.float32((cur_len + 1 - 1) ** length_penalty)
            full = is_finished[held].all(axis=1, keepdims=True) & (early_stopping is True)
            new_scores = new_scores + full * NEVER + (~can_improve[held])[:, None] * NEVER + (~ended_now) * NEVER
            merged_scores = np.concatenate([finished_scores[held], new_scores], axis=1)
            best = np.argsort(-merged_scores, axis=1, kind="stable")[:, :k]
            finished[held] = np.take_along_axis(
                np.concatenate([finished[held], candidates], axis=1), best[:, :, None], axis=1
            )
            finished_scores[held] = np.take_along_axis(merged_scores, best, axis=1)
            finished_lengths[held] = np.take_along_axis(
                np.concatenate([finished_lengths[held], np.full_like(tokens, cur_len)], axis=1), best, axis=1
            )
            is_finished[held] = np.take_along_axis(
                np.concatenate([is_finished[held], ended_now], axis=1), best, axis=1
            )

            cur_len += 1
            # transformers' test "can a running beam still beat the finished ones?"
            length = (max_length if early_stopping == "never" and length_penalty > 0 else cur_len) - 1
            best_possible = running_scores[held, 0] / np.float32(length**length_penalty)
            worst = np.where(is_finished[held], finished_scores[held].min(axis=1, keepdims=True), NEVER)
            can_improve[held] &= (best_possible[:, None] > worst).any(axis=1)
            # The returned hypotheses are final once the k-th best beats any running beam's best possible score
            # (scores only fall without logits processors; see LiveRows.sentences_settled).
            bound_length = (max_length if length_penalty > 0 else cur_len) - 1
            settled = is_finished[held, num_return_sequences - 1] & (
                finished_scores[held, num_return_sequences - 1]
                > running_scores[held, 0] / bound_length**length_penalty
            )
            done = ~can_improve[held] | settled
            if early_stopping is True:
                done |= is_finished[held].all(axis=1)
            if done.all() or hits.all() or cur_len >= max_length:
                break
            rows.reorder(beam_sources)
            if done.any():
                kept = np.flatnonzero(~done)
                held = held[kept]
                rows.select(kept)

        returned = finished[:, :num_return_sequences].reshape(batch * num_return_sequences, -1)
        return returned[:, : 1 + finished_lengths[:, :num_return_sequences].max()]


class Rows:
    """The decoder's inputs for the sources still decoded: per source the encoder memory (sources, S, H), its mask
    and the attention keys; per beam the recurrent state (hidden and cell (layers, sources, beams, H), input_feed
    (sources, beams, H)), whose source axis is the third from last and beam axis the second from last.

    Args:
        memory, mask: the encoder's output and the source mask.
        state: the encoder's state tensors by name, one row per source; every beam starts from it.
        beams: beams per source (1 for greedy search).
    """

    def __init__(self, memory: np.ndarray, mask: np.ndarray, state: dict[str, np.ndarray], beams: int = 1):
        self.count = len(mask)
        self.sources = {"memory": memory, "attention_mask": mask}
        if "attention_keys" in state:
            self.sources["attention_keys"] = state["attention_keys"]
        self.state = {
            name: np.repeat(np.expand_dims(value, -2), beams, axis=-2)
            for name, value in state.items()
            if name != "attention_keys"
        }

    def select(self, index: np.ndarray) -> None:
        """Keep sources `index` (in that order), all their beams."""
        self.sources = {name: value[index] for name, value in self.sources.items()}
        self.state = {name: np.take(value, index, axis=-3) for name, value in self.state.items()}

    def reorder(self, beam_sources: np.ndarray) -> None:
        """Beam search: beam j of source i takes the state of beam `beam_sources[i, j]` of the same source."""
        index = beam_sources[..., None]  # (sources, beams, 1), broadcast over the layer axis of hidden and cell
        self.state = {
            name: np.take_along_axis(value, index.reshape((1,) * (value.ndim - 3) + index.shape), axis=-2)
            for name, value in self.state.items()
        }


__all__ = ["OnnxTranslator"]
