"""A tiny Llama checkpoint in Hugging Face format (config.json + model.safetensors + tokenizer.json), written
with numpy only, so a study can be run on "a pretrained model" in the fast tier through ``load_model``."""
import json

import numpy as np

WORDS = ["<unk>", "<s>", "</s>"] + ("the of in is a city capital country language Paris France Rome Italy Berlin "
                                    "Germany Madrid Spain London England Tokyo Japan speaks located on SUM MAX "
                                    "MIN = 0 1 2 3 4 5 6 7 8 9 . ,").split()


def write_tiny_llama(path, d_model=32, n_layers=2, n_heads=4, d_ff=48, seed=0):
    """Writes the checkpoint into ``path`` (a dir) and returns it; the vocabulary is ``WORDS``."""
    from safetensors.numpy import save_file
    from tokenizers import Tokenizer, models, pre_tokenizers

    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    V, D, F = len(WORDS), d_model, d_ff
    normal = lambda *shape: (0.3 * rng.standard_normal(shape)).astype(np.float32)
    tensors = {"model.embed_tokens.weight": normal(V, D), "model.norm.weight": 1 + normal(D),
               "lm_head.weight": normal(V, D)}
    for i in range(n_layers):
        p = f"model.layers.{i}"
        tensors |= {f"{p}.input_layernorm.weight": 1 + normal(D), f"{p}.post_attention_layernorm.weight": 1 + normal(D)}
        tensors |= {f"{p}.self_attn.{n}_proj.weight": normal(D, D) for n in "qkvo"}
        tensors |= {f"{p}.mlp.gate_proj.weight": normal(F, D), f"{p}.mlp.up_proj.weight": normal(F, D),
                    f"{p}.mlp.down_proj.weight": normal(D, F)}
    save_file(tensors, str(path / "model.safetensors"))
    (path / "config.json").write_text(json.dumps({
        "model_type": "llama", "vocab_size": V, "hidden_size": D, "intermediate_size": F,
        "num_hidden_layers": n_layers, "num_attention_heads": n_heads, "num_key_value_heads": n_heads,
        "max_position_embeddings": 64, "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "hidden_act": "silu",
        "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2}))
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.save(str(path / "tokenizer.json"))
    return path
