"""A tiny random llama written with the ``gguf`` package imports exactly (offline; numpy and torch references)."""
import jax.numpy as jnp
import numpy as np
import pytest
from gguf_fixture import EPS, THETA, D, F, G, H, K, L, V, llama_weights, write_gguf

from ffnkv.errors import FfnkvError
from ffnkv.io.gguf import load_gguf
from ffnkv.model import forward

gguf = pytest.importorskip("gguf", reason="GGUF tests need the 'gguf' package: pip install -e .[gguf]")


def _reference_logits(w, tokens, tied):
    """Llama in numpy with the rotate-half rope of Hugging Face's LlamaForCausalLM."""
    rms = lambda x, g: x / np.sqrt((x * x).mean(-1, keepdims=True) + EPS) * g
    T = tokens.shape[1]
    inv = 1.0 / THETA ** (np.arange(0, K, 2) / K)
    ang = np.concatenate([np.outer(np.arange(T), inv)] * 2, -1)[:, None, :]

    def rope(x):
        x1, x2 = np.split(x, 2, -1)
        return x * np.cos(ang) + np.concatenate([-x2, x1], -1) * np.sin(ang)

    x = w["embed"][tokens].astype(np.float64)
    causal = np.tril(np.ones((T, T), bool))
    for i in range(L):
        h = rms(x, w[f"{i}.attn_norm"])
        q = rope((h @ w[f"{i}.q"].T).reshape(*h.shape[:2], H, K))
        k = np.repeat(rope((h @ w[f"{i}.k"].T).reshape(*h.shape[:2], G, K)), H // G, axis=2)
        v = np.repeat((h @ w[f"{i}.v"].T).reshape(*h.shape[:2], G, K), H // G, axis=2)
        s = np.einsum("bthk,bshk->bhts", q, k) / np.sqrt(K)
        s = np.where(causal, s, -np.inf)
        p = np.exp(s - s.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        x = x + np.einsum("bhts,bshk->bthk", p, v).reshape(*h.shape[:2], H * K) @ w[f"{i}.o"].T
        h = rms(x, w[f"{i}.ffn_norm"])
        g = h @ w[f"{i}.gate"].T
        x = x + (g / (1 + np.exp(-g)) * (h @ w[f"{i}.up"].T)) @ w[f"{i}.down"].T
    x = rms(x, w["final_norm"])
    return x @ (w["embed"] if tied else w["output"]).T


@pytest.mark.parametrize("tied", [False, True])
def test_gguf_llama_matches_reference(tmp_path, tied):
    w = llama_weights()
    write_gguf(tmp_path / "m.gguf", w, tied=tied)
    cfg, params, _ = load_gguf(tmp_path / "m.gguf", with_tokenizer=False)
    got = (cfg.n_kv_heads, cfg.ffn, cfg.norm, cfg.positional, cfg.tie_embeddings)
    assert got == (G, "swiglu", "rmsnorm", "rope", tied)
    tokens = np.random.default_rng(1).integers(0, V, (2, 12)).astype(np.int32)
    logits = np.asarray(forward(params, jnp.asarray(tokens), cfg).logits)
    np.testing.assert_allclose(logits, _reference_logits(w, tokens, tied), atol=1e-4, rtol=0)


def test_gguf_llama_matches_transformers(tmp_path):
    torch = pytest.importorskip("torch", reason="the transformers comparison needs the 'hf' extra")
    transformers = pytest.importorskip("transformers", reason="the transformers comparison needs the 'hf' extra")
    w = llama_weights(seed=2)
    config = transformers.LlamaConfig(vocab_size=V, hidden_size=D, intermediate_size=F, num_hidden_layers=L,
                                      num_attention_heads=H, num_key_value_heads=G, rope_theta=THETA,
                                      rms_norm_eps=EPS, max_position_embeddings=64, tie_word_embeddings=False)
    model = transformers.LlamaForCausalLM(config).eval()
    state = {"model.embed_tokens.weight": w["embed"], "model.norm.weight": w["final_norm"],
             "lm_head.weight": w["output"]}
    names = {"q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj", "o": "self_attn.o_proj",
             "gate": "mlp.gate_proj", "up": "mlp.up_proj", "down": "mlp.down_proj",
             "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm"}
    for i in range(L):
        state |= {f"model.layers.{i}.{hf}.weight": w[f"{i}.{ours}"] for ours, hf in names.items()}
    model.load_state_dict({k: torch.tensor(v) for k, v in state.items()}, strict=False)
    write_gguf(tmp_path / "m.gguf", w)
    cfg, params, _ = load_gguf(tmp_path / "m.gguf", with_tokenizer=False)
    tokens = np.random.default_rng(3).integers(0, V, (2, 10)).astype(np.int32)
    with torch.no_grad():
        expected = model(torch.tensor(tokens, dtype=torch.long)).logits.numpy()
    np.testing.assert_allclose(np.asarray(forward(params, jnp.asarray(tokens), cfg).logits),
                               expected, atol=1e-4, rtol=0)


def test_quantised_tensors_dequantise(tmp_path):
    w = llama_weights(seed=4)
    names = {f"blk.{i}.{n}.weight" for i in range(L) for n in ("attn_q", "attn_k", "ffn_down")}
    write_gguf(tmp_path / "q.gguf", w, quantized=names)
    cfg, params, _ = load_gguf(tmp_path / "q.gguf", with_tokenizer=False)
    W_q = params["blocks"]["attn"]["W_q"][0].T
    assert W_q.dtype == np.float32
    assert 0 < np.abs(W_q - w["0.q"]).max() < 0.02  # Q8_0 rounding, not a corrupted layout
    tokens = np.arange(10, dtype=np.int32)[None]
    logits = np.asarray(forward(params, jnp.asarray(tokens), cfg).logits)
    assert np.abs(logits - _reference_logits(w, tokens, False)).max() < 0.05


def test_tokenizer_from_metadata(tmp_path):
    write_gguf(tmp_path / "m.gguf", llama_weights())
    *_, tok = load_gguf(tmp_path / "m.gguf")
    assert tok.encode("ab ab<s>12").ids == [5, 6, 0, 7, 8]
    assert tok.decode([5, 6]) == "ab ab"


def test_bad_files_raise(tmp_path):
    with pytest.raises(FfnkvError, match="does not exist"):
        load_gguf(tmp_path / "missing.gguf")
    (tmp_path / "junk.gguf").write_bytes(b"not a gguf file at all")
    with pytest.raises(FfnkvError, match="GGUF"):
        load_gguf(tmp_path / "junk.gguf")
