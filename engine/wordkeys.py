"""Word keys: blocking keys for guarded near-duplicate dedup, at any threshold.

With the word guards on (:mod:`stratabatch.guards`, the ``residue`` guard among them) and an
embedder that compares wording rather than meaning (``merges_paraphrases = False``, as the
default hashing embedder), a near merge of texts A and B needs more than a cosine: every
canonical word one side has and the other lacks must be an article, a mistyped filler, or a
typo paired with a word of the other side. So the *sets of key words* (canonical words minus
the ignorable ones) of two texts that may merge differ in few words. The word index
(:class:`stratabatch.wordtable.WordTable`) files each leader under keys drawn from its key words and
offers a new request only the leaders that share a key with it; the cosine and the guards
then decide as they always do.

The keys of a text: its distinct key words ranked by a fixed order (rare-looking words first:
words of 3+ letters outside :data:`COMMON_WORDS`, then the common ones; ties by a hash), and

* a key for each pair of its lowest ``r`` words, ``r = 4`` (``5`` for texts of more than 8
  key words);
* a key for each single word, when it has at most 3 key words;
* one shared key for a text without key words;
* *fine keys*, for a text of 2 to :data:`FINE_MAX_WORDS` distinct key words: its key words
  with their repeats, each copy an item, and one key per word: every item but that word's
  last copy (a hash of the rest).

The pair keys come from a few words, so where requests share most of their words (one
domain's traffic: 7 words of a 26-word vocabulary) each holds a share of the whole queue. The
fine keys are nearly the whole text: two texts share one when their key words (repeats
counted) are the same, or the same but one word each (a typo), and few other texts do. So
the word table reads a row's fine keys first, and the leaders under its pair keys only up to
a budget (:data:`stratabatch.wordtable.PAIR_BUDGET`, the slots of rare pairs first): the work
per request stays bounded whatever the vocabulary, and a twin two typos away is found through
the pair keys where they are not crowded (always, with a wide vocabulary).

**What this guarantees.** Let A have ``t`` key words B lacks and B have ``s`` that A lacks.
Take ``m1 < m2``, the two lowest shared words. Only A's own words can rank below ``m2`` in A,
so ``m2`` is among A's lowest ``t + 2``; likewise in B. With ``t, s <= 2`` the pair
``(m1, m2)`` is a key of both. With one shared word, both texts have at most 3 key words and
share its single key. So a pair whose key words differ by at most two typos (or articles,
which are not key words) on each side always meets in the index; three on each side when both
texts have more than 8 key words, as far as the pair budget reads (a text with fine keys
reads at most that many rows under its pair keys; one without reads them all). Two texts of
equal key words, or one typo a side, always share a fine key (the items both have are the
same; each side's key for its unshared word is the hash of them). Pairs beyond that may meet
through other keys; the merges the index still misses against the exhaustive path are
counted in tests/test_index.py and perf/bench_dedup_depth.py. A pair with no shared key
word (a one-word text and its typo) meets only through the shared empty key.

**The residue pre-check.** Sharing a key is necessary, not enough: long prompts with a shared
preamble share keys (and a high cosine) whatever their questions, and asking the guards about
each such pair in Python made a burst of them quadratic (2,000 prompts: 149 s, against 5 s
with the pre-check, perf/bench_dedup_depth.py section "burst"). The guard
pairs each word one text has more often than the other with a distinct typo partner, so a
merge needs as many key words on both sides (repeats counted) and, for each unpaired word, a
word on the other side that could be its typo (:func:`may_pass_residue`). The candidate
producers check that in numba from each row's ranks and word shapes (:func:`word_shape`)
right after the cosine, so only pairs the guards might accept reach them. The guards also
accept the same letters with a space moved ("milesi n" / "miles in"), whose key words need
not pair one for one: such texts are one string without their spaces, so a pair of equal
:func:`squash_tag` (kept in the high bits of a row's stored shapes) passes the pre-check
whatever its words.

**Where the key words are computed.** For the default embedder they come out of the same
numba pass that embeds the canonical text (:func:`stratabatch.embedkernels.hashed_embed_profiled`,
through :meth:`stratabatch.embed.HashingEmbedder.embed_profiled`): a text's words are already
split and hashed there, so its key words cost a sort of a few ints instead of ~3-5 us of Python
a request. Two kinds of text are left to :func:`word_profile`, the Python reference the kernel
is tested against: one with a non-ASCII word (its shape needs ``str.isalpha``) and one with a
word that may be a mistyped filler (whether it is one, and so ignorable, is the guards' typo
rule, dictionary included).

The order is fixed: a word's rank is the embedder's 64-bit word hash
(:func:`stratabatch.textkernels.hash_words`), which is all the guarantee needs.
"""

from __future__ import annotations

import heapq
import zlib
from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np

from .lexicon import COMMON_WORDS, IGNORABLE_WORDS, TYPO_FILLERS, dictionary, ignorable

__all__ = [
    "COMMON_WORDS",
    "BatchProfiles",
    "COARSE_KEYS",
    "FINE_MAX_WORDS",
    "PRECHECK_MAX_WORDS",
    "WORD_KEYS",
    "may_be_typos",
    "may_pass_residue",
    "residue_profile",
    "squash_tag",
    "tag_profiles",
    "word_keys",
    "word_profile",
    "word_shape",
]

PRECHECK_MAX_WORDS = 1024
"""Texts with more distinct key words than this (long documents) are not pre-checked: their
key words would cost as much memory as their vectors, and listing and copying them cost more
than the pre-check saves (it held the event loop ~25 ms per pass of 100 KB texts, measured
with perf/bench_loop_stall.py). The guards still decide their merges."""

COARSE_KEYS = 10
"""Room for a text's pair and single keys (the most it has: the 10 pairs of 5 words)."""

FINE_MAX_WORDS = 8
"""Texts of 2 to this many distinct key words also get fine keys: one per key word, the
whole set of key words but that one (see the module docstring)."""

WORD_KEYS = COARSE_KEYS + FINE_MAX_WORDS
"""Width of a row of word keys: the pair and single keys, zero-padded to
:data:`COARSE_KEYS`, then the fine keys, zero-padded."""

_COMMON_BIT = 1 << 62
_LOW = _COMMON_BIT - 1
EMPTY_KEY = 0x5EED_0E77  # the key of a text without key words
SINGLE_KEY = 0x51E6_1E00  # mixed into a single word's key (a pair's key is (a << 1) ^ b)
FINE_SALT = 0xF1E5_A17E_D5E7_0001  # mixed into a fine key (an xor of mixed ranks)
_MIX = 0x9E37_79B9_7F4A_7C15
_M64 = (1 << 64) - 1


def fine_mix(rank: int) -> int:
    """A word's share of a fine key (the kernel computes the same in uint64)."""
    h = (rank * _MIX) & _M64
    return h ^ (h >> 29)


_cache: dict[str, tuple[int, int]] = {}  # word -> (rank, shape)
_CACHE_MAX = 1 << 18


def word_shape(word: str) -> int:
    """What a typo check needs of a word, in one int: bit (ord(c) & 31) for each character
    (a-z each get their own bit), the length at bit 32, and bit 48 when it is alphabetic."""
    mask = 0
    for c in word:
        mask |= 1 << (ord(c) & 31)
    return mask | (min(len(word), 0xFFFF) << 32) | (word.isalpha() << 48)


def _profile_of(word: str) -> tuple[int, int]:
    """(rank, shape) of a word; rank 0: not a key word (see the module docstring)."""
    p = _cache.get(word)
    if p is None:
        if ignorable(word):
            p = (0, 0)
        else:
            from .textkernels import hash_words

            r = (int(hash_words([word])[0]) & _LOW) | 1
            if len(word) < 3 or word in COMMON_WORDS:
                r |= _COMMON_BIT
            p = (r, word_shape(word))
        if len(_cache) >= _CACHE_MAX:
            _cache.clear()
        _cache[word] = p
    return p


def _profile_words(words: list[str]) -> None:
    """:func:`_profile_of` of many words not in the cache, their hashes in one call."""
    from .textkernels import hash_words

    keep = [w for w in words if not ignorable(w)]
    hashes = hash_words(keep).tolist() if keep else []
    if len(_cache) + len(words) >= _CACHE_MAX:
        _cache.clear()
    for w in words:
        _cache[w] = (0, 0)
    for w, h in zip(keep, hashes, strict=True):
        r = (h & _LOW) | 1
        if len(w) < 3 or w in COMMON_WORDS:
            r |= _COMMON_BIT
        _cache[w] = (r, word_shape(w))


SQUASH_SHIFT = 49
"""Where a stored shape carries its text's :func:`squash_tag` (bits 49-62; the typo rule
reads bits 0-48 only)."""
SQUASH_MOD = 0x3FFF
"""A squash tag is a CRC-32 ``% SQUASH_MOD + 1``."""


def squash_tag(tokens: Sequence[str]) -> int:
    """A 14-bit hash, never 0, of a text's canonical words written without spaces: two texts
    the guards accept as the same letters with spaces moved ("wayo f exchanging" / "way of
    exchanging", :func:`stratabatch.guards.veto`) are the same string then, so their tags
    are equal. The residue pre-check lets pairs of equal tags pass (:func:`may_pass_residue`);
    the index keeps a row's tag in the high bits of its stored shapes (:data:`SQUASH_SHIFT`;
    a shape stored without a tag has 0 there, which matches no tag)."""
    return zlib.crc32("".join(tokens).encode("utf-8", "surrogatepass")) % SQUASH_MOD + 1


def tag_profiles(batch: BatchProfiles, texts: Sequence[str]) -> None:
    """Put each text's :func:`squash_tag` into its key words' shapes in ``batch`` (the
    canonical ``texts`` the embedding kernel profiled), as :func:`word_profile` with
    ``squash=True`` does: what the index stores. A batch the kernel tagged already
    (``batch.tagged``) is left as it is."""
    lens = batch.lens
    if not len(lens) or batch.tagged:
        return
    from .pairs import CRC_TABLE, squash_tags, tag_shapes

    # (a canonical text's words are apart by spaces only: without them it is the words
    # joined; all texts' bytes in one buffer, each text's end found from its length where
    # every text is ASCII)
    data = "".join(texts).encode("utf-8", "surrogatepass")
    sizes = np.fromiter(map(len, texts), np.int64, len(texts))
    if len(data) != int(sizes.sum()):  # a text beyond ASCII: its bytes counted one by one
        sizes = np.fromiter(
            (len(t.encode("utf-8", "surrogatepass")) for t in texts), np.int64, len(texts)
        )
    tags = np.empty(len(texts), np.int64)
    squash_tags(
        np.frombuffer(data, np.uint8) if data else np.zeros(1, np.uint8),
        np.cumsum(sizes),
        CRC_TABLE,
        SQUASH_MOD,
        tags,
    )
    tag_shapes(batch.shapes, batch.off, lens, tags, SQUASH_SHIFT)
    batch.tagged = True


def word_profile(tokens: Sequence[str], squash: bool = False) -> list[int]:
    """Rank, shape and count of each distinct key word of a text, from its canonical words
    (:mod:`stratabatch.canon`), as one flat list of triples in no
    particular order: what the index keeps of a text (:func:`stratabatch.wordtable.word_rows`
    stores and sorts those of a whole pass at once). The keys come from the ranks; shapes and
    counts serve the residue pre-check (:func:`may_pass_residue`).

    A text of more than :data:`PRECHECK_MAX_WORDS` distinct key words keeps only its five
    lowest, with count -1: enough for its keys, and a mark that it is not pre-checked.

    ``squash``: the shapes carry the text's :func:`squash_tag` (as the index stores them).
    """
    if len(tokens) > 64:
        counts: Mapping[str, int] = Counter(tokens)
    else:  # (a dict by hand: Counter's set-up costs more than counting a few words)
        counts = {}
        for w in tokens:
            counts[w] = counts.get(w, 0) + 1
    get = _cache.get
    if len(counts) > PRECHECK_MAX_WORDS:
        low = heapq.nsmallest(5, {r for r in ((get(w) or _profile_of(w))[0] for w in counts) if r})
        return [x for r in low for x in (r, 0, -1)]
    out: list[int] = []
    tag = squash_tag(tokens) << SQUASH_SHIFT if squash else 0
    for w, c in counts.items():
        r, shape = get(w) or _profile_of(w)
        if r:
            out += (r, shape | tag, c)
    return out


def residue_profile(
    counts: Mapping[str, int], tag: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Every key word of a text, for the residue pre-check of a pair the index did not
    pre-check (a text of more than :data:`PRECHECK_MAX_WORDS` distinct key words, see
    :meth:`stratabatch.grouping.Deduper.veto`): ranks, shapes and counts (int64 arrays sorted
    by rank, as the index's pools keep a row) and the total of the counts.

    ``counts``: how often each canonical word occurs (the guards' ``Features.counts``);
    ``tag``: the text's :func:`squash_tag`, kept in the shapes as the index keeps it.
    """
    get = _cache.get
    tag <<= SQUASH_SHIFT
    new = [w for w in counts if get(w) is None]
    if new:  # the words first seen: hashed in one call, not one each
        _profile_words(new)
    ranks: list[int] = []
    shapes: list[int] = []
    cnt: list[int] = []
    for w, c in counts.items():
        r, shape = get(w) or _profile_of(w)
        if r:
            ranks.append(r)
            shapes.append(shape | tag)
            cnt.append(c)
    rk = np.array(ranks, np.int64)
    order = np.argsort(rk, kind="stable")
    return (
        np.ascontiguousarray(rk[order]),
        np.array(shapes, np.int64)[order],
        np.array(cnt, np.int64)[order],
        sum(cnt),
    )


class BatchProfiles:
    """The key words of a batch of texts, as the embedding kernel wrote them: text ``j``'s
    (rank, shape, count) triples are ``ranks/shapes/counts[off[j] : off[j] + lens[j]]``;
    ``lens[j] == -1`` for a text left to :func:`word_profile`. A request refers to its text's
    entry as ``(batch, j)`` (:func:`stratabatch.wordtable.word_rows` reads either form).
    ``tagged``: the shapes carry their texts' squash tags already (:func:`tag_profiles`)."""

    __slots__ = ("ranks", "shapes", "counts", "off", "lens", "tagged")

    def __init__(
        self,
        ranks: np.ndarray,
        shapes: np.ndarray,
        counts: np.ndarray,
        off: np.ndarray,
        lens: np.ndarray,
        tagged: bool = False,
    ) -> None:
        self.ranks = ranks
        self.shapes = shapes
        self.counts = counts
        self.off = off
        self.lens = lens
        self.tagged = tagged

    def filled(self, fill: Mapping[int, Sequence[int]]) -> BatchProfiles:
        """A copy where each text ``j`` of ``fill`` has the key words ``fill[j]`` (a
        :func:`word_profile` list: what the Python reference gave a text the kernel left to
        it), stored after the others' (their ``off`` and ``lens`` set): the index files one
        batch, as it files a batch the kernel profiled whole."""
        flat = np.array([x for p in fill.values() for x in p], np.int64).reshape(-1, 3)
        base = len(self.ranks)
        off = self.off.copy()
        lens = self.lens.copy()
        at = base
        for j, p in fill.items():
            off[j] = at
            lens[j] = len(p) // 3
            at += len(p) // 3
        return BatchProfiles(
            np.concatenate([self.ranks, flat[:, 0]]),
            np.concatenate([self.shapes, flat[:, 1]]),
            np.concatenate([self.counts, flat[:, 2]]),
            off,
            lens,
            self.tagged,  # (the filled texts' shapes are word_profile's, tagged)
        )

    def as_list(self, j: int) -> list[int] | None:
        """Text ``j``'s key words as :func:`word_profile` gives them (None: left to it)."""
        k = int(self.lens[j])
        if k < 0:
            return None
        a = int(self.off[j])
        return [
            int(x) for t in range(a, a + k) for x in (self.ranks[t], self.shapes[t], self.counts[t])
        ]


_tables: tuple[np.ndarray, ...] | None = None


def kernel_tables() -> tuple[np.ndarray, ...]:
    """What :func:`stratabatch.embedkernels.hashed_embed_profiled` needs to rank words as
    :func:`word_profile` does: the sorted hashes of :data:`COMMON_WORDS` and of the guards'
    ignorable words, one row per filler a typo may stand for (first letter, length, shape
    (:func:`word_shape`), whether it is a dictionary word, then its letters; sorted by first
    letter), where
    the fillers of each first letter start (``fill_at[c] : fill_at[c + 1]``, ASCII), and the
    sorted hashes of the guards' dictionary."""
    global _tables
    if _tables is None:
        from .textkernels import hash_words

        vocab = dictionary()
        width = max(len(f) for f in TYPO_FILLERS)
        fillers = np.zeros((len(TYPO_FILLERS), 4 + width), dtype=np.int64)
        for i, f in enumerate(TYPO_FILLERS):
            fillers[i, :4] = (ord(f[0]), len(f), word_shape(f), f in vocab)
            fillers[i, 4 : 4 + len(f)] = [ord(c) for c in f]
        fill_at = np.searchsorted(fillers[:, 0], np.arange(129)).astype(np.int64)
        _tables = (
            np.unique(hash_words(sorted(COMMON_WORDS))),
            np.unique(hash_words(sorted(IGNORABLE_WORDS))),
            fillers,
            fill_at,
            np.unique(hash_words(sorted(vocab))),
        )
    return _tables


def _triples(profile: list[int]) -> list[tuple[int, int, int]]:
    return sorted(zip(profile[0::3], profile[1::3], profile[2::3], strict=True))


def word_keys(tokens: Sequence[str]) -> list[int]:
    """The word-index keys of a text from its canonical words (see the module docstring).

    The reference for :func:`stratabatch.wordtable.word_rows`, which gives the same keys.

    Returns:
        1 to :data:`WORD_KEYS` nonzero 64-bit keys.
    """
    triples = _triples(word_profile(tokens))
    ranks = sorted({r for r, _, _ in triples})
    n = len(ranks)
    if n == 0:
        return [EMPTY_KEY]
    low = ranks[: 5 if n > 8 else 4]
    keys = [((a << 1) ^ b) | 1 for i, a in enumerate(low) for b in low[i + 1 :]]
    if n <= 3:
        keys.extend((a ^ SINGLE_KEY) | 1 for a in low)
    if 2 <= n <= FINE_MAX_WORDS and len(triples) <= FINE_MAX_WORDS and triples[0][2] >= 0:
        # (count -1: a long document's five lowest words) the key words with their copies,
        # each copy an item; one key per word: every item but that word's last copy
        whole = 0
        for r, _, c in triples:
            for k in range(c):
                whole ^= fine_mix(r + k)
        keys.extend((whole ^ fine_mix(r + c - 1) ^ FINE_SALT) | 1 for r, _, c in triples)
    return keys


def may_be_typos(a: int, b: int) -> bool:
    """Whether two different words of these shapes (:func:`word_shape`) can pass
    :func:`stratabatch.guards.is_typo_of`: both alphabetic, 4+ letters, lengths within its
    edit limit (1, or 2 from 8 letters), and character sets differing in at most two bits per
    allowed edit (a substitution changes at most two, an insertion or deletion one, a
    transposition none)."""
    la = (a >> 32) & 0xFFFF
    lb = (b >> 32) & 0xFFFF
    if not (a >> 48) & (b >> 48) & 1 or min(la, lb) < 4:
        return False
    limit = 2 if min(la, lb) >= 8 else 1
    return abs(la - lb) <= limit and bin((a ^ b) & 0xFFFFFFFF).count("1") <= 2 * limit


def may_pass_residue(tokens_a: Sequence[str], tokens_b: Sequence[str]) -> bool:
    """A necessary condition of the residue guard (:func:`stratabatch.guards.veto`): False
    only for texts it refuses, whatever the other guards say.

    The guard pairs each key word one text has more often than the other with a distinct
    typo partner among the other's, and refuses when any is left. So both texts have as many
    key words (repeats counted), and each unpaired word has some word on the other side that
    :func:`may_be_typos` allows. The reference for the index's pre-check, which runs on ranks
    and shapes in numba before any guard is asked (see :mod:`stratabatch.pairs`).

    The guard also accepts the same letters with spaces moved, whatever the words: a pair of
    equal :func:`squash_tag` passes, and so does a text without key words (the index has no
    stored shape to keep its tag in).
    """

    def counted(tokens: Sequence[str]) -> Counter[tuple[int, int]]:
        return Counter({(r, sh): c for r, sh, c in _triples(word_profile(tokens))})

    ca, cb = counted(tokens_a), counted(tokens_b)
    if not ca or not cb or squash_tag(tokens_a) == squash_tag(tokens_b):
        return True
    xa = list((ca - cb).elements())
    xb = list((cb - ca).elements())
    if len(xa) != len(xb):
        return False
    return all(any(may_be_typos(sa, sb) for _, sb in xb) for _, sa in xa)
