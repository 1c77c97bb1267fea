"""Geva et al. (2022) sub-updates, dominance and value clusters against known answers."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ffnkv
from analysis import promotion as P

CFG = ffnkv.ModelConfig(vocab_size=40, d_model=16, n_layers=2, n_heads=2, d_ff=24, max_len=8)


@pytest.mark.slow
def test_sub_updates_ranked_by_m_times_value_norm():
    params = ffnkv.init_params(jax.random.key(1), CFG)
    tokens = jnp.asarray(np.random.default_rng(0).integers(0, 40, (3, 8)), jnp.int32)
    m = np.asarray(ffnkv.forward(params, tokens, CFG).acts.ffn)
    score = m * np.linalg.norm(np.asarray(params["blocks"]["ffn"]["W_out"]), axis=-1)[:, None, None, :]
    np.testing.assert_allclose(P.sub_update_scores(jnp.asarray(m), params["blocks"]["ffn"]["W_out"]), score, rtol=1e-6)
    top = P.top_sub_updates(params, CFG, tokens, 4)
    want = np.argsort(-score, -1, kind="stable")[..., :4]
    np.testing.assert_array_equal(np.take_along_axis(score, np.asarray(top["index"]), -1),
                                  np.take_along_axis(score, want, -1))
    dom = P.dominance(params, CFG, np.asarray(tokens), None, n=4, batch_size=2)
    np.testing.assert_allclose(dom.sum(1), 4.0, rtol=1e-6)  # every position contributes n values
    counts = np.zeros((2, 24))
    for layer in range(2):
        np.add.at(counts[layer], want[layer].reshape(-1), 1)
    np.testing.assert_allclose(dom, counts / 24, rtol=1e-6)
    blocks = P.dominance_blocks(params, CFG, np.asarray(tokens), None, n=4, batch_size=2, n_blocks=4)
    np.testing.assert_allclose(blocks["blocks"].sum(0), counts, rtol=1e-6)  # the verdict's items, per block
    assert blocks["n"].tolist() == [16.0, 8.0, 0.0, 0.0]  # chunks of 2 rows × 8 positions, in turn


def test_kmeans_recovers_separated_clusters():
    rng = np.random.default_rng(0)
    centres = np.eye(8)[:3] * 5
    x = np.concatenate([c + 0.1 * rng.standard_normal((20, 8)) for c in centres])
    assign, centroids = P.kmeans(jnp.asarray(x), jax.random.key(3), 3)
    assign = np.asarray(assign)
    assert {len(set(assign[i * 20:(i + 1) * 20])) for i in range(3)} == {1} and len(set(assign)) == 3
    np.testing.assert_allclose(np.linalg.norm(np.asarray(centroids), axis=-1), 1.0, rtol=1e-5)


def test_clusters_of_planted_values_promote_their_tokens():
    params = ffnkv.init_params(jax.random.key(2), CFG)
    E = np.asarray(params["embed"]["tok"])
    rng = np.random.default_rng(1)
    planted = np.stack([E[5] - E.mean(0)] * 12 + [E[9] - E.mean(0)] * 12) * 10
    W = params["blocks"]["ffn"]["W_out"].at[1].set(planted + 0.01 * rng.standard_normal(planted.shape))
    params = params | {"blocks": params["blocks"] | {"ffn": params["blocks"]["ffn"] | {"W_out": W}}}
    clusters = P.cluster_values(params, CFG, 1, 2, jax.random.key(0))
    assert sorted(c["size"] for c in clusters) == [12, 12]
    assert sorted(c["centroid_top_tokens"][0] for c in clusters) == [5, 9]
    assert sorted(c["member_top1"][0] for c in clusters) == [5, 9]
    ids, _ = P.promoted_tokens(params, CFG, 3)
    assert (np.asarray(ids)[1, :12, 0] == 5).all() and (np.asarray(ids)[1, 12:, 0] == 9).all()
