"""`pubdata serve` on loopback: the request path is normalised once; hidden objects (the staging
prefix, the local store's dot-files) and anything outside the bucket are never served; malformed
paths get 400; and a seeded fuzz of a few thousand odd paths never gets a hidden object nor a
dropped connection."""

from __future__ import annotations

import random
import socket

import pytest

from pubdata.stores import serve
from pubdata.stores.local import LocalStore

SECRETS = {  # key (or path outside the bucket) -> content that must never be served
    "_staging/telemetry_public/page_loads/v1/2026-11-01/run/000000000000.json": b"SECRET-STAGED-ROWS",
    "api/v1/tables/t/x/v1/files/.x.tmp": b"SECRET-TEMPORARY",
    ".hidden": b"SECRET-DOTFILE",
}
OUTSIDE = b"SECRET-OUTSIDE-THE-BUCKET"
LISTING = b'["SHARED-LISTING"]'


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    bucket = root / "public"
    store = LocalStore(bucket)
    store.write("index.html", b"<h1>catalog</h1>", content_type="text/html")
    store.write("api/v1/tables/t/x/v1/files", LISTING, content_type="application/json")  # becomes files/.object
    store.write("api/v1/tables/t/x/v1/files/2026-11-01/000000000000.json", b"[1]", content_type="application/json")
    for key, data in SECRETS.items():
        path = bucket / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (root / "outside.txt").write_bytes(OUTSIDE)
    assert (bucket / "api/v1/tables/t/x/v1/files/.object").read_bytes() == LISTING
    server = serve.start(store, "127.0.0.1", 0)
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def request(port: int, target: bytes, method: bytes = b"GET") -> tuple[int, bytes]:
    """Send one raw request line (any bytes) and read the whole answer; (status, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(method + b" " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    answer = b"".join(chunks)
    assert answer.startswith(b"HTTP/1."), f"no status line for {target!r}: {answer[:80]!r}"
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


@pytest.mark.parametrize("target, status", [
    (b"/", 200),
    (b"/api/v1/tables/t/x/v1/files", 200),
    (b"/api/v1/tables/t/x/v1/files/2026-11-01/000000000000.json", 200),
    (b"/api/v1/tables/t/x/v1/files/./2026-11-01/../2026-11-01/000000000000.json", 200),
    (b"/api/v1/tables/t/x/v1/files?cache=bust", 200),
    (b"/_staging/telemetry_public/page_loads/v1/2026-11-01/run/000000000000.json", 404),
    (b"/./_staging/telemetry_public/page_loads/v1/2026-11-01/run/000000000000.json", 404),
    (b"/%2e/_staging/telemetry_public/page_loads/v1/2026-11-01/run/000000000000.json", 404),
    (b"/%5Fstaging/telemetry_public/page_loads/v1/2026-11-01/run/000000000000.json", 404),
    (b"/_staging%2Ftelemetry_public%2Fpage_loads/v1/2026-11-01/run/000000000000.json", 404),
    (b"/api/../_staging/telemetry_public/page_loads/v1/2026-11-01/run/000000000000.json", 404),
    (b"/api/v1/tables/t/x/v1/files/.object", 404),
    (b"/api/v1/tables/t/x/v1/files/%2Eobject", 404),
    (b"/api/v1/tables/t/x/v1/files/.x.tmp", 404),
    (b"/.hidden", 404),
    (b"/../outside.txt", 400),
    (b"/%2e%2e/outside.txt", 400),
    (b"/%2e%2e%2foutside.txt", 400),
    (b"/..%5coutside.txt", 400),
    (b"/%c0%ae%c0%ae/outside.txt", 400),
    (b"/%00", 400),
    (b"/index.html%00.json", 400),
    (b"/%zz", 400),
    (b"/%ff", 400),
    (b"/\xc3\xa9", 400),
    (b"*", 400),
    (b"/no/such/object", 404),
    (b"/%E2%9C%93", 404),  # a key that is not latin-1: a status line all the same
])
def test_each_route_is_answered_as_it_should(served, target, status):
    got, body = request(served, target)
    assert got == status, (target, got, body[:200])
    assert not any(secret in body for secret in [*SECRETS.values(), OUTSIDE])
    if target == b"/api/v1/tables/t/x/v1/files":
        assert body == LISTING


def _odd_path(rng: random.Random) -> bytes:
    pieces = [b"", b".", b"..", b"%2e", b"%2E%2e", b".%2e", b"_staging", b"%5fstaging", b"_STAGING", b".object",
              b"%2eobject", b".hidden", b"%2ehidden", b"api", b"v1", b"tables", b"t", b"x", b"files", b"2026-11-01",
              b"000000000000.json", b"index.html", b"outside.txt", b"%00", b"%", b"%2", b"%zz", b"\\", b"%5c", b"%2f",
              b"%2F", b"%c0%ae", b"%ff", b"\xc3\xa9", b"%e2%9c%93", b";", b"~", b"%20", b"\x7f", b"\x01", b"a" * 300]
    separators = [b"/", b"/", b"/", b"//", b"%2f", b"\\", b"%5c", b"/./", b"/../"]
    path = b"/"
    for _ in range(rng.randint(0, 7)):
        path += rng.choice(pieces) + rng.choice(separators)
    path = path[: -1] if rng.random() < 0.5 and len(path) > 1 else path
    roll = rng.random()
    if roll < 0.05:
        path = bytes(rng.randrange(33, 256) for _ in range(rng.randint(1, 40)))  # anything at all
    elif roll < 0.10:
        path = b"http://127.0.0.1" + path
    elif roll < 0.20:
        path += b"?" + rng.choice(pieces) + b"#" + rng.choice(pieces)
    return path


def test_fuzzed_paths_never_reach_a_hidden_object_nor_drop_a_connection(served):
    rng = random.Random(20261101)
    statuses: dict[int, int] = {}
    for _ in range(3000):
        target = _odd_path(rng)
        method = b"HEAD" if rng.random() < 0.1 else b"GET"
        status, body = request(served, target, method)  # asserts a status line came back
        statuses[status] = statuses.get(status, 0) + 1
        assert status in (200, 400, 404), (target, status)
        assert not any(secret in body for secret in [*SECRETS.values(), OUTSIDE]), target
        if status == 200 and method == b"GET":
            assert body in (LISTING, b"[1]", b"<h1>catalog</h1>"), (target, body[:100])
    assert statuses.get(200) and statuses.get(400) and statuses.get(404), statuses
