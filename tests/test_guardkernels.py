"""The guard kernel (stratabatch.guardkernels) against the Python guards, its reference."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import numpy as np
import pytest

from stratabatch import guardkernels as K
from stratabatch.canon import canonical_texts
from stratabatch.config import GUARDS, BatchConfig
from stratabatch.grouping import Deduper
from stratabatch.guards import Features, veto
from stratabatch.records import Request
from stratabatch.rehearsal import ScratchOps

DATA = Path(__file__).parent / "data"


def _pairs() -> list[tuple[str, str]]:
    out = []
    for name in ("guard_pairs.jsonl", "guard_pairs_round2.jsonl", "dedup_pairs.jsonl"):
        for line in (DATA / name).read_text().splitlines():
            if line:
                r = json.loads(line)
                out.append((r["a"], r["b"]))
    return out


def _compare(pairs):
    """(kernel answer, Python veto at the default guards) of each pair, both orders."""
    g = frozenset(GUARDS)
    out = []
    for a, b in pairs:
        for x, y in ((a, b), (b, a)):
            cx, cy = canonical_texts([x, y])
            k = K.decide(cx, cy, x, y)
            v = veto(Features(x, cx.split()), Features(y, cy.split()), g, False)
            out.append((x, y, k, v))
    return out


def _disagreements(results):
    return [(x, y, k, v) for x, y, k, v in results if k != K.DEFER and (k == K.PASS) != (v is None)]


def test_the_kernel_gives_the_guards_answer_on_every_labelled_pair():
    results = _compare(_pairs())
    assert _disagreements(results) == []
    passed = [k for _, _, k, v in results if v is None]
    refused = [k for _, _, k, v in results if v is not None]
    # it decides most of the pairs the guards let through (typos), and refuses some itself
    assert passed.count(K.PASS) >= 0.6 * len(passed)
    assert refused.count(K.REFUSE) >= 0.15 * len(refused)


_EXTRA = (
    "not", "never", "my", "your", "monday", "tuesday", "Paris", "closed", "open", "unsafe",
    "safe", "orders", "order", "from", "to", "the", "an", "of", "basicly", "actualy", "pleese",
    "ABCD", "'gato'", "user", "translate", "xkcd", "rhythm", "rythm", "ticket", "TICKET",
    "mary's", "Mary's", "Mark's", "recieve", "receive", "definately", "encrypted", "decrypted",
)  # fmt: skip


def _mutate(rng: random.Random, text: str, pool: list[str]) -> str:
    words = text.split()
    if not words:
        return text
    for _ in range(rng.randrange(1, 3)):
        i = rng.randrange(len(words))
        w = words[i]
        kind = rng.randrange(9)
        if kind == 0 and len(w) > 2:  # swap two adjacent letters
            j = rng.randrange(len(w) - 1)
            w = w[:j] + w[j + 1] + w[j] + w[j + 2 :]
        elif kind == 1 and len(w) > 3:  # drop a letter
            j = rng.randrange(len(w))
            w = w[:j] + w[j + 1 :]
        elif kind == 2:  # another letter, or one more
            j = rng.randrange(len(w) + 1)
            c = rng.choice("abcdeilnorstuy")
            w = w[:j] + c + w[j + (rng.random() < 0.5) :]
        elif kind == 3 and i + 1 < len(words):  # a space moved by a letter or two
            nxt = words[i + 1]
            k = rng.choice((1, 1, 2))
            if rng.random() < 0.5 and len(w) > k:
                words[i + 1] = w[-k:] + nxt
                w = w[:-k]
            elif len(nxt) > k:
                words[i + 1] = nxt[k:]
                w = w + nxt[:k]
        elif kind == 4:
            w = rng.choice(_EXTRA)
        elif kind == 5:
            words.insert(i, rng.choice(_EXTRA + tuple(pool)))
        elif kind == 6:
            w = w.upper() if rng.random() < 0.5 else w.capitalize()
        elif kind == 7:
            w = rng.choice(pool)
        else:
            words[i], words[-1] = words[-1], words[i]
        words[i] = w
    return " ".join(words)


def test_the_kernel_gives_the_guards_answer_on_random_variants():
    seed = random.randrange(1 << 30)
    print("seed", seed)
    rng = random.Random(seed)
    texts = [t for pair in _pairs() for t in pair if len(t) < 300]
    pool = sorted({w for t in texts[:400] for w in t.split()})
    pairs = []
    for _ in range(1500):
        a = rng.choice(texts)
        pairs.append((a, _mutate(rng, a, pool)))
    results = _compare(pairs)
    assert _disagreements(results) == [], seed


_ROUTES = (
    "Find flights from {} to {}",
    "Move $200 from my {} account to my {} account",
    "How do I copy my notes from the {} to the {}?",
    "Translate this from {} to {} please",
    "Is {} better than {}?",
    "Did {} call {} yesterday?",
    "Can my {} borrow the {} car?",
)
_PLACES = (
    "London", "Lisbon", "Madrid", "Boston", "checking", "savings", "brokerage", "tablet", "phone",
    "laptop", "Spanish", "Portuguese", "German", "python", "java", "Alice", "Robert", "team",
    "family", "wireless", "business", "boss", "class",
)  # fmt: skip


def _mistyped(rng: random.Random, w: str) -> str:
    j = rng.randrange(len(w) - 1)
    kind = rng.randrange(3)
    if kind == 0:  # two letters swapped
        return w[:j] + w[j + 1] + w[j] + w[j + 2 :]
    if kind == 1:  # a letter dropped
        return w[:j] + w[j + 1 :]
    return w[:j] + rng.choice("aeilnorstu") + w[j:]  # one more


def test_the_kernel_gives_the_guards_answer_on_roles_traded_and_mistyped():
    """Two role arguments traded or not, one of them mistyped: the kernel answers as the
    guards, and a trade is refused whichever argument carries the typo (issue 23)."""
    seed = random.randrange(1 << 30)
    print("seed", seed)
    rng = random.Random(seed)
    g = frozenset(GUARDS)
    for _ in range(150):
        route = rng.choice(_ROUTES)
        x, y = rng.sample(_PLACES, 2)
        traded = rng.random() < 0.5
        u, v = (y, x) if traded else (x, y)
        if rng.random() < 0.5:
            u = _mistyped(rng, u)
        else:
            v = _mistyped(rng, v)
        for a, b in (
            (route.format(x, y), route.format(u, v)),
            (route.format(u, v), route.format(x, y)),
        ):
            ca, cb = canonical_texts([a, b])
            k = K.decide(ca, cb, a, b)
            w = veto(Features(a, ca.split()), Features(b, cb.split()), g, False)
            assert k == K.DEFER or (k == K.PASS) == (w is None), (seed, a, b, k, w)
            if traded:
                assert w is not None and k != K.PASS, (seed, a, b, k, w)


_NEGATIONS = ("not", "no", "never", "without", "none", "nothing", "nobody", "cannot", "except")


def _negated(rng: random.Random, text: str) -> tuple[str, str]:
    """``text`` with a negation put in, and a variant of it around that negation: mistyped,
    a space moved across it, another or no negation, or any other mutation as well."""
    words = text.split()
    i = rng.randrange(len(words) + 1)
    neg = rng.choice(_NEGATIONS)
    words.insert(i, neg)
    a = " ".join(words)
    b = list(words)
    kind = rng.randrange(6)
    if kind == 0 and len(neg) > 2:  # swap two adjacent letters
        j = rng.randrange(len(neg) - 1)
        b[i] = neg[:j] + neg[j + 1] + neg[j] + neg[j + 2 :]
    elif kind == 1:  # a letter dropped, changed or added
        j = rng.randrange(len(neg))
        c = rng.choice("aeinost")
        b[i] = neg[:j] + rng.choice(("", c, c + neg[j])) + neg[j + 1 :]
    elif kind == 2:  # a space moved across the negation, from either side
        k = rng.choice((1, 1, 2))
        if rng.random() < 0.5 and i > 0 and len(b[i - 1]) > k:
            b[i - 1], b[i] = b[i - 1][:-k], b[i - 1][-k:] + neg
        elif rng.random() < 0.5 and i > 0 and len(neg) > k:
            b[i - 1], b[i] = b[i - 1] + neg[:k], neg[k:]
        elif i + 1 < len(b) and len(neg) > k:
            b[i], b[i + 1] = neg[:-k], neg[-k:] + b[i + 1]
        elif i + 1 < len(b) and len(b[i + 1]) > k:
            b[i], b[i + 1] = neg + b[i + 1][:k], b[i + 1][k:]
    elif kind == 3:
        b[i] = rng.choice(_NEGATIONS)
    elif kind == 4:
        del b[i]
    out = " ".join(b)
    if kind == 5 or rng.random() < 0.3:
        out = _mutate(rng, out, list(_NEGATIONS))
    return a, out


def test_the_kernel_gives_the_guards_answer_on_negations_mistyped_or_spaced():
    seed = random.randrange(1 << 30)
    print("seed", seed)
    rng = random.Random(seed)
    texts = [t for pair in _pairs() for t in pair if len(t) < 300 and t.split()]
    pairs = [_negated(rng, rng.choice(texts)) for _ in range(1500)]
    results = _compare(pairs)
    assert _disagreements(results) == [], seed
    # the kernel decides these itself (the Python guards are asked of few)
    deferred = [k for _, _, k, _ in results].count(K.DEFER)
    assert deferred < 0.2 * len(results), seed


def test_what_the_kernel_leaves_the_residue_guard_of_a_negation_holds():
    # where the texts count their negations differently, the kernel lets the residue guard
    # pair the negations each side lacks with their typos (as the polarity guard does): exact
    # only while no negation is ignorable and a word's typo is the same both ways round
    from stratabatch import lexicon as L

    assert not [w for w in L.NEGATIONS if L.ignorable(w)]
    assert all(a in L.OPPOSITES.get(b, ()) for a, bs in L.OPPOSITES.items() for b in bs)
    others = ["withuot", "wihtout", "nver", "nevre", "nothign", "canot", "exept", "noen", "nto"]
    for w in sorted(L.NEGATIONS):
        for o in others:
            assert L.is_typo_of(w, o) == L.is_typo_of(o, w), (w, o)


@pytest.mark.parametrize(
    "a, b, want",
    [
        ("Where is my parcel?", "where is my parcle", K.PASS),
        ("How do I reset my password?", "How do I reset my pasword", K.PASS),
        ("Where is my parcel?", "Where is my invoice?", K.REFUSE),
        ("ticket ABCD is stuck", "ticket ABCE is stuck", K.REFUSE),  # an identifier
        ("Is the store open?", "Is the store closed?", K.REFUSE),  # opposites
        ("Is this drug safe for kids?", "Is this drug unsafe for kids?", K.REFUSE),
        ("Is this product safe?", "Is this product unsafe?", K.REFUSE),  # (an id's care aside)
        ("Where is my order?", "Where are my orders?", K.REFUSE),  # scope
        ("Is it open on Monday", "Is it open on Tuesday", K.REFUSE),  # another day
        ("Is it open on Monday", "Is it open on Mondya", K.PASS),
        ("Where is my order?", "Where is your order?", K.REFUSE),  # whose
        ("How many air miles in economy", "How many air milesi n economy", K.PASS),
        ("thank you", "than kyou", K.PASS),  # a run from the first word
        ("When does the library open today", "When does the libraryo pen today", K.PASS),
        ("Move $200 from my checking account", "Move $200 from my chucking account", K.PASS),
        (
            "Copy my notes from the tablet to the phone",
            "Copy my notes from the phone to the tablet",
            K.REFUSE,
        ),  # roles traded
        ("Did Alice call Bob", "Did Bob call Alice", K.REFUSE),  # roles traded
        ("Find flights from London to Lisbon", "Find flights from Lisbon to Londoon", K.REFUSE),
        ("Convert 100 dollars to euros", "Convert 100 euros to dollasr", K.REFUSE),  # (a typo)
        ("Find flights from London to Lisbon", "Find flights from Londoon to Lisbon", K.PASS),
        ("Did Alice call Bob", "Did Bob call Alcie", K.REFUSE),  # traded, one mistyped
        ("Is my team winning?", "Is my taem winning?", K.PASS),  # a scope word's typo
        ("Is my team winning?", "Is my teams winning?", K.REFUSE),
        ("Best wireless headphones", "Best wirelesss headphones", K.PASS),  # no plural
        ("Where is my class?", "Where are my classes?", K.REFUSE),
        ("Does the museum or the library open?", "Does the library or the museum open?", K.PASS),
        ("Why does the app crash when I upload?", "When I upload, why does the app crash?", K.PASS),
        ("Where is Mary's phone", "Where is Mark's phone", K.REFUSE),  # two names
        ("Why are cows sacred in India?", "Why are cows sacred in Idnia?", K.PASS),  # a typo
        ("Is it sunny in Paris today", "Is it sunny in Rome today", K.REFUSE),
        ("Can I log in", "Can I never log in", K.REFUSE),  # a negation one side lacks
        ("Can I pay without a card", "Can I pay with a card", K.REFUSE),
        ("Can I pay without a card", "Can I pay iwthout a card", K.PASS),  # a negation's typo
        ("Can I pay without a card", "Can I pay withuot a crad", K.PASS),
        ("Why can I not log in", "Why can I never log in", K.REFUSE),  # as many negations
        ("I will not be home today", "I willn ot be home today", K.PASS),  # a space moved
        ("I will not be home today", "I wil lnot be home today", K.PASS),
        ("I will not be home on Monday", "I willn ot be home on Tuesday", K.REFUSE),
        ("I will not be home today", "I willn ot be home", K.REFUSE),
        ("ticket AB CD is stuck", "ticket ABC D is stuck", K.REFUSE),  # a space moved in an id
        ("what does the code 'gato' do", "what does the code 'gaot' do", K.DEFER),  # an id
        ("Is 'yours truly' too formal?", "Is 'yours' too formal?", K.DEFER),  # quoted words
        ("Is 'yours truly' too formal?", "Is 'yours truyl' too formal?", K.DEFER),
        ("Is it truly too formal?", "Is it too formal?", K.PASS),  # a filler, unquoted
        ("Why don't the users' settings reset?", "Why don't the users' setings reset?", K.PASS),
        ("Où est mon colis", "Ou est mon colis", K.DEFER),  # not ASCII
    ],
)
def test_what_the_kernel_decides_and_what_it_leaves(a, b, want):
    ca, cb = canonical_texts([a, b])
    assert K.decide(ca, cb, a, b) == want


# A word the raw text writes as an identifier (after an id noun, in capitals): its typo is one
# only of a dictionary word ("product caxcel" / "product cancel"); two words outside the
# dictionary are two codes ("user jdoe" / "user jdoa"). The kernel decides both, as the guards.
_ID_PAIRS = [
    ("How do I cancel product caxcel today", "How do I cancel product cancel today", K.PASS),
    ("product caxcel refund", "product cancel refund", K.PASS),
    ("Where is order shiped", "Where is order shipped", K.PASS),
    ("Is SERVER down", "Is SEVRER down", K.PASS),  # capitals, a dictionary word's typo
    ("apply coupon coupxn now", "apply coupon coupon now", K.REFUSE),  # neither a word
    ("ticket AB123 is stuck", "ticket AB124 is stuck", K.REFUSE),
    ("ticket ABCD is stuck", "ticket ABCE is stuck", K.REFUSE),
    ("ticket ABCD is stuck", "ticket abce is stuck", K.REFUSE),
    ("user jdoe cannot log in", "user jdoa cannot log in", K.REFUSE),
    ("Reset the password for user jsmith", "Reset the password for user jsmiht", K.REFUSE),
    ("sku XJ-990 out of stock", "sku XJ-991 out of stock", K.REFUSE),
    ("sku qwrt out of stock", "sku qwrx out of stock", K.REFUSE),
    ("host web01 is down", "host web02 is down", K.REFUSE),
    ("host webprod is down", "host webprd is down", K.REFUSE),
    ("host webprod is down", "host webpord is down", K.REFUSE),
    ("Is the XKCD server down", "Is the XKCE server down", K.REFUSE),
    ("user xkcd", "user xkce", K.REFUSE),  # no vowel
    ("ticket ab cd is stuck", "ticket abc d is stuck", K.REFUSE),  # a space moved in an id
]


@pytest.mark.parametrize("a, b, want", _ID_PAIRS)
def test_the_kernel_decides_a_word_written_as_an_identifier_as_the_guards(a, b, want):
    for x, y, k, v in _compare([(a, b)]):
        assert (k, v is None) == (want, want == K.PASS), (x, y, v)


def _id_variant(rng: random.Random, word: str) -> str:
    """``word`` with one edit (a letter or digit changed, dropped, added, or two swapped)."""
    j = rng.randrange(len(word))
    c = rng.choice("abcdeilnorstuxyz0123456789")
    kind = rng.randrange(4)
    if kind == 0 and len(word) > 1:
        j = min(j, len(word) - 2)
        return word[:j] + word[j + 1] + word[j] + word[j + 2 :]
    if kind == 1 and len(word) > 2:
        return word[:j] + word[j + 1 :]
    return word[:j] + c + word[j + (kind == 2) :]


def test_the_kernel_gives_the_guards_answer_on_mistyped_identifiers():
    from stratabatch.lexicon import ID_NOUNS

    seed = random.randrange(1 << 30)
    print("seed", seed)
    rng = random.Random(seed)
    nouns = sorted(ID_NOUNS)
    words = ["cancel", "refund", "status", "shipping", "password", "coupon", "server", "login",
             "jdoe", "jsmith", "xkcd", "webprod", "ab123", "qwrt", "k8s", "node7", "db",
             "AB-12"]  # fmt: skip
    frames = ["where is {}", "how do I reset {} now", "{} is stuck", "why did {} fail again",
              "cancel the {} please", "Is {} down?"]  # fmt: skip
    pairs = []
    for _ in range(800):
        w = rng.choice(words)
        if rng.random() < 0.3:
            w = w.upper()
        lead = rng.choice(nouns + ["the", "my"])
        if rng.random() < 0.2:
            lead = lead.capitalize()
        frame = rng.choice(frames)
        a = frame.format(f"{lead} {w}")
        b = frame.format(f"{lead} {_id_variant(rng, w)}")
        if rng.random() < 0.2:
            b = _mutate(rng, b, words)
        pairs.append((a, b))
    results = _compare(pairs)
    assert _disagreements(results) == [], seed
    deferred = [k for _, _, k, _ in results].count(K.DEFER)
    assert deferred < 0.05 * len(results), seed


def test_a_spelling_asked_about_is_still_left_to_the_python_guards():
    # quoted, after a word verb, in a quoted span: the guards' second set of _idents, which
    # the kernel only bounds from above
    for a, b in [
        ("translate hola", "translate hloa"),
        ("what does the code 'gato' do", "what does the code 'gaot' do"),
        ('Is "yours truly" too formal?', 'Is "yours truyl" too formal?'),
    ]:
        for x, y, k, _ in _compare([(a, b)]):
            assert k == K.DEFER, (x, y)


def _deduper() -> tuple[Deduper, ScratchOps]:
    ops = ScratchOps()
    return Deduper(BatchConfig(), ops), ops


def _pass_without_the_python_guards(monkeypatch, texts: list[str]) -> list[Request]:
    """One dedup pass over ``texts`` at the defaults that fails if the Python guards are
    asked (every pair is the guard kernel's to decide)."""
    import stratabatch.guards as guard_words

    def refuse_to_be_asked(*args, **kwargs):
        raise AssertionError("the Python guards were asked")

    d, ops = _deduper()
    d._load_decide()
    monkeypatch.setattr(guard_words, "veto", refuse_to_be_asked)
    reqs = [Request({"query": t}, text=t) for t in texts]
    d.run(reqs)
    return reqs


def test_a_typo_twin_merges_without_the_python_guards(monkeypatch):
    texts = ["How do I transfer my medical records to the new clinic?",
             "How do I transfer my medical recrods to the new clinic?"]  # fmt: skip
    reqs = _pass_without_the_python_guards(monkeypatch, texts)
    assert reqs[0].group is not None and reqs[1].group is reqs[0].group


@pytest.mark.parametrize(
    "texts",
    [
        ["Can I travel abroad without a passport?",
         "Can I travel abroad iwthout a passport?"],  # a negation's typo
        ["My card will not work at the gas station, why?",
         "My card willn ot work at the gas station, why?"],  # a space moved across it
    ],
)  # fmt: skip
def test_a_negation_mistyped_merges_without_the_python_guards(monkeypatch, texts):
    reqs = _pass_without_the_python_guards(monkeypatch, texts)
    assert reqs[0].group is not None and reqs[1].group is reqs[0].group


@pytest.mark.parametrize(
    "texts, merged",
    [
        (["How do I cancel product caxcel today?",
          "How do I cancel product cancel today?"], True),  # a word's typo after an id noun
        (["Why can user jdoe not log in?", "Why can user jdoa not log in?"], False),  # two ids
        (["Why is host webprod down?", "Why is host webprd down?"], False),
    ],
)  # fmt: skip
def test_a_word_after_an_id_noun_is_decided_without_the_python_guards(monkeypatch, texts, merged):
    reqs = _pass_without_the_python_guards(monkeypatch, texts)
    assert (reqs[1].group is reqs[0].group) == merged


def test_a_kernel_refusal_is_logged_with_the_guards_words():
    d, ops = _deduper()
    a, b, c = (
        Request({"query": t}, text=t)
        for t in ("How do I clean the carpet?", "How do I clean the carpte", "How to clean a sofa")
    )
    for r in (a, b, c):
        r.canon = canonical_texts([r.text])[0]
    assert K.decide(a.canon, c.canon, a.text, c.text) == K.REFUSE
    assert d.veto(b, a, 0.9) is None
    assert d.veto(c, a, 0.9) is not None
    assert a.features is None and c.features is None  # not built for the decision
    rec = d.vetoes[-1]
    assert rec.request is c and rec.leader is a
    assert rec.veto.guard == "residue" and set(rec.veto.words) == {"carpet", "sofa"}


@pytest.mark.parametrize(
    "a, b, off",
    [
        ("Where is Mary's phone", "Where is Mark's phone", "entities"),  # a typo to residue
        ("Did Alice call Bob", "Did Bob call Alice", "roles"),  # the same words
    ],
)
def test_with_a_guard_off_the_python_guards_decide(a, b, off):
    guards = tuple(g for g in GUARDS if g != off)
    d = Deduper(BatchConfig(dedup_guards=guards), ScratchOps())
    ra, rb = Request({"query": a}, text=a), Request({"query": b}, text=b)
    ra.canon, rb.canon = canonical_texts([a, b])
    want = veto(Features(a, ra.canon.split()), Features(b, rb.canon.split()), guards, False)
    assert (d.veto(rb, ra, 0.9) is None) == (want is None)


def test_the_pass_merges_as_with_the_python_guards_alone(monkeypatch):
    texts = [t for pair in _pairs()[:600] for t in pair if len(t) < 200]

    def groups(kernel: bool) -> list[list[str]]:
        d, ops = _deduper()
        if not kernel:
            d._decide_fn = lambda *args: K.DEFER
            d._decide_pairs_fn = _all_deferred
        reqs = [Request({"query": t}, text=t) for t in texts]
        d.run(reqs)
        out: dict[int, list[str]] = {}
        for r in reqs:
            out.setdefault(id(r.group), []).append(r.text)
        return sorted(out.values())

    assert groups(True) == groups(False)


def test_the_guard_kernel_is_a_warmed_kernel_module():
    from stratabatch.warm import KERNEL_MODULES

    assert "stratabatch.guardkernels" in KERNEL_MODULES


def _all_deferred(canons, texts, pa, pb):
    return np.full(len(pa), K.DEFER, np.int8)


def test_decide_pairs_gives_decides_answer_on_every_labelled_pair():
    pairs = _pairs()
    # and texts it defers whole: non-ASCII, more words than it reads
    pairs += [("Où est mon colis ?", "Ou est mon colis ?"), ("a " * 120 + "b", "a " * 120 + "c")]
    texts = list(dict.fromkeys(t for p in pairs for t in p))
    canons = canonical_texts(texts)
    at = {t: k for k, t in enumerate(texts)}
    pa = np.array([at[x] for a, b in pairs for x in (a, b)], np.int64)
    pb = np.array([at[y] for a, b in pairs for y in (b, a)], np.int64)
    got = K.decide_pairs(canons, texts, pa, pb)
    ab = zip(pa.tolist(), pb.tolist(), strict=True)
    want = [K.decide(canons[a], canons[b], texts[a], texts[b]) for a, b in ab]
    assert got.tolist() == want
    assert got[-4:].tolist() == [K.DEFER] * 4
    assert K.decide_pairs(canons, texts, pa[:0], pb[:0]).shape == (0,)


@pytest.mark.parametrize("seed", [0, 1])
def test_decide_pairs_reads_each_text_once_for_any_number_of_pairs(seed):
    # a text's words, names and ignorable words are read once a call and kept for its other
    # pairs: many pairs a text, on either side, answer as decide() on each pair alone
    rng = random.Random(seed)
    print("seed", seed)
    texts = list(dict.fromkeys(t for p in _pairs() for t in p))
    texts = rng.sample(texts, 60) + ["Où est mon colis ?", "Ou est mon colis ?"]
    canons = canonical_texts(texts)
    n = len(texts)
    pa = np.array([rng.randrange(n) for _ in range(1500)], np.int64)
    pb = np.array([rng.randrange(n) for _ in range(1500)], np.int64)
    got = K.decide_pairs(canons, texts, pa, pb)
    ab = zip(pa.tolist(), pb.tolist(), strict=True)
    want = [K.decide(canons[a], canons[b], texts[a], texts[b]) for a, b in ab]
    assert got.tolist() == want


def test_the_word_table_answers_as_the_lexicons_sets():
    from numba import njit

    from stratabatch import lexicon as L

    member = K._member

    @njit
    def members(H, HB, s, hs, out):
        for i in range(hs.shape[0]):
            out[i] = member(H, HB, s, hs[i])

    sections = {
        K._DICT: set(L.dictionary()),
        K._IGN: set(L.IGNORABLE_WORDS),
        K._SPECIAL: set(L.SCOPE_WORDS),
        K._OPP: set(L.OPPOSITES),
        K._IDN: set(L.ID_NOUNS),
        K._WVB: set(L.WORD_VERBS),
        K._ROLE: set(L.ROLE_MARKERS),
        K._DET: set(L.DETERMINERS),
        K._NEGPFX: set(L.NEGATING_PREFIX_SET),
        K._COORD: {"and", "or"},
        K._THEN: {"then"},
        K._SHORT: set(L.SHORT_WORDS),
        K._NEG: set(L.NEGATIONS),
        K._ENT: set(L.ENTITY_WORDS),
    }
    words = sorted(w for ws in sections.values() for w in ws if w.isascii())
    words += ["qzxv", "parcle", "recieve", "zzzz"]  # (and words of no section)
    H, HB, _, _ = K.tables()
    hs = K._hash_words(words)
    out = np.zeros(len(words), np.bool_)
    for s, ws in sections.items():
        members(H, HB, s, hs, out)
        assert [w for w, m in zip(words, out.tolist(), strict=True) if m] == [
            w for w in words if w in ws
        ], s
    pairs = [(a, b) for a, bs in L.OPPOSITES.items() for b in bs if a.isascii() and b.isascii()]
    mixed = K._hash_words([a for a, _ in pairs]) * np.uint64(K._PAIR_MIX) ^ K._hash_words(
        [b for _, b in pairs]
    )
    out = np.zeros(len(pairs), np.bool_)
    members(H, HB, K._OPPAIR, mixed, out)
    assert out.all()
    words_as_pairs = np.zeros(len(hs), np.bool_)
    members(H, HB, K._OPPAIR, hs, words_as_pairs)
    assert not words_as_pairs.any()


def _pass(texts, **stubs):
    d, ops = _deduper()
    d._load_decide()
    for name, fn in stubs.items():
        setattr(d, name, fn)
    reqs = [Request({"query": t}, text=t) for t in texts]
    d.run(reqs)
    groups = [reqs.index(r.group.leader) for r in reqs]
    log = [(reqs.index(v.request), reqs.index(v.leader), str(v.veto)) for v in d.vetoes]
    return groups, log


def test_a_pass_asks_the_kernel_once_for_its_candidate_pairs():
    texts = ["How do I transfer my medical records to the new clinic?",
             "How do I transfer my medical recrods to the new clinic?",
             "How do I clean the carpet?", "How do I clean the carpte",
             "How to clean a sofa", "How do I clean the sofa?"]  # fmt: skip

    def one_call_a_pair(*args):
        raise AssertionError("the kernel was asked pair by pair")

    batched = _pass(texts, _decide_fn=one_call_a_pair)
    # the same groups and the same veto log (order, pairs, the guards' words) as asking the
    # kernel pair by pair
    assert batched == _pass(texts, _decide_pairs_fn=_all_deferred)
    assert batched[0][1] == 0 and batched[0][3] == 2


def test_a_pass_of_labelled_texts_decides_as_asking_pair_by_pair():
    texts = [t for pair in _pairs()[:400] for t in pair if len(t) < 200]
    assert _pass(texts) == _pass(texts, _decide_pairs_fn=_all_deferred)


@pytest.mark.parametrize("seed", [11, 12, 13])
@pytest.mark.parametrize("k", [1, 3])
def test_the_greedy_walk_told_its_answers_decides_as_asking_pair_by_pair(seed, k):
    """greedy_pass with ``codes`` (the kernel walk) against greedy_pass asking ``joinable``
    and ``veto`` pair by pair: the same leaders, cosines and late leaders, and the veto's
    refusals asked in the same order (the veto log); answers told or left to ask at random,
    refusals that make late leaders and cut lists."""
    from stratabatch.candidates import exhaustive_candidates
    from stratabatch.greedy import ASK, PASS, REFUSE, SKIP, greedy_pass

    rng = np.random.default_rng(seed)
    print("seed", seed, "k", k)
    n, start, d = 240, 60, 48
    base = rng.standard_normal((12, d))
    X = base[rng.integers(0, 12, n)] + 0.05 * rng.standard_normal((n, d))
    X = np.ascontiguousarray(X / np.linalg.norm(X, axis=1, keepdims=True), np.float32)
    part = rng.integers(0, 2, n).astype(np.int64)
    thr = 0.97
    refused = {(int(a), int(b)) for a, b in rng.integers(0, n, (6000, 2))}
    blocked = set(rng.integers(0, start, 8).tolist())
    cands = exhaustive_candidates(X, part, thr, start, k)
    rows = cands[1].tolist()
    row_of = np.repeat(np.arange(n - start), np.diff(cands[0])) + start
    codes = np.empty(len(rows), np.int8)
    for t, (i, r) in enumerate(zip(row_of.tolist(), rows, strict=True)):
        if r < start and r in blocked:
            codes[t] = SKIP if rng.random() < 0.8 else ASK
        elif rng.random() < 0.1:
            codes[t] = ASK
        else:
            codes[t] = REFUSE if (i, r) in refused else PASS

    def run(told, deadline=None):
        asked = []

        def veto(i, j, sim):
            asked.append((i, j, (i, j) in refused))
            return (i, j) in refused

        out = greedy_pass(X, part, thr, start, cands, lambda r: r not in blocked, veto,
                          None, deadline, told)  # fmt: skip
        return out, [(i, j) for i, j, no in asked if no]

    want = run(None)
    assert want[0][2]  # the case exercises late leaders
    assert run(codes) == want
    assert run(codes, time.perf_counter() + 1000) == want  # (the walk in segments)


def test_the_same_canonical_words_merge_in_the_pass_kernel_call():
    # (punctuation leaves spaces in the canonical text: veto() compares the split words; the
    # pass's one kernel call does the same on the arrays of its pairs)
    texts = ["Why was my debit card declined at the gas station?",
             "Why was my debit card declined at the gas station",
             "Um, why was my uh debit card declined at the gas station? Thanks a lot."]  # fmt: skip
    calls = []

    def recorded(canons, texts, pa, pb):
        got = K.decide_pairs(canons, texts, pa, pb)
        calls.append(got.tolist())
        return got

    groups, log = _pass(texts, _decide_pairs_fn=recorded)
    assert groups == [0, 0, 0] and log == []
    assert calls == [[K.PASS, K.PASS]]


@pytest.mark.parametrize(
    "a, b",
    [
        ("où est  mon colis", "où est mon colis "),  # non-ASCII
        ("a " * 120 + "b", " a" * 120 + "  b"),  # more words than the kernel reads
        ("word " * 400, "word  " * 400),  # longer than the kernel reads
    ],
    ids=["non-ascii", "many-words", "long"],
)
def test_the_same_canonical_words_pass_where_the_kernel_defers_the_texts(a, b):
    # as veto() passes them before any guard: the pass's pairs of the same words are answered
    # in its one kernel call (decide_pairs), not asked of veto() one by one; a pair without a
    # text (a negative index) is left to veto()
    got = K.decide_pairs([a, b, "x y"], [a, b, "x y"], np.array([0, 2, -1]), np.array([1, 0, 0]))
    assert got.tolist() == [K.PASS, K.decide("x y", a, "x y", a), K.DEFER]
    assert K.decide(a, b, a, b) == K.PASS


def _two_passes(seed, **stubs):
    """Two passes on one Deduper: the second's candidates include the first's leaders, some
    of them in a running batch whose callers all left (not joinable), some with their own
    vectors (not the kernel's to judge), non-ASCII texts, and a new request with its own
    vector."""
    from types import SimpleNamespace

    rng = random.Random(seed)
    pairs = rng.sample(_pairs(), 150)
    d, ops = _deduper()
    d._load_decide()
    for name, fn in stubs.items():
        setattr(d, name, fn)
    odd = ["Où est mon colis ?", "Où est mon colis?", "Où est mon coli ?"]
    first = [Request({"query": a}, text=a) for a, _ in pairs if len(a) < 200]
    first.append(Request({"query": odd[0]}, text=odd[0]))
    d.run(first)
    leaders = [r for r in first if r.group.leader is r]
    for r in leaders[::3]:
        r.group.batch = SimpleNamespace(live=0)  # (a cancelled batch: its row is no leader)
    for r in leaders[1::3]:
        r.vector = np.ones(d.embedder().dim, np.float32)  # (asked of veto(), if at all)
    second = [Request({"query": b}, text=b) for _, b in pairs if len(b) < 200]
    second += [Request({"query": t}, text=t) for t in odd[1:]]
    # a new request with its own vector (a leader's): the pass's texts are listed one by one
    # (a leader with a row in the index: a text alone in its numbers leads without one)
    lead = next(r for r in leaders[2::3] if r.group.row is not None and r.group.row >= 0)
    twin = lead.group.row
    own = lead.text + " then"
    second.append(Request({"query": own}, text=own, vector=d.leaders.mat[twin].copy()))
    second += [Request({"query": a}, text=a) for a, _ in pairs[:20]]  # exact and near twins
    d.run(second)
    everyone = first + second
    groups = [everyone.index(r.group.leader) for r in second]
    log = [(everyone.index(v.request), everyone.index(v.leader), str(v.veto)) for v in d.vetoes]
    return groups, log, len(first)


@pytest.mark.parametrize("seed", [3, 4])
def test_a_pass_over_old_leaders_decides_as_asking_pair_by_pair(seed):
    # the kernel's pairs built as arrays: old rows' leaders, rows not joinable (SKIP),
    # leaders with their own vectors, the same words and non-ASCII texts
    print("seed", seed)
    groups, log, n_first = _two_passes(seed)
    assert sum(g < n_first for g in groups) > 10  # (the case joins old leaders)
    assert (groups, log, n_first) == _two_passes(seed, _decide_pairs_fn=_all_deferred)
