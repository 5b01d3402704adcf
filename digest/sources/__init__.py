"""The kinds of source paperdigest can read. Each is a pure parser: `parse(body, origin) -> [Record]`.

A kind names its module lazily, so `digest papers` never pays for importing lxml or feedparser.
It also knows what an honest empty answer looks like (`entries`: how many entries an answer
holds, from digest.sources.envelope) and which publishing calendar it follows (digest.calendars):
together they tell a quiet day from a layout change (digest.health).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from digest.calendars import ARXIV, DAILY, WEEKDAYS
from digest.models import Origin, Record

Parser = Callable[[bytes, Origin], list[Record]]


@dataclass(frozen=True, slots=True)
class SourceKind:
    name: str
    module: str
    function: str
    description: str
    # The arXiv API answers a bad query with HTTP 400 and an Atom error feed the parser explains.
    error_body_is_data: bool = False
    # When the source should have content (digest.calendars): a short count on a day it should
    # not is no layout change.
    calendar: str = DAILY
    # The function of digest.sources.envelope that counts an answer's entries, or None when the
    # parser alone tells an empty answer from a broken one.
    entries: str | None = None

    def parser(self) -> Parser:
        module = importlib.import_module(self.module)
        parser: Parser = getattr(module, self.function)
        return parser

    def entries_in(self, body: bytes) -> int | None:
        """How many entries the answer holds, whatever the parser made of them (None: unknown)."""
        if self.entries is None:
            return None
        from digest.sources import envelope

        count: Callable[[bytes], int | None] = getattr(envelope, self.entries)
        return count(body)


_KINDS = (
    SourceKind(
        "hf-daily",
        "digest.sources.hf",
        "parse_daily_api",
        "Hugging Face Daily Papers JSON API (/api/daily_papers)",
        calendar=WEEKDAYS,
        entries="json_array",
    ),
    SourceKind(
        "hf-html",
        "digest.sources.hf",
        "parse_listing_html",
        "Hugging Face papers listing page (huggingface.co/papers)",
        calendar=WEEKDAYS,
        entries="hf_listing",
    ),
    SourceKind(
        "hf-paper",
        "digest.sources.hf",
        "parse_paper_page",
        "one Hugging Face paper page (huggingface.co/papers/<id>)",
    ),
    SourceKind(
        "hf-text",
        "digest.sources.hf_text",
        "parse",
        "plain-text rendering of a Hugging Face papers listing",
        calendar=WEEKDAYS,
    ),
    SourceKind(
        "arxiv-listing",
        "digest.sources.arxiv",
        "parse_listing_html",
        "arXiv listing page (/list/<cat>/new, /recent, monthly)",
        calendar=ARXIV,
        entries="arxiv_listing",
    ),
    SourceKind(
        "arxiv-rss",
        "digest.sources.arxiv",
        "parse_rss",
        "arXiv RSS service, RSS 2.0 or Atom (rss.arxiv.org), or a legacy RSS 1.0 feed",
        calendar=ARXIV,
        entries="feed_entries",
    ),
    SourceKind(
        "arxiv-api",
        "digest.sources.arxiv",
        "parse_api",
        "arXiv export API Atom (export.arxiv.org/api/query)",
        error_body_is_data=True,
        calendar=ARXIV,
        entries="feed_entries",
    ),
    SourceKind(
        "feed", "digest.sources.feed", "parse", "any RSS or Atom feed", entries="feed_entries"
    ),
    SourceKind(
        "biorxiv",
        "digest.sources.biorxiv",
        "parse",
        "bioRxiv / medRxiv details API (api.biorxiv.org/details)",
    ),
)

SOURCE_KINDS: dict[str, SourceKind] = {kind.name: kind for kind in _KINDS}
