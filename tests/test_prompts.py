"""The prompt contract: subject span and answer token from text, with any tokenizer."""
import numpy as np
import pytest
from tolerance import assert_f32_close

from ffnkv.data import make_task
from ffnkv.errors import FfnkvError
from ffnkv.io.tokenizer import Tokenizer, task_tokenizer
from ffnkv.prompts import encode_prompts


def test_facts_prompts_are_the_training_renderings():
    """The facts task renders its training data through ``encode_prompts`` (one prompt encoder): a prompt
    encoded from text is the rendering the model was trained on, with the attribute as its target."""
    task = make_task("facts", n_entities=12)
    facts = task.facts[:5]
    texts = [task.prompts(f)[0] for f in facts]
    ours = encode_prompts(task_tokenizer(task), texts, [f.subject for f in facts], [f.attribute for f in facts])
    ev = task.eval_set()
    rows = [int(np.flatnonzero((ev["fact"] == k) & (ev["template"] == 0))[0]) for k in range(5)]
    for i, r in enumerate(rows):
        p = ours.predict_pos[i]
        assert p == ev["predict_pos"][r] and (ours.tokens[i, : p + 1] == ev["tokens"][r, : p + 1]).all()
        assert (ours.subject_start[i], ours.subject_end[i]) == (ev["subject_start"][r], ev["subject_end"][r])
        assert task.tokenizer.decode(ours.tokens[i, ours.subject_start[i]: ours.subject_end[i]]) == facts[i].subject
    np.testing.assert_array_equal(ours.target, [task.attribute_id(f.attribute) for f in facts])
    kept = ours.select([1, 3])
    assert len(kept) == 2 and kept.tokens.shape[1] == kept.lengths.max()


def test_byte_level_subject_span_and_spaced_answer():
    from tokenizers import Tokenizer as Backend  # byte-level words: 'Ġof'
    from tokenizers import decoders, models, pre_tokenizers

    vocab = {c: i for i, c in enumerate(["<s>", "[UNK]", "The", "Ġcapital", "Ġof", "ĠFrance", "Ġis", "Ġin", "ĠParis"])}
    backend = Backend(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    tok = Tokenizer.from_backend(backend, bos="<s>", add_bos=True)
    enc = encode_prompts(tok, ["The capital of {} is in"], ["France"], ["Paris"])
    row = enc.tokens[0, : enc.lengths[0]].tolist()
    assert row == [0, 2, 3, 4, 5, 6, 7] and (enc.subject_start[0], enc.subject_end[0]) == (4, 5)
    assert enc.target[0] == vocab["ĠParis"] and enc.predict_pos[0] == 6
    assert encode_prompts(tok, ["The capital of France is"], ["France"], bos=False).subject_start[0] == 3


def test_bad_records_name_the_prompt():
    tok = Tokenizer(names=("a", "b", "c"))
    with pytest.raises(FfnkvError, match="prompt 1 .*the subject 'c' is not in it"):
        encode_prompts(tok, ["a b", "a b"], ["a", "c"])
    with pytest.raises(FfnkvError, match="prompt 0 .*the answer ' ' tokenises to nothing"):
        encode_prompts(tok, ["a b"], ["a"], [" "])
    with pytest.raises(FfnkvError, match="no BOS"):
        encode_prompts(tok, ["a b"], ["a"], bos=True)


@pytest.mark.slow
def test_attribution_and_tracing_read_the_contract():
    """Prompts from the loader's tokenizer drive integrated gradients and causal tracing unchanged."""
    import jax

    from analysis import integrated_gradients as IG
    from analysis import tracing
    from ffnkv import ModelConfig, init_params

    names = ("x", "y", "Ann", "Lee", "lives", "in", "Rome", "Oslo")
    tok = Tokenizer(names=names)
    enc = encode_prompts(tok, ["x Ann Lee lives in", "y Lee lives in"], ["Ann Lee", "Lee"], ["Rome", "Oslo"])
    assert enc.target.tolist() == [6, 7] and enc.subject_start.tolist() == [1, 1]
    cfg = ModelConfig(vocab_size=len(names), d_model=16, n_layers=2, n_heads=2, d_ff=16, max_len=8)
    params = init_params(jax.random.key(0), cfg)
    ig = IG.integrated_gradients(params, cfg, enc, steps=4)
    assert ig["attr"].shape == (2, 2, 16) and ig["completeness"]["relative_error"] < 0.05
    trace = tracing.causal_trace(params, cfg, enc, noise=1.0, samples=2, window=1, kinds=("resid",))
    assert trace["restored"].shape == (2, 1, 5, 2)
    assert_f32_close(trace["p_clean"], ig["prob"])
