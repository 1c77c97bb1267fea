"""Facts to edit in CounterFact's record format (Meng et al. 2022, §3.3 and their ``counterfact.json``).

A record::

    {"case_id": 0,
     "requested_rewrite": {"prompt": "{} is located in the city of", "subject": "The Eiffel Tower",
                           "relation_id": "P131", "target_true": {"str": "Paris"}, "target_new": {"str": "Rome"}},
     "paraphrase_prompts": ["...", "..."],          # the same fact in other words (generalisation)
     "neighborhood_prompts": ["...", "..."]}        # other subjects whose true answer is target_true (specificity)

``load_fact_file`` reads a JSON list of such records into ``FactRecord``s; ``world_fact_records`` gives the
same records from the built-in facts world, so every editing protocol reads one kind of input.
``KNOWN_FACTS`` is the packaged file of well-known facts (``known_facts.json``) for pretrained models;
``HELDOUT_FACTS`` (``heldout_facts.json``) is a second such file, written and committed before any model was run
on it, for measuring edits on facts nobody picked or tuned on (provenance in ``heldout_facts.md``).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from ffnkv.errors import FfnkvError

KNOWN_FACTS = Path(__file__).with_name("known_facts.json")
HELDOUT_FACTS = Path(__file__).with_name("heldout_facts.json")


@dataclasses.dataclass(frozen=True)
class FactRecord:
    """One fact (s, r, o) and its counterfactual o*. ``prompt`` holds the subject or a ``{}`` placeholder."""

    case_id: int
    prompt: str
    subject: str
    relation_id: str | None
    target_true: str
    target_new: str
    paraphrase_prompts: tuple[str, ...]
    neighborhood_prompts: tuple[str, ...]

    @property
    def text(self) -> str:
        """The rewrite prompt with the subject filled in."""
        return self.prompt.replace("{}", self.subject) if "{}" in self.prompt else self.prompt


def _field(record, path: str, where: str):
    value = record
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value:
            raise FfnkvError(f"{where} has no field {path!r}.")
        value = value[key]
    return value


def _text(value) -> bool:
    """A non-empty string that is valid Unicode (JSON's ``"\\ud800"`` escape gives a lone surrogate, which no
    tokenizer can read)."""
    if not isinstance(value, str) or not value.strip():
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _string(record, path: str, where: str) -> str:
    value = _field(record, path, where)
    if not _text(value):
        raise FfnkvError(f"{where}: field {path!r} must be a non-empty string of valid Unicode (no lone surrogates).")
    return value


def _strings(record, path: str, where: str) -> tuple[str, ...]:
    value = _field(record, path, where)
    if not isinstance(value, list) or not value or not all(_text(v) for v in value):
        raise FfnkvError(f"{where}: field {path!r} must be a non-empty list of non-empty strings of valid Unicode "
                         "(no lone surrogates).")
    return tuple(value)


def _answer_tokens(tokenizer, prompt: str, answer: str) -> list[int]:
    """The tokens of ``answer`` as it follows ``prompt`` (with its leading space, as ``encode_prompts`` reads it)."""
    ids, offsets = tokenizer.encode_offsets(prompt + " " + answer)
    return [i for i, (a, _) in zip(ids, offsets) if a >= len(prompt)]


def _unknown_id(tokenizer) -> int | None:
    """The id a tokenizer gives text outside its vocabulary (WordPiece's [UNK]); None when it has none (byte-level
    BPE)."""
    backend = getattr(tokenizer, "backend", None)
    unk = getattr(getattr(backend, "model", None), "unk_token", None)
    return backend.token_to_id(unk) if unk else None


def _check_known_text(tokenizer, record: FactRecord, where: str) -> None:
    """Every text of the record is in the tokenizer's vocabulary: a subject that reads as [UNK] (an emoji under
    WordPiece) would be traced and edited as the unknown token, not as itself."""
    unk = _unknown_id(tokenizer)
    if unk is None:
        return
    fields = {"requested_rewrite.prompt": [record.prompt.replace("{}", " ")],
              "requested_rewrite.subject": [record.subject], "requested_rewrite.target_true.str": [record.target_true],
              "requested_rewrite.target_new.str": [record.target_new],
              "paraphrase_prompts": record.paraphrase_prompts, "neighborhood_prompts": record.neighborhood_prompts}
    for path, texts in fields.items():
        for text in texts:
            if unk in tokenizer.encode(text):
                raise FfnkvError(f"{where}: field {path!r} ({text!r}) holds text the model's tokenizer does not know "
                                 "(it reads as its unknown token); rephrase it in the model's vocabulary.")


def parse_record(raw, index: int, tokenizer=None) -> FactRecord:
    """One CounterFact record; ``index`` is its place in the file (for the error message)."""
    if not isinstance(raw, dict):
        raise FfnkvError(f"record {index} is not a JSON object.")
    case_id = raw.get("case_id", index)
    where = f"record {index} (case_id {case_id})"
    if not isinstance(case_id, int) or isinstance(case_id, bool):
        raise FfnkvError(f"{where}: field 'case_id' must be an integer.")
    rw = "requested_rewrite"
    prompt, subject = _string(raw, f"{rw}.prompt", where), _string(raw, f"{rw}.subject", where)
    relation = _field(raw, rw, where).get("relation_id")
    record = FactRecord(case_id, prompt, subject, None if relation is None else str(relation),
                        _string(raw, f"{rw}.target_true.str", where), _string(raw, f"{rw}.target_new.str", where),
                        _strings(raw, "paraphrase_prompts", where), _strings(raw, "neighborhood_prompts", where))
    if "{}" not in prompt and subject not in prompt:
        raise FfnkvError(f"{where}: field '{rw}.prompt' ({prompt!r}) holds neither '{{}}' nor the subject {subject!r}.")
    if record.target_true == record.target_new:
        raise FfnkvError(f"{where}: fields 'target_true' and 'target_new' are the same ({record.target_new!r}).")
    if tokenizer is not None:
        _check_known_text(tokenizer, record, where)
        for name in ("target_true", "target_new"):
            if not _answer_tokens(tokenizer, record.text, getattr(record, name)):
                raise FfnkvError(f"{where}: field '{rw}.{name}.str' ({getattr(record, name)!r}) tokenises to nothing.")
    return record


def load_fact_file(path, tokenizer=None) -> list[FactRecord]:
    """The records of a CounterFact-format JSON file (a list of records); with ``tokenizer``, targets are
    checked to tokenise to something. Any problem raises FfnkvError naming the record and the field."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise FfnkvError(f"fact file {str(path)!r} does not exist.") from None
    except OSError as e:  # a directory, no permission, …
        raise FfnkvError(f"fact file {str(path)!r} cannot be read ({e.strerror}); pass a JSON file.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise FfnkvError(f"fact file {str(path)!r} is not valid JSON ({e}).") from None
    if not isinstance(raw, list) or not raw:
        raise FfnkvError(f"fact file {str(path)!r} must hold a non-empty JSON list of CounterFact records.")
    records = [parse_record(r, i, tokenizer) for i, r in enumerate(raw)]
    seen = {}
    for i, r in enumerate(records):
        if r.case_id in seen:
            raise FfnkvError(f"record {i} (case_id {r.case_id}): field 'case_id' repeats record {seen[r.case_id]}.")
        seen[r.case_id] = i
    return records


def world_fact_records(task, n: int | None = None, seed: int = 0) -> list[FactRecord]:
    """CounterFact records of the built-in facts world (``ffnkv.data.facts.FactsTask``), ``n`` of them in a
    seeded order (all by default). The rewrite prompt is training template ``case_id mod 5``, the paraphrases
    the two held-out templates, the neighbourhood other subjects of the same relation whose true attribute is
    the fact's own (as in CounterFact), each under a training template. A fact whose value no other subject
    shares has no neighbourhood and is left out (only in tiny worlds)."""
    facts = task.facts
    order = np.random.default_rng([seed, 0xC0F]).permutation(len(facts))
    by_value = {}
    for e, subject in enumerate(task.subjects):
        for r, rel in enumerate(task.relations):
            by_value.setdefault((rel.name, rel.attributes[task.attribute_index_ER[e, r]]), []).append(subject)
    out = []
    for i in order:
        if n is not None and len(out) == n:
            break
        fact = facts[int(i)]
        train = task.templates(fact.relation, "train")
        template = train[int(i) % len(train)]
        others = [s for s in by_value[(fact.relation, fact.attribute)] if s != fact.subject][: task.n_neighbours]
        if not others:
            continue
        out.append(FactRecord(int(i), template.replace("{s}", "{}"), fact.subject, fact.relation, fact.attribute,
                              fact.counterfactual, tuple(task.prompts(fact, "paraphrase")),
                              tuple(train[j % len(train)].format(s=s) for j, s in enumerate(others))))
    return out


def record_json(r: FactRecord) -> dict:
    """A record back in CounterFact's JSON form."""
    rewrite = {"prompt": r.prompt, "subject": r.subject, "relation_id": r.relation_id,
               "target_true": {"str": r.target_true}, "target_new": {"str": r.target_new}}
    return {"case_id": r.case_id, "requested_rewrite": rewrite,
            "paraphrase_prompts": list(r.paraphrase_prompts), "neighborhood_prompts": list(r.neighborhood_prompts)}
