"""Benchmark: ranking quality for personas made from real arXiv authors (not a test).

    python bench/rank_eval.py [--corpus ../shared/corpus/arxiv_cs_2026-05-01_2026-06-30.jsonl.gz]
        [--personas 60] [--seed 0] [--semantic] [--show-personas 3] [--json FILE]

The corpus is split on 2026-06-19. The papers listed before it are the history: the ranker is
fitted on them once (the stored corpus as of the split). Every listing day from the split on is a
candidate day, ranked whole for all personas in one `Ranker.rank` call.

A persona is an author with at least 5 history papers and at least 1 later paper (a seeded sample
of them). Their profile comes from the history only: 5 liked examples (their latest papers), 6
keywords (terms most of their papers share, weighted by idf over the history), their top 2
categories, their 3 most frequent co-authors as pinned authors, and 2 negative keywords from a
fixed list of common subjects that none of their papers mention. Their own name is never in it.

Relevance on a candidate day: the persona's own new papers gain 2, papers by a co-author of at
least 2 of their history papers gain 1. Only (persona, day) pairs with a relevant paper count;
metrics are averaged over those pairs: nDCG@10, MRR (first relevant paper within the top 100),
recall@10, and the share of top-10 papers holding one of the persona's negative keywords.
Targets: full nDCG@10 >= 0.45, no negative keyword in any top 10, full without authors >= 0.13.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import random
import re
import statistics
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, date, datetime
from datetime import time as dtime
from pathlib import Path

from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from digest.config import ProfileConfig
from digest.errors import DigestError
from digest.models import Paper
from digest.rank import Ranker
from digest.terms import STOP_WORDS, stem

DEFAULT_CORPUS = (
    Path(__file__).resolve().parents[2] / "shared/corpus/arxiv_cs_2026-05-01_2026-06-30.jsonl.gz"
)
SPLIT = date(2026, 6, 19)
TOP = 10  # the cut-off of nDCG, recall and the negative-keyword share
DEPTH = 100  # the ranking depth MRR looks at (each profile's max_items)
MIN_HISTORY = 5
MIN_FUTURE = 1
EXAMPLES = 5
KEYWORDS = 6
CATEGORIES = 2
PINNED = 3
NEGATIVES = 2
# Common subjects of cs papers. Each persona gets the first 2 (after a seeded shuffle) that none of
# their papers, before or after the split, mention.
NEGATIVE_POOL = (
    "quantum", "blockchain", "robot", "speech", "graph neural", "federated", "medical", "traffic",
    "molecular", "autonomous driving", "recommendation", "point cloud", "wireless", "legal",
    "music", "protein", "satellite", "financial", "education", "cryptography",
)  # fmt: skip
_STOP = frozenset(ENGLISH_STOP_WORDS) | STOP_WORDS
_LATEX = re.compile(r"\\[A-Za-z]+")
_URL = re.compile(r"\S+\.(?:com|org|io|net|edu)\S*|\S*(?:https?://|www\.)\S*")
_LETTERS = re.compile(r"[a-z]+")


def load_papers(path: Path) -> list[Paper]:
    """The corpus as Papers, in listing order."""
    papers = []
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        for line in lines:
            item = json.loads(line)
            listed = date.fromisoformat(item["listed"])
            papers.append(
                Paper(
                    key=item["id"],
                    title=item["title"],
                    first_seen=datetime.combine(listed, dtime(21), tzinfo=UTC),
                    first_source="arxiv-cs",
                    first_listing="https://arxiv.org/list/cs/new",
                    arxiv_id=item["id"],
                    abstract=item["abstract"],
                    authors=tuple(item["authors"]),
                    categories=tuple(item["categories"]),
                    primary_category=item["categories"][0] if item["categories"] else None,
                    listed=listed,
                    sources=("arxiv-cs",),
                )
            )
    papers.sort(key=lambda p: (p.first_seen, p.key))
    return papers


# -- personas ---------------------------------------------------------------------------------------


def terms(text: str) -> set[str]:
    """A text's candidate keywords: its unigrams and bigrams (lowercased, plurals folded,
    alphabetic, at least 3 letters, no stop words; a bigram never spans one; URLs left out)."""
    text = _LATEX.sub(" ", _URL.sub(" ", text)).lower()
    found: set[str] = set()
    previous: str | None = None
    for token in _LETTERS.findall(text):
        if len(token) < 3 or token in _STOP:
            previous = None
            continue
        word = stem(token)
        found.add(word)
        if previous is not None:
            found.add(f"{previous} {word}")
        previous = word
    return found


def text_of(paper: Paper) -> str:
    return f"{paper.title} {paper.abstract}"


def negative_pattern(phrase: str) -> re.Pattern[str]:
    """'graph neural' -> matches 'Graph Neural', 'graphs neural', 'graph-neural' (any case)."""
    words = (re.escape(word) + "(?:s|es)?" for word in phrase.split())
    return re.compile(r"\b" + r"\W+".join(words) + r"\b", re.IGNORECASE)


def mentions(paper: Paper, pattern: re.Pattern[str]) -> bool:
    return pattern.search(text_of(paper)) is not None


@dataclass(frozen=True, slots=True)
class Persona:
    name: str
    history: tuple[Paper, ...]  # their papers before the split, oldest first
    future: tuple[Paper, ...]  # their papers from the split on
    profile: ProfileConfig  # the full profile; the methods take parts of it
    close_coauthors: frozenset[str]  # co-authors of at least 2 of their history papers

    def gains(self, papers: Sequence[Paper]) -> dict[str, int]:
        """The relevant papers among `papers`: their own (2), a close co-author's (1)."""
        found = {}
        for paper in papers:
            if self.name in paper.authors:
                found[paper.key] = 2
            elif self.close_coauthors.intersection(paper.authors):
                found[paper.key] = 1
        return found


def names(paper: Paper) -> set[str]:
    """A paper's authors, without the listing's debris (an 'author' named ':')."""
    return {name for name in paper.authors if any(c.isalpha() for c in name)}


def make_personas(
    history: Sequence[Paper], future: Sequence[Paper], count: int, seed: int
) -> list[Persona]:
    """A seeded sample of the eligible authors (sorted by name first, so the sample is stable)."""
    papers_before: dict[str, list[Paper]] = defaultdict(list)
    papers_after: dict[str, list[Paper]] = defaultdict(list)
    for paper in history:
        for author in names(paper):
            papers_before[author].append(paper)
    for paper in future:
        for author in names(paper):
            papers_after[author].append(paper)
    eligible = sorted(
        author
        for author, theirs in papers_before.items()
        if len(theirs) >= MIN_HISTORY and len(papers_after.get(author, ())) >= MIN_FUTURE
    )
    chosen = sorted(random.Random(seed).sample(eligible, min(count, len(eligible))))

    document_frequency = Counter(term for paper in history for term in terms(text_of(paper)))
    idf = {term: math.log(len(history) / df) for term, df in document_frequency.items()}
    negatives = {phrase: negative_pattern(phrase) for phrase in NEGATIVE_POOL}
    personas = []
    for number, name in enumerate(chosen):
        before, after = papers_before[name], papers_after[name]
        coauthors = Counter(a for paper in before for a in names(paper) if a != name)
        by_count = sorted(coauthors, key=lambda a: (-coauthors[a], a))
        pool = list(NEGATIVE_POOL)
        random.Random(f"{seed}:{name}").shuffle(pool)
        # Absent from their work: none of their papers, history or future, mentions them.
        absent = [
            phrase
            for phrase in pool
            if not any(mentions(paper, negatives[phrase]) for paper in (*before, *after))
        ]
        profile = ProfileConfig(
            name=f"persona-{number:02d}",
            keywords=shared_terms(before, idf, name),
            authors=tuple(by_count[:PINNED]),
            categories=top_categories(before),
            examples=tuple(paper.key for paper in before[-EXAMPLES:]),
            negative_keywords=tuple(absent[:NEGATIVES]),
            max_items=DEPTH,
        )
        personas.append(
            Persona(
                name=name,
                history=tuple(before),
                future=tuple(after),
                profile=profile,
                close_coauthors=frozenset(a for a in by_count if coauthors[a] >= 2),
            )
        )
    return personas


def shared_terms(papers: Sequence[Paper], idf: dict[str, float], name: str) -> tuple[str, ...]:
    """The terms in the most of `papers`, weighted by idf so that 'model' loses. Terms shared by at
    least two papers come first, and among those the ones found in a title: a word a person would
    pick, not the abstracts' boilerplate ('extensive experiments'). A bigram and its own words are
    never both taken; nor is a word of the person's `name`."""
    in_papers = Counter(term for paper in papers for term in terms(text_of(paper)))
    in_titles = {term for paper in papers for term in terms(paper.title)}
    own_name = set(_LETTERS.findall(name.lower()))

    def rank(term: str) -> tuple[bool, bool, float, str]:
        count = in_papers[term]
        return count < 2, term not in in_titles, -count * idf.get(term, 0.0), term

    chosen: list[str] = []
    for term in sorted(in_papers, key=rank):
        words = set(term.split())
        if words & own_name:
            continue
        overlaps = any(
            (" " in term) != (" " in taken) and (words & set(taken.split())) for taken in chosen
        )
        if not overlaps:
            chosen.append(term)
        if len(chosen) == KEYWORDS:
            break
    return tuple(chosen)


def top_categories(papers: Sequence[Paper]) -> tuple[str, ...]:
    """The most frequent primary categories; any category breaks ties and fills up."""
    primary = Counter(p.primary_category for p in papers if p.primary_category)
    listed = Counter(c for p in papers for c in p.categories)
    ordered = sorted(listed, key=lambda c: (-primary[c], -listed[c], c))
    return tuple(ordered[:CATEGORIES])


# -- metrics ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PairScore:
    ndcg: float
    reciprocal_rank: float
    recall: float
    top: int  # papers in the top 10 (fewer when the ranker had fewer with a positive score)
    top_negative: int  # of those, holding a negative keyword


def score_pair(
    ranked: Sequence[Paper], gains: dict[str, int], negatives: Sequence[re.Pattern[str]]
) -> PairScore:
    top = ranked[:TOP]
    dcg = sum(gains.get(p.key, 0) / math.log2(rank + 2) for rank, p in enumerate(top))
    ideal = sorted(gains.values(), reverse=True)[:TOP]
    idcg = sum(gain / math.log2(rank + 2) for rank, gain in enumerate(ideal))
    first = next((rank for rank, p in enumerate(ranked[:DEPTH], 1) if p.key in gains), None)
    return PairScore(
        ndcg=dcg / idcg,
        reciprocal_rank=1 / first if first else 0.0,
        recall=sum(p.key in gains for p in top) / len(gains),
        top=len(top),
        top_negative=sum(any(mentions(p, pattern) for pattern in negatives) for p in top),
    )


@dataclass(frozen=True, slots=True)
class Row:
    method: str
    ndcg: float
    mrr: float
    recall: float
    negative_share: float
    pairs: int
    seconds: float


# A method: (day's papers, personas) -> each persona's ranking (by profile name), best first.
Method = Callable[[Sequence[Paper], Sequence[Persona]], dict[str, Sequence[Paper]]]


def evaluate(
    label: str, method: Method, days: dict[date, list[Paper]], personas: Sequence[Persona]
) -> Row:
    patterns = {
        p.name: [negative_pattern(n) for n in p.profile.negative_keywords] for p in personas
    }
    scores: list[PairScore] = []
    seconds = 0.0
    for papers in days.values():
        began = time.perf_counter()
        rankings = method(papers, personas)
        seconds += time.perf_counter() - began
        for persona in personas:
            gains = persona.gains(papers)
            if gains:
                ranked = rankings[persona.profile.name]
                scores.append(score_pair(ranked, gains, patterns[persona.name]))
    return Row(
        method=label,
        ndcg=statistics.fmean(s.ndcg for s in scores),
        mrr=statistics.fmean(s.reciprocal_rank for s in scores),
        recall=statistics.fmean(s.recall for s in scores),
        negative_share=sum(s.top_negative for s in scores) / max(1, sum(s.top for s in scores)),
        pairs=len(scores),
        seconds=seconds,
    )


def random_method(seed: int) -> Method:
    rng = random.Random(seed)

    def rank(papers: Sequence[Paper], personas: Sequence[Persona]) -> dict[str, Sequence[Paper]]:
        return {p.profile.name: rng.sample(list(papers), min(DEPTH, len(papers))) for p in personas}

    return rank


def ranker_method(ranker: Ranker, part: Callable[[ProfileConfig], ProfileConfig]) -> Method:
    def rank(papers: Sequence[Paper], personas: Sequence[Persona]) -> dict[str, Sequence[Paper]]:
        results = ranker.rank(papers, [part(p.profile) for p in personas])
        return {name: [scored.paper for scored in ranked] for name, ranked in results.items()}

    return rank


PARTS: dict[str, Callable[[ProfileConfig], ProfileConfig]] = {
    "keywords only": lambda p: replace(p, authors=(), categories=(), examples=()),
    "examples only": lambda p: replace(p, keywords=(), authors=(), categories=()),
    "full": lambda p: p,
    "full, no authors": lambda p: replace(p, authors=()),
}


def show(persona: Persona) -> None:
    profile = persona.profile
    print(
        f"{profile.name}: {persona.name} ({len(persona.history)} before, {len(persona.future)} after)"
    )
    print(f"  keywords:   {', '.join(profile.keywords)}")
    print(f"  categories: {', '.join(profile.categories)}")
    print(f"  authors:    {'; '.join(profile.authors)}")
    print(f"  negatives:  {', '.join(profile.negative_keywords)}")
    titles = {paper.key: paper.title for paper in persona.history}
    for key in profile.examples:
        print(f"  example:    {key} {titles[key][:80]}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--personas", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--semantic", action="store_true", help="also rank with sentence embeddings"
    )
    parser.add_argument(
        "--show-personas", type=int, default=0, metavar="N", help="print N profiles"
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the figures here")
    args = parser.parse_args()

    began = time.perf_counter()
    papers = load_papers(args.corpus)
    history = [p for p in papers if p.listed and p.listed < SPLIT]
    days: dict[date, list[Paper]] = defaultdict(list)
    for paper in papers:
        if paper.listed and paper.listed >= SPLIT:
            days[paper.listed].append(paper)
    future = [p for day in days.values() for p in day]
    personas = make_personas(history, future, args.personas, args.seed)
    print(
        f"corpus: {len(papers)} papers; history {len(history)} before {SPLIT}, "
        f"{len(future)} candidates over {len(days)} listing days"
    )
    print(f"personas: {len(personas)} (built in {time.perf_counter() - began:.1f} s with loading)")
    for persona in personas[: args.show_personas]:
        show(persona)

    began = time.perf_counter()
    ranker = Ranker.fit(history)
    print(f"fit on the history: {time.perf_counter() - began:.1f} s")
    rows = [evaluate("random", random_method(args.seed), days, personas)]
    rows += [
        evaluate(label, ranker_method(ranker, part), days, personas)
        for label, part in PARTS.items()
    ]
    skipped = None
    if args.semantic:
        began = time.perf_counter()
        try:
            semantic = Ranker.fit(history, semantic=True)
        except DigestError as exc:
            skipped = str(exc)
            print(f"semantic: skipped ({skipped})")
        else:
            print(f"fit with the semantic extra: {time.perf_counter() - began:.1f} s")
            rows.append(
                evaluate("full + semantic", ranker_method(semantic, PARTS["full"]), days, personas)
            )

    print(f"\n{len(personas)} personas, {rows[0].pairs} (persona, day) pairs with a relevant paper")
    print(f"MRR: first relevant paper within the top {DEPTH} (0 when none)\n")
    print(f"| method | nDCG@{TOP} | MRR | recall@{TOP} | neg@{TOP} share | pairs | wall time |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row.method} | {row.ndcg:.3f} | {row.mrr:.3f} | {row.recall:.3f} "
            f"| {row.negative_share:.3f} | {row.pairs} | {row.seconds:.2f} s |"
        )
    by_method = {row.method: row for row in rows}
    ranked_rows = [row for row in rows if row.method != "random"]
    print(
        f"\ntargets: full nDCG@{TOP} >= 0.45 (got {by_method['full'].ndcg:.3f}); "
        f"no negative keyword in any top {TOP} (worst share "
        f"{max(row.negative_share for row in ranked_rows):.3f}); "
        f"full, no authors >= 0.13 (got {by_method['full, no authors'].ndcg:.3f})"
    )
    if args.json:
        figures = {
            "corpus": str(args.corpus),
            "split": SPLIT.isoformat(),
            "seed": args.seed,
            "personas": len(personas),
            "pairs": rows[0].pairs,
            "rows": [asdict(row) for row in rows],
            "semantic_skipped": skipped,
        }
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
