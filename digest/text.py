"""The one place untrusted text is cleaned and URLs are checked, for every step.

Scraped titles, authors and links, form fields, uploaded file names, server replies in error
messages: all of it passes through `one_line` before it is stored, shown or logged, and every
link that reaches an email, a feed or a page passes `safe_url` (or is built by `doi_url` from a
checked DOI). Text that was decoded with the wrong charset somewhere upstream ("PÃ¡l") is
repaired by `repair` first.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Callable
from urllib.parse import quote, urlsplit

# White space of every kind (tabs, line and paragraph separators, NEL) becomes one space.
_SPACE = re.compile(r"[\s\u2028\u2029\x85]+")
# Dropped: C0/C1 controls, DEL, lone surrogates (broken UTF-8 read with surrogateescape),
# private-use characters, the byte order mark, zero-width space, and the bidi embeddings,
# overrides and isolates that can reorder what a reader sees. Joiners (ZWJ, ZWNJ), which some
# scripts and emoji need, and direction marks are kept.
_DROPPED = re.compile(
    "[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f\ud800-\udfff\ue000-\uf8ff\ufeff\u200b"
    "\u202a-\u202e\u2066-\u2069]+"
)
# A DOI: "10." + registrant + "/" + suffix (Crossref's pattern, without white space or markup).
_DOI = re.compile(r"^10\.\d{4,9}/[^\s\"<>\\^`{|}]+$")


def one_line(value: object, limit: int | None = None) -> str:
    """Untrusted text as one plain line: NFC, the characters above dropped, white space folded
    to single spaces; cut to `limit` characters with "…" when given."""
    if value is None:
        return ""
    text = unicodedata.normalize("NFC", str(value))
    text = _SPACE.sub(" ", _DROPPED.sub("", text)).strip()
    if limit is not None and len(text) > limit:
        return text[: max(0, limit - 1)].rstrip() + "…"
    return text


def repair(text: str) -> str:
    """Mojibake undone, nothing else: UTF-8 that was decoded as Latin-1 or Windows-1252 on its
    way ("PÃ¡l" -> "Pál", "GarcÃ­a" -> "García", "donâ€™t" -> "don’t"), by ftfy, which changes
    text only where its statistics say the bytes were decoded wrongly.

    ftfy's other fixes are off: quotes stay curly, ligatures and full-width letters stay as the
    source wrote them, entities stay as they are (a title about "&amp;" keeps it), and white
    space, controls and normalisation are `one_line`'s. ASCII text is returned as it is.
    """
    if text.isascii():
        return text
    return _mojibake_fixer()(text)


@functools.cache
def _mojibake_fixer() -> Callable[[str], str]:
    import ftfy  # on first use: `digest papers` and the web never need it

    config = ftfy.TextFixerConfig(
        unescape_html=False,
        remove_terminal_escapes=False,
        fix_latin_ligatures=False,
        fix_character_width=False,
        uncurl_quotes=False,
        fix_line_breaks=False,
        remove_control_chars=False,
        normalization=None,
        explain=False,
    )
    return functools.partial(ftfy.fix_text, config=config)


def optional_line(value: object) -> str | None:
    """one_line, or None for nothing."""
    return one_line(value) or None


def safe_url(value: object, base: str | None = None) -> str | None:
    """An absolute http(s) URL, or None: no `javascript:`, `data:` or other schemes, no white
    space, control characters, quotes or angle brackets. With `base` (the page's site, for a
    parser), a path ("/abs/1") or a scheme-relative URL ("//host/x") is made absolute first;
    without it they are refused."""
    if value is None:
        return None
    raw = str(value).strip()
    if not raw or _DROPPED.search(raw) or any(ch.isspace() for ch in raw):
        return None
    if base and raw.startswith("//"):  # on a page fetched over https
        raw = "https:" + raw
    elif base and raw.startswith("/"):
        raw = base.rstrip("/") + raw
    if any(ch in raw for ch in "<>\"'\\`"):
        return None
    try:
        parts = urlsplit(raw)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    return raw


def doi(value: object) -> str | None:
    """A DOI as scraped ("10.1101/2024.01.01.123456", "doi:10...", "https://doi.org/10...")
    in its bare form, or None when it is not one. (DOIs are case-insensitive: digest.identify
    lower-cases them for keys; the form shown is the source's.)"""
    text = one_line(value)
    for prefix in ("https://doi.org/", "http://doi.org/", "https://dx.doi.org/", "http://dx.doi.org/",
                   "info:doi/", "doi:"):
        if text.lower().startswith(prefix):
            text = text[len(prefix):].strip()
            break
    return text if _DOI.match(text) else None


def doi_url(value: object) -> str | None:
    """https://doi.org/<doi> for a valid DOI, its special characters escaped; else None."""
    found = doi(value)
    return f"https://doi.org/{quote(found, safe='/:;()._-')}" if found else None
