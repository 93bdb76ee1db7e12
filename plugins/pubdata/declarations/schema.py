"""The JSON Schema of a declaration, generated from the pydantic models that validate it.

Committed as schema/declaration.schema.json so editors complete and check the YAML as it is typed
(every declaration's first line points yaml-language-server at it). Generated, never edited by
hand: the models stay the single definition, and `pubdata schema --check` fails when the
committed file no longer matches them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pubdata.declarations.spec import DeclarationFile

SCHEMA_FILE = Path("schema") / "declaration.schema.json"
MODELINE = f"# yaml-language-server: $schema=../../{SCHEMA_FILE.as_posix()}"
"""The first line of every metadata/<ds>/<table>_v<N>.yaml, relative to the file."""


def declaration_schema() -> dict[str, Any]:
    schema = DeclarationFile.model_json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **schema,
        "title": "pubdata dataset declaration (metadata/<dataset>/<table>_v<N>.yaml)",
    }


def render() -> str:
    """The file's exact text: stable key order, two-space indent, trailing newline."""
    return json.dumps(declaration_schema(), indent=2, ensure_ascii=False) + "\n"


def path(project: Path) -> Path:
    return Path(project) / SCHEMA_FILE


def is_current(project: Path) -> bool:
    p = path(project)
    return p.is_file() and p.read_text(encoding="utf-8") == render()


def write(project: Path) -> Path:
    p = path(project)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(render(), encoding="utf-8")
    return p
