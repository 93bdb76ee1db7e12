"""The public catalog: index.html and an Atom feed (feed.xml) at the bucket root.

Rebuilt downstream of publishes (the catalog DAG, scheduled on the datasets' Asset events, once
per batch of publishes; `pubdata catalog` by hand) from what the bucket already serves,
all-datasets.json and each table's metadata.json, so the page can only show what the public can
download. Links inside the bucket are relative, so the same
page works on `pubdata serve`, on GCS and behind any other base URL; the feed, which readers
fetch out of context, uses absolute URLs under the configured public base URL. A dataset the
feed has not announced before is announced as new; once its content changes after that, as
updated (an identical republish is not an update: metadata.json's changed_at stays).

The page speaks to the public: the policy in plain words (publishing.plain_words), column types
as the files carry them, every published day's files, a preview of the first rows and a chart of
the main metric per day (publishing.summary records both at publish). The chart library (uPlot,
vendored under pubdata/static with its licence) is served from the bucket itself, never a CDN.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from importlib import resources
from typing import Any
from urllib.parse import urldefrag

from markupsafe import Markup

from pubdata.errors import PreconditionFailed, StoreError
from pubdata.ids import DatasetId
from pubdata.publishing import plain_words
from pubdata.rendering import html_templates, xml_safe
from pubdata.stores.base import Store

INDEX_KEY = "all-datasets.json"  # the index of every published dataset; each publish keeps its own entry
HTML_KEY = "index.html"
FEED_KEY = "feed.xml"
LINKED_DOCUMENTS = (
    ("homepage", "dataset page", "how the dataset is made, for people and dataset search engines"),
    ("query", "query.sql", "the reviewed query, byte for byte"),
    ("datapackage", "datapackage.json", "Frictionless Data Package: typed schema and file hashes"),
)
"""Documents publish may write next to a table's data; linked when its metadata.json lists them."""
ATOM = "{http://www.w3.org/2005/Atom}"
OPEN_DAYS = 7
"""How many of an incremental dataset's latest days the page shows open; the older ones are one click away."""
CHART_LIBRARY = "uplot-1.6.32"
"""The vendored chart library (pubdata/static/<name>/), published under assets/<name>/ in the bucket."""
CHART_FILES = {"uPlot.iife.min.js": "text/javascript; charset=utf-8", "uPlot.min.css": "text/css; charset=utf-8",
               "LICENSE": "text/plain; charset=utf-8"}
ASSETS_PREFIX = f"assets/{CHART_LIBRARY}"


@dataclass(frozen=True)
class Download:
    label: str
    href: str
    note: str = ""


@dataclass
class Entry:
    """One published table version, as the catalog shows it."""

    id: str
    dataset: str
    table: str
    version: str
    friendly_name: str
    description: str
    owners: list[str]             # the public contacts metadata.json names (PUBDATA_PUBLIC_CONTACTS)
    review_links: list[str]
    last_updated: str
    incremental: bool
    row_count: int | None
    aggregation_level: int | None
    verdict: str | None
    schema: list[dict[str, str]]
    downloads: list[Download]
    partitions: list[tuple[str, list[Download]]] = field(default_factory=list)
    partition_count: int = 0
    first_published: str = ""     # RFC 3339: the update with which the feed first announced it
    generated_at: str = ""        # metadata.json's generated_at: when this version was published, to the microsecond
    changed_at: str = ""          # metadata.json's changed_at: when what it publishes last changed
    policy_words: list[str] = field(default_factory=list)
    columns: list[plain_words.PublicColumn] = field(default_factory=list)
    preview: list[list[str]] = field(default_factory=list)
    preview_day: str | None = None
    chart: dict[str, Any] | None = None   # {"metric", "days": [YYYY-MM-DD], "values": [number]}
    per_day: bool = False                 # files listed per day (incremental_export), else one file set

    @property
    def anchor(self) -> str:
        return self.id

    @property
    def updated_iso(self) -> str:
        """When what this version publishes last changed, as RFC 3339 (Atom). From changed_at (or,
        in a record written before it existed, generated_at), to the microsecond: last_updated has
        whole seconds, and two publishes within one second must still be two updates."""
        return _rfc3339(self.changed_at or self.generated_at or self.last_updated)

    @property
    def open_partitions(self) -> list[tuple[str, list[Download]]]:
        return self.partitions[:OPEN_DAYS]

    @property
    def older_partitions(self) -> list[tuple[str, list[Download]]]:
        return self.partitions[OPEN_DAYS:]

    @property
    def is_new(self) -> bool:
        """Not updated since the feed first announced it: announced as a new dataset."""
        return self.first_published == self.updated_iso



def _rfc3339(value: str | None) -> str:
    if not value:
        return "1970-01-01T00:00:00.000000Z"
    try:
        when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return "1970-01-01T00:00:00.000000Z"
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    # Always with microseconds, so the strings sort as the times do.
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _read_json(store: Store, key: str) -> Any:
    obj = store.read(key)
    if obj is None:
        return None
    try:
        return json.loads(obj.data)
    except json.JSONDecodeError as exc:
        raise StoreError(f"{key} in {store.url} is not valid JSON ({exc}); republish the dataset that wrote it") from None


def _relative(url: str, base_url: str) -> str:
    """A link to an object of this bucket, relative to the bucket root (index.html lives there)."""
    return url[len(base_url):] if url.startswith(base_url) else url


def _downloads(files: list[dict[str, Any]], base_url: str) -> list[Download]:
    out = []
    for f in files:
        name = f["url"].rsplit("/", 1)[-1]
        rows = f.get("rows")
        note = f"{f.get('format', name.rsplit('.', 1)[-1]).upper()}, {_size(f.get('bytes'))}" + (f", {rows:,} rows" if isinstance(rows, int) else "")
        out.append(Download(name, _relative(f["url"], base_url), note))
    return out


def _size(n: int | None) -> str:
    if not isinstance(n, int):
        return "size unknown"
    size = float(n)
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{n:,} {unit}" if unit == "bytes" else f"{size:,.1f} {unit}"
        size /= 1024
    return str(n)


def _contacts(meta: dict[str, Any], item: dict[str, Any]) -> list[str]:
    """The public contacts: as recorded, or (a record from before they were) as configured now,
    never the declaration's owners unless the configuration says so."""
    if isinstance(meta.get("contacts"), list):
        return [str(c) for c in meta["contacts"]]
    from pubdata.config import settings

    return settings().public_contacts(list(meta.get("owners") or item.get("owners") or []))


def cell_text(value: Any) -> str:
    """A value of a data file as the preview shows it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:,.6g}" if abs(value) < 1e15 else repr(value)
    if isinstance(value, int):
        return f"{value:,}"
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _preview_rows(schema: list[dict[str, Any]], rows: Any) -> list[list[str]]:
    """The preview's rows as the page's cells, in the schema's column order."""
    if not isinstance(rows, list):
        return []
    names = [c.get("name") for c in schema]
    return [[cell_text(row.get(n)) for n in names] for row in rows if isinstance(row, dict)]


def _chart(totals: Any, published_days: set[str] | None) -> dict[str, Any] | None:
    """The main metric per day, over the days the table publishes (None: nothing to draw)."""
    if not isinstance(totals, dict) or not isinstance(totals.get("days"), dict):
        return None
    points = sorted((d, v) for d, v in totals["days"].items()
                    if isinstance(v, (int, float)) and not isinstance(v, bool)
                    and (published_days is None or d in published_days))
    if not points:
        return None
    return {"metric": str(totals.get("metric") or ""), "days": [d for d, _ in points], "values": [v for _, v in points]}


def _script_json(value: Any) -> Markup:
    """JSON safe inside <script>: < > & spelled as unicode escapes, so the element holds no markup."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return Markup(text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


def announced(feed: bytes | None) -> dict[str, str]:
    """Dataset ids the feed lists, each with when it was first announced (its <published>)."""
    try:
        root = ET.fromstring(feed) if feed else None
    except ET.ParseError:
        # Written before texts were made XML-safe: read it without the forbidden characters, so
        # what it announced is not announced again as new.
        try:
            root = ET.fromstring(xml_safe((feed or b"").decode("utf-8", "replace")))
        except ET.ParseError:
            return {}  # our own file, damaged: announce everything afresh rather than stop publishing
    out: dict[str, str] = {}
    for entry in root.iter(f"{ATOM}entry") if root is not None else []:
        for link in entry.iter(f"{ATOM}link"):
            if link.get("rel") == "alternate":
                out[urldefrag(link.get("href", "")).fragment] = entry.findtext(f"{ATOM}published") or ""
    return out


def collect(store: Store, base_url: str, previous: dict[str, str] | None = None) -> list[Entry]:
    """Every table version in all-datasets.json, with its metadata.json, sorted by dataset id.

    previous: what the last feed announced (see `announced`), to tell new datasets from updated ones.
    """
    previous = previous or {}
    index = _read_json(store, INDEX_KEY) or {}
    entries: list[Entry] = []
    for ds, tables in sorted(index.items()):
        for table, versions in sorted(tables.items()):
            for version, item in sorted(versions.items()):
                ident = DatasetId(ds, table, int(version.removeprefix("v")))
                prefix = ident.public_prefix
                meta = _read_json(store, f"{prefix}/metadata.json") or {}
                policy = meta.get("policy") or {}
                partitions = meta.get("partitions") or {}
                per_day = bool(item.get("incremental")) and item.get("incremental_export", True) is not False
                days = sorted(partitions.items(), reverse=True)  # every published day, newest first
                links = meta.get("links") or {}
                own = [
                    Download("files", f"{prefix}/files", "listing of every data file (JSON)"),
                    Download("metadata.json", f"{prefix}/metadata.json", "schema, policy answers, query and checksums"),
                ] + [
                    Download(label, _relative(links[name], base_url), note)
                    for name, label, note in LINKED_DOCUMENTS if links.get(name)
                ]
                dataset_id = str(ident)
                last_updated = meta.get("last_updated") or ""
                changed_at = meta.get("changed_at") or meta.get("generated_at") or last_updated
                schema = list(meta.get("schema") or [])
                preview: dict[str, Any] = meta["preview"] if isinstance(meta.get("preview"), dict) else {}
                entries.append(Entry(
                    id=dataset_id,
                    dataset=ds,
                    table=table,
                    version=version,
                    friendly_name=item.get("friendly_name") or meta.get("friendly_name") or table,
                    description=item.get("description") or meta.get("description") or "",
                    owners=_contacts(meta, item),
                    review_links=list(item.get("review_links") or meta.get("review_links") or []),
                    last_updated=last_updated,
                    incremental=bool(item.get("incremental")),
                    row_count=meta.get("row_count"),
                    aggregation_level=policy.get("aggregation_level", item.get("aggregation_level")),
                    verdict=policy.get("verdict"),
                    schema=schema,
                    # a table published day by day has its files in its table of days instead
                    downloads=(own if per_day and days else _downloads(meta.get("files") or [], base_url) + own),
                    partitions=[(day, _downloads(p.get("files") or [], base_url)) for day, p in days],
                    partition_count=len(partitions) if item.get("incremental") else 1,
                    first_published=previous.get(dataset_id) or _rfc3339(changed_at),
                    generated_at=meta.get("generated_at") or "",
                    changed_at=meta.get("changed_at") or "",
                    policy_words=plain_words.policy_sentences(policy),
                    columns=plain_words.columns(schema),
                    preview=_preview_rows(schema, preview.get("rows")),
                    preview_day=preview.get("partition"),
                    chart=_chart(meta.get("daily_totals"), set(partitions) if item.get("incremental") else None),
                    per_day=per_day,
                ))
    return entries


def render(entries: list[Entry], base_url: str, generated_at: dt.datetime) -> tuple[str, str]:
    """The catalog page and the Atom feed for these entries."""
    env = html_templates()
    generated_at = generated_at.astimezone(dt.UTC)
    by_update = sorted(entries, key=lambda e: (e.updated_iso, e.id), reverse=True)
    context = {
        "entries": entries,
        "feed_entries": by_update,
        "base_url": base_url,
        "generated_at": generated_at.strftime("%Y-%m-%d %H:%M:%S"),
        "feed_updated": by_update[0].updated_iso if by_update else generated_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "charts_json": _script_json({e.anchor: e.chart for e in entries if e.chart}),
        "assets": ASSETS_PREFIX,
        "html_key": HTML_KEY,
        "feed_key": FEED_KEY,
        "index_key": INDEX_KEY,
    }
    return env.get_template("catalog.html.j2").render(context), env.get_template("feed.xml.j2").render(context)


def refresh(store: Store, base_url: str, *, attempts: int = 20) -> list[Entry]:
    """Rebuild index.html and feed.xml from the bucket's index; return the entries shown.

    Concurrent publishes may refresh at once. Each attempt notes both objects' generations before
    it reads the index and writes each only if it is still that generation (else starts over), so
    the last page and feed written were built from an index at least as new as any other writer's.
    """
    publish_chart_library(store)
    outputs = {HTML_KEY: "text/html; charset=utf-8", FEED_KEY: "application/atom+xml"}
    for attempt in range(attempts):
        current = {key: store.read(key) for key in outputs}
        generations = {key: obj.generation if obj else 0 for key, obj in current.items()}
        feed = current[FEED_KEY]
        entries = collect(store, base_url, announced(feed.data if feed is not None else None))
        bodies = dict(zip(outputs, render(entries, base_url, dt.datetime.now(dt.UTC))))
        try:
            for key, content_type in outputs.items():
                store.write(key, bodies[key].encode("utf-8"), content_type=content_type,
                            if_generation_match=generations[key], cache_control="no-cache")
        except PreconditionFailed:
            time.sleep(min(0.05 * (2 ** attempt), 1.0))
            continue
        return entries
    raise StoreError(f"could not update {HTML_KEY} in {store.url} after {attempts} attempts: too many concurrent publishes")


def publish_chart_library(store: Store) -> None:
    """Put the vendored chart library (and its licence) in the bucket, where the page loads it
    from. Its folder is named by version, so what is there is never replaced, only completed."""
    source = resources.files("pubdata") / "static" / CHART_LIBRARY
    for name, content_type in CHART_FILES.items():
        key = f"{ASSETS_PREFIX}/{name}"
        data = (source / name).read_bytes()
        current = store.read(key)
        if current is not None and current.data == data:
            continue
        store.write(key, data, content_type=content_type, cache_control="public, max-age=31536000, immutable")
