"""Canonical text for near-duplicate dedup: what a request asks, without how it was typed.

:func:`canonical_batch` turns a batch of texts into token lists that the embedder and the
guards (:mod:`stratabatch.guards`) both see. The rules, in order:

1. **Normalize**: NFKC, casefold, contractions expanded ("don't" -> "do not"), punctuation and
   symbols to spaces, digits split from letters ("6am" -> "6 am"), as the hashing embedder
   does (:mod:`stratabatch.text`).
2. **Courtesy and fillers removed**: greetings ("hi there", "hey team", "good morning"),
   sign-offs ("thanks in advance", "cheers", "kind regards"), courtesy phrases ("quick
   question", "sorry to bother you", "i was wondering") and speech fillers ("um", "er",
   "you know", "basically", "like" used as a filler). A text made only of these keeps them.
3. **Spelling folded**: British spellings to American ones ("colour" -> "color",
   "cancelled" -> "canceled", "cheque" -> "check"), a curated table of whole words.
4. **Question frames folded**: "how can/could/would/should i" -> "how do i", "could/would/will
   you" -> "can you", "i would like to / i need to / i wish to" -> "i want to", "is there a way
   to", "what is a good way to" and "if i want to X, what should i do" -> "how do i", "how do
   you" -> "how do i" where the text does not speak of the asker ("how do you store my card
   details" stays), and a few compound spellings ("e mail" -> "email", "log in" -> "login").

Before 2-4, letters swapped in a frequent word are put back ("teh" -> "the", "sholud" ->
"should": :data:`stratabatch.lexicon.TRANSPOSED_WORDS`), and "just" goes where it is a filler
(before a verb; not "a just war", "just me", "just 5 minutes").

Nothing here touches a word that can change what is asked: negations, numbers, names,
prepositions and possessives pass through unchanged, so the guards still see them. Nor a
word between quotes ("is 'yours truly' too formal", "what does 'basically' mean"): a quoted
span of one to six words (:data:`MENTION`) is mentioned, not used, so the rules above skip it
and it is only normalized; the guards never ignore its words either
(:func:`stratabatch.guards.veto`). Other typos
are not corrected here (a wrong correction would be a silent rewrite); the guards accept a typo as
a difference (:func:`stratabatch.lexicon.is_typo_of`), and the embedder's character n-grams keep
a typo's vector close.

:func:`explain_canonical` lists which rule changed which words, for debugging a merge.

ASCII texts are rewritten by one numba pass over the batch (:mod:`stratabatch.canonkernels`,
the same rules over word ids); the Python passes here are the reference it is tested against,
and serve the texts with other characters.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from .lexicon import (
    DROP_PHRASES,
    FILLER_WORDS,
    FIRST_PERSON,
    FOLD_PHRASES,
    GENERIC_YOU_FRAMES,
    ID_NOUNS,
    JUST_KEEP_AFTER,
    JUST_KEEP_BEFORE,
    LEADING_JOINERS,
    LIKE_KEEPERS,
    NUMBER_WORDS,
    SPELLING,
    TRANSPOSED_WORDS,
    WORD_VERBS,
    dictionary,
)
from .text import SEP, ascii_prenormalized, normalized_parts

__all__ = [
    "FILLER_WORDS",
    "MENTION",
    "canonical_batch",
    "canonical_texts",
    "canonical_text",
    "canonical_tokens",
    "explain_canonical",
    "mention_spans",
]

_Table = dict[tuple[str, ...], list[tuple[tuple[str, ...], tuple[str, ...], str]]]

_W = r"[^\W_]+(?:(?: +|-)[^\W_]+){0,5}"
MENTION = re.compile(
    rf"(?<![^\W_])(?:'{_W}'|\"{_W}\"|`{_W}`|\u2018{_W}\u2019|\u201c{_W}\u201d)(?![^\W_])"
)
"""A quoted span: one to six words (letters and digits, apart by a space or a hyphen)
between two quotes of a kind, neither quote touching a letter or digit outside ("'yours
truly'", not the apostrophes of "don't" or "users' data"). Its words are mentioned, not used:
the canonical text leaves them as typed (normalized), and the guards treat them as words whose
spelling is the question (:mod:`stratabatch.guards`)."""
_QUOTE_CHARS = ("'", '"', "`", "\u2018", "\u201c")


def mention_spans(text: str) -> list[tuple[int, int]]:
    """Where ``text``'s quoted spans (:data:`MENTION`) are, as ``(start, end)`` offsets: the
    matches of ``MENTION.finditer``, tried only at the quotes (found by ``str.find``, at the
    speed of ``memchr``: the regex alone scans ~1 us a text)."""
    quotes: tuple[str, ...] = _QUOTE_CHARS
    if text.isascii():
        if "'" not in text and '"' not in text and "`" not in text:
            return []
        quotes = _QUOTE_CHARS[:3]
    at: list[int] = []
    find = text.find
    for q in quotes:
        k = find(q)
        while k >= 0:
            # (a quote right after a letter or digit opens no span: the regex's lookbehind,
            # asked here, which skips the apostrophes of "what's" and "don't")
            if not (k and text[k - 1].isalnum()):
                at.append(k)
            k = find(q, k + 1)
    if not at:
        return []
    at.sort()
    out = []
    end = -1
    match = MENTION.match
    for k in at:
        if k >= end:
            m = match(text, k)
            if m is not None:
                end = m.end()
                out.append((k, end))
    return out


def _with_mentions(
    texts: Sequence[str], out: list[str], plain: Any, joined: str | None = None
) -> list[str]:
    """``out`` (the canonical texts of ``texts`` by ``plain``, a function of a list of texts)
    with each text that holds a quoted span (:data:`MENTION`) rewritten piece by piece: the
    text around the spans by ``plain``, the spans only normalized (one call of each for the
    whole batch). ``joined``: the texts joined by 0x1F, if the caller has it."""
    if joined is None:
        # (no span crosses a text's end: 0x1F is no word or quote; one inside a text is
        # counted as no separator once it is 0x1E, which no span holds either)
        joined = "\x1f".join(texts)
        if joined.count("\x1f") != len(texts) - 1:
            joined = "\x1f".join(t.replace("\x1f", "\x1e") for t in texts)
    hits = mention_spans(joined)
    if not hits:
        return out
    spans: dict[int, list[tuple[int, int]]] = {}
    i = 0
    at = 0  # (the separators are counted between hits only, at C speed)
    for a, b in hits:
        i += joined.count("\x1f", at, a)
        at = a
        start = joined.rfind("\x1f", 0, a) + 1
        spans.setdefault(i, []).append((a - start, b - start))
    around: list[str] = []
    quoted: list[str] = []
    for i, got in spans.items():
        t = texts[i]
        last = 0
        for a, b in got:
            around.append(t[last:a])
            quoted.append(t[a:b])
            last = b
        around.append(t[last:])
    canon = plain(around)
    norm = normalized_parts(quoted)
    a = q = 0
    for i, got in spans.items():
        words: list[str] = []
        for _ in got:
            words += canon[a].split()
            words += norm[q].split()
            a += 1
            q += 1
        words += canon[a].split()
        a += 1
        out[i] = " ".join(words)
    return out


def _phrase_table(phrases: dict[str, str], rule: str) -> _Table:
    """First two words -> [(phrase words, replacement words, rule)], longest phrase first."""
    table: _Table = {}
    for p, r in phrases.items():
        words = tuple(p.split())
        table.setdefault(words[:2], []).append((words, tuple(r.split()), rule))
    for entries in table.values():
        entries.sort(key=lambda e: -len(e[0]))
    return table


_DROPS = _phrase_table(dict.fromkeys(DROP_PHRASES, ""), "courtesy")
_FOLDS = _phrase_table(FOLD_PHRASES, "frame")
for _head, _entries in _phrase_table(GENERIC_YOU_FRAMES, "you frame").items():
    _FOLDS.setdefault(_head, []).extend(_entries)
    _FOLDS[_head].sort(key=lambda e: -len(e[0]))
_PHRASES = {**_DROPS, **_FOLDS}
# Words that need the slow path of the token pass: a phrase head, a filler or "like".
# A text needs the slow token pass only if it has one of these words, or one of the
# phrases' first two words side by side (checked as one set lookup per word pair).
_SPECIAL = (
    FILLER_WORDS | NUMBER_WORDS | LEADING_JOINERS | {"like", "just"} | TRANSPOSED_WORDS.keys()
)
# "if i want to X, what should i do": the frame that ends the text (see _rewrite)
_IF_FRAME = (("if", "i", "want", "to"), ("if", "i", "need", "to"), ("if", "i", "have", "to"))
_HEAD_PAIRS = frozenset(_PHRASES) | {("if", "i")}
_SLOW_DROPS = NUMBER_WORDS | {"like", "just"}


def _rewrite(words: list[str], trace: list[tuple[str, str, str]] | None) -> list[str]:
    """The token passes: courtesy and fillers out first, then frames and spellings folded
    (so a filler inside a frame, "how can um i", does not hide it). Letters swapped in a
    frequent word go first ("hwo sholud i" is "how should i", then "how do i")."""
    if not TRANSPOSED_WORDS.keys().isdisjoint(words):
        fixed = TRANSPOSED_WORDS.get
        if trace is not None:
            trace.extend(("typo", w, fixed(w, w)) for w in words if w in TRANSPOSED_WORDS)
        words = [fixed(w, w) for w in words]
    pairs = set(zip(words, words[1:], strict=False))
    if trace is None and _DROPS.keys().isdisjoint(pairs) and _SLOW_DROPS.isdisjoint(words):
        # no phrase, "like" or number word: fillers go by a plain filter
        kept = [w for w in words if w not in FILLER_WORDS]
    else:
        kept = _pass(words, trace, _DROPS, True)
    if not kept:
        return words
    while kept and kept[0] in LEADING_JOINERS:  # "sorry to bother you, but can i ..."
        if trace is not None:
            trace.append(("courtesy", kept[0], ""))
        kept = kept[1:]
    if not kept:
        return words  # nothing but courtesy: keep it as it came
    if trace is None and _FOLDS.keys().isdisjoint(zip(kept, kept[1:], strict=False)):
        sp = SPELLING
        if sp.keys().isdisjoint(kept):
            return kept
        out = []
        for w in kept:
            r = sp.get(w)
            if r is None:
                out.append(w)
            else:
                out.extend(r.split())
        return out
    out = _pass(kept, trace, _FOLDS, False)
    if len(out) > 8 and tuple(out[:4]) in _IF_FRAME and out[-4:] == ["what", "do", "i", "do"]:
        # "if i want to X, what should i do" asks "how do i X"
        if trace is not None:
            trace.append(("frame", " ".join(out[:4]) + " ... what do i do", "how do i"))
        out = ["how", "do", "i", *out[4:-4]]
    return out if out else words


def _pass(
    words: list[str], trace: list[tuple[str, str, str]] | None, phrases: _Table, drop_fillers: bool
) -> list[str]:
    out: list[str] = []
    n = len(words)
    i = 0
    while i < n:
        w = words[i]
        entries = phrases.get((w, words[i + 1])) if i + 1 < n else None
        if entries is not None:
            for pw, repl, rule in entries:
                k = len(pw)
                if pw[0] == "i" and out and not drop_fillers:
                    continue  # "i need to ..." is a frame at the start only ("do i need")
                if tuple(words[i : i + k]) == pw:
                    if rule == "you frame":
                        if not FIRST_PERSON.isdisjoint(words[i + k :]):
                            continue  # "how do you store my card": you, not I
                        rule = "frame"
                    if trace is not None:
                        trace.append((rule, " ".join(pw), " ".join(repl)))
                    out.extend(repl)
                    i += k
                    if drop_fillers and i < n and words[i] in LEADING_JOINERS:
                        # "sorry to bother you, but can i ...": the "but" goes with it
                        if trace is not None:
                            trace.append((rule, words[i], ""))
                        i += 1
                    break
            else:
                entries = None
            if entries is not None:
                continue
        if not drop_fillers:
            pass
        elif w in NUMBER_WORDS and i + 1 < n and words[i + 1][:1].isdigit():
            if trace is not None:
                trace.append(("number sign", w, ""))
            i += 1
            continue
        elif w in FILLER_WORDS:
            if trace is not None:
                trace.append(("filler", w, ""))
            i += 1
            continue
        elif w == "just" and _just_is_filler(out, words, i):
            if trace is not None:
                trace.append(("filler", w, ""))
            i += 1
            continue
        elif w == "like" and not (out and out[-1] in LIKE_KEEPERS):
            if trace is not None:
                trace.append(("filler", w, ""))
            i += 1
            continue
        if drop_fillers:
            out.append(w)
        else:
            s = SPELLING.get(w)
            if s is not None:
                if trace is not None:
                    trace.append(("spelling", w, s))
                if " " in s:
                    out.extend(s.split())
                    i += 1
                    continue
                w = s
            out.append(w)
        i += 1
    return out


def _just_is_filler(out: list[str], words: list[str], i: int) -> bool:
    """Whether the "just" at ``words[i]`` is a filler: not last, not an adjective after an
    article ("a just war"), not "only" before a pronoun, article, number or "for" ("just
    me", "just my passport", "just 5 minutes")."""
    if i + 1 >= len(words) or (out and out[-1] in JUST_KEEP_AFTER):
        return False
    nxt = words[i + 1]
    return nxt not in JUST_KEEP_BEFORE and not nxt[:1].isdigit()


def _tokens_of(part: str, raw: str) -> list[str]:
    """The canonical words of ``part``, the normalized text of ``raw``."""
    words = part.split()
    if _SPECIAL.isdisjoint(words) and _HEAD_PAIRS.isdisjoint(zip(words, words[1:], strict=False)):
        # the common case: only spelling can apply (a dict lookup per word)
        if SPELLING.keys().isdisjoint(words):
            return _swaps_put_back(words, raw)
    return _swaps_put_back(_rewrite(words, None), raw)


_rules: tuple[Any, Any] | None = None


def _rule_tables() -> tuple[Any, Any]:
    """Sorted hashes of the words and word pairs that make a text go through the token passes
    (as :func:`stratabatch.textkernels.rule_flags` hashes them)."""
    global _rules
    if _rules is None:
        import numpy as np

        from .textkernels import hash_words, pair_hashes

        heads = sorted(_HEAD_PAIRS)
        _rules = (
            np.unique(hash_words(sorted(_SPECIAL | SPELLING.keys()))),
            np.unique(
                pair_hashes(hash_words([a for a, _ in heads]), hash_words([b for _, b in heads]))
            ),
        )
    return _rules


def _canonical_texts_reference(texts: Sequence[str]) -> list[str]:
    """The reference of :func:`canonical_texts`: the token passes in Python."""
    return _with_mentions(texts, _plain_texts_reference(texts), _plain_texts_reference)


def _plain_texts_reference(texts: Sequence[str]) -> list[str]:
    """:func:`_canonical_texts_reference` without the quoted spans' care.

    One numba pass over the normalized batch finds the texts that hold a word or word pair
    some rule rewrites (:func:`stratabatch.textkernels.rule_flags`); only those go through the
    token passes. The others are canonical as normalized.
    """
    import numpy as np

    from .textkernels import rule_flags

    parts = normalized_parts(texts)
    if not parts:
        return []
    data = "\x1f".join(parts).encode("utf-8", "surrogatepass")
    flags = np.empty(len(parts), dtype=np.bool_)
    words, pairs = _rule_tables()
    rule_flags(np.frombuffer(data or b"\0", dtype=np.uint8), len(data), words, pairs, flags)
    out = [
        " ".join(_rewrite(p.split(), None)) if f else p
        for p, f in zip(parts, flags.tolist(), strict=True)
    ]
    return _swapped_back(texts, out, range(len(out)))


def _swapped_back(texts: Sequence[str], out: list[str], which: Any) -> list[str]:
    """``out`` (canonical texts of ``texts`` but for swapped letters) with the letters
    swapped in a word put back (:func:`_swaps_put_back`) in the texts ``which``."""
    for i in which:
        words = out[i].split()
        fixed = _swaps_put_back(words, texts[i])
        if fixed is not words:
            # the words put back in place (the text's spacing kept, as the kernel's)
            at = [m.start() for m in _NONSPACE.finditer(out[i])]
            t = out[i]
            for k in reversed(range(len(words))):
                if fixed[k] is not words[k]:
                    t = t[: at[k]] + fixed[k] + t[at[k] + len(words[k]) :]
            out[i] = t
    return out


_NONSPACE = re.compile(r"\S+")


def _canonical_batch_reference(texts: Sequence[str]) -> list[list[str]]:
    """The reference of :func:`canonical_batch`: the token passes in Python."""

    def plain(xs: Sequence[str]) -> list[str]:
        return [" ".join(_tokens_of(p, x)) for p, x in zip(normalized_parts(xs), xs, strict=True)]

    return [t.split() for t in _with_mentions(texts, plain(texts), plain)]


_rule_words: frozenset[str] | None = None


def _rule_vocab() -> frozenset[str]:
    """Every word a rule reads or writes (the words of the kernel's table)."""
    global _rule_words
    if _rule_words is None:
        named = {"just", "like", "i", "if", "want", "need", "have", "to", "what", "do", "how"}
        words = set(named) | _SPECIAL | FIRST_PERSON | JUST_KEEP_BEFORE | JUST_KEEP_AFTER
        words |= LIKE_KEEPERS | set(TRANSPOSED_WORDS.values())
        for k, v in SPELLING.items():
            words |= {k, *v.split()}
        for phrase in DROP_PHRASES:
            words |= set(phrase.split())
        for table in (FOLD_PHRASES, GENERIC_YOU_FRAMES):
            for phrase, r in table.items():
                words |= {*phrase.split(), *r.split()}
        _rule_words = frozenset(words)
    return _rule_words


# -- letters swapped in any word ----------------------------------------------------------

SWAP_MIN_LETTERS = 5
"""The shortest word whose swapped letters the canonical text puts back (shorter words have
too many neighbours: "form" / "from", "slat" / "salt")."""
_ID_CONTEXT = ID_NOUNS | WORD_VERBS


@lru_cache(maxsize=1 << 16)
def _swap_target(w: str) -> str | None:
    """The one dictionary word ``w`` spells with two adjacent letters swapped back, where
    ``w`` is no dictionary word, of :data:`SWAP_MIN_LETTERS`+ ASCII letters, and neither is a
    word a rule reads; else None."""
    if len(w) < SWAP_MIN_LETTERS or not (w.isascii() and w.isalpha()):
        return None
    vocab = dictionary()
    rules = _rule_vocab()
    if w in vocab or w in rules:
        return None
    found = None
    for i in range(len(w) - 1):
        x = w[:i] + w[i + 1] + w[i] + w[i + 2 :]
        if x != w and x in vocab:
            if found is not None and found != x:
                return None  # two words ("tiral": trial, trail)
            found = x
    if found is None or found in rules or _another_reading(w):
        return None
    return found


_SUFFIXES = ("s", "es", "d", "ed", "ing", "er", "ers", "est", "ly")
_PREFIXES = ("un", "re", "dis", "mis", "non", "pre", "over", "under")
_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def _another_reading(w: str) -> bool:
    """Whether ``w`` reads as another word than a swap: a dictionary word a letter longer or
    shorter ("feats": feat, "realy": really), or one with a prefix or an inflection
    ("untied": un + tied, "retried": re + tried, "bakes": bake). The dictionary lacks many
    derived forms, and such a word is as likely that word as a swap ("untied" is no typo of
    "united"). (~10 us a word: asked only of a word a swap would put back, once.)"""
    vocab = dictionary()
    n = len(w)
    if any(w[:i] + w[i + 1 :] in vocab for i in range(n)):
        return True
    if any(w[:i] + c + w[i:] in vocab for i in range(n + 1) for c in _LETTERS):
        return True
    for suffix in _SUFFIXES:
        if w.endswith(suffix):
            stem = w[: -len(suffix)]
            if stem in vocab or stem + "e" in vocab:
                return True
    if w[-3:] in ("ies", "ied") and w[:-3] + "y" in vocab:
        return True
    for prefix in _PREFIXES:
        if w.startswith(prefix) and len(w) - len(prefix) >= 3:
            rest = w[len(prefix) :]
            if rest in vocab or _another_stem(rest, vocab):
                return True
    return False


def _another_stem(w: str, vocab: frozenset[str]) -> bool:
    """Whether ``w`` is a dictionary word inflected (:data:`_SUFFIXES`)."""
    for suffix in _SUFFIXES:
        if w.endswith(suffix):
            stem = w[: -len(suffix)]
            if stem in vocab or stem + "e" in vocab:
                return True
    return False


def _typed_as_prose(raw: str, w: str) -> bool:
    """Whether every time ``raw`` writes the word ``w`` (any case; ``w`` in lower case) it
    writes it in lower case, or capitalized as a sentence's first word: not as a name or a
    code ("Daine", "ACRDS")."""
    low = raw.lower()
    n = len(w)
    seen = False
    k = low.find(w)
    while k >= 0:
        e = k + n
        if not ((k and low[k - 1].isalpha()) or (e < len(low) and low[e].isalpha())):
            seen = True
            g = raw[k:e]
            if g != w:
                if not (g[0].isupper() and g[1:] == w[1:]):
                    return False
                j = k - 1
                while j >= 0 and raw[j] in " \t\"'([*-":
                    j -= 1
                if j >= 0 and raw[j] not in ".?!\n":
                    return False  # a capital inside a sentence: a name
        k = low.find(w, k + 1)
    return seen


def _swaps_put_back(
    words: list[str], raw: str, trace: list[tuple[str, str, str]] | None = None
) -> list[str]:
    """``words`` (a text's canonical words, the other rules applied: a swapped word is no
    word they read, nor is what it goes back to) with the letters swapped in a word put back
    (:func:`_swap_target`), except after a word that names a thing by its id or asks a
    spelling ("user jsmtih", "translate hlelo": :data:`~stratabatch.lexicon.ID_NOUNS`,
    :data:`~stratabatch.lexicon.WORD_VERBS`) and where ``raw`` writes the word as a name or
    a code (:func:`_typed_as_prose`)."""
    out = words
    vocab = dictionary()
    least = SWAP_MIN_LETTERS
    for k in [k for k, w in enumerate(words) if len(w) >= least and w not in vocab]:
        w = words[k]
        x = _swap_target(w)
        if x is None or (k and words[k - 1] in _ID_CONTEXT) or not _typed_as_prose(raw, w):
            continue
        if out is words:
            out = list(words)
        out[k] = x
        if trace is not None:
            trace.append(("typo", w, x))
    return out


_swap_tables: Any = None


def _swap_keys() -> Any:
    """The kernel's test for a word :func:`_swap_target` may put back (a superset): one
    uint64 array, a bitset of 2**21 bits over the FNV-1a hashes of every such word (its top
    21 bits), then the sorted hashes. Built from the dictionary (~115,000 words, ~0.12 s
    once a process)."""
    global _swap_tables
    if _swap_tables is None:
        import numpy as np

        from .canonkernels import SWAP_BITS_WORDS, fnv_rows

        vocab = dictionary()
        rules = _rule_vocab()
        sources: dict[str, str | None] = {}
        for w in vocab:
            if len(w) < SWAP_MIN_LETTERS or not (w.isascii() and w.isalpha()):
                continue
            for i in range(len(w) - 1):
                x = w[:i] + w[i + 1] + w[i] + w[i + 2 :]
                if x == w or x in vocab:
                    continue
                had = sources.get(x, w)
                sources[x] = w if had == w else None  # None: from two words
        # (a superset of the words _swap_target puts back: it also asks _another_reading,
        # too slow to ask of every key here; the kernel only marks the texts to look at)
        keys = [x for x, w in sources.items() if w is not None and not rules.intersection((w, x))]
        data = "".join(keys).encode("ascii")
        ends = np.cumsum(np.fromiter(map(len, keys), np.int64, len(keys)))
        hashes = np.unique(fnv_rows(np.frombuffer(data or b"\0", np.uint8), ends))
        bits = np.zeros(SWAP_BITS_WORDS, np.uint64)
        top = (hashes >> np.uint64(43)).astype(np.int64)
        np.bitwise_or.at(bits, top >> 6, np.left_shift(np.uint64(1), (top & 63).astype(np.uint64)))
        _swap_tables = np.concatenate([bits, hashes])
    return _swap_tables


_kernel_tables: tuple[Any, Any, int] | None = None


def _ascii_tables() -> tuple[Any, Any, int]:
    """The rules as :func:`stratabatch.canonkernels.canonical_ascii` reads them, and the most
    a rewrite multiplies a word's bytes by (at least 2)."""
    global _kernel_tables
    if _kernel_tables is None:
        from . import canonkernels as ck

        drops = [(p, "", 0) for p in DROP_PHRASES]
        folds = [(p, r, 0) for p, r in FOLD_PHRASES.items()]
        folds += [(p, r, 1) for p, r in GENERIC_YOU_FRAMES.items()]
        vocab = sorted(_rule_vocab())
        # the kernel's word buffers hold a rewrite up to twice its input; the output buffer
        # is sized by the most a rewrite grows in bytes ("sync" -> "synchronize")
        rewrites = drops + folds + [(k, v, 0) for k, v in SPELLING.items()]
        for p, r, _ in rewrites:
            if len(r.split()) > 2 * len(p.split()):
                raise AssertionError(f"rewrite {p!r} -> {r!r} more than doubles the words")
        growth = max(2, *(-(-(len(r) + 1) // (len(p) + 1)) for p, r, _ in rewrites))
        flag_sets = (
            (ck.F_TRIGGER, _SPECIAL | SPELLING.keys()),
            (ck.F_FILLER, FILLER_WORDS),
            (ck.F_NUMBER, NUMBER_WORDS),
            (ck.F_JOINER, LEADING_JOINERS),
            (ck.F_KEEP_BEFORE, JUST_KEEP_BEFORE),
            (ck.F_KEEP_AFTER, JUST_KEEP_AFTER),
            (ck.F_LIKE_KEEPER, LIKE_KEEPERS),
            (ck.F_FIRST_PERSON, FIRST_PERSON),
            (ck.F_DIGIT, {w for w in vocab if w[:1].isdigit()}),
            (ck.F_HEAD, {a for a, _ in _HEAD_PAIRS}),
        )
        flags = {w: sum(f for f, words in flag_sets if w in words) for w in vocab}
        tab, vocab_bytes = ck.rule_tables(vocab, flags, TRANSPOSED_WORDS, SPELLING, drops, folds)
        _kernel_tables = (tab, vocab_bytes, growth)
    return _kernel_tables


_ascii_kernel: tuple[Any, Any, Any, Any, int, Any] | None = None


def _ascii_setup() -> tuple[Any, Any, Any, Any, int, Any]:
    """What :func:`_ascii_canonical` calls and passes, fetched once a process: numpy, the
    kernel, its tables (:func:`_ascii_tables`) and the swaps' table (:func:`_swap_keys`). (A
    call of one short text costs ~5 us: imports in the function took ~0.6 of it.)"""
    global _ascii_kernel
    if _ascii_kernel is None:
        import numpy as np

        from .canonkernels import canonical_ascii

        tab, vocab, growth = _ascii_tables()
        _ascii_kernel = (np, canonical_ascii, tab, vocab, growth, _swap_keys())
    return _ascii_kernel


def _ascii_canonical(joined: str, texts: Sequence[str]) -> list[str]:
    """:func:`canonical_texts` of the ASCII ``texts``, joined by ``SEP`` (none holds it)."""
    np, kernel, tab, vocab, growth, swaps = _ascii_kernel or _ascii_setup()
    data = ascii_prenormalized(joined)
    n = len(texts)
    # digits split from letters at most double a text, a rewrite multiplies it by growth
    out = np.empty(2 * growth * (len(data) + n) + 64, np.uint8)
    swapped = np.empty(2 * n + 1, np.int64)
    raw = np.frombuffer(data or b"\0", np.uint8)
    size = kernel(raw, len(data), n, tab, vocab, out, swaps, swapped)
    s = out[:size].tobytes().decode("ascii")
    got = s.split(SEP) if n > 1 else [s]
    if swapped[2 * n]:
        # a word that may have letters swapped: put back in Python, with the raw text
        if n <= 16:
            sw = swapped.tolist()
            at = [i for i in range(n) if sw[n + i]]
            places = [sw[i] for i in at]
            lengths = [sw[n + i] for i in at]
        else:
            ats = np.flatnonzero(swapped[n : 2 * n])
            at = ats.tolist()
            places = swapped[ats].tolist()
            lengths = swapped[n + ats].tolist()
        for i, a, k in zip(at, places, lengths, strict=True):
            if k < 0:
                _swapped_back(texts, got, (i,))
                continue
            t = got[i]
            w = t[a : a + k]
            x = _swap_target(w)
            if x is None:
                continue  # (a hash's collision)
            e = a
            while e and t[e - 1] == " ":
                e -= 1
            if t[t.rfind(" ", 0, e) + 1 : e] in _ID_CONTEXT or not _typed_as_prose(texts[i], w):
                continue
            got[i] = f"{t[:a]}{x}{t[a + k :]}"
    return got


def canonical_texts(texts: Sequence[str]) -> list[str]:
    """The canonical text of each text: :func:`canonical_batch`'s words, apart by spaces
    (maybe more than one); a text that quotes words (:data:`MENTION`) keeps them as typed.

    ASCII texts (lower-cased, contractions expanded and punctuation dropped at C speed by
    :func:`stratabatch.text.ascii_prenormalized`) go through one numba pass that applies the
    rules to word ids (:func:`stratabatch.canonkernels.canonical_ascii`, ~0.5 us a text);
    other texts through the token passes in Python (:func:`_canonical_texts_reference`).
    """
    if not texts:
        return []
    joined = SEP.join(texts)
    if joined.count(SEP) != len(texts) - 1:
        return _with_mentions(texts, _plain_texts(texts), _plain_texts)  # (a text holds SEP)
    return _with_mentions(texts, _plain_texts(texts, joined), _plain_texts, joined)


def _plain_texts(texts: Sequence[str], joined: str | None = None) -> list[str]:
    """:func:`canonical_texts` without the quoted spans' care (``joined``: the texts joined
    by ``SEP``, none of which holds it, if the caller has it)."""
    if not texts:
        return []
    if joined is not None:
        pass
    elif len(texts) == 1:
        joined = texts[0].replace(SEP, " ")
    else:
        joined = SEP.join(texts)
        if joined.count(SEP) != len(texts) - 1:
            joined = SEP.join(t.replace(SEP, " ") for t in texts)
    if joined.isascii():
        return _ascii_canonical(joined, texts)
    parts = joined.split(SEP) if len(texts) > 1 else [joined]
    narrow = [i for i, p in enumerate(parts) if p.isascii()]
    wide = [i for i, p in enumerate(parts) if not p.isascii()]
    out = parts
    if narrow:
        ascii_parts = [parts[i] for i in narrow]
        done = _ascii_canonical(SEP.join(ascii_parts), ascii_parts)
        for i, t in zip(narrow, done, strict=True):
            out[i] = t
    for i, t in zip(wide, _plain_texts_reference([parts[i] for i in wide]), strict=True):
        out[i] = t
    return out


def canonical_batch(texts: Sequence[str]) -> list[list[str]]:
    """The canonical tokens of each text, by one normalization pass over the whole batch.

    Args:
        texts: The request texts.

    Returns:
        One list of canonical words per text (never empty unless the text has no word).
    """
    return [t.split() for t in canonical_texts(texts)]


def canonical_tokens(text: str) -> list[str]:
    """The canonical words of one text (see the module docstring for the rules)."""
    return canonical_texts([text])[0].split()


def canonical_text(text: str) -> str:
    """The canonical text of ``text``: its canonical words joined by single spaces."""
    return " ".join(canonical_tokens(text))


def explain_canonical(text: str) -> list[tuple[str, str, str]]:
    """Which rule rewrote which words of ``text``.

    Returns:
        ``(rule, words, replacement)`` triples in text order; rule is ``"typo"`` (swapped
        letters), ``"courtesy"``, ``"filler"``, ``"frame"`` or ``"spelling"``; replacement
        is ``""`` for a removal.
    """
    trace: list[tuple[str, str, str]] = []
    around = []  # (the quoted spans are left as typed)
    last = 0
    for a, b in mention_spans(text):
        around.append(text[last:a])
        last = b
    around.append(text[last:])
    for part, raw in zip(normalized_parts(around), around, strict=True):
        _swaps_put_back(_rewrite(part.split(), trace), raw, trace)
    return trace
