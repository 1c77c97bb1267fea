"""CounterFact edit requests and probes from ``FactRecord``s, for any model and tokenizer (Meng et al. 2022, §3.3).

For a record (s, r, o → o*): ROME/MEMIT see the rewrite prompt bare (row 0) and behind sampled context
prefixes, as ROME's code does (``"{prefix}. {prompt}"``); the essence prompt is ``"{s} is a"`` with the KL at
the subject's last token (ROME's code). Probes: the bare rewrite prompt (efficacy), the record's paraphrases
(generalisation), its neighbourhood prompts (specificity: other subjects whose true answer is o). Targets are
the answers' first tokens (``ffnkv.prompts.encode_prompts``). Counts of paraphrases and neighbours may differ
between records: rows are padded with weight 0, and every prompt is padded to one length so requests stack.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from analysis.edit_eval import EditProbe, FactSet
from analysis.rome import EditRequest, sample_prefixes
from ffnkv.errors import FfnkvError
from ffnkv.prompts import encode_prompts

TOKENS = ("subject_last", "last")


def start_token(tokenizer) -> int:
    """The token that context prefixes are sampled after: BOS, else EOS (GPT-2's ``<|endoftext|>``), else 0."""
    return next((t for t in (tokenizer.bos_id, tokenizer.eos_id) if t is not None), 0)


def context_prefixes(params, cfg, tokenizer, seed: int, lengths_counts) -> list[str]:
    """ROME's context prefixes as text: for each (length, count), ``count`` texts of ``length`` tokens sampled
    from the model itself (top-5) after ``start_token``, e.g. ROME's ((5, 10), (10, 10))."""
    out, key = [], jax.random.key(seed)
    for length, count in lengths_counts:
        key, sub = jax.random.split(key)
        rows = np.asarray(sample_prefixes(params, cfg, sub, start_token(tokenizer), int(count), int(length)))
        out.extend(tokenizer.decode([int(t) for t in row[1:]]).strip() for row in rows)
    return out


def _rows(enc):
    return [list(t[:n]) for t, n in zip(enc.tokens, enc.lengths)]


def _plain(tokenizer, texts, answers):
    """Prompts whose subject span is not needed (probes): the whole text stands in for the subject."""
    return encode_prompts(tokenizer, texts, texts, answers)


def _pad(rows, T, pad_id):
    tokens = np.full((len(rows), T), pad_id, np.int32)
    for i, row in enumerate(rows):
        tokens[i, : len(row)] = row
    return tokens


def _fill(values, n):
    """``values`` repeated (weight 0) up to ``n`` entries, and the weights."""
    values = list(values)
    return values + [values[0]] * (n - len(values)), [1.0] * len(values) + [0.0] * (n - len(values))


def answer_tokens(tokenizer, records):
    """First tokens of (target_true, target_new) after each record's rewrite prompt: two [N] int arrays."""
    texts, subjects = [r.text for r in records], [r.subject for r in records]
    true = encode_prompts(tokenizer, texts, subjects, [r.target_true for r in records]).target
    new = encode_prompts(tokenizer, texts, subjects, [r.target_new for r in records]).target
    return true, new


def build_edits(tokenizer, records, prefixes, token: str = "subject_last", max_len: int | None = None,
                pad_id: int = 0) -> tuple[EditRequest, EditProbe]:
    """Stacked requests and probes (leading axis E = len(records)); ``prefixes`` from ``context_prefixes``.

    ``token``: where keys are read and δ added, ``"subject_last"`` (the paper) or ``"last"`` (the last prompt
    token, ROME's ``fact_token="last"``; the essence KL then sits at its last token too).
    """
    if token not in TOKENS:
        raise FfnkvError(f"edit token {token!r} is not allowed; use 'subject_last' or 'last'.")
    n_para = max(len(r.paraphrase_prompts) for r in records)
    n_neigh = max(len(r.neighborhood_prompts) for r in records)
    true, new = answer_tokens(tokenizer, records)
    per = []
    for r, old_id, new_id in zip(records, true, new):
        texts = [r.text] + [f"{p}. {r.text}" for p in prefixes]
        rw = encode_prompts(tokenizer, texts, [r.subject] * len(texts), [r.target_new] * len(texts))
        ess = encode_prompts(tokenizer, [f"{r.subject} is a"], [r.subject])
        site = rw.predict_pos if token == "last" else rw.subject_end - 1
        ess_site = ess.predict_pos if token == "last" else ess.subject_end - 1
        para, para_w = _fill(r.paraphrase_prompts, n_para)
        neigh, neigh_w = _fill(r.neighborhood_prompts, n_neigh)
        para_enc = _plain(tokenizer, para, [r.target_new] * n_para)
        neigh_enc = _plain(tokenizer, neigh, [r.target_true] * n_neigh)
        neigh_new = _plain(tokenizer, neigh, [r.target_new] * n_neigh).target
        per.append(dict(rw=_rows(rw), site=site, pred=rw.predict_pos, ess=_rows(ess), ess_site=ess_site,
                        para=_rows(para_enc), para_pred=para_enc.predict_pos, para_w=para_w,
                        neigh=_rows(neigh_enc), neigh_pred=neigh_enc.predict_pos, neigh_true=neigh_enc.target,
                        neigh_w=np.asarray(neigh_w) * (neigh_enc.target != neigh_new), new=new_id, old=old_id))
    T = max(len(row) for f in per for key in ("rw", "ess", "para", "neigh") for row in f[key])
    if max_len is not None and T > max_len:
        raise FfnkvError(f"edit prompts of {T} tokens exceed the model's {max_len}; use shorter context "
                         "prefixes or prompts.")
    stack = lambda key, fn: jnp.asarray(np.stack([fn(f[key]) for f in per]))
    rows = lambda key: stack(key, lambda r: _pad(r, T, pad_id))
    ints = lambda key: stack(key, lambda a: np.asarray(a, np.int32))
    floats = lambda key: stack(key, lambda a: np.asarray(a, np.float32))
    reqs = EditRequest(tokens_PT=rows("rw"), subject_P=ints("site"), predict_P=ints("pred"), target=ints("new"),
                       essence_tokens_MT=rows("ess"), essence_subject_M=ints("ess_site"),
                       essence_predict_M=ints("ess_site"))
    probes = EditProbe(rewrite_tokens_AT=reqs.tokens_PT[:, :1], rewrite_predict_A=reqs.predict_P[:, :1],
                       para_tokens_QT=rows("para"), para_predict_Q=ints("para_pred"), para_weight_Q=floats("para_w"),
                       neigh_tokens_RT=rows("neigh"), neigh_predict_R=ints("neigh_pred"),
                       neigh_true_R=ints("neigh_true"),
                       neigh_weight_R=floats("neigh_w"), new=ints("new"), old=ints("old"))
    return reqs, probes


def fact_set(tokenizer, records, pad_id: int = 0) -> FactSet:
    """The rewrite prompts of ``records`` with their true answers' first tokens (unrelated-fact accuracy)."""
    enc = encode_prompts(tokenizer, [r.text for r in records], [r.subject for r in records],
                         [r.target_true for r in records], pad_id=pad_id)
    return FactSet(jnp.asarray(enc.tokens), jnp.asarray(enc.predict_pos), jnp.asarray(enc.target))

