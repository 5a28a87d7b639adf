"""Benchmarks: each writes its measurements, with the command that made them, to ``benchmarks/results/``."""

import shlex as _shlex
import sys as _sys
from pathlib import Path as _Path

from corpus_index.malloc import keep_freed_memory as _keep_freed_memory

_REPO = _Path(__file__).resolve().parent.parent
# Every benchmark measures with the memory settings the explorer and the command line run with.
_keep_freed_memory()


def command_line() -> str:
    """The command that is running, as a user would type it from the repository root (for result files)."""
    script = _Path(_sys.argv[0]).resolve()
    shown = str(script.relative_to(_REPO)) if script.is_relative_to(_REPO) else _sys.argv[0]
    return _shlex.join(["python", shown, *_sys.argv[1:]])


def write_results(path: _Path, results: dict) -> None:
    """Add the load average at the end, write ``results`` as JSON to ``path`` and print them."""
    import json
    import os

    results["load_after"] = os.getloadavg()[0]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
