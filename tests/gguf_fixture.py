"""A tiny random llama in GGUF (written with the ``gguf`` package, as llama.cpp's converter lays it out): the
weights in Hugging Face's layout and the file, shared by the GGUF import, loader and bad-input tests."""
import numpy as np

V, D, H, G, F, L, THETA, EPS = 61, 32, 4, 2, 64, 2, 500.0, 1e-5
K = D // H


def llama_weights(seed=0):
    """Hugging Face Llama layout: nn.Linear ``[out, in]``, rotate-half Q/K rows."""
    rng = np.random.default_rng(seed)
    n = lambda *s: (rng.standard_normal(s) / np.sqrt(s[-1])).astype(np.float32)
    w = {"embed": n(V, D), "final_norm": 1 + 0.1 * n(D), "output": n(V, D)}
    for i in range(L):
        w |= {f"{i}.attn_norm": 1 + 0.1 * n(D), f"{i}.ffn_norm": 1 + 0.1 * n(D), f"{i}.q": n(H * K, D),
              f"{i}.k": n(G * K, D), f"{i}.v": n(G * K, D), f"{i}.o": n(D, H * K), f"{i}.gate": n(F, D),
              f"{i}.up": n(F, D), f"{i}.down": n(D, F)}
    return w


def permute_rows(W, heads):
    """llama.cpp's converter: within each head, rows (i, i + K/2) become (2i, 2i + 1)."""
    return W.reshape(heads, 2, W.shape[0] // heads // 2, W.shape[1]).swapaxes(1, 2).reshape(W.shape)


def write_gguf(path, w, tied=False, quantized=()):
    """Writes ``w`` (from :func:`llama_weights`) as a GGUF file with a small BPE tokenizer; the tensors named in
    ``quantized`` are stored as Q8_0. Needs the ``gguf`` package."""
    import gguf

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
        add(f"blk.{i}.attn_q.weight", permute_rows(w[f"{i}.q"], H))
        add(f"blk.{i}.attn_k.weight", permute_rows(w[f"{i}.k"], G))
        add(f"blk.{i}.attn_v.weight", w[f"{i}.v"])
        add(f"blk.{i}.attn_output.weight", w[f"{i}.o"])
        add(f"blk.{i}.ffn_gate.weight", w[f"{i}.gate"])
        add(f"blk.{i}.ffn_up.weight", w[f"{i}.up"])
        add(f"blk.{i}.ffn_down.weight", w[f"{i}.down"])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
