"""Words, folded words and phrases: how the ranking reads (untrusted) titles, abstracts and names.

One tokenizer serves keyword matching and tf-idf, so a profile's "diffusion models" and a title's
"Diffusion Model" are read the same way: case and accents folded, plurals folded, LaTeX markup
dropped, any script kept ("变换器" is a word like any other).
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

# LaTeX that carries no words: commands (\mathcal, \textbf), braces, math delimiters. The words
# inside (\textbf{Graph} -> Graph) are kept.
_LATEX_COMMAND = re.compile(r"\\[A-Za-z]+\*?|\\.|[{}$^_~]")
# A word is a run of letters or digits in any script; '-' and '/' split words ("self-supervised").
_WORD = re.compile(r"[^\W_]+")
# Words that never make a keyword match or a tf-idf feature on their own.
# Only function words: frequent content words ("model", "new") are for tf-idf to weigh down.
STOP_WORDS = frozenset(
    ["a", "an", "and", "are", "as", "at", "be", "by", "can", "do", "does", "for", "from", "has", "have", "how", "in", "into", "is", "it", "its", "of", "on", "or", "our", "over", "that", "the", "their", "these", "this", "those", "to", "under", "via", "we", "what", "when", "where", "which", "while", "who", "why", "with", "within", "without", "you", "your"]
)
# Words ending in "s" that are not plurals.
_NOT_PLURAL = frozenset(
    ["news", "series", "species", "physics", "mathematics", "genomics", "robotics", "dynamics", "statistics", "lens", "bias"]
)


def fold(text: str) -> str:
    """Case-folded, accents removed: 'Schölkopf' -> 'scholkopf'. Other scripts are kept as they are."""
    folded = text.casefold()
    if folded.isascii():  # the common case, and much faster
        return folded
    decomposed = unicodedata.normalize("NFKD", folded)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


@lru_cache(maxsize=200_000)
def stem(word: str) -> str:
    """A light, inflection-only stemmer: plural folding that keeps the word recognisable.

    'transformers' -> 'transformer', 'studies' -> 'study', 'boxes' -> 'box', 'analysis' stays.
    Deliberately lighter than Porter: 'transformer' must not match 'transformation'.
    """
    if len(word) <= 3 or not word.isalpha():
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("sses", "xes", "ches", "shes", "zzes")):
        return word[:-2]
    if word.endswith(("ss", "us", "is", "ous", "ics")) or word in _NOT_PLURAL:
        return word
    if word.endswith("s"):
        return word[:-1]
    return word


def words(text: str) -> list[str]:
    """Every word of a text, folded and stemmed, stop words included (phrases need them)."""
    return [stem(word) for word in _WORD.findall(fold(_without_latex(text)))]


def _without_latex(text: str) -> str:
    # Without a backslash only braces, $, ^, _ and ~ could match, and the word pattern splits at
    # them anyway: the substitution (a fifth of the tf-idf fit) is then left out.
    return _LATEX_COMMAND.sub(" ", text) if "\\" in text else text


def is_content(word: str) -> bool:
    """Does a (folded) word carry meaning? Stop words, bare numbers and single letters do not."""
    return word not in STOP_WORDS and not word.isdigit() and len(word) > 1


def content_words(text: str) -> list[str]:
    """The words that carry meaning (tf-idf features): `words` without those `is_content` drops.

    Fitting tf-idf reads millions of words but only some 100,000 distinct ones, so each distinct
    word's stemmed form (or "" for one that carries none) is worked out once and looked up after:
    a third of the fit's time was the two calls a word took."""
    forms = _CONTENT_FORMS
    found = []
    for token in _WORD.findall(fold(_without_latex(text))):
        form = forms.get(token)
        if form is None:
            if len(forms) >= _CONTENT_FORMS_MAX:  # a long-lived process reading odd text
                forms.clear()
            word = stem(token)
            form = forms[token] = word if is_content(word) else ""
        if form:
            found.append(form)
    return found


_CONTENT_FORMS: dict[str, str] = {}
_CONTENT_FORMS_MAX = 500_000


def phrase(term: str) -> tuple[str, ...]:
    """A profile's keyword or phrase as the word sequence a text must contain to match it."""
    return tuple(words(term))


@lru_cache(maxsize=200_000)
def author_keys(name: str) -> tuple[str, ...]:
    """The keys under which an author's name matches: the full name, and 'initial surname'.

    'Yann LeCun', 'LeCun, Yann' and 'Y. LeCun' all share 'y lecun'; only the full form
    'yann lecun' tells Yann from another Y. LeCun. See `author_match_key`.
    """
    text = fold(name)
    if "," in text:  # "LeCun, Yann" -> "Yann LeCun"
        surname, _, given = text.partition(",")
        text = f"{given} {surname}"
    parts = _WORD.findall(text)
    if not parts:
        return ()
    full = " ".join(parts)
    if len(parts) == 1:
        return (full,)
    short = f"{parts[0][0]} {parts[-1]}"
    return (full, short) if short != full else (full,)


@lru_cache(maxsize=200_000)
def author_match_key(name: str) -> str | None:
    """The one key a pinned author is looked up by: the full name, or 'initial surname' when
    the profile gives only initials ('Y. LeCun'), so 'Y. LeCun' matches 'Yann LeCun' too."""
    keys = author_keys(name)
    if not keys:
        return None
    folded = fold(name)
    given = _WORD.findall(folded.partition(",")[2]) if "," in folded else _WORD.findall(folded)[:-1]
    only_initials = bool(given) and all(len(part) == 1 for part in given)
    return keys[-1] if only_initials else keys[0]
