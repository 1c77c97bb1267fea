"""The readout: forward's logits come from it, and the logit lens is LN_f(x)·W_DV (Geva et al. 2022)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import random_params, small_cfg

from ffnkv.model import forward
from ffnkv.readout import logit_lens, unembedding_DV


@pytest.mark.parametrize("changes", [{}, {"tie_embeddings": False}, {"norm": "rmsnorm"}])
def test_lens_of_the_last_block_output_is_the_model_output(changes, tokens):
    cfg = small_cfg(**changes)
    params = random_params(cfg)
    out = forward(params, tokens, cfg)
    np.testing.assert_allclose(logit_lens(params, out.acts.resid_post[-1], cfg), out.logits, atol=1e-5)
    W_DV = params["embed"]["tok"].T if cfg.tie_embeddings else params["unembed"]
    np.testing.assert_array_equal(unembedding_DV(params, cfg), W_DV)


def test_lens_applies_the_whole_final_layernorm_then_the_output_embedding():
    cfg = small_cfg()
    params = random_params(cfg)
    v_ND = np.asarray(jax.random.normal(jax.random.key(3), (5, cfg.d_model)))
    g, b = np.asarray(params["final_norm"]["scale"]), np.asarray(params["final_norm"]["bias"])
    centred = v_ND - v_ND.mean(-1, keepdims=True)
    ln = centred / np.sqrt((centred ** 2).mean(-1, keepdims=True) + cfg.norm_eps) * g + b
    E_VD = np.asarray(params["embed"]["tok"])
    np.testing.assert_allclose(logit_lens(params, jnp.asarray(v_ND), cfg), ln @ E_VD.T, atol=1e-4)
    np.testing.assert_allclose(logit_lens(params, jnp.asarray(v_ND), cfg, final_norm=False), v_ND @ E_VD.T, atol=1e-4)


def test_rmsnorm_lens_ranks_tokens_like_the_scaled_projection():
    """For RMSNorm the 1/rms factor is a positive constant per vector: the ranking is that of (g ⊙ v)·E."""
    cfg = small_cfg(norm="rmsnorm", tie_embeddings=False)
    params = random_params(cfg)
    v_ND = jax.random.normal(jax.random.key(4), (6, cfg.d_model))
    lens = np.asarray(logit_lens(params, v_ND, cfg))
    scaled = np.asarray((v_ND * params["final_norm"]["scale"]) @ params["unembed"])
    np.testing.assert_array_equal(np.argsort(-lens, -1), np.argsort(-scaled, -1))


def test_post_norm_models_have_no_final_norm():
    cfg = small_cfg(prenorm=False, embed_norm=True, causal=False)
    params = random_params(cfg)
    v_ND = jax.random.normal(jax.random.key(5), (3, cfg.d_model))
    expected = np.asarray(v_ND @ params["embed"]["tok"].T)
    np.testing.assert_allclose(logit_lens(params, v_ND, cfg), expected, atol=1e-5)
    np.testing.assert_allclose(logit_lens(params, v_ND, cfg, final_norm=False), expected, atol=1e-5)
