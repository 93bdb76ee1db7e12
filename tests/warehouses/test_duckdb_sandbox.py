"""The embedded warehouse is a sandbox: a reviewed query or an expectation that slips past the static
checks still reads nothing but the warehouse's own tables. Each escape route (file read, glob,
ATTACH, COPY TO, INSTALL/LOAD, an HTTP read, SET) is tried on every kind of connection: staging
(read-write, source attached), validation and export (read-only), and Great Expectations'."""

from __future__ import annotations

import http.server
import threading

import duckdb
import pytest

from pubdata.config import settings
from pubdata.errors import QueryError
from pubdata.validation.run import validate
from pubdata.validation.spec import ExpectationSpec
from pubdata.warehouses import open_warehouse
from pubdata.warehouses.duckdb import transpile
from tests.support.project import EXAMPLE, GOOD_ROWS

SECRET = "airflow-fernet-key-4f1d2c"


@pytest.fixture()
def wh(project):
    return open_warehouse(settings().warehouse_url, home=settings().home)


@pytest.fixture()
def secret(tmp_path):
    path = tmp_path / "airflow.cfg"
    path.write_text(f"key,value\nfernet_key,{SECRET}\n")
    return path


@pytest.fixture()
def http_server():
    """A loopback server that records every request: proof that nothing was fetched."""
    requests: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            requests.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"a,b\n1,2\n")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", requests
    server.shutdown()


def _escapes(secret, url, public) -> dict[str, str]:
    return {
        "file read": f"SELECT * FROM read_csv('{secret}')",
        "text read": f"SELECT * FROM read_text('{secret}')",
        "glob": f"SELECT * FROM glob('{secret.parent}/*')",
        "attach": f"ATTACH '{secret.parent / 'other.duckdb'}' AS other",
        "copy to": f"COPY (SELECT 42 AS leaked) TO '{public / 'leak.csv'}'",
        "install": "INSTALL httpfs",
        "load": "LOAD httpfs",
        "http read": f"SELECT * FROM read_csv('{url}/x.csv')",
        "set external access": "SET enable_external_access = true",
        "unlock": "SET lock_configuration = false",
        "set autoload": "SET autoload_known_extensions = true",
    }


def _refused(con, sql: str) -> str:
    with pytest.raises((duckdb.Error, RuntimeError)) as exc:
        con.execute(sql).fetchall()
    return str(exc.value)


def test_each_escape_route_is_refused_on_every_connection(wh, stage_sql, secret, http_server, tmp_path):
    url, requests = http_server
    public = tmp_path / "public"
    public.mkdir()
    wh.stage(EXAMPLE, GOOD_ROWS, {}, None)  # a staging file with the source attached, as stage leaves it
    connections = {
        "staging (read-write)": lambda: wh._open(EXAMPLE, read_only=False, attach_source=True),
        "validation and export (read-only)": lambda: wh._open(EXAMPLE, read_only=True, attach_source=False),
        "Great Expectations": lambda: wh._gx_connection(EXAMPLE),
    }
    for kind, open_connection in connections.items():
        con = open_connection()
        try:
            for route, sql in _escapes(secret, url, public).items():
                message = _refused(con, sql)
                assert SECRET not in message, (kind, route)
                assert any(w in message for w in ("disabled", "locked", "Permission")), (kind, route, message)
            # what the sandbox still allows: the warehouse's own tables, and export's memory settings
            assert con.execute("SELECT count(*) FROM stage_full").fetchall() == [(3,)]
            con.execute("SET memory_limit = '64MB'")
            con.execute("RESET memory_limit")
        finally:
            con.close()
    assert requests == [] and list(public.iterdir()) == []


def test_the_sandbox_still_spills_a_large_sort_to_disk(wh):
    """The temp directory is set when the connection opens (the sandbox forbids changing it later)."""
    con = wh._open(EXAMPLE, read_only=False, attach_source=False)
    try:
        con.execute("SET memory_limit = '32MB'")
        con.execute("SET threads = 1")
        con.execute("CREATE OR REPLACE TABLE sorted AS SELECT md5(CAST(range AS VARCHAR)) AS k FROM range(2000000) "
                    "ORDER BY k")
        assert con.execute("SELECT count(*) FROM sorted").fetchall() == [(2_000_000,)]
        assert con.execute("SELECT current_setting('temp_directory')").fetchall()[0][0] == str(wh.spill_dir(EXAMPLE))
    finally:
        con.close()


def test_validation_and_export_cannot_write(wh):
    staged = wh.stage(EXAMPLE, GOOD_ROWS, {}, None)
    for con in (wh._open(EXAMPLE, read_only=True, attach_source=False), wh._gx_connection(EXAMPLE)):
        try:
            for sql in ("UPDATE stage_full SET page_loads = 0", "DELETE FROM stage_full",
                        "CREATE TABLE copy AS SELECT * FROM stage_full", f"DROP TABLE {staged.table}"):
                assert "read-only" in _refused(con, sql)
        finally:
            con.close()
    assert wh.scalar(staged, "SELECT sum(page_loads) FROM {table}") == 610000


@pytest.mark.parametrize("query, words", [
    ("SELECT * FROM read_csv('{secret}')", "reaches outside the warehouse"),
    ("SELECT content AS c FROM read_text('{secret}')", "reaches outside the warehouse"),
    ("SELECT * FROM `{secret}`", "which the local warehouse .* does not hold"),  # a quoted path stays a (missing) table name, never a file
    ("SELECT * FROM read_csv('{url}/x.csv')", "reaches outside the warehouse"),
])
def test_a_reviewed_query_that_slips_past_check_is_refused_when_it_runs(wh, secret, http_server, query, words):
    url, requests = http_server
    with pytest.raises(QueryError, match=words) as exc:
        wh.stage(EXAMPLE, query.format(secret=secret, url=url), {}, None)
    assert SECRET not in str(exc.value)
    assert requests == []
    # an honest query on the same warehouse still stages
    staged = wh.stage(EXAMPLE, "SELECT country, COUNT(*) AS n FROM `moz-fx-data-shared-prod.telemetry.clients_daily` "
                      "GROUP BY country", {}, None)
    assert wh.scalar(staged, "SELECT count(*) FROM {table}") > 0


def test_statements_are_not_reviewed_queries():
    for sql in ("SET enable_external_access = true", "INSTALL httpfs", "COPY t TO 'x.csv'",
                "SELECT 1; ATTACH 'x.duckdb' AS x"):
        with pytest.raises(QueryError):
            transpile(sql)


def test_an_expectation_that_slips_past_check_cannot_write_or_read_files(decl, stage_sql, secret, project):
    """Raw SQL handed to Great Expectations (never what an expectations file produces) is refused
    by the sandbox: a COPY into the public bucket, a file read. The report says why."""
    wh, staged = stage_sql(GOOD_ROWS)
    public = settings().bucket_url.removeprefix("file://")
    specs = [
        ExpectationSpec("UnexpectedRowsExpectation", {"unexpected_rows_query":
                        f"SELECT * FROM {{batch}} WHERE false) AS x; COPY stage_20261101 TO '{public}/raw.csv'; SELECT (1"},
                        description="an injected COPY"),
        ExpectationSpec("UnexpectedRowsExpectation", {"unexpected_rows_query": f"SELECT * FROM read_text('{secret}')"},
                        description="an injected file read"),
    ]
    report = validate(decl, wh, staged, specs=specs)
    assert report.outcome == "error", report.summary()
    assert len(report.errors) == 2 and not report.failures
    assert SECRET not in str(report.to_dict())
    assert not (project.parent / "home" / "public" / "raw.csv").exists()
    assert validate(decl, wh, staged).outcome == "passed"  # the honest suite on the same table
