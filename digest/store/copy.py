"""`digest store copy`: a store copied whole to another (SQLite to PostgreSQL, and back) (issue 17).

The tables are the schema's own, found at run time in each engine's catalogue (so a table a later
migration adds is copied with no edit here), in the order their foreign keys need (parents first),
in batches of rows as they are: TEXT stays TEXT (timestamps included), BLOB and BYTEA the same
bytes, REAL the same double, and the ids of identity (rowid) columns kept, each PostgreSQL
sequence then set past the largest. The schema's bookkeeping (PostgreSQL's schema_version,
SQLite's sqlite_* tables) is each store's own and is not copied.

The source is read in one snapshot (SQLite: one read transaction; PostgreSQL: REPEATABLE READ,
read only), so a run writing it meanwhile is copied as it was at one moment or not at all; the
target is written in one transaction with its triggers off (the rows are copied as they are,
counters included), so an interrupted copy leaves it as it was.

Safe to run again: the target must be empty (as a newly made store is) or a previous copy of this
same store (the same `store_id` in meta, given to the source by its first copy); anything else is
refused. Into a copy, only the rows the target does not hold as they are are inserted (compared
whole, as a multiset: a table with no key is not doubled), and a row whose key the target already
has is left as the target has it (`ON CONFLICT DO NOTHING`: a copy in use since is never set back)
but counted, so the command says which tables differ and exits 1.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import sqlite3
import tempfile
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from digest.errors import StoreError
from digest.store.sqlite import Store
from digest.tokens import SECRET_FILE

BATCH = 5000  # rows an executemany
STORE_ID = "store_id"  # meta: the identity of a store and of its copies
COPIED_FROM = "copied_from"  # meta of a copy: JSON {store_id, from, at}
_POSTGRESQL_BOOKKEEPING = frozenset({"schema_version"})
# The links' signing keys: a row of a shared (PostgreSQL) store, secret.key beside a SQLite one,
# whose table stays empty; a copy carries them the store's own way (carry_link_keys).
LINK_KEYS_TABLE = "signing_keys"


@dataclass(frozen=True, slots=True)
class Table:
    """What a copy needs to know of one table of one store."""

    name: str
    columns: tuple[str, ...]
    parents: frozenset[str]  # the tables its foreign keys name
    keyed: bool  # a primary key or a unique constraint: ON CONFLICT finds a row already there
    identity: tuple[str, ...] = ()  # PostgreSQL identity columns
    rowid: bool = False  # SQLite: a rowid table (its `rowid` can be read and written)
    triggers: tuple[tuple[str, str], ...] = ()  # SQLite: (name, CREATE TRIGGER ...)


@dataclass(slots=True)
class CopyReport:
    """Rows per table, the source's (in its snapshot) beside the target's after the copy."""

    source: str
    target: str
    counts: list[tuple[str, int, int]] = field(default_factory=list)
    refreshed: bool = False  # the target held a previous copy
    # Into an earlier copy: rows of the store whose key the target holds with other values, left
    # as the target has them (it may have been used since, or the store changed), by table
    kept: dict[str, int] = field(default_factory=dict)
    keys: str = ""  # what carry_link_keys did

    @property
    def differing(self) -> list[str]:
        """The tables whose counts differ, or whose rows the target holds otherwise."""
        return [
            name for name, source, target in self.counts if source != target or name in self.kept
        ]

    def table(self) -> str:
        width = max([len("table"), *(len(name) for name, _, _ in self.counts)])
        lines = [f"{'table':<{width}}  {'source':>10}  {'target':>10}"]
        for name, source, target in self.counts:
            flag = "" if source == target else "  differs"
            if name in self.kept:
                flag += f"  {self.kept[name]:,} rows held otherwise"
            lines.append(f"{name:<{width}}  {source:>10,}  {target:>10,}{flag}")
        return "\n".join(lines)


def copy_store(
    source: Store, target: Store, now: datetime, data_dir: Path | None = None, batch: int = BATCH
) -> CopyReport:
    """Copy every table of `source` into `target` (both open and migrated to this release's
    schema), then the links' signing keys (carry_link_keys, from `data_dir`, the source's data
    directory, when given); the rows of each table counted on both sides after. A StoreError of
    one line when the target holds another store's data, or when either store fails."""
    if _same(source, target):
        raise StoreError(f"{target.path}: the target is the store itself")
    report = CopyReport(_where(source), _where(target))
    identity = _identity(source)
    src, dst = _Side(source), _Side(target)
    try:
        src.begin_snapshot()
        try:
            tables = _plan(src.tables(), dst.tables(), report)
            source_counts = {t.name: src.count(t.name) for t in tables}
            dst.begin_write()
            try:
                fresh = _fresh_counts()
                target_counts = {t.name: dst.count(t.name) for t in tables}
                empty = all(target_counts[t.name] == fresh.get(t.name, 0) for t in tables)
                if not empty:
                    held = dst.meta(STORE_ID)
                    if held != identity:
                        busy = sorted(n for n, c in target_counts.items() if c != fresh.get(n, 0))
                        raise StoreError(
                            f"{report.target}: already holds another store's data (rows in "
                            f"{', '.join(busy[:4])}{', ...' if len(busy) > 4 else ''}); copy into "
                            "an empty database or a new file"
                        )
                    report.refreshed = True
                dst.triggers_off(tables)
                for table in _parents_first(tables):
                    if empty and target_counts[table.name]:
                        dst.execute(f"DELETE FROM {_q(table.name)}")  # a new store's own rows
                    kept = _copy_table(src, dst, table, merge=not empty, batch=batch)
                    if kept:
                        report.kept[table.name] = kept
                dst.identities_on(tables)
                dst.triggers_on(tables)
                marker = json.dumps(
                    {"store_id": identity, "from": report.source, "at": now.isoformat()}
                )
                dst.execute(
                    "INSERT INTO meta (key, value) VALUES (?, ?)"
                    " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (COPIED_FROM, marker),
                )
                meta_gains = 0 if src.meta(COPIED_FROM) is not None else 1
                dst.execute("COMMIT")
            except BaseException:
                dst.rollback()
                raise
        finally:
            src.rollback()
        if data_dir is not None:
            report.keys = carry_link_keys(source, target, data_dir)
        for table in tables:
            expected = source_counts[table.name] + (meta_gains if table.name == "meta" else 0)
            found = dst.count(table.name)
            if table.name == LINK_KEYS_TABLE and not source.shared:
                expected = found  # a SQLite store's keys are its secret.key (carry_link_keys)
            report.counts.append((table.name, expected, found))
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"copying {report.source} to {report.target}: {exc}") from None
    return report


def carry_link_keys(source: Store, target: Store, data_dir: Path) -> str:
    """The keys that sign the links of mails already sent, taken along so those links keep
    working, each store keeping them its own way (digest/store/shared.py): a PostgreSQL target
    without keys of its own takes a SQLite store's secret.key from `data_dir` at its first
    `signing_keys` (a PostgreSQL store's keys are a row, copied with its table); a SQLite target
    gets the source's keys as the secret.key beside its file, unless it has one. What was done,
    in a line."""
    keys = source.signing_keys(data_dir)
    if target.shared:
        held = target.signing_keys(data_dir)
        same = held[: len(keys)] == keys
        return "link keys: in the target's store" + ("" if same else " (its own, kept: links mailed "
                                                       "from the store may not open there)")
    path = target.path.parent / SECRET_FILE
    if path.exists():
        return f"link keys: {path} kept as it is"
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    try:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="ascii") as handle:
            handle.write("".join(f"{key}\n" for key in keys))
            handle.flush()
            os.fsync(handle.fileno())
        os.link(temporary, path)
    except OSError as exc:
        raise StoreError(f"{path}: cannot write the signing keys: {exc.strerror or exc}") from None
    finally:
        temporary.unlink(missing_ok=True)
    return f"link keys: written to {path}"


def _where(store: Store) -> str:
    return getattr(store, "where", None) or str(store.path)


def _same(source: Store, target: Store) -> bool:
    if source.dialect.name != target.dialect.name:
        return False
    if source.dialect.name == "sqlite":
        return source.path.resolve() == target.path.resolve()
    return _where(source) == _where(target)


def _identity(store: Store) -> str:
    """The store's identity (meta store_id), given to it now if it has none: its copies carry
    it, so a second copy knows the target for a copy of the same store."""
    known = store.meta(STORE_ID)
    if known is not None:
        return known
    store.set_meta(STORE_ID, uuid.uuid4().hex)
    found = store.meta(STORE_ID)
    assert found is not None
    return found


_FRESH: dict[str, int] = {}


def _fresh_counts() -> dict[str, int]:
    """The rows of each table of a newly made store (a migration's own: meta's counters), so a
    target holding only those is empty."""
    if not _FRESH:
        with (
            tempfile.TemporaryDirectory(prefix="paperdigest-copy-") as folder,
            Store.open(Path(folder) / "new.sqlite3") as new,
        ):
            side = _Side(new)
            _FRESH.update({name: side.count(name) for name in side.tables()})
    return _FRESH


def _plan(source: dict[str, Table], target: dict[str, Table], report: CopyReport) -> list[Table]:
    """The source's tables as copied into the target's: the columns both have (SQLite's implicit
    rowid where the other side names a `rowid` column); refused where the schemas differ."""
    planned = []
    for name, theirs in sorted(source.items()):
        ours = target.get(name)
        if ours is None:
            raise StoreError(f"{report.target}: has no table {name} (schemas differ: is one "
                             "store of an older paperdigest?)")
        source_columns = set(theirs.columns) | ({"rowid"} if theirs.rowid else set())
        target_columns = set(ours.columns) | ({"rowid"} if ours.rowid else set())
        real = set(theirs.columns) | set(ours.columns)
        missing = set(theirs.columns) - target_columns
        if missing:
            raise StoreError(f"{report.target}: table {name} has no column {sorted(missing)[0]} "
                             "(schemas differ: is one store of an older paperdigest?)")
        columns = [c for c in ours.columns if c in source_columns]
        if "rowid" in real and "rowid" not in columns and "rowid" in source_columns & target_columns:
            columns.append("rowid")
        # SQLite's rowid is a key of its own; PostgreSQL's `rowid` column is only an identity
        keyed = ours.keyed or ("rowid" in columns and ours.rowid)
        planned.append(
            Table(name, tuple(columns), theirs.parents | ours.parents, keyed, ours.identity,
                  ours.rowid, ours.triggers)
        )
    return planned


def _parents_first(tables: list[Table]) -> list[Table]:
    """The tables in an order where each comes after the tables its foreign keys name."""
    by_name = {t.name: t for t in tables}
    done: dict[str, Table] = {}

    def visit(table: Table, path: tuple[str, ...]) -> None:
        if table.name in done:
            return
        if table.name in path:
            raise StoreError(f"foreign keys go round in a circle: {' -> '.join(path)}")
        for parent in sorted(table.parents):
            if parent in by_name and parent != table.name:
                visit(by_name[parent], (*path, table.name))
        done[table.name] = table

    for table in tables:
        visit(table, ())
    return list(done.values())


def _copy_table(src: _Side, dst: _Side, table: Table, *, merge: bool, batch: int) -> int:
    """Copy one table's rows; into an earlier copy (`merge`), only those the target does not
    hold as they are. The rows of the store left out because the target holds their key with
    other values (changed on either side since the last copy): their number."""
    columns = ", ".join(_q(c) for c in table.columns)
    overriding = " OVERRIDING SYSTEM VALUE" if table.identity and dst.postgresql else ""
    insert = (
        f"INSERT INTO {_q(table.name)} ({columns}){overriding} VALUES "
        f"({', '.join('?' for _ in table.columns)}) ON CONFLICT DO NOTHING"
    )
    order = " ORDER BY rowid" if "rowid" in table.columns and src.sqlite else ""
    # A copy's marker is its own (written after), not carried from a store that is a copy itself.
    where = f" WHERE key <> '{COPIED_FROM}'" if table.name == "meta" else ""
    rows: Iterable[tuple[Any, ...]] = src.rows(
        f"SELECT {columns} FROM {_q(table.name)}{where}{order}", batch
    )
    if merge:  # the rows the target lacks, compared whole (a table without a key included)
        held = Counter(_digest(row) for row in dst.rows(f"SELECT {columns} FROM {_q(table.name)}", batch))
        rows = _lacking(rows, held)
    tried = inserted = 0
    pending: list[tuple[Any, ...]] = []
    for row in rows:
        pending.append(row)
        if len(pending) >= batch:
            inserted += dst.executemany(insert, pending)
            tried, pending = tried + len(pending), []
    if pending:
        inserted += dst.executemany(insert, pending)
        tried += len(pending)
    return tried - inserted if merge else 0


def _digest(row: tuple[Any, ...]) -> bytes:
    """A row's fingerprint, the same for the same values read from either engine (str, int,
    float, bytes, None), so a table is held in memory as 16 bytes a row."""
    return hashlib.blake2b(repr(tuple(row)).encode(), digest_size=16).digest()


def _lacking(rows: Iterable[tuple[Any, ...]], held: Counter[bytes]) -> Iterator[tuple[Any, ...]]:
    for row in rows:
        key = _digest(row)
        if held[key] > 0:
            held[key] -= 1
        else:
            yield row


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class _Side:
    """One store of a copy: its catalogue, its reads and its writes, whichever the engine."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.db: Any = store._db
        self.postgresql = store.dialect.name == "postgresql"
        self.sqlite = not self.postgresql

    def execute(self, sql: str, parameters: Any = ()) -> Any:
        return self.db.execute(sql, parameters)

    def executemany(self, sql: str, rows: list[tuple[Any, ...]]) -> int:
        """The rows inserted (an executemany's rowcount is the sum of its statements')."""
        return int(self.db.executemany(sql, rows).rowcount)

    def rollback(self) -> None:
        # no transaction open (it ended), or the connection is gone: nothing to undo
        with contextlib.suppress(sqlite3.OperationalError, StoreError):
            self.db.execute("ROLLBACK")

    def begin_snapshot(self) -> None:
        if self.postgresql:
            self.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        else:
            self.execute("BEGIN")
            self.execute("SELECT count(*) FROM sqlite_schema")  # the read snapshot starts here

    def begin_write(self) -> None:
        self.execute(self.store.dialect.begin)

    def count(self, table: str) -> int:
        return int(self.execute(f"SELECT count(*) FROM {_q(table)}").fetchone()[0])

    def meta(self, key: str) -> str | None:
        row = self.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def rows(self, sql: str, batch: int) -> Iterator[tuple[Any, ...]]:
        if self.sqlite:
            yield from self.db.execute(sql)
            return
        yield from _server_side_rows(self.db, sql, batch)

    def tables(self) -> dict[str, Table]:
        return _postgresql_tables(self) if self.postgresql else _sqlite_tables(self)

    def triggers_off(self, tables: list[Table]) -> None:
        """The target's triggers off for the copy (a counter they keep is copied as it is)."""
        if self.postgresql:
            for table in tables:
                self.execute(f"ALTER TABLE {_q(table.name)} DISABLE TRIGGER USER")
        else:
            for table in tables:
                for name, _ in table.triggers:
                    self.execute(f"DROP TRIGGER {_q(name)}")

    def triggers_on(self, tables: list[Table]) -> None:
        if self.postgresql:
            for table in tables:
                self.execute(f"ALTER TABLE {_q(table.name)} ENABLE TRIGGER USER")
        else:
            for table in tables:
                for _, sql in table.triggers:
                    self.execute(sql)

    def identities_on(self, tables: list[Table]) -> None:
        """Each identity column's sequence past the largest id copied (PostgreSQL; SQLite's
        rowids follow their largest by themselves)."""
        if not self.postgresql:
            return
        for table in tables:
            for column in table.identity:
                self.execute(
                    f"SELECT setval(pg_get_serial_sequence(?, ?), max({_q(column)})) "
                    f"FROM {_q(table.name)} HAVING max({_q(column)}) IS NOT NULL",
                    (_q(table.name), column),
                )


def _sqlite_tables(side: _Side) -> dict[str, Table]:
    found = {}
    rows = side.execute(
        "SELECT name, sql FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite%'"
    ).fetchall()
    triggers: dict[str, list[tuple[str, str]]] = {}
    for name, table, sql in side.execute(
        "SELECT name, tbl_name, sql FROM sqlite_schema WHERE type = 'trigger' ORDER BY name"
    ).fetchall():
        triggers.setdefault(table, []).append((name, sql))
    for name, sql in rows:
        info = side.execute(f"PRAGMA table_info({_q(name)})").fetchall()
        columns = tuple(row[1] for row in info)
        parents = frozenset(row[2] for row in side.execute(f"PRAGMA foreign_key_list({_q(name)})"))
        unique = any(row[2] for row in side.execute(f"PRAGMA index_list({_q(name)})"))
        keyed = unique or any(row[5] for row in info)
        rowid = re.search(r"\bWITHOUT\s+ROWID\b", sql or "", re.IGNORECASE) is None
        found[name] = Table(name, columns, parents, keyed, (), rowid, tuple(triggers.get(name, ())))
    return found


def _postgresql_tables(side: _Side) -> dict[str, Table]:
    names = [
        row[0]
        for row in side.execute(
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'"
        ).fetchall()
        if row[0] not in _POSTGRESQL_BOOKKEEPING
    ]
    columns: dict[str, list[str]] = {}
    identity: dict[str, list[str]] = {}
    for table, column, is_identity in side.execute(
        "SELECT table_name, column_name, is_identity FROM information_schema.columns"
        " WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position"
    ).fetchall():
        columns.setdefault(table, []).append(column)
        if is_identity == "YES":
            identity.setdefault(table, []).append(column)
    parents: dict[str, set[str]] = {}
    keyed: set[str] = set()
    for table, kind, parent in side.execute(
        "SELECT c.conrelid::regclass::text, c.contype, c.confrelid::regclass::text"
        " FROM pg_constraint c JOIN pg_class r ON r.oid = c.conrelid"
        " JOIN pg_namespace n ON n.oid = r.relnamespace"
        " WHERE n.nspname = current_schema() AND c.contype IN ('p', 'u', 'f')"
    ).fetchall():
        table = table.strip('"')
        if kind == "f":
            parents.setdefault(table, set()).add(parent.strip('"'))
        else:
            keyed.add(table)
    return {
        name: Table(
            name, tuple(columns.get(name, ())), frozenset(parents.get(name, ())), name in keyed,
            tuple(identity.get(name, ())),
        )
        for name in names
    }


def _server_side_rows(db: Any, sql: str, batch: int) -> Iterator[tuple[Any, ...]]:
    """A PostgreSQL query's rows a batch at a time (a named cursor in the snapshot), not all of
    a large table in memory at once."""
    import psycopg

    try:
        with db._conn.cursor(name=f"digest_copy_{uuid.uuid4().hex[:8]}") as cursor:
            cursor.itersize = batch
            cursor.execute(sql)
            yield from cursor
    except psycopg.Error as exc:
        raise db._error(exc) from None

