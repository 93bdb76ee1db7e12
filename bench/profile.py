"""Where the time goes: profiles of the slowest stage and of the fixed cost of validation.

`python -m bench.profile [--scale 50M]` prints:

- stage: DuckDB's own profile (operator timings) of the example's reviewed query on the source
  of that scale, the step that dominates a large publish;
- validate: the import of Great Expectations by module (`-X importtime`), the fixed cost every
  validate task pays whatever the data size.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench import child, sources


def stage_profile_child(source: str, query: str, params: dict[str, Any], workdir: str) -> dict[str, Any]:
    import duckdb

    from bench.publish import transpiled

    sql, bound = transpiled(query, params)
    out = Path(workdir) / "profile.json"
    con = duckdb.connect(str(Path(workdir) / "profile.duckdb"))
    con.execute(f"ATTACH '{source}' AS source (READ_ONLY)")
    con.execute("SET enable_profiling = 'json'")
    con.execute(f"SET profiling_output = '{out}'")
    con.execute(f"CREATE OR REPLACE TABLE staged AS {sql}", bound)
    con.close()
    tree = json.loads(out.read_text())
    ops: list[dict[str, Any]] = []

    def walk(node: dict[str, Any], depth: int) -> None:
        # DuckDB 2.0's JSON profile: {"type", "timing" (s, CPU summed over threads), "intermediate_rows", "children"}
        if "type" in node and "timing" in node:
            ops.append({"operator": str(node["type"]), "seconds": float(node["timing"]),
                        "rows": node.get("intermediate_rows"), "depth": depth})
        for c in node.get("children", []):
            walk(c, depth + 1)

    for root in tree.get("operator", []):
        walk(root, 0)
    query = tree.get("query", {})
    return {"total_s": float(query.get("total_time", 0.0)), "cpu_s": float(query.get("cpu_time", 0.0)),
            "peak_buffer_mb": tree.get("system", {}).get("peak_buffer_memory", 0) / 2**20, "operators": ops}


def gx_import_profile(top: int = 12) -> list[tuple[str, float]]:
    """`import great_expectations`: total, then own import time (self, excluding dependencies'
    own time) summed by package, GX's own split by subpackage: where the seconds are spent."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", "import great_expectations"],
                          capture_output=True, text=True, check=True)
    total, spent = 0.0, {}
    for line in proc.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|\s*(\S+)", line)
        if not m:
            continue
        own, name = int(m.group(1)) / 1e6, m.group(3)
        if name == "great_expectations":
            total = int(m.group(2)) / 1e6
        parts = name.split(".")
        key = ".".join(parts[:2]) if parts[0] == "great_expectations" else parts[0]
        spent[key] = spent.get(key, 0.0) + own
    ranked = sorted(spent.items(), key=lambda kv: -kv[1])[:top]
    return [("great_expectations (total)", total), *ranked]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="50M", help="source rows of the stage profile, e.g. 10M")
    parser.add_argument("--work", type=Path, default=child.REPO / "bench" / "out")
    args = parser.parse_args(argv)
    scale = int(float(args.scale.lower().replace("m", "e6")))
    import datetime as dt

    from pubdata.declarations import load_all
    from pubdata.orchestration.tasks import query_params

    warehouse = sources.source_warehouse(args.work, scale, lambda m: print(m, file=sys.stderr))
    decl = load_all(sources.REPO).declarations[sources.EXAMPLE_ID]
    params = {k: (v.isoformat() if isinstance(v, dt.date) else v)
              for k, v in query_params(decl, dt.date.fromisoformat(sources.DAY)).items()}
    with tempfile.TemporaryDirectory(prefix="pubdata-bench-profile-", dir=args.work) as tmp:
        prof = child.run("bench.profile:stage_profile_child", source=str(warehouse), query=decl.query,
                         params=params, workdir=tmp)
    print(f"stage of {sources.EXAMPLE_ID} at {scale:,} source rows: DuckDB operators by CPU time "
          f"(query {prof['total_s']:.1f} s wall, {prof['cpu_s']:.1f} s CPU, peak buffer {prof['peak_buffer_mb']:,.0f} MiB)")
    for op in sorted(prof["operators"], key=lambda o: -o["seconds"])[:10]:
        rows = f"{op['rows']:,}" if isinstance(op["rows"], int) else "-"
        print(f"  {op['seconds']:7.2f} s  {op['operator']:<24} rows out {rows}")
    print("\nvalidate, fixed cost: `import great_expectations`, own import time by package (s)")
    for name, seconds in gx_import_profile():
        print(f"  {seconds:6.2f} s  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
