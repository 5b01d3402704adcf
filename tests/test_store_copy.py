"""`digest store copy --to TARGET` (issue 17): a SQLite store filled through the real code copied
to PostgreSQL and back, row for row; again without change; a `digest run` on the copy sends
nothing twice; a target holding another store's data, or out of reach, is refused in one line."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from everytable import AT, fill
from helpers import digest, outbox, write_config

from digest.models import Interests, Subscriber
from digest.store import Store

psycopg = pytest.importorskip("psycopg")

COPY_MARKER = "copied_from"  # the meta row a copy adds: where from, when


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A config whose SQLite store holds a row or more in every table (everytable.fill: a web
    subscriber, marks, short links, a library, a sign-up...) and then a real run (the captured
    sources ingested, digests composed and mailed to the Maildir outbox)."""
    config = write_config(tmp_path)
    with Store.open(tmp_path / "data" / "paperdigest.sqlite3") as store:
        fill(store)  # first: it reads back the deliveries it made
    result = digest(config, "run")
    assert result.exit_code == 0, result.output
    assert outbox(tmp_path), "the run mailed its digests"
    return config


def _sqlite_path(config: Path) -> Path:
    return config.parent / "data" / "paperdigest.sqlite3"


def pg_rows(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every table of the PostgreSQL database (but its schema_version), its rows sorted."""
    with psycopg.connect(url) as connection:
        tables = [
            name
            for (name,) in connection.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
            )
            if name != "schema_version"
        ]
        return {
            table: _sorted(connection.execute(f'SELECT * FROM "{table}"').fetchall(), table)
            for table in tables
        }


def sqlite_rows(path: Path, columns: dict[str, list[str]]) -> dict[str, list[tuple[Any, ...]]]:
    """Every table of the SQLite file, read by the columns PostgreSQL's table has (SQLite's
    implicit rowid where PostgreSQL names one), its rows sorted."""
    connection = sqlite3.connect(path)
    try:
        tables = [
            name
            for (name,) in connection.execute(
                "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite%'"
            )
        ]
        found = {}
        for table in tables:
            names = columns.get(table) or [r[1] for r in connection.execute(f'PRAGMA table_info("{table}")')]
            listed = ", ".join(f'"{c}"' for c in names)
            found[table] = _sorted(connection.execute(f'SELECT {listed} FROM "{table}"').fetchall(), table)
        return found
    finally:
        connection.close()


def pg_columns(url: str) -> dict[str, list[str]]:
    with psycopg.connect(url) as connection:
        columns: dict[str, list[str]] = {}
        for table, column in connection.execute(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position"
        ):
            columns.setdefault(table, []).append(column)
        return columns


def _sorted(rows: list[tuple[Any, ...]], table: str) -> list[tuple[Any, ...]]:
    if table == "signing_keys":  # SQLite's are its secret.key: compared as such below
        return []
    if table == "meta":  # the copy's own row (where from, when) is the one difference
        rows = [row for row in rows if row[0] != COPY_MARKER]
    return sorted((tuple(row) for row in rows), key=repr)


def _keys(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def copy(config: Path, *args: str) -> Any:
    return digest(config, "store", "copy", *args)


def test_a_sqlite_store_copied_to_postgresql_row_for_row_again_without_change_and_back(
    source: Path, postgresql_database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DIGEST_COPY_TO", postgresql_database_url)
    result = copy(source, "--to-env", "DIGEST_COPY_TO")
    assert result.exit_code == 0, result.output
    assert "url_env" in result.output and "[store]" in result.output  # how to switch
    assert "papers" in result.output and "deliveries" in result.output  # the counts' table

    columns = pg_columns(postgresql_database_url)
    original = sqlite_rows(_sqlite_path(source), columns)
    copied = pg_rows(postgresql_database_url)
    assert set(copied) == set(original)
    for table in original:
        assert copied[table] == original[table], table
    # (Every table but those SQLite leaves empty, such as the signing keys kept in its secret.key.)
    assert len([t for t, rows in original.items() if not rows]) <= 2, "rows in (nearly) every table"
    # Ids kept, and each identity's sequence past them: the next run's id follows the largest.
    largest = max(row[columns["runs"].index("id")] for row in copied["runs"])
    with psycopg.connect(postgresql_database_url) as connection:
        (next_id,) = connection.execute(
            "INSERT INTO runs (command, started) VALUES ('x', 'y') RETURNING id"
        ).fetchone()
        connection.execute("DELETE FROM runs WHERE id = %s", (next_id,))
    assert next_id == largest + 1

    # The links' signing keys came along (SQLite keeps them in secret.key beside the store).
    keys = _keys((source.parent / "data" / "secret.key").read_text())
    with psycopg.connect(postgresql_database_url) as connection:
        (held,) = connection.execute("SELECT keys FROM signing_keys").fetchone()
    assert keys and _keys(held) == keys

    # Again: nothing changes (keyless tables such as confirmation_mails are not doubled).
    result = copy(source, "--to", postgresql_database_url)
    assert result.exit_code == 0, result.output
    assert "refreshed the copy" in result.output
    assert pg_rows(postgresql_database_url) == copied

    # And back, to a new SQLite file: the same rows as the original.
    back = tmp_path / "back" / "paperdigest.sqlite3"
    (tmp_path / "pg").mkdir()
    pg_config = write_config(tmp_path / "pg", extra='[store]\nurl_env = "DIGEST_COPY_TO"')
    result = copy(pg_config, "--to", str(back))
    assert result.exit_code == 0, result.output
    assert "paperdigest.sqlite3" in result.output
    assert sqlite_rows(back, columns) == original
    assert _keys((back.parent / "secret.key").read_text()) == keys
    result = copy(pg_config, "--to", str(back))  # again: SQLite's rowids are keys too
    assert result.exit_code == 0, result.output
    assert sqlite_rows(back, columns) == original
    # The triggers are on again in both copies: a new web subscriber is counted.
    from digest.store.postgres import PgTarget, PostgresStore

    for opened in (PostgresStore.connect(PgTarget(postgresql_database_url)), Store.open(back)):
        with opened as store:
            before = int(store.meta("subscribers_changed") or 0)
            store.save_subscriber(Subscriber("web-new", "new@example.org", Interests(), "pending", AT, AT))
            assert int(store.meta("subscribers_changed") or 0) == before + 1, store.path


def test_a_run_on_the_copy_finds_nothing_due_and_sends_nothing_twice(
    source: Path, postgresql_database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    sent = len(outbox(tmp_path))
    monkeypatch.setenv("DIGEST_COPY_TO", postgresql_database_url)
    assert copy(source, "--to-env", "DIGEST_COPY_TO").exit_code == 0
    # The same config on the copy: the same data_dir and outbox, the store by url_env.
    text = source.read_text() + '\n[store]\nurl_env = "DIGEST_COPY_TO"\n'
    on_copy = tmp_path / "on-copy.toml"
    on_copy.write_text(text)
    (tmp_path / "data" / "paperdigest.sqlite3").rename(tmp_path / "set-aside.sqlite3")
    before = pg_rows(postgresql_database_url)["deliveries"]
    result = digest(on_copy, "run")
    assert result.exit_code == 0, result.output
    assert "no digest was due" in result.output, result.output
    assert not re.search(r"mail: [1-9]\d* sent", result.output), "nothing mailed again"
    # (The Maildir keeps one file a Message-ID: a mail sent again would replace its file.)
    assert len(outbox(tmp_path)) == sent
    after = pg_rows(postgresql_database_url)["deliveries"]
    assert [r for r in after if r not in before] == [], "no delivery made again"
    assert not (tmp_path / "data" / "paperdigest.sqlite3").exists(), "the run used PostgreSQL"


def test_a_target_holding_another_stores_data_is_refused_in_one_line(
    source: Path, postgresql_database_url: str, tmp_path: Path
) -> None:
    (tmp_path / "other").mkdir()
    other = write_config(tmp_path / "other")
    assert digest(other, "ingest").exit_code == 0  # another store, its own papers
    back = tmp_path / "other" / "data" / "paperdigest.sqlite3"
    before = sqlite_rows(back, {})
    result = copy(source, "--to", str(back))
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "another store's data" in lines[0], result.output
    assert sqlite_rows(back, {}) == before, "nothing written"
    # The same on PostgreSQL, and the empty database next to it is taken.
    from digest.store.postgres import PgTarget, PostgresStore

    with PostgresStore.connect(PgTarget(postgresql_database_url)) as store:
        store.set_problem("embeddings", "a problem of its own", AT)
    result = copy(source, "--to", postgresql_database_url)
    assert result.exit_code == 1 and "another store's data" in result.output
    assert "problems" in result.output


def test_a_second_copy_adds_what_is_new_and_names_the_tables_the_target_holds_otherwise(
    source: Path, postgresql_database_url: str
) -> None:
    assert copy(source, "--to", postgresql_database_url).exit_code == 0
    # A new row in the store: the next copy brings it, and all agrees.
    with Store.open(_sqlite_path(source)) as store:
        store.save_short_links({"New1": "/feedback/NEW"}, AT)
    result = copy(source, "--to", postgresql_database_url)
    assert result.exit_code == 0, result.output
    assert ("New1", "/feedback/NEW") in [r[:2] for r in pg_rows(postgresql_database_url)["short_links"]]
    # The copy's own rows since (used on its own): kept as they are, but named, exit 1.
    with psycopg.connect(postgresql_database_url) as connection:
        connection.execute("INSERT INTO short_links VALUES ('only', '/x', '2026-11-26')")
        connection.execute("UPDATE feedback SET mark = 'less' WHERE mark = 'more'")
    result = copy(source, "--to", postgresql_database_url)
    assert result.exit_code == 1
    last = result.output.splitlines()[-1]
    assert "differs from the store in feedback, short_links" in last, result.output
    assert "rows held otherwise" in result.output
    with psycopg.connect(postgresql_database_url) as connection:
        marks = {m for (m,) in connection.execute("SELECT mark FROM feedback")}
    assert marks == {"less"}, "a row of the copy is never set back"


def test_the_store_is_copied_as_it_was_at_one_moment_while_a_run_writes_it(
    source: Path, postgresql_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import digest.store.copy as copying

    copy_table = copying._copy_table
    written: list[str] = []

    def copy_then_write(*args: Any, **kwargs: Any) -> int:
        kept = copy_table(*args, **kwargs)
        if not written:  # after the first table, another process writes the store
            with Store.open(_sqlite_path(source)) as writer:
                writer.save_short_links({"Later": "/feedback/LATER"}, AT)
            written.append("short link")
        return kept

    monkeypatch.setattr(copying, "_copy_table", copy_then_write)
    result = copy(source, "--to", postgresql_database_url)
    assert written and result.exit_code == 0, result.output
    assert "Later" not in [row[0] for row in pg_rows(postgresql_database_url)["short_links"]]


def test_a_target_out_of_reach_is_one_line_without_its_password(source: Path) -> None:
    result = copy(source, "--to", "postgresql://someone:s3cret@127.0.0.1:1/paperdigest")
    assert result.exit_code == 1
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert "127.0.0.1" in result.output and "s3cret" not in result.output
    assert "cannot connect" in result.output


def test_usage(source: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert copy(source).exit_code == 2
    monkeypatch.delenv("DIGEST_NOT_SET", raising=False)
    result = copy(source, "--to-env", "DIGEST_NOT_SET")
    assert result.exit_code == 1 and "DIGEST_NOT_SET" in result.output
    result = copy(source, "--to", str(_sqlite_path(source)))
    assert result.exit_code == 1 and "the store itself" in result.output
    assert "shell history" in digest(source, "store", "copy", "--help").output

