"""The number of programs each analysis compiles does not grow with depth (issue 21): the same count of XLA
compiles, and main programs of nearly the same size, for 2- and 6-layer models of one shape."""
import jax
import jax.numpy as jnp
import pytest

from benchmarks import compile_depth as CD


def _cfg(n_layers):
    return CD.smollm2_shape(n_layers, vocab=64, d_model=16, n_heads=2, n_kv_heads=1, d_ff=24, max_len=40)


@pytest.mark.parametrize("command", [pytest.param(c, marks=pytest.mark.slow) for c in CD.COMMANDS])
def test_programs_do_not_grow_with_depth(command):
    counts = [CD.measure_one(command, _cfg(n))["programs"] for n in (2, 6)]
    assert counts[0] == counts[1] and counts[0] > 0, counts


def test_tracing_program_size_does_not_grow_with_depth():
    """The lowered tracing program (every kind, all layers) of a 6-layer model is within 10% of a 2-layer one's
    size: no per-layer copy of any sweep (a Python loop over layers would triple it)."""
    from analysis import tracing as TR

    sizes = []
    for n in (2, 6):
        cfg = _cfg(n)
        params = jax.eval_shape(lambda: CD.ffnkv.init_params(jax.random.key(0), cfg))
        enc = CD.random_prompts(cfg, 2, 12)
        args = [jnp.asarray(enc[k]) for k in ("tokens", "predict_pos", "target", "subject_start", "subject_end")]
        text = TR.trace_jit.lower(params, *args, jax.random.split(jax.random.key(0), 2), jnp.float32(1.0), cfg=cfg,
                                   kind_ids=(0, 1, 2, 3, 4), window=3, samples=2, cell_batch=8).as_text()
        sizes.append(len(text))
    assert sizes[1] < 1.1 * sizes[0], sizes



def _rome_single_text(n_layers, layer):
    from analysis.rome import DeltaHParams, rome_single_scores

    cfg = _cfg(n_layers)
    params = jax.eval_shape(lambda: CD.ffnkv.init_params(jax.random.key(0), cfg))
    reqs, probes, others = CD.edit_inputs(cfg, 10)
    return rome_single_scores.lower(params, cfg, jnp.int32(layer), jnp.eye(cfg.width), reqs, probes, others,
                                    DeltaHParams(steps=2, prefixes=())).as_text()


def test_layer_rule_program_is_one_for_every_layer():
    """The editing layer rule's program (ROME single edits scored, ``rome_single_scores``) is the same program at
    the first and the last layer (the layer is traced, not a constant), and a 6-layer model's is within 10% of a
    2-layer one's size."""
    first, last = _rome_single_text(6, 0), _rome_single_text(6, 5)
    assert first == last
    assert len(first) < 1.1 * len(_rome_single_text(2, 1))


@pytest.mark.slow
def test_layer_rule_compiles_once_for_any_depth():
    """The layer rule over every layer compiles the same programs for a 2- and a 6-layer model."""
    from analysis.rome import DeltaHParams

    counts = []
    for n in (2, 6):
        cfg = _cfg(n)
        params = CD.ffnkv.init_params(jax.random.key(0), cfg)
        reqs, probes, others = CD.edit_inputs(cfg, 10)
        C_LFF = jnp.broadcast_to(jnp.eye(cfg.width), (n, cfg.width, cfg.width))
        jax.clear_caches()
        with CD.compiles() as c:
            S = CD.layer_rule(params, cfg, C_LFF, reqs, probes, others, DeltaHParams(steps=2, prefixes=()))
        assert len(S) == n
        counts.append(c["n"])
    assert counts[0] == counts[1] and counts[0] > 0, counts
