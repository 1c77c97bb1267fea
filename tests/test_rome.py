"""ROME: the closed form hits v* exactly, an edit to the current value is the identity, edits are pure."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from edit_fixtures import model, request, spd, stack

from analysis.rome import (
    DeltaHParams,
    keys_at,
    rank_one_update,
    regularised_inverse,
    rome_sequential,
    value_matrix,
    with_value_matrix,
)
from ffnkv.model import forward


def test_rank_one_update_hits_target_and_changes_only_along_Cinv_k():
    kW, kk, kv, kC = jax.random.split(jax.random.key(0), 4)
    W, k, v, C = jax.random.normal(kW, (16, 8)), jax.random.normal(kk, (16,)), jax.random.normal(kv, (8,)), spd(kC, 16)
    Cinv = regularised_inverse(C, 1e-4)
    W2 = rank_one_update(W, k, v, Cinv)
    np.testing.assert_allclose(k @ W2, v, atol=1e-5)
    assert jnp.linalg.matrix_rank(W2 - W) == 1
    j = jax.random.normal(jax.random.key(5), (16,))
    j_orth = j - (j @ Cinv @ k) / (k @ Cinv @ k) * k   # jᵀC⁻¹k = 0: a key the update must not touch
    np.testing.assert_allclose(j_orth @ W2, j_orth @ W, atol=1e-4)


def test_edit_to_the_current_value_changes_nothing():
    cfg, params = model()
    req = request(0)
    k = keys_at(params, cfg, 1, req.tokens_PT, req.subject_P).mean(0)
    W = value_matrix(params, 1)
    new = with_value_matrix(params, 1,
                            rank_one_update(W, k, k @ W, regularised_inverse(spd(jax.random.key(1), cfg.d_ff), 1e-4)))
    np.testing.assert_allclose(new["blocks"]["ffn"]["W_out"], params["blocks"]["ffn"]["W_out"], atol=1e-6)
    np.testing.assert_allclose(forward(new, req.tokens_PT, cfg).logits,
                               forward(params, req.tokens_PT, cfg).logits, atol=1e-5)


@pytest.mark.parametrize("constraint", ["bare", pytest.param("mean", marks=pytest.mark.slow)])
def test_rome_on_a_model_writes_v_star_and_only_touches_W_out_of_its_layer(constraint):
    cfg, params = model()
    before = jax.tree.map(np.asarray, params)
    C = spd(jax.random.key(2), cfg.d_ff)
    hp = DeltaHParams(steps=8, weight_decay=0.0, clamp_factor=50.0, constraint=constraint)
    reqs = stack([request(i) for i in range(3)])
    new, info = rome_sequential(params, cfg, 1, C, reqs, hp)
    jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, params), before)   # pure
    last = jax.tree.map(lambda x: x[-1], reqs)
    k_PF = keys_at(new, cfg, 1, last.tokens_PT, last.subject_P)
    np.testing.assert_allclose(k_PF.mean(0), info["k_star"][-1], atol=1e-5)
    k_c = k_PF[0] if constraint == "bare" else k_PF.mean(0)   # ROME's code: the bare prompt's key; Gupta et al.: k*
    np.testing.assert_allclose(k_c, info["k_c"][-1], atol=1e-5)
    np.testing.assert_allclose(k_c @ value_matrix(new, 1), info["v_star"][-1], atol=1e-4)
    changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), new, params)
    assert [p for p, c in jax.tree_util.tree_leaves_with_path(changed) if c] and sum(jax.tree.leaves(changed)) == 1
    assert changed["blocks"]["ffn"]["W_out"]
    W_old, W_new = np.asarray(params["blocks"]["ffn"]["W_out"]), np.asarray(new["blocks"]["ffn"]["W_out"])
    np.testing.assert_array_equal(np.delete(W_new, 1, 0), np.delete(W_old, 1, 0))
    assert np.all(np.asarray(info["delta_norm"]) > 0) and np.all(np.asarray(info["steps"]) >= 1)
    lp = lambda p, r: jax.nn.log_softmax(forward(p, r.tokens_PT, cfg).logits[jnp.arange(4), r.predict_P])[:, r.target]
    assert float(lp(new, last).mean()) > float(lp(params, last).mean())
