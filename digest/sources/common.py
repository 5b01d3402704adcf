"""Small helpers every source parser shares: ids, dates, numbers and bodies from untrusted pages
(their text and links are cleaned by digest.text)."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from digest.errors import ParseError
from digest.text import one_line

# No title of a paper is longer (the longest arXiv titles run to about 300 characters): a longer
# one is a paragraph or a page a parser misread, and its entry is left out, never stored.
MAX_TITLE = 500

# New-style ids (0704.0001 onwards, 4 or 5 digits after the dot) and old-style ids (hep-th/9901001).
_NEW_ID = r"\d{4}\.\d{4,5}"
_OLD_ID = r"[a-z][a-z-]*(?:\.[A-Z]{2})?/\d{7}"
ARXIV_ID_RE = re.compile(rf"(?<![\w.])(?P<id>{_NEW_ID}|{_OLD_ID})(?:v(?P<version>\d+))?(?![\w])")
# An id that is the whole of a path segment or parameter: "2604.26934v2", "hep-th/9901001",
# "2604.26934.pdf", "arXiv:2604.26934".
_WHOLE_ID = re.compile(
    rf"(?i:arxiv[:.])?(?P<id>{_NEW_ID}|{_OLD_ID})(?:v(?P<version>\d+))?(?:\.pdf)?/?"
)

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


# Sites that show an arXiv paper under its id, and where in their links the id sits: the path
# after one of the prefixes, or a query parameter. Hosts match exactly or as a subdomain
# (www., export., browse., ar5iv.labs.); only these hosts are read, so a number in another
# site's link (a DOI's "10.1234/2604.26934", a shop's "/item/2604.12345") is never taken for an id.
_ARXIV_HOSTS: dict[str, tuple[tuple[str, ...], str | None]] = {
    "arxiv.org": (("/abs/", "/pdf/", "/html/", "/format/", "/ps/"), None),
    "ar5iv.org": (("/abs/", "/html/"), None),
    "alphaxiv.org": (("/abs/", "/overview/", "/pdf/"), None),
    "huggingface.co": (("/papers/",), None),
    "hf.co": (("/papers/",), None),
    "tldr.takara.ai": (("/p/",), None),
    "arxiv-sanity-lite.com": ((), "pid"),
    "arxiv-sanity.com": (("/abs/", "/"), None),
    "semanticscholar.org": (
        ("/arxiv/", "/arxiv:", "/graph/v1/paper/arxiv:", "/v1/paper/arxiv:"),
        None,
    ),
}
# arXiv's DataCite DOIs name the id: 10.48550/arXiv.2604.26934 (on doi.org, or bare).
_ARXIV_DOI = re.compile(r"^(?:https?://(?:dx\.)?doi\.org/|doi:)?10\.48550/", re.IGNORECASE)


def arxiv_id_from_link(link: str | None) -> tuple[str | None, int | None]:
    """The arXiv id a link or guid names, as split_arxiv_id gives it, or (None, None).

    Read from arXiv's own addresses (abs, pdf with a version or ".pdf", html, any subdomain:
    export., www., ar5iv.labs.), OAI ids ("oai:arXiv.org:2508.13426v1"), arXiv DOIs
    (10.48550/arXiv.<id>), and the mirrors and aggregators that put the id in their links:
    alphaxiv.org/abs|overview/<id>, huggingface.co|hf.co/papers/<id>, tldr.takara.ai/p/<id>,
    ar5iv.org/html/<id>, arxiv-sanity(-lite), api.semanticscholar.org/arXiv:<id>. Any other
    link gives nothing, whatever digits it holds.
    """
    text = (link or "").strip()
    if not text:
        return None, None
    lowered = text.lower()
    if lowered.startswith("oai:arxiv.org:"):
        return _whole_id(text[len("oai:arxiv.org:") :])
    doi = _ARXIV_DOI.match(text)
    if doi:
        rest = unquote(text[doi.end() :])
        return _whole_id(rest) if rest.lower().startswith("arxiv.") else (None, None)
    try:
        parts = urlsplit(text)
        host = (parts.hostname or "").lower()
    except ValueError:
        return None, None
    if parts.scheme.lower() not in ("http", "https"):
        return None, None
    site = next(
        (name for name in _ARXIV_HOSTS if host == name or host.endswith("." + name)), None
    )
    if site is None:
        return None, None
    prefixes, parameter = _ARXIV_HOSTS[site]
    if parameter:
        values = parse_qs(parts.query).get(parameter) or [""]
        return _whole_id(values[0])
    path = unquote(parts.path)
    for prefix in prefixes:
        if path.lower().startswith(prefix.lower()):
            found = _whole_id(path[len(prefix) :])
            if found[0]:
                return found
    return None, None


def _whole_id(text: str) -> tuple[str | None, int | None]:
    """An id that is all of `text` (a version, ".pdf" or a trailing slash aside)."""
    match = _WHOLE_ID.fullmatch(text.strip())
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
    """Bytes of a text format as str: a BOM's charset (UTF-8, UTF-16) or UTF-8 first, then cp1252
    (the usual wrong charset)."""
    if body.startswith(b"\xef\xbb\xbf"):
        body = body[3:]
    elif body.startswith((b"\xff\xfe", b"\xfe\xff")):
        return body.decode("utf-16", errors="replace")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return body.decode("cp1252", errors="replace")


# The rest of a JSON text cut off in a literal or a number: "tru", "-12.", "1e".
_CUT_LITERAL = re.compile(r"t(?:r(?:ue?)?)?|f(?:a(?:l(?:se?)?)?)?|n(?:u(?:ll?)?)?|-?[\d.eE+-]*")


def load_json(body: bytes, what: str) -> Any:
    """JSON from bytes, or a ParseError that says in one line what was expected and what came
    instead: an empty body, a page, JSON cut off or malformed, nested too deep for the parser, or
    holding a number longer than Python reads (4,300 digits)."""
    text = decode_text(body).lstrip()
    if not text:
        raise ParseError(f"expected {what}, got an empty body")
    if text.startswith("<"):
        raise ParseError(f"expected {what}, got an HTML/XML page ({describe_start(text)})")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        rest = text[exc.pos :].strip()
        if exc.msg.startswith("Unterminated string") or _CUT_LITERAL.fullmatch(rest):
            raise ParseError(
                f"expected {what}, got JSON cut off after {len(text):,} characters "
                "(it ends mid-value)"
            ) from None
        raise ParseError(
            f"expected {what}, got malformed JSON at line {exc.lineno} column {exc.colno} "
            f"({exc.msg})"
        ) from None
    except RecursionError:
        raise ParseError(f"expected {what}, got JSON nested too deep to read") from None
    except ValueError:  # Python's limit on the digits of an integer (sys.get_int_max_str_digits)
        limit = sys.get_int_max_str_digits()
        raise ParseError(
            f"expected {what}, got JSON holding a number of over {limit:,} digits"
        ) from None


def api_error(value: object) -> str | None:
    """The text of a JSON API's error object, in one line, or None when `value` is not one:
    {"error": "Invalid date"}, {"error": {"message": ...}}, {"errors": [...]}, {"message": ...},
    {"detail": ...}."""
    if not isinstance(value, Mapping):
        return None
    for key in ("error", "errors", "message", "detail"):
        found = value.get(key)
        if isinstance(found, list) and found:
            found = found[0]
        if isinstance(found, Mapping):
            found = found.get("message") or found.get("detail") or found.get("title")
        if isinstance(found, str) and one_line(found):
            return one_line(found, 200)
    return None


# Control bytes other than white space (tab, line feed, form feed, carriage return): text has
# next to none, binary data about one byte in ten.
_CONTROL_BYTES = bytes(sorted(set(range(0x20)) - {0x09, 0x0A, 0x0C, 0x0D} | {0x7F}))
_MOST_CONTROL_BYTES = 0.02


def control_share(body: bytes) -> int | None:
    """The percentage of control bytes in `body` when it is binary data rather than text (more
    than 2 %: one stray control character in a real page is no reason), else None. A UTF-16 text
    with its byte order mark is text."""
    if not body or body.startswith((b"\xff\xfe", b"\xfe\xff")):
        return None
    controls = len(body) - len(body.translate(None, _CONTROL_BYTES))
    if controls / len(body) <= _MOST_CONTROL_BYTES:
        return None
    return max(1, round(100 * controls / len(body)))


def describe_start(text: str, limit: int = 60) -> str:
    """The first characters of a body, for error messages: 'starts with "<!DOCTYPE html>..."'."""
    head = one_line(text[: limit * 2])[:limit]
    return f'starts with "{head}"'
