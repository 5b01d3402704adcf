"""How many entries an answer holds, read from its envelope alone: what an honest empty answer
looks like, kind by kind (pure).

The envelope is what a source's format promises whatever the fields inside: the JSON array, the
feed's items and entries, the rows of an arXiv listing. A parser that returns no records from an
answer holding entries found none of the fields it reads in any of them (a renamed CSS class, a
renamed JSON key): a layout change, reported on the first run. An answer whose envelope holds no
entries is honestly empty (an arXiv feed on a Saturday, Hugging Face's `[]`).

Each function answers None when it cannot tell; the parser's word then stands. They run only when
a parser returned nothing, so reading a body twice costs nothing on a normal day.
"""

from __future__ import annotations

import json
from typing import Any

import lxml.html
from lxml import etree

_XML = etree.XMLParser(recover=True, resolve_entities=False, no_network=True)
_ENTRY_TAGS = frozenset({"item", "entry"})  # RSS 0.9x/1.0/2.0 items, Atom entries


def json_array(body: bytes) -> int | None:
    """A JSON array's length (Hugging Face /api/daily_papers)."""
    value = _json(body)
    return len(value) if isinstance(value, list) else None


def feed_entries(body: bytes) -> int | None:
    """The items and entries of an RSS or Atom feed (arXiv's RSS and API, any feed)."""
    try:
        root = etree.fromstring(body, _XML)
    except (etree.XMLSyntaxError, ValueError):
        return None
    if root is None:
        return None
    return sum(
        1
        for element in root.iter()
        if isinstance(element.tag, str) and etree.QName(element).localname in _ENTRY_TAGS
    )


def arxiv_listing(body: bytes) -> int | None:
    """The papers of an arXiv listing page: rows of its articles list, or links to abstracts."""
    try:
        root = lxml.html.fromstring(body)
    except (etree.ParserError, ValueError):
        return None
    rows = _found(root, '//dl[@id="articles"]/dt')
    hrefs = _found(root, '//dl[@id="articles"]//a/@href')
    links = {str(href) for href in hrefs if "/abs/" in str(href)}
    return max(len(rows), len(links))


def hf_listing(body: bytes) -> int | None:
    """The papers in a Hugging Face listing page's DailyPapers data-props JSON."""
    try:
        root = lxml.html.fromstring(body)
    except (etree.ParserError, ValueError):
        return None
    for props in _found(root, '//*[@data-target="DailyPapers"]/@data-props'):
        value = _json(str(props).encode())
        if isinstance(value, dict) and isinstance(value.get("dailyPapers"), list):
            return len(value["dailyPapers"])
    return None


def _found(root: lxml.html.HtmlElement, path: str) -> list[Any]:
    """What an XPath finds, as a list (lxml's typing also allows a number or a string)."""
    found = root.xpath(path)
    return found if isinstance(found, list) else []


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None
