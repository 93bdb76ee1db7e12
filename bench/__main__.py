"""`python -m bench`: run the benchmarks, print one table, keep the raw numbers as JSON.

Exit status 1 when a row misses its target, so a regression is visible in a terminal or a job.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path

from bench import machine
from bench.child import REPO
from bench.report import Row, table

M = 1_000_000
FULL_SCALES = (1 * M, 10 * M, 50 * M)
QUICK_SCALES = (1 * M,)
BENCHES = ("parse", "publish", "validate", "export", "demo")


def _scales(text: str) -> tuple[int, ...]:
    try:
        return tuple(sorted(int(float(x.strip().lower().replace("m", "e6"))) for x in text.split(",") if x.strip()))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--scales {text!r}: give row counts such as 1M,10M,50M") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes only (1 and 100 declarations, 1M rows)")
    parser.add_argument("--only", action="append", choices=BENCHES, help="run only this benchmark (repeatable)")
    parser.add_argument("--scales", type=_scales, help="source rows for publish/validate/export, e.g. 1M,10M")
    parser.add_argument("--parse-sizes", type=lambda s: tuple(int(x) for x in s.split(",")),
                        help="declaration counts for the parse benchmark (default 1,100,1000)")
    parser.add_argument("--repeats", type=int, help="runs per measurement (the best is kept); default by size")
    parser.add_argument("--work", type=Path, default=REPO / "bench" / "out",
                        help="where source warehouses are kept between runs and results are written")
    args = parser.parse_args(argv)
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    benches = args.only or list(BENCHES)
    scales = args.scales or (QUICK_SCALES if args.quick else FULL_SCALES)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731

    info = machine.describe()
    log(f"machine: {machine.summary(info)}")
    started = time.time()
    rows: list[Row] = []
    if "parse" in benches:
        from bench import parse

        sizes = args.parse_sizes or ((1, 100) if args.quick else (1, 100, 1000))
        log(f"parse: {', '.join(map(str, sizes))} declarations ...")
        rows += parse.run(sizes, args.repeats or (2 if args.quick else 3), work)
    if "publish" in benches:
        from bench import publish

        log(f"publish: {', '.join(f'{s:,}' for s in scales)} source rows ...")
        repeats = dict.fromkeys(scales, args.repeats or 3)  # best of 3: one 50M run swung 13-23 s
        rows += publish.run(scales, repeats, work, log)
    if "validate" in benches:
        from bench import validate

        vscales = tuple(s for s in scales if s <= 10 * M) or scales[:1]
        log(f"validate: {', '.join(f'{s:,}' for s in vscales)} source rows ...")
        rows += validate.run(vscales, work, log)
    if "export" in benches:
        from bench import export

        gcs = tuple(s for s in scales if s <= 10 * M)
        log(f"export: {', '.join(f'{s:,}' for s in scales)} source rows (fake-gcs-server up to 10M) ...")
        rows += export.run(scales, gcs, work, log)

    if "demo" in benches:
        from bench import demo

        log("demo: `pubdata run` of every dataset and of one, through Airflow ...")
        rows += demo.run(args.repeats or (1 if args.quick else 2), work, log)

    info["load_average_end"] = machine.load_average()
    print(f"\nmachine: {machine.summary(info)}\nload average at the end: "
          f"{' '.join(f'{x:.2f}' for x in info['load_average_end'])}; {time.time() - started:.0f} s in all\n")
    print(table(rows))
    out = work / f"results-{dt.datetime.now().strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(json.dumps({"machine": info, "rows": [r.to_dict() for r in rows]}, indent=2, default=str))
    print(f"\nraw results: {out}")
    return 1 if any(r.ok is False for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
