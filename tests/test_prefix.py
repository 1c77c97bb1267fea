"""forward_from over a cached prefix equals the full forward with the same intervention."""
import jax
import jax.numpy as jnp
import pytest
from conftest import random_params, small_cfg
from tolerance import assert_f32_close

import ffnkv
from ffnkv.model import embed, unembed
from ffnkv.prefix import forward_entering, forward_from, prefix_cache, suffix

CFGS = {
    "relu-learned": dict(ffn="relu"),
    "swiglu-rope-gqa-rms": dict(ffn="swiglu", positional="rope", n_kv_heads=2, norm="rmsnorm", bias=False),
    "gelu-some-layers": dict(ffn="gelu", ffn_layers=(0, 2)),
}


@pytest.mark.parametrize("name", CFGS)
def test_from_start_is_forward(name, tokens):
    cfg = small_cfg(**CFGS[name])
    params = random_params(cfg)
    out, cache = prefix_cache(params, tokens, cfg)
    x = jax.jit(lambda: forward_from(params, cache, cfg, 0, 0, embed(params, tokens, cfg)))()
    assert_f32_close(unembed(params, x, cfg), out.logits)


@pytest.mark.parametrize("name", CFGS)
def test_patched_suffix_matches_full_forward(name, tokens):
    """Replace the residual entering block l at position t (the full run: a resid_post patch of block l − 1, or
    noise on the embedding for l = 0); recomputing only positions ≥ t in blocks ≥ l gives the same logits,
    with l static (blocks < l left out) or traced (skipped by lax.cond)."""
    cfg = small_cfg(**CFGS[name])
    params = random_params(cfg)
    B, T = tokens.shape
    S = T - 4
    _, cache = prefix_cache(params, tokens, cfg)
    new_BD = jax.random.normal(jax.random.key(3), (B, cfg.d_model))

    def fast(layer, t):
        return unembed(params,
                       forward_from(params, cache, cfg, layer, t, suffix(cache, layer, t, S).at[:, 0].set(new_BD)), cfg)

    @jax.jit
    def full(layer, t):
        at_T = jnp.arange(T) == t
        noise = at_T[None, :, None] * (new_BD[:, None] - cache.resid[0]) * (layer == 0)
        rows = (jnp.arange(cfg.n_layers) == layer - 1)[:, None] & at_T[None, :]
        value = jnp.broadcast_to(new_BD[None, :, None], (cfg.n_layers, B, T, cfg.d_model))
        hooks = ffnkv.Hooks(embed_add=noise, resid_post_patch_mask=rows[:, None, :, None], resid_post_patch_value=value)
        return jax.lax.dynamic_slice_in_dim(ffnkv.forward(params, tokens, cfg, hooks).logits, t, S, 1)

    cells = [(layer, t) for layer in range(cfg.n_layers + 1) for t in (0, 2, 4)]
    got = jax.jit(lambda c: jax.lax.map(lambda lt: fast(lt[0], lt[1]), c))(jnp.asarray(cells, jnp.int32))
    want = jnp.stack([full(layer, t) for layer, t in cells])
    assert_f32_close(got, want)
    for layer, t in ((0, 4), (2, 2), (cfg.n_layers, 0)):
        assert_f32_close(jax.jit(fast, static_argnums=0)(layer, t), full(layer, t))


@pytest.mark.parametrize("name",
                         [pytest.param(n, marks=[] if i == 0 else pytest.mark.slow) for i, n in enumerate(CFGS)])
def test_entering_rows_equal_separate_forwards(name, tokens):
    """Rows entering at every block in one pass equal one forward_from per entry layer, each with its FFN
    scale in the entry block only."""
    cfg = small_cfg(**CFGS[name])
    params = random_params(cfg)
    _, cache = prefix_cache(params, tokens[:1], cfg)
    L, R, S, t = cfg.n_layers, 3, 2, 3
    x_LRSD = jax.random.normal(jax.random.key(4), (L, R, S, cfg.d_model))
    scale_LRSF = jax.random.uniform(jax.random.key(5), (L, R, S, cfg.width))
    got = jax.jit(lambda: forward_entering(params, cache, cfg, t, x_LRSD, scale_LRSF))()
    _, cache = prefix_cache(params, jnp.repeat(tokens[:1], R, 0), cfg)  # one row of the prefix per entering row
    for layer in range(L):
        hooks = ffnkv.Hooks(ffn_scale=jnp.ones((L, R, S, cfg.width)).at[layer].set(scale_LRSF[layer]))
        want = forward_from(params, cache, cfg, layer, t, x_LRSD[layer], hooks)
        assert_f32_close(got[layer], want)


@pytest.mark.slow
def test_hooks_on_suffix_and_gradient(tokens):
    """An FFN scale at (layer, position) on the suffix: value and gradient equal the full forward's."""
    cfg = small_cfg(ffn="gelu", positional="rope")
    params = random_params(cfg)
    B, T = tokens.shape
    _, cache = prefix_cache(params, tokens, cfg)
    layer, pos = 1, T - 1

    def full(s_F):
        scale = jnp.ones((cfg.n_layers, T, cfg.width)).at[layer, pos].set(s_F)
        return ffnkv.forward(params, tokens, cfg, ffnkv.Hooks(ffn_scale=scale)).logits[:, pos, 0].sum()

    def fast(s_F):
        scale = jnp.ones((cfg.n_layers, 1, cfg.width)).at[layer, 0].set(s_F)
        x = forward_from(params, cache, cfg, jnp.int32(layer), pos, suffix(cache, layer, pos, 1),
                         ffnkv.Hooks(ffn_scale=scale))
        return unembed(params, x, cfg)[:, 0, 0].sum()

    s = jnp.linspace(0.0, 1.0, cfg.width)
    fast, full = jax.jit(jax.value_and_grad(fast)), jax.jit(jax.value_and_grad(full))
    for a, b in zip(fast(s), full(s)):
        assert_f32_close(a, b)


def test_bidirectional_needs_whole_sequence(tokens):
    cfg = small_cfg(causal=False)
    params = random_params(cfg)
    out, cache = prefix_cache(params, tokens, cfg)
    x = jax.jit(lambda: forward_from(params, cache, cfg, 1, 0, suffix(cache, 1, 0, tokens.shape[1])))()
    assert_f32_close(unembed(params, x, cfg), out.logits)
    with pytest.raises(ffnkv.FfnkvError, match="whole sequence"):
        forward_from(params, cache, cfg, 1, 2, suffix(cache, 1, 2, 3))


@pytest.mark.parametrize("name", [pytest.param(n, marks=[] if i == 1 else pytest.mark.slow)
                                  for i, n in enumerate(CFGS)])
def test_query_position_equals_the_whole_suffix(name, tokens):
    """``query``: the one position's output equals that position of the whole suffix's output, hooks on every
    block included, for static and traced entry blocks (the last block, and none, among them)."""
    cfg = small_cfg(**CFGS[name])
    params = random_params(cfg)
    B, T = tokens.shape
    t, S, L = 2, T - 2, cfg.n_layers
    _, cache = prefix_cache(params, tokens, cfg)
    add = 0.5 * jax.random.normal(jax.random.key(4), (L, B, S, cfg.d_model))
    hooks = ffnkv.Hooks(mlp_out_add=add)

    def run(layer, q=None):
        x = suffix(cache, jnp.minimum(layer, L), t, S) + 0.3
        return forward_from(params, cache, cfg, layer, t, x, hooks, query=q)

    queries = jnp.asarray([0, 3, S - 1], jnp.int32)
    for layer in (0, L - 1, L):
        whole = jax.jit(run, static_argnums=0)(layer)
        one = jax.jit(lambda q, layer=layer: run(layer, q))(queries[1])
        assert one.shape == (B, 1, cfg.d_model)
        assert_f32_close(one[:, 0], whole[:, 3])
        traced = jax.jit(lambda l: jax.vmap(lambda q: run(l, q)[:, 0])(queries))(jnp.int32(layer))
        assert_f32_close(traced, whole[:, queries].transpose(1, 0, 2))
