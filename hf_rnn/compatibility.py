"""Can these models be combined? Checkpoint averaging (`hf_rnn.average`) needs one architecture and one vocabulary;
an ensemble (`hf_rnn.ensemble`) needs one tokenizer. Each check returns the first difference as a clause that names
the field and both models (`names`), e.g. "`hidden_size` is 512 in run-a and 256 in run-b", or None."""

from pathlib import Path

from transformers import PreTrainedConfig

# Config keys that describe the saved file or a run-time switch, not the function the weights compute.
NOT_ARCHITECTURE = frozenset(
    {
        "_name_or_path",
        "transformers_version",
        "dtype",
        "torch_dtype",
        "use_cache",
        "auto_map",
        "custom_pipelines",
        "output_attentions",
        "output_hidden_states",
        "return_dict",
    }
)
# Fields only training reads (dropout is off at inference, initialisation is overwritten by training).
TRAINING_ONLY = ("dropout", "init_range", "initializer_range")
# What a model reads and writes token ids with: the source and target vocabularies and the special ids.
VOCABULARY_FIELDS = (
    "vocab_size",
    "decoder_vocab_size",
    "pad_token_id",
    "bos_token_id",
    "eos_token_id",
    "decoder_start_token_id",
)


def architecture_difference(first: PreTrainedConfig, other: PreTrainedConfig, names: tuple[str, str]) -> str | None:
    """The first config field (nested ones joined with dots) in which two models differ in what their weights
    compute; dropout and initialisation fields do not count."""
    return _dict_difference(first.to_dict(), other.to_dict(), names)


def _dict_difference(first: dict, other: dict, names: tuple[str, str], prefix: str = "") -> str | None:
    for key in sorted(set(first) | set(other), key=str):
        if key in NOT_ARCHITECTURE or any(part in str(key) for part in TRAINING_ONLY):
            continue
        a, b = first.get(key), other.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            nested = _dict_difference(a, b, names, f"{prefix}{key}.")
            if nested:
                return nested
        elif a != b:
            return f"`{prefix}{key}` is {a!r} in {names[0]} and {b!r} in {names[1]}"
    return None


def vocabulary_difference(first: PreTrainedConfig, other: PreTrainedConfig, names: tuple[str, str]) -> str | None:
    """The first vocabulary size or special token id in which two models' configs differ."""
    for name in VOCABULARY_FIELDS:
        a, b = _vocabulary_field(first, name), _vocabulary_field(other, name)
        if a != b:
            return f"`{name}` is {a!r} in {names[0]} and {b!r} in {names[1]}"
    return None


def _vocabulary_field(config: PreTrainedConfig, name: str):
    value = getattr(config, name, None)
    if value is None and name == "decoder_vocab_size":  # one vocabulary for both sides
        return config.vocab_size
    return value


def tokenizer_difference(first, other, names: tuple[str, str]) -> str | None:
    """The first token id that two tokenizers map to different strings, or their sizes: two runs that each trained
    a BPE of the same size have configs that agree and vocabularies that do not."""
    first_tokens = {index: token for token, index in first.get_vocab().items()}
    other_tokens = {index: token for token, index in other.get_vocab().items()}
    if len(first_tokens) != len(other_tokens):
        return f"the tokenizer has {len(first_tokens)} tokens in {names[0]} and {len(other_tokens)} in {names[1]}"
    for index in sorted(set(first_tokens) | set(other_tokens)):
        a, b = first_tokens.get(index), other_tokens.get(index)
        if a != b:
            return f"token id {index} is {a!r} in the tokenizer of {names[0]} and {b!r} in that of {names[1]}"
    return None


def has_tokenizer(folder: str | Path) -> bool:
    """Whether a local folder holds tokenizer files (a Hub id is assumed to)."""
    folder = Path(folder)
    return not folder.is_dir() or any(
        (folder / name).exists() for name in ("tokenizer.json", "tokenizer_config.json", "vocab.json")
    )


__all__ = [
    "NOT_ARCHITECTURE",
    "VOCABULARY_FIELDS",
    "architecture_difference",
    "has_tokenizer",
    "tokenizer_difference",
    "vocabulary_difference",
]
