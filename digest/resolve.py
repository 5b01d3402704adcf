"""Resolve papers known only by their title: find each in the arXiv API by its exact title.

A text listing (Hugging Face's plain-text pages) gives a title and an abstract, no id; such a
paper is keyed by its normalised title (digest.identify). After the sources are read, the newest
of these are looked up in the arXiv export API, a few titles per query, politely (the fetcher's
per-host interval; a replayed run answers from its captures, and is quiet about a query they do
not hold). A result whose normalised title is the paper's becomes an ordinary record of
the "arxiv-resolve" origin: the store merges it with the title-keyed paper, which takes the arXiv
id as its key and the API's fields (authors, categories, dates, links). A title the API does not
know stays as it is (it links to arXiv's search until then; digest.compose.title_search_url).

Pure except `resolve_titles`, which takes the store and the fetcher.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from urllib.parse import urlencode

from digest.errors import DigestError, NotReplayed
from digest.fetch import Fetcher
from digest.identify import is_title_key, normalize_title
from digest.models import Origin, Paper, Record, Resolved
from digest.sources.arxiv import parse_api
from digest.store import Store

log = logging.getLogger(__name__)

API = "https://export.arxiv.org/api/query"
SOURCE = "arxiv-resolve"  # the origin of the records it finds, in the store and the logs
TITLES_PER_QUERY = 5  # a query of ORed exact-title phrases; arXiv's API handles a few at once
RECENT = timedelta(days=3)  # only papers first seen this recently: older ones were tried already
_WORD = re.compile(r"[^\W_]+")


def unresolved(papers: Iterable[Paper], now: datetime, limit: int) -> list[Paper]:
    """The title-keyed papers first seen within RECENT, newest first, at most `limit`."""
    recent = [p for p in papers if is_title_key(p.key) and p.first_seen >= now - RECENT]
    recent.sort(key=lambda p: (p.first_seen, p.key), reverse=True)
    return recent[:limit]


def query_url(titles: Sequence[str]) -> str:
    """The API query for these titles: each an exact phrase of its words in the title field."""
    phrases = []
    for title in titles:
        words = _WORD.findall(title)
        if words:
            phrases.append(f'ti:"{" ".join(words)}"')
    return API + "?" + urlencode(
        {"search_query": " OR ".join(phrases), "max_results": str(4 * len(phrases))}
    )


def matching(records: Iterable[Record], titles: Iterable[str]) -> list[Record]:
    """The records whose normalised title is one of `titles`' (the first for each title)."""
    wanted = {normalize_title(title) for title in titles}
    found: dict[str, Record] = {}
    for record in records:
        key = normalize_title(record.title)
        if key in wanted and key not in found:
            found[key] = record
    return list(found.values())


def resolve_titles(
    store: Store, fetcher: Fetcher, clock: Callable[[], datetime], limit: int
) -> Resolved:
    """Look up the newest unresolved titles in the arXiv API and store what matches."""
    now = clock()
    waiting = unresolved(store.papers(since=now - RECENT, limit=None), now, limit)
    asked = found = queries = 0
    error = None
    for start in range(0, len(waiting), TITLES_PER_QUERY):
        titles = [paper.title for paper in waiting[start : start + TITLES_PER_QUERY]]
        url = query_url(titles)
        queries += 1
        asked += len(titles)
        try:
            result = fetcher.fetch(url, accept_error_body=True)
            # The arXiv API's kind: its title and abstract replace the text listing's (identify.merge).
            records = parse_api(result.body or b"", Origin(SOURCE, API, "arxiv-api"))
        except NotReplayed:
            asked -= len(titles)  # replaying captures that hold no answer: not asked, nothing to say
            queries -= 1
            break
        except DigestError as exc:
            error = error or str(exc)
            log.info("resolve: %s", exc)
            break  # the API is unreachable or refusing: try again on the next run
        matched = matching(records, titles)
        if matched:
            store.ingest(matched, clock())
        found += len(matched)
    if asked:
        log.info("resolve: %d of %d title-only papers found on arXiv", found, asked)
    return Resolved(asked, found, queries, error)
