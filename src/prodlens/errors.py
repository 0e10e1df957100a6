"""Named exceptions (the CLI turns them into a friendly message and exit code 2), and the
one way code that walks a dataset records a bad item it skips (:func:`record_skip`)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger(__name__)


class ProdlensError(Exception):
    """Base class for every error prodlens raises on purpose."""


class BadInputError(ProdlensError):
    """An input file is missing, corrupt or of the wrong shape.

    The message always names the file and says what to do about it.

    >>> str(BadInputError("a.jpg", "cannot be decoded", "re-export it as JPEG or PNG"))
    'a.jpg: cannot be decoded. re-export it as JPEG or PNG'
    """

    def __init__(self, path: str | Path, problem: str, fix: str = "") -> None:
        self.path = str(path)
        self.problem = problem
        self.fix = fix
        msg = f"{self.path}: {problem}"
        if fix:
            msg += f". {fix}"
        super().__init__(msg)

    @property
    def reason(self) -> str:
        """What went wrong and what to do, without the file name (the message's tail).

        >>> BadInputError("a.jpg", "cannot be decoded", "re-export it").reason
        'cannot be decoded. re-export it'
        """
        return str(self).removeprefix(f"{self.path}: ")


#: One item a dataset-walking step skipped: ``(file or item, reason)``, as in
#: ``OcrReport.skipped``, ``EvalReport.skipped`` and ``Dataset.skipped``.
Skip = tuple[str, str]


def record_skip(skipped: list[Skip], error: BadInputError, item: str | None = None) -> None:
    """Log ``error`` as a warning and append ``(item or error.path, error.reason)`` to ``skipped``.

    The one way code that walks a dataset skips a bad item and goes on.

    >>> out: list[Skip] = []
    >>> record_skip(out, BadInputError("b.jpg", "not a readable image", "re-export it"))
    >>> out
    [('b.jpg', 'not a readable image. re-export it')]
    """
    log.warning("skipping %s", error)
    skipped.append((item or error.path, error.reason))


def skip_lines(skipped: Sequence[Skip], limit: int = 10, indent: str = "  ") -> list[str]:
    """Human-readable lines for the first ``limit`` skips (and a count of the rest).

    >>> skip_lines([("b.jpg", "corrupt"), ("c.jpg", "missing")], limit=1)
    ['  skipped b.jpg: corrupt', '  ... and 1 more skipped']
    """
    out = [f"{indent}skipped {item}: {why}" for item, why in skipped[:limit]]
    if len(skipped) > limit:
        out.append(f"{indent}... and {len(skipped) - limit} more skipped")
    return out


class ConfigError(ProdlensError, ValueError):
    """An option is out of range or does not fit the model it is used with.

    >>> isinstance(ConfigError("train_blocks must be >= 0"), ValueError)
    True
    """


class UnknownClassError(ProdlensError):
    """A label is not in the class list."""


class UnknownNameError(ProdlensError, KeyError):
    """A registry lookup failed; the message lists close matches."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])
