"""The kinds of source paperdigest can read. Each is a pure parser: `parse(body, origin) -> [Record]`.

A kind names its module lazily, so `digest papers` never pays for importing lxml or feedparser.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

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

    def parser(self) -> Parser:
        module = importlib.import_module(self.module)
        parser: Parser = getattr(module, self.function)
        return parser


_KINDS = (
    SourceKind(
        "hf-daily",
        "digest.sources.hf",
        "parse_daily_api",
        "Hugging Face Daily Papers JSON API (/api/daily_papers)",
    ),
    SourceKind(
        "hf-html",
        "digest.sources.hf",
        "parse_listing_html",
        "Hugging Face papers listing page (huggingface.co/papers)",
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
    ),
    SourceKind(
        "arxiv-listing",
        "digest.sources.arxiv",
        "parse_listing_html",
        "arXiv listing page (/list/<cat>/new, /recent, monthly)",
    ),
    SourceKind(
        "arxiv-rss",
        "digest.sources.arxiv",
        "parse_rss",
        "arXiv RSS service, RSS 2.0 or Atom (rss.arxiv.org)",
    ),
    SourceKind(
        "arxiv-api",
        "digest.sources.arxiv",
        "parse_api",
        "arXiv export API Atom (export.arxiv.org/api/query)",
        error_body_is_data=True,
    ),
    SourceKind("feed", "digest.sources.feed", "parse", "any RSS or Atom feed"),
    SourceKind(
        "biorxiv",
        "digest.sources.biorxiv",
        "parse",
        "bioRxiv / medRxiv details API (api.biorxiv.org/details)",
    ),
)

SOURCE_KINDS: dict[str, SourceKind] = {kind.name: kind for kind in _KINDS}
