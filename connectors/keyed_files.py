"""Writing one file per effect, keyed and atomic: the file outbox and the file inbox share this.

A re-delivery of the same key writes the same file name, so it replaces the earlier copy and
never adds a second one; readers never see half a file.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from pathlib import Path

_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+=-]{0,119}")
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._@+=-]")


def file_stem(key: str) -> str:
    """The key itself when it is a harmless file name, else a slug plus a hash so keys stay distinct.

    The hash keeps distinct keys distinct even when their slugs coincide ("a:b" vs "a/b").
    """
    if _SAFE_NAME.fullmatch(key):
        return key
    slug = _UNSAFE_CHARS.sub("_", key)[:80].lstrip("._")
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]
    return f"{slug}-{digest}" if slug else digest


def atomic_write(path: Path, data: bytes) -> None:
    """Temp file + fsync + os.replace: readers never see half a file, and a rewrite replaces."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
