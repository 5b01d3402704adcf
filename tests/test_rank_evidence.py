"""What counts as evidence that a paper is on a profile's topic: topic before popularity, the
closest liked paper rather than the mean of all of them, and the authors of liked papers."""

from __future__ import annotations

import pytest
from helpers import TOPICS, corpus, keys, paper, profile

from digest.embed import PaperVectors, load_embedder
from digest.models import Paper
from digest.rank import Ranker

UNRELATED = "We bake bread with sourdough starters and measure the crust of each loaf."


def test_upvotes_and_a_followed_category_never_bring_an_off_topic_paper_in() -> None:
    ranker = Ranker.fit(corpus())
    popular = paper(
        "2606.00001",
        "Baking bread at home",
        UNRELATED,
        upvotes=500,
        primary_category="cs.LG",
        categories=("cs.LG",),
    )
    on_topic = paper("2606.00002", "Graph networks", f"We study {TOPICS['graphs']}.")
    me = profile(keywords=("graph",), categories=("cs.LG",), authors=("Ada Lovelace",))
    assert keys(ranker.rank([popular, on_topic], [me])["me"]) == ["2606.00002"]
    # Even alone, with nothing better to show, it stays out.
    assert ranker.rank([popular], [me])["me"] == ()


def test_a_categories_only_profile_still_gets_its_category_papers() -> None:
    ranker = Ranker.fit(corpus())
    candidates = [
        paper("2606.00001", "Baking bread", UNRELATED, upvotes=500, categories=("cs.LG",)),
        paper("2606.00002", "Baking cakes", UNRELATED, categories=("cs.CV",)),
    ]
    ranked = ranker.rank(candidates, [profile(categories=("cs.LG",))])["me"]
    assert keys(ranked) == ["2606.00001"]
    assert ranked[0].reasons.categories == ("cs.LG",)
    assert ranked[0].reasons.upvotes == 500


def _corpus_with_a_generic_word(per_topic: int) -> list[Paper]:
    """`per_topic` stored papers per topic, every one of them saying "model"."""
    return [
        paper(f"2605.{n:02d}{v:03d}", f"A study of {topic} {v}", f"We train a model. {text}.")
        for n, (topic, text) in enumerate(TOPICS.items())
        for v in range(per_topic)
    ]


@pytest.mark.parametrize("per_topic", [2, 4])  # 12 and 24 stored papers
def test_a_generic_keyword_scores_less_than_a_strong_similarity(per_topic: int) -> None:
    stored = _corpus_with_a_generic_word(per_topic)
    ranker = Ranker.fit(stored)
    liked = stored[per_topic]  # the first paper on reinforcement learning
    candidates = [
        paper("2606.00001", "A model for cooking", "We propose a model of recipes and kitchens."),
        paper("2606.00002", "Better policies", f"We study {TOPICS['rl']} in new ways."),
    ]
    me = profile(keywords=("model",), examples=(liked.key,))
    ranked = ranker.rank(candidates, [me])["me"]
    parts = {item.paper.key: dict(item.reasons.parts) for item in ranked}
    assert parts["2606.00001"]["keywords"] < parts["2606.00002"]["examples"]
    assert "keywords" not in parts["2606.00002"]



@pytest.mark.parametrize("per_topic", [2, 4])
def test_a_word_in_every_paper_is_worth_less_than_a_rare_one(per_topic: int) -> None:
    ranker = Ranker.fit(_corpus_with_a_generic_word(per_topic))
    candidates = [
        paper("2606.00001", "A model for cooking", "We propose a model of recipes."),
        paper("2606.00002", "A diffusion for cooking", "We propose a diffusion of recipes."),
    ]
    ranked = ranker.rank(candidates, [profile(keywords=("model", "diffusion"))])["me"]
    points = {item.paper.key: dict(item.reasons.parts)["keywords"] for item in ranked}
    assert points["2606.00001"] < points["2606.00002"]


def test_a_reader_with_two_topics_gets_both_each_named_by_its_own_example() -> None:
    """Closest liked paper, not the centroid: two diffusion examples and one on cryptography. By
    the centroid, half-diffusion papers would outrank the cryptography paper (tf-idf cosines to it:
    0.44 and 0.38 against 0.36); by the closest example, both topics lead."""
    stored = corpus()
    ranker = Ranker.fit(stored, vectors=PaperVectors(load_embedder()))
    examples = [p for p in stored if "diffusion" in p.title] + [stored[10]]  # crypto number 0
    assert "crypto" in stored[10].title
    candidates = [
        paper("2606.00001", "Faster image diffusion", f"We study {TOPICS['diffusion']} at scale."),
        paper("2606.00002", "Secure ledgers", f"We study {TOPICS['crypto']} at scale."),
        paper("2606.00003", "Diffusion for robots", f"We study diffusion for {TOPICS['robots']}."),
        paper(
            "2606.00004",
            "Diffusion for speech",
            f"We study denoising diffusion noise schedule for {TOPICS['speech']}.",
        ),
        paper("2606.00005", "Graphs", f"We study {TOPICS['graphs']}."),
    ]
    me = profile(examples=tuple(p.key for p in examples), max_items=2)
    ranked = ranker.rank(candidates, [me])["me"]
    assert sorted(keys(ranked)) == ["2606.00001", "2606.00002"]
    named = {item.paper.key: item.reasons.similar_to or "" for item in ranked}
    assert "diffusion" in named["2606.00001"]
    assert named["2606.00002"] == stored[10].title
    for item in ranked:
        parts = dict(item.reasons.parts)
        assert parts["examples"] > 0 and parts["semantic"] > 0
        assert f'similar to: "{item.reasons.similar_to}"' in item.reasons.summary()


def _with_authored_papers() -> list[Paper]:
    crowd = tuple(f"Member {i} Collab" for i in range(59))
    return [
        *corpus(),
        paper("2605.80001", "Ledgers we liked", "Consensus.", authors=("Ada Lovelace", "Tim Bo")),
        paper("2605.80002", "A huge collaboration", "Detectors.", authors=(*crowd, "Grace Hopper")),
    ]


def test_an_author_of_a_liked_paper_counts_and_is_named() -> None:
    stored = _with_authored_papers()
    ranker = Ranker.fit(stored)
    candidates = [
        paper("2606.00001", "Baking bread", UNRELATED, authors=("Someone Else", "Tim Bo")),
        paper("2606.00002", "Baking cakes", UNRELATED, authors=("Someone Else",)),
    ]
    ranked = ranker.rank(candidates, [profile(examples=("2605.80001",))])["me"]
    assert keys(ranked) == ["2606.00001"]  # the author is topical evidence; nothing else is
    (item,) = ranked
    assert dict(item.reasons.parts)["liked authors"] > 0
    assert item.reasons.liked_authors == ("Tim Bo",)
    assert item.reasons.similar_to is None
    assert "by Tim Bo, authors of papers you liked" in item.reasons.summary()


def test_the_authors_of_a_60_author_collaboration_do_not_count() -> None:
    stored = _with_authored_papers()
    ranker = Ranker.fit(stored)
    candidates = [paper("2606.00001", "Baking bread", UNRELATED, authors=("Grace Hopper",))]
    me = profile(examples=("2605.80002",))
    assert ranker.rank(candidates, [me])["me"] == ()
    with_keyword = ranker.rank(candidates, [profile(examples=("2605.80002",), keywords=("bread",))])
    (item,) = with_keyword["me"]
    assert "liked authors" not in dict(item.reasons.parts)
    assert item.reasons.liked_authors == ()


def test_only_the_liked_authors_that_counted_are_named() -> None:
    stored = _with_authored_papers()
    ranker = Ranker.fit(stored)
    candidates = [paper("2606.00001", "Bread", UNRELATED, authors=("Tim Bo", "Grace Hopper"))]
    (item,) = ranker.rank(candidates, [profile(examples=("2605.80001", "2605.80002"))])["me"]
    assert item.reasons.liked_authors == ("Tim Bo",)
