"""Targeted ablation of op-specialist sets: the double dissociation of Rahman et al. (2026).

Protocol (ours; Rahman et al. published none). For each op k, its specialist set S_k (all FFN layers,
``analysis.specialisation``) is ablated at every position of every probe sequence, and top-1 answer accuracy
is measured on every op j — the ops × ablated-set matrix ``acc[k, j]``:

* **zero-ablation**: ``m_i ← 0`` for i ∈ S_k;
* **mean-ablation**: ``m_i ← E[m_i]``, the mean of the neuron over the probe set at the same position.

**Controls**: for each S_k, ``n_random`` (≥ 20) random sets with the same number of neurons in each layer,
drawn uniformly without replacement from that layer's F neurons; their accuracies give mean ± std per op.
The drop is ``Δ(S, j) = acc_base(j) − acc(S, j)``. Ablating S_a **dissociates** a from b when
``Δ(S_a, a) ≥ min_drop``, ``Δ(S_a, a) > ctrl_mean + 3·ctrl_std`` of its random sets on a, and
``Δ(S_a, b) ≤ Δ(S_a, a) / 2``. A **double dissociation** of (a, b) holds when S_a dissociates a from b and
S_b dissociates b from a. Empty sets dissociate nothing.

Every intervention of a sweep (baseline, targeted and random, zero and mean) is one row of a mask array, so
the whole sweep is one compiled program: ``jax.lax.map`` over interventions in chunks of ``batch_size``
(memory-bounded), ``vmap`` within a chunk; hooks are ``ffnkv.neuron_mask_hooks`` arrays. The number of
interventions is padded to a multiple of 64, so the hierarchy sweep of the same model reuses the program.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ffnkv.hooks import neuron_mask_hooks
from ffnkv.model import forward

N_RANDOM = 20
MIN_DROP = 0.2
MODES = ("zero", "mean")


def mask_sweep_impl(params, tokens_NT, masks_SLF, means_LXF, use_mean_S, aux, cfg, score, batch_size, mask_NT=None):
    """``score(out, aux, cfg)`` of the forward pass with the neurons of each ``masks_SLF[s]`` ablated at every
    position: zeroed, or set to ``means_LXF`` (X = T per position, or 1) where ``use_mean_S[s]`` = 1.

    The one ablation sweep of the project: every intervention is a row of an array, so the sweep is one
    compiled program (``lax.map`` in chunks of ``batch_size``); ``score`` (static) reads what a study needs from
    the ``Output`` and the arrays in ``aux``, e.g. :func:`answer_accuracy` or a masked-token NLL.
    """
    def one(xs):
        mask_LF, use_mean = xs
        hooks = neuron_mask_hooks(mask_LF[:, None, :], use_mean * means_LXF)
        return score(forward(params, tokens_NT, cfg, hooks, mask_NT), aux, cfg)

    return jax.lax.map(one, (masks_SLF, use_mean_S.astype(jnp.float32)), batch_size=batch_size)


mask_sweep = jax.jit(mask_sweep_impl, static_argnames=("cfg", "score", "batch_size"))


def answer_accuracy(out, aux, cfg):
    """Score for :func:`mask_sweep`: top-1 accuracy at the last position per op ``[K]``, the mean |m| there per
    op ``[K, L, F]`` and each probe's correctness ``[N]``; ``aux = (target_N, onehot_KN)``."""
    target_N, onehot_KN = aux
    correct_N = (out.logits[:, -1].argmax(-1) == target_N).astype(jnp.float32)
    n_K = onehot_KN.sum(1)
    mabs_KLF = jnp.einsum("kn,lnf->klf", onehot_KN, jnp.abs(out.acts.ffn[:, :, -1])) / n_K[:, None, None]
    return onehot_KN @ correct_N / n_K, mabs_KLF, correct_N


def padded_sweep(params, tokens_NT, target_N, onehot_KN, mean_LTF, mask_SLF, use_mean_S, cfg, batch_size,
                 multiple: int = 64):
    """Answer accuracy per op ``[S, K]``, mean |m| ``[S, K, L, F]`` and per-probe correctness ``[S, N]`` for each
    intervention, with the interventions padded (no-op rows) to a multiple of ``multiple`` so sweeps of similar
    size (the dissociation and the hierarchy of one model) share one compiled program."""
    S = mask_SLF.shape[0]
    pad = -S % multiple
    mask_SLF = np.concatenate([np.asarray(mask_SLF, bool), np.zeros((pad,) + mask_SLF.shape[1:], bool)])
    use_mean_S = np.concatenate([np.asarray(use_mean_S, np.float32), np.zeros(pad, np.float32)])
    acc_SK, mabs_SKLF, correct_SN = mask_sweep(params, tokens_NT, jnp.asarray(mask_SLF),
                                               jnp.asarray(mean_LTF, jnp.float32),
                                               jnp.asarray(use_mean_S), (target_N, onehot_KN), cfg, answer_accuracy,
                                               batch_size)
    return np.asarray(acc_SK)[:S], np.asarray(mabs_SKLF)[:S], np.asarray(correct_SN)[:S]


def probe_arrays(probe: dict, n_ops: int):
    """Device arrays of a probe set: tokens, targets and the op one-hot ``[K, N]``."""
    onehot_KN = np.eye(n_ops, dtype=np.float32)[np.asarray(probe["op"])].T
    return jnp.asarray(probe["tokens"]), jnp.asarray(probe["target"]), jnp.asarray(onehot_KN)


def random_like(mask_LF, n_random: int, rng: np.random.Generator) -> np.ndarray:
    """``n_random`` masks with the per-layer counts of ``mask_LF``, uniform without replacement per layer."""
    L, F = mask_LF.shape
    out = np.zeros((n_random, L, F), bool)
    for l, count in enumerate(mask_LF.sum(1)):
        for r in range(n_random):
            out[r, l, rng.choice(F, size=int(count), replace=False)] = True
    return out


def intervention_sets(specialist_KLF, n_random: int = N_RANDOM, seed: int = 0):
    """Every intervention of the protocol as rows: no ablation, each op's set, ``n_random`` random controls per set
    (``random_like``), all under zero- and then mean-ablation. Returns (masks ``[S, L, F]``, use_mean ``[S]``)."""
    K, L, F = specialist_KLF.shape
    rng = np.random.default_rng(seed)
    controls_KRLF = np.stack([random_like(specialist_KLF[k], n_random, rng) for k in range(K)])
    sets = np.concatenate([np.zeros((1, L, F), bool), specialist_KLF, controls_KRLF.reshape(K * n_random, L, F)])
    return np.concatenate([sets, sets]), np.repeat([0.0, 1.0], len(sets))


def judge(acc_SK, specialist_KLF, ops, n_random: int = N_RANDOM, min_drop: float = MIN_DROP, correct_SN=None,
          probe_op=None) -> dict:
    """The ops × ablated-set accuracy matrices (zero and mean), their random controls and the verdicts, from the
    accuracy per op ``acc_SK`` of the interventions of ``intervention_sets`` (in its row order); with each
    probe's correctness ``correct_SN`` (and its op ``probe_op``), the per-probe arrays the verdicts' intervals
    read: correct unablated, after ablating each op's set, and the mean over that set's random controls."""
    K = len(ops)
    acc_SK = np.asarray(acc_SK).reshape(2, -1, K)
    base_K = acc_SK[0, 0]
    result = {"ops": list(ops), "baseline": base_K.tolist(),
              "set_sizes": np.asarray(specialist_KLF).sum((1, 2)).tolist(),
              "n_random": n_random, "min_drop": min_drop}
    if correct_SN is not None:
        correct_SN = np.asarray(correct_SN).reshape(2, acc_SK.shape[1], -1)
        result |= {"probe_op": np.asarray(probe_op).tolist(), "baseline_correct": correct_SN[0, 0].tolist()}
    for i, mode in enumerate(MODES):
        targeted_KK = acc_SK[i, 1:K + 1]
        ctrl_KRK = acc_SK[i, K + 1:].reshape(K, n_random, K)
        result[mode] = verdicts(base_K, targeted_KK, ctrl_KRK.mean(1), ctrl_KRK.std(1), specialist_KLF, ops, min_drop)
        if correct_SN is not None:
            result[mode] |= {"correct": correct_SN[i, 1:K + 1].tolist(),
                             "control_correct": correct_SN[i, K + 1:].reshape(K, n_random, -1).mean(1).tolist()}
    return result


def dissociation(params, cfg, probe: dict, ops, specialist_KLF, mean_LTF, n_random: int = N_RANDOM,
                 seed: int = 0, batch_size: int = 8, min_drop: float = MIN_DROP) -> dict:
    """``judge`` of the answer accuracy (``answer_accuracy``) under every intervention of ``intervention_sets``."""
    mask_SLF, use_mean_S = intervention_sets(specialist_KLF, n_random, seed)
    acc_SK, _, correct_SN = padded_sweep(params, *probe_arrays(probe, len(ops)), mean_LTF, mask_SLF, use_mean_S, cfg,
                                         batch_size)
    return judge(acc_SK, specialist_KLF, ops, n_random, min_drop, correct_SN, probe["op"])


def verdicts(base_K, acc_KK, ctrl_mean_KK, ctrl_std_KK, specialist_KLF, ops, min_drop: float = MIN_DROP) -> dict:
    """Dissociation of each ordered pair and double dissociation of each unordered pair (module docstring)."""
    drop_KK = base_K[None, :] - acc_KK
    ctrl_drop_KK = base_K[None, :] - ctrl_mean_KK
    K = len(ops)

    def dissociates(a, b):
        own = drop_KK[a, a]
        return bool(specialist_KLF[a].any() and own >= min_drop and own > ctrl_drop_KK[a, a] + 3 * ctrl_std_KK[a, a]
                    and drop_KK[a, b] <= own / 2)

    double = {f"{ops[a]}|{ops[b]}": dissociates(a, b) and dissociates(b, a)
              for a in range(K) for b in range(a + 1, K)}
    return {"accuracy": acc_KK.tolist(), "control_mean": ctrl_mean_KK.tolist(), "control_std": ctrl_std_KK.tolist(),
            "drop": drop_KK.tolist(), "control_drop": ctrl_drop_KK.tolist(),
            "dissociates": {f"{ops[a]}>{ops[b]}": dissociates(a, b) for a in range(K) for b in range(K) if a != b},
            "double_dissociation": double}
