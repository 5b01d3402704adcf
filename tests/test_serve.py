"""digest.web.server: uvicorn with a deadline on request heads, on a real loopback socket."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from helpers import free_port, write_config

from digest.config import load_config
from digest.web import create_app, server
from digest.web import site as site_module

HEAD_TIMEOUT = 0.5


@pytest.fixture(params=["fastest", "h11"])
def serving(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """`digest serve`'s server on 127.0.0.1, its head deadline shortened; yields the port."""
    monkeypatch.setattr(server, "HEAD_TIMEOUT", HEAD_TIMEOUT)
    app = create_app(load_config(write_config(tmp_path)))
    port = free_port()
    config = server.server_config(app, "127.0.0.1", port, "127.0.0.1")
    if request.param == "h11":
        config.http = server.GuardedH11Protocol
    else:
        assert issubclass(server.guarded_protocol(), server._HeadDeadline)
    running = uvicorn.Server(config)
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    for _ in range(200):  # bounded: up to 10 s to start listening
        if running.started:
            break
        time.sleep(0.05)
    assert running.started
    try:
        yield port
    finally:
        running.should_exit = True
        thread.join(10)


def closed_within(connection: socket.socket, seconds: float) -> bool:
    """Does the server close the connection (EOF) within `seconds`? Reads and drops any answer."""
    connection.settimeout(seconds)
    try:
        while connection.recv(4096):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    return True


def test_a_request_head_sent_too_slowly_has_its_connection_closed(serving: int) -> None:
    with socket.create_connection(("127.0.0.1", serving)) as slow:
        slow.sendall(b"GET /subscribe HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the rest
        began = time.monotonic()
        assert closed_within(slow, 5)
        assert time.monotonic() - began < 4 * HEAD_TIMEOUT + 1


def test_a_kept_alive_connection_gets_a_new_deadline_for_each_head(serving: int) -> None:
    with socket.create_connection(("127.0.0.1", serving)) as client:
        for _ in range(2):  # each answered: a head in time is never cut
            client.sendall(b"GET /feeds/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            client.settimeout(5)
            answer = client.recv(65536)
            assert answer.startswith(b"HTTP/1.1 200")
            time.sleep(HEAD_TIMEOUT / 2)
        client.sendall(b"GET /feeds/ HTTP/1.1\r\n")  # the third head never ends
        assert closed_within(client, 5)


def test_a_form_body_that_drips_in_is_refused_in_time(
    serving: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(site_module, "BODY_SECONDS", HEAD_TIMEOUT)
    with socket.create_connection(("127.0.0.1", serving)) as slow:
        slow.sendall(b"POST /subscribe HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\n"
                     b"email=a")  # and never the rest
        slow.settimeout(5)
        answer = slow.recv(65536)
    assert answer.startswith(b"HTTP/1.1 408")
