"""Loading declarations: the YAML file plus its reviewed query, checked strictly and one at a time.

A broken file yields a DeclarationInvalid naming the file and field; loading every declaration
(`load_all`) keeps going, so one broken dataset never hides the others.
"""

from __future__ import annotations

import difflib
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

import yaml
from pydantic import BaseModel, ValidationError

from pubdata.declarations.airflow_limits import DAG_ID_MAX, TAG_MAX
from pubdata.declarations.spec import DeclarationFile
from pubdata.declarations.untrusted import clip, compose_yaml, read_text, shorten
from pubdata.errors import DeclarationInvalid, FileRefused
from pubdata.ids import DatasetId

if TYPE_CHECKING:
    from pubdata.declarations.cache import SpecCache

MAX_PROBLEMS_PER_FILE = 20
"""A file with more mistakes than this lists the first ones and how many more there are."""


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
    """Why a declaration could not be loaded: where (file, line, column), which field, what to do."""

    path: Path
    field: str
    message: str
    line: int | None = None  # 1-based, as editors count
    column: int | None = None

    @property
    def where(self) -> str:
        """file:line:column, the form editors and terminals turn into a link."""
        return f"{self.path}" + (f":{self.line}" if self.line else "") + (f":{self.column}" if self.line and self.column else "")

    def __str__(self) -> str:
        return f"{self.where}" + (f": {self.field}" if self.field else "") + f": {self.message}"


def _invalid(path: Path, field: str, message: str) -> DeclarationInvalid:
    return DeclarationInvalid([DeclarationProblem(path, field, message)])


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        name = clip(str(part), 40)  # a key may come from the file
        out += f"[{part}]" if isinstance(part, int) else (f".{name}" if out else name)
    return out


def _refused(path: Path, exc: FileRefused, field: str = "") -> DeclarationInvalid:
    return DeclarationInvalid([DeclarationProblem(path, field, str(exc), line=exc.line)])


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
    if len(dataset_id.dag_id) > DAG_ID_MAX or len(dataset_id.dataset) > TAG_MAX:
        raise _invalid(rel, "", f"its DAG id is {len(dataset_id.dag_id)} characters and its dataset name (a DAG tag) "
                       f"{len(dataset_id.dataset)}: Airflow allows {DAG_ID_MAX} and {TAG_MAX}; shorten the names")
    try:
        text = read_text(metadata_path, project)
    except FileRefused as exc:
        raise _refused(rel, exc) from None
    spec = cache.get(text) if cache is not None else None
    if spec is None:
        spec = _parse_spec(text, rel)
        if cache is not None:
            cache.put(text, spec)
    query_path = dataset_id.query_path(project)
    if not _present(query_path):
        raise _invalid(rel, "query", f"reviewed query {relative(query_path, project)} is missing; add it beside the "
                       "declaration")
    try:
        query = read_text(query_path, project)
    except FileRefused as exc:
        raise _refused(relative(query_path, project), exc, "query") from None
    if not query.strip():
        raise _invalid(relative(query_path, project), "query", "the query file is empty")
    exp_path = dataset_id.expectations_path(project)
    # Present in any form (a directory, a dangling link): its loader says what is wrong with it.
    return Declaration(dataset_id, spec, query, metadata_path, query_path, exp_path if _present(exp_path) else None)


def _present(path: Path) -> bool:
    return path.exists() or path.is_symlink()


def _parse_spec(text: str, rel: Path) -> DeclarationFile:
    try:
        raw, tree = compose_yaml(text)
    except FileRefused as exc:
        raise _refused(rel, exc) from None
    except yaml.YAMLError as exc:
        line, column = yaml_error_position(exc)
        raise DeclarationInvalid([DeclarationProblem(rel, "", f"not valid YAML: {yaml_error_text(exc)}",
                                                     line=line, column=column)]) from None
    if not isinstance(raw, dict):
        got = "an empty file" if raw is None else f"a {type(raw).__name__}"
        raise _invalid(rel, "", f"expected a mapping of keys (friendly_name, description, ...), got {got}")
    try:
        return DeclarationFile.model_validate(raw)
    except ValidationError as exc:
        problems = []
        errors = exc.errors(include_url=False)
        for err in errors[:MAX_PROBLEMS_PER_FILE]:
            loc = tuple(err["loc"])
            line, column = position(tree, loc, key=err["type"] == "extra_forbidden")
            problems.append(DeclarationProblem(rel, _loc(loc), clip(_message(err, loc), 300), line=line, column=column))
        if len(errors) > MAX_PROBLEMS_PER_FILE:
            problems.append(DeclarationProblem(rel, "", f"... and {len(errors) - MAX_PROBLEMS_PER_FILE} more problems"))
        raise DeclarationInvalid(list(problems)) from None


def yaml_error_position(exc: yaml.YAMLError) -> tuple[int | None, int | None]:
    """Where a YAML syntax error is, 1-based.

    PyYAML's problem mark is where it gave up, which for a key without its colon ("while scanning a
    simple key ... could not find expected ':'") is the start of the *next* line; the context mark
    is the line with the mistake.
    """
    problem = getattr(exc, "problem_mark", None)
    context = getattr(exc, "context_mark", None)
    mark = context if context is not None and "simple key" in str(getattr(exc, "context", "") or "") else problem
    if mark is None:
        return None, None
    return mark.line + 1, mark.column + 1


def yaml_error_text(exc: yaml.YAMLError) -> str:
    problem = str(getattr(exc, "problem", None) or exc)
    context = getattr(exc, "context", None)
    return clip(f"{problem} ({context})" if context else problem, 200)


def position(tree: yaml.Node | None, loc: tuple[Any, ...], *, key: bool = False) -> tuple[int | None, int | None]:
    """Line and column (1-based) of the YAML node at a pydantic error location.

    key: point at the mapping key itself (an unknown key) rather than its value. Where the path
    leaves the tree (a missing key), the deepest node that exists is named.
    """
    node = tree
    found: yaml.Node | None = tree
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        nxt = None
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode) and k.value == str(part):
                    nxt = k if (last and key) else v
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            nxt = node.value[part]
        if nxt is None:
            break
        node = found = nxt
    if found is None:
        return None, None
    return found.start_mark.line + 1, found.start_mark.column + 1


def _fields_at(loc: tuple[Any, ...]) -> list[str]:
    """The keys the declaration model allows at a location (for "did you mean")."""
    model: Any = DeclarationFile
    for part in loc:
        if isinstance(part, int):
            continue
        info = getattr(model, "model_fields", {}).get(part)
        if info is None:
            return []
        model = _model_in(info.annotation)
        if model is None:
            return []
    return list(getattr(model, "model_fields", {}))


def _model_in(annotation: Any) -> Any:
    """The pydantic model inside an annotation such as `Steward | None` or `list[Dimension]`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


_TYPE_WORDS = {"int": "a whole number", "bool": "true or false", "string": "a text", "float": "a number",
               "list": "a list ([a, b] or one '- item' per line)", "dict": "a mapping of keys",
               "model": "a mapping of keys", "date": "a date (YYYY-MM-DD)", "url": "an http(s) URL"}


def _message(err: Any, loc: tuple[Any, ...]) -> str:
    """A pydantic error in words for the person who wrote the file, with what they wrote."""
    kind, ctx = err["type"], err.get("ctx") or {}
    got = f" (got {shorten(err['input'])})" if "input" in err and kind != "missing" else ""
    if kind == "extra_forbidden":
        name = str(loc[-1]) if loc else ""
        allowed = _fields_at(loc[:-1])
        close = difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]}? " if close else ""
        listed = f" (allowed here: {', '.join(allowed)})" if allowed and not close else ""
        return f"unknown key; {hint}remove it or fix its spelling{listed}; see schema/declaration.schema.json"
    if kind == "missing":
        return "required key is missing: add it"
    if kind == "value_error":
        return str(err["msg"]).removeprefix("Value error, ")
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected', '')}{got}"
    if kind in ("greater_than_equal", "greater_than"):
        return f"must be at least {ctx.get('ge', ctx.get('gt'))}{got}"
    if kind in ("less_than_equal", "less_than"):
        return f"must be at most {ctx.get('le', ctx.get('lt'))}{got}"
    if kind == "too_short":
        return f"needs at least {ctx.get('min_length')} item(s){got}" if "list" in str(err["msg"]).lower() or \
            isinstance(err.get("input"), list) else f"must not be empty{got}"
    if kind == "string_too_short":
        return f"must not be empty{got}"
    if kind in ("string_too_long", "too_long"):
        return f"is longer than the {ctx.get('max_length')} allowed{got}"
    if kind == "string_pattern_mismatch":
        if "@" in str(ctx.get("pattern", "")):
            return f"must be an e-mail address (name@example.org){got}"
        return f"must be lowercase letters, digits and underscores, starting with a letter or _{got}"
    for prefix, word in _TYPE_WORDS.items():
        if kind.startswith(prefix):
            return f"must be {word}{got}"
    return f"{err['msg']}{got}"


def load(dataset_id: DatasetId | str, project: Path) -> Declaration:
    """The declaration of one dataset by id; DeclarationInvalid when its file is gone or broken."""
    ident = dataset_id if isinstance(dataset_id, DatasetId) else DatasetId.parse(dataset_id)
    path = ident.metadata_path(project)
    if not _present(path):
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
    """Every declaration under metadata/; a file that cannot be loaded is a problem, never an exception.

    Declarations whose DAG ids collide (`a.b__c_v1` and `a__b.c_v1` are both publish_a__b__c_v1)
    are all refused: Airflow would keep one and silently drop the other.
    """
    decls: dict[str, Declaration] = {}
    problems: list[DeclarationProblem] = []
    for path in declaration_paths(project):
        try:
            d = load_declaration(path, project, cache)
        except DeclarationInvalid as exc:
            problems.extend(p for p in exc.problems if isinstance(p, DeclarationProblem))
            continue
        except Exception as exc:  # one bad file is one error, whatever went wrong with it
            problems.append(DeclarationProblem(relative(path, project), "", "could not be loaded "
                                               f"({type(exc).__name__}: {clip(str(exc), 200)}); fix or remove the file"))
            continue
        decls[d.id] = d
    problems += _refuse_dag_id_collisions(decls, project)
    if cache is not None:
        cache.save()
    return DeclarationSet(decls, problems)


def _refuse_dag_id_collisions(decls: dict[str, Declaration], project: Path) -> list[DeclarationProblem]:
    """Remove every declaration that shares its DAG id with another; one problem per file, naming the others."""
    by_dag: dict[str, list[Declaration]] = {}
    for d in decls.values():
        by_dag.setdefault(d.dag_id, []).append(d)
    problems = []
    for dag_id, same in sorted(by_dag.items()):
        if len(same) < 2:
            continue
        for d in same:
            others = ", ".join(str(relative(o.metadata_path, project)) for o in same if o is not d)
            problems.append(DeclarationProblem(
                relative(d.metadata_path, project), "",
                f"its DAG id {dag_id} is also the DAG id of {others} (a double underscore in a name joins "
                "dataset and table ambiguously); rename one of them so no name contains '__'",
            ))
            del decls[d.id]
    return problems


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
