"""Google Cloud Storage as the public bucket.

google.cloud.storage is imported inside methods only: DAG files import pubdata.stores while the
dag processor parses them, and google clients are too slow to import at parse time.

Retries follow the library's retry strategy: transient failures (429, 408, 5xx, connection
resets) back off exponentially through google.api_core.retry. Uploads guarded by
if_generation_match use the conditional policy, which retries only requests that carry a
generation precondition, so a retried write can never overwrite someone else's newer object.
The one ambiguity GCS leaves: when a conditional write lands but its answer is lost, the retry
meets the new generation and raises PreconditionFailed; read-modify-write loops re-read and
should find their own change already there (make updates idempotent, e.g. set, not append).
Permanent failures become StoreError naming what to fix.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pubdata.errors import ConfigurationError, PreconditionFailed, StoreError
from pubdata.stores.base import Store, StoredObject

# Resumable uploads send (and buffer) one chunk at a time; the library's default is 100 MiB.
_UPLOAD_CHUNK_SIZE = 8 * 1024 * 1024  # a multiple of 256 KiB, as GCS requires
_COPY_BUFFER = 1024 * 1024


class GCSStore(Store):
    """Objects live under gs://<bucket>/<prefix>; keys are relative to the prefix."""

    def __init__(self, bucket_name: str, prefix: str = "", client: Any = None, *, retry: Any = None):
        """client: a google.cloud.storage.Client to share; by default each thread makes its own.

        retry: a google.api_core.retry.Retry replacing the library's DEFAULT_RETRY (e.g. with a
        shorter deadline); it is still applied only where retrying is safe.
        """
        if not bucket_name or "/" in bucket_name:
            raise StoreError(f"invalid GCS bucket name {bucket_name!r}: use gs://<bucket>[/<prefix>]")
        self.bucket_name = bucket_name
        prefix = prefix.strip("/")
        self.prefix = f"{prefix}/" if prefix else ""
        self.url = f"gs://{bucket_name}" + (f"/{prefix}" if prefix else "")
        self._given_client = client
        self._retry_override = retry
        self._local = threading.local()
        self._bucket_seen = False

    @classmethod
    def from_url(cls, url: str, client: Any = None) -> GCSStore:
        if not url.startswith("gs://"):
            raise StoreError(f"{url!r} is not a GCS url: use gs://<bucket>[/<prefix>]")
        bucket, _, prefix = url[len("gs://"):].partition("/")
        return cls(bucket, prefix, client)

    def __repr__(self) -> str:
        return f"GCSStore({self.url!r})"

    # Thread-local clients cannot be pickled; a copy in another process builds its own.
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_local"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._local = threading.local()

    # -- clients, names, retry policies ---------------------------------------------------

    def _client(self):
        """One client per thread and per process.

        Clients are thread-safe, but each pools only 10 connections, so parallel uploads sharing
        one would keep dropping and reopening them; and a client must not cross a fork.
        """
        if self._given_client is not None:
            return self._given_client
        client = getattr(self._local, "client", None)
        if client is None or self._local.pid != os.getpid():
            client = _make_client(self.url)
            self._local.client, self._local.pid = client, os.getpid()
        return client

    def _bucket(self):
        return self._client().bucket(self.bucket_name)

    def _blob(self, key: str):
        return self._bucket().blob(self._name(key))

    def _name(self, key: str) -> str:
        parts = key.split("/")
        if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise StoreError(f"invalid object key {key!r}: use a relative path without '.', '..' or '//'")
        return self.prefix + key

    def _where(self, key: str | None = None) -> str:
        return f"gs://{self.bucket_name}/{self.prefix}{key}" if key is not None else self.url

    def _retry(self):
        from google.cloud.storage.retry import DEFAULT_RETRY

        return self._retry_override or DEFAULT_RETRY

    def _conditional_retry(self):
        from google.cloud.storage.retry import (
            DEFAULT_RETRY_IF_GENERATION_SPECIFIED,
            ConditionalRetryPolicy,
            is_generation_specified,
        )

        if self._retry_override is None:
            return DEFAULT_RETRY_IF_GENERATION_SPECIFIED
        return ConditionalRetryPolicy(self._retry_override, is_generation_specified, ["query_params"])

    # -- errors -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _errors(self, action: str, key: str | None = None) -> Iterator[None]:
        """Turn client exceptions into StoreError messages that say what to fix."""
        import http.client

        import requests
        import urllib3
        from google.api_core import exceptions as gexc
        from google.auth import exceptions as auth_exc

        where = self._where(key)
        try:
            yield
        except (StoreError, ConfigurationError):
            raise
        except gexc.PreconditionFailed as exc:
            raise PreconditionFailed(f"{where}: generation precondition failed while trying to {action}") from exc
        except gexc.NotFound as exc:
            raise self._bucket_missing() from exc
        except gexc.BadRequest as exc:
            raise ConfigurationError(f"GCS rejected the request to {action} {where} as invalid: {_short(exc)}") from exc
        except (
            gexc.RetryError,
            gexc.TooManyRequests,
            gexc.ServerError,
            auth_exc.TransportError,
            requests.RequestException,
            urllib3.exceptions.HTTPError,
            http.client.HTTPException,
            ConnectionError,
        ) as exc:
            # The transient kinds, once the retry deadline is spent (or retries were disabled).
            raise StoreError(
                f"cannot {action} {where}: GCS kept failing after retries ({_short(exc)}); "
                "check network access to storage.googleapis.com (or STORAGE_EMULATOR_HOST) and try again"
            ) from exc
        except (gexc.Forbidden, gexc.Unauthorized, auth_exc.GoogleAuthError) as exc:
            raise ConfigurationError(
                f"cannot {action} {where}: the credentials in use were refused ({_short(exc)}); grant them "
                f"roles/storage.objectAdmin on bucket {self.bucket_name}, or fix GOOGLE_APPLICATION_CREDENTIALS "
                "(gcloud auth application-default login) or PUBDATA_BUCKET"
            ) from exc
        except gexc.GoogleAPICallError as exc:
            raise StoreError(f"cannot {action} {where}: GCS answered {exc.code} ({_short(exc)})") from exc

    def _bucket_missing(self) -> ConfigurationError:
        return ConfigurationError(
            f"bucket {self.bucket_name} does not exist or is not visible to these credentials; "
            f"create it or fix PUBDATA_BUCKET (now {self.url})"
        )

    def _check_bucket(self) -> None:
        """GCS answers a bare 404 both for a missing object and a missing bucket; tell them apart.

        Listing one object needs only storage.objects.list, which a publisher already has (unlike
        buckets.get). A bucket once seen is assumed to stay.
        """
        if self._bucket_seen:
            return
        with self._errors("list", ""):
            iterator = self._client().list_blobs(
                self.bucket_name, prefix=self.prefix, max_results=1, retry=self._retry()
            )
            next(iter(iterator), None)
        self._bucket_seen = True

    # -- the Store interface ----------------------------------------------------------------

    def read(self, key: str) -> StoredObject | None:
        from google.api_core.exceptions import NotFound

        blob = self._blob(key)
        with self._errors("read", key):
            try:
                # Generation comes from the same response (x-goog-generation), so it matches the
                # bytes; objects stored with gzip content-encoding come back decompressed.
                data = blob.download_as_bytes(retry=self._retry())
            except NotFound:
                self._check_bucket()
                return None
        self._bucket_seen = True
        return StoredObject(data, int(blob.generation))

    def exists(self, key: str) -> bool:
        from google.api_core.exceptions import NotFound

        blob = self._blob(key)
        with self._errors("look up", key):
            try:
                blob.reload(retry=self._retry())
            except NotFound:
                self._check_bucket()
                return False
        return True

    def write(self, key: str, data: bytes, *, content_type: str, compress: bool = False,
              if_generation_match: int | None = None, cache_control: str | None = None) -> int:
        blob = self._blob(key)
        if compress:
            data = gzip.compress(data, mtime=0)  # mtime=0: identical input, identical object
            blob.content_encoding = "gzip"
        if cache_control is not None:
            blob.cache_control = cache_control
        # GCS makes an object visible only once its upload completes: readers see old or new.
        retry = self._retry() if if_generation_match is None else self._conditional_retry()
        with self._errors("write", key):
            blob.upload_from_string(
                data, content_type=content_type, if_generation_match=if_generation_match, retry=retry
            )
        self._bucket_seen = True
        return int(blob.generation)

    def upload_file(self, key: str, path: Path, *, content_type: str, compress: bool = False) -> None:
        """Files over 8 MiB go up resumably in _UPLOAD_CHUNK_SIZE pieces; smaller ones in one request."""
        blob = self._blob(key)
        blob.chunk_size = _UPLOAD_CHUNK_SIZE
        with contextlib.ExitStack() as stack:
            source = Path(path)
            if compress:
                tmp = stack.enter_context(tempfile.NamedTemporaryFile(prefix="pubdata-", suffix=".gz"))
                with open(source, "rb") as src, gzip.GzipFile(fileobj=tmp, mode="wb", mtime=0) as gz:
                    shutil.copyfileobj(src, gz, _COPY_BUFFER)
                tmp.flush()
                source = Path(tmp.name)
                blob.content_encoding = "gzip"
            with self._errors("upload", key):
                blob.upload_from_filename(str(source), content_type=content_type, retry=self._retry())
        self._bucket_seen = True

    def download_file(self, key: str, path: Path) -> None:
        """Streamed to disk (in chunks, checksum verified); gzip-encoded objects arrive decompressed."""
        from google.api_core.exceptions import NotFound

        blob = self._blob(key)
        with self._errors("download", key):
            try:
                blob.download_to_filename(str(path), retry=self._retry())
            except NotFound:
                Path(path).unlink(missing_ok=True)
                self._check_bucket()
                raise StoreError(f"cannot download {self._where(key)}: it does not exist") from None

    def delete(self, key: str) -> None:
        from google.api_core.exceptions import NotFound

        blob = self._blob(key)
        with self._errors("delete", key):
            try:
                blob.delete(retry=self._retry())
            except NotFound:
                self._check_bucket()

    def list(self, prefix: str) -> list[str]:
        with self._errors("list", prefix):
            names = [
                blob.name[len(self.prefix):]
                for blob in self._client().list_blobs(
                    self.bucket_name, prefix=self.prefix + prefix, retry=self._retry()
                )
            ]
        self._bucket_seen = True
        return sorted(names)

    def copy(self, src: str, dst: str) -> None:
        self.copy_from(self, src, dst, content_type="application/octet-stream")

    def copy_from(self, source: Store, src: str, dst: str, *, content_type: str, compress: bool = False) -> None:
        """From a GCS bucket (this one or another, e.g. the private staging bucket): a rewrite.

        Rewrite, not copyTo: it also handles large objects, one token round at a time, and works
        across buckets and locations. Content type, encoding and cache control travel with the
        object; the credentials need read access to the source bucket. Re-running a copy writes
        the same bytes again, so it is safe to retry without a precondition.
        """
        from google.api_core.exceptions import NotFound

        if not isinstance(source, GCSStore):
            super().copy_from(source, src, dst, content_type=content_type, compress=compress)
            return
        origin = self._client().bucket(source.bucket_name).blob(source._name(src))
        dest = self._blob(dst)
        with self._errors("copy", dst):
            token = None
            while True:
                try:
                    token, _done, _total = dest.rewrite(origin, token=token, retry=self._retry())
                except NotFound:
                    self._check_bucket()
                    raise StoreError(f"cannot copy {source._where(src)}: it does not exist") from None
                if token is None:
                    break
        self._bucket_seen = True

    def link(self, key: str) -> str:
        """The object's authenticated browser URL (opens for anyone whose account may read it);
        on an emulator, its download URL."""
        from urllib.parse import quote

        name = self._name(key)
        emulator = os.environ.get("STORAGE_EMULATOR_HOST")
        if emulator:
            return f"{emulator.rstrip('/')}/download/storage/v1/b/{self.bucket_name}/o/{quote(name, safe='')}?alt=media"
        return f"https://storage.cloud.google.com/{self.bucket_name}/{quote(name)}"


def _make_client(url: str):
    """A client for GCS, or for the emulator named by STORAGE_EMULATOR_HOST (anonymous, fake project)."""
    from google.auth.credentials import AnonymousCredentials
    from google.auth.exceptions import DefaultCredentialsError
    from google.cloud import storage

    project = os.environ.get("GOOGLE_CLOUD_PROJECT")
    if os.environ.get("STORAGE_EMULATOR_HOST"):
        return storage.Client(project=project or "test", credentials=AnonymousCredentials())
    try:
        # No project needed: we address one bucket by name and never create or list buckets.
        return storage.Client(project=project)
    except DefaultCredentialsError as exc:
        raise ConfigurationError(
            f"no Google credentials found to open {url}: run `gcloud auth application-default login`, "
            "set GOOGLE_APPLICATION_CREDENTIALS, or set STORAGE_EMULATOR_HOST to use an emulator"
        ) from exc


def _short(exc: BaseException) -> str:
    """GCS's own error message when the response has one: client errors embed whole bodies."""
    cause = getattr(exc, "cause", None)  # RetryError: the deadline, then what kept failing
    if cause is not None and cause is not exc:
        return f"{getattr(exc, 'message', exc)}; last error: {_short(cause)}"
    response = getattr(exc, "response", None)
    with contextlib.suppress(Exception):
        message = response.json()["error"]["message"] if response is not None else None
        if message:
            return str(message)
    text = str(getattr(exc, "message", "") or exc).strip()
    text = text.splitlines()[0] if text else type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


__all__ = ["GCSStore"]
