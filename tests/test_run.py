"""`digest run` end to end: captured pages in, a Maildir or a real SMTP server and feed files out.

The clock is frozen (freezegun) and moved by the tests; sources are captured files; mail goes to a
Maildir in tmp_path or to aiosmtpd on 127.0.0.1. Nothing touches the network.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import feedparser
import pytest
from freezegun import freeze_time
from helpers import MONDAY, Crash, Recorder, digest, outbox, text_of, write_config

from digest.channels.mail import SmtpSender
from digest.config import load_config
from digest.pipeline import run_cycle
from digest.store import Store
from digest.tokens import BadToken, load_secrets, read_unsubscribe_token, unsubscribe_token


@pytest.fixture
def frozen() -> Iterator[object]:
    # Each reading of the clock moves it one second on, as a real run's steps do: papers seen by
    # the ingest are older than the moment the digest is composed.
    with freeze_time(MONDAY, auto_tick_seconds=1) as clock:
        yield clock


def test_a_run_mails_every_subscriber_once_and_writes_every_feed(
    tmp_path: Path, frozen: object
) -> None:
    config = write_config(tmp_path)
    result = digest(config, "run")
    assert result.exit_code == 0, result.output
    assert "ml: digest of 2026-11-23: 10 of 80 new papers" in result.output
    assert "mail: 3 sent, 0 deferred, 0 failed, 0 skipped" in result.output

    messages = outbox(tmp_path)
    assert [str(m["To"]) for m in messages] == ["a@example.org", "b@example.org", "c@example.org"]
    ml = messages[0]
    assert str(ml["Subject"]).startswith("10 new papers for you · Nov 23")
    assert "chosen from 80 new papers from arxiv-api, hf-daily" in text_of(ml)
    assert "<https://digest.example.org/unsubscribe/" in str(ml["List-Unsubscribe"])
    quiet = messages[2]
    assert str(quiet["Subject"]) == "No new papers for you · Nov 23"
    assert "None of today's 80 new papers scored above your threshold." in text_of(quiet)

    feeds_dir = tmp_path / "data" / "feeds"
    names = sorted(str(p.relative_to(feeds_dir)) for p in feeds_dir.rglob("*") if p.is_file())
    assert names == [
        "all.atom", "all.rss", "feeds.opml",
        "profiles/ml.atom", "profiles/ml.rss", "profiles/quiet.atom", "profiles/quiet.rss",
    ]
    parsed = feedparser.parse((feeds_dir / "profiles" / "ml.atom").read_bytes())
    assert not parsed.bozo and len(parsed.entries) == 10
    assert len(feedparser.parse((feeds_dir / "all.rss").read_bytes()).entries) == 80
    with Store.open(tmp_path / "data" / "paperdigest.sqlite3") as store:
        statuses = Counter((row.channel, row.status) for row in store.deliveries())
    assert statuses == Counter(
        {("mail:a@example.org", "sent"): 1, ("mail:b@example.org", "sent"): 1,
         ("mail:c@example.org", "sent"): 1, ("feed", "sent"): 2}
    )


def test_a_second_run_the_same_day_sends_nothing_and_rewrites_no_feed(
    tmp_path: Path, frozen: object
) -> None:
    config = write_config(tmp_path)
    digest(config, "run")
    feed = tmp_path / "data" / "feeds" / "profiles" / "ml.rss"
    before = (feed.read_bytes(), feed.stat().st_mtime_ns)
    frozen.tick(timedelta(hours=3))  # type: ignore[attr-defined]
    again = digest(config, "run")
    assert again.exit_code == 0, again.output
    assert "no digest was due" in again.output
    assert "feeds: 0 files changed" in again.output
    assert "mail: 0 sent" in again.output
    assert len(outbox(tmp_path)) == 3
    assert (feed.read_bytes(), feed.stat().st_mtime_ns) == before


def test_a_deleted_feed_is_written_again_by_the_next_run(tmp_path: Path, frozen: object) -> None:
    config = write_config(tmp_path)
    digest(config, "run")
    feed = tmp_path / "data" / "feeds" / "profiles" / "quiet.atom"
    written = feed.read_bytes()
    feed.unlink()
    result = digest(config, "run")  # no digest due: only the missing files are made again
    assert "feeds: 1 files changed" in result.output
    assert feed.read_bytes() == written


def test_the_next_day_never_offers_a_paper_twice(tmp_path: Path, frozen: object) -> None:
    config = write_config(tmp_path)
    digest(config, "run")
    frozen.tick(timedelta(days=1))  # type: ignore[attr-defined]
    result = digest(config, "run")  # the same captured pages: nothing new
    assert result.exit_code == 0, result.output
    assert "ml: digest of 2026-11-24: 0 of 0 new papers" in result.output
    tuesday = [m for m in outbox(tmp_path) if "Nov 24" in str(m["Subject"])]
    assert len(tuesday) == 3
    assert "No new papers were listed in this period" in text_of(tuesday[0])
    # The profile feed keeps Monday's items, once each.
    parsed = feedparser.parse((tmp_path / "data" / "feeds" / "profiles" / "ml.rss").read_bytes())
    ids = [entry.id for entry in parsed.entries]
    assert len(ids) == 10 == len(set(ids))


def test_a_failed_source_is_named_in_the_digest(tmp_path: Path, frozen: object) -> None:
    config = write_config(tmp_path, broken_source=True)
    result = digest(config, "run")
    assert result.exit_code == 0, result.output  # one source failing is not the run failing
    assert "(failed sources: arxiv-lg)" in result.output
    text = text_of(outbox(tmp_path)[2])
    assert "! arxiv-lg could not be read today." in text
    assert "missing/feed.xml" not in text  # the error is in `digest history`, not for readers


def test_with_send_empty_off_an_empty_digest_is_not_mailed(tmp_path: Path, frozen: object) -> None:
    config = write_config(tmp_path, extra="send_empty = false")
    result = digest(config, "run")
    assert "mail: 2 sent, 0 deferred, 0 failed, 1 skipped" in result.output
    assert [str(m["To"]) for m in outbox(tmp_path)] == ["a@example.org", "b@example.org"]


def test_preview_writes_the_email_to_a_file_and_stores_nothing(
    tmp_path: Path, frozen: object
) -> None:
    config = write_config(tmp_path)
    digest(config, "ingest")
    target = tmp_path / "preview.html"
    result = digest(config, "preview", "ml", "--output", str(target))
    assert result.exit_code == 0, result.output
    assert "10 new papers for you" in result.output
    html = target.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and 'class="item"' in html
    with Store.open(tmp_path / "data" / "paperdigest.sqlite3") as store:
        assert store.digests("ml") == [] and store.deliveries() == []
    assert digest(config, "preview", "nobody").exit_code == 2


# -- SMTP: crashes and overlapping runs ------------------------------------------------------------


class CrashingSender(SmtpSender):
    def __init__(self, *args: object, after: int, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.left = after

    def send(self, message: object, recipient: str) -> None:  # type: ignore[override]
        if self.left == 0:
            raise Crash
        self.left -= 1
        super().send(message, recipient)  # type: ignore[arg-type]


def ingest_before_monday(config: Path) -> None:
    with freeze_time(MONDAY - timedelta(hours=1)):
        assert digest(config, "ingest").exit_code == 0


def test_a_crash_mid_run_then_a_rerun_delivers_each_digest_exactly_once(
    tmp_path: Path, smtp_server: tuple[Recorder, int]
) -> None:
    recorder, port = smtp_server
    config = load_config(write_config(tmp_path, smtp_port=port))
    assert config.smtp is not None
    now = [MONDAY]
    ingest_before_monday(write_config(tmp_path, smtp_port=port))
    with Store.open(config.store_path) as store:
        with pytest.raises(Crash), CrashingSender(config.smtp, after=1) as sender:
            run_cycle(config, store, lambda: now[0], sender)
        assert sum(recorder.recipients().values()) == 1
        # The crashed run held one row; its claim lapses, then the re-run finishes the job.
        now[0] += timedelta(minutes=20)
        with SmtpSender(config.smtp) as sender:
            report = run_cycle(config, store, lambda: now[0], sender)
        assert report.composed == ()  # the digests were composed once, by the crashed run
        assert len(store.digest("ml", MONDAY.date()).items) == 10  # type: ignore[union-attr]
        with SmtpSender(config.smtp) as sender:
            again = run_cycle(config, store, lambda: now[0], sender)
    assert again.mail.sent == 0
    assert recorder.recipients() == Counter(
        {"a@example.org": 1, "b@example.org": 1, "c@example.org": 1}
    )


def test_two_overlapping_runs_never_send_the_same_digest_twice(
    tmp_path: Path, smtp_server: tuple[Recorder, int]
) -> None:
    recorder, port = smtp_server
    path = write_config(tmp_path, smtp_port=port)
    ingest_before_monday(path)
    config = load_config(path)
    assert config.smtp is not None
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def one_run() -> None:
        try:
            with Store.open(config.store_path) as store, SmtpSender(config.smtp) as sender:  # type: ignore[arg-type]
                start.wait()
                run_cycle(config, store, lambda: MONDAY, sender)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    runs = [threading.Thread(target=one_run) for _ in range(2)]
    for run in runs:
        run.start()
    for run in runs:
        run.join(timeout=60)
    assert errors == []
    with Store.open(config.store_path) as store:
        assert len(store.digest("ml", MONDAY.date()).items) == 10  # type: ignore[union-attr]
    assert recorder.recipients() == Counter(
        {"a@example.org": 1, "b@example.org": 1, "c@example.org": 1}
    )


# -- signed links ----------------------------------------------------------------------------------


def test_unsubscribe_tokens_name_one_subscriber_and_refuse_tampering(tmp_path: Path) -> None:
    keys = load_secrets(tmp_path)
    assert (tmp_path / "secret.key").stat().st_mode & 0o077 == 0  # readable by its owner only
    token = unsubscribe_token(keys, "ml", "A@example.org")
    assert read_unsubscribe_token(keys, token) == ("ml", "a@example.org")
    with pytest.raises(BadToken):
        read_unsubscribe_token(keys, token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1])
    # A rotated key: new links use the new key, old links still work.
    (tmp_path / "secret.key").write_text("new-key\n" + keys[0] + "\n")
    rotated = load_secrets(tmp_path)
    assert read_unsubscribe_token(rotated, token) == ("ml", "a@example.org")
    assert unsubscribe_token(rotated, "ml", "a@example.org") != token
    assert load_secrets(tmp_path) == rotated  # not regenerated


def test_an_unsubscribe_during_a_run_is_honoured_before_the_next_message(
    tmp_path: Path, frozen: object
) -> None:
    from digest.channels.mail import Outbox

    config = load_config(write_config(tmp_path))

    class UnsubscribingOutbox(Outbox):
        """While a@ is being sent, b@ clicks the one-click link (in another process)."""

        def send(self, message: object, recipient: str) -> None:  # type: ignore[override]
            super().send(message, recipient)  # type: ignore[arg-type]
            if recipient == "a@example.org":
                with Store.open(config.store_path) as other:
                    other.unsubscribe("ml", "b@example.org", MONDAY)

    digest(write_config(tmp_path), "ingest")
    with Store.open(config.store_path) as store, UnsubscribingOutbox(config.outbox_dir) as sender:
        report = run_cycle(config, store, lambda: MONDAY + timedelta(minutes=5), sender)
    assert (report.mail.sent, report.mail.skipped) == (2, 1)
    assert [str(m["To"]) for m in outbox(tmp_path)] == ["a@example.org", "c@example.org"]
    # The next day's digest has no ledger row for b@ at all.
    frozen.tick(timedelta(days=1))  # type: ignore[attr-defined]
    digest(write_config(tmp_path), "run")
    with Store.open(config.store_path) as store:
        tuesday = {row.channel for row in store.deliveries(profile="ml", day=MONDAY.date() + timedelta(days=1))}
    assert tuesday == {"mail:a@example.org", "feed"}


def test_digest_run_says_how_many_mails_were_handed_over_without_an_answer(
    tmp_path: Path, smtp_server: tuple[Recorder, int]
) -> None:
    """A server that stores each message but answers after the client's timeout: the run says
    the outcome is unknown, and how to see them, instead of counting them deferred."""
    recorder, port = smtp_server
    path = write_config(tmp_path, smtp_port=port)
    path.write_text(path.read_text(encoding="utf-8") + "timeout = 1\n", encoding="utf-8")
    recorder.late = dict.fromkeys(("a@example.org", "b@example.org", "c@example.org"), 1.5)
    ingest_before_monday(path)
    with freeze_time(MONDAY, auto_tick_seconds=1):
        result = digest(path, "run")
    assert "mail: 3 handed over with no answer: not sent again" in result.output, result.output
    assert "`digest status` lists them" in result.output
    assert sum(recorder.recipients().values()) == 3  # each stored once, none sent again
