"""Seeded synthetic traffic with ground truth: who asks what, when, and what means the same.

Content. Base intents are built from templates x slots across a dozen domains (weather,
shipping, smart-home commands, flights, orders, accounts, prices, store hours, translation,
invoices, refunds), about 250 of them, each with one to three paraphrases. Intents are drawn with
Zipf popularity (a random but seeded ranking), so duplicates arise as in real traffic. Each draw is
written as the canonical text, a *surface variant* (case, punctuation, spacing, filler words), a
*typo* variant, or a *paraphrase*. Around them: a unique long tail (never repeated), intents that
differ only in a number (order 4821 / 4812), opposites (turn on / off), swapped roles (from A to B /
from B to A), and long prompts that share a long preamble and differ in one word.

Ground truth. Every request carries its ``intent`` (requests with the same intent may share an
answer; any other merge is wrong) and its ``form``: requests with the same form differ only on the
surface, which the default hashing embedder is meant to catch; typos and paraphrases get forms of
their own because it does not catch them.

Arrivals. ``bursts``: B requests spread uniformly over D ms, then idle, repeated; ``poisson``: a
Poisson process whose rate follows a square wave (high, low, high, ...). Each request belongs to one
of N clients and to a *segment* (its burst, or its half period of the square wave): duplicates are
counted within a segment, since a batcher without a cache can only merge requests that are around at
the same time.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

CITIES = [
    "Paris",
    "London",
    "Berlin",
    "Madrid",
    "Rome",
    "Lisbon",
    "Vienna",
    "Prague",
    "Dublin",
    "Oslo",
    "Stockholm",
    "Helsinki",
    "Warsaw",
    "Athens",
    "Zurich",
    "Brussels",
    "Amsterdam",
    "Copenhagen",
    "Budapest",
    "Munich",
    "Milan",
    "Lyon",
    "Porto",
    "Seville",
]
COUNTRIES = [
    "Canada",
    "Mexico",
    "Brazil",
    "Japan",
    "Australia",
    "India",
    "Norway",
    "Chile",
    "Kenya",
    "Egypt",
    "Iceland",
    "Vietnam",
    "Peru",
    "Ireland",
    "Portugal",
    "Greece",
    "Turkey",
    "Morocco",
    "Singapore",
    "Argentina",
]
ROOMS = [
    "kitchen",
    "bedroom",
    "garage",
    "office",
    "hallway",
    "bathroom",
    "porch",
    "attic",
    "basement",
    "dining room",
]
HUBS = ["Paris", "London", "Berlin", "Madrid", "Rome", "Lisbon"]
ORDER_NUMBERS = [4821, 4812, 4822, 4281, 4820, 4128, 5821, 4831, 48210, 482, 1482, 4921]
ACTIONS = [
    "reset my password",
    "change my email address",
    "update my billing address",
    "delete my account",
    "enable two-factor authentication",
    "export my data",
    "change my username",
    "add a payment method",
    "remove a saved card",
    "download my receipts",
    "invite a team member",
    "change my plan",
    "turn off email notifications",
    "link my bank account",
    "verify my phone number",
    "close a support ticket",
    "set up automatic payments",
    "merge two accounts",
    "recover a deleted file",
    "change the account language",
]
PRODUCTS = [
    "basic plan",
    "premium plan",
    "wireless headphones",
    "standing desk",
    "espresso machine",
    "gaming mouse",
    "mechanical keyboard",
    "smart watch",
    "travel backpack",
    "water bottle",
    "office chair",
    "phone case",
    "desk lamp",
    "laptop stand",
    "yoga mat",
    "rain jacket",
    "coffee grinder",
    "bike helmet",
    "monitor arm",
    "winter boots",
]
STORES = CITIES[:12]
PHRASES = ["good morning", "thank you very much", "where is the station", "see you tomorrow"]
LANGUAGES = ["French", "German", "Spanish", "Italian", "Dutch", "Polish"]
MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]

# (canonical template, paraphrase templates, slot values); {} takes the slot (or two, for pairs)
FAMILIES: list[tuple[str, list[str], list[Any]]] = [
    (
        "What's the weather in {0}?",
        ["How is the weather in {0} right now?", "Tell me today's weather for {0}"],
        CITIES,
    ),
    ("Will it rain in {0} tomorrow?", ["Is rain expected in {0} tomorrow?"], CITIES),
    (
        "Do you ship to {0}?",
        ["Can I get a delivery to {0}?", "Is shipping to {0} available?"],
        COUNTRIES,
    ),
    ("Turn on the {0} lights", ["Switch the {0} lights on"], ROOMS),
    ("Turn off the {0} lights", ["Switch the {0} lights off"], ROOMS),
    (
        "Find flights from {0} to {1}",
        ["Show me flights from {0} to {1}", "I need a flight from {0} to {1}"],
        [(a, b) for a in HUBS for b in HUBS if a != b],
    ),
    (
        "Track my order {0}",
        ["Where is my order {0}?", "What's the status of order {0}?"],
        ORDER_NUMBERS,
    ),
    (
        "Cancel my order {0}",
        ["I want to cancel order {0}", "Stop order {0} from shipping"],
        ORDER_NUMBERS,
    ),
    ("How do I {0}?", ["What are the steps to {0}?", "Can you help me {0}?"], ACTIONS),
    ("What is the price of the {0}?", ["How much does the {0} cost?"], PRODUCTS),
    ("What are the opening hours of the {0} store?", ["When is the {0} store open?"], STORES),
    (
        "Translate '{0}' into {1}",
        ["How do you say '{0}' in {1}?"],
        [(p, lang) for p in PHRASES for lang in LANGUAGES],
    ),
    ("Show me my invoice for {0}", ["I need the invoice from {0}"], MONTHS),
    ("I want a refund for the {0}", ["How do I return the {0} for my money back?"], PRODUCTS),
]

PREAMBLE = (
    "You are the support assistant of a mid-sized online shop that sells office furniture, "
    "small kitchen appliances and outdoor clothing to customers in twenty countries. Answer "
    "politely and precisely, never invent order details, and never promise refunds or delivery "
    "dates that the policy below does not allow. Policy: items may be returned within thirty "
    "days when unused and in their original packaging; shipping is free above fifty euros; "
    "express delivery costs nine euros and arrives within two working days; warranty claims "
    "need a photo of the defect and the order reference. When a customer is upset, acknowledge "
    "the problem first, then give the next concrete step. Keep the answer under one hundred "
    "and twenty words and end with a short question that invites the customer to reply. "
)
LONG_TASKS: list[tuple[str, list[str]]] = [
    (
        "Task: write the reply in {0}.",
        [
            "English",
            "French",
            "German",
            "Spanish",
            "Italian",
            "Dutch",
            "Polish",
            "Swedish",
            "Danish",
            "Finnish",
        ],
    ),
    (
        "Task: write the reply in a {0} tone.",
        ["friendly", "formal", "brief", "detailed", "apologetic", "cheerful", "neutral", "warm"],
    ),
]

FILLERS_BEFORE = ["please ", "hey, ", "hi ", "hello, ", "ok "]
FILLERS_AFTER = [" please", " thanks", ", thank you", " pls"]
TAIL_ADJ = [
    "red",
    "compact",
    "cheapest",
    "quietest",
    "lightest",
    "largest",
    "refurbished",
    "eco",
    "foldable",
    "waterproof",
    "cordless",
    "vintage",
]
TAIL_USE = [
    "a small flat",
    "travel",
    "a home office",
    "camping",
    "a student",
    "a long commute",
    "winter",
    "a family of five",
    "a rooftop",
    "gifts",
]


@dataclass(frozen=True)
class Intent:
    """One meaning a request can have."""

    id: int
    """Ground-truth id: requests with the same id may share an answer."""
    text: str
    """Canonical wording."""
    paraphrases: tuple[str, ...] = ()
    """Other wordings of the same meaning."""
    kind: str = "base"
    """``base`` (templates x slots), ``long`` (shared preamble) or ``tail`` (unique)."""


@dataclass(frozen=True)
class Req:
    """One synthetic request and what the generator knows about it."""

    rid: int
    """Request id, 0..n-1 in arrival order."""
    t: float
    """Arrival time in seconds from the start of the run."""
    client: int
    """Which client (process, in the multiprocess modes) sends it."""
    segment: int
    """Burst index, or half-period index of the square wave."""
    text: str
    """What is sent as ``query``."""
    intent: int
    """Ground-truth meaning (see :class:`Intent`)."""
    form: str
    """Requests with equal ``form`` differ only in case, punctuation, spacing or fillers."""
    kind: str
    """The intent's kind: ``base``, ``long`` or ``tail``."""
    variant: str
    """How it was written: ``exact``, ``surface``, ``typo`` or ``paraphrase``."""

    def payload(self) -> dict[str, Any]:
        """The request mapping a mode sends: the text under ``query`` and the request id."""
        return {"query": self.text, "rid": self.rid}


@dataclass(frozen=True)
class WorkloadConfig:
    """Everything that determines a workload; equal configs give equal workloads."""

    seed: int = 1
    arrivals: str = "bursts"
    """``bursts`` (on/off) or ``poisson`` (square-wave rate)."""
    clients: int = 4
    bursts: int = 4
    burst_size: int = 1000
    burst_ms: float = 100.0
    gap_ms: float = 1500.0
    """Idle time after each burst."""
    rate_high: float = 2000.0
    """Poisson: requests/s in the high half periods."""
    rate_low: float = 200.0
    half_period_ms: float = 500.0
    duration_s: float = 4.0
    zipf_s: float = 1.0
    p_tail: float = 0.15
    p_long: float = 0.10
    p_surface: float = 0.30
    p_typo: float = 0.10
    p_paraphrase: float = 0.15

    def __post_init__(self) -> None:
        checks = [
            (self.arrivals in ("bursts", "poisson"), "arrivals must be 'bursts' or 'poisson'"),
            (self.clients >= 1, "clients must be >= 1"),
            (self.bursts >= 1 and self.burst_size >= 1, "bursts and burst_size must be >= 1"),
            (self.burst_ms > 0 and self.gap_ms >= 0, "burst_ms must be > 0, gap_ms >= 0"),
            (self.rate_high > 0 and self.rate_low >= 0, "rate_high must be > 0, rate_low >= 0"),
            (
                self.half_period_ms > 0 and self.duration_s > 0,
                "half_period_ms and duration_s must be > 0",
            ),
            (self.zipf_s >= 0, "zipf_s must be >= 0"),
            (
                0 <= self.p_tail and 0 <= self.p_long and self.p_tail + self.p_long <= 1,
                "p_tail and p_long must be >= 0 with p_tail + p_long <= 1",
            ),
            (
                min(self.p_surface, self.p_typo, self.p_paraphrase) >= 0
                and self.p_surface + self.p_typo + self.p_paraphrase <= 1,
                "p_surface, p_typo, p_paraphrase must be >= 0 and sum to <= 1",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"{message}; got {self}")


@dataclass
class Workload:
    """Requests in arrival order, with the intents they were drawn from."""

    config: WorkloadConfig
    requests: list[Req]
    intents: dict[int, Intent] = field(repr=False)

    def __len__(self) -> int:
        return len(self.requests)

    def truth(self) -> dict[str, int]:
        """Ground-truth counts of duplicates, within segments and over the whole run.

        Returns:
            ``dups_existing`` (requests minus distinct intents, per segment, summed),
            ``dups_catchable`` (the same with forms: duplicates that differ only on the
            surface), ``dups_existing_run`` (over the whole run: what a cache could save), and
            counts per kind and variant.
        """
        by_seg: dict[int, list[Req]] = {}
        for r in self.requests:
            by_seg.setdefault(r.segment, []).append(r)
        existing = sum(len(rs) - len({r.intent for r in rs}) for rs in by_seg.values())
        catchable = sum(len(rs) - len({r.form for r in rs}) for rs in by_seg.values())
        out = {
            "requests": len(self.requests),
            "segments": len(by_seg),
            "distinct_intents": len({r.intent for r in self.requests}),
            "dups_existing": existing,
            "dups_catchable": catchable,
            "dups_existing_run": len(self.requests) - len({r.intent for r in self.requests}),
        }
        for name, count in sorted(Counter(r.kind for r in self.requests).items()):
            out[f"kind_{name}"] = count
        for name, count in sorted(Counter(r.variant for r in self.requests).items()):
            out[f"variant_{name}"] = count
        return out

    def describe(self) -> dict[str, Any]:
        """The configuration and the ground truth, for the JSON report."""
        return {
            "config": asdict(self.config),
            "truth": self.truth(),
            "base_intents": sum(1 for i in self.intents.values() if i.kind == "base"),
            "long_intents": sum(1 for i in self.intents.values() if i.kind == "long"),
        }


def base_intents() -> list[Intent]:
    """The templated intents, in a fixed order (ids 0..k-1)."""
    out: list[Intent] = []
    for canonical, paras, slots in FAMILIES:
        for slot in slots:
            args = slot if isinstance(slot, tuple) else (slot,)
            out.append(
                Intent(len(out), canonical.format(*args), tuple(p.format(*args) for p in paras))
            )
    return out


def long_intents(first_id: int) -> list[Intent]:
    """Long prompts: the shared preamble plus a task that differs in one word."""
    out = []
    for task, words in LONG_TASKS:
        for w in words:
            out.append(Intent(first_id + len(out), PREAMBLE + task.format(w), kind="long"))
    return out


def surface_variant(text: str, rnd: random.Random) -> str:
    """The same words typed differently: case, punctuation, spacing, a filler word or two.

    Never returns ``text`` itself.
    """
    for _ in range(10):
        out = text
        for op in rnd.sample(range(6), rnd.randint(1, 2)):
            if op == 0:
                out = out.lower()
            elif op == 1:
                out = out.upper() if len(out) < 80 else out[:-40] + out[-40:].upper()
            elif op == 2:
                out = out.rstrip("?.!") + rnd.choice(["", "?", "!", " ?", "..", "!!"])
            elif op == 3:
                out = "  " + out.replace(" ", "  ", 2) + " "
            elif op == 4:
                out = rnd.choice(FILLERS_BEFORE) + out
            else:
                out = out.rstrip("?.!") + rnd.choice(FILLERS_AFTER) + "?"
        if out != text:
            return out
    return text + "!"


def typo_variant(text: str, rnd: random.Random) -> str:
    """One typing slip in one word (swap, drop or double a letter); never returns ``text``."""
    words = text.split(" ")
    # only the last words of a long prompt: the preamble stays intact, the task gets the typo
    candidates = [i for i, w in enumerate(words) if len(w) >= 4 and w.isalpha()]
    if len(words) > 30:
        candidates = [i for i in candidates if i >= len(words) - 8] or candidates
    if not candidates:
        return text + "x"
    i = rnd.choice(candidates)
    w = words[i]
    j = rnd.randrange(1, len(w) - 1)
    op = rnd.randrange(3)
    if op == 0 and w[j] != w[j + 1]:
        w = w[:j] + w[j + 1] + w[j] + w[j + 2 :]
    elif op == 1:
        w = w[:j] + w[j + 1 :]
    else:
        w = w[:j] + w[j] + w[j:]
    words[i] = w
    out = " ".join(words)
    return out if out != text else text + "x"


def _tail_text(rnd: random.Random, used: set[str]) -> str:
    while True:
        if rnd.random() < 0.5:
            text = (
                f"Compare the {rnd.choice(TAIL_ADJ)} {rnd.choice(PRODUCTS)} with the "
                f"{rnd.choice(TAIL_ADJ)} {rnd.choice(PRODUCTS)} for {rnd.choice(TAIL_USE)}"
            )
        else:
            text = (
                f"What happened to support ticket {rnd.randrange(100000, 999999)} about the "
                f"{rnd.choice(PRODUCTS)}?"
            )
        if text not in used:
            used.add(text)
            return text


def _arrivals(cfg: WorkloadConfig, rnd: random.Random) -> list[tuple[float, int]]:
    """(time s, segment) of every request, sorted by time."""
    out: list[tuple[float, int]] = []
    if cfg.arrivals == "bursts":
        period = (cfg.burst_ms + cfg.gap_ms) / 1000
        for b in range(cfg.bursts):
            start = b * period
            out += [(start + rnd.uniform(0, cfg.burst_ms / 1000), b) for _ in range(cfg.burst_size)]
    elif cfg.arrivals == "poisson":
        # thinning: candidate events at the high rate, each kept with rate(t) / rate_high
        half = cfg.half_period_ms / 1000
        top = max(cfg.rate_high, cfg.rate_low)
        t = 0.0
        while True:
            t += rnd.expovariate(top)
            if t >= cfg.duration_s:
                break
            seg = int(t // half)
            rate = cfg.rate_high if seg % 2 == 0 else cfg.rate_low
            if rnd.random() * top < rate:
                out.append((t, seg))
    else:
        raise ValueError(f"arrivals must be 'bursts' or 'poisson', got {cfg.arrivals!r}")
    out.sort()
    return out


def _zipf_weights(n: int, s: float) -> list[float]:
    return [1.0 / math.pow(k, s) for k in range(1, n + 1)]


def generate(cfg: WorkloadConfig) -> Workload:
    """Build the workload that ``cfg`` describes (same config, same requests).

    Args:
        cfg: the workload's parameters, seed included.

    Returns:
        The requests in arrival order with every intent they were drawn from.
    """
    rnd = random.Random(cfg.seed)
    base = base_intents()
    longs = long_intents(len(base))
    intents = {i.id: i for i in base + longs}
    base_rank = base[:]
    rnd.shuffle(base_rank)
    long_rank = longs[:]
    rnd.shuffle(long_rank)
    base_w = _zipf_weights(len(base_rank), cfg.zipf_s)
    long_w = _zipf_weights(len(long_rank), cfg.zipf_s)
    used_tail: set[str] = set()
    requests: list[Req] = []
    for rid, (t, seg) in enumerate(_arrivals(cfg, rnd)):
        client = rnd.randrange(cfg.clients)
        u = rnd.random()
        if u < cfg.p_tail:
            intent = Intent(len(intents), _tail_text(rnd, used_tail), kind="tail")
            intents[intent.id] = intent
        elif u < cfg.p_tail + cfg.p_long:
            intent = rnd.choices(long_rank, long_w)[0]
        else:
            intent = rnd.choices(base_rank, base_w)[0]
        v = rnd.random()
        text, variant, form = intent.text, "exact", f"{intent.id}"
        if intent.kind == "tail":
            pass  # a unique request: its canonical text only
        elif v < cfg.p_surface:
            text, variant = surface_variant(intent.text, rnd), "surface"
        elif v < cfg.p_surface + cfg.p_typo:
            text, variant = typo_variant(intent.text, rnd), "typo"
            form = f"{intent.id}~{text.lower()}"
        elif v < cfg.p_surface + cfg.p_typo + cfg.p_paraphrase and intent.paraphrases:
            k = rnd.randrange(len(intent.paraphrases))
            text, variant, form = intent.paraphrases[k], "paraphrase", f"{intent.id}/p{k}"
            if rnd.random() < 0.5:
                text = surface_variant(text, rnd)
        requests.append(Req(rid, t, client, seg, text, intent.id, form, intent.kind, variant))
    return Workload(cfg, requests, intents)
