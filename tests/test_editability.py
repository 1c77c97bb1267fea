"""The editability study's pieces: its facts LM is configs/facts_lm.py with the study's changes only, and its
tracing and knowledge neurons are the knowledge study's (``studies.knowledge``) read back."""
import dataclasses

from configs.facts_lm import get_config
from studies import editability as E


def test_train_config_is_the_facts_preset_with_the_studys_changes():
    s = E.EditabilitySettings(steps=120, d_model=32, n_layers=2, d_ff=64, n_entities=8, loss="attribute",
                              names="random", seed=3, seeds=2)
    base, cfg = get_config(), E.train_config("swiglu", s)
    assert cfg.model == dataclasses.replace(base.model, d_model=32, n_layers=2, d_ff=cfg.model.d_ff, ffn="swiglu")
    assert cfg.model.d_ff < 64  # parameter-matched to the ReLU width
    assert cfg.data.kwargs == base.data.kwargs | {"n_entities": 8, "loss": "attribute", "names": "random", "seed": 3}
    assert cfg.optim == dataclasses.replace(base.optim, warmup_steps=24)
    changed = {f.name for f in dataclasses.fields(cfg) if getattr(cfg, f.name) != getattr(base, f.name)}
    assert changed == {"model", "data", "optim", "steps", "eval_every", "ckpt_every", "seed", "seeds", "progress"}
    assert (cfg.steps, cfg.eval_every, cfg.ckpt_every, cfg.seeds) == (120, 120, 120, 2)


def test_knowledge_settings_and_the_peak_layer_of_a_tracing_result():
    s = E.EditabilitySettings(trace_facts=7, neuron_facts=4, seed=2)
    tracing, attribution = E.knowledge_settings(s, "tracing"), E.knowledge_settings(s, "attribution")
    assert (tracing.what, tracing.n_facts, tracing.known_only, tracing.window, tracing.kinds) == (
        "tracing", 7, True, 1, ("mlp",))
    assert (attribution.what, attribution.n_facts, attribution.known_only, attribution.seed) == (
        "attribution", 4, True, 2)
    result = {"config": {"layers": [0, 2, 4]}, "known_facts": {"mlp": {"last_subject": {"mean": [0.1, 0.5, 0.2]}}}}
    assert E.peak_mlp_layer(result) == (2, [0.1, 0.5, 0.2])  # a model layer, not an index into the traced ones
