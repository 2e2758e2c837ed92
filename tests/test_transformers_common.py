"""transformers' own common model tests (`ModelTesterMixin`, `ConfigTester`) run against both models.

The test files come from the sdist of the *installed* transformers version (PyPI ships
`tests/test_modeling_common.py` and `tests/test_configuration_common.py` in it), downloaded
once into a cache folder and imported from there; nothing of them is copied into this repo.
The sdist lacks three small modules those files import; they are stood in for below
(`_install_stubs`). Without network (and no cached sdist) the module skips with the reason.

Every mixin test that does not apply to a recurrent encoder-decoder is listed with its
reason in `SKIPPED`, in one place.
"""

import importlib
import os
import subprocess
import sys
import tarfile
import types
import unittest
import unittest.mock
import warnings
from pathlib import Path

import pytest
import torch
import transformers
from filelock import FileLock

from hf_rnn import (
    LSTMCaptionerConfig,
    LSTMCaptionerForConditionalGeneration,
    LSTMCaptionerModel,
    LSTMSeq2SeqConfig,
    LSTMSeq2SeqForConditionalGeneration,
    LSTMSeq2SeqModel,
)

CACHE = Path(os.environ.get("HF_RNN_TEST_CACHE", Path.home() / ".cache" / "hf-rnn-tests"))
PACKAGE = "transformers_sdist_tests"  # the sdist's tests/ folder, imported as this package
NEEDED = ("test_modeling_common.py", "test_configuration_common.py")


def fetch_common_tests() -> Path:
    """The folder holding `PACKAGE`, downloaded and extracted once per transformers version."""
    version = transformers.__version__
    root = CACHE / f"transformers-{version}"
    CACHE.mkdir(parents=True, exist_ok=True)
    # pytest-xdist workers collect this module at the same time: one downloads and extracts, the others wait.
    with FileLock(CACHE / f"transformers-{version}.lock"):
        return _fetch(version, root)


def _fetch(version: str, root: Path) -> Path:
    package = root / PACKAGE
    if all((package / name).is_file() for name in NEEDED):
        return root
    sdist = CACHE / f"transformers-{version}.tar.gz"
    if not sdist.is_file():
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:"]
        command += [f"transformers=={version}", "-d", str(CACHE), "--quiet", "--retries", "1", "--timeout", "30"]
        result = subprocess.run(command, capture_output=True, text=True, timeout=600)
        if result.returncode != 0 or not sdist.is_file():
            raise OSError(f"`pip download transformers=={version}` failed: {result.stderr.strip()[-300:]}")
    package.mkdir(parents=True, exist_ok=True)
    with tarfile.open(sdist) as archive:
        for name in NEEDED:
            member = archive.extractfile(f"transformers-{version}/tests/{name}")
            (package / name).write_bytes(member.read())
    (package / "__init__.py").write_text("")
    return root


def _install_stubs() -> None:
    """Stand-ins for the three modules the sdist's common tests import but the sdist does not ship.

    - `exporters.test_export.ExportTesterMixin`: torch.export tests (the models are not exportable yet, issue 15);
    - `generation.test_utils.GenerationTesterMixin`: transformers' generate() tests; ours compare generate()
      with stock `GenerationMixin.generate` (tests/test_lstm_seq2seq_modeling.py, tests/test_lstm_captioner.py);
    - `utils.test_configuration_utils.config_common_kwargs`: base-config fields with non-default values, which
      `ConfigTester.check_config_arguments_init` passes to the config and reads back.
    """
    stubs = {
        "exporters.test_export": {"ExportTesterMixin": type("ExportTesterMixin", (), {})},
        "generation.test_utils": {"GenerationTesterMixin": type("GenerationTesterMixin", (), {})},
        "utils.test_configuration_utils": {
            "config_common_kwargs": {
                "return_dict": False,
                "output_hidden_states": True,
                "dtype": "float16",
                "chunk_size_feed_forward": 5,
                "architectures": ["SomeModel"],
                "id2label": {0: "label"},
                "label2id": {"label": "0"},
                "problem_type": "regression",
            }
        },
    }
    for dotted, attributes in stubs.items():
        parent, child = dotted.split(".")
        for name in (f"{PACKAGE}.{parent}", f"{PACKAGE}.{dotted}"):
            sys.modules.setdefault(name, types.ModuleType(name))
        for key, value in attributes.items():
            setattr(sys.modules[f"{PACKAGE}.{dotted}"], key, value)


try:
    import parameterized  # noqa: F401  (the common tests need it)

    sys.path.insert(0, str(fetch_common_tests()))
    _install_stubs()
    with warnings.catch_warnings():  # marks registered by transformers' own conftest, which we do not load
        warnings.simplefilter("ignore", pytest.PytestUnknownMarkWarning)
        modeling_common = importlib.import_module(f"{PACKAGE}.test_modeling_common")
        configuration_common = importlib.import_module(f"{PACKAGE}.test_configuration_common")
except (OSError, ImportError, subprocess.SubprocessError) as error:
    pytest.skip(f"transformers' common tests are unavailable: {error}", allow_module_level=True)

ModelTesterMixin = modeling_common.ModelTesterMixin
ids_tensor, floats_tensor = modeling_common.ids_tensor, modeling_common.floats_tensor
ConfigTester = configuration_common.ConfigTester

# Mixin tests that do not apply, and why. A key "Class.test_name" concerns one test class, "test_name" all of them.
SKIPPED: dict[str, str] = {
    "test_generation_tester_mixin_inheritance": (
        "transformers' GenerationTesterMixin is not in the sdist; generate() is checked against stock "
        "GenerationMixin.generate in tests/test_lstm_seq2seq_modeling.py and tests/test_lstm_captioner.py"
    ),
    "test_hidden_states_output": (
        "a fused multi-layer nn.LSTM/GRU returns only its top layer's outputs, so hidden_states are (embeddings, "
        "top recurrent outputs[, attentional vectors]), not one entry per layer"
    ),
    "TranslatorSeparateVocabulariesCommonTest.test_resize_embeddings_untied": (
        "with a separate target vocabulary resize_token_embeddings resizes the source side only (the output layer "
        "belongs to the target vocabulary: resize_decoder_token_embeddings); this test expects the output layer to "
        "follow vocab_size. tests/test_lstm_seq2seq_modeling.py checks both"
    ),
    "CaptionerCommonTest.test_resize_tokens_embeddings": (
        "the captioner's token ids are decoder_input_ids (it reads pixels); this test edits inputs['input_ids']. "
        "Resizing is checked in tests/test_lstm_captioner.py"
    ),
    "CaptionerCommonTest.test_resize_embeddings_untied": (
        "the captioner's token ids are decoder_input_ids (it reads pixels); this test edits inputs['input_ids']. "
        "Resizing is checked in tests/test_lstm_captioner.py"
    ),
}

# The mixin recognises a model's task (which test gets labels, which classes are heads) by the name tables behind
# transformers' Auto classes; hf_rnn registers its models with the Auto classes at import, which fills the
# registries' extra content instead. Copied from the registries into the name tables for the tests' duration.
AUTO_TABLES = {
    "MODEL_MAPPING": "MODEL_MAPPING_NAMES",
    "MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING": "MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES",
    "MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING": "MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES",
}


@pytest.fixture(scope="module", autouse=True)
def registered_in_auto_name_tables():
    from transformers.models.auto import modeling_auto

    patches = []
    for registry_name, table_name in AUTO_TABLES.items():
        registry, table = getattr(modeling_auto, registry_name), getattr(modeling_auto, table_name)
        ours = {config.model_type: model.__name__ for config, model in registry._extra_content.items()}
        patches.append(unittest.mock.patch.dict(table, ours))
    for patch in patches:
        patch.start()
    yield
    for patch in patches:
        patch.stop()


def skip_listed(cls: type) -> type:
    """Replace each test `SKIPPED` names for `cls` by a skip carrying its reason."""
    for key, reason in SKIPPED.items():
        owner, _, name = key.rpartition(".")
        if owner in ("", cls.__name__):
            assert callable(getattr(cls, name, None)), f"SKIPPED names {name}, which the mixin does not have"
            setattr(cls, name, unittest.skip(reason)(lambda self: None))
    return cls


class TranslatorTester:
    """A tiny translator and a batch for it, as transformers' `MarianModelTester` builds one."""

    def __init__(self, parent, batch_size=4, seq_length=7, vocab_size=29, hidden_size=16, **config_overrides):
        self.parent = parent
        self.batch_size, self.seq_length, self.vocab_size, self.hidden_size = (
            batch_size,
            seq_length,
            vocab_size,
            hidden_size,
        )
        self.num_hidden_layers = 2
        self.is_training = True
        self.config_overrides = config_overrides

    def get_config(self) -> LSTMSeq2SeqConfig:
        values = dict(
            vocab_size=self.vocab_size,
            embedding_size=8,
            hidden_size=self.hidden_size,
            num_encoder_layers=self.num_hidden_layers,
            num_decoder_layers=self.num_hidden_layers,
            dropout=0.1,
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=2,
            decoder_start_token_id=1,
        )
        return LSTMSeq2SeqConfig(**{**values, **self.config_overrides})

    def prepare_config_and_inputs_for_common(self):
        config = self.get_config()
        input_ids = ids_tensor([self.batch_size, self.seq_length], config.vocab_size).clamp(3)
        input_ids[:, -1] = config.eos_token_id
        decoder_input_ids = ids_tensor([self.batch_size, self.seq_length], config.decoder_vocab_size).clamp(3)
        inputs = {
            "input_ids": input_ids,
            "attention_mask": torch.ones_like(input_ids),
            "decoder_input_ids": decoder_input_ids,
            "decoder_attention_mask": torch.ones_like(decoder_input_ids),
        }
        return config, inputs


class CaptionerTester:
    """A tiny captioner (built-in CNN) and a batch of images with keyword prompts."""

    def __init__(self, parent, batch_size=3, seq_length=5, vocab_size=21, hidden_size=12, image_size=16, **overrides):
        self.parent = parent
        self.batch_size, self.seq_length = batch_size, seq_length
        self.vocab_size, self.hidden_size, self.image_size = vocab_size, hidden_size, image_size
        self.num_channels, self.num_hidden_layers = 3, 1
        self.is_training = True
        self.config_overrides = overrides

    def get_config(self) -> LSTMCaptionerConfig:
        values = dict(
            vocab_size=self.vocab_size,
            embedding_size=8,
            hidden_size=self.hidden_size,
            attention_size=8,
            cnn_channels=[4, 8],
            image_size=self.image_size,
            dropout=0.1,
        )
        return LSTMCaptionerConfig(**{**values, **self.config_overrides})

    def prepare_config_and_inputs_for_common(self):
        pixel_values = floats_tensor([self.batch_size, self.num_channels, self.image_size, self.image_size])
        decoder_input_ids = ids_tensor([self.batch_size, self.seq_length], self.vocab_size).clamp(3)
        inputs = {
            "pixel_values": pixel_values,
            "decoder_input_ids": decoder_input_ids,
            "decoder_attention_mask": torch.ones_like(decoder_input_ids),
        }
        return self.get_config(), inputs


@skip_listed
class TranslatorCommonTest(ModelTesterMixin, unittest.TestCase):
    """One vocabulary for source and target, separate embedding matrices (the default)."""

    all_model_classes = (LSTMSeq2SeqModel, LSTMSeq2SeqForConditionalGeneration)
    is_encoder_decoder = True
    has_attentions = False  # no attention heads: one soft attention over the source, returned as cross_attentions
    # transformers skips this check for model files without a 2023+ copyright line; ours must pass it.
    test_can_init_all_missing_weights_before_2023 = True
    config_overrides: dict = {}

    def setUp(self):
        self.model_tester = TranslatorTester(self, **self.config_overrides)
        self.config_tester = ConfigTester(self, config_class=LSTMSeq2SeqConfig, common_properties=["hidden_size"])

    def test_config(self):
        self.config_tester.run_common_tests()


@skip_listed
class TranslatorSeparateVocabulariesCommonTest(TranslatorCommonTest):
    """Source and target vocabularies of different sizes."""

    config_overrides = {"decoder_vocab_size": 17}


@skip_listed
class TranslatorSharedCommonTest(TranslatorCommonTest):
    """One embedding matrix for source and target; a separate output layer."""

    config_overrides = {"share_embeddings": True}


@skip_listed
class TranslatorGRUConcatCommonTest(TranslatorCommonTest):
    """GRU cells, Bahdanau (concat) attention, no input feeding: the other code paths of the decoder."""

    config_overrides = {"cell_type": "gru", "attention_type": "concat", "input_feeding": False}


@skip_listed
class TranslatorSharedTiedCommonTest(TranslatorCommonTest):
    """One embedding matrix for source, target and the output layer."""

    config_overrides = {"share_embeddings": True, "tie_word_embeddings": True, "embedding_size": 16}


@skip_listed
class CaptionerCommonTest(ModelTesterMixin, unittest.TestCase):
    """The built-in CNN encoder, untied softmax layer."""

    all_model_classes = (LSTMCaptionerModel, LSTMCaptionerForConditionalGeneration)
    is_encoder_decoder = True
    has_attentions = False  # no attention heads: one soft attention over the source, returned as cross_attentions
    # transformers skips this check for model files without a 2023+ copyright line; ours must pass it.
    test_can_init_all_missing_weights_before_2023 = True

    config_overrides: dict = {}

    def setUp(self):
        self.model_tester = CaptionerTester(self, **self.config_overrides)
        self.config_tester = ConfigTester(self, config_class=LSTMCaptionerConfig, common_properties=["hidden_size"])

    def test_config(self):
        self.config_tester.run_common_tests()


@skip_listed
class CaptionerTiedCommonTest(CaptionerCommonTest):
    """Softmax layer tied to the keyword embeddings."""

    config_overrides = {"tie_word_embeddings": True, "embedding_size": 12}
