"""A reference manager's export (BibTeX, RIS or CSL-JSON) -> the papers in it. Pure.

    read_library(data, "My Library.bib") -> LibraryImport(entries=(LibraryEntry(...), ...),
                                                          skipped=("entry 5 (key foo): ...", ...))

The format is the file's extension (.bib/.bibtex, .ris, .json/.csljson); any other name is read by
its content: `[` or `{` first is CSL-JSON, a line `TY  -` is RIS, an `@type{` is BibTeX.

Each entry gives its arXiv id (without version), DOI (lower-cased), title, abstract and authors
("Given Family"). An arXiv id is read from, in order: the BibTeX fields made for it (`eprint`
unless `archivePrefix` names another archive, `arxiv`, `arxivid`), an arXiv DOI
(10.48550/arXiv.<id>), then any field that may mention one: `arXiv:<id>` or an arxiv.org/abs|pdf
link in a URL, note, number (Zotero's CSL-JSON: "arXiv:2401.00001") or journal ("arXiv preprint
arXiv:2106.09685"). A bare number is never taken for an id outside the fields made for it.

One bad entry never stops the others: an entry with none of an arXiv id, a DOI or a title, a BibTeX
block the parser gave up on, and an RIS record with no ER line are listed in `skipped`, one line
each, naming the entry. A LibraryError, one line naming the file, is only for the whole file: not
text, empty, none of the three formats, no entry at all, JSON that is broken or not a list of items.

Every string is untrusted: LaTeX is decoded (BibTeX), then entities, tags (with the content of
script and style), control and bidi characters go and white space is folded. Limits against hostile
files: the first 5,000 entries, 100 authors an entry, titles cut at 500 and abstracts at 5,000
characters.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import PurePath
from typing import Literal, NamedTuple, TypeVar
from urllib.parse import unquote

import rispy
from bibtexparser.entrypoint import parse_string
from bibtexparser.middlewares import NormalizeFieldKeys
from bibtexparser.middlewares.names import (
    parse_single_name_into_parts,
    split_multiple_persons_names,
)
from bibtexparser.model import (
    DuplicateBlockKeyBlock,
    DuplicateFieldKeyBlock,
    Entry,
    ParsingFailedBlock,
)
from pylatexenc.latex2text import LatexNodes2Text, MacroTextSpec, get_default_latex_context_db

from digest.errors import LibraryError
from digest.identify import normalize_doi
from digest.sources.common import ARXIV_ID_RE, decode_text, describe_start, split_arxiv_id
from digest.text import one_line

MAX_ENTRIES = 5_000
MAX_TITLE = 500
MAX_ABSTRACT = 5_000
MAX_AUTHORS = 100
MAX_NAME = 200
# LaTeX is cut before it is decoded (its cost grows with its length): room for markup around the
# characters kept, e.g. `{\"o}` is five characters for one.
_LATEX_ROOM = 4


@dataclass(frozen=True, slots=True)
class LibraryEntry:
    arxiv_id: str | None  # without version: "2411.01234", "hep-th/9901001"
    doi: str | None  # lower-cased, no "https://doi.org/" prefix
    title: str  # plain text: LaTeX decoded, braces and markup removed, white space folded
    abstract: str  # plain text the same way; "" when the entry has none
    authors: tuple[str, ...]  # "Given Family"
    where: str  # names the entry in messages: "entry 3 (key smith2024)"


@dataclass(frozen=True, slots=True)
class LibraryImport:
    entries: tuple[LibraryEntry, ...]
    skipped: tuple[str, ...]  # one line per entry left out: where it is, then why


_Format = Literal["bibtex", "ris", "csl"]
_EXTENSIONS: dict[str, _Format] = {
    ".bib": "bibtex",
    ".bibtex": "bibtex",
    ".ris": "ris",
    ".json": "csl",
    ".csljson": "csl",
}
_JSON_KINDS = {dict: "object", list: "array", str: "string", int: "number", float: "number"}

_RIS_LINE = re.compile(r"^([A-Z][A-Z0-9])  -")
_RIS_START = re.compile(r"^TY  -", re.MULTILINE)
_BIBTEX_START = re.compile(r"@[ \t]*[A-Za-z]+[ \t]*[{(]")
_BIBTEX_KEY = re.compile(r"@\s*[A-Za-z]+\s*[{(]\s*([^\s,{}()=\"#%'~\\]+)\s*,")

# Where an arXiv id follows: an abs/pdf link, "arXiv:", or arXiv's own DOI prefix.
_ARXIV_MENTION = re.compile(
    r"(?:arxiv\.org/(?:abs|pdf|html|ps|format)/|\barxiv:\s*|\b10\.48550/arxiv\.)([\w./-]+)", re.I
)
_DOI = re.compile(r"10\.\d{4,9}/\S+")
_DOI_LINK = re.compile(r"\bdoi\.org/(10\.\d{4,9}/[^\s\"'<>]+)", re.I)

# LaTeX: `&` and `%` typed bare in a field are text (a hand-written "50%"), not LaTeX syntax.
_BARE_SPECIAL = re.compile(r"(?<!\\)([&%])")
# Where a piece of LaTeX starts: a macro, a group, math. Only a piece with a macro or math needs
# pylatexenc; a group of plain words ("{ImageNet}") just loses its braces.
_PIECE_START = re.compile(r"[\\{$]")
_NEEDS_DECODER = re.compile(r"[\\$]")
_MACRO = re.compile(r"\\(?:[A-Za-z]+\*?|.)", re.DOTALL)
_BRACE = re.compile(r"\\.|[{}]", re.DOTALL)
# Accents that take the next letter, `\i` or group: \'e, \"{o}, \'\i.
_ACCENTS = frozenset("'\"`^~=.")
# What LaTeX makes of plain text, as pylatexenc does it.
_PLAIN_SYNTAX = re.compile(r"[{}~`']|--")
_TEXT_LIGATURES = (
    ("---", "\u2014"),
    ("--", "\u2013"),
    ("``", "\u201c"),
    ("''", "\u201d"),
    ("~", " "),
)

# Markup: script and style with their content (an unclosed one takes the rest), comments, tags.
_SCRIPT = re.compile(r"<(script|style)\b.*?(?:</\1\s*>|\Z)", re.DOTALL | re.IGNORECASE)
_COMMENT = re.compile(r"<!--.*?(?:-->|\Z)", re.DOTALL)
_TAG = re.compile(r"</?([A-Za-z][\w:-]*)(?:\s[^<>]*)?/?>")
# Tags inside a word ("CO<sub>2</sub>", "<i>E. coli</i>") go without a trace; others part words.
_INLINE_TAGS = frozenset(
    {"a", "abbr", "b", "bdi", "bdo", "cite", "code", "dfn", "em", "font", "i", "kbd", "mark", "q"}
    | {"s", "samp", "small", "span", "strong", "sub", "sup", "tt", "u", "var"}
    | {"jats:bold", "jats:italic", "jats:sc", "jats:sub", "jats:sup", "jats:monospace"}
)
# Format characters digest.text.one_line keeps (or that a title should not carry): soft hyphen, direction marks and overrides, word joiners,
# the BOM; and lone surrogates, which JSON can spell ("\ud800") and no UTF-8 writer accepts.
_INVISIBLE = re.compile(
    r"[\u00ad\u200e\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff\ud800-\udfff]"
)

_T = TypeVar("_T")


class _Broken(NamedTuple):
    """An entry known to be bad before it is read: why."""

    reason: str


def _latex_decoder() -> LatexNodes2Text:
    context = get_default_latex_context_db()
    context.add_context_category(
        "paperdigest",
        prepend=True,
        macros=[
            MacroTextSpec("url", simplify_repl="%s"),  # not "<http://...>"
            *(MacroTextSpec(name, simplify_repl="") for name in ("cite", "citep", "citet")),
        ],
    )
    return LatexNodes2Text(latex_context=context, math_mode="text")


_LATEX = _latex_decoder()


def read_library(data: bytes, filename: str) -> LibraryImport:
    """The entries of one export file; LibraryError when the file as a whole cannot be read."""
    kind = _EXTENSIONS.get(PurePath(filename).suffix.lower())
    filename = _cut(one_line(_INVISIBLE.sub("", filename)), 200) or "the file"  # for messages
    text = _decode(data, filename)
    if not text.strip():
        raise LibraryError(f"{filename}: the file is empty")
    kind = kind or _sniff(text, filename)
    if kind == "bibtex":
        latex = _Latex()
        return _collect(
            _bibtex_items(text, filename), lambda where, entry: _from_bibtex(where, entry, latex)
        )
    if kind == "ris":
        return _collect(_ris_items(text, filename), _from_ris)
    return _collect(_csl_items(text, filename), _from_csl)


def _decode(data: bytes, filename: str) -> str:
    """UTF-16 with its BOM, else UTF-8 (with or without BOM), else cp1252; never binary."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            text = data.decode("utf-16")
        except UnicodeDecodeError:
            raise LibraryError(f"{filename}: not valid UTF-16 text") from None
    else:
        text = decode_text(data)
    if "\x00" in text:
        raise LibraryError(f"{filename}: not a text file (it holds NUL bytes)")
    return text


def _sniff(text: str, filename: str) -> _Format:
    head = text.lstrip()
    if head.startswith(("[", "{")):
        return "csl"
    if _RIS_START.search(text):
        return "ris"
    if _BIBTEX_START.search(text):
        return "bibtex"
    raise LibraryError(f"{filename}: not a BibTeX, RIS or CSL-JSON export ({describe_start(head)})")


def _collect(
    items: Sequence[tuple[str, _T | _Broken]], convert: Callable[[str, _T], LibraryEntry]
) -> LibraryImport:
    entries: list[LibraryEntry] = []
    skipped: list[str] = []
    for where, item in items[:MAX_ENTRIES]:
        if isinstance(item, _Broken):
            skipped.append(f"{where}: {item.reason}")
            continue
        try:
            entry = convert(where, item)
        except Exception as exc:  # a parser's surprise on one entry must not cost the others
            skipped.append(f"{where}: could not be read ({type(exc).__name__})")
            continue
        if entry.arxiv_id or entry.doi or entry.title:
            entries.append(entry)
        else:
            skipped.append(f"{where}: no title, arXiv id or DOI")
    if len(items) > MAX_ENTRIES:
        skipped.append(
            f"entries {MAX_ENTRIES + 1} to {len(items)}: left out, "
            f"a file is read up to its first {MAX_ENTRIES} entries"
        )
    return LibraryImport(tuple(entries), tuple(skipped))


# -- BibTeX ---------------------------------------------------------------------------------------


def _bibtex_items(text: str, filename: str) -> list[tuple[str, Entry | _Broken]]:
    try:
        library = parse_string(text, append_middleware=[NormalizeFieldKeys()])
    except Exception as exc:  # it re-raises what it takes for its own bugs
        raise LibraryError(
            f"{filename}: the BibTeX parser gave up on the file ({type(exc).__name__})"
        ) from None
    items: list[tuple[str, Entry | _Broken]] = []
    for block in library.blocks:
        number = len(items) + 1
        if isinstance(block, Entry):
            items.append((_where(number, "key", block.key), block))
        elif isinstance(block, DuplicateBlockKeyBlock) and isinstance(
            block.ignore_error_block, Entry
        ):
            # The key was used before; the entry itself is whole, and still a paper.
            entry = block.ignore_error_block
            items.append((_where(number, "key", entry.key), entry))
        elif isinstance(block, ParsingFailedBlock):
            items.append(_broken_bibtex(number, block))
    if not items:
        raise LibraryError(f"{filename}: no BibTeX entry (@article{{...}}) in the file")
    return items


def _broken_bibtex(number: int, block: ParsingFailedBlock) -> tuple[str, _Broken]:
    key = _BIBTEX_KEY.match(block.raw or "")
    where = _where(number, "key", key.group(1) if key else "")
    line = f" (line {block.start_line + 1})" if block.start_line is not None else ""
    if isinstance(block, DuplicateFieldKeyBlock):
        fields = ", ".join(sorted(block.duplicate_keys))
        return where, _Broken(f"a field appears twice{line}: {_cut(one_line(fields), 80)}")
    reason = getattr(block.error, "abort_reason", None) or str(block.error)
    return where, _Broken(f"not valid BibTeX{line}: {_cut(one_line(reason), 160)}")


def _from_bibtex(where: str, entry: Entry, latex: _Latex) -> LibraryEntry:
    fields = {field.key: field.value for field in entry.fields if isinstance(field.value, str)}

    def get(name: str) -> str:
        return fields.get(name, "")

    archive = one_line(get("archiveprefix") or get("eprinttype")).lower()
    eprint = get("eprint") if archive in ("", "arxiv") else ""
    mentions = ("url", "journal", "journaltitle", "note", "number", "howpublished")
    arxiv_id, doi = _identify(
        [eprint, get("arxiv"), get("arxivid")], [get("doi")], [get(name) for name in mentions]
    )
    return LibraryEntry(
        arxiv_id=arxiv_id,
        doi=doi,
        title=_plain(latex.text(get("title"), MAX_TITLE), MAX_TITLE),
        abstract=_plain(latex.text(get("abstract"), MAX_ABSTRACT), MAX_ABSTRACT),
        authors=_bibtex_authors(get("author"), latex),
        where=where,
    )


def _bibtex_authors(field: str, latex: _Latex) -> tuple[str, ...]:
    """'M{\\"u}ller, Jonas and von Neumann, John and others' -> ('Jonas Müller', 'John von Neumann')."""
    authors: list[str] = []
    for name in split_multiple_persons_names(field[: MAX_AUTHORS * MAX_NAME]):
        if name.strip().lower() == "others":  # BibTeX's "et al."
            continue
        parts = parse_single_name_into_parts(name, strict=False)
        author = _plain(latex.text(parts.merge_first_name_first, MAX_NAME), MAX_NAME)
        if author:
            authors.append(author)
        if len(authors) == MAX_AUTHORS:
            break
    return tuple(authors)


class _Latex:
    """LaTeX field values as text, through pylatexenc, at a bounded cost per file.

    pylatexenc reads some 300,000 characters a second: a library of 5,000 abstracts would take
    half a minute, a hostile one hours. So only the pieces of LaTeX in a value go through it (a
    macro with its arguments, math, a group holding either), each distinct piece once per file,
    and a file gets BUDGET characters of it; past that, macros are dropped and their arguments
    kept (a hostile file costs seconds, and keeps its words).
    """

    BUDGET = 1_000_000
    CALL_COST = 20  # one call costs about as much as twenty characters
    KNOWN = 20_000  # distinct pieces remembered

    def __init__(self) -> None:
        self.left = self.BUDGET
        self.known: dict[str, str] = {}

    def text(self, value: str, limit: int) -> str:
        """Accents and escapes decoded, math as text, braces and other macros gone."""
        value = _BARE_SPECIAL.sub(r"\\\1", value[: limit * _LATEX_ROOM])
        parts: list[str] = []
        done = 0
        for start, end in _latex_pieces(value):
            parts += [_plain_latex(value[done:start]), self._piece(value[start:end])]
            done = end
        parts.append(_plain_latex(value[done:]))
        return "".join(parts)

    def _piece(self, piece: str) -> str:
        if not _NEEDS_DECODER.search(piece):
            return _plain_latex(piece)
        known = self.known.get(piece)
        if known is not None:
            return known
        cost = len(piece) + self.CALL_COST
        if cost <= self.left:
            self.left -= cost
            decoded = _decode_latex(piece)
        else:
            decoded = _strip_latex(piece)
        if len(self.known) < self.KNOWN:
            self.known[piece] = decoded
        return decoded


def _latex_pieces(text: str) -> Iterator[tuple[int, int]]:
    """(start, end) of each macro with its arguments, group and math span, left to right."""
    position = 0
    while (found := _PIECE_START.search(text, position)) is not None:
        start = found.start()
        position = max(_piece_end(text, start), start + 1)
        yield start, position


def _piece_end(text: str, start: int) -> int:
    if text[start] == "{":
        return _group_end(text, start)
    if text[start] == "$":
        close = text.find("$", start + 1)
        return close + 1 if close != -1 else len(text)
    macro = _MACRO.match(text, start)
    end = macro.end() if macro else len(text)  # a backslash that ends the text
    name = text[start + 1 : end]
    if end == len(text):
        return end
    if name in _ACCENTS:
        if text[end] == "{":
            return _group_end(text, end)
        accented = _MACRO.match(text, end)  # \'\i
        return accented.end() if accented else end + 1
    if name[:1].isalpha():  # a command and the arguments right after it: \emph{...}, \cite[p.~3]{x}
        while end < len(text) and text[end] in "{[":
            if text[end] == "{":
                end = _group_end(text, end)
            else:
                close = text.find("]", end)
                end = close + 1 if close != -1 else len(text)
    return end


def _group_end(text: str, start: int) -> int:
    """Past the brace that closes the one at start; the end of the text when none does."""
    depth = 0
    for brace in _BRACE.finditer(text, start):
        if brace.group() == "{":
            depth += 1
        elif brace.group() == "}":
            depth -= 1
            if depth == 0:
                return brace.end()
    return len(text)


def _plain_latex(text: str) -> str:
    """Text outside macros and math: braces go, dashes, quotes and ties become characters."""
    if not _PLAIN_SYNTAX.search(text):
        return text
    text = text.replace("{", "").replace("}", "")
    for ligature, character in _TEXT_LIGATURES:
        text = text.replace(ligature, character)
    return text


def _decode_latex(piece: str) -> str:
    try:
        decoded: str = _LATEX.latex_to_text(piece)
    except Exception:  # nested too deeply (RecursionError), or a surprise: keep the words
        return _strip_latex(piece)
    return decoded


def _strip_latex(piece: str) -> str:
    return _plain_latex(_MACRO.sub("", piece).replace("$", ""))


# -- RIS ------------------------------------------------------------------------------------------


def _ris_items(text: str, filename: str) -> list[tuple[str, list[str] | _Broken]]:
    """One item per record, TY to ER, cut here so that a record missing its ER spoils only itself.

    rispy alone would silently drop a last record with no ER, and merge a record missing its ER
    into the next one.
    """
    records: list[tuple[int, list[str] | None]] = []  # (first line, lines); None: no ER
    current: list[str] | None = None
    start = 0
    for number, line in enumerate(text.splitlines(), 1):
        tag = _RIS_LINE.match(line)
        name = tag.group(1) if tag else None
        if name == "TY":
            if current is not None:
                records.append((start, None))
            current, start = [line], number
        elif current is None:
            continue  # text between records
        elif name == "ER":
            current.append("ER  - ")
            records.append((start, current))
            current = None
        else:
            current.append(line)
    if current is not None:
        records.append((start, None))
    if not records:
        raise LibraryError(f"{filename}: no RIS record (a line 'TY  - ...') in the file")
    return [
        (
            f"entry {number} (line {start})",
            lines if lines is not None else _Broken("no 'ER  -' line ends it (cut short?)"),
        )
        for number, (start, lines) in enumerate(records, 1)
    ]


def _from_ris(where: str, lines: list[str]) -> LibraryEntry:
    parsed = rispy.loads("\n".join(lines))
    if not parsed or not isinstance(parsed[0], Mapping):
        raise ValueError("rispy read no record")
    record: Mapping[str, object] = parsed[0]

    def every(name: str) -> list[str]:
        value = record.get(name)
        values = value if isinstance(value, list) else [value]
        return [item for item in values if isinstance(item, str) and item.strip()]

    def first(*names: str) -> str:
        return next((value for name in names for value in every(name)), "")

    mentions = [*every("urls"), *every("notes"), first("note"), first("accession_number")]
    mentions += [first("journal_name"), first("secondary_title"), first("number")]
    arxiv_id, doi = _identify([], [first("doi")], mentions)
    authors = every("authors") or every("first_authors")
    return LibraryEntry(
        arxiv_id=arxiv_id,
        doi=doi,
        title=_plain(first("title", "primary_title"), MAX_TITLE),
        abstract=_plain(first("abstract", "notes_abstract"), MAX_ABSTRACT),
        authors=_names(_given_first(name) for name in authors),
        where=where,
    )


def _given_first(name: str) -> str:
    """RIS writes 'Family, Given[, Suffix]': 'Smith, John, Jr.' -> 'John Smith Jr.'."""
    parts = [part.strip() for part in name.split(",")]
    if len(parts) < 2:
        return name
    family, given, *rest = parts
    return " ".join(part for part in (given, family, *rest) if part)


# -- CSL-JSON -------------------------------------------------------------------------------------


def _csl_items(text: str, filename: str) -> list[tuple[str, Mapping[str, object] | _Broken]]:
    try:
        document = json.loads(text)
    except RecursionError:
        raise LibraryError(f"{filename}: JSON nested too deeply to read") from None
    except json.JSONDecodeError as exc:
        raise LibraryError(
            f"{filename}: not valid JSON (line {exc.lineno} column {exc.colno}: {exc.msg})"
        ) from None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise LibraryError(f"{filename}: not valid JSON ({_cut(one_line(exc), 120)})") from None
    if isinstance(document, Mapping) and isinstance(document.get("items"), list):
        document = document["items"]  # Zotero's web API: {"items": [...]}
    if not isinstance(document, list):
        kind = _JSON_KINDS.get(type(document), "null or boolean")
        raise LibraryError(f"{filename}: expected a CSL-JSON array of items, got a JSON {kind}")
    items: list[tuple[str, Mapping[str, object] | _Broken]] = []
    for number, item in enumerate(document, 1):
        if isinstance(item, Mapping):
            items.append((_where(number, "id", _scalar(item.get("id"))), item))
        else:
            kind = _JSON_KINDS.get(type(item), "null or boolean")
            items.append((f"entry {number}", _Broken(f"a JSON {kind}, not an item")))
    return items


def _from_csl(where: str, item: Mapping[str, object]) -> LibraryEntry:
    def get(name: str) -> str:
        return _scalar(item.get(name))

    mentions = ("number", "URL", "note", "container-title", "archive_location")
    arxiv_id, doi = _identify([], [get("DOI")], [get(name) for name in mentions])
    people = item.get("author")
    authors = people if isinstance(people, list) else []
    return LibraryEntry(
        arxiv_id=arxiv_id,
        doi=doi,
        title=_plain(get("title"), MAX_TITLE),
        abstract=_plain(get("abstract"), MAX_ABSTRACT),
        authors=_names(_csl_name(person) for person in authors[: MAX_AUTHORS * 2]),
        where=where,
    )


def _csl_name(person: object) -> str:
    """{"given": "Vincent", "non-dropping-particle": "van", "family": "Gogh"} -> 'Vincent van Gogh'."""
    if not isinstance(person, Mapping):
        return ""
    literal = _scalar(person.get("literal"))
    if literal:
        return literal
    parts = ("given", "dropping-particle", "non-dropping-particle", "family", "suffix")
    return " ".join(part for name in parts if (part := _scalar(person.get(name))))


def _scalar(value: object) -> str:
    """A JSON string or number as text; objects, lists, booleans and null as ""."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return ""
    return str(value)


# -- shared ---------------------------------------------------------------------------------------


def _identify(
    arxiv_fields: Iterable[str], doi_fields: Iterable[str], mentions: Iterable[str]
) -> tuple[str | None, str | None]:
    """(arXiv id, DOI): fields made for them first, then an arXiv DOI, then any mention."""
    mentions = list(mentions)
    arxiv_id = _first(_arxiv_field(value) for value in arxiv_fields)
    doi = _first(_doi(value) for value in doi_fields)
    if doi is None:
        doi = _first(_doi_link(value) for value in mentions)
    if arxiv_id is None and doi is not None:
        arxiv_id = _arxiv_mention(doi)
    if arxiv_id is None:
        arxiv_id = _first(_arxiv_mention(value) for value in mentions)
    return arxiv_id, doi


def _first(values: Iterable[str | None]) -> str | None:
    return next((value for value in values if value), None)


def _arxiv_field(value: str) -> str | None:
    """A field that holds an arXiv id: '2411.01234', 'arXiv:2411.01234v2', 'hep-th/9711200'."""
    text = one_line(value)[:200]
    if ARXIV_ID_RE.fullmatch(text):
        return split_arxiv_id(text)[0]
    return _arxiv_mention(text)


def _arxiv_mention(value: str) -> str | None:
    """The first arXiv id a text states after 'arXiv:', in an arxiv.org link or an arXiv DOI."""
    for mention in _ARXIV_MENTION.finditer(value[:2000]):
        found = ARXIV_ID_RE.match(mention.group(1))
        if found:
            return split_arxiv_id(found.group(0))[0]
    return None


def _doi(value: str) -> str | None:
    """'https://doi.org/10.1038/S41586-021-03819-2', 'doi:10...', '10.1000/a\\_b' -> '10...'."""
    text = re.sub(r"\\([_%&#])", r"\1", unquote(one_line(value)[:300]))
    text = normalize_doi(text.replace("{", "").replace("}", ""))
    return text if _DOI.fullmatch(text) else None


def _doi_link(value: str) -> str | None:
    link = _DOI_LINK.search(value[:2000])
    return _doi(link.group(1)) if link else None


def _plain(text: str, limit: int) -> str:
    """Untrusted text as one plain line: no entity, tag, control or bidi character; cut at limit."""
    text = html.unescape(text[: limit * _LATEX_ROOM])
    text = _TAG.sub(_tag_gap, _COMMENT.sub(" ", _SCRIPT.sub(" ", text)))
    return _cut(one_line(_INVISIBLE.sub("", text)), limit)


def _tag_gap(tag: re.Match[str]) -> str:
    return "" if tag.group(1).lower() in _INLINE_TAGS else " "


def _names(names: Iterable[str]) -> tuple[str, ...]:
    cleaned = (_plain(name, MAX_NAME) for name in names)
    return tuple(islice((name for name in cleaned if name), MAX_AUTHORS))


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _where(number: int, label: str, name: str) -> str:
    name = _cut(one_line(_INVISIBLE.sub("", name)), 80)
    return f"entry {number} ({label} {name})" if name else f"entry {number}"
