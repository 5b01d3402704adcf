"""Benchmark: the shared arXiv corpus ingested into SQLite and into PostgreSQL, side by side (issue 17).

    python bench/store_ingest.py [--corpus ../shared/corpus/arxiv_cs_2026-05-01_2026-06-30.jsonl.gz] [--repeat 3]

The corpus is read and ingested as bench/ingest_corpus.py does (`Store.ingest`, diff + store, one
transaction per listing day, as `digest ingest` does per source), into an empty store and again
into the full one, for each backend. PostgreSQL is a throwaway server started for the run with
tests/pgserver.py's code (initdb, a Unix socket in a temporary folder), but durable: fsync,
synchronous_commit and full_page_writes ON, as a production server runs (the test server turns
them off). Each repeat uses a fresh SQLite file and a fresh database; medians are quoted.
Target: >= 10,000 records/s on PostgreSQL.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))

import pgserver  # noqa: E402  (tests/pgserver.py)
from ingest_corpus import DEFAULT_CORPUS, ingest_all, load_days  # noqa: E402

from digest.store import Store  # noqa: E402
from digest.store.postgres import PgTarget, PostgresStore  # noqa: E402

DURABLE = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on", "wal_level": "replica"}


def measure(open_store: Callable[[int], Store], days: dict, repeat: int) -> tuple[list[float], list[float]]:
    empty, full = [], []
    for attempt in range(repeat):
        with open_store(attempt) as store:
            seconds, new = ingest_all(store, days)
            empty.append(seconds)
            assert new == store.count_papers(), "every first sighting is new"
            seconds, again = ingest_all(store, days)
            full.append(seconds)
            assert again == 0, "nothing is new the second time"
    return empty, full


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    days = load_days(args.corpus)
    total = sum(len(records) for records in days.values())
    print(f"corpus: {total} records over {len(days)} listing days")
    results: dict[str, tuple[list[float], list[float]]] = {}
    with tempfile.TemporaryDirectory() as folder:
        results["sqlite"] = measure(
            lambda n: Store.open(Path(folder) / f"bench-{n}.sqlite3"), days, args.repeat
        )
    with pgserver.running(pgserver.postgresql_or_skip(), settings=DURABLE) as server:
        version = server.connect().execute("SHOW server_version").fetchone()[0]
        settings = ", ".join(
            f"{name}={server.connect().execute(f'SHOW {name}').fetchone()[0]}" for name in DURABLE
        )
        print(f"PostgreSQL {version} on a Unix socket ({settings})")
        results["postgresql"] = measure(
            lambda n: PostgresStore.connect(PgTarget(server.create_database(f"bench_{n}"))),
            days,
            args.repeat,
        )
    for backend, (empty, full) in results.items():
        for label, times in (("empty store", empty), ("full store ", full)):
            median = statistics.median(times)
            print(
                f"{backend:<10} {label}: median {median:.3f} s = {total / median:,.0f} records/s "
                f"(min {min(times):.3f} s, max {max(times):.3f} s, {len(times)} runs)"
            )
    print("target: >= 10,000 records/s on PostgreSQL")


if __name__ == "__main__":
    main()
