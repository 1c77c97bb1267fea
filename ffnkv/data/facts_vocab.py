"""The world of the facts corpus: relations, their attribute vocabularies and their templates
(``facts_world.json``).

Each template is a prompt whose next word is the attribute; ``{s}`` marks the subject. The first five
templates of a relation are the training templates, the last two the held-out paraphrases (they reuse
the relation's words in new arrangements, so a model can in principle generalise to them).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple


class Relation(NamedTuple):
    name: str
    attributes: tuple[str, ...]
    train_templates: tuple[str, ...]
    paraphrase_templates: tuple[str, ...]


def _relations() -> tuple[Relation, ...]:
    rows = json.loads((Path(__file__).with_name("facts_world.json")).read_text())
    return tuple(Relation(r["name"], tuple(r["attributes"]), tuple(r["train_templates"]),
                          tuple(r["paraphrase_templates"])) for r in rows)


RELATIONS: tuple[Relation, ...] = _relations()  # the data: facts_world.json

CONSONANTS = "bdfgklmnprstvz"
VOWELS = "aeiou"
SYLLABLES = tuple(c + v for c in CONSONANTS for v in VOWELS)
SPECIALS = ("[PAD]", "[BOS]", "[UNK]")
SEPARATOR = "."
