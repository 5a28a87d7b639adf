#!/usr/bin/env bash
# Set-up, run by scripts/run.sh and scripts/test.sh when something is missing: a .venv with the pinned
# requirements, and Debian's chromium for the browser test. Quick when nothing changed (a stamp of requirements.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
if [ ! -x .venv/bin/python ]; then
  echo "creating .venv with $PY (first run only) ..." >&2
  "$PY" -m venv .venv
fi
stamp=.venv/.requirements.sha256
wanted=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$wanted" ]; then
  echo "installing the pinned requirements into .venv (first run, or requirements.txt changed) ..." >&2
  .venv/bin/python -m pip install --upgrade --quiet pip
  .venv/bin/python -m pip install --quiet -r requirements.txt
  echo "$wanted" > "$stamp"
fi
# Browser for the end-to-end test (never `playwright install`: it downloads, which this network forbids).
if ! command -v chromium >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "installing Debian's chromium for the browser test ..." >&2
    apt-get update -qq && apt-get install -y -qq chromium >/dev/null
  else
    echo "note: chromium not found; install Debian's 'chromium' to run the browser test" >&2
  fi
fi
