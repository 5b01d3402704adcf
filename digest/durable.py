"""Many files put on disk for the price of one flush: the outbox's messages, the feed files.

    batch = Batch()
    batch.put(path, data)        a temp file beside `path` (or in `temp_dir`), not flushed yet
    batch.commit()               one flush of the data, every rename, one fsync per folder
    batch.abandon()              or drop the temp files: nothing changes
    sweep(folder, is_temp, age)  remove the temp files a killed batch left behind

An fsync per file costs a disk flush per file (issue 16: 50,000 of them, 23 s of a 112 s run).
A batch writes every file under a temporary name without syncing it, then flushes them all at
once: Linux's syncfs(2) on the folder (the whole filesystem, one call), or, for a batch of
fewer than SYNCFS_FROM files or where there is no syncfs, an fsync of each temp file. Only then is each renamed over its final path, and each
folder that got a rename is fsynced once.

The guarantee:
- A reader never sees a file in part: the final path holds the old file or the whole new one
  (a rename is atomic, and a file's data is on disk before its rename).
- Once `commit()` returns, every file of the batch and its rename are on disk. So a caller
  records what the files stand for (a message "sent" in the ledger) only after commit returns.
- A crash (SIGKILL, a power cut) before commit returns leaves each final path as it was, or
  holding its whole new file; besides that, at most temp files (hidden `.NAME.XXXXXXXX` names
  beside the file, or the Maildir's tmp/), which `sweep` removes once they are old enough that
  no batch in progress can own them. The caller's record was not written, so its next run
  writes the files again.
- A file that cannot be written (at `put`, or its rename) fails alone; a failed flush fails the
  whole batch (its temp files are removed: their data cannot be trusted).

Caveats: syncfs flushes everything dirty on that filesystem, other programs' writes too (one
call a batch, however many files). Linux reports a write-back error through syncfs since 5.8;
an older kernel returns success regardless. On Windows there is no syncfs and no folder fsync
(each temp file is fsynced; NTFS journals the renames).
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

log = logging.getLogger(__name__)

# mkstemp's names: the prefix, then 8 of these characters.
_HIDDEN_TEMP = re.compile(r"\.(?P<name>.+)\.[a-z0-9_]{8}")


@dataclass(frozen=True)
class _Pending:
    temp: Path
    final: Path


class CommitError(Exception):
    """Some files of a batch are not (durably) in place; the others are.

    `failed` maps each such file's final path to its OS error.
    """

    def __init__(self, failed: Mapping[Path, OSError]) -> None:
        first_path, first_error = next(iter(failed.items()))
        super().__init__(f"{first_path}: {first_error}")
        self.failed = dict(failed)


class Batch:
    """Files written together, put in place together by `commit()` (see the module's guarantee)."""

    def __init__(self) -> None:
        self._pending: list[_Pending] = []

    def __len__(self) -> int:
        return len(self._pending)

    def put(
        self, final: Path, data: bytes, *, temp_dir: Path | None = None, mode: int | None = None
    ) -> None:
        """Write `data` to a temp file for `final`, not synced; raises OSError if it cannot.

        The temp file is hidden (`.NAME.XXXXXXXX`) beside `final`, or `NAME.XXXXXXXX` in
        `temp_dir` (which must be on the same filesystem: the Maildir's tmp/). `mode` is the
        file's permission bits (a temp file starts as 0o600)."""
        if temp_dir is None:
            handle, temp = _create_temp(final.parent, f".{final.name}.")
        else:
            handle, temp = _create_temp(temp_dir, f"{final.name}.")
        try:
            try:
                if mode is not None:
                    os.fchmod(handle, mode)
                view = memoryview(data)
                while view:  # a regular file takes it all at once, but write may say otherwise
                    view = view[os.write(handle, view):]
            finally:
                os.close(handle)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        self._pending.append(_Pending(temp, final))

    def commit(self) -> None:
        """Flush every file, rename each into place, fsync each folder once; the batch is then
        empty. Raises CommitError naming the files not in place (or not surely on disk)."""
        pending, self._pending = self._pending, []
        if not pending:
            return
        try:
            flush([item.temp for item in pending])
        except OSError as exc:
            _remove(item.temp for item in pending)
            raise CommitError({item.final: exc for item in pending}) from None
        failed: dict[Path, OSError] = {}
        renamed: dict[Path, list[Path]] = {}  # by folder
        for item in pending:
            try:
                item.temp.replace(item.final)
            except OSError as exc:
                item.temp.unlink(missing_ok=True)
                failed[item.final] = exc
            else:
                renamed.setdefault(item.final.parent, []).append(item.final)
        for folder, finals in renamed.items():
            try:
                fsync_folder(folder)
            except OSError as exc:  # in place, but the rename may not survive a power cut
                failed.update(dict.fromkeys(finals, exc))
        if failed:
            raise CommitError(failed)

    def abandon(self) -> None:
        """Remove the temp files written since the last commit; no final path changes."""
        pending, self._pending = self._pending, []
        _remove(item.temp for item in pending)


# What tempfile.mkstemp's names end with: 8 of these characters. Ours are drawn from a counter
# that starts at a random place in each process (and again in a forked child), not from the
# random module per file: mkstemp and its file object cost a seventh of writing a 45 kB message.
_NAME_CHARACTERS = "abcdefghijklmnopqrstuvwxyz0123456789_"
_NAMES = 37**8
_O_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)


class _TempNames:
    def __init__(self) -> None:
        self.restart()

    def restart(self) -> None:
        self.next = int.from_bytes(os.urandom(8), "big") % _NAMES

    def __call__(self) -> str:
        number, self.next = self.next, (self.next + 1) % _NAMES
        digits = []
        for _ in range(8):
            number, digit = divmod(number, 37)
            digits.append(_NAME_CHARACTERS[digit])
        return "".join(digits)


_temp_name = _TempNames()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_temp_name.restart)


def _create_temp(folder: Path, prefix: str) -> tuple[int, Path]:
    """A new file PREFIX + 8 characters in `folder`, created (0o600) by this call alone, as
    tempfile.mkstemp makes one: a name taken already is skipped."""
    for _ in range(100):
        path = folder / f"{prefix}{_temp_name()}"
        try:
            return os.open(path, _O_CREATE, 0o600), path
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, f"no free temp file name in {folder}")


# A batch of fewer files fsyncs each: syncfs also waits for everything else written to the
# filesystem (a run's gigabytes, while digest serve writes one confirmation mail).
SYNCFS_FROM = 4


def flush(files: Sequence[Path]) -> None:
    """Put the data of `files` on disk: one syncfs per filesystem their folders are on, or, for a
    few files or where there is no syncfs, an fsync of each file."""
    if len(files) < SYNCFS_FROM:
        for file in files:
            _fsync_file(file)
        return
    flushed: set[int] = set()
    for folder in sorted({file.parent for file in files}):
        device = folder.stat().st_dev
        if device in flushed:
            continue
        if not syncfs(folder):
            for file in files:
                _fsync_file(file)
            return
        flushed.add(device)


def _load_syncfs() -> Callable[[int], int] | None:
    try:
        function = ctypes.CDLL(None, use_errno=True).syncfs
    except (AttributeError, OSError, TypeError):  # not glibc/musl Linux; Windows has no CDLL(None)
        return None
    function.argtypes = [ctypes.c_int]
    function.restype = ctypes.c_int
    return function


_LIBC_SYNCFS = _load_syncfs()


def syncfs(folder: Path) -> bool:
    """Flush everything written to `folder`'s filesystem (Linux syncfs(2) on a descriptor of the
    folder). False where the system has no syncfs (nor allows it: a container's seccomp)."""
    if _LIBC_SYNCFS is None:
        return False
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        if _LIBC_SYNCFS(descriptor) == 0:
            return True
        code = ctypes.get_errno()
    finally:
        os.close(descriptor)
    if code in (errno.ENOSYS, errno.EPERM):
        return False
    raise OSError(code, os.strerror(code))


def _fsync_file(path: Path) -> None:
    descriptor = os.open(path, os.O_RDWR)  # Windows' fsync needs a descriptor open for writing
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def fsync_folder(folder: Path) -> None:
    """Make the renames into `folder` durable."""
    if os.name != "posix":  # Windows cannot open a folder; NTFS journals the rename
        return
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def hidden_temp_target(name: str) -> str | None:
    """The final file name a hidden temp file (`.NAME.XXXXXXXX`, from `put`) stands for, or None
    when `name` is not one."""
    match = _HIDDEN_TEMP.fullmatch(name)
    return match["name"] if match else None


def sweep(
    folder: Path, is_temp: Callable[[str], bool], older_than: timedelta, *, now: float | None = None
) -> int:
    """Remove the files of `folder` that `is_temp` names temp files and that are older than
    `older_than`: a killed batch's leftovers. A younger one may belong to a batch in progress (in
    another process) and is left alone. Best effort: what cannot be removed stays. Returns how
    many were removed."""
    cutoff = (time.time() if now is None else now) - older_than.total_seconds()
    removed = 0
    try:
        with os.scandir(folder) as scan:
            entries = [entry for entry in scan if is_temp(entry.name)]
    except OSError:
        return 0
    for entry in entries:
        try:
            stale = entry.stat(follow_symlinks=False).st_mtime < cutoff
            if stale and entry.is_file(follow_symlinks=False):
                Path(entry.path).unlink()
                removed += 1
        except OSError as exc:  # gone meanwhile (another sweep), or not ours to remove
            log.debug("%s: left in place: %s", entry.path, exc)
    if removed:
        log.info("%s: removed %d temp files left by an interrupted write", folder, removed)
    return removed


def _remove(paths: Iterable[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)
