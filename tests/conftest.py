"""pytest set-up shared by every test module."""

import torch

# The tests use tiny models: one thread avoids contention between torch's pool and pytest on 2 cores.
torch.set_num_threads(1)

# The offline stand-in Hub (`hub_server` fixture) lives in tests/hub_server.py.
pytest_plugins = ["hub_server"]
