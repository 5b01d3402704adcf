"""Ranked papers -> a Digest, and the words every channel shows for it. Pure: no I/O, no clock.

What lives here is shared by the email and the feeds, so both say the same thing: which window of
time a digest covers, the excerpt of a paper, its shortened author list, its links (http(s) only),
and the subject line.
"""

from __future__ import annotations

import functools
import re
from collections import Counter, OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from digest.config import WEEKDAYS, ProfileConfig
from digest.models import Digest, DigestHead, Paper, Reasons, ScoredPaper, SourceNote, SourceRun
from digest.text import doi_url, one_line, safe_url

# A first digest (or one after a very long pause) looks back at most this far.
MAX_LOOKBACK = timedelta(days=14)
_PERIOD = {"daily": timedelta(days=1), "weekdays": timedelta(days=1), "weekly": timedelta(days=7)}


def is_due(profile: ProfileConfig, day: date) -> bool:
    """Whether the profile's frequency calls for a digest on its local `day`."""
    if profile.frequency == "weekdays":
        return day.weekday() < 5
    if profile.frequency == "weekly":
        return day.weekday() == WEEKDAYS.index(profile.weekday)
    return True


def last_slot(profile: ProfileConfig, now: datetime) -> datetime | None:
    """The latest moment at or before `now` when the profile's digest was due (UTC).

    That is `deliver_at` in the profile's time zone, on a day its frequency calls for. A daylight
    saving change moves the slot with local time; a time that does not exist that night (02:30 in
    spring) falls an hour later, as clocks do.
    """
    return _last_slot(profile.timezone, profile.deliver_at, profile.frequency, profile.weekday, now)


# Profiles share a few schedules (a zone, a time, a frequency): a run of 100,000 profiles works each
# schedule's slot out once, not once a profile.
@functools.lru_cache(maxsize=4096)
def _last_slot(
    timezone: str, deliver_at: str, frequency: str, weekday: str, now: datetime
) -> datetime | None:
    schedule = ProfileConfig(
        name="", timezone=timezone, deliver_at=deliver_at, frequency=frequency, weekday=weekday
    )
    zone = ZoneInfo(timezone)
    local_now = now.astimezone(zone)
    at = time.fromisoformat(deliver_at)
    for back in range(8):
        day = local_now.date() - timedelta(days=back)
        if not is_due(schedule, day):
            continue
        slot = datetime.combine(day, at, tzinfo=zone).astimezone(UTC)
        if slot <= now:
            return slot
    return None


def due_window(
    profile: ProfileConfig, now: datetime, previous: Digest | DigestHead | None
) -> tuple[date, datetime, datetime] | None:
    """The digest to compose `now`, if one is due: its day and the [since, until) it covers (UTC).

    Due when the latest slot has no digest yet. The digest is named after the slot's local day and
    starts where the previous one ended, so no paper is missed or given twice, and after downtime
    ONE digest covers every missed day. A first digest looks one period back and waits for a slot
    on the day it starts (a weekly profile added on a Tuesday first hears on its weekday).
    """
    slot = last_slot(profile, now)
    if slot is None or (previous is not None and previous.until >= slot):
        return None
    zone = ZoneInfo(profile.timezone)
    day = slot.astimezone(zone).date()
    if previous is None and day != now.astimezone(zone).date():
        return None
    if previous is not None and previous.day >= day:
        return None  # composed early for this day (deliver_at moved later): one per day
    lookback = _PERIOD[profile.frequency]
    if profile.frequency == "weekdays" and day.weekday() == 0:
        lookback = timedelta(days=3)  # Monday covers the weekend
    since = previous.until if previous is not None else now - lookback
    return day, max(since, now - MAX_LOOKBACK), now


def next_slot(profile: ProfileConfig, now: datetime, previous: Digest | DigestHead | None) -> datetime | None:
    """The first moment after `now` when the profile's next digest is due (UTC); a day that
    has its digest already (made early with `digest run --now`) is skipped."""
    zone = ZoneInfo(profile.timezone)
    local_now = now.astimezone(zone)
    at = time.fromisoformat(profile.deliver_at)
    for ahead in range(9):
        day = local_now.date() + timedelta(days=ahead)
        if is_due(profile, day) and (previous is None or previous.day < day):
            slot = datetime.combine(day, at, tzinfo=zone).astimezone(UTC)
            if slot > now:
                return slot
    return None


def now_window(
    profile: ProfileConfig, now: datetime, previous: Digest | DigestHead | None
) -> tuple[date, datetime, datetime] | None:
    """The digest to compose when asked for it now (`digest run --now`): due or not, but still
    one a local day, so the slot later that day finds it made and sends nothing twice."""
    window = due_window(profile, now, previous)
    if window is not None:
        return window
    day = now.astimezone(ZoneInfo(profile.timezone)).date()
    if previous is not None and previous.day >= day:
        return None
    return preview_window(profile, now, previous)


def preview_window(
    profile: ProfileConfig, now: datetime, previous: Digest | DigestHead | None
) -> tuple[date, datetime, datetime]:
    """What a digest composed right now would cover, due or not (for `digest preview`)."""
    day = now.astimezone(ZoneInfo(profile.timezone)).date()
    since = previous.until if previous is not None else now - _PERIOD[profile.frequency]
    return day, max(since, now - MAX_LOOKBACK), now


def source_notes(runs: Iterable[SourceRun]) -> tuple[SourceNote, ...]:
    """Each source's last status in a window, in name order; a failure is kept over a later 304."""
    last: dict[str, SourceRun] = {}
    for run in sorted(runs, key=lambda r: r.started):
        kept = last.get(run.source)
        if kept is None or run.status != "unchanged" or kept.status == "unchanged":
            last[run.source] = run
    return tuple(
        SourceNote(name, run.status, one_line(run.error) if run.error else None)
        for name, run in sorted(last.items())
    )


def compose(
    profile: ProfileConfig,
    day: date,
    since: datetime,
    until: datetime,
    *,
    scanned: int,
    items: Sequence[ScoredPaper],
    runs: Iterable[SourceRun],
) -> Digest:
    return Digest(
        profile=profile.name,
        day=day,
        timezone=profile.timezone,
        since=since.astimezone(UTC),
        until=until.astimezone(UTC),
        scanned=scanned,
        sources=source_notes(runs),
        items=tuple(items),
    )


# -- what a paper shows -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Link:
    label: str  # "PDF", "Code", ...
    url: str  # always http(s)


def paper_url(paper: Paper) -> str | None:
    """Where the title links: the abstract page; for a paper known only by its title (a text
    listing gave nothing else), arXiv's search for that title, never nowhere."""
    if paper.arxiv_id:
        return f"https://arxiv.org/abs/{paper.arxiv_id}"
    # A DOI from a page is checked before it becomes a link.
    found = (doi_url(paper.doi) if paper.doi else None) or safe_url(paper.abs_url)
    return found or safe_url(paper.project_url) or title_search_url(paper.title)


SEARCH_URL = "https://arxiv.org/search/?"


def title_search_url(title: str, max_length: int | None = None) -> str | None:
    """arXiv's search for a title (https://arxiv.org/search/?query=...&searchtype=title). With
    `max_length`, as many of the title's first words as fit: a few words find a paper too."""
    words = one_line(title).split()
    while words:
        url = SEARCH_URL + urlencode({"query": " ".join(words), "searchtype": "title"})
        if max_length is None or len(url) <= max_length or len(words) == 1:
            return url
        words.pop()
    return None


def links(paper: Paper) -> tuple[Link, ...]:
    """PDF, code, project page and discussion links, each only when known and http(s)."""
    found: list[Link] = []
    pdf = safe_url(paper.pdf_url) or (
        f"https://arxiv.org/pdf/{paper.arxiv_id}" if paper.arxiv_id else None
    )
    if pdf:
        found.append(Link("PDF", pdf))
    code = safe_url(paper.code_url)
    if code:
        found.append(Link("Code", code))
    project = safe_url(paper.project_url)
    if project and project != code:
        found.append(Link("Project", project))
    if paper.arxiv_id and any(source.startswith("hf") for source in paper.sources):
        found.append(Link("Discussion", f"https://huggingface.co/papers/{paper.arxiv_id}"))
    return tuple(found)


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\"'])")
EXCERPT_CHARS = 420


def excerpt(paper: Paper, limit: int = EXCERPT_CHARS) -> str:
    """The source's AI summary when there is one, else the abstract's first sentences (2 or 3)."""
    text = one_line(paper.ai_summary or "") or one_line(paper.abstract)
    if not text:
        return ""
    sentences = _SENTENCE_END.split(text)
    chosen = ""
    for count, sentence in enumerate(sentences, start=1):
        candidate = f"{chosen} {sentence}".strip()
        if count > 3 or (len(candidate) > limit and count > 2):
            break
        chosen = candidate
    if len(chosen) > limit:
        chosen = chosen[: limit - 1].rsplit(" ", 1)[0].rstrip(",;:") + "…"
    return chosen


AUTHORS_SHOWN = 3


def author_line(paper: Paper, reasons: Reasons | None = None, shown: int = AUTHORS_SHOWN) -> str:
    """'A, B, C and 12 others', naming the profile's pinned authors and colleagues too."""
    authors = [one_line(a) for a in paper.authors if one_line(a)]
    total = max(len(authors), paper.author_count or 0)
    if not authors:
        return f"{total} authors" if total > 1 else ""
    if total <= shown + 1:
        return ", ".join(authors)
    named = list(authors[:shown])
    wanted = (reasons.authors + reasons.colleagues) if reasons else ()
    named += [one_line(a) for a in wanted if one_line(a) and one_line(a) not in named]
    others = total - len(named)
    return ", ".join(named) + (f" and {others} others" if others > 0 else "")


def reasons_line(reasons: Reasons) -> str:
    """Why a paper was chosen, as one line. A run's feeds and emails show the same item's line:
    it is kept for the Reasons object itself (held, so its id cannot be another's meanwhile)."""
    kept = _REASONS_LINES.get(id(reasons))
    if kept is not None and kept[0] is reasons:
        return kept[1]
    line = one_line(reasons.summary())
    if len(_REASONS_LINES) >= _REASONS_KEPT:
        # The oldest go first: clearing all would drop the lines of the block being delivered.
        _REASONS_LINES.popitem(last=False)
    _REASONS_LINES[id(reasons)] = (reasons, line)
    return line


# A block's items (digest.pipeline.BLOCK profiles of up to 20 papers) between its feeds and its
# emails; 3.8 µs a line made again.
_REASONS_KEPT = 25_000
_REASONS_LINES: OrderedDict[int, tuple[Reasons, str]] = OrderedDict()


# -- the subject line -------------------------------------------------------------------------


def subject(digest: Digest, shortest_keywords: int = 2) -> str:
    """'12 new papers for you · Nov 22 (diffusion, RL)': count, day, the most matched keywords."""
    count = len(digest.items)
    when = f"{digest.day:%b} {digest.day.day}"
    if not count:
        return f"No new papers for you · {when}"
    noun = "paper" if count == 1 else "papers"
    tally: Counter[str] = Counter()
    for item in digest.items:
        tally.update(dict.fromkeys(item.reasons.keywords, 1))
    top = [one_line(term)[:30] for term, _ in tally.most_common(shortest_keywords)]
    topics = f" ({', '.join(top)})" if top else ""
    return f"{count} new {noun} for you · {when}{topics}"


def day_label(digest: Digest) -> str:
    """'Monday, Nov 23' or 'Nov 20 – Nov 23' when a digest covers several days."""
    zone = ZoneInfo(digest.timezone)
    first = digest.since.astimezone(zone).date()
    if (digest.day - first).days > 1:
        return f"{first:%b} {first.day} – {digest.day:%b} {digest.day.day}"
    return f"{digest.day:%A}, {digest.day:%b} {digest.day.day}"


# Words an ALL-CAPS title keeps in small letters when it is given sentence case.
_SMALL_WORDS = frozenset(
    {
        *("a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "in", "into", "is"),
        *("of", "on", "or", "the", "to", "via", "vs", "with", "without"),
    }
)
_LETTERS = re.compile(r"[^\W\d_]")


def display_title(title: str) -> str:
    """A title as a reader sees it: one line, and an ALL-CAPS title (as bioRxiv and some feeds
    send them) in sentence case. Short words that are not English ("DNA", "MRI") and words with
    digits ("COVID-19", "CAS9") keep their capitals: they are usually names."""
    text = one_line(title)
    letters = _LETTERS.findall(text)
    if len(letters) < 12 or sum(ch.isupper() for ch in letters) < 0.9 * len(letters):
        return text
    words = []
    for word in text.split(" "):
        bare = word.strip("()[]{}.,:;!?\"'").casefold()
        keep = any(ch.isdigit() for ch in word) or (len(bare) <= 3 and bare not in _SMALL_WORDS)
        words.append(word if keep else word.lower())
    cased = " ".join(words)
    # Capitals where a sentence starts: the title's first letter, and after a colon.
    return re.sub(r"(^|[:?!]\s+)([^\W\d_])", lambda m: m.group(1) + m.group(2).upper(), cased)


def count(number: int, noun: str, plural: str | None = None) -> str:
    """'1 upvote', '12 upvotes', '1,204 new papers', '2 entries': a number with its noun, plural
    when it is (`plural` for a noun that takes more than an s)."""
    return f"{number:,} {noun if number == 1 else plural or noun + 's'}"


def source_names(digest: Digest) -> list[str]:
    return [note.source for note in digest.sources if not note.failed]


