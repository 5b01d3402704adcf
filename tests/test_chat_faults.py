"""Exactly once by outcome, for team chats (issue 15): webhooks that answer late, hang, drop the
connection, refuse, rate-limit, fail or are gone.

The receiver is real (tests/webhooks.py: an ASGI app served by uvicorn on 127.0.0.1) and so is
the client (digest.fetch.Fetcher, with short timeouts and a sleep that does not wait); the ledger
is a real SQLite store and its clock is injected. Per fault: how many copies of each digest the
receiver stored (never two where the outcome was known), what the ledger says, whether the run
exits 1 (`DeliveryReport.needs_attention`, as `digest run` does) and what `digest status` says.
End to end, `digest run` and `digest status` through the command line with a frozen clock.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from freezegun import freeze_time
from helpers import (
    CAPTURED_SOURCES,
    MONDAY,
    T0,
    digest,
    free_port,
    make_config,
    outbox,
    profile,
    record,
    write_config,
)
from ledger import DAY, Clock, Sleeps
from webhooks import Receiver, Seen, serving

from digest import channels
from digest.channels.chat import ChatChannel
from digest.config import ChatConfig, Config
from digest.deliver import DeliveryReport
from digest.errors import FetchError
from digest.fetch import Fetcher, FetchPolicy
from digest.models import Digest, Reasons, ScoredPaper
from digest.status import channel_line, gather, render
from digest.store import Store

TIMEOUT_S = 0.5  # the client's read timeout; a slow receiver answers after LATE_S
LATE_S = 1.5
SECRET = "B000SECRETTOKEN"  # the part of a Slack webhook URL that is its secret
READERS = [f"reader{n}" for n in range(4)]  # one digest each, all owed on "slack:lab"
WHEN = "2026-11-20 21:00 UTC"  # T0, as `digest status` says it


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with serving(late_s=LATE_S) as running:
        yield running


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def poster(sleeps: Sleeps) -> Iterator[Fetcher]:
    """The run's HTTP client: short timeouts, two retries of what provably did not arrive, no
    pause between requests, a sleep that only records and a monotonic clock that stands still."""
    policy = FetchPolicy(
        connect_timeout_s=0.5,
        read_timeout_s=TIMEOUT_S,
        retries=2,
        default_interval_s=0.0,
        host_intervals={},
    )
    with Fetcher(policy, sleep=sleeps, monotonic=lambda: 0.0) as fetcher:
        yield fetcher


def slack(url: str, name: str = "lab") -> ChatConfig:
    return ChatConfig(name=name, kind="slack", url=url)


def hook_url(receiver: Receiver) -> str:
    return receiver.url(f"/services/T000/{SECRET}")


def setup(
    tmp_path: Path, chats: Sequence[ChatConfig], readers: Mapping[str, tuple[str, ...]]
) -> Config:
    """A config whose profiles (`readers`: name -> the chats it names) post to `chats`."""
    profiles = tuple(profile(name, chats=names) for name, names in readers.items())
    return replace(make_config(tmp_path, profiles=profiles), chats=tuple(chats))


def owe(
    store: Store, readers: Mapping[str, tuple[str, ...]], title: str = "A paper for {name}"
) -> None:
    """A digest of one paper for each reader of DAY, with a pending row per chat it names."""
    for number, (name, rows) in enumerate(readers.items(), start=1):
        arxiv_id = f"2611.{number:05d}"
        store.ingest([record(title.format(name=name), arxiv_id=arxiv_id)], T0)
        paper = store.paper(arxiv_id)
        assert paper is not None
        store.save_digest(
            Digest(
                profile=name,
                day=DAY,
                timezone="UTC",
                since=T0 - timedelta(days=1),
                until=T0,
                scanned=1,
                sources=(),
                items=(ScoredPaper(paper, 1.0, Reasons(keywords=("paper",))),),
            ),
            channels=rows,
            now=T0,
        )


def deliver(
    config: Config, store: Store, poster: Fetcher | None, clock: Clock, claimant: str = "run-1"
) -> dict[str, DeliveryReport]:
    """What `digest run` does with the chats: each ChatChannel in turn, through deliver_all (which
    records a stopped channel's problem under its name)."""
    chats: list[channels.Channel] = [
        ChatChannel(chat, config, store, poster) for chat in config.chats
    ]
    return channels.deliver_all(chats, store, channels.RunContext(clock, claimant, config.delivery))


def whose(request: Seen) -> str:
    """Which reader's digest a stored message is, whatever the chat's kind."""
    body = request.body
    if "/_matrix/" in request.path:
        # paperdigest-<chat>.<profile>-<day>
        return request.path.rsplit("/", 1)[1].split("-")[1].partition(".")[2]
    if "blocks" in body:  # Slack: the summary line starts with the profile's name
        return str(body["blocks"][1]["elements"][0]["text"]).split(" · ")[0]
    if "embeds" in body:  # Discord: the content's second line is the summary
        return str(body["content"]).split("\n")[1].split(" · ")[0]
    return str(body["profile"])


def statuses(store: Store) -> list[str]:
    return [row.status for row in sorted(store.deliveries(), key=lambda row: row.profile)]


def chat_status(config: Config, store: Store, now: Any) -> tuple[str, list[str]]:
    """`digest status` for the chat: its channel line, and the problems that name it."""
    found = gather(config, store, now)
    (line,) = [channel_line(c) for c in found.channels if c.name == "slack:lab"]
    return line, [p for p in found.problems if "slack:lab" in p]


# -- one run against each kind of receiver -----------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """What a run of four owed digests does against a receiver in these modes (None: nothing
    listens), with a breaker of 3 and one retry of a post that provably did not arrive
    (chat.POST_RETRIES)."""

    modes: tuple[str, ...] | None
    requests: int  # requests the receiver saw
    copies: int  # digests stored, once each: the first `copies` readers
    ledger: tuple[str, ...]  # the four rows' statuses, by reader
    sleeps: tuple[float, ...]  # the client's waits before retrying
    line: str  # `digest status`'s channel line starts so
    says: str  # and the run's (and the problems') words for it contain this
    stopped: bool  # the channel stopped before its end: a problem stored under "slack:lab"


UNCERTAIN = ("uncertain", "uncertain", "uncertain", "pending")
UNREACHED = ("deferred", "deferred", "pending", "pending")
STOPPED = f"slack:lab: 1 pending, 3 uncertain — stopped since {WHEN}: the Slack chat 'lab' failed 3 times in a row"
FAULTS = {
    "ok": Fault(("ok",), 4, 4, ("sent",) * 4, (), "slack:lab: 4 sent — ok", "", False),
    "429 once": Fault(("429", "ok"), 5, 4, ("sent",) * 4, (0.0,), "slack:lab: 4 sent — ok", "", False),
    "slow": Fault(("slow",), 3, 3, UNCERTAIN, (), STOPPED, "ReadTimeout waiting for", True),
    "hang": Fault(("hang",), 3, 0, UNCERTAIN, (), STOPPED, "ReadTimeout waiting for", True),
    "drop": Fault(
        ("drop",), 3, 3, UNCERTAIN, (), STOPPED, "Server disconnected without sending a response", True
    ),
    "500": Fault(("500",), 3, 0, UNCERTAIN, (), STOPPED, "HTTP 500 Internal Server Error", True),
    "400": Fault(
        ("400",), 4, 0, ("failed",) * 4, (), "slack:lab: 4 failed — needs a person",
        "HTTP 400 Bad Request from http://127.0.0.1:", False,
    ),
    "404": Fault(
        ("404",), 1, 0, ("deferred", "pending", "pending", "pending"), (),
        f"slack:lab: 3 pending, 1 deferred — stopped since {WHEN}: the Slack chat 'lab': HTTP 404",
        "(is [chat.lab] still right?", True,
    ),
    "503": Fault(
        ("503",), 6, 0, UNREACHED, (2.0,) * 3,
        f"slack:lab: 2 pending, 2 deferred — stopped since {WHEN}: the Slack chat 'lab' failed 3 times",
        "HTTP 503 Service Unavailable", True,
    ),
    "refused": Fault(
        None, 0, 0, UNREACHED, (2.0,) * 3,
        f"slack:lab: 2 pending, 2 deferred — stopped since {WHEN}: the Slack chat 'lab' failed 3 times",
        "connection failed for http://127.0.0.1:", True,
    ),
}


@pytest.mark.parametrize("name", list(FAULTS))
def test_each_fault_leaves_the_ledger_right_and_a_mended_receiver_gets_only_what_is_owed(
    tmp_path: Path, receiver: Receiver, poster: Fetcher, sleeps: Sleeps, name: str
) -> None:
    fault = FAULTS[name]
    readers = dict.fromkeys(READERS, ("lab",))
    url = hook_url(receiver) if fault.modes else f"http://127.0.0.1:{free_port()}/services/T000/{SECRET}"
    config = setup(tmp_path, [slack(url)], readers)
    if fault.modes:
        receiver.answer(*fault.modes)
    clock = Clock()
    with Store.open(tmp_path / "s.sqlite3") as store:
        owe(store, dict.fromkeys(READERS, ("slack:lab",)))
        report = deliver(config, store, poster, clock)["slack:lab"]
        requests, waited = len(receiver.seen), list(sleeps)
        ledger = statuses(store)
        rows = sorted(store.deliveries(), key=lambda row: row.profile)
        stored_problem = store.problems().get("slack:lab")
        line, problems = chat_status(config, store, clock())
        shown = render(gather(config, store, clock()))

        # The receiver is mended; an hour later the next run sends what the ledger still owes.
        copies_before = receiver.copies(whose)
        receiver.answer("ok")
        config = setup(tmp_path, [slack(hook_url(receiver))], readers)
        clock.advance(timedelta(hours=1))
        again = deliver(config, store, poster, clock, claimant="run-2")["slack:lab"]
        after = statuses(store)
        cleared = store.problems().get("slack:lab")

    assert requests == fault.requests
    assert copies_before == Counter(READERS[: fault.copies]), "one copy of each message it took"
    assert tuple(ledger) == fault.ledger
    assert tuple(waited) == fault.sleeps, "only what provably did not arrive is tried again"
    assert report.needs_attention == (name not in ("ok", "429 once")), "digest run's exit code"
    assert (stored_problem is not None) == fault.stopped
    assert line.startswith(fault.line), line
    assert bool(problems) == (name not in ("ok", "429 once")), "digest status's exit code"
    said = " ".join([*(p.error for p in report.problems), report.stopped or "", *problems])
    assert fault.says in said, said
    for row in rows:  # an uncertain row keeps the message id it was handed over with
        if row.status in ("sent", "uncertain"):
            assert row.message_id == f"paperdigest-lab.{row.profile}-2026-11-20"
        assert row.attempts == (0 if row.status == "pending" else 1), "a breaker's row: no try"
    assert SECRET not in said + shown + "".join(row.error or "" for row in rows)

    # The second run: every digest the ledger still owed, each once; nothing it had settled.
    owed = [reader for reader, status in zip(READERS, ledger, strict=True)
            if status in ("pending", "deferred")]
    assert (again.sent, again.uncertain, again.failed) == (len(owed), 0, 0)
    assert receiver.copies(whose) == copies_before + Counter(owed)
    assert max(receiver.copies(whose).values(), default=1) == 1, "never two copies of a digest"
    assert after == [status if status not in ("pending", "deferred") else "sent" for status in ledger]
    assert cleared is None, "a channel that delivers again clears its stopped problem"
    assert len(receiver.seen) == requests + len(owed)
    assert sleeps == waited, "the mended receiver answers at once"


def test_a_receiver_that_answers_after_the_timeout_gets_each_digest_once_over_three_runs(
    tmp_path: Path, receiver: Receiver, poster: Fetcher, sleeps: Sleeps
) -> None:
    """It stores each message, then answers late: the run cannot know, so each row is
    'uncertain' and not sent again by the next two runs (within the quarantine); after the
    quarantine, once more: the price of not losing a digest."""
    readers = dict.fromkeys(READERS[:3], ("lab",))
    config = setup(tmp_path, [slack(hook_url(receiver))], readers)
    receiver.answer("slow")
    clock = Clock()
    reports = []
    with Store.open(tmp_path / "s.sqlite3") as store:
        owe(store, dict.fromkeys(readers, ("slack:lab",)))
        for number in range(3):
            reports.append(deliver(config, store, poster, clock, f"run-{number}")["slack:lab"])
            clock.advance(timedelta(hours=1))
        ledger = statuses(store)
        line, problems = chat_status(config, store, clock())
        copies = receiver.copies(whose)
        receiver.answer("ok")
        clock.advance(timedelta(hours=22))  # 25 hours after the first run: out of quarantine
        later = deliver(config, store, poster, clock, "run-4")["slack:lab"]
        settled = statuses(store)
    assert copies == Counter(list(readers)), "exactly one copy per digest over three runs"
    assert (reports[0].uncertain, reports[0].left, reports[0].stopped) == (3, 0, None)
    assert reports[1:] == [DeliveryReport(), DeliveryReport()], "never re-sent in quarantine"
    assert ledger == ["uncertain"] * 3
    assert sleeps == [], "an uncertain post is never retried"
    assert line == "slack:lab: 3 uncertain — needs a person"
    assert len(problems) == 3
    for reader, problem in zip(readers, problems, strict=True):
        assert problem.startswith(
            f"profile {reader}: slack:lab: the digest of 2026-11-20: uncertain since {WHEN}: "
            "handed over, but no answer came"
        )
        assert "sent again by the first run after 2026-11-21 21:00 UTC" in problem
    assert (later.sent, settled) == (3, ["sent"] * 3)
    assert receiver.copies(whose) == Counter(dict.fromkeys(readers, 2))


def test_a_400_is_never_posted_again_and_says_the_servers_words(
    tmp_path: Path, receiver: Receiver, poster: Fetcher
) -> None:
    readers = dict.fromkeys(READERS[:2], ("lab",))
    config = setup(tmp_path, [slack(hook_url(receiver))], readers)
    receiver.answer("400")
    clock = Clock()
    with Store.open(tmp_path / "s.sqlite3") as store:
        owe(store, dict.fromkeys(readers, ("slack:lab",)))
        first = deliver(config, store, poster, clock)["slack:lab"]
        for number in range(2):
            clock.advance(timedelta(days=2))
            assert deliver(config, store, poster, clock, f"run-{number}")["slack:lab"] == DeliveryReport()
        rows = store.deliveries()
    assert first.failed == 2 and first.stopped is None, "a refusal of one message stops nothing"
    assert len(receiver.seen) == 2 and receiver.stored == []
    assert {(row.status, row.attempts) for row in rows} == {("failed", 1)}
    assert all(re.search(r"HTTP 400 Bad Request from http://127\.0\.0\.1:\d+/…: invalid_blocks",
                         row.error or "") for row in rows)


# -- Matrix: a transaction id makes a repeated PUT safe ------------------------------------------


def test_the_hand_over_is_marked_as_a_request_goes_out_not_while_connecting(
    receiver: Receiver, poster: Fetcher
) -> None:
    marks: list[str] = []
    poster.post(hook_url(receiver), {"a": 1}, on_hand_over=lambda: marks.append("posted"))
    assert marks == ["posted"], "once, for the request that reached the receiver"
    with pytest.raises(FetchError):  # refused on every retry: it never went, nothing marked
        poster.post(
            f"http://127.0.0.1:{free_port()}/hook", {"a": 1},
            on_hand_over=lambda: marks.append("refused"),
        )
    assert marks == ["posted"]


def matrix_setup(
    tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> Config:
    monkeypatch.setenv("ROOM_TOKEN", "syt_room_token")
    room = ChatConfig(
        name="room", kind="matrix", homeserver=receiver.url(), room="!abc:example.org",
        token_env="ROOM_TOKEN",
    )
    return setup(tmp_path, [room], {"reader0": ("room",)})


# As it went on the wire: the room id quoted, the transaction id last.
TXN_PATH = "/_matrix/client/v3/rooms/%21abc%3Aexample.org/send/m.room.message/paperdigest-room.reader0-2026-11-20"


def test_an_uncertain_matrix_put_is_repeated_once_with_its_transaction_id_and_is_sent(
    tmp_path: Path, receiver: Receiver, poster: Fetcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = matrix_setup(tmp_path, receiver, monkeypatch)
    receiver.answer("drop", "ok")  # stored, the connection dropped; the repeat is answered
    with Store.open(tmp_path / "s.sqlite3") as store:
        owe(store, {"reader0": ("matrix:room",)})
        report = deliver(config, store, poster, Clock())["matrix:room"]
        (row,) = store.deliveries()
    assert [(s.method, s.raw_path) for s in receiver.seen] == [("PUT", TXN_PATH)] * 2
    assert [s.headers["authorization"] for s in receiver.seen] == ["Bearer syt_room_token"] * 2
    assert len(receiver.stored) == 1, "the homeserver answered the repeat with the first event"
    assert (report.sent, report.uncertain) == (1, 0)
    assert (row.status, row.attempts, row.message_id) == ("sent", 1, "paperdigest-room.reader0-2026-11-20")


def test_a_matrix_put_that_timed_out_is_not_repeated_a_hung_homeserver_costs_one_timeout(
    tmp_path: Path, receiver: Receiver, poster: Fetcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = matrix_setup(tmp_path, receiver, monkeypatch)
    receiver.answer("slow")
    with Store.open(tmp_path / "s.sqlite3") as store:
        owe(store, {"reader0": ("matrix:room",)})
        report = deliver(config, store, poster, Clock())["matrix:room"]
        (row,) = store.deliveries()
    assert [s.raw_path for s in receiver.seen] == [TXN_PATH]
    assert (report.uncertain, row.status) == (1, "uncertain")
    assert "ReadTimeout" in (row.error or "")


def test_a_matrix_put_uncertain_twice_is_left_uncertain_never_put_a_third_time(
    tmp_path: Path, receiver: Receiver, poster: Fetcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = matrix_setup(tmp_path, receiver, monkeypatch)
    receiver.answer("drop")
    clock = Clock()
    with Store.open(tmp_path / "s.sqlite3") as store:
        owe(store, {"reader0": ("matrix:room",)})
        report = deliver(config, store, poster, clock)["matrix:room"]
        clock.advance(timedelta(hours=1))
        again = deliver(config, store, poster, clock, "run-2")["matrix:room"]
        (row,) = store.deliveries()
    assert [s.raw_path for s in receiver.seen] == [TXN_PATH] * 2
    assert len(receiver.stored) == 1
    assert (report.uncertain, again, row.status) == (1, DeliveryReport(), "uncertain")
    assert "the Matrix chat 'room': connection lost" in (row.error or "")
    assert "syt_room_token" not in (row.error or "")


# -- every kind at once, and text that tries to ping everyone --------------------------------------

HOSTILE = "@everyone <!channel> <@U123> read this now"


def test_every_kind_of_chat_gets_one_copy_of_each_digest_defused(
    tmp_path: Path, receiver: Receiver, poster: Fetcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROOM_TOKEN", "syt_room_token")
    chats = [
        slack(receiver.url("/slack/lab")),
        ChatConfig(name="team", kind="discord", url=receiver.url("/discord/team")),
        ChatConfig(name="room", kind="matrix", homeserver=receiver.url(), room="!abc:example.org",
                   token_env="ROOM_TOKEN"),
        ChatConfig(name="ops", kind="webhook", url=receiver.url("/webhook/ops")),
    ]
    readers = {"reader0": ("lab", "team", "room", "ops"), "reader1": ("lab", "ops")}
    config = setup(tmp_path, chats, readers)
    rows = {
        "reader0": ("slack:lab", "discord:team", "matrix:room", "webhook:ops"),
        "reader1": ("slack:lab", "webhook:ops"),
    }
    with Store.open(tmp_path / "s.sqlite3") as store:
        owe(store, rows, title=HOSTILE + " ({name})")
        reports = deliver(config, store, poster, Clock())
        ledger = {(row.profile, row.channel): row.status for row in store.deliveries()}
    assert {name: report.sent for name, report in reports.items()} == {
        "slack:lab": 2, "discord:team": 1, "matrix:room": 1, "webhook:ops": 2
    }
    assert set(ledger.values()) == {"sent"}
    received = Counter(
        (s.path.split("/")[1] if "/_matrix/" not in s.path else "matrix", whose(s))
        for s in receiver.stored
    )
    assert received == Counter({
        ("slack", "reader0"): 1, ("slack", "reader1"): 1, ("discord", "reader0"): 1,
        ("matrix", "reader0"): 1, ("webhook", "reader0"): 1, ("webhook", "reader1"): 1,
    })
    by_kind = {(whose(s), s.path.split("/")[1]): s for s in receiver.stored}
    hook = by_kind[("reader1", "webhook")]
    assert hook.method == "POST" and hook.headers["idempotency-key"] == "paperdigest-ops.reader1-2026-11-20"
    assert hook.body["id"] == "reader1/2026-11-20"
    assert by_kind[("reader0", "discord")].body["allowed_mentions"] == {"parse": []}
    assert by_kind[("reader0", "_matrix")].method == "PUT"
    for request in receiver.stored:
        text = request.text
        assert "@everyone" not in text and "@\u200beveryone" in text, request.path
        if "/_matrix/" in request.path:
            formatted = request.body["formatted_body"]
            assert "<!channel>" not in formatted and "&lt;!channel&gt;" in formatted
            assert request.body["m.mentions"] == {}
        elif request.path.startswith(("/slack/", "/discord/")):
            assert "<!channel>" not in text and "<@U123>" not in text, request.path
    slack_text = by_kind[("reader0", "slack")].text
    assert "&lt;!channel&gt; &lt;@\u200bU123&gt;" in slack_text


# -- end to end: `digest run` and `digest status` --------------------------------------------------

# Inside [fetch] (write_config puts its `sources` there): short timeouts, no retry, no pause
# between two posts to the loopback.
FAST_FETCH = 'read_timeout = 0.5\nconnect_timeout = 0.5\nretries = 0\n[fetch.host_intervals]\n"127.0.0.1" = 0\n'
CHAT_PROFILES = """
[profiles.ml]
email = ["a@example.org", "b@example.org"]
keywords = ["language model", "reinforcement learning", "agent"]
categories = ["cs.AI"]
max_items = 10
timezone = "Europe/Berlin"
chat = ["lab"]

[profiles.quiet]
email = ["c@example.org"]
keywords = ["zymurgy"]
min_score = 1
community_signal = false
timezone = "America/New_York"
deliver_at = "01:00"
chat = ["lab"]
"""
LAB = '[chat.lab]\nkind = "slack"\nurl_env = "LAB_HOOK"\n'


@pytest.fixture
def frozen() -> Iterator[object]:
    # real_asyncio: the receiver's event loop keeps real time while the job's clock is frozen.
    with freeze_time(MONDAY, auto_tick_seconds=1, real_asyncio=True) as clock:
        yield clock


def chat_config(tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LAB_HOOK", hook_url(receiver))
    return write_config(tmp_path, FAST_FETCH + CAPTURED_SOURCES, profiles=CHAT_PROFILES, extra=LAB)


@pytest.mark.parametrize("mode", ["ok", "500"])
def test_digest_run_posts_to_the_chat_and_a_500_leaves_it_uncertain_for_a_person(
    tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch, frozen: object, mode: str
) -> None:
    config = chat_config(tmp_path, receiver, monkeypatch)
    receiver.answer(mode)
    result = digest(config, "run")
    status = digest(config, "status")
    everything = result.output + status.output
    assert [str(m["To"]) for m in outbox(tmp_path)] == [
        "a@example.org", "b@example.org", "c@example.org"
    ], "the mail goes out whatever the chat does"
    assert "mail: 3 sent" in result.output
    assert [(s.method, s.path) for s in receiver.seen] == [("POST", f"/services/T000/{SECRET}")] * 2
    assert SECRET not in everything
    if mode == "ok":
        assert result.exit_code == 0, result.output
        assert "slack:lab: 2 sent, 0 deferred, 0 failed, 0 skipped" in result.output
        assert receiver.copies(whose) == Counter(["ml", "quiet"])
        assert status.exit_code == 0, status.output
        assert "  slack:lab: 2 sent — ok" in status.output
        return
    assert result.exit_code == 1, result.output
    assert "slack:lab: 0 sent, 0 deferred, 0 failed, 0 skipped" in result.output
    assert "slack:lab: 2 handed over with no answer: not sent again" in result.output
    assert re.search(
        r"error: ml: slack:lab: lab: the Slack chat 'lab': HTTP 500 Internal Server Error from "
        r"http://127\.0\.0\.1:\d+/…: internal error: the message may have been posted",
        result.output,
    ), result.output
    assert receiver.stored == []
    assert status.exit_code == 1, status.output
    assert "  slack:lab: 2 uncertain — needs a person" in status.output
    person = status.output.split("needs a person:\n", 1)[1]
    for name in ("ml", "quiet"):
        assert re.search(
            rf"  - profile {name}: slack:lab: the digest of 2026-11-23: uncertain since "
            r"2026-11-23 07:\d\d UTC: handed over, but no answer came", person
        ), person

    # The chat is mended; the next run (within the quarantine) posts nothing twice.
    receiver.answer("ok")
    frozen.tick(timedelta(hours=1))  # type: ignore[attr-defined]
    again = digest(config, "run")
    assert "slack:lab: 0 sent" in again.output and len(receiver.seen) == 2


def test_feeds_that_cannot_be_written_stop_neither_the_chat_nor_the_mail(
    tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch, frozen: object
) -> None:
    config = chat_config(tmp_path, receiver, monkeypatch)
    feeds_dir = tmp_path / "data" / "feeds"
    feeds_dir.parent.mkdir(parents=True)
    feeds_dir.write_text("a file where the folder should be")
    result = digest(config, "run")
    assert result.exit_code == 1, result.output
    assert f"error: feeds: {feeds_dir}/all.atom: cannot write the feed file: " in result.output
    assert "slack:lab: 2 sent, 0 deferred, 0 failed, 0 skipped" in result.output
    assert "mail: 3 sent" in result.output
    assert receiver.copies(whose) == Counter(["ml", "quiet"])
    assert len(outbox(tmp_path)) == 3
    with Store.open(tmp_path / "data" / "paperdigest.sqlite3") as store:
        ledger = Counter((row.channel, row.status) for row in store.deliveries())
    assert ledger == Counter({
        ("slack:lab", "sent"): 2, ("mail:a@example.org", "sent"): 1,
        ("mail:b@example.org", "sent"): 1, ("mail:c@example.org", "sent"): 1,
        ("feed", "deferred"): 2,
    })
