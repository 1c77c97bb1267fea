"""Known answers for the analyses that `ffnkv pretrained` runs (tiny random models; no packages needed)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from analysis import pretrained_kn as kn
from analysis import pretrained_pos as pos
from analysis import pretrained_tracing as tracing
from analysis import pretrained_vocab as vocab
from ffnkv.cli import main
from ffnkv.config import ModelConfig
from ffnkv.model import forward, init_params

CFG = ModelConfig(vocab_size=31, d_model=16, n_layers=3, n_heads=2, d_ff=24, ffn="gelu", max_len=16)


@pytest.fixture(scope="module")
def params():
    return init_params(jax.random.key(0), CFG)


def test_gini_known_values():
    n = 8
    assert float(pos.gini(jnp.ones((1, n)))[0]) == pytest.approx(0.0, abs=1e-6)
    assert float(pos.gini(jnp.eye(n)[:1])[0]) == pytest.approx((n - 1) / n, abs=1e-6)
    assert float(pos.gini(-jnp.eye(n)[:1])[0]) == pytest.approx((n - 1) / n, abs=1e-6)


def test_welch_t_matches_scipy():
    stats = pytest.importorskip("scipy.stats", reason="the reference t-test comes from scipy")
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.3, 1.0, (40, 5)), rng.normal(0.0, 2.0, (25, 5))
    t, _, p = pos.welch_t(jnp.asarray(a), jnp.asarray(b))
    ref = stats.ttest_ind(a, b, equal_var=False)
    np.testing.assert_allclose(np.asarray(t), ref.statistic, rtol=1e-4)
    np.testing.assert_allclose(np.asarray(p), ref.pvalue, rtol=1e-3, atol=1e-6)


def test_benjamini_hochberg_and_selectivity():
    p = jnp.array([0.001, 0.008, 0.039, 0.041, 0.042, 0.06, 0.074, 0.205, 0.212, 0.216])
    np.testing.assert_array_equal(np.asarray(pos.benjamini_hochberg(p, 0.05)), [1, 1, 0, 0, 0, 0, 0, 0, 0, 0])
    rng = np.random.default_rng(1)
    noun = rng.normal(0, 1, (200, 2, 6)); verb = rng.normal(0, 1, (200, 2, 6))
    noun[:, 0, 1] += 2.0  # a noun neuron
    verb[:, 1, 4] += 2.0  # a verb neuron
    sel = pos.selectivity(jnp.asarray(noun), jnp.asarray(verb))
    assert np.argwhere(np.asarray(sel["noun"])).tolist() == [[0, 1]]
    assert np.argwhere(np.asarray(sel["verb"])).tolist() == [[1, 4]]
    mask = pos.top_k_mask(sel["d"], sel["noun"], 5)
    assert int(mask.sum()) == 1 and bool(mask[0, 1])


def test_random_masks_keep_per_layer_counts():
    mask = jnp.zeros((3, 10), bool).at[0, :4].set(True).at[2, 7].set(True)
    controls = pos.random_like_mask(jax.random.key(0), mask, 6)
    np.testing.assert_array_equal(np.asarray(controls.sum(-1)), np.tile([4, 0, 1], (6, 1)))
    assert len({tuple(np.flatnonzero(c[0])) for c in np.asarray(controls)}) > 1


def test_ablation_sweep_identity_and_effect(params):
    cfg = CFG.replace(causal=False)
    E_CD = params["embed"]["tok"][:10]
    head = {"W": jnp.eye(16), "b": jnp.zeros(16), "norm": {"scale": jnp.ones(16), "bias": jnp.zeros(16)},
            "bias": jnp.zeros(10)}
    batch = {"tokens": jnp.array([[1, 2, 3, 4], [5, 6, 7, 0]]), "real": jnp.array([[1, 1, 1, 1], [1, 1, 1, 0]], bool),
             "pos": jnp.array([1, 2]), "target": jnp.array([3, 4])}
    masks = jnp.stack([jnp.zeros((3, 24), bool), jnp.ones((3, 24), bool)])
    nll, _ = pos.ablation_sweep(params, cfg, head, E_CD, batch, masks)
    base, _ = pos.masked_scores(params, cfg, head, E_CD, batch, jnp.zeros((3, 24), bool))
    np.testing.assert_allclose(np.asarray(nll[0]), np.asarray(base), rtol=1e-5)
    assert np.abs(np.asarray(nll[1] - nll[0])).max() > 1e-4


def test_token_categories():
    subject = np.array([0, 0, 1, 1, 1, 0, 0, 0], bool)
    assert tracing.token_categories(subject, 8) == [0, 0, 1, 2, 3, 4, 5, 6]
    assert tracing.token_categories(np.array([0, 1, 0], bool), 3) == [0, 3, 6]


def test_tracing_identities(params):
    tokens = jnp.array([3, 7, 9, 2, 5])
    subject = jnp.array([0, 1, 1, 0, 0], jnp.float32)
    layers = jnp.arange(CFG.n_layers)
    noisy = tracing.trace(params, CFG, tokens, subject, 4, layers, jax.random.key(0), samples=4, sigma=1.0)
    # restoring the last layer's hidden state at the last token is the clean run at the output
    np.testing.assert_allclose(float(noisy["p_restored_KT"][-1, -1]), float(noisy["p_clean"]), rtol=1e-5)
    # tokens before the subject are unaffected by the noise, so restoring them does nothing
    np.testing.assert_allclose(np.asarray(noisy["indirect_KT"][:, 0]), 0.0, atol=1e-6)
    clean = tracing.trace(params, CFG, tokens, subject, 4, layers, jax.random.key(0), samples=2, sigma=0.0, kind="mlp",
                          window=2)
    np.testing.assert_allclose(np.asarray(clean["indirect_KT"]), 0.0, atol=1e-6)


def test_integrated_gradients_completeness(params):
    out = kn.integrated_gradients(params, CFG, jnp.array([3, 7, 9, 2]), 5, steps=16)
    assert float(out["completeness_error"]) < 0.01
    assert out["attr_LF"].shape == (CFG.n_layers, CFG.d_ff)


def test_candidates_generic_split_and_scaling(params):
    attr = jnp.zeros((3, 24)).at[1, 5].set(1.0).at[2, 0].set(0.5).at[0, 3].set(0.1)
    assert kn.candidate_neurons(attr, 0.2) == [(1, 5), (2, 0)]
    specific, generic = kn.split_generic([[(1, 5), (2, 0)], [(2, 0)], [(2, 0), (0, 1)]], ["a", "b", "c"])
    assert generic == [(2, 0)] and specific == [[(1, 5)], [], [(0, 1)]]
    scale = kn.neuron_scale(CFG, [(1, 5)], 0.0)
    assert float(scale.sum()) == 3 * 24 - 1
    tokens, lengths, targets = jnp.array([[3, 7, 9, 0], [1, 2, 0, 0]]), jnp.array([3, 2]), jnp.array([4, 6])
    p = kn.scaled_probs(params, CFG, tokens, lengths, targets, jnp.ones((3, 24)))
    logits = forward(params, tokens[:1, :3], CFG).logits[0, -1]
    np.testing.assert_allclose(float(p[0]), float(jax.nn.softmax(logits)[4]), rtol=1e-5)


def test_value_projection_ranks(params):
    top = vocab.top_tokens(params, CFG, 1, [0, 5], k=3)
    ranks = vocab.token_rank(params, CFG, 1, [0, 5], int(top[0, 0]))
    assert int(ranks[0]) == 0
    scores = np.asarray(vocab.value_logits(params, CFG, 1, [5]))[0]
    assert int(np.argmax(scores)) == int(top[1, 0])


def test_cli_reports_bad_checkpoints(tmp_path, capsys):
    assert main(["pretrained", "smollm2", "--path", str(tmp_path / "nope.gguf")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["pretrained", "minilm", "--path", str(tmp_path)]) == 2
    assert "config.json" in capsys.readouterr().err
