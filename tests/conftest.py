"""pytest set-up shared by every test module."""

import logging

import pytest
import torch

# The tests use tiny models: one thread avoids contention between torch's pool and pytest on 2 cores.
torch.set_num_threads(1)

# The offline stand-in Hub (`hub_server` fixture) lives in tests/hub_server.py.
pytest_plugins = ["hub_server"]


@pytest.fixture
def tolerate_alias_warning_bug(monkeypatch):
    """transformers 5.24 logs its "image-to-text is an alias" warning with a bad %-format; pytest >= 9.2 turns
    such logging errors into test failures. The pipeline itself works: let the broken log line pass."""
    monkeypatch.setattr(logging, "raiseExceptions", False)
