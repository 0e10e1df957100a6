from __future__ import annotations

import os
import uuid

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

#: Under ``CI=true`` (as ``.ci/run`` runs) every skip is a failure (a missing PostgreSQL,
#: Chromium or pinned dev dependency must not pass as "skipped") except these reasons.
IN_CI = os.environ.get("CI", "").lower() == "true"
EXPECTED_SKIPS = (
    "all tests skipped by +SKIP option",  # docstring examples that need a dataset or a checkpoint
)
_SKIPS: list[tuple[str, str, bool]] = []  # (test, reason, expected)


def _skip_reason(report) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


def _police_skip(report) -> None:
    if not report.skipped or hasattr(report, "wasxfail"):
        return
    reason = _skip_reason(report)
    expected = any(e in reason for e in EXPECTED_SKIPS)
    _SKIPS.append((report.nodeid, reason, expected))
    if IN_CI and not expected:
        report.outcome = "failed"
        report.longrepr = f"unexpected skip under CI=true (install or start what it needs): {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _police_skip(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _police_skip(outcome.get_result())


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    unexpected = [(n, r) for n, r, ok in _SKIPS if not ok]
    terminalreporter.write_line(
        f"skips: {len(_SKIPS)} ({len(_SKIPS) - len(unexpected)} expected: docstring examples marked +SKIP; "
        f"{len(unexpected)} unexpected{', failed under CI=true' if IN_CI and unexpected else ''})")
    for nodeid, reason in unexpected:
        terminalreporter.write_line(f"  unexpected skip: {nodeid}: {reason}")


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
