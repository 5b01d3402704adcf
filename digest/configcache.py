"""A big config.toml read once: what checking it gave is kept, and read back while it is unchanged.

Reading a config of 100,000 profile tables takes about 9 seconds (tomllib alone 7.7), which
every command paid, and an idle hourly run mostly of that. So when a config is large (at least
CACHE_FROM_BYTES), load_config keeps the checked Config in the user's cache folder
($XDG_CACHE_HOME/paperdigest, or ~/.cache/paperdigest), and the next command reads it back in
about half a second instead.

A kept Config is used only when everything it was made from is the same: the file's bytes (a
hash), where it lies (relative paths start at its folder), $HOME (a path may start with ~), this
version of the code that checks it, and which of the files it names existed. Anything else, and
the file is read and checked again. The kept file is a pickle, so it is trusted only when it is
the user's own and nobody else may write it (black keeps its cache the same way); a cache that
cannot be read or written is passed over with a debug line, never a failure.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import os
import pickle
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from digest import __version__

if TYPE_CHECKING:
    from digest.config import Config

log = logging.getLogger(__name__)

CACHE_FROM_BYTES = 256 * 1024  # below this, reading the file is as fast as reading the cache
KEPT = 4  # configs kept at once (most people have one)
_FORMAT = 2  # 2: the profiles pickled apart (Kept)


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "paperdigest"


@dataclasses.dataclass(frozen=True)
class Kept:
    """A kept Config read back in two steps: `head` is the config without its profiles (read in a
    few milliseconds, whatever their number), `whole()` the config with them. An idle hourly run
    needs only the head to learn that nothing is due (digest.quiet)."""

    head: Config
    profile_rows: bytes = dataclasses.field(repr=False)  # the profiles, pickled apart

    def whole(self) -> Config:
        return _rebuilt(self.head, pickle.loads(self.profile_rows))


def load_kept(path: Path, data: bytes) -> Kept | None:
    """The Config kept for this file and these bytes, in two steps (see Kept), or None (none
    kept, or it no longer holds)."""
    if len(data) < CACHE_FROM_BYTES:
        return None
    try:
        kept = _read_own(_cache_file(path))
        if kept is None:
            return None
        header, config, profile_rows = pickle.loads(kept)
        expected = {**_header(path, data), "checked": header.get("checked")}
        if header != {**expected, "existing": _existing(header["checked"])}:
            return None
        if not isinstance(profile_rows, bytes):
            return None
        return Kept(config, profile_rows)
    except Exception as exc:  # a damaged or foreign cache: read the file instead
        log.debug("%s: kept config not used: %s", path, exc)
        return None


def save(path: Path, data: bytes, config: Config, checked: Iterable[Path]) -> None:
    """Keep `config` (checked from `data`, which named the files `checked`) for the next command."""
    from digest.config import ProfileConfig

    if len(data) < CACHE_FROM_BYTES:
        return
    files = sorted({str(file) for file in checked})
    header = {**_header(path, data), "checked": files, "existing": _existing(files)}
    # The profiles as plain tuples: pickle reads 100,000 of them three times faster than as
    # dataclasses, and building the dataclasses from them is quicker still.
    names = [field.name for field in dataclasses.fields(ProfileConfig)]
    profiles = [tuple(getattr(profile, name) for name in names) for profile in config.profiles]
    # Pickled apart, so that reading the head does not read them (Kept).
    profile_rows = pickle.dumps(profiles, pickle.HIGHEST_PROTOCOL)
    blob = pickle.dumps(
        (header, dataclasses.replace(config, profiles=()), profile_rows), pickle.HIGHEST_PROTOCOL
    )
    target = _cache_file(path)
    temp = target.with_name(f".{target.name}.{os.getpid()}")
    try:
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        descriptor = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(blob)
        temp.replace(target)
        _forget_old(target.parent, keep=target)
    except OSError as exc:
        log.debug("%s: config not kept: %s", target, exc)
        with contextlib.suppress(OSError):
            temp.unlink(missing_ok=True)


def _forget_old(folder: Path, keep: Path) -> None:
    """Only the KEPT newest configs' files stay: a config read once (a test's, a benchmark's, a
    moved one) would otherwise leave its file behind for good."""
    kept = sorted(
        folder.glob("config-*.pickle"), key=lambda file: file.stat().st_mtime_ns, reverse=True
    )
    for file in kept[KEPT:]:
        if file != keep:
            file.unlink(missing_ok=True)


def _cache_file(path: Path) -> Path:
    where = hashlib.blake2b(str(path.resolve()).encode(), digest_size=12).hexdigest()
    return cache_dir() / f"config-{where}.pickle"


def _header(path: Path, data: bytes) -> dict[str, Any]:
    return {
        "format": _FORMAT,
        "version": __version__,
        "code": _code_hash(),
        "config": hashlib.blake2b(data, digest_size=16).hexdigest(),
        "path": str(path.resolve()),
        "home": os.environ.get("HOME", ""),
    }


def _code_hash() -> str:
    """The checking code's own hash: a Config kept by other code may not even unpickle alike."""
    from digest import config as module

    source = Path(module.__file__ or "").read_bytes()
    return hashlib.blake2b(source, digest_size=16).hexdigest()


def _existing(paths: Iterable[str]) -> list[tuple[bool, bool]]:
    """Whether each path checked is there, as a file or as a folder (a templated source's)."""
    return [(Path(path).is_file(), Path(path).is_dir()) for path in paths]


def _read_own(file: Path) -> bytes | None:
    """The cache file's bytes if it is a plain file of ours that nobody else may write."""
    try:
        descriptor = os.open(file, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(descriptor, "rb") as handle:
        info = os.fstat(handle.fileno())
        if (
            not stat.S_ISREG(info.st_mode)
            or info.st_uid != os.geteuid()
            or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
        ):
            log.debug("%s: not used: not a file only its owner may write", file)
            return None
        return handle.read()


def _rebuilt(config: Config, profiles: list[tuple[Any, ...]]) -> Config:
    from digest.config import ProfileConfig

    return dataclasses.replace(config, profiles=tuple(ProfileConfig(*row) for row in profiles))
