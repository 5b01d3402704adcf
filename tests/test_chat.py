"""Chat messages of a digest (digest.channels.chat): golden payloads for the sample digest,
hostile paper text that never becomes markup or a mention, and each service's limits."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from digest.channels import chat
from digest.models import Digest
from tests.digests import HOSTILE, assert_golden, paper, sample_digest, scored

FULL = "https://digest.example.org/feeds/profiles/me.atom"
Builder = Callable[..., dict[str, Any]]
BUILDERS: dict[str, Builder] = {
    "slack": chat.slack_payload,
    "discord": chat.discord_payload,
    "matrix": chat.matrix_payload,
    "webhook": chat.webhook_payload,
}

# Paper text that tries every chat's mentions and markup.
EVIL = paper(
    "2611.06666",
    "@everyone @here @channel @room :smile: <!channel> <!everyone> <!here> <@U123> <#C999> <@&42> "
    "<!subteam^S1> **bold** __under__ ||spoiler|| `code` [click](https://evil.example/x) "
    "<https://evil.example|click> <a href=\"https://evil.example\">x</a> & &amp;",
    arxiv_id="2611.06666",
    abstract="# Heading\n- list @everyone <b>bold</b> https://evil.example/y <!here>",
    authors=("@here", "<@U999>", "[Eve](https://evil.example)"),
    code_url="https://evil.example/@everyone",
)


def hostile_digest(count: int = 2) -> Digest:
    items = [
        scored(HOSTILE, 5.0, keywords=("<!channel>",), similar_to="@everyone <b>x</b>"),
        scored(
            EVIL,
            4.0,
            keywords=("@here", "**x**"),
            authors=("<@U999>",),
            similar_to="[x](https://evil.example) <!everyone> @room",
        ),
    ]
    for n in range(len(items), count):
        base = HOSTILE if n % 2 else EVIL
        items.append(scored(paper(f"2611.{n:05d}", base.title, arxiv_id=f"2611.{n:05d}",
                                  abstract=base.abstract, authors=base.authors), 3.0 - n / 1000,
                            keywords=("@everyone",), similar_to=base.title))
    return sample_digest(items=tuple(items))


def strings(value: object) -> Iterator[str]:
    """Every string in a JSON value, keys too."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def dumped(payload: dict[str, Any]) -> str:
    return json.dumps(payload, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n"


@pytest.mark.parametrize("name", ["slack", "discord", "matrix", "webhook"])
def test_the_sample_digest_as_each_chat_takes_it(name: str) -> None:
    payload = BUILDERS[name](sample_digest(), FULL)
    assert_golden(f"chat-{name}.json", dumped(payload))


MENTIONS = re.compile(r"@(everyone|here|channel|room)\b")
# A link's target is no text a chat reads mentions in (and "@" is legal in a URL's path).
LINK_TARGET = re.compile(r"https://[^\s|<>\"()\]]+")


@pytest.mark.parametrize("name", ["slack", "discord", "matrix", "webhook"])
@pytest.mark.parametrize("count", [2, 200])
def test_hostile_text_mentions_no_one_in_any_payload(name: str, count: int) -> None:
    payload = BUILDERS[name](hostile_digest(count), FULL)
    text = dumped(payload)
    assert json.loads(text) == payload
    for value in strings(payload):
        assert not MENTIONS.search(LINK_TARGET.sub("", value)), value[:200]
        assert "\x00" not in value and "\u202e" not in value and "\r" not in value
    assert "@\u200beveryone" in text  # what the paper said, defused, not dropped


def test_slack_never_writes_a_link_mention_or_tag_from_paper_text() -> None:
    payload = chat.slack_payload(hostile_digest(), FULL)
    for value in strings(payload):
        # Every "<" opens one of our links: <https://...|label>, its label without < or >.
        for match in re.finditer(r"<[^>]*>?", value):
            assert re.fullmatch(r"<https://[^|<> ]+\|[^<>]*>", match.group()), match.group()
            assert "evil.example" not in match.group().split("|")[0] or "@" in match.group()
    sections = [b["text"]["text"] for b in payload["blocks"] if b["type"] == "section"]
    assert "&lt;!channel&gt; &lt;!everyone&gt; &lt;!here&gt; &lt;@\u200bU123&gt;" in sections[1]
    assert "&amp;amp;" in sections[1]  # an "&amp;" in a title is shown as written
    assert all(
        element["verbatim"] for block in payload["blocks"] for element in block.get("elements", ())
    )


def test_discord_escapes_markdown_and_allows_no_mention() -> None:
    payload = chat.discord_payload(hostile_digest(), FULL)
    assert payload["allowed_mentions"] == {"parse": []}
    evil = payload["embeds"][1]
    assert evil["title"].startswith("2. @\u200beveryone @\u200bhere")
    for needle in (r"\*\*bold\*\*", r"\_\_under\_\_", r"\|\|spoiler\|\|", r"\`code\`",
                   r"\[click\]\(https\://evil.example/x\)", "\\<@\u200bU123\\>", r"\:smile:"):
        assert needle in evil["title"], needle
    assert evil["description"].startswith("@\u200bhere, \\<@\u200bU999\\>, \\[Eve\\]")
    assert "\\# Heading - list" in evil["description"]  # one line: no heading, no list
    # The only links are the paper's own, checked, with no "(" or ")" to end them early.
    for value in strings(payload):
        for target in re.findall(r"(?<!\\)\]\(([^)]*)\)", value):
            assert target.startswith("https://") and "(" not in target


ALLOWED_TAGS = {"h4", "p", "ol", "li", "a", "b", "br", "em"}


def test_matrix_html_is_escaped_and_its_only_tags_are_ours() -> None:
    content = chat.matrix_payload(hostile_digest(), FULL)
    assert content["m.mentions"] == {} and content["msgtype"] == "m.notice"
    assert content["format"] == "org.matrix.custom.html"
    for tag, attributes in re.findall(r"</?(\w+)([^>]*)>", content["formatted_body"]):
        assert tag in ALLOWED_TAGS
        assert attributes == "" or re.fullmatch(r' href="https://[^"<>]+"', attributes), attributes
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in content["formatted_body"]
    assert "&lt;a href=&quot;https://evil.example&quot;&gt;" in content["formatted_body"]
    assert "<script>" in content["body"]  # plain text is plain: clients show it as written


def test_the_generic_webhook_carries_data_not_markup() -> None:
    payload = chat.webhook_payload(hostile_digest(), FULL)
    (first, second) = payload["items"]
    assert first["title"].startswith("<script>alert(1)</script> Bcc: victim@\u200bexample.org Long")
    assert len(first["title"].replace("\u200b", "")) <= chat.TITLE_CHARS
    assert first["title"].endswith("…")
    assert first["links"] == [{"label": "PDF", "url": "https://arxiv.org/pdf/2611.09999"}]
    assert second["authors"] == ["@\u200bhere", "<@\u200bU999>", "[Eve](https://evil.example)"]
    assert payload["id"] == "me/2026-11-23" and payload["more"] == 0


def big_digest(count: int = 200) -> Digest:
    """Plain papers with long but honest fields: what a busy day looks like."""
    items = []
    for n in range(count):
        item = paper(
            f"2611.{n:05d}",
            f"Paper {n}: " + "a rather long and descriptive title " * 6,
            arxiv_id=f"2611.{n:05d}",
            abstract="We study things. " * 40,
            authors=tuple(f"Author {k}" for k in range(30)),
            code_url=f"https://github.com/example/p{n}",
        )
        items.append(scored(item, 100.0 - n, keywords=("things",), similar_to="x " * 300))
    return sample_digest(items=tuple(items))


@pytest.mark.parametrize("digest", [big_digest(), hostile_digest(200)], ids=["busy", "hostile"])
@pytest.mark.parametrize("max_items", [chat.MAX_ITEMS, 1000])
def test_slack_keeps_to_its_limits_and_links_the_rest(digest: Digest, max_items: int) -> None:
    payload = chat.slack_payload(digest, FULL, max_items=max_items)
    blocks = payload["blocks"]
    assert len(blocks) <= chat.SLACK_MAX_BLOCKS
    assert len(blocks[0]["text"]["text"]) <= chat.SLACK_MAX_HEADER
    texts = [text for block in blocks for text in chat._texts(block)]
    assert all(len(text) <= chat.SLACK_MAX_TEXT for text in texts)
    assert sum(map(len, texts)) <= chat.SLACK_MAX_CHARS
    shown = sum(1 for block in blocks[2:-1] if block["type"] == "section")
    assert 0 < shown <= max_items
    assert blocks[-1]["text"]["text"] == f"… and {200 - shown} more: <{FULL}|the full digest>"


@pytest.mark.parametrize("digest", [big_digest(), hostile_digest(200)], ids=["busy", "hostile"])
def test_discord_keeps_to_its_limits_and_links_the_rest(digest: Digest) -> None:
    payload = chat.discord_payload(digest, FULL)
    embeds = payload["embeds"]
    assert len(embeds) <= chat.DISCORD_MAX_EMBEDS
    assert sum(map(chat._embed_chars, embeds)) <= chat.DISCORD_MAX_CHARS
    assert len(payload["content"]) <= chat.DISCORD_MAX_CONTENT
    for embed in embeds:
        assert len(embed.get("title", "")) <= chat.DISCORD_MAX_TITLE
        assert len(embed.get("description", "")) <= chat.DISCORD_MAX_DESCRIPTION
        assert all(len(field["value"]) <= chat.DISCORD_MAX_FIELD for field in embed.get("fields", ()))
    shown = len(embeds) - 1
    assert shown > 0
    assert embeds[-1]["description"] == f"… and {200 - shown} more: [the full digest]({FULL})"


@pytest.mark.parametrize("digest", [big_digest(), hostile_digest(200)], ids=["busy", "hostile"])
@pytest.mark.parametrize("max_items", [chat.MAX_ITEMS, 1000])
def test_matrix_keeps_below_the_event_size_and_links_the_rest(
    digest: Digest, max_items: int
) -> None:
    content = chat.matrix_payload(digest, FULL, max_items=max_items)
    assert len(json.dumps(content, ensure_ascii=False).encode()) <= chat.MATRIX_MAX_BYTES
    shown = content["formatted_body"].count("<li>")
    assert 0 < shown <= max_items
    assert content["body"].endswith(f"… and {200 - shown} more: {FULL}")
    assert content["formatted_body"].endswith(
        f'<p>… and {200 - shown} more: <a href="{FULL}">the full digest</a></p>\n'
    )


def test_the_generic_webhook_sends_everything_unless_told() -> None:
    assert len(chat.webhook_payload(big_digest(), FULL)["items"]) == 200
    capped = chat.webhook_payload(big_digest(), FULL, max_items=10)
    assert (len(capped["items"]), capped["total"], capped["more"]) == (10, 200, 190)


def test_a_digest_that_fits_has_no_more_line_and_an_empty_one_says_so() -> None:
    for name, build in BUILDERS.items():
        assert "more:" not in dumped(build(sample_digest(), FULL)), name
    empty = sample_digest(items=())
    assert chat.slack_payload(empty, FULL)["blocks"][0]["text"]["text"] == "Nothing new for you"
    assert chat.discord_payload(empty, FULL)["embeds"] == []
    assert "<ol>" not in chat.matrix_payload(empty, FULL)["formatted_body"]
    assert chat.webhook_payload(empty, FULL)["items"] == []


def test_a_full_url_that_is_not_http_is_not_linked() -> None:
    payload = chat.slack_payload(big_digest(), "javascript:alert(1)")
    assert payload["blocks"][-1]["text"]["text"].endswith("more: the full digest")
    assert "javascript" not in dumped(chat.discord_payload(big_digest(), "javascript:alert(1)"))


def test_matrix_sends_to_the_room_with_one_transaction_id_per_digest() -> None:
    url = chat.matrix_send_url(
        "https://matrix.example.org/", "!abc:example.org", chat.matrix_txn_id("lab", sample_digest())
    )
    assert url == (
        "https://matrix.example.org/_matrix/client/v3/rooms/%21abc%3Aexample.org"
        "/send/m.room.message/paperdigest-lab.me-2026-11-23"
    )
