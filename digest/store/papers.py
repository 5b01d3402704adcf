"""Papers: what an ingest stores (the identity diff is diff.py's, pure), each paper's history of
replaced values, finding and listing papers, and their sentence vectors. Tables: papers,
sightings, paper_history, paper_aliases, embeddings."""

from __future__ import annotations

import functools
import json
import operator
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import date, datetime
from typing import Any

from digest.errors import StoreError
from digest.identify import normalize_doi, normalize_title
from digest.models import FetchResult, Paper, Record
from digest.sources.common import split_arxiv_id
from digest.store import feedback, runs
from digest.store.base import _JSON, Connected, _chunks, what_went_wrong
from digest.store.dialect import INGEST_LOCK, Connection
from digest.store.diff import IngestOutcome, IngestPlan, candidate_lookups, plan_ingest

_COLUMN_FIELDS = frozenset(
    {
        "key",
        "arxiv_id",
        "doi",
        "title",
        "first_seen",
        "first_source",
        "first_listing",
        "published",
        "listed",
        "abstract",
    }
)
_DATA_FIELDS = tuple(f.name for f in fields(Paper) if f.name not in _COLUMN_FIELDS)
_DATETIME_FIELDS = frozenset({"published", "updated", "first_seen"})
_TUPLE_FIELDS = frozenset({"authors", "categories", "ai_keywords", "sources"})


@dataclass(frozen=True, slots=True)
class PaperChange:
    """Values of a paper that a later sighting replaced: when, by which source, and what they were
    (field name -> the value stored before; tuples and datetimes as in Paper)."""

    changed_at: datetime
    source: str
    fields: dict[str, Any]



class PaperStoreMixin(Connected):
    """The papers concern of the SQLite store."""

    def ingest(
        self,
        records: Sequence[Record],
        seen_at: datetime,
        validators: Iterable[FetchResult] = (),
    ) -> IngestOutcome:
        """Store one source's records in one transaction; say which papers were never seen before.

        HTTP validators (ETag, Last-Modified) are saved in the same transaction: a response whose
        records did not make it into the store must not be answered '304 unchanged' next time.
        """
        try:
            with self._transaction():
                outcome = self._ingest(records, seen_at)
                runs.save_validators(self._db, validators, seen_at)
        except sqlite3.Error as exc:
            raise StoreError(
                f"{self.path}: could not store {len(records)} records: {what_went_wrong(exc)}"
            ) from None
        return outcome

    def _ingest(self, records: Sequence[Record], seen_at: datetime) -> IngestOutcome:
        """Load the candidates, plan (pure: diff.plan_ingest), write the plan."""
        if self.dialect.exclusive:
            # Two ingests must not plan on the same stored papers at once (both would insert a
            # paper new to each): PostgreSQL lets writers overlap, so they take turns here.
            self._db.execute(self.dialect.exclusive, (INGEST_LOCK,))
        plan = plan_ingest(self._load(*candidate_lookups(records)), records, seen_at)
        self._write(plan)
        return plan.outcome

    def _write(self, plan: IngestPlan) -> None:
        # Re-key first (the foreign key carries sightings along), then insert and update.
        self._db.executemany("UPDATE papers SET key = ? WHERE key = ?", plan.rekeyed)
        self._remember_old_keys(plan.rekeyed)
        stamp = plan.seen_at.isoformat()
        self._db.executemany(
            f"INSERT INTO papers VALUES ({', '.join('?' * 12)})",
            [_to_row(paper) for paper in plan.inserts],
        )
        # A vector is computed from title and abstract: when either changed, it is computed again.
        self._db.executemany(
            "DELETE FROM embeddings WHERE key = ?",
            [(update.paper.key,) for update in plan.updates if update.text_changed],
        )
        self._db.executemany(
            """UPDATE papers SET arxiv_id=?2, doi=?3, title=?4, title_norm=?5, first_seen=?6,
               first_source=?7, first_listing=?8, published=?9, listed=?10, abstract=?11,
               data=?12
               WHERE key=?1""",
            [_to_row(update.paper) for update in plan.updates],
        )
        self._db.executemany(
            "INSERT INTO paper_history (key, changed_at, source, fields) VALUES (?, ?, ?, ?)",
            [
                (update.paper.key, stamp, update.source, _JSON.encode(update.replaced))
                for update in plan.updates
                if update.replaced
            ],
        )
        self._db.executemany(
            """INSERT INTO sightings (key, source, first_seen, last_seen) VALUES (?, ?, ?, ?)
               ON CONFLICT (key, source) DO UPDATE SET last_seen = excluded.last_seen""",
            [(key, source, stamp, stamp) for key, source in plan.sightings],
        )

    def _remember_old_keys(self, rekeyed: Sequence[tuple[str, str]]) -> None:
        """Keep each re-keyed paper's old key (pairs of (new key, old key)): a stored digest names
        its papers by the key they had then (see migration 12). Chains are flattened: when B
        becomes C, an alias A -> B becomes A -> C, so a key is resolved in one look-up."""
        self._db.executemany("UPDATE paper_aliases SET key = ? WHERE key = ?", rekeyed)
        self._db.executemany(
            """INSERT INTO paper_aliases (old, key) VALUES (?2, ?1)
               ON CONFLICT (old) DO UPDATE SET key = excluded.key""",
            rekeyed,
        )
        # A key that names a paper again is no alias any more (no loop A -> B -> A).
        self._db.executemany("DELETE FROM paper_aliases WHERE old = ?", [(c,) for c, _ in rekeyed])

    def _papers_by_key(self, keys: Iterable[str]) -> dict[str, Paper]:
        return papers_by_key(self._db, keys)

    def _load(self, keys: set[str], dois: set[str], titles: set[str]) -> list[Paper]:
        rows: dict[str, tuple[Any, ...]] = {}
        for column, values in (("key", keys), ("doi", dois), ("title_norm", titles)):
            for chunk in _chunks(sorted(values)):
                where, params = self.dialect.one_of(column, chunk)
                for row in self._db.execute(f"SELECT * FROM papers WHERE {where}", params):
                    rows[row[0]] = row
        return [_from_row(row) for row in rows.values()]

    def paper_history(self, key: str) -> list[PaperChange]:
        """The values later sightings replaced in this paper, oldest first."""
        rows = self._db.execute(
            """SELECT changed_at, source, fields FROM paper_history WHERE key = ?
               ORDER BY changed_at, rowid""",
            (key,),
        )
        return [
            PaperChange(datetime.fromisoformat(at), source, _typed(json.loads(values)))
            for at, source, values in rows
        ]

    def paper(self, key: str) -> Paper | None:
        row = self._db.execute("SELECT * FROM papers WHERE key = ?", (key,)).fetchone()
        return _from_row(row) if row else None

    def count_papers(self) -> int:
        count: int = self._db.execute("SELECT count(*) FROM papers").fetchone()[0]
        return count

    def papers(
        self,
        *,
        source: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        text: str | None = None,
        limit: int | None = 50,
    ) -> list[Paper]:
        """Stored papers, newest first (by first sighting), filtered by source, time and text.

        `since` and `until` bound the first sighting: since <= first_seen < until.
        """
        where: list[str] = []
        params: list[object] = []
        if source:
            where.append("key IN (SELECT key FROM sightings WHERE source = ?)")
            params.append(source)
        if since:
            where.append("first_seen >= ?")
            params.append(since.isoformat())
        if until:
            where.append("first_seen < ?")
            params.append(until.isoformat())
        if text:
            # Case-insensitive for ASCII (SQLite's LIKE, PostgreSQL's ILIKE); its wildcards
            # escaped so the user's text is literal.
            pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            like = self.dialect.case_insensitive_like
            where.append(
                f"(title {like} ? ESCAPE '\\' OR abstract {like} ? ESCAPE '\\'"
                f" OR data {like} ? ESCAPE '\\')"
            )
            params += [pattern, pattern, pattern]
        sql = "SELECT * FROM papers"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY first_seen DESC, coalesce(listed, published, '') DESC, key DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [_from_row(row) for row in self._db.execute(sql, params)]

    def find(self, reference: str) -> Paper | None:
        """A paper named by key, arXiv id (any version, 'arXiv:' prefix), DOI or exact title."""
        text = reference.strip()
        if text.lower().startswith("arxiv:"):
            text = text[6:]
        arxiv_id, _ = split_arxiv_id(text)
        for column, value in (("key", text), ("arxiv_id", arxiv_id), ("doi", normalize_doi(text))):
            if value:
                row = self._db.execute(
                    f"SELECT * FROM papers WHERE {column} = ? LIMIT 1", (value,)
                ).fetchone()
                if row:
                    return _from_row(row)
        row = self._db.execute(
            "SELECT * FROM papers WHERE title_norm = ? ORDER BY first_seen LIMIT 1",
            (normalize_title(text),),
        ).fetchone()
        return _from_row(row) if row else None

    # -- sentence vectors and learned profiles ------------------------------------------------

    def embeddings(self, keys: Sequence[str], model: str) -> dict[str, bytes]:
        """The stored vectors (float16 bytes) of these papers computed by `model`; others left out.
        Papers known only from an imported library keep theirs in the library table."""
        found: dict[str, bytes] = {}
        for chunk in _chunks(sorted(set(keys))):
            found.update(feedback.library_vectors(self._db, model, chunk))
            # a stored paper's own vector wins
            sql = f"SELECT key, vector FROM embeddings WHERE model = ? AND key IN ({', '.join('?' * len(chunk))})"
            found.update(self._db.execute(sql, [model, *chunk]).fetchall())
        return found

    def save_embeddings(self, model: str, vectors: Mapping[str, bytes]) -> None:
        """Keep papers' vectors; a paper no longer stored under that key (re-keyed) is skipped."""
        try:
            with self._transaction():
                if self.dialect.exclusive:
                    # Not beside an ingest re-keying these papers (its key might go between the
                    # EXISTS and the foreign key's check): they take turns, as under SQLite.
                    self._db.execute(self.dialect.exclusive, (INGEST_LOCK,))
                self._db.executemany(
                    """INSERT INTO embeddings (key, model, vector)
                       SELECT ?1, ?2, ?3 WHERE EXISTS (SELECT 1 FROM papers WHERE key = ?1)
                       ON CONFLICT (key) DO UPDATE SET model = excluded.model,
                       vector = excluded.vector""",
                    [(key, model, blob) for key, blob in vectors.items()],
                )
                feedback.save_library_vectors(self._db, model, vectors)
        except sqlite3.Error as exc:
            raise StoreError(
                f"{self.path}: could not store {len(vectors)} vectors: {what_went_wrong(exc)}"
            ) from None


def papers_by_key(db: Connection, keys: Iterable[str]) -> dict[str, Paper]:
    """The papers named by these keys, each under the key asked for; a key a paper had before
    it was re-keyed finds it through paper_aliases. Keys of no paper are left out."""
    wanted = sorted(set(keys))
    found = _papers_by_key_exactly(db, wanted)
    missing = [key for key in wanted if key not in found]
    aliases: dict[str, str] = {}
    for chunk in _chunks(missing):
        sql = f"SELECT old, key FROM paper_aliases WHERE old IN ({', '.join('?' * len(chunk))})"
        aliases.update(db.execute(sql, chunk).fetchall())
    if aliases:
        current = _papers_by_key_exactly(db, aliases.values())
        found.update((old, current[key]) for old, key in aliases.items() if key in current)
    return found


def _papers_by_key_exactly(db: Connection, keys: Iterable[str]) -> dict[str, Paper]:
    found: dict[str, Paper] = {}
    for chunk in _chunks(sorted(set(keys))):
        sql = f"SELECT * FROM papers WHERE key IN ({', '.join('?' * len(chunk))})"
        for row in db.execute(sql, chunk):
            found[row[0]] = _stored_paper(tuple(row))
    return found


def newest_first_seen(db: Connection) -> str:
    """The newest paper's first sighting as stored (ISO 8601), or "" when there is none."""
    newest = db.execute("SELECT max(first_seen) FROM papers").fetchone()[0]
    return str(newest or "")


_paper_data = operator.attrgetter(*_DATA_FIELDS)


def _to_row(paper: Paper) -> tuple[Any, ...]:
    # The hot path of an ingest: plain loops, empty values left out, tuples written as JSON arrays.
    data: dict[str, Any] = {}
    for name, value in zip(_DATA_FIELDS, _paper_data(paper), strict=True):
        if value is None or value == "" or value == ():
            continue
        data[name] = value.isoformat() if isinstance(value, date) else value
    return (
        paper.key,
        paper.arxiv_id,
        paper.doi,
        paper.title,
        normalize_title(paper.title),
        paper.first_seen.isoformat(),
        paper.first_source,
        paper.first_listing,
        paper.published.isoformat() if paper.published else None,
        paper.listed.isoformat() if paper.listed else None,
        paper.abstract,
        _JSON.encode(data),
    )


# What a paper's history keeps when a sighting replaces it: every stored fact but the volatile ones
# (upvotes and the like change daily: they are no correction) and the bookkeeping (key, sources,


def _typed(values: dict[str, Any]) -> dict[str, Any]:
    """JSON values back as Paper holds them: lists as tuples, dates and datetimes parsed."""
    for name, value in values.items():
        if isinstance(value, list):
            values[name] = tuple(value)
        elif name in _DATETIME_FIELDS:
            values[name] = datetime.fromisoformat(value)
        elif name == "listed":
            values[name] = date.fromisoformat(value)
    return values



@functools.lru_cache(maxsize=8192)
def _stored_paper(row: tuple[Any, ...]) -> Paper:
    """A paper read as part of a digest: the same stored row gives the same (immutable) Paper,
    so a run reading 10,000 digests of the same 500 papers decodes each once and holds it once.
    Keyed on the whole row, so a paper changed since is decoded anew."""
    return _from_row(row)


def _from_row(row: Sequence[Any]) -> Paper:
    (
        key,
        arxiv_id,
        doi,
        title,
        _title_norm,
        first_seen,
        first_source,
        first_listing,
        published,
        listed,
        abstract,
        data_json,
    ) = row
    values: dict[str, Any] = json.loads(data_json)
    for name, value in values.items():
        if name in _TUPLE_FIELDS:
            values[name] = tuple(value)
        elif name in _DATETIME_FIELDS:
            values[name] = datetime.fromisoformat(value)
    return Paper(
        key=key,
        arxiv_id=arxiv_id,
        doi=doi,
        title=title,
        first_seen=datetime.fromisoformat(first_seen),
        first_source=first_source,
        first_listing=first_listing,
        published=datetime.fromisoformat(published) if published else None,
        listed=date.fromisoformat(listed) if listed else None,
        abstract=abstract,
        **values,
    )

