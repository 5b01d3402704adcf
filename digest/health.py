"""Is a source healthy? A pure judgement over what it parsed now and in its recent runs.

A listing that suddenly yields nothing, or far fewer records than usual, has almost always changed its
layout under the parser: it is reported as such, never mistaken for a quiet day.
"""

from __future__ import annotations

from collections.abc import Sequence
from statistics import median

from digest.models import SourceRun

HISTORY_RUNS = 10  # how many recent good runs make "usual"
SHARP_DROP = 0.5  # under half the usual count is suspicious


def recent_median(history: Sequence[SourceRun]) -> float | None:
    """The median record count of the source's recent good runs (those that parsed something)."""
    counts = [run.parsed for run in history if run.status == "ok" and run.parsed > 0][:HISTORY_RUNS]
    return median(counts) if counts else None


def layout_problem(parsed: int, usual: float | None) -> str | None:
    """Why a record count looks like a layout change, or None when it looks normal."""
    if parsed == 0:
        return "probable layout change: the listing yielded no records"
    if usual is not None and parsed < usual * SHARP_DROP:
        return (
            f"probable layout change: {parsed} records, under half the recent median of {usual:g}"
        )
    return None
