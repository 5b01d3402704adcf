"""Hugging Face Daily Papers: the JSON API, the listing page and a single paper page.

Every paper on Hugging Face is an arXiv paper, so records carry the arXiv id. The listing page
embeds the same items as the API in a `data-props` attribute; the rendered cards are the fallback
when that is gone, and a page with neither is a layout change.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping
from typing import Any

from bs4 import BeautifulSoup, Tag

from digest.errors import LayoutChanged, ParseError
from digest.models import Origin, Parsed, Record
from digest.sources.common import (
    api_error,
    control_share,
    describe_start,
    load_json,
    parse_date,
    parse_datetime,
    split_arxiv_id,
    to_int,
)
from digest.text import one_line, optional_line, repair, safe_url

HF = "https://huggingface.co"
_PAPER_HREF = re.compile(r"^/papers/(?P<id>[^/#?]+)$")
_AUTHOR_COUNT = re.compile(r"(\d+)\s+authors?")


# -- the JSON API -------------------------------------------------------------------------------


def parse_daily_api(body: bytes, origin: Origin) -> Parsed:
    """GET /api/daily_papers: a JSON array of {paper: {...}, title, summary, numComments, ...}."""
    items = load_json(body, "a JSON array of daily papers")
    if not isinstance(items, list):
        error = api_error(items)
        if error:  # {"error": "Invalid date"}: the API's own words
            raise ParseError(f"Hugging Face answered with an error: {error}")
        raise ParseError(f"expected a JSON array of daily papers, got {_json_kind(items)}")
    return _records_from_items(items, origin)


def _json_kind(value: object) -> str:
    """What came instead, in a few words: 'a JSON object with keys "a", "b"', 'a JSON string'."""
    if isinstance(value, dict):
        keys = ", ".join(f'"{one_line(key, 30)}"' for key in list(value)[:5])
        return f"a JSON object with keys {keys}" if keys else "an empty JSON object"
    kinds = {str: "a JSON string", bool: "a JSON boolean", int: "a JSON number"}
    return kinds.get(type(value), "a JSON number" if isinstance(value, float) else "JSON null")


NO_ID = "no arXiv id or no title"


def _records_from_items(items: list[Any], origin: Origin) -> Parsed:
    records = []
    for item in items:
        record = _record_from_item(item, origin) if isinstance(item, Mapping) else None
        if record is not None:
            records.append(record)
    left_out = len(items) - len(records)
    return Parsed(records, skipped={NO_ID: left_out} if left_out else None)


def _record_from_item(item: Mapping[str, Any], origin: Origin) -> Record | None:
    """One daily-papers item; None when it lacks an arXiv id or a title (skipped, not fatal)."""
    paper = item.get("paper")
    if not isinstance(paper, Mapping):
        paper = item  # the paper page's props hold the paper itself
    arxiv_id, version = split_arxiv_id(one_line(paper.get("id")))
    title = one_line(repair(str(paper.get("title") or item.get("title") or "")))
    if not arxiv_id or not title:
        return None
    featured = paper.get("submittedOnDailyAt") or item.get("publishedAt")
    return Record(
        origin=origin,
        title=title,
        arxiv_id=arxiv_id,
        version=version,
        abstract=one_line(repair(str(paper.get("summary") or item.get("summary") or ""))),
        authors=_authors(paper.get("authors")),
        published=parse_datetime(paper.get("publishedAt")),
        listed=parse_date(featured),
        abs_url=f"{HF}/papers/{arxiv_id}",
        pdf_url=f"https://arxiv.org/pdf/{arxiv_id}",
        code_url=safe_url(paper.get("githubRepo"), HF),
        project_url=safe_url(paper.get("projectPage"), HF),
        thumbnail_url=safe_url(item.get("thumbnail"), HF),
        upvotes=to_int(paper.get("upvotes")),
        comment_count=to_int(item.get("numComments")),
        github_stars=to_int(paper.get("githubStars")),
        ai_summary=optional_line(paper.get("ai_summary")),
        ai_keywords=_strings(paper.get("ai_keywords")),
        organization=_organization(paper.get("organization") or item.get("organization")),
    )


def _authors(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    names = []
    for author in value:
        if isinstance(author, Mapping) and not author.get("hidden"):
            # Some names reach the page escaped twice ("D&amp;#39;Mello"): one more unescape mends
            # them, and a real name never contains an HTML entity.
            name = one_line(repair(html.unescape(str(author.get("name") or ""))))
            if name:
                names.append(name)
    return tuple(names)


def _strings(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(text for text in (one_line(v) for v in value if isinstance(v, str)) if text)


def _organization(value: object) -> str | None:
    if not isinstance(value, Mapping):
        return None
    return optional_line(value.get("fullname") or value.get("name"))


# -- the listing page ---------------------------------------------------------------------------


def parse_listing_html(body: bytes, origin: Origin) -> list[Record]:
    """huggingface.co/papers: the embedded JSON first, the rendered cards as a fallback."""
    soup = _soup(body)
    props = _props(soup, "DailyPapers")
    if props is not None and isinstance(props.get("dailyPapers"), list):
        return _records_from_items(props["dailyPapers"], origin)
    cards = soup.find_all("article")
    records = [r for r in (_record_from_card(card, origin) for card in cards) if r is not None]
    if not records:
        raise LayoutChanged(
            "neither the DailyPapers data-props JSON nor any paper card (article with an "
            "h3 > a[href=/papers/<id>]) on the page"
        )
    return records


def _record_from_card(card: Tag, origin: Origin) -> Record | None:
    link = card.select_one('h3 a[href^="/papers/"]')
    if link is None:
        return None
    match = _PAPER_HREF.match(str(link.get("href", "")))
    arxiv_id, version = split_arxiv_id(match.group("id") if match else None)
    title = one_line(link.get_text(" "))
    if not arxiv_id or not title:
        return None
    upvotes = card.select_one('[role="checkbox"] .leading-none')
    comments = card.select_one(f'a[href="/papers/{arxiv_id}#community"]')
    organization = card.select_one('a[href^="/"] span.truncate')
    count = _AUTHOR_COUNT.search(card.get_text(" "))
    authors = tuple(
        one_line(html.unescape(str(li.get("title")))) for li in card.select("li[title]")
    )
    thumbnail = card.select_one("a img[src]")
    return Record(
        origin=origin,
        title=title,
        arxiv_id=arxiv_id,
        version=version,
        authors=tuple(a for a in authors if a),
        author_count=int(count.group(1)) if count else None,
        abs_url=f"{HF}/papers/{arxiv_id}",
        pdf_url=f"https://arxiv.org/pdf/{arxiv_id}",
        code_url=_github_link(card),
        thumbnail_url=safe_url(thumbnail.get("src"), HF) if thumbnail else None,
        upvotes=to_int(upvotes.get_text()) if upvotes else None,
        comment_count=to_int(comments.get_text()) if comments else None,
        github_stars=_github_stars(card),
        organization=optional_line(organization.get_text()) if organization else None,
    )


def _github_link(card: Tag) -> str | None:
    for link in card.select('a[href^="https://github.com/"]'):
        return safe_url(link.get("href"), HF)
    return None


def _github_stars(card: Tag) -> int | None:
    # The stars chip is a link with GitHub's octocat icon (its path starts "M128.001 0C57.317")
    # followed by a number.
    for path in card.select('svg path[d^="M128.001 0C57.317"]'):
        chip = path.find_parent("a")
        span = chip.find("span") if chip else None
        if span is not None:
            return to_int(span.get_text())
    return None


# -- a single paper page ------------------------------------------------------------------------


def parse_paper_page(body: bytes, origin: Origin) -> list[Record]:
    """huggingface.co/papers/<id>: the PaperContent props hold the paper."""
    props = _props(_soup(body), "PaperContent")
    paper = props.get("paper") if props else None
    if not isinstance(paper, Mapping):
        raise LayoutChanged("no PaperContent data-props with a paper on the page")
    record = _record_from_item({"paper": paper, "numComments": _comment_count(props)}, origin)
    if record is None:
        raise ParseError("the paper page's data has no arXiv id or no title")
    return [record]


def _comment_count(props: Mapping[str, Any] | None) -> int | None:
    comments = props.get("comments") if props else None
    return len(comments) if isinstance(comments, list) else None


# -- shared -------------------------------------------------------------------------------------


def _soup(body: bytes) -> BeautifulSoup:
    head = body[:512].lstrip()
    if head.startswith((b"{", b"[")):
        raise ParseError(
            f"expected an HTML page, got JSON ({describe_start(head.decode('utf-8', 'replace'))})"
        )
    if not head:
        raise ParseError("expected an HTML page, got an empty body")
    share = control_share(body[:4096])
    if share:
        raise ParseError(
            f"expected an HTML page, got binary data ({share}% of the bytes are control characters)"
        )
    return BeautifulSoup(body, "lxml")


def _props(soup: BeautifulSoup, target: str) -> dict[str, Any] | None:
    """The JSON of a Svelte component's data-props (bs4 has already unescaped the attribute)."""
    element = soup.find(attrs={"data-target": target, "data-props": True})
    if not isinstance(element, Tag):
        return None
    try:
        props = json.loads(str(element["data-props"]))
    except (ValueError, RecursionError):  # malformed, nested too deep, a huge number
        return None  # a broken embed falls back to the cards
    return props if isinstance(props, dict) else None
