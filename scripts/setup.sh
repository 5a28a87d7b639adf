#!/usr/bin/env bash
# One-command set-up: a .venv with the pinned requirements, and Debian's chromium for the browser test.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --upgrade --quiet pip
.venv/bin/python -m pip install --quiet -r requirements.txt
# Browser for the end-to-end test (never `playwright install`: it downloads, which this network forbids).
if ! command -v chromium >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq chromium >/dev/null
  else
    echo "note: chromium not found; install Debian's 'chromium' to run the browser test" >&2
  fi
fi
echo "set-up done: activate with 'source .venv/bin/activate'"
