"""Benchmark: diff and store the 14,018-paper arXiv corpus, into an empty store and again into the full one.

    python bench/ingest_corpus.py [--corpus ../shared/corpus/arxiv_cs_2026-05-01_2026-06-30.jsonl.gz] [--repeat 5]

Prints records/s for `Store.ingest` (diff + store, one transaction per listing day, as `digest ingest`
does per source) and the process's peak memory. Target: >= 20,000 records/s, <= 300 MB peak.
Each repeat uses a fresh store in a temporary folder; medians are quoted.
"""

from __future__ import annotations

import argparse
import gzip
import json
import resource
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, date, datetime
from datetime import time as dtime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from digest.models import Origin, Record
from digest.store import Store

DEFAULT_CORPUS = (
    Path(__file__).resolve().parents[2] / "shared/corpus/arxiv_cs_2026-05-01_2026-06-30.jsonl.gz"
)


def load_days(path: Path) -> dict[str, list[Record]]:
    """The corpus as one listing (a list of Records) per listing day."""
    days: dict[str, list[Record]] = defaultdict(list)
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        for line in lines:
            item = json.loads(line)
            listing = f"https://arxiv.org/list/cs/new#{item['listed']}"
            days[item["listed"]].append(
                Record(
                    origin=Origin("arxiv-cs", listing, "arxiv-listing"),
                    title=item["title"],
                    arxiv_id=item["id"],
                    abstract=item["abstract"],
                    authors=tuple(item["authors"]),
                    categories=tuple(item["categories"]),
                    primary_category=item["categories"][0] if item["categories"] else None,
                    listed=date.fromisoformat(item["listed"]),
                )
            )
    return dict(sorted(days.items()))


def ingest_all(store: Store, days: dict[str, list[Record]]) -> tuple[float, int]:
    new = 0
    began = time.perf_counter()
    for day, records in days.items():
        seen_at = datetime.combine(date.fromisoformat(day), dtime(20, 0), tzinfo=UTC)
        new += len(store.ingest(records, seen_at).new_keys)
    return time.perf_counter() - began, new


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    days = load_days(args.corpus)
    total = sum(len(records) for records in days.values())
    print(f"corpus: {total} records over {len(days)} listing days")
    empty_times, full_times = [], []
    for _ in range(args.repeat):
        with (
            tempfile.TemporaryDirectory() as folder,
            Store.open(Path(folder) / "bench.sqlite3") as store,
        ):
            seconds, new = ingest_all(store, days)
            empty_times.append(seconds)
            assert new == store.count_papers(), "every first sighting is new"
            seconds, new_again = ingest_all(store, days)
            full_times.append(seconds)
            assert new_again == 0, "nothing is new the second time"
    print(f"distinct papers: {new}")
    for label, times in (("empty store", empty_times), ("full store ", full_times)):
        median = statistics.median(times)
        print(
            f"{label}: median {median:.3f} s = {total / median:,.0f} records/s "
            f"(min {min(times):.3f} s, max {max(times):.3f} s, {len(times)} runs)"
        )
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory (max RSS of the whole process, corpus included): {peak_mb:.0f} MB")
    print("targets: >= 20,000 records/s, <= 300 MB")


if __name__ == "__main__":
    main()
