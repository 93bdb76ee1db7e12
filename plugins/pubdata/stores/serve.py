"""Serve a local-directory bucket over HTTP, the way GCS serves the public bucket.

URLs are object keys: /all-datasets.json, /api/v1/tables/<ds>/<table>/v<N>/files, ... An object
that is also a "directory" (the `files` listing) resolves as on GCS. Read-only; GET and HEAD only;
loopback by default.
"""

from __future__ import annotations

import mimetypes
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

from pubdata.stores.base import StoreError
from pubdata.stores.local import LocalStore

JSON_KEYS = ("files", "last_updated")


def _content_type(key: str) -> str:
    name = key.rsplit("/", 1)[-1]
    if name in JSON_KEYS or name.endswith(".json"):
        return "application/json; charset=utf-8"
    if name.endswith(".parquet"):
        return "application/vnd.apache.parquet"
    if name.endswith(".csv"):
        return "text/csv; charset=utf-8"
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


def make_handler(store: LocalStore):
    class Handler(BaseHTTPRequestHandler):
        server_version = "pubdata"

        def _object(self):
            key = unquote(urlsplit(self.path).path).lstrip("/")
            if key == "" or key.endswith("/"):
                key += "index.html"
            if key.startswith("_staging/") or key == "_staging":
                return key, None
            try:
                return key, store.read(key)
            except StoreError:
                return key, None

        def _send(self, body: bool):
            key, obj = self._object()
            if obj is None:
                self.send_error(HTTPStatus.NOT_FOUND, f"no object {key}")
                return
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", _content_type(key))
            self.send_header("Content-Length", str(len(obj.data)))
            self.send_header("ETag", f'"{obj.generation}"')
            self.send_header("Access-Control-Allow-Origin", "*")
            self.end_headers()
            if body:
                self.wfile.write(obj.data)

        def do_GET(self):
            self._send(True)

        def do_HEAD(self):
            self._send(False)

        def log_message(self, format, *args):  # quiet unless asked
            if getattr(self.server, "verbose", False):
                super().log_message(format, *args)

    return Handler


def start(store: LocalStore, host: str = "127.0.0.1", port: int = 8000, *, verbose: bool = False) -> ThreadingHTTPServer:
    """Start serving in a background thread; call .shutdown() to stop."""
    server = ThreadingHTTPServer((host, port), make_handler(store))
    server.verbose = verbose  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True, name="pubdata-serve").start()
    return server
