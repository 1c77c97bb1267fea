"""Attention heads: captured patterns and per-head outputs, head hooks (ablate, mean-ablate, add, patch) against
direct computations, no cost when unused, one program for many head interventions, head patching."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import random_params, small_cfg
from tolerance import assert_f32_close

import ffnkv
from analysis import patching as PA

CFGS = {
    "gelu": {"ffn": "gelu"},
    "gqa-rope": {"ffn": "swiglu", "positional": "rope", "norm": "rmsnorm", "bias": False, "n_kv_heads": 2},
    "post-norm-bidirectional": {"prenorm": False, "embed_norm": True, "causal": False, "ffn": "gelu"},
}


def _split_heads(W_o, cfg):
    return W_o.reshape(W_o.shape[:-2] + (cfg.n_heads, cfg.head_dim, cfg.d_model))


@pytest.mark.parametrize("name", [n if n == "gqa-rope" else pytest.param(n, marks=pytest.mark.slow) for n in CFGS])
def test_head_outputs_sum_to_attn_out_and_patterns_are_distributions(name, tokens):
    cfg = small_cfg(**CFGS[name])
    params = random_params(cfg)
    plain = ffnkv.forward(params, tokens, cfg)
    out = ffnkv.forward(params, tokens, cfg, capture_heads=True)
    L, (B, T), H, D = cfg.n_layers, tokens.shape, cfg.n_heads, cfg.d_model
    assert plain.acts.attn_pattern is None and plain.acts.head_out is None
    chex.assert_shape(out.acts.attn_pattern, (L, B, H, T, T))
    chex.assert_shape(out.acts.head_out, (L, B, T, H, D))
    np.testing.assert_array_equal(out.logits, plain.logits)
    bias_LD = params["blocks"]["attn"]["b_o"][:, None, None, :] if cfg.bias else 0.0
    assert_f32_close(out.acts.head_out.sum(axis=3) + bias_LD, out.acts.attn_out)
    assert_f32_close(out.acts.attn_pattern.sum(-1), np.ones((L, B, H, T)))
    if cfg.causal:
        above = np.triu(np.ones((T, T), bool), k=1)
        assert float(jnp.abs(out.acts.attn_pattern[..., above]).max()) == 0.0
    unrolled = ffnkv.forward(params, tokens, cfg, unroll=True, capture_heads=True)
    assert_f32_close(unrolled.acts.head_out, out.acts.head_out)
    assert_f32_close(unrolled.acts.attn_pattern, out.acts.attn_pattern)


def test_pattern_ignores_padded_keys(tokens):
    cfg = small_cfg(causal=False)
    mask = np.ones(tokens.shape, np.int32)
    mask[1, 6:] = 0
    pattern = ffnkv.forward(random_params(cfg), tokens, cfg,
                            mask_BT=jnp.asarray(mask), capture_heads=True).acts.attn_pattern
    assert float(jnp.abs(pattern[:, 1, :, :, 6:]).max()) == 0.0
    assert float(jnp.abs(pattern[:, 0, :, :, 6:]).min()) > 0.0


@pytest.mark.parametrize("name", ["gelu", "gqa-rope"])
def test_ablating_a_head_equals_zeroing_its_output_rows(name, tokens):
    """Zero-ablation of head h in layer l is the model with rows h·d_head … (h + 1)·d_head of W_o[l] zeroed;
    mean-ablation is that model with the mean added to the output bias."""
    cfg = small_cfg(**(CFGS[name] | {"bias": True}))
    params = random_params(cfg)
    layer, head = 1, 2
    W_LHKD = _split_heads(params["blocks"]["attn"]["W_o"], cfg)
    zeroed = jax.tree.map(lambda x: x, params)
    zeroed["blocks"]["attn"]["W_o"] = W_LHKD.at[layer, head].set(0.0).reshape(params["blocks"]["attn"]["W_o"].shape)
    direct = ffnkv.forward(zeroed, tokens, cfg).logits
    ablated = ffnkv.forward(params, tokens, cfg, ffnkv.ablate_heads(cfg, layer, head)).logits
    assert_f32_close(ablated, direct)
    assert float(jnp.abs(ablated - ffnkv.forward(params, tokens, cfg).logits).max()) > 1e-3

    mean_HD = jax.random.normal(jax.random.key(5), (cfg.n_heads, cfg.d_model))
    shifted = jax.tree.map(lambda x: x, zeroed)
    shifted["blocks"]["attn"]["b_o"] = zeroed["blocks"]["attn"]["b_o"].at[layer].add(mean_HD[head])
    mean_ablated = ffnkv.forward(params, tokens, cfg, ffnkv.ablate_heads(cfg, layer, jnp.array([head]), mean_HD))
    assert_f32_close(mean_ablated.logits, ffnkv.forward(shifted, tokens, cfg).logits)


def test_identity_head_hooks_match_no_hooks_and_unused_fields_cost_nothing(tokens):
    cfg = small_cfg(ffn="gelu")
    params = random_params(cfg)
    clean = ffnkv.forward(params, tokens, cfg, capture_heads=True)
    L, (B, T), H, D = cfg.n_layers, tokens.shape, cfg.n_heads, cfg.d_model
    identity = ffnkv.Hooks(head_scale=jnp.ones((L, H)), head_add=jnp.zeros((L, H, D)),
                           head_patch_mask=jnp.zeros((L, 1, T, H), bool), head_patch_value=clean.acts.head_out + 1.0)
    np.testing.assert_array_equal(ffnkv.forward(params, tokens, cfg, identity).logits, clean.logits)

    def hlo(hooks, capture):
        fn = jax.jit(lambda p, t, h: ffnkv.forward(p, t, cfg, h, capture_heads=capture))  # logits and every Acts
        return fn.lower(params, tokens, hooks).as_text()

    head_tensor = f"tensor<{B}x{T}x{H}x{D}xf32>"  # one layer's per-head outputs
    assert head_tensor not in hlo(None, False)
    assert head_tensor not in hlo(ffnkv.ablate_neurons(cfg, 1, 3), False)
    assert head_tensor in hlo(ffnkv.ablate_heads(cfg, 1, 3), False)
    assert head_tensor in hlo(None, True)


def test_head_add_adds_and_patch_sets(tokens):
    cfg = small_cfg()
    params = random_params(cfg)
    L, T, H, D = cfg.n_layers, tokens.shape[1], cfg.n_heads, cfg.d_model
    clean = ffnkv.forward(params, tokens, cfg, capture_heads=True).acts
    vec_D = jnp.linspace(-1.0, 1.0, D)
    add = jnp.zeros((L, 1, T, H, D)).at[2, 0, 4, 1].set(vec_D)
    hooked = ffnkv.forward(params, tokens, cfg, ffnkv.Hooks(head_add=add), capture_heads=True).acts
    assert_f32_close(hooked.head_out[2, :, 4, 1], clean.head_out[2, :, 4, 1] + vec_D)
    assert_f32_close(hooked.attn_out[2, :, 4], clean.attn_out[2, :, 4] + vec_D)
    assert_f32_close(hooked.head_out[:2], clean.head_out[:2])
    value = clean.head_out + 5.0
    patch = ffnkv.patch_from(clean.replace(head_out=value), "head_out", jnp.arange(L) == 0, jnp.arange(T) >= 3,
                             jnp.arange(H) == 2)
    patched = ffnkv.forward(params, tokens, cfg, patch, capture_heads=True).acts
    np.testing.assert_array_equal(patched.head_out[0, :, 3:, 2], value[0, :, 3:, 2])
    assert_f32_close(patched.head_out[0, :, :3], clean.head_out[0, :, :3])
    assert_f32_close(patched.head_out[0, :, :, :2], clean.head_out[0, :, :, :2])


def test_head_hook_values_do_not_recompile_and_vmap_equals_loop(tokens):
    cfg = small_cfg(ffn="gelu")
    params = random_params(cfg)

    @jax.jit
    @chex.assert_max_traces(n=1)
    def run(hooks):
        return ffnkv.forward(params, tokens, cfg, hooks).logits

    L, H = cfg.n_layers, cfg.n_heads
    cells = [(layer, head) for layer in range(L) for head in range(H)]
    looped = [run(ffnkv.ablate_heads(cfg, layer, head)) for layer, head in cells]
    assert len({float(o.sum()) for o in looped}) == len(cells)
    layer_X, head_X = (jnp.asarray(a) for a in zip(*cells))
    batched = jax.vmap(lambda layer, head: run(ffnkv.ablate_heads(cfg, layer, head)))(layer_X, head_X)
    for x, out in enumerate(looped):
        assert_f32_close(batched[x], out)


@pytest.mark.slow
def test_grad_wrt_head_add(tokens):
    """Every head of a layer feeds the same sum, so d(metric)/d(head_add) is the same for each head and equals a
    finite difference."""
    cfg = small_cfg(ffn="gelu")
    params = random_params(cfg)
    shape = (cfg.n_layers, 1, tokens.shape[1], cfg.n_heads, cfg.d_model)

    def metric(add):
        return jax.nn.log_softmax(ffnkv.forward(params, tokens, cfg, ffnkv.Hooks(head_add=add)).logits)[0, -1, 3]

    grad = jax.grad(metric)(jnp.zeros(shape))
    assert_f32_close(grad[:, :, :, 1:], jnp.broadcast_to(grad[:, :, :, :1], grad[:, :, :, 1:].shape))
    eps = 1e-2
    for idx in [(0, 0, 9, 1, 4), (2, 0, 5, 3, 17)]:
        bump = jnp.zeros(shape).at[idx].set(eps)
        np.testing.assert_allclose(grad[idx], (metric(bump) - metric(-bump)) / (2 * eps), rtol=2e-2, atol=1e-4)


def _pairs(cfg, N=2, T=7, seed=0):
    rng = np.random.default_rng(seed)
    clean = rng.integers(0, cfg.vocab_size, (N, T)).astype(np.int32)
    corrupt = clean.copy()
    corrupt[:, 2] = (clean[:, 2] + 1) % cfg.vocab_size
    enc = {"tokens": clean, "predict_pos": np.array([T - 1, T - 3]), "target": rng.integers(0, cfg.vocab_size, N)}
    return enc, corrupt


@pytest.mark.parametrize("name", [pytest.param("gelu", marks=pytest.mark.slow), "gqa-rope"])
def test_head_patching_equals_a_reference_by_hand(name):
    """Cell (l, h) by hand: block l's attention output of the corrupted run with head h's share swapped for the
    clean run's (blocks < l are the corrupted run's, so its attention output there is that of the corrupted run),
    set with the attn_out patch site; the prefix and full programs agree with it."""
    cfg = small_cfg(**CFGS[name])
    params = random_params(cfg)
    enc, corrupt = _pairs(cfg)
    fast = PA.head_patching(params, cfg, enc, corrupt)
    full = PA.head_patching(params, cfg, enc, corrupt, layers=(0, 2), recompute="full")
    L, H = cfg.n_layers, cfg.n_heads
    chex.assert_shape(fast["patched"], (2, L, H))
    run = jax.jit(lambda tokens_BT, hooks: ffnkv.forward(params, tokens_BT, cfg, hooks, capture_heads=True))
    for n in range(2):
        pos, gold = enc["predict_pos"][n], enc["target"][n]
        clean, bad = run(jnp.asarray(enc["tokens"][n:n + 1]), None), run(jnp.asarray(corrupt[n:n + 1]), None)

        def p(out, pos=pos, gold=gold):
            return float(jax.nn.softmax(out.logits[0, pos])[gold])

        np.testing.assert_allclose(fast["p_clean"][n], p(clean), rtol=1e-5)
        np.testing.assert_allclose(fast["p_corrupt"][n], p(bad), rtol=1e-5)
        for layer in range(L):
            for head in range(H):
                swapped = bad.acts.attn_out.at[layer, :, :, :].add(
                    clean.acts.head_out[layer, :, :, head] - bad.acts.head_out[layer, :, :, head])
                hooks = ffnkv.Hooks(attn_out_patch_mask=(jnp.arange(L) == layer)[:, None, None, None],
                                    attn_out_patch_value=swapped)
                ref = p(run(jnp.asarray(corrupt[n:n + 1]), hooks))
                assert_f32_close(fast["patched"][n, layer, head], ref)
    assert_f32_close(full["patched"], fast["patched"][:, [0, 2]])
    assert float(np.abs(fast["patched"] - fast["p_corrupt"][:, None, None]).max()) > 1e-4
    assert PA.restored_fraction(fast).shape == (2, L, H)


def test_head_patching_is_one_program_and_checks_input():
    cfg = small_cfg(ffn="gelu", n_layers=2)
    params = random_params(cfg)
    fn = jax.jit(chex.assert_max_traces(PA.head_patch_impl, n=1), static_argnames=("cfg", "layers"))
    for seed in (0, 1):
        enc, corrupt = _pairs(cfg, seed=seed)
        out = fn(params, enc["tokens"], corrupt, enc["predict_pos"], enc["target"], cfg=cfg, layers=(0, 1))
        chex.assert_shape(out[2], (2, 2, cfg.n_heads))
    with pytest.raises(ffnkv.FfnkvError, match="shape"):
        PA.head_patching(params, cfg, enc, corrupt[:, :5])
    with pytest.raises(ffnkv.FfnkvError, match="layers"):
        PA.head_patching(params, cfg, enc, corrupt, layers=(2,))
