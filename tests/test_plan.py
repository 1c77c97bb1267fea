"""The memory plan (analysis.plan): chunks shrink with the budget, a budget too small for one item is refused in
one sentence, and the estimate bounds XLA's own accounting of the compiled program from above, within 4×."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ffnkv
from analysis import integrated_gradients as IG
from analysis import plan as PL
from analysis import tracing as TR


def _cfg(**changes):
    base = dict(vocab_size=512, d_model=64, n_layers=4, n_heads=4, d_ff=256, max_len=16)
    return ffnkv.ModelConfig(**(base | changes))


def _enc(cfg, n, T):
    rng = np.random.default_rng(0)
    return {"tokens": rng.integers(0, cfg.vocab_size, (n, T)).astype(np.int32),
            "predict_pos": np.full(n, T - 1, np.int32),
            "target": np.zeros(n, np.int32), "subject_start": np.ones(n, np.int32),
            "subject_end": np.full(n, 3, np.int32)}


def test_chunk_shrinks_with_the_budget():
    cfg = _cfg()
    layers = tuple(range(cfg.n_layers))
    chunks = [PL.tracing_plan(cfg, 8, 12, (0, 1, 2), layers, 10, 1, 4, memory_gb=gb).chunk for gb in (1.0, 0.05, 0.01)]
    assert chunks[0] > chunks[1] > chunks[2] >= 1, chunks
    ig = [PL.attribution_plan(cfg, 64, 12, 20, 1, memory_gb=gb).chunk for gb in (1.0, 0.02)]
    assert ig[0] > ig[1] >= 1, ig
    rows = [PL.stream_plan("memories", cfg, 1000, 64, memory_gb=gb).chunk for gb in (1.0, 0.05)]
    assert rows[0] > rows[1] >= 1, rows
    p = PL.tracing_plan(cfg, 8, 12, (0,), layers, 10, 1, 4, memory_gb=0.05)
    assert p.peak_bytes <= p.budget_bytes and p.flops > 0 and "chunks of" in p.line()


def test_a_budget_too_small_for_one_item_is_refused_in_one_line():
    cfg = _cfg()
    with pytest.raises(ffnkv.FfnkvError) as err:
        TR.causal_trace(ffnkv.init_params(jax.random.key(0), cfg), cfg, _enc(cfg, 2, 12), samples=2, memory_gb=1e-4)
    message = str(err.value)
    assert "--memory-gb" in message and len(message.splitlines()) == 1
    with pytest.raises(ffnkv.FfnkvError, match="--memory-gb"):
        PL.budget_bytes(0.0)


def test_default_budget_is_half_the_available_memory():
    assert 0 < PL.default_budget() <= PL.available_bytes()


@pytest.mark.parametrize("what", [pytest.param(w, marks=pytest.mark.slow) for w in ("tracing", "ig")])
def test_estimate_bounds_the_compiled_programs_memory(what):
    """estimate / (arguments + outputs + XLA's temporaries) of the whole jitted program lies in [1, 4]."""
    cfg = _cfg()
    N, T = 2, 12
    params = ffnkv.init_params(jax.random.key(0), cfg)
    enc = _enc(cfg, N, T)
    args = [jnp.asarray(enc[k]) for k in ("tokens", "predict_pos", "target")]
    if what == "tracing":
        kinds = (0, 1, 2, 3, 4)
        p = PL.tracing_plan(cfg, N, T, kinds, tuple(range(cfg.n_layers)), 6, 1, 3, max_chunk=16)
        lowered = TR.trace_jit.lower(params, *args, jnp.asarray(enc["subject_start"]), jnp.asarray(enc["subject_end"]),
                                      jax.random.split(jax.random.key(0), N), jnp.float32(1.0), cfg=cfg, kind_ids=kinds,
                                      window=3, samples=6, cell_batch=p.chunk)
    else:
        p = PL.attribution_plan(cfg, N, T, 8, 1, max_chunk=2)
        lowered = IG.ig_jit.lower(params, *args, jnp.ones((N, T), bool), cfg=cfg, steps=8, rule="midpoint",
                                  batch_size=p.chunk)
    m = lowered.compile().memory_analysis()
    if m is None:
        pytest.skip("this backend reports no memory analysis")
    measured = m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
    assert 1.0 <= p.peak_bytes / measured <= 4.0, (p.peak_bytes, measured)
