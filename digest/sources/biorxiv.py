"""bioRxiv and medRxiv: the details API (api.biorxiv.org/details/<server>/<from>/<to>/<cursor>).

    {"messages": [{"status": "ok", "count": 100, "total": "60568", ...}],
     "collection": [{"doi": "10.1101/029900", "version": "3", "title": ..., "authors": ...}]}

A preprint is keyed by its DOI; each version is a separate item with the same DOI, so one page
may hold the same preprint several times. `count` is a number but `total` is a string; neither
is needed here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from digest.errors import LayoutChanged, ParseError
from digest.models import Origin, Parsed, Record
from digest.sources.common import api_error, load_json, parse_datetime, to_int
from digest.text import doi as valid_doi
from digest.text import one_line, optional_line, repair

EXPECTED = "expected a bioRxiv details response"
_SITES = {"biorxiv": "https://www.biorxiv.org", "medrxiv": "https://www.medrxiv.org"}
_JSON_KINDS = {dict: "object", list: "array", str: "string", int: "number", float: "number"}


NO_DOI = "no DOI or no title"


def parse(body: bytes, origin: Origin) -> Parsed:
    response = load_json(body, "a bioRxiv details response")
    if not isinstance(response, Mapping):
        kind = _JSON_KINDS.get(type(response), "null or boolean")
        raise ParseError(f"{EXPECTED} (a JSON object), got a JSON {kind}")
    collection = response.get("collection")
    status = _status(response)
    if not collection and status and status.lower() != "ok":
        if status.lower().startswith("no posts found"):
            return Parsed()  # nothing was posted in the interval: an honest empty answer
        raise ParseError(f"bioRxiv answered with an error: {status}")
    if not isinstance(collection, list):
        error = api_error(response)
        if error:
            raise ParseError(f"bioRxiv answered with an error: {error}")
        raise ParseError(f"{EXPECTED} with a 'collection' list")
    records = [record for item in collection if (record := _record(item, origin)) is not None]
    if collection and not records:
        # Items are there but none has the fields we read: the API changed, it is not empty.
        raise LayoutChanged(
            f"none of the {len(collection)} 'collection' items has a 'doi' and a 'title'"
        )
    left_out = len(collection) - len(records)
    return Parsed(records, skipped={NO_DOI: left_out} if left_out else None)


def _status(response: Mapping[str, Any]) -> str | None:
    """messages[0].status as the API wrote it ("ok", "no posts found", an error's words), in one
    line, or None when absent."""
    messages = response.get("messages")
    if not isinstance(messages, list) or not messages or not isinstance(messages[0], Mapping):
        return None
    return one_line(messages[0].get("status"), 200) or None


def _record(item: object, origin: Origin) -> Record | None:
    if not isinstance(item, Mapping):
        return None
    doi = (valid_doi(item.get("doi")) or "").lower()  # it becomes a link: checked first
    title = one_line(repair(str(item.get("title") or "")))
    if not doi or not title:
        return None
    version = to_int(item.get("version"))
    page = _page_url(item.get("server"), doi, version)
    category = optional_line(item.get("category"))
    # `date` is the date of this version; it is the first version's date only for version 1.
    posted = parse_datetime(item.get("date"))
    return Record(
        origin=origin,
        title=title,
        doi=doi,
        version=version,
        abstract=one_line(repair(str(item.get("abstract") or ""))),
        authors=_authors(item.get("authors")),
        categories=(category,) if category else (),
        primary_category=category,
        published=posted if version == 1 else None,
        updated=posted,
        listed=posted.date() if posted else None,
        abs_url=page,
        pdf_url=page + ".full.pdf",
        journal_ref=_journal_ref(item.get("published")),
    )


def _page_url(server: object, doi: str, version: int | None) -> str:
    """https://www.biorxiv.org/content/10.1101/029900v3 (medrxiv.org for medRxiv preprints)."""
    site = _SITES.get(one_line(server).lower(), _SITES["biorxiv"])
    return f"{site}/content/{quote(doi, safe='/:;()._-')}" + (f"v{version}" if version else "")


def _authors(value: object) -> tuple[str, ...]:
    """'Wright, K. M.; Gaudinier, A.' -> ('Wright, K. M.', 'Gaudinier, A.'): kept as written."""
    names = (one_line(name) for name in repair(str(value or "")).split(";"))
    return tuple(name for name in names if name)


def _journal_ref(value: object) -> str | None:
    """`published` is the DOI of the journal version once there is one, else "NA"."""
    text = one_line(value)
    return None if text.upper() in ("", "NA") else text
