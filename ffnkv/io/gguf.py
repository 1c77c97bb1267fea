"""Llama-style GGUF files (RMSNorm, RoPE, SwiGLU, grouped-query attention) -> ffnkv, dequantised to float32.

GGUF stores each weight in numpy order ``[out, in]`` (any ggml quantisation; ``gguf.quants.dequantize``
turns it into float32), so every matrix is transposed to ffnkv's ``[in, out]``. llama.cpp's converter
permutes the rows of ``attn_q`` / ``attn_k`` within each head from the rotate-half pairing ``(i, i + K/2)``
of Hugging Face's Llama to the interleaved pairing ``(2i, 2i + 1)`` that ggml's rope uses; ``unpermute``
undoes that so the weights run under ffnkv's rotate-half ``rope``. The tokenizer is rebuilt from the
``tokenizer.ggml.*`` metadata as a ``tokenizers`` byte-level BPE.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ffnkv.config import ModelConfig
from ffnkv.errors import FfnkvError


def open_gguf(path):
    """A ``gguf.GGUFReader`` of ``path`` (or ``path`` itself when it is one: parsing the metadata of a large vocabulary
    takes seconds, so :func:`load_gguf` and :func:`special_tokens` can share one reader)."""
    import gguf

    if isinstance(path, gguf.GGUFReader):
        return path
    if not Path(path).is_file():
        raise FfnkvError(f"GGUF file {path} does not exist.")
    with open(path, "rb") as handle:
        if handle.read(4) != b"GGUF":
            raise FfnkvError(f"{path} is not a GGUF file (it does not start with 'GGUF'); pass a .gguf model file.")
    try:
        return gguf.GGUFReader(str(path))
    except Exception as error:  # gguf raises ValueError/IndexError/OSError for a cut or damaged file
        detail = str(error).splitlines()[0][:120] if str(error) else type(error).__name__
        raise FfnkvError(f"{path} is truncated or damaged ({detail}); download or convert it again.") from None


def _field(reader, key, default=None):
    field = reader.fields.get(key)
    if field is None:
        if default is None:
            raise FfnkvError(f"the GGUF file has no metadata key {key!r}; is it a llama-style model?")
        return default
    return field.contents()


def unpermute(W_oi: np.ndarray, n_heads: int) -> np.ndarray:
    """Invert llama.cpp's Q/K row permutation: rows ``[H, K/2, 2]`` (interleaved) -> ``[H, 2, K/2]`` (halves)."""
    out, inp = W_oi.shape
    return W_oi.reshape(n_heads, out // n_heads // 2, 2, inp).swapaxes(1, 2).reshape(out, inp)


def _tensors(reader) -> dict[str, np.ndarray]:
    from gguf.quants import dequantize

    return {t.name: np.asarray(dequantize(t.data, t.tensor_type), np.float32).reshape(tuple(reversed(t.shape.tolist())))
            for t in reader.tensors}


def config_from_gguf(reader) -> ModelConfig:
    arch = _field(reader, "general.architecture")
    if arch != "llama":
        raise FfnkvError(f"GGUF architecture {arch!r} is not supported; ffnkv imports llama-style models.")
    D, H = int(_field(reader, "llama.embedding_length")), int(_field(reader, "llama.attention.head_count"))
    rope_dim = int(_field(reader, "llama.rope.dimension_count", D // H))
    if rope_dim != D // H or "llama.rope.scaling.type" in reader.fields:
        raise FfnkvError("GGUF models with partial or scaled rope are not supported.")
    vocab = next(t.shape[-1] for t in reader.tensors if t.name == "token_embd.weight")
    return ModelConfig(
        vocab_size=int(vocab), d_model=D, n_layers=int(_field(reader, "llama.block_count")), n_heads=H,
        n_kv_heads=int(_field(reader, "llama.attention.head_count_kv", H)),
        d_ff=int(_field(reader, "llama.feed_forward_length")), ffn="swiglu",
        max_len=int(_field(reader, "llama.context_length", 2048)), causal=True, positional="rope", norm="rmsnorm",
        tie_embeddings=not any(t.name == "output.weight" for t in reader.tensors), bias=False,
        norm_eps=float(_field(reader, "llama.attention.layer_norm_rms_epsilon", 1e-5)),
        rope_theta=float(_field(reader, "llama.rope.freq_base", 10000.0)))


def params_from_tensors(t: dict[str, np.ndarray], cfg: ModelConfig) -> dict:
    """ffnkv parameters from dequantised GGUF tensors (names ``blk.{i}.attn_q.weight`` …)."""
    blocks = []
    for i in range(cfg.n_layers):
        p = f"blk.{i}"
        blocks.append({
            "ln1": {"scale": t[f"{p}.attn_norm.weight"]}, "ln2": {"scale": t[f"{p}.ffn_norm.weight"]},
            "attn": {"W_q": unpermute(t[f"{p}.attn_q.weight"], cfg.n_heads).T,
                     "W_k": unpermute(t[f"{p}.attn_k.weight"], cfg.kv_heads).T,
                     "W_v": t[f"{p}.attn_v.weight"].T, "W_o": t[f"{p}.attn_output.weight"].T},
            "ffn": {"W_gate": t[f"{p}.ffn_gate.weight"].T, "W_in": t[f"{p}.ffn_up.weight"].T,
                    "W_out": t[f"{p}.ffn_down.weight"].T},
        })
    stacked = {k: {n: np.stack([b[k][n] for b in blocks]) for n in blocks[0][k]} for k in blocks[0]}
    params = {"embed": {"tok": t["token_embd.weight"]}, "blocks": stacked,
              "final_norm": {"scale": t["output_norm.weight"]}}
    if not cfg.tie_embeddings:
        params["unembed"] = t["output.weight"].T
    return params


def tokenizer_from_gguf(reader):
    """A ``tokenizers.Tokenizer`` from the ``tokenizer.ggml.*`` metadata (byte-level BPE, ``gpt2`` model)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    kind = _field(reader, "tokenizer.ggml.model", "none")
    if kind != "gpt2":
        raise FfnkvError(f"GGUF tokenizer model {kind!r} is not supported; ffnkv rebuilds byte-level BPE ('gpt2').")
    tokens = list(_field(reader, "tokenizer.ggml.tokens"))
    merges = [tuple(m.split(" ", 1)) for m in _field(reader, "tokenizer.ggml.merges")]
    tok = Tokenizer(models.BPE({s: i for i, s in enumerate(tokens)}, merges))
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    pre = _field(reader, "tokenizer.ggml.pre", "default")
    tok.pre_tokenizer = (pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
                         if pre == "smollm" else byte_level)
    tok.decoder = decoders.ByteLevel()
    types = list(_field(reader, "tokenizer.ggml.token_type", [1] * len(tokens)))
    tok.add_special_tokens([AddedToken(s, special=True) for s, ty in zip(tokens, types) if ty == 3])
    return tok


def load_gguf(path, with_tokenizer: bool = True):
    """``(cfg, params, tokenizer)`` for a llama-style GGUF file (or its :func:`open_gguf` reader); ``tokenizer`` is
    None when not asked for."""
    reader = open_gguf(path)
    cfg = config_from_gguf(reader)
    try:
        params = params_from_tensors(_tensors(reader), cfg)
    except KeyError as missing:
        raise FfnkvError(f"{path} lacks the tensor {missing.args[0]!r} that a llama model needs.") from None
    return cfg, params, tokenizer_from_gguf(reader) if with_tokenizer else None


def special_tokens(path) -> dict:
    """``bos_id``, ``eos_id`` (None when absent) and ``add_bos`` from the ``tokenizer.ggml.*`` metadata of a GGUF
    file (or its :func:`open_gguf` reader)."""
    reader = open_gguf(path)
    ids = {name: reader.fields.get(f"tokenizer.ggml.{name}_token_id") for name in ("bos", "eos")}
    add_bos = reader.fields.get("tokenizer.ggml.add_bos_token")
    return {f"{name}_id": None if f is None else int(f.contents()) for name, f in ids.items()} | \
        {"add_bos": bool(add_bos.contents()) if add_bos is not None else False}
