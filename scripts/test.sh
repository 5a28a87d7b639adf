#!/usr/bin/env bash
# The project's test command: set up what is missing, then lint and the pytest
# suite (small nets, random weights). `./scripts/test.sh -m "not slow"` runs the fast subset.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
.venv/bin/python -m ruff check .
.venv/bin/python -m pytest -q "$@"
