"""Ranking: each signal moves the right papers, reasons name the evidence, bad profiles never crash."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import pytest
from helpers import TOPICS, corpus, keys, paper, profile

import digest.rank
import digest.terms
from digest.models import Feedback, Paper
from digest.rank import Ranker
from digest.terms import author_match_key, content_words, is_content, phrase, stem, words


def test_words_fold_case_plurals_accents_and_latex() -> None:
    assert words("Transformers for Diffusion Models") == ["transformer", "for", "diffusion", "model"]
    assert words(r"\textbf{Graph} Networks with $\mathcal{O}(n)$ studies") == [
        "graph",
        "network",
        "with",
        "o",
        "n",
        "study",
    ]
    assert phrase("diffusion models") == phrase("Diffusion Model")
    assert words("Schölkopf") == ["scholkopf"]
    # Light on purpose: a transformer is not a transformation, and analysis is not plural.
    assert stem("transformation") != stem("transformer")
    assert stem("analysis") == "analysis"


def test_content_words_are_words_without_stop_words_numbers_and_letters_even_as_the_table_fills(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # content_words keeps each distinct word's form in a table; whatever the table holds (empty,
    # full, cleared when it reaches its bound), the words are words() filtered by is_content.
    monkeypatch.setattr(digest.terms, "_CONTENT_FORMS", {})
    monkeypatch.setattr(digest.terms, "_CONTENT_FORMS_MAX", 5)
    texts = [
        "The Transformers of 2024: a study of $\\mathcal{O}(n)$ Diffusion Models",
        "Studies in diffusion: the model, the models and x",
        "Schölkopf and LeCun on kernels, kernels, kernels",
        "",
    ]
    for text in texts * 2:
        assert content_words(text) == [w for w in words(text) if is_content(w)], text
    assert content_words("The Transformers of 2024: a study") == ["transformer", "study"]
    assert len(digest.terms._CONTENT_FORMS) <= 5  # bounded: cleared when full


def test_words_are_the_same_whether_or_not_the_latex_substitution_runs() -> None:
    # words() leaves out the LaTeX substitution when there is no backslash: what it would replace
    # then (braces, $, ^, _, ~) splits words anyway.
    texts = [
        "O(n^2) time_{steps} and {braces} with $x$ ~ y",
        "snake_case_words, a^b^c, ~tilde~, {{nested}}",
        "Ｆｕｌｌ＿ｗｉｄｔｈ and ü_ber {Schölkopf}",
        r"\textbf{Graph} $\mathcal{O}(n)$ \% and_\{x\}",
        "",
    ]
    for text in texts:
        full = [stem(w) for w in digest.terms._WORD.findall(
            digest.terms.fold(digest.terms._LATEX_COMMAND.sub(" ", text)))]
        assert words(text) == full, text
        assert content_words(text) == [w for w in full if is_content(w)], text


def test_author_keys_match_initials_and_comma_forms() -> None:
    assert author_match_key("Yann LeCun") == "yann lecun"
    assert author_match_key("LeCun, Yann") == "yann lecun"
    assert author_match_key("Y. LeCun") == "y lecun"
    assert author_match_key("LeCun, Y.") == "y lecun"
    assert author_match_key("  ") is None


def test_keywords_match_across_inflection_and_title_counts_more() -> None:
    ranker = Ranker.fit(corpus())
    candidates = [
        paper("2606.00001", "Transformers in the title", "Nothing else here."),
        paper("2606.00002", "Something else", "We use a transformer once in the abstract."),
        paper("2606.00003", "Unrelated work", "Cooking recipes."),
    ]
    ranked = ranker.rank(candidates, [profile(keywords=("transformer",))])["me"]
    assert keys(ranked) == ["2606.00001", "2606.00002"]
    assert ranked[0].reasons.keywords == ("transformer",)
    assert ranked[0].reasons.title_keywords == ("transformer",)
    assert ranked[1].reasons.title_keywords == ()


def test_a_phrase_needs_its_words_in_order() -> None:
    ranker = Ranker.fit(corpus())
    candidates = [
        paper("2606.00001", "A diffusion model for images"),
        paper("2606.00002", "A model of heat diffusion"),
    ]
    ranked = ranker.rank(candidates, [profile(keywords=("diffusion models",))])["me"]
    assert keys(ranked) == ["2606.00001"]


def test_negative_keywords_leave_a_paper_out_whatever_else_it_has() -> None:
    ranker = Ranker.fit(corpus())
    candidates = [
        paper("2606.00001", "Robots doing reinforcement learning", authors=("Ada Lovelace",)),
        paper("2606.00002", "Reinforcement learning for games"),
    ]
    me = profile(
        keywords=("reinforcement learning",),
        authors=("Ada Lovelace",),
        negative_keywords=("robot",),
    )
    assert keys(ranker.rank(candidates, [me])["me"]) == ["2606.00002"]


def test_excluded_primary_category_is_left_out_but_a_cross_list_is_not() -> None:
    ranker = Ranker.fit(corpus())
    candidates = [
        paper("2606.00001", "Graph networks", primary_category="cs.CR", categories=("cs.CR",)),
        paper(
            "2606.00002",
            "Graph networks again",
            primary_category="cs.LG",
            categories=("cs.LG", "cs.CR"),
        ),
    ]
    me = profile(keywords=("graph",), exclude_categories=("cs.CR",))
    assert keys(ranker.rank(candidates, [me])["me"]) == ["2606.00002"]


def test_pinned_authors_rank_first_and_are_named_as_the_paper_writes_them() -> None:
    ranker = Ranker.fit(corpus())
    candidates = [
        paper("2606.00001", "Graph networks at scale", "graph neural network"),
        paper("2606.00002", "A quiet paper", "nothing", authors=("Yann LeCun", "A. Other")),
    ]
    ranked = ranker.rank(candidates, [profile(keywords=("graph",), authors=("LeCun, Y.",))])["me"]
    assert keys(ranked) == ["2606.00002", "2606.00001"]
    assert ranked[0].reasons.authors == ("Yann LeCun",)


def test_an_examples_only_profile_ranks_by_similarity_and_names_the_example() -> None:
    stored = corpus()
    ranker = Ranker.fit(stored)
    candidates = [
        paper("2606.00001", "Better policies", f"We study {TOPICS['rl']} in new ways."),
        paper("2606.00002", "Better molecules", f"We study {TOPICS['graphs']} in new ways."),
    ]
    liked = next(p for p in stored if "rl" in p.title)
    ranked = ranker.rank(candidates, [profile(examples=(f"arXiv:{liked.key}v2",))])["me"]
    # The molecules paper shares nothing with the liked one: no topical evidence, left out.
    assert keys(ranked) == ["2606.00001"]
    assert ranked[0].reasons.similar_to == liked.title
    assert ranked[0].reasons.similarity >= 0.1
    assert f'similar to: "{liked.title}"' in ranked[0].reasons.summary()
    # An example may also be named by its title.
    by_title = ranker.rank(candidates, [profile(examples=(liked.title.upper(),))])["me"]
    assert keys(by_title)[0] == "2606.00001"


def test_a_categories_only_profile_puts_the_primary_category_before_a_cross_list() -> None:
    ranker = Ranker.fit(corpus())
    candidates = [
        paper("2606.00001", "Cross", primary_category="cs.CV", categories=("cs.CV", "cs.LG")),
        paper("2606.00002", "Primary", primary_category="cs.LG", categories=("cs.LG",)),
        paper("2606.00003", "Neither", primary_category="cs.CV", categories=("cs.CV",)),
    ]
    ranked = ranker.rank(candidates, [profile(categories=("cs.LG",))])["me"]
    assert keys(ranked) == ["2606.00002", "2606.00001"]
    assert ranked[0].reasons.categories == ("cs.LG",)


def test_the_community_signal_nudges_and_can_be_switched_off() -> None:
    ranker = Ranker.fit(corpus())
    candidates = [
        paper("2606.00001", "Graph paper one", upvotes=0),
        paper("2606.00002", "Graph paper two", upvotes=250),
    ]
    on = ranker.rank(candidates, [profile(keywords=("graph",))])["me"]
    assert keys(on) == ["2606.00002", "2606.00001"]
    assert on[0].reasons.upvotes == 250
    off = ranker.rank(candidates, [profile(keywords=("graph",), community_signal=False)])["me"]
    assert off[0].score == off[1].score
    assert off[0].reasons.upvotes is None


def test_feedback_more_joins_the_examples_and_less_pushes_similar_papers_down() -> None:
    stored = corpus()
    ranker = Ranker.fit(stored)
    rl = next(p for p in stored if "rl" in p.title)
    graphs = next(p for p in stored if "graphs" in p.title)
    candidates = [
        paper("2606.00001", "Policies", f"We study {TOPICS['rl']}.", categories=("cs.LG",)),
        paper("2606.00002", "Molecules", f"We study {TOPICS['graphs']}.", categories=("cs.LG",)),
    ]
    me = profile(categories=("cs.LG",))
    assert keys(ranker.rank(candidates, [me], {"me": Feedback(more=(rl.key,))})["me"])[0] == (
        "2606.00001"
    )
    pushed = ranker.rank(candidates, [me], {"me": Feedback(less=(graphs.key,))})["me"]
    assert keys(pushed) == ["2606.00001"]  # the graph paper fell to no positive evidence


def test_max_items_min_score_and_a_stable_order() -> None:
    ranker = Ranker.fit(corpus())
    candidates = [paper(f"2606.{i:05d}", f"Graph paper {i}") for i in range(10)]
    ranked = ranker.rank(candidates, [profile(keywords=("graph",), max_items=3)])["me"]
    assert keys(ranked) == ["2606.00000", "2606.00001", "2606.00002"]  # equal scores: by key
    high = ranker.rank(candidates, [profile(keywords=("graph",), min_score=1000)])["me"]
    assert high == ()


def test_profiles_ranked_together_equal_profiles_ranked_alone(monkeypatch: Any) -> None:
    """Blocks of profiles are independent: the vectorised path gives each profile its own answer."""
    stored = corpus()
    ranker = Ranker.fit(stored)
    candidates = [
        paper(f"2606.{i:05d}", f"Paper on {topic}", f"We study {text}.", upvotes=i)
        for i, (topic, text) in enumerate(TOPICS.items())
    ]
    profiles = [
        profile("a", keywords=("graph", "speech")),
        profile("b", examples=(stored[0].key,), negative_keywords=("robot",)),
        profile("c", categories=("cs.LG",), authors=("Nobody",)),
        profile("d", keywords=("reinforcement learning",), community_signal=False),
        profile("e", keywords=("blockchain",), examples=(stored[3].key,)),
    ]
    alone = {p.name: ranker.rank(candidates, [p])[p.name] for p in profiles}
    monkeypatch.setattr(digest.rank, "_BLOCK", 2)
    assert ranker.rank(candidates, profiles) == alone


@pytest.mark.parametrize(
    "interests",
    [
        {},
        {"negative_keywords": ("robot",)},
        {"keywords": ("the", "of")},  # only stop words
        {"keywords": ("$$", "{}")},  # no words at all
    ],
)
def test_a_profile_without_usable_interests_gets_an_empty_ranking_and_a_warning(
    interests: Any, caplog: pytest.LogCaptureFixture
) -> None:
    ranker = Ranker.fit(corpus())
    candidates = [paper("2606.00001", "Robots and the graph of everything")]
    with caplog.at_level(logging.WARNING):
        assert ranker.rank(candidates, [profile(**interests)])["me"] == ()
    assert "profile me: " in caplog.text


def test_unknown_examples_are_warned_about_and_the_rest_still_counts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stored = corpus()
    ranker = Ranker.fit(stored)
    candidates = [paper("2606.00001", "Graphs", f"We study {TOPICS['graphs']}.")]
    with caplog.at_level(logging.WARNING):
        ranked = ranker.rank(candidates, [profile(examples=("2999.99999", stored[4].key))])["me"]
    assert keys(ranked) == ["2606.00001"]
    assert "profile me: examples paper '2999.99999' is not in the store" in caplog.text


@pytest.mark.parametrize("stored", [[], [paper("2605.00001", "Only one paper", "graph")]])
def test_a_tiny_or_empty_corpus_still_ranks_by_keywords(stored: list[Paper]) -> None:
    ranker = Ranker.fit(stored)
    candidates = [paper("2606.00001", "Graph networks"), paper("2606.00002", "Other")]
    assert keys(ranker.rank(candidates, [profile(keywords=("graph",))])["me"]) == ["2606.00001"]


def test_latex_and_non_latin_titles_match_and_never_crash() -> None:
    ranker = Ranker.fit(corpus())
    candidates = [
        paper("2606.00001", r"\textbf{Graph} Neural $\mathcal{N}$etworks for \emph{molecules}"),
        paper("2606.00002", "变换器 用于 图像 生成"),
        paper("2606.00003", "Нейронные сети " + "\u202e" * 3 + "\x00"),
        paper("2606.00004", "x" * 10_000),
    ]
    me = profile(keywords=("graph neural", "变换器", "нейронные сети"))
    ranked = ranker.rank(candidates, [me])["me"]
    assert sorted(keys(ranked)) == ["2606.00001", "2606.00002", "2606.00003"]


def test_no_candidates_or_no_profiles_is_an_empty_answer() -> None:
    ranker = Ranker.fit(corpus())
    assert ranker.rank([], [profile(keywords=("graph",))]) == {"me": ()}
    assert ranker.rank([paper("2606.00001", "Graph")], []) == {}


def test_score_parts_add_up_to_the_score() -> None:
    stored = corpus()
    ranker = Ranker.fit(stored)
    candidates = [
        paper(
            "2606.00001",
            "Graph networks",
            f"We study {TOPICS['graphs']}.",
            authors=("Ada Lovelace",),
            primary_category="cs.LG",
            categories=("cs.LG",),
            upvotes=9,
        )
    ]
    me = profile(
        keywords=("graph",),
        authors=("Ada Lovelace",),
        categories=("cs.LG",),
        examples=(stored[4].key,),
    )
    (item,) = ranker.rank(candidates, [me])["me"]
    parts = dict(item.reasons.parts)
    assert set(parts) == {"keywords", "authors", "categories", "community", "examples"}
    assert sum(parts.values()) == pytest.approx(item.score, abs=1e-3)
    assert item.reasons.summary().startswith(
        'matches "graph"; by Ada Lovelace; similar to: "A study of graphs'
    )


def test_weights_are_the_ranker_s_own() -> None:
    stored = corpus()
    candidates = [paper("2606.00001", "Graph", authors=("Ada Lovelace",))]
    me = profile(keywords=("graph",), authors=("Ada Lovelace",))
    base = Ranker.fit(stored).rank(candidates, [me])["me"][0]
    no_authors = Ranker.fit(stored, weights=replace(digest.rank.Weights(), author=0.0))
    assert no_authors.rank(candidates, [me])["me"][0].score < base.score


def test_papers_already_liked_or_marked_are_not_offered_again() -> None:
    stored = corpus()
    ranker = Ranker.fit(stored)
    liked, marked = stored[4], stored[5]  # both about graphs, and both listed again today
    candidates = [*stored[4:6], paper("2606.00001", "Graph news", f"We study {TOPICS['graphs']}.")]
    me = profile(keywords=("graph",), examples=(liked.key,))
    ranked = ranker.rank(candidates, [me], {"me": Feedback(more=(marked.key,))})["me"]
    assert keys(ranked) == ["2606.00001"]


def test_colleagues_of_pinned_authors_rank_up_and_are_named() -> None:
    """Whoever wrote two stored papers with a pinned author counts, less than the author."""
    stored = [
        *corpus(),
        paper("2605.90001", "Joint work one", authors=("Ada Lovelace", "Charles Babbage")),
        paper("2605.90002", "Joint work two", authors=("Charles Babbage", "Ada Lovelace")),
        paper("2605.90003", "Once only", authors=("Ada Lovelace", "Mary Somerville")),
    ]
    ranker = Ranker.fit(stored)
    candidates = [
        paper("2606.00001", "By the colleague", authors=("Charles Babbage",)),
        paper("2606.00002", "By a one-time co-author", authors=("Mary Somerville",)),
        paper("2606.00003", "By the pinned author", authors=("Ada Lovelace",)),
    ]
    ranked = ranker.rank(candidates, [profile(authors=("Ada Lovelace",))])["me"]
    assert keys(ranked) == ["2606.00003", "2606.00001"]
    assert ranked[1].reasons.colleagues == ("Charles Babbage",)
    assert ranked[1].reasons.authors == ()
    assert "who often write with your authors" in ranked[1].reasons.summary()
    assert dict(ranked[1].reasons.parts)["colleagues"] < dict(ranked[0].reasons.parts)["authors"]


def test_repeated_keywords_count_once_and_are_named_once() -> None:
    ranker = Ranker.fit(corpus())
    candidates = [paper("2606.00001", "Graph networks"), paper("2606.00002", "Other things")]
    once = ranker.rank(candidates, [profile(keywords=("graph",))])["me"]
    thrice = ranker.rank(candidates, [profile(keywords=("graph", "Graphs", "GRAPH"))])["me"]
    assert [item.score for item in thrice] == [item.score for item in once]
    assert thrice[0].reasons.keywords == ("graph",)
