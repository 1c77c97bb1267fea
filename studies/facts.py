"""The one seam every fact study goes through: any ``Model`` (``ffnkv.io.load.load_model``: a trained run or a
packaged/imported pretrained model) → fact records → prompts → the known mask.

* ``model_facts(model, path)``: CounterFact-format records (``ffnkv.data.counterfact.FactRecord``) from a fact
  file, a trained facts run's own world, or the shipped well-known facts, so every study reads one form.
* ``main_prompts`` / ``all_prompts``: their prompts as ``ffnkv.prompts.Prompts`` (``encode_prompts``).
* ``known_mask``: which records the model knows (top-1 after the main prompt is target_true's first token).
* ``select``: a seeded sample of records, relations in turn.

A record's prompts are ``prompt`` (with ``{}`` for the subject) and its ``paraphrase_prompts``. For a facts
run the records are ``world_fact_records`` (paraphrases: the two held-out templates, CounterFact's
generalisation prompts); with ``training_paraphrases`` the fact's other training templates are added, so that
each fact has Dai et al.'s several prompts (5 training + 2 held-out templates).
"""
from __future__ import annotations

import dataclasses
import sys

import jax
import jax.numpy as jnp
import numpy as np

from ffnkv.data.counterfact import KNOWN_FACTS, FactRecord, load_fact_file, world_fact_records
from ffnkv.errors import FfnkvError
from ffnkv.model import forward
from ffnkv.prompts import encode_prompts


def run_facts(task) -> list[FactRecord]:
    """Every fact of a facts task as a record whose paraphrases include its other training templates."""
    out = []
    for r in sorted(world_fact_records(task), key=lambda r: r.case_id):
        train = [t.replace("{s}", r.subject) for t in task.templates(r.relation_id, "train")]
        others = tuple(t for t in train if t != r.text)
        out.append(dataclasses.replace(r, paraphrase_prompts=others + r.paraphrase_prompts))
    return out


def model_facts(model, path=None, training_paraphrases: bool = True) -> list[FactRecord]:
    """The fact set of ``model``: ``path`` (a CounterFact-format JSON file) if given, else a facts run's own
    world (sorted by case_id; ``training_paraphrases``: its other training templates join the paraphrases),
    else the shipped well-known facts (for pretrained models)."""
    if path is not None:
        return load_fact_file(path, model.tokenizer)
    task = model.run.task if model.run is not None else None
    if task is not None and hasattr(task, "facts"):
        return run_facts(task) if training_paraphrases else sorted(world_fact_records(task), key=lambda r: r.case_id)
    if model.run is not None:
        raise FfnkvError(f"run {model.name!r} is not a facts run; give a fact file (--facts FILE).")
    return load_fact_file(KNOWN_FACTS, model.tokenizer)


def main_prompts(tokenizer, records):
    """``Prompts`` of each record's main prompt, with ``target_true`` as the answer."""
    return encode_prompts(tokenizer, [r.prompt for r in records], [r.subject for r in records],
                          [r.target_true for r in records])


def all_prompts(tokenizer, records, paraphrases: bool = True):
    """(``Prompts`` of every prompt of every record, ``fact_N``): the main prompt, then the paraphrases that
    name the subject (a paraphrase without it, e.g. "Mozart …" for "Wolfgang Amadeus Mozart", is left out)."""
    texts, subjects, answers, fact_N = [], [], [], []
    for k, r in enumerate(records):
        kept = [p for p in r.paraphrase_prompts if r.subject in p] if paraphrases else []
        for text in (r.prompt, *kept):
            texts.append(text)
            subjects.append(r.subject)
            answers.append(r.target_true)
            fact_N.append(k)
    return encode_prompts(tokenizer, texts, subjects, answers), np.array(fact_N)


def top1(params, cfg, enc, chunk: int = 128) -> np.ndarray:
    """The model's top-1 next token at each prompt's prediction position ``[N]``."""
    fn = jax.jit(lambda p, t, pos: jnp.argmax(forward(p, t, cfg).logits[jnp.arange(t.shape[0]), pos], -1))
    return np.concatenate([np.asarray(fn(params, jnp.asarray(enc.tokens[i:i + chunk]),
                                         jnp.asarray(enc.predict_pos[i:i + chunk])))
                           for i in range(0, len(enc), chunk)])


def known_mask(model, records, prompts=None) -> np.ndarray:
    """Which ``records`` the model knows ``[N]``: its top-1 next token after the main prompt is target_true's
    first token (Meng et al. 2022 trace and edit known facts only). ``prompts``: ``main_prompts`` if already
    encoded."""
    enc = main_prompts(model.tokenizer, records) if prompts is None else prompts
    return top1(model.params, model.cfg, enc) == enc.target


def select(records, known_N, n: int, seed: int, known_only: bool) -> np.ndarray:
    """Up to ``n`` record indices, sorted: a seeded shuffle taken one relation at a time in turn so that no
    relation dominates; with ``known_only`` only records the model answers correctly (``known_N``)."""
    if n < 2:
        raise FfnkvError("at least 2 facts are needed; raise the number of facts.")
    pool = np.flatnonzero(known_N) if known_only else np.arange(len(records))
    if len(pool) < 2:
        raise FfnkvError(f"the model answers {len(pool)} of {len(records)} facts correctly; at least 2 are needed.")
    pool = np.random.default_rng([seed, 0xFAC7]).permutation(pool)
    queues: dict[str, list] = {}
    for i in pool:
        queues.setdefault(str(records[i].relation_id), []).append(int(i))
    picked, lanes = [], list(queues.values())
    while len(picked) < n and any(lanes):
        for lane in lanes:
            if lane and len(picked) < n:
                picked.append(lane.pop(0))
    return np.sort(np.array(picked))


def selection(command: str, asked: dict[str, int], groups: dict[str, list], known: list, n_records: int) -> dict:
    """Which facts a study used, for its JSON: ``known`` (the records the model answers, by case_id) and each
    group of ``groups`` (e.g. edited, unrelated) as ``{case_id, subject}`` rows, with ``asked`` (group → the
    number requested). When a group holds fewer than asked, one line on stderr says so, and ``short`` keeps it."""
    short = [f"{len(groups[g])} {g} of {n} asked" for g, n in asked.items() if len(groups[g]) < n]
    line = None
    if short:
        line = (f"ffnkv {command}: fewer facts than asked: {', '.join(short)} (the model knows {len(known)} of "
                f"{n_records} facts).")
        print(line, file=sys.stderr, flush=True)
    return {"asked": dict(asked), "n_records": n_records, "known": [int(r.case_id) for r in known],
            **{g: [{"case_id": int(r.case_id), "subject": r.subject} for r in rs] for g, rs in groups.items()},
            "short": line}
