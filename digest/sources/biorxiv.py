"""bioRxiv and medRxiv: the details API (api.biorxiv.org/details/<server>/<from>/<to>/<cursor>).

    {"messages": [{"status": "ok", "count": 100, "total": "60568", ...}], "collection": [...]}

Preprints are keyed by DOI; each version of a preprint is one item with the same DOI.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from digest.errors import ParseError
from digest.models import Origin, Record
from digest.sources.common import (
    clean_optional,
    clean_text,
    load_json,
    parse_date,
    parse_datetime,
    to_int,
)

_SITES = {"medrxiv": "https://www.medrxiv.org", "biorxiv": "https://www.biorxiv.org"}


def parse(body: bytes, origin: Origin) -> list[Record]:
    response = load_json(body, "a bioRxiv details response")
    if not isinstance(response, Mapping):
        raise ParseError(
            f"expected a bioRxiv details response (a JSON object), got a JSON {type(response).__name__}"
        )
    collection = response.get("collection")
    if collection is None and _no_posts(response):
        return []  # "no posts found" for the interval: an honest empty answer
    if not isinstance(collection, list):
        raise ParseError("expected a bioRxiv details response with a 'collection' list")
    return [record for item in collection if (record := _record(item, origin)) is not None]


def _no_posts(response: Mapping[str, Any]) -> bool:
    messages = response.get("messages")
    if not isinstance(messages, list) or not messages or not isinstance(messages[0], Mapping):
        return False
    return str(messages[0].get("status", "")).lower() != "ok"


def _record(item: object, origin: Origin) -> Record | None:
    if not isinstance(item, Mapping):
        return None
    doi = clean_text(item.get("doi")).lower()
    title = clean_text(item.get("title"))
    if not doi or not title:
        return None
    version = to_int(item.get("version"))
    server = clean_text(item.get("server")).lower() or "biorxiv"
    page = f"{_SITES.get(server, _SITES['biorxiv'])}/content/{doi}v{version or 1}"
    category = clean_text(item.get("category"))
    published = clean_text(item.get("published"))
    return Record(
        origin=origin,
        title=title,
        doi=doi,
        version=version,
        abstract=clean_text(item.get("abstract")),
        authors=tuple(
            name
            for name in (clean_text(a) for a in str(item.get("authors") or "").split(";"))
            if name
        ),
        categories=(category,) if category else (),
        primary_category=category or None,
        # `date` is this version's date: the first version's date only when this is version 1.
        published=parse_datetime(item.get("date")) if version == 1 else None,
        updated=parse_datetime(item.get("date")),
        listed=parse_date(item.get("date")),
        abs_url=page,
        pdf_url=page + ".full.pdf",
        journal_ref=clean_optional(published) if published.upper() != "NA" else None,
    )
