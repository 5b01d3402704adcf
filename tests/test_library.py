import json
import random

import pytest
from helpers import FIXTURES

from digest import library
from digest.errors import DigestError
from digest.library import LibraryEntry, LibraryImport, read_library

DATA = FIXTURES / "library"
BIB = (DATA / "zotero_export_synthetic.bib").read_bytes()
RIS = (DATA / "zotero_export_synthetic.ris").read_bytes()
CSL = (DATA / "zotero_export_synthetic.json").read_bytes()

VASWANI_ABSTRACT = (
    "The dominant sequence transduction models are based on complex recurrent or convolutional "
    "neural networks in an encoder-decoder configuration."
)
ALPHAFOLD_ABSTRACT = (
    "Proteins are essential to life, and understanding their structure can facilitate a "
    "mechanistic understanding of their function."
)


def one(text: str, filename: str = "refs.bib") -> LibraryEntry:
    """The single entry a small export holds."""
    result = read_library(text.encode(), filename)
    assert len(result.entries) == 1, result
    return result.entries[0]


def error(data: bytes, filename: str) -> str:
    with pytest.raises(DigestError) as raised:
        read_library(data, filename)
    message = str(raised.value)
    assert "\n" not in message and "\r" not in message, "one line for a person"
    return message


# -- each format, whole ---------------------------------------------------------------------------


def test_zotero_bibtex_export() -> None:
    result = read_library(BIB, "My Library.bib")
    expected = (
        LibraryEntry(
            arxiv_id="2411.01234",
            doi=None,
            title="Sparse Mixture-of-Experts Schrödinger Bridges for Unpaired Translation",
            abstract=(
                "We train Schrödinger bridges between unpaired domains with a sparse mixture of "
                "experts, cutting the cost of each step by 60% while matching dense baselines "
                "on four benchmarks."
            ),
            authors=("Jonas Müller", "María García", "Lars Østergaard"),
            where="entry 1 (key muller_sparse_2024)",
        ),
        LibraryEntry(
            arxiv_id="1706.03762",
            doi="10.48550/arxiv.1706.03762",
            title="Attention Is All You Need",
            abstract=VASWANI_ABSTRACT
            + " The best performing models also connect the encoder and decoder through an "
            "attention mechanism. We propose a new simple network architecture, the Transformer, "
            "based solely on attention mechanisms, dispensing with recurrence and convolutions "
            "entirely.",
            authors=(
                "Ashish Vaswani",
                "Noam Shazeer",
                "Niki Parmar",
                "Jakob Uszkoreit",
                "Llion Jones",
                "Aidan N. Gomez",
                "Lukasz Kaiser",
                "Illia Polosukhin",
            ),
            where="entry 2 (key vaswani_attention_2023)",
        ),
        LibraryEntry(
            arxiv_id="2305.10403",
            doi=None,
            title="PaLM 2 Technical Report",
            abstract="",
            authors=("Rohan Anil", "Andrew M. Dai", "Orhan Firat"),  # "others" is no name
            where="entry 3 (key anil_palm_2023)",
        ),
        LibraryEntry(
            arxiv_id=None,
            doi="10.1038/s41586-021-03819-2",
            title="Highly accurate protein structure prediction with AlphaFold",
            abstract=ALPHAFOLD_ABSTRACT
            + " Through an enormous experimental effort, the structures of around 100,000 unique "
            "proteins have been determined, but this represents a small fraction of the billions "
            "of known protein sequences.",
            authors=(
                "John Jumper",
                "Richard Evans",
                "Alexander Pritzel",
                "Tim Green",
                "Michael Figurnov",
                "Olaf Ronneberger",
            ),
            where="entry 4 (key jumper_highly_2021)",
        ),
        LibraryEntry(
            arxiv_id="2106.09685",
            doi=None,
            title="LoRA: Low-Rank Adaptation of Large Language Models",
            abstract="",
            authors=(
                "Edward J Hu",
                "Yelong Shen",
                "Phillip Wallis",
                "Zeyuan Allen-Zhu",
                "Yuanzhi Li",
                "Shean Wang",
                "Lu Wang",
                "Weizhu Chen",
            ),
            where="entry 6 (key hu2021lora)",
        ),
        LibraryEntry(
            arxiv_id="hep-th/9711200",
            doi="10.1023/a:1026654312961",
            title="The Large N Limit of Superconformal Field Theories and Supergravity",
            abstract="",
            authors=("Juan Maldacena",),
            where="entry 7 (key Maldacena1999)",
        ),
    )
    assert result.entries == expected
    broken, empty = result.skipped
    # The reason after the line number is bibtexparser's own words.
    assert broken.startswith("entry 5 (key broken_2024): not valid BibTeX (line 58): ")
    assert empty == "entry 8 (key doe_notes_2024): no title, arXiv id or DOI"


def test_zotero_ris_export() -> None:
    result = read_library(RIS, "My Library.ris")
    assert result.entries == (
        LibraryEntry(
            arxiv_id="1706.03762",
            doi="10.48550/arxiv.1706.03762",
            title="Attention Is All You Need",
            abstract=VASWANI_ABSTRACT,
            authors=("Ashish Vaswani", "Noam Shazeer", "Niki Parmar", "Aidan N. Gomez"),
            where="entry 1 (line 1)",
        ),
        LibraryEntry(
            arxiv_id=None,
            doi="10.1038/s41586-021-03819-2",  # DO held a doi.org link
            title="Highly accurate protein structure prediction with AlphaFold",  # from T1
            abstract=ALPHAFOLD_ABSTRACT,  # its second line joined on
            authors=("John Jumper", "Richard Evans", "Demis Hassabis"),
            where="entry 2 (line 20)",
        ),
        LibraryEntry(
            arxiv_id="2305.10403",  # a record with no title, kept for its id
            doi=None,
            title="",
            abstract="",
            authors=("Rohan Anil", "Andrew M. Dai"),
            where="entry 3 (line 36)",
        ),
        LibraryEntry(
            arxiv_id=None,
            doi=None,
            title="Deep Residual Learning for Image Recognition",  # a title is enough
            abstract="",
            authors=("Kaiming He", "Xiangyu Zhang", "Shaoqing Ren", "Jian Sun"),
            where="entry 4 (line 43)",
        ),
    )
    assert result.skipped == ("entry 5 (line 55): no title, arXiv id or DOI",)


def test_zotero_csl_json_export() -> None:
    zotero = "http://zotero.org/users/local/Xq3cFJ5u/items/"
    result = read_library(CSL, "My Library.json")
    assert result.entries == (
        LibraryEntry(
            arxiv_id="2401.00001",
            doi="10.48550/arxiv.2401.00001",
            title="Verifying Multi-Step Plans of Language Models",
            abstract=(
                "We study how instruction-tuned language models follow multi-step plans, and find "
                "that a small verifier trained on 2,000 annotated traces catches most planning "
                "errors."
            ),
            authors=("Thi Minh Nguyen", "Vincent van Gogh"),
            where=f"entry 1 (id {zotero}ZX8KQ2VN)",
        ),
        LibraryEntry(
            arxiv_id=None,
            doi="10.1038/s41467-020-18124-1",
            title="CO2 fixation by engineered E. coli",  # rich-text tags gone, words kept whole
            abstract=(
                "Engineered Escherichia coli strains fix CO2 into formate at rates >10 times those "
                "of the wild type. We describe the pathway."
            ),
            authors=("Shmuel Gleizer", "The Milo Lab"),
            where=f"entry 2 (id {zotero}4TQ9MZ2A)",
        ),
        LibraryEntry(
            arxiv_id="hep-th/9711200",
            doi=None,
            title="The Large N Limit of Superconformal Field Theories and Supergravity",
            abstract="",
            authors=("Juan Maldacena",),
            where="entry 3 (id maldacena_large_1999)",
        ),
    )
    assert result.skipped == (f"entry 4 (id {zotero}P7W2B3KD): no title, arXiv id or DOI",)


def test_zotero_web_api_wraps_its_items() -> None:
    items = json.loads(CSL)
    wrapped = json.dumps({"items": items}).encode()
    assert read_library(wrapped, "items.json") == read_library(CSL, "items.json")


# -- which format ---------------------------------------------------------------------------------


@pytest.mark.parametrize("data", [BIB, RIS, CSL], ids=["bibtex", "ris", "csl-json"])
@pytest.mark.parametrize("filename", ["export", "export.txt", "download (3)", ""])
def test_the_format_is_sniffed_when_the_extension_says_nothing(data: bytes, filename: str) -> None:
    expected = {BIB: "x.bib", RIS: "x.ris", CSL: "x.json"}[data]
    assert read_library(data, filename) == read_library(data, expected)


@pytest.mark.parametrize(
    ("filename", "count"),
    [("refs.BIB", 6), ("refs.bibtex", 6), ("dir.v2/refs.Ris", 4), ("x.csljson", 3)],
)
def test_extensions_are_read_case_blind_and_from_the_last_suffix(filename: str, count: int) -> None:
    data = {".bib": BIB, ".bibtex": BIB, ".ris": RIS, ".csljson": CSL}
    suffix = "." + filename.rsplit(".", 1)[1].lower()
    assert len(read_library(data[suffix], filename).entries) == count


def test_the_extension_wins_over_the_content() -> None:
    assert "no BibTeX entry" in error(CSL, "refs.bib")
    assert "not valid JSON" in error(BIB, "refs.json")


def test_encodings_bom_utf16_and_the_cp1252_fallback() -> None:
    assert read_library(b"\xef\xbb\xbf" + BIB, "refs.bib") == read_library(BIB, "refs.bib")
    utf16 = RIS.decode().encode("utf-16")  # EndNote on Windows
    assert utf16.startswith(b"\xff\xfe")
    assert read_library(utf16, "refs.ris") == read_library(RIS, "refs.ris")
    latin = "@article{k, title = {Caf\xe9 \x93quoted\x94}}".encode("latin-1")
    assert read_library(latin, "refs.bib").entries[0].title == "Café “quoted”"


# -- where an arXiv id and a DOI come from --------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "arxiv_id"),
    [
        ("eprint = {2411.01234}, archivePrefix = {arXiv}", "2411.01234"),
        ("eprint = {arXiv:2411.01234v3}, eprinttype = {arxiv}", "2411.01234"),
        ("eprint = {2411.01234}", "2411.01234"),  # looks like an id: enough without a prefix
        ("eprint = {PMC1234567}, archivePrefix = {PMC}", None),
        ("eprint = {2411.01234}, archivePrefix = {HAL}", None),  # another archive's number
        ("arxiv = {2301.00002v1}", "2301.00002"),
        ("arxivId = {hep-th/9901001}", "hep-th/9901001"),
        ("journal = {arXiv preprint arXiv:2106.09685}", "2106.09685"),
        ("journal = {CoRR}, volume = {abs/2106.09685}", None),
        ("url = {https://arxiv.org/pdf/2305.10403v2.pdf}", "2305.10403"),
        ("url = {http://export.arxiv.org/abs/math.GT/0309136}", "math.GT/0309136"),
        ("note = {arXiv: 1706.03762 [cs]}", "1706.03762"),
        ("number = {arXiv:2401.00001}", "2401.00001"),
        ("doi = {10.48550/ARXIV.2402.00003}", "2402.00003"),
        ("note = {Volume 2401.12345 of the proceedings}", None),  # a number is not an id
    ],
)
def test_arxiv_id_sources_in_bibtex(fields: str, arxiv_id: str | None) -> None:
    assert one(f"@misc{{k, title = {{T}}, {fields}}}").arxiv_id == arxiv_id


@pytest.mark.parametrize(
    ("fields", "doi"),
    [
        ("doi = {10.1038/S41586-021-03819-2}", "10.1038/s41586-021-03819-2"),
        ("doi = {https://doi.org/10.1145/3292500.3330701}", "10.1145/3292500.3330701"),
        ("doi = {doi:10.1000/XYZ}", "10.1000/xyz"),
        (r"doi = {10.1002/a\_b}", "10.1002/a_b"),  # an escaped underscore
        ("doi = {not a doi}", None),
        (
            "url = {https://doi.org/10.1103/PhysRevLett.116.061102}",
            "10.1103/physrevlett.116.061102",
        ),
        ("url = {https://dx.doi.org/10.1000%2Fa%20b}", None),  # a space is no DOI
    ],
)
def test_doi_sources_in_bibtex(fields: str, doi: str | None) -> None:
    assert one(f"@misc{{k, title = {{T}}, {fields}}}").doi == doi


def test_arxiv_ids_in_ris_and_csl() -> None:
    ris = "TY  - JOUR\nTI  - T\nN1  - arXiv:2401.00001v2 [cs.LG]\nER  - \n"
    assert one(ris, "x.ris").arxiv_id == "2401.00001"
    ris = "TY  - JOUR\nTI  - T\nJO  - arXiv preprint arXiv:2106.09685\nER  - \n"
    assert one(ris, "x.ris").arxiv_id == "2106.09685"
    csl = [{"title": "T", "URL": "https://arxiv.org/abs/2305.10403v2"}]
    assert one(json.dumps(csl), "x.json").arxiv_id == "2305.10403"
    csl = [{"title": "T", "DOI": "https://doi.org/10.48550/arXiv.2402.00003"}]
    assert (one(json.dumps(csl), "x.json").arxiv_id, one(json.dumps(csl), "x.json").doi) == (
        "2402.00003",
        "10.48550/arxiv.2402.00003",
    )


# -- names ----------------------------------------------------------------------------------------


def test_names_given_first_in_every_format() -> None:
    bib = r"@misc{k, title = {T}, author = {von Neumann, John and Smith, Jr., John and {OpenAI} and {\'E}mile Zola}}"
    assert one(bib).authors == ("John von Neumann", "John Smith Jr.", "OpenAI", "Émile Zola")
    ris = "TY  - JOUR\nTI  - T\nAU  - Smith, John, Jr.\nAU  - Plato\nA1  - Ignored, Because AU\nER  - \n"
    assert one(ris, "x.ris").authors == ("John Smith Jr.", "Plato")
    people = [
        {"given": "Ludwig", "non-dropping-particle": "van", "family": "Beethoven"},
        {"literal": "ATLAS Collaboration"},
        {"family": "Curie"},
        "not a person",
        {"given": {"nested": "object"}, "family": 7},
    ]
    csl = json.dumps([{"title": "T", "author": people}])
    assert one(csl, "x.json").authors == (
        "Ludwig van Beethoven",
        "ATLAS Collaboration",
        "Curie",
        "7",
    )


# -- broken entries are listed, never fatal -------------------------------------------------------


def test_a_broken_bibtex_entry_costs_only_itself() -> None:
    text = (
        "@article{good1, title = {One}}\n"
        "@article{bad, title = {Unclosed, year = {2024},\n"
        "@article{good2, title = {Two}}\n"
        "@article{good1, title = {One again, same key}}\n"
        "@article{twice, title = {A}, title = {B}}\n"
        "@article{nokey title = {x}}\n"
    )
    result = read_library(text.encode(), "refs.bib")
    assert [e.title for e in result.entries] == ["One", "Two", "One again, same key"]
    assert [line.split(": ")[0] for line in result.skipped] == [
        "entry 2 (key bad)",
        "entry 5 (key twice)",
        "entry 6",
    ]
    assert result.skipped[1] == "entry 5 (key twice): a field appears twice (line 5): title"
    assert result.skipped[2].startswith("entry 6: not valid BibTeX (line 6): ")


def test_ris_records_without_their_er_line() -> None:
    text = (
        "TY  - JOUR\nTI  - One\nER  - \n"
        "TY  - JOUR\nTI  - Two, its ER forgotten\n"
        "TY  - JOUR\nTI  - Three\nER  -\n"  # no space after the dash: still an end
        "TY  - JOUR\nTI  - Four, cut off\nAB  - The file ends mid-"
    )
    result = read_library(text.encode(), "refs.ris")
    assert [e.title for e in result.entries] == ["One", "Three"]
    assert result.skipped == (
        "entry 2 (line 4): no 'ER  -' line ends it (cut short?)",
        "entry 4 (line 9): no 'ER  -' line ends it (cut short?)",
    )


def test_csl_items_that_are_not_objects() -> None:
    text = json.dumps([{"title": "One"}, "two", 3, None, [], {"id": 5, "title": {"a": 1}}])
    result = read_library(text.encode(), "x.json")
    assert [e.title for e in result.entries] == ["One"]
    assert result.skipped == (
        "entry 2: a JSON string, not an item",
        "entry 3: a JSON number, not an item",
        "entry 4: a JSON null or boolean, not an item",
        "entry 5: a JSON array, not an item",
        "entry 6 (id 5): no title, arXiv id or DOI",
    )


def test_an_honest_empty_csl_export() -> None:
    assert read_library(b"[]", "empty.json") == LibraryImport((), ())


# -- whole files that cannot be read --------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "filename", "expected"),
    [
        (b"", "refs.bib", "refs.bib: the file is empty"),
        (b" \r\n\t\n", "refs", "refs: the file is empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "cover.png", "cover.png: not a text file"),
        (b"\xff\xfe\x00\xd8", "refs.ris", "refs.ris: not valid UTF-16 text"),
        (b"Dear colleague,\nplease find attached", "mail", "mail: not a BibTeX, RIS or CSL-JSON"),
        (
            b"<!DOCTYPE html><html>",
            "export",
            'export: not a BibTeX, RIS or CSL-JSON export (starts with "<!DOCTYPE html>',
        ),
        (b"just words", "refs.bib", "refs.bib: no BibTeX entry"),
        (b"AU  - no record start\nER  - \n", "refs.ris", "refs.ris: no RIS record"),
        (b'[{"title": "x"},]', "x.json", "x.json: not valid JSON (line 1 column 17: "),
        (
            b'{"title": "x"}',
            "x.json",
            "x.json: expected a CSL-JSON array of items, got a JSON object",
        ),
        (b'"x"', "x.json", "x.json: expected a CSL-JSON array of items, got a JSON string"),
        (b"null", "x.json", "x.json: expected a CSL-JSON array of items, got a JSON null"),
        (b"[" * 100_000, "x.json", "x.json: JSON nested too deeply to read"),
        (b"[" + b"9" * 5000 + b"]", "x.json", "x.json: not valid JSON"),
    ],
)
def test_files_that_are_no_export_are_one_line_errors(
    data: bytes, filename: str, expected: str
) -> None:
    assert error(data, filename).startswith(expected)


def test_the_file_name_in_a_message_is_one_clean_line() -> None:
    message = error(b"", "evil\nname\u202e.bib")
    assert message == "evil name.bib: the file is empty"


# -- hostile input --------------------------------------------------------------------------------


def test_ten_megabytes_of_random_bytes() -> None:
    noise = random.Random(7).randbytes(10_000_000)
    assert "not a text file" in error(noise, "refs.bib")
    assert "not a text file" in error(noise, "refs")


def test_ten_megabytes_of_printable_garbage() -> None:
    rng = random.Random(8)
    garbage = "".join(rng.choices("@{}=,\"#%\\ \nabcxyz019$~'", k=10_000_000)).encode()
    result = read_library(garbage, "refs.bib")  # read as BibTeX, whatever it holds
    assert len(result.entries) + len(result.skipped) <= library.MAX_ENTRIES + 1
    assert all("\n" not in line for line in result.skipped)
    assert all(len(e.title) <= library.MAX_TITLE for e in result.entries)
    assert "not a BibTeX, RIS or CSL-JSON" in error(b"x" * 10_000_000, "refs")


def test_deeply_nested_latex_and_json_objects() -> None:
    title = "{" * 5000 + "Deep" + "}" * 5000
    assert one(f"@misc{{k, title = {{{title}}}, doi = {{10.1000/x}}}}").title == ""  # cut before
    title = "{" * 300 + r"\emph{Deep}" + "}" * 300
    assert one(f"@misc{{k, title = {{{title}}}}}").title == "Deep"
    nested = b'[{"title": "x", "a": ' + b'{"a": ' * 50_000 + b"1" + b"}" * 50_001 + b"]"
    assert "nested too deeply" in error(nested, "x.json")
    nested = b'[{"title": "x", "a": ' + b'{"a": ' * 500 + b"1" + b"}" * 501 + b"]"
    assert one(nested.decode(), "x.json").title == "x"  # deep, but within reach


@pytest.mark.parametrize(
    "title",
    [
        "<script>alert(1)</script>Safe <b>Title</b>",
        "&lt;script&gt;alert(1)&lt;/script&gt;Safe <b>Title</b>",
        "<SCRIPT src=//evil.example>alert(1)</SCRIPT>Safe <img src=x onerror=alert(1)>Title",
        "<style>p {}</style>Safe<!-- hidden --> \u202eTitle\u200f\x07\x1b\x7f",
    ],
)
def test_no_markup_or_control_character_survives(title: str) -> None:
    csl = one(json.dumps([{"title": title}]), "x.json")
    ris = one(f"TY  - JOUR\nTI  - {title}\nER  - \n", "x.ris")
    assert csl.title == ris.title == "Safe Title"


def test_nul_is_binary_in_a_file_and_dropped_from_a_json_string() -> None:
    assert "NUL" in error(b"TY  - JOUR\nTI  - A\x00B\nER  - \n", "x.ris")
    assert one('[{"title": "A\\u0000B"}]', "x.json").title == "AB"


def test_markup_in_bibtex_survives_neither_latex_nor_html() -> None:
    bib = r"@misc{k, title = {\textless{}script\textgreater{}x <script>alert(1)</script>Safe \emph{Title}}}"
    assert one(bib).title == "scriptx Safe Title"  # \\textless is no "<", and tags go
    bib = "@misc{k, title = {Sense & Sensibility: 50% of {GPT} {\\textendash} $x<y$ ``quoted''}}"
    assert one(bib).title == "Sense & Sensibility: 50% of GPT – x<y “quoted”"


def test_lone_surrogates_from_json_escapes_are_dropped() -> None:
    entry = one('[{"title": "Bad \\ud800 surrogate", "abstract": "\\udfff"}]', "x.json")
    assert (entry.title, entry.abstract) == ("Bad surrogate", "")
    entry.title.encode("utf-8")


def test_lengths_are_capped() -> None:
    word = "word "
    entry = one(
        json.dumps(
            [
                {
                    "title": word * 1000,
                    "abstract": word * 10_000,
                    "author": [{"family": f"F{i}", "given": "G" * 1000} for i in range(500)],
                }
            ]
        ),
        "x.json",
    )
    assert len(entry.title) == library.MAX_TITLE and entry.title.endswith("word…")
    assert len(entry.abstract) == library.MAX_ABSTRACT
    assert len(entry.authors) == library.MAX_AUTHORS
    assert all(len(name) <= library.MAX_NAME for name in entry.authors)
    authors = " and ".join(f"Family{i}, Given" for i in range(300))
    entry = one("@misc{k, title = {" + r"\"o" * 1000 + "}, author = {" + authors + "}}")
    assert entry.title == "ö" * (library.MAX_TITLE - 1) + "…"
    assert len(entry.authors) == library.MAX_AUTHORS


def test_at_most_max_entries_are_read() -> None:
    items = [{"title": f"Paper {i}"} for i in range(library.MAX_ENTRIES + 7)]
    result = read_library(json.dumps(items).encode(), "big.json")
    assert len(result.entries) == library.MAX_ENTRIES
    assert result.entries[-1].title == f"Paper {library.MAX_ENTRIES - 1}"
    assert result.skipped == (
        f"entries {library.MAX_ENTRIES + 1} to {library.MAX_ENTRIES + 7}: left out, "
        f"a file is read up to its first {library.MAX_ENTRIES} entries",
    )


def test_latex_past_the_budget_keeps_its_words(monkeypatch: pytest.MonkeyPatch) -> None:
    bib = r"@misc{k, title = {{Schr{\"o}dinger} \emph{Bridges} at $O(n)$ -- {fast}}}"
    assert one(bib).title == "Schrödinger Bridges at O(n) – fast"
    monkeypatch.setattr(library._Latex, "BUDGET", 0)
    assert one(bib).title == "Schrodinger Bridges at O(n) – fast"
