"""Repository-wide pytest hooks (tests/ and the docstring examples under src/).

Under ``CI=true`` (as ``.ci/run`` runs) every skip is a failure: a missing PostgreSQL,
Chromium or pinned dev dependency must not pass as "skipped". A line at the end counts
the skips, expected and not.
"""

from __future__ import annotations

import os

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"
#: Skips that are expected even under CI=true.
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
