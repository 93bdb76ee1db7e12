"""The public catalog as a reader sees it: datasets published with the real task code (no Airflow)
into a bucket, served by `pubdata catalog --serve` on loopback, rendered by headless Chromium
(Debian's `chromium`); and what a screenshot shows of the page's charts.

Shared by tests/publishing/test_catalog.py and docs/catalog_screenshot.py (the README's image).
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import requests

CHROMIUM = shutil.which("chromium")
PUBLIC_JARGON = re.compile(
    r"(?i:aggregation[_ ]level|categor(y|ies) [0-9]|minimum bucket|bucket[_ ](column|size)|policy\.|"
    r"verdict|publishable|min_bucket_size)|\b(VARCHAR|BIGINT|DOUBLE|INTEGER|INT64|FLOAT64|STRING)\b")
"""What the public pages must not say: the policy's internal vocabulary, the warehouse's type names."""
CHART_STROKE = (0xD9, 0x48, 0x0F)
"""The catalog's chart line colour (catalog.html.j2), used nowhere else on the page."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def project_from(root: Path, start_date: str) -> Path:
    """A copy of the repository's declarations whose start_date is moved back to start_date, so the
    synthetic data's earlier days can be published (a run before start_date is refused)."""
    from tests.support.project import copy_project

    project = copy_project(root / "project")
    for path in (project / "metadata").rglob("*.yaml"):
        text = path.read_text()
        path.write_text(re.sub(r"(?m)^start_date: .*$", f"start_date: {start_date}", text))
    return project


def environment(root: Path, source_warehouse: Path, project: Path, base_url: str) -> dict[str, str]:
    return {"PUBDATA_PROJECT": str(project), "PUBDATA_HOME": str(root / "home"),
            "PUBDATA_WAREHOUSE": f"duckdb://{source_warehouse}", "PUBDATA_BUCKET": f"file://{root / 'home' / 'public'}",
            "PUBDATA_PUBLIC_BASE_URL": base_url}


def publish_days(env: Mapping[str, str], days: Mapping[str, list[str]], *, catalog_each: bool = False) -> None:
    """Stage, validate, export and publish each dataset id for each of its days, in this process;
    catalog_each: rebuild the catalog after each publish, as the catalog DAG does on its asset event."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        from pubdata.orchestration import tasks

        for dataset_id, dataset_days in days.items():
            for day in dataset_days:
                run = f"catalog_{day}"
                staged = tasks.stage(dataset_id, dt.date.fromisoformat(day), run)
                validation = tasks.validate(dataset_id, staged, run)
                tasks.publish(dataset_id, staged, validation, tasks.export(dataset_id, staged, validation, run), run)
                if catalog_each:
                    tasks.catalog()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextmanager
def served_catalog(env: Mapping[str, str], port: int) -> Iterator[str]:
    """`pubdata catalog --serve` (which rebuilds the catalog first) on 127.0.0.1:port; yields its base URL."""
    base = f"http://127.0.0.1:{port}/"
    server = subprocess.Popen([str(Path(sys.executable).with_name("pubdata")), "catalog", "--serve", "--port", str(port)],
                              env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(base + "feed.xml", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if server.poll() is not None:
                raise RuntimeError(f"pubdata catalog --serve stopped: {server.stdout.read() if server.stdout else ''}")
            if time.monotonic() > deadline:
                raise RuntimeError("pubdata catalog --serve did not come up within 60 s")
            time.sleep(0.3)
        yield base
    finally:
        server.terminate()
        server.wait(timeout=30)


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess:
    """Headless Chromium; virtual time lets the page's scripts (the charts) finish before it is captured."""
    if CHROMIUM is None:
        raise RuntimeError("needs Debian's chromium (apt-get install chromium)")
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--virtual-time-budget=10000",
         f"--user-data-dir={profile}", *args],
        capture_output=True, text=True, timeout=180,
    )


def chart_bands(png: Path, *, tolerance: int = 40, min_pixels: int = 20) -> list[tuple[int, int, int]]:
    """(top, bottom, pixels) of each horizontal band of the screenshot holding chart-line pixels:
    one band per chart drawn. A band needs min_pixels of the line colour to count as drawn."""
    import numpy as np
    from PIL import Image

    with Image.open(png) as image:
        pixels = np.asarray(image.convert("RGB"), dtype=np.int16)
    near = (np.abs(pixels - np.array(CHART_STROKE, dtype=np.int16)) <= tolerance).all(axis=2)
    per_row = [int(n) for n in near.sum(axis=1)]
    bands: list[tuple[int, int, int]] = []
    start, total, gap = None, 0, 0
    for y, count in enumerate(per_row + [0] * 41):
        if count:
            start = y if start is None else start
            total += count
            gap = 0
        elif start is not None:
            gap += 1
            if gap > 40:  # a chart is one band: its line and points are never 40 rows apart
                if total >= min_pixels:
                    bands.append((start, y - gap, total))
                start, total, gap = None, 0, 0
    return bands
