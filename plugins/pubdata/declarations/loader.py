"""Loading declarations: the YAML file plus its reviewed query, checked strictly and one at a time.

A broken file yields a DeclarationInvalid naming the file and field; loading every declaration
(`load_all`) keeps going, so one broken dataset never hides the others.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import ValidationError

from pubdata.declarations.spec import DeclarationFile
from pubdata.errors import DeclarationInvalid
from pubdata.ids import DatasetId

if TYPE_CHECKING:
    from pubdata.declarations.cache import SpecCache

# libyaml's safe loader parses a declaration ~9x faster than the pure-Python one, and the dag
# processor loads every declaration on every parse; same documents, same errors.
SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class Declaration:
    """A loaded, validated dataset: the YAML plus the reviewed query and where both came from."""

    dataset_id: DatasetId
    spec: DeclarationFile
    query: str
    metadata_path: Path
    query_path: Path
    expectations_path: Path | None

    @property
    def id(self) -> str:
        return str(self.dataset_id)

    @property
    def dataset(self) -> str:
        return self.dataset_id.dataset

    @property
    def table(self) -> str:
        return self.dataset_id.table

    @property
    def version(self) -> int:
        return self.dataset_id.version

    @property
    def dag_id(self) -> str:
        return self.dataset_id.dag_id

    @property
    def query_sha256(self) -> str:
        return hashlib.sha256(self.query.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class DeclarationProblem:
    """Why a declaration could not be loaded: where, which field, what to do."""

    path: Path
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}" + (f": {self.field}" if self.field else "")
        return f"{where}: {self.message}"


def _invalid(path: Path, field: str, message: str) -> DeclarationInvalid:
    return DeclarationInvalid([DeclarationProblem(path, field, message)])


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def load_declaration(metadata_path: Path, project: Path, cache: SpecCache | None = None) -> Declaration:
    """Load one declaration; raise DeclarationInvalid naming file and field on any problem.

    cache: validated declarations from earlier loads, keyed by the YAML text (declarations.cache).
    """
    metadata_path = Path(metadata_path)
    rel = relative(metadata_path, project)
    dataset_id = DatasetId.from_metadata_path(metadata_path)
    if dataset_id is None:
        raise _invalid(rel, "", "file must be metadata/<dataset>/<table>_v<N>.yaml with lowercase letters, digits "
                       "and underscores; rename it")
    text = metadata_path.read_text(encoding="utf-8")
    spec = cache.get(text) if cache is not None else None
    if spec is None:
        spec = _parse_spec(text, rel)
        if cache is not None:
            cache.put(text, spec)
    query_path = dataset_id.query_path(project)
    if not query_path.is_file():
        raise _invalid(rel, "query", f"reviewed query {relative(query_path, project)} is missing; add it beside the "
                       "declaration")
    query = query_path.read_text(encoding="utf-8")
    if not query.strip():
        raise _invalid(relative(query_path, project), "query", "the query file is empty")
    exp_path = dataset_id.expectations_path(project)
    return Declaration(dataset_id, spec, query, metadata_path, query_path, exp_path if exp_path.is_file() else None)


def _parse_spec(text: str, rel: Path) -> DeclarationFile:
    try:
        raw = yaml.load(text, Loader=SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        field = f"line {mark.line + 1}" if mark else ""
        raise _invalid(rel, field, f"not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(raw, dict):
        raise _invalid(rel, "", "expected a mapping of keys (friendly_name, description, ...)")
    try:
        return DeclarationFile.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            msg = err["msg"]
            if err["type"] == "extra_forbidden":
                msg = "unknown key; remove it or check its spelling (see schema/declaration.schema.json)"
            elif err["type"] == "missing":
                msg = "required key is missing"
            elif "input" in err and err["type"] not in ("value_error",):
                msg = f"{msg} (got {err['input']!r})"
            problems.append(DeclarationProblem(rel, _loc(err["loc"]), msg))
        raise DeclarationInvalid(list(problems)) from None


def load(dataset_id: DatasetId | str, project: Path) -> Declaration:
    """The declaration of one dataset by id; DeclarationInvalid when its file is gone or broken."""
    ident = dataset_id if isinstance(dataset_id, DatasetId) else DatasetId.parse(dataset_id)
    path = ident.metadata_path(project)
    if not path.is_file():
        raise _invalid(path, "", f"the declaration of {ident} is gone; restore it or pause the DAG")
    return load_declaration(path, project)


@dataclass
class DeclarationSet:
    """Every declaration under metadata/, split into the ones that loaded and the ones that did not."""

    declarations: dict[str, Declaration]
    problems: list[DeclarationProblem]


def declaration_paths(project: Path) -> list[Path]:
    return sorted((Path(project) / "metadata").glob("*/*.yaml"))


def load_all(project: Path, cache: SpecCache | None = None) -> DeclarationSet:
    decls: dict[str, Declaration] = {}
    problems: list[DeclarationProblem] = []
    for path in declaration_paths(project):
        try:
            d = load_declaration(path, project, cache)
        except DeclarationInvalid as exc:
            problems.extend(p for p in exc.problems if isinstance(p, DeclarationProblem))
            continue
        decls[d.id] = d
    if cache is not None:
        cache.save()
    return DeclarationSet(decls, problems)


def relative(path: Path, project: Path) -> Path:
    """path relative to the project when inside it (as messages show it), else as given."""
    # Lexically first: resolve() walks every path component, a third of loading a declaration.
    try:
        return Path(path).relative_to(project)
    except ValueError:
        pass
    try:
        return Path(path).resolve().relative_to(Path(project).resolve())
    except ValueError:
        return Path(path)
