"""Probe text for real pretrained models: English sentences (nouns and verbs) and well-known facts.

``english_sentences(n, seed)`` mixes hand-written sentences with sentences from templates over word lists,
deterministically; part-of-speech labels come from a tagger (spaCy), not from the templates.
``WORLD_FACTS`` are (prompt, subject, answer) triples; the subject is a substring of the prompt and the answer
is the expected continuation (first token counts).
"""
from __future__ import annotations

import numpy as np

HANDWRITTEN = (
    "The children played football in the park after school.",
    "My grandmother bakes bread every Sunday morning.",
    "The committee approved the new budget yesterday.",
    "A storm destroyed several houses near the coast.",
    "She opened the window and listened to the rain.",
    "The doctor examined the patient carefully.",
    "We visited the museum during our holiday.",
    "The engineers designed a bridge across the river.",
    "He forgot his keys on the kitchen table.",
    "The students wrote essays about the war.",
    "Farmers harvest wheat at the end of summer.",
    "The company hired three new programmers.",
    "The cat chased a mouse under the bed.",
    "Our neighbours painted their fence green.",
    "The pilot landed the plane despite the fog.",
    "They built a small cabin in the mountains.",
    "The teacher explained the lesson again.",
    "A young boy found a wallet on the street.",
    "The orchestra performed a symphony by Beethoven.",
    "The police arrested the thief at the station.",
    "Scientists discovered a new species of frog.",
    "The waiter brought us soup and bread.",
    "I read the newspaper while drinking coffee.",
    "The river flooded the village last spring.",
    "My brother repairs old bicycles in his garage.",
    "The government announced new taxes on fuel.",
    "The dog buried a bone in the garden.",
    "She sings songs to her baby every night.",
    "The workers repaired the road in two days.",
    "We planted tomatoes and beans in the yard.",
    "The author signed copies of her novel.",
    "The wind blew the leaves across the lawn.",
    "The chef cut the onions into thin slices.",
    "Tourists photographed the old cathedral.",
    "The nurse gave the child some medicine.",
    "The team celebrated their victory with a party.",
    "He carried the heavy boxes up the stairs.",
    "The judge questioned the witness about the accident.",
    "Birds build nests in the spring.",
    "The mechanic checked the engine and the brakes.",
)

NOUNS = ("farmer", "teacher", "doctor", "child", "soldier", "artist", "lawyer", "student", "driver", "singer",
         "baker", "writer", "nurse", "hunter", "sailor", "king", "queen", "girl", "boy", "woman", "man", "dog",
         "horse", "bird", "cat")
OBJECTS = ("letter", "book", "car", "house", "garden", "song", "picture", "door", "window", "bottle", "ball",
           "apple", "table", "boat", "road", "bridge", "shirt", "box", "cake", "map", "phone", "ticket", "chair",
           "lamp", "fence")
PLACES = ("city", "village", "forest", "kitchen", "market", "office", "school", "garage", "church", "station",
          "library", "hospital", "harbour", "field", "museum")
VERBS = (("open", "opened", "opens"), ("paint", "painted", "paints"), ("clean", "cleaned", "cleans"),
         ("carry", "carried", "carries"), ("build", "built", "builds"), ("sell", "sold", "sells"),
         ("buy", "bought", "buys"), ("find", "found", "finds"), ("break", "broke", "breaks"),
         ("repair", "repaired", "repairs"), ("watch", "watched", "watches"), ("push", "pushed", "pushes"),
         ("lose", "lost", "loses"), ("steal", "stole", "steals"), ("hide", "hid", "hides"),
         ("bring", "brought", "brings"), ("take", "took", "takes"), ("draw", "drew", "draws"),
         ("wash", "washed", "washes"), ("throw", "threw", "throws"), ("catch", "caught", "catches"),
         ("move", "moved", "moves"), ("hold", "held", "holds"), ("keep", "kept", "keeps"), ("want", "wanted", "wants"))
ADJECTIVES = ("old", "young", "tall", "quiet", "angry", "happy", "tired", "clever", "brave", "busy", "red", "small",
              "large", "new", "broken", "heavy", "beautiful", "strange")
TEMPLATES = (
    "The {adj} {noun} {past} the {obj} in the {place}.",
    "A {noun} {past} a {adj} {obj} near the {place}.",
    "Every morning the {noun} {pres} the {obj}.",
    "The {noun} will {base} the {obj} tomorrow.",
    "Yesterday my {noun} {past} an old {obj} at the {place}.",
    "The {noun} wanted to {base} the {adj} {obj}.",
    "In the {place} a {adj} {noun} {past} the {obj}.",
    "Why did the {noun} {base} the {obj}?",
)


def english_sentences(n: int = 300, seed: int = 0) -> list[str]:
    """``n`` distinct English sentences: the hand-written ones first, then template fills (deterministic)."""
    rng = np.random.default_rng(seed)
    out, seen = list(HANDWRITTEN[:n]), set(HANDWRITTEN)
    while len(out) < n:
        base, past, pres = VERBS[rng.integers(len(VERBS))]
        fill = dict(noun=NOUNS[rng.integers(len(NOUNS))], obj=OBJECTS[rng.integers(len(OBJECTS))],
                    place=PLACES[rng.integers(len(PLACES))], adj=ADJECTIVES[rng.integers(len(ADJECTIVES))],
                    base=base, past=past, pres=pres)
        sentence = TEMPLATES[rng.integers(len(TEMPLATES))].format(**fill)
        if sentence not in seen:
            seen.add(sentence)
            out.append(sentence)
    return out


WORLD_FACTS = (
    ("The capital of France is", "France", "Paris"),
    ("The capital of Japan is", "Japan", "Tokyo"),
    ("The capital of Italy is", "Italy", "Rome"),
    ("The capital of Germany is", "Germany", "Berlin"),
    ("The capital of Spain is", "Spain", "Madrid"),
    ("The capital of Russia is", "Russia", "Moscow"),
    ("The capital of England is", "England", "London"),
    ("The capital of Egypt is", "Egypt", "Cairo"),
    ("The capital of Greece is", "Greece", "Athens"),
    ("The capital of China is", "China", "Beijing"),
    ("The capital of Canada is", "Canada", "Ottawa"),
    ("The capital of Portugal is", "Portugal", "Lisbon"),
    ("The capital of Austria is", "Austria", "Vienna"),
    ("The capital of Ireland is", "Ireland", "Dublin"),
    ("The capital of Norway is", "Norway", "Oslo"),
    ("The capital of Kenya is", "Kenya", "Nairobi"),
    ("The capital of Thailand is", "Thailand", "Bangkok"),
    ("The capital of South Korea is", "South Korea", "Seoul"),
    ("The official language of Brazil is", "Brazil", "Portuguese"),
    ("The official language of Mexico is", "Mexico", "Spanish"),
    ("The official language of Germany is", "Germany", "German"),
    ("People in France speak", "France", "French"),
    ("People in Italy speak", "Italy", "Italian"),
    ("People in Japan speak", "Japan", "Japanese"),
    ("People in Russia speak", "Russia", "Russian"),
    ("The Eiffel Tower is located in the city of", "The Eiffel Tower", "Paris"),
    ("The Colosseum is located in the city of", "The Colosseum", "Rome"),
    ("The Statue of Liberty is located in the city of", "The Statue of Liberty", "New"),
    ("Big Ben is located in the city of", "Big Ben", "London"),
    ("The currency of Japan is the", "Japan", "yen"),
    ("The currency of the United Kingdom is the", "the United Kingdom", "pound"),
    ("The Great Wall is located in", "The Great Wall", "China"),
    ("Mount Everest is located in", "Mount Everest", "Nepal"),
    ("The Amazon rainforest is located in", "The Amazon rainforest", "South"),
    ("The theory of relativity was developed by Albert", "The theory of relativity", "Einstein"),
    ("Romeo and Juliet was written by William", "Romeo and Juliet", "Shakespeare"),
    ("The Mona Lisa was painted by Leonardo da", "The Mona Lisa", "Vinci"),
    ("Microsoft was founded by Bill", "Microsoft", "Gates"),
    ("The largest planet in the solar system is", "the solar system", "Jupiter"),
    ("The chemical symbol for gold is", "gold", "Au"),
)
