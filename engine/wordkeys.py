"""Word keys: blocking keys for guarded near-duplicate dedup, at any threshold.

With the word guards on (:mod:`stratabatch.guards`, the ``residue`` guard among them) and an
embedder that compares wording rather than meaning (``merges_paraphrases = False``, as the
default hashing embedder), a near merge of texts A and B needs more than a cosine: every
canonical word one side has and the other lacks must be an article, a mistyped filler, or a
typo paired with a word of the other side. So the *sets of key words* (canonical words minus
the ignorable ones) of two texts that may merge differ in few words. The word index
(:class:`stratabatch.index.WordTable`) files each leader under keys drawn from its key words and
offers a new request only the leaders that share a key with it; the cosine and the guards
then decide as they always do.

The keys of a text: its distinct key words ranked by a fixed order (rare-looking words first:
words of 3+ letters outside :data:`COMMON_WORDS`, then the common ones; ties by a hash), and

* a key for each pair of its lowest ``r`` words, ``r = 4`` (``5`` for texts of more than 8
  key words);
* a key for each single word, when it has at most 3 key words;
* one shared key for a text without key words.

**What this guarantees.** Let A have ``t`` key words B lacks and B have ``s`` that A lacks.
Take ``m1 < m2``, the two lowest shared words. Only A's own words can rank below ``m2`` in A,
so ``m2`` is among A's lowest ``t + 2``; likewise in B. With ``t, s <= 2`` the pair
``(m1, m2)`` is a key of both. With one shared word, both texts have at most 3 key words and
share its single key. So a pair whose key words differ by at most two typos (or articles,
which are not key words) on each side always meets in the index; three on each side when both
texts have more than 8 key words. Pairs beyond that may meet through other keys; the merges
the index still misses against the exhaustive path are counted in tests/test_index.py and
perf/bench_dedup_depth.py. A pair with no shared key word (a one-word text and its typo)
meets only through the shared empty key.

The order is fixed for a process (Python's string hash, cached per word), which is all the
guarantee needs: keys never leave the process.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["COMMON_WORDS", "WORD_KEYS", "word_keys", "word_ranks"]

WORD_KEYS = 10
"""Width of a row of word keys (the most a text has: the 10 pairs of 5 words); 0 pads."""

COMMON_WORDS = frozenset((
    "the", "and", "for", "you", "your", "are", "was", "were", "what", "how", "why", "when",
    "where", "which", "who", "whom", "whose", "can", "could", "would", "should", "will",
    "shall", "may", "might", "must", "does", "did", "done", "doing", "have", "has", "had",
    "having", "with", "without", "from", "into", "onto", "about", "this", "that", "these",
    "those", "there", "their", "them", "they", "then", "than", "its", "it's", "our", "ours",
    "not", "but", "all", "any", "some", "each", "every", "more", "most", "less", "much",
    "many", "very", "get", "got", "use", "using", "used", "make", "made", "need", "want",
    "like", "one", "two", "way", "best", "good", "new", "between", "after", "before", "over",
    "under", "out", "off", "just", "also", "too", "only", "other", "such", "here", "been",
    "being", "same", "own", "tell", "explain", "give", "show", "know", "write", "help",
    "please", "thanks", "thank",
))  # fmt: skip
"""Frequent English words, ranked after every other key word so that the keys of a text come
from its rarer words (short posting lists). Any fixed order keeps the guarantee."""

_COMMON_BIT = 1 << 62
_LOW = _COMMON_BIT - 1
EMPTY_KEY = 0x5EED_0E77  # the key of a text without key words
SINGLE_KEY = 0x51E6_1E00  # mixed into a single word's key (a pair's key is (a << 1) ^ b)

_rank_cache: dict[str, int] = {}


def _ignorable(word: str) -> bool:
    global _ignorable
    from .guards import ignorable

    _ignorable = ignorable  # bound on first use: the guards' tables load only when needed
    return ignorable(word)


_RANK_CACHE_MAX = 1 << 18


def _rank(word: str) -> int:
    """The word's place in the fixed order (0: not a key word)."""
    r = _rank_cache.get(word)
    if r is None:
        if _ignorable(word):
            r = 0
        else:
            r = (hash(word) & _LOW) | 1
            if len(word) < 3 or word in COMMON_WORDS:
                r |= _COMMON_BIT
        if len(_rank_cache) >= _RANK_CACHE_MAX:
            _rank_cache.clear()
        _rank_cache[word] = r
    return r


def word_ranks(tokens: Sequence[str]) -> set[int]:
    """The ranks of a text's distinct key words (see the module docstring): the part of its
    keys computed per request; :func:`stratabatch.index.word_key_rows` makes the keys of a
    whole pass from them."""
    ranks = set(map(_rank_cache.get, tokens))
    if None in ranks:  # a word not ranked yet
        ranks = set(map(_rank, tokens))
    ranks.discard(0)
    return ranks


def word_keys(tokens: Sequence[str]) -> list[int]:
    """The word-index keys of a text from its canonical words (see the module docstring).

    The reference for :func:`stratabatch.index.word_key_rows`, which gives the same keys.

    Returns:
        1 to :data:`WORD_KEYS` nonzero 64-bit keys.
    """
    low = sorted(word_ranks(tokens))
    n = len(low)
    if n == 0:
        return [EMPTY_KEY]
    del low[5 if n > 8 else 4:]
    keys = [((a << 1) ^ b) | 1 for i, a in enumerate(low) for b in low[i + 1:]]
    if n <= 3:
        keys.extend((a ^ SINGLE_KEY) | 1 for a in low)
    return keys
