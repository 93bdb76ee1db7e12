"""One bad file is one error: a declaration, query or expectations file that is not UTF-8, not a
file, unreadable, not a mapping, an alias bomb or oversized is refused naming the file, within
bounded time and memory, and every other dataset still loads (and still gets its DAG)."""

from __future__ import annotations

import os
import re
import time
import tracemalloc
from pathlib import Path

import pytest

from pubdata.declarations import load_all
from pubdata.declarations.untrusted import MAX_FILE_BYTES, MAX_YAML_ALIASES, check_yaml
from pubdata.errors import ExpectationsFileError, FileRefused
from pubdata.validation import expectations_file
from tests.support.project import EXAMPLE, pubdata_cli

BROKEN = "metadata/broken/bad_v1.yaml"

# The alias bomb of the kind ("billion laughs"): nine levels of nine aliases, a few hundred
# bytes that expand to 9**9 (387 million) strings under `owners`.
ALIAS_BOMB = "\n".join(
    ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    + [f"{c}: &{c} [{','.join(['*' + p] * 9)}]" for p, c in zip("abcdefgh", "bcdefghi")]
    + ["owners: [*i]", ""]
)


def _example_yaml(project: Path) -> str:
    return (project / "metadata/telemetry_public/page_loads_by_country_v1.yaml").read_text()


def _with_query(project: Path, sql: str = "SELECT 1 AS x") -> None:
    path = project / "sql/broken/bad_v1.sql"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(sql)


def _write_bytes(project: Path, rel: str, data: bytes) -> Path:
    path = project / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _problems(project: Path) -> list[str]:
    catalog = load_all(project)
    assert EXAMPLE in catalog.declarations, "a bad file must not take the other datasets down"
    return [str(p) for p in catalog.problems]


def _only_problem(project: Path, words: str, rel: str = BROKEN) -> str:
    problems = _problems(project)
    assert len(problems) == 1 and problems[0].startswith(rel) and words in problems[0], problems
    return problems[0]


def test_not_utf8_declaration(project):
    _with_query(project)
    _write_bytes(project, BROKEN, _example_yaml(project).encode() + b"colour: caf\xe9\n")
    _only_problem(project, "not UTF-8 text (byte 0xe9 on line")


def test_directory_named_like_a_declaration(project):
    (project / BROKEN).mkdir(parents=True)
    _only_problem(project, "a directory, not a file")


def test_pipe_named_like_a_declaration_does_not_hang(project):
    (project / BROKEN).parent.mkdir(parents=True)
    os.mkfifo(project / BROKEN)
    _only_problem(project, "not a regular file")


def test_dangling_link_and_link_out_of_the_project(project, tmp_path):
    (project / BROKEN).parent.mkdir(parents=True)
    (project / BROKEN).symlink_to(project / "metadata/broken/nowhere.yaml")
    _only_problem(project, "missing (a dangling link?)")
    (project / BROKEN).unlink()
    outside = tmp_path / "secret.yaml"
    outside.write_text("friendly_name: the contents of a file outside the project\n")
    (project / BROKEN).symlink_to(outside)
    problem = _only_problem(project, "a link to a file outside the project")
    assert "contents" not in problem


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_declaration(project):
    _with_query(project)
    path = _write_bytes(project, BROKEN, _example_yaml(project).encode())
    path.chmod(0)
    _only_problem(project, "unreadable")


@pytest.mark.parametrize("text, got", [("- a\n- list\n", "got a list"), ("just text\n", "got a str"), ("", "got an empty file")])
def test_yaml_that_is_not_a_mapping(project, text, got):
    _with_query(project)
    _write_bytes(project, BROKEN, text.encode())
    _only_problem(project, f"expected a mapping of keys (friendly_name, description, ...), {got}")


def test_oversized_declaration(project):
    _with_query(project)
    _write_bytes(project, BROKEN, b"# padding\n" * (MAX_FILE_BYTES // 10 + 1))
    _only_problem(project, f"over the limit of {MAX_FILE_BYTES:,}")


def test_alias_bomb_is_refused_in_bounded_time_and_memory(project):
    assert len(ALIAS_BOMB) < 900
    _with_query(project)
    _write_bytes(project, BROKEN, (_example_yaml(project) + ALIAS_BOMB).encode())
    tracemalloc.start()
    started = time.monotonic()
    try:
        problem = _only_problem(project, f"YAML with more than {MAX_YAML_ALIASES} aliases")
        seconds = time.monotonic() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert seconds < 2, f"took {seconds:.1f}s"
    assert peak < 20 * 2**20, f"peak {peak / 2**20:.0f} MB"
    assert re.match(r"metadata/broken/bad_v1\.yaml:\d+: ", problem) and len(problem) < 300


def test_expansion_is_bounded_even_with_few_aliases():
    few = "a: &a [" + ",".join(["x"] * 2000) + "]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: [*b,*b,*b,*b,*b]\n"
    with pytest.raises(FileRefused, match="expands to more than"):
        check_yaml(few)
    with pytest.raises(FileRefused, match="nested more than"):
        check_yaml("[" * 10_000 + "]" * 10_000)
    check_yaml("shared: &s {category: 1}\nuse: [*s, *s]\n")  # a little sharing is fine


def test_a_huge_value_is_not_echoed_whole(project):
    _with_query(project)
    huge = "x" * 500_000
    text = _example_yaml(project).replace("owners: [data-eng@example.org]", f"owners: [{huge}]")
    _write_bytes(project, BROKEN, (text + f"? {huge}\n: 1\n").encode())  # an unknown key, echoed as the field
    problems = [p for p in _problems(project) if p.startswith(BROKEN)]
    assert any("owners[0]" in p and "(got 'xxx" in p for p in problems), problems
    assert all(len(p) < 400 for p in problems), [len(p) for p in problems]


def test_bad_query_file_is_named(project):
    _write_bytes(project, BROKEN, _example_yaml(project).encode())
    _write_bytes(project, "sql/broken/bad_v1.sql", b"SELECT '\xff' AS x\n")
    _only_problem(project, "not UTF-8 text", rel="sql/broken/bad_v1.sql")
    (project / "sql/broken/bad_v1.sql").unlink()
    (project / "sql/broken/bad_v1.sql").mkdir()
    _only_problem(project, "a directory, not a file", rel="sql/broken/bad_v1.sql")


@pytest.mark.parametrize("data, words", [
    (b"expectations:\n  - sql: SELECT 1 -- caf\xe9\n", "not UTF-8 text"),
    (ALIAS_BOMB.replace("owners", "expectations").encode(), f"YAML with more than {MAX_YAML_ALIASES} aliases"),
    (b"- a list\n", "top-level keys are"),
])
def test_bad_expectations_file_is_one_error(tmp_path, data, words):
    path = tmp_path / "e.yaml"
    path.write_bytes(data)
    with pytest.raises(ExpectationsFileError, match=words) as exc:
        expectations_file.load(path)
    assert str(exc.value).startswith(f"{path}:")


def test_expectations_directory_is_one_error(tmp_path):
    (tmp_path / "e.yaml").mkdir()
    with pytest.raises(ExpectationsFileError, match="a directory, not a file"):
        expectations_file.load(tmp_path / "e.yaml")


def test_check_and_the_dag_file_survive_every_bad_file_at_once(project, tmp_path):
    """`pubdata check` names each bad file without a traceback; the DAG factory builds every good
    dataset's DAG and lists the bad files in the errors DAG."""
    from pubdata.orchestration.dag_factory import ERRORS_DAG_ID, build_dags

    example = _example_yaml(project)
    _write_bytes(project, "metadata/broken/latin1_v1.yaml", example.encode() + b"# caf\xe9\n")
    (project / "metadata/broken/folder_v1.yaml").mkdir(parents=True)
    _write_bytes(project, "metadata/broken/bomb_v1.yaml", (example + ALIAS_BOMB).encode())
    _write_bytes(project, "metadata/broken/listed_v1.yaml", b"- not a mapping\n")
    for name in ("latin1_v1", "bomb_v1", "listed_v1"):
        _write_bytes(project, f"sql/broken/{name}.sql", b"SELECT 1 AS x\n")
    bad = ["metadata/broken/latin1_v1.yaml", "metadata/broken/folder_v1.yaml", "metadata/broken/bomb_v1.yaml",
           "metadata/broken/listed_v1.yaml"]

    proc = pubdata_cli("check", env={"PUBDATA_PROJECT": str(project)})
    assert proc.returncode == 1 and "Traceback" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    for rel in bad:  # file, or file:line when the problem has a line
        assert re.search(rf"✗ {re.escape(rel)}(:\d+)?: declaration", proc.stdout), proc.stdout

    dags = build_dags(project)
    assert "publish_telemetry_public__page_loads_by_country_v1" in dags
    doc = dags[ERRORS_DAG_ID].doc_md
    assert all(rel in doc for rel in bad), doc
