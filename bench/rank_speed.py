"""Benchmark: rank 2,000 new papers for 10,000 profiles, and show that cost grows linearly with profiles.

    python bench/rank_speed.py [--papers 2000] [--profiles 10000] [--repeat 3] [--lexical]

Profiles are made from the shared arXiv corpus (../shared/corpus): each has 6 keywords drawn from
real titles, 2 categories, 3 pinned authors, 5 example papers and 2 negative keywords, so every
signal of the ranking is exercised. The ranker is fitted once on the papers listed before the
candidates (reported apart: it is done once per run, whatever the number of profiles); then
`Ranker.rank` is timed for 1/8, 1/4, 1/2 and all of the profiles. Prints medians, seconds per
1,000 profiles at each size (flat = linear), and the process's peak memory.

With sentence embeddings (the default; `--lexical` leaves them out) every profile also has two
"less" marks, so with its 5 examples it has a learned model: the first ranking trains them all
(timed apart: a model is retrained only when its marks change), the timed rankings reuse them.
Paper vectors come from bench/embedding_cache.py, as a run reads them from the store.
Target: all profiles in at most 10 s and 1.5 GB on the 2-core machine.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import resource
import statistics
import sys
import time
from collections import Counter
from datetime import UTC, date, datetime
from datetime import time as dtime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from digest.config import ProfileConfig
from digest.models import Feedback, Paper
from digest.rank import Ranker
from digest.terms import STOP_WORDS

DEFAULT_CORPUS = (
    Path(__file__).resolve().parents[2] / "shared/corpus/arxiv_cs_2026-05-01_2026-06-30.jsonl.gz"
)


def load_papers(path: Path) -> list[Paper]:
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
                )
            )
    papers.sort(key=lambda p: (p.first_seen, p.key))
    return papers


def make_profiles(history: list[Paper], count: int, seed: int) -> list[ProfileConfig]:
    """Varied, realistic profiles: keywords are title words and bigrams, examples are real papers."""
    rng = random.Random(seed)
    title_words = Counter(
        word
        for paper in history
        for word in paper.title.lower().replace(":", " ").split()
        if word.isalpha() and len(word) > 3 and word not in STOP_WORDS
    )
    vocabulary = [word for word, n in title_words.most_common(3000) if n >= 3]
    categories = sorted({c for p in history for c in p.categories})
    authors = sorted({a for p in history for a in p.authors})
    profiles = []
    for number in range(count):
        picked = rng.sample(vocabulary, 8)
        keywords = (*picked[:4], f"{picked[4]} {picked[5]}", rng.choice(vocabulary))
        profiles.append(
            ProfileConfig(
                name=f"p{number}",
                keywords=keywords,
                authors=tuple(rng.sample(authors, 3)),
                categories=tuple(rng.sample(categories, 2)),
                examples=tuple(p.key for p in rng.sample(history, 5)),
                negative_keywords=(picked[6], picked[7]),
                max_items=20,
            )
        )
    return profiles


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--papers", type=int, default=2000)
    parser.add_argument("--profiles", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lexical", action="store_true", help="without sentence embeddings")
    args = parser.parse_args()

    papers = load_papers(args.corpus)
    history, candidates = papers[: -args.papers], papers[-args.papers :]
    profiles = make_profiles(history, args.profiles, args.seed)
    print(f"corpus {len(history)} stored papers, {len(candidates)} new papers")

    vectors, feedback = None, {}
    if not args.lexical:
        from embedding_cache import corpus_vectors

        from digest.embed import PaperVectors, load_embedder

        embedder = load_embedder()
        vectors = PaperVectors(embedder, known=corpus_vectors(papers, embedder, args.corpus))
        rng = random.Random(args.seed)
        feedback = {
            p.name: Feedback(less=tuple(x.key for x in rng.sample(history, 2))) for p in profiles
        }
    began = time.perf_counter()
    ranker = Ranker.fit(history, vectors=vectors)
    print(f"fit tf-idf on the stored corpus: {time.perf_counter() - began:.2f} s (once per run)")
    if feedback:
        began = time.perf_counter()
        ranker.rank(candidates[:1], profiles, feedback)
        print(
            f"learned models trained for {len(ranker.learned)} profiles: "
            f"{time.perf_counter() - began:.1f} s (once, then only when marks change)"
        )

    sizes = sorted({max(1, args.profiles * k // 8) for k in (1, 2, 4, 8)})
    print(f"\n{'profiles':>9}  {'median s':>9}  {'s per 1,000':>11}  runs")
    medians = {}
    for size in sizes:
        runs = []
        for _ in range(args.repeat):
            began = time.perf_counter()
            ranked = ranker.rank(candidates, profiles[:size], feedback)
            runs.append(time.perf_counter() - began)
        assert len(ranked) == size
        medians[size] = statistics.median(runs)
        listed = ", ".join(f"{r:.2f}" for r in runs)
        print(f"{size:>9}  {medians[size]:>9.2f}  {1000 * medians[size] / size:>11.3f}  {listed}")

    chosen = sum(len(items) for items in ranked.values())
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    smallest, largest = sizes[0], sizes[-1]
    ratio = (medians[largest] / largest) / (medians[smallest] / smallest)
    print(
        f"\n{largest} profiles x {len(candidates)} papers: median {medians[largest]:.2f} s "
        f"(target <= 10 s), {chosen} picks with reasons"
    )
    print(
        f"cost per profile at {largest} vs {smallest} profiles: {ratio:.2f}x "
        "(1.0 = linear; below 1 = fixed costs spread thinner)"
    )
    print(f"peak memory (whole process): {peak_mb:.0f} MB (target <= 1,536 MB)")


if __name__ == "__main__":
    main()
