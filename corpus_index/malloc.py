"""Keep freed memory for reuse: glibc settings that make the networks' large tensors cheap to allocate.

A real table page gives the bigram network 16-channel maps of 1400×1000 pixels (90 MB per tensor). glibc serves
every allocation that large with a fresh ``mmap`` and unmaps it on free, so each layer's output and each rule's
normalisers are faulted in page by page, zero-filled by the kernel, again and again: on this project's machines
that took most of the forward pass (``benchmarks/bench_windowed.py`` measures the factors with these settings).
With the settings below, freed memory stays in the process's heap and is reused:

- ``MALLOC_MMAP_MAX_=0``: no allocation is served by its own ``mmap`` (glibc falls back to it only if the heap
  cannot grow);
- ``MALLOC_TRIM_THRESHOLD_``: free memory at the top of the heap is given back to the system only beyond this;
- ``MALLOC_ARENA_MAX=1``: every thread allocates from the one main heap (Streamlit runs each page on its own
  thread; other arenas are small ``mmap``-ed heaps that cannot hold such tensors).

The explorer's server gets them as environment variables (glibc reads them at start: ``scripts/run.sh`` starts
Streamlit through ``python -m corpus_index.malloc``); a process already running (the command line, a Ray worker,
a benchmark) calls :func:`keep_freed_memory` before its threads start. Elsewhere than glibc both do nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

TRIM_THRESHOLD = 1 << 30  # bytes: up to 1 GiB of free memory stays with the process
ENVIRONMENT = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(TRIM_THRESHOLD), "MALLOC_ARENA_MAX": "1"}
# mallopt parameter numbers, from glibc's <malloc.h>
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8


def keep_freed_memory() -> bool:
    """Apply :data:`ENVIRONMENT` to this process with ``mallopt``; True when glibc accepted every setting.

    ``MALLOC_ARENA_MAX`` only affects threads that have not allocated yet: call this early.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl has no mallopt)
        return False
    settings = ((_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, TRIM_THRESHOLD), (_M_ARENA_MAX, 1))
    return all(mallopt(parameter, value) == 1 for parameter, value in settings)


def main(argv: list[str]) -> None:
    """``python -m corpus_index.malloc PROGRAM ARGS...``: run PROGRAM with :data:`ENVIRONMENT` (exec, same pid)."""
    if not argv:
        sys.exit("usage: python -m corpus_index.malloc PROGRAM [ARGS...]")
    os.execvpe(argv[0], argv, {**os.environ, **ENVIRONMENT})


if __name__ == "__main__":
    main(sys.argv[1:])
