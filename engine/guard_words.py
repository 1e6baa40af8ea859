"""The word lists the merge guards (:mod:`stratabatch.guards`) read.

Written for stratabatch from general English usage: negations, curated opposite pairs,
negating prefixes, words of scope (whose, how many), role words that take an argument, the
determiners skipped before that argument, and lower-case words that name things as proper
nouns do (dates, times, units, currencies, products). They are data, kept apart from the
guards' logic; every word here can only veto a merge, never cause one.
"""

from __future__ import annotations

NEGATIONS = frozenset((
    "not", "no", "never", "without", "none", "nothing", "nobody", "neither", "nor", "nowhere",
    "cannot", "lacking", "except",
))  # fmt: skip

OPPOSITE_PAIRS: tuple[tuple[str, str], ...] = (
    ("open", "closed"), ("open", "close"), ("opened", "closed"), ("opening", "closing"),
    ("on", "off"), ("enable", "disable"), ("enabled", "disabled"), ("activate", "deactivate"),
    ("add", "remove"), ("added", "removed"), ("adding", "removing"), ("add", "delete"),
    ("increase", "decrease"), ("increased", "decreased"), ("raise", "lower"),
    ("higher", "lower"), ("high", "low"), ("more", "less"), ("more", "fewer"),
    ("most", "least"), ("max", "min"), ("maximum", "minimum"), ("before", "after"),
    ("eat", "avoid"), ("take", "avoid"), ("accept", "decline"), ("accept", "reject"),
    ("approve", "reject"), ("approve", "deny"), ("approved", "rejected"),
    ("approved", "denied"), ("allow", "block"), ("allow", "deny"), ("allow", "forbid"),
    ("allowed", "blocked"), ("allowed", "forbidden"), ("lock", "unlock"), ("start", "stop"),
    ("start", "end"), ("begin", "end"), ("first", "last"), ("next", "last"),
    ("next", "previous"), ("upload", "download"), ("import", "export"),
    ("buy", "sell"), ("bought", "sold"), ("buying", "selling"), ("deposit", "withdraw"),
    ("deposit", "withdrawal"), ("credit", "debit"), ("pay", "refund"), ("send", "receive"),
    ("sent", "received"), ("incoming", "outgoing"), ("inbound", "outbound"),
    ("arrival", "departure"), ("arrive", "depart"), ("arrivals", "departures"),
    ("in", "out"), ("up", "down"), ("upgrade", "downgrade"), ("join", "leave"),
    ("subscribe", "unsubscribe"), ("include", "exclude"), ("included", "excluded"),
    ("with", "without"), ("hot", "cold"), ("warm", "cool"), ("heat", "cool"),
    ("heating", "cooling"), ("fast", "slow"), ("faster", "slower"), ("early", "late"),
    ("earlier", "later"), ("earliest", "latest"), ("new", "old"), ("newest", "oldest"),
    ("cheap", "expensive"), ("cheapest", "priciest"), ("cheaper", "pricier"),
    ("long", "short"), ("longer", "shorter"), ("big", "small"), ("bigger", "smaller"),
    ("large", "small"), ("larger", "smaller"), ("light", "dark"), ("lighter", "darker"),
    ("safe", "dangerous"), ("true", "false"), ("yes", "no"), ("win", "lose"),
    ("pass", "fail"), ("success", "failure"), ("public", "private"), ("internal", "external"),
    ("domestic", "international"), ("left", "right"), ("top", "bottom"), ("above", "below"),
    ("over", "under"), ("inside", "outside"), ("front", "back"), ("north", "south"),
    ("east", "west"), ("push", "pull"), ("show", "hide"), ("visible", "hidden"),
    ("mute", "unmute"), ("connect", "disconnect"), ("install", "uninstall"),
    ("encrypt", "decrypt"), ("compress", "decompress"), ("zoom", "unzoom"),
    ("expand", "collapse"), ("online", "offline"), ("plus", "minus"), ("gain", "lose"),
    ("gain", "loss"), ("profit", "loss"), ("asc", "desc"), ("ascending", "descending"),
    ("morning", "evening"), ("morning", "night"), ("day", "night"), ("am", "pm"),
    ("today", "tomorrow"), ("today", "yesterday"), ("tomorrow", "yesterday"),
    ("weekday", "weekend"), ("winter", "summer"), ("spring", "autumn"), ("spring", "fall"),
    ("male", "female"), ("men", "women"), ("man", "woman"), ("boy", "girl"),
    ("adult", "child"), ("adults", "children"), ("maximum", "minimum"), ("full", "empty"),
    ("wet", "dry"), ("hard", "soft"), ("strong", "weak"), ("healthy", "unhealthy"),
    ("legal", "illegal"), ("possible", "impossible"), ("correct", "incorrect"),
    ("valid", "invalid"), ("paid", "unpaid"), ("read", "unread"), ("follow", "unfollow"),
    ("pin", "unpin"), ("archive", "unarchive"), ("freeze", "unfreeze"),
    ("pause", "resume"), ("pause", "play"), ("save", "discard"), ("keep", "cancel"),
    ("keep", "delete"), ("keep", "remove"), ("merge", "split"), ("attach", "detach"),
    ("include", "omit"), ("allow", "disallow"), ("agree", "disagree"), ("like", "dislike"),
    ("love", "hate"), ("like", "hate"), ("should", "should not"), ("can", "can not"),
    ("must", "must not"), ("always", "never"), ("everyone", "nobody"), ("all", "none"),
    ("cash", "card"), ("sender", "recipient"), ("buyer", "seller"), ("landlord", "tenant"),
    ("employer", "employee"), ("parent", "child"), ("host", "guest"),
)  # fmt: skip

NEGATING_PREFIXES = ("un", "in", "im", "il", "ir", "dis", "non", "de", "anti", "mis")
NEGATING_PREFIX_SET = frozenset(NEGATING_PREFIXES)

# Words whose difference changes whose or how much is asked for.
SCOPE_WORDS = frozenset((
    "my", "mine", "our", "ours", "your", "yours", "his", "her", "hers", "their", "theirs",
    "its", "all", "every", "each", "both", "any", "some", "several", "few", "many",
    "everyone", "everybody", "someone", "somebody", "anyone", "anybody", "whole", "entire",
    "only", "single", "partner", "partners", "wife", "husband", "spouse", "family", "kid",
    "kids", "child", "children", "son", "daughter", "mom", "dad", "mother", "father",
    "parent", "parents", "friend", "friends", "boss", "colleague", "team", "company",
    "business", "personal", "joint", "shared", "we", "us", "they", "them", "he", "she",
    "him",
))  # fmt: skip

ROLE_MARKERS = frozenset((
    "from", "to", "into", "onto", "toward", "via", "before", "after", "than", "over", "vs",
    "versus", "instead", "under", "above", "below", "between", "per",
))  # fmt: skip
DETERMINERS = frozenset((
    "a", "an", "the", "my", "your", "our", "their", "his", "her", "its", "this", "that",
    "these", "those", "of",
))  # fmt: skip

# Lower-case words that name a thing as a proper noun would: dates, times, units, currencies,
# and products or services people type without capitals.
ENTITY_WORDS = frozenset((
    "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday",
    "mon", "tue", "tues", "wed", "thu", "thurs", "fri", "sat", "sun",
    "january", "february", "march", "april", "june", "july", "august", "september",
    "october", "november", "december", "jan", "feb", "apr", "jun", "jul", "aug", "sep",
    "sept", "oct", "nov", "dec", "today", "tomorrow", "yesterday", "tonight", "weekend",
    "noon", "midnight", "morning", "afternoon", "evening", "night",
    "kg", "kgs", "kilogram", "kilograms", "g", "gram", "grams", "mg", "lb", "lbs", "pound",
    "pounds", "oz", "ounce", "ounces", "ton", "tons", "tonne", "tonnes", "km", "kilometer",
    "kilometers", "mile", "miles", "m", "meter", "meters", "cm", "mm", "inch", "inches",
    "foot", "feet", "ft", "yard", "yards", "liter", "liters", "l", "ml", "gallon", "gallons",
    "cup", "cups", "celsius", "fahrenheit", "c", "f", "mph", "kph", "gb", "mb", "kb", "tb",
    "ghz", "mhz", "hz", "second", "seconds", "minute", "minutes", "hour", "hours", "day",
    "days", "week", "weeks", "month", "months", "year", "years", "percent",
    "usd", "eur", "euro", "euros", "gbp", "dollar", "dollars", "cent", "cents", "yen", "jpy",
    "cad", "aud", "chf", "inr", "rupee", "rupees", "peso", "pesos", "franc", "francs", "yuan",
    "btc", "bitcoin", "eth", "ethereum",
    "netflix", "spotify", "hulu", "disney", "amazon", "google", "apple", "microsoft",
    "windows", "mac", "macos", "linux", "ubuntu", "ios", "android", "iphone", "ipad",
    "samsung", "paypal", "venmo", "zelle", "visa", "mastercard", "amex", "uber",
    "lyft", "airbnb", "chrome", "firefox", "safari", "excel", "outlook", "gmail",
    "yahoo", "slack", "zoom", "whatsapp", "instagram", "facebook", "twitter", "tiktok",
    "youtube", "linkedin", "dropbox", "github", "python", "java", "javascript", "docker",
    "kubernetes", "aws", "azure", "fedex", "ups", "usps", "dhl", "ikea", "walmart", "costco",
    "lufthansa", "ryanair", "medicare", "medicaid",
))  # fmt: skip
