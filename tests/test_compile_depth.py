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
