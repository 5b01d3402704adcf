"""A digest as a team chat's message: Slack, Discord, Matrix and a generic JSON webhook. Pure.

Each builder turns one Digest into the one JSON body its service takes, in that service's own
format: Slack Block Kit (a header, a section per paper with a `<url|title>` link, a context line for
why it was chosen), Discord embeds (one per paper: title, link, authors, excerpt, a "Why" field),
a Matrix `m.room.message` (a plain `body` and an `org.matrix.custom.html` `formatted_body`), and a
generic JSON document for any other receiver. The words are compose's, as in the email and feeds.

One digest is one message, never several: a delivery is one request the ledger can record as sent
or not, and a split message that fails halfway would be sent twice on a retry. A digest too long for
the service's limits (Slack: 50 blocks, 3000 characters a text; Discord: 10 embeds, 6000 characters
in all, 256 a title, 4096 a description, 1024 a field; Matrix: a 64 KiB event) is trimmed to the
papers that fit, best first, and ends with "… and N more: <the full digest>" linking `full_url`
(the profile's feed or web page). `max_items` caps a message at what a chat reader reads.

Everything scraped is untrusted (digest.text.one_line first, then the service's escaping):
- Slack: &, < and > escaped, so no `<!channel>`, `<!here>`, `<@U123>` or link can be written;
  every mrkdwn text is `verbatim` (no auto-linking of names).
- Discord: markdown escaped with backslashes, and `allowed_mentions: {"parse": []}`.
- Matrix: HTML escaped; `m.mentions: {}` says the message mentions no one.
- In every one, a zero-width space follows each "@" of scraped text, so `@everyone`, `@here`,
  `@channel` and `@room` are never written (one_line drops zero-width spaces, so none is faked).

Sending (ChatChannel, at the end): one ledger row "<kind>:<name>" per digest of a profile that
names the chat (`[[profile]] chat = ["lab"]`, `[chat.lab]` in config.toml), posted through the
run's one HTTP client (digest.fetch.Fetcher.post: its timeouts, politeness and Retry-After). How
a post's outcome maps onto the ledger:
- 2xx: sent.
- it provably did not arrive (refused, a connect timeout, 429 or 503, after one retry):
  UnreachableError, so the row waits for the next run and the circuit breaker counts it.
- 401, 403, 404, 410: the webhook or the token is wrong or gone; every message would fail alike, so
  the chat stops for this run (a setup problem, shown by `digest status`).
- another 4xx (400, 413, ...): this message was refused; not sent again.
- a timeout after the request went, a dropped connection, 500/502/504: uncertain, as SMTP's are.
  Matrix alone can do better: its PUT carries a transaction id that the server answers once, so a
  PUT whose connection dropped or that got a 5xx is repeated at once, and only a second uncertain
  answer is left 'uncertain' (a read timeout is not repeated: the homeserver hangs, and a second
  wait would double what it costs the run).
The webhook URL and the Matrix token are secrets: read when the first message goes, never logged
(errors show the scheme and host only).
"""

from __future__ import annotations

import html
import json
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from digest import compose, feeds
from digest.config import ChatConfig, Config, ProfileConfig, chat_secret
from digest.deliver import DeliveryReport, deliver_rows
from digest.errors import (
    ConfigError,
    DeliveryError,
    FetchError,
    PermanentDeliveryError,
    UncertainDeliveryError,
    UnreachableError,
)
from digest.fetch import Fetcher, RejectedPostError, UncertainPostError
from digest.models import Delivery, Digest
from digest.store import Store
from digest.text import one_line, safe_url

if TYPE_CHECKING:  # the package's __init__ imports this module
    from digest.channels import RunContext

# What chat readers read in one message; more goes behind the "… and N more" link.
MAX_ITEMS = 25

# Raw lengths (before a service's escaping) of what a paper shows.
TITLE_CHARS = 250
AUTHORS_CHARS = 300
REASONS_CHARS = 500
URL_CHARS = 1000  # a paper's own link; a longer one is left out (a title search is shortened)
LINK_URL_CHARS = 300  # PDF, code, project, discussion; a longer one is left out

SLACK_MAX_BLOCKS = 50
SLACK_MAX_TEXT = 3000  # a section's or a context element's text
SLACK_MAX_HEADER = 150  # a header block's plain text
SLACK_MAX_CHARS = 40_000  # the whole message's text, as Slack truncates a message's text

DISCORD_MAX_EMBEDS = 10
DISCORD_MAX_CHARS = 6000  # every embed's title, description, field names and values together
DISCORD_MAX_TITLE = 256
DISCORD_MAX_DESCRIPTION = 4096
DISCORD_MAX_FIELD = 1024
DISCORD_MAX_CONTENT = 2000
DISCORD_COLOUR = 0xB31B1B

# A Matrix event may be 64 KiB as the server signs and stores it; the envelope (ids, hashes,
# signatures, auth events) takes some of it, so the content keeps well below.
MATRIX_MAX_BYTES = 48_000

_ZWSP = "\u200b"

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ChatItem:
    """What a chat message shows of one paper, as plain one-line text (not yet escaped)."""

    rank: int
    key: str
    title: str
    url: str | None
    authors: str
    excerpt: str
    reasons: str
    links: tuple[compose.Link, ...]
    score: float


def chat_items(digest: Digest) -> list[ChatItem]:
    """The digest's papers, best first, with compose's words, each part one line and cut."""
    found = []
    for rank, item in enumerate(digest.items, start=1):
        paper = item.paper
        found.append(
            ChatItem(
                rank=rank,
                key=one_line(paper.key, 200),
                title=one_line(compose.display_title(paper.title), TITLE_CHARS) or "(untitled)",
                url=_paper_url(paper.title, compose.paper_url(paper)),
                authors=one_line(compose.author_line(paper, item.reasons), AUTHORS_CHARS),
                excerpt=compose.excerpt(paper),
                reasons=one_line(compose.reasons_line(item.reasons), REASONS_CHARS),
                links=tuple(
                    link for link in compose.links(paper) if len(link.url) <= LINK_URL_CHARS
                ),
                score=item.score,
            )
        )
    return found


def headline(digest: Digest) -> str:
    """'3 new papers for you', or 'Nothing new for you'."""
    count = len(digest.items)
    return f"{compose.count(count, 'new paper')} for you" if count else "Nothing new for you"


def summary(digest: Digest) -> str:
    """'me · Monday, Nov 23 · chosen from 314 new papers from arxiv-lg, hf-daily', as the email's
    summary line with the profile's name before it, and the sources that could not be read."""
    sources = compose.source_names(digest)
    scanned = compose.count(digest.scanned, "new paper")
    from_where = f" from {', '.join(sources)}" if sources else ""
    chosen = f"chosen from {scanned}{from_where}" if digest.scanned else "no new papers"
    line = f"{digest.profile} · {compose.day_label(digest)} · {chosen}"
    failed = [note.source for note in digest.failed_sources]
    if failed:
        line += f" · could not read {', '.join(failed)}"
    return one_line(line, 1000)


# -- Slack ------------------------------------------------------------------------------------


def slack_payload(digest: Digest, full_url: str, *, max_items: int = MAX_ITEMS) -> dict[str, Any]:
    """A Slack incoming webhook's message: Block Kit, with `text` as the notification's line."""
    items = chat_items(digest)
    full = safe_url(full_url)
    head: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {
                "type": "plain_text",
                "text": _cut(headline(digest), SLACK_MAX_HEADER, _defuse),
                "emoji": False,
            },
        },
        {"type": "context", "elements": [_mrkdwn(_cut(summary(digest), 1000, _slack))]},
    ]
    papers = [_slack_blocks(item) for item in items]

    def more(left: int) -> dict[str, Any]:
        link = f"<{_slack_url(full)}|the full digest>" if full else "the full digest"
        return {"type": "section", "text": _mrkdwn(f"… and {left} more: {link}")}

    def cost(blocks: Sequence[dict[str, Any]]) -> tuple[int, int]:
        return len(blocks), sum(len(text) for block in blocks for text in _texts(block))

    room = (SLACK_MAX_BLOCKS - len(head), SLACK_MAX_CHARS - cost(head)[1])
    shown = _how_many([cost(blocks) for blocks in papers], lambda n: cost([more(n)]), room, max_items)
    blocks = head + [block for paper in papers[:shown] for block in paper]
    if shown < len(items):
        blocks.append(more(len(items) - shown))
    return {
        "text": _cut(compose.subject(digest), 500, _slack),
        "blocks": blocks,
        "unfurl_links": False,
        "unfurl_media": False,
    }


def _slack_blocks(item: ChatItem) -> list[dict[str, Any]]:
    title = _cut(f"{item.rank}. {item.title}", 600, _slack)
    head = f"*<{_slack_url(item.url)}|{title}>*" if item.url else f"*{title}*"
    lines = [head, _cut(item.authors, 600, _slack)]
    excerpt = _cut(item.excerpt, 1200, _slack)
    links = " · ".join(f"<{_slack_url(link.url)}|{link.label}>" for link in item.links)
    # The title and authors always fit; the excerpt and the links when there is room.
    for extra in (excerpt, links):
        if extra and len("\n".join([*lines, extra])) <= SLACK_MAX_TEXT:
            lines.append(extra)
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": _mrkdwn("\n".join(line for line in lines if line))}
    ]
    if item.reasons:
        why = _cut(f"Why: {item.reasons}", SLACK_MAX_TEXT, _slack)
        blocks.append({"type": "context", "elements": [_mrkdwn(why)]})
    return blocks


def _mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text, "verbatim": True}


def _slack(text: str) -> str:
    """Text for Slack mrkdwn: its three control characters escaped, its "@" defused."""
    return _defuse(text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;"))


def _slack_url(url: str | None) -> str:
    """A checked http(s) URL inside `<url|label>`: "|" would end it, "&" is written escaped."""
    return (url or "").replace("&", "&amp;").replace("|", "%7C")


def _texts(block: dict[str, Any]) -> list[str]:
    texts = [block["text"]["text"]] if "text" in block else []
    return texts + [element["text"] for element in block.get("elements", ())]


# -- Discord ----------------------------------------------------------------------------------


def discord_payload(
    digest: Digest, full_url: str, *, max_items: int = MAX_ITEMS
) -> dict[str, Any]:
    """A Discord webhook's message: a line of content and an embed per paper, mentioning no one."""
    items = chat_items(digest)
    full = safe_url(full_url)
    embeds = [_discord_embed(item) for item in items]

    def more(left: int) -> dict[str, Any]:
        link = f"[the full digest]({_discord_url(full)})" if full else "the full digest"
        return {"description": f"… and {left} more: {link}", "color": DISCORD_COLOUR}

    def cost(embed: dict[str, Any]) -> tuple[int, int]:
        return 1, _embed_chars(embed)

    room = (DISCORD_MAX_EMBEDS, DISCORD_MAX_CHARS)
    shown = _how_many([cost(e) for e in embeds], lambda n: cost(more(n)), room, max_items)
    chosen = embeds[:shown]
    if shown < len(items):
        chosen.append(more(len(items) - shown))
    content = f"**{_md(headline(digest))}**\n{_cut(summary(digest), 1900, _md)}"
    return {
        "content": content,  # within DISCORD_MAX_CONTENT: a headline and a cut line
        "embeds": chosen,
        "allowed_mentions": {"parse": []},
    }


def _discord_embed(item: ChatItem) -> dict[str, Any]:
    rank = f"{item.rank}. "
    embed: dict[str, Any] = {
        "title": rank + _cut(item.title, DISCORD_MAX_TITLE - len(rank), _md),
        "color": DISCORD_COLOUR,
    }
    if item.url:
        embed["url"] = item.url
    links = " · ".join(f"[{link.label}]({_discord_url(link.url)})" for link in item.links)
    parts = [_cut(item.authors, 600, _md), _cut(item.excerpt, 1200, _md), links]
    description = "\n".join(part for part in parts if part)
    if description:
        embed["description"] = description  # at most 600 + 1200 + 4 links: within 4096
    if item.reasons:
        embed["fields"] = [
            {"name": "Why", "value": _cut(item.reasons, DISCORD_MAX_FIELD, _md), "inline": False}
        ]
    return embed


def _embed_chars(embed: dict[str, Any]) -> int:
    fields = embed.get("fields", ())
    return (
        len(embed.get("title", ""))
        + len(embed.get("description", ""))
        + sum(len(field["name"]) + len(field["value"]) for field in fields)
    )


# ":" when text follows it: an :emoji: or a bare link (https://...), not "similar to: x".
_MARKDOWN = re.compile(r"([\\*_~`|\[\]()<>#]|:(?=\S))")
_LINE_START = re.compile(r"^([-+]|\d+\.(?=\s))")


def _md(text: str) -> str:
    """Text for Discord markdown: every markdown character escaped with a backslash (a list's
    dash or number at the start too), its "@" defused."""
    escaped = _MARKDOWN.sub(r"\\\1", text)
    escaped = _LINE_START.sub(lambda m: m.group(1)[:-1] + "\\" + m.group(1)[-1], escaped)
    return _defuse(escaped)


def _discord_url(url: str | None) -> str:
    """A checked http(s) URL inside `[label](url)`: parentheses would end it."""
    return (url or "").replace("(", "%28").replace(")", "%29")


# -- Matrix -----------------------------------------------------------------------------------


def matrix_payload(digest: Digest, full_url: str, *, max_items: int = MAX_ITEMS) -> dict[str, Any]:
    """The content of a Matrix `m.room.message`: an `m.notice` (what bots send; other bots do
    not answer it), a plain `body` and its HTML, within the event size limit."""
    items = chat_items(digest)
    full = safe_url(full_url)
    head_text = f"{headline(digest)}\n{summary(digest)}"
    head_html = (
        f"<h4>{_html(headline(digest))}</h4>\n<p>{_html(summary(digest))}</p>\n"
    )
    papers = [_matrix_item(item) for item in items]

    def more(left: int) -> tuple[str, str]:
        if full:
            link = f'<a href="{html.escape(full)}">the full digest</a>'
            return f"\n\n… and {left} more: {full}", f"<p>… and {left} more: {link}</p>\n"
        return f"\n\n… and {left} more", f"<p>… and {left} more</p>\n"

    def cost(piece: tuple[str, str]) -> tuple[int]:
        return (sum(_json_bytes(part) for part in piece),)

    empty = _matrix_content(head_text, head_html + "<ol>\n</ol>\n")
    base = len(json.dumps(empty, ensure_ascii=False).encode("utf-8"))
    room = (MATRIX_MAX_BYTES - base,)
    shown = _how_many([cost(p) for p in papers], lambda n: cost(more(n)), room, max_items)
    body = head_text + "".join(text for text, _ in papers[:shown])
    formatted = head_html
    if shown:
        formatted += "<ol>\n" + "".join(part for _, part in papers[:shown]) + "</ol>\n"
    if shown < len(items):
        text, part = more(len(items) - shown)
        body, formatted = body + text, formatted + part
    return _matrix_content(body, formatted)


def _matrix_content(body: str, formatted: str) -> dict[str, Any]:
    return {
        "msgtype": "m.notice",
        "body": body,
        "format": "org.matrix.custom.html",
        "formatted_body": formatted,
        "m.mentions": {},
    }


def _matrix_item(item: ChatItem) -> tuple[str, str]:
    """A paper as plain text and as an HTML list item."""
    lines = [f"{item.rank}. {_defuse(item.title)}"]
    lines += [_defuse(part) for part in (item.url or "", item.authors, item.excerpt) if part]
    if item.reasons:
        lines.append(f"Why: {_defuse(item.reasons)}")
    lines += [f"{link.label}: {_defuse(link.url)}" for link in item.links]
    text = "\n\n" + "\n   ".join(lines)
    title = f"<b>{_html(item.title)}</b>"
    if item.url:
        title = f'<a href="{html.escape(item.url)}">{title}</a>'
    parts = [title] + [_html(part) for part in (item.authors, item.excerpt) if part]
    if item.reasons:
        parts.append(f"<em>Why: {_html(item.reasons)}</em>")
    if item.links:
        parts.append(
            " · ".join(f'<a href="{html.escape(link.url)}">{link.label}</a>' for link in item.links)
        )
    return text, "<li>" + "<br>\n".join(parts) + "</li>\n"


def _html(text: str) -> str:
    return _defuse(html.escape(text, quote=True))


def _json_bytes(text: str) -> int:
    """The bytes a string takes inside a JSON document (UTF-8, escaped; no quotes)."""
    return len(json.dumps(text, ensure_ascii=False).encode("utf-8")) - 2


def matrix_send_url(homeserver: str, room_id: str, txn_id: str) -> str:
    """Where a message is PUT: the client-server API's send endpoint for a room, with a
    transaction id. The server answers a repeated PUT with the same id (same access token) with
    the first event, so a retry after an uncertain send is not a second message."""
    base = homeserver.rstrip("/")
    room = quote(room_id, safe="")
    return f"{base}/_matrix/client/v3/rooms/{room}/send/m.room.message/{quote(txn_id, safe='')}"


def matrix_txn_id(chat_name: str, digest: Digest) -> str:
    """One transaction id per digest and chat: 'paperdigest-<chat>.<profile>-<day>' (a chat's
    name has no "."). The chat is in it because a server may key ids on the token alone: two
    rooms posted to with one token must not share an id, or the second PUT returns the first."""
    return f"paperdigest-{chat_name}.{digest.profile}-{digest.day.isoformat()}"


# -- a generic JSON webhook -------------------------------------------------------------------


def webhook_payload(
    digest: Digest, full_url: str, *, max_items: int | None = None
) -> dict[str, Any]:
    """The digest as plain JSON data for any receiver, all of it unless `max_items` says.

    `id` is the same for every sending of one digest ('<profile>/<day>'): a receiver can drop a
    second copy by it. Text is plain one-line text, not markup (a receiver escapes it for its
    own), with "@" defused as in every chat message.
    """
    items = chat_items(digest)
    shown = items if max_items is None else items[:max_items]
    return {
        "type": "paperdigest.digest",
        "version": 1,
        "id": f"{digest.profile}/{digest.day.isoformat()}",
        "profile": digest.profile,
        "day": digest.day.isoformat(),
        "since": digest.since.isoformat(),
        "until": digest.until.isoformat(),
        "title": _defuse(compose.subject(digest)),
        "headline": headline(digest),
        "summary": _defuse(summary(digest)),
        "scanned": digest.scanned,
        "total": len(items),
        "more": len(items) - len(shown),
        "full_url": safe_url(full_url),
        "failed_sources": [
            {"source": note.source, "status": note.status, "error": _defuse(one_line(note.error, 300))}
            for note in digest.failed_sources
        ],
        "items": [_webhook_item(item, digest) for item in shown],
    }


def _webhook_item(item: ChatItem, digest: Digest) -> dict[str, Any]:
    paper = digest.items[item.rank - 1].paper
    names = [_defuse(one_line(name, 200)) for name in paper.authors if one_line(name)]
    return {
        "rank": item.rank,
        "key": item.key,
        "arxiv_id": paper.arxiv_id,
        "title": _defuse(item.title),
        "url": item.url,
        "authors": names[:100],
        "author_count": max(len(names), paper.author_count or 0),
        "excerpt": _defuse(item.excerpt),
        "reasons": _defuse(item.reasons),
        "score": round(item.score, 4),
        "links": [{"label": link.label, "url": link.url} for link in item.links],
    }


# -- shared -----------------------------------------------------------------------------------


def _defuse(text: str) -> str:
    """A zero-width space after every "@": no @everyone, @here, @channel or @room, and no
    mention of anyone by name."""
    return text.replace("@", "@" + _ZWSP)


def _cut(text: str, limit: int, escape: Callable[[str], str]) -> str:
    """`text` escaped for a service, cut (with "…") before escaping so that no escape is split
    and the escaped text keeps within `limit` characters."""
    raw = one_line(text, limit)
    escaped = escape(raw)
    while len(escaped) > limit:
        raw = one_line(raw, max(1, len(raw) - (len(escaped) - limit)))
        escaped = escape(raw)
    return escaped


def _paper_url(title: str, url: str | None) -> str | None:
    """The paper's link, if a chat can carry it: a title search is shortened, another too long
    link left out."""
    if url and len(url) > URL_CHARS and url.startswith(compose.SEARCH_URL):
        return compose.title_search_url(title, URL_CHARS)
    return url if url and len(url) <= URL_CHARS else None


def _how_many(
    costs: Sequence[tuple[int, ...]],
    more: Callable[[int], tuple[int, ...]],
    room: tuple[int, ...],
    max_items: int,
) -> int:
    """How many of the first papers fit in `room`, given each one's cost, while leaving room for
    the "… and N more" line the rest need (when there is a rest)."""
    used = (0,) * len(room)
    for shown, cost in enumerate(costs):
        if shown == max_items:
            return shown
        after = tuple(u + c for u, c in zip(used, cost, strict=True))
        left = len(costs) - shown - 1
        need = tuple(a + m for a, m in zip(after, more(left), strict=True)) if left else after
        if any(n > r for n, r in zip(need, room, strict=True)):
            return shown
        used = after
    return len(costs)


# -- the channel -----------------------------------------------------------------------------

KIND_NAMES = {"slack": "Slack", "discord": "Discord", "matrix": "Matrix", "webhook": "webhook"}
# Tries of one post that provably did not arrive (refused, no connection, 429, 503) before the
# row waits for the next run: 2 keep a chat that never answers to about a minute of the run
# (the circuit breaker stops it after 3 posts), where [fetch] retries (3) let it hold 162 s.
POST_RETRIES = 1
# The webhook or token is wrong or gone: every message to this chat would be refused alike.
_SETUP_STATUSES = (401, 403, 404, 410)


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One post: the JSON body, how it goes (POST, or Matrix's PUT) and its id in the ledger."""

    message_id: str  # the same for every sending of one digest to one chat
    body: dict[str, Any]
    method: str = "POST"


def chat_message(chat: ChatConfig, digest: Digest, full_url: str) -> ChatMessage:
    """The message `chat` takes for `digest`, in its app's own format. Pure."""
    message_id = matrix_txn_id(chat.name, digest)  # the ledger's id for every kind
    if chat.kind == "slack":
        return ChatMessage(message_id, slack_payload(digest, full_url, max_items=chat.max_items))
    if chat.kind == "discord":
        return ChatMessage(message_id, discord_payload(digest, full_url, max_items=chat.max_items))
    if chat.kind == "matrix":
        return ChatMessage(
            message_id, matrix_payload(digest, full_url, max_items=chat.max_items), "PUT"
        )
    return ChatMessage(message_id, webhook_payload(digest, full_url, max_items=chat.max_items))


class ChatChannel:
    """One team chat of config.toml ([chat.NAME]): a profile that names it gets a row
    "<kind>:<name>" per digest, posted by `send`. `poster` is the run's HTTP client; None (a
    run replaying captured pages) posts nothing and leaves the rows for a live run."""

    def __init__(
        self, chat: ChatConfig, config: Config, store: Store, poster: Fetcher | None
    ) -> None:
        self.chat = chat
        self.config = config
        self.store = store
        self.poster = poster
        self.name = f"{chat.kind}:{chat.name}"
        self.kind = chat.kind
        self.stops_for_the_run = True
        self._profiles = {profile.name: profile for profile in config.profiles}
        self._run: RunContext | None = None  # the pass being delivered: its digests as composed

    @property
    def where(self) -> str:
        return f"the {KIND_NAMES.get(self.kind, self.kind)} chat {self.chat.name!r}"

    @property
    def marks_hand_over(self) -> bool:
        return True

    def sync(self) -> None:
        """A post is delivered when it is answered: nothing to make durable."""

    def targets(self, profile: ProfileConfig) -> list[str]:
        return [self.name] if self.chat.name in profile.chats else []

    def deliver(self, run: RunContext) -> DeliveryReport:
        if self.poster is None:
            waiting = sum(
                row.channel == self.name
                for row in self.store.deliveries(statuses=("pending", "deferred"))
            )
            said = "not posted: this run replays captured responses ([fetch] replay)"
            if waiting:
                log.info("%s: %s; %d messages wait for a live run", self.name, said, waiting)
            return DeliveryReport(left=waiting)
        self._run = run
        return deliver_rows(
            self.store,
            self,
            run.clock,
            claimant=run.claimant,
            retry_delays=(),  # the HTTP client retried already, as far as it is safe
            lease=run.settings.claim_lease,
            quarantine=run.settings.uncertain_quarantine,
            deadline=run.time_left(),
            stopping=run.stopping,
            progress=run.progress,
            only=run.block,
        )

    def build(self, row: Delivery) -> ChatMessage | None:
        profile = self._profiles.get(row.profile)
        if profile is None or self.chat.name not in profile.chats:
            log.info("%s: %s no longer posts to this chat; not sent", self.name, row.profile)
            return None
        # One row per digest on this chat: read once, kept by nobody.
        digest = (
            self._run.digest(self.store, row.profile, row.day)
            if self._run is not None
            else self.store.digest(row.profile, row.day)
        )
        if digest is None or (not digest.items and not self.config.email.send_empty):
            return None
        _, atom_path = feeds.profile_feed_paths(row.profile)
        full_url = feeds.feed_url(self.config.output.base_url, atom_path)
        return chat_message(self.chat, digest, full_url)

    def message_id(self, message: object) -> str | None:
        return message.message_id if isinstance(message, ChatMessage) else None

    def send(self, message: object, row: Delivery, handing_over: Callable[[], None]) -> None:
        assert isinstance(message, ChatMessage) and self.poster is not None
        url, headers = self._address(message)
        try:
            # The ledger records the hand-over as the request starts on an open connection.
            self.poster.post(
                url, message.body, headers, method=message.method, on_hand_over=handing_over,
                retries=POST_RETRIES,
            )
        except UncertainPostError as exc:
            if self.kind != "matrix" or exc.timed_out:
                # (A homeserver that let the read time out is hung or slow: a second PUT would
                # double what it costs the run, and the quarantine's retry is just as safe.)
                raise UncertainDeliveryError(f"{self.where}: {exc}") from None
            # The same transaction id again: a Matrix server answers it with the first event,
            # so this is never a second message.
            try:
                self.poster.post(
                    url, message.body, headers, method=message.method, on_hand_over=handing_over,
                    retries=POST_RETRIES,
                )
            except UncertainPostError as again:
                raise UncertainDeliveryError(f"{self.where}: {again}") from None
            except FetchError as again:
                raise self._failure(again) from None
        except FetchError as exc:
            raise self._failure(exc) from None

    def _failure(self, exc: FetchError) -> DeliveryError:
        if isinstance(exc, RejectedPostError):
            if exc.status in _SETUP_STATUSES:
                return DeliveryError(
                    f"{self.where}: {exc} (is [chat.{self.chat.name}] still right? a webhook or "
                    "token that was deleted or revoked answers so)"
                )
            return PermanentDeliveryError(f"{self.where}: {exc}")
        return UnreachableError(f"{self.where}: {exc}")

    def _address(self, message: ChatMessage) -> tuple[str, dict[str, str]]:
        """Where the message goes and its headers; the secret is read when a message goes."""
        try:
            secret = chat_secret(self.chat)
        except ConfigError as exc:
            raise DeliveryError(str(exc)) from None
        if self.kind == "matrix":
            assert self.chat.homeserver is not None and self.chat.room is not None
            url = matrix_send_url(self.chat.homeserver, self.chat.room, message.message_id)
            return url, {"Authorization": f"Bearer {secret}"}
        if self.kind == "webhook":
            return secret, {"Idempotency-Key": message.message_id}
        return secret, {}
