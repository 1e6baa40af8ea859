"""Merge guards: one test per guard, with the false friends each must not break."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stratabatch import BatchProcessor
from stratabatch.config import GUARDS
from stratabatch.errors import ConfigError
from stratabatch.explain import explain
from stratabatch.guards import features, is_typo_of, number_signature, veto

PREAMBLE = (
    "You are the assistant of a hardware store. Answer in two sentences, politely, and never "
    "promise stock you cannot see. Opening hours and prices come from the tool results only. "
) * 3


def decide(a: str, b: str, guards=GUARDS, numbers: bool = True, paraphrases: bool = False):
    return veto(features(a), features(b), frozenset(guards), numbers, paraphrases=paraphrases)


@pytest.mark.parametrize(
    "a, b",
    [
        ("pay -5 dollars", "pay 5 dollars"),
        ("send 1,000 euros", "send 1.000 euros"),
        ("order 123", "order 124"),
    ],
)
def test_numbers_with_sign_and_separators(a, b):
    assert decide(a, b).guard == "numbers"


def test_numbers_false_friends():
    assert number_signature("send 1,000 euros") == number_signature("send 1000 euros")
    assert number_signature("order 007") == number_signature("order 7")
    assert number_signature("2.50 kg") == number_signature("2.5 kg")
    assert number_signature("call 2024-05-01") == ("1", "2024", "5")  # dashes of a date
    assert decide("order 4521 has not arrived", "Order #4521 hasn't arrived") is None


@pytest.mark.parametrize(
    "a, b",
    [
        ("turn on the lights", "turn off the lights"),
        ("Is the store open?", "Is the store closed?"),
        ("Can I eat before the test?", "Can I avoid eating before the test?"),
        ("I can log in", "I can't log in"),
        ("Is this product safe for kids?", "Is this product unsafe for kids?"),
        ("How do I install the app?", "How do I uninstall the app?"),
        ("Is my data encrypted?", "Is my data decrypted?"),
    ],
)
def test_polarity(a, b):
    assert decide(a, b).guard == "polarity"


def test_polarity_false_friends():
    assert decide("how do I turn on dark mode", "hi, how can I turn on dark mode? thanks") is None
    assert decide("Can I go without a leash?", "Can I go wihtout a leash?") is None  # a typo
    assert decide("I cannot log in", "I can't log in") is None


@pytest.mark.parametrize(
    "a, b",
    [
        (
            "Move $200 from my checking account to my brokerage account",
            "Move $200 from my brokerage account to my checking account",
        ),
        ("Convert 100 dollars to euros", "Convert 100 euros to dollars"),
        ("Copy files from drive A to drive B", "Copy files from drive B to drive A"),
        ("Did Alice call Bob yesterday?", "Did Bob call Alice yesterday?"),
    ],
)
def test_roles(a, b):
    assert decide(a, b).guard == "roles"


@pytest.mark.parametrize(
    "a, b",
    [
        ("Find flights from London to Lisbon", "Find flights from Lisbon to Londoon"),
        ("Find flights from London to Lisbon", "Find flights from Lisbonn to London"),
        ("Find flights from London to Lisbon", "find flights from lisbon to londn"),
        ("Convert 100 dollars to euros", "Convert 100 euros to dollasr"),
        (
            "Copy my notes from the tablet to the phone",
            "Copy my notes from the phone to the tablte",
        ),
        ("Translate this from Spanish to Portuguese", "Translate this from Portugese to Spanish"),
        ("Did Alice call Bob yesterday?", "Did Bob call Alcie yesterday?"),  # no role word
        (
            "Can I pick up my online order in store today?",
            "Can I pick up my in-store order onlien today?",
        ),
    ],
)
def test_roles_traded_with_one_argument_mistyped(a, b):
    """A typo of one of the traded arguments does not hide the swap (issue 23)."""
    for x, y in ((a, b), (b, a)):
        v = decide(x, y)
        assert v is not None and v.guard == "roles", (x, y, v)
        assert not merges(x, y)


@pytest.mark.parametrize(
    "a, b",
    [
        ("Find flights from London to Lisbon", "Find flights from Londoon to Lisbon"),
        ("Find flights from London to Lisbon", "Find flights from London to Lisbno"),
        (
            "Copy my notes from the tablet to the phone",
            "Copy my notes from the tablte to the phone",
        ),
        ("Translate this from Spanish to Portuguese", "Translate this from Spanish to Portugese"),
        ("Did Alice call Bob yesterday?", "Did Alcie call Bob yesterday?"),
        ("Does the museum or the library open?", "Does the librray or the museum open?"),
        ("Why does the app crash when I upload?", "When I upload, why does the app crahs?"),
    ],
)
def test_roles_an_argument_mistyped_in_its_place_still_merges(a, b):
    assert decide(a, b) is None and decide(b, a) is None
    assert merges(a, b)


def test_roles_reordered_words_that_are_not_a_moved_clause():
    v = decide(
        "Can I pick up my online order in store today?",
        "Can I pick up my in-store order online today?",
    )
    assert v.guard == "roles" and "online" in v.words


def test_roles_false_friends_moved_clauses():
    assert (
        decide(
            "How do I update the billing address for my business account?",
            "For my business account, how do I update the billing address?",
        )
        is None
    )
    assert (
        decide(
            "Copy the report from the shared drive to my desktop",
            "To my desktop, copy the report from the shared drive",
        )
        is None
    )
    assert (
        decide(
            "Move $200 from my checking account to my brokerage account.",
            "To my brokerage account, move $200 from my checking account.",
        )
        is None
    )


@pytest.mark.parametrize(
    "a, b",
    [
        ("Cancel my Netflix subscription", "Cancel my Spotify subscription"),
        ("Book a table for Monday", "Book a table for Tuesday"),
        ("ship 5 kg", "ship 5 lb"),
        (
            PREAMBLE + "Customer: Alice. Where is my package?",
            PREAMBLE + "Customer: Bob. Where is my package?",
        ),
    ],
)
def test_entities(a, b):
    assert decide(a, b).guard == "entities"


def test_entities_false_friends():
    assert decide("Where is Tokyo station?", "where is tokyo station") is None  # capitals only
    assert decide("Flights to Japan", "Flights to Japn") is None  # a typo of the name
    assert decide("Is Austria open?", "Is Australia open?").guard == "entities"  # two names


@pytest.mark.parametrize(
    "a, b",
    [
        ("Cancel my order", "Cancel my partner's order"),
        ("Where is my order?", "Where are my orders?"),
        ("Delete my card", "Delete all my cards"),
        ("Refund our booking", "Refund my booking"),
    ],
)
def test_scope(a, b):
    assert decide(a, b).guard == "scope"


@pytest.mark.parametrize(
    "a, b",
    [
        (
            "How do I add a new member to my team workspace?",
            "How do I add a new member to my taem workspace?",
        ),  # a scope word mistyped
        ("Can my family join?", "Can my famliy join?"),
        ("Best wireless headphones", "Best wirelesss headphones"),  # no plural of "wireless"
        ("Where is the business account?", "Where is the busines account?"),
    ],
)
def test_scope_false_friends_typos(a, b):
    assert decide(a, b) is None and decide(b, a) is None
    assert merges(a, b)


def test_scope_still_refuses_plurals_and_other_scope_words():
    assert decide("Is my team winning?", "Is my teams winning?").guard == "scope"
    assert decide("Where is my class?", "Where are my classes?").guard == "scope"
    assert decide("Where is my bus?", "Where are my buses?").guard == "scope"
    assert decide("Can my family join?", "Can my friend join?").guard == "scope"


def test_residue_decides_long_prompts_by_what_differs():
    v = decide(PREAMBLE + "Do you sell hammers?", PREAMBLE + "Do you sell ladders?")
    assert v is not None and v.guard == "residue" and set(v.words) == {"hammers", "ladders"}
    assert (
        decide(PREAMBLE + "Do you sell hammers?", PREAMBLE + "hi, do you sell hammmers? thx")
        is None
    )


def test_residue_accepts_typos_not_other_words():
    assert is_typo_of("address", "adress") and is_typo_of("uppdate", "update")
    assert is_typo_of("password", "pasword") and is_typo_of("plan", "plna")
    assert not is_typo_of("price", "prize")  # two dictionary words
    assert not is_typo_of("order", "orders")  # a plural
    assert is_typo_of("wireless", "wirelesss")  # (a word in "s" takes "es")
    assert not is_typo_of("safe", "unsafe")
    assert (
        decide("How do I uppdate my billing adress?", "How do I update my billing address?") is None
    )
    assert decide("Cancel my order", "Track my order").guard == "residue"


@pytest.mark.parametrize(
    "a, b",
    [
        ("What is the status of ticket ABCD?", "What is the status of ticket ABCE?"),
        ("Track shipment XKQPRT please", "Track shipment XKQPRS please"),
        ("Reset the password for user jsmith", "Reset the password for user jsmyth"),
        ("Status of order qwerty", "Status of order qwerti"),
        ("Translate 'gato' to English", "Translate 'pato' to English"),
        ("What does the error code EACCES mean", "What does the error code EACCESS mean"),
        ("restart the pod wrkr", "restart the pod wrkz"),
        ("Run tests in module foobar", "Run tests in module foobaz"),
        # a word whose spelling is the question: never a typo, even of a dictionary word
        ("Translate hola to English", "Translate hula to English"),
        ("Can I change the 'billing' address", "Can I change the 'biling' address"),
    ],
)
def test_residue_keeps_identifiers_one_letter_apart(a, b):
    """Two non-dictionary words one edit apart are a typo only when neither is written as an
    identifier: in capitals, quoted, after a word that names a thing by its id, or without
    a vowel. Nothing else tells a mistyped code, user or foreign word from another one. A
    word whose spelling is asked about (quoted, after "translate") is never a typo."""
    v = decide(a, b)
    assert v is not None and v.guard in ("residue", "entities"), v  # (caps: a name as well)
    v = decide(a, b, guards=("residue",))
    assert v is not None and v.guard == "residue", v


@pytest.mark.parametrize(
    "a, b",
    [
        ("How do I cancel my order before it ships?", "How do I cancle my order before it ships?"),
        ("WHERE IS MY PARCEL, IT IS LATE", "WHERE IS MY PARCLE, IT IS LATE"),
        ("Reset the password for user jsmith", "Reset the pasword for user jsmith"),
        ("How do I get a refund for my order", "How do I get a refuund for my order"),
        ("My kubernetes pod keeps restarting", "My kubernetes pod keeps restrating"),
        ("Is my data encrypted before upload?", "Is my data enncrypted before upload?"),
        ("Can I change the billing address", "Can I change the biling address"),
    ],
)
def test_residue_still_accepts_typos_of_words_next_to_identifiers(a, b):
    """The identifier rule binds only where both words are outside the dictionary and one is
    written as an identifier: a typo of a real word in capitals or after an id noun is still
    a typo, and so is a typo of a word the dictionary lacks ("refund")."""
    assert decide(a, b) is None


async def test_identifiers_one_letter_apart_are_not_merged_through_the_processor():
    calls = []

    async def handler(reqs):
        calls.append([r["q"] for r in reqs])
        return [r["q"] for r in reqs]

    texts = [
        "What is the status of ticket ABCD?",
        "What is the status of ticket ABCE?",
        "what is the status of ticket ABCD",
        "Translate 'gato' to English",
        "Translate 'pato' to English",
    ]
    async with BatchProcessor(handler=handler, dedup_key="q", window_ms=20) as bp:
        out = await bp.process([{"q": t} for t in texts])
    assert out == [texts[0], texts[1], texts[0], texts[3], texts[4]]
    assert sorted(sum(calls, [])) == sorted(texts[:2] + texts[3:])


def test_paraphrase_mode_lets_different_short_wordings_through_but_not_long_prompts():
    a, b = "How do I reset my password?", "I forgot my password, how can I set a new one?"
    assert decide(a, b).guard == "residue"
    assert decide(a, b, paraphrases=True) is None
    assert (
        decide(
            PREAMBLE + "Do you sell hammers?", PREAMBLE + "Do you sell ladders?", paraphrases=True
        ).guard
        == "residue"
    )


def test_each_guard_switches_off_alone():
    assert (
        decide(
            "turn on the lights",
            "turn off the lights",
            guards=[g for g in GUARDS if g != "polarity"],
        ).guard
        == "residue"
    )
    assert decide("turn on the lights", "turn off the lights", guards=()) is None
    assert decide("order 123", "order 124", guards=(), numbers=False) is None


def test_explain_names_the_guard_the_words_and_the_rewrites():
    e = explain("turn on the lights", "turn off the lights", threshold=0.5)
    assert not e.merge and e.reason == "veto" and str(e.veto) == "polarity: on / off"
    e = explain("how do I turn on dark mode", "hi, how can I turn on dark mode? thanks")
    assert e.merge and e.reason == "similar" and e.similarity == pytest.approx(1.0, abs=1e-6)
    assert ("frame", "how can i", "how do i") in e.rewrites[1]
    assert explain("Hello", "hello").reason == "exact"


def test_dedup_guards_option_is_validated():
    async def handler(reqs):
        return reqs

    b = BatchProcessor(handler, dedup_guards=("residue", "polarity"))
    assert b.dedup_guards == ("polarity", "residue")  # in the order they are tried
    with pytest.raises(ConfigError, match="dedup_guards"):
        b.dedup_guards = ("nope",)
    with pytest.raises(ConfigError, match="canonicalize"):
        BatchProcessor(handler, canonicalize="yes")


async def run_pairs(pairs, **options):
    seen: list[str] = []

    async def handler(reqs):
        seen.extend(r["query"] for r in reqs)
        return [r["query"] for r in reqs]

    async with BatchProcessor(handler, window_ms=5, max_size=256, **options) as batch:
        out = []
        async for done in batch.process_streaming([{"query": q} for q in pairs]):
            out.append(done)
        dedup = batch._core._dedup  # noqa: SLF001 - the veto log is a debugging aid
        return seen, sorted(out, key=lambda d: d.index), list(dedup.vetoes)


@pytest.mark.parametrize("embedder", ["hashing", "callable"])
async def test_the_dedup_path_vetoes_traps_for_every_embedder(embedder):
    import numpy as np

    from stratabatch.embed import HashingEmbedder

    opts: dict = {"dedup_threshold": 0.5}  # low: the traps are candidates, guards decide
    if embedder == "callable":
        inner = HashingEmbedder()
        opts = {
            "embedder": lambda texts: np.asarray(inner.embed(texts)) * 2.0,
            "dedup_threshold": 0.5,
        }
    qs = [
        "turn on the lights",
        "turn off the lights",
        "hi, turn on the lights, thanks",
        PREAMBLE + "Is the store open?",
        PREAMBLE + "Is the store closed?",
    ]
    seen, done, vetoes = await run_pairs(qs, **opts)
    assert seen == [qs[0], qs[1], qs[3], qs[4]]
    assert done[2].merged_into == 0
    assert {str(v.veto) for v in vetoes} >= {"polarity: on / off", "polarity: open / closed"}


async def test_dedup_function_merges_are_vetoed_too():
    seen, done, vetoes = await run_pairs(
        ["Is the store open?", "Is the store closed?", "is the store open??"],
        dedup_function=lambda a, b: 1.0,
    )
    assert seen == ["Is the store open?", "Is the store closed?"]
    assert done[2].merged_into == 0 and vetoes and vetoes[0].veto.guard == "polarity"


async def test_exact_merges_are_never_vetoed_and_guards_off_restores_the_old_path():
    seen, _, _ = await run_pairs(["Pay -5 dollars", "pay -5 dollars"])
    assert seen == ["Pay -5 dollars"]
    seen, _, _ = await run_pairs(
        ["turn on the lights", "turn off the lights"],
        dedup_guards=(),
        guard_numbers=False,
        dedup_threshold=0.7,
    )
    assert seen == ["turn on the lights"]  # what the guards prevent


def _osa_reference(a: str, b: str) -> int:
    d = [[i + j if i * j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            d[i][j] = min(
                d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1])
            )
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[len(a)][len(b)]


@settings(max_examples=300, deadline=None)
@given(a=st.text("abc", max_size=9), b=st.text("abc", max_size=9), limit=st.integers(1, 2))
def test_capped_edit_distance_matches_the_full_table(a, b, limit):
    from stratabatch.lexicon import osa_distance

    assert min(osa_distance(a, b, limit), limit + 1) == min(_osa_reference(a, b), limit + 1)


async def test_guards_and_canonical_text_switch_at_run_time():
    from stratabatch.embed import HashingEmbedder

    inner = HashingEmbedder()
    embedded: list[str] = []

    def recording(texts):
        embedded.extend(texts)
        return inner.embed(texts)

    seen: list[str] = []

    async def handler(reqs):
        seen.extend(r["query"] for r in reqs)
        return [None] * len(reqs)

    async with BatchProcessor(
        handler, window_ms=5, dedup_threshold=0.5, embedder=recording
    ) as batch:
        await batch.process([{"query": "turn on the lights"}, {"query": "turn off the lights"}])
        assert seen == ["turn on the lights", "turn off the lights"]
        seen.clear()
        batch.dedup_guards = ()
        await batch.process([{"query": "turn on the fan"}, {"query": "turn off the fan"}])
        assert seen == ["turn on the fan"]  # no guard: the cosine alone decides
        assert embedded[-1] == "turn off the fan"  # the canonical text
        batch.canonicalize = False
        await batch.process([{"query": "Hi! Open the door, thanks."}])
        assert embedded[-1] == "Hi! Open the door, thanks."  # the raw text


# -------------------------------------------------------------------------------------------
# Dedup round 2 (issue 20): near repeats users type, the traps a sentence model falls into
# -------------------------------------------------------------------------------------------


def merges(a: str, b: str, **options) -> bool:
    return explain(a, b, **options).merge


@pytest.mark.parametrize(
    "a, b",
    [
        ("Why was the transfer held?", "Why was teh transfer held?"),
        ("Why was the transfer held?", "hWy was the transfer held?"),
        (
            "Are the shoes available for next day delivery?",
            "rAe the shoes available ofr next day delivery?",
        ),
        ("What should I do if my card is stuck?", "What shuold I do if my card is stuck?"),
        ("How should I structure the tests?", "How sholud I structure the tests?"),
        ("What is martial law?", "Whta is martial law?"),
        ("Can you tell me which gate?", "Can yuo tell me which gate?"),
    ],
)
def test_swapped_letters_in_frequent_words_are_one_typo(a, b):
    assert merges(a, b), explain(a, b)


@pytest.mark.parametrize(
    "a, b",
    [
        ("Where is my package?", "Where is my pakcage?"),
        ("How do I change my delivery address?", "How do I chnage my delivery adrdess?"),
        ("Can I get a refund for a damaged parcel?", "Can I get a rfeund for a dmaaged parcel?"),
        ("Why was my payment declined?", "Why was my paymetn delcined?"),
    ],
)
def test_swapped_letters_in_any_word_are_one_typo(a, b):
    """Letters swapped back in the canonical text: the embedder sees the word, not a typo
    that cost its word and n-gram features (these were under the threshold)."""
    assert merges(a, b), explain(a, b)


@pytest.mark.parametrize(
    "a, b",
    [
        ("Is ACRDS down?", "Is CARDS down?"),  # a code in capitals
        ("Look up user rotuer", "Look up user router"),  # an id after its noun
        ("Is the trail free?", "Is the tiral free?"),  # a trial, not a trail
        ("Did you fly abroad?", "Did you fly aborad?"),  # abroad or aboard: left as typed
    ],
)
def test_swapped_letters_of_codes_ids_and_other_words_stay_apart(a, b):
    assert not merges(a, b)


@pytest.mark.parametrize(
    "a, b",
    [
        ("What is a lien on a car?", "What is a line on a car?"),  # two words, not a typo
        ("reset the password for user jsmith", "reset the password for user jsmtih"),
        ("Is flight BA219 on time?", "Is flight BA291 on time?"),
        ("What is martial law?", "What is marital law?"),
    ],
)
def test_swapped_letters_that_make_another_word_or_id_stay_apart(a, b):
    assert not merges(a, b)


@pytest.mark.parametrize(
    "a, b",
    [
        ("Why was I charged a foreign fee?", "Why was I somehow charged a foreign fee?"),
        ("Is breakfast included in the price?", "Is breakfast truly included in the price?"),
        ("Is breakfast included in the price?", "Is breakfast indeed included in the price?"),
        ("When is the recycling collected?", "When, in fact, is the recycling collected?"),
        ("Can I pay off my loan early?", "Can I just pay off my loan early?"),
        ("Do I need a visa for Toronto?", "Do I really need a visa for Toronto?"),
        ("Why was I charged a foreign fee?", "Why exactly was I charged a foreign fee?"),
    ],
)
def test_fillers_and_intensifiers_are_folded(a, b):
    assert merges(a, b), explain(a, b)


@pytest.mark.parametrize(
    "a, b",
    [
        # words between quotes are mentioned, not used: a filler, an article, a courtesy
        # word there is what is asked about
        ("Is 'yours truly' too formal for a letter?", "Is 'yours' too formal for a letter?"),
        ("What does 'the' mean here?", "What does 'a' mean here?"),
        ('Is the "really fast" plan worth it?', 'Is the "fast" plan worth it?'),
        ("How do I say \u201cthank you\u201d in French?", "How do I say in French?"),
        ("Is `basically` overused in essays?", "Is `` overused in essays?"),
    ],
)
def test_quoted_words_are_never_fillers(a, b):
    assert not merges(a, b), explain(a, b)
    assert not merges(b, a)


@pytest.mark.parametrize(
    "a, b",
    [
        # the fillers around a quoted span still go; apostrophes are no quotes
        ('What does "per diem" mean, basically?', 'What does "per diem" mean?'),
        ("Is the 'fast' plan really worth it?", "Is the 'fast' plan worth it?"),
        ("Why don't the users' settings just reset?", "Why don't the users' settings reset?"),
        ("Is 'yours truly' too formal?", "Is yours 'truly' too formal?"),  # the same words
        ("Is 'yours truly' too formal for a letter?", "Is 'yours truly' too formal for a lettre?"),
    ],
)
def test_fillers_around_quoted_words_still_fold(a, b):
    assert merges(a, b), explain(a, b)
    assert merges(b, a)


@pytest.mark.parametrize(
    "a, b",
    [
        ("What is a just war?", "What is a war?"),  # "just" the adjective
        ("Do I need my passport?", "Do I need just my passport?"),  # "just" as "only"
        ("Is the outage affecting me?", "Is the outage affecting just me?"),
        ("Does it take 5 minutes?", "Does it take just 5 minutes?"),
        ("really?", "why?"),  # a filler that is the whole question stays
    ],
)
def test_filler_false_friends_stay_apart(a, b):
    assert not merges(a, b)


@pytest.mark.parametrize(
    "a, b",
    [
        (
            "Who earns more, an economist or an executive?",
            "Who earns more, an executive or an economist?",
        ),
        (
            "Is the hotel close to the beach and the old town?",
            "Is the hotel close to the old town and the beach?",
        ),
        (
            "Do you sell gloves and scarves for children?",
            "Do you sell scarves and gloves for children?",
        ),
        (
            "Are flights between Oslo and Bergen cheaper?",
            "Are flights between Bergen and Oslo cheaper?",
        ),
    ],
)
def test_reordered_coordination_merges(a, b):
    assert merges(a, b), explain(a, b)


@pytest.mark.parametrize(
    "a, b",
    [
        (
            "Does an economist earn more than an executive?",
            "Does an executive earn more than an economist?",
        ),
        (
            "Should I pay off the car loan and then the credit card?",
            "Should I pay off the credit card and then the car loan?",
        ),
        ("Is it cheaper to fly from Madrid to Rome?", "Is it cheaper to fly from Rome to Madrid?"),
        ("Did Alice call Bob?", "Did Bob call Alice?"),
    ],
)
def test_roles_and_sequences_around_a_coordination_stay_apart(a, b):
    assert not merges(a, b)


@pytest.mark.parametrize(
    "b",
    [
        "How can I report a broken streetlight?",
        "What is a good way to report a broken streetlight?",
        "What's the best way to report a broken streetlight?",
        "If I want to report a broken streetlight, what should I do?",
    ],
)
def test_question_frames_are_folded(b):
    a = "How do I report a broken streetlight?"
    assert merges(a, b, threshold=0.5), explain(a, b)


def test_how_do_you_stays_apart_from_how_do_i_where_the_answer_differs():
    assert not merges("How do you store my card details?", "How do I store my card details?")
    assert not merges("How do I contact you?", "How do you contact me?")
    # a generic "you": how anyone does it
    assert merges("How do you boil an egg?", "How do I boil an egg?")
    # a frame that asks another thing stays apart
    assert not merges(
        "How do I lower my blood pressure?",
        "If I want to lower my blood pressure, what should I avoid?",
    )


@pytest.mark.parametrize(
    "a, b",
    [
        # voice with the roles traded
        ("Did the landlord sue the tenant?", "Was the landlord sued by the tenant?"),
        ("Did Anna share the folder with Paul?", "Was the folder shared with Anna by Paul?"),
        # tense and time
        ("Is the VPN down?", "Was the VPN down?"),
        ("Is Emily an architect?", "Did Emily use to be an architect?"),
        ("Is the blender on sale?", "Will the blender be on sale?"),
        ("Do you still sell the green kettle?", "Do you sell the green kettle?"),
        # a modifier that changes the referent
        ("Is the leather jacket waterproof?", "Is the fake leather jacket waterproof?"),
        (
            "Which job boards are best for remote work?",
            "Which job boards are best for remote work in healthcare?",
        ),
        # perspective and reflexive swaps
        ("Why are people staring at me?", "Why do I stare at people?"),
        ("Can you call me back?", "Can I call you back?"),
        ("Can I book the taxi myself?", "Can you book the taxi for me?"),
        # antonyms beyond the first list
        ("Are dogs allowed on the beach?", "Are dogs banned on the beach?"),
        ("Should I borrow money from my brother?", "Should I lend money to my brother?"),
        ("Is the tumour benign?", "Is the tumour malignant?"),
        # an order on one side only
        ("Should I learn Rust or Go first?", "Should I learn Rust before Go?"),
    ],
)
def test_sentence_model_traps_are_vetoed_for_every_embedder(a, b):
    # paraphrases=True is the sentence-model path: the residue guard relaxed
    assert decide(a, b, paraphrases=True) is not None
    assert decide(a, b) is not None


@pytest.mark.parametrize(
    "a, b",
    [
        ("Did the landlord sue the tenant?", "Was the tenant sued by the landlord?"),
        ("Has the seller refunded the buyer?", "Has the buyer been refunded by the seller?"),
        ("Did my salary arrive?", "Has my salary arrived?"),
        ("Will the update restart my laptop?", "Is the update going to restart my laptop?"),
        ("Can you send me the invoice?", "Could you send the invoice to me?"),
        ("Can other users see my notes?", "Are my notes visible to other users?"),
        ("Are dogs allowed on the beach?", "Are dogs permitted on the beach?"),
    ],
)
def test_sentence_model_paraphrases_pass_the_new_guards(a, b):
    # (the residue guard decides these by how many words they share, as before)
    guards = ("polarity", "roles", "entities", "scope")
    assert decide(a, b, guards, paraphrases=True) is None


@pytest.mark.parametrize(
    "a, b",
    [
        ("What is Mary's phone number?", "What is Mark's phone number?"),
        ("What is Christopher's account balance?", "What is Christophe's account balance?"),
        ("Is Karl on the rota this week?", "Is Carl on the rota this week?"),
        ("Send 40 euros to Tom.", "Send 40 euros to Tim."),
    ],
)
def test_names_one_letter_apart_in_a_name_position_stay_apart(a, b):
    assert not merges(a, b)
    assert decide(a, b, paraphrases=True) is not None


def test_a_mistyped_name_still_merges():
    assert merges("What is Christopher's account balance?", "What is Christpher's account balance?")
    assert merges("What is Mary's phone number?", "what is marys phone number")


@pytest.mark.parametrize(
    "a, b",
    [
        (
            "What is the cheapest way of exchanging dollars?",
            "What is the cheapest wayo f exchanging dollars?",
        ),
        (
            "Can I return the shoes if the box is damaged?",
            "Can I return the shoes if the bo xis damaged?",
        ),
        ("When does the library open on holidays?", "When does the libraryo pen on holidays?"),
    ],
)
def test_typos_across_a_space_pass_the_guards_of_a_sentence_model(a, b):
    assert decide(a, b, paraphrases=True) is None


def test_spaces_moved_between_real_words_or_ids_are_no_typo():
    # "the rapist" / "therapist": a space added, not moved (and "rapist", outside the
    # dictionary, would not make its side the typo); an id written as one
    assert decide("Is he the rapist?", "Is he therapist?") is not None
    assert decide("status of ticket AB CDX", "status of ticket ABC DX") is not None


def test_typos_across_a_space_merge_and_far_moves_do_not():
    """The same letters with a space moved by a letter or two merge ("milesi n" / "miles in",
    "wayo f" / "way of", "cred itcard" / "credit card"); a space moved by more is another
    text ("cre ditcard")."""
    assert decide("How many air miles in economy?", "How many air milesi n economy?") is None
    assert decide("the best way of changing money", "the best wayo f changing money") is None
    assert decide("is my credit card blocked", "is my cred itcard blocked") is None
    assert decide("is my credit card blocked", "is my cre ditcard blocked") is not None


# -- the ASCII fast paths of the per-text features give the word-by-word answer ---------------

_ascii_piece = st.sampled_from([
    "ticket", "Ticket", "user", "order", "translate", "define", "ABCD", "AB", "A1", "1A", "I",
    "Mary", "Paris", "iPhone", "USB", "x", "the", "rock'n'roll", "'gato'", '"x"', "`y`", "3Com",
    "why", "EACCES", "Hello", "a", "don't", "What's", "12", "_AB", "ab_CD", "Foo-Bar",
])  # fmt: skip
_ascii_text = st.lists(
    st.one_of(_ascii_piece, st.text(alphabet="aAbB1 .,?!'\"`_-(\n", max_size=6)), max_size=12
).map(lambda xs: "".join(x if i % 3 else x + " " for i, x in enumerate(xs)))


@settings(max_examples=400, deadline=None)
@given(_ascii_text)
def test_the_ascii_feature_paths_give_the_word_by_word_answer(text) -> None:
    """Identifiers, spelled words and names of an ASCII text come from a few regex scans; the
    word-by-word loop that any other text takes is the reference."""
    from stratabatch.guards import _WORD, _ascii_idents, _idents_reference, _names

    assert _ascii_idents(text) == _idents_reference(text)
    assert _names(text) == _names(text, _WORD)


# -- the service addressed: "do you X" asks what "is there X" asks --------------------------


@pytest.mark.parametrize(
    "a, b",
    [
        ("Do you deliver on Sundays?", "Is delivery available on Sundays?"),
        ("Do you have this sofa in green?", "Is this sofa available in green?"),
        ("Do you accept PayPal for online orders?", "Is PayPal accepted for online orders?"),
        ("Can you ship the order to Canada?", "Is shipping the order to Canada possible?"),
        ("Do you charge a fee for wire transfers?", "Is there a fee for wire transfers?"),
        ("Did you send the invoice for March?", "Was the invoice for March sent?"),
        ("Are you open on public holidays?", "Is the branch open on public holidays?"),
        ("Do you need my passport to check in?", "Is my passport needed to check in?"),
        ("Do you offer student discounts?", "Are there student discounts?"),
    ],
)
def test_the_one_a_question_is_addressed_to_is_no_party(a, b):
    """A lone "you" right after the auxiliary that opens the question is the service asked,
    not a party: where the residue guard is relaxed (a sentence model) the roles guard lets
    the same question asked of no one through."""
    assert decide(a, b, paraphrases=True) is None
    assert decide(b, a, paraphrases=True) is None


@pytest.mark.parametrize(
    "a, b",
    [
        ("Do you deliver on Sundays?", "Do I deliver on Sundays?"),
        ("Do you have this sofa in green?", "Do we have this sofa in green?"),
        ("Can you ship the order to Canada?", "Can I ship the order to Canada?"),
        ("Do you charge a fee for wire transfers?", "Do you charge me a fee for wire transfers?"),
        ("Did you send the invoice for March?", "Did I send the invoice for March?"),
        ("Can you call me back tomorrow?", "Can I call back tomorrow?"),
        ("Do you need my passport to check in?", "Do I need my passport to check in?"),
        ("Do you offer student discounts?", "Do you offer us student discounts?"),
    ],
)
def test_another_person_beside_the_one_addressed_still_decides(a, b):
    v = decide(a, b, paraphrases=True)
    assert v is not None and v.guard == "roles", v
