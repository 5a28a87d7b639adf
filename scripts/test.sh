#!/usr/bin/env bash
# The project's test command: lint, then the pytest suite (fast: small nets, random weights).
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python -m ruff check .
.venv/bin/python -m pytest -q "$@"
