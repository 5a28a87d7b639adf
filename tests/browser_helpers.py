"""Shared by the browser test and the app benchmark: a Streamlit server subprocess and headless Chromium.

Chromium is Debian's ``/usr/bin/chromium`` driven by Playwright (``playwright install`` is never run).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from corpus_index import malloc

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def streamlit_server(root: Path, models: str, books: int = 2, log: Path | None = None, timeout: float = 120,
                     threads: int | None = 1):
    """Run ``streamlit run app.py`` on a free port with SPHAERA_ROOT=root; yields the base URL.

    ``threads``: torch's threads in the server (1 for tests, which share the machine with pytest; None leaves
    torch's default, one per core, as ``scripts/run.sh`` does — what benchmarks measure).
    """
    port = free_port()
    env = dict(os.environ, SPHAERA_ROOT=str(root), SPHAERA_MODELS=models, SPHAERA_DEMO_BOOKS=str(books),
               PYTHONPATH=str(REPO), **malloc.ENVIRONMENT)  # as scripts/run.sh starts it
    env.pop("OMP_NUM_THREADS", None)
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    command = [sys.executable, "-m", "streamlit", "run", str(REPO / "app.py"), "--server.headless", "true",
               "--server.port", str(port), "--server.fileWatcherType", "none"]
    output = open(log, "w") if log else subprocess.DEVNULL  # noqa: SIM115 - closed below
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=output, stderr=subprocess.STDOUT)
    url = f"http://localhost:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"streamlit did not start (exit code {process.poll()}); see {log}")
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
        if log:
            output.close()


def launch_chromium(playwright):
    """Headless Debian Chromium."""
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)


IDLE_JS = ("() => { const app = document.querySelector('[data-testid=\"stApp\"]'); return !!app && "
           "app.dataset.testScriptState === 'notRunning' && app.dataset.testConnectionState === 'CONNECTED' && "
           "!document.querySelector('[data-testid=\"stStatusWidget\"]'); }")


def wait_idle(page, timeout: float = 180_000) -> None:
    """Wait until the app is connected and no script run is in progress (give a just-triggered run 300 ms)."""
    page.wait_for_timeout(300)
    page.wait_for_function(IDLE_JS, timeout=timeout)
