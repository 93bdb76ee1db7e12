"""What stage runs (sql.rewrite, sql.rollup), checked against a reference computed in Python.

The minimum is HAVING COUNT(DISTINCT unit) >= k on every aggregation that makes published rows:
the semantics of BigQuery's SELECT WITH AGGREGATION_THRESHOLD, written as plain SQL so both
engines run one statement (the BigQuery warehouse sends the plan's SQL as it is,
tests/warehouses/test_bigquery.py; the embedded engine runs its transpilation, here). The roll-up
into Other is compared with a direct implementation of its documented steps.
"""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Any

import pytest

from pubdata.declarations.spec import DeclarationFile
from pubdata.errors import PolicyRefused
from pubdata.sql.rewrite import plan, rolled_up
from pubdata.sql.rules import check_query
from pubdata.sql.shape import RULE_LEVEL, RULE_PRIVACY_UNIT
from pubdata.validation.expectations.client_counts import AGREEMENT, MINIMUM
from pubdata.validation.expectations.differencing import NAME as DIFFERENCING
from pubdata.warehouses.base import UNITS
from tests.support.staging import DAY, declaration, published, stage

CD = "`moz-fx-data-shared-prod.telemetry.clients_daily`"
W = "WHERE submission_date = @submission_date"
DIMS = ["country", "os", "locale", "normalized_channel"]
LOADS = "scalar_parent_browser_engagement_total_uri_count_sum"  # clients_daily's page loads
PAGE_LOADS = (f"SELECT @submission_date AS submission_date, {', '.join(DIMS)}, SUM({LOADS}) AS page_loads, "
              f"COUNT(DISTINCT client_id) AS client_count FROM {CD} {W} GROUP BY {', '.join(DIMS)}")
STEPS = [["locale", "normalized_channel"], "os", "country"]


def crafted(seed: int, clients: int = 60) -> list[dict[str, Any]]:
    """Clients spread unevenly over a few values of each dimension, some with two rows."""
    rng = random.Random(seed)
    pick = {"country": ["US", "DE", "FR", "LI", "??", ""], "os": ["Windows_NT", "Darwin", "Linux"],
            "locale": ["en-US", "de", "fr"], "normalized_channel": ["release", "beta"]}
    weights = {"country": [8, 5, 3, 1, 1, 1], "os": [6, 2, 1], "locale": [5, 2, 1], "normalized_channel": [5, 1]}
    rows = []
    for i in range(clients):
        base = {d: rng.choices(pick[d], weights[d])[0] for d in DIMS}
        for _ in range(rng.choice([1, 1, 2])):
            rows.append({"client_id": f"c{i}", **base, LOADS: rng.randint(0, 50)})
    return rows


def reference_grouped(rows: list[dict[str, Any]], k: int) -> list[dict[str, Any]]:
    """GROUP BY the dimensions, HAVING COUNT(DISTINCT client_id) >= k."""
    groups: dict[tuple, dict[str, Any]] = defaultdict(lambda: {"clients": set(), "page_loads": 0})
    for r in rows:
        g = groups[tuple(r[d] for d in DIMS)]
        g["clients"].add(r["client_id"])
        g["page_loads"] += r[LOADS]
    return [{**dict(zip(DIMS, key)), "page_loads": g["page_loads"], "client_count": len(g["clients"])}
            for key, g in groups.items() if len(g["clients"]) >= k]


def reference_rollup(rows: list[dict[str, Any]], k: int, valid_countries: set[str],
                     label: str = "Other") -> list[dict[str, Any]]:
    """The documented roll-up: cells as they are, then the clients of cells under the minimum with
    each step's dimensions relabelled Other in turn; an unknown country waits for its own step;
    what is left after the last step is dropped."""
    pairs: dict[tuple, int] = defaultdict(int)  # (cell, client) -> page_loads
    for r in rows:
        country = r["country"] if r["country"] in valid_countries else label
        pairs[(country, r["os"], r["locale"], r["normalized_channel"], r["client_id"])] += r[LOADS]
    relabelled_from = {"locale": 1, "normalized_channel": 1, "os": 2, "country": 3}
    pending = dict(pairs)
    out: dict[tuple, dict[str, Any]] = {}
    for level in range(4):
        cells: dict[tuple, set] = defaultdict(set)
        for key in pending:
            if level < 3 and key[0] == label:
                continue  # an unknown country forms no cell before the country step
            cell = tuple(label if relabelled_from[d] <= level else key[i] for i, d in enumerate(DIMS))
            cells[cell].add(key[-1])
        big = {c for c, clients in cells.items() if len(clients) >= k}
        kept = {}
        for key, value in pending.items():
            if level < 3 and key[0] == label:
                continue
            cell = tuple(label if relabelled_from[d] <= level else key[i] for i, d in enumerate(DIMS))
            if cell in big:
                kept[key] = value
                row = out.setdefault(cell, {"clients": set(), "page_loads": 0})
                row["clients"].add(key[-1])
                row["page_loads"] += value
        pending = {key: v for key, v in pending.items() if key not in kept}
    return [{**dict(zip(DIMS, cell)), "page_loads": r["page_loads"], "client_count": len(r["clients"])}
            for cell, r in out.items() if len(r["clients"]) >= k]


def _rows(result: dict[str, Any]) -> list[tuple]:
    return sorted(tuple(sorted(r.items())) for r in published(result["rows"]))


def _expected(reference: list[dict[str, Any]]) -> list[tuple]:
    return sorted(tuple(sorted({"submission_date": DAY, **r}.items())) for r in reference)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("k", [2, 3])
def test_every_row_under_the_minimum_is_dropped_by_the_warehouse(tmp_path, seed, k):
    rows = crafted(seed)
    result = stage(PAGE_LOADS, declaration(), rows, tmp_path, k=k)
    assert _rows(result) == _expected(reference_grouped(rows, k))
    assert all(r["_pubdata_units"] == r["client_count"] for r in result["rows"])
    assert all(c["success"] for c in result["checks"].values())


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("k", [2, 4])
def test_the_rollup_matches_its_documented_steps(tmp_path, seed, k):
    from pubdata.policy.geo import geo_values

    rows = crafted(seed, clients=80)
    raw = declaration(rollup=True)
    raw["policy"]["rollup"] = {"steps": STEPS}
    result = stage(PAGE_LOADS, raw, rows, tmp_path, k=k)
    assert _rows(result) == _expected(reference_rollup(rows, k, geo_values("geo_country") - {"Other"}))
    assert all(c["success"] for c in result["checks"].values()), result["checks"]
    # Rolled-up rows are disjoint: every client is counted in one published row.
    assert all(r["_pubdata_disjoint"] for r in result["rows"])


@pytest.mark.parametrize("seed", range(2))
def test_the_rollup_labels_with_the_configured_label(tmp_path, seed):
    """Mozilla writes OTHER: the roll-up relabels with policy.other_label, and its checks pass."""
    from pubdata.policy.geo import place_values

    rows = crafted(seed, clients=80)
    raw = declaration(rollup=True, other_label="OTHER")
    raw["policy"]["rollup"] = {"steps": STEPS}
    result = stage(PAGE_LOADS, raw, rows, tmp_path, k=3)
    expected = reference_rollup(rows, 3, set(place_values("geo_country")), label="OTHER")
    assert _rows(result) == _expected(expected)
    assert any(r["country"] == "OTHER" for r in expected) and not any("Other" in r.values() for r in expected)
    assert all(c["success"] for c in result["checks"].values()), result["checks"]


def test_the_rollup_keeps_more_clients_than_dropping_small_cells(tmp_path):
    rows = crafted(7, clients=80)
    raw = declaration(rollup=True)
    rolled = stage(PAGE_LOADS, raw, rows, tmp_path / "rolled", k=3)
    plain = stage(PAGE_LOADS, declaration(), rows, tmp_path / "plain", k=3)
    count = lambda result: sum(r["client_count"] for r in result["rows"])  # noqa: E731
    assert count(rolled) > count(plain)


def test_the_rollup_groups_by_a_constant_key_too(tmp_path):
    """GROUP BY 1, 2, ... with @submission_date among the keys: the constant stays a constant."""
    sql = PAGE_LOADS.replace(f"GROUP BY {', '.join(DIMS)}", "GROUP BY 1, 2, 3, 4, 5")
    rows = crafted(3)
    raw = declaration(rollup=True)
    assert _rows(stage(sql, raw, rows, tmp_path / "a", k=2)) == _rows(stage(PAGE_LOADS, raw, rows, tmp_path / "b", k=2))


def test_rows_without_a_unit_add_nothing_to_a_published_row(tmp_path):
    rows = [{"client_id": c, "country": "US", "os": "Linux", "locale": "en-US", "normalized_channel": "release",
             LOADS: 1} for c in ("a", "b")]
    rows.append({"client_id": None, "country": "US", "os": "Linux", "locale": "en-US",
                 "normalized_channel": "release", LOADS: 1000})
    [row] = stage(PAGE_LOADS, declaration(), rows, tmp_path, k=2)["rows"]
    assert row["page_loads"] == 2 and row["client_count"] == 2


def test_a_lying_bucket_column_disagrees_with_the_warehouse_count(tmp_path):
    rows = [{"client_id": c, "country": "US", "os": "Linux", "locale": "en-US", "normalized_channel": "release",
             LOADS: 1} for c in ("a", "b", "c")]
    sql = PAGE_LOADS.replace("COUNT(DISTINCT client_id) AS client_count", "5000 AS client_count")
    result = stage(sql, declaration(), rows, tmp_path, k=2)
    assert result["checks"][MINIMUM]["success"]
    agreement = result["checks"][AGREEMENT]
    assert not agreement["success"] and agreement["unexpected_sample"][0]["distinct clients (warehouse)"] == 3


MARGINALS = (PAGE_LOADS + "\nUNION ALL\n" + PAGE_LOADS.replace("normalized_channel,", "'all' AS normalized_channel,")
             .replace(f"GROUP BY {', '.join(DIMS)}", "GROUP BY country, os, locale"))


def test_a_total_beside_its_cells_with_one_withheld_fails(tmp_path):
    """all - release - esr = the one beta client, whose cell the minimum withheld."""
    rows = [{"client_id": c, "country": "US", "os": "Linux", "locale": "en-US", "normalized_channel": ch,
             LOADS: v} for c, ch, v in [("a", "release", 10), ("b", "release", 20), ("c", "esr", 5),
                                                ("d", "esr", 6), ("victim", "beta", 777)]]
    result = stage(MARGINALS, declaration(), rows, tmp_path, k=2)
    assert {r["normalized_channel"] for r in result["rows"]} == {"release", "esr", "all"}
    check = result["checks"][DIFFERENCING]
    assert not check["success"]
    assert "1 row(s) less the rows nested in them leave fewer than 2 clients" in check["observed"]
    assert check["unexpected_sample"][0]["difference"] == 1


def test_a_total_beside_all_its_cells_passes(tmp_path):
    rows = [{"client_id": c, "country": "US", "os": "Linux", "locale": "en-US", "normalized_channel": ch,
             LOADS: 1} for c, ch in [("a", "release"), ("b", "release"), ("c", "esr"), ("d", "esr")]]
    result = stage(MARGINALS, declaration(), rows, tmp_path, k=2)
    assert len(result["rows"]) == 3 and result["checks"][DIFFERENCING]["success"]


def test_nested_rows_one_client_apart_fail(tmp_path):
    """A row of every Linux client, and one of the Linux clients on release: one beta client apart."""
    rows = [{"client_id": c, "country": "US", "os": "Linux", "locale": "en-US", "normalized_channel": ch,
             LOADS: 1} for c, ch in [("a", "release"), ("b", "release"), ("c", "release"), ("d", "beta")]]
    per_os = (PAGE_LOADS.replace("normalized_channel,", "'all' AS normalized_channel,")
              .replace(f"GROUP BY {', '.join(DIMS)}", "GROUP BY country, os, locale"))
    release = PAGE_LOADS.replace(W, W + " AND normalized_channel = 'release'")
    result = stage(per_os + "\nUNION ALL\n" + release, declaration(), rows, tmp_path, k=3)
    check = result["checks"][DIFFERENCING]
    assert not check["success"] and "1 pair(s) of nested rows differ by fewer than 3 clients" in check["observed"]


def test_the_rollup_refuses_what_it_cannot_re_aggregate_by_its_sql_name():
    sql = PAGE_LOADS.replace(f"SUM({LOADS})", "APPROX_COUNT_DISTINCT(os)")
    spec = DeclarationFile.model_validate(declaration(rollup=True))
    with pytest.raises(PolicyRefused, match="APPROX_COUNT_DISTINCT cannot be re-aggregated"):
        plan(sql, spec)


def test_rolled_up_sql_is_what_review_shows():
    spec = DeclarationFile.model_validate(declaration(rollup=True))
    text = rolled_up(PAGE_LOADS, spec)
    assert "_pubdata_cells" in text and "'Other'" in text
    assert rolled_up(PAGE_LOADS, DeclarationFile.model_validate(declaration())) == PAGE_LOADS


@pytest.mark.parametrize("table", ["page_loads_by_country_v1", "ssl_ratio_by_country_v1"])
def test_the_converted_examples_publish_what_their_hand_written_grouping_did(table, source_warehouse, tmp_path):
    """On the synthetic warehouse: the roll-up gives the rows the hand-written query gave."""
    import duckdb

    from pubdata.declarations import load_all
    from pubdata.orchestration.tasks import query_params
    from pubdata.warehouses.base import StagePlan
    from pubdata.warehouses.duckdb import DuckDBWarehouse
    from tests.support.project import REPO

    decl = load_all(REPO).declarations[f"telemetry_public.{table}"]
    hand = (REPO / "bench" / "queries" / f"{table.removesuffix('_v1')}_hand_written.sql").read_text()
    warehouse = DuckDBWarehouse(source_warehouse, tmp_path)
    params = query_params(decl, DAY)

    def rows(stage_plan: StagePlan, name: str) -> list[tuple]:
        staged = warehouse.stage(f"telemetry_public.{name}_v1", stage_plan, params, DAY, partition_field="submission_date")
        con = duckdb.connect(staged.location, read_only=True)
        try:
            columns = ", ".join(f'"{c}"' for c in decl.spec.policy.columns)
            return sorted(con.execute(f'SELECT {columns} FROM "{staged.table}"').fetchall())
        finally:
            con.close()

    rolled = rows(plan(decl.query, decl.spec), "rolled")
    assert rolled and rolled == rows(StagePlan(hand), "hand")


# -- a nested privacy unit: Glean's client_info.client_id --------------------------------------------

METRICS = "`moz-fx-data-shared-prod.firefox_desktop.metrics`"
GLEAN = (f"SELECT DATE(submission_timestamp) AS submission_date, normalized_country_code AS country, "
         f"client_info.os AS os, 'en-US' AS locale, client_info.app_channel AS normalized_channel, "
         f"SUM(metrics.counter.networking_doh_heuristics_attempts) AS page_loads, "
         f"{{bucket}} AS client_count FROM {METRICS} "
         f"WHERE DATE(submission_timestamp) = @submission_date GROUP BY 1, 2, 3, 4, 5")


def glean(**policy: Any) -> dict:
    """The page-loads declaration over the Glean metrics ping, counted by client_info.client_id."""
    raw = declaration(privacy_unit="client_info.client_id", **policy)
    raw["source_tables"] = ["moz-fx-data-shared-prod.firefox_desktop.metrics"]
    return raw


def glean_pings() -> list[dict[str, Any]]:
    """Metrics pings: three US clients (one sends two pings), one DE client."""
    def ping(client: str, country: str, attempts: int) -> dict[str, Any]:
        return {"submission_timestamp": "2026-11-01T10:00:00", "normalized_country_code": country,
                "client_info": {"client_id": client, "app_channel": "release", "os": "Linux"},
                "metrics": {"counter": {"networking_doh_heuristics_attempts": attempts}}}
    return [ping("a", "US", 1), ping("a", "US", 2), ping("b", "US", 3), ping("c", "US", 4), ping("d", "DE", 5)]


def test_a_glean_query_is_counted_by_client_info_client_id(tmp_path):
    """privacy_unit: client_info.client_id: the warehouse counts the field, drops the DE row (one client)."""
    sql = GLEAN.format(bucket="COUNT(DISTINCT client_info.client_id)")
    result = stage(sql, glean(), glean_pings(), tmp_path, k=2,
                   table="moz-fx-data-shared-prod.firefox_desktop.metrics")
    [row] = result["rows"]
    assert (row["country"], row["page_loads"], row["client_count"], row[UNITS]) == ("US", 10, 3, 3)
    assert all(check["success"] for check in result["checks"].values()), result["checks"]


def test_a_glean_query_whose_bucket_counts_pings_does_not_hide_small_cells(tmp_path):
    """COUNT(*) counts pings, not clients: the DE client's ping count is not its client count, and
    the warehouse's own count of client_info.client_id still decides; validation names the lie."""
    sql = GLEAN.format(bucket="COUNT(*) * 2")
    result = stage(sql, glean(), glean_pings(), tmp_path, k=2,
                   table="moz-fx-data-shared-prod.firefox_desktop.metrics")
    assert [(r["country"], r[UNITS]) for r in result["rows"]] == [("US", 3)]  # DE (1 client, 2 "clients") dropped
    assert not result["checks"][AGREEMENT]["success"]


def test_a_glean_query_is_refused_where_a_top_level_query_is(tmp_path):
    spec = DeclarationFile.model_validate(glean())
    per_client = GLEAN.format(bucket="COUNT(DISTINCT client_info.client_id)").replace(
        "GROUP BY 1, 2, 3, 4, 5", "GROUP BY 1, 2, 3, 4, 5, client_info.client_id")
    assert {f.rule for f in check_query(per_client, spec)} >= {RULE_LEVEL}
    renamed = ("WITH m AS (SELECT submission_timestamp, normalized_country_code, metrics, "
               "STRUCT(CONCAT(client_info.client_id, 'x') AS client_id, client_info.os AS os, "
               f"client_info.app_channel AS app_channel) AS client_info FROM {METRICS}) "
               + GLEAN.format(bucket="COUNT(DISTINCT client_info.client_id)").replace(METRICS, "m"))
    assert RULE_PRIVACY_UNIT in {f.rule for f in check_query(renamed, spec)}
    honest = GLEAN.format(bucket="COUNT(DISTINCT client_info.client_id)")
    assert check_query(honest, spec) == []
    with pytest.raises(PolicyRefused, match="top-level privacy_unit"):
        plan(honest, DeclarationFile.model_validate(glean(rollup=True)))
