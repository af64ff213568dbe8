"""One writer per report store: an exclusive `fcntl.flock` on `<store>/.lock`.

The lock is held for a campaign's lifetime and released by the kernel when the process ends,
however it ends (kill -9 included), so a stale lock file never blocks the next campaign.  The
holder writes its PID and command line into the file; a second campaign reads them to say who
holds the store, and exits instead of interleaving its writes with the first one's.
"""
from __future__ import annotations

import fcntl
import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..core.errors import NablaError
from .store import now

LOCK_FILE = ".lock"


class LockedError(NablaError):
    """Another process holds the lock."""


def holder(path: Path) -> str:
    """Who holds the lock at `path`, as its file says (best effort)."""
    try:
        info = json.loads(path.read_text())
        return f"PID {info['pid']} ({' '.join(info['command'])}), since {info['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "a process that has not written its name yet"


@contextmanager
def exclusive(folder: Path, what: str) -> Iterator[None]:
    """Hold `folder`'s lock for the block; LockedError (naming the holder) if it is taken."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockedError(f"the {what} {folder} is in use by another nablafuzz campaign: {holder(path)}; "
                              f"fix: wait for it to finish, or give this campaign its own --store") from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "command": sys.argv, "since": now()}).encode())
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
