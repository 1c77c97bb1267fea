"""A tiny random llama written with the ``gguf`` package imports exactly (offline; numpy and torch references)."""
import jax.numpy as jnp
import numpy as np
import pytest

from ffnkv.errors import FfnkvError
from ffnkv.model import forward

gguf = pytest.importorskip("gguf", reason="GGUF tests need the 'gguf' package: pip install -e .[gguf]")
from ffnkv.io.gguf import load_gguf  # noqa: E402

V, D, H, G, F, L, THETA, EPS = 61, 32, 4, 2, 64, 2, 500.0, 1e-5
K = D // H


def _weights(seed=0):
    """Hugging Face Llama layout: nn.Linear ``[out, in]``, rotate-half Q/K rows."""
    rng = np.random.default_rng(seed)
    n = lambda *s: (rng.standard_normal(s) / np.sqrt(s[-1])).astype(np.float32)  # noqa: E731
    w = {"embed": n(V, D), "final_norm": 1 + 0.1 * n(D), "output": n(V, D)}
    for i in range(L):
        w |= {f"{i}.attn_norm": 1 + 0.1 * n(D), f"{i}.ffn_norm": 1 + 0.1 * n(D), f"{i}.q": n(H * K, D),
              f"{i}.k": n(G * K, D), f"{i}.v": n(G * K, D), f"{i}.o": n(D, H * K), f"{i}.gate": n(F, D),
              f"{i}.up": n(F, D), f"{i}.down": n(D, F)}
    return w


def _permute(W, heads):
    """llama.cpp's converter: within each head, rows (i, i + K/2) become (2i, 2i + 1)."""
    return W.reshape(heads, 2, W.shape[0] // heads // 2, W.shape[1]).swapaxes(1, 2).reshape(W.shape)


def _write(path, w, tied=False, quantized=()):
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(L)
    writer.add_context_length(64)
    writer.add_embedding_length(D)
    writer.add_feed_forward_length(F)
    writer.add_head_count(H)
    writer.add_head_count_kv(G)
    writer.add_rope_freq_base(THETA)
    writer.add_rope_dimension_count(K)
    writer.add_layer_norm_rms_eps(EPS)
    tokens = ["<s>", "a", "b", "c", "Ġ", "ab", "Ġab", "1", "2"] + [f"t{i}" for i in range(V - 9)]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("smollm")
    writer.add_token_list(tokens)
    writer.add_token_merges(["a b", "Ġ ab"])
    writer.add_token_types([3] + [1] * (V - 1))

    def add(name, array):
        if name in quantized:
            q = gguf.quants.quantize(array, gguf.GGMLQuantizationType.Q8_0)
            writer.add_tensor(name, q, raw_shape=q.shape, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            writer.add_tensor(name, array)

    add("token_embd.weight", w["embed"])
    add("output_norm.weight", w["final_norm"])
    if not tied:
        add("output.weight", w["output"])
    for i in range(L):
        add(f"blk.{i}.attn_norm.weight", w[f"{i}.attn_norm"])
        add(f"blk.{i}.ffn_norm.weight", w[f"{i}.ffn_norm"])
        add(f"blk.{i}.attn_q.weight", _permute(w[f"{i}.q"], H))
        add(f"blk.{i}.attn_k.weight", _permute(w[f"{i}.k"], G))
        add(f"blk.{i}.attn_v.weight", w[f"{i}.v"])
        add(f"blk.{i}.attn_output.weight", w[f"{i}.o"])
        add(f"blk.{i}.ffn_gate.weight", w[f"{i}.gate"])
        add(f"blk.{i}.ffn_up.weight", w[f"{i}.up"])
        add(f"blk.{i}.ffn_down.weight", w[f"{i}.down"])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _reference_logits(w, tokens, tied):
    """Llama in numpy with the rotate-half rope of Hugging Face's LlamaForCausalLM."""
    rms = lambda x, g: x / np.sqrt((x * x).mean(-1, keepdims=True) + EPS) * g  # noqa: E731
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
    w = _weights()
    _write(tmp_path / "m.gguf", w, tied=tied)
    cfg, params, _ = load_gguf(tmp_path / "m.gguf", with_tokenizer=False)
    assert (cfg.n_kv_heads, cfg.ffn, cfg.norm, cfg.positional, cfg.tie_embeddings) == (G, "swiglu", "rmsnorm", "rope", tied)
    tokens = np.random.default_rng(1).integers(0, V, (2, 12)).astype(np.int32)
    logits = np.asarray(forward(params, jnp.asarray(tokens), cfg).logits)
    np.testing.assert_allclose(logits, _reference_logits(w, tokens, tied), atol=1e-4, rtol=0)


def test_gguf_llama_matches_transformers(tmp_path):
    torch = pytest.importorskip("torch", reason="the transformers comparison needs the 'hf' extra")
    transformers = pytest.importorskip("transformers", reason="the transformers comparison needs the 'hf' extra")
    w = _weights(seed=2)
    config = transformers.LlamaConfig(vocab_size=V, hidden_size=D, intermediate_size=F, num_hidden_layers=L,
                                      num_attention_heads=H, num_key_value_heads=G, rope_theta=THETA,
                                      rms_norm_eps=EPS, max_position_embeddings=64, tie_word_embeddings=False)
    model = transformers.LlamaForCausalLM(config).eval()
    state = {"model.embed_tokens.weight": w["embed"], "model.norm.weight": w["final_norm"], "lm_head.weight": w["output"]}
    names = {"q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj", "o": "self_attn.o_proj",
             "gate": "mlp.gate_proj", "up": "mlp.up_proj", "down": "mlp.down_proj",
             "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm"}
    for i in range(L):
        state |= {f"model.layers.{i}.{hf}.weight": w[f"{i}.{ours}"] for ours, hf in names.items()}
    model.load_state_dict({k: torch.tensor(v) for k, v in state.items()}, strict=False)
    _write(tmp_path / "m.gguf", w)
    cfg, params, _ = load_gguf(tmp_path / "m.gguf", with_tokenizer=False)
    tokens = np.random.default_rng(3).integers(0, V, (2, 10)).astype(np.int32)
    with torch.no_grad():
        expected = model(torch.tensor(tokens, dtype=torch.long)).logits.numpy()
    np.testing.assert_allclose(np.asarray(forward(params, jnp.asarray(tokens), cfg).logits), expected, atol=1e-4, rtol=0)


def test_quantised_tensors_dequantise(tmp_path):
    w = _weights(seed=4)
    names = {f"blk.{i}.{n}.weight" for i in range(L) for n in ("attn_q", "attn_k", "ffn_down")}
    _write(tmp_path / "q.gguf", w, quantized=names)
    cfg, params, _ = load_gguf(tmp_path / "q.gguf", with_tokenizer=False)
    W_q = params["blocks"]["attn"]["W_q"][0].T
    assert W_q.dtype == np.float32
    assert 0 < np.abs(W_q - w["0.q"]).max() < 0.02  # Q8_0 rounding, not a corrupted layout
    tokens = np.arange(10, dtype=np.int32)[None]
    logits = np.asarray(forward(params, jnp.asarray(tokens), cfg).logits)
    assert np.abs(logits - _reference_logits(w, tokens, False)).max() < 0.05


def test_tokenizer_from_metadata(tmp_path):
    _write(tmp_path / "m.gguf", _weights())
    *_, tok = load_gguf(tmp_path / "m.gguf")
    assert tok.encode("ab ab<s>12").ids == [5, 6, 0, 7, 8]
    assert tok.decode([5, 6]) == "ab ab"


def test_bad_files_raise(tmp_path):
    with pytest.raises(FfnkvError, match="does not exist"):
        load_gguf(tmp_path / "missing.gguf")
    (tmp_path / "junk.gguf").write_bytes(b"not a gguf file at all")
    with pytest.raises(FfnkvError, match="GGUF"):
        load_gguf(tmp_path / "junk.gguf")
