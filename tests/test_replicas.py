"""Two `digest serve` processes on one PostgreSQL store, as two web replicas on two hosts would
run (issue 17): the same feed bytes and validators from both, a conditional GET with one's ETag
answered 304 by the other, links signed by the job valid on both, the subscribe form's rate
limit shared. Real processes on loopback ports, their clocks frozen (ticking) by freezegun."""

from __future__ import annotations

import re
import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from helpers import MONDAY, Said, digest_process, record, write_config
from starlette.testclient import TestClient

from digest import feeds
from digest.config import load_config
from digest.models import Digest, Interests, Reasons, ScoredPaper, Subscriber
from digest.store import open_store
from digest.web import SUBSCRIBES_PER_CLIENT, create_app


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _answering(port: int, process: subprocess.Popen[str], said: Said) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, said.all()
        try:
            httpx.get(f"http://127.0.0.1:{port}/feeds/", timeout=5)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError(f"digest serve on {port} did not answer: {''.join(said.lines)}")


@pytest.fixture
def replicas(
    tmp_path: Path, postgresql_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Path, list[str]]]:
    """A run's feeds published into one PostgreSQL store, and two `digest serve` on it: each
    with a data directory of its own (nothing shared but the database), their base URLs."""
    monkeypatch.setenv("DIGEST_TEST_DB", postgresql_database_url)
    config = write_config(tmp_path, extra='[store]\nurl_env = "DIGEST_TEST_DB"')
    run = digest_process(config, "run", at=MONDAY)
    out, err = run.communicate(timeout=180)
    assert run.returncode == 0, err
    assert "files changed in the store" in out
    assert not (tmp_path / "data" / "feeds").exists()  # no feed file on the job's disk
    servers: list[subprocess.Popen[str]] = []
    bases = []
    try:
        for n in range(2):
            host = tmp_path / f"host-{n}"
            host.mkdir()
            text = config.read_text(encoding="utf-8").replace(
                'data_dir = "data"', f'data_dir = "{host / "data"}"'
            )
            own = host / "config.toml"
            own.write_text(text, encoding="utf-8")
            port = _free_port()
            server = digest_process(own, "serve", "--port", str(port), at=MONDAY)
            servers.append(server)
            _answering(port, server, Said(server))
            bases.append(f"http://127.0.0.1:{port}")
        yield tmp_path, bases
    finally:
        for server in servers:
            server.kill()
            server.wait(timeout=30)


def test_both_replicas_serve_the_same_feed_bytes_and_validators(
    replicas: tuple[Path, list[str]],
) -> None:
    _, (one, two) = replicas
    for path in ("all.atom", "all.rss", "feeds.opml", "profiles/ml.atom", "profiles/ml.rss"):
        a = httpx.get(f"{one}/feeds/{path}", headers={"accept-encoding": "identity"})
        b = httpx.get(f"{two}/feeds/{path}", headers={"accept-encoding": "identity"})
        assert a.status_code == b.status_code == 200, (path, a.status_code, b.status_code)
        assert a.content == b.content and a.content
        assert a.headers["etag"] == b.headers["etag"], path
        assert a.headers["last-modified"] == b.headers["last-modified"], path
        # One replica's ETag (and date) is as good as the other's: a reader moved by the load
        # balancer gets its 304.
        again = httpx.get(f"{two}/feeds/{path}", headers={"if-none-match": a.headers["etag"]})
        assert again.status_code == 304, path
        since = httpx.get(
            f"{one}/feeds/{path}", headers={"if-modified-since": b.headers["last-modified"]}
        )
        assert since.status_code == 304, path
        gz_a = httpx.get(f"{one}/feeds/{path}", headers={"accept-encoding": "gzip"})
        gz_b = httpx.get(f"{two}/feeds/{path}", headers={"accept-encoding": "gzip"})
        assert gz_a.headers.get("etag") == gz_b.headers.get("etag")
    assert httpx.get(f"{one}/feeds/profiles/nobody.atom").status_code == 404
    index = httpx.get(f"{two}/feeds/")
    assert index.status_code == 200 and "all.atom" in index.text and "ml.atom" in index.text


def test_a_feedback_link_signed_by_the_job_is_valid_on_both_replicas(
    replicas: tuple[Path, list[str]],
) -> None:
    tmp_path, bases = replicas
    feed = httpx.get(f"{bases[0]}/feeds/profiles/ml.atom").text
    links = re.findall(r"https://digest\.example\.org(/feedback/[^\"<&]+)", feed)
    assert links, feed[:2000]
    for base in bases:
        page = httpx.get(base + links[0])
        assert page.status_code == 200, (base, page.status_code, page.text[:500])
        assert "/feedback/" in page.text  # the form that confirms the mark
        tampered = httpx.get(base + links[0][:-3] + "AAA")
        assert tampered.status_code in (400, 403, 404)
    # The keys are the store's: no host holds a secret.key (each replica has a data_dir of its own).
    assert not list(tmp_path.glob("**/secret.key"))


def test_the_subscribe_rate_limit_is_shared_by_the_replicas(
    replicas: tuple[Path, list[str]],
) -> None:
    _, (one, two) = replicas
    # Every POST counts before its form is even read (these have none: refused with 403).
    for _ in range(SUBSCRIBES_PER_CLIENT):
        assert httpx.post(f"{one}/subscribe").status_code != 429
    limited = httpx.post(f"{two}/subscribe")
    assert limited.status_code == 429, limited.text[:500]
    assert int(limited.headers["retry-after"]) > 0


def test_a_personal_feed_built_on_request_goes_into_the_store_and_another_replica_serves_it(
    tmp_path: Path, postgresql_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A web subscriber's feed no run built (nobody read it) is built by the replica asked
    first, into the store; the other replica then answers the same bytes and validators."""
    monkeypatch.setenv("DIGEST_TEST_DB", postgresql_database_url)
    config = load_config(write_config(tmp_path, extra='[store]\nurl_env = "DIGEST_TEST_DB"'))
    profile, at = "web-00000000000000aa", MONDAY
    path = feeds.profile_feed_paths(profile)[1]
    with open_store(config) as store:
        store.save_subscriber(Subscriber(
            profile, f"{profile}@example.org", Interests(keywords=("x",)), "active", at, at,
            confirmed=at,
        ))
        store.ingest([record("A Paper", arxiv_id="2611.00001")], at)
        paper = store.paper("2611.00001")
        assert paper is not None
        store.save_digests([(Digest(
            profile, at.date(), "UTC", at - timedelta(days=1), at, 1, (),
            (ScoredPaper(paper, 1.0, Reasons(keywords=("x",))),),
        ), ["feed"])], at)
        assert store.feed_file(path) is None
    later = at + timedelta(hours=1)
    with TestClient(create_app(config, lambda: later)) as one, TestClient(
        create_app(config, lambda: later)
    ) as two:
        built = one.get(f"/feeds/{path}")
        assert built.status_code == 200 and feeds.item_id("2611.00001") in built.text
        with open_store(config) as store:
            kept = store.feed_file(path)
        assert kept is not None and kept.modified == later
        served = two.get(f"/feeds/{path}")
        assert served.content == built.content
        assert served.headers["etag"] == built.headers["etag"]
        assert served.headers["last-modified"] == built.headers["last-modified"]
        assert two.get(f"/feeds/{path}", headers={"if-none-match": built.headers["etag"]}).status_code == 304
    assert not (tmp_path / "data" / "feeds").exists()  # no file written on any host
