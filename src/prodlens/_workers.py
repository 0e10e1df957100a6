"""Helpers for worker processes that must not outlive the process that started them."""

from __future__ import annotations

import os
import signal
import threading
import time


def _exit_with_parent(parent: int, interval: float) -> None:
    while True:  # a parent killed with SIGKILL never tells its pool; do not linger as an orphan
        time.sleep(interval)
        if os.getppid() != parent:
            os._exit(1)


def init_child(parent: int, interval: float = 1.0) -> None:
    """Call first in a pool worker: ignore Ctrl-C (the parent handles it and cancels) and
    exit within ``interval`` seconds once ``parent`` is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, args=(parent, interval), daemon=True).start()


def cpu_count() -> int:
    """CPUs this process may use (respects affinity / container limits where the OS tells).

    >>> cpu_count() >= 1
    True
    """
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
