import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent

# keep every test offline and deterministic
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
torch.set_num_threads(1)


@pytest.fixture
def repo() -> Path:
    return REPO


def hub_load(*args, **kwargs):
    """torch.hub.load from this checkout (no network)."""
    return torch.hub.load(str(REPO), *args, source="local", **kwargs)


def act(model, obs):
    """The deterministic action for `obs` through the module forward (the reference for the fast paths)."""
    import torch

    with torch.no_grad():
        return model(obs, deterministic=True)[1]
