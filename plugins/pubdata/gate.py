"""The gate: everything that can be known about a dataset before it runs.

Declaration loading, the policy verdict, static checks of the reviewed SQL and the dataset's own
expectations file. `pubdata check` reports through it, and the DAG factory enforces it: a dataset
with a problem here gets no DAG. Each problem names the file, the rule and the fix.

The static checks parse SQL with sqlglot, too slow (and too heavy an import) for every DAG parse,
so their result is cached by the digest of what they read (GateCache): a parse checks only what
changed since the last one, within a time budget, and what it could not check gets no DAG yet.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

from pubdata.declarations import Declaration, DeclarationSet
from pubdata.declarations.loader import relative
from pubdata.declarations.untrusted import clip, read_text
from pubdata.errors import FileRefused
from pubdata.parse_cache import DigestCache, code_key, digest
from pubdata.policy.verdict import verdict

GATE_FILE = "gate.json"
CHECKED_CODE = ("gate", "sql", "policy", "declarations/spec", "declarations/untrusted", "validation/expectations_file",
                "validation/batch_sql", "validation/expectations", "warehouses/duckdb_dialect",
                "warehouses/duckdb_routines")
"""The modules the static checks' answers depend on: a change to any of them empties the cache."""


@dataclass(frozen=True)
class Problem:
    dataset: str
    file: str
    rule: str
    message: str
    fix: str
    intended: bool = False  # the policy's refusal of a declaration marked refused_on_purpose: not a failure

    def __str__(self) -> str:
        return f"{self.file}: {self.rule}: {self.message} Fix: {self.fix}"


def _rel(path: Path, project: Path) -> str:
    return str(relative(path, project))


def policy_problems(decl: Declaration, project: Path) -> list[Problem]:
    """The verdict's refusal; for a declaration marked `refused_on_purpose`, the refusal is intended
    (reported, not failed) and its absence is the problem: the mark would hide a publishable dataset."""
    v = verdict(decl.spec)
    where = _rel(decl.metadata_path, project)
    on_purpose = decl.spec.refused_on_purpose
    if v.allows_publish:
        if on_purpose:
            return [Problem(decl.id, where, "policy: not refused", f"refused_on_purpose is set ({clip(on_purpose, 80)}) "
                            f"but the policy verdict is {v.status}: it would publish",
                            "remove refused_on_purpose, or the declaration if it was only an example")]
        return []
    return [Problem(decl.id, where, f"policy: {v.status}", "; ".join(v.reasons), v.fix or "", intended=bool(on_purpose))]


def static_problems(decl: Declaration, project: Path) -> list[Problem]:
    """The static checks of the reviewed query and of the expectations file (sqlglot; slow)."""
    from pubdata.errors import ExpectationsFileError
    from pubdata.sql.rules import check_query
    from pubdata.validation import expectations_file

    problems = [Problem(decl.id, _rel(decl.query_path, project), f"sql: {f.rule}", f.message, f.fix)
                for f in check_query(decl.query, decl.spec)]
    if decl.expectations_path is not None:
        try:
            expectations_file.load(decl.expectations_path, decl)
        except ExpectationsFileError as exc:
            where, text = _rel(decl.expectations_path, project), str(exc)
            prefix = f"{decl.expectations_path}:"
            if text.startswith(prefix):  # the message names file:line[:column]; keep the project-relative form
                position, _, text = text[len(prefix):].partition(": ")
                where = f"{where}:{position}"
            problems.append(Problem(decl.id, where, "expectations", text,
                                    "name declared columns, and a Great Expectations 1.x expectation with its arguments "
                                    "or one SELECT over {batch} under `sql:`"))
    return problems


def check_declaration(decl: Declaration, project: Path, cache: GateCache | None = None) -> list[Problem]:
    static = cache.static_problems(decl, project) if cache is not None else static_problems(decl, project)
    return policy_problems(decl, project) + static


def check_all(project: Path, loaded: DeclarationSet, decls: list[Declaration], *,
              include_load_errors: bool = True, cache: GateCache | None = None) -> list[Problem]:
    problems: list[Problem] = []
    if include_load_errors:
        for e in loaded.problems:
            problems.append(Problem(str(e.path), e.where, f"declaration: {e.field or 'file'}", e.message,
                                    "fix the file; see schema/declaration.schema.json"))
    for d in decls:
        try:
            problems.extend(check_declaration(d, project, cache))
        except Exception as exc:  # one bad file is one error: the other datasets are still checked
            problems.append(Problem(d.id, _rel(d.metadata_path, project), "internal",
                                    f"could not be checked ({type(exc).__name__}: {clip(str(exc), 200)})",
                                    "simplify the query or expectations file; report this if it persists"))
    if cache is not None:
        cache.save()
    return problems


@lru_cache(maxsize=1)
def gate_key() -> str:
    """The pipeline's checking code and the SQL parser's version: what the cached answers depend on."""
    from importlib.metadata import version

    return digest(code_key(*CHECKED_CODE), version("sqlglot"))


class GateCache(DigestCache):
    """The static checks' problems of each declaration, by the digest of everything they read."""

    def __init__(self, path: Path):
        super().__init__(path, gate_key())

    @staticmethod
    def inputs(decl: Declaration, project: Path) -> str | None:
        """Digest of the declaration, query and expectations file (None when one cannot be read)."""
        expectations = ""
        if decl.expectations_path is not None:
            try:
                expectations = read_text(decl.expectations_path, project)  # never a pipe's endless read
            except FileRefused:
                return None  # the check itself reports the file
        return digest(decl.id, _rel(decl.metadata_path, project), decl.spec.model_dump_json(),
                      _rel(decl.query_path, project), decl.query,
                      _rel(decl.expectations_path, project) if decl.expectations_path else "", expectations)

    def get(self, decl: Declaration, project: Path) -> list[Problem] | None:
        key = self.inputs(decl, project)
        cached = self.get_text(key) if key is not None else None
        if cached is None:
            return None
        try:
            return [Problem(**p) for p in json.loads(cached)]
        except (ValueError, TypeError):
            return None

    def put(self, decl: Declaration, project: Path, problems: list[Problem]) -> None:
        key = self.inputs(decl, project)
        if key is not None:
            self.put_text(key, json.dumps([asdict(p) for p in problems]))

    def static_problems(self, decl: Declaration, project: Path) -> list[Problem]:
        found = self.get(decl, project)
        if found is None:
            found = static_problems(decl, project)
            self.put(decl, project, found)
        return found
