import jax.numpy as jnp
import pytest

import ffnkv


@pytest.mark.parametrize("changes, field", [
    (dict(ffn="tanh"), "ffn"), (dict(d_model=30, n_heads=4), "n_heads"), (dict(positional="alibi"), "positional"),
    (dict(norm="batchnorm"), "norm"), (dict(n_layers=0), "n_layers"), (dict(ffn_layers=(5,)), "ffn_layers"),
    (dict(n_kv_heads=3), "n_kv_heads"), (dict(dtype="int8"), "dtype"), (dict(d_ff=0), "d_ff"),
])
def test_invalid_configs_name_the_field(changes, field):
    with pytest.raises(ffnkv.ConfigError, match=f"ModelConfig.{field}="):
        ffnkv.ModelConfig(**changes)


def test_unknown_field_from_dict():
    with pytest.raises(ffnkv.ConfigError, match="no field 'dmodel'"):
        ffnkv.ModelConfig.from_dict({"dmodel": 3})


def test_roundtrip_dict():
    cfg = ffnkv.ModelConfig(ffn_layers=[1])
    assert ffnkv.ModelConfig.from_dict(cfg.to_dict()) == cfg and hash(cfg) == hash(ffnkv.ModelConfig(ffn_layers=(1,)))


@pytest.mark.parametrize("kind", ["relu", "gelu", "linear", "swiglu", "softmax"])
def test_matched_d_ff_is_closest(kind):
    target = ffnkv.ffn_params_per_layer("relu", 256, 1024)
    f = ffnkv.matched_d_ff(kind, 256, 1024)
    best = min(range(1, 2048), key=lambda w: abs(ffnkv.ffn_params_per_layer(kind, 256, w) - target))
    assert f == best
    assert ffnkv.matched_d_ff("swiglu", 256, 1024, bias=False) == 683


def test_too_long_input_is_an_error():
    cfg = ffnkv.ModelConfig(max_len=4)
    params = ffnkv.init_params(__import__("jax").random.key(0), cfg)
    with pytest.raises(ffnkv.FfnkvError, match="max_len"):
        ffnkv.forward(params, jnp.zeros((1, 5), jnp.int32), cfg)
