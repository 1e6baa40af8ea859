"""The guards' common decisions in numba, on the texts' bytes.

:func:`stratabatch.guards.veto` walks two texts' words in Python (~25-80 us a pair with their
features). :func:`decide` does the same in one kernel call on the canonical and raw texts, in
the guards' order, wherever it can be exact: the same words in another order (a swapped
coordination, a moved clause, traded roles); a run of words with spaces moved; another count
of negations, unless each negation a side lacks is a typo of a word the other lacks, opposites
and negating prefixes (polarity); role words taking other arguments (roles); names, possessives
and entity words (entities); scope words and plural pairs (scope); and the words each side
lacks paired under the typo rule (:func:`stratabatch.lexicon.is_typo_of`: the edit distance
with transpositions, the dictionary, plurals, opposites, negating prefixes), ignorable words
and mistyped fillers (residue), with the residue guard's care for a word written as an
identifier (in capitals or after an id noun: its typo is one only of a dictionary word). It
answers :data:`PASS` or :data:`REFUSE` where that is the guards' answer with every guard on,
and :data:`DEFER` elsewhere (a word whose spelling may be asked about: quoted, after a word
verb; long and non-ASCII texts): the Python guards, the reference a differential test holds
the kernel to, decide those.

Words are compared by a 64-bit FNV-1a hash of their bytes; the word tables (dictionary,
ignorable words, the words the guards read, opposites) are sorted hash arrays built once per
process (:func:`tables`).
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
from numba import njit

__all__ = ["DEFER", "MAX_WORDS", "PASS", "REFUSE", "decide", "decide_pairs", "tables", "warm_up"]

DEFER = -1
"""The kernel cannot tell: ask the Python guards."""
PASS = 0
"""Every guard lets the pair merge."""
REFUSE = 1
"""A guard refuses the pair: the residue guard, or the roles guard on the same words in
another order."""
_ASKED = 2  # (a pair _decide_pairs has yet to decide)

MAX_WORDS = 96
"""Texts of more canonical words than this are left to the Python guards."""

# Sections of the word table (see tables()). The helpers' int arguments that are constants
# are numpy ints: numba compiles a helper once per literal int it is called with (_member was
# compiled 14 times, once per section), once for a numpy int.
_DICT, _IGN, _SPECIAL, _OPP, _OPPAIR, _IDN, _ROLE, _DET, _NEGPFX = map(np.int64, range(9))
_COORD, _THEN, _SHORT, _NEG, _ENT, _WVB = map(np.int64, range(9, 15))
_SECTIONS = 15
_I0 = np.int64(0)
_I1 = np.int64(1)
_I2 = np.int64(2)
_E = np.int64(101)  # "e"
_PAIR_MIX = 0x9E3779B97F4A7C15
_SLOT_BITS = 16
"""The word table has ``2 ** _SLOT_BITS`` slots (~23,000 words and pairs: a third full, so a
probe mostly reads one slot)."""
_SLOT_SHIFT = 64 - _SLOT_BITS

# The kernel's helpers are called from numba only: no Python or C wrapper to compile for each
# (a third of the first compile's time, measured with an empty NUMBA_CACHE_DIR)
_helper = njit(cache=True, no_cpython_wrapper=True, no_cfunc_wrapper=True)  # type: ignore[call-overload]


@_helper
def _fnv(buf, a, b):
    h = np.uint64(0xCBF29CE484222325)
    for u in range(a, b):
        h = (h ^ np.uint64(buf[u])) * np.uint64(0x100000001B3)
    return h


@_helper
def _fnv_byte(h, x):
    return (h ^ np.uint64(x)) * np.uint64(0x100000001B3)


@njit(cache=True)
def hash_spans(buf, starts, ends, out):
    """out[k] = the word hash of ``buf[starts[k]:ends[k]]``."""
    for k in range(starts.shape[0]):
        out[k] = _fnv(buf, starts[k], ends[k])


@_helper
def _member(H, HB, s, h):
    """Whether hash ``h`` is in section ``s`` of the tables: one probe of their open-addressing
    table (``H`` the keys, 0 for an empty slot; ``HB`` each slot's sections as bits, the
    sections of key 0 itself in its last value)."""
    if h == 0:
        return (HB[H.shape[0]] >> s) & 1 != 0
    mask = H.shape[0] - 1
    i = np.int64((h * np.uint64(_PAIR_MIX)) >> np.uint64(_SLOT_SHIFT))
    while H[i] != 0:
        if H[i] == h:
            return (HB[i] >> s) & 1 != 0
        i = (i + 1) & mask
    return False


@_helper
def _same(buf, a0, a1, b0, b1):
    if a1 - a0 != b1 - b0:
        return False
    for u in range(a1 - a0):
        if buf[a0 + u] != buf[b0 + u]:
            return False
    return True


@_helper
def _alpha(buf, a, b):
    for u in range(a, b):
        c = buf[u] | 32
        if c < 97 or c > 122:
            return False
    return True


@_helper
def _has_vowel(buf, a, b):
    for u in range(a, b):
        c = buf[u]
        if c == 97 or c == 101 or c == 105 or c == 111 or c == 117 or c == 121:
            return True
    return False


@_helper
def _ends_with(buf, b0, b1, a0, a1):
    """Whether word [b0, b1) ends with word [a0, a1)."""
    la = a1 - a0
    if la > b1 - b0:
        return False
    for u in range(la):
        if buf[b1 - la + u] != buf[a0 + u]:
            return False
    return True


@_helper
def _plural_pair(buf, a0, a1, b0, b1):
    """:func:`stratabatch.lexicon.is_plural_pair`."""
    if a1 - a0 > b1 - b0:
        a0, a1, b0, b1 = b0, b1, a0, a1
    la = a1 - a0
    lb = b1 - b0
    if la < 3:
        return False
    if lb == la + 1 and buf[b1 - 1] == 115 and _same(buf, a0, a1, b0, b0 + la):
        return buf[a1 - 1] != 115  # ("class" takes "es")
    if (
        lb == la + 2
        and buf[b1 - 2] == 101
        and buf[b1 - 1] == 115
        and _same(buf, a0, a1, b0, b0 + la)
    ):
        return True
    # "ay" + "ies": a[:-1] + "ies"
    if buf[a1 - 1] == 121 and lb == la + 2:
        if (
            _same(buf, a0, a1 - 1, b0, b0 + la - 1)
            and buf[b1 - 3] == 105
            and buf[b1 - 2] == 101
            and buf[b1 - 1] == 115
        ):
            return True
    return False


@_helper
def _prefix_negation(buf, a0, a1, b0, b1, H, HB):
    """:func:`stratabatch.lexicon.is_prefix_negation`."""
    if a1 - a0 > b1 - b0:
        a0, a1, b0, b1 = b0, b1, a0, a1
    la = a1 - a0
    lb = b1 - b0
    if la < 3 or lb - la > 4 or not _ends_with(buf, b0, b1, a0, a1):
        return False
    return _member(H, HB, _NEGPFX, _fnv(buf, b0, b1 - la))


@_helper
def _osa(buf, a0, a1, b0, b1, limit, scratch):
    """:func:`stratabatch.lexicon.osa_distance` (capped at ``limit + 1``)."""
    la = a1 - a0
    lb = b1 - b0
    if abs(la - lb) > limit:
        return limit + 1
    m = min(la, lb)
    p = 0
    while p < m and buf[a0 + p] == buf[b0 + p]:
        p += 1
    q = 0
    while q < m - p and buf[a1 - 1 - q] == buf[b1 - 1 - q]:
        q += 1
    a0 += p
    a1 -= q
    b0 += p
    b1 -= q
    la = a1 - a0
    lb = b1 - b0
    if la == 0 or lb == 0:
        return max(la, lb)
    if la == 1 and lb == 1:
        return 1
    if la == 2 and lb == 2 and buf[a0] == buf[b0 + 1] and buf[a0 + 1] == buf[b0]:
        return 1
    w = lb + 1
    if 3 * w > scratch.shape[0]:
        return limit + 1  # (words this long are never a typo's letters apart: see tables)
    prev2 = 0
    prev = w
    cur = 2 * w
    for j in range(w):
        scratch[prev + j] = j
    for i in range(1, la + 1):
        scratch[cur] = i
        ai = buf[a0 + i - 1]
        best = i
        for j in range(1, lb + 1):
            cost = 0 if ai == buf[b0 + j - 1] else 1
            v = min(scratch[prev + j] + 1, scratch[cur + j - 1] + 1, scratch[prev + j - 1] + cost)
            if i > 1 and j > 1 and ai == buf[b0 + j - 2] and buf[a0 + i - 2] == buf[b0 + j - 1]:
                v = min(v, scratch[prev2 + j - 2] + 1)
            scratch[cur + j] = v
            if v < best:
                best = v
        if best > limit:
            return limit + 1
        prev2, prev, cur = prev, cur, prev2
    return scratch[prev + lb]


@_helper
def _typo(buf, a0, a1, ha, b0, b1, hb, H, HB, scratch, maxd):
    """:func:`stratabatch.lexicon.is_typo_of` (``max_distance`` ``maxd``) of words [a0, a1)
    and [b0, b1) with hashes ``ha`` and ``hb``."""
    if ha == hb and _same(buf, a0, a1, b0, b1):
        return True
    la = a1 - a0
    lb = b1 - b0
    if not (_alpha(buf, a0, a1) and _alpha(buf, b0, b1)) or min(la, lb) < 4:
        return False
    limit = min(maxd, 2 if min(la, lb) >= 8 else 1)
    if abs(la - lb) > limit:
        return False
    if _member(H, HB, _DICT, ha) and _member(H, HB, _DICT, hb):
        return False
    if _osa(buf, a0, a1, b0, b1, limit, scratch) > limit:
        return False
    if _plural_pair(buf, a0, a1, b0, b1) or _prefix_negation(buf, a0, a1, b0, b1, H, HB):
        return False
    return not _member(H, HB, _OPPAIR, ha * np.uint64(_PAIR_MIX) ^ hb)


@_helper
def _ignorable(buf, a0, a1, h, H, HB, FB, FO, base, scratch):
    """:func:`stratabatch.lexicon.ignorable`: an ignorable word, or a mistyped filler (a typo
    of a filler of the same first letter and a length one apart at most)."""
    if _member(H, HB, _IGN, h):
        return True
    n = a1 - a0
    for f in range(FO.shape[0] - 1):
        f0 = FO[f]
        f1 = FO[f + 1]
        if FB[f0] != buf[a0] or abs((f1 - f0) - n) > 1:
            continue
        # the filler's bytes sit after the texts in buf, from ``base`` (see decide)
        if _typo(buf, a0, a1, h, base + f0, base + f1, _fnv(FB, f0, f1), H, HB, scratch, _I2):
            return True
    return False


@_helper
def _forms(buf, a0, a1, out):
    """The hashes of the word and its likely stems (``guards._forms``: "encrypted" ->
    "encrypt", "encrypte"); returns how many (1 or 3)."""
    out[0] = _fnv(buf, a0, a1)
    n = a1 - a0
    # suffixes in guards._forms' order: ing, ed, es, s, d (the first that fits)
    k = 0
    if n - 3 >= 3 and buf[a1 - 3] == 105 and buf[a1 - 2] == 110 and buf[a1 - 1] == 103:
        k = 3
    elif n - 2 >= 3 and buf[a1 - 2] == 101 and buf[a1 - 1] == 100:
        k = 2
    elif n - 2 >= 3 and buf[a1 - 2] == 101 and buf[a1 - 1] == 115:
        k = 2
    elif n - 1 >= 3 and buf[a1 - 1] == 115:
        k = 1
    elif n - 1 >= 3 and buf[a1 - 1] == 100:
        k = 1
    if k == 0:
        return 1
    out[1] = _fnv(buf, a0, a1 - k)
    out[2] = _fnv_byte(out[1], _E)
    return 3


@_helper
def _opposites(buf, x0, x1, y0, y1, H, HB, fx, fy):
    """Whether a form of word x has a form of word y among its opposites (``guards._polarity``)."""
    nx = _forms(buf, x0, x1, fx)
    ny = _forms(buf, y0, y1, fy)
    for i in range(nx):
        if not _member(H, HB, _OPP, fx[i]):
            continue
        for j in range(ny):
            if _member(H, HB, _OPPAIR, fx[i] * np.uint64(_PAIR_MIX) ^ fy[j]):
                return True
    return False


@_helper
def _alnum(c):
    return (48 <= c <= 57) or (65 <= c <= 90) or (97 <= c <= 122)


@_helper
def _letter(c):
    return (65 <= c <= 90) or (97 <= c <= 122)


@_helper
def _spells(buf, s, u, w0, w1):
    """Whether raw bytes [s, u) spell word [w0, w1) (lower case) in any case."""
    if u - s != w1 - w0:
        return False
    for t in range(u - s):
        if (buf[s + t] | 32) != buf[w0 + t]:
            return False
    return True


@_helper
def _raw_idents(buf, r0, r1, pos, st, en, k, H, HB, idf):
    """Which of the ``k`` words ``[st[pos[t]], en[pos[t]])`` (canonical, lower case) the raw
    text [r0, r1) writes as an identifier (``guards._idents``' first set, exactly):
    ``idf[t]`` is 1 where a run of letters and digits spells word ``t`` in capitals (2+) or
    right after an id noun, else 0. Returns True instead (the flags then unset) where a
    word's spelling may be asked about (a superset of ``guards._idents``' second set): a run
    spelling it between quotes, after a word verb, or after a quote and before another
    anywhere (a quoted span of words, ``canon.MENTION``: its quotes are ``"``, a backquote,
    or an apostrophe not between two letters or digits). Two scans of the raw text."""
    fq = r1
    lq = r0 - 1
    for u in range(r0, r1):
        c = buf[u]
        if (
            c == 34
            or c == 96
            or (
                c == 39
                and not (u > r0 and u + 1 < r1 and _alnum(buf[u - 1]) and _alnum(buf[u + 1]))
            )
        ):
            if fq == r1:
                fq = u
            lq = u
    for t in range(k):
        idf[t] = 0
    u = r0
    ps = -1
    pu = -1
    while u < r1:
        if not _alnum(buf[u]):
            u += 1
            continue
        s = u
        upper = False
        lower = False
        while u < r1 and _alnum(buf[u]):
            x = buf[u]
            if 65 <= x <= 90:
                upper = True
            elif 97 <= x <= 122:
                lower = True
            u += 1
        for t in range(k):
            w0 = st[pos[t]]
            w1 = en[pos[t]]
            n = w1 - w0
            if u - s == n and _spells(buf, s, u, w0, w1):
                if fq < s and lq >= u:
                    return True  # (in a quoted span, maybe)
                if s > r0 and u < r1:
                    qb = buf[s - 1]
                    qa = buf[u]
                    if (qb == 39 or qb == 34 or qb == 96) and (qa == 39 or qa == 34 or qa == 96):
                        return True
                if upper and not lower and n >= 2:
                    idf[t] = 1
                if ps >= 0:
                    h = np.uint64(0xCBF29CE484222325)
                    for v in range(ps, pu):
                        h = _fnv_byte(h, buf[v] | 32)
                    if _member(H, HB, _WVB, h):
                        return True
                    if _member(H, HB, _IDN, h):
                        idf[t] = 1
        ps = s
        pu = u
    return False


@_helper
def _space(c):
    """ASCII whitespace as :meth:`str.split` sees it."""
    return c == 32 or 9 <= c <= 13 or 28 <= c <= 31


@_helper
def _names(buf, r0, r1, out):
    """The hashes of ``guards._names`` of the ASCII raw text [r0, r1): its capitalized runs of
    letters not at a sentence start, nor "I", nor in a shouted text, lower-cased. Returns how
    many, or -1 past ``out``'s size."""
    up = False
    low = False
    for u in range(r0, r1):
        c = buf[u]
        if 65 <= c <= 90:
            up = True
        elif 97 <= c <= 122:
            low = True
    shouted = up and not low
    k = 0
    u = r0
    while u < r1:
        if not _letter(buf[u]):
            u += 1
            continue
        s = u
        caps = True
        while u < r1 and _letter(buf[u]):
            if buf[u] >= 97:
                caps = False
            u += 1
        if not (65 <= buf[s] <= 90) or (u - s == 1 and buf[s] == 73):
            continue
        j = s - 1
        while j >= r0:
            c = buf[j]
            if c == 32 or c == 9 or c == 34 or c == 39 or c == 40 or c == 91 or c == 42 or c == 45:
                j -= 1
            else:
                break
        if j < r0:
            continue
        c = buf[j]
        if c == 46 or c == 63 or c == 33 or c == 10:
            continue  # the first word of a sentence
        if caps and u - s > 1 and shouted:
            continue
        if k == out.shape[0]:
            return -1
        h = np.uint64(0xCBF29CE484222325)
        for v in range(s, u):
            h = _fnv_byte(h, buf[v] | 32)
        out[k] = h
        k += 1
    return k


@_helper
def _name_of(buf, w0, w1, h, names, k):
    """``guards._name_of``: 1 where word [w0, w1) is one of the ``k`` names, 2 where it is
    one with a final "s" (a possessive), else 0."""
    if k == 0:
        return 0
    for t in range(k):
        if names[t] == h:
            return 1
    if w1 - w0 > 1 and buf[w1 - 1] == 115:
        g = _fnv(buf, w0, w1 - 1)
        for t in range(k):
            if names[t] == g:
                return 2
    return 0


@_helper
def _name_typo(buf, w0, w1, hw, op, k, st, en, hs, names, nn, H, HB, scratch):
    """``guards._name_typo``: whether name [w0, w1) may be a typo of one of the other side's
    ``k`` words ``op`` (a name there only of a name of the same first letter)."""
    for t in range(k):
        o = op[t]
        o0 = st[o]
        o1 = en[o]
        kind = _name_of(buf, o0, o1, hs[o], names, nn)
        if kind == 0:
            if _typo(buf, w0, w1, hw, o0, o1, hs[o], H, HB, scratch, _I1):
                return True
        else:
            if kind == 2:
                o1 -= 1
            if buf[o0] == buf[w0] and _typo(
                buf, w0, w1, hw, o0, o1, _fnv(buf, o0, o1), H, HB, scratch, _I1
            ):
                return True
    return False


@_helper
def _entities(
    buf, o1, k1, s1, e1, h1, n1, names1, nn1, o2, k2, s2, e2, h2, n2, names2, nn2, H, HB, scratch
):
    """``guards._entities`` for the words ``o1`` side 1 lacks (side 2 lacks ``o2``): names
    and entity words; True where it refuses."""
    for t in range(k1):
        x = o1[t]
        w0 = s1[x]
        w1 = e1[x]
        kind = _name_of(buf, w0, w1, h1[x], names1, nn1)
        if kind == 2:  # a possessive: the name is the word without its "s"
            if _name_typo(
                buf,
                w0,
                w1 - 1,
                _fnv(buf, w0, w1 - 1),
                o2,
                k2,
                s2,
                e2,
                h2,
                names2,
                nn2,
                H,
                HB,
                scratch,
            ):
                continue
            return True
        if kind == 1:
            if _count(h2, n2, h1[x]) > 0:
                continue
            if _name_typo(buf, w0, w1, h1[x], o2, k2, s2, e2, h2, names2, nn2, H, HB, scratch):
                continue
            return True
        if _member(H, HB, _ENT, h1[x]):  # an entity word that is not a name
            if _count(h2, n2, h1[x]) > 0:
                continue
            typo = False
            for u in range(k2):
                y = o2[u]
                if _typo(buf, w0, w1, h1[x], s2[y], e2[y], h2[y], H, HB, scratch, _I1):
                    typo = True
                    break
            if typo:
                continue
            return True
    return False


@_helper
def _scope_word(buf, o1, k1, s1, e1, h1, o2, k2, s2, e2, h2, H, HB, scratch):
    """``guards._scope``'s scope words: one of the ``k1`` words side 1 lacks (``o1``) is a
    scope word and no typo of a word side 2 lacks."""
    for t in range(k1):
        x = o1[t]
        if not _member(H, HB, _SPECIAL, h1[x]):
            continue
        typo = False
        for u in range(k2):
            y = o2[u]
            if _typo(buf, s1[x], e1[x], h1[x], s2[y], e2[y], h2[y], H, HB, scratch, _I2):
                typo = True
                break
        if not typo:
            return True
    return False


@_helper
def _tokens(buf, a0, a1, st, en, hs):
    """Split [a0, a1) at whitespace into st/en/hs; the word count, or -1 past their size (or
    for a word of more than 120 bytes, which :func:`_osa`'s scratch does not hold)."""
    n = 0
    u = a0
    while u < a1:
        if _space(buf[u]):
            u += 1
            continue
        s = u
        while u < a1 and not _space(buf[u]):
            u += 1
        if u - s > 120:
            return -1
        if n == st.shape[0]:
            return -1
        st[n] = s
        en[n] = u
        hs[n] = _fnv(buf, s, u)
        n += 1
    return n


@_helper
def _count(hs, n, h):
    k = 0
    for t in range(n):
        if hs[t] == h:
            k += 1
    return k


@_helper
def _minus(ha, na, hb, nb, out):
    """The positions in a of the words a has more often than b, each repeated as often, in
    the order of their first occurrence (``guards._minus``); returns how many."""
    k = 0
    for p in range(na):
        h = ha[p]
        first = True
        for q in range(p):
            if ha[q] == h:
                first = False
                break
        if not first:
            continue
        extra = _count(ha, na, h) - _count(hb, nb, h)
        for _ in range(extra):
            out[k] = p
            k += 1
    return k


@_helper
def _role_args(buf, st, en, hs, n, H, HB, mk, ar):
    """Each role word's position's (marker, argument) hashes (``guards._role_args``: the
    word after it, determiners skipped; 0 for none); returns how many."""
    k = 0
    for i in range(n):
        if _member(H, HB, _ROLE, hs[i]):
            j = i + 1
            while j < n and _member(H, HB, _DET, hs[j]):
                j += 1
            mk[k] = hs[i]
            ar[k] = hs[j] if j < n else np.uint64(0)
            k += 1
    return k


@_helper
def _has(xs, n, h):
    for t in range(n):
        if xs[t] == h:
            return True
    return False


@_helper
def _pairs_count(mk, ar, n, m, a):
    k = 0
    for t in range(n):
        if mk[t] == m and ar[t] == a:
            k += 1
    return k


@_helper
def _same_roles(mka, ara, ka, mkb, arb, kb):
    """``guards._same_roles``: each role word both sides have takes the same arguments."""
    if ka == 0 or kb == 0:
        return True
    for t in range(ka):
        m = mka[t]
        if _has(mkb, kb, m) and _pairs_count(mka, ara, ka, m, ara[t]) != _pairs_count(
            mkb, arb, kb, m, ara[t]
        ):
            return False
    for t in range(kb):
        m = mkb[t]
        if _has(mka, ka, m) and _pairs_count(mka, ara, ka, m, arb[t]) != _pairs_count(
            mkb, arb, kb, m, arb[t]
        ):
            return False
    return True


@_helper
def _rotation(h1, a1, h2, a2, n):
    """Whether h2[a2 : a2 + n] is h1[a1 : a1 + n] rotated by 1 .. n - 1 words."""
    for k in range(1, n):
        ok = True
        for t in range(n):
            if h1[a1 + (t + k) % n] != h2[a2 + t]:
                ok = False
                break
        if ok:
            return True
    return False


@_helper
def _free_run(hs, i, j, H, HB):
    """Whether hs[i:j] has no "then" and no coordinator."""
    for t in range(i, j):
        if _member(H, HB, _THEN, hs[t]) or _member(H, HB, _COORD, hs[t]):
            return False
    return True


@_helper
def _coordination_swap(ha, hb, n, H, HB):
    """``guards._coordination_swap`` on two texts of ``n`` words each."""
    p = 0
    while p < n and ha[p] == hb[p]:
        p += 1
    for i in range(max(0, p - 3), p + 1):
        for k in range(i + 1, min(n - 1, i + 5)):
            if not _member(H, HB, _COORD, ha[k]) or _member(H, HB, _THEN, ha[k + 1]):
                continue
            if not _free_run(ha, i, k, H, HB):
                continue
            for j in range(k + 2, min(n, k + 5) + 1):
                if not _free_run(ha, k + 1, j, H, HB):
                    break
                # tb[i:j] == y + [ta[k]] + x, the rest equal
                ly = j - k - 1
                ok = True
                for t in range(ly):
                    if hb[i + t] != ha[k + 1 + t]:
                        ok = False
                        break
                if ok and hb[i + ly] != ha[k]:
                    ok = False
                if ok:
                    for t in range(k - i):
                        if hb[i + ly + 1 + t] != ha[i + t]:
                            ok = False
                            break
                if ok:
                    for t in range(j, n):
                        if hb[t] != ha[t]:
                            ok = False
                            break
                if ok:
                    for t in range(i):
                        if hb[t] != ha[t]:
                            ok = False
                            break
                if ok:
                    return True
    return False


@_helper
def _reordered(ha, hb, n):
    """Whether ``guards._reordered`` finds words that changed places (not a moved clause)."""
    if _rotation(ha, _I0, hb, _I0, n):
        return False
    p = 0
    while p < n and ha[p] == hb[p]:
        p += 1
    if p == n:
        return False
    q = n
    while ha[q - 1] == hb[q - 1]:
        q -= 1
    return not _rotation(ha, p, hb, p, q - p)


@_helper
def _ignorable_at(ig, x, buf, st, en, hs, H, HB, FB, FO, base, scratch):
    """:func:`_ignorable` of word ``x`` of a text (``st``, ``en``, ``hs``), kept in ``ig[x]``
    (-1 until asked) for the text's other pairs."""
    v = ig[x]
    if v < 0:
        v = 1 if _ignorable(buf, st[x], en[x], hs[x], H, HB, FB, FO, base, scratch) else 0
        ig[x] = v
    return v == 1


@_helper
def _known(ig, x, buf, st, en, hs, H, HB, FB, FO, base, scratch):
    """``guards._spaces_moved``'s known word (word ``x`` of a text): the dictionary's, a short
    word, or ignorable."""
    return (
        _member(H, HB, _DICT, hs[x])
        or _member(H, HB, _SHORT, hs[x])
        or _ignorable_at(ig, x, buf, st, en, hs, H, HB, FB, FO, base, scratch)
    )


@_helper
def _spaces_moved(
    buf, sa, ea, ha, na, sb, eb, hb, nb, ra0, ra1, rb0, rb1, iga, igb, H, HB, FB, FO, base, scratch,
    pos,
):  # fmt: skip
    """``guards._spaces_moved``: 0 where it finds no run of the same letters with spaces
    moved, else ``(p << 8 | q) + 1`` (the run is words ``p .. n - q - 1`` of each side), or
    -1 where the Python guards decide (a word of a run may be an identifier)."""
    p = 0
    while p < na and p < nb and ha[p] == hb[p]:
        p += 1
    q = 0
    while q < na - p and q < nb - p and ha[na - 1 - q] == hb[nb - 1 - q]:
        q += 1
    ra = na - q - p
    if not (1 <= ra <= 3 and nb - q - p == ra) or q > 255:
        return 0
    x = sa[p]
    y = sb[p]
    xe = ea[na - q - 1]
    ye = eb[nb - q - 1]
    while True:
        while x < xe and _space(buf[x]):
            x += 1
        while y < ye and _space(buf[y]):
            y += 1
        if x >= xe or y >= ye:
            if not (x >= xe and y >= ye):
                return 0
            break
        if buf[x] != buf[y]:
            return 0
        x += 1
        y += 1
    la = 0
    lb = 0
    for t in range(ra - 1):
        la += ea[p + t] - sa[p + t]
        lb += eb[p + t] - sb[p + t]
        if abs(la - lb) > 2:
            return 0
    kna = True
    knb = True
    for t in range(p, p + ra):
        if not _known(iga, t, buf, sa, ea, ha, H, HB, FB, FO, base, scratch):
            kna = False
        if not _known(igb, t, buf, sb, eb, hb, H, HB, FB, FO, base, scratch):
            knb = False
    if kna == knb:
        return 0
    idf = pos[1:2]
    for t in range(p, p + ra):
        # a word written as an identifier and not in the dictionary: not a typo's space
        pos[0] = t
        w = _I1  # (one word: pos[0])
        if not _member(H, HB, _DICT, ha[t]):
            if _raw_idents(buf, ra0, ra1, pos, sa, ea, w, H, HB, idf):
                return -1  # (quoted, maybe: the Python guards decide)
            if idf[0]:
                return 0  # ("ticket AB CD" / "ticket ABC D")
        if not _member(H, HB, _DICT, hb[t]):
            if _raw_idents(buf, rb0, rb1, pos, sb, eb, w, H, HB, idf):
                return -1
            if idf[0]:
                return 0
    return ((p << 8) | q) + 1


@_helper
def _drop(o, k, hs, p, e):
    """Drop from positions ``o[:k]`` every word equal to one of words ``p .. e - 1``; the
    new count."""
    m = 0
    for t in range(k):
        h = hs[o[t]]
        hit = False
        for u in range(p, e):
            if hs[u] == h:
                hit = True
                break
        if not hit:
            o[m] = o[t]
            m += 1
    return m


@_helper
def _has_elsewhere(buf, h, s1, e1, h1, n1, m, mk2, ar2, k2, s2, e2, h2, n2, o2, j2, H, HB, scratch):
    """``guards._has_elsewhere``: whether side 2 has the word of hash ``h`` (a word of side
    1), or a typo of it among the ``j2`` words ``o2`` it alone has that are not role word
    ``m``'s arguments there."""
    if _count(h2, n2, h) > 0:
        return True
    if j2 == 0:
        return False
    i = 0
    while h1[i] != h:
        i += 1
    for u in range(j2):
        y = o2[u]
        if _pairs_count(mk2, ar2, k2, m, h2[y]) == 0 and _typo(
            buf, s1[i], e1[i], h, s2[y], e2[y], h2[y], H, HB, scratch, _I2
        ):
            return True
    return False


@_helper
def _roles_traded(
    buf, mka, ara, ka, mkb, arb, kb, sa, ea, ha, na, oa, ja, sb, eb, hb, nb, ob, jb, H, HB, scratch
):
    """``guards._roles_veto``: a role word both sides have takes an argument on one side
    (more often than on the other) that the other side has as a word or mistyped
    (:func:`_has_elsewhere`; ``oa[:ja]``, ``ob[:jb]``: the words each side alone has), and
    the reverse."""
    for t in range(ka):
        m = mka[t]
        if not _has(mkb, kb, m):
            continue
        xa = False
        for u in range(ka):
            x = ara[u]
            if (
                mka[u] == m
                and x != 0
                and _pairs_count(mka, ara, ka, m, x) > _pairs_count(mkb, arb, kb, m, x)
                and _has_elsewhere(
                    buf, x, sa, ea, ha, na, m, mkb, arb, kb, sb, eb, hb, nb, ob, jb, H, HB, scratch
                )
            ):
                xa = True
                break
        if not xa:
            continue
        for u in range(kb):
            y = arb[u]
            if (
                mkb[u] == m
                and y != 0
                and _pairs_count(mkb, arb, kb, m, y) > _pairs_count(mka, ara, ka, m, y)
                and _has_elsewhere(
                    buf, y, sb, eb, hb, nb, m, mka, ara, ka, sa, ea, ha, na, oa, ja, H, HB, scratch
                )
            ):
                return True
    return False


@_helper
def _reordered_mistyped(buf, sa, ea, ha, n, oa, ka, sb, eb, hb, ob, kb, H, HB, scratch, tmp, hb2):
    """``guards._reordered_mistyped`` on two texts of ``n`` words each that lack ``ka``
    words each (``oa``, ``ob``): ``tmp`` (2 * ka ints) and ``hb2`` (n) are its scratch."""
    if ka == 0:
        return False
    used = tmp[:kb]
    pair = tmp[kb : kb + ka]
    used[:] = 0
    for t in range(ka):
        x = oa[t]
        found = False
        for u in range(kb):
            if used[u]:
                continue
            y = ob[u]
            if _typo(buf, sa[x], ea[x], ha[x], sb[y], eb[y], hb[y], H, HB, scratch, _I2):
                used[u] = 1
                pair[t] = u
                found = True
                break
        if not found:
            return False
    for i in range(n):
        hb2[i] = hb[i]
        for t in range(ka):  # (the last pair of a word repeated decides, as a dict's last write)
            if hb[i] == hb[ob[pair[t]]]:
                hb2[i] = ha[oa[t]]
    for i in range(n):
        if _count(ha, n, ha[i]) != _count(hb2, n, ha[i]):
            return False
    return not _coordination_swap(ha, hb2, n, H, HB) and _reordered(ha, hb2, n)


@_helper
def _ascii(buf, a, b):
    for u in range(a, b):
        if buf[u] >= 128:
            return False
    return True


@_helper
def _same_words(buf, a0, a1, b0, b1):
    """Whether [a0, a1) and [b0, b1) split at whitespace give the same words (as
    :meth:`str.split`: ASCII bytes)."""
    u = a0
    v = b0
    while True:
        while u < a1 and _space(buf[u]):
            u += 1
        while v < b1 and _space(buf[v]):
            v += 1
        if u == a1 or v == b1:
            return u == a1 and v == b1
        while u < a1 and v < b1 and not _space(buf[u]) and buf[u] == buf[v]:
            u += 1
            v += 1
        if (u < a1 and not _space(buf[u])) or (v < b1 and not _space(buf[v])):
            return False


@njit(cache=True)
def _decide_pairs(buf, spans, pa, pb, H, HB, FB, FO, out):
    """:func:`decide_pairs` on ``buf`` = the fillers' bytes (``FB``), then the texts' bytes:
    text ``t``'s canonical bytes are ``buf[spans[t, 0]:spans[t, 1]]``, its raw ones
    ``buf[spans[t, 2]:spans[t, 3]]``. (:func:`decide` calls it too: one kernel to compile.)

    A pair of the same canonical words passes first, its texts not read further; a pair of a
    negative index is DEFER. Each text of another pair is read once, however many pairs it is
    in: its canonical words (the text ``t``'s ``nt[t]`` words are ``ws[to[t] + i]`` ..
    ``we``, ``wh``; -1 words where the Python guards decide: non-ASCII, too many words or a
    word too long), and when a pair first asks, its names (``nm``, ``nn``) and whether a word
    is ignorable (``ig``)."""
    M = MAX_WORDS
    n = spans.shape[0]
    need = np.zeros(n, np.bool_)
    for p in range(pa.shape[0]):
        a = pa[p]
        b = pb[p]
        if a < 0 or b < 0:
            out[p] = DEFER  # (no text: not asked)
        elif _same_words(buf, spans[a, 0], spans[a, 1], spans[b, 0], spans[b, 1]):
            out[p] = PASS  # the same canonical words (as guards.veto's first test)
        else:
            out[p] = _ASKED
            need[a] = True
            need[b] = True
    # a text of c bytes has at most (c + 1) // 2 words (or runs of letters): room for as many
    to = np.zeros(n + 1, np.int64)
    no = np.zeros(n + 1, np.int64)
    for t in range(n):
        c = 0
        r = 0
        if need[t]:
            c = min(M, (spans[t, 1] - spans[t, 0] + 1) // 2 + 1)
            r = min(M, (spans[t, 3] - spans[t, 2] + 1) // 2 + 1)
        to[t + 1] = to[t] + c
        no[t + 1] = no[t] + r
    ws = np.empty(to[n], np.int64)
    we = np.empty(to[n], np.int64)
    wh = np.empty(to[n], np.uint64)
    ig = np.full(to[n], -1, np.int8)  # -1: not asked yet
    nm = np.empty(no[n], np.uint64)
    nn = np.full(n, -2, np.int64)  # -2: not asked yet
    nt = np.full(n, -1, np.int64)
    for t in range(n):
        if not need[t]:
            continue
        if _ascii(buf, spans[t, 2], spans[t, 3]) and _ascii(buf, spans[t, 0], spans[t, 1]):
            a = to[t]
            b = to[t + 1]
            nt[t] = _tokens(buf, spans[t, 0], spans[t, 1], ws[a:b], we[a:b], wh[a:b])
    iw = np.empty(7 * M + 3 * 130, np.int64)
    uw = np.empty(4 * M + 6, np.uint64)
    base = FB.shape[0] * 0  # the fillers' bytes come first
    for p in range(pa.shape[0]):
        if out[p] != _ASKED:
            continue
        a = pa[p]
        b = pb[p]
        if spans[a, 1] - spans[a, 0] + spans[b, 1] - spans[b, 0] > 16 * M:
            out[p] = DEFER  # (as decide)
        elif nt[a] < 0 or nt[b] < 0:
            out[p] = DEFER  # non-ASCII, or words the kernel does not hold: the Python reference
        else:
            out[p] = _decide_at(
                buf, a, b, spans, to, nt, ws, we, wh, ig, no, nm, nn, base, H, HB, FB, FO, iw, uw
            )


@_helper
def _names_at(buf, t, spans, no, nm, nn):
    """Text ``t``'s names (:func:`_names`), read on the first ask."""
    if nn[t] == -2:
        nn[t] = _names(buf, spans[t, 2], spans[t, 3], nm[no[t] : no[t + 1]])
    return nm[no[t] : no[t + 1]]


@_helper
def _decide_at(buf, a, b, spans, to, nt, ws, we, wh, ig, no, nm, nn, base, H, HB, FB, FO, iw, uw):
    """:func:`decide` on texts ``a`` and ``b`` of :func:`_decide_pairs` (ASCII, their words
    read), the fillers' bytes at ``base``; ``iw`` and ``uw`` are its scratch (written before
    read)."""
    M = MAX_WORDS
    na = nt[a]
    nb = nt[b]
    sa = ws[to[a] : to[a] + na]
    ea = we[to[a] : to[a] + na]
    ha = wh[to[a] : to[a] + na]
    iga = ig[to[a] : to[a] + na]
    sb = ws[to[b] : to[b] + nb]
    eb = we[to[b] : to[b] + nb]
    hb = wh[to[b] : to[b] + nb]
    igb = ig[to[b] : to[b] + nb]
    ra0 = spans[a, 2]
    ra1 = spans[a, 3]
    rb0 = spans[b, 2]
    rb1 = spans[b, 3]
    oa = iw[0:M]
    ob = iw[M : 2 * M]
    left = iw[2 * M : 3 * M]
    scratch = iw[7 * M :]
    mka = uw[0:M]
    ara = uw[M : 2 * M]
    mkb = uw[2 * M : 3 * M]
    arb = uw[3 * M : 4 * M]
    if na == nb:
        same = True
        for t in range(na):
            if ha[t] != hb[t]:
                same = False
                break
        if same:
            return PASS  # the same canonical words in the same order
    ka = _minus(ha, na, hb, nb, oa)
    kb = _minus(hb, nb, ha, na, ob)
    if ka == 0 and kb == 0:
        # the same words in another order (guards.veto's first branch): a swapped
        # coordination or a moved clause passes, another reordering trades roles
        if _coordination_swap(ha, hb, na, H, HB):
            return PASS
        nra = _role_args(buf, sa, ea, ha, na, H, HB, mka, ara)
        nrb = _role_args(buf, sb, eb, hb, nb, H, HB, mkb, arb)
        if not _same_roles(mka, ara, nra, mkb, arb, nrb) and _roles_traded(
            buf,
            mka,
            ara,
            nra,
            mkb,
            arb,
            nrb,
            sa,
            ea,
            ha,
            na,
            oa,
            0,
            sb,
            eb,
            hb,
            nb,
            ob,
            0,
            H,
            HB,
            scratch,
        ):
            return REFUSE
        return REFUSE if _reordered(ha, hb, na) else PASS
    # the polarity guard counts the negations of the whole texts: the counts differ where
    # the words each side lacks (before the spaces moved are taken out) hold another count
    neg = 0
    for t in range(ka + kb):
        if _member(H, HB, _NEG, ha[oa[t]] if t < ka else hb[ob[t - ka]]):
            neg += 1 if t < ka else -1
    if ka > 1 or kb > 1:
        la_ = 0
        for t in range(ka):
            la_ += ea[oa[t]] - sa[oa[t]]
        lb_ = 0
        for t in range(kb):
            lb_ += eb[ob[t]] - sb[ob[t]]
        if la_ == lb_:
            r = _spaces_moved(
                buf,
                sa,
                ea,
                ha,
                na,
                sb,
                eb,
                hb,
                nb,
                ra0,
                ra1,
                rb0,
                rb1,
                iga,
                igb,
                H,
                HB,
                FB,
                FO,
                base,
                scratch,
                iw[3 * M :],
            )
            if r < 0:
                return DEFER
            if r > 0:
                # the words of each run are no difference: compare the rest
                p = (r - 1) >> 8
                q = (r - 1) & 0xFF
                ka = _drop(oa, ka, ha, p, na - q)
                kb = _drop(ob, kb, hb, p, nb - q)
                if ka == 0 and kb == 0:
                    return PASS
                if neg != 0:
                    # another count of negations, and the run held every negation a side
                    # lacked ("willn ot" / "will not" and another word): polarity refuses
                    neg = 0
                    for t in range(ka + kb):
                        if _member(H, HB, _NEG, ha[oa[t]] if t < ka else hb[ob[t - ka]]):
                            neg = 1
                    if neg == 0:
                        return REFUSE
    # Another count of negations where a negation is left (guards._polarity): it is lost
    # unless each one a side lacks is a typo of a word the other side lacks ("iwthout" /
    # "without"). The residue guard below pairs them under the same typo rule or refuses: no
    # negation is ignorable and opposites go both ways (both tested), so it passes only where
    # the polarity guard would. (A typo search of its own here made the first compile ~0.5 s
    # longer.)
    # From here on every guard is exact or undecided, and they are all on: the first that
    # refuses decides (the Python guards would refuse too, maybe by an earlier guard), and
    # the pair passes only where none refuses and none is undecided (an identifier: below).
    fx = uw[4 * M : 4 * M + 3]
    fy = uw[4 * M + 3 : 4 * M + 6]
    for t in range(ka):
        x = oa[t]
        for u in range(kb):
            y = ob[u]
            if _opposites(buf, sa[x], ea[x], sb[y], eb[y], H, HB, fx, fy) or _prefix_negation(
                buf, sa[x], ea[x], sb[y], eb[y], H, HB
            ):
                return REFUSE  # polarity
    nra = _role_args(buf, sa, ea, ha, na, H, HB, mka, ara)
    nrb = _role_args(buf, sb, eb, hb, nb, H, HB, mkb, arb)
    if not _same_roles(mka, ara, nra, mkb, arb, nrb) and _roles_traded(
        buf,
        mka,
        ara,
        nra,
        mkb,
        arb,
        nrb,
        sa,
        ea,
        ha,
        na,
        oa,
        ka,
        sb,
        eb,
        hb,
        nb,
        ob,
        kb,
        H,
        HB,
        scratch,
    ):
        return REFUSE  # roles: an argument traded (or traded and mistyped)
    # (the role arguments are read no more: mka holds b's words with its typos read back)
    if (
        ka == kb
        and na == nb
        and _reordered_mistyped(
            buf, sa, ea, ha, na, oa, ka, sb, eb, hb, ob, kb, H, HB, scratch, iw[3 * M : 5 * M], mka
        )
    ):
        return REFUSE  # roles: words traded, one of them mistyped
    nma = _names_at(buf, a, spans, no, nm, nn)
    nmb = _names_at(buf, b, spans, no, nm, nn)
    nna = nn[a]
    nnb = nn[b]
    if nna < 0 or nnb < 0:
        return DEFER
    if _entities(
        buf, oa, ka, sa, ea, ha, na, nma, nna, ob, kb, sb, eb, hb, nb, nmb, nnb, H, HB, scratch
    ) or _entities(
        buf, ob, kb, sb, eb, hb, nb, nmb, nnb, oa, ka, sa, ea, ha, na, nma, nna, H, HB, scratch
    ):
        return REFUSE  # entities: another name, date, unit, ...
    if _scope_word(buf, oa, ka, sa, ea, ha, ob, kb, sb, eb, hb, H, HB, scratch) or _scope_word(
        buf, ob, kb, sb, eb, hb, oa, ka, sa, ea, ha, H, HB, scratch
    ):
        return REFUSE  # scope: a scope word on one side
    for t in range(ka):
        x = oa[t]
        for u in range(kb):
            y = ob[u]
            if _plural_pair(buf, sa[x], ea[x], sb[y], eb[y]):
                return REFUSE  # scope
    # the words each side lacks that it writes as an identifier (guards._idents): a typo of
    # one outside the dictionary is one only of a dictionary word ("product caxcel" /
    # "product cancel"), not of another code ("user jdoe" / "user jdoa")
    ida = iw[5 * M : 6 * M]
    idb = iw[6 * M : 7 * M]
    if _raw_idents(buf, ra0, ra1, oa, sa, ea, ka, H, HB, ida) or _raw_idents(
        buf, rb0, rb1, ob, sb, eb, kb, H, HB, idb
    ):
        return DEFER  # a spelling asked about: the residue guard's care
    # the residue guard: each word a side lacks is ignorable or a typo of a distinct word of
    # the other side (guards._residue with guards._typo_candidates)
    nl = 0
    for u in range(kb):
        y = ob[u]
        if not _ignorable_at(igb, y, buf, sb, eb, hb, H, HB, FB, FO, base, scratch):
            left[nl] = y
            # (nl <= u: idb[u] is read before a later word's flag is written over it)
            idb[nl] = 1 if idb[u] != 0 or not _has_vowel(buf, sb[y], eb[y]) else 0
            nl += 1
    used = iw[3 * M : 3 * M + nl]
    used[:] = 0
    for t in range(ka):
        x = oa[t]
        w0 = sa[x]
        w1 = ea[x]
        hw = ha[x]
        if _ignorable_at(iga, x, buf, sa, ea, ha, H, HB, FB, FO, base, scratch):
            continue
        in_dict = _member(H, HB, _DICT, hw)
        w_id = ida[t] != 0 or not _has_vowel(buf, w0, w1)
        found = False
        for v in range(nl):
            if used[v]:
                continue
            y = left[v]
            if not in_dict and not _member(H, HB, _DICT, hb[y]):
                if w_id or idb[v] != 0:
                    continue
            if _typo(buf, w0, w1, hw, sb[y], eb[y], hb[y], H, HB, scratch, _I2):
                used[v] = 1
                found = True
                break
        if not found:
            return REFUSE
    for v in range(nl):
        if not used[v]:
            return REFUSE
    return PASS


_tables: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
_lock = threading.Lock()


def _hash_words(words: list[str]) -> np.ndarray:
    data = "".join(words).encode("ascii")
    lens = np.array([len(w) for w in words], np.int64)
    ends = np.cumsum(lens)
    out = np.empty(len(words), np.uint64)
    hash_spans(np.frombuffer(data, np.uint8), ends - lens, ends, out)
    return out


def _slots(sections: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The open-addressing table :func:`_member` probes: each hash of any section once, with
    the sections it is in as bits (Fibonacci hashing, linear probing: a key sits past its home
    slot only where every slot between is taken)."""
    allh = np.concatenate(sections).astype(np.uint64)
    which = np.concatenate([np.full(len(x), 1 << s, np.int64) for s, x in enumerate(sections)])
    uniq, inv = np.unique(allh, return_inverse=True)
    bits = np.zeros(len(uniq), np.int64)
    np.bitwise_or.at(bits, inv, which)
    size = 1 << _SLOT_BITS
    if 2 * len(uniq) > size:
        raise AssertionError(f"{len(uniq)} words for {size} slots: raise _SLOT_BITS")
    keys = np.zeros(size, np.uint64)
    flags = np.zeros(size + 1, np.int32)  # (the last: the sections of hash 0)
    zero = uniq == 0
    flags[size] = bits[zero].sum()
    uniq, bits = uniq[~zero], bits[~zero]
    home = (uniq * np.uint64(_PAIR_MIX)) >> np.uint64(_SLOT_SHIFT)
    step = np.zeros(len(uniq), np.uint64)
    todo = np.arange(len(uniq))
    while len(todo):
        # each key still to place tries its next slot; of the keys trying a free slot, the
        # first takes it, the others try the next one in the next round
        at = ((home[todo] + step[todo]) & np.uint64(size - 1)).astype(np.int64)
        free = keys[at] == 0
        _, first = np.unique(at, return_index=True)
        won = np.zeros(len(todo), bool)
        won[first] = True
        won &= free
        keys[at[won]] = uniq[todo[won]]
        flags[at[won]] = bits[todo[won]]
        step[todo[~won]] += np.uint64(1)
        todo = todo[~won]
    return keys, flags


def tables() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The kernel's word tables, built once: ``(H, HB, FB, FO)``: the hashes of every section
    of words in one open-addressing table (``H`` the keys, ``HB`` the sections of each as
    bits: :func:`_slots`), and the fillers' bytes with their offsets."""
    global _tables
    with _lock:
        if _tables is not None:
            return _tables
        from .lexicon import (
            DETERMINERS,
            ENTITY_WORDS,
            ID_NOUNS,
            IGNORABLE_WORDS,
            NEGATING_PREFIX_SET,
            NEGATIONS,
            OPPOSITES,
            ROLE_MARKERS,
            SCOPE_WORDS,
            SHORT_WORDS,
            TYPO_FILLERS,
            WORD_VERBS,
            dictionary,
        )

        def ascii_words(ws: Any) -> list[str]:
            return sorted(w for w in ws if w.isascii())

        opp = set(OPPOSITES)
        pairs = [(a, b) for a, bs in OPPOSITES.items() for b in bs]
        sections: list[np.ndarray] = [np.empty(0, np.uint64)] * _SECTIONS
        sections[_DICT] = _hash_words(ascii_words(dictionary()))
        sections[_IGN] = _hash_words(ascii_words(IGNORABLE_WORDS))
        sections[_SPECIAL] = _hash_words(ascii_words(SCOPE_WORDS))
        sections[_ENT] = _hash_words(ascii_words(ENTITY_WORDS))
        sections[_NEG] = _hash_words(ascii_words(NEGATIONS))
        sections[_OPP] = _hash_words(ascii_words(opp))
        ha = _hash_words([a for a, _ in pairs if a.isascii() and _.isascii()])
        hb = _hash_words([b for a, b in pairs if a.isascii() and b.isascii()])
        sections[_OPPAIR] = ha * np.uint64(_PAIR_MIX) ^ hb
        sections[_IDN] = _hash_words(ascii_words(ID_NOUNS))
        sections[_WVB] = _hash_words(ascii_words(WORD_VERBS))
        sections[_ROLE] = _hash_words(ascii_words(ROLE_MARKERS))
        sections[_DET] = _hash_words(ascii_words(DETERMINERS))
        sections[_NEGPFX] = _hash_words(ascii_words(NEGATING_PREFIX_SET))
        sections[_COORD] = _hash_words(["and", "or"])  # (guards' coordinators)
        sections[_THEN] = _hash_words(["then"])
        sections[_SHORT] = _hash_words(ascii_words(SHORT_WORDS))
        H, HB = _slots(sections)
        fillers = [f for f in TYPO_FILLERS if f.isascii()]
        FB = np.frombuffer("".join(fillers).encode("ascii"), np.uint8).copy()
        FO = np.zeros(len(fillers) + 1, np.int64)
        FO[1:] = np.cumsum([len(f) for f in fillers])
        for a in (H, HB, FB, FO):
            a.setflags(write=False)
        _tables = (H, HB, FB, FO)
        return _tables


_FILLER_TAIL: bytes | None = None


def decide(a_canon: str, b_canon: str, a_text: str, b_text: str) -> int:
    """The guards' answer on merging text ``a`` with text ``b`` where the kernel can give it:
    :data:`PASS` (:func:`stratabatch.guards.veto` returns None), :data:`REFUSE` (it returns
    a veto) or :data:`DEFER` (ask it). For every guard of :data:`~stratabatch.config.GUARDS`
    on, the residue guard in full (no ``paraphrases``) and the numbers settled elsewhere
    (``numbers=False``), on the canonical texts (:mod:`stratabatch.canon`) and the raw ones
    (names, identifiers). The same canonical words (split at whitespace) always pass, as in
    ``veto``."""
    global _FILLER_TAIL
    if len(a_canon) + len(b_canon) > 16 * MAX_WORDS:
        return PASS if a_canon.split() == b_canon.split() else DEFER
    H, HB, FB, FO = _tables if _tables is not None else tables()
    tail = _FILLER_TAIL
    if tail is None:
        tail = _FILLER_TAIL = FB.tobytes()
    s = f"{a_canon}\0{a_text}\0{b_canon}\0{b_text}"
    if not s.isascii():
        return PASS if a_canon.split() == b_canon.split() else DEFER
    buf = np.frombuffer(tail + s.encode("ascii"), np.uint8)
    a0 = len(tail)
    a1 = a0 + len(a_canon)
    r1 = a1 + 1 + len(a_text)
    b1 = r1 + 1 + len(b_canon)
    spans = np.array([[a0, a1, a1 + 1, r1], [r1 + 1, b1, b1 + 1, b1 + 1 + len(b_text)]])
    out = np.empty(1, np.int8)
    _decide_pairs(buf, spans, _ZERO, _ONE, H, HB, FB, FO, out)
    return int(out[0])


_ZERO = np.zeros(1, np.int64)
_ONE = np.ones(1, np.int64)


def decide_pairs(canons: list[str], texts: list[str], pa: np.ndarray, pb: np.ndarray) -> np.ndarray:
    """:func:`decide` on many pairs in one kernel call: an int8 array whose ``k``-th value is
    ``decide(canons[a], canons[b], texts[a], texts[b])`` for ``a, b = pa[k], pb[k]`` (int64
    indices into both lists, of equal lengths), DEFER where either is negative (a pair with
    no text to read). Each text's bytes are encoded once, however many pairs it is in."""
    n = len(canons)
    H, HB, FB, FO = _tables if _tables is not None else tables()
    pa = np.ascontiguousarray(pa, np.int64)
    pb = np.ascontiguousarray(pb, np.int64)
    out = np.empty(pa.shape[0], np.int8)
    if not n:
        out[:] = DEFER
    if not pa.shape[0] or not n:
        return out
    bad = None
    raw_canons = canons
    cj = "\0".join(canons)
    tj = "\0".join(texts)
    if not (cj.isascii() and tj.isascii()):
        # non-ASCII texts: DEFER (decide's answer), their bytes left out; the same words
        # pass, compared below
        bad = np.array(
            [not (c.isascii() and t.isascii()) for c, t in zip(canons, texts, strict=True)]
        )
        canons = ["" if b else c for c, b in zip(canons, bad.tolist(), strict=True)]
        texts = ["" if b else t for t, b in zip(texts, bad.tolist(), strict=True)]
        cj = "\0".join(canons)
        tj = "\0".join(texts)
    # the fillers' bytes, the canonical texts, then the raw ones, each ended by a 0
    spans = np.empty((n, 4), np.int64)
    for k, (xs, first) in enumerate(((canons, FB.shape[0]), (texts, FB.shape[0] + len(cj) + 1))):
        lens = np.fromiter(map(len, xs), np.int64, n)
        ends = np.cumsum(lens + 1)
        ends += first - 1
        spans[:, 2 * k] = ends - lens
        spans[:, 2 * k + 1] = ends
    tail = _FILLER_TAIL if _FILLER_TAIL is not None else FB.tobytes()
    buf = np.frombuffer(tail + f"{cj}\0{tj}".encode("ascii"), np.uint8)
    _decide_pairs(buf, spans, pa, pb, H, HB, FB, FO, out)
    if bad is not None:  # (the kernel read those texts as empty)
        asked = (pa >= 0) & (pb >= 0)
        hit = asked & (bad[np.where(asked, pa, 0)] | bad[np.where(asked, pb, 0)])
        at = np.flatnonzero(hit)
        for a, b, p in zip(pa[at].tolist(), pb[at].tolist(), at.tolist(), strict=True):
            out[p] = PASS if raw_canons[a].split() == raw_canons[b].split() else DEFER
    return out


def warm_up() -> None:
    """Load (or compile) the kernels once, on a pair they decide."""
    decide("where is my parcel", "where is my parcle", "Where is my parcel?", "where is my parcle")
    one = np.zeros(1, np.int64)
    decide_pairs(
        ["where is my parcel", "where is my parcle"],
        ["Where is my parcel?", "where is my parcle"],
        one,
        one + 1,
    )
