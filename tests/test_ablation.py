import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from handbuilt import K, P, build, probe_set

from analysis import ablation
from analysis.probe import ffn_coefficients

OPS = ("SUM", "MAX", "MIN")[:K]


@pytest.fixture(scope="module")
def model():
    params, cfg, specialist, generalist = build(1, n_dead=40)
    probe = probe_set()
    m_LNTF, _ = ffn_coefficients(params, jnp.asarray(probe["tokens"]), cfg)
    return params, cfg, specialist, probe, np.asarray(m_LNTF.mean(1))


def test_double_dissociation_on_handbuilt_model(model):
    params, cfg, specialist, probe, mean_LTF = model
    res = ablation.dissociation(params, cfg, probe, OPS, specialist, mean_LTF, n_random=20, seed=0)
    np.testing.assert_allclose(res["baseline"], 1.0)
    chance = 1.0 / P  # with S_k silenced every answer logit is equal: argmax = token 0, right for one x in P
    for mode in ablation.MODES:
        acc = np.asarray(res[mode]["accuracy"])
        np.testing.assert_allclose(np.diag(acc), chance, atol=1e-6)
        np.testing.assert_allclose(acc[~np.eye(K, dtype=bool)], 1.0)
        assert all(res[mode]["double_dissociation"].values())
        assert all(res[mode]["dissociates"].values())
        assert np.asarray(res[mode]["control_mean"]).shape == (K, K)
    # random sets of P neurons out of F: each hits on average P·P/F specialists of an op, a partial effect only
    ctrl = np.asarray(res["zero"]["control_mean"])
    assert (ctrl > chance).all() and (np.asarray(res["zero"]["control_std"]) > 0).any()
    # the per-probe items of the verdicts' intervals: their means are the accuracies above
    op_N = np.asarray(res["probe_op"])
    np.testing.assert_allclose(np.asarray(res["baseline_correct"]), 1.0)
    for mode in ablation.MODES:
        correct_KN, ctrl_KN = np.asarray(res[mode]["correct"]), np.asarray(res[mode]["control_correct"])
        assert correct_KN.shape == ctrl_KN.shape == (K, len(op_N))
        for a in range(K):
            np.testing.assert_allclose([correct_KN[a][op_N == b].mean() for b in range(K)],
                                       res[mode]["accuracy"][a], atol=1e-6)
            np.testing.assert_allclose([ctrl_KN[a][op_N == b].mean() for b in range(K)],
                                       res[mode]["control_mean"][a], atol=1e-6)


def test_no_dissociation_when_sets_are_swapped_or_empty(model):
    params, cfg, specialist, probe, mean_LTF = model
    both = specialist.copy()
    both[0] |= specialist[1]  # S_SUM also holds MAX's neurons: ablating it breaks both ops
    res = ablation.dissociation(params, cfg, probe, OPS, both, mean_LTF, n_random=20)
    assert not res["zero"]["double_dissociation"]["SUM|MAX"]
    assert res["zero"]["double_dissociation"]["MAX|MIN"]
    empty = np.zeros_like(specialist)
    res = ablation.dissociation(params, cfg, probe, OPS, empty, mean_LTF, n_random=20)
    assert not any(res["mean"]["double_dissociation"].values())


def test_sweep_compiles_once(model):
    params, cfg, specialist, probe, mean_LTF = model
    traced = jax.jit(chex.assert_max_traces(ablation.mask_sweep_impl, n=1),
                     static_argnames=("cfg", "score", "batch_size"))
    tokens, target, onehot = ablation.probe_arrays(probe, K)
    rng = np.random.default_rng(0)
    for _ in range(3):
        masks = jnp.asarray(rng.uniform(size=(10,) + specialist.shape[1:]) < 0.2)
        acc, _, _ = traced(params, tokens, masks, jnp.asarray(mean_LTF), jnp.asarray(rng.integers(0, 2, 10)),
                        (target, onehot), cfg, ablation.answer_accuracy, 4)
        assert acc.shape == (10, K)
    before = ablation.mask_sweep._cache_size()
    ablation.dissociation(params, cfg, probe, OPS, specialist, mean_LTF, n_random=20, seed=1)
    ablation.dissociation(params, cfg, probe, OPS, specialist[::-1], mean_LTF, n_random=20, seed=2)
    assert ablation.mask_sweep._cache_size() - before <= 1


def test_sweep_matches_single_forward(model):
    params, cfg, specialist, probe, mean_LTF = model
    import ffnkv
    mask_LF = specialist[1]
    hooks = ffnkv.neuron_mask_hooks(jnp.asarray(mask_LF)[:, None, :], jnp.asarray(mean_LTF))
    logits = ffnkv.forward(params, jnp.asarray(probe["tokens"]), cfg, hooks).logits[:, -1]
    correct = np.asarray(logits.argmax(-1)) == probe["target"]
    acc, _, correct_SN = ablation.padded_sweep(params, *ablation.probe_arrays(probe, K), mean_LTF, mask_LF[None],
                                               np.ones(1), cfg, 1)
    np.testing.assert_allclose(acc[0], [correct[probe["op"] == k].mean() for k in range(K)], atol=1e-6)
    np.testing.assert_array_equal(correct_SN[0], correct)


def test_random_like_keeps_per_layer_counts():
    mask = np.zeros((3, 10), bool)
    mask[0, :4] = True
    mask[2, 7] = True
    out = ablation.random_like(mask, 25, np.random.default_rng(0))
    assert out.shape == (25, 3, 10)
    np.testing.assert_array_equal(out.sum(2), np.tile([4, 0, 1], (25, 1)))
    assert len({o.tobytes() for o in out}) > 1
