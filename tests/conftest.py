from __future__ import annotations

import os
import uuid

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


PG_URL = os.environ.get("PRODLENS_TEST_PG_URL")
PG_SKIP = "PRODLENS_TEST_PG_URL is not set (start a server with `bash .ci/postgres.sh` and export its URL)"


@pytest.fixture
def pg_url():
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    if not PG_URL:
        pytest.skip(PG_SKIP)
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    base = make_url(PG_URL).set(drivername="postgresql+psycopg")
    name = f"prodlens_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["memory", "file", "postgres"])
def store(request, tmp_path):
    """A results store on SQLite in memory, a SQLite file and (when configured) PostgreSQL."""
    from prodlens.store import Store

    if request.param == "memory":
        s = Store.open(":memory:")
    elif request.param == "file":
        s = Store.open(tmp_path / "results.sqlite")
    else:
        s = Store.open(request.getfixturevalue("pg_url"))
    yield s
    s.close()
