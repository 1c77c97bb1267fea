"""Small random models and hand-made edit requests shared by the editing tests."""
import jax
import jax.numpy as jnp
import numpy as np

import ffnkv
from analysis.edit_eval import EditProbe, FactSet
from analysis.rome import EditRequest

CFG = ffnkv.ModelConfig(vocab_size=32, d_model=32, n_layers=3, n_heads=4, d_ff=64, ffn="gelu", max_len=16)
T = 8


def model(ffn="gelu"):
    cfg = CFG.replace(ffn=ffn)
    return cfg, ffnkv.init_params(jax.random.key(0), cfg)


def spd(key, n):
    a = jax.random.normal(key, (n, 2 * n))
    return a @ a.T / (2 * n) + 0.1 * jnp.eye(n)


def request(seed, n_prompts=4, n_essence=2, target=None):
    rng = np.random.default_rng(seed)
    subject = rng.integers(0, CFG.vocab_size, 2)
    tokens = rng.integers(0, CFG.vocab_size, (n_prompts, T))
    pre = np.arange(n_prompts) % 3
    tokens[np.arange(n_prompts), pre] = subject[0]
    tokens[np.arange(n_prompts), pre + 1] = subject[1]
    ess = rng.integers(0, CFG.vocab_size, (n_essence, T))
    ess[:, 0], ess[:, 1] = subject
    return EditRequest(tokens_PT=jnp.asarray(tokens, jnp.int32), subject_P=jnp.asarray(pre + 1, jnp.int32),
                       predict_P=jnp.asarray(pre + 3, jnp.int32),
                       target=jnp.int32(rng.integers(0, CFG.vocab_size) if target is None else target),
                       essence_tokens_MT=jnp.asarray(ess, jnp.int32), essence_subject_M=jnp.full(n_essence, 1),
                       essence_predict_M=jnp.full(n_essence, 2))


def probe(req, old, n_neigh=3, seed=0):
    rng = np.random.default_rng(seed + 100)
    neigh = jnp.asarray(rng.integers(0, CFG.vocab_size, (n_neigh, T)), jnp.int32)
    true = jnp.asarray(rng.integers(0, CFG.vocab_size, n_neigh), jnp.int32)
    return EditProbe(rewrite_tokens_AT=req.tokens_PT[:1], rewrite_predict_A=req.predict_P[:1],
                     para_tokens_QT=req.tokens_PT[1:], para_predict_Q=req.predict_P[1:],
                     para_weight_Q=jnp.ones(req.tokens_PT.shape[0] - 1),
                     neigh_tokens_RT=neigh, neigh_predict_R=jnp.full(n_neigh, 4), neigh_true_R=true,
                     neigh_weight_R=(true != req.target).astype(jnp.float32), new=req.target, old=jnp.int32(old))


def unrelated(seed=7, n=6):
    rng = np.random.default_rng(seed)
    return FactSet(tokens_NT=jnp.asarray(rng.integers(0, CFG.vocab_size, (n, T)), jnp.int32),
                   predict_N=jnp.full(n, 5), answer_N=jnp.asarray(rng.integers(0, CFG.vocab_size, n), jnp.int32))


def stack(items):
    return jax.tree.map(lambda *xs: jnp.stack(xs), *items)
