"""The steps of a publish run, as plain functions: wait for sources -> stage -> validate -> export -> publish.

Airflow calls these through the DAG factory; tests and the CLI can call them directly. Each step
reloads the declaration from disk, so an edited file is re-checked by the run that uses it.
What a step hands the next travels as JSON (XCom): a StagedTable, a ValidationSummary, an
ExportResult, a PublishResult. Nothing a later step needs is left on the disk of the worker that
ran the step before it: staged tables are in the warehouse, exported files in the private
staging store, run records and reports in the run-state store. Every step may be run again
after a failure at any point (Airflow's retries) and then ends as if it had run once.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict
from typing import Any

from pubdata.config import Settings, settings
from pubdata.declarations import Declaration, load
from pubdata.errors import NotValidated, PolicyRefused, UsageError, ValidationError, ValidationFailed
from pubdata.orchestration import alerts, quarantine
from pubdata.orchestration.records import CheckSummary, ExportResult, PublishResult, RunRecords, ValidationSummary
from pubdata.policy.verdict import verdict
from pubdata.stores import open_private, open_store
from pubdata.stores.base import Store
from pubdata.validation import reports
from pubdata.validation.expectations.row_count_band import previous_published
from pubdata.validation.redaction import redacted, shown
from pubdata.validation.report import CheckResult
from pubdata.validation.run import validate as run_validation
from pubdata.validation.suite import suite_for
from pubdata.warehouses import open_warehouse
from pubdata.warehouses.base import INTERNAL_COLUMNS, SIDE_TABLES, JobScope, StagedTable, Warehouse


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


def check_start_date(decl: Declaration, day: dt.date | None) -> None:
    """A day before the declaration's start_date is not one the dataset publishes."""
    if day is not None and decl.spec.incremental and day < decl.spec.start_date:
        raise UsageError(before_start_date(decl, day))


def before_start_date(decl: Declaration, day: dt.date) -> str:
    return (f"{day} is before the dataset's start_date {decl.spec.start_date} ({decl.metadata_path.name}): run a day "
            "from start_date on, or move start_date back if the data really begins earlier")


def check_query_statically(decl: Declaration) -> None:
    """The static SQL checks `pubdata check` runs, enforced before anything reaches the warehouse."""
    from pubdata.sql.rules import check_query

    findings = check_query(decl.query, decl.spec)
    if findings:
        listed = "; ".join(f"[{f.rule}] {f.message} Fix: {f.fix}" for f in findings)
        raise PolicyRefused(f"{decl.id}: the reviewed query fails its static checks ({decl.query_path.name}): {listed}")
def warehouse(cfg: Settings, decl: Declaration, run_id: str = "manual") -> Warehouse:
    """The configured warehouse, with this dataset's byte cap and the run its jobs belong to.

    Staged tables expire by themselves after the quarantine period (never sooner than a run can
    take), so nothing staged outlives it even when no purge runs.
    """
    expiration = dt.timedelta(days=max(quarantine.retention_days(), quarantine.MIN_STAGING_DAYS))
    return open_warehouse(cfg.warehouse_url, home=cfg.home,
                          scope=JobScope(run_id=run_id, maximum_bytes_billed=decl.spec.maximum_bytes_billed,
                                         staging_expiration=expiration))


def public_store(cfg: Settings) -> Store:
    return open_store(cfg.bucket_url)


def staging_store(cfg: Settings) -> Store:
    return open_private(cfg.staging_url, cfg.bucket_url, "PUBDATA_STAGING_BUCKET")


def _passed(decl: Declaration, staged: StagedTable, validation_d: dict[str, Any] | None) -> ValidationSummary:
    """The validation result handed over in XCom; refuse anything that did not pass."""
    summary = ValidationSummary.model_validate(validation_d) if validation_d else None
    if summary is None or summary.outcome != "passed":
        outcome = summary.outcome if summary is not None else "no validation result"
        raise NotValidated(f"{decl.id}: refusing to export or publish {staged.partition or 'the full table'}: "
                           f"it has not passed validation ({outcome})")
    return summary


def wait_for_source(dataset_id: str, table: str, partition: dt.date, cfg: Settings | None = None) -> bool:
    """Whether the source table's partition for this day has arrived (it has rows)."""
    cfg = cfg or settings()
    decl = load(dataset_id, cfg.project)
    if table not in decl.spec.source_tables:
        return True  # no longer declared (the DAG predates an edit): nothing to wait for
    return warehouse(cfg, decl).source_ready(table, partition)


def stage(dataset_id: str, partition: dt.date | None, run_id: str = "manual", cfg: Settings | None = None) -> dict[str, Any]:
    from pubdata.sql.rewrite import plan

    cfg = cfg or settings()
    decl = load(dataset_id, cfg.project)
    check_policy(decl)
    check_start_date(decl, partition)
    check_query_statically(decl)
    stage_plan = plan(decl.query, decl.spec)
    part = partition if decl.spec.incremental else None
    part_s = part.isoformat() if part else None
    wh = warehouse(cfg, decl, run_id)
    quarantine.purge(cfg, decl.id, warehouse=wh)  # expired quarantine of this dataset
    records = RunRecords.open(cfg)
    records.start(decl.id, part_s, run_id, task="stage")
    quarantine.release(cfg, decl.id, part_s)  # this run's table replaces a quarantined one of the same day
    staged = wh.stage(decl.id, stage_plan, query_params(decl, partition), part,
                      partition_field=decl.spec.partition_field, order_by=list(decl.spec.policy.columns))
    rows = wh.scalar(staged, "SELECT count(*) FROM {table}")
    records.update(decl.id, part_s, state="staged", staged=staged.to_dict(), rows=rows)
    return staged.to_dict()


def validate(dataset_id: str, staged_d: dict[str, Any], run_id: str | None = None,
             cfg: Settings | None = None) -> dict[str, Any]:
    """Run the suite on the staged table. Raises ValidationFailed (data) or ValidationError (infrastructure).

    run_id names the report; without one, the run that staged (its record) names it.
    """
    cfg = cfg or settings()
    decl = load(dataset_id, cfg.project)
    check_policy(decl)
    staged = StagedTable.from_dict(staged_d)
    records = RunRecords.open(cfg)
    if run_id is None:
        record = records.get(decl.id, staged.partition)
        run_id = record.run_id if record is not None else "manual"
    records.claim(decl.id, staged.partition, run_id, "validate")
    wh = warehouse(cfg, decl, run_id)
    previous = previous_published(public_store(cfg), decl, staged.partition)
    # Before the suite: a change to the table during or after validation shows at export.
    fingerprint = wh.fingerprint(staged)
    report = run_validation(decl, wh, staged, suite_for(decl, wh, previous))
    summary = ValidationSummary(
        outcome=report.outcome, checks=len(report.checks), failures=[_check(c) for c in report.failures],
        warnings=[_check(c) for c in report.warnings], errors=[_check(c) for c in report.errors],
        seconds=report.seconds, fingerprint=fingerprint,
    )
    state = {"passed": "validated", "failed": "quarantined", "error": "validation_error"}[report.outcome]
    quarantined = f"{staged.location} table {staged.table}" if report.outcome == "failed" else None
    link = reports.write(records.store, decl, report.to_dict(), run_id, quarantined)
    records.update(decl.id, staged.partition, state=state, validation=summary,
                   validation_report=report.to_dict(), report=link)
    if report.outcome == "failed":
        quarantine.mark(cfg, decl.id, staged.partition, staged.to_dict(), run_id)
        raise ValidationFailed(report.summary(), report)
    if report.outcome == "error":
        raise ValidationError(report.summary(), report)
    if report.warnings:  # warn severity: publish, and tell on-call
        alerts.alert_run(cfg, decl, staged.partition, staged.partition or report.started_at[:10], kind="warning")
    return summary.model_dump(mode="json")


def _check(c: CheckResult) -> CheckSummary:
    # The summary goes into the run record and, for warnings, into the public metadata.json.
    texts = shown(asdict(c))
    observed = texts["observed"] if c.sensitive else redacted(c.observed)
    return CheckSummary(expectation=c.expectation, description=c.description, severity=c.severity,
                        observed=observed, expected=c.expected, error=c.error,
                        finding=texts["finding"] or None, cells=texts["cells"] or None)


def run_key(run_id: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in run_id)


def export(dataset_id: str, staged_d: dict[str, Any], validation_d: dict[str, Any] | None, run_id: str = "manual",
           cfg: Settings | None = None) -> dict[str, Any]:
    """The staged rows as files in the private staging store (see publishing.export).

    Gated on the validation result validate handed over (XCom), and on the policy, again.
    """
    from pubdata.publishing import export as exporting

    cfg = cfg or settings()
    decl = load(dataset_id, cfg.project)
    check_policy(decl)
    staged = StagedTable.from_dict(staged_d)
    summary = _passed(decl, staged, validation_d)
    RunRecords.open(cfg).claim(decl.id, staged.partition, run_id, "export")
    if summary.fingerprint is None:
        raise NotValidated(f"{decl.id}: refusing to export {staged.partition or 'the full table'}: its validation "
                           "recorded no fingerprint of the staged rows; run the DAG again")
    wh = warehouse(cfg, decl, run_id)
    exported = exporting.export(decl, wh, staged, staging_store(cfg), run_key(run_id),
                                work_root=cfg.internal_dir / "export", validated=summary.fingerprint)
    result = ExportResult(files=[asdict(e) for e in exported],
                          columns=[(c.name, c.type, wh.type_family(c.type)) for c in wh.columns(staged)
                                   if c.name not in INTERNAL_COLUMNS])
    RunRecords.open(cfg).update(decl.id, staged.partition, state="exported", exported=result.files)
    return result.model_dump(mode="json")


def publish(dataset_id: str, staged_d: dict[str, Any], validation_d: dict[str, Any] | None,
            exported_d: dict[str, Any], run_id: str = "manual", cfg: Settings | None = None) -> dict[str, Any]:
    from pubdata.publishing import publish as publishing
    from pubdata.publishing.export import ExportedFile

    cfg = cfg or settings()
    decl = load(dataset_id, cfg.project)
    check_policy(decl)
    staged = StagedTable.from_dict(staged_d)
    summary = _passed(decl, staged, validation_d)
    exported = ExportResult.model_validate(exported_d)
    RunRecords.open(cfg).claim(decl.id, staged.partition, run_id, "publish")
    v = summary.model_dump(mode="json")
    result = PublishResult.model_validate(publishing.publish(
        decl, staged, [ExportedFile(**e) for e in exported.files], list(exported.columns), public_store(cfg),
        cfg.public_base_url, {k: v[k] for k in ("outcome", "checks", "warnings")}, staging=staging_store(cfg),
        contacts=cfg.public_contacts(decl.spec.owners)))
    wh = warehouse(cfg, decl, run_id)
    wh.drop(staged)
    for name in SIDE_TABLES:
        wh.drop(wh.side(staged, name))
    RunRecords.open(cfg).update(decl.id, staged.partition, state="published", published=result,
                                query_sha256=decl.query_sha256, failure=None,
                                finished_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
    return result.model_dump(mode="json")


def catalog(cfg: Settings | None = None) -> int:
    """Rebuild the public catalog pages (index.html, feed.xml) from all-datasets.json; the number of tables."""
    from pubdata.publishing import catalog as catalogue

    cfg = cfg or settings()
    return len(catalogue.refresh(public_store(cfg), cfg.public_base_url))
