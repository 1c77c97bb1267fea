"""load_model: one loader and one tokenizer interface for Hugging Face dirs, GGUF files and packaged models
(run dirs: tests/test_run.py). The tiny checkpoints are written here; numerics against transformers."""
import json

import jax.numpy as jnp
import numpy as np
import pytest

from ffnkv.errors import FfnkvError
from ffnkv.io.load import Model, load_model
from ffnkv.model import forward

torch = pytest.importorskip("torch", reason="the Hugging Face sources need the 'hf' extra")
transformers = pytest.importorskip("transformers", reason="the Hugging Face sources need the 'hf' extra")
WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "<s>", "</s>", "the", "cat", "sat", "on", "mat", "Paris"]


def _write_tokenizer(path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(path / "tokenizer.json"))


def _save(model, path):
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name.lower() or "ln_" in name or name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    model.eval().save_pretrained(path, safe_serialization=True)
    _write_tokenizer(path)
    return model


def _check_logits(model, loaded: Model, vocab):
    tokens = np.random.default_rng(0).integers(0, vocab, (2, 9)).astype(np.int32)
    with torch.no_grad():
        expected = model(torch.tensor(tokens, dtype=torch.long)).logits.numpy()
    logits = np.asarray(forward(loaded.params, jnp.asarray(tokens), loaded.cfg).logits)
    np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("tied", [False, True])
def test_llama_safetensors(tmp_path, tied):
    config = transformers.LlamaConfig(vocab_size=len(WORDS), hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, rope_theta=500.0,
                                      max_position_embeddings=32, tie_word_embeddings=tied, bos_token_id=5,
                                      eos_token_id=6)
    torch.manual_seed(0)
    model = _save(transformers.LlamaForCausalLM(config), tmp_path)
    loaded = load_model(tmp_path)
    assert (loaded.cfg.ffn, loaded.cfg.n_kv_heads, loaded.cfg.tie_embeddings) == ("swiglu", 2, tied)
    assert ("unembed" in loaded.params) == (not tied)
    _check_logits(model, loaded, len(WORDS))
    tok = loaded.tokenizer
    assert (tok.bos_id, tok.eos_id, tok.vocab_size) == (5, 6, len(WORDS))
    assert tok.encode("the cat sat") == [7, 8, 9] and tok.token_str(12) == "Paris"


def test_gpt2_and_bert_directories(tmp_path):
    gpt2 = _save(transformers.GPT2LMHeadModel(transformers.GPT2Config(
        vocab_size=len(WORDS), n_positions=16, n_embd=16, n_layer=1, n_head=2)), tmp_path / "gpt2")
    _check_logits(gpt2, load_model(tmp_path / "gpt2"), len(WORDS))
    bert = _save(transformers.BertForMaskedLM(transformers.BertConfig(
        vocab_size=len(WORDS), hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=24,
        max_position_embeddings=16)), tmp_path / "bert")
    loaded = load_model(tmp_path / "bert")
    assert (loaded.tokenizer.bos_id, loaded.tokenizer.eos_id) == (2, 3)  # [CLS], [SEP]
    _check_logits(bert, loaded, len(WORDS))


def test_gguf_file(tmp_path):
    pytest.importorskip("gguf")
    from gguf_fixture import llama_weights, write_gguf

    write_gguf(tmp_path / "tiny.gguf", llama_weights())
    loaded = load_model(tmp_path / "tiny.gguf")
    assert loaded.name == "tiny" and loaded.cfg.norm == "rmsnorm" and loaded.run is None
    tok = loaded.tokenizer
    assert tok.encode("ab ab") == [5, 6] and tok.decode([5, 6]) == "ab ab" and tok.token_str(6) == " ab"
    assert tok.vocab_size == loaded.cfg.vocab_size


def test_bad_specs_get_one_sentence(tmp_path):
    with pytest.raises(FfnkvError, match="does not exist; give a run dir"):
        load_model(tmp_path / "nothing")
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(FfnkvError, match="is not a model; give a run dir"):
        load_model(tmp_path / "notes.txt")
    (tmp_path / "config.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(FfnkvError, match="is not a model"):
        load_model(tmp_path)
    (tmp_path / "config.json").write_text("{")
    with pytest.raises(FfnkvError, match="not valid JSON"):
        load_model(tmp_path)
    with pytest.raises(FfnkvError, match="'gpt5' does not exist; give .* a packaged model name"):
        load_model("gpt5")


@pytest.mark.slow
def test_packaged_models():
    smol = load_model("smollm2")
    assert smol.name == "smollm2" and smol.cfg.n_layers == 30 and smol.tokenizer.bos_id == 1
    assert smol.tokenizer.token_str(smol.tokenizer.encode(" Paris")[0]) == " Paris"
    mini = load_model("minilm")
    assert mini.name == "minilm" and not mini.cfg.causal
    assert mini.tokenizer.encode("the cat", special=True) == [101, 1996, 4937, 102]  # no padding to 128
