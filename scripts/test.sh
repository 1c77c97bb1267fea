#!/usr/bin/env bash
# Sets up .venv with the dev and all extras and runs the whole test suite on 2 workers.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev,all
.venv/bin/python -m pytest -n 2 -q "$@"
