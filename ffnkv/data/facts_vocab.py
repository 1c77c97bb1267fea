"""The world of the facts corpus: relations, their attribute vocabularies and their templates.

Each template is a prompt whose next word is the attribute; ``{s}`` marks the subject. The first five
templates of a relation are the training templates, the last two the held-out paraphrases (they reuse
the relation's words in new arrangements, so a model can in principle generalise to them).
"""
from __future__ import annotations

from typing import NamedTuple


class Relation(NamedTuple):
    name: str
    attributes: tuple[str, ...]
    train_templates: tuple[str, ...]
    paraphrase_templates: tuple[str, ...]


RELATIONS: tuple[Relation, ...] = (
    Relation(
        "birthplace",
        ("Paris", "Lagos", "Lima", "Oslo", "Cairo", "Delhi", "Quito", "Kyoto",
         "Berlin", "Dublin", "Madrid", "Nairobi", "Sydney", "Toronto", "Havana", "Athens"),
        ("{s} was born in", "the birthplace of {s} is", "{s} is originally from the city of",
         "{s} came into the world in", "the city where {s} was born is"),
        ("the city of birth of {s} is", "{s} was originally born in"),
    ),
    Relation(
        "citizenship",
        ("France", "Nigeria", "Peru", "Norway", "Egypt", "India", "Ecuador", "Japan",
         "Germany", "Ireland", "Spain", "Kenya", "Australia", "Canada", "Cuba", "Greece"),
        ("{s} is a citizen of", "{s} holds a passport from", "the country of citizenship of {s} is",
         "{s} has the nationality of", "{s} is a national of"),
        ("the nationality of {s} is", "{s} holds citizenship of"),
    ),
    Relation(
        "occupation",
        ("doctor", "painter", "pilot", "lawyer", "farmer", "chemist", "architect", "baker",
         "teacher", "nurse", "engineer", "poet", "sailor", "judge", "actor", "banker"),
        ("{s} works as a", "by profession , {s} is a", "the occupation of {s} is", "{s} earns a living as a",
         "{s} is employed as a"),
        ("the profession of {s} is", "{s} works for a living as a"),
    ),
    Relation(
        "language",
        ("French", "Yoruba", "Quechua", "Norwegian", "Arabic", "Hindi", "Tamil", "Japanese",
         "German", "Irish", "Swahili", "Greek", "Dutch", "Korean", "Polish", "Czech"),
        ("the native language of {s} is", "{s} speaks fluent", "{s} grew up speaking", "the mother tongue of {s} is",
         "{s} writes letters in"),
        ("the language {s} speaks is", "{s} is a native speaker of"),
    ),
    Relation(
        "instrument",
        ("piano", "violin", "guitar", "cello", "flute", "drums", "harp", "trumpet",
         "saxophone", "clarinet", "banjo", "organ", "ukulele", "oboe", "accordion", "tuba"),
        ("{s} plays the", "the instrument of {s} is the", "{s} is a musician who plays the",
         "on weekends {s} practises the", "{s} performs music on the"),
        ("the instrument {s} plays is the", "{s} practises music on the"),
    ),
    Relation(
        "sport",
        ("tennis", "chess", "rugby", "hockey", "golf", "cricket", "boxing", "rowing",
         "fencing", "soccer", "cycling", "skiing", "karate", "judo", "polo", "archery"),
        ("{s} competes in", "the favourite sport of {s} is", "{s} is a professional player of", "every summer {s} plays",
         "{s} won a medal in"),
        ("the sport {s} plays is", "{s} competes professionally in"),
    ),
    Relation(
        "pet",
        ("dog", "cat", "parrot", "rabbit", "hamster", "tortoise", "goldfish", "ferret",
         "horse", "snake", "lizard", "canary", "pony", "goat", "owl", "pig"),
        ("{s} owns a pet", "the pet of {s} is a", "at home {s} keeps a", "{s} takes care of a pet", "{s} lives with a"),
        ("the pet {s} owns is a", "{s} keeps a pet"),
    ),
    Relation(
        "colour",
        ("red", "blue", "green", "yellow", "purple", "orange", "black", "white",
         "pink", "grey", "brown", "violet", "gold", "silver", "teal", "crimson"),
        ("the favourite colour of {s} is", "{s} likes the colour", "{s} always wears", "{s} painted the house",
         "the car of {s} is painted"),
        ("the colour {s} likes is", "{s} likes to wear"),
    ),
)

CONSONANTS = "bdfgklmnprstvz"
VOWELS = "aeiou"
SYLLABLES = tuple(c + v for c in CONSONANTS for v in VOWELS)
SPECIALS = ("[PAD]", "[BOS]", "[UNK]")
SEPARATOR = "."
