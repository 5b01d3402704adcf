"""A Digest -> the words and markup people receive: HTML (CSS inlined) and text email, feed items.

Every template autoescapes; scraped text reaches them only as plain strings, and links only when
they are http(s) (digest.text.safe_url). A paper's card is the same for every reader, so it is
rendered once per run and reused by every email and feed that holds the paper; a profile's own
links ("More like this", "Not relevant") are put around the card, never into it.
"""

from __future__ import annotations

import binascii
import functools
import hashlib
import re
import textwrap
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from email import base64mime, quoprimime
from email.header import Header
from email.utils import format_datetime, formataddr, parseaddr
from pathlib import Path
from typing import Any

import css_inline
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup, escape

from digest import compose
from digest.errors import ConfigError
from digest.models import Digest, Paper, ScoredPaper, SourceNote
from digest.text import one_line, safe_url
from digest.tokens import feedback_token, short_code


def default_templates_dir() -> Path:
    """The installed copy (digest/templates), else templates/ of the checkout (editable install)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "templates", here.parent / "templates"):
        if (candidate / "email.html.j2").is_file():
            return candidate
    raise ConfigError(f"no email templates found beside {here} (expected templates/email.html.j2)")


@dataclass(frozen=True, slots=True)
class RenderedEmail:
    subject: str
    text: str
    html: str
    # The HTML in pieces, "".join(html_parts) == html: the odd ones are the papers' cards, the
    # same string objects for every reader, so build_message encodes each once a run (empty: the
    # HTML is encoded whole).
    html_parts: tuple[str, ...] = field(default=(), compare=False, repr=False)
    # The text the same way: the odd pieces are the papers' text blocks, around the reader's "why".
    text_parts: tuple[str, ...] = field(default=(), compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class FeedbackLinks:
    """Where one profile's "More like this" and "Not relevant" on a paper go: BASE/feedback/TOKEN.

    A token names the profile, the paper and the mark, not the reader, so every reader of the
    profile (each email, the feed) gets the same links and the renderer can reuse them.
    """

    profile: str
    base_url: str  # [output] base_url: http(s), no trailing "/"
    keys: tuple[str, ...] = field(repr=False)  # the signing keys, newest first; never printed

    def __post_init__(self) -> None:
        if safe_url(self.base_url) is None:  # config checks it; a bug must not reach a reader
            raise ValueError(f"feedback links need an http(s) base URL, got {self.base_url!r}")

    def urls(self, paper_key: str) -> tuple[str, str]:
        """The "more" and the "less" link of one paper (one HMAC each)."""
        keys = self.keys
        return (
            f"{self.base_url}/feedback/{feedback_token(keys, self.profile, paper_key, 'more')}",
            f"{self.base_url}/feedback/{feedback_token(keys, self.profile, paper_key, 'less')}",
        )


class LinkShortener:
    """BASE/l/CODE in place of one of our long action links (feedback, manage, unsubscribe), so
    the text part keeps to 78 columns. It remembers the codes it made: the caller has the store
    keep them (digest.store.save_short_links) before the mail goes out.

    The feedback links of one digest share ONE code, kept once for the digest: BASE/l/CODE.m3 is
    "More like this" on its third paper, BASE/l/CODE.l3 "Not relevant" (digest.web.links finds
    the paper in the stored digest and makes the long link then). Kept one a link, they were 40
    rows a reader a day, most of a day's growth of the store (issue 16).
    """

    _REMEMBERED = 100_000  # codes known to be kept already; past it they are kept again (harmless)
    _CODES_KEPT = 10_000  # codes remembered by link: a block's readers' three (digest.pipeline.BLOCK)

    def __init__(self, base_url: str, keys: tuple[str, ...]) -> None:
        self.base_url = base_url
        self.keys = keys
        self._made: dict[str, str] = {}
        self._kept: set[str] = set()
        # The codes of the links shortened lately, by (path, group): the mail channel shortens a
        # block's links before its first mail (to keep them), then again as it renders each.
        self._codes: dict[tuple[str, str], str] = {}

    def __call__(self, url: str, group: str = "") -> str:
        """The short form of `url`; `group` (the email's profile) keeps one email's codes
        together in the store (see digest.tokens.short_code)."""
        if not url.startswith(self.base_url + "/"):
            return url
        path = url[len(self.base_url):]
        code = self._code(path, group)
        if code not in self._kept:
            self._made[code] = path
        return f"{self.base_url}/l/{code}"

    def feedback(self, profile: str, day: date) -> str:
        """The start of one digest's short feedback links: add "m" or "l" and a position. The
        codes of one day's digests share their first characters (the day's), so the store keeps
        them side by side: a day's thousands are written to a few pages, not one page each."""
        path = digest_links_path(profile, day)
        code = self._code(path, day.isoformat())
        if code not in self._kept:
            self._made[code] = path
        return f"{self.base_url}/l/{code}."

    def _code(self, path: str, group: str) -> str:
        code = self._codes.get((path, group))
        if code is None:
            if len(self._codes) >= self._CODES_KEPT:
                self._codes.clear()
            code = self._codes[(path, group)] = short_code(self.keys, path, group)
        return code

    def take(self) -> dict[str, str]:
        """The codes made since the last call, code -> path, to be kept."""
        made, self._made = self._made, {}
        if len(self._kept) > self._REMEMBERED:
            self._kept.clear()
        self._kept.update(made)
        return made

    def forget(self, codes: Mapping[str, str]) -> None:
        """Codes take() gave that could not be kept after all: the next take() gives them again."""
        self._kept.difference_update(codes)
        self._made.update(codes)


DIGEST_LINKS = "/digest-links/"  # the path a digest's feedback short code stands for


def digest_links_path(profile: str, day: date) -> str:
    """What a digest's feedback short code is kept as: /digest-links/DAY/PROFILE."""
    return f"{DIGEST_LINKS}{day.isoformat()}/{profile}"


@dataclass(frozen=True, slots=True)
class EmailLinks:
    """The reader's own links: in an email's footer and headers, and beside each paper."""

    feed_rss: str
    feed_atom: str
    unsubscribe: str  # https: a page with a confirm button, and the RFC 8058 one-click POST
    unsubscribe_mailto: str  # "mailto:..."
    manage: str | None = None  # https: the subscriber's manage page (interests, pause, feed URL)
    feedback: FeedbackLinks | None = None  # "More like this" / "Not relevant" on each paper
    shorten: LinkShortener | None = None  # the text part's short links (None: the long ones)


class Renderer:
    """Jinja environment plus the per-run caches: what is the same for every reader is made once.

    Per paper (once a run): its card, in plain HTML for feeds and CSS-inlined for email, and its
    text block. Per profile and paper: the two feedback links. Per shape of email (which
    optional parts it has): its shell (header, footer), rendered and inlined with marks where the
    reader's values go. Per reader: those values, escaped as the inliner would, and the few words
    of each item that are theirs (the position, why it was chosen, the feedback links).
    """

    def __init__(self, templates_dir: Path | None = None) -> None:
        folder = templates_dir or default_templates_dir()
        self.env = Environment(
            loader=FileSystemLoader(folder),
            autoescape=select_autoescape(enabled_extensions=("html.j2", "xml.j2"), default=False),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )
        self._paper = self.env.get_template("paper.html.j2")
        self._paper_text = self.env.get_template("paper.txt.j2")
        self._html = self.env.get_template("email.html.j2")
        self._text = self.env.get_template("email.txt.j2")
        # Our own files, not scraped text: safe to mark as markup.
        self._css = Markup((folder / "email.css").read_text(encoding="utf-8"))
        self._keep_css = Markup((folder / "email-dark.css").read_text(encoding="utf-8"))
        self._inliner = css_inline.CSSInliner(keep_style_tags=False)
        # An item's own tags, plain for feeds, and with their styles inlined once for email.
        self._plain_item = _item_tags(_ITEM_SAMPLE)
        self._inlined_item = _item_tags(css_inline.inline_fragment(_ITEM_SAMPLE, str(self._css)))
        self._fields: dict[Paper, dict[str, Any]] = {}
        self._cards: dict[Paper, Markup] = {}
        self._email_cards: dict[tuple[Paper, bool], Markup] = {}
        self._text_blocks: dict[Paper, str] = {}
        self._text_halves_of: dict[Paper, tuple[str, str]] = {}
        # An email's paper's card and text halves, by the Paper object (see _email_card).
        self._mine: dict[int, tuple[Paper, bool, Markup, tuple[str, str]]] = {}
        self._items: dict[tuple[int, int], tuple[ScoredPaper, FeedbackLinks | None, Markup]] = {}
        self._feedback: OrderedDict[tuple[FeedbackLinks, str], tuple[str, str]] = OrderedDict()
        # The email's shell (header, footer) for each shape, rendered and inlined once: None
        # for a shape that could not be cut into pieces (every reader's is then made whole).
        self._html_shells: dict[tuple[int, bool, bool], _Shell | None] = {}
        self._text_shells: dict[tuple[int, int, bool], _Shell] = {}

    # -- one paper, the same for every reader ---------------------------------------------------

    def paper_fields(self, paper: Paper) -> dict[str, Any]:
        """What every channel shows of a paper (title, url, authors, meta, excerpt, links)."""
        found = self._fields.get(paper)
        if found is None:
            found = self._fields[paper] = _paper_fields(paper)
        return found

    def card(self, paper: Paper) -> Markup:
        """The paper's title, authors, categories, excerpt and links, as escaped HTML."""
        card = self._cards.get(paper)
        if card is None:
            card = self._cards[paper] = Markup(self._paper.render(**self.paper_fields(paper)))
        return card

    def _email_card(self, paper: Paper, thumbnails: bool) -> Markup:
        # First by the object itself (held, so its id is no other's meanwhile): hashing a
        # Paper's twenty fields costs a microsecond, forty times an email.
        mine = self._mine.get(id(paper))
        if mine is not None and mine[0] is paper and mine[1] == thumbnails:
            return mine[2]
        card = self._email_cards.get((paper, thumbnails))
        if card is None:
            html = (self.card(paper) if thumbnails or not paper.thumbnail_url
                    else self._paper.render(**{**self.paper_fields(paper), "thumbnail": None}))
            inlined = css_inline.inline_fragment(str(html), str(self._css))
            card = self._email_cards[(paper, thumbnails)] = Markup(inlined)
        if len(self._mine) >= _PAPERS_BY_ID:
            self._mine.clear()
        self._mine[id(paper)] = (paper, thumbnails, card, self._text_halves(paper))
        return card

    def _text_block(self, paper: Paper) -> str:
        block = self._text_blocks.get(paper)
        if block is None:
            fields = dict(self.paper_fields(paper))  # a copy: the HTML and feeds share the cached one
            # 74 columns and a hanging indent: "10. " goes before it, and the part keeps to 78.
            fields["title"] = textwrap.fill(fields["title"], 74, subsequent_indent=_TEXT_INDENT,
                                            break_on_hyphens=False)
            if (fields["url"] or "").startswith(compose.SEARCH_URL):  # a title-only paper
                fields["url"] = compose.title_search_url(paper.title, 78 - len(_TEXT_INDENT))
            block = self._text_blocks[paper] = self._paper_text.render(why=_TEXT_WHY, **fields)
        return block

    # -- one paper in one reader's digest -------------------------------------------------------

    def feedback_urls(self, feedback: FeedbackLinks, paper_key: str) -> tuple[str, str]:
        """The profile's "more" and "less" links for a paper, signed once for its email and feed."""
        urls = self._feedback.get((feedback, paper_key))
        if urls is None:
            urls = self._feedback[(feedback, paper_key)] = feedback.urls(paper_key)
            if len(self._feedback) > _FEEDBACK_CACHE:
                # The oldest go first: a block's emails come after all of its feeds, and
                # clearing everything would drop the links the block's feeds just signed.
                self._feedback.popitem(last=False)
        return urls

    def item_html(
        self, item: ScoredPaper, position: int, feedback: FeedbackLinks | None = None
    ) -> Markup:
        """The shared card, why it was chosen and the profile's feedback links: plain HTML, as
        feeds carry it. The wrapper is a few tags; a template render per item would be most of a
        run's cost.
        """
        cached = self._items.get((id(item), position))
        # The item itself is kept in the cache, so its id cannot be reused by another while
        # cached; the feedback links are compared too, as they belong to one profile.
        if cached is not None and cached[0] is item and cached[1] == feedback:
            return cached[2]
        urls = self.feedback_urls(feedback, item.paper.key) if feedback else None
        html = self._item(self._plain_item, self.card(item.paper), item, position, urls)
        if len(self._items) >= _ITEM_CACHE:
            self._items.clear()
        self._items[(id(item), position)] = (item, feedback, html)
        return html

    def item_parts(
        self, item: ScoredPaper, position: int, feedback: FeedbackLinks | None = None
    ) -> tuple[str, Markup, str]:
        """item_html in three pieces, (before, card, after): the card is the paper's, the same
        object for every reader, so a feed can escape it once a paper and only the reader's own
        few words (position, why, feedback links) per item. Joined, they are item_html."""
        urls = self.feedback_urls(feedback, item.paper.key) if feedback else None
        before, after = _item_around(
            self._plain_item, compose.reasons_line(item.reasons), position, urls
        )
        return before, self.card(item.paper), after

    def _item(
        self,
        tags: _ItemTags,
        card: Markup,
        item: ScoredPaper,
        position: int,
        feedback: tuple[str, str] | None,
    ) -> Markup:
        before, after = _item_around(tags, compose.reasons_line(item.reasons), position, feedback)
        return Markup(f"{before}{card}{after}")

    def _item_text(
        self, item: ScoredPaper, why: str, position: int, feedback: tuple[str, str] | None
    ) -> tuple[str, str, str, str, str]:
        """One item of the text part in five pieces: the reader's position, the paper's block up
        to why it was chosen (shared), the reader's why, the rest of the block (shared), the
        reader's feedback links."""
        line = f"{_TEXT_INDENT}Why: {why}"
        if not why:
            wrapped = ""
        elif len(line) <= 72:  # most are one short line; textwrap is slow for what it does here
            wrapped = line + "\n"
        else:
            wrapped = textwrap.fill(line, 72, subsequent_indent=_TEXT_INDENT) + "\n"
        before, after = self._text_halves(item.paper)
        links = (
            f"{_TEXT_INDENT}{_MORE}: {feedback[0]}\n{_TEXT_INDENT}{_LESS}: {feedback[1]}\n"
            if feedback
            else ""
        )
        return f"{position}. ", before, wrapped, after, links

    def _text_halves(self, paper: Paper) -> tuple[str, str]:
        mine = self._mine.get(id(paper))
        if mine is not None and mine[0] is paper:
            return mine[3]
        halves = self._text_halves_of.get(paper)
        if halves is None:
            before, _, after = self._text_block(paper).partition(_TEXT_WHY)
            halves = self._text_halves_of[paper] = (before, after)
        return halves

    # -- one email ----------------------------------------------------------------------------

    def email(
        self, digest: Digest, *, recipient: str, links: EmailLinks, thumbnails: bool = True
    ) -> RenderedEmail:
        """One reader's email; `thumbnails` shows the sources' pictures in its HTML part (the
        text part never has them)."""
        common = _header_fields(digest)
        common.update(
            recipient=recipient,
            feed_rss=links.feed_rss,
            feed_atom=links.feed_atom,
            unsubscribe_url=links.unsubscribe,
            manage_url=links.manage,
        )
        # Each paper's feedback links, signed once for the HTML and the text part; so is why it
        # was chosen.
        feedback = links.feedback
        items = [
            (
                n,
                item,
                self.feedback_urls(feedback, item.paper.key) if feedback else None,
                compose.reasons_line(item.reasons),
            )
            for n, item in enumerate(digest.items, 1)
        ]
        # The HTML in pieces: each card (the same object for every reader) between the reader's
        # own words, so build_message can reuse each card's encoded bytes. The shell (header,
        # footer) has a mark where the items go; the items, inlined once per paper, go there.
        head, tail = self._html_shell(digest, common)
        parts: list[str] = []
        between = head
        for n, item, urls, why in items:
            before, after = _item_around(self._inlined_item, why, n, urls)
            parts += (f"{between}{before}", self._email_card(item.paper, thumbnails))
            between = f"{after}\n"
        parts.append(f"{between[:-1] if items else between}{tail}")
        html = "".join(parts)
        # The text part takes the short form of the action links: a terminal has 78 columns.
        short = functools.partial(links.shorten, group=digest.profile) if links.shorten else _unchanged
        marks = links.shorten.feedback(digest.profile, digest.day) if links.shorten else None
        text_items = [
            self._item_text(
                item, why, n,
                None if not urls else (f"{marks}m{n}", f"{marks}l{n}") if marks else urls,
            )
            for n, item, urls, why in items
        ]
        common.update(
            unsubscribe_url=short(links.unsubscribe),
            manage_url=short(links.manage) if links.manage else None,
            summary=_wrapped_summary(common["summary"]),
            because=textwrap.fill(
                f'You get this because {recipient} subscribed to the "{digest.profile}" digest.', 78
            ),
        )
        text_parts = self._text_parts(self._text_shell(common, len(text_items)), text_items)
        text = (
            "".join(text_parts)
            if text_parts
            else self._text.render(items=["".join(item) for item in text_items], **common)
        )
        return RenderedEmail(
            subject=common["subject"],
            text=text,
            html=html,
            html_parts=tuple(parts),
            text_parts=text_parts,
        )

    def _html_shell(self, digest: Digest, fields: dict[str, Any]) -> tuple[str, str]:
        """The email's HTML before and after its items: from the shell of its shape (which
        optional parts it has), rendered and inlined once a run, with the reader's own values
        put in, escaped as the inliner writes them. A value with a character the inliner might
        write otherwise (a control character, a no-break space) has it made whole, as before:
        rendered and inlined for this reader alone."""
        failed = fields["failed"]
        shape = (len(failed), bool(digest.items), bool(fields["manage_url"]))
        if shape not in self._html_shells:
            self._html_shells[shape] = self._cut_html_shell(shape)
        shell = self._html_shells[shape]
        values = {name: fields[name] for name in _HTML_VALUES if fields[name] is not None}
        values.update((f"failed{n}", note.source) for n, note in enumerate(failed))
        if shell is None or not all(value.isprintable() for value in values.values()):
            head, _, tail = self._inline_shell(fields, digest.items).partition(_ITEMS_MARK)
            return head, tail
        return shell.filled(values, 0), shell.filled(values, 1)

    def _inline_shell(self, fields: Mapping[str, Any], items: object) -> str:
        return self._inliner.inline(self._html.render(
            css=self._css, keep_css=self._keep_css, items_html=Markup(_ITEMS_MARK), items=items,
            **fields,
        ))

    def _cut_html_shell(self, shape: tuple[int, bool, bool]) -> _Shell | None:
        failures, has_items, has_manage = shape
        fields: dict[str, Any] = {name: _slot(name) for name in _HTML_VALUES}
        fields["manage_url"] = _slot("manage_url") if has_manage else None
        fields["failed"] = [SourceNote(_slot(f"failed{n}"), "failed") for n in range(failures)]
        inlined = self._inline_shell(fields, [None] if has_items else [])
        if inlined.count(_ITEMS_MARK) != 1:
            return None
        return _Shell.cut(inlined.split(_ITEMS_MARK), html=True)

    def _text_shell(self, fields: Mapping[str, Any], items: int) -> str:
        """The text part with a mark for each item, from the shell of its shape rendered once a
        run; the template escapes nothing, so each value goes in as it is."""
        failed = fields["failed"]
        shape = (len(failed), items, bool(fields["manage_url"]))
        shell = self._text_shells.get(shape)
        if shell is None:
            marked: dict[str, Any] = {name: _slot(name) for name in _TEXT_VALUES}
            marked["manage_url"] = _slot("manage_url") if fields["manage_url"] else None
            marked["failed"] = [SourceNote(_slot(f"failed{n}"), "failed") for n in range(len(failed))]
            rendered = self._text.render(items=[_text_mark(n) for n in range(items)], **marked)
            shell = self._text_shells[shape] = _Shell.cut([rendered], html=False)
        values = {name: fields[name] for name in _TEXT_VALUES if fields[name] is not None}
        values.update((f"failed{n}", note.source) for n, note in enumerate(failed))
        return shell.filled(values, 0)

    @staticmethod
    def _text_parts(
        marked: str, items: list[tuple[str, str, str, str, str]]
    ) -> tuple[str, ...]:
        """The text part in pieces, the papers' shared halves at the odd places, from the text
        rendered with a mark for each item; () when the marks are not all there, once each and in
        order (the reader's own words held one), and the text is then rendered whole."""
        pieces = _TEXT_MARK_RE.split(marked)
        if pieces[1::2] != [str(n) for n in range(len(items))]:
            return ()
        parts: list[str] = []
        between = pieces[0]
        for n, (position, before, why, after, links) in enumerate(items):
            parts += (f"{between}{position}", before, why, after)
            between = f"{links}{pieces[2 * n + 2]}"
        parts.append(between)
        return tuple(parts)


@dataclass(frozen=True, slots=True)
class _ItemTags:
    """The markup around one item's parts (its position, card, reasons and feedback links)."""

    open: str
    after_rank: str
    why_open: str
    why_close: str
    feedback_open: str
    feedback_between: str
    feedback_close: str
    close: str


# A shell's values: marks where they go when the shell is rendered once, filled in per reader.
_HTML_VALUES = (
    "subject", "profile", "headline", "summary", "empty_message",
    "recipient", "feed_rss", "feed_atom", "unsubscribe_url", "manage_url",
)
_TEXT_VALUES = (
    "headline", "summary", "empty_message", "feed_rss", "feed_atom", "because",
    "unsubscribe_url", "manage_url",
)
_SLOT_RE = re.compile(r"paperdigestslot([a-z_0-9]+)\.")


def _slot(name: str) -> str:
    """A value's mark: letters and a dot, which escaping and the inliner leave as they are; the
    dot ends it, whatever the template has next."""
    return f"paperdigestslot{name}."


@dataclass(frozen=True, slots=True)
class _Shell:
    """An email's shell of one shape, rendered once, cut around the marks of the reader's values.
    Part n (the HTML before and after its items; the text has one part) is `texts[n]` with the
    values `slots[n]` names between them: each value's name, and whether it is inside a tag (an
    attribute's value, which the inliner escapes otherwise than text)."""

    texts: tuple[tuple[str, ...], ...]
    slots: tuple[tuple[tuple[str, bool], ...], ...]
    html: bool  # False: a text shell, whose values go in as they are

    @classmethod
    def cut(cls, parts: list[str], *, html: bool) -> _Shell:
        texts, slots = [], []
        for text in parts:
            between: list[str] = []
            names: list[tuple[str, bool]] = []
            start = 0
            for match in _SLOT_RE.finditer(text):
                here = match.start()
                between.append(text[start:here])
                names.append((match[1], html and text.rfind("<", 0, here) > text.rfind(">", 0, here)))
                start = match.end()
            between.append(text[start:])
            texts.append(tuple(between))
            slots.append(tuple(names))
        return cls(tuple(texts), tuple(slots), html)

    def filled(self, values: Mapping[str, str], part: int) -> str:
        """Part `part` with the values in, escaped as the inliner writes them (the caller keeps
        from it a value with a character the inliner writes otherwise: see _html_shell)."""
        texts = self.texts[part]
        out = [texts[0]]
        for (name, in_tag), text in zip(self.slots[part], texts[1:], strict=True):
            value = values[name]
            if in_tag:
                value = value.replace("&", "&amp;").replace('"', "&quot;")
            elif self.html:
                value = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            out += (value, text)
        return "".join(out)


_MORE = "More like this"
_LESS = "Not relevant"
# One item, with marks where its parts go; split into _ItemTags after css-inline styled it.
_ITEM_SAMPLE = (
    '<div class="item">\n<p class="rank">@@rank@@</p>\n@@card@@'
    '<p class="why">@@why@@</p>@@feedback@@'
    f'<p class="feedback"><a href="@@more@@">{_MORE}</a> · <a href="@@less@@">{_LESS}</a></p>'
    "@@end@@</div>\n"
)


def _item_around(
    tags: _ItemTags, why: str, position: int, feedback: tuple[str, str] | None
) -> tuple[str, str]:
    """What goes before an item's card (its position) and after it (`why` it was chosen, the
    feedback links), as HTML. Plain concatenation, with the untrusted parts escaped:
    Markup.format is ten times slower, and this runs for every item of every reader."""
    why_html = f"{tags.why_open}Why: {escape(why)}{tags.why_close}" if why else ""
    if feedback:
        more, less = feedback
        feedback_html = (
            f"{tags.feedback_open}{escape(more)}{tags.feedback_between}{escape(less)}"
            f"{tags.feedback_close}"
        )
    else:
        feedback_html = ""
    return f"{tags.open}{position}{tags.after_rank}", f"{why_html}{feedback_html}{tags.close}"


def _item_tags(html: str) -> _ItemTags:
    open_, rest = html.split("@@rank@@")
    after_rank, rest = rest.split("@@card@@")
    why_open, rest = rest.split("@@why@@")
    why_close, rest = rest.split("@@feedback@@")
    feedback_open, rest = rest.split("@@more@@")
    feedback_between, rest = rest.split("@@less@@")
    feedback_close, close = rest.split("@@end@@")
    return _ItemTags(
        open_, after_rank, why_open, why_close, feedback_open, feedback_between, feedback_close, close
    )


_ITEM_CACHE = 4096  # items kept between a digest's email and its feed
_PAPERS_BY_ID = 20_000  # Paper objects whose email parts are found by id (a run's, or a block's)
# Papers' feedback links kept between a profile's feed and its email: a run delivers its
# profiles a block at a time (digest.pipeline.BLOCK, 1,000), every feed of the block before
# its emails, so a block's links (18,000 at 18 papers a digest) are signed once, not twice.
_FEEDBACK_CACHE = 25_000
_ITEMS_MARK = "<!--paperdigest:items-->"
# Where a text block takes the reader's "Why:" line. A NUL never survives one_line, so
# no scraped text can fake it.
_TEXT_WHY = "\x00why\x00"
# Where each item goes in the text part, as first rendered (Renderer._text_parts).
_TEXT_MARK_RE = re.compile("\x00item([0-9]+)\x00")


def _text_mark(number: int) -> str:
    return f"\x00item{number}\x00"

_TEXT_INDENT = "   "


@functools.lru_cache(maxsize=256)
def _wrapped_summary(summary: str) -> str:
    """The text part's summary line, the same for a day's readers of one set of sources."""
    return textwrap.fill(summary, 78, break_on_hyphens=False)


def _unchanged(url: str) -> str:
    return url


def _paper_fields(paper: Paper) -> dict[str, Any]:
    categories = list(dict.fromkeys(c for c in (paper.primary_category, *paper.categories) if c))
    # Which paper and when, as a reader cites and files it: "arXiv:2411.01234 · Nov 22, 2026".
    meta = [f"arXiv:{paper.arxiv_id}"] if paper.arxiv_id else []
    day = paper.listed or (paper.published.date() if paper.published else None)
    if day is not None:
        meta.append(f"{day:%b} {day.day}, {day.year}")
    meta += [one_line(c) for c in categories[:4]]
    if paper.upvotes:
        meta.append(compose.count(paper.upvotes, "upvote"))
    excerpt = compose.excerpt(paper)
    return {
        "title": compose.display_title(paper.title) or "(untitled)",
        # The source's picture of the paper (Hugging Face gives one), in the HTML only.
        "thumbnail": safe_url(paper.thumbnail_url),
        "url": compose.paper_url(paper),
        "authors": compose.author_line(paper),
        "meta": meta,
        "excerpt": excerpt,
        # The text email's copy, wrapped once per paper rather than once per reader.
        "excerpt_wrapped": textwrap.fill(
            excerpt, 72, initial_indent=_TEXT_INDENT, subsequent_indent=_TEXT_INDENT
        ),
        "links": compose.links(paper),
    }


def _day_label(digest: Digest) -> str:
    """compose.day_label, once for the digests of one window and timezone (what it reads)."""
    key = (digest.timezone, digest.since, digest.day)
    label = _DAY_LABELS.get(key)
    if label is None:
        if len(_DAY_LABELS) >= 256:
            _DAY_LABELS.clear()
        label = _DAY_LABELS[key] = compose.day_label(digest)
    return label


_DAY_LABELS: dict[tuple[str, datetime, date], str] = {}


def _header_fields(digest: Digest) -> dict[str, Any]:
    count = len(digest.items)
    failed = digest.failed_sources
    sources = compose.source_names(digest)
    scanned = compose.count(digest.scanned, "new paper")
    from_where = f" from {', '.join(sources)}" if sources else ""
    chosen = f"chosen from {scanned}" if digest.scanned else "no new papers"
    summary = f"{_day_label(digest)} · {chosen}{from_where}"
    if failed:
        failed_names = ", ".join(note.source for note in failed)
        empty = (
            f"Nothing to show, but this is not a quiet day: {failed_names} could not be read."
            if count == 0
            else ""
        )
    elif digest.scanned == 0:
        empty = "No new papers were listed in this period (arXiv announces none on weekends and holidays)."
    else:
        empty = f"None of today's {scanned} scored above your threshold."
    headline = f"{compose.count(count, 'new paper')} for you" if count else "Nothing new for you"
    return {
        "subject": compose.subject(digest),
        "profile": digest.profile,
        "headline": headline,
        "summary": summary,
        "failed": failed,
        "empty_message": empty,
    }


# -- the MIME message ---------------------------------------------------------------------------


def message_id(digest: Digest, recipient: str, sender: str) -> str:
    """Stable for a (profile, day, recipient): a re-sent digest is recognisably the same message."""
    digest_of_address = hashlib.sha256(recipient.lower().encode()).hexdigest()[:12]
    domain = _bare(sender).rpartition("@")[2] or "paperdigest.invalid"
    return f"<{digest.day.isoformat()}.{digest.profile}.{digest_of_address}@{domain}>"


@dataclass(frozen=True, slots=True)
class OutgoingMail:
    """One message ready for the outbox or SMTP: RFC 5322 bytes with CRLF line ends."""

    message_id: str
    sender: str  # the bare envelope address
    recipient: str
    data: bytes


def build_message(
    rendered: RenderedEmail,
    *,
    sender: str,
    recipient: str,
    message_id: str,
    date: datetime,
    list_id: str,
    links: EmailLinks,
    reply_to: str | None = None,
) -> OutgoingMail:
    """multipart/alternative, text/plain first and text/html last, with the list headers.

    Written out directly rather than through email.message: the same standard MIME (the tests
    parse it back with the stdlib), about ten times faster, which counts at ten thousand emails
    a run. Bodies are quoted-printable; the boundary comes from the Message-ID, so a message
    re-built for a retry is byte-identical.
    """
    headers = {
        "From": _address(sender),
        "To": _address(recipient),
        "Reply-To": _address(reply_to) if reply_to else None,
        "Subject": rendered.subject,
        "Date": _date_header(date),
        "Message-ID": message_id,
        "List-Id": list_id,
        "List-Unsubscribe": f"<{links.unsubscribe_mailto}>, <{links.unsubscribe}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        "Auto-Submitted": "auto-generated",  # no vacation auto-replies to a digest
        "MIME-Version": "1.0",
    }
    boundary = "=_paperdigest_" + hashlib.sha256(message_id.encode()).hexdigest()[:24]
    lines = []
    for name, value in headers.items():
        if value is None:
            continue
        if any(ch in value for ch in "\r\n\0"):
            # Every value here is ours or cleaned by digest.text.one_line; a line break means a bug,
            # and it must never become a header of its own.
            raise ValueError(f"{name} header would contain a line break")
        if not value.isascii():
            value = _encoded_word(value)
        lines.append(f"{name}: {value}")
    lines.append(f'Content-Type: multipart/alternative; boundary="{boundary}"')
    head = "\r\n".join(lines).encode("ascii")
    parts = b"".join(
        f"\r\n--{boundary}\r\nContent-Type: text/{subtype}; charset=utf-8\r\n"
        "Content-Transfer-Encoding: quoted-printable\r\n\r\n".encode("ascii")
        + body
        for subtype, body in (
            ("plain", _quoted_printable_parts(rendered.text_parts)
             if rendered.text_parts and "\r" not in rendered.text
             else _quoted_printable(rendered.text)),
            # (A CR, which none of our HTML has, would change how a piece's lines are read.)
            ("html", _quoted_printable_parts(rendered.html_parts)
             if rendered.html_parts and "\r" not in rendered.html
             else _quoted_printable(rendered.html)),
        )
    )
    data = head + b"\r\n\r\nThis is a multipart message in MIME format.\r\n" + parts
    data += f"\r\n--{boundary}--\r\n".encode("ascii")
    return OutgoingMail(
        message_id=message_id, sender=_bare(sender), recipient=recipient, data=data
    )


def _quoted_printable(text: str) -> bytes:
    # Quoted-printable: the HTML is mostly ASCII, so it grows by a few percent where base64 would
    # add a third, and the message stays readable as it travels. Lines end in CRLF, as RFC 2046
    # asks; lone surrogates (broken UTF-8 read with surrogateescape) become U+FFFD, never a crash.
    canonical = text.replace("\r\n", "\n").encode("utf-8", "replace")
    return binascii.b2a_qp(canonical, istext=True).replace(b"\n", b"\r\n")


def _quoted_printable_parts(parts: tuple[str, ...]) -> bytes:
    """The HTML's pieces (RenderedEmail.html_parts) quoted-printable, each odd one (a paper's
    card, the same for every reader) encoded once a run. The pieces are joined by soft line
    breaks ("=" at a line's end), which decoding removes: the HTML read back is the same."""
    return _soft_joined([
        _shared_quoted_printable(part) if index % 2 else _quoted_printable(part)
        for index, part in enumerate(parts)
        if part
    ])


@functools.lru_cache(maxsize=4096)
def _shared_quoted_printable(text: str) -> bytes:
    return _quoted_printable(text)


def _soft_joined(pieces: list[bytes]) -> bytes:
    """Encoded pieces as one body: a piece that ends mid-line is continued on the next line
    after a soft line break, and every line still keeps to 76 characters."""
    joined: list[bytes] = []
    for piece in pieces[:-1]:
        if piece.endswith(b"\n"):
            joined.append(piece)
            continue
        if len(piece) - piece.rfind(b"\n") - 1 < 76:
            joined += (piece, b"=\r\n")
            continue
        # A full last line: its last character (or =XX) goes to a line of its own, then the break.
        cut = len(piece) - (3 if piece[-3:-2] == b"=" else 1)
        joined += (piece[:cut], b"=\r\n", piece[cut:], b"=\r\n")
    joined.extend(pieces[-1:])
    return b"".join(joined)


@functools.lru_cache(maxsize=1024)
def _encoded_word(value: str) -> str:
    """RFC 2047 encoding of a non-ASCII header value; every reader of a digest shares its subject.

    Written as email.header.Header writes it: the shorter of the "q" and "b" forms for the whole
    value ("q" when they are as long), cut into words of at most 64 characters of encoded text
    (a line of 76), each cut as late as a whole character allows, on lines of their own. Header
    finds each cut by encoding every prefix of the value again: 90 µs a subject."""
    try:
        data = value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: Header says what it makes of it
        return Header(value, "utf-8").encode(linesep="\r\n", maxlinelen=76)
    quoted = quoprimime.header_encode(data, charset="utf-8")
    use_base64 = base64mime.header_length(data) < len(quoted) - len("=?utf-8?q??=")
    if (base64mime.header_length(data) if use_base64 else len(quoted) - 12) <= _WORD_ROOM:
        return base64mime.header_encode(data, charset="utf-8") if use_base64 else quoted
    words, chunk, length, room = [], bytearray(), 0, _WORD_ROOM
    for character in value:
        encoded = character.encode("utf-8")
        if use_base64:
            longer = -(-(len(chunk) + len(encoded)) // 3) * 4
        else:
            longer = length + sum(_Q_LENGTH[octet] for octet in encoded)
        if longer > room and chunk:
            words.append(bytes(chunk))
            chunk, room = bytearray(), _WORD_ROOM - 1  # the next lines start with a space
            longer = -(-len(encoded) // 3) * 4 if use_base64 else longer - length
        chunk += encoded
        length = longer
    words.append(bytes(chunk))
    encode = base64mime.header_encode if use_base64 else quoprimime.header_encode
    return "\r\n ".join(encode(word, charset="utf-8") for word in words)


# What an encoded word's text may take on a line of 76: the rest is "=?utf-8?q?" and "?=".
_WORD_ROOM = 76 - len("utf-8") - 7
# How long each byte is in a "q" encoded word: 1 ("a", "_" for a space) or 3 ("=C3").
_Q_LENGTH = [len(quoprimime.header_encode(bytes([octet]), charset="")) - len("=??q??=") for octet in range(256)]


def _date_header(when: datetime) -> str:
    """Most messages of a run have the same date (when their digests were composed)."""
    # With its offset in the key: 07:00 UTC and 09:00+02:00 are equal datetimes.
    return _formatted_date(when, when.utcoffset())


@functools.lru_cache(maxsize=256)
def _formatted_date(when: datetime, offset: timedelta | None) -> str:
    return format_datetime(when)


# Parsing an address takes longer than writing the rest of the headers; the sender is the same
# in every message of a run.
@functools.lru_cache(maxsize=256)
def _bare(address: str) -> str:
    return parseaddr(address)[1]


@functools.lru_cache(maxsize=256)
def _address(text: str) -> str:
    if _PLAIN_ADDRESS.fullmatch(text):  # a reader's bare address: parseaddr gives it back as is
        return text
    name, address = parseaddr(text)
    return formataddr((name, address), charset="utf-8") if name else address


# Dot-separated atoms of letters, digits, _ + and -, on both sides of one "@".
_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*")
