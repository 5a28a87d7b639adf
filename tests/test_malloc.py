"""glibc keeps freed memory for reuse in the explorer, the command line and Ray workers (corpus_index/malloc.py)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from corpus_index import malloc

# Where glibc puts a 90 MB tensor (a 16-channel map of a real table page): the name of the memory mapping that
# holds it in /proc/self/maps — "[heap]" when it comes from the reusable heap, "" for an mmap of its own (freed
# to the system at once, and faulted in page by page the next time).
WHERE = """
import sys, torch
sys.path.insert(0, {repo!r})
if {runtime}:
    from corpus_index.malloc import keep_freed_memory
    assert keep_freed_memory()
tensor = torch.ones(90 << 18)
address = tensor.data_ptr()
for line in open("/proc/self/maps"):
    fields = line.split()
    start, end = (int(part, 16) for part in fields[0].split("-"))
    if start <= address < end:
        print(fields[5] if len(fields) > 5 else "")
"""


def placement(runtime: bool, env: dict) -> str:
    code = WHERE.format(repo=str(Path(__file__).resolve().parents[1]), runtime=runtime)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          check=True).stdout.strip()


@pytest.mark.slow  # three Python processes importing torch
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc and /proc")
def test_large_tensors_come_from_the_reusable_heap():
    plain = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    assert placement(False, plain) == ""  # glibc's default: a mapping of its own, unmapped when freed
    assert placement(True, plain) == "[heap]"  # keep_freed_memory() in a running process
    assert placement(False, {**plain, **malloc.ENVIRONMENT}) == "[heap]"  # the environment at start


def test_the_launcher_runs_the_program_with_the_settings():
    shown = subprocess.run([sys.executable, "-m", "corpus_index.malloc", sys.executable, "-c",
                            "import os; print(os.environ['MALLOC_ARENA_MAX'], os.environ['MALLOC_MMAP_MAX_'])"],
                           capture_output=True, text=True, check=True)
    assert shown.stdout.split() == [malloc.ENVIRONMENT["MALLOC_ARENA_MAX"], malloc.ENVIRONMENT["MALLOC_MMAP_MAX_"]]
    assert "python -m corpus_index.malloc" in Path("scripts/run.sh").read_text()
