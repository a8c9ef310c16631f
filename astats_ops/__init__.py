"""Operator and backup-container tools for the A-Stats Engine database.

Run as ``python -m astats_ops <command>``; see :mod:`astats_ops.cli` for the commands.
"""

__all__ = ["OpsError"]

from astats_ops.errors import OpsError
