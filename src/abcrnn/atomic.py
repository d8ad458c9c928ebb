"""Atomic file writes: write beside the target, then rename over it."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `path`, and move it onto `path` on success.

    The caller writes the temporary file completely. If the block raises, the
    temporary file is removed and `path` keeps its old content, so readers never
    see a partial file.
    """
    target = Path(path)
    # A fresh name rather than mkstemp: the writer creates the file, so it gets the
    # usual permissions from the umask instead of mkstemp's owner-only 0600.
    temporary = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    try:
        yield temporary
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write `text` to `path` atomically as UTF-8 with LF line endings."""
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8", newline="\n")
    return Path(path)
