import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import random_params, small_cfg
from tolerance import assert_f32_close

import ffnkv
from analysis import tracing as TR

T = 7


def _facts(cfg, params, n=2, seed=0):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, cfg.vocab_size, (n, T)).astype(np.int32)
    pos = np.array([T - 1, T - 2][:n], np.int32)
    logits = np.asarray(ffnkv.forward(params, jnp.asarray(tokens), cfg).logits)
    return {"tokens": tokens, "predict_pos": pos, "target": logits[np.arange(n), pos].argmax(-1).astype(np.int32),
            "subject_start": np.array([1, 0][:n], np.int32), "subject_end": np.array([4, 2][:n], np.int32)}


@pytest.fixture(scope="module")
def model():
    cfg = small_cfg(ffn="gelu")
    return cfg, random_params(cfg)


@pytest.fixture(scope="module")
def traced(model):
    cfg, params = model
    enc = _facts(cfg, params)
    return enc, TR.causal_trace(params, cfg, enc, noise=1.0, samples=3, window=1, cell_batch=16)


@pytest.mark.slow
def test_restoring_the_last_state_recovers_clean(model, traced):
    enc, trace = traced
    cfg, _ = model
    assert trace["restored"].shape == (2, len(TR.KINDS), T, cfg.n_layers)
    assert (np.abs(trace["p_clean"] - trace["p_corrupt"]) > 1e-4).all()
    for n, pos in enumerate(enc["predict_pos"]):
        np.testing.assert_allclose(trace["restored"][n, :, pos, -1][[0, 3, 4]], trace["p_clean"][n], rtol=1e-4)
        # restoring a state before the subject, or after the prediction position, changes nothing
        np.testing.assert_allclose(trace["restored"][n, 0, pos + 1:, :], trace["p_corrupt"][n], rtol=1e-4)


def test_restoring_every_state_recovers_clean(model):
    """Patching resid_post at every token of any single layer (the corrupted run) gives the clean P[o]."""
    cfg, params = model
    enc = _facts(cfg, params, n=1)
    tokens = jnp.asarray(enc["tokens"])
    clean = ffnkv.forward(params, tokens, cfg)
    noise = jnp.zeros((T, cfg.d_model)).at[1:4].set(jax.random.normal(jax.random.key(0), (3, cfg.d_model)))
    pos, gold = int(enc["predict_pos"][0]), int(enc["target"][0])
    prob = jax.jit(lambda h: jax.nn.softmax(ffnkv.forward(params, tokens, cfg, h).logits[0, pos])[gold])
    p_clean = prob(ffnkv.Hooks())
    assert abs(float(prob(ffnkv.Hooks(embed_add=noise))) - p_clean) > 1e-4
    for site in ("resid_post", "mlp_out", "attn_out"):
        layers = np.ones(cfg.n_layers, bool) if site != "resid_post" else np.eye(cfg.n_layers, dtype=bool)
        for layers_L in np.atleast_2d(layers):
            hooks = ffnkv.patch_from(clean.acts, site, layers_L, np.ones(T, bool)).replace(embed_add=noise)
            if site != "resid_post":  # restore both block outputs: every state of every layer
                other = "attn_out" if site == "mlp_out" else "mlp_out"
                hooks = hooks.merge(ffnkv.patch_from(clean.acts, other, layers_L, np.ones(T, bool)))
            assert_f32_close(prob(hooks), p_clean)


@pytest.mark.slow
def test_severed_path_equals_plain_restore_at_last_layer(traced):
    _, trace = traced
    r = trace["restored"]
    assert_f32_close(r[:, 3, :, -1], r[:, 0, :, -1])
    assert_f32_close(r[:, 4, :, -1], r[:, 0, :, -1])


@pytest.mark.slow
def test_zero_noise_zero_effect(model):
    cfg, params = model
    enc = _facts(cfg, params)
    trace = TR.causal_trace(params, cfg, enc, noise=0.0, samples=3, window=1, cell_batch=16)
    assert_f32_close(trace["p_corrupt"], trace["p_clean"])
    np.testing.assert_allclose(trace["restored"], np.broadcast_to(trace["p_clean"][:, None, None, None],
                                                                  trace["restored"].shape), rtol=1e-5)


@pytest.mark.slow
def test_one_program_for_the_grid(model):
    """Every (kind, token, layer, sample) restoration of every fact is one trace; new facts/noise reuse it."""
    cfg, params = model
    fn = jax.jit(chex.assert_max_traces(TR.trace_impl, n=1),
                 static_argnames=("cfg", "kind_ids", "window", "samples", "cell_batch"))
    for seed, nu in ((0, 1.0), (1, 2.0)):
        enc = _facts(cfg, params, seed=seed)
        keys = jax.vmap(lambda n: jax.random.fold_in(jax.random.key(seed), n))(jnp.arange(2))
        args = [jnp.asarray(enc[k]) for k in ("tokens", "predict_pos", "target", "subject_start", "subject_end")]
        out = fn(params, *args, keys, jnp.float32(nu), cfg=cfg, kind_ids=(0, 1, 2, 3, 4), window=1, samples=2,
                 cell_batch=8)
        chex.assert_shape(out[2], (2, 5, T, cfg.n_layers))


@pytest.mark.slow
def test_categories_and_average(traced):
    assert TR.token_categories(1, 4, 6) == {"first_subject": [1], "middle_subject": [2], "last_subject": [3],
                                            "first_subsequent": [4], "further": [5], "last": [6]}
    assert TR.token_categories(0, 1, 1)["first_subsequent"] == []
    enc, trace = traced
    avg = TR.average_by_category(trace, enc)
    assert avg["n_facts"] == 2 and len(avg["resid"]["last"]["mean"]) == 3
    assert avg["resid"]["middle_subject"]["n"] == 1 and "further" in avg["mlp"]
    np.testing.assert_allclose(avg["total_effect"]["mean"], (trace["p_clean"] - trace["p_corrupt"]).mean(), rtol=1e-6)


def test_average_by_category_per_fact_rows_are_aligned():
    # two facts, one kind, 2 layers: fact 0's subject ends right before the last token (no "further" token)
    enc = {"subject_start": np.array([0, 0]), "subject_end": np.array([2, 1]), "predict_pos": np.array([3, 4])}
    restored = np.arange(2 * 1 * 5 * 2, dtype=float).reshape(2, 1, 5, 2) / 100
    trace = {"kinds": ["mlp"], "p_clean": np.array([0.9, 0.8]), "p_corrupt": np.array([0.1, 0.2]), "restored": restored}
    avg = TR.average_by_category(trace, enc, per_fact=True)
    ls = avg["mlp"]["last_subject"]
    np.testing.assert_allclose(ls["facts"], [restored[0, 0, 1] - 0.1, restored[1, 0, 0] - 0.2], atol=1e-6)
    np.testing.assert_allclose(np.mean(ls["facts"], 0), ls["mean"], atol=1e-6)
    assert avg["mlp"]["further"]["facts"][0] is None and len(avg["mlp"]["further"]["facts"]) == 2
    np.testing.assert_allclose(avg["total_effect"]["facts"], [0.8, 0.6])
    assert "facts" not in TR.average_by_category(trace, enc)["mlp"]["last_subject"]


def test_window():
    assert TR.window_L(2, 6, 3).tolist() == [False, True, True, True, False, False]
    assert TR.window_L(0, 4, 10).all()
    assert TR.window_L(1, 4, 1).tolist() == [False, True, False, False]


def test_bad_span(model):
    cfg, params = model
    enc = _facts(cfg, params) | {"subject_end": np.array([1, 0], np.int32)}
    with pytest.raises(ffnkv.FfnkvError):
        TR.causal_trace(params, cfg, enc)


@pytest.mark.parametrize("causal", [pytest.param(True, marks=pytest.mark.slow), False])
def test_prefix_equals_full_forward_with_hooks(causal):
    """The cached-prefix grid (cells in chunks entering at one block, a traced first block skipped by lax.cond,
    groups padded to whole chunks) equals the reference: the whole corrupted forward with patch hooks per cell
    and sample — every kind, a window of 3, two sample blocks, causal and bidirectional."""
    cfg = small_cfg(ffn="gelu", n_layers=4, causal=causal)
    params = random_params(cfg)
    enc = _facts(cfg, params)
    kw = dict(noise=1.0, samples=4, window=3, sample_blocks=2, position_buckets=3)
    fast = TR.causal_trace(params, cfg, enc, cell_batch=5, recompute="prefix", **kw)
    full = TR.causal_trace(params, cfg, enc, cell_batch=16, recompute="full", **kw)
    np.testing.assert_allclose(fast["p_corrupt"], full["p_corrupt"], atol=1e-6)
    scale = np.abs(full["restored"]).max()
    np.testing.assert_allclose(fast["restored"], full["restored"], atol=64 * np.finfo(np.float32).eps * scale, rtol=0)
