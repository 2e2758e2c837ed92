"""Configuration of the LSTM image-to-keywords captioner ("Show, Attend and Tell"-style).

Self-contained on purpose: `save_pretrained` copies this file next to the weights so the
model loads with `trust_remote_code=True` where `hf_rnn` is not installed.
"""

import dataclasses
import difflib

from huggingface_hub.dataclasses import strict, validated_field
from transformers import AutoConfig, GenerationConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

DEFAULT_IMAGE_SIZE = 64
DEFAULT_NUM_CHANNELS = 3

# Copied from hf_rnn.translator.configuration_lstm_seq2seq.TRANSFORMERS_KEYS
TRANSFORMERS_KEYS = frozenset(
    {"model_type", "transformers_version", "auto_map", "custom_pipelines", "_name_or_path", "name_or_path"}
    | {"num_labels", "attn_implementation", "experts_implementation", "output_attentions", "torch_dtype"}
    | set(GenerationConfig._get_default_generation_params())
)


# Copied from hf_rnn.translator.configuration_lstm_seq2seq.reject_unknown_keys
def reject_unknown_keys(config_class: type, kwargs: dict) -> None:
    """A key that is neither a field nor one of transformers' own is a typo: name it, and the field it resembles."""
    fields = [field.name for field in dataclasses.fields(config_class)]
    for key in kwargs:
        if key not in TRANSFORMERS_KEYS:
            close = difflib.get_close_matches(key, fields, n=1)
            hint = f"; did you mean `{close[0]}`?" if close else f". Its fields: {', '.join(sorted(fields))}."
            raise TypeError(f"{config_class.__name__} has no field `{key}`{hint}")


# Copied from hf_rnn.translator.configuration_lstm_seq2seq.positive
def positive(value: int | float | None) -> None:
    if value is not None and value <= 0:
        raise ValueError(f"must be positive, got {value!r}")


# Copied from hf_rnn.translator.configuration_lstm_seq2seq.probability
def probability(value: float | None) -> None:
    if value is not None and not 0 <= value < 1:
        raise ValueError(f"must be in [0, 1), got {value!r}")


def channel_widths(value: list[int] | tuple[int, ...]) -> None:
    if not value or any(width <= 0 for width in value):
        raise ValueError(f"must be a non-empty list of positive integers, got {value!r}")


def backbone_config(value: dict | PreTrainedConfig | None) -> None:
    if isinstance(value, dict) and "model_type" not in value:
        raise ValueError(
            "a dict needs a `model_type` (e.g. 'resnet', 'convnext', 'vit') so the backbone config class can be found"
        )


def vision_feature_size(vision_config: PreTrainedConfig) -> int:
    """Channel width of a backbone's `last_hidden_state`: the last stage of a CNN, the token width of a ViT."""
    hidden_sizes = getattr(vision_config, "hidden_sizes", None)
    if hidden_sizes:
        return int(hidden_sizes[-1])
    hidden_size = getattr(vision_config, "hidden_size", None)
    if isinstance(hidden_size, int) and not isinstance(hidden_size, bool):
        return hidden_size
    raise ValueError(
        f"Cannot tell the feature width of `vision_config` (model_type {vision_config.model_type!r}): it has "
        f"neither `hidden_sizes` (CNN stages) nor an integer `hidden_size` (transformer width)."
    )


@strict
class LSTMCaptionerConfig(PreTrainedConfig):
    r"""
    Configuration for [`LSTMCaptionerModel`] and [`LSTMCaptionerForConditionalGeneration`].

    An image encoder turns the picture into a grid of feature vectors; an LSTM decoder, started
    from the mean feature, emits one keyword per step while attending softly over the grid
    (Xu et al., 2015, "Show, Attend and Tell").

    Every field is typed and checked when the config is built, loaded or changed: a wrong type or
    value, an unknown key or a contradiction between fields raises an error that names the field.

    Args:
        vocab_size (`int`): Keyword vocabulary size, special tokens included.
        embedding_size (`int`): Width of the keyword embeddings.
        hidden_size (`int`): Width of the LSTM state; image features are projected to it.
        attention_size (`int`): Width of the additive (Bahdanau) attention layer.
        dropout (`float`): Dropout on the LSTM output before the softmax layer.
        max_keywords (`int`): Default cap on the keywords of one output, prompt keywords included (generate() stops
            at `max_keywords + 2` tokens: start token, keywords, `</s>`) unless a `max_length` or `max_new_tokens`
            is given.
        cnn_channels (`list[int]`): Built-in encoder: one conv3x3-BatchNorm-ReLU-maxpool2 block per entry.
            The spatial map after the last block (e.g. 8x8 for 64x64 inputs and three blocks) is what
            the decoder attends over. Ignored when `vision_config` is set.
        num_channels (`int`, *optional*): Image channels; defaults to 3, or to the backbone's `num_channels`.
        image_size (`int`, *optional*): Expected input height and width. Defaults to 64 for the built-in CNN;
            for a backbone it is only checked when given (a ViT checks its own size).
        vision_config (`dict` or `PreTrainedConfig`, *optional*): Any transformers vision backbone config
            (ResNet, ConvNeXt, ViT, ...), built with `AutoModel.from_config`. A dict needs its `model_type`.
            Features come from its `last_hidden_state`: `(B, C, H, W)` maps are flattened to `(B, H*W, C)`,
            `(B, N, C)` token sequences are used as they are.
        tie_word_embeddings (`bool`): Softmax layer shares the keyword embeddings; needs
            `embedding_size == hidden_size`.
        init_range (`float`): Parameters outside the backbone start uniform in `[-init_range, init_range]`.
    """

    model_type = "lstm_captioner"
    keys_to_ignore_at_inference = ["cache"]
    # A sub-config declared this way is rebuilt from its `model_type` on load and serialised as a diff
    # against its own class defaults; `optional` lets `None` mean "use the built-in CNN".
    sub_configs_defaults = {
        "vision_config": SubConfigSpec(config_class=AutoConfig, model_type="resnet", optional=True),
    }

    vocab_size: int = validated_field(positive, default=1000)
    embedding_size: int = validated_field(positive, default=128)
    hidden_size: int = validated_field(positive, default=256)
    attention_size: int = validated_field(positive, default=256)
    dropout: float | int = validated_field(probability, default=0.3)
    max_keywords: int = validated_field(positive, default=10)
    cnn_channels: list[int] | tuple[int, ...] = validated_field(channel_widths, default=(32, 64, 128))
    num_channels: int | None = validated_field(positive, default=None)
    image_size: int | None = validated_field(positive, default=None)
    vision_config: dict | PreTrainedConfig | None = validated_field(backbone_config, default=None)
    tie_word_embeddings: bool = False
    init_range: float | int = validated_field(positive, default=0.1)
    pad_token_id: int | None = 0
    bos_token_id: int | None = 1
    eos_token_id: int | list[int] | None = 2
    decoder_start_token_id: int | None = 1
    use_cache: bool = True
    is_encoder_decoder: bool = True

    def __post_init__(self, **kwargs):
        reject_unknown_keys(type(self), kwargs)
        super().__post_init__(**kwargs)
        self.cnn_channels = list(self.cnn_channels)
        backbone_channels = getattr(self.vision_config, "num_channels", None)
        if self.num_channels is None:
            self.num_channels = DEFAULT_NUM_CHANNELS if backbone_channels is None else backbone_channels
        if self.vision_config is None and self.image_size is None:
            self.image_size = DEFAULT_IMAGE_SIZE

    @property
    def encoder_feature_size(self) -> int:
        """Width of the encoder's features before their projection to `hidden_size`."""
        if self.vision_config is None:
            return self.cnn_channels[-1]
        return vision_feature_size(self.vision_config)

    def validate_architecture(self) -> None:
        """Rules between fields (part of `@strict` validation, run when the config is built, loaded or saved)."""
        if self.vision_config is None and self.image_size < 2 ** len(self.cnn_channels):
            raise ValueError(
                f"`image_size`={self.image_size} is too small for {len(self.cnn_channels)} CNN blocks (each "
                f"halves the map): it must be at least {2 ** len(self.cnn_channels)}."
            )
        if self.vision_config is not None:
            vision_feature_size(self.vision_config)
            backbone_channels = getattr(self.vision_config, "num_channels", None)
            if backbone_channels is not None and backbone_channels != self.num_channels:
                raise ValueError(
                    f"`num_channels`={self.num_channels} contradicts `vision_config.num_channels`="
                    f"{backbone_channels}; leave `num_channels` unset to take the backbone's."
                )
        if self.tie_word_embeddings and self.embedding_size != self.hidden_size:
            raise ValueError(
                f"`tie_word_embeddings=True` needs `embedding_size` == `hidden_size` (the softmax layer reads the "
                f"{self.hidden_size}-wide LSTM state), got {self.embedding_size} and {self.hidden_size}."
            )

    def validate_token_ids(self) -> None:
        """Special token ids must exist in the vocabulary (an error, not transformers' warning: an id outside it
        fails inside an embedding later)."""
        eos_ids = self.eos_token_id if isinstance(self.eos_token_id, list) else [self.eos_token_id]
        for name, values in (
            ("pad_token_id", [self.pad_token_id]),
            ("bos_token_id", [self.bos_token_id]),
            ("eos_token_id", eos_ids),
            ("decoder_start_token_id", [self.decoder_start_token_id]),
        ):
            for value in values:
                if value is not None and not 0 <= value < self.vocab_size:
                    raise ValueError(f"`{name}` must be None or an id in [0, {self.vocab_size}), got {value!r}.")


__all__ = ["LSTMCaptionerConfig"]
