"""Build tests/data/guard_pairs.jsonl: labelled request pairs for the merge guards.

Every base question below, its paraphrase, its traps, its moved-clause and British variants
and the six preambles were written by hand for stratabatch. The script adds the mechanical
variants of each base (case and punctuation, seeded random typos, greetings and fillers from
the pools below, question-frame swaps) and the long-prompt pairs (a shared preamble, then the
short question), and assigns a split by base: 30% of the bases (and everything built from them)
are the test split, that no threshold and no word list was tuned on.

Kinds (``dup`` true): surface, typo, filler, frame, spelling, reorder (the near repeats),
paraphrase; long_repeat (a preamble + a near repeat). Kinds (``dup`` false): polarity, roles,
entities, scope, numbers, near_miss (another word for another request); long_trap (a
preamble + one of the traps). After these come the dedup round-2 pairs of
``make_guard_pairs_round2.py`` (issue 20: transpositions, typos across a space, fillers,
reordered coordination, question frames, voice, tense, modifiers, perspective, antonyms,
names, identifiers; each record also says its ``phenomenon``), with their own split by base.
Run ``python tests/data/make_guard_pairs.py`` to rebuild both files' content into
guard_pairs.jsonl; the output is deterministic.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

OUT = Path(__file__).with_name("guard_pairs.jsonl")
SEED = 20261203
TEST_SHARE = 0.3

# (domain, question, paraphrase, traps [(kind, text)], moved clause or None, British or None)
BASES = [
    # ---------------------------------------------------------------- banking
    (
        "banking",
        "How do I update my billing address?",
        "Where can I change the address you send my bills to?",
        [
            ("scope", "How do I update my partner's billing address?"),
            ("near_miss", "How do I update my billing email?"),
        ],
        "My billing address, how do I update it?",
        None,
    ),
    (
        "banking",
        "Move $200 from my checking account to my brokerage account.",
        "Transfer 200 dollars out of checking into my brokerage account.",
        [
            ("roles", "Move $200 from my brokerage account to my checking account."),
            ("numbers", "Move $2,000 from my checking account to my brokerage account."),
        ],
        "To my brokerage account, move $200 from my checking account.",
        None,
    ),
    (
        "banking",
        "Why was my debit card declined at the gas station?",
        "My debit card got rejected when I tried to pay for gas, why?",
        [
            ("entities", "Why was my credit card declined at the gas station?"),
            ("polarity", "Why was my debit card not declined at the gas station?"),
        ],
        "At the gas station, why was my debit card declined?",
        None,
    ),
    (
        "banking",
        "Can I deposit a cheque using the mobile app?",
        "Is mobile check deposit available in your app?",
        [
            ("polarity", "Can I withdraw a cheque using the mobile app?"),
            ("scope", "Can I deposit several cheques using the mobile app?"),
        ],
        "Using the mobile app, can I deposit a cheque?",
        "Can I deposit a cheque using the mobile app?",
    ),
    (
        "banking",
        "How do I freeze my credit card?",
        "I want to temporarily block my credit card, how?",
        [
            ("polarity", "How do I unfreeze my credit card?"),
            ("scope", "How do I freeze all my credit cards?"),
        ],
        None,
        None,
    ),
    (
        "banking",
        "What is the daily ATM withdrawal limit on my savings account?",
        "How much cash can I take out from an ATM per day from savings?",
        [
            ("near_miss", "What is the daily ATM withdrawal fee on my savings account?"),
            ("entities", "What is the weekly ATM withdrawal limit on my savings account?"),
        ],
        "On my savings account, what is the daily ATM withdrawal limit?",
        None,
    ),
    (
        "banking",
        "Set up a recurring transfer of $50 to my daughter's account every Friday.",
        "Schedule $50 to go to my daughter's account each Friday.",
        [
            (
                "entities",
                "Set up a recurring transfer of $50 to my daughter's account every Monday.",
            ),
            ("scope", "Set up a recurring transfer of $50 to my son's account every Friday."),
        ],
        "Every Friday, set up a recurring transfer of $50 to my daughter's account.",
        None,
    ),
    (
        "banking",
        "How long does an international wire transfer take to arrive?",
        "How many days until a wire sent abroad shows up?",
        [
            ("polarity", "How long does a domestic wire transfer take to arrive?"),
            ("near_miss", "How much does an international wire transfer cost to send?"),
        ],
        None,
        None,
    ),
    (
        "banking",
        "Convert 500 US dollars to euros at today's rate.",
        "What would 500 USD be in EUR right now?",
        [
            ("roles", "Convert 500 euros to US dollars at today's rate."),
            ("entities", "Convert 500 US dollars to pounds at today's rate."),
        ],
        None,
        None,
    ),
    (
        "banking",
        "Is there a fee for closing my savings account?",
        "Do you charge anything if I close my savings account?",
        [
            ("polarity", "Is there a fee for opening my savings account?"),
            ("scope", "Is there a fee for closing our joint savings account?"),
        ],
        None,
        None,
    ),
    (
        "banking",
        "I lost my credit card, please cancel it.",
        "My credit card is missing, block it right away.",
        [
            ("near_miss", "I lost my credit card, please replace it."),
            ("polarity", "I found my credit card, please cancel it."),
        ],
        None,
        None,
    ),
    (
        "banking",
        "How do I enable two-factor authentication for online banking?",
        "Turning on 2FA for internet banking, how is it done?",
        [
            ("polarity", "How do I disable two-factor authentication for online banking?"),
            ("entities", "How do I enable two-factor authentication for mobile banking?"),
        ],
        "For online banking, how do I enable two-factor authentication?",
        None,
    ),
    (
        "banking",
        "What is the interest rate on a 12 month certificate of deposit?",
        "How much interest does a one-year CD pay?",
        [
            ("numbers", "What is the interest rate on a 18 month certificate of deposit?"),
            ("near_miss", "What is the penalty on a 12 month certificate of deposit?"),
        ],
        None,
        None,
    ),
    (
        "banking",
        "Can I pay my mortgage with a credit card?",
        "Is paying the home loan by credit card allowed?",
        [
            ("roles", "Can I pay my credit card with a mortgage?"),
            ("near_miss", "Can I refinance my mortgage with a credit card?"),
        ],
        None,
        None,
    ),
    (
        "banking",
        "How do I dispute a charge on my statement?",
        "There's a charge on my statement I don't recognise, how do I contest it?",
        [
            ("scope", "How do I dispute all the charges on my statement?"),
            ("polarity", "How do I approve a charge on my statement?"),
        ],
        "On my statement, how do I dispute a charge?",
        None,
    ),
    (
        "banking",
        "Why is my account balance lower than my available balance?",
        "My balance shows less than the available amount, why?",
        [
            ("roles", "Why is my available balance lower than my account balance?"),
            ("polarity", "Why is my account balance higher than my available balance?"),
        ],
        None,
        None,
    ),
    # ---------------------------------------------------------------- health
    (
        "health",
        "Can I take ibuprofen with my blood pressure medication?",
        "Is it safe to combine Advil and my hypertension pills?",
        [
            ("entities", "Can I take acetaminophen with my blood pressure medication?"),
            ("polarity", "Can I take ibuprofen without my blood pressure medication?"),
        ],
        "With my blood pressure medication, can I take ibuprofen?",
        None,
    ),
    (
        "health",
        "Should I eat before my cholesterol blood test?",
        "Do I need to fast for the cholesterol test?",
        [
            ("polarity", "Should I avoid eating before my cholesterol blood test?"),
            ("polarity", "Should I eat after my cholesterol blood test?"),
        ],
        "Before my cholesterol blood test, should I eat?",
        None,
    ),
    (
        "health",
        "How do I book an appointment with a paediatrician?",
        "I need to see a children's doctor, how do I get an appointment?",
        [
            ("entities", "How do I book an appointment with a dermatologist?"),
            ("polarity", "How do I cancel an appointment with a paediatrician?"),
        ],
        None,
        "How do I book an appointment with a paediatrician?",
    ),
    (
        "health",
        "What are the side effects of the flu vaccine for adults?",
        "Which reactions can grown-ups expect after a flu shot?",
        [
            ("polarity", "What are the side effects of the flu vaccine for children?"),
            ("entities", "What are the side effects of the measles vaccine for adults?"),
        ],
        "For adults, what are the side effects of the flu vaccine?",
        None,
    ),
    (
        "health",
        "Is my insurance going to cover the physical therapy sessions?",
        "Will physio be paid for by my health plan?",
        [
            ("scope", "Is my wife's insurance going to cover the physical therapy sessions?"),
            ("polarity", "Is my insurance not going to cover the physical therapy sessions?"),
        ],
        None,
        None,
    ),
    (
        "health",
        "How many milligrams of vitamin D should I take daily?",
        "What's the right daily dose of vitamin D?",
        [
            ("entities", "How many milligrams of vitamin C should I take daily?"),
            ("entities", "How many micrograms of vitamin D should I take daily?"),
        ],
        None,
        None,
    ),
    (
        "health",
        "My son has a fever of 39 degrees, should I go to the emergency room?",
        "Is a 39 degree temperature in my boy a reason for the ER?",
        [
            ("numbers", "My son has a fever of 38 degrees, should I go to the emergency room?"),
            ("scope", "My daughter has a fever of 39 degrees, should I go to the emergency room?"),
        ],
        None,
        None,
    ),
    (
        "health",
        "Can I refill my prescription online?",
        "Is it possible to renew my meds through the website?",
        [
            ("scope", "Can I refill my mother's prescription online?"),
            ("polarity", "Can I refill my prescription offline?"),
        ],
        None,
        None,
    ),
    (
        "health",
        "What time does the pharmacy open on Sunday?",
        "When does the drugstore start business on Sundays?",
        [
            ("polarity", "What time does the pharmacy close on Sunday?"),
            ("entities", "What time does the pharmacy open on Saturday?"),
        ],
        "On Sunday, what time does the pharmacy open?",
        None,
    ),
    (
        "health",
        "How do I transfer my medical records from my old clinic to the new one?",
        "Getting my health files moved to my new clinic, how does that work?",
        [
            ("roles", "How do I transfer my medical records from the new clinic to my old one?"),
            ("near_miss", "How do I delete my medical records from my old clinic?"),
        ],
        None,
        None,
    ),
    (
        "health",
        "Is it normal to feel dizzy after donating blood?",
        "I'm lightheaded since giving blood, is that expected?",
        [
            ("polarity", "Is it normal to feel dizzy before donating blood?"),
            ("near_miss", "Is it normal to feel nauseous after donating blood?"),
        ],
        None,
        None,
    ),
    (
        "health",
        "Can pregnant women take antihistamines for hay fever?",
        "Are allergy pills ok during pregnancy?",
        [
            ("near_miss", "Can breastfeeding women take antihistamines for hay fever?"),
            ("near_miss", "Can pregnant women take antibiotics for hay fever?"),
        ],
        None,
        None,
    ),
    (
        "health",
        "How often should I get a dental checkup?",
        "What's the recommended interval between dentist visits?",
        [
            ("scope", "How often should my kids get a dental checkup?"),
            ("near_miss", "How often should I get an eye checkup?"),
        ],
        None,
        None,
    ),
    (
        "health",
        "Does the clinic accept walk-in patients for vaccinations?",
        "Can I just show up at the clinic for a vaccine without booking?",
        [
            ("polarity", "Does the clinic refuse walk-in patients for vaccinations?"),
            ("near_miss", "Does the clinic accept walk-in patients for blood tests?"),
        ],
        None,
        None,
    ),
    (
        "health",
        "Should I apply ice or heat to a sprained ankle?",
        "Is cold or warmth better for a twisted ankle?",
        [
            ("near_miss", "Should I apply ice or heat to a sprained knee?"),
            ("near_miss", "Should I apply ice or heat to a broken ankle?"),
        ],
        None,
        None,
    ),
    (
        "health",
        "How do I change my primary care doctor?",
        "I want a different family physician, what do I do?",
        [
            ("scope", "How do I change my husband's primary care doctor?"),
            ("near_miss", "How do I contact my primary care doctor?"),
        ],
        None,
        None,
    ),
    # ---------------------------------------------------------------- travel
    (
        "travel",
        "Is there a direct flight from Paris to London on Friday morning?",
        "Can I fly nonstop Paris-London Friday AM?",
        [
            ("roles", "Is there a direct flight from London to Paris on Friday morning?"),
            ("entities", "Is there a direct flight from Paris to London on Friday evening?"),
        ],
        "On Friday morning, is there a direct flight from Paris to London?",
        None,
    ),
    (
        "travel",
        "How much checked luggage can I bring on an international flight?",
        "What's the baggage allowance for checked bags flying abroad?",
        [
            ("polarity", "How much checked luggage can I bring on a domestic flight?"),
            ("near_miss", "How much carry-on luggage can I bring on an international flight?"),
        ],
        "On an international flight, how much checked luggage can I bring?",
        None,
    ),
    (
        "travel",
        "Do I need a visa to travel to Japan with a Canadian passport?",
        "Are Canadians required to get a visa for Japan?",
        [
            ("entities", "Do I need a visa to travel to China with a Canadian passport?"),
            ("roles", "Do I need a visa to travel to Canada with a Japanese passport?"),
        ],
        "With a Canadian passport, do I need a visa to travel to Japan?",
        None,
    ),
    (
        "travel",
        "Can I cancel my hotel booking without paying a fee?",
        "Is my hotel reservation free to cancel?",
        [
            ("polarity", "Can I cancel my hotel booking by paying a fee?"),
            ("near_miss", "Can I extend my hotel booking without paying a fee?"),
        ],
        None,
        None,
    ),
    (
        "travel",
        "What time is check-in at the hotel?",
        "When can I get my room key at the hotel?",
        [
            ("polarity", "What time is check-out at the hotel?"),
            ("near_miss", "What time is breakfast at the hotel?"),
        ],
        None,
        None,
    ),
    (
        "travel",
        "I'm travelling with my dog, are pets allowed in the cabin?",
        "Can my dog fly with me inside the plane?",
        [
            ("entities", "I'm travelling with my cat, are pets allowed in the cabin?"),
            ("polarity", "I'm travelling with my dog, are pets banned in the cabin?"),
        ],
        None,
        "I'm travelling with my dog, are pets allowed in the cabin?",
    ),
    (
        "travel",
        "How do I get from the airport to the city centre by train?",
        "What's the rail connection between the airport and downtown?",
        [
            ("roles", "How do I get from the city centre to the airport by train?"),
            ("near_miss", "How do I get from the airport to the city centre by bus?"),
        ],
        "By train, how do I get from the airport to the city centre?",
        "How do I get from the airport to the city centre by train?",
    ),
    (
        "travel",
        "Can I change the name on my plane ticket?",
        "Is it possible to put someone else's name on my airline ticket?",
        [
            ("near_miss", "Can I change the date on my plane ticket?"),
            ("scope", "Can I change the names on our plane tickets?"),
        ],
        None,
        None,
    ),
    (
        "travel",
        "Is the museum open on public holidays?",
        "Does the museum operate on bank holidays?",
        [
            ("polarity", "Is the museum closed on public holidays?"),
            ("near_miss", "Is the museum free on public holidays?"),
        ],
        "On public holidays, is the museum open?",
        None,
    ),
    (
        "travel",
        "Upgrade my seat to business class on tomorrow's flight.",
        "I'd like a business class seat instead on my flight tomorrow.",
        [
            ("polarity", "Downgrade my seat to economy class on tomorrow's flight."),
            ("entities", "Upgrade my seat to business class on today's flight."),
        ],
        "On tomorrow's flight, upgrade my seat to business class.",
        None,
    ),
    (
        "travel",
        "Where can I rent a car near the train station?",
        "Are there car hire places by the railway station?",
        [
            ("near_miss", "Where can I park a car near the train station?"),
            ("near_miss", "Where can I rent a bike near the train station?"),
        ],
        "Near the train station, where can I rent a car?",
        None,
    ),
    (
        "travel",
        "How early should I arrive at the airport before a domestic flight?",
        "How much time before a domestic flight should I be at the airport?",
        [
            (
                "polarity",
                "How early should I arrive at the airport before an international flight?",
            ),
            ("near_miss", "How early can I check my bags before a domestic flight?"),
        ],
        None,
        None,
    ),
    (
        "travel",
        "Does my travel insurance cover trip cancellation due to illness?",
        "If I get sick and cancel, will my travel insurance pay?",
        [
            ("polarity", "Does my travel insurance exclude trip cancellation due to illness?"),
            ("scope", "Does our family travel insurance cover trip cancellation due to illness?"),
        ],
        None,
        None,
    ),
    (
        "travel",
        "Book two adult tickets for the ferry to the island on Saturday.",
        "Reserve a ferry crossing for two grown-ups to the island this Saturday.",
        [
            ("numbers", "Book three adult tickets for the ferry to the island on Saturday."),
            ("polarity", "Book two child tickets for the ferry to the island on Saturday."),
        ],
        None,
        None,
    ),
    (
        "travel",
        "What's the cheapest way to get from Rome to Florence?",
        "Lowest-cost option for travelling Rome to Florence?",
        [
            ("roles", "What's the cheapest way to get from Florence to Rome?"),
            ("polarity", "What's the fastest way to get from Rome to Florence?"),
        ],
        None,
        None,
    ),
    (
        "travel",
        "Can I bring liquids over 100 ml in my carry-on bag?",
        "Are bottles larger than 100 millilitres okay in hand luggage?",
        [
            ("polarity", "Can I bring liquids under 100 ml in my carry-on bag?"),
            ("numbers", "Can I bring liquids over 1,000 ml in my carry-on bag?"),
        ],
        None,
        None,
    ),
    # ---------------------------------------------------------------- retail
    (
        "retail",
        "Where is my order?",
        "Can you tell me the status of my package?",
        [("scope", "Where are my orders?"), ("scope", "Where is my partner's order?")],
        None,
        None,
    ),
    (
        "retail",
        "How do I return a damaged item for a refund?",
        "Something arrived broken, how can I send it back and get my money?",
        [
            ("near_miss", "How do I return a damaged item for an exchange?"),
            ("polarity", "How do I return an undamaged item for a refund?"),
        ],
        "For a refund, how do I return a damaged item?",
        None,
    ),
    (
        "retail",
        "Do you ship to Canada?",
        "Can I get delivery to a Canadian address?",
        [("entities", "Do you ship to Mexico?"), ("roles", "Do you ship from Canada?")],
        None,
        None,
    ),
    (
        "retail",
        "Add the blue sweater in size medium to my cart.",
        "Put a medium blue sweater in my basket.",
        [
            ("polarity", "Remove the blue sweater in size medium from my cart."),
            ("entities", "Add the red sweater in size medium to my cart."),
        ],
        "To my cart, add the blue sweater in size medium.",
        None,
    ),
    (
        "retail",
        "Is the grey jacket available in size large?",
        "Do you have the grey jacket in a large?",
        [
            ("polarity", "Is the grey jacket available in size small?"),
            ("entities", "Is the black jacket available in size large?"),
        ],
        None,
        "Is the grey jacket available in size large?",
    ),
    (
        "retail",
        "Can I use two discount codes on one order?",
        "Is stacking promo codes on a single purchase allowed?",
        [
            ("numbers", "Can I use three discount codes on one order?"),
            ("scope", "Can I use two discount codes on every order?"),
        ],
        None,
        None,
    ),
    (
        "retail",
        "How do I cancel my order before it ships?",
        "I want to stop my purchase before it goes out, how?",
        [
            ("polarity", "How do I cancel my order after it ships?"),
            ("near_miss", "How do I change my order before it ships?"),
        ],
        "Before it ships, how do I cancel my order?",
        None,
    ),
    (
        "retail",
        "What is your price match policy for online retailers?",
        "Will you match a lower price I found on another website?",
        [
            ("polarity", "What is your price match policy for local retailers?"),
            ("near_miss", "What is your return policy for online retailers?"),
        ],
        None,
        None,
    ),
    (
        "retail",
        "Is this laptop compatible with Windows 11?",
        "Does this notebook run Windows 11?",
        [
            ("entities", "Is this laptop compatible with macOS?"),
            ("polarity", "Is this laptop incompatible with Windows 11?"),
        ],
        None,
        None,
    ),
    (
        "retail",
        "Can I pick up my online order in store today?",
        "Is same-day in-store pickup possible for my web order?",
        [
            ("entities", "Can I pick up my online order in store tomorrow?"),
            ("roles", "Can I pick up my in-store order online today?"),
        ],
        None,
        None,
    ),
    (
        "retail",
        "How do I unsubscribe from your marketing emails?",
        "Stop sending me promotional email, how?",
        [
            ("polarity", "How do I subscribe to your marketing emails?"),
            ("near_miss", "How do I unsubscribe from your marketing texts?"),
        ],
        None,
        None,
    ),
    (
        "retail",
        "Does the warranty cover water damage on this phone?",
        "Is liquid damage included in the phone's warranty?",
        [
            ("near_miss", "Does the warranty cover screen damage on this phone?"),
            ("polarity", "Does the warranty exclude water damage on this phone?"),
        ],
        "On this phone, does the warranty cover water damage?",
        None,
    ),
    (
        "retail",
        "Which is better for running, the Nike Pegasus or the Adidas Ultraboost?",
        "Pegasus vs Ultraboost, which one for runners?",
        [
            ("entities", "Which is better for running, the Nike Pegasus or the Asics Novablast?"),
            ("near_miss", "Which is better for hiking, the Nike Pegasus or the Adidas Ultraboost?"),
        ],
        None,
        None,
    ),
    (
        "retail",
        "I was charged twice for the same order.",
        "My card shows a double charge for one purchase.",
        [
            ("near_miss", "I was refunded twice for the same order."),
            ("polarity", "I was not charged for the same order."),
        ],
        None,
        None,
    ),
    (
        "retail",
        "Can I change the delivery address after placing my order?",
        "My order's already placed, can the shipping address still be changed?",
        [
            ("polarity", "Can I change the delivery address before placing my order?"),
            ("near_miss", "Can I change the delivery date after placing my order?"),
        ],
        "After placing my order, can I change the delivery address?",
        None,
    ),
    (
        "retail",
        "Do you have gift cards that never expire?",
        "Are your gift cards valid forever?",
        [
            ("polarity", "Do you have gift cards that expire?"),
            ("near_miss", "Do you sell gift wrap that never tears?"),
        ],
        None,
        None,
    ),
    # ---------------------------------------------------------------- public services
    (
        "public",
        "How do I renew my driver's licence online?",
        "Can my driving license be renewed over the internet?",
        [
            ("scope", "How do I renew my son's driver's licence online?"),
            ("near_miss", "How do I replace my driver's licence online?"),
        ],
        "Online, how do I renew my driver's licence?",
        "How do I renew my driver's licence online?",
    ),
    (
        "public",
        "When is the deadline to file my tax return this year?",
        "By what date must I submit taxes this year?",
        [
            ("entities", "When is the deadline to file my tax return next year?"),
            ("near_miss", "When is the deadline to amend my tax return this year?"),
        ],
        None,
        None,
    ),
    (
        "public",
        "Which day is recycling collected on my street?",
        "What's the recycling pickup day for my road?",
        [
            ("near_miss", "Which day is garbage collected on my street?"),
            ("near_miss", "Which day is compost collected on my street?"),
        ],
        None,
        None,
    ),
    (
        "public",
        "How do I apply for a passport for my newborn?",
        "Getting a baby's first passport: what's the process?",
        [
            ("scope", "How do I apply for a passport for myself?"),
            ("near_miss", "How do I apply for a birth certificate for my newborn?"),
        ],
        None,
        None,
    ),
    (
        "public",
        "Can I vote by mail if I live abroad?",
        "Is absentee voting possible for citizens overseas?",
        [
            ("polarity", "Can I vote in person if I live abroad?"),
            ("polarity", "Can I vote by mail if I do not live abroad?"),
        ],
        None,
        None,
    ),
    (
        "public",
        "How do I register my car after moving from Texas to Ohio?",
        "I moved states from Texas to Ohio, how do I get my vehicle registered?",
        [
            ("roles", "How do I register my car after moving from Ohio to Texas?"),
            ("entities", "How do I register my car after moving from Texas to Iowa?"),
        ],
        None,
        None,
    ),
    (
        "public",
        "Is the town library open on Monday evenings?",
        "Can I visit the public library on a Monday night?",
        [
            ("polarity", "Is the town library closed on Monday evenings?"),
            ("entities", "Is the town library open on Thursday evenings?"),
        ],
        "On Monday evenings, is the town library open?",
        None,
    ),
    (
        "public",
        "How do I report a pothole on my street?",
        "There's a hole in the road outside my house, who do I tell?",
        [
            ("near_miss", "How do I report a broken streetlight on my street?"),
            ("scope", "How do I report potholes on every street?"),
        ],
        None,
        None,
    ),
    (
        "public",
        "What documents do I need to apply for unemployment benefits?",
        "Which papers are required for a jobless benefits claim?",
        [
            ("near_miss", "What documents do I need to apply for housing benefits?"),
            ("polarity", "What documents do I need to stop unemployment benefits?"),
        ],
        None,
        None,
    ),
    (
        "public",
        "How much does a parking permit cost for residents?",
        "What's the price of a resident parking pass?",
        [
            ("polarity", "How much does a parking permit cost for visitors?"),
            ("near_miss", "How long does a parking permit last for residents?"),
        ],
        None,
        None,
    ),
    (
        "public",
        "Can I pay my water bill with a credit card?",
        "Does the utility accept card payment for water?",
        [
            ("entities", "Can I pay my electricity bill with a credit card?"),
            ("near_miss", "Can I dispute my water bill with a credit card company?"),
        ],
        None,
        None,
    ),
    (
        "public",
        "How do I change the name on my social security card after marriage?",
        "I got married, how do I update my name with social security?",
        [
            ("near_miss", "How do I change the name on my social security card after divorce?"),
            ("scope", "How do I change the name on my wife's social security card after marriage?"),
        ],
        "After marriage, how do I change the name on my social security card?",
        None,
    ),
    (
        "public",
        "Are dogs allowed in the city park without a leash?",
        "Can I let my dog off the lead in the park?",
        [
            ("polarity", "Are dogs allowed in the city park with a leash?"),
            ("entities", "Are cats allowed in the city park without a leash?"),
        ],
        None,
        None,
    ),
    (
        "public",
        "How do I get a copy of my birth certificate?",
        "I need a duplicate of my birth record, where do I get it?",
        [
            ("near_miss", "How do I get a copy of my marriage certificate?"),
            ("scope", "How do I get a copy of my father's birth certificate?"),
        ],
        None,
        None,
    ),
    (
        "public",
        "Is jury duty mandatory if I am over 70?",
        "Do people older than seventy have to serve on a jury?",
        [
            ("numbers", "Is jury duty mandatory if I am over 65?"),
            ("polarity", "Is jury duty mandatory if I am under 70?"),
        ],
        None,
        None,
    ),
    (
        "public",
        "Where do I drop off old paint for safe disposal?",
        "Which facility takes leftover paint cans?",
        [
            ("near_miss", "Where do I drop off old batteries for safe disposal?"),
            ("near_miss", "Where do I buy old paint for safe disposal?"),
        ],
        None,
        None,
    ),
    # ---------------------------------------------------------------- software support
    (
        "software",
        "How do I turn on dark mode?",
        "Is there a night theme setting, and where?",
        [
            ("polarity", "How do I turn off dark mode?"),
            ("polarity", "How do I turn on light mode?"),
        ],
        None,
        None,
    ),
    (
        "software",
        "How do I reset my password?",
        "I forgot my password, how can I set a new one?",
        [
            ("scope", "How do I reset my team member's password?"),
            ("near_miss", "How do I reset my username?"),
        ],
        None,
        None,
    ),
    (
        "software",
        "Why does the app crash when I upload a photo?",
        "The app closes itself whenever I try to add a picture, why?",
        [
            ("polarity", "Why does the app crash when I download a photo?"),
            ("near_miss", "Why does the app crash when I upload a video?"),
        ],
        "When I upload a photo, why does the app crash?",
        None,
    ),
    (
        "software",
        "How do I export my contacts to a CSV file?",
        "Can I save all my contacts as a spreadsheet?",
        [
            ("polarity", "How do I import my contacts from a CSV file?"),
            ("entities", "How do I export my contacts to a vCard file?"),
        ],
        None,
        None,
    ),
    (
        "software",
        "Can I sync my calendar between my phone and laptop?",
        "Is calendar syncing across my devices supported?",
        [
            ("near_miss", "Can I sync my notes between my phone and laptop?"),
            ("entities", "Can I sync my calendar between my phone and tablet?"),
        ],
        None,
        None,
    ),
    (
        "software",
        "How do I enable notifications for new messages?",
        "I'm not getting alerts for messages, how do I switch them on?",
        [
            ("polarity", "How do I disable notifications for new messages?"),
            ("near_miss", "How do I enable notifications for new comments?"),
        ],
        "For new messages, how do I enable notifications?",
        None,
    ),
    (
        "software",
        "The printer is not connecting to the Wi-Fi network.",
        "My printer can't join the wireless network.",
        [
            ("polarity", "The printer is connecting to the Wi-Fi network."),
            ("entities", "The scanner is not connecting to the Wi-Fi network."),
        ],
        None,
        None,
    ),
    (
        "software",
        "How do I share a folder with my colleague in Google Drive?",
        "Giving a coworker access to a Drive folder: how?",
        [
            ("entities", "How do I share a folder with my colleague in Dropbox?"),
            ("scope", "How do I share all folders with my colleague in Google Drive?"),
        ],
        "In Google Drive, how do I share a folder with my colleague?",
        None,
    ),
    (
        "software",
        "Can I recover a deleted file from the recycle bin?",
        "Is it possible to restore something I removed from the trash?",
        [
            ("polarity", "Can I delete a recovered file from the recycle bin?"),
            ("near_miss", "Can I recover a deleted email from the recycle bin?"),
        ],
        None,
        None,
    ),
    (
        "software",
        "How do I install the desktop app on macOS?",
        "Setting up the desktop client on a Mac, how?",
        [
            ("polarity", "How do I uninstall the desktop app on macOS?"),
            ("entities", "How do I install the desktop app on Windows?"),
        ],
        "On macOS, how do I install the desktop app?",
        None,
    ),
    (
        "software",
        "Why is my laptop battery draining so fast?",
        "My laptop's battery runs out really quickly, what's wrong?",
        [
            ("polarity", "Why is my laptop battery charging so slowly?"),
            ("near_miss", "Why is my phone battery draining so fast?"),
        ],
        None,
        None,
    ),
    (
        "software",
        "How do I change the default language of the interface to Spanish?",
        "Switch the UI language to Spanish, how?",
        [
            ("entities", "How do I change the default language of the interface to French?"),
            ("near_miss", "How do I change the default currency of the interface to Spanish?"),
        ],
        None,
        None,
    ),
    (
        "software",
        "Copy the report from the shared drive to my desktop.",
        "Put a copy of the shared-drive report onto my desktop.",
        [
            ("roles", "Copy the report from my desktop to the shared drive."),
            ("near_miss", "Delete the report from the shared drive to free my desktop."),
        ],
        "To my desktop, copy the report from the shared drive.",
        None,
    ),
    (
        "software",
        "How do I customise the toolbar in the editor?",
        "Can I rearrange the buttons on the editor's toolbar?",
        [
            ("polarity", "How do I hide the toolbar in the editor?"),
            ("near_miss", "How do I customise the sidebar in the editor?"),
        ],
        None,
        "How do I customise the toolbar in the editor?",
    ),
    (
        "software",
        "Is my data encrypted before it is uploaded?",
        "Does the app encrypt files prior to upload?",
        [
            ("polarity", "Is my data encrypted after it is uploaded?"),
            ("polarity", "Is my data decrypted before it is uploaded?"),
        ],
        None,
        None,
    ),
    (
        "software",
        "How do I add a user to the admin group?",
        "Make someone an administrator: what are the steps?",
        [
            ("polarity", "How do I remove a user from the admin group?"),
            ("roles", "How do I add the admin group to a user?"),
        ],
        None,
        None,
    ),
]

# American originals of the British variants above (the base text uses one spelling, the
# variant the other): where a base has a British variant, the pair is (American, British).
AMERICAN = {
    "Can I deposit a cheque using the mobile app?": "Can I deposit a check using the mobile app?",
    "How do I book an appointment with a paediatrician?": "How do I book an appointment with a pediatrician?",
    "I'm travelling with my dog, are pets allowed in the cabin?": "I'm traveling with my dog, are pets allowed in the cabin?",
    "How do I get from the airport to the city centre by train?": "How do I get from the airport to the city center by train?",
    "Is the grey jacket available in size large?": "Is the gray jacket available in size large?",
    "How do I renew my driver's licence online?": "How do I renew my driver's license online?",
    "How do I customise the toolbar in the editor?": "How do I customize the toolbar in the editor?",
}

# Greetings, courtesy and fillers people put around a question. Two pools: the test split
# draws from the second, which was written apart from the canonical word lists.
OPENERS_TRAIN = [
    "Hi,",
    "Hello!",
    "Hey there,",
    "Hi team,",
    "Good morning,",
    "Hey,",
    "Quick question:",
    "Sorry to bother you, but",
    "Hi, quick question:",
    "so um",
    "Um,",
    "Hello there,",
    "Hey team, quick question,",
]
CLOSERS_TRAIN = [
    "Thanks!",
    "Thank you.",
    "Thanks in advance.",
    "Cheers",
    "thx",
    "Thanks a lot!",
    "Kind regards",
    "Much appreciated.",
    "ty",
]
OPENERS_TEST = [
    "Hey all,",
    "Good afternoon,",
    "Hiya,",
    "Hi folks,",
    "er, so",
    "Sorry to ask, but",
    "Hello everyone,",
    "Uh, hi,",
    "Hey guys, random question:",
    "Okay so,",
    "Greetings,",
    "Dear support,",
]
CLOSERS_TEST = [
    "Many thanks.",
    "Thank you so much!",
    "Appreciate it.",
    "Best regards",
    "Thanks for your help!",
    "cheers!",
    "Any help is appreciated.",
    "Have a nice day!",
    "TIA",
    "thank you very much",
]
FILLERS_INSIDE = ["um", "like", "uh", "basically", "you know,", "er"]

FRAMES = [("How do I ", ["How can I ", "How would I ", "How should I ", "How could I "])]

PREAMBLES = {
    "banking": (
        "You are the virtual assistant of Northgate Savings Bank. Answer customers' questions "
        "about their accounts, cards, transfers and loans. Be concise and accurate. Never ask "
        "for a full card number, a PIN or a password. If a request needs identity "
        "verification, say so and explain how the customer can verify in the app. Quote fees "
        "and limits from the current schedule only; if you are unsure, say that a specialist "
        "will confirm. Use plain language and avoid jargon. Do not give investment advice."
    ),
    "health": (
        "System: You are a patient information assistant for Riverside Community Clinic. "
        "You provide general health information, help with appointments, prescriptions and "
        "insurance questions. You are not a doctor and you never diagnose. For any symptom "
        "that could be serious (chest pain, trouble breathing, a high fever in an infant, "
        "signs of stroke) tell the patient to call emergency services at once. Keep answers "
        "short, kind and free of medical jargon. Respect privacy: never repeat identifying "
        "details back. Opening hours: weekdays 8 to 18, Saturday 9 to 13. The pharmacy is on "
        "the ground floor. Appointments can be booked online, by phone or at the front desk. "
        "Insurance questions about coverage limits go to the billing office, which answers "
        "within two business days. If the patient writes in another language, answer in "
        "that language. Vaccination clinics run on Tuesday and Thursday afternoons; flu "
        "shots need no appointment during the season, other vaccines do. Laboratory samples "
        "are taken from 7:30 on weekdays, and fasting tests should be booked before 10. "
        "Results appear in the patient portal within three working days; abnormal results "
        "are always followed by a call from a nurse, so do not interpret them for the "
        "patient. Repeat prescriptions are requested through the portal or the pharmacy "
        "counter and are ready after two working days; controlled medicines need a review "
        "with the prescribing doctor first. Interpreters can be booked for any appointment "
        "at no cost. The clinic accepts most public and private insurance plans; patients "
        "without insurance can ask the front desk about the sliding-scale fee programme. "
        "Parking is free for the first two hours in the lot behind the building, and the "
        "number 12 bus stops at the main entrance. Masks are available at reception for "
        "anyone with cold or flu symptoms.\n\nPatient question:"
    ),
    "travel": (
        "You are WanderDesk, a travel support agent. You help travellers with flights, "
        "hotels, trains, visas, luggage and insurance. Always mention when rules depend on the "
        "airline or the country, and recommend checking the official source for entry "
        "requirements. Keep a friendly tone. Format: one short paragraph, then at most three "
        "bullet points with practical steps.\n\nTraveller:"
    ),
    "retail": (
        "### Instructions\nYou answer customer messages for Larkspur Outfitters, an online "
        "and in-store retailer of clothing, shoes and outdoor gear. Policies: returns within "
        "30 days with receipt; free shipping over the threshold shown at checkout; price "
        "matching against major retailers' current online prices; gift cards never expire. "
        "Do not promise delivery dates; give the carrier's estimate. Escalate damaged or "
        "missing parcels to a human agent with the order reference. Reply in two to four "
        "sentences.\n### Customer message\n"
    ),
    "public": (
        "You assist residents of the City of Maplewood with municipal and government "
        "services: permits, licences, taxes, waste collection, parks, libraries, voting and "
        "records. Give the office or web page that handles the request. Never collect "
        "personal identification numbers in the chat. When a rule differs between residents "
        "and visitors, state both. If a question concerns state or federal services, say "
        "which agency is responsible and that you cannot act for it. Be neutral, factual and "
        "brief. Office hours are Monday to Friday, 9 to 17; the service center is closed on "
        "public holidays. Answer in the language of the question.\n\nResident asks: "
    ),
    "software": (
        "<system>You are the help bot for Quillstack, a note-taking and file-sync application "
        "available on Windows, macOS, iOS and Android. Answer support questions step by step, "
        "naming menus exactly as they appear in the current version (Settings > Account, "
        "Settings > Appearance, File > Export). If the problem looks like a bug, ask for the "
        "app version and the operating system, and suggest sending logs from Help > Report a "
        "problem. Never ask for the user's password. Keep answers under 120 words. Do not "
        "speculate about release dates.</system>\n<user>"
    ),
}

_CONTRACT = [
    ("do not", "don't"),
    ("I am", "I'm"),
    ("is not", "isn't"),
    ("What is", "What's"),
    ("can not", "can't"),
    ("does not", "doesn't"),
]


def surface(q: str, rng: random.Random) -> str:
    s = q
    for full, short in _CONTRACT:
        if full in s and rng.random() < 0.7:
            s = s.replace(full, short)
            break
        if short in s and rng.random() < 0.7:
            s = s.replace(short, full)
            break
    style = rng.randrange(4)
    if style == 0:
        s = s.lower().rstrip("?.!")
    elif style == 1:
        s = s.rstrip("?.!") + rng.choice(["??", "?!", " ?", "..."])
    elif style == 2:
        s = "  " + s.replace(" ", "  ", 2).upper() if len(s) < 40 else s.lower()
    else:
        s = s.rstrip("?.!")
    return s if s != q else q.lower()


def typo(q: str, rng: random.Random) -> str:
    words = q.split(" ")
    spots = [
        i
        for i, w in enumerate(words)
        if len(re.sub(r"\W", "", w)) >= 5 and w.isascii() and not any(c.isdigit() for c in w)
    ]
    for i in rng.sample(spots, min(len(spots), rng.choice([1, 1, 2]))):
        w = words[i]
        core = re.match(r"^(\W*)(\w+)(\W*)$", w)
        if core is None:
            continue
        pre, body, post = core.groups()
        k = rng.randrange(1, len(body) - 1)
        op = rng.randrange(4)
        if op == 0:  # transpose
            body = body[: k - 1] + body[k] + body[k - 1] + body[k + 1 :]
        elif op == 1:  # drop
            body = body[:k] + body[k + 1 :]
        elif op == 2:  # double
            body = body[:k] + body[k] + body[k:]
        else:  # neighbour key
            body = body[:k] + rng.choice("aeiourstnl") + body[k + 1 :]
        words[i] = pre + body + post
    out = " ".join(words)
    return out if out != q else q.replace("e", "ee", 1)


def filler(q: str, rng: random.Random, test: bool) -> str:
    openers = OPENERS_TEST if test else OPENERS_TRAIN
    closers = CLOSERS_TEST if test else CLOSERS_TRAIN
    body = q[0].lower() + q[1:] if not q.startswith("I ") and not q.startswith("I'") else q
    words = body.split(" ")
    if rng.random() < 0.4 and len(words) > 4:
        k = rng.randrange(1, 4)
        words.insert(k, rng.choice(FILLERS_INSIDE))
    body = " ".join(words)
    parts = [rng.choice(openers), body]
    if rng.random() < 0.8:
        parts.append(rng.choice(closers))
    return " ".join(parts)


def frame(q: str, rng: random.Random) -> str | None:
    for head, alts in FRAMES:
        if q.startswith(head):
            return rng.choice(alts) + q[len(head) :]
    return None


def build() -> list[dict]:
    rng = random.Random(SEED)
    order = list(range(len(BASES)))
    rng.shuffle(order)
    n_test = round(len(BASES) * TEST_SHARE)
    test_bases = set(order[:n_test])
    rows: list[dict] = []

    def add(base: int, a: str, b: str, dup: bool, kind: str) -> None:
        rows.append(
            {
                "a": a,
                "b": b,
                "dup": dup,
                "kind": kind,
                "domain": BASES[base][0],
                "split": "test" if base in test_bases else "train",
                "base": base,
            }
        )

    for i, (domain, q, para, traps, moved, british) in enumerate(BASES):
        test = i in test_bases
        brng = random.Random(SEED * 1000 + i)
        add(i, q, surface(q, brng), True, "surface")
        add(i, q, typo(q, brng), True, "typo")
        add(i, q, filler(q, brng, test), True, "filler")
        f = frame(q, brng)
        if f is not None:
            add(i, q, f, True, "frame")
        if british is not None:
            add(i, AMERICAN[british], british, True, "spelling")
        if moved is not None:
            add(i, q, moved, True, "reorder")
        add(i, q, para, True, "paraphrase")
        for kind, text in traps:
            add(i, q, text, False, kind)
        pre = PREAMBLES[domain]
        sep = "" if pre.endswith((" ", "\n", ">", ":")) and not pre.endswith(":") else " "
        if pre.endswith(":"):
            sep = " "
        variant = brng.choice([typo, surface])(q, brng)
        if brng.random() < 0.5:
            variant = filler(q, brng, test)
        add(i, pre + sep + q, pre + sep + variant, True, "long_repeat")
        add(i, pre + sep + q, pre + sep + brng.choice(traps)[1], False, "long_trap")
    return rows


def round2() -> list[dict]:
    """The dedup round-2 pairs (issue 20), built by ``make_guard_pairs_round2.py``: one
    family per phenomenon, split 30% by base question within each family, bases numbered
    from 1000 (so they never meet this file's own)."""
    import importlib.util

    path = Path(__file__).with_name("make_guard_pairs_round2.py")
    spec = importlib.util.spec_from_file_location("make_guard_pairs_round2", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build()


def main() -> None:
    rows = build() + round2()
    OUT.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    kinds: dict[str, int] = {}
    for r in rows:
        kinds[r["kind"]] = kinds.get(r["kind"], 0) + 1
    print(f"{len(rows)} pairs -> {OUT}")
    print(kinds)


if __name__ == "__main__":
    main()
