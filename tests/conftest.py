"""Fixtures for the whole suite. No test touches the network or the wall clock.

Builders and constants the tests share are in helpers.py (and the sample digests in digests.py):
test modules import them from there, never from conftest or from one another.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import freezegun
import pytest
from helpers import FAKE_KIND, REAL_LOAD_EMBEDDER, Recorder, start_server
from pgserver import PgServer, postgresql_or_skip, running

from digest import sources
from digest.store import Store

# freezegun swaps time.time and time.perf_counter for its own in every loaded module, pytest's
# _pytest.timing too: a clock frozen by a fixture (test_run's `frozen`) gave its tests setups of
# 1795407869 s in --durations and the JUnit report (the frozen moment's epoch seconds less the
# real perf_counter) and calls of a day (the test ticks the clock a day on). freezegun's default
# ignore list names "_pytest.runner." (with the dot: not _pytest.runner itself), and pytest now
# reads the time in _pytest.timing: that module keeps the real clock. Not all of "_pytest":
# freezegun looks a few frames up the stack, and a test's own frames sit just below
# _pytest.python's, so time.time() in a test's body would read the real clock.
freezegun.configure(extend_ignore_list=["_pytest.timing"])

_LOOPBACK = {"localhost", "127.0.0.1", "::1", "testserver", "testclient"}
_real_getaddrinfo = socket.getaddrinfo


def _loopback_only(host: Any, *args: Any, **kwargs: Any) -> Any:
    """No test reaches the network: a name other than the loopback's is unknown (as a machine
    without DNS would say), so code that would go out fails fast and says so."""
    name = host.decode() if isinstance(host, bytes) else str(host)
    if name not in _LOOPBACK and not name.startswith("127."):
        raise socket.gaierror(socket.EAI_NONAME, f"tests reach no network: {name}")
    return _real_getaddrinfo(host, *args, **kwargs)


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "getaddrinfo", _loopback_only)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """An open, empty store of each backend: the SQLite file in tmp_path, and a PostgreSQL
    database of the test's own (postgresql_database_url: skipped without the server on a
    developer's machine, failed in CI)."""
    if request.param == "postgresql":
        from digest.store.postgres import PgTarget, PostgresStore

        url = request.getfixturevalue("postgresql_database_url")
        with PostgresStore.connect(PgTarget(url)) as opened:
            yield opened
        return
    with Store.open(tmp_path / "data" / "paperdigest.sqlite3") as opened:
        yield opened


@pytest.fixture(scope="session")
def postgresql_server() -> Iterator[PgServer]:
    """A throwaway PostgreSQL server for the session (tests/pgserver.py): a socket in a temporary
    folder, no TCP; stopped at the session's end. Skipped without PostgreSQL, failed in CI.
    `.restart()` stops and starts it on the same data (the same URLs)."""
    with running(postgresql_or_skip()) as server:
        yield server


@pytest.fixture(scope="session")
def postgresql_url(postgresql_server: PgServer) -> str:
    """The URL of the database "paperdigest", one for the whole session."""
    return postgresql_server.create_database("paperdigest")


@pytest.fixture
def postgresql_database_url(postgresql_server: PgServer) -> Iterator[str]:
    """The URL of a new empty database of the test's own (`test_<n>`), dropped after it."""
    with postgresql_server.database() as url:
        yield url


@pytest.fixture
def fake_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sources of kind "fake": pages parsed by helpers.fake_parse (see helpers.make_config)."""
    monkeypatch.setitem(sources.SOURCE_KINDS, "fake", FAKE_KIND)


@pytest.fixture
def smtp_server() -> Iterator[tuple[Recorder, int]]:
    """aiosmtpd on 127.0.0.1: its Recorder and port."""
    controller, recorder = start_server()
    yield recorder, controller.port
    controller.stop()


class _RememberingEmbedder:
    """The real sentence model, remembering every text it embedded: the suite builds hundreds of
    fresh stores holding the same captured papers, and embeds each text once."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.name, self.dimensions = model.name, model.dimensions
        self.seen: dict[str, Any] = {}

    def embed(self, texts: Any) -> Any:
        import numpy as np

        missing = [t for t in dict.fromkeys(texts) if t not in self.seen]
        if missing:
            self.seen.update(zip(missing, self.model.embed(missing), strict=True))
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        return np.stack([self.seen[t] for t in texts])


@pytest.fixture(autouse=True, scope="session")
def _one_sentence_model_per_session() -> Any:
    """`digest.embed.load_embedder` gives the shipped model loaded once per session; a test
    that names a model folder (or checks a broken one) still reaches the real loader
    (helpers.REAL_LOAD_EMBEDDER)."""
    from digest import embed

    shared: list[_RememberingEmbedder] = []

    def load(model_dir: Path | None = None) -> Any:
        if model_dir is not None:
            return REAL_LOAD_EMBEDDER(model_dir)
        if not shared:
            shared.append(_RememberingEmbedder(REAL_LOAD_EMBEDDER()))
        return shared[0]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(embed, "load_embedder", load)
        yield
