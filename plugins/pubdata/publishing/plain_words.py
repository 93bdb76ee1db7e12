"""What the public pages say about a dataset, in the public's words.

metadata.json keeps the policy's own vocabulary (aggregation level, dimension category, bucket
column) for machines and reviewers; the catalog and the dataset pages explain the same record to
a reader who knows none of it: what one row is, the minimum number of clients behind it, what an
"Other" value holds, and each column's type as the files spell it (Frictionless Table Schema
types, as JSON carries them), never a warehouse's type names.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

PUBLIC_TYPES: dict[str, str] = {
    "integer": "a JSON number, whole",
    "number": "a JSON number",
    "string": "a JSON string",
    "date": "a JSON string, YYYY-MM-DD",
    "datetime": "a JSON string, ISO 8601 in UTC",
    "time": "a JSON string, HH:MM:SS",
    "boolean": "true or false",
    "array": "a JSON array",
    "object": "a JSON object",
    "any": "any JSON value",
}
"""Frictionless Table Schema field type -> how the JSON files carry it."""

_WAREHOUSE_PREFIXES = (
    ("BIGINT", "integer"), ("INT", "integer"), ("HUGEINT", "integer"), ("SMALLINT", "integer"),
    ("TINYINT", "integer"), ("UBIGINT", "integer"), ("DOUBLE", "number"), ("FLOAT", "number"),
    ("DECIMAL", "number"), ("NUMERIC", "number"), ("BIGNUMERIC", "number"), ("REAL", "number"),
    ("VARCHAR", "string"), ("STRING", "string"), ("TEXT", "string"), ("DATE", "date"),
    ("TIMESTAMP", "datetime"), ("DATETIME", "datetime"), ("TIME", "time"), ("BOOL", "boolean"),
)
"""For a metadata.json written before its schema carried field_type: its warehouse type's family."""


@dataclass(frozen=True)
class PublicColumn:
    name: str
    type: str        # Frictionless field type
    json: str        # how a JSON file carries it
    role: str
    description: str


def field_type(column: Mapping[str, Any]) -> str:
    """The column's Frictionless type: the recorded one, else derived from its warehouse type."""
    recorded = column.get("field_type")
    if isinstance(recorded, str) and recorded in PUBLIC_TYPES:
        return recorded
    warehouse = str(column.get("type") or "").upper()
    for prefix, family in _WAREHOUSE_PREFIXES:
        if warehouse.startswith(prefix):
            return family
    return "any"


def columns(schema: Iterable[Mapping[str, Any]]) -> list[PublicColumn]:
    out = []
    for c in schema:
        t = field_type(c)
        out.append(PublicColumn(str(c.get("name", "")), t, PUBLIC_TYPES[t], str(c.get("role") or ""),
                                str(c.get("description") or "")))
    return out


def _and(names: list[str]) -> str:
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


def policy_sentences(policy: Mapping[str, Any]) -> list[str]:
    """The publishing policy as it applies to this dataset, one plain sentence per point.

    Built from metadata.json's policy record alone, so it reads the same for every version ever
    published. Says what a row is, how many clients at least stand behind it, what "Other" holds,
    and who approved what needed approval.
    """
    dimensions = [d for d in policy.get("dimensions") or [] if isinstance(d, Mapping)]
    metrics = [m for m in policy.get("metrics") or [] if isinstance(m, Mapping)]
    bucket = policy.get("bucket_column")
    minimum = policy.get("min_bucket_size")
    level = policy.get("aggregation_level")
    other = str(policy.get("other_label") or "Other")
    days = [str(d.get("name")) for d in dimensions if d.get("kind") == "date"]
    groups = [str(d.get("name")) for d in dimensions if d.get("kind") != "date"]
    values = [str(m.get("name")) for m in metrics if m.get("name") != bucket]

    out: list[str] = []
    if level == 1:
        out.append("This dataset is the output of a statistical model fitted to many clients' data; "
                   "it has no row for any single client.")
    else:
        where = f"one day ({_and(days)})" if days else ""
        combo = (f"one value of {groups[0]}" if len(groups) == 1 else f"one combination of {_and(groups)}") if groups else ""
        what = " and ".join(p for p in (where, combo) if p) or "one group of clients"
        measured = f" Its {_and(values)} {'describes' if len(values) == 1 else 'describe'}" if values else " It counts"
        out.append(f"Each row is {what}.{measured} all the clients with those values"
                   f"{' on that day' if days else ''} together. No row describes a single client.")
    if isinstance(minimum, int) and bucket:
        out.append(f"Every row stands for at least {minimum:,} different clients ({bucket} says how many). "
                   "The warehouse counts them before anything is published; a row with fewer clients is "
                   "never published.")
        if groups and policy.get("other_rows", True):
            out.append(f"A value shown as \u201c{other}\u201d holds every value of that column seen for too few "
                       f"clients to be shown on its own: their data is added up in the {other} row instead of "
                       f"being left out, and that row, too, stands for at least {minimum:,} clients "
                       "(or is not published).")
        elif groups:
            out.append(f"Values seen for fewer than {minimum:,} clients are left out: the rows published do not "
                       "add up to all clients.")
    elif level in (2, 3):
        out.append("Rows add up many clients' data without a minimum number of clients per row, which the "
                   "publishing policy allows only for technical and interaction data (such as the browser's "
                   "version or how it is used), never for web activity or sensitive data.")
    sensitive = [str(m.get("name")) for m in metrics if m.get("sensitive")]
    if sensitive:
        out.append(f"{_and(sensitive)} {'reveals' if len(sensitive) == 1 else 'reveal'} or "
                   f"{'implies' if len(sensitive) == 1 else 'imply'} revenue, so publishing "
                   f"{'it' if len(sensitive) == 1 else 'them'} needed a data steward's approval.")
    steward = policy.get("steward")
    if isinstance(steward, Mapping) and steward.get("name"):
        out.append(f"A data steward, {steward['name']}, approved this publication"
                   f"{' on ' + str(steward['approved_on']) if steward.get('approved_on') else ''}.")
    return out
