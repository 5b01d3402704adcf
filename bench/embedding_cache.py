"""The shared corpus's sentence vectors, computed once with digest.embed and kept on disk.

    python bench/embedding_cache.py        # fills the cache (about 5 minutes on 2 cores)

The quality and speed benchmarks load them from here instead of embedding 14,018 papers on every
run. The cache is keyed by model name and by the corpus file's size, so a new model or corpus
fills a new one. It lives in bench/.cache/ (ignored by git).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from rank_speed import DEFAULT_CORPUS, load_papers

from digest.embed import Embedder, load_embedder, paper_text
from digest.models import Paper

CACHE = Path(__file__).resolve().parent / ".cache"


def corpus_vectors(
    papers: Sequence[Paper], embedder: Embedder, corpus: Path = DEFAULT_CORPUS
) -> dict[str, np.ndarray]:
    """key -> float32 vector of every paper, from the cache or computed (and cached) now."""
    name = embedder.name.replace("/", "_").replace(":", "_")
    path = CACHE / f"{name}-{corpus.stat().st_size}.npz"
    if path.exists():
        stored = np.load(path)
        keys, vectors = list(stored["keys"]), stored["vectors"].astype(np.float32)
        if set(keys) >= {p.key for p in papers}:
            return dict(zip(keys, vectors, strict=True))
    began = time.perf_counter()
    vectors = embedder.embed([paper_text(p) for p in papers])
    seconds = time.perf_counter() - began
    print(f"embedded {len(papers)} papers in {seconds:.0f} s ({len(papers) / seconds:.0f}/s)")
    CACHE.mkdir(exist_ok=True)
    np.savez(path, keys=np.array([p.key for p in papers]), vectors=vectors.astype(np.float16))
    return {
        p.key: v for p, v in zip(papers, vectors.astype(np.float16).astype(np.float32), strict=True)
    }


if __name__ == "__main__":
    corpus_vectors(load_papers(DEFAULT_CORPUS), load_embedder())
