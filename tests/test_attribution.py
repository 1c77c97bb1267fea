import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import random_params, small_cfg
from tolerance import assert_f32_close

import ffnkv
from analysis import integrated_gradients as IG
from analysis import knowledge_neurons as KN
from analysis import neuron_scaling as NS
from analysis import prompt_prob as PP


def _prompts(cfg, params, n=4, T=7, seed=0):
    """Random prompts whose gold token is the model's own top-1 prediction (so p(gold) is not tiny)."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, cfg.vocab_size, (n, T)).astype(np.int32)
    pos = rng.integers(2, T, n).astype(np.int32)
    logits = np.asarray(ffnkv.forward(params, jnp.asarray(tokens), cfg).logits)
    return {"tokens": tokens, "predict_pos": pos, "target": logits[np.arange(n), pos].argmax(-1).astype(np.int32)}


@pytest.mark.parametrize("rule", IG.RULES)
def test_riemann_nodes(rule):
    alphas, weights = IG.riemann_nodes(20, rule)
    assert abs(weights.sum() - 1) < 1e-6 and alphas.min() >= 0 and alphas.max() <= 1
    exact_linear = rule in ("midpoint", "trapezoid")
    assert (abs(weights @ alphas - 0.5) < 1e-6) == exact_linear


def _completeness(kind):
    cfg = small_cfg(ffn=kind)
    params = random_params(cfg)
    enc = _prompts(cfg, params)
    result = IG.integrated_gradients(params, cfg, enc, steps=20, rule="midpoint", batch_size=2)
    assert result["attr"].shape == (4, cfg.n_layers, cfg.width)
    assert result["completeness"]["mean_abs_delta"] > 1e-3
    assert result["completeness"]["relative_error"] < 0.01
    return cfg, params, enc, result


@pytest.fixture(scope="module")
def gelu_ig():
    return _completeness("gelu")


def test_completeness(gelu_ig):
    """Σ_i Attr_i = P(α=1) − P(α=0) for every prompt and layer, to ≤ 1% with 20 midpoint steps."""
    result = gelu_ig[3]
    np.testing.assert_allclose(result["prob_zero"].shape, (4, 3))


@pytest.mark.slow
def test_completeness_gated():
    _completeness("swiglu")


@pytest.mark.parametrize("causal", [pytest.param(True, marks=pytest.mark.slow), False])
def test_prefix_equals_full_recompute(causal):
    """The one-program cached-prefix IG (every layer's rows entering at their block) equals the per-layer full
    recompute of the reference code: attributions and P(α=0), causal and bidirectional, two α blocks."""
    cfg = small_cfg(ffn="gelu", causal=causal)
    params = random_params(cfg)
    enc = _prompts(cfg, params, n=2)
    fast = IG.integrated_gradients(params, cfg, enc, steps=4, recompute="prefix", alpha_blocks=2)
    full = IG.integrated_gradients(params, cfg, enc, steps=4, recompute="full")
    assert_f32_close(fast["attr"], full["attr"], floor=0.0)
    assert_f32_close(fast["prob_zero"], full["prob_zero"])


def test_matches_gradient_site_definition(gelu_ig):
    """IG via the scale hook equals w̄_i Σ_k w_k ∂P/∂w_i(α_k w̄) computed with the ``ffn_add`` gradient site."""
    cfg, params, enc, result = gelu_ig
    tokens, pos, gold = jnp.asarray(enc["tokens"][0]), int(enc["predict_pos"][0]), int(enc["target"][0])
    m_LF = ffnkv.forward(params, tokens[None], cfg).acts.ffn[:, 0, pos]
    layer = 1
    T = tokens.shape[0]
    alphas, weights = IG.riemann_nodes(20, "midpoint")

    @jax.jit
    def grad_m(a):
        scale = jnp.ones((cfg.n_layers, T, cfg.width)).at[layer, pos].set(a)
        p_of_add = lambda add: PP.gold_prob(params, cfg, tokens, pos, gold, ffnkv.Hooks(ffn_scale=scale, ffn_add=add))
        return jax.grad(p_of_add)(jnp.zeros((cfg.n_layers, T, cfg.width)))[layer, pos]

    manual = m_LF[layer] * (weights @ jnp.stack([grad_m(a) for a in alphas]))
    np.testing.assert_allclose(result["attr"][0, layer], manual, rtol=1e-4, atol=1e-7)


def test_selection_and_refinement():
    attr = np.zeros((4, 2, 8), np.float32)
    attr[:, 1, 3] = 1.0          # in every prompt
    attr[:, 0, 5] = 0.5          # in every prompt
    attr[0, 0, 1] = 0.9          # in one prompt only
    attr[:, 0, 2] = 0.1          # below 0.2 × max
    kn = KN.knowledge_neurons(attr, np.zeros(4, int))
    assert kn[0]["neurons"] == [[1, 3], [0, 5]]
    many = np.ones((3, 2, 8), np.float32) + np.arange(16, dtype=np.float32).reshape(2, 8) / 16
    kn = KN.knowledge_neurons(many, np.zeros(3, int))
    assert 2 <= len(kn[0]["neurons"]) <= 5 and kn[0]["threshold"] > 0.2


def test_relation_sharing():
    out = KN.relation_sharing([[[0, 1], [1, 2]], [[0, 1]], [[3, 3]]], ["r", "r", "s"])
    assert out["per_relation"]["r"]["shared"][0] == [0, 1, 2]
    assert out["intra_relation_overlap"] == 1.0 and out["inter_relation_overlap"] == 0.0


def test_suppress_amplify(gelu_ig):
    cfg, params, enc, _ = gelu_ig
    logits = ffnkv.forward(params, jnp.asarray(enc["tokens"]), cfg).logits[np.arange(4), enc["predict_pos"]]
    prob = np.asarray(jax.nn.softmax(logits)[np.arange(4), enc["target"]])
    neurons = [[[0, 1], [2, 5]], []]
    masks = NS.neuron_mask(neurons, cfg)
    same = NS.scaled_probs(params, cfg, enc, masks, np.zeros(4), np.arange(4), 1.0)
    np.testing.assert_allclose(same, prob, rtol=1e-5)
    zeroed = NS.scaled_probs(params, cfg, enc, masks, np.zeros(4), np.arange(4), 0.0)
    pos = int(enc["predict_pos"][0])
    scale = jnp.ones((cfg.n_layers, 7, cfg.width)).at[0, pos, 1].set(0.0).at[2, pos, 5].set(0.0)
    expect = jax.jit(PP.gold_prob, static_argnums=1)(params, cfg, jnp.asarray(enc["tokens"][0]), pos, enc["target"][0],
                                                    ffnkv.Hooks(ffn_scale=scale))
    np.testing.assert_allclose(zeroed[0], expect, rtol=1e-5)
    eff = NS.suppression_amplification(params, cfg, enc, neurons, [np.arange(2), np.arange(2, 4)],
                                      [np.arange(2, 4), np.arange(2)], prob)
    assert eff["n_facts"] == 1 and np.isfinite(eff["mean"]["x0_own"]) and np.isfinite(eff["mean"]["x2_unrelated"])


def test_errors():
    cfg = small_cfg(ffn="none")
    enc = {"tokens": np.zeros((1, 4), np.int32), "predict_pos": np.array([3]), "target": np.array([0])}
    with pytest.raises(ffnkv.FfnkvError):
        IG.integrated_gradients(random_params(cfg), cfg, enc)
    with pytest.raises(ffnkv.FfnkvError):
        IG.riemann_nodes(10, "simpson")
    cfg = small_cfg()
    with pytest.raises(ffnkv.FfnkvError):
        IG.integrated_gradients(random_params(cfg), cfg, enc | {"predict_pos": np.array([9])})


def test_cli_rejects_a_bad_model_spec_in_one_line(tmp_path, capsys):
    from cli import main

    assert main(["knowledge", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and len(err.strip().splitlines()) == 1
