"""Progress while a long step runs: which source is being fetched, how many mails are out.

A step reports `(phase, done, total, label)`, e.g. `("sources", 3, 11, "arxiv-lg")`. On a terminal
each phase is a bar (tqdm) on stderr that disappears when the phase ends; elsewhere (cron, a
pipe) a plain line per step, or nothing when the run's log already says each step (`digest run`
logs one line per source and per mail, as text or JSON).
"""

from __future__ import annotations

from typing import Any, Protocol, TextIO


class Progress(Protocol):
    def __call__(self, phase: str, done: int, total: int, label: str) -> None: ...


def no_progress(phase: str, done: int, total: int, label: str) -> None:
    return None


class TerminalProgress:
    """Bars on a terminal; plain lines elsewhere when `plain_lines`, else nothing."""

    def __init__(self, stream: TextIO, *, plain_lines: bool) -> None:
        self.stream = stream
        self.terminal = stream.isatty()
        self.plain_lines = plain_lines
        self.bars: dict[str, Any] = {}
        self.printed: dict[str, int] = {}  # plain lines: the last step written per phase

    def __call__(self, phase: str, done: int, total: int, label: str) -> None:
        if not self.terminal:
            # A line per finished step ("sources 3/11: arxiv-lg: ok"), not for "now fetching".
            if self.plain_lines and done > self.printed.get(phase, 0):
                self.printed[phase] = done
                print(f"{phase} {done}/{total}: {label}", file=self.stream, flush=True)
            return
        from tqdm import tqdm

        bar = self.bars.get(phase)
        if bar is None:
            bar = self.bars[phase] = tqdm(
                total=total, desc=phase, unit=f" {phase}", file=self.stream, leave=False,
                dynamic_ncols=True,
            )
        bar.set_postfix_str(label, refresh=False)
        bar.update(done - bar.n)
        if done >= total:
            bar.close()
            del self.bars[phase]
