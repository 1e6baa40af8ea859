"""Build tests/data/guard_pairs_round2.jsonl: labelled pairs for dedup round 2 (issue 20).

One family per phenomenon of issue 20's sections 1 and 2, each with both labels: the near
repeats users type that today's default vetoes, the traps a sentence model falls into, and,
for each, false friends (pairs that look like the phenomenon but ask something else), plus an
"identifiers and codes" family (ticket ids, usernames, SKUs, hosts, booking references one
character apart). Every base question, variant and false friend below was written by hand for
stratabatch. The script adds the mechanical variants: swapped adjacent letters at the spots
named per base (``swaps``), a space moved by one letter at the spots named per base
(``moves``), and the question frames of the frames family (each base's task in three of the
five frames, chosen with a seeded generator). It checks that each mechanical variant is what
its family says (one adjacent transposition; the same letters with one space moved; the
fillers family's near repeats are the base plus filler words; the coordination family's near
repeats hold the same words) and refuses to write a mislabelled set.

Record schema: the one of ``guard_pairs.jsonl`` (``a``, ``b``, ``dup``, ``kind``, ``domain``,
``split``, ``base``) plus ``phenomenon``, the family (the item of issue 20 it tests):
transposition, space_typo, filler, coordination, question_frame, contraction_case,
voice_roles, tense_time, modifier, perspective, antonym, names, identifiers. ``kind`` says
what the pair is, in the vocabulary of ``guard_pairs.jsonl`` where one fits: near repeats
(``dup`` true) are transposition, space_typo, filler, coordination, frame, surface, typo,
reorder, voice, paraphrase; traps (``dup`` false) are polarity, roles, entities, scope,
numbers, near_miss, tense, identifier.

Split: 30% of each family's bases, and every pair built from them, are the test split (a
seeded shuffle per family, so that every family has held-out pairs and editing one family
leaves the other families' splits as they are). No text is both a base and another base's
variant, so a question never sits in both splits. ``base`` numbers start at
1000 so that they never collide with ``guard_pairs.jsonl``'s when the two sets are merged.
Run ``python tests/data/make_guard_pairs_round2.py`` to rebuild; the output is deterministic.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

OUT = Path(__file__).with_name("guard_pairs_round2.jsonl")
SEED = 20260520
TEST_SHARE = 0.3
BASE0 = 1000

Pair = tuple[str, bool, str]  # (b, dup, kind)

# The tables below keep one base per block, its pairs indented under it: the formatter is off
# for them, as it would spread each base over a dozen lines.
# fmt: off
# --------------------------------------------------------------------------- transposition
# (domain, question, swaps, extra pairs). A swap (word, i) exchanges letters i and i+1 of the
# first whole-word occurrence of ``word`` (case kept per position: "Why" -> "hWy").
TRANSPOSITION: list[tuple[str, str, list[tuple[str, int]], list[Pair]]] = [
    ("banking", "Why was the transfer to my savings account held for review?",
     [("the", 1), ("Why", 0)], []),
    ("banking", "What should I do if my card is stuck in the machine?",
     [("should", 2), ("machine", 4)], []),
    ("retail", "Are the running shoes available for next day delivery?",
     [("Are", 0), ("for", 0)], []),
    ("retail", "How can I change the colour of my order before it ships?",
     [("the", 0), ("order", 2)], []),
    ("travel", "Can you tell me which gate the flight to Lisbon leaves from?",
     [("you", 1), ("which", 3)], []),
    ("travel", "Where should we go for dinner near the station?",
     [("go", 0), ("dinner", 1)], []),
    ("health", "Why do my knees hurt when I go up the stairs?",
     [("knees", 3), ("when", 1)], []),
    ("health", "What are the side effects of this vaccine?",
     [("are", 0), ("What", 1)], []),
    ("software", "How do I sync my notes with the web app?",
     [("with", 2), ("notes", 0)], []),
    ("it_support", "Why does the VPN drop every time I switch to the office wifi?",
     [("every", 1), ("switch", 3)], []),
    ("coding", "How should I structure the tests for this module?",
     [("should", 3), ("this", 2)], []),
    ("public", "Where can I get a parking permit for my street?",
     [("for", 1), ("parking", 0)], []),
    # false friends: the swap makes another real word with another meaning
    ("retail", "Are these socks sold in pairs?", [("socks", 2)],
     [("Are these socks sold in Paris?", False, "near_miss")]),
    ("travel", "Are there rooms with a sea view left for Friday?", [("view", 1)],
     [("Are three rooms with a sea view left for Friday?", False, "numbers")]),
    ("health", "Can I still join the clinical trial next month?", [("still", 1)],
     [("Can I still join the clinical trail next month?", False, "near_miss")]),
    ("public", "What is martial law?", [("What", 2)],
     [("What is marital law?", False, "near_miss")]),
    ("banking", "How do I remove a lien from my car title?", [("remove", 1)],
     [("How do I remove a line from my car title?", False, "near_miss")]),
    ("software", "How do I wrap text around a picture in the editor?", [("picture", 4)],
     [("How do I warp text around a picture in the editor?", False, "near_miss")]),
    ("travel", "Why are cows sacred in India?", [("India", 1)],
     [("Why are cows scared in India?", False, "near_miss")]),
    # false friends: swapped digits in an identifier or an amount
    ("it_support", "What is the status of ticket 4127?", [("status", 3)],
     [("What is the status of ticket 4172?", False, "identifier")]),
    ("travel", "Is flight BA219 on time today?", [("today", 2)],
     [("Is flight BA291 on time today?", False, "identifier")]),
    ("retail", "Where is my order 58314?", [("Where", 1)],
     [("Where is my order 58341?", False, "identifier")]),
    ("banking", "Send 1250 euros to my landlord.", [("landlord", 4)],
     [("Send 1520 euros to my landlord.", False, "numbers")]),
]

# --------------------------------------------------------------------------- space typos
# (domain, question, moves, extra pairs). A move (word, "L") gives the last letter of the
# first whole-word occurrence of ``word`` to the next word ("do we" -> "d owe"); (word, "R")
# takes the next word's first letter ("way of" -> "wayo f").
SPACE: list[tuple[str, str, list[tuple[str, str]], list[Pair]]] = [
    ("banking", "What is the cheapest way of exchanging dollars for euros?",
     [("way", "R"), ("for", "L")], []),
    ("travel", "How many air miles in economy do I get for this flight?",
     [("miles", "R"), ("get", "L")], []),
    ("banking", "How much do we owe on the credit card?", [("do", "L"), ("credit", "R")], []),
    ("retail", "Can I return the shoes if the box is damaged?",
     [("the", "R"), ("box", "L")], []),
    ("health", "Should I take the tablets with food or on an empty stomach?",
     [("tablets", "R"), ("empty", "L")], []),
    ("software", "How do I move my notes to a new laptop?", [("notes", "L"), ("new", "R")], []),
    ("it_support", "My laptop will not connect to the office printer.",
     [("will", "R"), ("office", "L")], []),
    ("coding", "How do I read a large file line by line in Python?",
     [("large", "R"), ("line", "L")], []),
    ("public", "When does the library open on public holidays?",
     [("library", "R"), ("public", "L")], []),
    ("travel", "Can I bring my bike on the night train?", [("bike", "L"), ("night", "R")], []),
    ("health", "How long should I wait before driving after surgery?",
     [("wait", "L"), ("driving", "R")], []),
    ("banking", "Why are there two pending charges on my statement?",
     [("two", "R"), ("charges", "L")], []),
    # false friends: the moved space makes other words, or other numbers
    ("travel", "Is there an ice rink near the hotel?", [("rink", "L")],
     [("Is there a nice rink near the hotel?", False, "near_miss")]),
    ("retail", "Order 3 24-packs of sparkling water.", [("sparkling", "R")],
     [("Order 32 4-packs of sparkling water.", False, "numbers")]),
    ("travel", "Book 2 15-minute slots at the spa.", [("slots", "L")],
     [("Book 21 5-minute slots at the spa.", False, "numbers")]),
    ("health", "Is it safe to take 2 25 mg tablets at once?", [("safe", "R")],
     [("Is it safe to take 22 5 mg tablets at once?", False, "numbers")]),
    ("retail", "I need 3 12-inch pipes for the sink.", [("pipes", "R")],
     [("I need 31 2-inch pipes for the sink.", False, "numbers")]),
]

# --------------------------------------------------------------------------- hand-written
# (domain, question, pairs [(b, dup, kind)])
Base = tuple[str, str, list[Pair]]

FILLER: list[Base] = [
    ("banking", "Can I pay off my loan early?", [
        ("Can I actually pay off my loan early?", True, "filler"),
        ("Can I just pay off my loan early?", True, "filler"),
    ]),
    ("banking", "Why was I charged a foreign transaction fee?", [
        ("Why was I somehow charged a foreign transaction fee?", True, "filler"),
        ("Why exactly was I charged a foreign transaction fee?", True, "filler"),
    ]),
    ("retail", "Do you have this jacket in a smaller size?", [
        ("Do you actually have this jacket in a smaller size?", True, "filler"),
        ("Do you maybe have this jacket in a smaller size?", True, "filler"),
    ]),
    ("retail", "How do I return a gift without a receipt?", [
        ("How do I basically return a gift without a receipt?", True, "filler"),
        ("So how do I just return a gift without a receipt?", True, "filler"),
    ]),
    ("travel", "Do I need a visa for a layover in Toronto?", [
        ("Do I really need a visa for a layover in Toronto?", True, "filler"),
        ("Do I actually need a visa for a layover in Toronto?", True, "filler"),
    ]),
    ("travel", "Is the hotel breakfast included in the price?", [
        ("Is the hotel breakfast truly included in the price?", True, "filler"),
        ("Is the hotel breakfast indeed included in the price?", True, "filler"),
    ]),
    ("health", "Is it safe to exercise with a mild cold?", [
        ("Is it really safe to exercise with a mild cold?", True, "filler"),
        ("Is it, in fact, safe to exercise with a mild cold?", True, "filler"),
    ]),
    ("health", "How can I sleep better at night?", [
        ("How can I somehow sleep better at night?", True, "filler"),
        ("How can I truly sleep better at night?", True, "filler"),
    ]),
    ("software", "How do I export my notes as PDF?", [
        ("How do I basically export my notes as PDF?", True, "filler"),
        ("So how do I just export my notes as PDF?", True, "filler"),
    ]),
    ("it_support", "The printer on the third floor is jammed again.", [
        ("The printer on the third floor is somehow jammed again.", True, "filler"),
        ("The printer on the third floor is basically jammed again.", True, "filler"),
    ]),
    ("coding", "Why does my loop never terminate?", [
        ("Why does my loop actually never terminate?", True, "filler"),
        ("Why does my loop just never terminate?", True, "filler"),
    ]),
    ("public", "When is the recycling collected in my area?", [
        ("When is the recycling actually collected in my area?", True, "filler"),
        ("When, in fact, is the recycling collected in my area?", True, "filler"),
    ]),
    ("coding", "What does this regular expression match?", [
        ("What does this regular expression really match?", True, "filler"),
        ("Basically, what does this regular expression match?", True, "filler"),
    ]),
    # false friends: "just" as an adjective, "just" as "only", "really?" as the whole
    # question, "actual" that picks another value, names and set phrases holding the word
    ("public", "What is a just war?", [
        ("What is a war?", False, "scope"),
        ("What is, in fact, a just war?", True, "filler"),
    ]),
    ("public", "What makes a just tax system?", [
        ("What makes a tax system?", False, "scope"),
    ]),
    ("travel", "Do I need my passport?", [
        ("Do I need just my passport?", False, "scope"),
        ("Do I actually need my passport?", True, "filler"),
    ]),
    ("it_support", "Is the outage affecting me?", [
        ("Is the outage affecting just me?", False, "scope"),
        ("Is the outage really affecting me?", True, "filler"),
    ]),
    ("public", "Really?", [
        ("Why?", False, "near_miss"),
        ("What?", False, "near_miss"),
    ]),
    ("travel", "What was the departure time of flight AZ610?", [
        ("What was the actual departure time of flight AZ610?", False, "scope"),
    ]),
    ("software", "How do I upload my CV to Indeed?", [
        ("How do I upload my CV?", False, "entities"),
        ("How do I actually upload my CV to Indeed?", True, "filler"),
    ]),
    ("public", "Is 'yours truly' too formal for a cover letter?", [
        ("Is 'yours' too formal for a cover letter?", False, "near_miss"),
    ]),
]

COORDINATION: list[Base] = [
    ("public", "Do we need an assistant and an intern for the summer?", [
        ("Do we need an intern and an assistant for the summer?", True, "coordination"),
    ]),
    ("public", "Who earns more, an economist or an executive?", [
        ("Who earns more, an executive or an economist?", True, "coordination"),
        ("Who earns less, an economist or an executive?", False, "polarity"),
    ]),
    ("public", "Does an economist earn more than an executive?", [
        ("Does an executive earn more than an economist?", False, "roles"),
    ]),
    ("banking", "Can I open a savings account and a current account together?", [
        ("Can I open a current account and a savings account together?", True, "coordination"),
    ]),
    ("retail", "Do you sell gloves and scarves for children?", [
        ("Do you sell scarves and gloves for children?", True, "coordination"),
    ]),
    ("travel", "Is the hotel close to the beach and the old town?", [
        ("Is the hotel close to the old town and the beach?", True, "coordination"),
    ]),
    ("health", "Can I take ibuprofen and paracetamol together?", [
        ("Can I take paracetamol and ibuprofen together?", True, "coordination"),
    ]),
    ("software", "The app is slow on my phone and my tablet.", [
        ("The app is slow on my tablet and my phone.", True, "coordination"),
    ]),
    ("it_support", "Reset the passwords for Maria and Jonas.", [
        ("Reset the passwords for Jonas and Maria.", True, "coordination"),
    ]),
    ("coding", "What is the difference between a list and a tuple?", [
        ("What is the difference between a tuple and a list?", True, "coordination"),
    ]),
    ("public", "Are the museum and the library open on Monday?", [
        ("Are the library and the museum open on Monday?", True, "coordination"),
    ]),
    ("health", "Are headaches or nausea common after the vaccine?", [
        ("Are nausea or headaches common after the vaccine?", True, "coordination"),
    ]),
    ("travel", "Can I pay for the taxi with cash or card?", [
        ("Can I pay for the taxi with card or cash?", True, "coordination"),
    ]),
    ("banking", "Compare the fees of the gold card and the silver card.", [
        ("Compare the fees of the silver card and the gold card.", True, "coordination"),
    ]),
    ("coding", "Should I learn Rust or Go first?", [
        ("Should I learn Go or Rust first?", True, "coordination"),
        ("Should I learn Rust before Go?", False, "near_miss"),
    ]),
    ("coding", "Is Rust faster than Go?", [
        ("Is Go faster than Rust?", False, "roles"),
    ]),
    ("retail", "Is the sofa available in grey and in green?", [
        ("Is the sofa available in green and in grey?", True, "coordination"),
    ]),
    ("it_support", "Update Chrome and Slack on my work laptop.", [
        ("Update Slack and Chrome on my work laptop.", True, "coordination"),
    ]),
    ("health", "Is it normal to feel dizzy and tired after giving blood?", [
        ("Is it normal to feel tired and dizzy after giving blood?", True, "coordination"),
    ]),
    ("travel", "Do I need a visa for Peru and Bolivia?", [
        ("Do I need a visa for Bolivia and Peru?", True, "coordination"),
    ]),
    ("travel", "Are flights between Oslo and Bergen cheaper in winter?", [
        ("Are flights between Bergen and Oslo cheaper in winter?", True, "coordination"),
        ("Are flights from Bergen to Oslo cheaper in winter?", False, "roles"),
    ]),
    # roles: direction, subject/object and sequence are not symmetric
    ("travel", "Is it cheaper to fly from Madrid to Rome?", [
        ("Is it cheaper to fly from Rome to Madrid?", False, "roles"),
        ("Is it cheaper to fly to Rome from Madrid?", True, "reorder"),
    ]),
    ("banking", "Transfer 300 euros from my savings to my checking account.", [
        ("Transfer 300 euros from my checking account to my savings.", False, "roles"),
        ("Transfer 300 euros to my checking account from my savings.", True, "reorder"),
    ]),
    ("health", "Can my doctor share my records with my insurer?", [
        ("Can my insurer share my records with my doctor?", False, "roles"),
    ]),
    ("retail", "Can I exchange the blue shirt for the white one?", [
        ("Can I exchange the white shirt for the blue one?", False, "roles"),
    ]),
    ("coding", "How do I convert a string to an integer?", [
        ("How do I convert an integer to a string?", False, "roles"),
    ]),
    ("coding", "How do I merge the feature branch into main?", [
        ("How do I merge main into the feature branch?", False, "roles"),
    ]),
    ("it_support", "Forward the emails from Maria to Jonas.", [
        ("Forward the emails from Jonas to Maria.", False, "roles"),
        ("Forward the emails to Jonas from Maria.", True, "reorder"),
    ]),
    ("public", "Did the council fine the developer?", [
        ("Did the developer fine the council?", False, "roles"),
    ]),
    ("software", "Copy my notes from the tablet to the phone.", [
        ("Copy my notes from the phone to the tablet.", False, "roles"),
        ("Copy my notes to the phone from the tablet.", True, "reorder"),
    ]),
    ("travel", "Does the train stop in Lyon before Marseille?", [
        ("Does the train stop in Marseille before Lyon?", False, "roles"),
    ]),
    ("banking", "Should I pay off the car loan and then the credit card?", [
        ("Should I pay off the credit card and then the car loan?", False, "roles"),
    ]),
    ("health", "Should I take the antibiotic first and the probiotic two hours later?", [
        ("Should I take the probiotic first and the antibiotic two hours later?", False, "roles"),
    ]),
]

# The question frames: each frames base is a task; its question is the task in the first
# frame, and its near repeats the task in three of the others (seeded).
FRAMES = [
    "How do I {x}?",
    "How can I {x}?",
    "What is a good way to {x}?",
    "What's the best way to {x}?",
    "If I want to {x}, what should I do?",
]
# (domain, task, extra pairs against "How do I {task}?")
FRAME_TASKS: list[tuple[str, str, list[Pair]]] = [
    ("banking", "dispute a charge on my credit card", [
        ("When can I dispute a charge on my credit card?", False, "near_miss"),
    ]),
    ("banking", "set up direct deposit for my salary", []),
    ("retail", "track a parcel that was sent to the wrong address", [
        ("Who can track a parcel that was sent to the wrong address?", False, "near_miss"),
    ]),
    ("retail", "use two gift cards on one order", []),
    ("travel", "get a refund for a cancelled train", [
        ("Why can't I get a refund for a cancelled train?", False, "polarity"),
    ]),
    ("travel", "add checked luggage to my booking", []),
    ("health", "get a copy of my vaccination record", []),
    ("health", "lower my blood pressure without medication", [
        ("If I want to lower my blood pressure without medication, what should I avoid?",
         False, "near_miss"),
    ]),
    ("software", "recover notes I deleted last week", []),
    ("it_support", "connect my laptop to the meeting room screen", []),
    ("coding", "remove duplicate rows from a pandas DataFrame", []),
    ("coding", "undo my last commit without losing the changes", [
        ("Why would I undo my last commit without losing the changes?", False, "near_miss"),
    ]),
    ("public", "register to vote after moving house", [
        ("What is a good time to register to vote after moving house?", False, "near_miss"),
    ]),
    ("public", "report a broken streetlight", []),
]
# "how do I" and "how do you" where the answer differs (the frame's false friends)
FRAME_PERSON: list[Base] = [
    ("banking", "How do you store my card details?", [
        ("How do I store my card details?", False, "roles"),
    ]),
    ("retail", "How do you pick the delivery slot for my order?", [
        ("How do I pick the delivery slot for my order?", False, "roles"),
    ]),
    ("health", "How do I know if I have the flu?", [
        ("How do you know if I have the flu?", False, "roles"),
    ]),
    ("software", "How do you use my personal data?", [
        ("How do I use my personal data?", False, "roles"),
    ]),
    ("it_support", "How do I contact you outside office hours?", [
        ("How do you contact me outside office hours?", False, "roles"),
    ]),
]

CONTRACTION_CASE: list[Base] = [
    ("banking", "I don't recognise this payment on my statement.", [
        ("I do not recognise this payment on my statement.", True, "surface"),
        ("i dont recognise this payment on my statement", True, "surface"),
    ]),
    ("retail", "What's the return window for sale items?", [
        ("WHAT IS THE RETURN WINDOW FOR SALE ITEMS?", True, "surface"),
        ("whats the return window for sale items", True, "surface"),
    ]),
    ("travel", "I'm stuck at the airport and my flight's cancelled.", [
        ("I am stuck at the airport and my flight is cancelled.", True, "surface"),
        ("im stuck at the airport and my flights cancelled", True, "surface"),
    ]),
    ("health", "It's been three days and the rash hasn't gone.", [
        ("It has been three days and the rash has not gone.", True, "surface"),
        ("its been three days and the rash hasnt gone", True, "surface"),
    ]),
    ("software", "Why won't the app let me log in?", [
        ("why wont the app let me log in", True, "surface"),
        ("Why Won't The App Let Me Log In?", True, "surface"),
    ]),
    ("it_support", "I can't print from my laptop.", [
        ("I cannot print from my laptop.", True, "surface"),
        ("I CANT PRINT FROM MY LAPTOP", True, "surface"),
    ]),
    ("coding", "Why doesn't my function return anything?", [
        ("Why does my function not return anything?", True, "surface"),
        ("why doesnt my function return anything", True, "surface"),
    ]),
    ("public", "We've moved house, who do we tell?", [
        ("We have moved house, who do we tell?", True, "surface"),
        ("we've Moved House, Who Do We Tell?", True, "surface"),
    ]),
    ("travel", "You're charging me twice for the same seat.", [
        ("You are charging me twice for the same seat.", True, "surface"),
        ("youre charging me twice for the same seat", True, "surface"),
    ]),
    ("public", "Whose car is parked in my space?", [
        ("Who's car is parked in my space?", True, "surface"),
        ("whose car is parked in my space", True, "surface"),
    ]),
    # false friends: a dropped "n't", "we'll" without its apostrophe (casing alone has none
    # here: a text that differs from another only in case is the same request)
    ("software", "Why can't I log in?", [
        ("Why can I log in?", False, "polarity"),
        ("why cant i log in", True, "surface"),
    ]),
    ("retail", "The parcel won't fit in the locker.", [
        ("The parcel will fit in the locker.", False, "polarity"),
        ("the parcel wont fit in the locker", True, "surface"),
    ]),
    ("banking", "We'll send the documents tomorrow.", [
        ("Well, send the documents tomorrow.", False, "roles"),
        ("We will send the documents tomorrow.", True, "surface"),
    ]),
    ("health", "I shouldn't take it with food?", [
        ("I should take it with food?", False, "polarity"),
        ("i shouldnt take it with food?", True, "surface"),
    ]),
]

VOICE_ROLES: list[Base] = [
    ("public", "Did the landlord sue the tenant?", [
        ("Was the tenant sued by the landlord?", True, "voice"),
        ("Was the landlord sued by the tenant?", False, "roles"),
    ]),
    ("banking", "Did the bank approve my mortgage application?", [
        ("Was my mortgage application approved by the bank?", True, "voice"),
    ]),
    ("travel", "Did the airline compensate the hotel for the extra night?", [
        ("Was the hotel compensated by the airline for the extra night?", True, "voice"),
        ("Was the airline compensated by the hotel for the extra night?", False, "roles"),
    ]),
    ("health", "Did the nurse call the doctor?", [
        ("Was the doctor called by the nurse?", True, "voice"),
        ("Was the nurse called by the doctor?", False, "roles"),
    ]),
    ("it_support", "Did the server reject the client's certificate?", [
        ("Was the client's certificate rejected by the server?", True, "voice"),
        ("Did the client reject the server's certificate?", False, "roles"),
    ]),
    ("coding", "Did Priya review Tom's pull request?", [
        ("Was Tom's pull request reviewed by Priya?", True, "voice"),
        ("Was Priya's pull request reviewed by Tom?", False, "roles"),
    ]),
    ("retail", "Has the seller refunded the buyer?", [
        ("Has the buyer been refunded by the seller?", True, "voice"),
        ("Has the seller been refunded by the buyer?", False, "roles"),
    ]),
    ("travel", "Did the driver hit the cyclist?", [
        ("Was the cyclist hit by the driver?", True, "voice"),
        ("Was the driver hit by the cyclist?", False, "roles"),
    ]),
    ("banking", "Did my employer pay the pension provider?", [
        ("Was the pension provider paid by my employer?", True, "voice"),
        ("Was my employer paid by the pension provider?", False, "roles"),
    ]),
    ("health", "Did the dog bite my son?", [
        ("Was my son bitten by the dog?", True, "voice"),
        ("Did my son bite the dog?", False, "roles"),
    ]),
    ("software", "Did Anna share the folder with Paul?", [
        ("Was the folder shared with Paul by Anna?", True, "voice"),
        ("Was the folder shared with Anna by Paul?", False, "roles"),
    ]),
    ("public", "Has the school contacted the parents?", [
        ("Have the parents been contacted by the school?", True, "voice"),
        ("Have the parents contacted the school?", False, "roles"),
    ]),
    ("coding", "Does the parent process kill the child process?", [
        ("Is the child process killed by the parent process?", True, "voice"),
        ("Is the parent process killed by the child process?", False, "roles"),
    ]),
    ("retail", "Did the courier damage the parcel?", [
        ("Was the parcel damaged by the courier?", True, "voice"),
    ]),
]

TENSE_TIME: list[Base] = [
    ("health", "Does Dr. Okafor work at this clinic?", [
        ("Is Dr. Okafor working at this clinic?", True, "paraphrase"),
        ("Did Dr. Okafor use to work at this clinic?", False, "tense"),
        ("Will Dr. Okafor work at this clinic?", False, "tense"),
    ]),
    ("retail", "Is the blender on sale?", [
        ("Is the blender currently on sale?", True, "filler"),
        ("Was the blender on sale?", False, "tense"),
        ("Will the blender be on sale?", False, "tense"),
    ]),
    ("banking", "Did my salary arrive?", [
        ("Has my salary arrived?", True, "paraphrase"),
        ("Will my salary arrive?", False, "tense"),
    ]),
    ("travel", "Does the ferry run in winter?", [
        ("Does the ferry operate in winter?", True, "paraphrase"),
        ("Did the ferry use to run in winter?", False, "tense"),
    ]),
    ("travel", "Why doesn't the ferry run in winter?", [
        ("Why doesn't the ferry run in winter anymore?", False, "tense"),
    ]),
    ("it_support", "Is the VPN down?", [
        ("Is the VPN down right now?", True, "filler"),
        ("Was the VPN down?", False, "tense"),
    ]),
    ("it_support", "Is the VPN still down?", [
        ("Was the VPN down yesterday?", False, "tense"),
    ]),
    ("coding", "Does NumPy support Python 3.13?", [
        ("Is Python 3.13 supported by NumPy?", True, "voice"),
        ("Will NumPy support Python 3.13?", False, "tense"),
    ]),
    ("public", "Is the swimming pool open on Sundays?", [
        ("Is the pool open on Sundays?", True, "paraphrase"),
        ("Was the swimming pool open on Sundays?", False, "tense"),
        ("Will the swimming pool be open on Sundays?", False, "tense"),
    ]),
    ("banking", "Do you charge a fee for paper statements?", [
        ("Is there a fee for paper statements?", True, "paraphrase"),
        ("Did you use to charge a fee for paper statements?", False, "tense"),
        ("Will you charge a fee for paper statements?", False, "tense"),
    ]),
    ("health", "Am I allergic to penicillin?", [
        ("Do I have a penicillin allergy?", True, "paraphrase"),
        ("Was I allergic to penicillin?", False, "tense"),
    ]),
    ("software", "Why doesn't the app sync my calendar anymore?", [
        ("Why has the app stopped syncing my calendar?", True, "paraphrase"),
        ("Why didn't the app sync my calendar?", False, "tense"),
    ]),
    ("retail", "Do you still sell the green kettle?", [
        ("Are you still selling the green kettle?", True, "paraphrase"),
        ("Did you sell the green kettle?", False, "tense"),
    ]),
    ("public", "Is Jonas the head teacher?", [
        ("Is Jonas the head teacher now?", True, "filler"),
        ("Did Jonas use to be the head teacher?", False, "tense"),
        ("Was Jonas the head teacher?", False, "tense"),
    ]),
    ("it_support", "Will the update restart my laptop?", [
        ("Is the update going to restart my laptop?", True, "paraphrase"),
        ("Did the update restart my laptop?", False, "tense"),
    ]),
]

MODIFIER: list[Base] = [
    ("software", "Which job boards are best for remote work?", [
        ("Which job boards are best for remote work in healthcare?", False, "scope"),
    ]),
    ("public", "What caused the housing shortage?", [
        ("What is the solution to the housing shortage?", False, "near_miss"),
        ("What caused the housing shortage in rural areas?", False, "scope"),
    ]),
    ("banking", "What is the interest rate on a savings account?", [
        ("What is the interest rate on a children's savings account?", False, "scope"),
        ("What is the current interest rate on a savings account?", True, "filler"),
    ]),
    ("retail", "Is the leather jacket waterproof?", [
        ("Is the fake leather jacket waterproof?", False, "scope"),
        ("Is this leather jacket waterproof?", True, "surface"),
    ]),
    ("travel", "How much is a ticket to the museum?", [
        ("How much is a student ticket to the museum?", False, "scope"),
        ("How much is a ticket to the museum shop?", False, "scope"),
        ("How much is an entry ticket to the museum?", True, "paraphrase"),
    ]),
    ("health", "What are the symptoms of diabetes?", [
        ("What are the early symptoms of diabetes?", False, "scope"),
        ("What are the symptoms of gestational diabetes?", False, "scope"),
        ("What are the typical symptoms of diabetes?", True, "filler"),
    ]),
    ("it_support", "How do I reset my password?", [
        ("How do I reset my admin password?", False, "scope"),
        ("How do I reset my Wi-Fi password?", False, "scope"),
        ("How do I reset my own password?", True, "filler"),
    ]),
    ("coding", "How do I sort a list in Python?", [
        ("How do I sort a linked list in Python?", False, "scope"),
        ("How do I sort a nested list in Python?", False, "scope"),
        ("How do I sort a Python list?", True, "reorder"),
    ]),
    ("banking", "Who is the branch manager?", [
        ("Who is the assistant branch manager?", False, "scope"),
        ("Who is the former branch manager?", False, "scope"),
    ]),
    ("health", "Can I get a flu shot here?", [
        ("Can I get a high-dose flu shot here?", False, "scope"),
        ("Can I get a flu shot at this clinic?", True, "paraphrase"),
    ]),
    ("travel", "Where is the train station?", [
        ("Where is the old train station?", False, "scope"),
        ("Where is the train station's lost property office?", False, "scope"),
        ("Where's the train station?", True, "surface"),
    ]),
    ("software", "How do I delete my account?", [
        ("How do I delete my guest account?", False, "scope"),
        ("How do I delete my user account?", True, "filler"),
    ]),
    ("retail", "Is the coffee machine in stock?", [
        ("Is the coffee machine cleaner in stock?", False, "scope"),
        ("Is the coffee machine in stock now?", True, "filler"),
    ]),
    ("public", "When is the election?", [
        ("When is the primary election?", False, "scope"),
        ("When's the election?", True, "surface"),
    ]),
]

PERSPECTIVE: list[Base] = [
    ("health", "Why are people staring at me?", [
        ("Why do I stare at people?", False, "roles"),
        ("Why do people stare at me?", True, "paraphrase"),
    ]),
    ("banking", "Do you owe me money?", [
        ("Do I owe you money?", False, "roles"),
        ("Is there money you owe me?", True, "paraphrase"),
    ]),
    ("retail", "Can you send me the invoice?", [
        ("Can I send you the invoice?", False, "roles"),
        ("Could you send the invoice to me?", True, "reorder"),
    ]),
    ("it_support", "Can you call me back?", [
        ("Can I call you back?", False, "roles"),
        ("Could you call me back?", True, "surface"),
    ]),
    ("health", "Can my doctor see my test results?", [
        ("Can I see my doctor's test results?", False, "roles"),
        ("Is my doctor able to see my test results?", True, "paraphrase"),
    ]),
    ("health", "How do I protect myself from the flu?", [
        ("How do I protect my baby from the flu?", False, "roles"),
        ("How do I protect others from my flu?", False, "roles"),
        ("How can I protect myself against the flu?", True, "frame"),
    ]),
    ("travel", "Can I book the taxi myself?", [
        ("Can you book the taxi for me?", False, "roles"),
        ("Am I able to book the taxi myself?", True, "paraphrase"),
    ]),
    ("software", "Can other users see my notes?", [
        ("Can I see other users' notes?", False, "roles"),
        ("Are my notes visible to other users?", True, "paraphrase"),
    ]),
    ("coding", "Why does my teammate keep overwriting my commits?", [
        ("Why do I keep overwriting my teammate's commits?", False, "roles"),
        ("Why are my commits being overwritten by my teammate?", True, "voice"),
    ]),
    ("public", "Can my neighbour cut the tree on my side?", [
        ("Can I cut the tree on my neighbour's side?", False, "roles"),
    ]),
    ("banking", "Did I pay you for the last invoice?", [
        ("Did you pay me for the last invoice?", False, "roles"),
    ]),
    ("it_support", "Can you see my screen?", [
        ("Can I see your screen?", False, "roles"),
        ("Is my screen visible to you?", True, "paraphrase"),
    ]),
    ("retail", "Why did you cancel my order?", [
        ("Why did I cancel my order?", False, "roles"),
        ("Why was my order cancelled by you?", True, "voice"),
    ]),
    ("public", "How do I introduce myself in an email?", [
        ("How do I introduce my colleague in an email?", False, "roles"),
        ("How should I introduce myself in an email?", True, "frame"),
    ]),
]

ANTONYM: list[Base] = [
    ("travel", "Are dogs allowed on the beach in summer?", [
        ("Are dogs banned on the beach in summer?", False, "polarity"),
        ("Are dogs permitted on the beach in summer?", True, "paraphrase"),
    ]),
    ("software", "Is the desktop app more secure than the web version?", [
        ("Is the desktop app less secure than the web version?", False, "polarity"),
        ("Is the desktop app safer than the web version?", True, "paraphrase"),
    ]),
    ("health", "Does a positive test mean I have the virus?", [
        ("Does a negative test mean I have the virus?", False, "polarity"),
        ("Does a positive result mean I have the virus?", True, "paraphrase"),
    ]),
    ("banking", "Was I overcharged for the annual fee?", [
        ("Was I undercharged for the annual fee?", False, "polarity"),
        ("Did you overcharge me for the annual fee?", True, "paraphrase"),
    ]),
    ("retail", "Is the blue backpack heavier than the black one?", [
        ("Is the blue backpack lighter than the black one?", False, "polarity"),
        ("Does the blue backpack weigh more than the black one?", True, "paraphrase"),
    ]),
    ("coding", "How do I convert the column to uppercase?", [
        ("How do I convert the column to lowercase?", False, "polarity"),
        ("How do I make the column uppercase?", True, "paraphrase"),
    ]),
    ("coding", "How do I encode a base64 string?", [
        ("How do I decode a base64 string?", False, "polarity"),
    ]),
    ("public", "Is the vaccine mandatory for school children?", [
        ("Is the vaccine optional for school children?", False, "polarity"),
        ("Is the vaccine compulsory for school children?", True, "paraphrase"),
    ]),
    ("health", "Is the tumour benign?", [
        ("Is the tumour malignant?", False, "polarity"),
        ("Is the tumor benign?", True, "surface"),
    ]),
    ("banking", "Is the interest rate on this account fixed?", [
        ("Is the interest rate on this account variable?", False, "polarity"),
        ("Is this account's interest rate fixed?", True, "reorder"),
    ]),
    ("travel", "Which is the busiest time at airport security?", [
        ("Which is the quietest time at airport security?", False, "polarity"),
    ]),
    ("it_support", "Should I loosen the firewall rules for the test server?", [
        ("Should I tighten the firewall rules for the test server?", False, "polarity"),
    ]),
    ("retail", "Is the refund policy stricter for sale items?", [
        ("Is the refund policy more lenient for sale items?", False, "polarity"),
    ]),
    ("banking", "Should I borrow money from my brother?", [
        ("Should I lend money to my brother?", False, "polarity"),
    ]),
    ("public", "Are fireworks permitted in the city centre?", [
        ("Are fireworks prohibited in the city centre?", False, "polarity"),
        ("Are fireworks allowed in the city centre?", True, "paraphrase"),
    ]),
]

NAMES: list[Base] = [
    ("public", "What is Mary's phone number?", [
        ("What is Mark's phone number?", False, "entities"),
        ("What's Mary's phone number?", True, "surface"),
        ("what is marys phone number", True, "surface"),
    ]),
    ("health", "Book an appointment for Jane on Tuesday.", [
        ("Book an appointment for Jake on Tuesday.", False, "entities"),
        ("Book Jane an appointment on Tuesday.", True, "reorder"),
    ]),
    ("banking", "Send 40 euros to Tom.", [
        ("Send 40 euros to Tim.", False, "entities"),
        ("Send Tom 40 euros.", True, "reorder"),
    ]),
    ("it_support", "Give Rosa access to the finance folder.", [
        ("Give Rose access to the finance folder.", False, "entities"),
        ("Grant Rosa access to the finance folder.", True, "paraphrase"),
    ]),
    ("coding", "Assign the bug to Dana.", [
        ("Assign the bug to Dan.", False, "entities"),
        ("Assign this bug to Dana.", True, "surface"),
    ]),
    ("travel", "Do I need a visa for Mali?", [
        ("Do I need a visa for Bali?", False, "entities"),
        ("Is a visa required for Mali?", True, "paraphrase"),
    ]),
    ("travel", "Are there direct flights to Iran?", [
        ("Are there direct flights to Iraq?", False, "entities"),
    ]),
    ("retail", "Is the order for Maria ready for pickup?", [
        ("Is the order for Mario ready for pickup?", False, "entities"),
    ]),
    ("public", "When is Paul's hearing?", [
        ("When is Saul's hearing?", False, "entities"),
    ]),
    ("health", "Is Dr. Lina Berg available on Friday?", [
        ("Is Dr. Lisa Berg available on Friday?", False, "entities"),
        ("Is Dr. Lina Berg free on Friday?", True, "paraphrase"),
    ]),
    ("software", "Share the calendar with Ben.", [
        ("Share the calendar with Ken.", False, "entities"),
    ]),
    ("banking", "What is Christopher's account balance?", [
        ("What is Christpher's account balance?", True, "typo"),
        ("What is Christophe's account balance?", False, "entities"),
    ]),
    ("travel", "Is the ferry to Malta running today?", [
        ("Is the ferry to Yalta running today?", False, "entities"),
    ]),
    ("coding", "Is Karl on the on-call rota this week?", [
        ("Is Carl on the on-call rota this week?", False, "entities"),
    ]),
    ("retail", "Gift wrap the parcel for Julia.", [
        ("Gift wrap the parcel for Julio.", False, "entities"),
        ("Please gift wrap the parcel for Julia.", True, "filler"),
    ]),
    ("health", "Elizabeth needs her prescription renewed.", [
        ("Elizabteh needs her prescription renewed.", True, "typo"),
    ]),
]

IDENTIFIERS: list[Base] = [
    ("it_support", "What's the status of ticket INC-40721?", [
        ("What's the status of ticket INC-40727?", False, "identifier"),
        ("what is the status of ticket INC-40721", True, "surface"),
    ]),
    ("it_support", "Restart the service on web-03.prod.example.net.", [
        ("Restart the service on web-08.prod.example.net.", False, "identifier"),
        ("Please restart the service on web-03.prod.example.net.", True, "filler"),
    ]),
    ("it_support", "Unlock the account for user jsmith.", [
        ("Unlock the account for user jsmith2.", False, "identifier"),
        ("Unlock the account for user jsmyth.", False, "identifier"),
        ("Unlock the account of user jsmith.", True, "surface"),
    ]),
    ("retail", "Is SKU HX-2210-BL back in stock?", [
        ("Is SKU HX-2210-BK back in stock?", False, "identifier"),
        ("is sku HX-2210-BL back in stock", True, "surface"),
    ]),
    ("retail", "Where is my order 7731-0045?", [
        ("Where is my order 7731-0046?", False, "identifier"),
        ("Where's my order 7731-0045?", True, "surface"),
    ]),
    ("banking", "Block the card ending in 4821.", [
        ("Block the card ending in 4827.", False, "identifier"),
        ("Please block the card ending in 4821.", True, "filler"),
    ]),
    ("banking", "Did the transfer with reference TRX-88213 go through?", [
        ("Did the transfer with reference TRX-88218 go through?", False, "identifier"),
        ("Has the transfer with reference TRX-88213 gone through?", True, "paraphrase"),
    ]),
    ("travel", "Can I change booking QX7T2M to a later flight?", [
        ("Can I change booking QX7T2N to a later flight?", False, "identifier"),
        ("Can I move booking QX7T2M to a later flight?", True, "paraphrase"),
    ]),
    ("travel", "Is flight LH1432 delayed?", [
        ("Is flight LH1482 delayed?", False, "identifier"),
        ("is flight LH1432 delayed??", True, "surface"),
    ]),
    ("travel", "Where is gate B12?", [
        ("Where is gate B17?", False, "identifier"),
        ("Where's gate B12?", True, "surface"),
    ]),
    ("health", "Is prescription RX-55019 ready for pickup?", [
        ("Is prescription RX-55010 ready for pickup?", False, "identifier"),
        ("Is my prescription RX-55019 ready to collect?", True, "paraphrase"),
    ]),
    ("health", "Which ward is patient 20-4471 in?", [
        ("Which ward is patient 20-4477 in?", False, "identifier"),
        ("Which ward is patient 20-4471 on?", True, "surface"),
    ]),
    ("coding", "What does error E1102 mean?", [
        ("What does error E1103 mean?", False, "identifier"),
        ("what does error E1102 mean", True, "surface"),
    ]),
    ("coding", "Why does commit 3fa9c1e break the build?", [
        ("Why does commit 3fa9c1d break the build?", False, "identifier"),
        ("Why is commit 3fa9c1e breaking the build?", True, "paraphrase"),
    ]),
    ("coding", "Is the requests package thread-safe?", [
        ("Is the request package thread-safe?", False, "identifier"),
    ]),
    ("it_support", "Can you ping 10.0.4.12 from the VPN?", [
        ("Can you ping 10.0.4.13 from the VPN?", False, "identifier"),
        ("Can you ping 10.0.4.12 over the VPN?", True, "paraphrase"),
    ]),
    ("public", "Has parking permit P-30912 expired?", [
        ("Has parking permit P-30812 expired?", False, "identifier"),
        ("Has my parking permit P-30912 expired?", True, "filler"),
    ]),
    ("software", "Invite anna.k@example.com to the workspace.", [
        ("Invite anna.j@example.com to the workspace.", False, "identifier"),
        ("Please invite anna.k@example.com to the workspace.", True, "filler"),
    ]),
]

# fmt: on

# Words the fillers family's near repeats may add to their base (checked in build()).
FILLER_WORDS = frozenset(
    "somehow truly indeed in fact actually really basically just even exactly maybe so".split()
)


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def _find_word(text: str, word: str) -> re.Match[str]:
    m = re.search(rf"\b{re.escape(word)}\b", text)
    if m is None:
        raise ValueError(f"{word!r} not in {text!r}")
    return m


def swap(text: str, word: str, i: int) -> str:
    """``text`` with letters i and i+1 of the first occurrence of ``word`` exchanged."""
    m = _find_word(text, word)
    w = list(m.group())
    if not (0 <= i < len(w) - 1) or w[i].lower() == w[i + 1].lower():
        raise ValueError(f"swap {i} of {word!r} changes nothing")
    w[i], w[i + 1] = w[i + 1], w[i]
    return text[: m.start()] + "".join(w) + text[m.end() :]


def move_space(text: str, word: str, side: str) -> str:
    """``text`` with the space after ``word`` moved one letter left ("L") or right ("R")."""
    m = _find_word(text, word)
    after = text[m.end() :]
    nxt = re.match(r" ([A-Za-z]+)", after)
    if nxt is None:
        raise ValueError(f"no word after {word!r} in {text!r}")
    left, right = m.group(), nxt.group(1)
    if side == "L":
        if len(left) < 2:
            raise ValueError(f"cannot move the space into {left!r}")
        left, right = left[:-1], left[-1] + right
    else:
        if len(right) < 2:
            raise ValueError(f"cannot move the space into {right!r}")
        left, right = left + right[0], right[1:]
    return text[: m.start()] + left + " " + right + after[nxt.end() :]


def _one_adjacent_swap(a: str, b: str) -> bool:
    if len(a) != len(b):
        return False
    diff = [i for i in range(len(a)) if a[i] != b[i]]
    if len(diff) != 2 or diff[1] != diff[0] + 1:
        return False
    i, j = diff
    return a[i] == b[j] and a[j] == b[i]


def _check(phenomenon: str, a: str, b: str, dup: bool, kind: str) -> None:
    """Refuse a near repeat that is not what its family says it is."""
    if not dup:
        return
    if kind == "transposition" and not _one_adjacent_swap(a, b):
        raise ValueError(f"not one adjacent swap: {a!r} / {b!r}")
    if kind == "space_typo" and (a.replace(" ", "") != b.replace(" ", "") or a == b):
        raise ValueError(f"not a moved space: {a!r} / {b!r}")
    if kind == "filler":
        wa, wb = _words(a), _words(b)
        rest = [w for w in wb if w not in FILLER_WORDS]
        if phenomenon == "filler" and rest != [w for w in wa if w not in FILLER_WORDS]:
            raise ValueError(f"not the base plus fillers: {a!r} / {b!r}")
    if kind == "coordination" and sorted(_words(a)) != sorted(_words(b)):
        raise ValueError(f"not the same words: {a!r} / {b!r}")


def families(rng: random.Random) -> dict[str, list[Base]]:
    """Every family as (domain, base question, pairs), the mechanical variants expanded."""
    out: dict[str, list[Base]] = {}
    out["transposition"] = [
        (d, q, [(swap(q, w, i), True, "transposition") for w, i in swaps] + extra)
        for d, q, swaps, extra in TRANSPOSITION
    ]
    out["space_typo"] = [
        (d, q, [(move_space(q, w, s), True, "space_typo") for w, s in moves] + extra)
        for d, q, moves, extra in SPACE
    ]
    out["filler"] = FILLER
    out["coordination"] = COORDINATION
    frames: list[Base] = []
    for d, task, extra in FRAME_TASKS:
        others = rng.sample(FRAMES[1:], 3)
        q = FRAMES[0].format(x=task)
        frames.append((d, q, [(f.format(x=task), True, "frame") for f in others] + extra))
    out["question_frame"] = frames + FRAME_PERSON
    out["contraction_case"] = CONTRACTION_CASE
    out["voice_roles"] = VOICE_ROLES
    out["tense_time"] = TENSE_TIME
    out["modifier"] = MODIFIER
    out["perspective"] = PERSPECTIVE
    out["antonym"] = ANTONYM
    out["names"] = NAMES
    out["identifiers"] = IDENTIFIERS
    return out


def build() -> list[dict]:
    rows: list[dict] = []
    seen: set[tuple[str, str]] = set()
    base_id = BASE0
    for phenomenon, bases in families(random.Random(f"{SEED}:frames")).items():
        # one generator per family: editing a family leaves the others' splits as they are
        order = list(range(len(bases)))
        random.Random(f"{SEED}:{phenomenon}").shuffle(order)
        test = set(order[: round(len(bases) * TEST_SHARE)])
        for j, (domain, a, pairs) in enumerate(bases):
            for b, dup, kind in pairs:
                _check(phenomenon, a, b, dup, kind)
                key = (a, b)
                if key in seen or (b, a) in seen or a == b:
                    raise ValueError(f"pair written twice: {a!r} / {b!r}")
                seen.add(key)
                rows.append(
                    {
                        "a": a,
                        "b": b,
                        "dup": dup,
                        "kind": kind,
                        "domain": domain,
                        "split": "test" if j in test else "train",
                        "base": base_id,
                        "phenomenon": phenomenon,
                    }
                )
            base_id += 1
    return rows


def main() -> None:
    rows = build()
    OUT.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    counts: dict[str, list[int]] = {}
    for r in rows:
        c = counts.setdefault(r["phenomenon"], [0, 0, 0])
        c[0 if r["dup"] else 1] += 1
        c[2] += r["split"] == "test"
    print(f"{len(rows)} pairs -> {OUT}")
    for name, (dups, traps, test) in counts.items():
        print(f"  {name:17} near repeats {dups:3}  traps {traps:3}  test {test:3}")


if __name__ == "__main__":
    main()
