"""A damaged store is named, not dumped (issue 17, item 5): a page of garbage in the middle of the
SQLite file, a read-only or failing file, give one line naming the store and what is wrong and a
non-zero exit, never a traceback; `digest store check` finds the damage and `digest store backup`
copies a store whole."""

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import T0, digest, record, write_config

from digest.errors import StoreError
from digest.store import Store
from digest.store.base import what_went_wrong


def store_file(config: Path) -> Path:
    return config.parent / "data" / "paperdigest.sqlite3"


def garble_a_page_of_papers(path: Path) -> int:
    """Overwrite a leaf page of the papers table in the middle of the file with garbage; its
    number. The store is closed and its -wal folded back first, so the page is the file's."""
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page_size = db.execute("PRAGMA page_size").fetchone()[0]
    leaves = [
        page
        for (page,) in db.execute(
            "SELECT pageno FROM dbstat WHERE name = 'papers' AND pagetype = 'leaf' ORDER BY pageno"
        )
    ]
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.close()
    assert len(leaves) >= 3, "the papers fill several pages"
    page = leaves[len(leaves) // 2]
    assert 1 < page < pages, "a page in the middle of the file"
    with path.open("r+b") as file:
        file.seek((page - 1) * page_size)
        file.write(bytes((7 * i + 3) % 256 for i in range(page_size)))
    return page


@pytest.fixture
def damaged(tmp_path: Path) -> Path:
    """A config whose store holds the captured sources' papers and a run's digests, one page of
    the papers garbage."""
    config = write_config(tmp_path)
    assert digest(config, "run").exit_code == 0
    with Store.open(store_file(config)) as store:
        assert store.digest_heads(), "the digests `digest status` reads"
    garble_a_page_of_papers(store_file(config))
    return config


def said_in_one_line(result: object, path: Path) -> str:
    output = result.output  # type: ignore[attr-defined]
    assert "Traceback" not in output
    errors = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, output
    assert errors[0].startswith(f"error: {path}: "), errors[0]
    return errors[0]


@pytest.mark.parametrize(
    "args",
    [
        ["status"],
        ["papers", "--text", "no such words anywhere", "--limit", "1"],
        ["ingest"],
        ["run"],
        ["store", "vacuum"],
    ],
    ids=lambda args: " ".join(args[:2]),
)
def test_a_garbage_page_is_one_line_naming_the_store_and_a_non_zero_exit(
    damaged: Path, args: list[str]
) -> None:
    result = digest(damaged, *args)  # catch_exceptions=False: a traceback fails the test
    assert result.exit_code != 0
    line = said_in_one_line(result, store_file(damaged))
    assert "database disk image is malformed" in line
    assert "digest store check" in line


def test_ingest_exits_non_zero_when_its_records_cannot_be_stored(damaged: Path) -> None:
    result = digest(damaged, "ingest")
    assert result.exit_code == 1
    assert "could not store" in said_in_one_line(result, store_file(damaged))


def test_store_check_says_ok_of_a_sound_store_and_names_the_damaged_table(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    assert digest(config, "ingest").exit_code == 0
    sound = digest(config, "store", "check")
    assert (sound.exit_code, sound.output) == (0, "ok\n")
    assert digest(config, "store", "check", "--quick").output == "ok\n"

    garble_a_page_of_papers(store_file(config))
    for args in (["store", "check"], ["store", "check", "--quick"]):
        result = digest(config, *args)
        assert result.exit_code == 1
        assert "Traceback" not in result.output
        assert f"{store_file(config)}: damaged" in result.output
        assert "table papers: " in result.output


def test_a_backup_is_the_whole_store_and_opens_as_one(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    assert digest(config, "ingest").exit_code == 0
    target = tmp_path / "backups" / "copy.sqlite3"
    target.parent.mkdir()
    target.write_bytes(b"an older backup")  # replaced whole
    result = digest(config, "store", "backup", str(target))
    assert result.exit_code == 0, result.output
    assert str(target) in result.output
    assert sorted(p.name for p in target.parent.iterdir()) == ["copy.sqlite3"], "no temp file left"
    with Store.open(store_file(config)) as live, Store.open(target) as copy:
        assert copy.check() == []
        assert copy.count_papers() == live.count_papers() > 0
        assert copy.papers(limit=None) == live.papers(limit=None)
        assert copy.source_runs("arxiv-api") == live.source_runs("arxiv-api")


def test_a_backup_never_overwrites_the_live_store(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    assert digest(config, "ingest").exit_code == 0
    path = store_file(config)
    before = path.read_bytes()
    for target in (path, path.parent / ".." / "data" / path.name, Path(f"{path}-wal")):
        result = digest(config, "store", "backup", str(target))
        assert result.exit_code == 1
        assert "Traceback" not in result.output
        assert "the live store" in result.output
    assert path.read_bytes() == before
    with Store.open(path) as store:
        assert store.check() == []


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    """A SQLite store of its own (these tests are about SQLite's errors, whatever backend the
    `store` fixture gives)."""
    with Store.open(tmp_path / "data" / "paperdigest.sqlite3") as opened:
        yield opened


def test_a_read_only_store_is_a_store_error_naming_it(sqlite_store: Store) -> None:
    store = sqlite_store
    store.ingest([record("A", arxiv_id="2501.00001")], T0)
    store._db.close()
    store._db = sqlite3.connect(f"file:{store.path}?mode=ro", uri=True, isolation_level=None)
    with pytest.raises(StoreError) as raised:
        store.set_meta("x", "1")
    text = str(raised.value)
    assert text.startswith(f"{store.path}: attempt to write a readonly database")
    assert "not writable" in text and "\n" not in text
    assert store.paper("2501.00001") is not None, "reading still works"


def test_each_kind_of_trouble_says_what_to_do() -> None:
    assert "digest store check" in what_went_wrong(sqlite3.DatabaseError("file is not a database"))
    assert "disk is failing or full" in what_went_wrong(sqlite3.OperationalError("disk I/O error"))
    assert "free some space" in what_went_wrong(sqlite3.OperationalError("database or disk is full"))
    assert "try again when it is done" in what_went_wrong(sqlite3.OperationalError("database is locked"))
    assert what_went_wrong(sqlite3.IntegrityError("UNIQUE constraint failed: x.y")) == (
        "UNIQUE constraint failed: x.y"
    )


def test_a_bug_stays_a_bug(sqlite_store: Store) -> None:
    """A ProgrammingError (here: a closed connection) is paperdigest's, not the store's."""
    store = sqlite_store
    store._db.close()
    with pytest.raises(sqlite3.ProgrammingError):
        store.count_papers()
