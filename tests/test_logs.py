"""Log lines: one per event, text or JSON, saying which run, source and profile they are about."""

from __future__ import annotations

import json
import logging

import pytest

from digest import logs


def test_json_lines_carry_the_run_source_and_profile(capsys: pytest.CaptureFixture[str]) -> None:
    logs.setup("json", logging.INFO)
    log = logging.getLogger("digest.test")
    with logs.context(run_id="host:1:abc"):
        with logs.context(source="arxiv-lg"):
            log.info("fetched %d", 3)
        log.warning("mail to %s: deferred", "a@example.org", extra={"profile": "me"})
        try:
            raise ValueError("bad\nthing")
        except ValueError:
            log.exception("job failed")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3  # one line per event, the traceback included
    first, second, third = (json.loads(line) for line in lines)
    assert first["event"] == "fetched 3" and first["level"] == "info"
    assert (first["run_id"], first["source"]) == ("host:1:abc", "arxiv-lg")
    assert "profile" not in first
    assert (second["profile"], second["run_id"]) == ("me", "host:1:abc")
    assert "source" not in second  # the source context ended with its block
    assert "ValueError: bad" in third["error"]


def test_text_lines_name_what_they_are_about(capsys: pytest.CaptureFixture[str]) -> None:
    logs.setup("text", logging.INFO)
    with logs.context(run_id="r1", profile="me"):
        logging.getLogger("digest.test").info("composed")
    (line,) = capsys.readouterr().err.splitlines()
    assert line.endswith("INFO digest.test: composed [run_id=r1 profile=me]")


def test_setup_twice_keeps_one_handler_and_leaves_others_alone() -> None:
    root = logging.getLogger()
    foreign = logging.NullHandler()
    root.addHandler(foreign)
    try:
        logs.setup("text")
        logs.setup("json")
        ours = [h for h in root.handlers if h.get_name() == "paperdigest"]
        assert len(ours) == 1 and foreign in root.handlers
    finally:
        root.removeHandler(foreign)


def test_library_chatter_waits_for_debug(capsys: pytest.CaptureFixture[str]) -> None:
    """httpx's "HTTP Request: GET ..." (even for a replayed answer) and APScheduler's "Adding job"
    are not shown at info, the level `digest run` logs at; our own info lines are."""
    logs.setup("text", logging.INFO)
    logging.getLogger("httpx").info("HTTP Request: GET https://huggingface.co/ 200 OK")
    logging.getLogger("apscheduler.scheduler").info("Adding job tentatively")
    logging.getLogger("digest.pipeline").info("embedded 3 new papers")
    err = capsys.readouterr().err
    assert "HTTP Request" not in err and "Adding job" not in err
    assert "embedded 3 new papers" in err
    logs.setup("text", logging.DEBUG)
    logging.getLogger("httpx").debug("HTTP Request: GET https://huggingface.co/ 200 OK")
    assert "HTTP Request" in capsys.readouterr().err
