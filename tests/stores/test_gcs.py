"""GCSStore against fake-gcs-server on loopback: the same contract as LocalStore, plus GCS specifics
(gzip content-encoding, server-side copy, retries of transient errors, helpful permanent errors)."""

from __future__ import annotations

import base64
import gzip
import http.server
import json
import os
import re
import subprocess
import sys
import threading
import tracemalloc
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

import pytest
import requests

from pubdata.errors import ConfigurationError
from pubdata.stores import PreconditionFailed, StoreError, open_store
from pubdata.stores.base import StoredObject
from pubdata.stores.gcs import _UPLOAD_CHUNK_SIZE, GCSStore
from tests.support.gcs_emulator import create_bucket

gcs = pytest.mark.gcs
JSON = "application/json"


def _blob(store: GCSStore, key: str):
    """The object's metadata as GCS reports it, read with a separate client."""
    blob = store._bucket().get_blob(store.prefix + key)
    assert blob is not None, key
    return blob


def _media_url(endpoint: str, store: GCSStore, key: str) -> str:
    return f"{endpoint}/storage/v1/b/{store.bucket_name}/o/{quote(store.prefix + key, safe='')}?alt=media"


# -- no emulator needed ---------------------------------------------------------------------


def test_from_url_splits_bucket_and_prefix():
    store = GCSStore.from_url("gs://pub-bucket/some/prefix/")
    assert (store.bucket_name, store.prefix, store.url) == ("pub-bucket", "some/prefix/", "gs://pub-bucket/some/prefix")
    bare = open_store("gs://pub-bucket")
    assert isinstance(bare, GCSStore)
    assert (bare.bucket_name, bare.prefix, bare.url) == ("pub-bucket", "", "gs://pub-bucket")


def test_from_url_rejects_missing_bucket():
    with pytest.raises(StoreError, match="gs://<bucket>"):
        GCSStore.from_url("gs:///prefix")


def test_importing_stores_does_not_import_google_clients():
    """DAG files import pubdata.stores at parse time; google clients must stay unloaded."""
    code = (
        "import sys, pubdata.stores, pubdata.stores.gcs\n"
        "pubdata.stores.gcs.GCSStore.from_url('gs://b/p')\n"
        "loaded = [m for m in sys.modules if m.startswith(('google.cloud', 'google.api_core'))]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "STORAGE_EMULATOR_HOST": ""})


# -- the store contract ---------------------------------------------------------------------


@gcs
def test_roundtrip(gcs_store):
    assert gcs_store.read("a/b.json") is None
    assert not gcs_store.exists("a/b.json")
    gen = gcs_store.write("a/b.json", b'{"x": 1}', content_type=JSON)
    obj = gcs_store.read("a/b.json")
    assert obj is not None and obj.data == b'{"x": 1}' and obj.generation == gen
    assert gcs_store.exists("a/b.json")
    gen2 = gcs_store.write("a/b.json", b'{"x": 2}', content_type=JSON, cache_control="no-cache")
    assert gen2 != gen
    assert gcs_store.read("a/b.json").data == b'{"x": 2}'
    blob = _blob(gcs_store, "a/b.json")
    assert (blob.content_type, blob.cache_control, blob.content_encoding) == (JSON, "no-cache", None)


@gcs
def test_gzip_content_encoding_is_served_like_gcs(gcs_store, gcs_endpoint):
    payload = json.dumps([{"country": "DE", "page_loads": i} for i in range(2000)]).encode()
    gcs_store.write("files/000000000000.json", payload, content_type=JSON, compress=True,
                    cache_control="public, max-age=3600")

    blob = _blob(gcs_store, "files/000000000000.json")
    assert blob.content_encoding == "gzip"
    assert blob.content_type == JSON
    assert blob.cache_control == "public, max-age=3600"
    assert blob.size < len(payload)  # stored compressed
    assert gcs_store.read("files/000000000000.json").data == payload

    # A client accepting gzip (requests does by default) gets the stored gzip bytes with
    # Content-Encoding: gzip and decodes them itself, as browsers do with GCS.
    for url in (_media_url(gcs_endpoint, gcs_store, "files/000000000000.json"),
                f"{gcs_endpoint}/{gcs_store.bucket_name}/files/000000000000.json"):  # path-style public URL
        response = requests.get(url, timeout=10, stream=True)
        assert response.status_code == 200
        assert response.headers["Content-Encoding"] == "gzip"
        assert response.headers["Cache-Control"] == "public, max-age=3600"
        raw = response.raw.read(decode_content=False)
        assert raw[:2] == b"\x1f\x8b" and gzip.decompress(raw) == payload
        assert requests.get(url, timeout=10).content == payload

        # A client that refuses gzip gets the object decompressed (GCS decompressive transcoding).
        plain = requests.get(url, headers={"Accept-Encoding": "identity"}, timeout=10)
        assert plain.status_code == 200
        assert "Content-Encoding" not in plain.headers
        assert plain.content == payload


@gcs
def test_download_file_streams_to_disk_decompressed(gcs_store, tmp_path):
    payload = json.dumps([{"row": i} for i in range(5000)]).encode()
    gcs_store.write("files/x.json", payload, content_type=JSON, compress=True)

    gcs_store.download_file("files/x.json", tmp_path / "x.json")

    assert (tmp_path / "x.json").read_bytes() == payload
    with pytest.raises(StoreError, match="does not exist"):
        gcs_store.download_file("files/missing.json", tmp_path / "missing.json")
    assert not (tmp_path / "missing.json").exists()


@gcs
def test_if_generation_match_zero_means_only_if_absent(gcs_store):
    gen = gcs_store.write("k", b"first", content_type="text/plain", if_generation_match=0)
    with pytest.raises(PreconditionFailed):
        gcs_store.write("k", b"second", content_type="text/plain", if_generation_match=0)
    assert gcs_store.read("k") == StoredObject(b"first", gen)


@gcs
def test_stale_generation_is_refused(gcs_store):
    gen1 = gcs_store.write("k", b"v1", content_type="text/plain")
    gen2 = gcs_store.write("k", b"v2", content_type="text/plain", if_generation_match=gen1)
    with pytest.raises(PreconditionFailed):
        gcs_store.write("k", b"v3", content_type="text/plain", if_generation_match=gen1)
    with pytest.raises(PreconditionFailed):  # a generation for an object that does not exist
        gcs_store.write("absent", b"v", content_type="text/plain", if_generation_match=gen2)
    assert gcs_store.read("k").data == b"v2"
    assert gcs_store.write("k", b"v4", content_type="text/plain", if_generation_match=gen2) > 0


def read_modify_write(store, key: str, item: int, *, compress: bool = False) -> int:
    """Append item to the JSON list at key with optimistic concurrency; return the conflicts met."""
    conflicts = 0
    while True:
        current = store.read(key)
        doc = json.loads(current.data) if current else {"updates": []}
        doc["updates"].append(item)
        try:
            store.write(key, json.dumps(doc).encode(), content_type=JSON, compress=compress,
                        if_generation_match=current.generation if current else 0)
            return conflicts
        except PreconditionFailed:
            conflicts += 1


@gcs
def test_concurrent_read_modify_write_loses_no_update(gcs_store):
    workers = 20
    start = threading.Barrier(workers)

    def work(i: int) -> int:
        start.wait()
        return read_modify_write(gcs_store, "all-datasets.json", i, compress=True)

    with ThreadPoolExecutor(workers) as pool:
        conflicts = sum(pool.map(work, range(workers)))
    updates = json.loads(gcs_store.read("all-datasets.json").data)["updates"]
    assert sorted(updates) == list(range(workers))
    assert conflicts > 0  # the preconditions were really exercised


@gcs
def test_list_by_prefix(gcs_store):
    for key in ["api/v1/tables/a/t/v1/files/2026-11-01/000000000000.json", "api/v1/tables/a/t/v1/last_updated",
                "api/v1/tables/b/t/v1/metadata.json", "all-datasets.json"]:
        gcs_store.write(key, b"{}", content_type=JSON)
    assert gcs_store.list("api/v1/tables/a/") == [
        "api/v1/tables/a/t/v1/files/2026-11-01/000000000000.json",
        "api/v1/tables/a/t/v1/last_updated",
    ]
    assert gcs_store.list("api/v1/tables/a/t/v1/l") == ["api/v1/tables/a/t/v1/last_updated"]
    assert len(gcs_store.list("")) == 4
    assert gcs_store.list("nothing/") == []


@gcs
def test_prefix_is_prepended_and_stripped(gcs_store):
    scoped = GCSStore(gcs_store.bucket_name, "public/v1")
    assert scoped.url == f"gs://{gcs_store.bucket_name}/public/v1"
    scoped.write("x/a.json", b"1", content_type=JSON)
    gcs_store.write("public/v1-other/b.json", b"2", content_type=JSON)  # shares the text prefix only
    gcs_store.write("outside.json", b"3", content_type=JSON)
    assert gcs_store.read("public/v1/x/a.json").data == b"1"
    assert scoped.list("") == ["x/a.json"]
    assert scoped.list("x/") == ["x/a.json"]
    scoped.copy("x/a.json", "y/a.json")
    assert gcs_store.list("public/v1/") == ["public/v1/x/a.json", "public/v1/y/a.json"]
    scoped.delete("x/a.json")
    assert scoped.list("") == ["y/a.json"]


@gcs
def test_delete(gcs_store):
    gcs_store.write("k", b"v", content_type="text/plain")
    gcs_store.delete("k")
    assert gcs_store.read("k") is None
    gcs_store.delete("k")  # absent is fine
    assert gcs_store.list("") == []


@gcs
def test_copy_is_server_side_and_keeps_metadata(gcs_store):
    gcs_store.write("src.json", b'{"a": 1}', content_type=JSON, compress=True, cache_control="no-cache")
    gcs_store.copy("src.json", "staging/dst.json")
    assert gcs_store.read("staging/dst.json").data == b'{"a": 1}'
    blob = _blob(gcs_store, "staging/dst.json")
    assert (blob.content_type, blob.content_encoding, blob.cache_control) == (JSON, "gzip", "no-cache")
    gcs_store.copy("src.json", "staging/dst.json")  # overwriting is fine
    with pytest.raises(StoreError, match="does not exist"):
        gcs_store.copy("missing.json", "x.json")


@gcs
def test_copy_from_another_bucket_is_a_server_side_rewrite(gcs_store, gcs_endpoint, tmp_path):
    """Publish copies parts from the private staging bucket into the public one without downloading them."""
    from pubdata.stores.local import LocalStore

    staging = GCSStore(create_bucket(gcs_endpoint), "staging")
    staging.write("exports/part.json", b'[{"a": 1}]', content_type=JSON, compress=True)
    gcs_store.copy_from(staging, "exports/part.json", "files/v/part.json", content_type="text/plain")
    assert gcs_store.read("files/v/part.json").data == b'[{"a": 1}]'
    blob = _blob(gcs_store, "files/v/part.json")
    assert (blob.content_type, blob.content_encoding) == (JSON, "gzip")  # the staged object's, not re-uploaded
    with pytest.raises(StoreError, match="does not exist"):
        gcs_store.copy_from(staging, "exports/missing.json", "x.json", content_type=JSON)
    # From a local directory (a single-machine setup): streamed through a temporary file.
    local = LocalStore(tmp_path / "staging")
    local.write("p.csv", b"a\n1\n", content_type="text/csv")
    gcs_store.copy_from(local, "p.csv", "files/v/p.csv", content_type="text/csv", compress=True)
    assert gcs_store.read("files/v/p.csv").data == b"a\n1\n"
    assert _blob(gcs_store, "files/v/p.csv").content_encoding == "gzip"


@gcs
def test_links_open_the_object(gcs_store, gcs_endpoint, monkeypatch):
    gcs_store.write("reports/r 1.html", b"<p>report</p>", content_type="text/html")
    link = gcs_store.link("reports/r 1.html")
    assert requests.get(link, timeout=10).content == b"<p>report</p>"  # on the emulator, its download URL
    monkeypatch.delenv("STORAGE_EMULATOR_HOST")
    assert GCSStore("private-bucket", "state").link("reports/r 1.html") == (
        "https://storage.cloud.google.com/private-bucket/state/reports/r%201.html")


@gcs
@pytest.mark.parametrize("compress", [True, False])
def test_upload_file_streams_a_multi_megabyte_file(gcs_store, tmp_path, compress):
    # 16 MiB of base64 noise plus 8 MiB of repetitive rows: over the 8 MiB single-request limit
    # even compressed, so the upload goes through the resumable, chunked path.
    path = tmp_path / "rows.json"
    with open(path, "wb") as fh:
        fh.write(base64.b64encode(os.urandom(12 * 1024 * 1024)))
        fh.write(b'{"country": "DE", "page_loads": 12345}\n' * (8 * 1024 * 1024 // 40))
    gcs_store.write("warm-up", b"", content_type=JSON)  # client set up outside the measurement
    tracemalloc.start()
    try:
        gcs_store.upload_file("files/rows.json", path, content_type=JSON, compress=compress)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 * _UPLOAD_CHUNK_SIZE + 2 * 1024 * 1024 < path.stat().st_size  # chunks, not the file

    blob = _blob(gcs_store, "files/rows.json")
    assert blob.content_type == JSON
    assert blob.content_encoding == ("gzip" if compress else None)
    size = path.stat().st_size
    assert (blob.size < size) if compress else (blob.size == size)
    assert blob.size > 8 * 1024 * 1024
    assert gcs_store.read("files/rows.json").data == path.read_bytes()


@gcs
def test_invalid_keys_are_refused(gcs_store):
    for key in ["", "/abs", "a/../b", "a//b", "./a"]:
        with pytest.raises(StoreError, match="invalid object key"):
            gcs_store.write(key, b"x", content_type="text/plain")


# -- permanent and transient errors ---------------------------------------------------------


@gcs
def test_missing_bucket_says_what_to_fix(gcs_endpoint, monkeypatch):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_endpoint)
    store = GCSStore.from_url("gs://no-such-bucket/pub")
    operations = [
        lambda: store.read("k"),
        lambda: store.exists("k"),
        lambda: store.write("k", b"x", content_type="text/plain"),
        lambda: store.write("k", b"x", content_type="text/plain", if_generation_match=0),
        lambda: store.list(""),
        lambda: store.delete("k"),
        lambda: store.copy("a", "b"),
    ]
    for operation in operations:
        with pytest.raises(ConfigurationError) as info:
            operation()
        assert not isinstance(info.value, PreconditionFailed)
        message = str(info.value)
        assert "bucket no-such-bucket does not exist or is not visible to these credentials" in message
        assert "PUBDATA_BUCKET" in message


BUCKET_METADATA = re.compile(r"GET /storage/v1/b/[^/?]+(\?|$)")


class FaultyProxy:
    """An HTTP proxy in front of the emulator that fails the next requests on demand.

    A fault is an HTTP status to answer instead of forwarding, or "reset" to drop the connection
    without answering. Bucket-metadata lookups pass untouched and uncounted: the client library
    (3.x) fetches them in a background thread for tracing, at moments the test does not control.
    """

    def __init__(self, upstream: str):
        self.upstream = upstream
        self.faults: list[int | str] = []
        self.requests: list[str] = []
        self.lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _handle(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                fault = None
                if not BUCKET_METADATA.match(f"{self.command} {self.path}"):
                    with proxy.lock:
                        proxy.requests.append(f"{self.command} {self.path}")
                        fault = proxy.faults.pop(0) if proxy.faults else None
                if fault == "reset":
                    self.close_connection = True
                    return
                if fault is not None:
                    error = json.dumps({"error": {"code": fault, "message": f"injected {fault}"}}).encode()
                    self.send_response(fault)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(error)))
                    self.end_headers()
                    self.wfile.write(error)
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                upstream = requests.request(self.command, proxy.upstream + self.path, headers=headers, data=body,
                                            stream=True, allow_redirects=False, timeout=30)
                content = upstream.raw.read(decode_content=False)
                self.send_response(upstream.status_code)
                for name, value in upstream.headers.items():
                    if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                pass  # clients hanging up on dropped connections are part of the test

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FaultyProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def fail_next(self, *faults: int | str) -> None:
        with self.lock:
            self.faults[:] = list(faults)
            self.requests.clear()


@pytest.fixture
def faulty(gcs_endpoint, monkeypatch) -> Iterator[tuple[FaultyProxy, GCSStore]]:
    """A store whose every request passes through a FaultyProxy; retries back off in milliseconds."""
    from google.cloud.storage.retry import DEFAULT_RETRY

    bucket = create_bucket(gcs_endpoint)
    with FaultyProxy(gcs_endpoint) as proxy:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)
        fast = DEFAULT_RETRY.with_delay(initial=0.01, maximum=0.05, multiplier=2).with_timeout(10)
        yield proxy, GCSStore(bucket, retry=fast)


@gcs
def test_transient_errors_are_retried(faulty):
    proxy, store = faulty
    proxy.fail_next(503, "reset", 429)
    gen = store.write("k", b"v1", content_type="text/plain")
    assert len(proxy.requests) == 4 and store.read("k").data == b"v1"

    proxy.fail_next(500, 502)  # conditional writes are retried too: the precondition makes it safe
    gen = store.write("k", b"v2", content_type="text/plain", if_generation_match=gen)
    assert len(proxy.requests) == 3

    proxy.fail_next(503, "reset")
    assert store.read("k").data == b"v2"
    proxy.fail_next(503)
    assert store.list("") == ["k"]
    proxy.fail_next(504)
    store.copy("k", "k2")
    proxy.fail_next(503)
    store.delete("k2")
    assert store.list("") == ["k"]
    assert store.read("k").generation == gen


@gcs
def test_permanent_errors_are_not_retried(faulty):
    proxy, store = faulty
    proxy.fail_next(403)
    with pytest.raises(ConfigurationError, match="roles/storage.objectAdmin") as info:
        store.write("k", b"v", content_type="text/plain")
    assert "injected 403" in str(info.value)
    assert len(proxy.requests) == 1

    proxy.fail_next(400)
    with pytest.raises(ConfigurationError, match="invalid: .*injected 400"):
        store.read("k")
    assert len(proxy.requests) == 1

    proxy.fail_next(401)  # the session tries to refresh the credentials; anonymous ones cannot
    with pytest.raises(ConfigurationError, match="credentials in use were refused"):
        store.list("")
    assert len(proxy.requests) == 1


@gcs
def test_retries_give_up_with_a_store_error(faulty):
    from google.cloud.storage.retry import DEFAULT_RETRY

    proxy, store = faulty
    store._retry_override = DEFAULT_RETRY.with_delay(initial=0.01, maximum=0.02).with_timeout(0.5)
    proxy.fail_next(*[503] * 1000)
    with pytest.raises(StoreError, match="kept failing after retries .*injected 503"):
        store.write("k", b"v", content_type="text/plain")
    assert len(proxy.requests) > 2


@gcs
def test_store_survives_pickling(gcs_store):
    """Stores cross process boundaries (multiprocessing, executors); clients are rebuilt there."""
    import pickle

    gcs_store.write("k", b"v", content_type="text/plain")
    clone = pickle.loads(pickle.dumps(gcs_store))
    assert clone.read("k").data == b"v"

