"""Hugging Face safetensors checkpoints (GPT-2; BERT-family encoders with an optional MLM head; Llama) -> ffnkv.

``load_hf(path)`` reads ``config.json`` and ``model.safetensors`` from a checkpoint directory and returns
``(ModelConfig, params)`` such that ``ffnkv.forward(params, tokens, cfg)`` reproduces the reference model:

* GPT-2: pre-LN, learned positions, GELU-tanh (``gelu_new``), tied embeddings. Conv1D weights are already
  ``[in, out]``; the fused ``c_attn`` is split into W_q, W_k, W_v.
* BERT / MiniLM: post-LN (``prenorm=False``), LayerNorm over the embeddings (``embed_norm=True``),
  bidirectional attention, exact-erf GELU. nn.Linear weights are ``[out, in]`` and are transposed. The
  token-type embedding of segment 0 is folded into the learned positions (inputs are single segments).
  The MLM head (transform dense + GELU + LayerNorm, decoder tied to the word embeddings, decoder bias)
  becomes ``params["head"]`` and ``params["unembed_bias"]``; without a head the logits are the final hidden
  states against the word embeddings.

* Llama (``LlamaForCausalLM``, SmolLM2, TinyLlama …): RMSNorm, rotate-half RoPE (ffnkv's own layout, so Q/K
  need no permutation), SwiGLU, grouped-query attention, no biases; ``lm_head`` absent when tied.

``load_tokenizer(path)`` returns a ``tokenizers.Tokenizer`` from ``tokenizer.json`` (or ``vocab.txt`` /
``vocab.json`` + ``merges.txt``).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ffnkv.config import ModelConfig
from ffnkv.errors import FfnkvError

GELU_APPROXIMATE = {"gelu_new": True, "gelu_pytorch_tanh": True, "gelu_fast": True, "gelu": False}


def _read_dir(path) -> tuple[dict, dict[str, np.ndarray]]:
    from safetensors.numpy import load_file

    root = Path(path)
    config_file, weights = root / "config.json", sorted(root.glob("*.safetensors"))
    if not config_file.is_file() or not weights:
        raise FfnkvError(f"{root} is not a Hugging Face checkpoint directory: it needs config.json and *.safetensors.")
    tensors: dict[str, np.ndarray] = {}
    for file in weights:
        tensors.update(load_file(str(file)))
    return json.loads(config_file.read_text()), tensors


def _strip_prefix(tensors: dict, prefixes: tuple[str, ...]) -> dict:
    out = {}
    for name, value in tensors.items():
        for prefix in prefixes:
            if name.startswith(prefix):
                name = name[len(prefix):]
                break
        out[name] = value
    return out


def _activation(hf: dict, key: str) -> bool:
    act = hf.get(key, "gelu")
    if act not in GELU_APPROXIMATE:
        raise FfnkvError(f"activation {act!r} is not supported; ffnkv imports GELU models "
                         f"({', '.join(GELU_APPROXIMATE)}).")
    return GELU_APPROXIMATE[act]


def _stack(blocks: list[dict]) -> dict:
    """A list of per-layer pytrees -> one pytree with a leading layer axis L."""
    first = blocks[0]
    return {k: _stack([b[k] for b in blocks]) if isinstance(v, dict) else np.stack([b[k] for b in blocks])
            for k, v in first.items()}


def _f32(x) -> np.ndarray:
    return np.asarray(x, np.float32)


def gpt2_from_tensors(hf: dict, tensors: dict) -> tuple[ModelConfig, dict]:
    """Map GPT-2 tensors (``transformer.h.{i}...``) to ffnkv parameters."""
    t = _strip_prefix(tensors, ("transformer.",))
    D, L = hf["n_embd"], hf["n_layer"]
    cfg = ModelConfig(vocab_size=hf["vocab_size"], d_model=D, n_layers=L, n_heads=hf["n_head"],
                      d_ff=hf.get("n_inner") or 4 * D, ffn="gelu", max_len=hf["n_positions"], causal=True,
                      positional="learned", norm="layernorm", tie_embeddings=True,
                      gelu_approximate=_activation(hf, "activation_function"),
                      norm_eps=hf.get("layer_norm_epsilon", 1e-5))
    ln = lambda p: {"scale": _f32(t[f"{p}.weight"]), "bias": _f32(t[f"{p}.bias"])}
    blocks = []
    for i in range(L):
        p = f"h.{i}"
        W_q, W_k, W_v = np.split(_f32(t[f"{p}.attn.c_attn.weight"]), 3, axis=1)
        b_q, b_k, b_v = np.split(_f32(t[f"{p}.attn.c_attn.bias"]), 3)
        blocks.append({
            "ln1": ln(f"{p}.ln_1"), "ln2": ln(f"{p}.ln_2"),
            "attn": {"W_q": W_q, "W_k": W_k, "W_v": W_v, "b_q": b_q, "b_k": b_k, "b_v": b_v,
                     "W_o": _f32(t[f"{p}.attn.c_proj.weight"]), "b_o": _f32(t[f"{p}.attn.c_proj.bias"])},
            "ffn": {"W_in": _f32(t[f"{p}.mlp.c_fc.weight"]), "b_in": _f32(t[f"{p}.mlp.c_fc.bias"]),
                    "W_out": _f32(t[f"{p}.mlp.c_proj.weight"]), "b_out": _f32(t[f"{p}.mlp.c_proj.bias"])},
        })
    params = {"embed": {"tok": _f32(t["wte.weight"]), "pos": _f32(t["wpe.weight"])},
              "blocks": _stack(blocks), "final_norm": ln("ln_f")}
    return cfg, params


def bert_from_tensors(hf: dict, tensors: dict) -> tuple[ModelConfig, dict]:
    """Map BERT tensors (``[bert.]encoder.layer.{i}...``, optional ``cls.predictions...``) to ffnkv parameters."""
    t = _strip_prefix(tensors, ("bert.",))
    D, L = hf["hidden_size"], hf["num_hidden_layers"]
    if hf.get("position_embedding_type", "absolute") != "absolute":
        raise FfnkvError("only BERT checkpoints with absolute position embeddings are supported.")
    gelu_approximate = _activation(hf, "hidden_act")
    cfg = ModelConfig(vocab_size=hf["vocab_size"], d_model=D, n_layers=L, n_heads=hf["num_attention_heads"],
                      d_ff=hf["intermediate_size"], ffn="gelu", max_len=hf["max_position_embeddings"],
                      causal=False, positional="learned", norm="layernorm", tie_embeddings=True, prenorm=False,
                      embed_norm=True, gelu_approximate=gelu_approximate, norm_eps=hf.get("layer_norm_eps", 1e-12))
    ln = lambda p: {"scale": _f32(t[f"{p}.LayerNorm.weight"]), "bias": _f32(t[f"{p}.LayerNorm.bias"])}
    W = lambda p: _f32(t[f"{p}.weight"]).T
    b = lambda p: _f32(t[f"{p}.bias"])
    blocks = []
    for i in range(L):
        p = f"encoder.layer.{i}"
        a = f"{p}.attention"
        blocks.append({
            "ln1": ln(f"{a}.output"), "ln2": ln(f"{p}.output"),
            "attn": {"W_q": W(f"{a}.self.query"), "W_k": W(f"{a}.self.key"), "W_v": W(f"{a}.self.value"),
                     "W_o": W(f"{a}.output.dense"), "b_q": b(f"{a}.self.query"), "b_k": b(f"{a}.self.key"),
                     "b_v": b(f"{a}.self.value"), "b_o": b(f"{a}.output.dense")},
            "ffn": {"W_in": W(f"{p}.intermediate.dense"), "b_in": b(f"{p}.intermediate.dense"),
                    "W_out": W(f"{p}.output.dense"), "b_out": b(f"{p}.output.dense")},
        })
    pos = _f32(t["embeddings.position_embeddings.weight"])
    if "embeddings.token_type_embeddings.weight" in t:
        pos = pos + _f32(t["embeddings.token_type_embeddings.weight"])[0]
    params = {"embed": {"tok": _f32(t["embeddings.word_embeddings.weight"]), "pos": pos},
              "embed_norm": ln("embeddings"), "blocks": _stack(blocks)}
    if "cls.predictions.transform.dense.weight" in t:
        h = "cls.predictions"
        params["head"] = {"W": W(f"{h}.transform.dense"), "b": b(f"{h}.transform.dense"),
                          "norm": ln(f"{h}.transform")}
        params["unembed_bias"] = _f32(t[f"{h}.bias"] if f"{h}.bias" in t else t[f"{h}.decoder.bias"])
    return cfg, params


def llama_from_tensors(hf: dict, tensors: dict) -> tuple[ModelConfig, dict]:
    """Map Llama tensors (``model.layers.{i}...``; ``lm_head.weight`` unless ``tie_word_embeddings``) to ffnkv
    parameters."""
    t = _strip_prefix(tensors, ("model.",))
    D, H, L = hf["hidden_size"], hf["num_attention_heads"], hf["num_hidden_layers"]
    rope = hf.get("rope_parameters") or {"rope_theta": hf.get("rope_theta", 10000.0)}  # transformers ≥ 5 | < 5
    scaled = bool(hf.get("rope_scaling")) or rope.get("rope_type", "default") != "default"
    if hf.get("hidden_act", "silu") != "silu" or scaled \
            or hf.get("head_dim", D // H) != D // H \
            or hf.get("attention_bias") or hf.get("mlp_bias"):
        raise FfnkvError("only Llama checkpoints with SiLU, unscaled rope, head_dim = hidden/heads and no biases "
                         "are supported.")
    tied = bool(hf.get("tie_word_embeddings", False))
    cfg = ModelConfig(vocab_size=hf["vocab_size"], d_model=D, n_layers=L, n_heads=H,
                      n_kv_heads=hf.get("num_key_value_heads", H), d_ff=hf["intermediate_size"], ffn="swiglu",
                      max_len=hf.get("max_position_embeddings", 2048), causal=True, positional="rope", norm="rmsnorm",
                      tie_embeddings=tied, bias=False, norm_eps=hf.get("rms_norm_eps", 1e-6),
                      rope_theta=float(rope.get("rope_theta", 10000.0)))
    W = lambda p: _f32(t[f"{p}.weight"]).T
    blocks = []
    for i in range(L):
        p = f"layers.{i}"
        blocks.append({
            "ln1": {"scale": _f32(t[f"{p}.input_layernorm.weight"])},
            "ln2": {"scale": _f32(t[f"{p}.post_attention_layernorm.weight"])},
            "attn": {"W_q": W(f"{p}.self_attn.q_proj"), "W_k": W(f"{p}.self_attn.k_proj"),
                     "W_v": W(f"{p}.self_attn.v_proj"), "W_o": W(f"{p}.self_attn.o_proj")},
            "ffn": {"W_gate": W(f"{p}.mlp.gate_proj"), "W_in": W(f"{p}.mlp.up_proj"), "W_out": W(f"{p}.mlp.down_proj")},
        })
    params = {"embed": {"tok": _f32(t["embed_tokens.weight"])}, "blocks": _stack(blocks),
              "final_norm": {"scale": _f32(t["norm.weight"])}}
    if not tied:
        params["unembed"] = W("lm_head")
    return cfg, params


IMPORTERS = {"gpt2": gpt2_from_tensors, "bert": bert_from_tensors, "llama": llama_from_tensors}


def load_hf(path) -> tuple[ModelConfig, dict]:
    """``(cfg, params)`` for the GPT-2 or BERT-family checkpoint directory ``path`` (float32 numpy leaves)."""
    hf, tensors = _read_dir(path)
    kind = hf.get("model_type")
    if kind not in IMPORTERS:
        raise FfnkvError(f"model_type {kind!r} in {path}/config.json is not supported; use one of "
                         f"{', '.join(IMPORTERS)}.")
    try:
        return IMPORTERS[kind](hf, tensors)
    except KeyError as missing:
        raise FfnkvError(f"{path} lacks the tensor {missing.args[0]!r} that a {kind} checkpoint needs.") from None


def load_tokenizer(path):
    """The checkpoint's tokenizer as a ``tokenizers.Tokenizer`` (tokenizer.json, else vocab files)."""
    from tokenizers import Tokenizer
    from tokenizers.implementations import BertWordPieceTokenizer, ByteLevelBPETokenizer

    root = Path(path)
    if (root / "tokenizer.json").is_file():
        return Tokenizer.from_file(str(root / "tokenizer.json"))
    if (root / "vocab.txt").is_file():
        config = root / "tokenizer_config.json"
        settings = json.loads(config.read_text()) if config.is_file() else {}
        return BertWordPieceTokenizer(str(root / "vocab.txt"), lowercase=settings.get("do_lower_case", True))._tokenizer
    if (root / "vocab.json").is_file() and (root / "merges.txt").is_file():
        return ByteLevelBPETokenizer(str(root / "vocab.json"), str(root / "merges.txt"))._tokenizer
    raise FfnkvError(f"{root} has no tokenizer.json, vocab.txt or vocab.json + merges.txt.")
