"""`pubdata new`: the files of a new dataset, ready to run before anything is edited.

The scaffold is a working level-2 dataset (active clients and hours by country and OS from
clients_daily, rare combinations grouped into "Other", as in the example datasets): the
declaration with every policy field commented, the reviewed query, the dataset's own
expectations and a SQL test case that passes. A data engineer changes working files into the
dataset they want, running `pubdata check` and the SQL test after each change, instead of
starting from a blank page. Nothing is overwritten: a dataset id that already has files is refused.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import yaml
from pydantic import ValidationError

if TYPE_CHECKING:
    import jinja2

from pubdata.declarations.spec import DeclarationFile
from pubdata.errors import UsageError
from pubdata.ids import DatasetId

CASE_NAME = "daily_grouping"
SOURCE_TABLE = "moz-fx-data-shared-prod.telemetry.clients_daily"
_TABLE_ID_RE = re.compile(r"^(?P<ds>[a-z][a-z0-9_]*)\.(?P<table>[a-z][a-z0-9_]*?)(_v(?P<version>[1-9][0-9]*))?$")
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class ScaffoldError(UsageError):
    """The dataset cannot be scaffolded; the message says what to change."""


@dataclass(frozen=True)
class Scaffolded:
    dataset_id: str
    files: dict[str, Path]  # role -> path: declaration, query, expectations, test_input, test_params, test_expect

    @property
    def test_case(self) -> Path:
        return self.files["test_expect"].parent


SOURCE_TABLE = "moz-fx-data-shared-prod.telemetry.clients_daily"
"""The table the scaffolded query reads (its declaration's source_tables)."""


def parse_id(raw: str) -> str:
    """`ds.table_vN`, or `ds.table` for its first version. Raises ScaffoldError naming the fix."""
    m = _TABLE_ID_RE.match(raw)
    if not m:
        raise ScaffoldError(
            f"{raw!r} is not a dataset id: write <dataset>.<table>[_v<N>] in lowercase letters, digits and "
            "underscores, e.g. telemetry_public.active_hours_by_country_v1"
        )
    return f"{m['ds']}.{m['table']}_v{m['version'] or 1}"


def paths(project: Path, dataset_id: str) -> dict[str, Path]:
    try:
        ident = DatasetId.parse(dataset_id)
    except ValueError as exc:
        raise ScaffoldError(str(exc)) from None
    case = project / "tests" / "sql" / ident.dataset / ident.stem / CASE_NAME
    return {
        "declaration": ident.metadata_path(project),
        "query": ident.query_path(project),
        "expectations": ident.expectations_path(project),
        "test_input": case / f"{SOURCE_TABLE}.yaml",
        "test_params": case / "query_params.yaml",
        "test_expect": case / "expect.yaml",
    }


def _next_free_version(project: Path, dataset_id: str) -> str:
    ident = DatasetId.parse(dataset_id)
    while ident.metadata_path(project).exists():
        ident = DatasetId(ident.dataset, ident.table, ident.version + 1)
    return str(ident)


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("pubdata", "templates"),
        autoescape=False,  # YAML and SQL, not HTML
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["yaml_str"] = lambda v: json.dumps(str(v), ensure_ascii=False)  # a JSON string is a YAML scalar
    return env


def _friendly_name(dataset_id: str) -> str:
    words = DatasetId.parse(dataset_id).table.replace("_", " ").strip()
    return words[:1].upper() + words[1:]

def render(dataset_id: str, *, owner: str, bug: str, data_review: str | None, start_date: dt.date,
           friendly_name: str | None = None) -> dict[str, str]:
    """The text of every scaffolded file, by role; the declaration is validated before it is returned."""
    if friendly_name is not None and (not friendly_name.strip() or "\n" in friendly_name):
        raise ScaffoldError("--friendly-name must be one line of text, e.g. \"Active hours by country and OS\"")
    if not _EMAIL_RE.match(owner):
        raise ScaffoldError(f"--owner {owner!r} is not an e-mail address; give the owning team's address, e.g. data-eng@example.org")
    for option, url in (("--bug", bug), ("--data-review", data_review)):
        if url is not None and not re.match(r"^https?://\S+$", url):
            raise ScaffoldError(f"{option} {url!r} is not an http(s) URL; give the link to the bug, e.g. https://bugzilla.mozilla.org/show_bug.cgi?id=1234567")
    context = {
        "dataset_id": dataset_id,
        "friendly_name": friendly_name or _friendly_name(dataset_id),
        "owner": owner,
        "bug": bug,
        "data_review": data_review,
        "start_date": start_date.isoformat(),
        "today": dt.date.today().isoformat(),
        "case_date": start_date.isoformat(),
        "previous_date": (start_date - dt.timedelta(days=1)).isoformat(),
    }
    env = _environment()
    templates = {
        "declaration": "declaration.yaml.j2",
        "query": "query.sql.j2",
        "expectations": "expectations.yaml.j2",
        "test_input": "case_clients_daily.yaml.j2",
        "test_params": "case_query_params.yaml.j2",
        "test_expect": "case_expect.yaml.j2",
    }
    texts = {role: env.get_template(f"scaffold/{name}").render(context) for role, name in templates.items()}
    try:
        DeclarationFile.model_validate(yaml.safe_load(texts["declaration"]))
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ScaffoldError(f"the declaration would not load ({'.'.join(map(str, first['loc']))}: {first['msg']}); check the options") from None
    return texts


def scaffold(project: Path, dataset_id: str, *, owner: str, bug: str, data_review: str | None = None,
             start_date: dt.date | None = None, friendly_name: str | None = None) -> Scaffolded:
    """Write the new dataset's files under `project`; refuse if any of them exists."""
    project = Path(project)
    targets = paths(project, dataset_id)
    existing = [p for p in targets.values() if p.exists()]
    if existing:
        rel = str(existing[0].relative_to(project)) + (f" and {len(existing) - 1} more file(s)" if len(existing) > 1 else "")
        raise ScaffoldError(
            f"{dataset_id} already exists ({rel}); a table version never changes once published: "
            f"start the next version with `pubdata new {_next_free_version(project, dataset_id)}`"
        )
    texts = render(dataset_id, owner=owner, bug=bug, data_review=data_review,
                   start_date=start_date or dt.date.today(), friendly_name=friendly_name)
    for role, path in targets.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(texts[role], encoding="utf-8")
    return Scaffolded(dataset_id, targets)
