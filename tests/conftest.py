from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def sample_ds():
    """The bundled real sample (134 GroceryStore photos, 10 package classes)."""
    from prodlens.data.sample import load_sample

    return load_sample()


@pytest.fixture
def one_torch_thread():
    """Tiny models run faster on one torch thread, much faster on a busy CI box."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
