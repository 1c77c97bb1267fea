"""One loader for every model: ``load_model(spec) -> Model(cfg, params, tokenizer, name, run)``.

``spec`` is any of:

* a run dir written by ``ffnkv train`` (``config.json`` with a ``model`` section, ``checkpoints/``): the newest
  readable checkpoint, or ``step``; of a run that trained several seeds, seed index ``seed`` (default 0); the
  tokenizer is the task's own vocabulary; ``Model.run`` is the ``Run`` (the view of that seed);
* a Hugging Face directory (``config.json`` with ``model_type`` gpt2 / bert / llama, ``*.safetensors``, and
  ``tokenizer.json`` or vocab files);
* a ``.gguf`` file (llama-style, dequantised to float32);
* a packaged model name: ``minilm`` (all-MiniLM-L6-v2) or ``smollm2`` (SmolLM2-135M-Instruct GGUF).

Every source gives the same ``ffnkv.io.tokenizer.Tokenizer`` interface, so an analysis written against a
``Model`` runs unchanged on a trained run and on a pretrained checkpoint. ``Model.forward`` is
``ffnkv.forward`` compiled for the user.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jax
import jax.numpy as jnp

from ffnkv.config import ModelConfig
from ffnkv.errors import FfnkvError
from ffnkv.hooks import Hooks
from ffnkv.io.run import Run
from ffnkv.io.tokenizer import Tokenizer, task_tokenizer
from ffnkv.model import Output, forward

SOURCES = "a run dir (from `ffnkv train`), a Hugging Face directory (config.json + *.safetensors), a .gguf file " \
          "or a packaged model name (minilm, smollm2)"


forward_jit = jax.jit(forward, static_argnames=("cfg", "unroll", "capture_heads"))


@dataclasses.dataclass(frozen=True)
class Model:
    """A model ready for ``ffnkv.forward(model.params, tokens, model.cfg)``, or simply ``model.forward(tokens)``."""

    cfg: ModelConfig
    params: dict = dataclasses.field(repr=False)
    tokenizer: Tokenizer = dataclasses.field(repr=False)
    name: str
    run: Run | None = None

    def __post_init__(self):
        # importers read numpy; placing the weights on the device once spares every forward a copy of them
        object.__setattr__(self, "params", jax.tree.map(jnp.asarray, self.params))

    def forward(self, tokens_BT, hooks: Hooks | None = None, mask_BT=None, *, capture_heads: bool = False) -> Output:
        """``ffnkv.forward(self.params, tokens_BT, self.cfg, hooks, mask_BT)`` under ``jax.jit``: compiled once per
        token shape and per set of hook fields that are set (hooks are arrays, so new values reuse the program).
        ``capture_heads``: see ``ffnkv.forward``. Call it inside your own ``jit``/``vmap``/``grad`` as well."""
        tokens_BT = jnp.asarray(tokens_BT, jnp.int32)
        return forward_jit(self.params, tokens_BT, self.cfg, hooks, mask_BT, capture_heads=capture_heads)


def _from_run(path: Path, step, seed) -> Model:
    run = Run(path, seed)
    return Model(run.model_cfg, run.params(step), task_tokenizer(run.task), path.name, run)


def _from_hf(path: Path) -> Model:
    from ffnkv.io.hf import load_hf, load_tokenizer

    cfg, params = load_hf(path)
    hf = json.loads((path / "config.json").read_text())
    settings_file = path / "tokenizer_config.json"
    settings = json.loads(settings_file.read_text()) if settings_file.is_file() else {}
    backend = load_tokenizer(path)
    backend.no_padding()  # sentence-transformers exports pad every encoding to 128
    token = lambda key: None if hf.get(key) is None else backend.id_to_token(int(hf[key]))
    bert = hf.get("model_type") == "bert"
    tok = Tokenizer.from_backend(backend, bos=token("bos_token_id") or ("[CLS]" if bert else None),
                                 eos=token("eos_token_id") or ("[SEP]" if bert else None),
                                 add_bos=bool(settings.get("add_bos_token", False)))
    return Model(cfg, params, tok, path.name)


def _from_gguf(path: Path) -> Model:
    from ffnkv.io.gguf import load_gguf, open_gguf, special_tokens

    reader = open_gguf(path)
    cfg, params, backend = load_gguf(reader)
    special = special_tokens(reader)
    tok = Tokenizer(backend=backend, bos_id=special["bos_id"], eos_id=special["eos_id"],
                    add_bos=special["add_bos"] and special["bos_id"] is not None)
    return Model(cfg, params, tok, path.stem)


def _kind(path: Path, spec) -> str:
    if path.is_file() and path.suffix == ".gguf":
        return "gguf"
    if path.is_dir() and (path / "config.json").is_file():
        try:
            values = json.loads((path / "config.json").read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise FfnkvError(f"{path / 'config.json'} is not valid JSON; give {SOURCES}.") from None
        if isinstance(values, dict) and "model_type" in values:
            return "hf"
        if isinstance(values, dict) and "model" in values:
            return "run"
    if not path.exists():
        raise FfnkvError(f"model {str(spec)!r} does not exist; give {SOURCES}.")
    raise FfnkvError(f"{str(spec)!r} is not a model; give {SOURCES}.")


def load_model(spec: str | Path, step: int | None = None, seed: int | None = None) -> Model:
    """The model named by ``spec`` (module docstring); ``step`` picks a checkpoint of a run dir and ``seed`` one
    seed (an index) of a run dir that trained several (``Run.n_seeds``)."""
    from ffnkv.io.packaged import PACKAGES, model_path

    path = model_path(str(spec)) if str(spec) in PACKAGES else Path(spec)
    kind = _kind(path, spec)
    if step is not None and kind != "run":
        raise FfnkvError(f"a checkpoint step was given, but {str(spec)!r} is not a run dir; drop the step.")
    if seed is not None and kind != "run":
        raise FfnkvError(f"a seed was given, but {str(spec)!r} is not a run dir; drop the seed.")
    if kind == "run":
        return _from_run(path, step, seed)
    model = _from_hf(path) if kind == "hf" else _from_gguf(path)
    return dataclasses.replace(model, name=str(spec)) if str(spec) in PACKAGES else model
