"""The PostgreSQL store: the same concerns as the SQLite one (sqlite.py), on a database server
several hosts share (issue 17). Chosen by `[store] url` (or `url_env`) in config.toml.

`PgConnection` stands where sqlite3.Connection stands for the concern mixins: `execute` and
`executemany` take their SQL as written, with SQLite's `?` and `?N` placeholders (translated
once per distinct statement to psycopg's `%s`, a literal `%` doubled), in autocommit mode with
the mixins' own BEGIN and COMMIT. Every psycopg error becomes a StoreError of one line naming
the store (its URL without the password) and what is wrong.

One connection a store object, as with SQLite: each thread that uses the store has its own
(`digest serve` does all its store work on one thread, StoreThread; the sign-up worker and the
mail builder open their own with `open_store` and `another()`), so there is nothing to pool
inside a process; each `digest run` or web replica is one or a few connections to the server.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg.adapt import Dumper

from digest.config import StoreConfig, read_password, url_without_password
from digest.errors import StoreError
from digest.store.dialect import POSTGRESQL
from digest.store.maintenance import StoreSize
from digest.store.schema import migrate_postgresql
from digest.store.sqlite import Store

CONNECT_TIMEOUT_S = 10
PATIENCE_MS = 30000  # as SQLite's busy timeout: how long a statement waits for a row lock


@dataclass(frozen=True, slots=True)
class PgTarget:
    """Where a PostgreSQL store is: its URL (which may hold a password, from url_env), the
    password read from password_env or password_file (None: libpq's PGPASSWORD or ~/.pgpass),
    and `where`, the URL without its password, the one form a message may show."""

    url: str
    password: str | None = None

    @property
    def where(self) -> str:
        return url_without_password(self.url)

    def __repr__(self) -> str:  # never the password, not even in a traceback's locals
        return f"PgTarget({self.where!r})"


def target_from_config(store: StoreConfig, environ: Mapping[str, str] | None = None) -> PgTarget:
    """The PostgreSQL store [store] names (url or url_env, and its password's source)."""
    env = os.environ if environ is None else environ
    if store.url_env is not None:
        url = env.get(store.url_env, "")
        if not url:
            raise StoreError(
                f"store.url_env: the environment variable {store.url_env} is not set "
                "(it should hold the PostgreSQL URL)"
            )
    else:
        assert store.url is not None
        url = store.url
    return PgTarget(url, _password(store, env))


def _password(store: StoreConfig, env: Mapping[str, str]) -> str | None:
    """None: libpq's own (PGPASSWORD, ~/.pgpass)."""
    return read_password(
        "store", "PostgreSQL", store.password_env, store.password_file, env, StoreError
    )


def connect(target: PgTarget, application_name: str = "paperdigest") -> psycopg.Connection[Any]:
    """A plain psycopg connection (autocommit) to the store's database, with its password; a
    StoreError of one line naming the store (without the password) when there is none to have.
    For what runs beside the store on a connection of its own (schedule's leadership lock)."""
    extra: dict[str, Any] = {"connect_timeout": CONNECT_TIMEOUT_S}
    if target.password is not None:
        extra["password"] = target.password
    try:
        return psycopg.connect(
            target.url, autocommit=True, application_name=application_name, **extra
        )
    except psycopg.Error as exc:
        raise StoreError(f"{target.where}: cannot connect to the store: {_what(exc)}") from None
    except ValueError as exc:  # a malformed URL (psycopg's conninfo parser)
        raise StoreError(f"{target.where}: not a usable PostgreSQL URL: {exc}") from None


# -- the adapter --------------------------------------------------------------------------------

# A placeholder outside quotes: `?` or `?N`; quoted text and identifiers are passed over whole.
_TOKENS = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|\?(\d*)|%")


def translate(sql: str) -> tuple[str, tuple[int, ...] | None]:
    """SQLite's placeholders as psycopg's: `?` and `?N` become `%s` (each `?N` a parameter of its
    own, filled from the N-th value: the order returned, None when it is the values' own), a
    literal `%` becomes `%%`."""
    order: list[int] = []
    largest = 0

    def replace(match: re.Match[str]) -> str:
        nonlocal largest
        token = match.group(0)
        if token == "%":
            return "%%"
        if token[0] != "?":
            return token.replace("%", "%%")
        # SQLite's rule: a bare `?` is numbered one above the largest number given so far.
        number = int(match.group(1)) if match.group(1) else largest + 1
        largest = max(largest, number)
        order.append(number - 1)
        return "%s"

    text = _TOKENS.sub(replace, sql)
    return text, None if order == list(range(len(order))) else tuple(order)


_PLAIN_INSERT = re.compile(
    r"\s*INSERT\s+INTO\s+(\w+)\s*(\([\w\s,]*\))?\s*VALUES\s*\(\s*\?(?:\s*,\s*\?)*\s*\)\s*",
    re.IGNORECASE,
)


def as_copy(sql: str) -> str | None:
    """The COPY that does what an executemany of `sql` does, when `sql` is a plain INSERT of
    bare `?` values (no ON CONFLICT, no RETURNING, no expression); None otherwise."""
    match = _PLAIN_INSERT.fullmatch(sql)
    if match is None:
        return None
    table, columns = match.group(1), match.group(2)
    return f"COPY {table} {' '.join((columns or '').split())} FROM STDIN".replace("  ", " ")


class _BoolAsInteger(Dumper):
    """Booleans are integers in the store, as in SQLite."""

    oid = psycopg.adapters.types["int8"].oid

    def dump(self, obj: Any) -> bytes:
        return b"1" if obj else b"0"


class _NoRows:
    """The result of a statement not sent: a ROLLBACK on a connection already lost (nothing to
    undo), an executemany of no rows (none changed, as sqlite3 says)."""

    rowcount = 0

    def fetchone(self) -> Any:
        return None

    def fetchall(self) -> list[Any]:
        return []

    def __iter__(self) -> Iterator[Any]:
        return iter(())


class PgConnection:
    """A psycopg connection as the concern mixins use sqlite3's (see the module's docstring)."""

    def __init__(self, connection: psycopg.Connection[Any], where: str) -> None:
        self._conn = connection
        self.where = where
        self._sql: dict[str, tuple[str, tuple[int, ...] | None]] = {}
        self._copy: dict[str, str | None] = {}

    @classmethod
    def connect(cls, target: PgTarget) -> PgConnection:
        connection = connect(target)
        connection.adapters.register_dumper(bool, _BoolAsInteger)
        where = target.where
        db = cls(connection, where)
        db.execute(f"SET lock_timeout = {PATIENCE_MS}")
        return db

    def _prepared(self, sql: str, parameters: Any) -> tuple[str, Any]:
        if not parameters:
            return sql, None  # sent as it is: no placeholders, a `%` is itself
        known = self._sql.get(sql)
        if known is None:
            known = self._sql[sql] = translate(sql)
        text, order = known
        if order is not None:
            parameters = [parameters[i] for i in order]
        return text, parameters

    def execute(self, sql: str, parameters: Any = (), /) -> psycopg.Cursor[Any] | _NoRows:
        if sql == "ROLLBACK" and (self._conn.closed or self._conn.broken):
            return _NoRows()
        text, values = self._prepared(sql, parameters)
        try:
            return self._conn.execute(text, values)
        except psycopg.Error as exc:
            raise self._error(exc) from None

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> psycopg.Cursor[Any] | _NoRows:
        rows: Sequence[Any] = parameters if isinstance(parameters, Sequence) else list(parameters)
        if not rows:
            return _NoRows()
        cursor = self._conn.cursor()
        if sql not in self._copy:
            self._copy[sql] = as_copy(sql)
        copy = self._copy[sql]
        if copy is not None:
            # A plain INSERT of many rows is COPY's: the same rows, constraints, defaults and
            # triggers, several times faster than one statement a row (an ingest's papers).
            try:
                with cursor.copy(copy) as copying:
                    for row in rows:
                        copying.write_row(row)
            except psycopg.Error as exc:
                raise self._error(exc) from None
            return cursor
        known = self._sql.get(sql)
        if known is None:
            known = self._sql[sql] = translate(sql)
        text, order = known
        if order is not None:
            rows = [[row[i] for i in order] for row in rows]
        try:
            cursor.executemany(text, rows)
        except psycopg.Error as exc:
            raise self._error(exc) from None
        return cursor

    def close(self) -> None:
        self._conn.close()

    def _error(self, exc: psycopg.Error) -> StoreError:
        if self._conn.broken or (isinstance(exc, psycopg.OperationalError) and self._conn.closed):
            return StoreError(f"{self.where}: lost the connection to the store: {_what(exc)}")
        if isinstance(exc, psycopg.errors.LockNotAvailable):
            return StoreError(
                f"{self.where}: the store is busy: {_what(exc)} (a running `digest run` or "
                "`digest schedule` holds what this needs: try again when it is done)"
            )
        return StoreError(f"{self.where}: {_what(exc)}")


def _what(exc: psycopg.Error) -> str:
    """One line of a psycopg error: what the server (or libpq) said, nothing of the query."""
    diag = getattr(exc, "diag", None)
    primary = diag.message_primary if diag is not None else None
    text = primary or str(exc) or type(exc).__name__
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    # libpq's connection errors read `connection to server at "..." failed: FATAL:  ...`
    line = lines[0] if lines else type(exc).__name__
    line = re.sub(r"\s+", " ", line)
    sqlstate = getattr(exc, "sqlstate", None)
    if sqlstate == "28P01" or "password authentication failed" in line:
        return f"authentication failed ({line})"
    if sqlstate in ("57P01", "57P02", "57P03"):
        return f"the server closed the connection ({line})"
    if "server closed the connection" in line or "consuming input failed" in line:
        return "the server closed the connection unexpectedly"
    return line


# -- the store ----------------------------------------------------------------------------------


class PostgresStore(Store):
    """A PostgreSQL store: `Store`'s concerns over a PgConnection, and what differs: opening,
    migrating (schema.migrate_postgresql), size and vacuum."""

    dialect = POSTGRESQL
    # Hosts share it: feeds and signing keys are kept in it, not in files (shared.py).
    shared = True

    def __init__(self, connection: PgConnection, target: PgTarget) -> None:
        self._db = connection
        self._target = target
        self.where = target.where
        self.path = Path(target.where)  # for the messages that name the store by its path

    @classmethod
    def open(cls, path: Path) -> Store:
        """Not for PostgreSQL (Store.open opens a SQLite file): use connect, or open_store."""
        raise TypeError(f"{path}: a PostgreSQL store is opened with PostgresStore.connect(target)")

    @classmethod
    def connect(cls, target: PgTarget) -> PostgresStore:
        """Connect, and bring the database's schema up to date."""
        db = PgConnection.connect(target)
        try:
            migrate_postgresql(db, target.where)
        except BaseException:
            db.close()
            raise
        return cls(db, target)

    def another(self) -> PostgresStore:
        """A second connection to the same database (a reader beside a writer); close it too."""
        return type(self).connect(self._target)

    def size(self) -> StoreSize:
        """The database's size on the server (no -wal of its own: 0), and the bytes of the
        store's tables and their indexes."""
        total, used = self._db.execute(
            """SELECT pg_database_size(current_database()),
                      (SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint
                       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                       WHERE c.relkind = 'r' AND n.nspname = current_schema())"""
        ).fetchone()
        return StoreSize(file_bytes=int(total), wal_bytes=0, used_bytes=int(used))

    def check(self, *, quick: bool = False) -> list[str]:
        """Every table of the store read through (with data checksums on, PostgreSQL checks each
        page as it reads it); the problems found, none when it is sound. `quick` counts the rows
        of each table by its primary key index instead. PostgreSQL's amcheck extension goes
        further, where the administrator has installed it."""
        problems = []
        tables = self._db.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY 1"
        ).fetchall()
        for (table,) in tables:
            try:
                if quick:
                    self._db.execute(f'SELECT count(*) FROM "{table}"')
                else:  # every column of every row: TOASTed values are read too
                    self._db.execute(f'SELECT sum(length(t::text)) FROM "{table}" t')
            except StoreError as exc:
                problems.append(f"table {table}: {exc}")
        return problems

    def vacuum(self) -> None:
        """VACUUM (ANALYZE) the store's tables; space goes back to PostgreSQL for reuse (a
        VACUUM FULL, which locks each table while it rewrites it, is the administrator's)."""
        with self.patience(5):
            self._db.execute("VACUUM (ANALYZE)")
