"""Each migration is tested by upgrading a store made by the previous release (issue 17).

tests/fixtures/store-v15.sqlite3.gz is a SQLite store of schema 15 made by the release that
introduced it (`python3 tests/everytable.py FILE`, then gzip), with rows in every table. The
current code opens it (migrating it, once a schema 16 exists) and must read every row back as
a store it makes itself does. The next migration adds a fixture of its own schema beside this one.
"""

from __future__ import annotations

import gzip
import sqlite3
from pathlib import Path

import everytable
from helpers import FIXTURES

from digest.store import SCHEMA_VERSION, Store

V15 = FIXTURES / "store-v15.sqlite3.gz"


def _tables(path: Path) -> dict[str, int]:
    db = sqlite3.connect(path)
    try:
        names = [n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {name: db.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0] for name in names}
    finally:
        db.close()


def test_a_store_of_the_previous_release_reads_back_every_row(tmp_path: Path) -> None:
    old = tmp_path / "v15.sqlite3"
    old.write_bytes(gzip.decompress(V15.read_bytes()))
    counts = _tables(old)
    # The fixture holds rows in every table the schema has (a table added later is new, empty).
    assert counts and all(counts.values()), counts
    with Store.open(tmp_path / "fresh.sqlite3") as fresh:
        everytable.fill(fresh)
        expected = everytable.read(fresh)
    with Store.open(old) as upgraded:
        assert upgraded._db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        found = everytable.read(upgraded)
        # Migration 16's tables are new and empty; they take their rows as a new store's do.
        assert found["feed files"] == [None, None, None] and found["source claims"] == []
        assert found["rate counts"] == (1, 0)
        upgraded._db.execute("DELETE FROM rate_counts")
        everytable.fill_16(upgraded)
        found.update(everytable.read_16(upgraded))
    for part, value in expected.items():
        assert found[part] == value, part
    # No row went missing on the way, in any table (a claimed sign-up stays until it is done).
    after = _tables(old)
    assert {name: after[name] for name in counts} == counts


def test_every_table_round_trips_on_each_backend(store: Store, tmp_path: Path) -> None:
    """What fill() wrote reads back the same on SQLite and PostgreSQL: a SQLite store of the
    same rows is the reference (every value of every column, through the store's methods)."""
    everytable.fill(store)
    found = everytable.read(store)
    with Store.open(tmp_path / "reference.sqlite3") as reference:
        everytable.fill(reference)
        expected = everytable.read(reference)
    assert found["papers"] and found["digest"] and found["signup"]
    for part, value in expected.items():
        assert found[part] == value, part
