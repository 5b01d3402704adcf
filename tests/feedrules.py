"""The W3C feed validator's rules that apply to the feeds paperdigest writes, as a checker.

The validator (validator.w3.org/feed, github.com/w3c/feedvalidator) is not on PyPI and CI has no
network, so its checks are restated here: `problems(feed)` names every error and warning it
would give for these message kinds (its names in brackets), or nothing.

Atom (RFC 4287): feed and entry each have one id (an absolute IRI: a URN here), title and
updated (RFC 3339 with an offset) [MissingElement, InvalidRFC3339Date]; an author for every
entry, its own or the feed's [MissingAuthor]; no two entries with one id [DuplicateEntries] or
one updated [DuplicateUpdated]; a self link [MissingSelf]; absolute http(s) links
[ContainsRelRef, InvalidFullLink]; content type="html" that parses as HTML with no script,
frames, objects, event handlers or javascript: URLs [SecurityRisk, NotHtml]; a URN id with a
valid namespace and no spaces [InvalidURN].
RSS 2.0: channel title, link and description [MissingElement]; an atom:link rel="self"
[MissingAtomSelfLink]; dates in RFC 822 with a four-digit year [InvalidRFC2822Date]; items with
a title or description; guids unique, and a guid that is not a permalink marked so
[InvalidHttpGUID]; the same HTML rules for description and content:encoded.
"""

from __future__ import annotations

import re
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import lxml.html
from lxml import etree

ATOM = "{http://www.w3.org/2005/Atom}"
CONTENT = "{http://purl.org/rss/1.0/modules/content/}encoded"
_URN = re.compile(r"^urn:[A-Za-z0-9][A-Za-z0-9-]{0,31}:[A-Za-z0-9()+,\-.:=@;$_!*'%/?#]+$")
_RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")
_RFC822 = re.compile(r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|"
                     r"Nov|Dec) \d{4} \d\d:\d\d:\d\d (\+|-)\d{4}$")
_DANGEROUS = {"script", "iframe", "object", "embed", "frame", "frameset", "applet", "form", "meta",
              "link", "base"}


def problems(feed: bytes) -> list[str]:
    root = etree.fromstring(feed)
    if root.tag == f"{ATOM}feed":
        return _atom(root)
    if root.tag == "rss":
        return _rss(root)
    return [f"not a feed: {root.tag}"]


def _atom(feed: etree._Element) -> list[str]:
    found: list[str] = []
    found += _one_each(feed, "feed", ("id", "title", "updated"))
    links = feed.findall(f"{ATOM}link")
    if not any(link.get("rel") == "self" for link in links):
        found.append("MissingSelf: the feed has no self link")
    found += [_url_problem("feed link", link.get("href")) for link in links]
    feed_author = feed.find(f"{ATOM}author/{ATOM}name") is not None
    ids, updated = [], []
    for number, entry in enumerate(feed.findall(f"{ATOM}entry"), 1):
        where = f"entry {number}"
        found += _one_each(entry, where, ("id", "title", "updated"))
        if not feed_author and entry.find(f"{ATOM}author/{ATOM}name") is None:
            found.append(f"MissingAuthor: {where}")
        ids.append(entry.findtext(f"{ATOM}id"))
        updated.append(entry.findtext(f"{ATOM}updated"))
        found += [_url_problem(f"{where} link", link.get("href")) for link in entry.findall(f"{ATOM}link")]
        for text in entry.findall(f"{ATOM}content") + entry.findall(f"{ATOM}summary"):
            if text.get("type") == "html":
                found += _html_problems(where, text.text or "")
    for element in [feed, *feed.findall(f"{ATOM}entry")]:
        value = element.findtext(f"{ATOM}id") or ""
        if value.startswith("urn:") and not _URN.match(value):
            found.append(f"InvalidURN: {value!r}")
        stamp = element.findtext(f"{ATOM}updated") or ""
        if stamp and not _RFC3339.match(stamp):
            found.append(f"InvalidRFC3339Date: {stamp!r}")
    found += [f"DuplicateEntries: {i}" for i in _repeated(ids)]
    found += [f"DuplicateUpdated: {u}" for u in _repeated(updated)]
    return [problem for problem in found if problem]


def _rss(rss: etree._Element) -> list[str]:
    found: list[str] = []
    channel = rss.find("channel")
    if channel is None:
        return ["MissingElement: channel"]
    for name in ("title", "link", "description"):
        if not (channel.findtext(name) or "").strip():
            found.append(f"MissingElement: channel {name}")
    found.append(_url_problem("channel link", channel.findtext("link")))
    if not any(link.get("rel") == "self" for link in channel.findall(f"{ATOM}link")):
        found.append("MissingAtomSelfLink")
    dates = [channel.findtext("lastBuildDate"), channel.findtext("pubDate")]
    guids = []
    for number, item in enumerate(channel.findall("item"), 1):
        where = f"item {number}"
        if not (item.findtext("title") or item.findtext("description")):
            found.append(f"MissingElement: {where} title or description")
        if item.find("link") is not None:
            found.append(_url_problem(f"{where} link", item.findtext("link")))
        guid = item.find("guid")
        if guid is not None:
            guids.append(guid.text)
            if guid.get("isPermaLink", "true") == "true" and _url_problem("", guid.text):
                found.append(f"InvalidHttpGUID: {where} {guid.text!r} is not a permalink")
        dates.append(item.findtext("pubDate"))
        for name in ("description", CONTENT):
            found += _html_problems(where, item.findtext(name) or "")
    for stamp in filter(None, dates):
        if not _RFC822.match(stamp):
            found.append(f"InvalidRFC2822Date: {stamp!r}")
        else:
            parsedate_to_datetime(stamp)
    found += [f"DuplicateItem guid: {g}" for g in _repeated(guids)]
    return [problem for problem in found if problem]


def _one_each(element: etree._Element, where: str, names: tuple[str, ...]) -> list[str]:
    return [
        f"MissingElement or Duplicate: {where} has {count} {name}"
        for name in names
        if (count := len(element.findall(f"{ATOM}{name}"))) != 1
    ]


def _url_problem(where: str, url: str | None) -> str:
    parts = urlsplit(url or "")
    if parts.scheme not in ("http", "https", "urn") or not (parts.netloc or parts.scheme == "urn"):
        return f"ContainsRelRef or InvalidFullLink: {where} {url!r}"
    if any(ch.isspace() for ch in url or ""):
        return f"InvalidFullLink: {where} {url!r} has a space"
    return ""


def _html_problems(where: str, html: str) -> list[str]:
    if "<" not in html:
        return []
    try:
        tree = lxml.html.fragment_fromstring(html, create_parent="div")
    except etree.ParserError as exc:
        return [f"NotHtml: {where}: {exc}"]
    found = []
    for element in tree.iter():
        if not isinstance(element.tag, str):
            continue
        if element.tag in _DANGEROUS:
            found.append(f"SecurityRisk: {where} has <{element.tag}>")
        for name, value in element.attrib.items():
            if name.startswith("on") or value.strip().lower().startswith(("javascript:", "data:")):
                found.append(f"SecurityRisk: {where} <{element.tag} {name}={value[:40]!r}>")
            if name in ("href", "src"):
                found.append(_url_problem(f"{where} <{element.tag} {name}>", value))
    return [problem for problem in found if problem]


def _repeated(values: list[str | None]) -> list[str]:
    seen: set[str | None] = set()
    return [str(v) for v in values if v in seen or seen.add(v)]  # type: ignore[func-returns-value]

