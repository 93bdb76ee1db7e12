"""Publish exported files in the public layout without ever showing a half-written dataset.

Each version's files are copied (server-side) from the private staging store to a folder of
their own, named by their content; the `files` listing is the switch, written in one atomic
object write once every file exists; superseded files are deleted only after the listing,
metadata and index point at the new version. Shared objects are read-modify-written with
generation preconditions. Every step can be run again after a failure at any point and ends in
the same public state (a retried publish skips files already copied). Once the listing names a
version, its files are also copied to the fixed names Mozilla's clients hard-code
(`files/[<date>/]000000000000.json`). The catalog pages are not
rebuilt here but downstream, once per batch of publishes (orchestration: the catalog DAG). An
incremental table exported whole (incremental_export: false) is merged first
(publishing.accumulated) and switched with the listing's generation as its precondition. The
layout and the readers' guarantees are in README.md ("Public layout").
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pubdata import __version__
from pubdata.declarations import Declaration
from pubdata.errors import PreconditionFailed, StoreError
from pubdata.publishing import accumulated, metadata, parts, summary
from pubdata.publishing.catalog import INDEX_KEY
from pubdata.publishing.export import ExportedFile, discard
from pubdata.stores.base import Store
from pubdata.warehouses.base import StagedTable

NO_CACHE = "no-cache"


def version_id(exported: list[ExportedFile]) -> str:
    """A digest of the version's files: same bytes, same folder name."""
    return _digest([(f.format, f.name, f.sha256) for f in exported])


def _digest(files: list[tuple[str, str, str]]) -> str:
    """(format, name, sha256) of each file -> the version's folder name."""
    h = hashlib.sha256()
    for _fmt, name, sha256 in sorted(files):
        h.update(f"{name} {sha256}\n".encode())
    return h.hexdigest()[:16]


def version_dir(decl: Declaration, partition: str | None, version: str) -> str:
    sub = f"{partition}/" if decl.spec.per_day_files and partition else ""
    return f"{decl.dataset_id.public_prefix}/files/{sub}{version}"


def public_url(base_url: str, key: str) -> str:
    return base_url + key


def links(decl: Declaration, base_url: str) -> dict[str, str]:
    prefix = public_url(base_url, decl.dataset_id.public_prefix)
    return {
        "homepage": f"{prefix}/index.html",
        "files": f"{prefix}/files",
        "last_updated": f"{prefix}/last_updated",
        "metadata": f"{prefix}/metadata.json",
        "query": f"{prefix}/query.sql",
        "datapackage": f"{prefix}/datapackage.json",
        "jsonld": f"{prefix}/dataset.jsonld",
        "index": public_url(base_url, INDEX_KEY),
    }


def _json_bytes(value: Any) -> bytes:
    return (json.dumps(value, indent=2, sort_keys=False, default=str, ensure_ascii=False) + "\n").encode("utf-8")


def _update(store: Store, key: str, mutate: Callable[[bytes | None], bytes], *, content_type: str,
            attempts: int = 50) -> bytes:
    """Read-modify-write one object with a generation precondition; retry on conflicts.

    mutate must be idempotent (set, never append): when a write lands but its answer is lost,
    the retry re-reads and must find its own change already there.
    """
    for attempt in range(attempts):
        current = store.read(key)
        new = mutate(current.data if current else None)
        if current is not None and new == current.data:
            return new  # nothing changes: no write (GCS takes about one write per second per object)
        try:
            store.write(key, new, content_type=content_type, cache_control=NO_CACHE,
                        if_generation_match=current.generation if current else 0)
            return new
        except PreconditionFailed:
            time.sleep(random.uniform(0, min(0.05 * (2 ** attempt), 1.0)))  # full jitter
    raise StoreError(f"could not update {key} after {attempts} attempts: too many concurrent writers; run again")


def _update_json(store: Store, key: str, mutate: Callable[[Any], Any], *, attempts: int = 50,
                 content_type: str = "application/json") -> Any:
    new = _update(store, key, lambda data: _json_bytes(mutate(json.loads(data) if data else None)),
                  content_type=content_type, attempts=attempts)
    return json.loads(new)


def publish(decl: Declaration, staged: StagedTable, exported: list[ExportedFile], columns: list[tuple[str, str, str]],
            store: Store, base_url: str, validation: dict[str, Any] | None = None, *, staging: Store,
            contacts: list[str] | None = None) -> dict[str, Any]:
    """Copy the exported files from staging into a new version folder, switch the listing, record, clean up.

    contacts: the addresses the public documents name (PUBDATA_PUBLIC_CONTACTS); None reads the
    configuration, so no caller publishes the declaration's owners by omission.
    """
    if contacts is None:
        from pubdata.config import settings

        contacts = settings().public_contacts(decl.spec.owners)
    # To the microsecond: generated_at tells two publishes within one second apart (the feed
    # announces the second as an update); last_updated keeps Mozilla's whole seconds.
    now = dt.datetime.now(dt.UTC)
    incremental = decl.spec.incremental
    partition = staged.partition if incremental else None
    if incremental and not partition:
        raise ValueError(f"{decl.id} is incremental: publish needs the staged partition (YYYY-MM-DD)")
    if not any(f.format == "json" for f in exported):
        raise ValueError(f"{decl.id}: nothing to publish: the export has no JSON file")
    if incremental and not decl.spec.incremental_export:
        assert partition is not None
        # The staged day is the merge's input until the switch: a failed publish keeps it for its retry.
        result = _publish_whole(decl, partition, exported, columns, store, base_url, validation, now, contacts,
                                staging=staging)
        # Not strict: a retry would need the files it failed to delete (the next export of the
        # day, or the staging bucket's lifecycle rule, clears what is left).
        discard(staging, exported)
        return result
    version = version_id(exported)
    folder = version_dir(decl, partition, version)

    # 1. Every file of the new version exists before anything points at it. The folder is named
    #    by the files' checksums, so a file already there (an earlier attempt copied it) is this
    #    very file: a retry skips it, and needs no staged file any more.
    files: list[dict[str, Any]] = []
    for f in exported:
        key = f"{folder}/{f.name}"
        if not store.exists(key):
            try:
                store.copy_from(staging, f.staged_key, key, content_type=parts.CONTENT_TYPES[f.format],
                                compress=parts.COMPRESSED[f.format])
            except StoreError as exc:
                if staging.exists(f.staged_key):
                    raise
                raise StoreError(f"{decl.id}: the staged file {f.staged_key} is gone from {staging.url} and "
                                 f"{key} was never published: run export again (clear the export task)") from exc
        files.append({"name": f.name, "url": public_url(base_url, key), "format": f.format,
                      "bytes": f.bytes, "sha256": f.sha256, "rows": f.rows})
    # The public copies exist from here on: the staged ones are not needed, even by a retry.
    try:
        result = _switch(decl, partition, files, columns, store, base_url, validation, now, version, contacts)
    except BaseException:
        discard(staging, exported)
        raise
    discard(staging, exported, strict=True)  # a cleanup that failed fails the task: its retry cleans up
    return result


def _publish_whole(decl: Declaration, partition: str, exported: list[ExportedFile],
                   columns: list[tuple[str, str, str]], store: Store, base_url: str,
                   validation: dict[str, Any] | None, now: dt.datetime, contacts: list[str], *, staging: Store,
                   attempts: int = 20) -> dict[str, Any]:
    """Publish an incremental table exported whole: merge the day into the listed table, switch.

    The merge reads the table the listing names and the switch is conditioned on that listing's
    generation: when another publish switched in between (another day, the same day again), the
    merge is done again on its table, so no day's rows are lost or doubled. Files are written
    to the new version's folder, named by their content, before the listing names them.
    """
    key = f"{decl.dataset_id.public_prefix}/files"
    for attempt in range(attempts):
        current = store.read(key)
        base_keys = _listed_json_keys(decl, json.loads(current.data) if current else None, base_url)
        with tempfile.TemporaryDirectory(prefix="pubdata-merge-") as tmp:
            merged = accumulated.merge(decl, partition, exported, base_keys, store, staging, Path(tmp))
            version = _digest([(fmt, p.name, p.sha256) for fmt, p in merged.parts])
            folder = version_dir(decl, None, version)
            files: list[dict[str, Any]] = []
            for fmt, part in merged.parts:
                target = f"{folder}/{part.name}"
                if not store.exists(target):
                    store.upload_file(target, part.path, content_type=parts.CONTENT_TYPES[fmt],
                                      compress=parts.COMPRESSED[fmt])
                files.append({"name": part.name, "url": public_url(base_url, target), "format": fmt,
                              "bytes": part.bytes, "sha256": part.sha256, "rows": part.rows})
            # Another publish's garbage collection may have taken an unlisted folder meanwhile.
            for fmt, part in merged.parts:
                if not store.exists(f"{folder}/{part.name}"):
                    store.upload_file(f"{folder}/{part.name}", part.path, content_type=parts.CONTENT_TYPES[fmt],
                                      compress=parts.COMPRESSED[fmt])
            listing = _json_bytes([f["url"] for f in files if f["format"] == "json"])
            try:
                if current is None or current.data != listing:
                    store.write(key, listing, content_type="application/json", cache_control=NO_CACHE,
                                if_generation_match=current.generation if current else 0)
            except PreconditionFailed:
                time.sleep(random.uniform(0, min(0.05 * (2 ** attempt), 1.0)))  # full jitter
                continue
            # A clean-up that read the listing before this switch may have taken files since the
            # check above: the listing names this folder now, so put back what is missing.
            for fmt, part in merged.parts:
                if not store.exists(f"{folder}/{part.name}"):
                    store.upload_file(f"{folder}/{part.name}", part.path, content_type=parts.CONTENT_TYPES[fmt],
                                      compress=parts.COMPRESSED[fmt])
        return _record(decl, partition, files, columns, store, base_url, validation, now, version, contacts,
                       days=merged.days)
    raise StoreError(f"could not publish {decl.id} {partition} after {attempts} attempts: other publishes of the "
                     "dataset kept switching its listing; run again")


def _listed_json_keys(decl: Declaration, listing: Any, base_url: str) -> list[str]:
    """The keys of the JSON files a listing names, in its order (a per-day listing: day by day)."""
    if listing is None:
        return []
    urls = [u for _day, us in sorted(listing.items()) for u in us] if isinstance(listing, dict) else list(listing)
    keys = []
    for url in urls:
        if not isinstance(url, str) or not url.startswith(base_url):
            raise StoreError(f"{decl.id}: the listing names {url!r}, which is not under the public base URL "
                             f"{base_url}: set PUBDATA_PUBLIC_BASE_URL to the base it was published with")
        keys.append(url[len(base_url):])
    return keys


def _switch(decl: Declaration, partition: str | None, files: list[dict[str, Any]], columns: list[tuple[str, str, str]],
            store: Store, base_url: str, validation: dict[str, Any] | None, now: dt.datetime,
            version: str, contacts: list[str]) -> dict[str, Any]:
    """Step 2 of publish, once every file of the new version is in place: the switch; then the rest."""
    prefix = decl.dataset_id.public_prefix
    json_urls = [f["url"] for f in files if f["format"] == "json"]

    # 2. The switch: one atomic write of the listing.
    if decl.spec.per_day_files:
        def set_partition(listing):
            listing = dict(listing) if isinstance(listing, dict) else {}
            listing[partition] = json_urls
            return dict(sorted(listing.items()))
        _update_json(store, f"{prefix}/files", set_partition)
    else:
        _update_json(store, f"{prefix}/files", lambda _old: json_urls)
    return _record(decl, partition, files, columns, store, base_url, validation, now, version, contacts)


def _record(decl: Declaration, partition: str | None, files: list[dict[str, Any]], columns: list[tuple[str, str, str]],
            store: Store, base_url: str, validation: dict[str, Any] | None, now: dt.datetime,
            version: str, contacts: list[str], *, days: dict[str, int] | None = None) -> dict[str, Any]:
    """Steps 3-6 of publish, once the listing names the new version.

    days: the rows per day of an incremental table exported whole (all its days are in files).
    """
    incremental = decl.spec.incremental
    per_day = decl.spec.per_day_files
    prefix = decl.dataset_id.public_prefix
    urls = links(decl, base_url)
    rows = sum(f["rows"] for f in files if f["format"] == "json")

    # 3. The record, and the documents derived from it.
    last_updated = now.strftime("%Y-%m-%d %H:%M:%S")
    store.write(f"{prefix}/query.sql", decl.query.encode("utf-8"), content_type="text/plain; charset=utf-8",
                cache_control=NO_CACHE)
    json_urls = [f["url"] for f in files if f["format"] == "json"]

    def superseded() -> bool:
        """Whether a later publish of a whole-table dataset switched the listing past this one: it
        merged on this table, so its record, fixed names and clean-up stand for both."""
        if days is None:
            return False
        current = store.read(f"{prefix}/files")
        return current is None or json.loads(current.data) != json_urls

    done = {"files": files, "rows": rows, "version": version, "last_updated": last_updated,
            "metadata_url": urls["metadata"], "query_sha256": decl.query_sha256, "deleted_files": 0}
    try:
        seen = summary.summarize(decl, store, [u[len(base_url):] for u in json_urls], columns)
    except StoreError:
        if superseded():  # its clean-up took these files
            return {**done, "superseded": True}
        raise

    def record(existing):
        existing = existing if isinstance(existing, dict) else {}
        if superseded():
            return existing
        partitions = dict(existing.get("partitions") or {}) if incremental else {}
        if per_day:
            partitions[partition] = {"version": version, "rows": rows, "files": files, "published_at": now.isoformat()}
        elif days is not None:  # the whole table: each day's rows as they are in its files
            partitions = {day: {"rows": n, "published_at": now.isoformat() if day == partition or not
                                isinstance(partitions.get(day), dict) else partitions[day].get("published_at")}
                          for day, n in days.items()}
        new = {
            "id": decl.id,
            "friendly_name": decl.spec.friendly_name,
            "description": decl.spec.description,
            "owners": contacts,  # Mozilla-style clients read this key: the public contacts, never personal addresses
            "contacts": contacts,
            "incremental": incremental,
            "incremental_export": decl.spec.incremental_export,
            "partition_field": decl.spec.partition_field,
            "review_links": [str(u) for u in decl.spec.review.bugs],
            "review": decl.spec.review.model_dump(mode="json"),
            "policy": metadata.policy_record(decl),
            "schema": metadata.schema_record(decl, columns),
            "query": {"path": f"sql/{decl.dataset}/{decl.table}_v{decl.version}.sql", "url": urls["query"],
                      "sha256": decl.query_sha256, "text": decl.query},
            "row_count": sum(p["rows"] for p in partitions.values()) if per_day else rows,
            "latest_partition": partition,
            "version": None if per_day else version,
            "files": files,
            "partitions": dict(sorted(partitions.items())),
            "validation": validation,
            "links": urls,
            "last_updated": last_updated,
            "generated_at": now.isoformat(),
            "pipeline_version": __version__,
            "preview": seen.preview(partition if per_day else None, existing.get("preview")),
            "daily_totals": seen.merged_totals(existing.get("daily_totals"), set(partitions) if incremental else None),
        }
        return summary.stamp_change(new, existing, now)

    _update_json(store, f"{prefix}/metadata.json", record)
    _refresh_derived(store, decl, urls)
    store.write(f"{prefix}/last_updated", _json_bytes(last_updated), content_type="application/json",
                cache_control=NO_CACHE)

    # 4. The index entry: a new dataset appears only once all of the above exists.
    entry = {
        "friendly_name": decl.spec.friendly_name,
        "description": decl.spec.description,
        "incremental": incremental,
        "incremental_export": decl.spec.incremental_export,
        "review_links": [str(u) for u in decl.spec.review.bugs],
        "files_uri": urls["files"],
        "last_updated": urls["last_updated"],
        "metadata_uri": urls["metadata"],
        "datapackage_uri": urls["datapackage"],
        "owners": contacts,
        "aggregation_level": decl.spec.policy.aggregation_level,
    }

    def add_entry(index):
        index = index if isinstance(index, dict) else {}
        index.setdefault(decl.dataset, {}).setdefault(decl.table, {})[f"v{decl.version}"] = entry
        return {ds: {t: dict(sorted(vs.items())) for t, vs in sorted(tables.items())} for ds, tables in sorted(index.items())}

    _update_json(store, INDEX_KEY, add_entry)

    if superseded():
        return {**done, "superseded": True}
    # 5. The fixed names Mozilla's clients hard-code serve the version the listing now names.
    mirror_fixed_names(store, decl, partition, files, base_url)

    # 6. Only now: files no listing points at any more.
    deleted = collect_garbage(store, decl, partition)
    return {**done, "deleted_files": len(deleted)}


def fixed_scope(decl: Declaration, partition: str | None) -> str:
    """Where the fixed names live: `files/` or, per day, `files/<date>/` (Mozilla's layout)."""
    return f"{decl.dataset_id.public_prefix}/files/{partition}/" if decl.spec.per_day_files else \
        f"{decl.dataset_id.public_prefix}/files/"


def is_fixed_name(scope: str, key: str) -> bool:
    """A fixed-name copy sits directly in the scope (a version's files are one folder deeper)."""
    return key.startswith(scope) and "/" not in key[len(scope):]


def mirror_fixed_names(store: Store, decl: Declaration, partition: str | None, files: list[dict[str, Any]],
                       base_url: str) -> None:
    """Copy the listed version's files to the fixed names (`files/[<date>/]000000000000.json`).

    Each copy is one object write, so a reader of one fixed URL gets a whole file, of the new
    version or (while a publish runs) the one before; only the listing switches a whole set at
    once. Fixed names the new version no longer has are deleted after the copies.
    """
    scope = fixed_scope(decl, partition)
    wanted = set()
    for f in files:
        source = f["url"][len(base_url):] if f["url"].startswith(base_url) else None
        if source is None:
            raise StoreError(f"{decl.id}: {f['url']} is not under the public base URL {base_url}")
        wanted.add(scope + f["name"])
        store.copy_from(store, source, scope + f["name"], content_type=parts.CONTENT_TYPES[f["format"]],
                        compress=parts.COMPRESSED[f["format"]])
    for key in store.list(scope):
        if is_fixed_name(scope, key) and key not in wanted:
            store.delete(key)


def _refresh_derived(store: Store, decl: Declaration, urls: dict[str, str]) -> None:
    """Rebuild datapackage.json, dataset.jsonld and index.html from the current metadata.json.

    Each attempt reads its own generation first and metadata.json second, so the last write to
    land was built from a metadata.json at least as new as any other writer's.
    """
    prefix = decl.dataset_id.public_prefix

    def current_meta() -> dict[str, Any]:
        obj = store.read(f"{prefix}/metadata.json")
        if obj is None:
            raise StoreError(f"{prefix}/metadata.json vanished while publishing {decl.id}")
        return json.loads(obj.data)

    _update_json(store, f"{prefix}/datapackage.json", lambda _old: metadata.datapackage(current_meta(), urls))
    _update_json(store, f"{prefix}/dataset.jsonld", lambda _old: metadata.dataset_jsonld(current_meta(), urls),
                 content_type="application/ld+json")

    def page(_old: bytes | None) -> bytes:
        meta = current_meta()
        return metadata.landing_page(meta, metadata.dataset_jsonld(meta, urls), urls).encode("utf-8")

    _update(store, f"{prefix}/index.html", page, content_type="text/html; charset=utf-8")


def _listed_folders(decl: Declaration, listing: Any, partition: str | None) -> set[str] | None:
    """Folders of the files the live listing references for the partition (None: not listed)."""
    prefix = decl.dataset_id.public_prefix + "/files/"
    if decl.spec.per_day_files:
        if not isinstance(listing, dict) or partition not in listing:
            return None
        urls = listing[partition]
    else:
        if not isinstance(listing, list):
            return None
        urls = listing
    folders = set()
    for url in urls:
        _, sep, rest = str(url).partition(prefix)
        if sep:
            folders.add((prefix + rest).rsplit("/", 1)[0])
    return folders


def collect_garbage(store: Store, decl: Declaration, partition: str | None) -> list[str]:
    """Delete the partition's files that the live listing does not reference; return their keys.

    Runs after the switch, so it removes the superseded version and whatever a killed publish
    left behind; the fixed-name copies directly under files/[<date>/] are not a version's files. It reads the listing again rather than trusting its caller, and deletes nothing
    when the partition is not listed at all.
    """
    prefix = decl.dataset_id.public_prefix
    current = store.read(f"{prefix}/files")
    if current is None:
        return []
    live = _listed_folders(decl, json.loads(current.data), partition)
    if not live:
        return []
    scope = fixed_scope(decl, partition)
    unlisted: dict[str, list[str]] = {}
    for key in store.list(scope):
        if is_fixed_name(scope, key):
            continue  # the fixed names: mirror_fixed_names keeps them
        folder = key.rsplit("/", 1)[0]
        if folder not in live:
            unlisted.setdefault(folder, []).append(key)
    deleted = []
    for folder, keys in unlisted.items():
        # Another publish may have switched the listing to this folder since it was read (its
        # files are uploaded before its switch): read the listing again before each folder.
        now_listed = store.read(f"{prefix}/files")
        still = _listed_folders(decl, json.loads(now_listed.data), partition) if now_listed is not None else None
        if still is None or folder in still:  # the partition's listing is gone or names it: keep it
            continue
        for key in keys:
            store.delete(key)
            deleted.append(key)
    return deleted
