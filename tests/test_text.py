"""digest.text: the one cleaning of untrusted text and the one URL check, used by every step."""

from __future__ import annotations

import json

import pytest

from digest.models import Origin
from digest.sources import biorxiv
from digest.text import doi, doi_url, one_line, optional_line, safe_url


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  plain\ttext\r\nover lines  ", "plain text over lines"),
        ("NUL\x00 and BEL\x07 go", "NUL and BEL go"),
        ("line\u2028and\u2029paragraph\x85separators", "line and paragraph separators"),
        ("right-to-left \u202eevil\u202c override", "right-to-left evil override"),
        ("isolates \u2066x\u2069 and a \ufeffBOM and zero\u200bwidth", "isolates x and a BOM and zerowidth"),
        ("a lone surrogate \ud800 and private \ue000 use", "a lone surrogate and private use"),
        ("e\u0301", "\u00e9"),  # NFC
        ("ZWNJ in Persian: \u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645", "ZWNJ in Persian: \u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"),
        ("emoji \U0001f469\u200d\U0001f52c keep their joiner", "emoji \U0001f469\u200d\U0001f52c keep their joiner"),
        (None, ""),
        (42, "42"),
    ],
)
def test_one_line_makes_untrusted_text_one_plain_line(raw: object, expected: str) -> None:
    assert one_line(raw) == expected


def test_one_line_cuts_to_a_limit_with_an_ellipsis() -> None:
    assert one_line("a" * 10, limit=5) == "aaaa…"
    assert one_line("short", limit=5) == "short"
    assert optional_line(" \n ") is None and optional_line(" x ") == "x"


@pytest.mark.parametrize(
    ("raw", "base", "expected"),
    [
        ("https://arxiv.org/abs/1", None, "https://arxiv.org/abs/1"),
        ("HTTP://Example.org/x?a=1&b=2", None, "HTTP://Example.org/x?a=1&b=2"),
        ("/papers/2411.01234", "https://huggingface.co", "https://huggingface.co/papers/2411.01234"),
        ("//cdn.example/x.png", "https://huggingface.co", "https://cdn.example/x.png"),
        ("//cdn.example/x.png", None, None),  # without the page's site, no guessing
        ("/relative", None, None),
        ("javascript:alert(1)", None, None),
        (" JaVaScRiPt:alert(1)", None, None),
        ("data:text/html,hi", None, None),
        ("file:///etc/passwd", None, None),
        ("https:///no-host", None, None),
        ('https://ok.example/"><script>', None, None),
        ("https://ok.example/a b", None, None),
        ("https://ok.example/\nX: y", None, None),
        ("https://ok.example/\u202e", None, None),
        ("https://[::1", None, None),  # urlsplit refuses it
        ("", None, None),
        (None, None, None),
    ],
)
def test_safe_url_keeps_only_absolute_plain_http_links(
    raw: str | None, base: str | None, expected: str | None
) -> None:
    assert safe_url(raw, base) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("10.1101/2024.01.01.123456", "10.1101/2024.01.01.123456"),
        ("doi:10.1038/S41586-024-07000-1", "10.1038/S41586-024-07000-1"),
        ("https://doi.org/10.1101/029900", "10.1101/029900"),
        ("info:doi/10.1073/pnas.2401234121", "10.1073/pnas.2401234121"),
        ('10.1101/029900"><script>alert(1)</script>', None),
        ("10.1101/with space", None),
        ("11.1101/not-a-doi", None),
        ("", None),
    ],
)
def test_a_doi_is_checked_before_it_becomes_a_link(raw: str, expected: str | None) -> None:
    assert doi(raw) == expected
    assert doi_url(raw) == (f"https://doi.org/{expected}" if expected else None)


def test_a_hostile_biorxiv_doi_never_becomes_a_link() -> None:
    origin = Origin("biorxiv", "https://api.biorxiv.org/details/biorxiv/2026-11-20/2026-11-21")
    good = {"doi": "10.1101/2026.11.20.000001", "title": "Fine", "version": "1", "server": "biorxiv"}
    hostile = {**good, "doi": '10.1101/x"><script>alert(1)</script>', "title": "Hostile"}
    body = json.dumps({"messages": [{"status": "ok"}], "collection": [good, hostile]}).encode()
    records = biorxiv.parse(body, origin)
    assert [r.title for r in records] == ["Fine"]
    assert records[0].abs_url == "https://www.biorxiv.org/content/10.1101/2026.11.20.000001v1"
