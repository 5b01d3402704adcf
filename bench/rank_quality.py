"""Benchmark: ranking quality on personas built from real arXiv authors (not a test).

    python bench/rank_quality.py [--personas 60] [--seed 0] [--semantic] [--show-personas 3]

From the shared corpus (14,018 arXiv cs papers with their listing day), split on 2026-06-19:
- a persona is an author with at least 5 papers listed before the split and at least 1 after;
- their profile is built from the history only: 5 liked examples (their latest papers), 6 keywords
  (terms their papers share, weighted by rarity in the corpus), their top 2 categories, their 3
  most frequent co-authors as pinned authors, and 2 negative keywords absent from all their work.
  The persona's own name is never in the profile;
- candidates are each later listing day's papers; relevant: the persona's own new papers (gain 2)
  and papers by co-authors who appear on at least 2 of their history papers (gain 1);
- only (persona, day) pairs with at least one relevant paper count; metrics are averaged over them.

Prints nDCG@10, MRR (first relevant paper within the top 100), recall@10 and the share of top-10
items holding one of the persona's negative keywords, for: random, keywords only, examples only,
the full model, the full model without colleagues of pinned authors, the full model without pinned
authors (and so without colleagues), and (with --semantic) the full model with
sentence embeddings. Targets: full nDCG@10 >= 0.45, no negative keyword in any top 10, full
without authors >= 0.13.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import random
import re
import statistics
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from rank_speed import DEFAULT_CORPUS, load_papers

from digest.config import ProfileConfig
from digest.embed import Embedder, PaperVectors, load_embedder
from digest.models import Feedback, Paper, Reasons, ScoredPaper
from digest.rank import Ranker
from digest.terms import STOP_WORDS

SPLIT = date(2026, 6, 19)
DEPTH = 100  # the ranking depth MRR looks at
# Common subjects of cs papers; each persona gets the first 2 (after a seeded shuffle) that none
# of their papers mention.
NEGATIVE_POOL = (
    "quantum", "blockchain", "robot", "speech", "graph neural", "federated", "medical", "traffic",
    "molecular", "autonomous driving", "recommendation", "point cloud", "wireless", "legal",
    "music", "protein", "satellite", "financial", "education", "cryptography",
)  # fmt: skip
# Words too generic to be anyone's interest, on top of the stop words.
_GENERIC_WORDS = (
    "paper propose proposed proposes approach method methods model models results show shows "
    "present presents novel based using use used new task tasks data performance framework "
    "work study existing also however learning large different across various well can first "
    "two one three significantly demonstrate demonstrates achieve achieves improve improves "
    "improved introduce introduces problem extensive experiments experimental effectively "
    "effective future research advanced deploy tackle address key recent recently remains "
    "challenging challenge challenges state-of-the-art outperforms including provide "
    "provides enable enables often without while strong code available publicly significant "
    "further leverage leverages"
)
GENERIC = frozenset(_GENERIC_WORDS.split())
_WORD = re.compile(r"[a-z][a-z-]+")


@dataclass(frozen=True)
class Persona:
    author: str
    history: tuple[Paper, ...]
    future: tuple[Paper, ...]
    profile: ProfileConfig
    coauthors: frozenset[str]  # on at least 2 of their history papers
    negatives: tuple[re.Pattern[str], ...]


def terms_of(text: str) -> set[str]:
    """Unigrams and adjacent bigrams of meaningful words, as a person would type them."""
    words = [w.strip("-") for w in _WORD.findall(text.lower())]
    words = [w if w not in STOP_WORDS and w not in GENERIC and len(w) > 2 else "" for w in words]
    unigrams = {w for w in words if w}
    bigrams = {f"{a} {b}" for a, b in itertools.pairwise(words) if a and b}
    return unigrams | bigrams


def negative_pattern(term: str) -> re.Pattern[str]:
    """A negative keyword as a regex on title + abstract: each word, plural allowed."""
    words = r"\s+".join(rf"{re.escape(w)}(?:s|es)?" for w in term.split())
    return re.compile(rf"\b{words}\b", re.IGNORECASE)


def is_name(author: str) -> bool:
    """The corpus has junk author entries such as ':'; they are nobody's co-author."""
    return any(ch.isalpha() for ch in author)


def build_personas(papers: list[Paper], count: int, seed: int) -> list[Persona]:
    history = [p for p in papers if p.listed and p.listed < SPLIT]
    future = [p for p in papers if p.listed and p.listed >= SPLIT]
    by_author_history: dict[str, list[Paper]] = defaultdict(list)
    by_author_future: dict[str, list[Paper]] = defaultdict(list)
    for paper in history:
        for author in filter(is_name, paper.authors):
            by_author_history[author].append(paper)
    for paper in future:
        for author in filter(is_name, paper.authors):
            by_author_future[author].append(paper)
    eligible = sorted(
        a for a, ps in by_author_history.items() if len(ps) >= 5 and a in by_author_future
    )
    chosen = sorted(random.Random(seed).sample(eligible, min(count, len(eligible))))

    document_frequency: Counter[str] = Counter()
    for paper in history:
        document_frequency.update(terms_of(f"{paper.title} {paper.abstract}"))
    total = len(history)
    personas = []
    for author in chosen:
        own = sorted(by_author_history[author], key=lambda p: (p.listed, p.key))
        later = tuple(by_author_future[author])
        shared: Counter[str] = Counter()
        for paper in own:
            shared.update(terms_of(f"{paper.title} {paper.abstract}"))
        scored = sorted(
            (
                (n * math.log(total / document_frequency[term]), term)
                for term, n in shared.items()
                if n >= 2 and author.lower() not in term  # never the persona's name
            ),
            reverse=True,
        )
        keywords: list[str] = []
        for _, term in scored:
            overlaps = any(term in k.split() or k in term.split() for k in keywords)
            if not overlaps:
                keywords.append(term)
            if len(keywords) == 6:
                break
        categories = Counter(c for p in own for c in p.categories)
        coauthor_counts = Counter(a for p in own for a in p.authors if a != author and is_name(a))
        text_of_work = " ".join(f"{p.title} {p.abstract}" for p in (*own, *later))
        pool = list(NEGATIVE_POOL)
        random.Random(f"{seed}:{author}").shuffle(pool)
        negatives = [t for t in pool if not negative_pattern(t).search(text_of_work)][:2]
        profile = ProfileConfig(
            name=f"persona-{len(personas)}",
            keywords=tuple(keywords),
            authors=tuple(a for a, _ in coauthor_counts.most_common(3)),
            categories=tuple(c for c, _ in categories.most_common(2)),
            examples=tuple(p.key for p in own[-5:]),
            negative_keywords=tuple(negatives),
            max_items=DEPTH,
        )
        personas.append(
            Persona(
                author=author,
                history=tuple(own),
                future=later,
                profile=profile,
                coauthors=frozenset(a for a, n in coauthor_counts.items() if n >= 2),
                negatives=tuple(negative_pattern(t) for t in negatives),
            )
        )
    return personas


def gain(paper: Paper, persona: Persona) -> int:
    if persona.author in paper.authors:
        return 2
    return 1 if persona.coauthors.intersection(paper.authors) else 0


@dataclass
class Scores:
    ndcg: list[float]
    mrr: list[float]
    recall: list[float]
    top10_items: int = 0
    top10_negative: int = 0
    top10_off_topic: int = 0  # picks whose reasons show no topical evidence at all


Ranked = dict[str, list[ScoredPaper]]
RankDay = Callable[[list[Paper], list[Persona]], Ranked]


def off_topic(item: ScoredPaper) -> bool:
    """The reasons a reader sees hold nothing about the topic: no keyword, author, colleague,
    similar liked paper or learned preference, only categories or upvotes."""
    reasons = item.reasons
    learned = dict(reasons.parts).get("learned", 0.0)
    return not (
        reasons.keywords
        or reasons.authors
        or reasons.colleagues
        or reasons.liked_authors
        or reasons.similar_to
        or learned > 0
    )


def evaluate(rank_day: RankDay, personas: list[Persona], days: dict[date, list[Paper]]) -> Scores:
    scores = Scores([], [], [])
    for day in sorted(days):
        candidates = days[day]
        rankings = rank_day(candidates, personas)
        for persona in personas:
            gains = {p.key: gain(p, persona) for p in candidates}
            relevant = sorted((g for g in gains.values() if g), reverse=True)
            if not relevant:
                continue
            items = rankings[persona.profile.name][:DEPTH]
            scores.top10_off_topic += sum(1 for item in items[:10] if off_topic(item))
            ranked = [item.paper for item in items]
            top10 = ranked[:10]
            dcg = sum(gains[p.key] / math.log2(i + 2) for i, p in enumerate(top10))
            ideal = sum(g / math.log2(i + 2) for i, g in enumerate(relevant[:10]))
            scores.ndcg.append(dcg / ideal)
            first = next((i for i, p in enumerate(ranked) if gains[p.key]), None)
            scores.mrr.append(0.0 if first is None else 1.0 / (first + 1))
            scores.recall.append(sum(1 for p in top10 if gains[p.key]) / len(relevant))
            scores.top10_items += len(top10)
            scores.top10_negative += sum(
                1
                for p in top10
                if any(n.search(f"{p.title} {p.abstract}") for n in persona.negatives)
            )
    return scores


def ranker_method(ranker: Ranker, shape: Callable[[ProfileConfig], ProfileConfig]) -> RankDay:
    def rank_day(candidates: list[Paper], personas: list[Persona]) -> Ranked:
        profiles = [shape(p.profile) for p in personas]
        return {name: list(items) for name, items in ranker.rank(candidates, profiles).items()}

    return rank_day


def random_method(seed: int) -> RankDay:
    rng = random.Random(seed)
    topical = Reasons(keywords=("(random)",))  # random picks are not what the share measures

    def rank_day(candidates: list[Paper], personas: list[Persona]) -> Ranked:
        return {
            p.profile.name: [
                ScoredPaper(c, 0.0, topical) for c in rng.sample(candidates, len(candidates))
            ]
            for p in personas
        }

    return rank_day


def show(personas: Sequence[Persona], how_many: int) -> None:
    for persona in personas[:how_many]:
        profile = persona.profile
        print(
            f"{profile.name}: {len(persona.history)} papers before the split, {len(persona.future)} after"
        )
        print(f"  keywords   {list(profile.keywords)}")
        print(f"  categories {list(profile.categories)}")
        print(f"  authors    {list(profile.authors)}")
        print(f"  examples   {list(profile.examples)}")
        print(f"  negatives  {list(profile.negative_keywords)}")


def feedback_curve(
    ranker: Ranker,
    personas: list[Persona],
    days: dict[date, list[Paper]],
    shape: Callable[[ProfileConfig], ProfileConfig],
    count: int = 6,
) -> list[float]:
    """nDCG@10 on each of the first `count` days of a simulated reader who, each day, marks
    "more" on the relevant papers of their top 10 and "less" on two irrelevant ones."""
    marks: dict[str, tuple[list[str], list[str]]] = {p.profile.name: ([], []) for p in personas}
    curve = []
    for day in sorted(days)[:count]:
        candidates = days[day]
        profiles = [shape(p.profile) for p in personas]
        feedback = {
            name: Feedback(more=tuple(more), less=tuple(less))
            for name, (more, less) in marks.items()
        }
        ranked = ranker.rank(candidates, profiles, feedback)
        ndcgs = []
        for persona in personas:
            gains = {p.key: gain(p, persona) for p in candidates}
            top10 = [item.paper for item in ranked[persona.profile.name][:10]]
            more, less = marks[persona.profile.name]
            more.extend(p.key for p in top10 if gains[p.key])
            less.extend([p.key for p in top10 if not gains[p.key]][:2])
            relevant = sorted((g for g in gains.values() if g), reverse=True)
            if relevant:
                dcg = sum(gains[p.key] / math.log2(i + 2) for i, p in enumerate(top10))
                ideal = sum(g / math.log2(i + 2) for i, g in enumerate(relevant[:10]))
                ndcgs.append(dcg / ideal)
        curve.append(statistics.fmean(ndcgs) if ndcgs else 0.0)
    return curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--personas", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--lexical", action="store_true", help="rank without sentence embeddings (words only)"
    )
    parser.add_argument(
        "--model",
        choices=("minilm", "wordllama"),
        default="minilm",
        help="the shipped MiniLM (default) or a static-embedding model to compare",
    )
    parser.add_argument(
        "--curves", action="store_true", help="also the cold-start and feedback curves"
    )
    parser.add_argument("--show-personas", type=int, default=0, metavar="N")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()

    import logging

    logging.disable(logging.WARNING)  # personas are well-formed; warnings would only be noise
    papers = load_papers(args.corpus)
    personas = build_personas(papers, args.personas, args.seed)
    days: dict[date, list[Paper]] = defaultdict(list)
    for paper in papers:
        if paper.listed and paper.listed >= SPLIT:
            days[paper.listed].append(paper)
    history = [p for p in papers if p.listed and p.listed < SPLIT]
    print(
        f"{len(personas)} personas; {len(history)} history papers; {len(days)} candidate days "
        f"({statistics.median(len(d) for d in days.values()):.0f} papers a day, median)"
    )
    show(personas, args.show_personas)

    vectors = None
    if not args.lexical:
        from embedding_cache import corpus_vectors

        if args.model == "wordllama":
            from embed_speed import StaticEmbedder

            embedder: Embedder = StaticEmbedder()
        else:
            embedder = load_embedder()
        vectors = PaperVectors(embedder, known=corpus_vectors(papers, embedder, args.corpus))
    began = time.perf_counter()
    ranker = Ranker.fit(history, vectors=vectors)
    print(
        f"fit on the history: {time.perf_counter() - began:.1f} s; embeddings: {embedder_name(vectors)}"
    )

    def keywords_only(p: ProfileConfig) -> ProfileConfig:
        return ProfileConfig(
            p.name, keywords=p.keywords, negative_keywords=p.negative_keywords, max_items=DEPTH
        )

    def examples_only(p: ProfileConfig) -> ProfileConfig:
        return ProfileConfig(
            p.name, examples=p.examples, negative_keywords=p.negative_keywords, max_items=DEPTH
        )

    methods: dict[str, RankDay] = {
        "random": random_method(args.seed),
        "keywords only": ranker_method(ranker, keywords_only),
        "examples only": ranker_method(ranker, examples_only),
        "full": ranker_method(ranker, lambda p: p),
        # The colleague signal finds the pinned authors' group, which usually includes the
        # persona: this row shows what the pinned authors alone give.
        "full, no colleagues": ranker_method(
            replace(ranker, weights=replace(ranker.weights, colleague=0.0)), lambda p: p
        ),
        "full, no authors": ranker_method(ranker, lambda p: replace(p, authors=())),
        # Without any author feature: no pinned authors, and the authors of the liked papers
        # do not count either. What the words and their meaning alone give.
        "no author features": ranker_method(
            replace(ranker, weights=replace(ranker.weights, liked_author=0.0)),
            lambda p: replace(p, authors=()),
        ),
        "examples only, no author features": ranker_method(
            replace(ranker, weights=replace(ranker.weights, liked_author=0.0)), examples_only
        ),
    }

    figures: dict[str, dict[str, float]] = {}
    print(
        "\n| method | nDCG@10 | MRR | recall@10 | neg@10 share | off-topic@10 share | pairs | seconds |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, method in methods.items():
        began = time.perf_counter()
        scores = evaluate(method, personas, days)
        seconds = time.perf_counter() - began
        row = {
            "ndcg@10": statistics.fmean(scores.ndcg),
            "mrr": statistics.fmean(scores.mrr),
            "recall@10": statistics.fmean(scores.recall),
            "neg@10": scores.top10_negative / max(scores.top10_items, 1),
            "off_topic@10": scores.top10_off_topic / max(scores.top10_items, 1),
            "pairs": len(scores.ndcg),
            "seconds": seconds,
        }
        figures[name] = row
        print(
            f"| {name} | {row['ndcg@10']:.3f} | {row['mrr']:.3f} | {row['recall@10']:.3f} "
            f"| {row['neg@10']:.3f} | {row['off_topic@10']:.3f} | {row['pairs']} | {seconds:.1f} |"
        )

    if args.curves:
        print("\ncold start, examples only: nDCG@10 from the N latest liked papers")
        for count in (1, 3, 10):

            def first_n(p: ProfileConfig, count: int = count) -> ProfileConfig:
                persona = next(x for x in personas if x.profile.name == p.name)
                latest = tuple(paper.key for paper in persona.history[-count:])
                return ProfileConfig(
                    p.name, examples=latest, negative_keywords=p.negative_keywords, max_items=DEPTH
                )

            scores = evaluate(ranker_method(ranker, first_n), personas, days)
            figures[f"cold start {count}"] = {"ndcg@10": statistics.fmean(scores.ndcg)}
            print(f"  {count:>2} liked: {statistics.fmean(scores.ndcg):.3f}")
        if vectors is not None:
            # Marked papers must be found in the corpus, as they are in the store.
            everything = Ranker.fit(papers, vectors=vectors)
            print("\nfeedback, examples only: nDCG@10 on days 1-6 as the reader marks more/less")
            for authors, liked_author in (
                ("", everything.weights.liked_author),
                (", no author features", 0.0),
            ):
                for label, weight in (("learning on", everything.weights.learned), ("learning off", 0.0)):
                    weights = replace(everything.weights, learned=weight, liked_author=liked_author)
                    ranker_ = replace(everything, weights=weights, learned={}, retrained=set())
                    curve = feedback_curve(ranker_, personas, days, examples_only)
                    name = f"feedback {label}{authors}"
                    figures[name] = {f"day {i + 1}": v for i, v in enumerate(curve)}
                    print(f"  {label + authors:<35}" + " ".join(f"{v:.3f}" for v in curve))

    full, text_only = figures["full"], figures["full, no authors"]
    negatives = max(
        row["neg@10"] for name, row in figures.items() if "neg@10" in row and name != "random"
    )
    off = max(
        row["off_topic@10"]
        for name, row in figures.items()
        if "off_topic@10" in row and name != "random"
    )
    print(
        f"\ntargets: full {full['ndcg@10']:.3f} (>= 0.82), "
        f"no authors {text_only['ndcg@10']:.3f} (>= 0.17), "
        f"examples only {figures['examples only']['ndcg@10']:.3f} (>= 0.16), "
        f"keywords only {figures['keywords only']['ndcg@10']:.3f} (>= 0.09), "
        f"negative keywords in top 10s {negatives:.3f} (must be 0), "
        f"off-topic in top 10s {off:.3f} (must be 0)"
    )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2), encoding="utf-8")


def embedder_name(vectors: PaperVectors | None) -> str:
    return vectors.name if vectors is not None else "none (words only)"


if __name__ == "__main__":
    main()
