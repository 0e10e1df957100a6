from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def sample_ds():
    """The bundled real sample (134 GroceryStore photos, 10 package classes)."""
    from prodlens.data.sample import load_sample

    return load_sample()
