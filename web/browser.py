"""Drive the page in a real headless Chromium (the system's, never a downloaded build): the
browser tests and ``benchmarks/web_latency.py`` both start it here, with one set of flags.

Needs Playwright's Python package (the ``dev`` extra) and Chromium from the OS packages
(``apt-get install chromium``); ``$LMK_CHROMIUM`` names another binary.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lmk.core.errors import LmkError

CHROMIUM_ENV = "LMK_CHROMIUM"
# Headless, as root (no sandbox), and quiet on the network: without the background
# networking flags Chromium's own connections are refused on a closed network and slow it.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def chromium_path() -> Path | None:
    """The system Chromium: ``$LMK_CHROMIUM``, else ``chromium`` / ``chromium-browser`` on PATH."""
    named = os.environ.get(CHROMIUM_ENV)
    if named:
        return Path(named) if Path(named).is_file() else None
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return Path(found)
    return None


@contextmanager
def serve_page(
    models: list[Path], detector: Path | None = None, timeout: float = 60.0
) -> Iterator[str]:
    """``lmk web MODELS [--detector PATH] --port 0`` as users run it (the console script, a
    subprocess); yields the page's URL and stops the server afterwards."""
    script = Path(sys.executable).parent / "lmk"
    command = [str(script) if script.exists() else "lmk", "web", *map(str, models), "--port", "0"]
    command += ["--detector", str(detector) if detector is not None else "none"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + timeout
        url = None
        assert proc.stdout is not None
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            match = re.search(r"http://\S+/", line)
            url = match.group(0) if match else None
        if url is None:
            proc.kill()
            raise LmkError(f"lmk web did not start: {proc.stderr.read() if proc.stderr else ''}")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextmanager
def chromium(extra_flags: tuple[str, ...] = ()) -> Iterator[Any]:
    """A Playwright ``Browser`` on the system Chromium with a fresh profile."""
    from playwright.sync_api import sync_playwright

    path = chromium_path()
    if path is None:
        raise LmkError(f"no Chromium found (apt-get install chromium, or set ${CHROMIUM_ENV})")
    with tempfile.TemporaryDirectory(prefix="lmk-chromium-") as profile, sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            profile,
            executable_path=str(path),
            headless=True,
            args=[*CHROMIUM_FLAGS, *extra_flags],
        )
        try:
            yield context
        finally:
            context.close()


def open_page(context: Any, url: str, timeout_ms: float = 120_000) -> Any:
    """A tab on ``url`` with the page's engine ready (``window.lmk.ready`` resolved); a page
    error is raised with the page's own message."""
    page = context.new_page()
    page.set_default_timeout(timeout_ms)
    page.goto(url)
    page.wait_for_function("window.lmk !== undefined")
    page.evaluate("window.lmk.ready")
    return page
