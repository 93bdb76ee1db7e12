"""`pubdata check`: everything that can be known about a dataset before it runs.

Declaration loading, the policy verdict, static checks of the reviewed SQL and the dataset's own
expectations file. Each problem names the file, the rule and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pubdata import policy
from pubdata.config import Settings
from pubdata.declaration import Catalog, Declaration


@dataclass(frozen=True)
class Problem:
    dataset: str
    file: str
    rule: str
    message: str
    fix: str


def _rel(path: Path, project: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(project.resolve()))
    except ValueError:
        return str(path)


def check_declaration(decl: Declaration, project: Path) -> list[Problem]:
    from pubdata import sqlcheck
    from pubdata.validation import ExpectationsFileError, load_dataset_expectations

    problems: list[Problem] = []
    meta = _rel(decl.metadata_path, project)
    v = policy.verdict(decl.spec)
    if not v.allows_publish:
        problems.append(Problem(decl.id, meta, f"policy: {v.status}", "; ".join(v.reasons), v.fix or ""))
    for f in sqlcheck.check_query(decl.query, decl.spec):
        problems.append(Problem(decl.id, _rel(decl.query_path, project), f"sql: {f.rule}", f.message, f.fix))
    if decl.expectations_path is not None:
        try:
            load_dataset_expectations(decl.expectations_path, decl)
        except ExpectationsFileError as exc:
            problems.append(Problem(decl.id, _rel(decl.expectations_path, project), "expectations", str(exc),
                                    "use a Great Expectations 1.x expectation name with its arguments, or `sql:`"))
    return problems


def check_catalog(cfg: Settings, catalog: Catalog, decls: list[Declaration], *, include_load_errors: bool = True) -> list[Problem]:
    problems: list[Problem] = []
    if include_load_errors:
        for e in catalog.errors:
            problems.append(Problem(str(e.path), str(e.path), f"declaration: {e.field or 'file'}", e.message,
                                    "fix the file; see schema/declaration.schema.json"))
    for d in decls:
        problems.extend(check_declaration(d, cfg.project))
    return problems
