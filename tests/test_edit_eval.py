"""CounterFact scores: rates and margins against a direct computation, harmonic mean, single-edit protocol."""
import jax
import jax.numpy as jnp
import numpy as np

from analysis.edit_eval import next_token_probs, probe_scores, score_edited, score_single_edits, summarise
from edit_fixtures import model, probe, request, stack, unrelated


def test_probe_scores_match_a_direct_computation():
    cfg, params = model()
    req = request(1)
    pr = probe(req, old=3)
    pr = pr.replace(neigh_true_R=pr.neigh_true_R.at[0].set(req.target), neigh_weight_R=pr.neigh_weight_R.at[0].set(0.0))
    got = probe_scores(params, cfg, pr)
    p = lambda t, pos: np.asarray(next_token_probs(params, cfg, t, pos))  # noqa: E731
    pa, pq, pr_ = p(pr.rewrite_tokens_AT, pr.rewrite_predict_A), p(pr.para_tokens_QT, pr.para_predict_Q), p(pr.neigh_tokens_RT, pr.neigh_predict_R)
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
    assert "not a run dir" in capsys.readouterr().err
    assert main(["edit", str(tmp_path), "--protocols", "rome"]) == 2
    assert main(["editability", "--out", str(tmp_path / "s"), "--kinds", "none"]) == 2


def test_requests_from_the_facts_corpus_point_at_the_subject_and_the_prediction():
    from analysis.edit_requests import build_edits
    from ffnkv.data.facts import FactsTask

    task = FactsTask(n_entities=8, n_relations=2, n_attributes=4)
    facts = task.facts[:3]
    prefixes = [np.array([5, 6, 7]), np.array([8, 9])]
    for token in ("subject_last", "last"):
        reqs, probes = build_edits(task, facts, prefixes, token)
        assert reqs.tokens_PT.shape[:2] == (3, 3) and probes.para_tokens_QT.shape[:2] == (3, 2)
        for e, fact in enumerate(facts):
            subject_last = task.tokenizer.encode(fact.subject)[-1]
            rows, subj, pred = (np.asarray(x[e]) for x in (reqs.tokens_PT, reqs.subject_P, reqs.predict_P))
            np.testing.assert_array_equal(rows[1, 1:4], prefixes[0])
            expected = rows[np.arange(3), pred] if token == "last" else np.full(3, subject_last)
            np.testing.assert_array_equal(rows[np.arange(3), subj], expected)
            assert np.all(np.pad(rows, ((0, 0), (0, 1)))[np.arange(3), pred + 1] == 0)          # the prompt ends at predict_pos (then PAD)
            assert int(reqs.target[e]) == task.attribute_id(fact.counterfactual) == int(probes.new[e])
            assert int(probes.old[e]) == task.attribute_id(fact.attribute)
