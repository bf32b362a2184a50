"""Pausing Python's cycle collector around bulk work that makes many small objects and no cycles."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def cycle_collector_paused() -> Iterator[None]:
    """Fetching hundreds of thousands of driver tuples triggers the collector again and again, and each
    pass walks every tuple already fetched: paused, such a batch runs several times faster."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
