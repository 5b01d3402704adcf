"""Channels are independent (issue 15): feed files that cannot be written stop no mail, and mail
that cannot be sent stops no feed.

Faults are injected, never real: a full feeds volume is a flush (os.fsync, or digest.durable's
syncfs) raising ENOSPC for files under feeds_dir, an unusable one is a file where its folder
should be, SMTP down is a port nothing listens on. Mail goes to the Maildir outbox or to aiosmtpd
on 127.0.0.1; the clock is frozen.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import feedparser
import pytest
from freezegun import freeze_time
from helpers import MONDAY, Recorder, digest, free_port, outbox, write_config

from digest import durable, feeds
from digest.config import load_config
from digest.errors import DeliveryError
from digest.models import Delivery
from digest.store import Store

PUBLISHED = [
    "all.atom", "all.rss", "feeds.opml",
    "profiles/ml.atom", "profiles/ml.rss", "profiles/quiet.atom", "profiles/quiet.rss",
]


@pytest.fixture
def frozen() -> Iterator[object]:
    with freeze_time(MONDAY, auto_tick_seconds=1) as clock:
        yield clock


def full_volume(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """Every flush of a file under `folder` (its fsync, or the syncfs of its folder) fails as on
    a full disk; other files are untouched."""
    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc to tell which file a descriptor is")
    real_fsync, real_syncfs = os.fsync, durable.syncfs
    inside = str(folder.resolve()) + os.sep

    def fsync(descriptor: int) -> None:
        if str(Path(f"/proc/self/fd/{descriptor}").readlink()).startswith(inside):
            raise OSError(28, "No space left on device")
        real_fsync(descriptor)

    def syncfs(path: Path) -> bool:
        if (str(path.resolve()) + os.sep).startswith(inside):
            raise OSError(28, "No space left on device")
        return real_syncfs(path)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(durable, "syncfs", syncfs)


def ledger(tmp_path: Path) -> list[Delivery]:
    with Store.open(tmp_path / "data" / "paperdigest.sqlite3") as store:
        return store.deliveries()


def published(feeds_dir: Path) -> list[str]:
    if not feeds_dir.is_dir():
        return []
    return sorted(str(p.relative_to(feeds_dir)) for p in feeds_dir.rglob("*") if p.is_file())


def many_profiles(count: int) -> str:
    """`count` profiles, one reader each, all due at the first run."""
    return "".join(
        f'\n[profiles.p{n:03}]\nemail = ["r{n:03}@example.org"]\nkeywords = ["language model"]\n'
        f'timezone = "Europe/Berlin"\n'
        for n in range(count)
    )


def test_a_full_feeds_volume_stops_no_mail_over_smtp(
    tmp_path: Path,
    frozen: object,
    smtp_server: tuple[Recorder, int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The issue's measurement, 200 digests over SMTP with the feeds volume full: every one of
    the 200 mails goes out, the run says why the feeds are stale, and so does `digest status`."""
    recorder, port = smtp_server
    # The frozen clock ticks a second per reading, thousands in this run: no deadline here.
    config = write_config(
        tmp_path, profiles=many_profiles(200), smtp_port=port, extra="[delivery]\ndeadline = 1440"
    )
    feeds_dir = tmp_path / "data" / "feeds"
    feeds_dir.mkdir(parents=True)
    full_volume(monkeypatch, feeds_dir)

    result = digest(config, "run")
    assert result.exit_code == 1, result.output  # the run had a problem...
    assert "mail: 200 sent, 0 deferred, 0 failed, 0 skipped" in result.output  # ...but none in mail
    assert len(recorder.received) == 200
    assert set(recorder.recipients()) == {f"r{n:03}@example.org" for n in range(200)}
    errors = [line for line in result.output.splitlines() if line.startswith("error: feeds:")]
    assert len(errors) == 1  # one line, naming the first file and the OS error
    assert f"{feeds_dir}/all.atom: cannot write the feed file: [Errno 28] No space left on device" in errors[0]
    assert "(and 402 more files)" in errors[0]
    assert published(feeds_dir) == []  # no file, and no temp file left behind
    assert not list(feeds_dir.rglob(".*"))
    rows = ledger(tmp_path)
    mails = [row for row in rows if row.channel.startswith("mail:")]
    assert Counter(row.status for row in mails) == {"sent": 200}
    feed_rows = [row for row in rows if row.channel == "feed"]
    assert Counter(row.status for row in feed_rows) == {"deferred": 200}
    assert all("No space left on device" in (row.error or "") for row in feed_rows)

    status = digest(config, "status")
    assert status.exit_code == 1
    lines = status.output.splitlines()
    problems = lines[lines.index("needs a person:") + 1 :]
    # Said once: not as 403 missing files, nor as 200 deferred feed rows.
    assert len(problems) == 1, problems
    assert re.fullmatch(
        r"  - feeds: could not be written since 2026-11-23 \d\d:\d\d UTC: "
        + re.escape(f"{feeds_dir}/all.atom: cannot write the feed file: [Errno 28] ")
        + r"No space left on device \(and 402 more files\)",
        problems[0],
    )
    assert "\nfeeds:\n  could not be written since 2026-11-23 " in status.output


def test_feeds_that_cannot_be_written_stop_no_mail_and_the_next_good_run_clears_it(
    tmp_path: Path, frozen: object
) -> None:
    config = write_config(tmp_path)
    feeds_dir = tmp_path / "data" / "feeds"
    feeds_dir.parent.mkdir(parents=True)
    feeds_dir.write_text("a file where the folder should be")

    result = digest(config, "run")
    assert result.exit_code == 1, result.output
    assert "ml: digest of 2026-11-23: 10 of 80 new papers" in result.output
    assert "mail: 3 sent, 0 deferred, 0 failed, 0 skipped" in result.output
    assert [str(m["To"]) for m in outbox(tmp_path)] == [
        "a@example.org", "b@example.org", "c@example.org"
    ]
    assert f"error: feeds: {feeds_dir}/all.atom: cannot write the feed file: " in result.output
    status = digest(config, "status")
    assert status.exit_code == 1
    assert re.search(r"- feeds: could not be written since 2026-11-23 07:\d\d UTC: ", status.output)
    assert "is missing" not in status.output
    assert "profile ml: feed" not in status.output

    # The folder is fixed: the next run writes every feed, sends nothing twice, and all is well.
    feeds_dir.unlink()
    frozen.tick(timedelta(hours=1))  # type: ignore[attr-defined]
    again = digest(config, "run")
    assert again.exit_code == 0, again.output
    assert "mail: 0 sent" in again.output
    assert "error:" not in again.output
    assert published(feeds_dir) == PUBLISHED
    parsed = feedparser.parse((feeds_dir / "profiles" / "ml.atom").read_bytes())
    assert len(parsed.entries) == 10  # the digest the failed run could not publish
    assert len(outbox(tmp_path)) == 3
    assert Counter((row.channel, row.status) for row in ledger(tmp_path))[("feed", "sent")] == 2
    status = digest(config, "status")
    assert status.exit_code == 0, status.output
    assert "could not be written" not in status.output
    assert status.output.rstrip().endswith("all well")


def test_one_unwritable_folder_stops_only_the_feeds_in_it(tmp_path: Path, frozen: object) -> None:
    """A file where profiles/ should be: the all-papers feeds and the OPML are still written,
    the profiles' feed rows wait for the next run, and the mail goes out."""
    config = write_config(tmp_path)
    feeds_dir = tmp_path / "data" / "feeds"
    feeds_dir.mkdir(parents=True)
    (feeds_dir / "profiles").write_text("not a folder")

    result = digest(config, "run")
    assert result.exit_code == 1
    assert "feeds: 3 files changed" in result.output
    assert "profiles/ml.atom: cannot write the feed file: " in result.output
    assert "(and 3 more files)" in result.output
    assert "mail: 3 sent" in result.output
    assert published(feeds_dir) == ["all.atom", "all.rss", "feeds.opml", "profiles"]
    feed_rows = {row.profile: row for row in ledger(tmp_path) if row.channel == "feed"}
    assert {name: row.status for name, row in feed_rows.items()} == {
        "ml": "deferred", "quiet": "deferred"
    }
    assert "profiles/ml.atom: cannot write the feed file" in (feed_rows["ml"].error or "")


def test_smtp_down_stops_no_feed(tmp_path: Path, frozen: object) -> None:
    config = write_config(tmp_path, smtp_port=free_port())  # nothing listens there
    result = digest(config, "run")
    assert result.exit_code == 1
    assert "mail: 0 sent" in result.output
    assert "mail: 3 left for the next run" in result.output
    assert "error: mail: the mail server 127.0.0.1:" in result.output
    assert "failed 3 times in a row" in result.output
    assert "error: feeds" not in result.output
    feeds_dir = tmp_path / "data" / "feeds"
    assert published(feeds_dir) == PUBLISHED
    assert len(feedparser.parse((feeds_dir / "profiles" / "ml.atom").read_bytes()).entries) == 10
    statuses = Counter((row.channel, row.status) for row in ledger(tmp_path))
    assert statuses[("feed", "sent")] == 2
    assert not any(s == "sent" for channel, s in statuses if channel.startswith("mail:"))
    status = digest(config, "status")
    assert "could not be written" not in status.output
    assert "is missing" not in status.output


def test_an_outbox_that_cannot_be_written_stops_no_feed(tmp_path: Path, frozen: object) -> None:
    config = write_config(tmp_path)
    outbox_dir = tmp_path / "data" / "outbox"
    outbox_dir.parent.mkdir(parents=True)
    outbox_dir.write_text("a file where the Maildir should be")
    result = digest(config, "run")
    assert result.exit_code == 1
    assert published(tmp_path / "data" / "feeds") == PUBLISHED


def test_publish_tries_every_file_and_names_those_that_failed(tmp_path: Path) -> None:
    (tmp_path / "profiles").write_text("not a folder")
    files = {"all.rss": b"a", "profiles/me.rss": b"b", "profiles/me.atom": b"c", "feeds.opml": b"d"}
    with pytest.raises(feeds.PublishError) as raised:
        feeds.publish(tmp_path, files)
    assert isinstance(raised.value, DeliveryError)
    assert sorted(raised.value.failed) == ["profiles/me.atom", "profiles/me.rss"]
    assert raised.value.changed == ["all.rss", "feeds.opml"]
    assert str(raised.value).startswith(f"{tmp_path}/profiles/me.atom: cannot write the feed file:")
    assert str(raised.value).endswith("(and 1 more files)")
    assert (tmp_path / "all.rss").read_bytes() == b"a"


def test_every_module_takes_the_feed_paths_from_digest_feeds(tmp_path: Path) -> None:
    assert feeds.profile_feed_paths("ml") == ("profiles/ml.rss", "profiles/ml.atom")
    assert feeds.published_paths(["ml"]) == [
        "all.rss", "all.atom", "feeds.opml", "profiles/ml.rss", "profiles/ml.atom"
    ]
    assert feeds.feed_url("https://x.org", "all.atom") == "https://x.org/feeds/all.atom"
    config = load_config(write_config(tmp_path))
    from digest.channels.mail import MailBuilder
    from digest.render import Renderer

    with Store.open(config.store_path) as store:
        links = MailBuilder(config, store, Renderer()).links("ml", "a@example.org")
    assert links.feed_rss == "https://digest.example.org/feeds/profiles/ml.rss"
    assert links.feed_atom == "https://digest.example.org/feeds/profiles/ml.atom"


def test_feeds_are_built_and_written_a_batch_at_a_time(
    tmp_path: Path, frozen: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 16: a run never holds every profile's feed bytes; each batch is written before the
    next is built, and every feed and row ends up as with one batch."""
    from digest import feeds as feed_files
    from digest.channels import feed

    monkeypatch.setattr(feed, "FEED_BATCH", 2)
    sizes: list[int] = []
    real_publish = feed_files.publish

    def counting(folder: Path, files: dict[str, bytes]) -> list[str]:
        sizes.append(len(files))
        return real_publish(folder, files)

    monkeypatch.setattr(feed_files, "publish", counting)
    config = write_config(tmp_path, profiles=many_profiles(5), extra="[delivery]\ndeadline = 1440")
    assert digest(config, "run").exit_code == 0
    assert max(sizes) <= 2 * 2, sizes  # two profiles' RSS and Atom at most
    assert sum(sizes) == 3 + 2 * 5  # all.rss, all.atom, the OPML and ten profile files
    assert len(published(tmp_path / "data" / "feeds")) == 3 + 2 * 5
    assert Counter(row.status for row in ledger(tmp_path) if row.channel == "feed") == {"sent": 5}
