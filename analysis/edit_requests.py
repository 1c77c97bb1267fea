"""CounterFact-style edit requests and probes from the facts corpus (Meng et al. 2022, §3.3).

For a fact (s, r, o) with counterfactual o*: the rewrite prompt is training template ``i mod n_templates``
of the fact (i its index in the edit list); ROME/MEMIT see it bare and behind sampled context prefixes
("[BOS] prefix . prompt", the corpus's own separator); the essence prompt is "{s} is a" with the KL taken
at the subject's last token (as ROME's code does). Probes: the bare rewrite prompt (efficacy), the two
held-out paraphrase templates (generalisation), ``n_neighbours`` prompts of other subjects with the same
relation (specificity). Everything is padded to one length so requests stack and compile once.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from analysis.edit_eval import EditProbe, FactSet
from analysis.rome import EditRequest, sample_prefixes
from ffnkv.data.facts import BOS, PAD, SEPARATOR
from ffnkv.errors import FfnkvError


def context_prefixes(params, cfg, seed: int, lengths_counts) -> list[np.ndarray]:
    """Sampled prefixes (without BOS) for each (length, count) pair, e.g. ROME's ((5, 10), (10, 10))."""
    out, key = [], jax.random.key(seed)
    for length, count in lengths_counts:
        key, sub = jax.random.split(key)
        out.extend(np.asarray(sample_prefixes(params, cfg, sub, BOS, int(count), int(length)))[:, 1:])
    return out


def _pad(rows, T):
    tokens = np.full((len(rows), T), PAD, np.int32)
    for i, row in enumerate(rows):
        tokens[i, : len(row)] = row
    return tokens


def _encoded(task, prompts):
    enc = task.encode_prompts(prompts)
    return [list(t[:n]) for t, n in zip(enc["tokens"], enc["lengths"])], enc["subject_end"] - 1, enc["predict_pos"]


def build_edits(task, facts, prefixes, token: str = "subject_last") -> tuple[EditRequest, EditProbe]:
    """Stacked requests and probes (leading axis E = len(facts)); ``prefixes`` from ``context_prefixes``.

    ``token`` is where the key is read and δ added: ``"subject_last"`` (the paper) or ``"last"`` (the last
    prompt token, ROME's ``fact_token="last"`` option; the essence KL then sits at its last token too).
    """
    if token not in ("subject_last", "last"):
        raise FfnkvError(f"edit token {token!r} is not allowed; use 'subject_last' or 'last'.")
    sep = task.tokenizer.vocab[SEPARATOR]
    per_fact = []
    for i, fact in enumerate(facts):
        train_prompts = task.prompts(fact, "train")
        rows, subj, pred = _encoded(task, [train_prompts[i % len(train_prompts)]])
        body, s0, p0 = rows[0][1:], int(subj[0]) - 1, int(pred[0]) - 1
        rw_rows = [rows[0]] + [[BOS] + list(px) + [sep] + body for px in prefixes]
        shift = [1] + [2 + len(px) for px in prefixes]
        ess_rows, ess_subj, ess_last = _encoded(task, [f"{fact.subject} is a"])
        if token == "last":
            s0, ess_subj = p0, ess_last
        para_rows, _, para_pred = _encoded(task, task.prompts(fact, "paraphrase"))
        neigh = task.neighbourhood(fact)
        neigh_rows, _, neigh_pred = _encoded(task, [p for p, _ in neigh])
        new, old = task.attribute_id(fact.counterfactual), task.attribute_id(fact.attribute)
        neigh_true = np.array([task.attribute_id(a) for _, a in neigh], np.int32)
        per_fact.append(dict(rw=rw_rows, rw_subj=np.array([s0 + k for k in shift]), rw_pred=np.array([p0 + k for k in shift]),
                             ess=ess_rows, ess_subj=ess_subj, para=para_rows, para_pred=para_pred, neigh=neigh_rows,
                             neigh_pred=neigh_pred, neigh_true=neigh_true, new=new, old=old))
    T = max(len(r) for f in per_fact for key in ("rw", "ess", "para", "neigh") for r in f[key])
    if T > task.seq_len:
        raise FfnkvError(f"edit prompts of {T} tokens exceed the model's {task.seq_len}; use shorter context prefixes.")
    stack = lambda key, fn: jnp.asarray(np.stack([fn(f[key]) for f in per_fact]))  # noqa: E731
    rows = lambda key: stack(key, lambda r: _pad(r, T))  # noqa: E731
    ints = lambda key: stack(key, lambda a: np.asarray(a, np.int32))  # noqa: E731
    reqs = EditRequest(tokens_PT=rows("rw"), subject_P=ints("rw_subj"), predict_P=ints("rw_pred"), target=ints("new"),
                       essence_tokens_MT=rows("ess"), essence_subject_M=ints("ess_subj"), essence_predict_M=ints("ess_subj"))
    probes = EditProbe(rewrite_tokens_AT=reqs.tokens_PT[:, :1], rewrite_predict_A=reqs.predict_P[:, :1],
                       para_tokens_QT=rows("para"), para_predict_Q=ints("para_pred"), neigh_tokens_RT=rows("neigh"),
                       neigh_predict_R=ints("neigh_pred"), neigh_true_R=ints("neigh_true"),
                       neigh_weight_R=(ints("neigh_true") != ints("new")[:, None]).astype(jnp.float32),
                       new=ints("new"), old=ints("old"))
    return reqs, probes


def fact_set(task, facts) -> FactSet:
    """Every training-template prompt of ``facts`` with its true attribute (for the unrelated-fact accuracy)."""
    prompts, answers = [], []
    for fact in facts:
        for prompt in task.prompts(fact, "train"):
            prompts.append(prompt)
            answers.append(task.attribute_id(fact.attribute))
    enc = task.encode_prompts(prompts)
    return FactSet(jnp.asarray(enc["tokens"]), jnp.asarray(enc["predict_pos"]), jnp.asarray(answers, jnp.int32))


def known_facts(params, cfg, task, seed: int, n_edit: int, n_unrelated: int):
    """A seeded shuffle of the facts the model gets right on all training templates, split into the facts to
    edit and the unrelated facts; raises if the model knows too few."""
    from analysis.edit_eval import next_token_probs

    facts = task.facts
    every = fact_set(task, facts)
    n_t = len(every.answer_N) // len(facts)
    p_NV = jax.jit(next_token_probs, static_argnames="cfg")(params, cfg, every.tokens_NT, every.predict_N)
    correct = np.asarray(jnp.argmax(p_NV, -1) == every.answer_N).reshape(len(facts), n_t).all(1)
    known = np.random.default_rng(seed).permutation(np.flatnonzero(correct))
    if len(known) < n_edit + n_unrelated:
        raise FfnkvError(f"the model knows {len(known)} of {len(facts)} facts, fewer than the {n_edit} + {n_unrelated} "
                         "asked for; train longer or edit fewer facts.")
    return [facts[i] for i in known[:n_edit]], [facts[i] for i in known[n_edit:n_edit + n_unrelated]], int(correct.sum())
