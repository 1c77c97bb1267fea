"""Known answers for the analyses that `ffnkv pretrained` runs (tiny random models; no packages needed)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tolerance import assert_f32_close

from analysis import integrated_gradients as IG
from analysis import memories, mlm_head, tracing
from analysis import neuron_scaling as NS
from cli import main
from ffnkv.config import ModelConfig
from ffnkv.errors import FfnkvError
from ffnkv.hooks import Hooks
from ffnkv.model import forward, init_params
from ffnkv.prompts import Prompts
from studies.pos_specialisation import sentence_gini, sparsity_per_layer

CFG = ModelConfig(vocab_size=31, d_model=16, n_layers=3, n_heads=2, d_ff=24, ffn="gelu", max_len=16)


@pytest.fixture(scope="module")
def params():
    return init_params(jax.random.key(0), CFG)


def test_sparsity_per_layer_known_values():
    n = 8
    m_LNF = jnp.stack([jnp.ones((2, n)), jnp.eye(n)[:2], -jnp.eye(n)[:2]])
    out = sparsity_per_layer(m_LNF)
    np.testing.assert_allclose(out["gini"], [0.0, (n - 1) / n, (n - 1) / n], atol=1e-6)
    np.testing.assert_allclose(out["active_fraction"], [1.0, 1 / n, 0.0], atol=1e-6)
    # per sentence (the verdict's items): content tokens only, averaged over layers; a sentence without any is left out
    m_LSTF = jnp.stack([jnp.ones((3, 2, n)), jnp.broadcast_to(jnp.eye(n)[:2], (3, 2, n))])
    content = np.array([[True, False], [True, True], [False, False]])
    np.testing.assert_allclose(sentence_gini(m_LSTF, content), [(n - 1) / n / 2] * 2, atol=1e-6)


def test_noun_verb_specialists_by_the_shared_rule():
    """The POS study's specialists are ``analysis.specialisation``'s with the groups NOUN and VERB; the cap keeps
    the most selective."""
    from analysis.specialisation import specialisation
    from studies.pos_specialisation import strongest

    rng = np.random.default_rng(1)
    m_LNF = rng.normal(0, 0.3, (2, 400, 6))
    label_N = np.repeat([0, 1], 200)
    m_LNF[0, :200, 1] += 2.0  # a noun neuron
    m_LNF[0, :200, 2] += 1.0  # a weaker noun neuron
    m_LNF[1, 200:, 4] += 2.0  # a verb neuron
    sel = specialisation(m_LNF, label_N, ("NOUN", "VERB"), "gelu", [0, 1])
    assert np.argwhere(sel["specialist"][0]).tolist() == [[0, 1], [0, 2]]
    assert np.argwhere(sel["specialist"][1]).tolist() == [[1, 4]]
    assert np.argwhere(strongest(sel["si"][0], sel["specialist"][0], 1)).tolist() == [[0, 1]]
    assert strongest(sel["si"][0], sel["specialist"][0], None).sum() == 2


def test_ablation_sweep_identity_and_effect(params):
    cfg = CFG.replace(causal=False)
    E_CD = params["embed"]["tok"][:10]
    head = {"W": jnp.eye(16), "b": jnp.zeros(16), "norm": {"scale": jnp.ones(16), "bias": jnp.zeros(16)},
            "bias": jnp.zeros(10)}
    batch = {"tokens": jnp.array([[1, 2, 3, 4], [5, 6, 7, 0]]), "real": jnp.array([[1, 1, 1, 1], [1, 1, 1, 0]], bool),
             "pos": jnp.array([1, 2]), "target": jnp.array([3, 4])}
    masks = jnp.stack([jnp.zeros((3, 24), bool), jnp.ones((3, 24), bool)])
    nll, _ = mlm_head.ablation_sweep(params, cfg, head, E_CD, batch, masks, jnp.zeros(2))
    out = forward(params, batch["tokens"], cfg, mask_BT=batch["real"])
    base, _ = mlm_head.masked_token_nll(out, (head, E_CD, batch["pos"], batch["target"]), cfg)
    np.testing.assert_allclose(np.asarray(nll[0]), np.asarray(base), rtol=1e-5)
    assert np.abs(np.asarray(nll[1] - nll[0])).max() > 1e-4


def _facts_enc():
    """Two right-padded prompts: subjects [1, 3) and [0, 1), answers 4 and 6."""
    tokens = np.array([[3, 7, 9, 2, 5], [1, 2, 6, 0, 0]], np.int32)
    return Prompts(tokens, np.array([5, 3]), np.array([4, 2]), np.array([4, 6]), np.array([1, 0]), np.array([3, 1]))


@pytest.mark.slow
def test_tracing_layer_subset_and_keys(params):
    enc = _facts_enc()
    keys = jax.vmap(lambda n: jax.random.fold_in(jax.random.key(0), n))(jnp.arange(2))
    full = tracing.causal_trace(params, CFG, enc, noise=1.0, samples=4, window=2, kinds=("resid", "mlp"))
    sub = tracing.causal_trace(params, CFG, enc, noise=1.0, samples=4, window=2, kinds=("resid", "mlp"),
                               layers=(0, 2), keys=keys)
    assert sub["restored"].shape == (2, 2, 5, 2) and sub["layers"] == [0, 2]
    assert_f32_close(sub["restored"], full["restored"][..., [0, 2]])
    # restoring the last layer's hidden state at the prediction position is the clean run at the output
    assert_f32_close(sub["restored"][0, 0, 4, -1], sub["p_clean"][0])
    avg = tracing.average_by_category(sub, enc)
    assert len(avg["resid"]["last_subject"]["mean"]) == 2 and avg["resid"]["first_subject"]["n"] == 2


@pytest.mark.slow
def test_joint_path_integrated_gradients(params):
    """The joint path: Attr = m̄ ⊙ Σ_k w_k ∂P/∂m(α_k m̄), every layer's last-position m patched; complete."""
    enc = _facts_enc()
    out = IG.integrated_gradients(params, CFG, enc, steps=16, path="joint")
    assert out["attr"].shape == (2, CFG.n_layers, CFG.d_ff) and out["prob_zero"].shape == (2, 1)
    assert out["completeness"]["max_pair_relative_error"] < 0.01
    tokens, T = jnp.asarray(enc["tokens"][1, :3]), 3
    m_LF = forward(params, tokens[None], CFG).acts.ffn[:, 0, -1]
    at = jnp.broadcast_to(jnp.arange(T) == T - 1, (CFG.n_layers, T))[:, None, :, None]
    prob = lambda m: jax.nn.softmax(forward(params, tokens[None], CFG, Hooks(
        ffn_patch_mask=at, ffn_patch_value=m[:, None, None, :])).logits[0, -1])[6]
    alphas, weights = IG.riemann_nodes(16, "midpoint")
    grad = jax.jit(jax.grad(prob))
    manual = m_LF * sum(w * grad(a * m_LF) for a, w in zip(alphas, weights))
    np.testing.assert_allclose(out["attr"][1], manual, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(out["prob_zero"][1, 0], prob(jnp.zeros_like(m_LF)), rtol=1e-5)
    with pytest.raises(FfnkvError, match="path"):
        IG.integrated_gradients(params, CFG, enc, path="diagonal")


def test_scaling_at_every_position(params):
    enc = _facts_enc()
    masks = NS.neuron_mask([[(1, 5)]], CFG)
    p = NS.scaled_probs(params, CFG, enc, masks, np.zeros(2), np.arange(2), 0.0, all_positions=True)
    scale_LF = jnp.ones((3, 24)).at[1, 5].set(0.0)
    logits = forward(params, jnp.asarray(enc["tokens"][1:, :3]), CFG, Hooks(ffn_scale=scale_LF)).logits[0, -1]
    np.testing.assert_allclose(p[1], float(jax.nn.softmax(logits)[6]), rtol=1e-5)


def test_value_projection_ranks(params):
    scores_NV = np.asarray(memories.value_logits(params, CFG, 1, [0, 5]))
    ranks = memories.token_rank(params, CFG, 1, [0, 5], int(np.argmax(scores_NV[0])))
    assert int(ranks[0]) == 0
    assert int(ranks[1]) == int((scores_NV[1] > scores_NV[1, np.argmax(scores_NV[0])]).sum())


def test_cli_reports_bad_checkpoints(tmp_path, capsys):
    assert main(["pretrained", "smollm2", "--path", str(tmp_path / "nope.gguf")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["pretrained", "minilm", "--path", str(tmp_path)]) == 2
    assert "config.json" in capsys.readouterr().err


@pytest.mark.slow
def test_pretrained_smollm2_is_the_knowledge_study_with_cpu_settings(tmp_path):
    """`ffnkv pretrained smollm2` runs `ffnkv knowledge`'s study and writes its files: with the preset spelled out
    as `knowledge` options, the two commands write the same files with the same contents (timings aside)."""
    import json

    from pretrained_fixture import WORDS, write_tiny_llama

    from ffnkv.io.load import load_model
    from studies import facts as FS
    from studies.knowledge import pretrained_settings

    path = write_tiny_llama(tmp_path / "tiny")
    model = load_model(path)
    facts = [("the capital of {} is", "France"), ("the capital of {} is", "Italy"), ("{} is located in", "Berlin"),
             ("the language of {} is", "Japan"), ("{} speaks the", "Spain")]
    raw = [{"case_id": i, "requested_rewrite": {"prompt": p, "subject": s, "relation_id": p,
                                               "target_true": {"str": "Paris"}, "target_new": {"str": "Rome"}},
            "paraphrase_prompts": [f"the city {s} , {p.replace('{}', s)}"], "neighborhood_prompts": ["the city of"]}
           for i, (p, s) in enumerate(facts)]
    (tmp_path / "probe.json").write_text(json.dumps(raw))
    probe = FS.model_facts(model, tmp_path / "probe.json")
    top = FS.top1(model.params, model.cfg, FS.main_prompts(model.tokenizer, probe))  # the facts it "knows"
    for r, t in zip(raw, top):
        r["requested_rewrite"]["target_true"]["str"] = WORDS[t]
        r["requested_rewrite"]["target_new"]["str"] = WORDS[3 + (t + 1 - 3) % (len(WORDS) - 3)]
    (tmp_path / "facts.json").write_text(json.dumps(raw))
    s = pretrained_settings()
    common = ["--facts", str(tmp_path / "facts.json"), "--n-facts", "4", "--samples", "2", "--ig-steps", "2",
              "--layer-stride", "1", "--window", "2", "--no-progress"]
    assert main(["pretrained", "smollm2", "--path", str(path), "--out", str(tmp_path / "a")] + common) == 0
    assert main(["knowledge", str(path), "--out", str(tmp_path / "b"), "--known-only", "--ig-path", s.path,
                 "--generic-relations", str(s.generic_relations), "--all-positions", "--examples", str(s.examples),
                 "--trace-kinds", *s.kinds] + common) == 0
    a, b = sorted(p.name for p in (tmp_path / "a").iterdir()), sorted(p.name for p in (tmp_path / "b").iterdir())
    assert a == b and {"attribution.json", "tracing.json", "knowledge.md"} <= set(a)

    def content(d, name):
        data = json.loads((tmp_path / d / name).read_text())
        for part in (data, data.get("summary", {})):
            for key in ("seconds", "ig_seconds", "ig_seconds_per_prompt"):
                part.pop(key, None)
        return data

    for name in ("attribution.json", "tracing.json"):
        assert content("a", name) == content("b", name)
