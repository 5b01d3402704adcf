"""A run goes in blocks (issue 16, items 1 and 2): what earlier runs left open first, then rank ->
compose -> store -> every channel a block of profiles at a time, each block's digests delivered
from memory as composed, none read back from the store to be rendered.

Blocks are made small (pipeline.BLOCK) so a handful of profiles spans several; mail goes to the
Maildir outbox or to a port nothing listens on; the clock is frozen.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import feedparser
import pytest
from freezegun import freeze_time
from helpers import MONDAY, Recorder, digest, free_port, outbox, write_config

from digest import pipeline
from digest.models import Delivery, Digest
from digest.store import Store


@pytest.fixture
def frozen() -> Iterator[object]:
    with freeze_time(MONDAY, auto_tick_seconds=1) as clock:
        yield clock


def readers(count: int) -> str:
    """`count` profiles, one reader each, all due at the first run."""
    return "".join(
        f'\n[profiles.p{n:03}]\nemail = ["r{n:03}@example.org"]\nkeywords = ["language model"]\n'
        f'timezone = "Europe/Berlin"\n'
        for n in range(count)
    )


def ledger(tmp_path: Path) -> list[Delivery]:
    with Store.open(tmp_path / "data" / "paperdigest.sqlite3") as store:
        return store.deliveries()


def test_every_block_is_composed_and_delivered_once(
    tmp_path: Path, frozen: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pipeline, "BLOCK", 3)
    blocks: list[int] = []
    real_compose = pipeline.Composer.compose

    def counted(self: pipeline.Composer, block: list[pipeline.Due]) -> tuple[list[Digest], list[Digest]]:
        blocks.append(len(block))
        return real_compose(self, block)

    monkeypatch.setattr(pipeline.Composer, "compose", counted)
    fitted: list[int] = []
    real_make_ranker = pipeline.make_ranker
    monkeypatch.setattr(
        pipeline, "make_ranker", lambda *a: fitted.append(1) or real_make_ranker(*a)
    )
    config = write_config(tmp_path, profiles=readers(7), extra="[delivery]\ndeadline = 1440")

    result = digest(config, "run")
    assert result.exit_code == 0, result.output
    assert sorted(blocks) == [1, 3, 3]  # in the order the run's id picks (block_starts)
    assert len(fitted) == 1  # the ranking model is fitted once a run, not once a block
    assert "mail: 7 sent, 0 deferred, 0 failed, 0 skipped" in result.output
    assert sorted(m["To"] for m in outbox(tmp_path)) == [f"r{n:03}@example.org" for n in range(7)]
    assert Counter((r.kind, r.status) for r in ledger(tmp_path)) == {
        ("mail", "sent"): 7, ("feed", "sent"): 7
    }
    feeds_dir = tmp_path / "data" / "feeds"
    for n in range(7):
        assert feedparser.parse((feeds_dir / "profiles" / f"p{n:03}.atom").read_bytes()).entries
    # The run again: nothing is due and nothing goes twice.
    again = digest(config, "run")
    assert "no digest was due" in again.output
    assert len(outbox(tmp_path)) == 7


def test_a_blocks_digests_are_rendered_as_composed_not_read_back(
    tmp_path: Path, frozen: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Mail, chat and feeds take the digests of their block from memory: the store is asked for
    none of the digests this run composed (a webhook chat takes part, posting to nowhere)."""
    monkeypatch.setattr(pipeline, "BLOCK", 2)
    read_back: list[tuple[str, date]] = []
    real_digest, real_digests = Store.digest, Store.digests

    def digest_read(self: Store, profile: str, day: date) -> Digest | None:
        read_back.append((profile, day))
        return real_digest(self, profile, day)

    def digests_read(self: Store, profile: str, **options: object) -> list[Digest]:
        found = real_digests(self, profile, **options)  # type: ignore[arg-type]
        read_back.extend((d.profile, d.day) for d in found)
        return found

    monkeypatch.setattr(Store, "digest", digest_read)
    monkeypatch.setattr(Store, "digests", digests_read)
    config = write_config(tmp_path, profiles=readers(5), extra="[delivery]\ndeadline = 1440")

    result = digest(config, "run")
    assert result.exit_code == 0, result.output
    assert len(outbox(tmp_path)) == 5
    assert read_back == []


def test_a_mail_channel_that_stops_sits_out_the_later_blocks(
    tmp_path: Path, frozen: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SMTP down: the breaker opens in the first block, and the later blocks do not knock again
    (three refused connections in all, not three a block); their rows are counted as left, the
    feeds of every block are written, and the next run with the server up sends them all."""
    import smtplib

    monkeypatch.setattr(pipeline, "BLOCK", 2)
    attempts: list[int] = []
    real_connect = smtplib.SMTP.connect

    def connect(self: smtplib.SMTP, *args: object, **kwargs: object) -> object:
        attempts.append(1)
        return real_connect(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(smtplib.SMTP, "connect", connect)
    config = write_config(
        tmp_path, profiles=readers(6), smtp_port=free_port(), extra="[delivery]\ndeadline = 1440"
    )
    result = digest(config, "run")
    assert result.exit_code == 1
    assert len(attempts) == 3, attempts  # the breaker's three, in the first block only
    assert "mail: 0 sent" in result.output
    assert "mail: 6 left for the next run" in result.output
    assert result.output.count("error: mail:") == 1
    statuses = Counter((r.kind, r.status) for r in ledger(tmp_path))
    assert statuses == {("mail", "pending"): 6, ("feed", "sent"): 6}


def test_what_earlier_runs_left_goes_first_and_once(
    tmp_path: Path, frozen: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A digest an earlier run stored but did not deliver (a crash after its block was stored) is
    delivered by the next run's first pass, once, beside the new blocks."""
    monkeypatch.setattr(pipeline, "BLOCK", 2)
    config = write_config(tmp_path, profiles=readers(4), extra="[delivery]\ndeadline = 1440")
    from digest.channels import mail

    # The first run composes and stores every digest, then every mail is refused by the outbox.
    def refused(self: object, message: object, recipient: str) -> None:
        raise mail.DeliveryError("the outbox is full")

    with monkeypatch.context() as patch:
        patch.setattr(mail.Outbox, "send", refused)
        first = digest(config, "run")
    assert first.exit_code == 1
    assert not list((tmp_path / "data" / "outbox").glob("new/*"))
    second = digest(config, "run")
    assert second.exit_code == 0, second.output
    assert "no digest was due" in second.output
    assert "mail: 4 sent" in second.output
    assert sorted(m["To"] for m in outbox(tmp_path)) == [f"r{n:03}@example.org" for n in range(4)]


def test_a_run_says_the_first_digests_and_counts_the_rest(
    tmp_path: Path, frozen: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    from digest import cli

    monkeypatch.setattr(cli, "COMPOSED_SHOWN", 2)
    config = write_config(tmp_path, profiles=readers(5), extra="[delivery]\ndeadline = 1440")
    result = digest(config, "run")
    assert result.exit_code == 0, result.output
    said = [line for line in result.output.splitlines() if ": digest of " in line]
    assert len(said) == 2
    assert "... and 3 more digests" in result.output


def test_runs_on_one_store_start_at_different_blocks_and_skip_what_another_composed(
    tmp_path: Path, frozen: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Workers started together share the composing: each begins at a block its id picks, and
    drops from a block the profiles another run composed since it read the heads."""
    from helpers import MONDAY

    from digest.config import load_config

    monkeypatch.setattr(pipeline, "BLOCK", 10)
    starts = {tuple(pipeline.block_starts(95, f"host:{pid}:x")) for pid in range(50)}
    assert all(sorted(order) == list(range(0, 95, 10)) for order in starts)  # each block once
    assert len({order[0] for order in starts}) > 3  # begun apart

    config = load_config(write_config(tmp_path, profiles=readers(6)))
    store = Store.open(tmp_path / "data" / "paperdigest.sqlite3")
    now = MONDAY
    due = pipeline.due_profiles(store, config.profiles, now)  # both runs read the heads now
    assert len(due) == 6
    first = pipeline.Composer(config, store, lambda: now, targets=lambda profile: ["feed"])
    _, ours = first.compose(due[:4])
    assert len(ours) == 4
    second = pipeline.Composer(config, store, lambda: now, targets=lambda profile: ["feed"])
    left = second.still_due(due)
    assert [entry.profile.name for entry in left] == [entry.profile.name for entry in due[4:]]
    store.close()


def test_two_workers_reaching_a_block_at_once_compose_it_once(
    tmp_path: Path,
    postgresql_database_url: str,
    smtp_server: tuple[Recorder, int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two workers on one PostgreSQL store, both taking the blocks in the same order and started
    at the same instant (the worst case block_starts avoids): each block is claimed before it is
    ranked, so the one that finds it claimed goes on to the next, and each profile is ranked once
    between them; every digest is sent once."""
    from datetime import timedelta

    from freezegun import freeze_time
    from helpers import together

    from digest.channels.mail import SmtpSender
    from digest.config import load_config
    from digest.store import open_store

    recorder, port = smtp_server
    monkeypatch.setenv("DIGEST_TEST_DB", postgresql_database_url)
    path = write_config(
        tmp_path, profiles=readers(6), smtp_port=port,
        extra='[rank]\nembeddings = false\n\n[store]\nurl_env = "DIGEST_TEST_DB"\n',
    )
    with freeze_time(MONDAY - timedelta(hours=1)):
        assert digest(path, "ingest").exit_code == 0
    config = load_config(path)
    assert config.smtp is not None
    monkeypatch.setattr(pipeline, "BLOCK", 2)  # 3 blocks
    monkeypatch.setattr(pipeline, "block_starts", lambda count, claimant: list(range(0, count, 2)))
    ranked: list[str] = []
    real_compose = pipeline.Composer.compose

    def slow(self: pipeline.Composer, block: list[pipeline.Due]) -> tuple[list[Digest], list[Digest]]:
        if block:  # long enough for the other worker to reach the same block meanwhile
            ranked.extend(entry.profile.name for entry in block)
            time.sleep(0.5)
        return real_compose(self, block)

    monkeypatch.setattr(pipeline.Composer, "compose", slow)

    def worker(number: int) -> int:
        with open_store(config) as store, SmtpSender(config.smtp) as sender:  # type: ignore[arg-type]
            report = pipeline.run_cycle(
                config, store, lambda: MONDAY, sender, claimant=f"worker{number}"
            )
        return len(report.composed)

    results = together(2, worker)
    assert all(isinstance(result, int) for result in results), results
    assert sum(results) == 6, results  # type: ignore[arg-type]
    assert sorted(Counter(ranked).values()) == [1] * 6, Counter(ranked)  # each ranked once
    assert sorted(recorder.recipients().values()) == [1] * 6, recorder.recipients()
