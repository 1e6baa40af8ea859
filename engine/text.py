"""Text normalization for near-duplicate dedup: what the hashing embedder and the canonical text
both start from.

NFKC, casefold, curly apostrophes to "'", common English contractions expanded ("don't" ->
"do not"), punctuation, symbols and controls to spaces, remaining apostrophes dropped, digits
split from letters ("6am" -> "6 am"). :func:`normalize_for_embedding` does it to one text;
:func:`normalized_batch` (for the embedding kernel, which splits digits and collapses spaces
itself) and :func:`normalized_parts` (for :mod:`stratabatch.canon`) do it to a whole batch in
one pass, the texts joined by :data:`SEP`.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections.abc import Sequence

__all__ = [
    "SEP",
    "ascii_prenormalized",
    "normalize_for_embedding",
    "normalized_batch",
    "normalized_parts",
]

# Apostrophe look-alikes NFKC leaves alone; they become "'" so contractions match.
_APOSTROPHES = str.maketrans({c: "'" for c in "\u2018\u2019\u201b\u02bc\u02b9\u0060\u00b4\u2032"})
SEP = "\x1f"  # batch separator: a control character, so no normalized text contains it

# Each pattern begins with a literal (the check that a word begins there comes after it, as a
# lookbehind) so that the regex engine skips to the literal's next occurrence instead of trying
# every position: "\bwon't\b" is "won't(?<!\wwon't)\b". Applied in this order, one after
# the other (tests/test_canon.py holds the plain patterns and compares).
_POSSESSIVE_OR_IS = ("it", "that", "what", "where", "there", "here", "who", "how", "he", "she",
                     "when", "why")  # fmt: skip
_CONTRACTIONS = [
    (re.compile(r"can(?<!\wcan)(?:'t|not)\b"), "can not"),
    (re.compile(r"won't(?<!\wwon't)\b"), "will not"),
    (re.compile(r"shan't(?<!\wshan't)\b"), "shall not"),
    (re.compile(r"let's(?<!\wlet's)\b"), "let us"),
    (re.compile(r"n't\b"), " not"),
    (re.compile(r"'re\b"), " are"),
    (re.compile(r"'m\b"), " am"),
    (re.compile(r"'ll\b"), " will"),
    (re.compile(r"'ve\b"), " have"),
    (re.compile(r"'d\b"), " would"),
    # "'s" is a possessive as often as "is": expand it only after pronouns and wh-words
    (
        re.compile(r"'s\b(?:" + "|".join(rf"(?<=\b{w}'s)" for w in _POSSESSIVE_OR_IS) + ")"),
        " is",
    ),
]

# The literal each contraction pattern needs, so that a batch without it skips the scan.
_CONTRACTION_GATES = (
    "can",
    "won't",
    "shan't",
    "let's",
    "n't",
    "'re",
    "'m",
    "'ll",
    "'ve",
    "'d",
    "'s",
)
_CANNOT = re.compile(r"cannot(?<!\wcannot)\b")
_DIGIT_LETTER = re.compile(r"(?<=[0-9])(?=[^0-9\s])|(?<=[^0-9\s])(?=[0-9])")
_HAS_DIGIT = re.compile(r"[0-9]")

_table_lock = threading.Lock()
_punct_table: dict[int, str | None] | None = None


def _punctuation_table() -> dict[int, str | None]:
    """Map every punctuation, symbol, separator and control character to a space.

    Built on first use (about 0.1 s) from the Unicode database of this Python, over the planes
    that hold assigned punctuation and symbols (0-1; emoji live in plane 1). The batch
    separator is left alone so a whole batch can be normalized as one string.
    """
    global _punct_table
    with _table_lock:
        if _punct_table is None:
            table: dict[int, str | None] = {}
            for cp in range(0x20000):
                if unicodedata.category(chr(cp))[0] in "PSZC":
                    table[cp] = " "
            table[ord("'")] = None  # after contraction expansion an apostrophe joins: o'neil
            table[ord("_")] = " "
            del table[ord(SEP)]
            _punct_table = table
        return _punct_table


# The same mapping restricted to ASCII, for bytes.translate (the common case, at C speed).
_ASCII_TABLE = bytes(
    b if b == ord(SEP) or chr(b).isalnum() or b == ord("'") else ord(" ") for b in range(256)
)


def _prenormalize(text: str) -> str:
    """NFKC, casefold, contractions, punctuation to spaces; no digit split or collapse yet."""
    s = unicodedata.normalize("NFKC", text).casefold().translate(_APOSTROPHES)
    return _expand_contractions(s).translate(_punctuation_table())


def normalize_for_embedding(text: str) -> str:
    """Normalize a text the way the hashing embedder sees it.

    NFKC, casefold, curly apostrophes to "'", common English contractions expanded ("don't" ->
    "do not"), punctuation/symbols/controls to spaces, remaining apostrophes dropped, digits
    split from letters ("6am" -> "6 am"), whitespace collapsed and stripped. Filler words are
    not removed here (the embedder drops them when hashing).

    Args:
        text: Any string.

    Returns:
        The normalized string (possibly empty).
    """
    return " ".join(_DIGIT_LETTER.sub(" ", _prenormalize(text.replace(SEP, " "))).split())


def normalized_batch(texts: Sequence[str]) -> bytes:
    """UTF-8 of the prenormalized texts joined by ``SEP`` (digit split and collapse: kernel).

    One pass over the joined batch instead of one per text: NFKC, casefold, the regexes and the
    tables all leave ``SEP`` alone, so the result equals per-text normalization.
    """
    joined = texts[0] if len(texts) == 1 else SEP.join(texts)
    if joined.count(SEP) != len(texts) - 1:  # a text carries the separator itself: rare path
        joined = SEP.join(t.replace(SEP, " ") for t in texts)
    if joined.isascii():
        # ASCII: NFKC is the identity and casefold is lower(); "`" is the one ASCII look-alike
        s = _expand_contractions(joined.lower().replace("`", "'"))
        return s.encode("ascii").translate(_ASCII_TABLE, b"'")
    return _prenormalize(joined).encode("utf-8", "surrogatepass")


def _expand_contractions(s: str) -> str:
    if "'" in s:
        for (pattern, repl), gate in zip(_CONTRACTIONS, _CONTRACTION_GATES, strict=True):
            if gate in s:
                s = pattern.sub(repl, s)
    elif "cannot" in s:
        s = _CANNOT.sub("can not", s)
    return s


def _contractions_where_needed(s: str) -> str:
    """Expand contractions in the texts of a joined batch that have any: the patterns then
    scan only those (most requests have no apostrophe)."""
    if "'" not in s and "cannot" not in s:
        return s
    parts = s.split(SEP)
    idx = [i for i, p in enumerate(parts) if "'" in p or "cannot" in p]
    if len(idx) * 2 > len(parts):
        return _expand_contractions(s)
    done = _expand_contractions(SEP.join([parts[i] for i in idx])).split(SEP)
    for i, p in zip(idx, done, strict=True):
        parts[i] = p
    return SEP.join(parts)


# Up to this many characters, digits are split from letters by one regex call over the whole
# batch; larger batches (long documents, in a worker thread) take one call per text, so that
# the GIL, which one regex call holds throughout, comes free between texts for the event loop.
_WHOLE_BATCH_MAX = 1 << 16


def normalized_parts(texts: Sequence[str]) -> list[str]:
    """Each text normalized as the hashing embedder normalizes it (one pass over the batch,
    or two: the ASCII texts by byte tables, the others by the Unicode path)."""
    if not texts:
        return []
    if len(texts) == 1:
        joined = texts[0].replace(SEP, " ")
    else:
        joined = SEP.join(texts)
        if joined.count(SEP) != len(texts) - 1:
            joined = SEP.join(t.replace(SEP, " ") for t in texts)
    if joined.isascii() and len(joined) <= _WHOLE_BATCH_MAX:
        # digits split from letters over the whole batch: the separator is whitespace to the
        # pattern, so no split crosses from one text to the next
        s = _ascii_normalized(joined)
        if _HAS_DIGIT.search(s):
            s = _DIGIT_LETTER.sub(" ", s)
        return s.split(SEP) if len(texts) > 1 else [s]
    if joined.isascii():
        parts = (
            _ascii_normalized(joined).split(SEP) if len(texts) > 1 else [_ascii_normalized(joined)]
        )
    elif len(texts) == 1:
        parts = [_unicode_normalized(joined)]
    else:
        parts = joined.split(SEP)
        wide = [i for i, p in enumerate(parts) if not p.isascii()]
        narrow = [i for i, p in enumerate(parts) if p.isascii()]
        for idx, fn in ((wide, _unicode_normalized), (narrow, _ascii_normalized)):
            if idx:
                done = fn(SEP.join([parts[i] for i in idx])).split(SEP)
                for i, p in zip(idx, done, strict=True):
                    parts[i] = p
    return [_DIGIT_LETTER.sub(" ", p) if _HAS_DIGIT.search(p) else p for p in parts]


def _ascii_normalized(s: str) -> str:
    return ascii_prenormalized(s).decode("ascii")


def ascii_prenormalized(s: str) -> bytes:
    """An ASCII text (or batch joined by ``SEP``) normalized but for the digit split: lower
    case, contractions expanded, punctuation to spaces, apostrophes dropped; as bytes of
    ``[a-z0-9 ]`` and ``SEP`` (what :mod:`stratabatch.canonkernels` reads)."""
    s = _contractions_where_needed(s.lower().replace("`", "'"))
    return s.encode("ascii").translate(_ASCII_TABLE, b"'")


def _unicode_normalized(s: str) -> str:
    s = unicodedata.normalize("NFKC", s).casefold().translate(_APOSTROPHES)
    return _contractions_where_needed(s).translate(_punctuation_table())
