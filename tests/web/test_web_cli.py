"""``lmk web`` as users run it (the console script in a subprocess): the server's headers
and site, the export folder, and one-line errors for bad input."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from lmk.core.errors import LmkError
from lmk.runtime.bundled import BUNDLED, bundled_model
from lmk.web.assets import ORT_FILES, ort_dist
from lmk.web.browser import open_page, serve_page
from tests.web.conftest import REQUIRE_ENV

LMK = str(Path(sys.executable).parent / "lmk")


@pytest.fixture(scope="module")
def ort_installed() -> None:
    try:
        ort_dist()
    except LmkError as exc:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{REQUIRE_ENV}=1 but {exc}")
        pytest.skip(str(exc))


def lmk_web(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([LMK, "web", *args], capture_output=True, text=True, timeout=120)


def one_error_line(result: subprocess.CompletedProcess, match: str) -> None:
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and match in lines[0], lines
    assert "Traceback" not in result.stderr


def fetch(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), b""


def digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.md5(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_lmk_web_serves_the_site_with_isolation_headers_and_nothing_else(ort_installed):
    with serve_page([]) as url:
        status, headers, body = fetch(url)
        assert status == 200 and b'<script type="module" src="app.js">' in body
        assert headers["Cross-Origin-Opener-Policy"] == "same-origin"
        assert headers["Cross-Origin-Embedder-Policy"] == "require-corp"
        status, headers, body = fetch(url + "models/index.json")
        assert [m["name"] for m in json.loads(body)] == [bundled_model(n).name for n in BUNDLED]
        status, headers, _ = fetch(url + "ort/ort-wasm-simd-threaded.wasm")
        assert status == 200 and headers["Content-Type"] == "application/wasm"
        for outside in ("../pyproject.toml", "cli.py", "package.json", "%2e%2e/pyproject.toml"):
            assert fetch(url + outside)[0] == 404, outside


def test_lmk_web_refuses_missing_and_non_model_files_in_one_line(tmp_path, ort_installed):
    one_error_line(lmk_web(str(tmp_path / "missing.onnx")), "model not found")
    notes = tmp_path / "notes.onnx"
    notes.write_text("not a model\n")
    one_error_line(lmk_web(str(notes)), "notes.onnx")
    one_error_line(lmk_web("--overwrite"), "--overwrite goes with --export")


def test_lmk_web_says_when_its_port_is_taken(ort_installed):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        one_error_line(lmk_web("--port", str(port)), f"port {port} is in use")


@pytest.fixture(scope="module")
def exported(tmp_path_factory, ort_installed) -> Path:
    """``lmk web --export`` once for the module's tests (it copies ~60 MB)."""
    site = tmp_path_factory.mktemp("export") / "site"
    result = lmk_web("--export", str(site))
    assert result.returncode == 0, result.stderr
    return site


def test_lmk_web_export_writes_the_site_and_keeps_a_folder_it_would_overwrite(exported):
    site = exported
    names = set(digests(site))
    assert {"index.html", "app.js", "models/index.json", "_headers"} <= names
    assert {f"ort/{name}" for name in ORT_FILES} <= names
    assert {f"models/{bundled_model(n).name}" for n in BUNDLED} <= names
    assert "Cross-Origin-Embedder-Policy: require-corp" in (site / "_headers").read_text()
    assert not [n for n in names if ".lmk-part" in n]
    before = digests(site)
    one_error_line(lmk_web("--export", str(site)), "pass --overwrite")
    assert digests(site) == before


def test_exported_site_runs_on_a_plain_static_host_on_one_thread(exported, browser):
    """No COOP/COEP headers (Python's http.server): no cross-origin isolation, so the WASM EP
    runs one thread, and the page says so and still works."""
    site = exported
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=site,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}/"
        for _ in range(100):
            try:
                fetch(url)
                break
            except OSError:
                subprocess.run(["sleep", "0.1"], check=False)
        page = open_page(browser, url)
        info = page.evaluate("window.lmk.info()")
        assert info["isolated"] is False and info["threads"] == 1
        assert info["shown"]["ep"] == "WASM, SIMD, 1 thread"
        assert info["model"]["model"] == "pipnet"
        assert "1 WASM thread" in page.locator("#note").inner_text()
        page.close()
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_lmk_web_export_never_writes_over_one_of_its_models(tmp_path, ort_installed):
    """With --overwrite into a folder that holds the model being exported: refused before
    anything is written, every file as it was."""
    site = tmp_path / "site"
    (site / "models").mkdir(parents=True)
    model = site / "models" / bundled_model("pipnet").name
    model.write_bytes(bundled_model("pipnet").read_bytes())
    (site / "index.html").write_text("my own page\n")
    before = digests(site)
    one_error_line(lmk_web(str(model), "--export", str(site), "--overwrite"), "is an input")
    assert digests(site) == before


def test_lmk_web_serves_a_detector_file_in_its_own_menu(needs_blazeface, ort_installed):
    """--detector PATH, and without it the cached file of `lmk models fetch blazeface`."""
    with serve_page([], needs_blazeface) as url:
        rows = json.loads(fetch(url + "models/index.json")[2])
    assert [(r["name"], r["kind"]) for r in rows] == [
        *[(bundled_model(n).name, "landmarks") for n in BUNDLED], (needs_blazeface.name, "detector"),
    ]  # fmt: skip
    cache = needs_blazeface.parent.parent  # the LMK_CACHE_DIR the fetch wrote into
    server = subprocess.Popen(
        [LMK, "web", "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "LMK_CACHE_DIR": str(cache)},
    )  # fmt: skip
    try:
        assert server.stdout is not None
        assert f"{needs_blazeface.name} (detector)" in server.stdout.readline()
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_lmk_web_refuses_a_detector_that_is_not_an_lmk_blazeface_file(tmp_path, ort_installed):
    one_error_line(lmk_web("--detector", str(tmp_path / "missing.onnx")), "detector not found")
    tflite = tmp_path / "face_detection_back.tflite"
    tflite.write_bytes(b"TFL3")
    one_error_line(lmk_web("--detector", str(tflite)), "lmk models fetch blazeface")
    landmarks = bundled_model("pipnet")
    one_error_line(lmk_web("--detector", str(landmarks)), "not an lmk BlazeFace detector file")
