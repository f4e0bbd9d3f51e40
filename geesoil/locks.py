"""An exclusive, non-blocking file lock held for a ``with`` block: one writer per output folder.

``fcntl.flock`` dies with its process, so a killed run never leaves a stale lock behind. The lock file records
who holds it (``pid N since TIME``), so the refusal can say so.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from geesoil.errors import GeesoilError


@contextmanager
def exclusive_lock(path: Path, refuse: Callable[[str], GeesoilError]) -> Iterator[Path]:
    """Hold ``path`` locked; when another process holds it, raise ``refuse(holder)`` (holder: who, in words)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    f = open(path, "a+", encoding="utf-8")  # noqa: SIM115 (held for the whole block)
    try:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            f.seek(0)
            raise refuse(f.read().strip() or "unknown") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} since {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n")
        f.flush()
        yield path
    finally:
        f.close()
