"""Run history: each run, each source's part in it, the HTTP validators a source's answers
carried, and problems that belong to no source. Tables: runs, source_runs, http_cache, problems."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from digest.models import FetchResult, SourceRun
from digest.store.base import Connected
from digest.store.dialect import Connection

# Each source's newest runs, kept however old: its health and `digest status` read this many.
KEEP_SOURCE_RUNS = 50


class RunStoreMixin(Connected):
    """The run-history concern of the SQLite store."""

    def begin_run(self, command: str, started: datetime) -> int:
        with self._transaction():
            (run_id,) = self._db.execute(
                "INSERT INTO runs (command, started) VALUES (?, ?) RETURNING id",
                (command, started.isoformat()),
            ).fetchone()
        return int(run_id)

    def finish_run(self, run_id: int, finished: datetime) -> None:
        with self._transaction():
            self._db.execute(
                "UPDATE runs SET finished = ? WHERE id = ?", (finished.isoformat(), run_id)
            )

    def record_source_run(self, run_id: int, run: SourceRun) -> None:
        with self._transaction():
            self._db.execute(
                """INSERT INTO source_runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT (run_id, source) DO UPDATE SET started = excluded.started,
                   duration_s = excluded.duration_s, fetched = excluded.fetched,
                   parsed = excluded.parsed, new = excluded.new, status = excluded.status,
                   error = excluded.error""",
                (
                    run_id,
                    run.source,
                    run.started.isoformat(),
                    run.duration_s,
                    run.fetched,
                    run.parsed,
                    run.new,
                    run.status,
                    run.error,
                ),
            )

    def source_runs(self, source: str, limit: int = 20) -> list[SourceRun]:
        """A source's run history, newest first."""
        rows = self._db.execute(
            """SELECT source, started, duration_s, fetched, parsed, new, status, error
               FROM source_runs WHERE source = ? ORDER BY started DESC, run_id DESC LIMIT ?""",
            (source, limit),
        )
        return [_source_run(row) for row in rows]

    def source_runs_between(self, since: datetime, until: datetime) -> list[SourceRun]:
        """Every source's runs that started in [since, until), oldest first."""
        rows = self._db.execute(
            """SELECT source, started, duration_s, fetched, parsed, new, status, error
               FROM source_runs WHERE started >= ? AND started < ? ORDER BY started, run_id""",
            (since.isoformat(), until.isoformat()),
        )
        return [_source_run(row) for row in rows]

    def validators(self, url: str) -> tuple[str | None, str | None]:
        row = self._db.execute(
            "SELECT etag, last_modified FROM http_cache WHERE url = ?", (url,)
        ).fetchone()
        return (row[0], row[1]) if row else (None, None)

    # -- problems that belong to no source ------------------------------------------------------

    def set_problem(self, part: str, problem: str | None, at: datetime) -> None:
        """Record (or, with None, clear) a problem of one part of the tool, for `digest status`."""
        with self._transaction():
            if problem is None:
                self._db.execute("DELETE FROM problems WHERE part = ?", (part,))
            else:
                self._db.execute(
                    """INSERT INTO problems VALUES (?, ?, ?) ON CONFLICT (part)
                       DO UPDATE SET problem = excluded.problem""",
                    (part, problem, at.isoformat()),
                )

    def problems(self) -> dict[str, tuple[str, datetime]]:
        rows = self._db.execute("SELECT part, problem, since FROM problems ORDER BY part")
        return {part: (problem, datetime.fromisoformat(since)) for part, problem, since in rows}

    def unfinished_runs(self, since: datetime) -> list[datetime]:
        """When the runs that started since `since` and have not finished started (a run still
        going, or one that was killed)."""
        from datetime import UTC

        rows = self._db.execute(
            "SELECT started FROM runs WHERE finished IS NULL AND started >= ? ORDER BY started",
            (since.astimezone(UTC).isoformat(),),
        )
        return [datetime.fromisoformat(row[0]) for row in rows]


def save_validators(
    db: Connection, results: Iterable[FetchResult], seen_at: datetime
) -> None:
    """Keep the validators of these answers, in the caller's transaction (an ingest's)."""
    db.executemany(
        """INSERT INTO http_cache (url, etag, last_modified, updated) VALUES (?, ?, ?, ?)
           ON CONFLICT (url) DO UPDATE SET etag = excluded.etag,
           last_modified = excluded.last_modified, updated = excluded.updated""",
        [
            (r.url, r.etag, r.last_modified, seen_at.isoformat())
            for r in results
            if not r.unchanged and (r.etag or r.last_modified)
        ],
    )


def prune_runs(db: Connection, cutoff_at: str) -> tuple[int, int, int]:
    """Retention's part here, in the caller's transaction: source runs, runs and HTTP validators
    older than `cutoff_at` (ISO 8601), each source keeping its newest KEEP_SOURCE_RUNS. How many
    (runs, source runs, validators) went."""
    source_runs = 0
    sources = [row[0] for row in db.execute("SELECT DISTINCT source FROM source_runs")]
    for source in sources:
        kept = db.execute(
            """SELECT started FROM source_runs WHERE source = ?
               ORDER BY started DESC LIMIT 1 OFFSET ?""",
            (source, KEEP_SOURCE_RUNS - 1),
        ).fetchone()
        if kept is not None:
            source_runs += db.execute(
                "DELETE FROM source_runs WHERE source = ? AND started < ?",
                (source, min(kept[0], cutoff_at)),
            ).rowcount
    runs = db.execute(
        """DELETE FROM runs WHERE started < ?
           AND NOT EXISTS (SELECT 1 FROM source_runs s WHERE s.run_id = runs.id)""",
        (cutoff_at,),
    ).rowcount
    # A URL's validators are renewed when it answers with new content; one that has
    # not for this long is fetched in full once, then remembered again.
    validators = db.execute("DELETE FROM http_cache WHERE updated < ?", (cutoff_at,)).rowcount
    return runs, source_runs, validators


def _source_run(row: Sequence[Any]) -> SourceRun:
    source, started, duration_s, fetched, parsed, new, status, error = row
    return SourceRun(
        source=source,
        started=datetime.fromisoformat(started),
        duration_s=duration_s,
        fetched=fetched,
        parsed=parsed,
        new=new,
        status=status,
        error=error,
    )

