"""CounterFact scores: rates and margins against a direct computation, harmonic mean, single-edit protocol."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from edit_fixtures import model, probe, request, stack, unrelated

import ffnkv
from analysis.edit_eval import next_token_probs, probe_scores, score_edited, score_single_edits, summarise


@pytest.mark.slow
def test_probe_scores_match_a_direct_computation():
    cfg, params = model()
    req = request(1)
    pr = probe(req, old=3)
    pr = pr.replace(neigh_true_R=pr.neigh_true_R.at[0].set(req.target), neigh_weight_R=pr.neigh_weight_R.at[0].set(0.0))
    got = probe_scores(params, cfg, pr)
    p = lambda t, pos: np.asarray(next_token_probs(params, cfg, t, pos))
    pa, pq = p(pr.rewrite_tokens_AT, pr.rewrite_predict_A), p(pr.para_tokens_QT, pr.para_predict_Q)
    pr_ = p(pr.neigh_tokens_RT, pr.neigh_predict_R)
    new, old = int(req.target), 3
    np.testing.assert_allclose(got["ES"], np.mean(pa[:, new] > pa[:, old]))
    np.testing.assert_allclose(got["EM"], np.mean(pa[:, new] - pa[:, old]), atol=1e-6)
    np.testing.assert_allclose(got["PM"], np.mean(pq[:, new] - pq[:, old]), atol=1e-6)
    gap = pr_[np.arange(3), np.asarray(pr.neigh_true_R)] - pr_[:, new]
    np.testing.assert_allclose(got["NM"], gap[1:].mean(), atol=1e-6)   # neighbour 0 has o* as its truth: left out
    np.testing.assert_allclose(got["NS"], np.mean(gap[1:] > 0), atol=1e-6)


def test_summarise_harmonic_mean():
    out = summarise({"ES": np.array([1.0, 1.0]), "PS": np.array([0.5, 0.5]), "NS": np.array([1.0, 0.0])})
    np.testing.assert_allclose(out["S"], 3 / (1 / 1.0 + 1 / 0.5 + 1 / 0.5))
    assert summarise({"ES": np.array([0.0]), "PS": np.array([1.0]), "NS": np.array([1.0])})["S"] == 0.0


@pytest.mark.slow
def test_single_edit_protocol_with_identity_edit_equals_scoring_the_model():
    cfg, params = model()
    reqs = stack([request(i) for i in range(3)])
    probes = stack([probe(jax.tree.map(lambda x: x[i], reqs), old=i + 1, seed=i) for i in range(3)])
    scores, info = score_single_edits(params, cfg, lambda p, r: (p, {"target": r.target}), reqs, probes, unrelated())
    direct = score_edited(params, cfg, probes, unrelated())
    for key in ("ES", "EM", "PS", "PM", "NS", "NM"):
        np.testing.assert_allclose(scores[key], direct[key], atol=1e-6)
    np.testing.assert_allclose(scores["unrelated_acc"], jnp.full(3, direct["unrelated_acc"]), atol=1e-6)
    np.testing.assert_array_equal(info["target"], reqs.target)


def test_cli_edit_errors_are_clean(tmp_path, capsys):
    from cli import main

    assert main(["edit", str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert main(["edit", str(tmp_path), "--protocols", "rome"]) == 2
    assert "single, sequential, memit" in capsys.readouterr().err


def test_requests_from_fact_records_point_at_the_subject_and_the_prediction():
    from analysis.edit_requests import build_edits
    from ffnkv.data.counterfact import world_fact_records
    from ffnkv.data.facts import FactsTask
    from ffnkv.io.tokenizer import task_tokenizer

    task = FactsTask(n_entities=8, n_relations=2, n_attributes=4)
    records = world_fact_records(task, 3)
    tok = task_tokenizer(task)
    prefixes = ["Ka ##ro was born in", "the"]
    for token in ("subject_last", "last"):
        reqs, probes = build_edits(tok, records, prefixes, token)
        assert reqs.tokens_PT.shape[:2] == (3, 3) and probes.para_tokens_QT.shape[:2] == (3, 2)
        for e, r in enumerate(records):
            subject_last = task.tokenizer.encode(r.subject)[-1]
            rows, subj, pred = (np.asarray(x[e]) for x in (reqs.tokens_PT, reqs.subject_P, reqs.predict_P))
            assert list(rows[2, 1:3]) == task.tokenizer.encode("the .")           # "{prefix}. {prompt}"
            expected = rows[np.arange(3), pred] if token == "last" else np.full(3, subject_last)
            np.testing.assert_array_equal(rows[np.arange(3), subj], expected)
            assert np.all(np.pad(rows, ((0, 0), (0, 1)))[np.arange(3), pred + 1] == 0)  # the prompt ends at predict_pos
            assert int(reqs.target[e]) == task.attribute_id(r.target_new) == int(probes.new[e])
            assert int(probes.old[e]) == task.attribute_id(r.target_true)
            assert np.all(np.asarray(probes.neigh_true_R[e])[np.asarray(probes.neigh_weight_R[e]) > 0]
                          == task.attribute_id(r.target_true))


def test_key_second_moment_leaves_padding_out():
    from analysis.covariance import key_second_moment, task_batches
    from ffnkv.data.facts import FactsTask
    from ffnkv.model import forward

    task = FactsTask(n_entities=8, n_relations=2, n_attributes=4)
    cfg = ffnkv.ModelConfig(vocab_size=task.vocab_size, d_model=16, n_layers=1, n_heads=2, d_ff=8, ffn="relu",
                            max_len=task.seq_len)
    params = ffnkv.init_params(jax.random.key(0), cfg)
    [(tokens, mask)] = list(task_batches(task, 0, 1, 4))
    assert 0 < mask.mean() < 1 and np.all(mask == (tokens != 0))
    C, n = key_second_moment(params, cfg, (0,), [(tokens, mask)])
    m = np.asarray(forward(params, jnp.asarray(tokens), cfg).acts.ffn[0])[tokens != 0]
    assert n == len(m)
    np.testing.assert_allclose(C[0], m.T @ m / len(m), rtol=1e-4, atol=1e-6)
