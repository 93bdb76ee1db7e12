"""The four steps of a publish run, as plain functions: stage -> validate -> export -> publish.

Airflow calls these through dag_factory; tests and the CLI can call them directly. Each step
reloads the declaration from disk, so an edited file is re-checked by the run that uses it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict
from typing import Any

from pubdata import alerts, policy, quarantine, records, reports
from pubdata.config import Settings, settings
from pubdata.declaration import (
    DATASET_ID_RE,
    Declaration,
    DeclarationError,
    DeclarationLoadError,
    load_declaration,
)
from pubdata.stores import open_store
from pubdata.validation import DataValidationFailed, ValidationInfrastructureError, suite_for
from pubdata.validation import validate as run_validation
from pubdata.validation_checks import previous_published
from pubdata.warehouses import open_warehouse
from pubdata.warehouses.base import StagedTable


class PolicyRefused(Exception):
    """The declaration's policy verdict does not allow publishing. Not retryable."""


def load(dataset_id: str, cfg: Settings | None = None) -> Declaration:
    cfg = cfg or settings()
    m = DATASET_ID_RE.match(dataset_id)
    if not m:
        raise ValueError(f"not a dataset id: {dataset_id!r} (expected <ds>.<table>_v<N>)")
    path = cfg.metadata_dir / m["ds"] / f"{m['table']}_v{m['version']}.yaml"
    if not path.is_file():
        raise DeclarationLoadError([DeclarationError(
            path, "", f"the declaration of {dataset_id} is gone; restore it or pause the DAG")])
    return load_declaration(path, cfg.project)


def query_params(decl: Declaration, partition: dt.date | None) -> dict[str, Any]:
    """Parameters every reviewed query may use, plus the declaration's own."""
    params: dict[str, Any] = dict(decl.spec.params)
    params["min_bucket_size"] = decl.spec.policy.min_bucket_size
    if partition is not None:
        params[decl.spec.partition_field or "submission_date"] = partition
        params.setdefault("submission_date", partition)
    return params


def check_policy(decl: Declaration) -> None:
    v = policy.verdict(decl.spec)
    if not v.allows_publish:
        raise PolicyRefused(f"{decl.id}: policy verdict is {v.status}: {'; '.join(v.reasons)}. Fix: {v.fix}")


def stage(dataset_id: str, partition: dt.date | None, run_id: str = "manual", cfg: Settings | None = None) -> dict[str, Any]:
    cfg = cfg or settings()
    decl = load(dataset_id, cfg)
    check_policy(decl)
    part = partition if decl.spec.incremental else None
    part_s = part.isoformat() if part else None
    wh = open_warehouse(cfg.warehouse_url, home=cfg.home)
    quarantine.purge(cfg, decl.id, warehouse=wh)  # expired quarantine of this dataset; the file is ours now
    records.reset(cfg.internal_dir, decl.id, part_s, run_id)
    staged = wh.stage(decl.id, decl.query, query_params(decl, partition), part,
                      partition_field=decl.spec.partition_field, order_by=list(decl.spec.policy.columns))
    rows = wh.scalar(staged, "SELECT count(*) FROM {table}")
    records.update(cfg.internal_dir, decl.id, part_s, state="staged", staged=staged.to_dict(), rows=rows)
    return staged.to_dict()


def validate(dataset_id: str, staged_d: dict[str, Any], cfg: Settings | None = None) -> dict[str, Any]:
    """Run the suite on the staged table. Raises DataValidationFailed or ValidationInfrastructureError."""
    cfg = cfg or settings()
    decl = load(dataset_id, cfg)
    check_policy(decl)
    staged = StagedTable.from_dict(staged_d)
    wh = open_warehouse(cfg.warehouse_url, home=cfg.home)
    previous = previous_published(open_store(cfg.bucket_url), decl, staged.partition)
    report = run_validation(decl, wh, staged, suite_for(decl, wh.engine, previous))
    run_id = str((records.read(cfg.internal_dir, decl.id, staged.partition) or {}).get("run_id") or "manual")
    summary = {
        "outcome": report.outcome,
        "checks": len(report.checks),
        "failures": [_check(c) for c in report.failures],
        "warnings": [_check(c) for c in report.warnings],
        "errors": [_check(c) for c in report.errors],
        "seconds": report.seconds,
    }
    state = {"passed": "validated", "failed": "quarantined", "error": "validation_error"}[report.outcome]
    quarantined = f"{staged.location} table {staged.table}" if report.outcome == "failed" else None
    report_file = reports.write(cfg, decl, report.to_dict(), run_id, quarantined)
    records.update(cfg.internal_dir, decl.id, staged.partition, state=state, validation=summary,
                   validation_report=report.to_dict(), report=str(report_file))
    if report.outcome == "failed":
        quarantine.mark(cfg, decl.id, staged.partition, staged.to_dict())
        raise DataValidationFailed(report)
    if report.outcome == "error":
        raise ValidationInfrastructureError(report)
    if report.warnings:  # warn severity: publish, and tell on-call
        alerts.alert_run(cfg, decl, staged.partition, staged.partition or report.started_at[:10], kind="warning")
    return summary


def _check(c) -> dict[str, Any]:
    # The summary goes into the run record and, for warnings, into the public metadata.json.
    observed = reports.shown(asdict(c))["observed"] if c.sensitive else reports.redacted(c.observed)
    return {"expectation": c.expectation, "description": c.description, "severity": c.severity,
            "observed": observed, "expected": c.expected, "error": c.error}


def export(dataset_id: str, staged_d: dict[str, Any], run_id: str = "manual", cfg: Settings | None = None) -> list[dict[str, Any]]:
    """Files under the bucket's staging prefix: an extract job when BigQuery exports into GCS, else streamed."""
    from pubdata import export as exporting

    cfg = cfg or settings()
    decl = load(dataset_id, cfg)
    staged = StagedTable.from_dict(staged_d)
    rec = records.read(cfg.internal_dir, decl.id, staged.partition) or {}
    if (rec.get("validation") or {}).get("outcome") != "passed":
        raise PolicyRefused(f"{decl.id}: refusing to export {staged.partition or 'full'}: it has not passed validation")
    wh = open_warehouse(cfg.warehouse_url, home=cfg.home)
    store = open_store(cfg.bucket_url)
    run_key = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in run_id)
    exported = exporting.export(decl, wh, staged, store, run_key, work_root=cfg.internal_dir / "export")
    out = [e.__dict__ for e in exported]
    records.update(cfg.internal_dir, decl.id, staged.partition, state="exported", exported=out)
    return out


def publish(dataset_id: str, staged_d: dict[str, Any], exported_d: list[dict[str, Any]], cfg: Settings | None = None) -> dict[str, Any]:
    from pubdata import publish as pub

    cfg = cfg or settings()
    decl = load(dataset_id, cfg)
    check_policy(decl)
    staged = StagedTable.from_dict(staged_d)
    wh = open_warehouse(cfg.warehouse_url, home=cfg.home)
    store = open_store(cfg.bucket_url)
    rec = records.read(cfg.internal_dir, decl.id, staged.partition) or {}
    columns = [(c.name, c.type) for c in wh.columns(staged)]
    exported = [pub.ExportedFile(**e) for e in exported_d]
    validation = {k: v for k, v in (rec.get("validation") or {}).items() if k in ("outcome", "checks", "warnings")}
    result = pub.publish(decl, staged, exported, columns, store, cfg.public_base_url, validation)
    wh.drop(staged)
    records.update(cfg.internal_dir, decl.id, staged.partition, state="published", published=result,
                   query_sha256=decl.query_sha256, finished_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
    return result
