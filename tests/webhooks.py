"""A fault-injecting webhook receiver for the chat delivery tests: a raw ASGI app served by uvicorn
in a thread on 127.0.0.1, standing in for Slack, Discord, a Matrix homeserver or any JSON webhook.

Each request is answered by a mode, taken in turn from those `Receiver.answer` was given (the last
one repeats: `receiver.answer("429", "ok")` is a 429 once, then 200 for good):

    ok       store the message, answer 200
    slow     store it, then answer 200 only after `late_s` (after the client's read timeout):
             a server that commits the message and answers late
    hang     read the body and never answer; nothing stored
    drop     read the body, store it, then close the connection without a word
    "400" "404" "429" "500" "503"
             answer that status; nothing stored ("429" says Retry-After: 0)

"Refused" is no mode: `free_port()` (tests/helpers.py) is a port nothing listens on.

`seen` holds every request that reached the app, whatever its mode; `stored` every message the
receiver accepted, which is what a chat's readers would see. A PUT to a path already stored (a
Matrix send with a transaction id it knows) is answered with the first event's id and stored no
second time, as a homeserver does.

Nothing here reaches past the loopback, and nothing waits on the wall clock but the receiver's
own short pauses (threading waits, which freezegun does not touch).
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn

MODES = ("ok", "slow", "hang", "drop", "400", "404", "429", "500", "503")
REASONS = {
    "400": b"invalid_blocks",
    "404": b"no_service",
    "429": b"rate_limited",
    "500": b"internal error",
    "503": b"service unavailable",
}
HANG_MAX_S = 30.0  # a hung request is let go at the latest then (or when the receiver stops)

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Seen:
    """One request as the receiver saw it."""

    number: int  # 1 for the first request the receiver saw
    mode: str  # how it was answered
    method: str
    path: str  # decoded, as ASGI gives it
    raw_path: str  # as it went on the wire (Matrix quotes the room id in it)
    headers: dict[str, str]  # names in lower case
    body: Any  # the JSON body, parsed (None when it was not JSON)

    @property
    def text(self) -> str:
        """The body as a JSON text with every character as it is (no \\u escapes)."""
        return json.dumps(self.body, ensure_ascii=False)


@dataclass
class Receiver:
    """The app's state: what it answers, what it saw and what it stored. Thread-safe enough for
    one client at a time (the tests' Fetcher is sequential)."""

    late_s: float = 1.0
    script: list[str] = field(default_factory=lambda: ["ok"])
    seen: list[Seen] = field(default_factory=list)
    stored: list[Seen] = field(default_factory=list)
    events: dict[str, str] = field(default_factory=dict)  # a PUT's path: the event id it made
    port: int = 0
    _stopping: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def answer(self, *modes: str) -> None:
        """Answer the next requests with these modes in turn, the last one for good."""
        unknown = [mode for mode in modes if mode not in MODES]
        assert modes and not unknown, f"unknown modes {unknown} (known: {MODES})"
        with self._lock:
            self.script = list(modes)

    def copies(self, key: Callable[[Seen], str]) -> Counter[str]:
        """How many copies of each message were stored, by `key` (which digest it is)."""
        return Counter(key(request) for request in self.stored)

    def _next_mode(self) -> str:
        with self._lock:
            return self.script.pop(0) if len(self.script) > 1 else self.script[0]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
        mode = self._next_mode()
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        with self._lock:
            request = Seen(
                number=len(self.seen) + 1,
                mode=mode,
                method=scope["method"],
                path=scope["path"],
                raw_path=(scope.get("raw_path") or scope["path"].encode()).decode("latin-1"),
                headers={k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]},
                body=parsed,
            )
            self.seen.append(request)
        if mode == "hang":
            await self._pause(HANG_MAX_S)
            return
        if mode in REASONS:
            headers = [(b"content-type", b"text/plain")]
            if mode == "429":
                headers.append((b"retry-after", b"0"))
            await _respond(send, int(mode), REASONS[mode], headers)
            return
        event_id = self._store(request)
        if mode == "drop":
            _drop(receive)
            await asyncio.sleep(0)  # uvicorn learns of it: no "500" is written after
            await asyncio.sleep(0)
            return
        if mode == "slow":
            await self._pause(self.late_s)
        answer = json.dumps({"ok": True, "event_id": event_id}).encode()
        await _respond(send, 200, answer, [(b"content-type", b"application/json")])

    def _store(self, request: Seen) -> str:
        """Keep the message; a PUT to a known path (a Matrix transaction id) is not kept twice."""
        with self._lock:
            if request.method == "PUT" and request.path in self.events:
                return self.events[request.path]
            self.stored.append(request)
            event_id = f"$event{len(self.stored)}"
            if request.method == "PUT":
                self.events[request.path] = event_id
            return event_id

    async def _pause(self, seconds: float) -> None:
        """Wait `seconds` of real time, or until the receiver stops (a thread's wait: the event
        loop stays free for other requests, and no frozen clock stretches it)."""
        await asyncio.to_thread(self._stopping.wait, seconds)


async def _respond(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _drop(receive: Receive) -> None:
    """Close the request's connection, no answer written. ASGI has no word for it: uvicorn's
    `receive` is a method of the request's cycle, which holds the connection's transport."""
    cycle = getattr(receive, "__self__", None)
    transport = getattr(cycle, "transport", None)
    assert transport is not None, "uvicorn's request cycle no longer holds its transport"
    transport.close()


@contextmanager
def serving(late_s: float = 1.0) -> Iterator[Receiver]:
    """A Receiver served by uvicorn on 127.0.0.1 (a port of its own), stopped at the end: hung
    and late requests are let go, the server shuts down, its thread joined."""
    receiver = Receiver(late_s=late_s)
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    receiver.port = int(listening.getsockname()[1])
    config = uvicorn.Config(
        receiver,
        lifespan="off",
        http="h11",
        log_level="critical",
        access_log=False,
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listening]}, daemon=True)
    thread.start()
    for _ in range(200):  # bounded: up to 10 s to start
        if server.started or not thread.is_alive():
            break
        time.sleep(0.05)
    try:
        assert server.started, "the webhook receiver did not start"
        yield receiver
    finally:
        receiver._stopping.set()
        server.should_exit = True
        thread.join(10)
        listening.close()
