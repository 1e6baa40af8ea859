"""The numbers guard's partition keys (stratabatch.numberkeys): the kernel finds and
normalizes numbers as :func:`stratabatch.dedup.number_signature` does, so two texts share a key
exactly when their signatures are equal."""

from __future__ import annotations

import random

import pytest

from stratabatch.dedup import number_signature
from stratabatch.numberkeys import number_keys, signature_key


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("pay 5 now", "pay 5 today", True),
        ("pay -5", "pay 5", False),
        ("pay +5", "pay 5", True),
        ("pay -0", "pay 0", True),
        ("1,000 items", "1000 items", True),
        ("1,000 items", "1.000 items", False),
        ("1.000.000 items", "1000000 items", True),  # dots in groups of three: thousands
        ("1,5 kg", "1.5 kg", True),  # a decimal comma
        ("007 agent", "7 agent", True),
        ("2.50 usd", "2.5 usd", True),
        ("2.50 usd", "2.05 usd", False),
        ("from 3 to 4", "from 4 to 3", True),  # the numbers, not their order
        ("3 and 3", "3", False),  # repeats count
        ("a1 b2", "c3 d4", True),  # digits inside words are not numbers
        ("x-5", "x 5", True),  # a sign after a word character is not a sign
        ("order ５", "order 5", True),  # NFKC: a fullwidth digit
        ("pay \u22125", "pay -5", True),  # the minus sign
        ("caf\u00e9 12", "cafe 12", True),  # non-ASCII text, ASCII number: the same key
        ("no numbers here", "none here either", True),
    ],
)
def test_keys_are_equal_exactly_when_the_signatures_are(a, b, same):
    ka, kb = number_keys([a, b])
    assert (number_signature(a) == number_signature(b)) is same
    assert (ka == kb) is same


def test_a_text_without_numbers_has_key_zero_and_others_a_positive_key():
    keys = number_keys(["hello", "", "order 12", "-3", "caf\u00e9"])
    assert keys[0] == keys[1] == keys[4] == 0
    assert keys[2] > 0 and keys[3] > 0 and keys[2] != keys[3]


@pytest.mark.parametrize("seed", range(3))
def test_the_kernel_agrees_with_the_python_signature_on_random_texts(seed):
    rng = random.Random(seed)
    alphabet = "0123456789" * 3 + ".,.,-+ _ax" + ("\u2212\u00e9\uff15" if seed else "")
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randrange(16))) for _ in range(20_000)]
    keys = number_keys(texts)
    for text, key in zip(texts, keys, strict=True):
        assert key == signature_key(number_signature(text)), text


def test_ascii_texts_are_keyed_without_an_import_statement(monkeypatch):
    """number_keys runs once a dedup pass: on ASCII texts it executes no import statement (one
    costs ~1-3 us a call even when the module is loaded); only non-ASCII texts, which need
    the Python signature, import it."""
    import builtins

    from stratabatch.numberkeys import number_keys

    number_keys(["warm 1"])
    seen = []
    real = builtins.__import__

    def spy(name, *a, **k):
        seen.append(name)
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", spy)
    try:
        keys = number_keys(["order 12", "no digits here", "order 12"])
    finally:
        builtins.__import__ = real  # (monkeypatch.setattr would import on the way)
    assert seen == []
    assert keys[0] == keys[2] != 0 and keys[1] == 0
