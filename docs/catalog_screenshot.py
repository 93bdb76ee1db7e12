"""The README's picture of the public catalog (`make catalog-screenshot` writes docs/catalog.png).

Publishes every publishable example dataset for the synthetic data's three days into a throw-away
home (the task code, as tests/publishing/test_catalog.py does), serves the bucket with `pubdata
catalog --serve`, renders the page in headless Chromium and keeps its top: the header and the
first dataset with its chart and preview. Fails, writing nothing, if the page shows no chart.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support import catalog_browser as browser  # noqa: E402

MARGIN = 24
"""Pixels kept below the first dataset's preview table."""


def main(out: Path) -> None:
    from PIL import Image

    from pubdata.declarations import load_all
    from pubdata.policy.verdict import verdict
    from pubdata.sources.synthetic import DEFAULT_DAYS, DEFAULT_END, SynthSpec, generate

    days = sorted(str(DEFAULT_END.fromordinal(DEFAULT_END.toordinal() - i)) for i in range(DEFAULT_DAYS))
    publishable = sorted(d.id for d in load_all(REPO).declarations.values() if verdict(d.spec).allows_publish)
    with tempfile.TemporaryDirectory(prefix="pubdata-catalog-") as tmp:
        root = Path(tmp)
        source = root / "warehouse.duckdb"
        print(f"synthetic source data for {days[0]} to {days[-1]} ...", flush=True)
        generate(source, SynthSpec())
        port = browser.free_port()
        env = browser.environment(root, source, browser.project_from(root, days[0]), f"http://127.0.0.1:{port}/")
        print(f"publishing {len(publishable)} datasets for {len(days)} days ...", flush=True)
        browser.publish_days(env, dict.fromkeys(publishable, days))
        with browser.served_catalog(env, port) as base:
            shot = root / "page.png"
            proc = browser.chromium(f"--screenshot={shot}", "--window-size=1280,4000", "--hide-scrollbars", base,
                                    profile=root / "profile")
            if proc.returncode != 0 or not shot.is_file():
                raise SystemExit(f"chromium failed: {proc.stderr[-2000:]}")
            dom = browser.chromium("--dump-dom", base, profile=root / "profile").stdout
        bands = browser.chart_bands(shot)
        if not bands:
            raise SystemExit("the rendered catalog shows no chart: not writing the picture")
        with Image.open(shot) as page:
            bottom = min(page.height, _preview_bottom(page, bands[0][1], dom))
            page.crop((0, 0, page.width, bottom)).save(out, optimize=True)
    print(f"wrote {out.relative_to(REPO) if out.is_relative_to(REPO) else out}")


def _preview_bottom(page, chart_bottom: int, dom: str) -> int:
    """Just below the first dataset's preview table: its header and each row (every <tr>) end with a border
    line across the table (the chart above is narrower than the table, so none of its grid lines
    reaches the table's right end)."""
    first = dom.split('<table class="preview">', 1)
    rows = first[1].split("</tbody>", 1)[0].count("<tr>") if len(first) > 1 else 0
    gray = page.convert("L")
    probes = [x for x in (*range(130, 200), *range(1090, 1150)) if x < gray.width]
    lines = []
    for y in range(chart_bottom, gray.height):
        if all(200 <= gray.getpixel((x, y)) <= 230 for x in probes) and (not lines or lines[-1] < y - 1):
            lines.append(y)
        if len(lines) == rows:  # the header row and each body row
            return y + MARGIN
    return gray.height


if __name__ == "__main__":
    import os

    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    code = 0
    try:
        main(Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "docs" / "catalog.png")
    except SystemExit as exc:
        print(exc, file=sys.stderr)
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # as the pubdata command does: duckdb's bindings print spurious "leaked" lines at teardown
