"""A synthetic factual corpus with known truth: entities with multi-token names × relations × attributes.

Every entity has one attribute per relation (drawn by ``seed``). A fact is rendered by five training
templates and two held-out paraphrase templates (``facts_vocab.RELATIONS``); the attribute is always the
single token that follows the prompt. Training sequences are ``[BOS] fact . fact . …`` packs of rendered
training-template facts; the loss is on the attribute tokens (``loss="attribute"``) or on every token
(``loss="all"``). The held-out paraphrases never appear in training. Neighbourhood prompts (other
subjects, same relation) and counterfactual attributes (another attribute of the same relation) serve
the tracing and editing work (Meng et al. 2022, CounterFact).

Names are words of two-letter syllables (``Ka ##ro ##mi``) under a WordPiece tokenizer built with
``tokenizers``: every template word and attribute is one token, every name several. ``names="random"`` draws
each name on its own (almost every name is told apart by its first two tokens); ``names="families"`` draws
families of ``family_size`` names that share every token but the last (``Karo Mibe``, ``Karo Mibo``, …), so a
subject is resolved only at its last token — the site Meng et al. (2022) trace (``subject_resolution``).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers

from ffnkv.config import check_fields, ints
from ffnkv.data.facts_vocab import RELATIONS, SEPARATOR, SPECIALS, SYLLABLES
from ffnkv.errors import FfnkvError
from ffnkv.io.tokenizer import task_tokenizer
from ffnkv.prompts import encode_prompts

PAD, BOS, UNK = 0, 1, 2


class Fact(NamedTuple):
    subject: str
    relation: str
    attribute: str
    counterfactual: str


class FactsTokenizer:
    """A WordPiece tokenizer over a closed vocabulary: whole words for templates/attributes, syllables for names."""

    def __init__(self, vocab: list[str]):
        self.vocab = {token: i for i, token in enumerate(vocab)}
        self.tokenizer = Tokenizer(models.WordPiece(self.vocab, unk_token="[UNK]", max_input_chars_per_word=64))
        self.tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
        self.tokenizer.decoder = decoders.WordPiece(prefix="##", cleanup=True)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (no BOS)."""
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids) -> str:
        ids = [int(i) for i in ids if int(i) not in (PAD, BOS)]
        return self.tokenizer.decode(ids, skip_special_tokens=False)

    def token_names(self) -> list[str]:
        names = [""] * len(self.vocab)
        for token, i in self.vocab.items():
            names[i] = token
        return names


def _build_vocab(relations) -> list[str]:
    words = set()
    for rel in relations:
        for template in rel.train_templates + rel.paraphrase_templates:
            words.update(template.replace("{s}", " ").split())
    attributes = [a for rel in relations for a in rel.attributes]
    words -= set(attributes)
    syllables = [s.capitalize() for s in SYLLABLES] + ["##" + s for s in SYLLABLES]
    return list(SPECIALS) + [SEPARATOR] + sorted(words - {SEPARATOR}) + attributes + syllables


NAME_KINDS = ("random", "families")


def _word(rng, n: int) -> str:
    return "".join(SYLLABLES[i] for i in rng.integers(0, len(SYLLABLES), n)).capitalize()


def _random_names(task) -> list[str]:
    """A two-syllable first name and a one- to three-syllable last name, each drawn on its own."""
    rng = np.random.default_rng([task.seed, 0x5B1])
    taken, names = set(task.tokenizer.vocab), []
    while len(names) < task.n_entities:
        words = [_word(rng, n) for n in (2, int(rng.integers(1, 4)))]
        name = " ".join(words)
        if name not in names and not taken.intersection(words):
            names.append(name)
    return names


def _family_sizes(n: int, size: int) -> list[int]:
    """``n`` names in families of ``size``; a remainder of one joins the last family, so every family has ≥ 2."""
    sizes = [size] * (n // size) + ([n % size] if n % size else [])
    if sizes[-1] == 1:
        sizes = sizes[:-2] + [sizes[-2] + 1] if len(sizes) > 1 else [2]
    return sizes


def _family_names(task) -> list[str]:
    """Families of names sharing every token but the last: a two-syllable first name and a two- or
    three-syllable last name whose final syllable alone differs within the family; shuffled over families.
    A draw is kept only if the tokenizer splits every member into exactly its syllables."""
    rng = np.random.default_rng([task.seed, 0xFA3])
    vocab, names, stems = task.tokenizer.vocab, [], set()
    for size in _family_sizes(task.n_entities, task.family_size):
        while True:
            first, stem = _word(rng, 2), _word(rng, int(rng.integers(1, 3)))
            lasts = rng.choice(len(SYLLABLES), size, replace=False)
            family = [f"{first} {stem}{SYLLABLES[i]}" for i in lasts]
            expect = [[vocab[first[:2]], vocab["##" + first[2:]], vocab[stem[:2]]]
                      + [vocab["##" + stem[j: j + 2]] for j in range(2, len(stem), 2)] + [vocab["##" + SYLLABLES[i]]]
                      for i in lasts]
            if (first, stem) not in stems and all(task.tokenizer.encode(n) == e for n, e in zip(family, expect)):
                stems.add((first, stem))
                names += family
                break
    return [names[i] for i in rng.permutation(len(names))]


def subject_resolution(ids_per_subject: list[list[int]]) -> dict:
    """For each subject the number of leading tokens that no other subject shares (its *resolving* token);
    ``unique_before_last``: the fraction resolved before their last token (a subject that is a prefix of
    another is never resolved: it counts as resolved at its last token). ``unique_after`` [k]: the fraction
    told apart by their first k tokens."""
    prefixes = {}
    for ids in ids_per_subject:
        for k in range(1, len(ids) + 1):
            prefixes[tuple(ids[:k])] = prefixes.get(tuple(ids[:k]), 0) + 1
    resolve = [next((k for k in range(1, len(ids) + 1) if prefixes[tuple(ids[:k])] == 1), len(ids))
               for ids in ids_per_subject]
    lengths = [len(ids) for ids in ids_per_subject]
    n = len(ids_per_subject)
    return {"n_subjects": n, "tokens_min": min(lengths), "tokens_max": max(lengths),
            "unique_before_last": sum(r < l for r, l in zip(resolve, lengths)) / n,
            "unique_after": {k: sum(r <= k for r in resolve) / n for k in range(1, max(lengths) + 1)},
            "mean_resolving_token": float(np.mean(resolve)), "mean_tokens": float(np.mean(lengths))}


@dataclasses.dataclass(frozen=True)
class FactsTask:
    """The facts task. ``n_entities`` subjects × ``n_relations`` relations, ``n_attributes`` values per relation.

    ``seed`` fixes the world (names, attributes, counterfactuals); ``batch(seed, step, batch_size)`` draws
    training packs of ``facts_per_seq`` facts. ``loss``: ``"attribute"`` (weights on the attribute tokens)
    or ``"all"`` (every real next token). ``n_neighbours`` prompts per fact in ``neighbourhood``. ``names``:
    ``"random"`` or ``"families"`` of ``family_size`` names differing only in their last token.
    """

    n_entities: int = 64
    n_relations: int = 6
    n_attributes: int = 12  # values per relation
    seed: int = 0  # the world: names and the fact table
    facts_per_seq: int = 4  # facts packed into one training sequence
    loss: str = "attribute"
    n_neighbours: int = 10
    names: str = "random"  # "random" or "families" (names that differ only in their last token)
    family_size: int = 4

    def __post_init__(self):
        check_fields(self, "data.", {
            "n_entities": ints(2, 20000), "n_relations": ints(1, len(RELATIONS)),
            "n_attributes": ints(2, len(RELATIONS[0].attributes)), "seed": ints(0, 2 ** 32 - 1),
            "facts_per_seq": ints(1, 256), "n_neighbours": ints(1, 20000),
            "loss": (lambda v: v in ("attribute", "all"), "'attribute' or 'all'"),
            "names": (lambda v: v in NAME_KINDS, "'random' or 'families'"), "family_size": ints(2, 16)})

    # ---- the world -------------------------------------------------------------------------------------
    @functools.cached_property
    def relations(self):
        return tuple(rel._replace(attributes=rel.attributes[: self.n_attributes])
                     for rel in RELATIONS[: self.n_relations])

    @functools.cached_property
    def tokenizer(self) -> FactsTokenizer:
        return FactsTokenizer(_build_vocab(self.relations))

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    @functools.cached_property
    def subjects(self) -> list[str]:
        """Distinct names ``First Last`` (``names`` says how they are drawn; module docstring)."""
        return _family_names(self) if self.names == "families" else _random_names(self)

    def subject_resolution(self) -> dict:
        """How many leading tokens tell each subject apart from every other (``subject_resolution``)."""
        return subject_resolution([self.tokenizer.encode(name) for name in self.subjects])

    @functools.cached_property
    def attribute_index_ER(self) -> np.ndarray:
        rng = np.random.default_rng([self.seed, 0xA77])
        return rng.integers(0, self.n_attributes, (self.n_entities, self.n_relations))

    @functools.cached_property
    def facts(self) -> list[Fact]:
        """Entity-major: fact ``e * n_relations + r`` is entity e's attribute for relation r."""
        rng = np.random.default_rng([self.seed, 0xCF])
        shift_ER = rng.integers(1, self.n_attributes, (self.n_entities, self.n_relations))
        out = []
        for e, subject in enumerate(self.subjects):
            for r, rel in enumerate(self.relations):
                a = int(self.attribute_index_ER[e, r])
                cf = (a + int(shift_ER[e, r])) % self.n_attributes
                out.append(Fact(subject, rel.name, rel.attributes[a], rel.attributes[cf]))
        return out

    def _relation(self, name: str):
        for r, rel in enumerate(self.relations):
            if rel.name == name:
                return r, rel
        raise FfnkvError(f"unknown relation {name!r}; known: {', '.join(r.name for r in self.relations)}.")

    def templates(self, relation: str, split: str = "train") -> tuple[str, ...]:
        rel = self._relation(relation)[1]
        if split not in ("train", "paraphrase"):
            raise FfnkvError(f"split={split!r} is not allowed; use 'train' or 'paraphrase'.")
        return rel.train_templates if split == "train" else rel.paraphrase_templates

    def prompts(self, fact: Fact, split: str = "train") -> list[str]:
        """The prompt texts of ``fact`` whose next token is the attribute."""
        return [t.format(s=fact.subject) for t in self.templates(fact.relation, split)]

    def neighbourhood(self, fact: Fact) -> list[tuple[str, str]]:
        """``n_neighbours`` (prompt, true attribute) pairs: other subjects, the same relation, training templates."""
        r, rel = self._relation(fact.relation)
        e = self.subjects.index(fact.subject) if fact.subject in self.subjects else -1
        rng = np.random.default_rng([self.seed, 0x4E1, r, e + 1])
        others = np.array([i for i in range(self.n_entities) if i != e])
        picks = rng.choice(others, min(self.n_neighbours, len(others)), replace=False)
        out = []
        for i, other in enumerate(picks):
            template = rel.train_templates[i % len(rel.train_templates)]
            out.append((template.format(s=self.subjects[other]), rel.attributes[self.attribute_index_ER[other, r]]))
        return out

    def attribute_id(self, attribute: str) -> int:
        token = self.tokenizer.vocab.get(attribute)
        if token is None:
            raise FfnkvError(f"{attribute!r} is not an attribute of this facts task.")
        return token

    # ---- tokenised prompts -----------------------------------------------------------------------------
    @functools.cached_property
    def _rendered(self):
        """Per (fact, template): the tokens of ``prompt attribute`` (no BOS), padded, with subject spans."""
        n_templates = len(self.relations[0].train_templates) + len(self.relations[0].paraphrase_templates)
        tokenizer = task_tokenizer(self)
        rows, meta = [], []
        for f, fact in enumerate(self.facts):
            texts = self.prompts(fact, "train") + self.prompts(fact, "paraphrase")
            enc = encode_prompts(tokenizer, texts, [fact.subject] * len(texts))
            for j in range(n_templates):
                row = list(enc.tokens[j, 1: enc.lengths[j]]) + [self.attribute_id(fact.attribute)]
                rows.append(row)
                meta.append((f, j, enc.subject_start[j] - 1, enc.subject_end[j] - 1))
        width = max(map(len, rows))
        tokens = np.full((len(rows), width), PAD, np.int32)
        for i, row in enumerate(rows):
            tokens[i, : len(row)] = row
        lengths = np.array([len(r) for r in rows], np.int32)
        n_train = len(self.relations[0].train_templates)
        shape = (len(self.facts), n_templates)
        meta = np.array(meta, np.int32)
        return {"tokens": tokens.reshape(shape + (width,)), "lengths": lengths.reshape(shape),
                "subject_start": meta[:, 2].reshape(shape),
                "subject_end": meta[:, 3].reshape(shape), "n_train": n_train}

    @property
    def seq_len(self) -> int:
        return 1 + self.facts_per_seq * (self._rendered["tokens"].shape[-1] + 1)

    # ---- the task contract -----------------------------------------------------------------------------
    def batch(self, seed: int, step: int, batch_size: int) -> dict:
        """``[BOS] f1 . f2 . …`` packs of random (fact, training template) renderings, right-padded."""
        rng = np.random.default_rng([seed, step, 0xFAC7])
        R = self._rendered
        fact_BK = rng.integers(0, len(self.facts), (batch_size, self.facts_per_seq))
        tmpl_BK = rng.integers(0, R["n_train"], (batch_size, self.facts_per_seq))
        sep = self.tokenizer.vocab[SEPARATOR]
        tokens = np.full((batch_size, self.seq_len), PAD, np.int32)
        attr_pos = np.zeros((batch_size, self.seq_len), bool)
        for b in range(batch_size):
            pos = 1
            tokens[b, 0] = BOS
            for f, j in zip(fact_BK[b], tmpl_BK[b]):
                n = R["lengths"][f, j]
                tokens[b, pos: pos + n] = R["tokens"][f, j, :n]
                attr_pos[b, pos + n - 2] = True
                tokens[b, pos + n] = sep
                pos += n + 1
        targets = np.concatenate([tokens[:, 1:], np.full((batch_size, 1), PAD, np.int32)], axis=1)
        weights = attr_pos if self.loss == "attribute" else targets != PAD
        return {"tokens": tokens, "targets": targets, "weights": weights.astype(np.float32),
                "fact": fact_BK.astype(np.int32), "template": tmpl_BK.astype(np.int32)}

    def eval_set(self, seed: int = 0) -> dict:
        """Every fact under every template, one prompt per row: ``[BOS] prompt attribute``, weight 1 at predict_pos.

        ``split`` is 0 for training templates and 1 for held-out paraphrases; ``seed`` is unused (the set is
        the whole world).
        """
        R = self._rendered
        F, J, W = R["tokens"].shape
        tokens = np.full((F * J, W + 1), PAD, np.int32)
        tokens[:, 0] = BOS
        tokens[:, 1:] = R["tokens"].reshape(F * J, W)
        lengths = R["lengths"].reshape(-1) + 1
        predict_pos = lengths - 2
        rows = np.arange(F * J)
        targets = np.concatenate([tokens[:, 1:], np.full((F * J, 1), PAD, np.int32)], axis=1)
        weights = np.zeros(tokens.shape, np.float32)
        weights[rows, predict_pos] = 1.0
        template = np.tile(np.arange(J), F)
        return {"tokens": tokens, "targets": targets, "weights": weights, "predict_pos": predict_pos.astype(np.int32),
                "attribute": tokens[rows, predict_pos + 1], "fact": np.repeat(np.arange(F), J).astype(np.int32),
                "template": template.astype(np.int32), "split": (template >= R["n_train"]).astype(np.int32),
                "subject_start": R["subject_start"].reshape(-1) + 1, "subject_end": R["subject_end"].reshape(-1) + 1}

    def windows(self, max_tokens: int | None = None, split: str = "train", seed: int = 1) -> dict:
        """A corpus for streaming analyses: training packs drawn with ``seed``, about ``max_tokens`` tokens
        (default 64 rows). ``mask`` marks the positions with a real next token; ``protect = 1`` (BOS)."""
        rows = 64 if max_tokens is None else max(1, -(-int(max_tokens) // self.seq_len))
        b = self.batch(seed, 0, rows)
        return {"tokens": b["tokens"], "targets": b["targets"], "mask": (b["tokens"] != PAD) & (b["targets"] != PAD),
                "protect": 1}

    def eval_metrics(self, pred_BT, eval_batch: dict) -> dict[str, float]:
        """Top-1 attribute accuracy on training-template prompts and on held-out paraphrases.

        ``pred_BT`` holds the predicted next token at every position (argmax of the logits).
        """
        pred_B = np.asarray(pred_BT)[np.arange(len(pred_BT)), eval_batch["predict_pos"]]
        correct = pred_B == eval_batch["attribute"]
        split = eval_batch["split"]
        return {"train_fact_acc": float(correct[split == 0].mean()),
                "paraphrase_acc": float(correct[split == 1].mean())}
