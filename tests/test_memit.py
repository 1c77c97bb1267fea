"""MEMIT: with one fact and one layer it is ROME's closed form (Sherman–Morrison); batches move hidden states."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from edit_fixtures import model, request, spd, stack

from analysis.memit import memit_edit, memit_update
from analysis.rome import DeltaHParams, rank_one_update


def test_one_fact_one_layer_equals_rome_closed_form():
    kW, kk, kv, kC = jax.random.split(jax.random.key(3), 4)
    W, k, v, C = jax.random.normal(kW, (12, 6)), jax.random.normal(kk, (12,)), jax.random.normal(kv, (6,)), spd(kC, 12)
    rome = rank_one_update(W, k, v, jnp.linalg.inv(C)) - W
    s = k @ jnp.linalg.solve(C, k)
    for lam in (0.1, 1.0, 50.0):
        memit = memit_update(W, k[None], (v - k @ W)[None], C, lam) - W
        np.testing.assert_allclose(memit, rome * s / (lam + s), rtol=1e-3, atol=1e-5)   # Sherman–Morrison
    # as λ → 0 the MEMIT edit writes v exactly, like ROME (float32: λ = 1e-3 leaves a ~1e-4 relative gap)
    np.testing.assert_allclose(k @ memit_update(W, k[None], (v - k @ W)[None], C, 1e-3), v, rtol=2e-2, atol=2e-2)


def test_memit_with_many_keys_solves_the_regularised_least_squares():
    kW, kK, kR, kC = jax.random.split(jax.random.key(4), 4)
    W, K, R = jax.random.normal(kW, (10, 5)), jax.random.normal(kK, (4, 10)), jax.random.normal(kR, (4, 5))
    C = spd(kC, 10)
    dW = memit_update(W, K, R, C, 2.0) - W
    grad = K.T @ (K @ dW - R) + 2.0 * C @ dW   # normal equations of ‖KΔ − R‖² + λ tr(ΔᵀCΔ)
    np.testing.assert_allclose(grad, 0.0, atol=1e-4)
    np.testing.assert_allclose(memit_update(W, K, jnp.zeros_like(R), C, 2.0), W, atol=1e-6)


@pytest.mark.slow
def test_memit_edit_on_a_model_moves_hidden_states_toward_targets_and_only_its_layers():
    cfg, params = model()
    C = spd(jax.random.key(5), cfg.d_ff)
    reqs = stack([request(i) for i in range(3)])
    hp = DeltaHParams(steps=6, weight_decay=0.0, clamp_factor=4.0, ridge=1e-4)
    new, info = memit_edit(params, cfg, (0, 1), jnp.stack([C, C]), reqs, hp, 0.01, 2)
    assert np.all(np.asarray(info["final_gap"]) < np.asarray(info["delta_norm"]))
    W_old, W_new = np.asarray(params["blocks"]["ffn"]["W_out"]), np.asarray(new["blocks"]["ffn"]["W_out"])
    np.testing.assert_array_equal(W_new[2], W_old[2])
    assert not np.allclose(W_new[0], W_old[0]) and not np.allclose(W_new[1], W_old[1])
    np.testing.assert_array_equal(np.asarray(new["blocks"]["ffn"]["W_in"]), np.asarray(params["blocks"]["ffn"]["W_in"]))


def test_relative_lambda_identity_and_rule():
    """For keys the C was computed from, mean kᵀC⁻¹k = tr(C⁻¹C) = F exactly, so λ = ratio · F; the paper's
    ratio is GPT-J's 15000 / 16384."""
    from analysis.memit import PAPER_LAMBDA_RATIO, relative_lambda

    K = jax.random.normal(jax.random.key(3), (200, 12)) * jnp.linspace(0.1, 3.0, 12)
    C = K.T @ K / K.shape[0]
    lam, s_bar = relative_lambda(K, C, 0.5)
    np.testing.assert_allclose(s_bar, 12.0, rtol=1e-3)
    np.testing.assert_allclose(lam, 6.0, rtol=1e-3)
    assert abs(PAPER_LAMBDA_RATIO - 15000 / 16384) < 1e-12


def test_memit_band_holds_the_layer_and_fits_the_model():
    from studies.editing import memit_layers

    assert memit_layers(3, 2, 4) == (2, 3) and memit_layers(0, 2, 4) == (0, 1) and memit_layers(1, 3, 4) == (0, 1, 2)
    assert memit_layers(0, 5, 2) == (0, 1)


def test_band_lambda_ratio_keeps_gptj_band_share():
    """The band rule: at λ = r_L · s an L-layer band realises what GPT-J's six layers realise at the paper's
    ratio (79%); with one layer the share is the Sherman–Morrison s / (λ + s); fewer layers need a smaller λ."""
    from analysis.memit import PAPER_LAMBDA_RATIO, band_lambda_ratio, band_realised

    np.testing.assert_allclose(band_realised(0.5, 1), 1 / 1.5)
    np.testing.assert_allclose(band_realised(1.0, 2), 1 - (1 - 0.25) * (1 - 0.5))
    target = band_realised(PAPER_LAMBDA_RATIO, 6)
    assert 0.78 < target < 0.80
    ratios = [band_lambda_ratio(L) for L in range(1, 7)]
    for L, r in enumerate(ratios, 1):
        np.testing.assert_allclose(band_realised(r, L), target, rtol=1e-6)
    assert all(a < b for a, b in zip(ratios, ratios[1:]))
    np.testing.assert_allclose(ratios[-1], PAPER_LAMBDA_RATIO, rtol=1e-6)


def test_band_realised_matches_memit_on_a_linear_model():
    """Sequential layer updates of one fact through memit_update realise band_realised's share when each
    layer's output adds straight to the target (a linear residual stream)."""
    from analysis.memit import band_realised

    keys = jax.random.normal(jax.random.key(5), (3, 10))
    C, target, z = spd(jax.random.key(6), 10), jax.random.normal(jax.random.key(7), (4,)), jnp.zeros(4)
    ratio = 0.4
    for i, k in enumerate(keys):
        s = k @ jnp.linalg.solve(C, k)
        W = memit_update(jnp.zeros((10, 4)), k[None], ((target - z) / (len(keys) - i))[None], C, ratio * s)
        z = z + k @ W
    np.testing.assert_allclose(jnp.linalg.norm(z) / jnp.linalg.norm(target), band_realised(ratio, 3), rtol=1e-4)


def test_ratio_readings_span_the_two_readings_of_gptj_keys():
    """Issue 20: the band rule read with E[kᵀC⁻¹k] = d_ff (0.461 for 2 layers) and with SmolLM2's 4.7·d_ff
    (0.078); the sweep's grid runs between them, evenly in log r, and each reading keeps its band's share."""
    from analysis.memit import (
        PAPER_LAMBDA_RATIO,
        SMOLLM2_KEY_SCALE,
        band_lambda_ratio,
        band_realised,
        ratio_grid,
        ratio_readings,
    )

    r = ratio_readings(2)
    assert r["d_ff"] == pytest.approx(band_lambda_ratio(2)) and r["key_scale"] == SMOLLM2_KEY_SCALE
    np.testing.assert_allclose(band_realised(r["measured"], 2),
                               band_realised(PAPER_LAMBDA_RATIO / SMOLLM2_KEY_SCALE, 6), rtol=1e-6)
    assert round(r["d_ff"], 3) == 0.461 and round(r["measured"], 3) == 0.078
    grid = ratio_grid(2, 6)
    assert len(grid) == 6 and grid[0] == pytest.approx(r["measured"]) and grid[-1] == pytest.approx(r["d_ff"])
    np.testing.assert_allclose(np.diff(np.log(grid)), np.log(grid[-1] / grid[0]) / 5, rtol=1e-9)
    assert ratio_grid(3, 1) == (pytest.approx(band_lambda_ratio(3)),)


@pytest.mark.slow
def test_memit_sweep_is_one_program_and_equals_memit_per_lambda():
    """The sweep over λ compiles once (new λ values: no retrace) and each row is MEMIT at that λ, scored."""
    from edit_fixtures import probe, unrelated

    from analysis.edit_eval import score_edited
    from studies.editing import memit_sweep

    cfg, params = model()
    C = spd(jax.random.key(5), cfg.d_ff)
    reqs = stack([request(i) for i in range(2)])
    probes, others = stack([probe(request(i), old=i) for i in range(2)]), unrelated()
    hp = DeltaHParams(steps=3, weight_decay=0.0, clamp_factor=4.0)
    C_LFF = jnp.stack([C, C])
    lams = jnp.asarray([0.05, 3.0], jnp.float32)
    scores, info, spread = memit_sweep(params, cfg, (0, 1), C_LFF, reqs, probes, others, lams, hp)
    compiled = memit_sweep._cache_size()  # other tests in this process may have compiled it for other shapes
    memit_sweep(params, cfg, (0, 1), C_LFF, reqs, probes, others, jnp.asarray([0.2, 40.0], jnp.float32), hp)
    assert memit_sweep._cache_size() == compiled
    for i, lam in enumerate(np.asarray(lams)):
        edited, one = memit_edit(params, cfg, (0, 1), C_LFF, reqs, hp, float(lam), 16)
        want = score_edited(edited, cfg, probes, others)
        for key in want:
            np.testing.assert_allclose(np.asarray(scores[key][i]), np.asarray(want[key]), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(np.asarray(spread["final_gap"][i]), np.asarray(one["final_gap"]),
                                   rtol=1e-4, atol=1e-4)
