"""Feedback: a reader's marks on papers, the libraries imported from reference managers (which
count as "more" marks) and each profile's model learned from them. Tables: feedback, library,
learned_profiles."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from digest.models import Feedback
from digest.store.base import Connected, _chunks
from digest.store.dialect import Connection


class FeedbackStoreMixin(Connected):
    """The feedback concern of the SQLite store."""

    def import_library(
        self, profile: str, entries: Sequence[tuple[str, dict[str, Any]]], at: datetime
    ) -> int:
        """Keep a profile's imported papers (key, fields); returns how many were new to it."""
        if not entries:
            return 0
        with self._transaction():
            # executemany's rowcount: the rows inserted, summed over the entries
            return self._db.executemany(
                """INSERT INTO library (profile, key, paper, imported) VALUES (?, ?, ?, ?)
                   ON CONFLICT (profile, key) DO NOTHING""",
                [(profile, key, json.dumps(fields), at.isoformat()) for key, fields in entries],
            ).rowcount

    def library(self, profiles: Iterable[str] | None = None) -> dict[str, list[str]]:
        """Each profile's imported paper keys, in import order."""
        found: dict[str, list[str]] = {}
        rows: list[tuple[str, str]] = []
        if profiles is None:
            rows = self._db.execute("SELECT profile, key FROM library ORDER BY imported, key").fetchall()
        else:
            for chunk in _chunks(sorted(set(profiles))):
                sql = f"""SELECT profile, key FROM library WHERE profile IN
                          ({", ".join("?" * len(chunk))}) ORDER BY imported, key"""
                rows += self._db.execute(sql, chunk).fetchall()
        for profile, key in rows:
            found.setdefault(profile, []).append(key)
        return found

    def library_papers(self) -> list[tuple[str, dict[str, Any], datetime]]:
        """Imported papers that no source has listed: (key, fields, imported), one per key."""
        # Each key's first import (the lowest profile of those imported first), which SQLite's
        # bare columns beside MIN() gave; PostgreSQL names every column of a GROUP BY.
        rows = self._db.execute(
            """SELECT l.key, l.paper, l.imported FROM library l
               WHERE l.key NOT IN (SELECT key FROM papers)
               AND NOT EXISTS (SELECT 1 FROM library o WHERE o.key = l.key
                   AND (o.imported < l.imported
                        OR (o.imported = l.imported AND o.profile < l.profile)))
               ORDER BY l.key"""
        )
        return [(key, json.loads(fields), datetime.fromisoformat(at)) for key, fields, at in rows]

    def learned_profiles(self) -> dict[str, tuple[str, bytes, float]]:
        """Each profile's learned model as stored: (fingerprint, float32 coefficients, intercept)."""
        rows = self._db.execute(
            "SELECT profile, fingerprint, coefficients, intercept FROM learned_profiles"
        )
        return {profile: (print_, blob, intercept) for profile, print_, blob, intercept in rows}

    def save_learned_profiles(
        self, models: Mapping[str, tuple[str, bytes, float]], at: datetime
    ) -> None:
        with self._transaction():
            self._db.executemany(
                """INSERT INTO learned_profiles VALUES (?, ?, ?, ?, ?)
                   ON CONFLICT (profile) DO UPDATE SET fingerprint = excluded.fingerprint,
                   coefficients = excluded.coefficients, intercept = excluded.intercept,
                   trained = excluded.trained""",
                [
                    (profile, print_, blob, intercept, at.isoformat())
                    for profile, (print_, blob, intercept) in models.items()
                ],
            )

    # -- feedback -------------------------------------------------------------------------------

    def mark(self, profile: str, key: str, mark: str | None, at: datetime) -> None:
        """Record a person's mark on a paper ("more" or "less"); None takes it back."""
        with self._transaction():
            if mark is None:
                self._db.execute(
                    "DELETE FROM feedback WHERE profile = ? AND key = ?", (profile, key)
                )
            else:
                self._db.execute(
                    """INSERT INTO feedback (profile, key, mark, marked) VALUES (?, ?, ?, ?)
                       ON CONFLICT (profile, key) DO UPDATE SET mark = excluded.mark,
                       marked = excluded.marked""",
                    (profile, key, mark, at.isoformat()),
                )

    def feedback(self, profiles: Iterable[str] | None = None) -> dict[str, Feedback]:
        """Every profile's marks (or the named profiles'), oldest first; papers imported from a
        reader's library count as "more" marks."""
        rows = self._db.execute("SELECT profile, key, mark FROM feedback ORDER BY marked, key")
        wanted = set(profiles) if profiles is not None else None
        marks: dict[str, dict[str, list[str]]] = {}
        for profile, key, mark in rows:
            if wanted is None or profile in wanted:
                marks.setdefault(profile, {"more": [], "less": []})[mark].append(key)
        # An imported library counts as "more" marks, unless the reader marked the paper since.
        for profile, keys in self.library(wanted).items():
            profile_marks = marks.setdefault(profile, {"more": [], "less": []})
            marked = {*profile_marks["more"], *profile_marks["less"]}
            profile_marks["more"][:0] = [key for key in keys if key not in marked]
        return {
            profile: Feedback(more=tuple(m["more"]), less=tuple(m["less"]))
            for profile, m in marks.items()
        }


def library_vectors(db: Connection, model: str, keys: Sequence[str]) -> dict[str, bytes]:
    """The vectors by `model` kept for imported papers of these keys (at most _CHUNK keys)."""
    sql = f"SELECT key, vector FROM library WHERE model = ? AND key IN ({', '.join('?' * len(keys))})"
    return dict(db.execute(sql, [model, *keys]).fetchall())


def save_library_vectors(db: Connection, model: str, vectors: Mapping[str, bytes]) -> None:
    """Keep the vectors of imported papers no source listed, in the caller's transaction (a
    stored paper keeps its own, papers.save_embeddings)."""
    db.executemany(
        """UPDATE library SET model = ?2, vector = ?3 WHERE key = ?1
           AND NOT EXISTS (SELECT 1 FROM papers WHERE key = ?1)""",
        [(key, model, blob) for key, blob in vectors.items()],
    )
