"""Serve a local-directory bucket over HTTP, the way GCS serves the public bucket.

URLs are object keys: /all-datasets.json, /api/v1/tables/<ds>/<table>/v<N>/files, ... An object
that is also a "directory" (the `files` listing) resolves as on GCS. Read-only; GET and HEAD only;
loopback by default.

The request path is normalised once (`object_key`): percent-decoded once, dot segments
resolved, and refused when malformed (400: not UTF-8, a NUL or other control character, a
backslash, a `..` above the root). A key that resolves into a hidden prefix (`_staging/`, where
export leaves runs' parts) or names a hidden file (`.object` and the other dot-files the local
store keeps) is answered 404, like any object that does not exist. Nothing a client sends ends a
connection without a status line.
"""

from __future__ import annotations

import logging
import mimetypes
import re
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote_to_bytes, urlsplit

from pubdata.stores.base import StoreError
from pubdata.stores.local import LocalStore

log = logging.getLogger(__name__)
JSON_KEYS = ("files", "last_updated")
HIDDEN_PREFIXES = ("_staging",)
"""First path segments never served: export's staging prefix (publishing.export.STAGING_PREFIX)."""


_BAD_ESCAPE = re.compile("%(?![0-9A-Fa-f]{2})")


class BadPath(ValueError):
    """The request path is malformed or points outside the bucket: answered 400."""


def object_key(request_target: str) -> str | None:
    """The object key a request asks for, or None when it is hidden (answered 404).

    Raises BadPath for a malformed path. The one place that turns a URL into a key: what is
    checked is exactly what is read.
    """
    if not request_target.isascii() or any(c <= " " or c == "\x7f" for c in request_target):
        raise BadPath("the path must be ASCII without spaces or control characters (percent-encode the rest)")
    if request_target.startswith("/"):  # origin-form; urlsplit would read //host/x as a host
        path = request_target.split("?", 1)[0].split("#", 1)[0]
    elif request_target.lower().startswith(("http://", "https://")):  # absolute-form
        path = urlsplit(request_target).path or "/"
    else:
        raise BadPath("the path must start with /")
    if _BAD_ESCAPE.search(path):
        raise BadPath("the path holds a % that is not followed by two hex digits")
    try:
        decoded = unquote_to_bytes(path).decode("utf-8")
    except UnicodeDecodeError:
        raise BadPath("the path does not decode to UTF-8") from None
    if any(c < " " or c == "\x7f" for c in decoded):
        raise BadPath("the path holds a NUL or another control character")
    if "\\" in decoded:
        raise BadPath("the path holds a backslash")
    segments: list[str] = []
    for segment in decoded.split("/")[1:]:
        if segment == "..":
            if not segments:
                raise BadPath("the path leads outside the bucket")
            segments.pop()
        elif segment not in (".", ""):
            segments.append(segment)
    directory = decoded.endswith(("/", "/.", "/..")) or not segments
    if any(s.startswith(".") for s in segments) or (segments and segments[0] in HIDDEN_PREFIXES):
        return None
    return "/".join(segments + (["index.html"] if directory else []))


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

        def _send(self, body: bool):
            try:
                key = object_key(self.path)
            except BadPath as exc:
                self.send_error(HTTPStatus.BAD_REQUEST, "Bad Request", str(exc))
                return
            try:
                obj = store.read(key) if key is not None else None
            except (StoreError, OSError, ValueError):
                obj = None
            if obj is None:
                self.send_error(HTTPStatus.NOT_FOUND, "Not Found", "no such object")
                return
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", _content_type(key or ""))
            self.send_header("Content-Length", str(len(obj.data)))
            self.send_header("ETag", f'"{obj.generation}"')
            self.send_header("Access-Control-Allow-Origin", "*")
            self.end_headers()
            if body:
                self.wfile.write(obj.data)

        def _answer(self, body: bool):
            try:
                self._send(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client left
            except Exception:  # a bug: still a status line, never a dropped connection
                log.exception("pubdata serve: %s", self.requestline[:200])
                try:
                    self.send_error(HTTPStatus.INTERNAL_SERVER_ERROR)
                except OSError:
                    pass

        def do_GET(self):
            self._answer(True)

        def do_HEAD(self):
            self._answer(False)

        def log_message(self, format, *args):  # quiet unless asked
            if getattr(self.server, "verbose", False):
                super().log_message(format, *args)

    return Handler


def start(store: LocalStore, host: str = "127.0.0.1", port: int = 8000, *, verbose: bool = False) -> ThreadingHTTPServer:
    """Start serving in a background thread (port 0: any free port); call .shutdown() to stop."""
    server = ThreadingHTTPServer((host, port), make_handler(store))
    server.verbose = verbose  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True, name="pubdata-serve").start()
    return server
