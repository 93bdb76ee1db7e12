"""The public catalog (index.html and feed.xml at the bucket root): built from what is published,
escaped, kept current under concurrent publishes; and, end to end, every publishable dataset
published into a bucket, served by `pubdata catalog --serve`, rendered by headless Chromium, with
every link on the page and in the feed followed."""

from __future__ import annotations

import hashlib
import html
import json
import os
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urldefrag, urljoin

import pytest
import requests

from pubdata.declarations import load_all
from pubdata.policy import verdict as policy
from pubdata.publishing import catalog, metadata
from pubdata.stores.base import PreconditionFailed
from pubdata.stores.local import LocalStore
from tests.support import catalog_browser as browser
from tests.support.project import REPO, pubdata_cli

ATOM = "{http://www.w3.org/2005/Atom}"
BASE = "https://data.example.org/"


class _Page(HTMLParser):
    """Links, element ids and headings of an HTML document."""

    def __init__(self):
        super().__init__()
        self.links: list[str] = []
        self.scripts: list[str] = []
        self.ids: set[str] = set()
        self.h2: list[str] = []
        self._in_h2 = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        if tag in ("a", "link") and attrs.get("href"):
            self.links.append(attrs["href"])
        if tag == "script" and attrs.get("src"):
            self.scripts.append(attrs["src"])
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


def test_every_published_day_is_on_the_page(tmp_path):
    """All nine days, as many as the page counts: the latest seven open, the others one click away."""
    store = LocalStore(tmp_path)
    days = [f"2026-10-{d:02d}" for d in range(21, 30)]
    _fake_publish(store, "page_loads", "Loads", days)
    catalog.refresh(store, BASE)
    html = store.read("index.html").data.decode()
    listed = re.findall(r"<tr><td>(\d{4}-\d{2}-\d{2})</td><td><a href=\"([^\"]+)\"", html)
    assert [day for day, _ in listed] == sorted(days, reverse=True)
    assert all(f"/files/{day}/abc/000000000000.json" in href for day, href in listed)
    assert "9 days, 2026-10-21 to 2026-10-29" in html
    opened, older = html.split('<details class="older-days">')
    assert opened.count('000000000000.json">') == 7 and older.count('000000000000.json">') == 2 and "2 earlier days" in older
    # A metadata.json from before field_type: the column's type still in public terms.
    assert "VARCHAR" not in html and "<td><code>country</code></td><td>string</td><td>a JSON string</td>" in html


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

DATE, EARLIER, EARLIEST = "2026-11-01", "2026-10-31", "2026-10-30"
PUBLISHABLE = sorted((d for d in load_all(REPO).declarations.values() if policy.verdict(d.spec).allows_publish),
                     key=lambda d: d.id)
DAYS = {d.id: [EARLIEST, EARLIER, DATE] if d.table in ("page_loads_by_country", "ssl_ratio_by_country") else [DATE]
        for d in PUBLISHABLE}
REPUBLISHED = next(d for d in PUBLISHABLE if d.table == "hardware_report").id
JARGON = browser.PUBLIC_JARGON
OWNER_ADDRESSES = {o for d in PUBLISHABLE for o in d.spec.owners}


@pytest.fixture(scope="module")
def served(tmp_path_factory, source_warehouse):
    """Every publishable dataset published (stage, validate, export, publish: the task code, no
    Airflow) into a fresh bucket, the page-loads example for three days, then the hardware
    report's day again with the same rows, the catalog rebuilt after each publish; then `pubdata
    catalog --serve` on loopback. Yields the public base URL."""
    root = tmp_path_factory.mktemp("catalog-e2e")
    port = browser.free_port()
    env = browser.environment(root, source_warehouse, browser.project_from(root, EARLIEST), f"http://127.0.0.1:{port}/")
    # the catalog rebuilt after each publish, as the catalog DAG does on each publish's asset event
    browser.publish_days(env, DAYS, catalog_each=True)
    browser.publish_days(env, {REPUBLISHED: [DATE]}, catalog_each=True)  # an identical republish: not an update
    with browser.served_catalog(env, port) as base:
        yield base


def _sections(dom: str) -> dict[str, str]:
    """Each dataset's <section> of the page, by its id."""
    parts = re.split(r'<section class="dataset" id="([^"]+)">', dom)
    return {parts[i]: parts[i + 1].split("</section>")[0] for i in range(1, len(parts), 2)}


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", re.sub(r"<(script|style)\b.*?</\1>", " ", html, flags=re.S)))


skip_without_chromium = pytest.mark.skipif(browser.CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium; .ci/run installs it)")


@skip_without_chromium
def test_catalog_in_headless_chromium(served, tmp_path):
    """Every link on the rendered page and in the feed answers; every published day is listed
    with its files, as many days as the page says; the only addresses are the public contacts;
    the feed announces real changes only."""
    base = served
    dom = browser.chromium("--dump-dom", base, profile=tmp_path / "profile")
    assert dom.returncode == 0, dom.stderr[-2000:]
    page = _page(dom.stdout)
    assert page.h2 == [d.spec.friendly_name for d in PUBLISHABLE]
    assert {d.id for d in PUBLISHABLE} <= page.ids
    reviews = {str(bug) for d in PUBLISHABLE for bug in d.spec.review.bugs}
    contacts = {"mailto:public-data@example.org"}

    followed = 0
    for href in dict.fromkeys(page.links + page.scripts):
        url, fragment = urldefrag(urljoin(base, href))
        if not url.startswith(base):
            assert url in reviews | contacts, f"{href}: the only links off the bucket are review bugs and the contact"
            continue
        assert not fragment or fragment in page.ids, f"{href}: no element with id {fragment}"
        response = requests.get(url, timeout=10)
        assert response.status_code == 200, f"{href} -> {response.status_code}"
        followed += 1
    assert followed >= 5 * len(PUBLISHABLE)
    assert all(r in page.links for r in reviews) and "mailto:public-data@example.org" in page.links
    assert not [o for o in OWNER_ADDRESSES if o in dom.stdout], "owners' addresses are not public unless configured"
    assert page.scripts and all(urljoin(base, s).startswith(base) for s in page.scripts), "no script from elsewhere"

    # Every published day is downloadable, and the page says how many there are.
    sections = _sections(dom.stdout)
    for d in PUBLISHABLE:
        section, days = sections[d.id], DAYS[d.id]
        listed = re.findall(r"<tr><td>(\d{4}-\d{2}-\d{2})</td><td><a href=\"([^\"]+)\"", section)
        if d.spec.per_day_files:
            assert [day for day, _ in listed] == sorted(days, reverse=True), d.id
            assert all(f"/files/{day}/" in href for day, href in listed)
        else:  # exported whole: one file set holds every day
            assert listed == [], d.id
            assert re.search(r'href="[^"]*/files/[0-9a-f]{16}/000000000000\.json"', section), d.id
        count = len(days)
        assert f"{count} day{'' if count == 1 else 's'}" in _text(section), d.id
    data_files = [h for h in page.links if h.endswith("/000000000000.json")]
    assert len(data_files) == sum(len(DAYS[d.id]) if d.spec.per_day_files else 1 for d in PUBLISHABLE)
    assert any(not d.spec.per_day_files for d in PUBLISHABLE), "an example exported whole (Mozilla's default)"

    feed = ET.fromstring(requests.get(base + "feed.xml", timeout=10).content)
    entries = {e.findtext(f"{ATOM}title"): e for e in feed.findall(f"{ATOM}entry")}
    assert set(entries) == {("Updated: " if len(DAYS[d.id]) > 1 else "New dataset: ") + d.spec.friendly_name
                            for d in PUBLISHABLE}, "the republished hardware report is not announced as updated"
    assert {a.findtext(f"{ATOM}email") for e in entries.values() for a in e.findall(f"{ATOM}author")} == {"public-data@example.org"}
    for link in feed.iter(f"{ATOM}link"):
        url, fragment = urldefrag(link.get("href"))
        if link.get("rel") == "via":
            assert url in reviews
            continue
        assert requests.get(url, timeout=10).status_code == 200, url
        assert not fragment or fragment in page.ids

    # The chart library comes from the bucket, with its licence, byte for byte as vendored.
    vendored = Path(catalog.__file__).parents[1] / "static" / catalog.CHART_LIBRARY
    for name in catalog.CHART_FILES:
        served_bytes = requests.get(f"{base}{catalog.ASSETS_PREFIX}/{name}", timeout=10).content
        assert served_bytes == (vendored / name).read_bytes(), name
        assert hashlib.sha256(served_bytes).hexdigest() in (vendored / "README.md").read_text(), f"{name}: checksum not recorded"


@skip_without_chromium
def test_catalog_speaks_to_the_public_and_shows_the_data(served, tmp_path):
    """The rendered page, as a screenshot and as its DOM after its scripts ran: one chart drawn
    per dataset (its line's pixels in the screenshot, its canvas in the DOM), the preview's rows
    equal to the first rows of the latest published file, the policy in plain words and column
    types in JSON terms, no policy or warehouse jargon."""
    base = served
    shot = tmp_path / "catalog.png"
    proc = browser.chromium(f"--screenshot={shot}", "--window-size=1280,16000", "--hide-scrollbars", base,
                            profile=tmp_path / "profile")
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    bands = browser.chart_bands(shot)
    assert len(bands) == len(PUBLISHABLE), f"charts drawn at {bands}, expected {len(PUBLISHABLE)}"
    # Three days draw a line: far more of its colour than a single day's point.
    lines = [i for i, d in enumerate(PUBLISHABLE) if len(DAYS[d.id]) > 1]
    assert lines and min(bands[i][2] for i in lines) > 3 * max(b[2] for i, b in enumerate(bands) if i not in lines)

    dom = browser.chromium("--dump-dom", base, profile=tmp_path / "profile")
    assert dom.returncode == 0, dom.stderr[-2000:]
    sections = _sections(dom.stdout)
    assert not JARGON.search(_text(dom.stdout)), JARGON.search(_text(dom.stdout))
    for d in PUBLISHABLE:
        section = sections[d.id]
        assert re.search(r'<div class="chart-area[^"]*" data-chart="' + re.escape(d.id) + r'".*?<canvas', section, re.S), \
            f"{d.id}: no chart drawn"
        text = _text(section)
        assert "5,000 different clients" in text and "Each row is" in text, d.id
        if d.spec.policy.dimensions[1:]:  # an Other row is promised only where rare values are grouped into it
            assert (f"\u201c{d.spec.policy.other_label}\u201d holds" in text) == metadata.groups_into_other(d), d.id
        for name, type_ in re.findall(r"<tr><td><code>(\w+)</code></td><td>(\w+)</td><td>a JSON", section):
            assert type_ in {"integer", "number", "string", "date", "boolean"}, (d.id, name, type_)

        listing = requests.get(f"{base}{d.dataset_id.public_prefix}/files", timeout=10).json()
        latest = listing[max(listing)] if isinstance(listing, dict) else listing
        rows = requests.get(latest[0], timeout=10).json()
        preview = re.search(r'<table class="preview">.*?<tbody>(.*?)</tbody>', section, re.S)
        assert preview, f"{d.id}: no preview"
        shown = [re.findall(r"<td>(.*?)</td>", tr) for tr in re.findall(r"<tr>(.*?)</tr>", preview.group(1), re.S)]
        meta = requests.get(f"{base}{d.dataset_id.public_prefix}/metadata.json", timeout=10).json()
        columns = [c["name"] for c in meta["schema"]]
        assert shown == [[html.escape(catalog.cell_text(r.get(c)), quote=False) for c in columns] for r in rows[:10]], d.id
