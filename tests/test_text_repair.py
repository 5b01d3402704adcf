"""digest.text.repair: mojibake undone, and nothing else changed."""

import pytest

from digest.text import one_line, repair


@pytest.mark.parametrize(
    ("garbled", "meant"),
    [
        ("PÃ¡l", "Pál"),  # issue 14: UTF-8 read as ISO-8859-1
        ("GarcÃ\u00ada", "García"),  # the soft hyphen of "í" read as Latin-1
        ("JosÃ© RaÃºl Romero", "José Raúl Romero"),  # as stored in a real API capture
        ("donâ€™t", "don’t"),  # read as windows-1252
        ("â€œquotedâ€\x9d", "“quoted”"),
        ("ÃƒÂ©", "é"),  # twice
    ],
)
def test_mojibake_is_repaired(garbled: str, meant: str) -> None:
    assert repair(garbled) == meant


@pytest.mark.parametrize(
    "text",
    [
        "A title with “curly quotes” and ’apostrophes’",
        "ﬁne ligatures and ＦＵＬＬ width",
        "Ak\u0131n G\u00fcnay, Mehmet Batuhan Özdaş, Murat Osmanoğlu",
        "Schrödinger, Fréchet, Ω-limits, $2.6<\\eta<4$",
        "&amp; &lt;b&gt; stay as written",
        "e\u0301 stays decomposed (one_line normalises)",
        "São Paulo, Conceição, Ângelo, Ålesund",
        "ASCII only",
        "",
    ],
)
def test_text_that_is_not_mojibake_is_left_alone(text: str) -> None:
    assert repair(text) == text


def test_repair_leaves_white_space_and_controls_to_one_line() -> None:
    assert repair("PÃ¡l\n\tErdÅ‘s") == "Pál\n\tErdős"
    assert one_line(repair("  PÃ¡l \u202e Erdős ")) == "Pál Erdős"
