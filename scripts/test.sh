#!/usr/bin/env bash
# Sets up .venv with the dev and all extras, runs the linter (ruff, configured in pyproject.toml) and both test
# tiers on 2 workers: the fast default tier, then the slow tier (-m slow). Extra arguments go to both pytest runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev,all
.venv/bin/python -m ruff check .
.venv/bin/python -m pytest -n 2 -q "$@"
.venv/bin/python -m pytest -n 2 -q -m slow "$@"
