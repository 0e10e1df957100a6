"""Named exceptions of the models package."""

from __future__ import annotations

from prodlens.errors import ProdlensError


class MissingWeightsError(ProdlensError):
    """Pretrained weights a backbone needs are not on this machine.

    The message says where they were looked for and how to get them.
    """


class CheckpointError(ProdlensError):
    """A checkpoint file is missing, corrupt, or does not match the code."""
