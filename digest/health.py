"""Is a source healthy? A pure judgement over what it parsed now and in its recent runs.

Empty is not broken. A well-formed answer with no entries (an arXiv feed on a Saturday, bioRxiv's
"no posts found", Hugging Face's `[]`) is `empty`: a quiet day, never a problem. A layout change is
when the page's shape is wrong: the markers a parser needs are missing (it raises LayoutChanged),
the answer holds entries none of which could be read, or the count collapsed to under half the
recent median on a day the source's calendar (digest.calendars) says should have content.
"""

from __future__ import annotations

from collections.abc import Sequence
from statistics import median

from digest.models import SourceRun

HISTORY_RUNS = 10  # how many recent good runs make "usual"
SHARP_DROP = 0.5  # under half the usual count is suspicious
LAYOUT = "probable layout change"  # how every layout problem begins, said once


def recent_median(history: Sequence[SourceRun]) -> float | None:
    """The median record count of the source's recent good runs (those that parsed something)."""
    counts = [run.parsed for run in history if run.status == "ok" and run.parsed > 0][:HISTORY_RUNS]
    return median(counts) if counts else None


def judge(
    parsed: int, usual: float | None, *, unread: int = 0, expected: bool = True
) -> tuple[str, str | None]:
    """A read's status (ok, empty or layout) and its problem in words (None when there is none).

    `parsed`: records the parser gave; `usual`: the recent median; `unread`: entries the answer
    holds by its envelope (digest.sources.envelope), counted when nothing parsed; `expected`:
    the source's calendar says it should have content now.
    """
    if parsed == 0:
        if unread:
            return "layout", layout_change(
                f"the answer holds {unread} {'entry' if unread == 1 else 'entries'} "
                "but none could be read"
            )
        return "empty", None
    if usual is not None and parsed < usual * SHARP_DROP and expected:
        return "layout", layout_change(
            f"{parsed} records, under half the recent median of {usual:g}"
        )
    return "ok", None


def layout_change(reason: str) -> str:
    """A layout problem in words, with its prefix once (a parser's message may carry it)."""
    return reason if reason.startswith(LAYOUT) else f"{LAYOUT}: {reason}"
