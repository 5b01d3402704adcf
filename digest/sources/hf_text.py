"""Plain-text renderings of Hugging Face papers listings (what a browser's "copy as text" gives).

The text has no ids and no links, so records are keyed by title (see identify.py). Layout:

    new / Get trending papers in your email inbox! / Subscribe / [Daily Papers] / byAK and ...
    Mar 11                              <- the listing's day, without a year
    <title>
    <abstract>
      • 5 authors                       <- optional block: author count and the paper's date
    ·
    Oct 13, 2020
    <title>
    ...

Paragraphs are separated by blank lines. An optional bare number is the entry's upvote count.

What is not such a text is refused whole (a ParseError): binary data, markup, JSON. A "title"
longer than any title (MAX_TITLE) is a paragraph the layout rules misread; its entry is left out
and counted in the result's `skipped`, never stored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

from digest.errors import LayoutChanged, ParseError
from digest.models import Origin, Parsed, Record
from digest.sources.common import MAX_TITLE, control_share, decode_text, describe_start
from digest.text import one_line, repair

_HEADER_LINES = frozenset(
    {
        "new",
        "get trending papers in your email inbox!",
        "subscribe",
        "daily papers",
        "byak and the research community",
    }
)
_DAY = re.compile(r"^(?P<month>[A-Z][a-z]{2}) (?P<day>\d{1,2})(?:, (?P<year>\d{4}))?$")
_AUTHORS = re.compile(r"^•\s*(?P<count>\d+)\s+authors?$")
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")
# A title is one short line; an abstract is long or ends like a sentence.
_SHORTEST_ABSTRACT = 160
TOO_LONG = f"title over {MAX_TITLE} characters"


@dataclass
class _Entry:
    title: str
    abstract: str = ""
    author_count: int | None = None
    published: datetime | None = None
    upvotes: int | None = None
    extra: list[str] = field(default_factory=list)


def parse(body: bytes, origin: Origin) -> Parsed:
    share = control_share(body)
    if share:  # an image, an archive, a UTF-16 file without its byte order mark
        raise ParseError(f"not a text listing: {share}% of the bytes are control characters")
    text = repair(decode_text(body)).replace("\r\n", "\n").replace("\r", "\n")
    paragraphs = [p.strip() for p in _PARAGRAPH_BREAK.split(text) if p.strip()]
    if not paragraphs:
        raise ParseError("expected a plain-text listing, got an empty body")
    if paragraphs[0].startswith(("<", "{", "[")):
        what = "markup" if paragraphs[0].startswith("<") else "JSON"
        raise ParseError(
            f"expected a plain-text listing, got {what} ({describe_start(text.strip())})"
        )
    entries = _entries(_skip_header(paragraphs))
    kept = [entry for entry in entries if len(entry.title) <= MAX_TITLE]
    skipped = {TOO_LONG: len(entries) - len(kept)} if len(kept) < len(entries) else {}
    if not kept:
        left_out = f" ({len(entries)} with a {TOO_LONG} left out)" if entries else ""
        raise LayoutChanged(
            f"no paper entries (title followed by abstract) in the text listing{left_out}"
        )
    return Parsed(
        (
            Record(
                origin=origin,
                title=entry.title,
                abstract=entry.abstract,
                author_count=entry.author_count,
                published=entry.published,
                upvotes=entry.upvotes,
            )
            for entry in kept
        ),
        skipped=skipped,
    )


def _skip_header(paragraphs: list[str]) -> list[str]:
    """Drop the page's fixed header lines and the listing's day line that follows them."""
    start = 0
    while start < len(paragraphs) and paragraphs[start].casefold() in _HEADER_LINES:
        start += 1
    if start < len(paragraphs) and _DAY.match(paragraphs[start]):
        start += 1
    return paragraphs[start:]


def _entries(paragraphs: list[str]) -> list[_Entry]:
    entries: list[_Entry] = []
    for paragraph in paragraphs:
        current = entries[-1] if entries else None
        lines = [line.strip() for line in paragraph.split("\n") if line.strip()]
        authors = _AUTHORS.match(lines[0])
        if current is not None and authors:
            # "• 5 authors", "·", "Oct 13, 2020": the count and the paper's own date.
            current.author_count = int(authors.group("count"))
            current.published = next((d for d in map(_date, lines[1:]) if d), None)
        elif current is not None and paragraph.isdigit():
            current.upvotes = int(paragraph)
        elif current is not None and not current.abstract and _looks_like_abstract(paragraph):
            current.abstract = one_line(paragraph)
        else:
            title = one_line(paragraph)
            if title:
                entries.append(_Entry(title=title))
    return entries


def _looks_like_abstract(paragraph: str) -> bool:
    return len(paragraph) >= _SHORTEST_ABSTRACT or paragraph.rstrip().endswith(".")


def _date(line: str) -> datetime | None:
    """'Oct 13, 2020' as midnight UTC; a date without a year ('Sep 20') is left out, not guessed."""
    match = _DAY.match(line)
    if not match or not match.group("year"):
        return None
    try:
        return datetime.strptime(line, "%b %d, %Y").replace(tzinfo=UTC)
    except ValueError:
        return None
