"""The four steps of a publish run, as plain functions: stage -> validate -> export -> publish.

Airflow calls these through the DAG factory; tests and the CLI can call them directly. Each step
reloads the declaration from disk, so an edited file is re-checked by the run that uses it.
What a step hands the next travels as JSON (XCom): a StagedTable, a ValidationSummary, the
ExportedFiles, a PublishResult.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict
from typing import Any

from pubdata.config import Settings, settings
from pubdata.declarations import Declaration, load
from pubdata.errors import NotValidated, PolicyRefused, ValidationError, ValidationFailed
from pubdata.orchestration import alerts, quarantine
from pubdata.orchestration.records import CheckSummary, PublishResult, RunRecords, ValidationSummary
from pubdata.policy.verdict import verdict
from pubdata.stores import open_store
from pubdata.validation import reports
from pubdata.validation.expectations.row_count_band import previous_published
from pubdata.validation.redaction import redacted, shown
from pubdata.validation.report import CheckResult
from pubdata.validation.run import validate as run_validation
from pubdata.validation.suite import suite_for
from pubdata.warehouses import open_warehouse
from pubdata.warehouses.base import INTERNAL_COLUMNS, SIDE_TABLES, StagedTable


def query_params(decl: Declaration, partition: dt.date | None) -> dict[str, Any]:
    """Parameters every reviewed query may use, plus the declaration's own."""
    params: dict[str, Any] = dict(decl.spec.params)
    params["min_bucket_size"] = decl.spec.policy.min_bucket_size
    if partition is not None:
        params[decl.spec.partition_field or "submission_date"] = partition
        params.setdefault("submission_date", partition)
    return params


def check_policy(decl: Declaration) -> None:
    v = verdict(decl.spec)
    if not v.allows_publish:
        raise PolicyRefused(f"{decl.id}: policy verdict is {v.status}: {'; '.join(v.reasons)}. Fix: {v.fix}")


def check_query_statically(decl: Declaration) -> None:
    """The static SQL checks `pubdata check` runs, enforced before anything reaches the warehouse."""
    from pubdata.sql.rules import check_query

    findings = check_query(decl.query, decl.spec)
    if findings:
        listed = "; ".join(f"[{f.rule}] {f.message} Fix: {f.fix}" for f in findings)
        raise PolicyRefused(f"{decl.id}: the reviewed query fails its static checks ({decl.query_path.name}): {listed}")


def stage(dataset_id: str, partition: dt.date | None, run_id: str = "manual", cfg: Settings | None = None) -> dict[str, Any]:
    from pubdata.sql.rewrite import plan

    cfg = cfg or settings()
    decl = load(dataset_id, cfg.project)
    check_policy(decl)
    check_query_statically(decl)
    stage_plan = plan(decl.query, decl.spec)
    part = partition if decl.spec.incremental else None
    part_s = part.isoformat() if part else None
    wh = open_warehouse(cfg.warehouse_url, home=cfg.home)
    quarantine.purge(cfg, decl.id, warehouse=wh)  # expired quarantine of this dataset; the file is ours now
    records = RunRecords(cfg.internal_dir)
    records.start(decl.id, part_s, run_id)
    staged = wh.stage(decl.id, stage_plan, query_params(decl, partition), part,
                      partition_field=decl.spec.partition_field, order_by=list(decl.spec.policy.columns))
    rows = wh.scalar(staged, "SELECT count(*) FROM {table}")
    records.update(decl.id, part_s, state="staged", staged=staged.to_dict(), rows=rows)
    return staged.to_dict()


def validate(dataset_id: str, staged_d: dict[str, Any], cfg: Settings | None = None) -> dict[str, Any]:
    """Run the suite on the staged table. Raises ValidationFailed (data) or ValidationError (infrastructure)."""
    cfg = cfg or settings()
    decl = load(dataset_id, cfg.project)
    check_policy(decl)
    staged = StagedTable.from_dict(staged_d)
    wh = open_warehouse(cfg.warehouse_url, home=cfg.home)
    previous = previous_published(open_store(cfg.bucket_url), decl, staged.partition)
    # Before the suite: a change to the table during or after validation shows at export.
    fingerprint = wh.fingerprint(staged)
    report = run_validation(decl, wh, staged, suite_for(decl, wh, previous))
    records = RunRecords(cfg.internal_dir)
    rec = records.get(decl.id, staged.partition)
    run_id = rec.run_id if rec is not None else "manual"
    summary = ValidationSummary(
        outcome=report.outcome, checks=len(report.checks), failures=[_check(c) for c in report.failures],
        warnings=[_check(c) for c in report.warnings], errors=[_check(c) for c in report.errors],
        seconds=report.seconds, fingerprint=fingerprint,
    )
    state = {"passed": "validated", "failed": "quarantined", "error": "validation_error"}[report.outcome]
    quarantined = f"{staged.location} table {staged.table}" if report.outcome == "failed" else None
    report_file = reports.write(cfg, decl, report.to_dict(), run_id, quarantined)
    records.update(decl.id, staged.partition, state=state, validation=summary,
                   validation_report=report.to_dict(), report=str(report_file))
    if report.outcome == "failed":
        quarantine.mark(cfg, decl.id, staged.partition, staged.to_dict())
        raise ValidationFailed(report.summary(), report)
    if report.outcome == "error":
        raise ValidationError(report.summary(), report)
    if report.warnings:  # warn severity: publish, and tell on-call
        alerts.alert_run(cfg, decl, staged.partition, staged.partition or report.started_at[:10], kind="warning")
    return summary.model_dump(mode="json")


def _check(c: CheckResult) -> CheckSummary:
    # The summary goes into the run record and, for warnings, into the public metadata.json.
    observed = shown(asdict(c))["observed"] if c.sensitive else redacted(c.observed)
    return CheckSummary(expectation=c.expectation, description=c.description, severity=c.severity,
                        observed=observed, expected=c.expected, error=c.error)


def export(dataset_id: str, staged_d: dict[str, Any], run_id: str = "manual", cfg: Settings | None = None) -> list[dict[str, Any]]:
    """The staged rows as files under the store's staging prefix (see publishing.export)."""
    from pubdata.publishing import export as exporting

    cfg = cfg or settings()
    decl = load(dataset_id, cfg.project)
    staged = StagedTable.from_dict(staged_d)
    rec = RunRecords(cfg.internal_dir).get(decl.id, staged.partition)
    if rec is None or rec.validation is None or rec.validation.outcome != "passed":
        raise NotValidated(f"{decl.id}: refusing to export {staged.partition or 'full'}: it has not passed validation")
    if rec.validation.fingerprint is None:
        raise NotValidated(f"{decl.id}: refusing to export {staged.partition or 'full'}: its validation recorded no "
                           "fingerprint of the staged rows; run the DAG again")
    wh = open_warehouse(cfg.warehouse_url, home=cfg.home)
    store = open_store(cfg.bucket_url)
    run_key = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in run_id)
    exported = exporting.export(decl, wh, staged, store, run_key, work_root=cfg.internal_dir / "export",
                                validated=rec.validation.fingerprint)
    out = [asdict(e) for e in exported]
    RunRecords(cfg.internal_dir).update(decl.id, staged.partition, state="exported", exported=out)
    return out


def publish(dataset_id: str, staged_d: dict[str, Any], exported_d: list[dict[str, Any]], cfg: Settings | None = None) -> dict[str, Any]:
    from pubdata.publishing import publish as publishing
    from pubdata.publishing.export import ExportedFile

    cfg = cfg or settings()
    decl = load(dataset_id, cfg.project)
    check_policy(decl)
    staged = StagedTable.from_dict(staged_d)
    wh = open_warehouse(cfg.warehouse_url, home=cfg.home)
    store = open_store(cfg.bucket_url)
    records = RunRecords(cfg.internal_dir)
    rec = records.get(decl.id, staged.partition)
    columns = [(c.name, c.type, wh.type_family(c.type)) for c in wh.columns(staged) if c.name not in INTERNAL_COLUMNS]
    exported = [ExportedFile(**e) for e in exported_d]
    validation = None
    if rec is not None and rec.validation is not None:
        v = rec.validation.model_dump(mode="json")
        validation = {k: v[k] for k in ("outcome", "checks", "warnings")}
    result = PublishResult.model_validate(
        publishing.publish(decl, staged, exported, columns, store, cfg.public_base_url, validation))
    wh.drop(staged)
    for name in SIDE_TABLES:
        wh.drop(wh.side(staged, name))
    records.update(decl.id, staged.partition, state="published", published=result,
                   query_sha256=decl.query_sha256, finished_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
    return result.model_dump(mode="json")
