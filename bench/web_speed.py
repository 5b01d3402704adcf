"""Benchmark: latency of `digest serve`'s pages under load, and subscribe timing by address state.

    python bench/web_speed.py [--runs 3] [--duration 10] [--threads 2] [--connections 64]

Starts `digest serve` on 127.0.0.1 (its own process, a fresh data folder, mail to the outbox) and
runs wrk against
    GET  /subscribe                       the subscribe form (a CSRF token and a cookie each time)
    POST /unsubscribe/TOKEN               the RFC 8058 one-click POST a mail client sends
Each wrk run counts the status codes (every one must be 200) and prints requests/s and the
latency percentiles; the medians over runs are printed last. Target (issue 13): p99 under 100 ms
for both with 64 connections on the 2-core machine, wrk sharing the cores with the server.

Then, without load, it times POST /subscribe for a new address, a pending one and an active one
(sequential requests on one connection, interleaved, --timing-rounds each) and prints their
medians: the answers must take the same time whatever the address's state.
"""

from __future__ import annotations

import argparse
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from serve_speed import LUA_COUNT, LUA_DONE, Run, free_port, start_server, stop_server, wrk

from digest.config import load_config
from digest.store import Store
from digest.subscriptions import confirm, read_form, sign_up
from digest.tokens import load_secrets, unsubscribe_token

BASE = "http://127.0.0.1"
READER = "reader@example.org"
INTERESTS = {"keywords": "language model", "frequency": "daily", "weekday": "monday",
             "timezone": "Europe/Berlin", "deliver_at": "07:30"}
LUA_POST = """
wrk.method = "POST"
wrk.body = "List-Unsubscribe=One-Click"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
"""


def make_site(folder: Path) -> Path:
    config = folder / "config.toml"
    config.write_text(
        """data_dir = "data"

[output]
base_url = "http://127.0.0.1"

[fetch]
contact = "bench@example.org"

[sources.arxiv-cs]
kind = "arxiv-rss"
path = "unused.xml"
enabled = false  # never read: the bench only serves pages

[profiles.bench]
keywords = ["language model"]
email = ["reader@example.org"]
""",
        encoding="utf-8",
    )
    return config


def check_all_200(run: Run) -> None:
    if run.errors or set(run.statuses) != {"200"}:
        raise SystemExit(f"not every answer was 200: {run.statuses}, {run.errors} socket errors")


def report(label: str, runs: list[Run]) -> tuple[float, float]:
    rate = statistics.median(run.rate for run in runs)
    p99 = statistics.median(run.p99 for run in runs) / 1000
    print(f"{label}: median {rate:,.0f} requests/s, p50 "
          f"{statistics.median(run.p50 for run in runs) / 1000:.1f} ms, p99 {p99:.1f} ms")
    for number, run in enumerate(runs, start=1):
        print(f"  run {number}: {run.requests:>7,} requests in {run.seconds:.1f} s = {run.rate:>6,.0f}/s;"
              f" p50 {run.p50 / 1000:.1f} ms, p90 {run.p90 / 1000:.1f} ms, p99 {run.p99 / 1000:.1f} ms")
    return rate, p99


def subscribe_timings(client: httpx.Client, rounds: int, config_path: Path) -> dict[str, float]:
    """Median milliseconds of POST /subscribe for a new, a pending and an active address."""
    config = load_config(config_path)
    interests = read_form({**INTERESTS, "email": "x@example.org"}, with_address=True).interests
    assert interests is not None
    now = time.time()
    from datetime import UTC, datetime

    with Store.open(config.store_path) as db:
        for number in range(rounds):
            sign_up(db, f"pending{number}@example.org", interests, datetime.fromtimestamp(now, UTC))
            made = sign_up(db, f"active{number}@example.org", interests, datetime.fromtimestamp(now, UTC))
            confirm(db, made.subscriber.profile, made.subscriber.address, datetime.now(UTC))
    times: dict[str, list[float]] = {"new": [], "pending": [], "active": []}
    order = random.Random(13)
    for number in range(rounds):
        for state in order.sample(["new", "pending", "active"], 3):  # no state always first
            form = client.get("/subscribe")
            token = re.search(r'name="csrf" value="([^"]+)"', form.text)
            assert token is not None
            began = time.perf_counter()
            # Each from its own network, as real sign-ups come: the per-client limits stay out of it.
            forwarded = {"x-forwarded-for": f"10.{number % 250}.{['new', 'pending', 'active'].index(state)}.7"}
            answer = client.post("/subscribe", headers=forwarded, data={
                "csrf": token.group(1), "email": f"{state}{number}@example.org", **INTERESTS})
            times[state].append((time.perf_counter() - began) * 1000)
            if answer.status_code != 200:
                raise SystemExit(f"POST /subscribe for a {state} address: {answer.status_code}")
    return {state: statistics.median(values) for state, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10, help="seconds per run")
    parser.add_argument("--warmup", type=float, default=3, help="seconds of load before the runs")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--timing-rounds", type=int, default=100)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")

    with tempfile.TemporaryDirectory() as folder_name:
        folder = Path(folder_name)
        config = make_site(folder)
        counting = folder / "count.lua"
        counting.write_text(LUA_DONE + LUA_COUNT, encoding="utf-8")
        posting = folder / "post.lua"
        posting.write_text(LUA_POST + LUA_DONE + LUA_COUNT, encoding="utf-8")
        port = free_port()
        server = start_server(config, port)
        try:
            keys = load_secrets(folder / "data")
            site = f"{BASE}:{port}"
            one_click = f"{site}/unsubscribe/{unsubscribe_token(keys, 'bench', READER)}"
            print(f"wrk, {args.threads} threads, {args.connections} connections, {args.runs} runs "
                  f"of {args.duration:g} s after {args.warmup:g} s of warm-up\n")
            results = {}
            for label, url, script in (("GET /subscribe", f"{site}/subscribe", counting),
                                       ("POST one-click unsubscribe", one_click, posting)):
                check_all_200(wrk(url, script, args, args.warmup))
                runs = [wrk(url, script, args, args.duration) for _ in range(args.runs)]
                for run in runs:
                    check_all_200(run)
                results[label] = report(label, runs)
            with httpx.Client(base_url=site) as client:
                timings = subscribe_timings(client, args.timing_rounds, config)
        finally:
            stop_server(server)

    print()
    for label, (rate, p99) in results.items():
        print(f"{label}: p99 {p99:.1f} ms at {rate:,.0f} requests/s (target p99 < 100 ms)")
    print("POST /subscribe, median ms by address state: "
          + ", ".join(f"{state} {ms:.2f}" for state, ms in timings.items())
          + f"; largest ratio {max(timings.values()) / min(timings.values()):.2f}")


if __name__ == "__main__":
    main()
