#!/usr/bin/env bash
# Run the explorer: set up what is missing, then start Streamlit (no file watcher: it would import torch's
# modules on every change), with glibc keeping freed memory for reuse (corpus_index/malloc.py says why).
# Extra arguments go to `streamlit run`, e.g. --server.port 8502.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec .venv/bin/python -m corpus_index.malloc .venv/bin/streamlit run app.py --server.fileWatcherType none "$@"
