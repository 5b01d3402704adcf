"""One `digest schedule` per store: an exclusive lock on a file beside it.

flock(2) locks belong to the process: the kernel drops them when it dies, however it dies. So a
lock file left by a killed scheduler is simply taken over by the next one; only a live process
holding it makes a second instance refuse, with a message naming its pid.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from digest.errors import DigestError


class AlreadyRunning(DigestError):
    """Another process holds the lock; `holder` is its pid, as it wrote it."""

    def __init__(self, message: str, holder: str) -> None:
        super().__init__(message)
        self.holder = holder


class ProcessLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle: int | None = None

    def __enter__(self) -> ProcessLock:
        self.acquire()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()

    def acquire(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise DigestError(f"{self.path}: cannot create the lock file: {exc}") from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(handle, 64, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(handle)
            raise AlreadyRunning(
                f"{self.path}: another `digest schedule` (pid {holder}) is running on this store; "
                "stop it first, or use `digest run` (safe alongside it)",
                holder,
            ) from None
        # Ours now, even if a dead process left its pid here: write our own.
        os.ftruncate(handle, 0)
        os.pwrite(handle, f"{os.getpid()}\n".encode("ascii"), 0)
        self._handle = handle

    def release(self) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            os.close(self._handle)
            self._handle = None
