"""One writer per run dir: an exclusive ``fcntl.flock`` on ``<run_dir>/.lock``, held for the whole run.

The kernel drops a flock when its file descriptor closes, which includes the process dying in any way
(SIGKILL too), so a lock is never left stale; the lock file itself stays and means nothing on its own.
"""
from __future__ import annotations

import fcntl
import os
from pathlib import Path

from ffnkv.errors import FfnkvError

LOCK_NAME = ".lock"


class RunDirBusy(FfnkvError):
    """Another process is writing to the run dir."""


class RunLock:
    """``with RunLock(run_dir):`` — raises ``RunDirBusy`` at once when another process holds the run dir."""

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / LOCK_NAME
        self.fd: int | None = None

    def __enter__(self) -> "RunLock":
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise RunDirBusy(f"run dir {str(self.path.parent)!r} is in use by another process (pid {holder}); "
                             "wait for it to finish or use another run dir (--out).") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing releases the flock
            self.fd = None
