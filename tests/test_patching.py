"""Activation patching: the cached-prefix method equals the full recompute; patching the only differing token
restores the clean run; one compiled program."""
import chex
import jax
import numpy as np
import pytest
from conftest import random_params, small_cfg
from tolerance import assert_f32_close

import ffnkv
from analysis import patching as PA

CFGS = {"gelu": dict(ffn="gelu", n_layers=2), "swiglu-rope": dict(ffn="swiglu", positional="rope", norm="rmsnorm",
                                                                  bias=False, n_layers=2)}


def _pairs(cfg, N=2, T=7, seed=0):
    rng = np.random.default_rng(seed)
    clean = rng.integers(0, cfg.vocab_size, (N, T)).astype(np.int32)
    corrupt = clean.copy()
    corrupt[:, 2] = (clean[:, 2] + 1) % cfg.vocab_size
    enc = {"tokens": clean, "predict_pos": np.array([T - 1, T - 2]), "target": rng.integers(0, cfg.vocab_size, N)}
    return enc, corrupt


@pytest.mark.parametrize("name", [n if n == "gelu" else pytest.param(n, marks=pytest.mark.slow) for n in CFGS])
@pytest.mark.parametrize("site", PA.SITES)
def test_prefix_equals_full(name, site):
    cfg = small_cfg(**CFGS[name])
    params = random_params(cfg)
    enc, corrupt = _pairs(cfg)
    fast = PA.activation_patching(params, cfg, enc, corrupt, site, recompute="prefix", position_buckets=2)
    full = PA.activation_patching(params, cfg, enc, corrupt, site, recompute="full")
    for key in ("p_clean", "p_corrupt", "patched"):
        assert_f32_close(fast[key], full[key], err_msg=key)
    assert fast["patched"].shape == (2, cfg.n_layers, 7)


def test_patching_the_changed_token_restores_clean():
    """The pair differs only at token 2: its resid_pre at layer 0 carries the whole difference, and positions
    before it change nothing."""
    cfg = small_cfg(ffn="gelu", n_layers=2)
    params = random_params(cfg)
    enc, corrupt = _pairs(cfg)
    out = PA.activation_patching(params, cfg, enc, corrupt, "resid_pre", position_buckets=3)
    np.testing.assert_allclose(out["patched"][:, 0, 2], out["p_clean"], rtol=1e-5)
    np.testing.assert_allclose(out["patched"][:, :, :2], np.broadcast_to(out["p_corrupt"][:, None, None], (2, 2, 2)),
                               rtol=1e-5)
    frac = PA.restored_fraction(out)
    np.testing.assert_allclose(frac[:, 0, 2], 1.0, atol=1e-4)


def test_bidirectional_and_errors():
    cfg = small_cfg(causal=False, n_layers=2)
    params = random_params(cfg)
    enc, corrupt = _pairs(cfg)
    fast = PA.activation_patching(params, cfg, enc, corrupt, "mlp_out")
    full = PA.activation_patching(params, cfg, enc, corrupt, "mlp_out", recompute="full")
    assert_f32_close(fast["patched"], full["patched"])
    with pytest.raises(ffnkv.FfnkvError, match="site"):
        PA.activation_patching(params, cfg, enc, corrupt, "ffn")
    with pytest.raises(ffnkv.FfnkvError, match="shape"):
        PA.activation_patching(params, cfg, enc, corrupt[:, :5])


def test_one_program_for_every_pair():
    cfg = small_cfg(ffn="gelu", n_layers=2)
    params = random_params(cfg)
    fn = jax.jit(chex.assert_max_traces(PA.patch_impl, n=1),
                 static_argnames=("cfg", "site", "layers", "position_buckets"))
    for seed in (0, 1):
        enc, corrupt = _pairs(cfg, seed=seed)
        out = fn(params, enc["tokens"], corrupt, enc["predict_pos"], enc["target"], cfg=cfg, site="resid_pre",
                 layers=(0, 1), position_buckets=2)
        chex.assert_shape(out[2], (2, 2, 7))
