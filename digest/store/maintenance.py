"""The store itself: retention (prune), small facts about it (meta, the quiet facts an idle run
compares), its size and daily size samples, vacuum, SQLite's integrity check and online backup. Tables: meta, store_sizes; prune asks each
concern's module to delete its own old rows."""

from __future__ import annotations

import os
import sqlite3
import tempfile
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from digest import durable
from digest.errors import StoreError
from digest.store import digests, ledger, papers, runs, subscribers
from digest.store.base import Connected, what_went_wrong

PRUNE_BATCH = 5000  # digests looked at in one transaction of a prune


class MaintenanceStoreMixin(Connected):
    """Retention, meta facts and size of the SQLite store."""

    def prune(self, before: datetime | date, now: datetime) -> PruneReport:
        """Delete what is older than `before`: the digests of earlier days with their items and
        ledger rows, runs and their source runs, HTTP validators not renewed since, short links
        made for mails of earlier days, and the sources' notes no digest kept names. Idempotent.

        Never what an unfinished delivery needs: a digest with a ledger row still pending,
        sending, deferred or uncertain is kept, items and rows, however old (checked again in
        each batch's transaction, so a row that changed meanwhile counts as it is then). Papers
        (and their history, marks, vectors and old keys) are never pruned: identifying a new sighting
        compares it with every paper ever seen, so a paper forgotten would come back as new. Each
        source keeps its newest KEEP_SOURCE_RUNS runs, however old, for its health and status.

        Digests go PRUNE_BATCH at a time, each batch in one transaction, so a first prune of a
        large store never holds the write lock for long; runs, validators and links go in the
        last one, with the time of this prune.
        """
        from datetime import UTC

        cutoff = (
            before.astimezone(UTC)
            if isinstance(before, datetime)
            else datetime.combine(before, datetime.min.time(), tzinfo=UTC)
        )
        cutoff_day, cutoff_at = cutoff.date().isoformat(), cutoff.isoformat()
        counts = dict.fromkeys(("digests", "ledger", "kept"), 0)
        after: tuple[str, str] = ("", "")  # (day, profile) of the last digest looked at
        try:
            while True:
                with self._transaction():
                    old = digests.old_digests(self._db, cutoff_day, after, PRUNE_BATCH)
                    doomed = [(profile, day) for day, profile, owed in old if not owed]
                    # Ledger rows first (for the count); deleting a digest would cascade to them.
                    counts["ledger"] += ledger.delete_rows(self._db, doomed)
                    counts["digests"] += digests.delete_digests(self._db, doomed)
                    counts["kept"] += len(old) - len(doomed)
                if len(old) < PRUNE_BATCH:
                    break
                after = (old[-1][0], old[-1][1])
            with self._transaction():
                run_count, source_runs, validators = runs.prune_runs(self._db, cutoff_at)
                digests.prune_sources(self._db, cutoff_day)
            # A short link is kept from the mail that first carried it (digest.until). A
            # feedback link names one paper of one profile's digest, and a digest's feedback
            # code (/digest-links/DAY/PROFILE) that digest, so each is carried by its mail alone; manage and unsubscribe links are the same in every mail to an
            # address, so their first mail's date says nothing: they are kept (one of each per
            # address), and an old mail's unsubscribe link always works. In batches as well: a
            # busy day's mails hold a million links.
            links, batch = 0, PRUNE_BATCH * 20
            while True:
                with self._transaction():
                    deleted = subscribers.prune_short_links(self._db, cutoff_at, batch)
                links += deleted
                if deleted < batch:
                    break
            with self._transaction():
                self._db.execute("DELETE FROM store_sizes WHERE day < ?", (cutoff_day,))
                self._set_meta("pruned_at", now.isoformat())
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: could not prune the store: {what_went_wrong(exc)}") from None
        return PruneReport(
            before=cutoff.date(),
            digests=counts["digests"],
            deliveries=counts["ledger"],
            runs=run_count,
            source_runs=source_runs,
            http_validators=validators,
            short_links=links,
            kept_unfinished=counts["kept"],
        )

    def meta(self, key: str) -> str | None:
        """A small fact about the store itself (e.g. "pruned_at"), or None."""
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row else None

    def set_meta(self, key: str, value: str | None) -> None:
        """Keep a small fact about the store (None: forget it)."""
        with self._transaction():
            if value is None:
                self._db.execute("DELETE FROM meta WHERE key = ?", (key,))
            else:
                self._set_meta(key, value)

    def quiet_facts(self) -> tuple[bool, datetime | None, str, str]:
        """What an idle run checks (digest.quiet), a few index look-ups: whether a delivery is
        open (pending, deferred or sending), when the oldest uncertain one was tried, the newest
        paper's first sighting, and the count of changes to the web subscribers."""
        open_rows, uncertain = ledger.open_rows(self._db)
        return (
            open_rows,
            uncertain,
            papers.newest_first_seen(self._db),
            self.meta("subscribers_changed") or "",
        )

    def _set_meta(self, key: str, value: str) -> None:
        self._db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def size(self) -> StoreSize:
        """The store's size now: its file and -wal on disk, and the bytes of the pages in use."""
        page_size = self._db.execute("PRAGMA page_size").fetchone()[0]
        pages = self._db.execute("PRAGMA page_count").fetchone()[0]
        free = self._db.execute("PRAGMA freelist_count").fetchone()[0]
        return StoreSize(
            file_bytes=_file_size(self.path),
            wal_bytes=_file_size(self.path.with_name(self.path.name + "-wal")),
            used_bytes=(pages - free) * page_size,
        )

    def kept_counts(self) -> tuple[int, int]:
        """How many digests and ledger rows the store holds (a count over each: not cheap)."""
        return digests.count_digests(self._db), ledger.count_rows(self._db)

    def record_size(self, now: datetime) -> SizeSample:
        """Keep today's (UTC) sample of the store's size and counts, for its growth."""
        from datetime import UTC

        size = self.size()
        kept_digests, kept_rows = self.kept_counts()
        sample = SizeSample(
            day=now.astimezone(UTC).date(),
            used_bytes=size.used_bytes,
            file_bytes=size.file_bytes + size.wal_bytes,
            digests=kept_digests,
            deliveries=kept_rows,
        )
        with self._transaction():
            self._db.execute(
                """INSERT INTO store_sizes VALUES (?, ?, ?, ?, ?)
                   ON CONFLICT (day) DO UPDATE SET used_bytes = excluded.used_bytes,
                   file_bytes = excluded.file_bytes, digests = excluded.digests,
                   deliveries = excluded.deliveries""",
                (sample.day.isoformat(), sample.used_bytes, sample.file_bytes, kept_digests, kept_rows),
            )
        return sample

    def size_samples(self, since: date) -> list[SizeSample]:
        """The daily size samples from `since` on, oldest first."""
        rows = self._db.execute(
            "SELECT day, used_bytes, file_bytes, digests, deliveries FROM store_sizes "
            "WHERE day >= ? ORDER BY day",
            (since.isoformat(),),
        )
        return [SizeSample(date.fromisoformat(row[0]), *row[1:]) for row in rows]

    def vacuum(self) -> None:
        """Rewrite the file without its free pages (SQLite VACUUM), then fold the -wal back into
        it and truncate it. Waits a few seconds at most for a job writing to the store."""
        try:
            with self.patience(5):
                self._db.execute("VACUUM")
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: could not vacuum the store: {what_went_wrong(exc)}") from None

    def check(self, *, quick: bool = False) -> list[str]:
        """SQLite's own check of the whole file (PRAGMA integrity_check; quick_check, which skips
        matching the indexes against their tables, with `quick`): the problems it found, at most
        100; none when the store is sound. Reads every page: a large store takes a while."""
        pragma = "quick_check" if quick else "integrity_check"
        try:
            problems = [str(row[0]) for row in self._db.execute(f"PRAGMA {pragma}(100)")]
            return [] if problems == ["ok"] else problems
        except sqlite3.ProgrammingError:
            raise
        except sqlite3.DatabaseError as exc:
            whole = str(exc)
        # SQLite stops at a page it cannot read at all: each table checked on its own says which.
        problems = []
        tables = self._db.execute("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
        for (table,) in tables.fetchall():
            try:
                found = [str(row[0]) for row in self._db.execute(f'PRAGMA {pragma}("{table}")')]
            except sqlite3.ProgrammingError:
                raise
            except sqlite3.DatabaseError as exc:
                found = [str(exc)]
            problems += [f"table {table}: {problem}" for problem in found if problem != "ok"]
        return problems or [whole]

    def backup(self, target: Path) -> None:
        """Copy the store, as one consistent moment of it, to `target` (SQLite's online backup:
        runs and `digest serve` may go on meanwhile). Written to a temporary file beside `target`,
        then renamed over it, so `target` is a whole copy or what it was. Never the store itself."""
        if not isinstance(self._db, sqlite3.Connection):
            raise StoreError(
                f"{self.path}: `digest store backup` copies a SQLite store; back this one up with "
                "its database's own tools (pg_dump for PostgreSQL)"
            )
        target = target.absolute()
        live = {self.path.absolute(), *(Path(f"{self.path.absolute()}{s}") for s in ("-wal", "-shm"))}
        if target in live or (target.exists() and target.resolve() in {p.resolve() for p in live}):
            raise StoreError(f"{target}: that is the live store; name another file for its backup")
        if target.is_dir():
            raise StoreError(f"{target}: is a folder; name a file for the backup")
        try:
            descriptor, name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        except OSError as exc:
            raise StoreError(f"{target}: cannot write the backup: {exc.strerror or exc}") from None
        os.close(descriptor)
        temporary = Path(name)
        try:
            copy = sqlite3.connect(temporary)
            try:
                self._db.backup(copy)
            finally:
                copy.close()
            with temporary.open("rb+") as written:
                os.fsync(written.fileno())
            temporary.replace(target)
            durable.fsync_folder(target.parent)
        except (OSError, sqlite3.Error) as exc:
            temporary.unlink(missing_ok=True)
            raise StoreError(f"{target}: could not back the store up: {what_went_wrong(exc)}") from None



@dataclass(frozen=True, slots=True)
class PruneReport:
    """What one `Store.prune` deleted, per table, and the old digests it kept."""

    before: date
    digests: int = 0  # with their items, packed in their rows
    deliveries: int = 0
    runs: int = 0
    source_runs: int = 0
    http_validators: int = 0
    short_links: int = 0
    kept_unfinished: int = 0  # digests older than `before` an unfinished delivery still needs

    @property
    def removed(self) -> int:
        return (
            self.digests + self.deliveries + self.runs + self.source_runs
            + self.http_validators + self.short_links
        )

    def line(self) -> str:
        """One line for the log and the terminal."""
        text = (
            f"pruned what is older than {self.before.isoformat()}: "
            f"{_counted(self.digests, 'digest')} ({_counted(self.deliveries, 'ledger row')}), "
            f"{_counted(self.runs, 'run')} "
            f"({_counted(self.source_runs, 'source run')}), "
            f"{_counted(self.http_validators, 'HTTP validator')}, "
            f"{_counted(self.short_links, 'short link')}"
        )
        if self.kept_unfinished:
            text += (
                f"; kept {_counted(self.kept_unfinished, 'older digest')} an unfinished "
                "delivery needs"
            )
        return text


def _counted(count: int, thing: str) -> str:
    return f"{count:,} {thing}" + ("" if count == 1 else "s")


@dataclass(frozen=True, slots=True)
class StoreSize:
    file_bytes: int  # the database file
    wal_bytes: int  # its -wal beside it
    used_bytes: int  # pages in use, free pages not counted

    @property
    def total_bytes(self) -> int:
        return self.file_bytes + self.wal_bytes


@dataclass(frozen=True, slots=True)
class SizeSample:
    day: date  # UTC
    used_bytes: int
    file_bytes: int
    digests: int
    deliveries: int


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0

