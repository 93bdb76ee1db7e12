"""The declaration's JSON Schema: generated from the models, committed, and what every example
declaration points editors at."""

from __future__ import annotations

import copy
import json

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from pubdata.cli import app
from pubdata.declarations import declaration_paths, schema
from tests.support.project import REPO

DECLARATIONS = declaration_paths(REPO)


def _as_json(path) -> dict:
    """The YAML as an editor's language server sees it: dates are strings."""
    return json.loads(json.dumps(yaml.safe_load(path.read_text(encoding="utf-8")), default=str))


def test_committed_schema_matches_the_models():
    assert schema.is_current(REPO), (
        "schema/declaration.schema.json is stale: the declaration models changed. Run `pubdata schema` and commit it."
    )


def test_schema_is_valid_json_schema():
    committed = json.loads(schema.path(REPO).read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(committed)
    assert committed["additionalProperties"] is False
    assert {"friendly_name", "review", "policy", "start_date"} <= set(committed["required"])


@pytest.mark.parametrize("path", DECLARATIONS, ids=lambda p: p.stem)
def test_every_declaration_points_at_the_schema_and_is_valid_under_it(path):
    assert path.read_text(encoding="utf-8").splitlines()[0] == schema.MODELINE
    target = (path.parent / schema.MODELINE.split("$schema=", 1)[1]).resolve()
    assert target == schema.path(REPO).resolve() and target.is_file()
    validator = jsonschema.Draft202012Validator(json.loads(target.read_text(encoding="utf-8")))
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(_as_json(path))]
    assert errors == []


def test_the_schema_catches_what_the_loader_catches():
    """An editor flags a misspelled key, a category out of range and a level outside 1..7."""
    validator = jsonschema.Draft202012Validator(schema.declaration_schema())
    good = _as_json(REPO / "metadata/telemetry_public/page_loads_by_country_v1.yaml")
    for path, value in [(("policy", "dimensons"), []), (("policy", "dimensions", 0, "category"), 5),
                        (("policy", "aggregation_level"), 8), (("owners",), "data-eng@example.org")]:
        bad = copy.deepcopy(good)
        node = bad
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        assert list(validator.iter_errors(bad)), path


def test_schema_command_writes_and_checks(project):
    runner = CliRunner()
    target = project / schema.SCHEMA_FILE
    assert runner.invoke(app, ["schema", "--check"]).exit_code == 0

    target.write_text(target.read_text().replace('"title": "Friendly Name"', '"title": "Old Name"'))
    result = runner.invoke(app, ["schema", "--check"], env={"COLUMNS": "200"})
    assert result.exit_code == 1
    assert "schema/declaration.schema.json is stale" in result.output and "run `pubdata schema`" in result.output
    assert "Old Name" in target.read_text()  # --check writes nothing

    result = runner.invoke(app, ["schema"])
    assert result.exit_code == 0 and "wrote schema/declaration.schema.json" in result.output.replace("\n", "")
    assert target.read_text() == schema.render()
    assert runner.invoke(app, ["schema", "--check"]).exit_code == 0
