"""The English word knowledge of near-duplicate dedup: every word table, the dictionary and
the typo rule.

Written for stratabatch from general English usage. The canonical text
(:mod:`stratabatch.canon`) drops :data:`FILLER_WORDS` and the courtesy phrases and folds the
question frames and British spellings listed here; the hashing embedder drops
:data:`DEFAULT_STOP_WORDS`; the word index ranks :data:`COMMON_WORDS` last. The merge guards
(:mod:`stratabatch.guards`) read the rest: negations, curated opposite pairs, negating
prefixes, words of scope (whose, how many), role words that take an argument, the determiners
skipped before that argument, lower-case words that name things as proper nouns do (dates,
times, units, currencies, products), and the words after which a word is an identifier. Every
guard word can only veto a merge, never cause one.

:func:`is_typo_of` is the typo rule (edit distance with transpositions, never two
:func:`dictionary` words); :func:`ignorable` says which words one side lacks are no reason to
refuse a merge (articles, mistyped fillers).
"""

from __future__ import annotations

import threading
from pathlib import Path

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
    ("allowed", "banned"), ("allow", "ban"), ("permitted", "banned"), ("permit", "ban"),
    ("permitted", "forbidden"), ("permitted", "prohibited"), ("allowed", "prohibited"),
    ("legal", "banned"), ("mandatory", "optional"), ("compulsory", "optional"),
    ("required", "optional"), ("benign", "malignant"), ("positive", "negative"),
    ("heavier", "lighter"), ("heavy", "light"), ("encode", "decode"), ("loosen", "tighten"),
    ("stricter", "lenient"), ("strict", "lenient"), ("borrow", "lend"), ("borrowed", "lent"),
    ("borrowing", "lending"), ("better", "worse"), ("best", "worst"), ("good", "bad"),
    ("rich", "poor"), ("remember", "forget"), ("accept", "refuse"), ("secure", "insecure"),
    ("safer", "riskier"), ("safe", "risky"), ("wider", "narrower"), ("thick", "thin"),
    ("cheaper", "dearer"), ("sooner", "later"), ("win", "loss"), ("won", "lost"),
    ("increase", "reduce"), ("raise", "cut"), ("inhale", "exhale"), ("overpaid", "underpaid"),
    ("overweight", "underweight"), ("overestimate", "underestimate"), ("maximize", "minimize"),
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


# -------------------------------------------------------------------------------------------
# The canonical text (stratabatch.canon): what it drops and folds; see docs/embedders.md
# -------------------------------------------------------------------------------------------

#: Single words dropped wherever they stand: greetings, sign-offs, courtesy, speech fillers.
FILLER_WORDS: frozenset[str] = frozenset((
    "hi", "hello", "hey", "heya", "hiya", "howdy", "greetings",
    "thanks", "thank", "thx", "ty", "tia", "cheers", "regards", "thankyou",
    "please", "pls", "plz", "kindly",
    "um", "umm", "ummm", "uh", "uhh", "uhm", "er", "erm", "hmm", "hmmm", "ah", "eh", "oh",
    "so", "yeah", "yep", "ok", "okay", "alright", "anyway", "anyways",
    "basically", "actually", "literally", "honestly", "really", "somehow", "truly", "indeed",
    "exactly", "maybe", "perhaps", "possibly",
))  # fmt: skip

# Multi-word phrases dropped as a whole (longest match first). A phrase only goes when all
# its words are there: "thank you" goes, "you" alone never does.
DROP_PHRASES: tuple[str, ...] = (
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
    "let me know", "for me", "in fact", "as a matter of fact", "in reality", "to be honest",
)  # fmt: skip

# Multi-word rewrites: a question frame or a compound spelled in two words.
FOLD_PHRASES: dict[str, str] = {
    "how can i": "how do i", "how could i": "how do i", "how would i": "how do i",
    "how should i": "how do i", "how might i": "how do i", "how does one": "how do i",
    "how to": "how do i",
    "how would one": "how do i", "how do i go about": "how do i",
    "how can i go about": "how do i", "what is the way to": "how do i",
    "what is the best way to": "how do i", "is there a way to": "how do i",
    "what is a good way to": "how do i", "what is a way to": "how do i",
    "what is the right way to": "how do i", "what is the correct way to": "how do i",
    "what is the proper way to": "how do i", "what is the recommended way to": "how do i",
    "what is a simple way to": "how do i", "what is an easy way to": "how do i",
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
SPELLING: dict[str, str] = {
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
    "mum": "mom", "postcode": "zipcode", "tumour": "tumor", "tumours": "tumors",
    "enquiry": "inquiry", "enquiries": "inquiries",
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

#: "how do you X" asks how anyone does X ("how do you boil an egg") unless the text speaks of
#: the asker too ("how do you store my card details": what the service does with my data);
#: only then does it stay apart from "how do I X" (see stratabatch.canon).
GENERIC_YOU_FRAMES: dict[str, str] = {"how do you": "how do i", "how can you": "how do i"}
FIRST_PERSON = frozenset((
    "i", "me", "my", "mine", "myself", "we", "us", "our", "ours", "ourselves",
))  # fmt: skip

#: "just" is a filler before a verb ("can I just pay off my loan") and means "only" before a
#: pronoun, an article, a number or "for" ("just me", "just my passport", "just 5 minutes");
#: after an article it is an adjective ("a just war"). It is dropped only in the first place.
JUST_KEEP_BEFORE = frozenset((
    "me", "my", "you", "your", "us", "our", "him", "his", "her", "them", "their", "it", "its",
    "this", "that", "these", "those", "the", "a", "an", "one", "two", "three", "for", "once",
    "twice", "in", "on", "at", "about", "over", "under", "like", "as",
))  # fmt: skip
JUST_KEEP_AFTER = frozenset(("a", "an", "the", "more", "most", "less", "least", "very", "so"))

#: Adjacent letters swapped in a frequent short word ("teh", "hwy", "ofr", "yuo", "shuold"),
#: folded back by the canonical text. Generated from ~90 frequent words (the function words
#: and question words the residue guard cannot pair, being ignorable or under 4 letters),
#: keeping only the swaps that are not dictionary words (:func:`dictionary`) nor any other
#: word the tables know, and that come from one word only; tests/test_canon.py rebuilds it.
#: "rae" (a name, and in the dictionary) is kept as the issue's own example of "are".
TRANSPOSED_WORDS: dict[str, str] = dict(
    pair.split(":")
    for pair in """
    aagin:again abotu:about abuot:about acn:can adn:and aech:each aer:are afetr:after
    aftre:after agani:again agian:again ahs:has ahve:have alos:also amke:make amny:many
    aobut:about aslo:also atfer:after atke:take awnt:want ayn:any baout:about befoer:before
    befroe:before beign:being benig:being beofre:before bfeore:before bieng:being btu:but
    cna:can colud:could coudl:could cuold:could ddi:did deos:does eahc:each eben:been
    ebfore:before ebing:being ecah:each eevry:every egt:get ehr:her ehre:here ened:need enw:new
    etll:tell eveyr:every evrey:every ewre:were fater:after fidn:find fnid:find frmo:from
    fro:for gaain:again giev:give gte:get gvie:give haev:have heer:here hmi:him hre:her
    hree:here hsa:has hse:she hsi:his hsould:should hsow:show htan:than htat:that hte:the
    hteir:their htem:them hten:then htere:there htese:these htey:they htis:this htose:those
    hvae:have hwat:what hwen:when hwere:where hwich:which hwom:whom hwose:whose hwy:why idd:did
    ifnd:find igve:give ihm:him ihs:his ilke:like imght:might inot:into itno:into iwll:will
    iwth:with jsut:just juts:just knwo:know konw:know laso:also liek:like lkie:like maek:make
    mayn:many mcuh:much mgiht:might migth:might mihgt:might mkae:make mnay:many moer:more
    mroe:more msot:most msut:must muhc:much muts:must mya:may nede:need nito:into nkow:know
    noly:only noto:onto nto:not nuder:under nwe:new nwo:now oculd:could odes:does oen:one
    oevr:over ofr:for ohter:other ohw:how olny:only omre:more omst:most onot:onto ont:not
    onw:now onyl:only oru:our osme:some otehr:other othre:other otno:onto otu:out ovre:over
    owuld:would oyu:you oyur:your rfom:from scuh:such seh:she sholud:should shoudl:should
    shuold:should shwo:show smoe:some soem:some sohuld:should sohw:show suhc:such taek:take
    tahn:than taht:that teh:the tehir:their tehm:them tehn:then tehre:there tehse:these
    tehy:they theer:there thees:these theri:their thier:their thme:them thna:than thne:then
    thoes:those thsee:these thsi:this thsoe:those thta:that thye:they tihs:this tkae:take
    tlel:tell toher:other tohse:those ubt:but udner:under ues:use uesd:used uisng:using
    ujst:just umch:much umst:must undre:under unedr:under uor:our uot:out usch:such usde:used
    usign:using usnig:using veery:every veyr:very voer:over vrey:very waht:what watn:want
    weer:were wehn:when wehre:where whcih:which wheer:where whihc:which whmo:whom whne:when
    whoes:whose whree:where whsoe:whose whta:what wihch:which wiht:with wlil:will wnat:want
    woh:who wohm:whom wohse:whose wolud:would woudl:would wree:were wsa:was wtih:with wto:two
    wuold:would wyh:why yoru:your yuo:you yuor:your

    rae:are og:go
    """.split()
)
#: The words the frequent-word swaps were generated from (tests/test_canon.py).
TRANSPOSED_SOURCES = (
    "the and for you your are was were what how why when where which who whom whose with from "
    "this that these those have has does did can could would should will not but all any get "
    "there their they them then than about know want need make our out now new one two its his "
    "her she him may might must been being into onto over under after before again also only "
    "very some more most much many each every other such here use using used like just show "
    "tell give find take"
).split()
TRANSPOSED_SKIPPED = frozenset(("suing", "evry", "hwo", "noe", "mots", "bene"))

LEADING_JOINERS = frozenset(("but", "and", "also"))

# -------------------------------------------------------------------------------------------
# Who does what, and when (stratabatch.guards: roles, tense)
# -------------------------------------------------------------------------------------------

#: Personal pronouns by person and case: two texts that give the asker and the other party
#: other places ("why are people staring at me" / "why do i stare at people", "can you call
#: me" / "can i call you") ask different things whatever a sentence model's cosine says.
PERSONAL_PRONOUNS = frozenset((
    "i", "me", "myself", "we", "us", "ourselves", "you", "yourself", "yourselves",
))  # fmt: skip
#: The auxiliaries of a passive ("was the tenant sued by the landlord") and of the question
#: it answers ("did the landlord sue the tenant").
PASSIVE_AUX = frozenset(("was", "were", "is", "are", "am", "been", "be", "being", "get", "got"))
QUESTION_AUX = frozenset((
    "did", "does", "do", "has", "have", "had", "is", "are", "was", "were", "will", "can",
    "could", "would", "should", "may", "might", "must", "shall",
))  # fmt: skip
#: The tense an auxiliary marks: "is the vpn down" / "was the vpn down" / "will it be down".
#: The perfect ("has my salary arrived") marks none: it answers a past question too.
TENSE_OF = {
    "is": "present", "are": "present", "am": "present", "does": "present", "do": "present",
    "was": "past", "were": "past", "did": "past", "used": "past",
    "will": "future", "shall": "future", "going": "future",
}  # fmt: skip
#: Words that put the question at another time: "do you still sell" / "did you sell".
TIME_WORDS = frozenset(("still", "anymore", "already", "yet", "ever", "formerly", "previously"))
# "order no 4521", "order number 4521", "order nr 4521" and "order #4521" are one thing.
NUMBER_WORDS = frozenset(("no", "nr", "num", "number"))

# "like" is kept after these words (a verb or comparison: "would like", "looks like");
# elsewhere in a question it is a speech filler ("how do i like update my address").
LIKE_KEEPERS = frozenset((
    "would", "look", "looks", "looked", "looking", "feel", "feels", "felt", "seem", "seems",
    "sound", "sounds", "something", "anything", "nothing", "things", "more", "much", "less",
    "not", "dislike", "unlike", "what", "exactly", "taste", "tastes", "act", "acts",
))  # fmt: skip


# -------------------------------------------------------------------------------------------
# The hashing embedder (stratabatch.embed)
# -------------------------------------------------------------------------------------------

# Politeness and filler words that do not change what a request asks for ("please cancel my
# order" is "cancel my order"). Kept short and generic on purpose: a domain word here would
# make different requests collide. A text made only of these words keeps them.
DEFAULT_STOP_WORDS: tuple[str, ...] = (
    "please", "pls", "plz", "kindly", "hey", "hi", "hello", "thanks", "thank", "thx", "ty",
    "um", "uh", "umm", "hmm", "ok", "okay", "so", "just", "quick", "question",
)  # fmt: skip


# -------------------------------------------------------------------------------------------
# The merge guards (stratabatch.guards): tables built from the lists above, the typo rule
# -------------------------------------------------------------------------------------------

# a word one side lacks that is never a reason to refuse
IGNORABLE_WORDS = frozenset(("a", "an", "the", "of", "also", "now", "currently"))
# words of one or two letters a run of words with spaces moved may hold as known words ("wayo
# f" / "way of": stratabatch.guards), beside the dictionary's (3+ letters)
SHORT_WORDS = frozenset((
    "a", "i", "am", "an", "as", "at", "be", "by", "do", "go", "he", "if", "in", "is", "it",
    "me", "my", "no", "of", "on", "or", "so", "to", "up", "us", "we", "ok",
))  # fmt: skip
# the fillers a word one side lacks may be a typo of (and then be ignorable): 5+ letters
TYPO_FILLERS: tuple[str, ...] = tuple(sorted(f for f in FILLER_WORDS if len(f) >= 5))
# by (first letter, length of a word that may be a typo of them)
_FILLERS_BY_START: dict[tuple[str, int], list[str]] = {}
for _f in TYPO_FILLERS:
    for _n in (len(_f) - 1, len(_f), len(_f) + 1):
        _FILLERS_BY_START.setdefault((_f[0], _n), []).append(_f)

OPPOSITES: dict[str, frozenset[str]] = {}
for _a, _b in OPPOSITE_PAIRS:
    if " " in _a or " " in _b:
        continue
    OPPOSITES[_a] = OPPOSITES.get(_a, frozenset()) | {_b}
    OPPOSITES[_b] = OPPOSITES.get(_b, frozenset()) | {_a}

# -------------------------------------------------------------------------------------------
# Dictionary words (to tell a typo from a different word)
# -------------------------------------------------------------------------------------------

_VOCAB_PATH = Path(__file__).resolve().parent / "data" / "all-MiniLM-L6-v2-vocab.txt"
_vocab_lock = threading.Lock()
_vocab: frozenset[str] | None = None


#: Words of requests the vocabulary lacks, each one edit from another word ("lien" / "line"):
#: without them the typo rule would take one for a typo of the other.
EXTRA_WORDS = frozenset((
    "lien", "liens", "escrow", "annuity", "payee", "payor", "lessor", "lessee",
))  # fmt: skip


def dictionary() -> frozenset[str]:
    """Whole English words of the shipped WordPiece vocabulary (~20k) and
    :data:`EXTRA_WORDS`, loaded on first use."""
    global _vocab
    with _vocab_lock:
        if _vocab is None:
            words = _VOCAB_PATH.read_text(encoding="utf-8").split("\n")
            _vocab = EXTRA_WORDS | frozenset(
                w for w in words if len(w) >= 3 and w.isalpha() and w.isascii()
            )
        return _vocab


def osa_distance(a: str, b: str, limit: int) -> int:
    """Edit distance with adjacent transpositions (optimal string alignment), capped at
    ``limit + 1``."""
    la, lb = len(a), len(b)
    if abs(la - lb) > limit:
        return limit + 1
    # the common beginning and end cost nothing: trim them (C-speed compares), then the
    # quadratic part runs on the few letters around the edits
    p = 0
    m = min(la, lb)
    while p < m and a[p] == b[p]:
        p += 1
    q = 0
    while q < m - p and a[la - 1 - q] == b[lb - 1 - q]:
        q += 1
    a, b = a[p : la - q], b[p : lb - q]
    la, lb = len(a), len(b)
    if la == 0 or lb == 0:
        return max(la, lb)
    if la == lb == 1:
        return 1
    if la == lb == 2 and a[0] == b[1] and a[1] == b[0]:
        return 1
    prev2: list[int] = []
    prev = list(range(lb + 1))
    for i in range(1, la + 1):
        cur = [i] + [0] * lb
        ai = a[i - 1]
        best = cur[0]
        for j in range(1, lb + 1):
            cost = 0 if ai == b[j - 1] else 1
            v = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and ai == b[j - 2] and a[i - 2] == b[j - 1]:
                v = min(v, prev2[j - 2] + 1)
            cur[j] = v
            if v < best:
                best = v
        if best > limit:
            return limit + 1
        prev2, prev = prev, cur
    return prev[lb]


def is_plural_pair(a: str, b: str) -> bool:
    """Whether one word is the other's plural ("order" / "orders"); the singular has 3+
    letters ("i" / "is" is none), and one that ends in "s" takes "es" ("class" / "classes";
    "wireless" / "wirelesss" is a typo)."""
    if len(a) > len(b):
        a, b = b, a
    if len(a) < 3:
        return False
    if b == a + "s":
        return a[-1] != "s"
    return b == a + "es" or (a.endswith("y") and b == a[:-1] + "ies")


def is_prefix_negation(a: str, b: str) -> bool:
    if len(a) > len(b):
        a, b = b, a
    if len(a) < 3 or len(b) - len(a) > 4 or not b.endswith(a):
        return False
    return b[: len(b) - len(a)] in NEGATING_PREFIX_SET


def is_typo_of(a: str, b: str, max_distance: int = 2) -> bool:
    """Whether ``a`` and ``b`` can be the same word mistyped.

    True when both are alphabetic with 4+ letters, their edit distance (with
    transpositions) is 1, or 2 when both have 8+ letters (never more than ``max_distance``),
    they are not both dictionary words ("price" / "prize"), not a singular/plural pair, not
    opposites and not a word and its negation ("safe" / "unsafe").
    """
    if a == b:
        return True
    if not (a.isalpha() and b.isalpha()) or min(len(a), len(b)) < 4:
        return False
    limit = min(max_distance, 2 if min(len(a), len(b)) >= 8 else 1)
    if abs(len(a) - len(b)) > limit:
        return False
    vocab = dictionary()
    if a in vocab and b in vocab:
        return False  # two words of the dictionary: another word, not a typo
    if osa_distance(a, b, limit) > limit:
        return False
    return not (is_plural_pair(a, b) or is_prefix_negation(a, b) or b in OPPOSITES.get(a, ()))


def typo_partner(word: str, others: list[str], max_distance: int = 2) -> str | None:
    """The first of ``others`` that ``word`` may be a mistyping of (:func:`is_typo_of`), or None."""
    for o in others:
        if is_typo_of(word, o, max_distance):
            return o
    return None


_ignorable_cache: dict[str, bool] = {}


def ignorable(w: str) -> bool:
    """Whether a word one side lacks is no reason to refuse a merge: an article, or a mistyped
    filler the canonical text could not drop ("plaese"). Remembered per word (the same
    words come back request after request; at most 64k of them)."""
    v = _ignorable_cache.get(w)
    if v is None:
        if w in IGNORABLE_WORDS:
            v = True
        else:
            near = _FILLERS_BY_START.get((w[:1], len(w)))
            v = near is not None and typo_partner(w, near) is not None
        if len(_ignorable_cache) >= 1 << 16:
            _ignorable_cache.clear()
        _ignorable_cache[w] = v
    return v


# A word right after one of these names one thing ("user jsmith", "order qwerty"), so a word one
# letter apart names another; a typo of an ordinary word after them is still a typo (see
# stratabatch.guards, residue: the rule binds only where neither word is a dictionary word).
ID_NOUNS = frozenset((
    "user", "username", "userid", "login", "handle", "account", "customer", "client", "member",
    "order", "ticket", "case", "incident", "issue", "bug", "id", "code", "sku", "item",
    "product", "part", "model", "serial", "invoice", "shipment", "tracking", "parcel",
    "package", "reference", "ref", "booking", "reservation", "confirmation", "voucher",
    "coupon", "promo", "host", "hostname", "server", "service", "domain", "branch", "repo",
    "repository", "project", "file", "folder", "table", "database", "container", "pod",
    "namespace", "cluster", "node", "channel", "team", "tag", "flight", "gate", "room",
    "module", "package", "library", "function", "method", "class", "variable", "command",
))  # fmt: skip
# The word right after these is asked about as a word ("translate hola", "define affect"),
# so its spelling is the question: no typo tolerance for it at all, dictionary or not.
WORD_VERBS = frozenset(("translate", "define", "spell", "pronounce", "conjugate"))


# -------------------------------------------------------------------------------------------
# The word index (stratabatch.wordkeys)
# -------------------------------------------------------------------------------------------

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
