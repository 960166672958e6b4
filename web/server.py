"""A local server for the page with the headers cross-origin isolation needs.

onnxruntime-web's WASM EP runs threads only in a cross-origin isolated page (they need
``SharedArrayBuffer``): the page itself must be sent with ``Cross-Origin-Opener-Policy:
same-origin`` and ``Cross-Origin-Embedder-Policy: require-corp``. Python's own
``http.server`` sends neither, hence this small handler over the site's file table.
"""

from __future__ import annotations

import contextlib
import errno
import shutil
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

from lmk.core.errors import LmkError

ISOLATION_HEADERS = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
}
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".wasm": "application/wasm",
    ".onnx": "application/octet-stream",
}


def make_handler(
    files: dict[str, Path], generated: dict[str, bytes]
) -> type[BaseHTTPRequestHandler]:
    """A handler serving exactly ``files`` (site path -> file) and ``generated`` (site path
    -> bytes); anything else is 404, so nothing outside the site can be read."""

    class SiteHandler(BaseHTTPRequestHandler):
        server_version = "lmk-web"

        def log_message(self, format: str, *args: object) -> None:
            pass  # one line per request would bury the page's address

        def _headers(self, status: HTTPStatus, content_type: str, length: int) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(length))
            self.send_header("Cache-Control", "no-store")
            for key, value in ISOLATION_HEADERS.items():
                self.send_header(key, value)
            self.end_headers()

        def _serve(self, body: bool) -> None:
            name = unquote(urlsplit(self.path).path).lstrip("/") or "index.html"
            content_type = CONTENT_TYPES.get(Path(name).suffix, "application/octet-stream")
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                if name in generated:
                    data = generated[name]
                    self._headers(HTTPStatus.OK, content_type, len(data))
                    if body:
                        self.wfile.write(data)
                    return
                path = files.get(name)
                if path is None or not path.is_file():
                    message = b"not found\n"
                    self._headers(HTTPStatus.NOT_FOUND, "text/plain", len(message))
                    if body:
                        self.wfile.write(message)
                    return
                self._headers(HTTPStatus.OK, content_type, path.stat().st_size)
                if body:
                    with path.open("rb") as src:
                        shutil.copyfileobj(src, self.wfile)

        def do_GET(self) -> None:
            self._serve(body=True)

        def do_HEAD(self) -> None:
            self._serve(body=False)

    return SiteHandler


def open_server(
    files: dict[str, Path], generated: dict[str, bytes], host: str, port: int
) -> ThreadingHTTPServer:
    """Bind the site to ``host:port`` (0: any free port); a taken port is an LmkError."""
    try:
        server = ThreadingHTTPServer((host, port), make_handler(files, generated))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise LmkError(
                f"port {port} is in use; pick another with --port (0: any free port)"
            ) from None
        raise LmkError(f"cannot serve on {host}:{port}: {exc.strerror}") from None
    server.daemon_threads = True
    return server
