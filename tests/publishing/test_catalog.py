"""The public catalog (index.html and feed.xml at the bucket root): built from what is published,
escaped, kept current under concurrent publishes; and, end to end, every publishable dataset
published into a bucket, served by `pubdata catalog --serve`, rendered by headless Chromium, with
every link on the page and in the feed followed."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import socket
import subprocess
import time
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urldefrag, urljoin

import pytest
import requests

from pubdata.declarations import load_all
from pubdata.policy import verdict as policy
from pubdata.publishing import catalog
from pubdata.stores.base import PreconditionFailed
from pubdata.stores.local import LocalStore
from tests.support.project import REPO, pubdata_cli

ATOM = "{http://www.w3.org/2005/Atom}"
BASE = "https://data.example.org/"


class _Page(HTMLParser):
    """Links, element ids and headings of an HTML document."""

    def __init__(self):
        super().__init__()
        self.links: list[str] = []
        self.ids: set[str] = set()
        self.h2: list[str] = []
        self._in_h2 = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        if tag in ("a", "link") and attrs.get("href"):
            self.links.append(attrs["href"])
        self._in_h2 = tag == "h2"

    def handle_endtag(self, tag):
        if tag == "h2":
            self._in_h2 = False

    def handle_data(self, data):
        if self._in_h2 and data.strip():
            self.h2.append(data.strip())


def _page(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    return page


def _put(store: LocalStore, key: str, value) -> None:
    store.write(key, json.dumps(value).encode(), content_type="application/json")


def _fake_publish(store: LocalStore, table: str, description: str, days: list[str], generated_at: str | None = None) -> None:
    """What publish leaves in the bucket for one incremental table, reduced to what the catalog reads."""
    index = json.loads(store.read("all-datasets.json").data) if store.exists("all-datasets.json") else {}
    prefix = f"api/v1/tables/telemetry_public/{table}/v1"
    index.setdefault("telemetry_public", {})[table] = {"v1": {
        "friendly_name": table.replace("_", " ").title(), "description": description, "incremental": True,
        "incremental_export": True, "review_links": ["https://bugzilla.example.org/show_bug.cgi?id=1"],
        "files_uri": f"{BASE}{prefix}/files", "last_updated": f"{BASE}{prefix}/last_updated",
    }}
    partitions = {day: {"rows": 2, "published_at": f"{day}T05:00:00+00:00",
                        "files": [{"url": f"{BASE}{prefix}/files/{day}/abc/000000000000.json", "format": "json", "bytes": 2048, "rows": 2}]}
                  for day in days}
    _put(store, f"{prefix}/metadata.json", {
        "owners": ["data-eng@example.org"], "last_updated": f"{days[-1]} 05:00:00", "row_count": 2 * len(days),
        "policy": {"aggregation_level": 2, "verdict": "publishable"},
        "schema": [{"name": "country", "type": "VARCHAR", "role": "dimension", "description": "ISO code <or> Other"}],
        "files": partitions[days[-1]]["files"], "partitions": partitions,
        **({"generated_at": generated_at} if generated_at else {}),
    })
    _put(store, "all-datasets.json", index)


def test_catalog_shows_every_table_escaped_with_relative_links(tmp_path):
    store = LocalStore(tmp_path)
    description = "Loads <script>alert(1)</script> & more"
    _fake_publish(store, "page_loads", description, ["2026-10-31"])
    catalog.refresh(store, BASE)
    _fake_publish(store, "page_loads", description, ["2026-10-31", "2026-11-01"])
    _fake_publish(store, "hardware", "Cores and memory", ["2026-11-01"])
    entries = catalog.refresh(store, BASE)
    assert [e.id for e in entries] == ["telemetry_public.hardware_v1", "telemetry_public.page_loads_v1"]

    html = store.read("index.html").data.decode()
    assert "<script>alert" not in html and "Loads &lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in html
    page = _page(html)
    assert page.h2 == ["Hardware", "Page Loads"]
    assert {"telemetry_public.hardware_v1", "telemetry_public.page_loads_v1"} <= page.ids
    files = "api/v1/tables/telemetry_public/page_loads/v1/files"
    assert {f"{files}/2026-11-01/abc/000000000000.json", f"{files}/2026-10-31/abc/000000000000.json", files,
            "api/v1/tables/telemetry_public/page_loads/v1/metadata.json", "feed.xml", "all-datasets.json"} <= set(page.links)
    assert not [link for link in page.links if link.startswith(BASE)], "links inside the bucket are relative"

    feed = ET.fromstring(store.read("feed.xml").data)
    announced = {e.findtext(f"{ATOM}title"): e for e in feed.findall(f"{ATOM}entry")}
    assert set(announced) == {"New dataset: Hardware", "Updated: Page Loads"}
    page_loads, hardware = announced["Updated: Page Loads"], announced["New dataset: Hardware"]
    assert page_loads.findtext(f"{ATOM}published") == "2026-10-31T05:00:00.000000Z"  # first announced with its first day
    assert hardware.findtext(f"{ATOM}published") == "2026-11-01T05:00:00.000000Z"
    for e in announced.values():
        assert e.findtext(f"{ATOM}updated") == "2026-11-01T05:00:00.000000Z"
        alternate = [link.get("href") for link in e.findall(f"{ATOM}link") if link.get("rel") == "alternate"]
        assert alternate and alternate[0].startswith(BASE + "#telemetry_public.")
    assert feed.findtext(f"{ATOM}updated") == "2026-11-01T05:00:00.000000Z"


def test_an_update_within_the_same_second_is_announced_as_an_update(tmp_path):
    """last_updated has whole seconds; the feed tells publishes apart by generated_at."""
    store = LocalStore(tmp_path)
    _fake_publish(store, "page_loads", "Loads", ["2026-11-01"], generated_at="2026-11-01T05:00:00.100000+00:00")
    first = catalog.refresh(store, BASE)
    _fake_publish(store, "page_loads", "Loads", ["2026-11-01"], generated_at="2026-11-01T05:00:00.900000+00:00")
    second = catalog.refresh(store, BASE)
    assert [e.is_new for e in first] == [True] and [e.is_new for e in second] == [False]
    entry = ET.fromstring(store.read("feed.xml").data).find(f"{ATOM}entry")
    assert entry.findtext(f"{ATOM}title") == "Updated: Page Loads"
    assert entry.findtext(f"{ATOM}published") == "2026-11-01T05:00:00.100000Z"
    assert entry.findtext(f"{ATOM}updated") == "2026-11-01T05:00:00.900000Z"
    # Regenerating the feed without a new publish keeps the entry as it was.
    catalog.refresh(store, BASE)
    assert ET.fromstring(store.read("feed.xml").data).find(f"{ATOM}entry").findtext(f"{ATOM}title") == "Updated: Page Loads"


def test_control_characters_never_make_the_feed_ill_formed(tmp_path):
    """A metadata.json written before declarations refused control characters (or by anything
    else) still gives a well-formed feed; and a feed that was ill-formed does not make every
    dataset new again."""
    store = LocalStore(tmp_path)
    bad = "Loads\x0c by\x00 country\x1b[31m"
    _fake_publish(store, "page_loads", bad, ["2026-10-31"])
    catalog.refresh(store, BASE)
    entry = ET.fromstring(store.read("feed.xml").data).find(f"{ATOM}entry")  # parses
    assert entry.findtext(f"{ATOM}summary").startswith("Loads by country[31m")
    html = store.read("index.html").data.decode()
    assert "\x00" not in html and "\x0c" not in html and "Loads by country[31m" in html

    # The feed as it was written before: the raw control characters in it, so not XML.
    feed = store.read("feed.xml").data.decode().replace("Loads by country", bad)
    store.write("feed.xml", feed.encode(), content_type="application/atom+xml")
    with pytest.raises(ET.ParseError):
        ET.fromstring(feed)
    _fake_publish(store, "page_loads", bad, ["2026-10-31", "2026-11-01"])
    [entry] = catalog.refresh(store, BASE)
    assert not entry.is_new and entry.first_published == "2026-10-31T05:00:00.000000Z"
    assert ET.fromstring(store.read("feed.xml").data).find(f"{ATOM}entry").findtext(f"{ATOM}title") == \
        "Updated: Page Loads"


def test_empty_bucket_gives_an_empty_catalog(tmp_path):
    store = LocalStore(tmp_path)
    assert catalog.refresh(store, BASE) == []
    assert "No dataset is published yet" in store.read("index.html").data.decode()
    assert ET.fromstring(store.read("feed.xml").data).findall(f"{ATOM}entry") == []


class _RacingStore(LocalStore):
    """Another publish lands between this refresh's read of the index and its write of the page."""

    raced = False

    def write(self, key, data, **kwargs):
        if key == catalog.HTML_KEY and not self.raced:
            self.raced = True
            _fake_publish(self, "late_table", "Published meanwhile", ["2026-11-01"])
            LocalStore.write(self, key, b"<p>the other publish's page</p>", content_type="text/html")
        return super().write(key, data, **kwargs)


def test_concurrent_publish_is_not_lost(tmp_path):
    store = _RacingStore(tmp_path)
    _fake_publish(store, "first_table", "First", ["2026-11-01"])
    entries = catalog.refresh(store, BASE)
    assert store.raced
    assert [e.table for e in entries] == ["first_table", "late_table"]
    assert "late_table" in store.read("index.html").data.decode()
    assert "late_table" in store.read("feed.xml").data.decode()


def test_refresh_writes_only_over_the_generation_it_read(tmp_path):
    store = LocalStore(tmp_path)
    catalog.refresh(store, BASE)
    generation = store.read(catalog.HTML_KEY).generation
    with pytest.raises(PreconditionFailed):
        store.write(catalog.HTML_KEY, b"x", content_type="text/html", if_generation_match=generation - 1)


def test_catalog_command_rebuilds_from_the_bucket(project, tmp_path):
    store = LocalStore(Path(os.environ["PUBDATA_HOME"]) / "public")
    _fake_publish(store, "page_loads", "Loads", ["2026-11-01"])
    proc = pubdata_cli("catalog")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "catalog of 1 dataset(s)" in proc.stdout
    assert "Page Loads" in store.read("index.html").data.decode()


# -- end to end, in a real browser --------------------------------------------------------------

CHROMIUM = shutil.which("chromium")
DATE, EARLIER = "2026-11-01", "2026-10-31"
PUBLISHABLE = sorted((d for d in load_all(REPO).declarations.values() if policy.verdict(d.spec).allows_publish),
                     key=lambda d: d.id)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _chromium(*args: str, profile: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}", *args],
        capture_output=True, text=True, timeout=120,
    )


@pytest.fixture(scope="module")
def served(tmp_path_factory, source_warehouse):
    """Every publishable dataset published (stage, validate, export, publish: the task code, no
    Airflow) into a fresh bucket, the page-loads example for two days; then `pubdata catalog
    --serve` on loopback. Yields the public base URL."""
    from pubdata.orchestration import tasks

    root = tmp_path_factory.mktemp("catalog-e2e")
    port = _free_port()
    base = f"http://127.0.0.1:{port}/"
    env = {"PUBDATA_PROJECT": str(REPO), "PUBDATA_HOME": str(root / "home"),
           "PUBDATA_WAREHOUSE": f"duckdb://{source_warehouse}", "PUBDATA_BUCKET": f"file://{root / 'home' / 'public'}",
           "PUBDATA_PUBLIC_BASE_URL": base}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        for decl in PUBLISHABLE:
            for day in ([EARLIER, DATE] if decl.table == "page_loads_by_country" else [DATE]):
                staged = tasks.stage(decl.id, dt.date.fromisoformat(day), f"test_{day}")
                validation = tasks.validate(decl.id, staged, f"test_{day}")
                tasks.publish(decl.id, staged, validation, tasks.export(decl.id, staged, validation, f"test_{day}"),
                              f"test_{day}")
                tasks.catalog()  # what the catalog DAG does on each publish's asset event
    server = subprocess.Popen([str(Path(os.sys.executable).with_name("pubdata")), "catalog", "--serve", "--port", str(port)],
                              env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(base + "feed.xml", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert server.poll() is None, server.stdout.read()
            assert time.monotonic() < deadline, "pubdata catalog --serve did not come up"
            time.sleep(0.3)
        yield base
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium; .ci/run installs it)")
def test_catalog_in_headless_chromium(served, tmp_path):
    base = served
    shot = tmp_path / "catalog.png"
    proc = _chromium(f"--screenshot={shot}", "--window-size=1280,3000", "--hide-scrollbars", base, profile=tmp_path / "profile")
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert (int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")) == (1280, 3000)
    assert len(png) > 50_000, "the screenshot is (nearly) blank"
    print(f"screenshot: {shot}")

    dom = _chromium("--dump-dom", base, profile=tmp_path / "profile")
    assert dom.returncode == 0, dom.stderr[-2000:]
    page = _page(dom.stdout)
    assert page.h2 == [d.spec.friendly_name for d in PUBLISHABLE]
    assert {d.id for d in PUBLISHABLE} <= page.ids
    reviews = {str(bug) for d in PUBLISHABLE for bug in d.spec.review.bugs}

    followed = 0
    for href in dict.fromkeys(page.links):
        url, fragment = urldefrag(urljoin(base, href))
        if not url.startswith(base):
            assert url in reviews, f"{href}: the only links off the bucket are review bugs"
            continue
        assert not fragment or fragment in page.ids, f"{href}: no element with id {fragment}"
        response = requests.get(url, timeout=10)
        assert response.status_code == 200, f"{href} -> {response.status_code}"
        followed += 1
    data_files = [h for h in page.links if h.endswith("/000000000000.json")]
    assert len(data_files) == len(PUBLISHABLE) + 1  # the page-loads example has two days
    assert followed >= 5 * len(PUBLISHABLE)
    assert all(r in page.links for r in reviews)

    feed = ET.fromstring(requests.get(base + "feed.xml", timeout=10).content)
    titles = {e.findtext(f"{ATOM}title") for e in feed.findall(f"{ATOM}entry")}
    assert titles == {("Updated: " if d.table == "page_loads_by_country" else "New dataset: ") + d.spec.friendly_name
                      for d in PUBLISHABLE}
    for link in feed.iter(f"{ATOM}link"):
        url, fragment = urldefrag(link.get("href"))
        if link.get("rel") == "via":
            assert url in reviews
            continue
        assert requests.get(url, timeout=10).status_code == 200, url
        assert not fragment or fragment in page.ids
