import jax
import jax.numpy as jnp
import pytest

import ffnkv


def small_cfg(**changes) -> ffnkv.ModelConfig:
    base = dict(vocab_size=32, d_model=32, n_layers=3, n_heads=4, d_ff=48, max_len=16)
    return ffnkv.ModelConfig(**(base | changes))


def random_params(cfg, seed=0):
    """Initial parameters with every zero-initialised bias/norm perturbed, so identities are not vacuous."""
    params = ffnkv.init_params(jax.random.key(seed), cfg)
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(seed + 1), len(leaves))
    noisy = [w + 0.1 * jax.random.normal(k, w.shape) for w, k in zip(leaves, keys)]
    params = jax.tree.unflatten(treedef, noisy)
    mask = jnp.asarray(cfg.has_ffn_L())
    params["blocks"]["ffn"] = jax.tree.map(lambda w: w * mask.reshape((-1,) + (1,) * (w.ndim - 1)),
                                           params["blocks"]["ffn"])
    return params


@pytest.fixture
def tokens():
    return jax.random.randint(jax.random.key(7), (2, 10), 0, 32)


# The fast tier's budget is 3 min on 2 cores. These cases run in the slow tier (CI runs both): each is a second
# configuration of an equality whose other configurations run fast, or an end-to-end case of a property that a
# faster test already covers at unit level. Measured as the slowest fast cases (`pytest --durations=50`).
SLOW_CASES = {
    "tests/test_attribution.py::test_completeness",
    "tests/test_attribution.py::test_prefix_equals_full_recompute[False]",
    "tests/test_tracing.py::test_prefix_equals_full_forward_with_hooks[False]",
    "tests/test_heads.py::test_head_outputs_sum_to_attn_out_and_patterns_are_distributions[gqa-rope]",
    "tests/test_heads.py::test_head_patching_equals_a_reference_by_hand[gqa-rope]",
    "tests/test_heads.py::test_ablating_a_head_equals_zeroing_its_output_rows[gelu]",
    "tests/test_train_speed.py::test_unrolled_blocks_equal_scan[cfg1]",
    "tests/test_rome.py::test_rome_on_a_model_writes_v_star_and_only_touches_W_out_of_its_layer[bare]",
    "tests/test_analyze_cli.py::test_analyze_one_analysis_of_one_run",
    "tests/test_train_seeds.py::test_seeds_equal_separate_runs",
    "tests/test_progress.py::test_train_shows_its_compile_and_bar",
    "tests/test_patching.py::test_prefix_equals_full[resid_pre-gelu]",
    "tests/test_verdicts.py::test_agreement_per_key_against_chance_and_lower_layers[changes3-fails]",
    "tests/test_stats.py::test_seeds_widen_the_interval_and_ragged_seeds_ignore_padding",
    "tests/test_prefix.py::test_entering_rows_equal_separate_forwards[relu-learned]",
    "tests/test_edit_eval.py::test_key_second_moment_leaves_padding_out",
    "tests/test_verdicts.py::test_meng_edits_are_judged_against_our_baselines",
    "tests/test_promotion.py::test_clusters_of_planted_values_promote_their_tokens",
    "tests/test_plan.py::test_a_budget_too_small_for_one_item_is_refused_in_one_line",
    "tests/test_reliability.py::test_interrupted_training_is_saved_unfinished_and_resumes",
    "tests/test_train_speed.py::test_compiled_train_step_has_no_layer_loop",
    "tests/test_atlas.py::test_summary_intervals_headlines_and_correlations",
    "tests/test_atlas.py::test_necessity_equals_a_direct_mean_ablation_per_layer",
    "tests/test_verdicts.py::test_agreement_per_key_against_chance_and_lower_layers[changes0-holds]",
    "tests/test_verdicts.py::test_dai_accepts_one_result_per_seed",
    "tests/test_train_speed.py::test_attention_equals_dot_product_attention[4-2-70-True-True]",
    "tests/test_train_speed.py::test_attention_equals_dot_product_attention[2-2-130-True-False]",
    "tests/test_patching.py::test_prefix_equals_full[mlp_out-gelu]",
    "tests/test_patching.py::test_prefix_equals_full[attn_out-gelu]",
    "tests/test_heads.py::test_head_add_adds_and_patch_sets",
    "tests/test_compile_depth.py::test_tracing_program_size_does_not_grow_with_depth",
}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Mark ``SLOW_CASES`` slow before ``-m`` selects a tier (so each case runs in exactly one tier)."""
    for item in items:
        node = item.nodeid if item.nodeid.startswith("tests/") else f"tests/{item.nodeid}"
        if node in SLOW_CASES:
            item.add_marker(pytest.mark.slow)
