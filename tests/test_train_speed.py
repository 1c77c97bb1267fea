"""The fast training path (issue 16): unrolled blocks == scanned blocks, erf GELU, the compiled step, the torch peer."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ffnkv.config import ModelConfig
from ffnkv.ffn import gelu
from ffnkv.hooks import Hooks
from ffnkv.model import forward, init_params
from train.config import OptimConfig, TrainConfig
from train.state import init_state, make_optimizer, schedule
from train.step import jit_train_step


@pytest.mark.parametrize("cfg", [
    pytest.param(ModelConfig(vocab_size=32, d_model=16, n_layers=3, n_heads=2, d_ff=24, ffn="gelu", max_len=8,
                             tie_embeddings=False), marks=pytest.mark.slow),
    ModelConfig(vocab_size=32, d_model=16, n_layers=3, n_heads=4, n_kv_heads=2, d_ff=24, ffn="swiglu", max_len=8,
                positional="rope", norm="rmsnorm", ffn_layers=(0, 2)),
])
def test_unrolled_blocks_equal_scan(cfg):
    params = init_params(jax.random.key(0), cfg)
    tokens = jax.random.randint(jax.random.key(1), (2, 8), 0, cfg.vocab_size)
    L, F, D = cfg.n_layers, cfg.width, cfg.d_model
    hooks = Hooks(ffn_scale=jnp.linspace(0.5, 1.5, L * F).reshape(L, F),
                  resid_add=0.1 * jax.random.normal(jax.random.key(2), (L, 1, 8, D)),
                  attn_out_patch_mask=jnp.zeros((L, 1, 8, 1), bool).at[1, 0, 3].set(True),
                  attn_out_patch_value=jnp.ones((L, 2, 8, D)))
    scan = jax.jit(lambda p, t, h: forward(p, t, cfg, h))(params, tokens, hooks)
    loop = jax.jit(lambda p, t, h: forward(p, t, cfg, h, unroll=True))(params, tokens, hooks)
    chex.assert_trees_all_close(loop, scan, atol=1e-5, rtol=1e-5)


def test_gelu_is_the_exact_erf_form():
    h = jnp.linspace(-8.0, 8.0, 2001)
    np.testing.assert_allclose(gelu(h), jax.nn.gelu(h, approximate=False), atol=1e-6)
    np.testing.assert_allclose(jax.grad(lambda x: gelu(x).sum())(h),
                               jax.grad(lambda x: jax.nn.gelu(x, approximate=False).sum())(h), atol=2e-6)
    np.testing.assert_allclose(gelu(h, approximate=True), jax.nn.gelu(h, approximate=True))


def test_compiled_train_step_has_no_layer_loop():
    """The training loss unrolls the blocks: no while loop (and so no stacked per-layer buffers) in the program."""
    model = ModelConfig(vocab_size=32, d_model=16, n_layers=3, n_heads=2, d_ff=24, ffn="gelu", max_len=8)
    cfg = TrainConfig(model=model, optim=OptimConfig(), steps=10, batch_size=2)
    state = init_state(cfg)
    batch = {"tokens": jnp.zeros((2, 8), jnp.int32), "targets": jnp.zeros((2, 8), jnp.int32),
             "weights": jnp.ones((2, 8))}
    hlo = jit_train_step(cfg, make_optimizer(cfg), schedule(cfg)).lower(state, batch).compile().as_text()
    assert " while(" not in hlo


@pytest.mark.slow
def test_torch_peer_matches_the_model():
    """benchmarks/torch_train.py builds the same parameter count and init scales as ffnkv's reference model."""
    pytest.importorskip("torch")
    from benchmarks import torch_train
    from benchmarks.train import reference_model

    cfg = reference_model()
    params = init_params(jax.random.key(0), cfg)
    model = torch_train.Model(**torch_train.SHAPE)
    assert sum(p.numel() for p in model.parameters()) == sum(w.size for w in jax.tree.leaves(params))
    pairs = [(params["embed"]["tok"], model.tok), (params["embed"]["pos"], model.pos),
             (params["blocks"]["attn"]["W_q"], model.blocks[0].q.weight),
             (params["blocks"]["ffn"]["W_in"], model.blocks[0].ff_in.weight),
             (params["blocks"]["ffn"]["W_out"], model.blocks[0].ff_out.weight),
             (params["unembed"], model.unembed.weight)]
    for ours, theirs in pairs:
        np.testing.assert_allclose(float(theirs.detach().std()), float(ours.std()), rtol=0.05)


@pytest.mark.parametrize("heads,kv_heads,T,causal,padded", [
    (4, 4, 128, True, False), (4, 2, 70, True, True), (4, 1, 9, False, True), (2, 2, 130, True, False)])
def test_attention_equals_dot_product_attention(heads, kv_heads, T, causal, padded):
    """The head-major einsum attention (causal query blocks included) == ``jax.nn.dot_product_attention``,
    values and gradients, for grouped-query heads, padding masks and T not a multiple of the block."""
    from ffnkv.attention import attend, causal_attention

    ks = jax.random.split(jax.random.key(0), 4)
    q = jax.random.normal(ks[0], (2, T, heads, 8))
    k, v = (jax.random.normal(kk, (2, T, kv_heads, 8)) for kk in ks[1:3])
    g = jax.random.normal(ks[3], q.shape)
    mask_BT = jnp.arange(T)[None, :] < jnp.array([[T], [T - T // 3]]) if padded else None
    key_mask = None if mask_BT is None else mask_BT[:, None, None, :]

    def ours(q, k, v):
        if causal:
            return causal_attention(q, k, v, mask_BT, block=64)
        return attend(q, k, v, None if mask_BT is None else mask_BT[:, None, None, None, :])

    def ref(q, k, v):
        return jax.nn.dot_product_attention(q, k, v, mask=key_mask, is_causal=causal)

    loss = lambda f: lambda q, k, v: (f(q, k, v) * g).sum()
    chex.assert_trees_all_close(jax.jit(ours)(q, k, v), jax.jit(ref)(q, k, v), atol=1e-5, rtol=1e-5)
    chex.assert_trees_all_close(jax.jit(jax.grad(loss(ours), (0, 1, 2)))(q, k, v),
                                jax.jit(jax.grad(loss(ref), (0, 1, 2)))(q, k, v), atol=1e-4, rtol=1e-4)
