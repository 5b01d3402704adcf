"""A throwaway PostgreSQL server for the tests, started the way a user would start one.

`initdb` makes a cluster in a fresh temporary folder and `pg_ctl` starts it listening on a Unix
socket in that folder only (no TCP port at all), with durability off for speed (fsync,
synchronous_commit, full_page_writes): a crash of the machine loses the folder anyway. The tests
get URLs such as

    postgresql://postgres@/paperdigest?host=/tmp/paperdigest-pg-k2j4x8&port=5432

(libpq and psycopg read the socket's folder from `host=`), and the server is stopped
(`pg_ctl stop -m fast`) and its folder removed at the end of the session, failed tests or not.
(A pytest killed with SIGKILL leaves its server running; should the folder be gone, PostgreSQL
notices within a minute that its postmaster.pid went and shuts itself down.)

PostgreSQL refuses to run as root. As root (CI runs as root) initdb and the server run as the
`postgres` system user that Debian's package creates (`nobody` without it), who owns the folder;
the switch is subprocess's own `user=`/`group=`, done in the child between fork and exec. The
folder is made with tempfile, not under pytest's tmp_path_factory: pytest keeps that tree at
mode 0700 for its owner, where the `postgres` user could not reach it.

The server's binaries (initdb, pg_ctl, postgres) are looked for in PAPERDIGEST_PG_BINDIR when it
is set (to anything: a folder without them reads as "not installed", which is how the skip is
tried), else `pg_config --bindir`, else Debian's /usr/lib/postgresql/<version>/bin (newest
first; Debian keeps them off PATH), else PATH. Without them, or without psycopg, the tests that
need the server are skipped on a developer's machine and fail in CI (CI is set), since
.ci/run installs Debian's postgresql package: the policy of the browser tests.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

BINARIES = ("initdb", "pg_ctl", "postgres")
BINDIR_VARIABLE = "PAPERDIGEST_PG_BINDIR"
PORT = 5432  # the name of the socket file (.s.PGSQL.5432) in a folder of its own: no clash
SUPERUSER = "postgres"
# Each server's settings, appended to the postgresql.conf initdb writes, so a restart keeps them.
SETTINGS = {
    "listen_addresses": "''",  # no TCP: the Unix socket below only
    "port": str(PORT),
    "max_connections": "100",
    # Nothing here must survive a crash of the machine: the folder is thrown away.
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "wal_level": "minimal",
    "max_wal_senders": "0",
    # Files in the data folder rather than /dev/shm, which a container may hold at 64 MB.
    "dynamic_shared_memory_type": "mmap",
    "timezone": "'UTC'",
    "log_timezone": "'UTC'",
    "log_line_prefix": "'%m [%p] %q%u@%d '",
}


class PgServerError(RuntimeError):
    """The server could not be made, started or stopped; the message holds its log's tail."""


def _version_key(path: Path) -> tuple[int, ...]:
    """/usr/lib/postgresql/15/bin -> (15,); the newest version sorts last."""
    return tuple(int(part) for part in re.findall(r"\d+", path.parent.name))


def _has_server(folder: Path) -> bool:
    return all(os.access(folder / name, os.X_OK) for name in BINARIES)


def find_bindir() -> tuple[Path | None, str]:
    """The folder holding initdb, pg_ctl and postgres, or None and why there is none."""
    named = os.environ.get(BINDIR_VARIABLE)
    if named is not None:
        if named and _has_server(Path(named)):
            return Path(named), ""
        return None, f"{BINDIR_VARIABLE}={named!r} holds no {', '.join(BINARIES)}"
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            answer = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
            )
            candidates.append(Path(answer.stdout.strip()))
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version_key, reverse=True)
    initdb = shutil.which("initdb")
    if initdb:
        # /usr/local/bin/initdb may be a link into /usr/lib/postgresql/<version>/bin.
        candidates.append(Path(initdb).resolve().parent)
    for folder in candidates:
        if _has_server(folder):
            return folder, ""
    return None, (
        "no PostgreSQL server (initdb, pg_ctl, postgres) in pg_config --bindir, "
        "/usr/lib/postgresql/*/bin or PATH (apt-get install postgresql)"
    )


def postgresql_or_skip() -> Path:
    """The server's bin folder, once it and psycopg are known to be there: skip without them
    on a developer's machine, fail in CI (which installs them)."""
    bindir, missing = find_bindir()
    try:
        import psycopg  # noqa: F401
    except ImportError:
        missing = "the psycopg package is not installed (pip install -e '.[test]')"
    if bindir is None or missing:
        if os.environ.get("CI"):
            pytest.fail(f"{missing}: CI must run the PostgreSQL tests, not skip them")
        pytest.skip(missing)
    return bindir


def server_user() -> pwd.struct_passwd | None:
    """Whom initdb and the server run as: None (the current user) unless that is root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise PgServerError("running as root, and there is no postgres or nobody user to run as")


class PgServer:
    """One PostgreSQL cluster in a folder of its own: made by init(), then start(), stop(),
    restart() on the same data; databases made and dropped through create_database() and
    drop_database()."""

    def __init__(self, bindir: Path, base: Path, user: pwd.struct_passwd | None = None) -> None:
        self.bindir, self.base, self.user = bindir, base, user
        self.data = base / "data"
        self.socket_dir = base  # where the socket .s.PGSQL.5432 is
        self.log = base / "server.log"
        self.running = False
        self._names = itertools.count(1)
        # The server's environment: no PG* variable of the caller's (PGPORT, PGDATA, ...) may
        # change the port or the folder under it.
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        self.env.update(LC_ALL="C", TZ="UTC")

    def url(self, dbname: str = "postgres") -> str:
        """A libpq URL reaching `dbname` through the socket: no password (trust), no TCP."""
        host = quote(str(self.socket_dir), safe="/")
        return f"postgresql://{SUPERUSER}@/{dbname}?host={host}&port={PORT}"

    @property
    def pid(self) -> int | None:
        """The postmaster's process id, from the postmaster.pid it keeps while it runs."""
        try:
            return int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return "(no server log)"
        return "\n".join(text.splitlines()[-lines:])

    def _run(self, program: str, *args: str, timeout: float = 90) -> str:
        """Run one of the server's programs as the server's user; its output, or PgServerError."""
        switch: dict[str, Any] = {}
        if self.user is not None:
            switch = {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}
        try:
            done = subprocess.run(
                [str(self.bindir / program), *args],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                env=self.env,
                cwd=self.base,
                timeout=timeout,
                check=False,
                **switch,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise PgServerError(f"{program} {' '.join(args)}: {exc}\n{self.log_tail()}") from exc
        if done.returncode != 0:
            raise PgServerError(
                f"{program} {' '.join(args)} exited with {done.returncode}: "
                f"{(done.stderr or done.stdout).strip()}\nserver log:\n{self.log_tail()}"
            )
        return done.stdout

    def init(self) -> None:
        """initdb: a superuser named postgres, trusted on the socket (no password)."""
        if self.user is not None:
            os.chown(self.base, self.user.pw_uid, self.user.pw_gid)
        self.base.chmod(0o700)
        self._run(
            "initdb", "--pgdata", str(self.data), "--username", SUPERUSER, "--auth", "trust",
            "--encoding", "UTF8", "--locale", "C", "--no-sync", "--no-instructions",
        )  # fmt: skip
        settings = {**SETTINGS, "unix_socket_directories": f"'{self.socket_dir}'"}
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write("\n# tests/pgserver.py\n")
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())

    def start(self, timeout: float = 60) -> None:
        """pg_ctl start, then wait until a connection answers `select 1` (at most `timeout`)."""
        self._run(
            "pg_ctl", "start", "--pgdata", str(self.data), "--log", str(self.log), "--wait",
            "--timeout", str(int(timeout)), timeout=timeout + 30,
        )  # fmt: skip
        self.running = True
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 60) -> None:
        """Connect until the server answers. Bounded by attempts, not a clock: a test may have
        frozen time.monotonic (freezegun), never time.sleep."""
        import psycopg

        pause, problem = 0.05, ""
        for _ in range(int(timeout / pause)):
            try:
                with psycopg.connect(self.url(), connect_timeout=5) as connection:
                    connection.execute("select 1")
                return
            except psycopg.OperationalError as exc:
                problem = str(exc).strip()
                time.sleep(pause)
        raise PgServerError(
            f"PostgreSQL in {self.data} accepted no connection in {timeout:.0f} s: {problem}\n"
            f"server log:\n{self.log_tail()}"
        )

    def stop(self, mode: str = "fast") -> None:
        """pg_ctl stop: "fast" ends the sessions and checkpoints, "immediate" is a crash
        (the next start recovers from the WAL). Falls back to immediate if fast fails."""
        try:
            self._run("pg_ctl", "stop", "--pgdata", str(self.data), "--mode", mode, "--wait")
        except PgServerError:
            if mode == "immediate":
                raise
            self._run("pg_ctl", "stop", "--pgdata", str(self.data), "--mode", "immediate")
        self.running = False

    def restart(self, mode: str = "fast") -> None:
        """Stop and start again on the same data folder and socket (same URLs); connections
        open before it are broken (psycopg.OperationalError on their next use)."""
        if self.running:
            self.stop(mode)
        self.start()

    def connect(self, dbname: str = "postgres") -> Any:
        """A psycopg connection in autocommit, for CREATE/DROP DATABASE and quick looks."""
        import psycopg

        return psycopg.connect(self.url(dbname), autocommit=True, connect_timeout=5)

    def create_database(self, name: str | None = None) -> str:
        """A new empty database (`test_<n>` unless named); its URL."""
        name = name or f"test_{next(self._names)}"
        with self.connect() as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop it, ending whatever sessions (a leaked pool) are still connected."""
        with self.connect() as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    @contextlib.contextmanager
    def database(self) -> Iterator[str]:
        """A new empty database's URL for the block, dropped after it. The server is started
        again first if a test stopped it (and failed before its restart)."""
        if not self.running:
            self.start()
        name = f"test_{next(self._names)}"
        url = self.create_database(name)
        try:
            yield url
        finally:
            if not self.running:
                self.start()
            self.drop_database(name)


@contextlib.contextmanager
def running(
    bindir: Path, parent: Path | None = None, settings: Mapping[str, str] | None = None
) -> Iterator[PgServer]:
    """A fresh server for the block: made in a new folder under `parent` (the system's
    temporary folder by default), stopped and its folder removed after, whatever happened.
    `settings` go into its postgresql.conf after SETTINGS (the last one wins: the benchmarks
    turn durability back on)."""
    base = Path(tempfile.mkdtemp(prefix="paperdigest-pg-", dir=parent))
    server = PgServer(bindir, base, server_user())
    try:
        server.init()
        if settings:
            with (server.data / "postgresql.conf").open("a") as conf:
                conf.write("\n# the caller's own\n")
                conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
        server.start()
        yield server
    finally:
        try:
            if server.pid is not None:
                server.stop()
        finally:
            shutil.rmtree(base, ignore_errors=True)
