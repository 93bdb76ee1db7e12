"""Declarations load strictly, and a broken one names file and field without hiding the others."""

from __future__ import annotations

from pathlib import Path

import pytest

from pubdata.declarations import load_all, load_declaration
from pubdata.errors import DeclarationInvalid
from pubdata.ids import DatasetId

EXAMPLE = "telemetry_public.page_loads_by_country_v1"


def _write(project: Path, rel: str, text: str) -> Path:
    path = project / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _example_yaml(project: Path) -> str:
    return (project / "metadata/telemetry_public/page_loads_by_country_v1.yaml").read_text()


def test_example_loads(project):
    catalog = load_all(project)
    assert catalog.problems == []
    decl = catalog.declarations[EXAMPLE]
    assert decl.dag_id == "publish_telemetry_public__page_loads_by_country_v1"
    assert decl.spec.policy.aggregation_level == 2
    assert decl.spec.policy.min_bucket_size == 5000
    assert decl.spec.policy.columns == ["submission_date", "country", "os", "locale", "normalized_channel",
                                        "page_loads", "client_count"]
    assert "@submission_date" in decl.query
    assert len(decl.query_sha256) == 64


def test_dag_id_for():
    assert DatasetId.parse("a_b.c_d_v12").dag_id == "publish_a_b__c_d_v12"
    with pytest.raises(ValueError):
        DatasetId.parse("Not.valid")


def _broken(project: Path, name: str, yaml_text: str, sql: str | None = "SELECT 1") -> Path:
    path = _write(project, f"metadata/broken/{name}.yaml", yaml_text)
    if sql is not None:
        _write(project, f"sql/broken/{name}.sql", sql)
    return path


@pytest.mark.parametrize(
    "mutate, field, words",
    [
        (lambda y: y + "colour: blue\n", "colour", "unknown key"),
        (lambda y: y.replace("aggregation_level: 2", "aggregation_level: two"), "policy.aggregation_level", "must be a whole number (got 'two')"),
        (lambda y: y.replace("aggregation_level: 2", "aggregation_level: 9"), "policy.aggregation_level", "must be at most 7"),
        (lambda y: y.replace("category: 1, kind: geo_country", "category: 5, kind: geo_country"), "policy.dimensions[1].category", "must be at most 4 (got 5)"),
        (lambda y: y.replace("owners: [data-eng@example.org]", "owners: [not-an-email]"), "owners[0]", "must be an e-mail address (name@example.org) (got 'not-an-email')"),
        (lambda y: y.replace('bugs: ["https://bugzilla.mozilla.org/show_bug.cgi?id=1414839"]', "bugs: []"), "review.bugs", "needs at least 1 item(s)"),
        (lambda y: y.replace("friendly_name: Page loads by country, OS, locale and channel\n", ""), "friendly_name", "required key is missing"),
        (lambda y: y.replace("bucket_column: client_count", "bucket_column: clients"), "policy", "bucket_column 'clients' is not one of the declared metrics"),
        (lambda y: y.replace("partition_field: submission_date", "partition_field: day"), "", "partition_field 'day' must be a declared dimension"),
    ],
)
def test_bad_declaration_names_file_and_field(project, mutate, field, words):
    path = _broken(project, "bad_v1", mutate(_example_yaml(project)))
    with pytest.raises(DeclarationInvalid) as exc:
        load_declaration(path, project)
    messages = [str(e) for e in exc.value.problems]
    assert any(str(e.path) == "metadata/broken/bad_v1.yaml" for e in exc.value.problems), messages
    assert any(e.field.startswith(field) and words in e.message for e in exc.value.problems), messages


def test_malformed_yaml_names_line(project):
    path = _broken(project, "bad_v1", "friendly_name: [unclosed\nowners: x\n")
    with pytest.raises(DeclarationInvalid) as exc:
        load_declaration(path, project)
    err = exc.value.problems[0]
    assert err.line is not None and "not valid YAML" in err.message


def _problems(project: Path, text: str) -> list:
    path = _broken(project, "bad_v1", text)
    with pytest.raises(DeclarationInvalid) as exc:
        load_declaration(path, project)
    return exc.value.problems


def test_a_key_without_its_colon_is_reported_on_its_own_line(project):
    """PyYAML gives up on the line after a key that lost its colon; the error names the key's line."""
    lines = _example_yaml(project).splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("schedule:"))
    lines[at] = "schedule \"0 5 * * *\""
    [err] = _problems(project, "\n".join(lines) + "\n")
    assert "not valid YAML" in err.message and "could not find expected ':'" in err.message
    assert (err.line, err.column) == (at + 1, 1)
    assert str(err).startswith(f"metadata/broken/bad_v1.yaml:{at + 1}:1: ")


def test_a_misspelt_key_names_line_column_and_the_key_it_meant(project):
    text = _example_yaml(project).replace("owners:", "ownres:", 1)
    line = next(i for i, t in enumerate(text.splitlines(), 1) if t.startswith("ownres:"))
    problems = {p.field: p for p in _problems(project, text)}
    assert (problems["ownres"].line, problems["ownres"].column) == (line, 1)
    assert "did you mean owners?" in problems["ownres"].message
    assert str(problems["ownres"]).startswith(f"metadata/broken/bad_v1.yaml:{line}:1: ownres: unknown key")
    # nested too, and a name far from any key lists the keys allowed there instead
    text = _example_yaml(project).replace("min_bucket_size:", "min_bucket_sise:").replace("  bucket_column:", "  colour: x\n  bucket_column:")
    problems = {p.field: p for p in _problems(project, text)}
    assert "did you mean min_bucket_size?" in problems["policy.min_bucket_sise"].message
    assert problems["policy.min_bucket_sise"].column == 3
    assert "allowed here: aggregation_level, privacy_unit" in problems["policy.colour"].message


def test_a_wrong_value_is_named_where_it_is_in_words(project):
    text = _example_yaml(project).replace("aggregation_level: 2", "aggregation_level: two")
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "aggregation_level: two" in t)
    [err] = _problems(project, text)
    assert (err.line, err.column) == (line, text.splitlines()[line - 1].index("two") + 1)
    assert err.message == "must be a whole number (got 'two')"
    for raw in ("Input should be", "pydantic", "type=", "[type"):
        assert raw not in err.message


def test_missing_query_is_named(project):
    path = _broken(project, "noquery_v1", _example_yaml(project), sql=None)
    with pytest.raises(DeclarationInvalid) as exc:
        load_declaration(path, project)
    err = exc.value.problems[0]
    assert err.field == "query" and "sql/broken/noquery_v1.sql" in err.message


def test_bad_file_name(project):
    path = _broken(project, "NoVersion", _example_yaml(project))
    with pytest.raises(DeclarationInvalid) as exc:
        load_declaration(path, project)
    assert "<table>_v<N>.yaml" in exc.value.problems[0].message


def test_broken_declarations_do_not_hide_the_others(project):
    _broken(project, "bad_v1", _example_yaml(project) + "colour: blue\n")
    _broken(project, "worse_v1", "- just\n- a list\n")
    catalog = load_all(project)
    assert EXAMPLE in catalog.declarations
    assert {str(e.path) for e in catalog.problems} == {"metadata/broken/bad_v1.yaml", "metadata/broken/worse_v1.yaml"}


def test_incremental_export_needs_incremental(project):
    text = _example_yaml(project)
    assert "incremental: true\nincremental_export: true" in text
    path = _broken(project, "export_v1", text.replace("incremental: true\n", "incremental: false\n", 1))
    with pytest.raises(DeclarationInvalid) as exc:
        load_declaration(path, project)
    messages = [e.message for e in exc.value.problems]
    assert any("incremental_export: true needs incremental: true" in m and "remove incremental_export" in m
               for m in messages), messages
    # The honest declarations beside it: incremental with per-day export, and without the flag.
    per_day = load_declaration(_broken(project, "per_day_v1", text), project)
    assert per_day.spec.incremental_export and per_day.spec.per_day_files
    whole = load_declaration(_broken(project, "whole_v1", text.replace("incremental_export: true", "", 1)), project)
    assert whole.spec.incremental and whole.spec.incremental_export is False  # Mozilla's default
    assert not whole.spec.per_day_files
