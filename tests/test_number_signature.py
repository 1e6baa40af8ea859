"""number_signature's plain-digits shortcut gives what the full rule gives (the rule written out
here as the reference: sign, thousands and decimal separators, leading and trailing zeros)."""

from __future__ import annotations

import re
import unicodedata

from hypothesis import given, settings
from hypothesis import strategies as st

from stratabatch.dedup import number_signature, number_signatures

_NUMBER = re.compile(r"(?<![\w.,])([-+\u2212]?)(\d+(?:[.,]\d+)*)")
_THOUSANDS = re.compile(r"^\d{1,3}(,\d{3})+$")
_EURO_THOUSANDS = re.compile(r"^\d{1,3}(\.\d{3}){2,}$")


def _reference(text: str) -> tuple[str, ...]:
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)
    out = []
    for sign, num in _NUMBER.findall(text):
        if _THOUSANDS.match(num) or _EURO_THOUSANDS.match(num):
            num = num.replace(",", "").replace(".", "")
        elif "," in num and "." not in num and num.count(",") == 1:
            num = num.replace(",", ".")
        else:
            num = num.replace(",", "")
        if "." in num:
            whole, _, frac = num.partition(".")
            frac = frac.replace(".", "").rstrip("0")
            num = (whole.lstrip("0") or "0") + ("." + frac if frac else "")
        else:
            num = num.lstrip("0") or "0"
        neg = sign in ("-", "\u2212") and num != "0"
        out.append(("-" if neg else "") + num)
    return tuple(sorted(out))


_PIECES = st.sampled_from(
    [
        "0",
        "007",
        "5",
        "12",
        "1,000",
        "1.000.000",
        "1,5",
        "2.50",
        "-",
        "+",
        "\u2212",
        " ",
        "x",
        "order ",
        ".",
        ",",
        "٣",
        "²",
        "2024-01-02",
        "v1.2.3",
    ]
)


@settings(max_examples=400, deadline=None)
@given(st.lists(_PIECES, max_size=8).map("".join))
def test_the_signature_is_the_full_rule_s(text):
    assert number_signature(text) == _reference(text)


def test_examples_and_the_batch_form():
    texts = ["order 007 of 12,345", "pay -5", "pay 5", "1,000 vs 1.000", "no numbers"]
    assert [number_signature(t) for t in texts] == [
        ("12345", "7"),
        ("-5",),
        ("5",),
        ("1", "1000"),
        (),
    ]
    assert number_signatures(texts) == [_reference(t) for t in texts]
