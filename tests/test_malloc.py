"""glibc keeps freed memory for reuse in the explorer, the command line and Ray workers (corpus_index/malloc.py)."""

import subprocess
import sys

import pytest

from corpus_index import malloc

# Allocates and frees a 90 MB tensor (a 16-channel map of a real table page) twelve times; prints the page faults.
# With memory kept, later tensors reuse the pages of earlier ones (numpy would ask for huge pages instead).
FAULTS = """
import resource, sys, torch
sys.path.insert(0, {repo!r})
if {runtime}:
    from corpus_index.malloc import keep_freed_memory
    assert keep_freed_memory()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(12):
    torch.ones(90 << 18).sum()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""
PAGES = (90 << 20) // 4096  # pages of one array


def faults(runtime: bool, env: dict | None = None) -> int:
    from pathlib import Path

    code = FAULTS.format(repo=str(Path(__file__).resolve().parents[1]), runtime=runtime)
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return int(output.stdout)


@pytest.mark.slow  # three Python processes importing torch
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_freed_memory_is_reused_instead_of_faulted_in_again():
    import os

    plain = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    fresh = faults(False, plain)
    assert fresh >= 11 * PAGES  # glibc's default: every tensor is a fresh mmap, faulted in page by page
    # Kept memory is faulted in again only when the system reclaims it (this VM's kernel does, now and then).
    assert faults(True, plain) < fresh / 2  # keep_freed_memory() in a running process
    assert faults(False, {**plain, **malloc.ENVIRONMENT}) < fresh / 2  # the environment at start


def test_the_launcher_runs_the_program_with_the_settings():
    shown = subprocess.run([sys.executable, "-m", "corpus_index.malloc", sys.executable, "-c",
                            "import os; print(os.environ['MALLOC_ARENA_MAX'], os.environ['MALLOC_MMAP_MAX_'])"],
                           capture_output=True, text=True, check=True)
    assert shown.stdout.split() == [malloc.ENVIRONMENT["MALLOC_ARENA_MAX"], malloc.ENVIRONMENT["MALLOC_MMAP_MAX_"]]
    assert "corpus_index.malloc" in (malloc.__file__ and open("scripts/run.sh").read())
