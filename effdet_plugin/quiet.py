"""A host's chatter held back while a command works: a logger's level raised for the length of a block.

Ultralytics and YOLOv5 log a model table for every model they build and a banner for every export; a command that
builds several models (swap's probes, benchmark's exports) prints its own lines instead.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator


@contextlib.contextmanager
def quieted(logger: logging.Logger | str, level: int = logging.WARNING) -> Iterator[None]:
    """Only records of ``level`` and above from ``logger`` (or the logger of that name) while the block runs."""
    logger = logging.getLogger(logger) if isinstance(logger, str) else logger
    before = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(before)
