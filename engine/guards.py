"""Merge guards: vetoes that keep a near-duplicate merge from serving the wrong answer.

Similarity only finds candidates. Before a request joins a near (not exact) duplicate, the
guards compare the two texts and veto the merge, whatever the similarity, when a difference
changes what is asked. Each guard is cheap, works on the canonical words of
:mod:`stratabatch.canon`, and returns the words that decided:

``numbers``
    The numbers differ, with their sign, decimal point and thousands separators: "pay -5" vs
    "pay 5", "1,000" vs "1.000" (a thousand vs one), "order 123" vs "order 124". (Switched by
    ``guard_numbers``, which also keeps different digit runs in different partitions.)
``polarity``
    A different count of negations (not, no, never, without, ...), an opposite pair (open /
    closed, enable / disable, increase / decrease, ...), or a negating prefix (safe / unsafe,
    install / uninstall).
``roles``
    The same role word (from, to, into, before, after, vs, than, over, ...) takes the argument
    the other side gives another role: "from checking to brokerage" vs "from brokerage to
    checking"; or the same words come in another order that is not a moved clause ("did Alice
    call Bob" vs "did Bob call Alice"). A typo of a traded word hides neither: "from London to
    Lisbon" vs "from Lisbon to Londoon", "did Bob call Alcie".
``entities``
    A name, product, place, date, weekday, month, time of day, unit or currency on one side is
    missing from the other: "Netflix" vs "Spotify", "Monday" vs "Tuesday", "kg" vs "lb". Names
    are the capitalized words not at a sentence start, plus a curated list of such words
    people type in lower case.
``scope``
    Whose or how many: my / our / your / all / every / one / my partner's (a typo of the word
    aside: "my team" vs "my taem"), and singular vs plural of the same word ("my order" vs "my
    orders"; a word in "s" takes "es": "wirelesss" is a typo).
``residue``
    What differs decides, not the global score: every word one side has and the other lacks
    must be ignorable (an article) or a typo of a word the other side has (edit distance 1 on
    words of 5+ letters, 2 on words of 8+, never two different dictionary words). This is what
    keeps a long shared preamble from hiding a changed question. It also vetoes paraphrases
    (different words for the same thing): switch it off for a sentence model whose
    paraphrase merges you want.

Round 2 (issue 20) adds, for every embedder: conjuncts of an "and" / "or" in the other order
merge (roles keeps "and then" and the roles around them); words with spaces moved ("wayo f" /
"way of": as many words a side, each space moved by a letter or two) are no difference when one
side is all dictionary words; names one letter apart are
two names ("Mary's" / "Mark's") unless one is a typo of the other (same first letter, not both
dictionary words). Where the residue guard is relaxed (a sentence model) or off, ``roles``
also vetoes a passive whose subject does not match the active's ("did the landlord sue the
tenant" / "was the landlord sued by the tenant"), another personal pronoun and an order word
on one side only; ``scope`` another tense or a time word ("is" / "was", "still", "used to");
``residue``, in paraphrase mode, applies in full to words one side only adds ("a fake artist")
and refuses another question word ("how" / "what").

:func:`veto` applies the enabled guards to two :class:`Features` and returns the first
:class:`Veto` (guard and words) or None; :func:`stratabatch.explain.explain` does the whole
decision for two texts for debugging.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .canon import canonical_batch, mention_spans
from .config import GUARDS
from .dedup import number_signature
from .lexicon import (
    DETERMINERS,
    ENTITY_WORDS,
    ID_NOUNS,
    NEGATIONS,
    OPPOSITES,
    PASSIVE_AUX,
    PERSONAL_PRONOUNS,
    QUESTION_AUX,
    ROLE_MARKERS,
    SCOPE_WORDS,
    SHORT_WORDS,
    TENSE_OF,
    TIME_WORDS,
    WORD_VERBS,
    dictionary,
    ignorable,
    is_plural_pair,
    is_prefix_negation,
    is_typo_of,
    typo_partner,
)

__all__ = [
    "GUARDS",
    "Features",
    "Veto",
    "features",
    "features_batch",
    "ignorable",
    "is_typo_of",
    "number_signature",
    "veto",
]


# -------------------------------------------------------------------------------------------
# Features of one text
# -------------------------------------------------------------------------------------------

_WORD = re.compile(r"[^\W\d_]+")
_SENTENCE_END = frozenset(".?!\n")


_EMPTY: frozenset[str] = frozenset()
# An ASCII text's words that start with a capital: the only ones _names keeps (its letters
# are the words of _WORD, each starting after a non-letter)
_ASCII_CAPITALIZED = re.compile(r"(?<![A-Za-z])[A-Z][A-Za-z]*")


def _names(text: str, words: re.Pattern[str] | None = None) -> frozenset[str]:
    """Capitalized words not at a sentence start (nor "I"), casefolded. (``words``: the
    regex of the words looked at; by default only the capitalized ones in an ASCII text, all
    words in others, which tests compare.)"""
    out = set()
    if words is None:
        words = _ASCII_CAPITALIZED if text.isascii() else _WORD
    for m in words.finditer(text):
        w = m.group()
        if not w[0].isupper() or w == "I":
            continue
        k = m.start() - 1
        while k >= 0 and text[k] in " \t\"'([*-":
            k -= 1
        if k < 0 or text[k] in _SENTENCE_END:
            continue  # the first word of a sentence says nothing about being a name
        if w.isupper() and len(w) > 1 and text.isupper():
            continue  # a shouted text: every word is in capitals
        out.add(w.casefold())
    return frozenset(out) if out else _EMPTY


_RAW_WORD = re.compile(r"[^\W_]+")
_QUOTES = frozenset("'\"`\u2018\u2019\u201c\u201d")
# In an ASCII text the raw words are [A-Za-z0-9]+ and casefold is lower: _idents' sets come
# from a few C-level scans (the same answer as the loop, which other texts take)
_ASCII_RAW_WORDS = re.compile(r"[A-Za-z0-9]+").findall
_ASCII_QUOTED = re.compile(r"['\"`]([A-Za-z0-9]+)(?=['\"`])").findall
_ASCII_CAPS_HINT = re.compile(r"[A-Z][A-Z0-9]|[0-9][A-Z]").search  # two in a row, one a capital
_NO_IDENTS: tuple[frozenset[str], frozenset[str]] = (_EMPTY, _EMPTY)


def _idents(text: str) -> tuple[frozenset[str], frozenset[str]]:
    """The words ``text`` writes as an identifier rather than as prose, casefolded: in capitals
    (2+ letters: "ABCD", "EACCES"), between quotes ('gato'), or right after a word that names
    a thing by its id ("ticket", "user", "order": :data:`ID_NOUNS`); and, second, the words
    whose exact spelling is asked about (quoted, or after "translate", "define", ...:
    :data:`WORD_VERBS`, or in a quoted span of a few words: :data:`stratabatch.canon.MENTION`,
    "is 'yours truly' too formal")."""
    if text.isascii():
        return _ascii_idents(text)
    return _idents_reference(text)


def _ascii_idents(text: str) -> tuple[frozenset[str], frozenset[str]]:
    """:func:`_idents` of an ASCII text, from a few C-level scans (tested against the loop
    of :func:`_idents_reference`)."""
    low = _ASCII_RAW_WORDS(text.lower())
    ids = (
        set()
        if ID_NOUNS.isdisjoint(low)
        else {w for p, w in zip(low, low[1:], strict=False) if p in ID_NOUNS}
    )
    exact = (
        set()
        if WORD_VERBS.isdisjoint(low)
        else {w for p, w in zip(low, low[1:], strict=False) if p in WORD_VERBS}
    )
    if _ASCII_CAPS_HINT(text) is not None:
        ids.update(w.lower() for w in _ASCII_RAW_WORDS(text) if len(w) >= 2 and w.isupper())
    if "'" in text or '"' in text or "`" in text:
        quoted = [w.lower() for w in _ASCII_QUOTED(text)]
        ids.update(quoted)
        exact.update(quoted)
        exact.update(_mentioned(text))
    if not ids and not exact:
        return _NO_IDENTS
    return frozenset(ids), frozenset(exact)


def _idents_reference(text: str) -> tuple[frozenset[str], frozenset[str]]:
    """:func:`_idents` word by word (any text)."""
    ids = set()
    exact = set()
    prev = ""
    for m in _RAW_WORD.finditer(text):
        w = m.group()
        lw = w.casefold()
        a, b = m.start(), m.end()
        quoted = a > 0 and b < len(text) and text[a - 1] in _QUOTES and text[b] in _QUOTES
        if quoted or prev in WORD_VERBS:
            exact.add(lw)
        if quoted or (len(w) >= 2 and w.isupper()) or prev in ID_NOUNS:
            ids.add(lw)
        prev = lw
    if not _QUOTES.isdisjoint(text):
        exact.update(_mentioned(text))
    return frozenset(ids), frozenset(exact)


def _mentioned(text: str) -> list[str]:
    """The words of ``text``'s quoted spans (:data:`stratabatch.canon.MENTION`), casefolded."""
    return [w.casefold() for a, b in mention_spans(text) for w in _RAW_WORD.findall(text[a:b])]


class Features:
    """What the guards need to know of one text, computed once per request.

    Attributes:
        tokens: The canonical words (:mod:`stratabatch.canon`).
        counts: How often each canonical word occurs.
        numbers: :func:`number_signature` of the raw text.
        names: Capitalized words not at a sentence start, casefolded.
    """

    __slots__ = ("text", "tokens", "_counts", "_numbers", "_names", "_idents", "_profile", "_roles")

    def __init__(self, text: str, tokens: list[str]) -> None:
        self.text = text
        self.tokens = tokens
        self._counts: dict[str, int] | None = None
        self._numbers: tuple[str, ...] | None = None
        self._names: frozenset[str] | None = None
        self._idents: tuple[frozenset[str], frozenset[str]] | None = None
        self._profile: Any = None
        self._roles: dict[str, list[str]] | None = None

    # Each is computed on first use: most candidate pairs are decided by the first few.
    @property
    def counts(self) -> dict[str, int]:
        c = self._counts
        if c is None:
            t = self.tokens
            # (a plain dict, from C-level calls: a Counter's set-up cost as much as counting)
            c = dict.fromkeys(t, 1)
            if len(c) != len(t):  # a word repeats
                c = dict.fromkeys(c, 0)
                for w in t:
                    c[w] += 1
            self._counts = c
        return c

    @property
    def numbers(self) -> tuple[str, ...]:
        v = self._numbers
        if v is None:
            t = self.text
            v = self._numbers = number_signature(t) if _has_digit(t) else ()
        return v

    @property
    def names(self) -> frozenset[str]:
        v = self._names
        if v is None:
            t = self.text
            v = self._names = _names(t) if _has_upper_inside(t) else frozenset()
        return v

    @property
    def idents(self) -> tuple[frozenset[str], frozenset[str]]:
        """Words the raw text writes as an identifier, and words whose spelling it asks about,
        casefolded (:func:`_idents`)."""
        v = self._idents
        if v is None:
            v = self._idents = _idents(self.text)
        return v

    @property
    def roles(self) -> dict[str, list[str]]:
        """Each role word's arguments (:func:`_role_args`)."""
        v = self._roles
        if v is None:
            t = self.tokens
            v = self._roles = {} if ROLE_MARKERS.isdisjoint(t) else _role_args(t)
        return v

    def key_profile(self) -> Any:
        """Every key word of the text with its shape and count, sorted by rank, and their
        total (:func:`stratabatch.wordkeys.residue_profile`): what the residue pre-check of a
        long text compares (computed once)."""
        v = self._profile
        if v is None:
            from .wordkeys import residue_profile, squash_tag

            v = self._profile = residue_profile(self.counts, squash_tag(self.tokens))
        return v


_DIGIT = re.compile(r"\d")
_UPPER_INSIDE = re.compile(r"(?<=.)[A-Z]|[^\x00-\x7f]", re.S)


def _has_digit(text: str) -> bool:
    return _DIGIT.search(text) is not None


def _has_upper_inside(text: str) -> bool:
    return _UPPER_INSIDE.search(text) is not None


def features(text: str) -> Features:
    """The guard features of one text."""
    return Features(text, canonical_batch([text])[0])


def features_batch(texts: list[str], tokens: list[list[str]] | None = None) -> list[Features]:
    """The guard features of many texts (canonical words computed in one batch pass unless
    given)."""
    if tokens is None:
        tokens = canonical_batch(texts)
    return [Features(t, k) for t, k in zip(texts, tokens, strict=True)]


# -------------------------------------------------------------------------------------------
# The veto
# -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Veto:
    """Why a near merge was refused: the guard and the words that decided."""

    guard: str
    """The guard's name: numbers, polarity, roles, entities, scope or residue."""
    words: tuple[str, ...]
    """The words (or numbers) that differ, as the guard saw them."""

    def __str__(self) -> str:
        return f"{self.guard}: {' / '.join(self.words)}"


def _role_args(tokens: list[str]) -> dict[str, list[str]]:
    """Each role word's arguments: the word after it, determiners skipped."""
    out: dict[str, list[str]] = {}
    n = len(tokens)
    for i, w in enumerate(tokens):
        if w in ROLE_MARKERS:
            j = i + 1
            while j < n and tokens[j] in DETERMINERS:
                j += 1
            out.setdefault(w, []).append(tokens[j] if j < n else "")
    return out


def _reordered(ta: list[str], tb: list[str]) -> tuple[str, ...] | None:
    """The words that changed places when ``ta`` and ``tb`` are the same words in another
    order that is not a moved clause, or None.

    A moved clause keeps both halves in order ("X, Y" / "Y, X" after a common beginning and
    before a common end); any other reordering of the same words trades roles ("did Alice
    call Bob" / "did Bob call Alice", "my online order in store" / "my in-store order online").
    """
    n = len(ta)
    for k in range(1, n):
        if ta[k:] + ta[:k] == tb:
            return None  # the whole text is two clauses in the other order
    p = 0
    while p < n and ta[p] == tb[p]:
        p += 1
    if p == n:
        return None
    q = n
    while ta[q - 1] == tb[q - 1]:
        q -= 1
    ma, mb = ta[p:q], tb[p:q]
    for k in range(1, len(ma)):
        if ma[k:] + ma[:k] == mb:
            return None  # a rotation: one clause moved before the other
    moved = [w for w, v in zip(ma, mb, strict=True) if w != v]
    return tuple(dict.fromkeys(moved))


def _reordered_mistyped(
    ta: list[str], tb: list[str], a_only: list[str], b_only: list[str]
) -> Veto | None:
    """The words that changed places (:func:`_reordered`, a swapped coordination aside) once
    each word only ``tb`` has is read as the word of ``ta`` it is a typo of (:func:`typo_partner`,
    taken in order, as the residue guard pairs them): "did Alice call Bob" / "did Bob call
    Alcie". None where a word has no such partner or the words then differ."""
    if not a_only or len(a_only) != len(b_only) or len(ta) != len(tb):
        return None
    left = list(b_only)
    fix = {}
    for x in a_only:
        y = typo_partner(x, left)
        if y is None:
            return None
        left.remove(y)
        fix[y] = x
    tb = [fix.get(w, w) for w in tb]
    if sorted(tb) != sorted(ta) or _coordination_swap(ta, tb):
        return None
    moved = _reordered(ta, tb)
    return None if moved is None else Veto("roles", moved)


def veto(
    a: Features,
    b: Features,
    guards: frozenset[str] | set[str] | tuple[str, ...],
    numbers: bool = True,
    *,
    paraphrases: bool = False,
) -> Veto | None:
    """The first guard that refuses merging ``a`` with ``b``, or None if all let it pass.

    Args:
        a: Features of one request.
        b: Features of the other.
        guards: The enabled guard names (a subset of :data:`GUARDS`).
        numbers: Whether the numbers guard is on (``guard_numbers``).
        paraphrases: The similarity judges meaning (a sentence model): the residue guard
            then applies only where the texts are mostly the same words (at least
            ``3x`` as many shared words as either side has of its own), as a shared preamble
            with a changed question; elsewhere different words may say the same thing.

    Returns:
        A :class:`Veto`, or None when the merge may go ahead.
    """
    if numbers and a.numbers != b.numbers:
        diff = sorted(set(a.numbers) ^ set(b.numbers)) or list(a.numbers + b.numbers)
        return Veto("numbers", tuple(diff))
    if a.tokens == b.tokens:
        return None  # the same canonical words in the same order: nothing to veto
    ca, cb = a.counts, b.counts
    if ca == cb:
        # the same words: only their order, or capitals, can differ
        if "roles" in guards and a.tokens != b.tokens:
            if _coordination_swap(a.tokens, b.tokens):
                return None  # "an economist or an executive" / "an executive or an economist"
            if not _same_roles(a, b):
                v = _roles_veto(a, b)
                if v is not None:
                    return v
            moved = _reordered(a.tokens, b.tokens)
            if moved is not None:
                return Veto("roles", moved)
        return None
    a_only = _minus(ca, cb)
    b_only = _minus(cb, ca)
    # the same letters with spaces moved: two words on a side and as many letters on each
    # side first (a single mistyped word is not that)
    spaced = (
        _spaces_moved(a.tokens, b.tokens, a, b)
        if (len(a_only) > 1 or len(b_only) > 1) and sum(map(len, a_only)) == sum(map(len, b_only))
        else None
    )
    if spaced is not None:
        # the same letters with spaces moved ("wayo f" / "way of"): compare the rest
        a_only = [w for w in a_only if w not in spaced[0]]
        b_only = [w for w in b_only if w not in spaced[1]]
        if not a_only and not b_only:
            return None
    # Who does what and when (pronouns, voice, tense, time words, an order on one side): a
    # difference in these words always leaves a word the residue guard refuses, so they
    # are asked only where that guard is relaxed (a sentence model) or off
    who_when = paraphrases or "residue" not in guards
    if "polarity" in guards:
        v = _polarity(a_only, b_only, ca, cb)
        if v is not None:
            return v
    if "roles" in guards:
        if not _same_roles(a, b):
            v = _roles_veto(a, b, a_only, b_only)
            if v is not None:
                return v
        v = _reordered_mistyped(a.tokens, b.tokens, a_only, b_only)
        if v is not None:
            return v
        if who_when:
            v = _perspective(a, b, a_only, b_only) or _voice(a.tokens, b.tokens)
            if v is not None:
                return v
    if "entities" in guards:
        v = _entities(a, b, a_only, b_only)
        if v is not None:
            return v
    if "scope" in guards:
        v = _scope(a_only, b_only) or (_tense(a, b, a_only, b_only) if who_when else None)
        if v is not None:
            return v
    if "residue" in guards:
        if paraphrases:
            # different words may say the same thing; words added to the same words do not
            # ("an artist" / "a fake artist", "the best sites" / "... for developers")
            added = not any(not ignorable(w) for w in a_only) or not any(
                not ignorable(w) for w in b_only
            )
            get = cb.get
            shared = sum(min(n, get(w, 0)) for w, n in ca.items())
            if not added and shared < 3 * max(len(a_only), len(b_only)):
                # another question word asks another thing of the same words ("how do i
                # lower it" / "what do i avoid to lower it")
                wa, wb = _WH.intersection(ca), _WH.intersection(cb)
                if wa and wb and wa != wb:
                    return Veto("residue", tuple(sorted(wa ^ wb)))
                return None
        v = _residue(a_only, b_only, a, b)
        if v is not None:
            return v
    return None


_COORDINATORS = frozenset(("and", "or"))


def _coordination_swap(ta: list[str], tb: list[str]) -> bool:
    """Whether ``tb`` is ``ta`` with the two conjuncts of one "and" / "or" swapped ("the
    beach and the old town" / "the old town and the beach"), each of 1-4 words. Coordination
    is symmetric; a sequence is not ("the car loan and then the credit card"), nor are the
    roles around it, which the other checks keep."""
    n = len(ta)
    p = 0
    while p < n and ta[p] == tb[p]:
        p += 1
    for i in range(max(0, p - 3), p + 1):
        for k in range(i + 1, min(n - 1, i + 5)):
            if ta[k] not in _COORDINATORS or ta[k + 1] == "then":
                continue
            x = ta[i:k]
            if "then" in x or _COORDINATORS.intersection(x):
                continue
            for j in range(k + 2, min(n, k + 5) + 1):
                y = ta[k + 1 : j]
                if "then" in y or _COORDINATORS.intersection(y):
                    break
                if tb[i:j] == [*y, ta[k], *x] and tb[j:] == ta[j:] and tb[:i] == ta[:i]:
                    return True
    return False


def _spaces_moved(
    ta: list[str], tb: list[str], fa: Features, fb: Features
) -> tuple[list[str], list[str]] | None:
    """The words of each side that are the same letters with spaces moved ("wayo f" / "way
    of", "creditc ard" / "credit card"), as one run of 1-3 words per side, or None. As many
    words on each side, each space moved by at most two letters.

    Under the typo rule's care: the run of one side is all known words (:func:`dictionary`,
    or 1-3 letters), the other side's has a word that is not, and no word of either is
    written as an identifier outside the dictionary."""
    n, m = len(ta), len(tb)
    p = 0
    while p < n and p < m and ta[p] == tb[p]:
        p += 1
    q = 0
    while q < n - p and q < m - p and ta[n - 1 - q] == tb[m - 1 - q]:
        q += 1
    ra, rb = ta[p : n - q], tb[p : m - q]
    if not (1 <= len(ra) <= 3 and len(rb) == len(ra)) or "".join(ra) != "".join(rb):
        return None  # (a space added or dropped, "the rapist" / "therapist", is no typo)
    ea = eb = 0
    for x, y in zip(ra[:-1], rb[:-1], strict=True):
        ea += len(x)
        eb += len(y)
        if abs(ea - eb) > 2:
            return None  # a typo moves a space by a letter or two, not by a word
    vocab = dictionary()

    def known(w: str) -> bool:
        return w in vocab or w in SHORT_WORDS or ignorable(w)

    ka, kb = all(map(known, ra)), all(map(known, rb))
    if ka == kb:
        return None  # both real words ("the rapist" / "therapist") or both not
    ids = [w for w in ra if w in fa.idents[0]] + [w for w in rb if w in fb.idents[0]]
    if any(w not in vocab for w in ids):
        return None  # a code or name written as one ("ticket AB CD" / "ticket ABC D")
    # (the two texts are one string without their spaces: the word index's residue pre-check
    # lets them pass, see stratabatch.wordkeys.squash_tag)
    return ra, rb


_WH = frozenset(("how", "what", "why", "when", "where", "who", "which", "whom", "whose"))
_ORDER_WORDS = frozenset(("before", "than", "instead", "versus", "vs"))


def _addressed(tokens: list[str], pronouns: frozenset[str] | set[str]) -> bool:
    """Whether the text's only personal pronoun is one "you" right after the auxiliary that
    opens the question ("do you have the jacket in a large", "can you deliver on Sundays"):
    the service asked, which the same question asked of no one ("is the jacket available in a
    large") leaves out, not a party to what is asked."""
    return (
        pronouns == _YOU
        and len(tokens) > 2
        and tokens[1] == "you"
        and tokens[0] in QUESTION_AUX
        and tokens.count("you") == 1
    )


_YOU = frozenset(("you",))


def _perspective(a: Features, b: Features, a_only: list[str], b_only: list[str]) -> Veto | None:
    """Another person or case on one side ("why are people staring at me" / "why do i stare
    at people", "can you call me back" / "can i call you back"), or an order or comparison
    on one side only ("rust or go first" / "rust before go"); a typo of the word is none."""
    pa = PERSONAL_PRONOUNS.intersection(a.counts)
    pb = PERSONAL_PRONOUNS.intersection(b.counts)
    if (not pa and _addressed(b.tokens, pb)) or (not pb and _addressed(a.tokens, pa)):
        pa = pb = _EMPTY  # the one asked, not a party: "do you charge a fee" / "is there a fee"
    words = sorted(pa ^ pb)
    words += [w for w in a_only if w in _ORDER_WORDS and typo_partner(w, b_only) is None]
    words += [w for w in b_only if w in _ORDER_WORDS and typo_partner(w, a_only) is None]
    if words:
        return Veto("roles", tuple(words))
    return None


def _head_after(tokens: list[str], i: int) -> str | None:
    """The first word from ``i`` on that is not a determiner (the head of a noun phrase)."""
    n = len(tokens)
    while i < n and tokens[i] in DETERMINERS:
        i += 1
    return tokens[i] if i < n else None


def _subject(tokens: list[str]) -> str | None:
    """The subject of a question that opens with an auxiliary, within its first 3 words
    ("did the landlord ...", "why was the tenant ...")."""
    for i, w in enumerate(tokens[:3]):
        if w in QUESTION_AUX:
            return _head_after(tokens, i + 1)
    return None


def _passive(tokens: list[str]) -> tuple[str, str] | None:
    """(subject, agent) of a passive question ("was the tenant sued by the landlord"), or
    None."""
    if "by" not in tokens:
        return None
    k = tokens.index("by")
    if PASSIVE_AUX.isdisjoint(tokens[:k]):
        return None
    subject = _subject(tokens)
    agent = _head_after(tokens, k + 1)
    if subject is None or agent is None:
        return None
    return subject, agent


def _voice(ta: list[str], tb: list[str]) -> Veto | None:
    """A passive against an active question with the roles traded: "did the landlord sue the
    tenant" / "was the landlord sued by the tenant" (the active's subject must be the
    passive's agent, not its subject)."""
    pa, pb = _passive(ta), _passive(tb)
    if (pa is None) == (pb is None):
        return None
    (subj, agent), active = (pa, tb) if pa is not None else (pb, ta)  # type: ignore[misc]
    doer = _subject(active)
    if doer is None:
        return None
    if subj == doer or (agent != doer and agent in active):
        return Veto("roles", (doer, subj, agent))
    return None


def _tenses(tokens: list[str]) -> frozenset[str]:
    out = set()
    n = len(tokens)
    for i, w in enumerate(tokens):
        t = TENSE_OF.get(w)
        if t is None:
            continue
        if w in ("going", "used") and (i + 1 >= n or tokens[i + 1] != "to"):
            continue
        out.add(t)
    if "future" in out and "going" in tokens:
        out.discard("present")  # "is it going to rain"
    return frozenset(out)


def _tense(a: Features, b: Features, a_only: list[str], b_only: list[str]) -> Veto | None:
    """Another time: a word that moves the question in time on one side only ("still",
    "anymore", "used to"), or auxiliaries of another tense ("is" / "was" / "will")."""
    tw = [w for w in a_only if w in TIME_WORDS and typo_partner(w, b_only) is None]
    tw += [w for w in b_only if w in TIME_WORDS and typo_partner(w, a_only) is None]
    if tw:
        return Veto("scope", tuple(tw))
    if TENSE_OF.keys().isdisjoint(a_only) and TENSE_OF.keys().isdisjoint(b_only):
        return None
    ta, tb = _tenses(a.tokens), _tenses(b.tokens)
    if ta and tb and ta != tb:
        return Veto("scope", tuple(w for w in a_only + b_only if w in TENSE_OF))
    return None


def _minus(ca: dict[str, int], cb: dict[str, int]) -> list[str]:
    """The words of ``ca`` not matched in ``cb`` (with multiplicity), in ``ca``'s order."""
    get = cb.get
    out = []
    for w, n in ca.items():
        k = n - get(w, 0)
        if k == 1:
            out.append(w)
        elif k > 1:
            out += [w] * k
    return out


def _polarity(
    a_only: list[str], b_only: list[str], ca: dict[str, int], cb: dict[str, int]
) -> Veto | None:
    na = sum(ca[w] for w in NEGATIONS.intersection(ca))
    nb = sum(cb[w] for w in NEGATIONS.intersection(cb))
    if na != nb:
        words = [w for w in a_only + b_only if w in NEGATIONS]
        # "withuot" for "without" is a typo, not a lost negation
        typos = all(typo_partner(w, b_only if w in a_only else a_only) for w in words)
        if not (words and typos):
            return Veto("polarity", tuple(words) or ("negation",))
    forms_b = [(y, _forms(y)) for y in b_only]
    for x in a_only:
        opposite: set[str] = set()
        for u in _forms(x):
            opposite.update(OPPOSITES.get(u, ()))
        for y, fy in forms_b:
            if (opposite and not opposite.isdisjoint(fy)) or is_prefix_negation(x, y):
                return Veto("polarity", (x, y))
    return None


def _forms(w: str) -> tuple[str, ...]:
    """``w`` and its likely stems ("encrypted" -> "encrypt", "closing" -> "close")."""
    for suffix in ("ing", "ed", "es", "s", "d"):
        if w.endswith(suffix) and len(w) - len(suffix) >= 3:
            stem = w[: -len(suffix)]
            return (w, stem, stem + "e")
    return (w,)


def _same_roles(a: Features, b: Features) -> bool:
    ra, rb = a.roles, b.roles
    if not ra or not rb:
        return True
    for m, args in ra.items():
        other = rb.get(m)
        if other is not None and sorted(args) != sorted(other):
            return False
    return True


def _roles_veto(
    a: Features, b: Features, a_only: Sequence[str] = (), b_only: Sequence[str] = ()
) -> Veto | None:
    """A role word both sides have takes an argument on one side that the other side has
    elsewhere, and the reverse ("from London to Lisbon" / "from Lisbon to London"). The
    other side may have the argument mistyped, as a word it alone has (``a_only`` /
    ``b_only``) that is not this role word's argument there (:func:`typo_partner`, the
    residue guard's rule): "from London to Lisbon" / "from Lisbon to Londoon"."""
    ra, rb = a.roles, b.roles
    for m, args in ra.items():
        other = rb.get(m)
        if other is None:
            continue
        xa = list((Counter(args) - Counter(other)).elements())
        xb = list((Counter(other) - Counter(args)).elements())
        # a swap: the argument one side gives this role word, the other side has elsewhere
        # (another argument is the residue guard's business, a typo nobody's)
        if any(x and _has_elsewhere(x, b, b_only, other) for x in xa) and any(
            y and _has_elsewhere(y, a, a_only, args) for y in xb
        ):
            return Veto("roles", (m, *xa, *xb))
    return None


def _has_elsewhere(x: str, f: Features, only: Sequence[str], args: list[str]) -> bool:
    """Whether text ``f`` has word ``x``, or a typo of it among the words it alone has
    (``only``) that are not ``args``, the role word's own arguments there (a typo of those
    is the same argument mistyped: "from London" / "from Londoon")."""
    if x in f.counts:
        return True
    return bool(only) and typo_partner(x, [w for w in only if w not in args]) is not None


def _name_of(w: str, f: Features) -> str | None:
    """The name ``w`` writes, its possessive "s" off ("marys" for "Mary's"), or None."""
    names = f.names
    if w in names:
        return w
    if w[-1:] == "s" and w[:-1] in names:
        return w[:-1]
    return None


def _name_typo(w: str, other_only: list[str], theirs: Features) -> bool:
    """Whether name ``w`` may be a typo of a word the other side has: never of another name
    that starts with another letter or that the dictionary knows as well ("Mary's" /
    "Mark's", "Karl" / "Carl", "Christopher" / "Christophe")."""
    for o in other_only:
        name = _name_of(o, theirs) if theirs.names else None
        if name is None:
            if is_typo_of(w, o, 1):
                return True
        elif name[:1] == w[:1] and is_typo_of(w, name, 1):
            return True
    return False


def _entities(a: Features, b: Features, a_only: list[str], b_only: list[str]) -> Veto | None:
    for mine, theirs, other_only in ((a, b, b_only), (b, a, a_only)):
        only = a_only if mine is a else b_only
        for w in only:
            name = _name_of(w, mine) if mine.names else None
            if name is not None and name != w:
                if _name_typo(name, other_only, theirs):
                    continue
                return Veto("entities", (w,))
            if w in ENTITY_WORDS or name is not None:
                if w in theirs.counts:
                    continue
                if name is not None and _name_typo(w, other_only, theirs):
                    continue
                if name is None and typo_partner(w, other_only, 1) is not None:
                    continue
                partner = next(
                    (o for o in other_only if o in ENTITY_WORDS or o in theirs.names), None
                )
                return Veto("entities", (w, partner) if partner else (w,))
    return None


def _scope(a_only: list[str], b_only: list[str]) -> Veto | None:
    """A scope word on one side only, unless it is a typo of a word the other side has
    ("my team" / "my taem"); a plural pair."""
    sa = [w for w in a_only if w in SCOPE_WORDS and typo_partner(w, b_only) is None]
    sb = [w for w in b_only if w in SCOPE_WORDS and typo_partner(w, a_only) is None]
    if sa or sb:
        return Veto("scope", tuple(sa + sb))
    for x in a_only:
        for y in b_only:
            if is_plural_pair(x, y):
                return Veto("scope", (x, y))
    return None


def _id_like(w: str, f: Features) -> bool:
    return w in f.idents[0] or not any(c in "aeiouy" for c in w)


def _typo_candidates(w: str, others: list[str], fa: Features, fb: Features) -> list[str]:
    """The words of ``others`` (text b) that ``w`` (text a) may be a typo of, as far as how
    the texts write them goes (:func:`_residue`)."""
    exact_b = fb.idents[1]
    if w in fa.idents[1]:
        return []  # its spelling is the question
    vocab = dictionary()
    if w in vocab:
        return [p for p in others if p not in exact_b] if exact_b else others
    w_id = _id_like(w, fa)
    return [p for p in others if p not in exact_b and (p in vocab or not (w_id or _id_like(p, fb)))]


def _residue(
    a_only: list[str], b_only: list[str], fa: Features | None = None, fb: Features | None = None
) -> Veto | None:
    """Refuses unless each word one side lacks is ignorable or a typo of a distinct word of
    the other side. Two words outside the dictionary one edit apart are a typo only if
    neither is written as an identifier (:func:`_idents`, or no vowel: "xkqprt"): nothing
    else tells a mistyped code or name from another one ("ticket ABCD" / "ticket ABCE"). A
    word whose spelling is the question ("translate hola", quoted) is never a typo, nor
    ignorable ("is 'yours truly' too formal" / "is 'yours' too formal")."""
    xa = [w for w in a_only if not ignorable(w)]
    xb = [w for w in b_only if not ignorable(w)]
    if fa is not None and len(xa) < len(a_only) and fa.idents[1]:
        xa = [w for w in a_only if w in fa.idents[1] or not ignorable(w)]
    if fb is not None and len(xb) < len(b_only) and fb.idents[1]:
        xb = [w for w in b_only if w in fb.idents[1] or not ignorable(w)]
    if not xa and not xb:
        return None
    left = list(xb)
    unexplained = []
    for w in xa:
        cands = left if fa is None or fb is None else _typo_candidates(w, left, fa, fb)
        p = typo_partner(w, cands)
        if p is None:
            unexplained.append(w)
        else:
            left.remove(p)
    unexplained.extend(left)
    if unexplained:
        return Veto("residue", tuple(unexplained))
    return None
