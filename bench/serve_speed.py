"""Benchmark: requests per second of `digest serve` for a feed, conditional (304) and full (200).

    python bench/serve_speed.py [--runs 5] [--duration 10] [--threads 2] [--connections 64]

Builds a data folder with a config and the feeds `digest run` would publish: the all-papers
feeds (200 real arXiv papers of the shared corpus, ../shared/corpus) and one profile's feeds
holding a 7-day window of 20-paper digests (140 items, ~300 kB of Atom), written by digest.feeds.
Starts `digest serve` on 127.0.0.1 and a free port in its own process, checks by one request that
a GET with the feed's ETag in If-None-Match gets 304 with no body (and the same with gzip), warms
up, then runs wrk (`apt-get install wrk`) several times for each --kind:
    304       GET of the profile's Atom feed with the right If-None-Match (a feed reader polling),
              no Accept-Encoding; a Lua script counts the status codes, and every one must be 304
    200       plain GET of the same feed, the full body each time, for comparison
    304-gzip  as 304, with `Accept-Encoding: gzip` and the gzipped feed's ETag (most readers)
    200-gzip  as 200, with `Accept-Encoding: gzip`: the gzipped feed (~44 kB) each time
Prints requests/s and latency percentiles per run, and the medians. wrk and the server share the
machine's two cores, so the figures are the server's throughput with a load tool beside it.
Target: at least 2,000 requests/s for the 304s on the 2-core machine.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from rank_speed import DEFAULT_CORPUS, load_papers

from digest import feeds
from digest.models import Digest, Paper, Reasons, ScoredPaper, SourceNote
from digest.render import Renderer

ROOT = Path(__file__).resolve().parents[1]
BASE = "https://digest.example.org"
PROFILE = "bench"
DAY = date(2026, 6, 30)

# wrk calls done() once at the end; each thread's `statuses` table is copied out of its Lua state.
# A script with response() makes wrk parse every response's headers (and buffer its body): cheap
# for bodiless 304s, so only the 304 runs use it. The 200 runs use done() alone.
LUA_DONE = """
local threads = {}
function setup(thread) table.insert(threads, thread) end
function done(summary, latency, requests)
  local statuses = {}
  for _, thread in ipairs(threads) do
    local counted = thread:get("statuses") or {}
    for status, count in pairs(counted) do
      statuses[tostring(status)] = (statuses[tostring(status)] or 0) + count
    end
  end
  local parts = {}
  for status, count in pairs(statuses) do
    table.insert(parts, string.format('"%s": %d', status, count))
  end
  local errors = summary.errors
  io.write(string.format(
    'RESULT {"requests": %d, "duration_us": %d, "bytes": %d, "errors": %d, "bad_status": %d, '
    .. '"p50": %d, "p90": %d, "p99": %d, "statuses": {%s}}\\n',
    summary.requests, summary.duration, summary.bytes,
    errors.connect + errors.read + errors.write + errors.timeout, errors.status,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    table.concat(parts, ", ")))
end
"""
KINDS = {
    "304": "304, If-None-Match",
    "200": "200, full feed ({kB:.0f} kB)",
    "304-gzip": "304, If-None-Match, gzip",
    "200-gzip": "200, full feed gzipped ({kB:.0f} kB)",
}
LUA_COUNT = """
statuses = {}
function response(status, headers, body) statuses[status] = (statuses[status] or 0) + 1 end
"""


@dataclass(frozen=True, slots=True)
class Run:
    """One wrk run, as its done() reported it; latencies in microseconds."""

    requests: int
    seconds: float
    bytes: int
    errors: int
    bad_status: int
    p50: int
    p90: int
    p99: int
    statuses: dict[str, int]

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


# -- the data folder --------------------------------------------------------------------------------


def week_of_digests(papers: list[Paper], per_day: int = 20, days: int = 7) -> list[Digest]:
    """A profile's rolling window: `days` digests of `per_day` papers, with reasons."""
    digests = []
    for back in range(days):
        chosen = papers[back * per_day : (back + 1) * per_day]
        until = datetime.combine(DAY - timedelta(days=back), datetime.min.time(), UTC) + timedelta(
            hours=7
        )
        items = tuple(
            ScoredPaper(
                paper,
                20.0 - rank,
                Reasons(
                    keywords=tuple(w.lower() for w in paper.title.split()[:2]),
                    categories=paper.categories[:1],
                    parts=(("keywords", 3.0), ("categories", 0.5)),
                ),
            )
            for rank, paper in enumerate(chosen)
        )
        digests.append(
            Digest(PROFILE, until.date(), "UTC", until - timedelta(days=1), until, 2000,
                   (SourceNote("arxiv-cs", "ok"),), items)
        )
    return digests


def make_site(folder: Path, corpus: Path, store_url: str | None = None) -> Path:
    """A config and the published feeds, as `digest run` leaves them (in feeds_dir, or in the
    PostgreSQL store at `store_url`: its feed_files); returns the config's path."""
    config = folder / "config.toml"
    store_table = f'\n[store]\nurl = "{store_url}"\n' if store_url else ""
    config.write_text(
        f"""data_dir = "data"
{store_table}

[output]
base_url = "{BASE}"

[fetch]
contact = "bench@example.org"

[sources.arxiv-cs]
kind = "arxiv-rss"
path = "unused.xml"
enabled = false  # never read: the bench only serves feeds

[profiles.{PROFILE}]
keywords = ["language model"]
""",
        encoding="utf-8",
    )
    papers = load_papers(corpus)[-400:]
    renderer = Renderer()
    everything = feeds.all_papers_feed(papers[-200:], renderer, f"{BASE}/feeds", 200)
    profile = feeds.profile_feed(PROFILE, week_of_digests(papers[:140]), renderer,
                                 f"{BASE}/feeds", 200)
    files = {}
    for made in (everything, profile):
        files[made.rss_path], files[made.atom_path] = made.rss, made.atom
    files["feeds.opml"] = feeds.opml([(f.title, f.atom_path) for f in (everything, profile)],
                                     f"{BASE}/feeds")
    if store_url:
        from digest.store.postgres import PgTarget, PostgresStore

        with PostgresStore.connect(PgTarget(store_url)) as store:
            store.put_feed_files(files, datetime(2026, 6, 1, tzinfo=UTC))
    else:
        feeds.publish(folder / "data" / "feeds", files)
    return config


@contextlib.contextmanager
def postgresql_url() -> Iterator[str]:
    """A throwaway PostgreSQL server (tests/pgserver.py: initdb in a temporary folder, a Unix
    socket there) and a database on it; stopped and removed after the block."""
    sys.path.insert(0, str(ROOT / "tests"))
    from pgserver import postgresql_or_skip, running

    with running(postgresql_or_skip()) as server:
        yield server.create_database("serve_speed")


# -- the server -------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_server(config: Path, port: int) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "digest", "--config", str(config), "serve",
               "--host", "127.0.0.1", "--port", str(port)]
    # From the repository's root, so `-m digest` runs this tree's code, not an installed copy.
    # Its access log (a line per request) goes to a file beside the config, not the terminal.
    with (config.parent / "serve.log").open("wb") as log:
        server = subprocess.Popen(command, cwd=ROOT, start_new_session=True, stdout=log, stderr=log)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"`digest serve` exited with {server.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return server
        except OSError:
            time.sleep(0.1)
    stop_server(server)
    raise SystemExit("`digest serve` did not start listening within 30 s")


def stop_server(server: subprocess.Popen[bytes]) -> None:
    # The server's own session: its workers (if any) get the signal too.
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


# -- the load ---------------------------------------------------------------------------------------


def wrk(url: str, script: Path, args: argparse.Namespace, seconds: float,
        headers: tuple[str, ...] = ()) -> Run:
    command = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{seconds:g}s",
               "--timeout", "5s", "-s", str(script), url]
    for header in headers:
        command[1:1] = ["-H", header]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    line = next((row for row in output.splitlines() if row.startswith("RESULT ")), None)
    if line is None:
        raise SystemExit(f"wrk printed no result:\n{output}")
    found = json.loads(line.removeprefix("RESULT "))
    return Run(found["requests"], found["duration_us"] / 1e6, found["bytes"], found["errors"],
               found["bad_status"], found["p50"], found["p90"], found["p99"], found["statuses"])


@dataclass(frozen=True, slots=True)
class Feed:
    """The feed as one coding serves it: what wrk's requests ask with and must get."""

    gzipped: bool
    etag: str
    size: int  # bytes of the body as sent
    entries: int
    not_modified_headers: int


def probe(url: str, gzipped: bool) -> Feed:
    """A GET and a conditional GET with the headers wrk will send: a 200 in the right coding, then
    a bare 304 with the same ETag."""
    with httpx.Client() as client:
        del client.headers["accept-encoding"]  # as wrk: none, unless gzip is asked for
        coding = {"accept-encoding": "gzip"} if gzipped else {}
        with client.stream("GET", url, headers=coding) as first:
            first.raise_for_status()
            sent = b"".join(first.iter_raw())
        if (first.headers.get("content-encoding") == "gzip") is not gzipped:
            raise SystemExit(f"asked with {coding}, got Content-Encoding "
                             f"{first.headers.get('content-encoding')}")
        etag = first.headers["etag"]
        again = client.get(url, headers={**coding, "if-none-match": etag})
    if again.status_code != 304 or again.content or again.headers["etag"] != etag:
        raise SystemExit(f"a conditional GET got {again.status_code}, not a bare 304 with {etag}")
    content = gzip.decompress(sent) if gzipped else sent
    return Feed(gzipped, etag, len(sent), content.count(b"<entry>"), len(again.headers.raw))


def check_304(run: Run) -> None:
    if run.errors or set(run.statuses) != {"304"}:
        raise SystemExit(f"not every answer was 304: {run.statuses}, {run.errors} socket errors")


def check_200(run: Run, size: int) -> None:
    # No per-response hook here: every answer must be 2xx/3xx and carry (at least) the whole feed.
    if run.errors or run.bad_status or run.bytes < run.requests * size:
        raise SystemExit(
            f"not every answer was the full feed: {run.bad_status} of status >= 400, "
            f"{run.errors} socket errors, {run.bytes / max(run.requests, 1):.0f} bytes each"
        )


def measure(label: str, runs: list[Run]) -> float:
    median = statistics.median(run.rate for run in runs)
    print(f"{label}: median {median:,.0f} requests/s; runs "
          + ", ".join(f"{run.rate:,.0f}" for run in runs))
    for number, run in enumerate(runs, start=1):
        print(f"  run {number}: {run.requests:>8,} requests in {run.seconds:.1f} s = "
              f"{run.rate:>7,.0f}/s; latency p50 {run.p50 / 1000:.2f} ms, "
              f"p90 {run.p90 / 1000:.2f} ms, p99 {run.p99 / 1000:.2f} ms")
    return median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--duration", type=float, default=10, help="seconds per run")
    parser.add_argument("--warmup", type=float, default=3, help="seconds of load before the runs")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--kind", nargs="+", choices=KINDS, default=list(KINDS))
    parser.add_argument(
        "--store", choices=("sqlite", "postgresql"), default="sqlite",
        help="where the feeds are: feeds_dir (sqlite) or a throwaway PostgreSQL store's "
        "feed_files, as a web replica serves them (issue 17)",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")

    with contextlib.ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        store_url = stack.enter_context(postgresql_url()) if args.store == "postgresql" else None
        config = make_site(folder, args.corpus, store_url)
        done = folder / "done.lua"
        done.write_text(LUA_DONE, encoding="utf-8")
        counting = folder / "count.lua"
        counting.write_text(LUA_DONE + LUA_COUNT, encoding="utf-8")

        port = free_port()
        url = f"http://127.0.0.1:{port}/feeds/profiles/{PROFILE}.atom"
        server = start_server(config, port)
        try:
            feed = {gzipped: probe(url, gzipped) for gzipped in (False, True)}
            plain, gzipped = feed[False], feed[True]
            print(f"feed {url.split('/feeds/')[1]}: {plain.size / 1000:.0f} kB, "
                  f"{plain.entries} entries, ETag {plain.etag}; gzipped {gzipped.size / 1000:.0f}"
                  f" kB, ETag {gzipped.etag}; a 304 carries {plain.not_modified_headers} headers")
            print(f"wrk, {args.threads} threads, {args.connections} connections, "
                  f"{args.runs} runs of {args.duration:g} s after {args.warmup:g} s of warm-up; "
                  f"wrk and the server share {os.cpu_count()} cores\n")

            medians: dict[str, float] = {}
            for kind in args.kind:
                sent = feed[kind.endswith("-gzip")]
                coding = ("Accept-Encoding: gzip",) if sent.gzipped else ()
                if kind.startswith("304"):
                    conditional = (*coding, f"If-None-Match: {sent.etag}")
                    check_304(wrk(url, counting, args, args.warmup, conditional))
                    runs = [wrk(url, counting, args, args.duration, conditional)
                            for _ in range(args.runs)]
                    for run in runs:
                        check_304(run)
                else:
                    check_200(wrk(url, done, args, args.warmup, coding), sent.size)
                    runs = [wrk(url, done, args, args.duration, coding) for _ in range(args.runs)]
                    for run in runs:
                        check_200(run, sent.size)
                medians[kind] = measure(KINDS[kind].format(kB=sent.size / 1000), runs)
        finally:
            stop_server(server)

    print()
    for kind, median in medians.items():
        target = " (target >= 2,000)" if kind.startswith("304") else ""
        print(f"{KINDS[kind].format(kB=feed[kind.endswith('-gzip')].size / 1000)}: "
              f"median {median:,.0f} requests/s{target}")


if __name__ == "__main__":
    main()
