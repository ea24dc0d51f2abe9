"""The HTTP layer of ``convnp explore``: the standard library's ThreadingHTTPServer routing to ``Explorer``.

    server = start(explorer, port=0)          # a background thread; server.url is http://127.0.0.1:PORT/
    ...
    server.shutdown(); server.server_close()

Routes (documented in docs/explorer.md): GET / and /static/<file> (from the package's static folder
only), GET /api/model, /api/presets, /api/live; POST /api/forward, /api/filter, /api/field, /api/race,
/api/conv, /api/stack, /api/live/open.  A request body is JSON of at most ``MAX_BODY`` bytes (413
past it); a malformed one or a bad value is a 400 with convnp's message; an unexpected failure is a
500 with a one-line message, and the server goes on serving.
"""
import json
import mimetypes
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from .arrays import RequestError

STATIC = Path(__file__).resolve().parent / "static"
MAX_BODY = 4 * 1024 * 1024
LOOPBACK = ("127.0.0.1", "localhost", "::1")
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".css": "text/css; charset=utf-8", ".png": "image/png", ".svg": "image/svg+xml",
                 ".json": "application/json"}


def static_file(relative):
    """The file ``relative`` inside the static folder, or None (missing, a folder, or outside it)."""
    if "\x00" in relative or "\\" in relative:
        return None
    path = (STATIC / relative.lstrip("/")).resolve()
    if STATIC not in path.parents or not path.is_file():
        return None
    return path


class Handler(BaseHTTPRequestHandler):
    server_version = "convnp-explore"
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002 - the name BaseHTTPRequestHandler uses
        if getattr(self.server, "verbose", False):
            super().log_message(format, *args)

    # --- replies -----------------------------------------------------------------------------------------
    def _send(self, status, body, content_type):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", "default-src 'self'; img-src 'self' data: blob:; "
                                                    "style-src 'self' 'unsafe-inline'")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status, value):
        self._send(status, json.dumps(value, allow_nan=False).encode("utf-8"), "application/json")

    def _error(self, status, message):
        self._json(status, {"error": " ".join(str(message).split()) or "error"})

    # --- GET -----------------------------------------------------------------------------------------------
    def do_GET(self):
        path = urlsplit(self.path).path
        explorer = self.server.explorer
        routes = {"/api/model": explorer.model_info, "/api/presets": explorer.presets, "/api/live": explorer.live}
        if path in routes:
            return self._answer(routes[path])
        if path in ("/", "/index.html"):
            path = "/static/index.html"
        if path.startswith("/static/"):
            file = static_file(path[len("/static/"):])
            if file is not None:
                return self._send(200, file.read_bytes(),
                                  CONTENT_TYPES.get(file.suffix) or mimetypes.guess_type(file.name)[0]
                                  or "application/octet-stream")
        if path == "/favicon.ico":
            return self._send(204, b"", "image/x-icon")
        self._error(404, f"no such page: {path}")

    do_HEAD = do_GET

    # --- POST ------------------------------------------------------------------------------------------------
    def do_POST(self):
        path = urlsplit(self.path).path
        explorer = self.server.explorer
        routes = {"/api/forward": explorer.forward, "/api/filter": explorer.layer_filter,
                  "/api/field": explorer.field, "/api/race": explorer.race, "/api/conv": explorer.conv,
                  "/api/stack": explorer.stack, "/api/live/open": lambda request: explorer.open_latest()}
        if path not in routes:
            self._drain()
            return self._error(404, f"no such API route: POST {path}")
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            self.close_connection = True
            return self._error(400, "Content-Length must be a whole number")
        if length > MAX_BODY:
            self.close_connection = True
            return self._error(413, f"request body of {length:,} bytes is larger than the {MAX_BODY:,} accepted")
        try:
            request = json.loads(self.rfile.read(length) or b"{}")
        except (ValueError, UnicodeDecodeError) as error:
            return self._error(400, f"the request body is not valid JSON: {error}")
        if not isinstance(request, dict):
            return self._error(400, f"the request body must be a JSON object, got {type(request).__name__}")
        self._answer(lambda: routes[path](request))

    def _drain(self):
        try:
            length = min(int(self.headers.get("Content-Length", "0")), MAX_BODY)
        except ValueError:
            length = 0
        if length:
            self.rfile.read(length)

    def _answer(self, compute):
        try:
            body = json.dumps(compute(), allow_nan=False).encode("utf-8")
        except (RequestError, ValueError, TypeError) as error:
            return self._error(400, error)
        except Exception as error:  # a failing request must not kill the server
            print(f"convnp explore: {self.command} {self.path} failed: {type(error).__name__}: {error}",
                  file=sys.stderr)
            return self._error(500, f"{type(error).__name__}: {error}")
        self._send(200, body, "application/json")


class ExplorerServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, explorer, host="127.0.0.1", port=8765, verbose=False):
        self.explorer, self.verbose = explorer, verbose
        super().__init__((host, port), Handler)

    @property
    def url(self):
        host, port = self.server_address[:2]
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{port}/"


def start(explorer, host="127.0.0.1", port=0, verbose=False):
    """Serve ``explorer`` from a background (daemon) thread -> the ExplorerServer (``.url``, ``.shutdown()``)."""
    server = ExplorerServer(explorer, host, port, verbose)
    thread = threading.Thread(target=server.serve_forever, name="convnp-explore", daemon=True)
    thread.start()
    server.thread = thread
    return server


def check_host(host):
    """A warning line when ``host`` is not the loopback address (anyone on the network could connect)."""
    if host in LOOPBACK:
        return None
    return (f"warning: serving on {host}, not the loopback address: other machines on the network can open "
            f"this page and run the model")
