"""Small helpers every source parser shares: ids, dates, numbers and bodies from untrusted pages
(their text and links are cleaned by digest.text)."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime
from typing import Any

from digest.errors import ParseError
from digest.text import one_line

# New-style ids (0704.0001 onwards, 4 or 5 digits after the dot) and old-style ids (hep-th/9901001).
_NEW_ID = r"\d{4}\.\d{4,5}"
_OLD_ID = r"[a-z][a-z-]*(?:\.[A-Z]{2})?/\d{7}"
ARXIV_ID_RE = re.compile(rf"(?<![\w.])(?P<id>{_NEW_ID}|{_OLD_ID})(?:v(?P<version>\d+))?(?![\w])")

def split_arxiv_id(text: str | None) -> tuple[str | None, int | None]:
    """'arXiv:2411.01234v2', 'https://arxiv.org/abs/2411.01234v2' -> ('2411.01234', 2).

    Returns (None, None) when there is no arXiv id in the text.
    """
    if not text:
        return None, None
    match = ARXIV_ID_RE.search(text)
    if match is None:
        return None, None
    version = match.group("version")
    return match.group("id"), int(version) if version else None


def parse_datetime(value: object) -> datetime | None:
    """An ISO 8601 / RFC 3339 timestamp as aware UTC; a bare date is taken as midnight UTC."""
    text = one_line(value)
    if not text:
        return None
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def parse_date(value: object) -> date | None:
    parsed = parse_datetime(value)
    return parsed.date() if parsed else None


def to_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    text = one_line(value).replace(",", "")
    return int(text) if text.isdigit() else None


def decode_text(body: bytes) -> str:
    """Bytes of a text format as str: a BOM or UTF-8 first, then cp1252 (the usual wrong charset)."""
    if body.startswith(b"\xef\xbb\xbf"):
        body = body[3:]
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return body.decode("cp1252", errors="replace")


def load_json(body: bytes, what: str) -> Any:
    """JSON from bytes, or a ParseError that says what was expected and what came instead."""
    text = decode_text(body).lstrip()
    if not text:
        raise ParseError(f"expected {what}, got an empty body")
    if text.startswith("<"):
        raise ParseError(f"expected {what}, got an HTML/XML page ({describe_start(text)})")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ParseError(
            f"expected {what}, got malformed JSON at line {exc.lineno} column {exc.colno}"
        ) from None


def describe_start(text: str, limit: int = 60) -> str:
    """The first characters of a body, for error messages: 'starts with "<!DOCTYPE html>..."'."""
    head = one_line(text[: limit * 2])[:limit]
    return f'starts with "{head}"'
