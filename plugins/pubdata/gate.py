"""The gate: everything that can be known about a dataset before it runs.

Declaration loading, the policy verdict, static checks of the reviewed SQL and the dataset's own
expectations file. `pubdata check` reports through it; each problem names the file, the rule and
the fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pubdata.declarations import Declaration, DeclarationSet
from pubdata.declarations.loader import relative
from pubdata.errors import ExpectationsFileError
from pubdata.policy.verdict import verdict
from pubdata.sql.rules import check_query
from pubdata.validation import expectations_file


@dataclass(frozen=True)
class Problem:
    dataset: str
    file: str
    rule: str
    message: str
    fix: str


def _rel(path: Path, project: Path) -> str:
    return str(relative(path, project))


def check_declaration(decl: Declaration, project: Path) -> list[Problem]:
    problems: list[Problem] = []
    meta = _rel(decl.metadata_path, project)
    v = verdict(decl.spec)
    if not v.allows_publish:
        problems.append(Problem(decl.id, meta, f"policy: {v.status}", "; ".join(v.reasons), v.fix or ""))
    for f in check_query(decl.query, decl.spec):
        problems.append(Problem(decl.id, _rel(decl.query_path, project), f"sql: {f.rule}", f.message, f.fix))
    if decl.expectations_path is not None:
        try:
            expectations_file.load(decl.expectations_path, decl)
        except ExpectationsFileError as exc:
            problems.append(Problem(decl.id, _rel(decl.expectations_path, project), "expectations", str(exc),
                                    "use a Great Expectations 1.x expectation name with its arguments, or `sql:`"))
    return problems


def check_all(project: Path, loaded: DeclarationSet, decls: list[Declaration], *,
              include_load_errors: bool = True) -> list[Problem]:
    problems: list[Problem] = []
    if include_load_errors:
        for e in loaded.problems:
            problems.append(Problem(str(e.path), str(e.path), f"declaration: {e.field or 'file'}", e.message,
                                    "fix the file; see schema/declaration.schema.json"))
    for d in decls:
        problems.extend(check_declaration(d, project))
    return problems
