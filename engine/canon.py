"""Canonical text for near-duplicate dedup: what a request asks, without how it was typed.

:func:`canonical_batch` turns a batch of texts into token lists that the embedder and the
guards (:mod:`stratabatch.guards`) both see. The rules, in order:

1. **Normalize**: NFKC, casefold, contractions expanded ("don't" -> "do not"), punctuation and
   symbols to spaces, digits split from letters ("6am" -> "6 am"), as the hashing embedder
   does (:func:`stratabatch.embed.normalize_for_embedding`).
2. **Courtesy and fillers removed**: greetings ("hi there", "hey team", "good morning"),
   sign-offs ("thanks in advance", "cheers", "kind regards"), courtesy phrases ("quick
   question", "sorry to bother you", "i was wondering") and speech fillers ("um", "er",
   "you know", "basically", "like" used as a filler). A text made only of these keeps them.
3. **Spelling folded**: British spellings to American ones ("colour" -> "color",
   "cancelled" -> "canceled", "cheque" -> "check"), a curated table of whole words.
4. **Question frames folded**: "how can/could/would/should i" -> "how do i", "could/would/will
   you" -> "can you", "i would like to / i need to / i wish to" -> "i want to", "is there a way
   to" -> "how do i", and a few compound spellings ("e mail" -> "email", "log in" -> "login").

Nothing here touches a word that can change what is asked: negations, numbers, names,
prepositions and possessives pass through unchanged, so the guards still see them. Typos are
not corrected here (a wrong correction would be a silent rewrite); the guards accept a typo as
a difference (:func:`stratabatch.guards.is_typo_of`), and the embedder's character n-grams keep
a typo's vector close.

:func:`explain_canonical` lists which rule changed which words, for debugging a merge.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from typing import Any

from .embed import _CANNOT, _CONTRACTIONS, _punctuation_table

__all__ = [
    "FILLER_WORDS",
    "canonical_batch",
    "canonical_texts",
    "canonical_text",
    "canonical_tokens",
    "explain_canonical",
]

_SEP = "\x1f"
_APOSTROPHES = str.maketrans({c: "'" for c in "\u2018\u2019\u201b\u02bc\u02b9\u0060\u00b4\u2032"})
_ASCII_TABLE = bytes(
    b if b == ord(_SEP) or chr(b).isalnum() or b == ord("'") else ord(" ") for b in range(256)
)
_DIGIT_LETTER = re.compile(r"(?<=[0-9])(?=[^0-9\s])|(?<=[^0-9\s])(?=[0-9])")
_HAS_DIGIT = re.compile(r"[0-9]")

# -------------------------------------------------------------------------------------------
# Word lists (general English usage, written for this module; see docs/embedders.md)
# -------------------------------------------------------------------------------------------

#: Single words dropped wherever they stand: greetings, sign-offs, courtesy, speech fillers.
FILLER_WORDS: frozenset[str] = frozenset((
    "hi", "hello", "hey", "heya", "hiya", "howdy", "greetings",
    "thanks", "thank", "thx", "ty", "tia", "cheers", "regards", "thankyou",
    "please", "pls", "plz", "kindly",
    "um", "umm", "ummm", "uh", "uhh", "uhm", "er", "erm", "hmm", "hmmm", "ah", "eh", "oh",
    "so", "yeah", "yep", "ok", "okay", "alright", "anyway", "anyways",
    "basically", "actually", "literally", "honestly", "just", "really",
))  # fmt: skip

# Multi-word phrases dropped as a whole (longest match first). A phrase only goes when all
# its words are there: "thank you" goes, "you" alone never does.
_DROP_PHRASES: tuple[str, ...] = (
    "hi there", "hello there", "hey there", "hi team", "hey team", "hello team", "hi all",
    "hey all", "hello all", "hi everyone", "hey everyone", "hello everyone", "hi guys",
    "hey guys", "hi folks", "hey folks", "dear support", "dear team", "dear sir or madam",
    "dear sir", "dear madam", "to whom it may concern",
    "good morning", "good afternoon", "good evening", "good day",
    "thank you", "thank you so much", "thank you very much", "thanks so much",
    "thanks a lot", "thanks a bunch", "thanks a ton", "many thanks", "thanks in advance",
    "thank you in advance", "thanks for your help", "thank you for your help",
    "thanks for the help", "thanks for helping", "much appreciated", "appreciate it",
    "i appreciate it", "appreciate your help", "i appreciate your help",
    "appreciate the help", "best regards", "kind regards", "warm regards", "all the best",
    "have a nice day", "have a good day", "have a great day",
    "quick question", "a quick question", "one quick question", "i have a question",
    "i have a quick question", "got a question", "question for you", "random question",
    "sorry to bother you", "sorry to bother", "sorry for bothering you", "sorry to ask",
    "sorry for the trouble", "sorry if this is a dumb question", "sorry if this is obvious",
    "i was wondering", "i was just wondering", "i am wondering", "i wonder",
    "just wondering", "i was hoping", "if you do not mind", "if that is ok",
    "you know", "i mean", "kind of", "sort of", "or something", "or whatever",
    "right now", "so yeah", "ok so", "okay so", "any help", "any help is appreciated",
    "any help would be appreciated", "help is appreciated", "hope you are well",
    "hope you are doing well", "hope all is well", "hope this makes sense",
    "let me know", "for me",
)  # fmt: skip

# Multi-word rewrites: a question frame or a compound spelled in two words.
_FOLD_PHRASES: dict[str, str] = {
    "how can i": "how do i", "how could i": "how do i", "how would i": "how do i",
    "how should i": "how do i", "how might i": "how do i", "how do you": "how do i",
    "how can you": "how do i", "how does one": "how do i", "how to": "how do i",
    "how would one": "how do i", "how do i go about": "how do i",
    "how can i go about": "how do i", "what is the way to": "how do i",
    "what is the best way to": "how do i", "is there a way to": "how do i",
    "is it possible to": "can i", "am i able to": "can i", "could i": "can i",
    "may i": "can i", "would i be able to": "can i",
    "could you": "can you", "would you": "can you", "will you": "can you",
    "can u": "can you", "could u": "can you", "would you be able to": "can you",
    "are you able to": "can you", "would you mind": "can you",
    "i would like to": "i want to", "i need to": "i want to", "i wish to": "i want to",
    "i wanna": "i want to", "i would love to": "i want to", "i am trying to": "i want to",
    "i am looking to": "i want to", "i would like": "i want", "i need": "i want",
    "i d like": "i want",
    "where can i": "where do i", "where would i": "where do i", "where should i": "where do i",
    "what should i": "what do i", "what can i": "what do i",
    "e mail": "email", "log in": "login", "log into": "login to", "sign in": "login",
    "sign into": "login to", "wi fi": "wifi", "web site": "website", "on line": "online",
    "check up": "checkup", "set up": "setup", "user name": "username", "pass word": "password",
}  # fmt: skip

# British (and a few variant) spellings to American, whole words only.
_SPELLING: dict[str, str] = {
    "colour": "color", "colours": "colors", "coloured": "colored", "favourite": "favorite",
    "favourites": "favorites", "favour": "favor", "behaviour": "behavior", "honour": "honor",
    "labour": "labor", "neighbour": "neighbor", "neighbours": "neighbors", "flavour": "flavor",
    "humour": "humor", "harbour": "harbor", "rumour": "rumor", "vapour": "vapor",
    "centre": "center", "centres": "centers", "metre": "meter", "metres": "meters",
    "litre": "liter", "litres": "liters", "kilometre": "kilometer", "kilometres": "kilometers",
    "theatre": "theater", "fibre": "fiber", "calibre": "caliber",
    "cancelled": "canceled", "cancelling": "canceling", "travelled": "traveled",
    "travelling": "traveling", "traveller": "traveler", "travellers": "travelers",
    "labelled": "labeled", "labelling": "labeling", "modelling": "modeling",
    "fuelled": "fueled", "enrolment": "enrollment", "enrol": "enroll", "fulfil": "fulfill",
    "instalment": "installment", "instalments": "installments", "jewellery": "jewelry",
    "cheque": "check", "cheques": "checks", "chequebook": "checkbook", "tyre": "tire",
    "tyres": "tires", "grey": "gray", "programme": "program", "programmes": "programs",
    "catalogue": "catalog", "dialogue": "dialog", "analogue": "analog", "licence": "license",
    "licences": "licenses", "defence": "defense", "offence": "offense", "practise": "practice",
    "organise": "organize", "organised": "organized", "organising": "organizing",
    "organisation": "organization", "organisations": "organizations", "realise": "realize",
    "recognise": "recognize", "apologise": "apologize", "authorise": "authorize",
    "authorised": "authorized", "authorisation": "authorization", "customise": "customize",
    "customised": "customized", "personalise": "personalize", "prioritise": "prioritize",
    "minimise": "minimize", "maximise": "maximize", "optimise": "optimize",
    "optimised": "optimized", "summarise": "summarize", "summarised": "summarized",
    "finalise": "finalize", "utilise": "utilize", "analyse": "analyze", "analysed": "analyzed",
    "analysing": "analyzing", "paralyse": "paralyze", "synchronise": "synchronize",
    "sync": "synchronize", "synchronised": "synchronized", "categorise": "categorize",
    "emphasise": "emphasize", "specialise": "specialize", "standardise": "standardize",
    "initialise": "initialize", "visualise": "visualize", "memorise": "memorize",
    "apologising": "apologizing", "aeroplane": "airplane", "aluminium": "aluminum",
    "paediatric": "pediatric", "paediatrician": "pediatrician", "anaemia": "anemia",
    "oestrogen": "estrogen", "haemoglobin": "hemoglobin", "diarrhoea": "diarrhea",
    "orthopaedic": "orthopedic", "manoeuvre": "maneuver", "ageing": "aging",
    "judgement": "judgment", "acknowledgement": "acknowledgment", "sceptical": "skeptical",
    "pyjamas": "pajamas", "plough": "plow", "storey": "story", "kerb": "curb",
    "mum": "mom", "postcode": "zipcode", "enquiry": "inquiry", "enquiries": "inquiries",
    "enquire": "inquire", "cosy": "cozy", "moustache": "mustache", "speciality": "specialty",
    "whilst": "while", "amongst": "among", "towards": "toward", "learnt": "learned",
    "spelt": "spelled", "dreamt": "dreamed", "burnt": "burned", "cancelation": "cancellation",
    "okey": "okay",
    # contractions typed without the apostrophe
    "dont": "do not", "doesnt": "does not", "didnt": "did not", "cant": "can not",
    "isnt": "is not", "arent": "are not", "wasnt": "was not", "werent": "were not",
    "havent": "have not", "hasnt": "has not", "hadnt": "had not", "couldnt": "could not",
    "shouldnt": "should not", "wouldnt": "would not", "wont": "will not", "aint": "is not",
    "im": "i am", "ive": "i have", "youre": "you are", "thats": "that is",
    "whats": "what is", "wheres": "where is", "whos": "who is", "hows": "how is",
    "theres": "there is",
}  # fmt: skip

_LEADING_JOINERS = frozenset(("but", "and", "also"))
# "order no 4521", "order number 4521", "order nr 4521" and "order #4521" are one thing.
_NUMBER_WORDS = frozenset(("no", "nr", "num", "number"))

# "like" is kept after these words (a verb or comparison: "would like", "looks like");
# elsewhere in a question it is a speech filler ("how do i like update my address").
_LIKE_KEEPERS = frozenset((
    "would", "look", "looks", "looked", "looking", "feel", "feels", "felt", "seem", "seems",
    "sound", "sounds", "something", "anything", "nothing", "things", "more", "much", "less",
    "not", "dislike", "unlike", "what", "exactly", "taste", "tastes", "act", "acts",
))  # fmt: skip


_Table = dict[tuple[str, ...], list[tuple[tuple[str, ...], tuple[str, ...], str]]]


def _phrase_table(phrases: dict[str, str], rule: str) -> _Table:
    """First two words -> [(phrase words, replacement words, rule)], longest phrase first."""
    table: _Table = {}
    for p, r in phrases.items():
        words = tuple(p.split())
        table.setdefault(words[:2], []).append((words, tuple(r.split()), rule))
    for entries in table.values():
        entries.sort(key=lambda e: -len(e[0]))
    return table


_DROPS = _phrase_table(dict.fromkeys(_DROP_PHRASES, ""), "courtesy")
_FOLDS = _phrase_table(_FOLD_PHRASES, "frame")
_PHRASES = {**_DROPS, **_FOLDS}
# Words that need the slow path of the token pass: a phrase head, a filler or "like".
# A text needs the slow token pass only if it has one of these words, or one of the
# phrases' first two words side by side (checked as one set lookup per word pair).
_SPECIAL = FILLER_WORDS | _NUMBER_WORDS | _LEADING_JOINERS | {"like"}
_HEAD_PAIRS = frozenset(_PHRASES)
_SLOW_DROPS = _NUMBER_WORDS | {"like"}


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
    parts = s.split(_SEP)
    idx = [i for i, p in enumerate(parts) if "'" in p or "cannot" in p]
    if len(idx) * 2 > len(parts):
        return _expand_contractions(s)
    done = _expand_contractions(_SEP.join([parts[i] for i in idx])).split(_SEP)
    for i, p in zip(idx, done, strict=True):
        parts[i] = p
    return _SEP.join(parts)


# Up to this many characters, digits are split from letters by one regex call over the whole
# batch; larger batches (long documents, in a worker thread) take one call per text, so that
# the GIL, which one regex call holds throughout, comes free between texts for the event loop.
_WHOLE_BATCH_MAX = 1 << 16


def _normalized_parts(texts: Sequence[str]) -> list[str]:
    """Each text normalized as the hashing embedder normalizes it (one pass over the batch,
    or two: the ASCII texts by byte tables, the others by the Unicode path)."""
    if not texts:
        return []
    if len(texts) == 1:
        joined = texts[0].replace(_SEP, " ")
    else:
        joined = _SEP.join(texts)
        if joined.count(_SEP) != len(texts) - 1:
            joined = _SEP.join(t.replace(_SEP, " ") for t in texts)
    if joined.isascii() and len(joined) <= _WHOLE_BATCH_MAX:
        # digits split from letters over the whole batch: the separator is whitespace to the
        # pattern, so no split crosses from one text to the next
        s = _ascii_normalized(joined)
        if _HAS_DIGIT.search(s):
            s = _DIGIT_LETTER.sub(" ", s)
        return s.split(_SEP) if len(texts) > 1 else [s]
    if joined.isascii():
        parts = (
            _ascii_normalized(joined).split(_SEP) if len(texts) > 1 else [_ascii_normalized(joined)]
        )
    elif len(texts) == 1:
        parts = [_unicode_normalized(joined)]
    else:
        parts = joined.split(_SEP)
        wide = [i for i, p in enumerate(parts) if not p.isascii()]
        narrow = [i for i, p in enumerate(parts) if p.isascii()]
        for idx, fn in ((wide, _unicode_normalized), (narrow, _ascii_normalized)):
            if idx:
                done = fn(_SEP.join([parts[i] for i in idx])).split(_SEP)
                for i, p in zip(idx, done, strict=True):
                    parts[i] = p
    return [_DIGIT_LETTER.sub(" ", p) if _HAS_DIGIT.search(p) else p for p in parts]


def _ascii_normalized(s: str) -> str:
    s = _contractions_where_needed(s.lower().replace("`", "'"))
    return s.encode("ascii").translate(_ASCII_TABLE, b"'").decode("ascii")


def _unicode_normalized(s: str) -> str:
    s = unicodedata.normalize("NFKC", s).casefold().translate(_APOSTROPHES)
    return _contractions_where_needed(s).translate(_punctuation_table())


def _rewrite(words: list[str], trace: list[tuple[str, str, str]] | None) -> list[str]:
    """The token passes: courtesy and fillers out first, then frames and spellings folded
    (so a filler inside a frame, "how can um i", does not hide it)."""
    pairs = set(zip(words, words[1:], strict=False))
    if trace is None and _DROPS.keys().isdisjoint(pairs) and _SLOW_DROPS.isdisjoint(words):
        # no phrase, "like" or number word: fillers go by a plain filter
        kept = [w for w in words if w not in FILLER_WORDS]
    else:
        kept = _pass(words, trace, _DROPS, True)
    if not kept:
        return words
    while kept and kept[0] in _LEADING_JOINERS:  # "sorry to bother you, but can i ..."
        if trace is not None:
            trace.append(("courtesy", kept[0], ""))
        kept = kept[1:]
    if not kept:
        return words  # nothing but courtesy: keep it as it came
    if trace is None and _FOLDS.keys().isdisjoint(zip(kept, kept[1:], strict=False)):
        sp = _SPELLING
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
                    if trace is not None:
                        trace.append((rule, " ".join(pw), " ".join(repl)))
                    out.extend(repl)
                    i += k
                    if drop_fillers and i < n and words[i] in _LEADING_JOINERS:
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
        elif w in _NUMBER_WORDS and i + 1 < n and words[i + 1][:1].isdigit():
            if trace is not None:
                trace.append(("number sign", w, ""))
            i += 1
            continue
        elif w in FILLER_WORDS:
            if trace is not None:
                trace.append(("filler", w, ""))
            i += 1
            continue
        elif w == "like" and not (out and out[-1] in _LIKE_KEEPERS):
            if trace is not None:
                trace.append(("filler", w, ""))
            i += 1
            continue
        if drop_fillers:
            out.append(w)
        else:
            s = _SPELLING.get(w)
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


def _tokens_of(part: str, trace: list[tuple[str, str, str]] | None = None) -> list[str]:
    words = part.split()
    if _SPECIAL.isdisjoint(words) and _HEAD_PAIRS.isdisjoint(zip(words, words[1:], strict=False)):
        # the common case: only spelling can apply (a dict lookup per word)
        if _SPELLING.keys().isdisjoint(words):
            return words
    return _rewrite(words, trace)


_rules: tuple[Any, Any] | None = None


def _rule_tables() -> tuple[Any, Any]:
    """Sorted hashes of the words and word pairs that make a text go through the token passes
    (as :func:`stratabatch.kernels.rule_flags` hashes them)."""
    global _rules
    if _rules is None:
        import numpy as np

        from .kernels import hash_words, pair_hashes

        heads = sorted(_HEAD_PAIRS)
        _rules = (
            np.unique(hash_words(sorted(_SPECIAL | _SPELLING.keys()))),
            np.unique(
                pair_hashes(hash_words([a for a, _ in heads]), hash_words([b for _, b in heads]))
            ),
        )
    return _rules


def canonical_texts(texts: Sequence[str]) -> list[str]:
    """The canonical text of each text: :func:`canonical_batch`'s words, apart by spaces
    (maybe more than one).

    One numba pass over the normalized batch finds the texts that hold a word or word pair
    some rule rewrites (:func:`stratabatch.kernels.rule_flags`); only those go through the
    token passes in Python. The others are canonical as normalized (~2 us a text less).
    """
    import numpy as np

    from .kernels import rule_flags

    parts = _normalized_parts(texts)
    if not parts:
        return []
    data = "\x1f".join(parts).encode("utf-8", "surrogatepass")
    flags = np.empty(len(parts), dtype=np.bool_)
    words, pairs = _rule_tables()
    rule_flags(np.frombuffer(data or b"\0", dtype=np.uint8), len(data), words, pairs, flags)
    return [
        " ".join(_rewrite(p.split(), None)) if f else p
        for p, f in zip(parts, flags.tolist(), strict=True)
    ]


def canonical_batch(texts: Sequence[str]) -> list[list[str]]:
    """The canonical tokens of each text, by one normalization pass over the whole batch.

    Args:
        texts: The request texts.

    Returns:
        One list of canonical words per text (never empty unless the text has no word).
    """
    return [_tokens_of(p) for p in _normalized_parts(texts)]


def canonical_tokens(text: str) -> list[str]:
    """The canonical words of one text (see the module docstring for the rules)."""
    return _tokens_of(_normalized_parts([text])[0])


def canonical_text(text: str) -> str:
    """The canonical text of ``text``: its canonical words joined by single spaces."""
    return " ".join(canonical_tokens(text))


def explain_canonical(text: str) -> list[tuple[str, str, str]]:
    """Which rule rewrote which words of ``text``.

    Returns:
        ``(rule, words, replacement)`` triples in text order; rule is ``"courtesy"``,
        ``"filler"``, ``"frame"`` or ``"spelling"``; replacement is ``""`` for a removal.
    """
    trace: list[tuple[str, str, str]] = []
    _rewrite(_normalized_parts([text])[0].split(), trace)
    return trace
