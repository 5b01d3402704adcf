from helpers import T0, record

from digest.identify import merge, new_paper, normalize_title, paper_key


def test_arxiv_id_is_the_key_whatever_the_version() -> None:
    assert paper_key(record(arxiv_id="2411.01234", version=2)) == "2411.01234"
    assert paper_key(record(arxiv_id="hep-th/9901001")) == "hep-th/9901001"


def test_key_falls_back_from_arxiv_id_to_doi_to_source_key_to_title() -> None:
    assert (
        paper_key(record(doi="https://doi.org/10.1101/2024.01.02.ABC"))
        == "doi:10.1101/2024.01.02.abc"
    )
    assert paper_key(record(source_key="tag:blog,1", source="blog")) == "src:blog:tag:blog,1"
    assert (
        paper_key(record(title="Attention Is All You Need!")) == "title:attention is all you need"
    )


def test_normalised_title_folds_case_accents_punctuation_and_spacing() -> None:
    assert normalize_title("  Équivariant   Nets:\tA Survey ") == normalize_title(
        "equivariant nets - a survey"
    )
    assert normalize_title("LLM-FP4: 4-Bit Floating-Point") == "llm fp4 4 bit floating point"
    assert normalize_title("深度学习") == "深度学习"


def test_merge_keeps_stable_facts_and_takes_newer_volatile_ones() -> None:
    hf = record(
        "Paper",
        source="hf",
        arxiv_id="2501.00001",
        upvotes=3,
        ai_summary="Short.",
        code_url="https://github.com/a/b",
    )
    arxiv = record(
        "Paper",
        source="arxiv",
        arxiv_id="2501.00001",
        version=2,
        categories=("cs.LG",),
        abstract="The full abstract of the paper.",
    )
    paper = merge(new_paper(hf, T0), arxiv)
    assert paper.key == "2501.00001"
    assert paper.sources == ("hf", "arxiv")
    assert (paper.upvotes, paper.ai_summary, paper.code_url) == (
        3,
        "Short.",
        "https://github.com/a/b",
    )
    assert (paper.version, paper.categories) == (2, ("cs.LG",))
    assert paper.first_source == "hf" and paper.first_seen == T0

    later = merge(paper, record("Paper", source="hf", arxiv_id="2501.00001", upvotes=40, version=1))
    assert later.upvotes == 40, "upvotes change over time: the newer count wins"
    assert later.version == 2, "an older version never replaces a newer one"


def test_merge_heals_a_cut_abstract_and_never_takes_a_cut_one() -> None:
    cut = record("P", arxiv_id="2501.00001", abstract="Identifying risky traders")
    full = record(
        "P", arxiv_id="2501.00001", abstract="Identifying risky traders with high profits."
    )
    assert merge(new_paper(full, T0), cut).abstract == full.abstract
    assert merge(new_paper(cut, T0), full).abstract == full.abstract


def test_a_title_keyed_paper_takes_the_id_when_one_is_learned() -> None:
    text = new_paper(record("Transformer in Transformer", source="text"), T0)
    assert text.key == "title:transformer in transformer"
    learned = merge(text, record("Transformer in Transformer", arxiv_id="2103.00112"))
    assert learned.key == "2103.00112"
    assert learned.arxiv_id == "2103.00112"
