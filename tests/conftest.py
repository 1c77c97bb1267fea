import jax
import jax.numpy as jnp
import pytest

import ffnkv


def small_cfg(**changes) -> ffnkv.ModelConfig:
    base = dict(vocab_size=32, d_model=32, n_layers=3, n_heads=4, d_ff=48, max_len=16)
    return ffnkv.ModelConfig(**(base | changes))


def random_params(cfg, seed=0):
    """Initial parameters with every zero-initialised bias/norm perturbed, so identities are not vacuous."""
    params = ffnkv.init_params(jax.random.key(seed), cfg)
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(seed + 1), len(leaves))
    noisy = [w + 0.1 * jax.random.normal(k, w.shape) for w, k in zip(leaves, keys)]
    params = jax.tree.unflatten(treedef, noisy)
    mask = jnp.asarray(cfg.has_ffn_L())
    params["blocks"]["ffn"] = jax.tree.map(lambda w: w * mask.reshape((-1,) + (1,) * (w.ndim - 1)),
                                           params["blocks"]["ffn"])
    return params


@pytest.fixture
def tokens():
    return jax.random.randint(jax.random.key(7), (2, 10), 0, 32)
