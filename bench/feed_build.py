"""Benchmark (issue 16): build N profiles' RSS + Atom feeds through digest.feeds.profile_feed.

    python bench/feed_build.py [--profiles 2000] [--items 18] [--repeat 5] [--days 7]

Inputs as a run of `digest run` sees them: the shared corpus's last listing day (531 papers, from
../shared/corpus) as the new papers, and per profile one digest of `--items` of them with
reasons, as bench/render_speed.py makes them (the same Paper objects in every digest, as the
store's paper cache gives them). One Renderer per repeat, as one per run: each paper's card is
made once a repeat, each profile's feedback links are signed afresh.

Prints medians over the repeats of:
    feeds        profile_feed for every profile (RSS + Atom bytes): the whole feed build
    item HTML    only the items' HTML (Renderer.item_parts, with the feedback links), fresh Renderer
    tokens       only the feedback links (FeedbackLinks.urls, two signed tokens a paper)
and "the rest" (feeds minus item HTML): the feed library's entries and serialisation.

--days D (steady state, as a run on a feed's D-th day): each profile has D digests, one a day (the
same papers' days drawn afresh per day, from the corpus's last D listing days), and yesterday's
files (its D-1 older days, built first and written to a temporary folder, not timed). Prints the
medians of building the D-day feeds rendered whole (as before issue 16's splice) and as a run
builds them, with yesterday's files read back through feeds.Folder and their days spliced.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from rank_speed import DEFAULT_CORPUS, load_papers
from render_speed import BASE, KEYS, make_digests

from digest import feeds
from digest.models import Digest, Paper
from digest.render import FeedbackLinks, Renderer

NEW_PAPERS = 531  # the corpus's last listing day, as in bench/job_speed.py


def build_feeds(digests: list[Digest]) -> int:
    renderer = Renderer()
    made = 0
    for digest in digests:
        feedback = FeedbackLinks(digest.profile, BASE, tuple(KEYS))
        built = feeds.profile_feed(digest.profile, [digest], renderer, f"{BASE}/feeds", 200, feedback)
        made += len(built.rss) + len(built.atom)
    return made


def item_html(digests: list[Digest]) -> int:
    renderer = Renderer()
    made = 0
    for digest in digests:
        feedback = FeedbackLinks(digest.profile, BASE, tuple(KEYS))
        for position, item in enumerate(digest.items, start=1):
            before, card, after = renderer.item_parts(item, position, feedback)
            made += len(before) + len(card) + len(after)
    return made


def tokens(digests: list[Digest]) -> int:
    made = 0
    for digest in digests:
        feedback = FeedbackLinks(digest.profile, BASE, tuple(KEYS))
        for item in digest.items:
            more, less = feedback.urls(item.paper.key)
            made += len(more) + len(less)
    return made


def week_of_digests(papers: list[Paper], profiles: int, items: int, days: int) -> list[list[Digest]]:
    """Per profile, its digests of `days` days, newest first (day 0 is make_digests' day)."""
    per_day = []
    for back in range(days):
        listing = papers[len(papers) - NEW_PAPERS * (back + 1) : len(papers) - NEW_PAPERS * back]
        shift = timedelta(days=back)
        per_day.append([
            replace(d, day=d.day - shift, until=d.until - shift, since=d.since - shift)
            for d in make_digests(listing, profiles, items, seed=back)
        ])
    return [list(days_of) for days_of in zip(*per_day, strict=True)]


def steady_state(weeks: list[list[Digest]], repeat: int) -> tuple[float, float]:
    """Medians of building every profile's feed of all its days, rendered whole and spliced
    from yesterday's files (written first, untimed)."""
    with tempfile.TemporaryDirectory(prefix="feed-build-") as folder:
        target = feeds.Folder(Path(folder))
        renderer = Renderer()
        for digests in weeks:
            feedback = FeedbackLinks(digests[0].profile, BASE, tuple(KEYS))
            yesterday = feeds.profile_feed(digests[0].profile, digests[1:], renderer, f"{BASE}/feeds", 200, feedback)
            target.publish({yesterday.rss_path: yesterday.rss, yesterday.atom_path: yesterday.atom})

        def build(splice: bool) -> None:
            renderer = Renderer()  # one a run
            for digests in weeks:
                profile = digests[0].profile
                feedback = FeedbackLinks(profile, BASE, tuple(KEYS))
                rss_path, atom_path = feeds.profile_feed_paths(profile)
                previous = feeds.WrittenFeed(target.read(rss_path), target.read(atom_path)) if splice else None
                feeds.profile_feed(profile, digests, renderer, f"{BASE}/feeds", 200, feedback, previous)

        whole, spliced = [], []
        for _ in range(repeat):
            for splice, runs in ((False, whole), (True, spliced)):  # interleaved
                began = time.perf_counter()
                build(splice)
                runs.append(time.perf_counter() - began)
    return statistics.median(whole), statistics.median(spliced)


def median_of(step: Callable[[list[Digest]], int], digests: list[Digest], repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        began = time.perf_counter()
        step(digests)
        runs.append(time.perf_counter() - began)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--profiles", type=int, default=2_000)
    parser.add_argument("--items", type=int, default=18)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--days", type=int, default=0, help="the steady-state figure (see above)")
    args = parser.parse_args()

    if args.days:
        weeks = week_of_digests(load_papers(args.corpus), args.profiles, args.items, args.days)
        print(f"{args.profiles:,} profiles × {args.days} days × {args.items} papers, "
              f"medians of {args.repeat}")
        whole, spliced = steady_state(weeks, args.repeat)
        per = 1000 / args.profiles
        for label, seconds in (("rendered whole", whole), ("older days spliced", spliced)):
            print(f"  {label:<26} {seconds:6.2f} s  {seconds * per:6.2f} ms per profile")
        return
    papers = load_papers(args.corpus)[-NEW_PAPERS:]
    digests = make_digests(papers, args.profiles, args.items)
    print(f"{args.profiles:,} profiles × {args.items} papers (from {len(papers):,} papers), "
          f"medians of {args.repeat}")
    whole = median_of(build_feeds, digests, args.repeat)
    html = median_of(item_html, digests, args.repeat)
    signed = median_of(tokens, digests, args.repeat)
    per = 1000 / args.profiles
    for label, seconds in (
        ("feeds (RSS + Atom)", whole),
        ("  item HTML", html),
        ("    of which tokens", signed),
        ("  the rest (entries, XML)", whole - html),
    ):
        print(f"  {label:<26} {seconds:6.2f} s  {seconds * per:6.2f} ms per profile")


if __name__ == "__main__":
    main()
