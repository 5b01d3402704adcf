"""arXiv's subject categories: which ones a profile can follow, and the nearest to a typo.

The list ships in `digest/data/arxiv-categories.txt` (arXiv's category taxonomy).
"""

from __future__ import annotations

import difflib
import functools
from importlib import resources


@functools.cache
def _known() -> dict[str, str]:
    """Every category, keyed by its case-folded name: "cs.lg" -> "cs.LG"."""
    text = (resources.files("digest") / "data" / "arxiv-categories.txt").read_text("utf-8")
    names = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    return {name.casefold(): name for name in names}


def canonical(name: str) -> str | None:
    """The category as arXiv writes it ("cs.lg" -> "cs.LG"), or None when arXiv has none."""
    return _known().get(name.strip().casefold())


def nearest(name: str) -> str | None:
    """The category a mistyped name most likely meant ("cs.XX"? "physics.optic" -> physics.optics)."""
    found = difflib.get_close_matches(name.strip().casefold(), list(_known()), n=1, cutoff=0.75)
    return _known()[found[0]] if found else None
