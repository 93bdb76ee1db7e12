"""A fake BigQuery REST API behind a requests transport adapter, for running the real client offline.

The real google-cloud-bigquery client builds and sends every request (URLs, query strings, JSON
bodies, retries); only the network hop is replaced. Every request is recorded so tests can assert
what production would send, and responses follow the shapes of the BigQuery v2 REST reference:
jobs.insert (dry run and real), jobs.get, jobs.getQueryResults, jobs.query, jobs.cancel,
tables.get, tables.patch, tabledata.list and tables.delete. Faults can be queued (an HTTP error
with a BigQuery error payload, or a connection reset), and jobs can be made to fail the way
BigQuery reports it (status.errorResult on jobs.get). As strict as BigQuery where pubdata relies
on it: a job id is unique in the project, so inserting one again answers 409 Already Exists,
and writing a different schema into a partition (a `$YYYYMMDD` decorator) is refused.
"""

from __future__ import annotations

import datetime as dt
import decimal
import itertools
import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import requests
from requests.adapters import BaseAdapter

API_ROOT = "/bigquery/v2"


class _Session(requests.Session):
    """What the client expects of its http object (google.auth's AuthorizedSession has is_mtls)."""

    is_mtls = False


@dataclass
class Recorded:
    method: str
    url: str
    path: str  # below /bigquery/v2, percent-decoded
    params: dict[str, str]
    body: Any  # decoded JSON, or None


@dataclass
class _Fault:
    method: str | None
    pattern: re.Pattern[str]
    status: int
    reason: str
    message: str
    exception: BaseException | None
    times: int
    body_contains: str | None


@dataclass
class _Table:
    resource: dict[str, Any]
    partitions: dict[str | None, list[tuple]] = field(default_factory=dict)

    @property
    def rows(self) -> list[tuple]:
        return [row for key in sorted(self.partitions, key=str) for row in self.partitions[key]]


@dataclass
class _JobFailure:
    needle: str
    reason: str
    message: str
    dry_run: bool
    times: int | None


@dataclass
class _Result:
    needle: str
    schema: list[dict[str, str]]
    rows: list[tuple]


class FakeBigQuery(BaseAdapter):
    """Serves one project's BigQuery API from memory; mount it on a requests.Session."""

    def __init__(self, project: str = "test-project", datasets: tuple[str, ...] = ("pubdata_staging",)) -> None:
        super().__init__()
        self.project = project
        self.datasets = {f"{project}.{d}" for d in datasets}
        self.requests: list[Recorded] = []
        self.jobs: dict[str, dict[str, Any]] = {}
        self.tables: dict[str, _Table] = {}
        self.results: list[_Result] = []
        self.failing_jobs: list[tuple[str, str, str]] = []
        self.faults: list[_Fault] = []
        self.dry_run_bytes = 1_048_576
        self.polls_until_done = 0  # jobs.get calls answered RUNNING before DONE
        self.never_finish = False
        self._ids = itertools.count(1)

    # -- setup -----------------------------------------------------------------------------

    def session(self) -> requests.Session:
        s = _Session()
        s.mount("https://", self)
        s.mount("http://", self)
        return s

    def client(self, location: str | None = None):
        """A real bigquery.Client whose HTTP goes through this fake."""
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import bigquery

        return bigquery.Client(
            project=self.project, credentials=AnonymousCredentials(), _http=self.session(), location=location
        )

    def add_result(self, needle: str, schema: list[tuple[str, str]], rows: list[tuple]) -> None:
        """Queries whose text contains `needle` return these rows (the latest matching result wins)."""
        self.results.append(_Result(needle, [_field(n, t) for n, t in schema], list(rows)))

    def add_table(
        self,
        table_id: str,
        schema: list[tuple[str, str]],
        rows: list[tuple] = (),
        *,
        partition_field: str | None = None,
        partitioned: bool = False,
        partition: str | None = None,
    ) -> None:
        """A table that already exists; `partition` is YYYYMMDD when the rows belong to one day."""
        project, dataset, table = table_id.split(".")
        resource: dict[str, Any] = {
            "kind": "bigquery#table",
            "id": f"{project}:{dataset}.{table}",
            "tableReference": {"projectId": project, "datasetId": dataset, "tableId": table},
            "schema": {"fields": [_field(n, t) for n, t in schema]},
            "type": "TABLE",
            "location": "US",
        }
        if partitioned or partition_field:
            resource["timePartitioning"] = {"type": "DAY", **({"field": partition_field} if partition_field else {})}
        t = self.tables.setdefault(table_id, _Table(resource))
        t.resource = resource
        t.partitions[partition] = list(rows)

    def fail(
        self,
        method: str | None,
        path_regex: str,
        *,
        status: int = 500,
        reason: str = "backendError",
        message: str = "Error encountered during execution. Retrying may solve the problem.",
        exception: BaseException | None = None,
        times: int = 1,
        body_contains: str | None = None,
    ) -> None:
        """The next `times` matching requests fail: an HTTP error with a BigQuery payload, or `exception`."""
        self.faults.append(
            _Fault(method, re.compile(path_regex), status, reason, message, exception, times, body_contains)
        )

    def fail_job(self, needle: str, reason: str, message: str, *, dry_run: bool = True, times: int | None = None) -> None:
        """Queries containing `needle` fail as BigQuery reports it.

        With dry_run the dry run (and jobs.query) already answers HTTP 400, as for a syntax error;
        without, only the running job fails, in status.errorResult (a runtime error). `times`
        limits how many jobs fail, to model a transient job failure.
        """
        self.failing_jobs.append(_JobFailure(needle, reason, message, dry_run, times))

    # -- inspection ------------------------------------------------------------------------

    def calls(self, method: str | None = None, path_regex: str | None = None) -> list[Recorded]:
        return [
            r
            for r in self.requests
            if (method is None or r.method == method) and (path_regex is None or re.search(path_regex, r.path))
        ]

    def job_inserts(self) -> list[dict[str, Any]]:
        """Bodies of every jobs.insert request, in order (retries included)."""
        return [r.body for r in self.calls("POST", r"^/projects/[^/]+/jobs$")]

    # -- transport -------------------------------------------------------------------------

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
        parts = urlsplit(request.url)
        path = unquote(parts.path)
        path = path[len(API_ROOT):] if path.startswith(API_ROOT) else path
        body = request.body
        if isinstance(body, bytes):
            body = body.decode("utf-8")
        recorded = Recorded(
            method=request.method,
            url=request.url,
            path=path,
            params=dict(parse_qsl(parts.query, keep_blank_values=True)),
            body=json.loads(body) if body else None,
        )
        self.requests.append(recorded)

        for fault in self.faults:
            if (
                fault.times > 0
                and fault.method in (None, request.method)
                and fault.pattern.search(path)
                and (fault.body_contains is None or fault.body_contains in (body or ""))
            ):
                fault.times -= 1
                if fault.exception is not None:
                    raise fault.exception
                return self._response(request, fault.status, _error_payload(fault.status, fault.reason, fault.message))

        status, payload = self._route(recorded)
        return self._response(request, status, payload)

    def close(self) -> None:
        pass

    def _response(self, request, status: int, payload: Any) -> requests.Response:
        response = requests.Response()
        response.status_code = status
        response.reason = {200: "OK", 204: "No Content"}.get(status, "Error")
        response.url = request.url
        response.request = request
        response.encoding = "utf-8"
        if payload is None:
            response._content = b""
        else:
            response._content = json.dumps(payload).encode("utf-8")
            response.headers["Content-Type"] = "application/json; charset=UTF-8"
        return response

    # -- API -------------------------------------------------------------------------------

    def _route(self, r: Recorded) -> tuple[int, Any]:
        m = re.fullmatch(r"/projects/([^/]+)/jobs", r.path)
        if m and r.method == "POST":
            return self._jobs_insert(r.body)
        m = re.fullmatch(r"/projects/([^/]+)/jobs/([^/]+)/cancel", r.path)
        if m and r.method == "POST":
            job = self._job(m[2])
            if job is None:
                return 404, _error_payload(404, "notFound", f"Not found: Job {m[1]}:{m[2]}")
            job["_cancelled"] = True
            return 200, {"kind": "bigquery#jobCancelResponse", "job": _public(job)}
        m = re.fullmatch(r"/projects/([^/]+)/jobs/([^/]+)", r.path)
        if m and r.method == "GET":
            return self._jobs_get(m[1], m[2])
        m = re.fullmatch(r"/projects/([^/]+)/queries/([^/]+)", r.path)
        if m and r.method == "GET":
            return self._get_query_results(m[1], m[2], r.params)
        m = re.fullmatch(r"/projects/([^/]+)/queries", r.path)
        if m and r.method == "POST":
            return self._jobs_query(m[1], r.body)
        m = re.fullmatch(r"/projects/([^/]+)/datasets/([^/]+)/tables/([^/]+)/data", r.path)
        if m and r.method == "GET":
            return self._tabledata_list(m[1], m[2], m[3], r.params)
        m = re.fullmatch(r"/projects/([^/]+)/datasets/([^/]+)/tables/([^/]+)", r.path)
        if m and r.method == "GET":
            table = self.tables.get(f"{m[1]}.{m[2]}.{m[3]}")
            if table is None:
                return 404, _error_payload(404, "notFound", f"Not found: Table {m[1]}:{m[2]}.{m[3]}")
            return 200, {**table.resource, "numRows": str(len(table.rows))}
        if m and r.method == "DELETE":
            return self._tables_delete(m[1], m[2], m[3])
        if m and r.method in ("PATCH", "PUT"):
            table = self.tables.get(f"{m[1]}.{m[2]}.{m[3]}")
            if table is None:
                return 404, _error_payload(404, "notFound", f"Not found: Table {m[1]}:{m[2]}.{m[3]}")
            for key, value in (r.body or {}).items():
                if key not in ("tableReference", "schema"):
                    table.resource[key] = value
            return 200, {**table.resource, "numRows": str(len(table.rows))}
        return 404, _error_payload(404, "notFound", f"fake BigQuery has no route for {r.method} {r.path}")

    def _jobs_insert(self, body: dict[str, Any]) -> tuple[int, Any]:
        config = body["configuration"]
        ref = dict(body.get("jobReference") or {})
        if config.get("dryRun"):
            query = config["query"]["query"]
            failure = self._failure_for(query, dry_run=True)
            if failure:
                return 400, _error_payload(400, failure[0], failure[1])
            result = self._result_for(query)
            stats = str(self.dry_run_bytes)
            # A dry run creates no job: BigQuery answers without a jobId.
            return 200, {
                "kind": "bigquery#job",
                "configuration": config,
                "jobReference": {"projectId": ref.get("projectId", self.project), "location": ref.get("location", "US")},
                "statistics": {
                    "totalBytesProcessed": stats,
                    "query": {
                        "totalBytesProcessed": stats,
                        "totalBytesBilled": "0",
                        "cacheHit": False,
                        "schema": {"fields": result.schema},
                        "statementType": "SELECT",
                        "totalBytesProcessedAccuracy": "PRECISE",
                    },
                },
                "status": {"state": "DONE"},
            }
        destination = (config.get("query") or {}).get("destinationTable")
        if destination and f"{destination['projectId']}.{destination['datasetId']}" not in self.datasets:
            return 404, _error_payload(
                404, "notFound", f"Not found: Dataset {destination['projectId']}:{destination['datasetId']}"
            )
        job_id = ref["jobId"]
        ref.setdefault("location", "US")
        if job_id in self.jobs:
            return 409, _error_payload(409, "duplicate", f"Already Exists: Job {ref['projectId']}:{ref['location']}.{job_id}")
        job = {
            "kind": "bigquery#job",
            "id": f"{ref['projectId']}:{ref['location']}.{job_id}",
            "jobReference": ref,
            "configuration": json.loads(json.dumps(config)),
            "status": {"state": "RUNNING"},
            "statistics": {"creationTime": "1793577600000"},
            "_polls": 0,
        }
        if "query" in config and not destination:
            # Like BigQuery, results without a destination land in an anonymous table.
            job["configuration"]["query"]["destinationTable"] = {
                "projectId": ref["projectId"],
                "datasetId": "_anon",
                "tableId": f"anon_{job_id}",
            }
        self.jobs[job_id] = job
        return 200, _public(job)

    def _jobs_query(self, project: str, body: dict[str, Any]) -> tuple[int, Any]:
        query = body["query"]
        failure = self._failure_for(query, dry_run=None)
        if failure:
            return 400, _error_payload(400, failure[0], failure[1])
        job_id = f"job_{next(self._ids)}"
        result = self._result_for(query)
        ref = {"projectId": project, "jobId": job_id, "location": body.get("location", "US")}
        self.jobs[job_id] = {
            "kind": "bigquery#job",
            "jobReference": ref,
            "configuration": {"query": {"query": query}, "labels": body.get("labels", {})},
            "status": {"state": "DONE"},
            "statistics": {"query": {"totalBytesProcessed": "10"}},
            "_polls": 0,
            "_result": result,
        }
        page = self._page(result.schema, result.rows, body.get("maxResults"), None, None)
        return 200, {"kind": "bigquery#queryResponse", "jobReference": ref, "jobComplete": True,
                     "totalBytesProcessed": "10", "cacheHit": False, **page}

    def _jobs_get(self, project: str, job_id: str) -> tuple[int, Any]:
        job = self._job(job_id)
        if job is None:
            return 404, _error_payload(404, "notFound", f"Not found: Job {project}:{job_id}")
        self._advance(job)
        return 200, _public(job)

    def _get_query_results(self, project: str, job_id: str, params: dict[str, str]) -> tuple[int, Any]:
        job = self._job(job_id)
        if job is None:
            return 404, _error_payload(404, "notFound", f"Not found: Job {project}:{job_id}")
        ref = job["jobReference"]
        if job["status"]["state"] != "DONE":
            return 200, {"kind": "bigquery#getQueryResultsResponse", "jobReference": ref, "jobComplete": False}
        error = job["status"].get("errorResult")
        if error:
            return 400, _error_payload(400, error["reason"], error["message"])
        result = job.get("_result") or self._result_for(job["configuration"]["query"]["query"])
        page = self._page(result.schema, result.rows, params.get("maxResults"), params.get("pageToken"), params.get("startIndex"))
        return 200, {"kind": "bigquery#getQueryResultsResponse", "jobReference": ref, "jobComplete": True,
                     "totalBytesProcessed": job["statistics"].get("query", {}).get("totalBytesProcessed", "0"),
                     "cacheHit": False, **page}

    def _tabledata_list(self, project: str, dataset: str, table: str, params: dict[str, str]) -> tuple[int, Any]:
        name, _, decorator = table.partition("$")
        t = self.tables.get(f"{project}.{dataset}.{name}")
        if t is None:
            return 404, _error_payload(404, "notFound", f"Not found: Table {project}:{dataset}.{table}")
        rows = t.partitions.get(decorator, []) if decorator else t.rows
        page = self._page(t.resource["schema"]["fields"], rows, params.get("maxResults"), params.get("pageToken"), params.get("startIndex"))
        page.pop("schema")
        return 200, {"kind": "bigquery#tableDataList", "etag": "e", **page}

    def _tables_delete(self, project: str, dataset: str, table: str) -> tuple[int, Any]:
        name, _, decorator = table.partition("$")
        key = f"{project}.{dataset}.{name}"
        t = self.tables.get(key)
        if t is None or (decorator and decorator not in t.partitions):
            return 404, _error_payload(404, "notFound", f"Not found: Table {project}:{dataset}.{table}")
        if decorator:
            del t.partitions[decorator]
        else:
            del self.tables[key]
        return 204, None

    # -- job lifecycle ---------------------------------------------------------------------

    def _job(self, job_id: str) -> dict[str, Any] | None:
        return self.jobs.get(job_id)

    def _advance(self, job: dict[str, Any]) -> None:
        """RUNNING until polled `polls_until_done` times, then DONE with the job's effects applied."""
        if job["status"]["state"] == "DONE":
            return
        if job.get("_cancelled"):
            job["status"] = {"state": "DONE", "errorResult": {"reason": "stopped", "message": "Job execution was cancelled: User requested cancellation"}}
            return
        job["_polls"] += 1
        if self.never_finish or job["_polls"] <= self.polls_until_done:
            return
        config = job["configuration"]
        job["status"] = {"state": "DONE"}
        if "query" in config:
            query = config["query"]["query"]
            failure = self._failure_for(query, dry_run=None)
            if failure:
                error = {"reason": failure[0], "location": "query", "message": failure[1]}
                job["status"] = {"state": "DONE", "errorResult": error, "errors": [error]}
                return
            result = self._result_for(query)
            job["_result"] = result
            job["statistics"]["query"] = {"totalBytesProcessed": str(self.dry_run_bytes), "totalBytesBilled": str(self.dry_run_bytes), "statementType": "SELECT"}
            problem = self._write_destination(config["query"], result)
            if problem:
                job["status"] = {"state": "DONE", "errorResult": problem, "errors": [problem]}
        elif "extract" in config:
            source = config["extract"]["sourceTable"]
            name = source["tableId"].partition("$")[0]
            if f"{source['projectId']}.{source['datasetId']}.{name}" not in self.tables:
                error = {"reason": "notFound", "message": f"Not found: Table {source['projectId']}:{source['datasetId']}.{name}"}
                job["status"] = {"state": "DONE", "errorResult": error, "errors": [error]}
                return
            job["statistics"]["extract"] = {"destinationUriFileCounts": ["1"]}

    def _write_destination(self, query_config: dict[str, Any], result: _Result) -> dict[str, str] | None:
        dest = query_config["destinationTable"]
        if dest["datasetId"] == "_anon":
            return None
        name, _, decorator = dest["tableId"].partition("$")
        key = f"{dest['projectId']}.{dest['datasetId']}.{name}"
        wanted = query_config.get("timePartitioning")
        existing = self.tables.get(key)
        if existing is not None and wanted and existing.resource.get("timePartitioning") != wanted:
            return {
                "reason": "invalid",
                "message": "Incompatible table partitioning specification. Expects partitioning specification "
                f"{existing.resource.get('timePartitioning')}, but input partitioning specification is {wanted}",
            }
        if existing is None:
            self.add_table(key, [(f["name"], f["type"]) for f in result.schema])
            existing = self.tables[key]
            existing.partitions.clear()
            if wanted:
                existing.resource["timePartitioning"] = wanted
        elif decorator and [(f["name"], f["type"]) for f in existing.resource["schema"]["fields"]] != [
                (f["name"], f["type"]) for f in result.schema]:
            return {"reason": "invalid", "message": f"Provided Schema does not match Table {key}. Cannot add fields "
                    "(field: changed) or change field types when writing to a partition"}
        existing.resource["schema"] = {"fields": result.schema}
        if query_config.get("writeDisposition") == "WRITE_TRUNCATE":
            if decorator:
                existing.partitions[decorator] = list(result.rows)
            else:
                existing.partitions = {None: list(result.rows)}
        else:
            existing.partitions.setdefault(decorator or None, []).extend(result.rows)
        return None

    def _failure_for(self, query: str, *, dry_run: bool | None) -> tuple[str, str] | None:
        """The failure for this query; dry_run=True asks only for failures a dry run already sees."""
        for failure in self.failing_jobs:
            if failure.needle not in query or (dry_run and not failure.dry_run):
                continue
            if failure.times is not None:
                if failure.times == 0:
                    continue
                failure.times -= 1
            return failure.reason, failure.message
        return None

    def _result_for(self, query: str) -> _Result:
        """A canned result, else `SELECT * FROM `table`` [partition filter] [ORDER BY cols] over a known table."""
        for result in reversed(self.results):
            if result.needle in query:
                return result
        for table_id, table in self.tables.items():
            if f"`{table_id}`" in query:
                day = re.search(r"DATE '(\d{4})-(\d{2})-(\d{2})'", query)
                rows = table.partitions.get("".join(day.groups()), []) if day else table.rows
                schema = table.resource["schema"]["fields"]
                order = re.search(r"ORDER BY (.+)$", query)
                if order:
                    names = [c.strip(" `") for c in order[1].split(",")]
                    index = [[f["name"] for f in schema].index(n) for n in names]
                    rows = sorted(rows, key=lambda row: [row[i] for i in index])
                return _Result("", schema, rows)
        return _Result("", [_field("n", "INTEGER")], [])

    def _page(self, schema, rows, max_results, page_token, start_index) -> dict[str, Any]:
        start = int(page_token) if page_token else int(start_index or 0)
        size = len(rows) if max_results is None else int(max_results)
        chunk = rows[start:start + size]
        page: dict[str, Any] = {"schema": {"fields": schema}, "totalRows": str(len(rows))}
        if chunk:
            page["rows"] = [{"f": [{"v": _cell(v, f)} for v, f in zip(row, schema)]} for row in chunk]
        if size and start + size < len(rows):
            page["pageToken"] = str(start + size)
        return page


def _field(name: str, type_: str) -> dict[str, str]:
    return {"name": name, "type": type_, "mode": "NULLABLE"}


def _public(job: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in job.items() if not k.startswith("_")}


def _cell(value: Any, f: dict[str, str]) -> Any:
    """A value the way the REST API encodes it (strings; TIMESTAMP as int64 micros, as the client asks)."""
    if value is None:
        return None
    kind = f["type"]
    if kind in ("BOOLEAN", "BOOL"):
        return "true" if value else "false"
    if kind == "TIMESTAMP":
        if isinstance(value, dt.datetime):
            return str(int(value.timestamp() * 1_000_000))
        return str(value)
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, (int, float, decimal.Decimal)):
        return str(value)
    return value


def _error_payload(status: int, reason: str, message: str) -> dict[str, Any]:
    """The error body BigQuery sends: google.api_core reads error.message and error.errors."""
    statuses = {400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED", 404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED",
                500: "INTERNAL", 503: "UNAVAILABLE"}
    return {
        "error": {
            "code": status,
            "message": message,
            "errors": [{"message": message, "domain": "global", "reason": reason}],
            "status": statuses.get(status, "UNKNOWN"),
        }
    }
