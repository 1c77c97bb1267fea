"""Geva et al. (2021) analyses against known answers."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tolerance import assert_f32_close

import ffnkv
from analysis import memories as M

CFG = ffnkv.ModelConfig(vocab_size=50, d_model=32, n_layers=3, n_heads=4, d_ff=48, max_len=16)


@pytest.fixture(scope="module")
def params():
    return ffnkv.init_params(jax.random.key(0), CFG)


@pytest.fixture(scope="module")
def corpus():
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, CFG.vocab_size, (37, 12)).astype(np.int32)
    mask = rng.random((37, 12)) > 0.2
    return tokens, mask


@pytest.mark.parametrize("final_norm", [False, True])
def test_hand_set_value_projects_to_its_token(params, final_norm):
    E_VD = params["embed"]["tok"]
    W = params["blocks"]["ffn"]["W_out"].at[1, 5].set(20.0 * (E_VD[17] - E_VD.mean(0)))
    W = W.at[2, 0].set(20.0 * (E_VD[3] - E_VD.mean(0)))
    p = params | {"blocks": params["blocks"] | {"ffn": params["blocks"]["ffn"] | {"W_out": W}}}
    ids, logits = M.value_top_tokens(p, CFG, 4, final_norm)
    assert ids.shape == logits.shape == (3, 48, 4)
    assert int(ids[1, 5, 0]) == 17 and int(ids[2, 0, 0]) == 3
    assert (np.diff(np.asarray(logits), axis=-1) <= 0).all()


def test_streaming_topk_equals_full_sort(params, corpus):
    tokens, mask = corpus
    before = M.trigger_step._cache_size()  # other tests in this process may have compiled it for other shapes
    got = M.trigger_search(params, CFG, tokens, mask, k=7, batch_size=5)
    m_LNF = np.asarray(ffnkv.forward(params, jnp.asarray(tokens), CFG).acts.ffn).reshape(3, -1, 48)
    m_LNF = np.where(mask.reshape(1, -1, 1), m_LNF, -np.inf)
    order = np.argsort(-m_LNF, axis=1, kind="stable")[:, :7]
    want_coef = np.take_along_axis(m_LNF, order, 1).transpose(0, 2, 1)
    assert_f32_close(got["coef"], want_coef)
    picked = np.take_along_axis(m_LNF, got["index"].transpose(0, 2, 1), 1).transpose(0, 2, 1)
    assert_f32_close(picked, want_coef)  # indices point at those coefficients
    assert M.trigger_step._cache_size() <= before + 1  # one program for every chunk


def test_agreement_on_constructed_triggers():
    targets_NT = np.array([[4, 5, 6], [7, 8, 9]])
    index_LFk = np.array([[[0, 1], [4, 0], [-1, -1]]])  # key 0 fired at (0,0) → next 4; key 1 at (1,1) → next 8
    value_top1_LF = np.array([[4, 2, 4]])
    out = M.agreement(value_top1_LF, index_LFk, targets_NT, jax.random.key(0))
    assert out["agreement"] == [0.5] and out["n_keys"] == [2]
    assert out["next_token_LF"].tolist() == [[4, 8, -1]]
    assert out["per_key"]["hit"] == [[1, 0, -1]]  # the verdict's items: per fired key (-1: never fired)
    assert np.mean(out["per_key"]["shuffled"][0][:2]) == pytest.approx(out["baseline"][0])


def test_refinement_and_zero_agreement_categories():
    res = jnp.array([1, 1, 2, 3])
    ffn = jnp.array([2, 1, 5, 4])
    out = jnp.array([1, 1, 5, 9])
    cats = np.asarray(M.refinement_categories(res, ffn, out))
    assert [M.REFINEMENT[i] for i in cats.argmax(-1)] == ["residual", "both", "ffn", "neither"]
    assert (cats.sum(-1) == 1).all()
    active = jnp.array([[True, False], [False, False], [True, True]])
    values = jnp.array([[7, 3], [7, 3], [7, 3]])
    assert np.asarray(M.zero_agreement(active, values, jnp.array([3, 3, 3]))).tolist() == [True, True, False]


def test_composition_on_constructed_models(params, corpus):
    tokens, mask = corpus
    big = params | {"blocks": params["blocks"] | {"ffn": params["blocks"]["ffn"] | {
        "W_out": params["blocks"]["ffn"]["W_out"].at[2].multiply(1e4),
        "b_out": params["blocks"]["ffn"]["b_out"].at[2].set(1e3 * params["embed"]["tok"][7])}}}
    ref = M.composition(big, CFG, tokens, mask, batch_size=8)["refinement"]
    assert ref["ffn"][2] + ref["both"][2] == pytest.approx(1.0)  # a huge last FFN decides the output
    zero = params | {"blocks": params["blocks"] | {"ffn": params["blocks"]["ffn"] | {
        "W_out": 0 * params["blocks"]["ffn"]["W_out"], "b_out": 0 * params["blocks"]["ffn"]["b_out"]}}}
    comp = M.composition(zero, CFG, tokens, mask, batch_size=8)
    np.testing.assert_allclose(np.add(comp["refinement"]["residual"], comp["refinement"]["both"]), 1.0, atol=1e-6)
    m = np.asarray(ffnkv.forward(params, jnp.asarray(tokens), CFG).acts.ffn)
    want = ((m > 0).sum(-1) * mask).sum((1, 2)) / mask.sum()
    np.testing.assert_allclose(M.composition(params, CFG, tokens, mask, batch_size=8)["active_mean"], want, rtol=1e-5)
    assert comp["n_positions"] == mask.sum()


def test_removal_inputs_and_effect(params, corpus):
    tokens = np.array([[9, 1, 2, 3, 4, 0]], np.int32)
    last, first, pos, valid = M.removal_inputs(tokens, np.array([[[4], [1], [3]]]), protect=1)
    assert last[0].tolist() == [9, 1, 2, 3, 0, 0] and first[0].tolist() == [9, 2, 3, 4, 0, 0]
    assert pos.tolist() == [3, 0, 2] and valid.tolist() == [True, False, True]
    toks, mask = corpus
    trig = M.trigger_search(params, CFG, toks, mask, k=3, batch_size=16)
    eff = M.removal_effect(params, CFG, toks, trig, k=2)
    assert len(eff["last"]["mean_relative_change"]) == 3 and min(eff["n_valid"]) > 0
    for name in ("last", "first"):  # the verdict's items: each valid trigger's relative change, per layer
        per = eff[name]["relative_change"]
        assert [len(x) for x in per] == eff["n_valid"]
        np.testing.assert_allclose([np.mean(x) for x in per], eff[name]["mean_relative_change"], atol=1e-3)
    # removing the last token of a prefix: its coefficient is the one at the previous position
    idx = int(trig["index"][0, 0, 0])
    row, t = divmod(idx, toks.shape[1])
    if t >= 1:
        m = np.asarray(ffnkv.forward(params, jnp.asarray(toks[row: row + 1, :t]), CFG).acts.ffn)[0, 0, t - 1, 0]
        got = M.coefficient_at(params, jnp.asarray(np.pad(toks[row:row + 1, :t], [(0, 0), (0, 12 - t)])),
                                jnp.array([0]), jnp.array([0]), jnp.array([t - 1]), CFG)
        assert_f32_close(got[0], m)


def test_no_ffn_model_is_a_clear_error(params):
    from ffnkv.errors import FfnkvError

    with pytest.raises(FfnkvError, match="no FFN"):
        M.value_vectors(params, CFG.replace(ffn="none", d_ff=0))


@pytest.mark.slow
def test_cli_writes_json_pngs_and_dumps(tmp_path):
    import json

    from cli import main
    from train.config import DataConfig, TrainConfig
    from train.loop import train

    cfg = TrainConfig(model=ffnkv.ModelConfig(d_model=16, n_layers=2, n_heads=2, d_ff=32),
                      data=DataConfig("facts", {"n_entities": 8, "n_attributes": 4, "facts_per_seq": 2}),
                      steps=2, batch_size=8, eval_every=2, ckpt_every=2, keep=1, progress=False)
    train(cfg, tmp_path / "run")
    assert main(["memories", str(tmp_path / "run"), "--max-tokens", "1500", "--k", "4", "--clusters", "3",
                 "--batch-size", "16"]) == 0
    out = tmp_path / "run" / "analysis" / "memories"
    res = json.loads((out / "memories.json").read_text())
    assert len(res["agreement"]["agreement"]) == 2 and res["final_norm"] is False
    assert {"active_fraction", "zero_agreement", "refinement"} <= set(res["composition"])
    assert all((out / p).is_file() for p in ("agreement.png", "refinement.png", "removal.png", "promotion.json"))
    dump = (out / "triggers.txt").read_text()
    assert "layer 1" in dump and "→" in dump and "value top tokens" in dump
    assert main(["memories", str(tmp_path / "nope")]) == 2
