"""Benchmark (issue 16): the whole job, `digest run --no-fetch`, as a process, for N profiles.

    python bench/job_speed.py [--profiles 1000 --profiles 10000] [--processes 1|2|4 ...]
        [--store sqlite|postgresql] [--repeat 1]
        [--embeddings] [--readers config|web] [--warm] [--trace-writes]
        [--profile-run [--profiler auto|py-spy|cprofile]] [--keep DIR]

Setup, once per N and repeat, in a temporary folder and not timed: a config.toml (data_dir in the
folder, `[output] base_url`, no [smtp] so mail goes to the Maildir outbox, `[rank] embeddings =
false` unless --embeddings) with N generated profiles, all due at the same instant (deliver_at
07:00 UTC, one address each; keywords are frequent title words and bigrams of the shared corpus,
categories its own, a pinned author for one profile in three, a seeded generator); and the store
holding the shared corpus (../shared/corpus), each listing day first seen at 20:00 UTC that day,
so the last listing day's 531 papers are the new ones at the run's clock, 07:05 UTC the next
morning. The clock reaches the process as tests/test_crash_loop.py's DRIVER passes it: through
the CLI's context object, starting at that instant and ticking at the wall clock's pace.

--warm: measure a second day of a running deployment instead of the first: the store holds the
corpus but its last listing day, a first run (not measured) makes the day before's digests, the
last day's papers are then stored (first seen at 20:00 that day), and the run measured finds them
new; the readers' manage and unsubscribe short links, written once in a reader's life, are then
kept already, and each feed is rewritten with two days.

--trace-writes: one more run per N, under strace (not counted in the table): every write and the
file it went to, summed by kind of file, so what SQLite wrote (its file, -wal and temporary files)
is counted exactly. The table's SQLite column is an estimate from /proc/PID/io, which counts what
reached the disk by the time of the reading, not what the process wrote.

--store postgresql (issue 17): the store is a PostgreSQL database instead of the SQLite file. A
throwaway server is started for the bench with tests/pgserver.py's code (initdb in a temporary
folder, a Unix socket there, no TCP), but with honest durability: fsync, synchronous_commit and
full_page_writes on, as a production server has them, and shared_buffers = 256MB. The corpus is
ingested once into a template database, and each setup is a copy of it (CREATE DATABASE ...
TEMPLATE); config.toml names it with `[store] url_env`. The server shares the machine's cores with
the workers, so its CPU time is measured too: the postmaster's and its children's utime + stime
from /proc (with what the postmaster reaped of its exited backends, cutime + cstime) before and
after each run. The store's growth is pg_database_size's; SQLite's written bytes do not apply.

--processes 1 2 4 (repeatable): P processes at once on the same store, each a worker: the ledger
shares the deliveries (claims), and each starts at another block of profiles (pipeline.block_starts).
Each P is measured in a setup of its own.

--readers web: the N profiles are confirmed web subscribers in the store instead of tables in
config.toml (which then holds none), as a deployment with many readers has them.

Measured per run: wall time (from the parent), CPU time (user + sys of the finished process, from
wait4), peak RSS (the process's VmHWM), bytes the process wrote (its /proc/self/io write_bytes,
read at exit), of it what SQLite wrote (estimated: the process's bytes less the bytes of the outbox's and
feeds' files it wrote, each of those written once) and the store's growth (main file + WAL), the config's load time inside the run;
then the idle run right after it (the same command at the clock + 1 hour: nothing is due), its
wall time (a config of 256 kB or more is read back from the setup's cache folder, where the run
kept it: digest.configcache). With --processes 2, two processes run at once on the same store (the ledger shares the
work): wall until both ended, CPU and bytes summed, peak the larger one; the idle run is one
process. Prints a table over N (medians with --repeat > 1), per-profile figures, and how each
figure grows between consecutive N against the growth of N.

--profile-run: one more run per N under a profiler (py-spy when installed, else cProfile), not
counted in the table, and its top 25 entries by cumulative time: where the time goes.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import pstats
import random
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from io import StringIO
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.ingest_corpus import load_days as read_listings  # noqa: E402
from digest.models import Interests, Record  # noqa: E402
from digest.store import Store  # noqa: E402
from digest.store.postgres import PgTarget, PostgresStore  # noqa: E402
from digest.subscriptions import WEB_PREFIX  # noqa: E402
from digest.terms import STOP_WORDS  # noqa: E402

DEFAULT_CORPUS = ROOT.parent / "shared/corpus/arxiv_cs_2026-05-01_2026-06-30.jsonl.gz"
STORE_NAME = "paperdigest.sqlite3"  # Config.store_path's file name in data_dir
DELIVER_AT = dtime(7, 0)
AFTER = timedelta(minutes=5)  # the run's clock: this long after the profiles' deliver_at
IDLE_AFTER = timedelta(hours=1)  # the idle run: an hour later, nothing due

# `digest run --no-fetch` whose clock starts at argv[2] and ticks at the wall clock's pace (as
# tests/test_crash_loop.py's DRIVER). At exit it writes what the kernel counted for it to argv[3]
# as JSON. argv[4]: a cProfile output file, or "" for none.
DRIVER = """
import atexit, json, resource, sys, time
began_wall = time.perf_counter()
from datetime import datetime, timedelta
from digest.cli import _Context, cli
config_path, at, report_path, profile_path = sys.argv[1:5]
start, began = datetime.fromisoformat(at), time.monotonic()
timings = {"import_s": time.perf_counter() - began_wall}

def clock():
    return start + timedelta(seconds=time.monotonic() - began)

class Context(_Context):
    def config(self):
        t = time.perf_counter()
        try:
            return super().config()
        finally:
            timings["config_s"] = time.perf_counter() - t

    def config_head(self):  # the head, then the profiles if the run reads them: both counted
        t = time.perf_counter()
        try:
            config, whole = super().config_head()
        finally:
            timings["config_s"] = time.perf_counter() - t

        def timed_whole():
            t = time.perf_counter()
            try:
                return whole()
            finally:
                timings["config_s"] += time.perf_counter() - t

        return config, timed_whole

def report():
    io = {}
    with open("/proc/self/io") as lines:
        for line in lines:
            name, _, value = line.partition(":")
            io[name] = int(value)
    hwm = 0
    with open("/proc/self/status") as lines:
        for line in lines:
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    usage = resource.getrusage(resource.RUSAGE_SELF)
    with open(report_path, "w") as out:
        json.dump({**timings, "io": io, "hwm_kb": hwm, "cpu_s": usage.ru_utime + usage.ru_stime,
                   "wall_s": time.perf_counter() - began_wall}, out)

atexit.register(report)
args = ["--config", config_path, "run", "--no-fetch"]
context = Context(config_path, clock)
if profile_path:
    import cProfile
    profiler = cProfile.Profile()
    code = 0
    try:
        profiler.runcall(cli.main, args=args, obj=context, prog_name="digest")
    except SystemExit as exc:
        code = exc.code
    finally:
        profiler.dump_stats(profile_path)
    sys.exit(code)
cli.main(args=args, obj=context, prog_name="digest")
"""


# -- setup ------------------------------------------------------------------------------------------


def load_days(path: Path) -> dict[date, list[Record]]:
    """The corpus as one listing per listing day, by day (bench/ingest_corpus.py reads it)."""
    return {date.fromisoformat(day): records for day, records in read_listings(path).items()}


def open_store(where: Path | str) -> Store:
    """The bench's store: the SQLite file at a path, or the PostgreSQL database of a URL."""
    if isinstance(where, str):
        return PostgresStore.connect(PgTarget(where))
    return Store.open(where)


def build_store(where: Path | str, days: dict[date, list[Record]]) -> int:
    """The corpus ingested a listing day at a time, each first seen at 20:00 UTC that day; the
    number of papers the last day brought."""
    new = 0
    with open_store(where) as store:
        for day, records in days.items():
            seen_at = datetime.combine(day, dtime(20, 0), tzinfo=UTC)
            new = len(store.ingest(records, seen_at).new_keys)
    return new


@dataclass(frozen=True)
class Pools:
    words: list[str]
    bigrams: list[str]
    categories: list[str]
    authors: list[str]


def pools(days: dict[date, list[Record]]) -> Pools:
    """What profiles are drawn from: the corpus' frequent title words and bigrams, its
    categories and its frequent authors."""
    words: Counter[str] = Counter()
    bigrams: Counter[str] = Counter()
    categories: Counter[str] = Counter()
    authors: Counter[str] = Counter()
    for records in days.values():
        for record in records:
            tokens = [
                w for w in re.findall(r"[a-z]+", record.title.lower())
                if len(w) > 3 and w not in STOP_WORDS
            ]
            words.update(tokens)
            bigrams.update(f"{a} {b}" for a, b in itertools.pairwise(tokens))
            categories.update(record.categories)
            authors.update(record.authors)
    return Pools(
        words=[w for w, n in words.most_common(3000) if n >= 3],
        bigrams=[b for b, n in bigrams.most_common(1000) if n >= 3],
        categories=[c for c, n in categories.most_common() if n >= 20],
        authors=[a for a, n in authors.most_common(5000) if n >= 3],
    )


def _strings(items: list[str]) -> str:
    return "[" + ", ".join(json.dumps(item, ensure_ascii=False) for item in items) + "]"


def config_text(count: int, pool: Pools, seed: int, embeddings: bool) -> str:
    """config.toml: one source (never fetched: --no-fetch), Maildir outbox, N profiles all due
    at 07:00 UTC."""
    rng = random.Random(seed)
    parts = [
        'data_dir = "data"\n',
        '[output]\nbase_url = "https://digest.example.org"\n',
        '[fetch]\ncontact = "bench@example.org"\n',
        '[email]\nfrom = "paperdigest <digest@example.org>"\n',
        f"[rank]\nembeddings = {'true' if embeddings else 'false'}\n",
        '[sources.arxiv-cs]\nkind = "arxiv-listing"\nurl = "https://arxiv.org/list/cs/new"\n',
    ]
    for number in range(count):
        keywords = rng.sample(pool.words, rng.randint(2, 5)) + rng.sample(pool.bigrams, 1)
        lines = [
            f"[profiles.p{number:06}]",
            f'email = ["reader{number:06}@example.org"]',
            f"keywords = {_strings(keywords)}",
            f"categories = {_strings(rng.sample(pool.categories[:40], rng.randint(1, 3)))}",
            'timezone = "UTC"',
            f'deliver_at = "{DELIVER_AT:%H:%M}"',
        ]
        if number % 3 == 0:
            lines.append(f"authors = {_strings(rng.sample(pool.authors, 1))}")
        if number % 4 == 0:
            lines.append(f"negative_keywords = {_strings(rng.sample(pool.words, 1))}")
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)


# -- measuring -------------------------------------------------------------------------------------


@dataclass
class Run:
    wall_s: float
    cpu_s: float  # summed over the processes
    peak_mb: float  # the largest process's
    written_mb: float  # /proc/PID/io write_bytes, summed
    sqlite_written_mb: float  # of it, SQLite's (estimated: less the outbox's and feeds' bytes)
    wchar_mb: float  # /proc/PID/io wchar (bytes handed to write() and the like), summed
    store_growth_mb: float
    config_s: float  # the config's load time in the run (the first process's)
    exit_codes: tuple[int, ...]
    server_cpu_s: float = 0.0  # the PostgreSQL server's CPU time during the run (0: SQLite)


def add_subscribers(where: Path | str, count: int, pool: Pools, seed: int) -> None:
    """N confirmed web subscribers in the store (--readers web), drawn as config_text draws its
    profiles (no negative keywords: the web form has none). Written in one transaction with
    Store.save_subscriber's columns; setting up 100,000 of them one commit each would take long."""
    rng = random.Random(seed)
    made = datetime(2026, 1, 1, tzinfo=UTC).isoformat()
    rows = []
    for number in range(count):
        interests = Interests(
            keywords=tuple(rng.sample(pool.words, rng.randint(2, 5)) + rng.sample(pool.bigrams, 1)),
            categories=tuple(rng.sample(pool.categories[:40], rng.randint(1, 3))),
            authors=tuple(rng.sample(pool.authors, 1)) if number % 3 == 0 else (),
            timezone="UTC",
            deliver_at=f"{DELIVER_AT:%H:%M}",
        )
        rows.append((
            f"{WEB_PREFIX}{number:016x}", f"reader{number:06}@example.org",
            json.dumps(asdict(interests), ensure_ascii=False), "active", made, made, made,
        ))
    open_store(where).close()  # the schema, as the run expects it
    if isinstance(where, str):  # PostgreSQL
        import psycopg

        with psycopg.connect(where) as pg, pg.cursor() as cursor:  # one transaction
            cursor.executemany(
                """INSERT INTO subscribers
                       (profile, address, interests, status, created, updated, confirmed)
                   VALUES (%s, %s, %s, %s, %s, %s, %s)""",
                rows,
            )
        return
    with sqlite3.connect(where) as db:
        db.executemany(
            """INSERT INTO subscribers
                   (profile, address, interests, status, created, updated, confirmed)
               VALUES (?, ?, ?, ?, ?, ?, ?)""",
            rows,
        )
    db.close()


# -- PostgreSQL (--store postgresql) ----------------------------------------------------------------

URL_ENV = "PAPERDIGEST_BENCH_DATABASE_URL"  # config.toml's [store] url_env
TEMPLATE_DB = "corpus"  # the corpus ingested once; each setup's database is a copy of it
# What tests/pgserver.py turns off for the tests' speed, on again: the bench measures a store as
# durable as a production server's, with a buffer cache of a sensible size.
DURABLE_SETTINGS = {
    "fsync": "on",
    "synchronous_commit": "on",
    "full_page_writes": "on",
    "wal_level": "replica",
    "max_wal_senders": "10",
    "shared_buffers": "256MB",
}


@contextlib.contextmanager
def postgresql_server() -> Iterator[Any]:
    """A throwaway PostgreSQL server (tests/pgserver.py's PgServer: initdb in a temporary folder,
    a Unix socket there, no TCP) with DURABLE_SETTINGS; stopped and removed after the block."""
    sys.path.insert(0, str(ROOT / "tests"))
    from pgserver import find_bindir, running

    bindir, missing = find_bindir()
    if bindir is None:
        sys.exit(f"--store postgresql: {missing}")
    with running(bindir, settings=DURABLE_SETTINGS) as server:
        yield server


def server_cpu_s(postmaster: int | None) -> float:
    """The PostgreSQL server's CPU time so far: the postmaster's utime + stime, what it reaped of
    its exited children (cutime + cstime: the backends of connections closed), and its live
    children's utime + stime (backends, checkpointer, WAL writer...)."""
    if postmaster is None:
        return 0.0
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # After the command's ")": state, ppid, ... utime (14th field), stime, cutime, cstime.
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(entry.name) == postmaster:
            total += sum(int(value) for value in fields[11:15])
        elif int(fields[1]) == postmaster:
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def database_bytes(url: str) -> int:
    import psycopg

    with psycopg.connect(url) as pg:
        row = pg.execute("SELECT pg_database_size(current_database())").fetchone()
        return int(row[0]) if row else 0


def files_bytes(data: Path, since_ns: int = 0) -> int:
    """The bytes of the files beside the store, the outbox and the feeds, written since then."""
    total = 0
    for folder in (data / "outbox", data / "feeds"):
        for path in folder.rglob("*") if folder.is_dir() else ():
            status = path.stat()
            if path.is_file() and status.st_mtime_ns >= since_ns:
                total += status.st_size
    return total


def store_bytes(data: Path) -> int:
    return sum(
        (data / f"{STORE_NAME}{suffix}").stat().st_size
        for suffix in ("", "-wal")
        if (data / f"{STORE_NAME}{suffix}").exists()
    )


def run_job(
    folder: Path,
    at: datetime,
    processes: int,
    tag: str,
    profiler: str = "",
    *,
    url: str | None = None,
    postmaster: int | None = None,
) -> Run:
    """`digest run --no-fetch` at `at`, as `processes` processes at once; the figures. With
    `url`, the store is that PostgreSQL database (config.toml's url_env names it), whose server
    is `postmaster` (its CPU time measured)."""
    data = folder / "data"

    def size() -> int:
        return database_bytes(url) if url else store_bytes(data)

    before, began_ns = size(), time.time_ns()
    # The setup's own cache folder: the run keeps its big config there (digest.configcache) and
    # the idle run after it reads it back, as an hourly job does; nothing lands in ~/.cache.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "XDG_CACHE_HOME": str(folder / "cache")}
    if url:
        env[URL_ENV] = url
    server_before = server_cpu_s(postmaster)
    pids: dict[int, subprocess.Popen[bytes]] = {}
    reports = []
    began = time.perf_counter()
    for index in range(processes):
        report = folder / f"{tag}-{index}.json"
        report.unlink(missing_ok=True)
        reports.append(report)
        cprofile_out = str(folder / f"{tag}.pstats") if profiler == "cprofile" else ""
        command = [sys.executable, "-c", DRIVER, str(folder / "config.toml"), at.isoformat(),
                   str(report), cprofile_out]
        if profiler == "py-spy":
            command = ["py-spy", "record", "--rate", "100", "--nonblocking", "--format", "raw",
                       "--output", str(folder / f"{tag}.pyspy"), "--", *command]
        elif profiler == "strace":  # every write, with the file it went to
            command = ["strace", "-f", "-qq", "-y", "-e", "trace=write,pwrite64", "-e",
                       "signal=none", "-o", str(folder / f"{tag}.strace"), *command]
        with (folder / f"{tag}-{index}.log").open("wb") as out:
            process = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
            )
        pids[process.pid] = process
    cpu, codes, ended = 0.0, [], began
    while pids:
        pid, status, usage = os.wait4(-1, 0)
        if pid not in pids:
            continue
        process = pids.pop(pid)
        process.returncode = os.waitstatus_to_exitcode(status)
        codes.append(process.returncode)
        cpu += usage.ru_utime + usage.ru_stime
        ended = time.perf_counter()
    server_cpu = server_cpu_s(postmaster) - server_before
    figures = [json.loads(report.read_text()) for report in reports if report.exists()]
    written = sum(f["io"]["write_bytes"] for f in figures)
    if len(figures) < processes:
        print(f"  warning: {processes - len(figures)} process(es) left no report", flush=True)
    return Run(
        wall_s=ended - began,
        cpu_s=cpu,
        peak_mb=max((f["hwm_kb"] for f in figures), default=0) / 1024,
        written_mb=written / 1e6,
        # What SQLite wrote, estimated: all the process wrote but the outbox's and the feeds'
        # new bytes (each file is written once: a temp file renamed into place).
        sqlite_written_mb=max(written - files_bytes(data, began_ns), 0) / 1e6,
        wchar_mb=sum(f["io"]["wchar"] for f in figures) / 1e6,
        store_growth_mb=(size() - before) / 1e6,
        config_s=figures[0]["config_s"] if figures else float("nan"),
        exit_codes=tuple(codes),
        server_cpu_s=server_cpu,
    )


def check(folder: Path, count: int, days: int = 1, url: str | None = None) -> str:
    """What the run left: digests composed, mails in the outbox, profile feed files (on
    PostgreSQL, the feeds' rows in the store: digest/store/shared.py)."""
    logs = "".join(
        p.read_text(encoding="utf-8", errors="replace") for p in sorted(folder.glob("run-*.log"))
    )
    composed = len(re.findall(r"^\S+: digest of ", logs, re.MULTILINE)) + sum(
        int(more.replace(",", "")) for more in re.findall(r"^\.\.\. and ([\d,]+) more digests", logs, re.MULTILINE)
    )
    outbox = folder / "data" / "outbox"
    mails = sum(
        sum(1 for _ in (outbox / box).iterdir()) for box in ("new", "cur") if (outbox / box).is_dir()
    )
    feeds = folder / "data" / "feeds" / "profiles"
    feed_files = sum(1 for _ in feeds.iterdir()) if feeds.is_dir() else 0
    where = "profile feed files"
    if url and not feed_files:
        import psycopg

        with psycopg.connect(url) as pg:
            found = pg.execute(
                "SELECT count(*) FROM feed_files WHERE path LIKE 'profiles/%'"
            ).fetchone()
        feed_files, where = (int(found[0]) if found else 0), "profile feeds in the store"
    note = f"{composed} digests composed, {mails} mails in the outbox, {feed_files} {where}"
    if composed != count or mails != count * days:
        note += f"  (expected {count}: look at {folder}/run-*.log)"
    return note


def code_version() -> str:
    """Which digest/ the run measures: the commit, and whether digest/ differs from it."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--", "digest"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return f"digest/ from {ROOT} (not a git checkout)"
    return f"digest/ at {commit}" + (" with uncommitted changes" if changed else "")


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.2f} (5 min {five:.2f})"


# -- profiles of a run -----------------------------------------------------------------------------


# Frames that only pass the call on (the CLI framework, threads, the driver itself).
_WRAPPERS = ("click/", "threading.py", "concurrent/futures/", "<string>")


def _wrapper(name: str) -> bool:
    return name.rpartition(" (")[2].startswith(_WRAPPERS)


def pyspy_top(path: Path, count: int, rate: int = 100) -> str:
    """Top functions of py-spy's raw (collapsed) stacks: by inclusive samples, then by own
    samples. Samples of every Python thread (the mail builder has a worker thread) add up."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    frame = re.compile(r"^(.*) \((.*?)(?::\d+)?\)$")
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, samples = line.rpartition(" ")
        if not stack or not samples.isdigit():
            continue
        n = int(samples)
        total += n
        names = []
        for part in stack.split(";"):
            match = frame.match(part)
            names.append(f"{match.group(1)} ({_short(match.group(2))})" if match else part)
        for name in set(names):
            inclusive[name] += n
        own[names[-1]] += n
    shown = [(name, n) for name, n in inclusive.most_common() if not _wrapper(name)]
    lines = [
        f"{total} samples at {rate}/s over every thread ({total / rate:.1f} s; "
        "CLI and thread wrappers left out)",
        f"{'cumulative s':>12} {'%':>6} {'own s':>7}  function",
    ]
    for name, n in shown[:count]:
        lines.append(
            f"{n / rate:12.1f} {100 * n / max(total, 1):6.1f} {own[name] / rate:7.1f}  {name}"
        )
    lines += ["", f"top {count} by own samples:", f"{'own s':>12} {'%':>6}  function"]
    for name, n in own.most_common(count):
        lines.append(f"{n / rate:12.1f} {100 * n / max(total, 1):6.1f}  {name}")
    return "\n".join(lines)


_WRITE = re.compile(r"(?:pwrite64|write)\(\d+<([^>]*)>.*\) = (\d+)$")


def traced_writes(path: Path, count: int) -> str:
    """What strace saw written, by kind of file: the store (its file, -wal and SQLite's temporary
    files), the outbox, the feeds, the rest."""
    totals: Counter[str] = Counter()
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        match = _WRITE.search(line)
        if not match:
            continue
        name = match.group(1)
        if name.endswith(STORE_NAME) or name.endswith(f"{STORE_NAME}-wal"):
            kind = "SQLite: " + ("-wal" if name.endswith("-wal") else "file")
        elif "/etilqs_" in name:
            kind = "SQLite: temporary files"
        elif "/outbox/" in name:
            kind = "outbox"
        elif "/feeds/" in name:
            kind = "feeds"
        else:
            kind = "other (logs, pipes)"
        totals[kind] += int(match.group(2))
    sqlite = sum(n for kind, n in totals.items() if kind.startswith("SQLite"))
    lines = [f"    {n / 1e6:10,.1f} MB  {1000 * n / 1e6 / count:8.1f} kB a profile  {kind}"
             for kind, n in sorted(totals.items())]
    lines.append(f"    {sqlite / 1e6:10,.1f} MB  {1000 * sqlite / 1e6 / count:8.1f} kB a profile  "
                 "SQLite in all")
    return "\n".join(lines)


def _short(path: str) -> str:
    for marker in ("/site-packages/", "/lib/python3"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path.removeprefix(str(ROOT) + "/")


def cprofile_top(path: Path, count: int) -> str:
    out = StringIO()
    pstats.Stats(str(path), stream=out).sort_stats("cumulative").print_stats(count)
    return out.getvalue()


# -- the table -------------------------------------------------------------------------------------


def median(runs: list[Run], name: str) -> float:
    return statistics.median(float(getattr(run, name)) for run in runs)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--profiles", type=int, action="append", help="N (repeatable)")
    parser.add_argument(
        "--processes", type=int, choices=(1, 2, 4), action="append",
        help="P workers at once on one store (repeatable: each P measured; default 1)",
    )
    parser.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--repeat", type=int, default=1, help="0: only the profiled run")
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--embeddings", action="store_true", help="[rank] embeddings = true")
    parser.add_argument(
        "--warm", action="store_true",
        help="measure a second day: a first run the day before (not measured), then the last day's papers",
    )
    parser.add_argument(
        "--readers", choices=("config", "web"), default="config",
        help="the N profiles in config.toml, or N web subscribers in the store",
    )
    parser.add_argument("--profile-run", action="store_true", help="one more run per N, profiled")
    parser.add_argument(
        "--trace-writes", action="store_true",
        help="one more run per N under strace: the bytes written, by file (SQLite's exactly)",
    )
    parser.add_argument("--profiler", choices=("auto", "py-spy", "cprofile"), default="auto")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--keep", type=Path, help="keep each setup under this folder")
    args = parser.parse_args()
    sizes = args.profiles or [1000, 10_000]
    worker_counts = args.processes or [1]
    profiler = args.profiler
    if profiler == "auto":
        profiler = "py-spy" if shutil.which("py-spy") else "cprofile"
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(postgresql_server()) if args.store == "postgresql" else None
        bench(args, sizes, worker_counts, profiler, server)


def bench(
    args: argparse.Namespace, sizes: list[int], worker_counts: list[int], profiler: str, server: Any
) -> None:
    days = load_days(args.corpus)
    pool = pools(days)
    last_day = max(days)
    at = datetime.combine(last_day + timedelta(days=1), DELIVER_AT, tzinfo=UTC) + AFTER
    print(f"corpus: {sum(map(len, days.values()))} records over {len(days)} listing days; "
          f"the run at {at:%Y-%m-%d %H:%M} UTC, idle run at {at + IDLE_AFTER:%H:%M}")
    work = Path(tempfile.mkdtemp(prefix="job_speed-", dir=args.keep))
    postmaster = server.pid if server is not None else None
    template: Path | str
    if server is not None:
        template = server.create_database(TEMPLATE_DB)
    else:
        template = work / "template" / STORE_NAME
    held = {last_day: days.pop(last_day)} if args.warm else {}
    began = time.perf_counter()
    new = build_store(template, days)
    took = time.perf_counter() - began
    if held:
        days.update(held)
        new = len(held[last_day])
    if isinstance(template, str):
        print(f"store: PostgreSQL {server.bindir} (durable: {DURABLE_SETTINGS}), "
              f"{database_bytes(template) / 1e6:.1f} MB after {took:.1f} s of ingest, "
              f"{new} papers new on {last_day}")
    else:
        print(f"store: SQLite, {store_bytes(template.parent) / 1e6:.1f} MB, {new} papers new on {last_day}")
    print(code_version())
    print(f"processes: {worker_counts}; embeddings: {args.embeddings}; repeat: {args.repeat}; "
          f"{os.cpu_count()} CPUs\n", flush=True)

    def setup(count: int, name: str, text: str) -> tuple[Path, str | None]:
        folder = work / name
        shutil.rmtree(folder, ignore_errors=True)
        (folder / "data").mkdir(parents=True)
        url: str | None = None
        where: Path | str
        if server is not None:
            server.drop_database(name)
            with server.connect() as pg:
                pg.execute(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE_DB}"')
            where = url = server.url(name)
            text += f'\n[store]\nurl_env = "{URL_ENV}"\n'
        else:
            assert isinstance(template, Path)
            shutil.copyfile(template, folder / "data" / STORE_NAME)
            where = folder / "data" / STORE_NAME
        (folder / "config.toml").write_text(text, encoding="utf-8")
        if args.readers == "web":
            add_subscribers(where, count, pool, args.seed)
        if args.warm:  # yesterday's run, then today's papers: what the measured run finds
            warm = run_job(folder, at - timedelta(days=1), 1, "warm", url=url)
            print(f"    warm-up run (the day before, not counted): {warm.wall_s:.1f} s", flush=True)
            with open_store(where) as store:
                seen_at = datetime.combine(last_day, dtime(20, 0), tzinfo=UTC)
                store.ingest(days[last_day], seen_at)
        return folder, url

    def cleanup(folder: Path, name: str) -> None:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
            if server is not None:
                server.drop_database(name)

    results: dict[tuple[int, int], tuple[list[Run], list[Run]]] = {}
    try:
        for count in sizes:
            in_config = count if args.readers == "config" else 0
            text = config_text(in_config, pool, args.seed, args.embeddings)
            where = "in config.toml" if in_config else "web subscribers in the store"
            print(f"N = {count:,} {where}: config.toml {len(text) / 1e6:.1f} MB", flush=True)
            for processes in worker_counts:
                runs, idles = [], []
                for repeat in range(args.repeat):
                    name = f"n{count}_p{processes}_r{repeat}"
                    folder, url = setup(count, name, text)
                    print(f"  {processes} process(es), run {repeat + 1}: {load()}", flush=True)
                    run = run_job(folder, at, processes, "run", url=url, postmaster=postmaster)
                    idle = run_job(folder, at + IDLE_AFTER, 1, "idle", url=url, postmaster=postmaster)
                    runs.append(run)
                    idles.append(idle)
                    server_said = f", server CPU {run.server_cpu_s:.1f} s" if server else ""
                    print(
                        f"    wall {run.wall_s:.1f} s, CPU {run.cpu_s:.1f} s{server_said},"
                        f" {count / run.wall_s / processes:.0f} profiles/s a worker,"
                        f" peak {run.peak_mb:,.0f} MB, written {run.written_mb:,.0f} MB"
                        f" (SQLite ~{run.sqlite_written_mb:,.0f} MB)"
                        f" (wchar {run.wchar_mb:,.0f} MB), store +{run.store_growth_mb:.1f} MB,"
                        f" config load {run.config_s:.2f} s, exit {run.exit_codes};"
                        f" idle {idle.wall_s:.2f} s (config {idle.config_s:.2f} s, peak"
                        f" {idle.peak_mb:,.0f} MB, exit {idle.exit_codes}); {load()}",
                        flush=True,
                    )
                    print(f"    {check(folder, count, 2 if args.warm else 1, url)}", flush=True)
                    cleanup(folder, name)
                if runs:
                    results[(count, processes)] = (runs, idles)
            if args.trace_writes:
                name = f"n{count}_traced"
                folder, url = setup(count, name, text)
                print(f"  traced run (strace): {load()}", flush=True)
                run = run_job(folder, at, 1, "run", profiler="strace", url=url)
                print(f"    wall {run.wall_s:.1f} s under strace; {check(folder, count, 2 if args.warm else 1)}")
                print(f"  bytes written at N = {count:,}, by where they went:")
                print(traced_writes(folder / "run.strace", count))
                cleanup(folder, name)
            if args.profile_run:
                name = f"n{count}_profiled"
                folder, url = setup(count, name, text)
                print(f"  profiled run ({profiler}): {load()}", flush=True)
                run = run_job(folder, at, 1, "run", profiler=profiler, url=url)
                print(f"    wall {run.wall_s:.1f} s under the profiler; {check(folder, count, 2 if args.warm else 1)}")
                print(f"  where the time goes at N = {count:,}, top {args.top} by cumulative time:")
                if profiler == "py-spy":
                    print(pyspy_top(folder / "run.pyspy", args.top))
                else:
                    print(cprofile_top(folder / "run.pstats", args.top))
                cleanup(folder, name)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    if not results:
        return
    medians = "median of " + str(args.repeat) + " runs" if args.repeat > 1 else "one run"
    print(f"\n`digest run --no-fetch` on {args.store}, {medians}; {load()}\n")
    print("| N | processes | config load | wall | CPU | peak RSS | written | SQLite written"
          " | store growth | idle run | wall per profile | written per profile"
          " | SQLite written per profile | store per profile | idle per profile |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for (count, processes), (runs, idles) in results.items():
        wall, cpu = median(runs, "wall_s"), median(runs, "cpu_s")
        written, growth = median(runs, "written_mb"), median(runs, "store_growth_mb")
        idle_s, sqlite = median(idles, "wall_s"), median(runs, "sqlite_written_mb")
        print(
            f"| {count:,} | {processes} | {median(runs, 'config_s'):.2f} s | {wall:.1f} s"
            f" | {cpu:.1f} s | {median(runs, 'peak_mb'):,.0f} MB | {written:,.0f} MB"
            f" | {sqlite:,.0f} MB | {growth:,.1f} MB | {idle_s:.2f} s | {1000 * wall / count:.1f} ms"
            f" | {1000 * written / count:,.0f} kB | {1000 * sqlite / count:,.1f} kB"
            f" | {1000 * growth / count:,.1f} kB | {1000 * idle_s / count:.3f} ms |"
        )
    print(f"\nWorkers on {args.store}: throughput in all and per worker (N / wall / P); the"
          " server's CPU on the same cores\n")
    print("| N | workers | wall | CPU (workers) | CPU (server) | profiles/s | per worker"
          " | peak RSS (a worker) |")
    print("|---|---|---|---|---|---|---|---|")
    for (count, processes), (runs, _) in results.items():
        wall = median(runs, "wall_s")
        server_cpu = f"{median(runs, 'server_cpu_s'):.1f} s" if server is not None else "-"
        print(
            f"| {count:,} | {processes} | {wall:.1f} s | {median(runs, 'cpu_s'):.1f} s"
            f" | {server_cpu} | {count / wall:.0f} | {count / wall / processes:.0f}"
            f" | {median(runs, 'peak_mb'):,.0f} MB |"
        )
    for processes in worker_counts:
        counts = [count for count in sizes if (count, processes) in results]
        if len(counts) < 2:
            continue
        print(f"\nGrowth between consecutive N, {processes} process(es) (1.0 x the N ratio = linear):\n")
        print("| from -> to | N | wall | CPU | peak RSS | written | store growth | idle run |")
        print("|---|---|---|---|---|---|---|---|")
        for small, large in itertools.pairwise(counts):
            big, little = results[(large, processes)], results[(small, processes)]
            ratio = [
                median(big[0], name) / max(median(little[0], name), 1e-9)
                for name in ("wall_s", "cpu_s", "peak_mb", "written_mb", "store_growth_mb")
            ]
            idle_ratio = median(big[1], "wall_s") / median(little[1], "wall_s")
            cells = " | ".join(f"{r:.2f}x" for r in (*ratio, idle_ratio))
            print(f"| {small:,} -> {large:,} | {large / small:.2f}x | {cells} |")


if __name__ == "__main__":
    main()
