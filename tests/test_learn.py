"""A profile that learns from its marks: trained once there are enough, kept while they stay."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np
import pytest
from helpers import paper, profile

from digest.learn import LearnedProfile, fingerprint, from_stored, to_stored, train
from digest.models import Feedback, Paper
from digest.rank import Ranker

DIMS = 16


def clusters(count: int, centre: int, seed: int) -> np.ndarray:
    """`count` unit vectors around the axis `centre`, a little noise on every other axis."""
    rng = np.random.default_rng(seed)
    vectors = rng.normal(0, 0.15, (count, DIMS)).astype(np.float32)
    vectors[:, centre] += 1.0
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def probability(model: LearnedProfile, vectors: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-(vectors @ model.coefficients + model.intercept)))


def test_train_separates_two_clusters() -> None:
    model = train("print", clusters(5, 0, 1), clusters(3, 1, 2), clusters(40, 2, 3))
    assert model.fingerprint == "print"
    assert model.coefficients.shape == (DIMS,) and model.coefficients.dtype == np.float32
    assert (probability(model, clusters(20, 0, 4)) > 0.5).all()
    assert (probability(model, clusters(20, 1, 5)) < 0.5).all()
    assert (probability(model, clusters(20, 2, 6)) < 0.5).all()


def test_a_fingerprint_changes_with_the_marks_and_only_with_them() -> None:
    base = fingerprint("m", ["a", "b", "c"], ["x", "y"])
    assert fingerprint("m", ["c", "a", "b"], ["y", "x"]) == base  # order does not matter
    assert fingerprint("m", ["a", "b", "c", "d"], ["x", "y"]) != base
    assert fingerprint("m", ["a", "b"], ["c", "x", "y"]) != base  # a mark moved to "less"
    assert fingerprint("m", ["a", "b", "c"], ["x"]) != base
    assert fingerprint("other model", ["a", "b", "c"], ["x", "y"]) != base


def test_a_learned_profile_round_trips_as_stored(store) -> None:  # type: ignore[no-untyped-def]
    model = train("print", clusters(4, 0, 1), clusters(2, 1, 2), clusters(10, 2, 3))
    stored = to_stored(model)
    assert len(stored[1]) == DIMS * 4
    again = from_stored(stored)
    assert again.fingerprint == model.fingerprint and again.intercept == model.intercept
    assert np.array_equal(again.coefficients, model.coefficients)
    store.save_learned_profiles({"me": stored}, datetime(2026, 11, 20, tzinfo=UTC))
    loaded = from_stored(store.learned_profiles()["me"])
    assert np.array_equal(loaded.coefficients, model.coefficients)
    assert loaded.intercept == pytest.approx(model.intercept)


# -- through the ranker ---------------------------------------------------------------------------

AXIS = {"liked": 0, "disliked": 1}  # the title word that puts a paper near an axis; others: 2..


class FakeVectors:
    """A VectorSource: papers whose title starts "liked" lie near axis 0, "disliked" near axis 1,
    all others spread over the remaining axes; the same paper always gets the same vector."""

    name = "fake-model"
    dimensions = DIMS

    def papers(self, papers: Sequence[Paper]) -> np.ndarray:
        rows = []
        for item in papers:
            seed = int(hashlib.sha256(item.key.encode()).hexdigest()[:8], 16)
            centre = AXIS.get(item.title.split()[0], 2 + seed % (DIMS - 2))
            rows.append(clusters(1, centre, seed)[0])
        return np.zeros((0, DIMS), np.float32) if not rows else np.stack(rows)


def stored_papers() -> list[Paper]:
    return [
        *(paper(f"2605.1{i:04d}", f"liked gardens {i}", "Roses.") for i in range(6)),
        *(paper(f"2605.2{i:04d}", f"disliked taxes {i}", "Audits.") for i in range(6)),
        *(paper(f"2605.3{i:04d}", f"other things {i}", "Anything.") for i in range(30)),
    ]


LIKED = tuple(f"2605.1{i:04d}" for i in range(6))
DISLIKED = tuple(f"2605.2{i:04d}" for i in range(6))
# Both by the pinned authors, so that a paper the model dislikes still shows its learned points.
PINNED = ("Ada Lovelace", "Charles Babbage")
CANDIDATES = [
    paper("2606.00001", "liked news", "Flowers.", authors=PINNED),
    paper("2606.00002", "disliked news", "Flowers.", authors=PINNED),
]
ME = profile(keywords=("flowers",), authors=PINNED)


@pytest.mark.parametrize(
    "marks",
    [
        Feedback(more=LIKED[:2], less=DISLIKED[:2]),
        Feedback(more=LIKED[:3], less=DISLIKED[:1]),
        Feedback(more=LIKED[:3]),
    ],
)
def test_no_model_before_three_liked_and_two_less(marks: Feedback) -> None:
    ranker = Ranker.fit(stored_papers(), vectors=FakeVectors())
    ranked = ranker.rank(CANDIDATES, [ME], {"me": marks})["me"]
    assert ranker.learned == {} and ranker.retrained == set()
    assert all("learned" not in dict(item.reasons.parts) for item in ranked)


def test_a_model_is_learned_kept_while_the_marks_stay_and_retrained_when_they_change() -> None:
    ranker = Ranker.fit(stored_papers(), vectors=FakeVectors())
    marks = {"me": Feedback(more=LIKED[:3], less=DISLIKED[:2])}
    ranked = ranker.rank(CANDIDATES, [ME], marks)["me"]
    assert ranker.retrained == {"me"}
    first = ranker.learned["me"]
    learned = {item.paper.key: dict(item.reasons.parts).get("learned", 0.0) for item in ranked}
    # The model lifts what it likes and leaves the rest alone (the "less" marks push down).
    assert learned["2606.00001"] > 0 == learned.get("2606.00002", 0.0)
    liked_news, disliked_news = FakeVectors().papers(CANDIDATES)
    assert probability(first, liked_news) > 0.5 > probability(first, disliked_news)

    ranker.retrained.clear()  # the caller has stored it
    assert ranker.rank(CANDIDATES, [ME], marks)["me"] == ranked
    assert ranker.retrained == set() and ranker.learned["me"] is first

    changed = {"me": Feedback(more=LIKED[:4], less=DISLIKED[:2])}
    ranker.rank(CANDIDATES, [ME], changed)
    assert ranker.retrained == {"me"}
    assert ranker.learned["me"].fingerprint != first.fingerprint


def test_a_model_kept_from_an_earlier_run_is_reused() -> None:
    marks = {"me": Feedback(more=LIKED[:3], less=DISLIKED[:2])}
    earlier = Ranker.fit(stored_papers(), vectors=FakeVectors())
    earlier.rank(CANDIDATES, [ME], marks)
    later = Ranker.fit(stored_papers(), vectors=FakeVectors())
    later.learned.update({"me": from_stored(to_stored(earlier.learned["me"]))})
    later.rank(CANDIDATES, [ME], marks)
    assert later.retrained == set()


def test_a_profile_with_only_less_marks_gets_no_model_and_no_crash() -> None:
    ranker = Ranker.fit(stored_papers(), vectors=FakeVectors())
    ranked = ranker.rank(CANDIDATES, [ME], {"me": Feedback(less=DISLIKED)})["me"]
    assert "me" not in ranker.learned
    assert "2606.00001" in [item.paper.key for item in ranked]
