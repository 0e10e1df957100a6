"""Named exceptions. The CLI turns these into a friendly message and exit code 2."""

from __future__ import annotations

from pathlib import Path


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
