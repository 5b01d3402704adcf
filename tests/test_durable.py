"""Fewer, larger writes (issue 16, item 3): the outbox and the feed files are written in batches,
one flush of the data and one fsync per folder a batch, not an fsync per file (digest/durable.py).

The disk is real (tmp_path); what is counted or broken is os.fsync and digest.durable's syncfs
hook, monkeypatched. A killed process is a batch never committed, or a flush that raises.
"""

from __future__ import annotations

import os
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
from ledger import Clock, addresses, open_store, owe, run, statuses

from digest import durable, feeds
from digest.channels.mail import Outbox, wire_bytes
from digest.errors import DeliveryError

LONG_AGO = 0  # an mtime of 1970: stale for any sweep, with no clock read


class Flushes:
    """Counts the disk flushes: syncfs calls (of the filesystem) and os.fsync calls (of a file
    or a folder), and records every flush and rename in order."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *, syncfs: bool = True) -> None:
        self.syncfs = 0
        self.fsync = 0
        self.events: list[str] = []
        real_fsync, real_syncfs, real_replace = os.fsync, durable.syncfs, Path.replace

        def counting_fsync(descriptor: int) -> None:
            self.fsync += 1
            self.events.append("fsync")
            real_fsync(descriptor)

        def counting_syncfs(folder: Path) -> bool:
            self.syncfs += 1
            self.events.append("syncfs")
            return real_syncfs(folder) if syncfs else False

        def recording_replace(path: Path, target: str | os.PathLike[str]) -> Path:
            self.events.append("rename")
            return real_replace(path, target)

        monkeypatch.setattr(os, "fsync", counting_fsync)
        monkeypatch.setattr(durable, "syncfs", counting_syncfs)
        monkeypatch.setattr(Path, "replace", recording_replace)


def mail(n: int) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "digest@example.org"
    message["To"] = f"reader{n}@example.org"
    message["Subject"] = "Your papers"
    message["Message-ID"] = f"<digest-{n}@example.org>"
    message.set_content("papers\n" * 50)
    return message


def names(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


def feed_files(count: int) -> dict[str, bytes]:
    return {f"profiles/p{n:03}.rss": b"<rss>%d</rss>\n" % n for n in range(count)}


# -- one flush a batch ------------------------------------------------------------------------


def test_an_outbox_batch_of_50_messages_costs_one_flush_and_one_folder_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flushes = Flushes(monkeypatch)
    outbox = Outbox(tmp_path / "outbox", sync_later=True)
    for n in range(50):
        outbox.send(mail(n), f"reader{n}@example.org")
    assert (flushes.syncfs, flushes.fsync) == (0, 0)  # nothing flushed yet...
    assert names(tmp_path / "outbox" / "new") == []  # ...so nothing in place yet
    outbox.sync()
    assert (flushes.syncfs, flushes.fsync) == (1, 1)  # one syncfs, one fsync of new/: not 50
    assert flushes.events == ["syncfs"] + ["rename"] * 50 + ["fsync"]
    assert len(names(tmp_path / "outbox" / "new")) == 50
    assert names(tmp_path / "outbox" / "tmp") == []


def test_publishing_100_feed_files_costs_one_flush_and_one_folder_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flushes = Flushes(monkeypatch)
    files = feed_files(100)
    assert len(feeds.publish(tmp_path, files)) == 100
    assert (flushes.syncfs, flushes.fsync) == (1, 1)
    assert flushes.events == ["syncfs"] + ["rename"] * 100 + ["fsync"]
    assert {f"profiles/{name}" for name in names(tmp_path / "profiles")} == set(files)
    assert feeds.publish(tmp_path, files) == []  # unchanged: no write, no flush at all
    assert (flushes.syncfs, flushes.fsync) == (1, 1)


def test_a_batch_over_two_folders_flushes_once_and_syncs_each_folder_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flushes = Flushes(monkeypatch)
    files = {"all.rss": b"a", "all.atom": b"b", **feed_files(3)}
    feeds.publish(tmp_path, files)
    assert flushes.events == ["syncfs"] + ["rename"] * 5 + ["fsync", "fsync"]


def test_without_syncfs_each_file_is_fsynced_before_any_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where there is no syncfs (or a sandbox refuses it), each temp file is fsynced: still all
    of them before the first rename."""
    flushes = Flushes(monkeypatch, syncfs=False)
    feeds.publish(tmp_path, feed_files(4))
    assert flushes.events == ["syncfs"] + ["fsync"] * 4 + ["rename"] * 4 + ["fsync"]


def test_a_few_files_are_fsynced_each_not_the_whole_filesystem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """digest serve's writes (a subscriber's two feed files, one confirmation mail) must not
    wait for everything a run has written to the same disk."""
    flushes = Flushes(monkeypatch)
    few = durable.SYNCFS_FROM - 1
    feeds.publish(tmp_path, feed_files(few))
    assert flushes.syncfs == 0
    assert flushes.events == ["fsync"] * few + ["rename"] * few + ["fsync"]


def test_the_real_syncfs_is_used_on_linux(tmp_path: Path) -> None:
    if not Path("/proc/self").is_dir():
        pytest.skip("Linux only")
    assert durable.syncfs(tmp_path) is True


def test_an_outbox_without_sync_later_puts_each_message_in_place_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flushes = Flushes(monkeypatch)
    outbox = Outbox(tmp_path / "outbox")
    outbox.send(mail(1), "reader1@example.org")
    assert len(names(tmp_path / "outbox" / "new")) == 1
    # One file: its own fsync, not a syncfs that would wait for all else written to the disk.
    assert flushes.events == ["fsync", "rename", "fsync"]


def test_the_delivery_loop_flushes_each_batch_before_the_ledger_records_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flushes = Flushes(monkeypatch)
    with open_store(tmp_path) as store:
        real_settle_many = store.settle_many

        def recording(*args: object) -> None:
            flushes.events.append("record")
            real_settle_many(*args)  # type: ignore[arg-type]

        monkeypatch.setattr(store, "settle_many", recording)
        owe(store, addresses(150))  # two claim batches: 100, then 50
        report = run(store, Outbox(tmp_path / "outbox"), Clock())
        assert set(statuses(store).values()) == {"sent"}
    assert report.sent == 150
    assert flushes.events == [
        "syncfs", *["rename"] * 100, "fsync", "record",
        "syncfs", *["rename"] * 50, "fsync", "record",
    ]
    assert flushes.syncfs == 2
    assert len(names(tmp_path / "outbox" / "new")) == 150


# -- idempotence ------------------------------------------------------------------------------


def test_the_same_message_twice_in_one_batch_is_one_file(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox", sync_later=True)
    outbox.send(mail(1), "reader1@example.org")
    outbox.send(mail(1), "reader1@example.org")
    outbox.send(mail(1), "reader2@example.org")  # another recipient: another file
    assert len(names(tmp_path / "outbox" / "tmp")) == 2  # the second copy was never written
    outbox.sync()
    outbox.send(mail(1), "reader1@example.org")  # in new/ now
    outbox.sync()
    assert len(names(tmp_path / "outbox" / "new")) == 2
    assert names(tmp_path / "outbox" / "tmp") == []


# -- a crash before the commit ------------------------------------------------------------------


def test_an_outbox_killed_before_its_commit_leaves_nothing_in_new(tmp_path: Path) -> None:
    """The kill: the batch is never committed. new/ holds nothing (the ledger recorded nothing,
    so the next run writes the messages again); the temp files are whole messages, never in
    new/ or cur/, and are removed once stale, by the next outbox; fresh ones are left alone (a
    batch of another process, in progress)."""
    folder = tmp_path / "outbox"
    killed = Outbox(folder, sync_later=True)
    for n in range(3):
        killed.send(mail(n), f"reader{n}@example.org")
    del killed  # no sync, no close
    assert names(folder / "new") == [] and names(folder / "cur") == []
    leftovers = sorted((folder / "tmp").iterdir())
    assert len(leftovers) == 3
    whole = {wire_bytes(mail(n)) for n in range(3)}
    assert {path.read_bytes() for path in leftovers} == whole  # each a whole message
    os.utime(leftovers[0], (LONG_AGO, LONG_AGO))  # a killed run's, days ago
    (folder / "tmp" / "not-ours-but-stale").write_bytes(b"x")  # Maildir: anything in tmp/
    os.utime(folder / "tmp" / "not-ours-but-stale", (LONG_AGO, LONG_AGO))

    next_run = Outbox(folder, sync_later=True)
    next_run.send(mail(0), "reader0@example.org")
    next_run.sync()
    left = names(folder / "tmp")
    assert leftovers[0].name not in left and "not-ours-but-stale" not in left
    assert sorted(left) == sorted(path.name for path in leftovers[1:])  # fresh: left alone
    assert len(names(folder / "new")) == 1


def test_a_failed_flush_puts_no_message_in_place_and_the_ledger_records_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The flush fails (an I/O error, or the process dies in it): no message reaches new/, the
    batch's temp files are gone, and the outbox keeps refusing to sync, so the ledger never
    records the batch as sent; the next run sends every message, once."""
    real_syncfs = durable.syncfs

    def io_error(folder: Path) -> bool:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(durable, "syncfs", io_error)
    with open_store(tmp_path) as store:
        owe(store, addresses(150))  # the flush fails as the loop comes to its second batch...
        outbox = Outbox(tmp_path / "outbox")
        with pytest.raises(DeliveryError, match="cannot write to the outbox: Input/output error"):
            run(store, outbox, Clock())  # ...and again as the loop, leaving, writes what it holds
        with pytest.raises(DeliveryError):
            outbox.sync()  # still: its outcomes must never be recorded
        assert sorted(set(statuses(store).values())) == ["pending", "sending"]  # none "sent"
        assert names(tmp_path / "outbox" / "new") == []
        assert names(tmp_path / "outbox" / "tmp") == []

        monkeypatch.setattr(durable, "syncfs", real_syncfs)
        clock = Clock()
        clock.advance(timedelta(hours=1))  # past the killed run's claim lease
        report = run(store, Outbox(tmp_path / "outbox"), clock, claimant="run-2")
        assert set(statuses(store).values()) == {"sent"}
    assert report.sent == 150
    assert len(names(tmp_path / "outbox" / "new")) == 150


def test_feeds_killed_before_the_commit_leave_the_old_files_and_hidden_temps_only(
    tmp_path: Path,
) -> None:
    """A publish killed before its commit: each final path holds its old file (or none), the
    new bytes sit in hidden temp files that no reader is served (digest.feedfiles refuses
    hidden names), and the next publish removes the stale ones, not fresh ones (another
    process's publish in progress), nor hidden files that are not its temps."""
    (tmp_path / "all.rss").write_bytes(b"old")
    killed = durable.Batch()
    killed.put(tmp_path / "all.rss", b"new", mode=0o644)
    killed.put(tmp_path / "all.atom", b"new", mode=0o644)
    del killed  # never committed
    assert (tmp_path / "all.rss").read_bytes() == b"old"
    assert not (tmp_path / "all.atom").exists()
    temps = sorted(p for p in tmp_path.iterdir() if p.name.startswith("."))
    assert [durable.hidden_temp_target(p.name) for p in temps] == ["all.atom", "all.rss"]
    os.utime(temps[0], (LONG_AGO, LONG_AGO))
    (tmp_path / ".htaccess").write_text("Options -Indexes\n")  # the web server's, not ours
    os.utime(tmp_path / ".htaccess", (LONG_AGO, LONG_AGO))

    assert feeds.publish(tmp_path, {"all.rss": b"newer"}) == ["all.rss"]
    assert names(tmp_path) == sorted([".htaccess", temps[1].name, "all.rss"])
    assert (tmp_path / "all.rss").read_bytes() == b"newer"


def test_a_failed_flush_publishes_no_feed_file_and_leaves_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "all.rss").write_bytes(b"old")

    def disk_full(folder: Path) -> bool:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(durable, "syncfs", disk_full)
    with pytest.raises(feeds.PublishError) as raised:
        feeds.publish(tmp_path, {"all.rss": b"new", **feed_files(4)})
    assert sorted(raised.value.failed) == ["all.rss", *sorted(feed_files(4))]
    assert raised.value.changed == []
    assert "No space left on device (and 4 more files)" in str(raised.value)
    assert (tmp_path / "all.rss").read_bytes() == b"old"
    assert names(tmp_path) == ["all.rss", "profiles"]
    assert names(tmp_path / "profiles") == []


def test_a_feed_file_that_cannot_be_renamed_fails_alone(tmp_path: Path) -> None:
    (tmp_path / "all.rss").mkdir()  # a folder where the file should be: its rename fails
    with pytest.raises(feeds.PublishError) as raised:
        feeds.publish(tmp_path, {"all.rss": b"new", "all.atom": b"new"})
    assert list(raised.value.failed) == ["all.rss"]
    assert "all.rss: cannot write the feed file" in raised.value.failed["all.rss"]
    assert raised.value.changed == ["all.atom"]
    assert (tmp_path / "all.atom").read_bytes() == b"new"
    assert names(tmp_path) == ["all.atom", "all.rss"]  # no temp file left


def test_sweep_leaves_what_it_is_not_told_is_a_temp_file(tmp_path: Path) -> None:
    keep = tmp_path / "keep"
    keep.write_bytes(b"x")
    os.utime(keep, (LONG_AGO, LONG_AGO))

    def accept(name: str) -> bool:
        return name != "keep"

    (tmp_path / "old").write_bytes(b"x")
    os.utime(tmp_path / "old", (LONG_AGO, LONG_AGO))
    assert durable.sweep(tmp_path, accept, timedelta(days=1)) == 1
    assert names(tmp_path) == ["keep"]


def test_temp_files_are_named_as_mkstemp_names_them_and_a_taken_name_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """put names its temp files itself (a counter from a random start, not mkstemp): the same
    `.NAME.XXXXXXXX` shape, so a sweep finds a killed batch's leftovers however they were named,
    and a name already taken (another process's temp, a leftover) is passed over, never opened."""
    import tempfile

    handle, old_style = tempfile.mkstemp(prefix=".all.rss.", dir=tmp_path)  # a leftover of before
    os.close(handle)
    taken = tmp_path / ".all.atom.aaaaaaaa"
    taken.write_bytes(b"another batch's")
    names_given = iter(["aaaaaaaa", "bbbbbbbb", "cccccccc"])
    monkeypatch.setattr(durable, "_temp_name", lambda: next(names_given))
    batch = durable.Batch()
    batch.put(tmp_path / "all.atom", b"new", mode=0o644)
    assert taken.read_bytes() == b"another batch's"
    fresh = tmp_path / ".all.atom.bbbbbbbb"
    assert fresh.read_bytes() == b"new" and fresh.stat().st_mode & 0o777 == 0o644
    assert [durable.hidden_temp_target(name) for name in (Path(old_style).name, fresh.name)] == [
        "all.rss", "all.atom",
    ]
    del batch  # killed: never committed
    for leftover in tmp_path.iterdir():
        os.utime(leftover, (LONG_AGO, LONG_AGO))
    removed = durable.sweep(tmp_path, lambda name: durable.hidden_temp_target(name) is not None,
                            timedelta(hours=1))
    assert removed == 3 and names(tmp_path) == []


def test_each_process_names_its_temp_files_from_a_place_of_its_own() -> None:
    first = [durable._temp_name() for _ in range(3)]
    assert len(set(first)) == 3 and all(len(name) == 8 for name in first)
    durable._temp_name.restart()  # as a forked child does
    assert durable._temp_name() not in first
