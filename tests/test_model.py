import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import random_params, small_cfg
from tolerance import assert_f32_close

import ffnkv

KINDS = ffnkv.FFN_KINDS


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("positional", ["learned", "rope"])
def test_shapes(kind, positional, tokens):
    cfg = small_cfg(ffn=kind, positional=positional)
    logits, acts = ffnkv.forward(random_params(cfg), tokens, cfg)
    L, (B, T), D, F = cfg.n_layers, tokens.shape, cfg.d_model, cfg.width
    chex.assert_shape(logits, (B, T, cfg.vocab_size))
    for name in ("resid_pre", "attn_out", "resid_mid", "mlp_out", "resid_post"):
        chex.assert_shape(getattr(acts, name), (L, B, T, D))
    chex.assert_shape(acts.ffn, (L, B, T, 0 if kind == "none" else F))
    chex.assert_tree_all_finite(logits)


def test_ffn_only_in_some_layers(tokens):
    cfg = small_cfg(ffn="gelu", ffn_layers=(1, 2))
    params = random_params(cfg)
    _, acts = ffnkv.forward(params, tokens, cfg)
    assert float(jnp.abs(acts.ffn[0]).max()) == 0.0 and float(jnp.abs(acts.mlp_out[0]).max()) == 0.0
    assert float(jnp.abs(acts.mlp_out[1]).max()) > 0.0
    full = small_cfg(ffn="gelu")
    ffn_params = ffnkv.ffn_params_per_layer("gelu", cfg.d_model, cfg.d_ff)
    assert ffnkv.count_params(params, full) - ffnkv.count_params(params, cfg) == ffn_params


@pytest.mark.parametrize("kind", ["relu", "swiglu", "softmax"])
def test_causal_logits_ignore_future(kind, tokens):
    cfg = small_cfg(ffn=kind, positional="rope")
    params = random_params(cfg)
    t = 4

    def logit_sum(embed_add_BTD):
        return ffnkv.forward(params, tokens, cfg, ffnkv.Hooks(embed_add=embed_add_BTD)).logits[:, t].sum()

    grad_BTD = jax.grad(logit_sum)(jnp.zeros(tokens.shape + (cfg.d_model,)))
    assert float(jnp.abs(grad_BTD[:, t + 1:]).max()) == 0.0
    assert float(jnp.abs(grad_BTD[:, : t + 1]).min(axis=-1).max()) > 0.0


def test_bidirectional_sees_future(tokens):
    cfg = small_cfg(causal=False)
    params = random_params(cfg)
    grad_BTD = jax.grad(lambda e: ffnkv.forward(params, tokens, cfg, ffnkv.Hooks(embed_add=e)).logits[:, 0].sum())(
        jnp.zeros(tokens.shape + (cfg.d_model,)))
    assert float(jnp.abs(grad_BTD[:, -1]).max()) > 0.0


@pytest.mark.parametrize("kind", KINDS)
def test_identity_hooks_match_no_hooks(kind, tokens):
    cfg = small_cfg(ffn=kind)
    params = random_params(cfg)
    clean = ffnkv.forward(params, tokens, cfg)
    L, (B, T), D, F = cfg.n_layers, tokens.shape, cfg.d_model, cfg.width
    false_L1T1 = jnp.zeros((L, 1, T, 1), bool)
    identity = ffnkv.Hooks(
        embed_add=jnp.zeros((B, T, D)), ffn_scale=jnp.ones((L, F)), ffn_add=jnp.zeros((L, F)),
        ffn_patch_mask=false_L1T1, ffn_patch_value=clean.acts.ffn + 1.0,
        attn_out_patch_mask=false_L1T1, attn_out_patch_value=clean.acts.attn_out + 1.0,
        mlp_out_add=jnp.zeros((L, D)), mlp_out_patch_mask=false_L1T1, mlp_out_patch_value=clean.acts.mlp_out + 1.0,
        resid_add=jnp.zeros((L, D)), resid_post_patch_mask=false_L1T1, resid_post_patch_value=clean.acts.resid_post)
    hooked = ffnkv.forward(params, tokens, cfg, identity)
    np.testing.assert_array_equal(hooked.logits, clean.logits)


@pytest.mark.parametrize("kind", ["relu", "gelu", "swiglu", "softmax", "linear"])
def test_zero_ablating_a_layer_equals_removing_its_ffn(kind, tokens):
    cfg = small_cfg(ffn=kind, bias=False)
    params = random_params(cfg)
    layer = 1
    ablated = ffnkv.forward(params, tokens, cfg, ffnkv.ablate_neurons(cfg, layer, jnp.arange(cfg.d_ff))).logits
    removed_cfg = cfg.replace(ffn_layers=(0, 2))
    removed = ffnkv.forward(params, tokens, removed_cfg).logits
    assert_f32_close(ablated, removed)
    assert float(jnp.abs(ablated - ffnkv.forward(params, tokens, cfg).logits).max()) > 1e-3


def test_mean_ablation_sets_the_mean(tokens):
    cfg = small_cfg()
    params = random_params(cfg)
    mean_F = jnp.arange(cfg.d_ff, dtype=jnp.float32)
    _, acts = ffnkv.forward(params, tokens, cfg, ffnkv.ablate_neurons(cfg, 2, jnp.array([3, 5]), mean_F))
    np.testing.assert_array_equal(acts.ffn[2, :, :, 3], 3.0)
    np.testing.assert_array_equal(acts.ffn[2, :, :, 5], 5.0)


@pytest.mark.parametrize("kind", ["relu", "swiglu"])
def test_patching_clean_resid_post_restores_clean_logits(kind, tokens):
    cfg = small_cfg(ffn=kind)
    params = random_params(cfg)
    clean = ffnkv.forward(params, tokens, cfg)
    noise = ffnkv.Hooks(embed_add=3.0 * jax.random.normal(jax.random.key(3), tokens.shape + (cfg.d_model,)))
    corrupted = ffnkv.forward(params, tokens, cfg, noise).logits
    assert float(jnp.abs(corrupted - clean.logits).max()) > 1e-2
    every = ffnkv.patch_from(clean.acts, "resid_post", jnp.ones(cfg.n_layers, bool), jnp.ones(tokens.shape[1], bool))
    patched = ffnkv.forward(params, tokens, cfg, noise.merge(every)).logits
    assert_f32_close(patched, clean.logits)


def test_vmapped_single_neuron_ablations_equal_a_loop(tokens):
    cfg = small_cfg(ffn="gelu")
    params = random_params(cfg)
    layer, neurons = 1, jnp.arange(6)
    run = jax.jit(lambda h: ffnkv.forward(params, tokens, cfg, h).logits)
    batched = jax.vmap(lambda i: run(ffnkv.ablate_neurons(cfg, layer, i)))(neurons)
    for i in range(6):
        assert_f32_close(batched[i], run(ffnkv.ablate_neurons(cfg, layer, i)))


def test_hook_values_do_not_recompile(tokens):
    cfg = small_cfg()
    params = random_params(cfg)

    @jax.jit
    @chex.assert_max_traces(n=1)
    def run(hooks):
        return ffnkv.forward(params, tokens, cfg, hooks).logits

    outs = [run(ffnkv.ablate_neurons(cfg, i % cfg.n_layers, i)) for i in range(10)]
    assert len({float(o.sum()) for o in outs}) > 1


def test_grad_wrt_ffn_add_is_dmetric_dm(tokens):
    cfg = small_cfg(ffn="gelu")
    params = random_params(cfg)
    shape = (cfg.n_layers,) + tokens.shape + (cfg.d_ff,)

    def metric(add_LBTF):
        return jax.nn.log_softmax(ffnkv.forward(params, tokens, cfg, ffnkv.Hooks(ffn_add=add_LBTF)).logits)[0, -1, 3]

    grad = jax.grad(metric)(jnp.zeros(shape))
    eps = 1e-2
    for idx in [(0, 0, 9, 4), (1, 0, 5, 17), (2, 0, 9, 40), (1, 1, 2, 0)]:
        bump = jnp.zeros(shape).at[idx].set(eps)
        numeric = (metric(bump) - metric(-bump)) / (2 * eps)
        np.testing.assert_allclose(grad[idx], numeric, rtol=2e-2, atol=1e-4)
    assert float(jnp.abs(grad[:, 1]).max()) == 0.0  # batch row 1 does not affect row 0


def test_add_vector_adds_at_positions(tokens):
    cfg = small_cfg()
    params = random_params(cfg)
    vec = jnp.arange(cfg.d_model, dtype=jnp.float32)
    positions = jnp.arange(tokens.shape[1]) == 4
    clean = ffnkv.forward(params, tokens, cfg).acts
    hooked = ffnkv.forward(params, tokens, cfg, ffnkv.add_vector(cfg, "mlp_out", 2, positions, vec)).acts
    assert_f32_close(hooked.mlp_out[2, :, 4], clean.mlp_out[2, :, 4] + vec)
    assert_f32_close(hooked.mlp_out[:, :, :4], clean.mlp_out[:, :, :4])


def test_grouped_query_and_post_norm_run(tokens):
    for cfg in (small_cfg(n_kv_heads=2, norm="rmsnorm", positional="rope", ffn="swiglu", bias=False),
                small_cfg(prenorm=False, embed_norm=True, causal=False, gelu_approximate=True, ffn="gelu")):
        logits, _ = ffnkv.forward(random_params(cfg), tokens, cfg)
        chex.assert_tree_all_finite(logits)


def test_model_forward_is_jitted_once_per_shape_and_hook_fields(tokens):
    from ffnkv.io import load

    cfg = small_cfg(ffn="gelu")
    params = jax.tree.map(np.asarray, random_params(cfg))
    model = load.Model(cfg, params, tokenizer=None, name="small")
    assert all(isinstance(w, jax.Array) for w in jax.tree.leaves(model.params))
    np.testing.assert_array_equal(model.forward(tokens).logits,
                                  jax.jit(ffnkv.forward, static_argnums=2)(params, tokens, cfg).logits)
    before = load.forward_jit._cache_size()
    outs = [model.forward(np.asarray(tokens), ffnkv.ablate_heads(cfg, layer, head)).logits
            for layer, head in ((0, 1), (2, 3), (1, 0))]
    assert load.forward_jit._cache_size() == before + 1
    assert len({float(o.sum()) for o in outs}) == 3
    with pytest.raises(ffnkv.FfnkvError, match="shape"):
        model.forward(tokens[0])
