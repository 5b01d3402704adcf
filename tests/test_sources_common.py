"""The helpers every source parser shares: arXiv ids in links, JSON and text from untrusted bytes."""

import pytest

from digest.errors import ParseError
from digest.sources.common import (
    api_error,
    arxiv_id_from_link,
    control_share,
    decode_text,
    load_json,
)


@pytest.mark.parametrize(
    ("link", "expected"),
    [
        ("https://arxiv.org/abs/2604.26934", ("2604.26934", None)),
        ("https://www.arxiv.org/abs/2604.26934v2", ("2604.26934", 2)),
        ("http://export.arxiv.org/abs/2604.26934v3", ("2604.26934", 3)),
        ("https://arxiv.org/pdf/2604.26934v2", ("2604.26934", 2)),
        ("https://arxiv.org/pdf/2604.26934v2.pdf", ("2604.26934", 2)),
        ("https://arxiv.org/pdf/2604.26934.pdf", ("2604.26934", None)),
        ("https://arxiv.org/html/2604.26934v1", ("2604.26934", 1)),
        ("https://arxiv.org/abs/hep-th/9901001v1", ("hep-th/9901001", 1)),
        ("https://arxiv.org/abs/math.AG/0601001", ("math.AG/0601001", None)),
        ("https://arxiv.org/abs/2604.26934/", ("2604.26934", None)),
        ("https://arxiv.org/abs/2604.26934#comments", ("2604.26934", None)),
        ("oai:arXiv.org:2508.13426v1", ("2508.13426", 1)),
        ("https://ar5iv.labs.arxiv.org/html/2604.26934", ("2604.26934", None)),
        ("https://ar5iv.org/abs/2604.26934", ("2604.26934", None)),
        ("https://ar5iv.org/html/2604.26934", ("2604.26934", None)),
        ("https://www.alphaxiv.org/abs/2604.26934", ("2604.26934", None)),
        ("https://alphaxiv.org/overview/2604.26934v1", ("2604.26934", 1)),
        ("https://huggingface.co/papers/2604.26934", ("2604.26934", None)),
        ("https://huggingface.co/papers/2604.26934?utm_source=digest", ("2604.26934", None)),
        ("https://hf.co/papers/2604.26934", ("2604.26934", None)),
        ("https://tldr.takara.ai/p/2604.26934", ("2604.26934", None)),
        ("https://arxiv-sanity-lite.com/?rank=pid&pid=2604.26934", ("2604.26934", None)),
        ("http://www.arxiv-sanity.com/2604.26934v2", ("2604.26934", 2)),
        ("https://api.semanticscholar.org/arXiv:2604.26934", ("2604.26934", None)),
        ("https://api.semanticscholar.org/arxiv:2604.26934", ("2604.26934", None)),
        ("https://api.semanticscholar.org/graph/v1/paper/arXiv:2604.26934", ("2604.26934", None)),
        ("https://www.semanticscholar.org/arxiv/2604.26934", ("2604.26934", None)),
        ("https://doi.org/10.48550/arXiv.2604.26934", ("2604.26934", None)),
        ("10.48550/arXiv.2604.26934", ("2604.26934", None)),
    ],
)
def test_an_arxiv_id_is_read_from_arxiv_and_its_mirrors(
    link: str, expected: tuple[str, int | None]
) -> None:
    assert arxiv_id_from_link(link) == expected


@pytest.mark.parametrize(
    "link",
    [
        "https://doi.org/10.1234/2604.26934",
        "10.1234/2604.26934",
        "https://doi.org/10.48550/zenodo.2604.26934",
        "https://example.org/abs/2604.26934",
        "https://blog.example.org/posts/2604.26934",
        "https://notarxiv.org/abs/2604.26934",
        "https://arxiv.org.example.com/abs/2604.26934",
        "https://arxiv.org/list/cs.AI/2604.26934",
        "https://arxiv.org/abs/2604.269345",
        "https://arxiv.org/abs/2604.26934-extra",
        "https://paperswithcode.com/paper/attention-is-all-you-need",
        "https://scholar.archive.org/work/2604.26934",
        "javascript:alert('https://arxiv.org/abs/2604.26934')",
        "ftp://arxiv.org/abs/2604.26934",
        "https://[broken/abs/2604.26934",
        "",
        None,
    ],
)
def test_digits_elsewhere_are_no_arxiv_id(link: str | None) -> None:
    assert arxiv_id_from_link(link) == (None, None)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "expected X, got an empty body"),
        (b"<html>", 'expected X, got an HTML/XML page (starts with "<html>")'),
        (b'{"a": [1, 2', "expected X, got JSON cut off after 11 characters (it ends mid-value)"),
        (b'{"a": tr', "expected X, got JSON cut off after 8 characters (it ends mid-value)"),
        (b'{"a": -1.5e', "expected X, got JSON cut off after 11 characters (it ends mid-value)"),
        (b'{"a": "b', "expected X, got JSON cut off after 8 characters (it ends mid-value)"),
        (b'{"a": 1}}', "expected X, got malformed JSON at line 1 column 9 (Extra data)"),
        (b'{"a": nope}', "expected X, got malformed JSON at line 1 column 7 (Expecting value)"),
        (b"[" * 200_000, "expected X, got JSON nested too deep to read"),
        (b"[" + b"7" * 5000 + b"]", "expected X, got JSON holding a number of over 4,300 digits"),
    ],
)
def test_load_json_says_in_one_line_what_came_instead(body: bytes, message: str) -> None:
    with pytest.raises(ParseError) as raised:
        load_json(body, "X")
    assert str(raised.value) == message


def test_load_json_reads_numbers_up_to_the_limit() -> None:
    assert load_json(b"[" + b"7" * 4300 + b"]", "X") == [int("7" * 4300)]


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ({"error": "Invalid date"}, "Invalid date"),
        ({"error": {"message": "Rate limit reached", "code": 429}}, "Rate limit reached"),
        ({"errors": [{"detail": "Not found"}]}, "Not found"),
        ({"message": "Bad\nrequest"}, "Bad request"),
        ({"detail": "x" * 300}, "x" * 199 + "…"),
        ({"error": ""}, None),
        ({"collection": []}, None),
        (["error"], None),
        ("error", None),
    ],
)
def test_api_error_finds_the_apis_own_words(value: object, error: str | None) -> None:
    assert api_error(value) == error


def test_decode_text_reads_byte_order_marks_and_falls_back_to_cp1252() -> None:
    assert decode_text("\ufeffÉté".encode()) == "Été"
    assert decode_text("Été".encode("utf-16")) == "Été"
    assert decode_text(b"\xfe\xff" + "Été".encode("utf-16-be")) == "Été"
    assert decode_text("Été – “quoted”".encode("cp1252")) == "Été – “quoted”"


def test_control_share_tells_binary_from_text() -> None:
    assert control_share(b"") is None
    assert control_share(b"A title\twith a tab\r\n\x0c") is None
    assert control_share(b"One stray \x07 " + b"in a long enough line of text, " * 3) is None
    assert control_share(bytes(range(256))) == 11
    assert control_share("text".encode("utf-16")) is None, "UTF-16 with its byte order mark"
    assert control_share("text".encode("utf-16-le")) == 50
