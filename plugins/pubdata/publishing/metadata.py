"""The public record of how a dataset was made, published next to its data.

metadata.json is our full record (the reviewed query's sha256, review links, the four policy
answers and the verdict, the schema with descriptions, row counts, per-file checksums, the
pipeline version). The other documents are derived from it, in the vocabularies that tools and
search engines already read:

- query.sql: the reviewed query, byte for byte (its sha256 is in metadata.json);
- datapackage.json: a Frictionless Data Package (v2) with one resource per file, typed schema
  and sha256 hashes, so `frictionless validate` can check the data against what we promise;
- dataset.jsonld: a schema.org Dataset;
- index.html: a human-readable landing page embedding that JSON-LD, which is what dataset search
  engines (Google Dataset Search) crawl.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from sqlglot import exp

from pubdata.declarations import Declaration
from pubdata.policy.verdict import verdict
from pubdata.publishing import plain_words
from pubdata.publishing.parts import CONTENT_TYPES
from pubdata.rendering import html_templates
from pubdata.sql.parse import parse

DATAPACKAGE_PROFILE = "https://datapackage.org/profiles/2.0/datapackage.json"

# Type families (as the warehouse classifies its own types) -> Frictionless Table Schema field types.
FIELD_TYPES = {
    "integer": "integer", "fractional": "number", "boolean": "boolean", "date": "date", "timestamp": "datetime",
    "time": "time", "string": "string", "array": "array", "object": "object",
}


def _jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {k: _jsonable(v) for k, v in dataclasses.asdict(obj).items()}
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    return obj


def policy_record(decl: Declaration) -> dict[str, Any]:
    p = decl.spec.policy
    v = verdict(decl.spec)
    return {
        "aggregation_level": p.aggregation_level,
        "min_bucket_size": p.min_bucket_size if p.bucket_column else None,
        "bucket_column": p.bucket_column,
        "dimensions": [d.model_dump(mode="json") for d in p.dimensions],
        "metrics": [m.model_dump(mode="json") for m in p.metrics],
        "review_questions": [_jsonable(a) for a in v.answers],
        "verdict": v.status,
        "steward": decl.spec.review.steward.model_dump(mode="json") if decl.spec.review.steward else None,
        "other_label": p.other_label,
        "other_rows": groups_into_other(decl),
    }


def groups_into_other(decl: Declaration) -> bool:
    """Whether rare values are grouped into the Other row (policy.rollup, or the query writes the
    label itself) rather than left out: what the public pages may promise about them."""
    if decl.spec.policy.rollup is not None:
        return True
    statement, _ = parse(decl.query)
    return statement is not None and any(
        lit.is_string and lit.this == decl.spec.policy.other_label for lit in statement.find_all(exp.Literal))


def schema_record(decl: Declaration, columns: list[tuple[str, str, str]]) -> list[dict[str, str]]:
    """One entry per published column: (name, warehouse type, type family) with its declared role."""
    described = {d.name: ("dimension", d.description) for d in decl.spec.policy.dimensions}
    described.update({m.name: ("metric", m.description) for m in decl.spec.policy.metrics})
    return [
        {"name": name, "type": type_, "field_type": FIELD_TYPES.get(family, "any"),
         "role": described.get(name, ("", ""))[0], "description": described.get(name, ("", ""))[1]}
        for name, type_, family in columns
    ]


def per_day(meta: dict[str, Any]) -> bool:
    """Whether a record's files are per day (incremental_export; a record from before the flag: incremental)."""
    return bool(meta.get("incremental")) and meta.get("incremental_export", True) is not False


def _all_files(meta: dict[str, Any]) -> list[tuple[str | None, dict[str, Any]]]:
    """(partition, file) for every published file, partitions in date order."""
    if per_day(meta):
        return [(p, f) for p, entry in sorted((meta.get("partitions") or {}).items()) for f in entry["files"]]
    return [(None, f) for f in meta.get("files") or []]


def datapackage(meta: dict[str, Any], urls: dict[str, str]) -> dict[str, Any]:
    """A Frictionless Data Package describing every published file of the dataset."""
    policy_ = meta["policy"]
    fields = []
    for column in meta["schema"]:
        f: dict[str, Any] = {"name": column["name"], "type": column.get("field_type", "any")}
        if column.get("description"):
            f["description"] = column["description"]
        if column["name"] == policy_.get("bucket_column") and policy_.get("min_bucket_size"):
            f["constraints"] = {"minimum": policy_["min_bucket_size"]}
        fields.append(f)
    schema = {"fields": fields}
    resources = []
    for partition, f in _all_files(meta):
        stem, _, fmt = f["name"].partition(".")
        resource: dict[str, Any] = {
            "name": f"{partition}-{stem}-{fmt}" if partition else f"{stem}-{fmt}",
            "type": "table",
            "path": f["url"],
            "format": fmt,
            "mediatype": CONTENT_TYPES.get(fmt, "application/octet-stream"),
            "bytes": f["bytes"],
            "hash": f"sha256:{f['sha256']}",
            "schema": schema,
        }
        if fmt in ("json", "csv"):
            resource["encoding"] = "utf-8"
        if partition:
            resource["title"] = f"{meta['friendly_name']}, {partition}"
        resources.append(resource)
    return {
        "$schema": DATAPACKAGE_PROFILE,
        "name": meta["id"],
        "title": meta["friendly_name"],
        "description": meta["description"],
        "homepage": urls["homepage"],
        "created": meta["generated_at"],
        "keywords": _keywords(meta),
        "contributors": [{"title": o, "email": o, "roles": ["maintainer"]} for o in meta["owners"]],
        "sources": [{"title": "Reviewed query (sha256 " + meta["query"]["sha256"] + ")", "path": urls["query"]}]
        + [{"title": "Review", "path": link} for link in meta["review_links"]],
        "resources": resources,
    }


def _keywords(meta: dict[str, Any]) -> list[str]:
    dataset = meta["id"].split(".")[0]
    return ["telemetry", "aggregate", dataset, f"aggregation level {meta['policy']['aggregation_level']}"]


def dataset_jsonld(meta: dict[str, Any], urls: dict[str, str]) -> dict[str, Any]:
    """A schema.org Dataset for search engines: what it is, who keeps it, where to download it."""
    doc: dict[str, Any] = {
        "@context": "https://schema.org/",
        "@type": "Dataset",
        "@id": urls["homepage"],
        "url": urls["homepage"],
        "identifier": meta["id"],
        "name": meta["friendly_name"],
        "description": meta["description"],
        "keywords": _keywords(meta),
        "isAccessibleForFree": True,
        "maintainer": [{"@type": "Organization", "name": o, "email": o} for o in meta["owners"]],
        "dateModified": meta["generated_at"],
        "variableMeasured": [
            {"@type": "PropertyValue", "name": c["name"], "description": c.get("description") or c["name"]}
            for c in meta["schema"]
        ],
        "measurementTechnique": (
            f"Aggregation level {meta['policy']['aggregation_level']} of the data publishing policy"
            + (f"; every row counts at least {meta['policy']['min_bucket_size']} clients"
               if meta["policy"].get("min_bucket_size") else "")
        ),
        "isBasedOn": urls["query"],
        "subjectOf": [{"@type": "WebPage", "name": "Data review", "url": link} for link in meta["review_links"]],
        "includedInDataCatalog": {"@type": "DataCatalog", "name": "Public datasets", "url": urls["index"]},
        "distribution": [
            {"@type": "DataDownload", "name": "File listing", "encodingFormat": "application/json",
             "contentUrl": urls["files"]},
            {"@type": "DataDownload", "name": "Frictionless Data Package", "encodingFormat": "application/json",
             "contentUrl": urls["datapackage"]},
        ],
    }
    partitions = sorted(meta.get("partitions") or {})
    if partitions:
        doc["temporalCoverage"] = f"{partitions[0]}/{partitions[-1]}" if len(partitions) > 1 else partitions[0]
    for partition, f in _all_files(meta):
        if partition not in (None, meta.get("latest_partition")):
            continue  # older days are reachable through the listing and the data package
        doc["distribution"].append({
            "@type": "DataDownload",
            "name": f"{partition} {f['name']}" if partition else f["name"],
            "encodingFormat": CONTENT_TYPES.get(f["format"], "application/octet-stream"),
            "contentUrl": f["url"],
            "contentSize": f"{f['bytes']} B",
            "sha256": f["sha256"],
        })
    return doc


def landing_page(meta: dict[str, Any], jsonld: dict[str, Any], urls: dict[str, str]) -> str:
    """index.html: the record for people, with the JSON-LD that search engines read."""
    from markupsafe import Markup

    # Inside <script> the HTML parser reacts to "</script" and "<!--"; JSON may spell < > & as
    # \u escapes, which keeps the document's meaning and leaves no markup in the element.
    text = json.dumps(jsonld, indent=2, ensure_ascii=False)
    jsonld_text = Markup(text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))
    if per_day(meta):  # every published day, newest first: as many as the header counts
        days = [(day, p.get("files") or []) for day, p in sorted((meta.get("partitions") or {}).items(), reverse=True)]
    else:
        days = [(None, meta.get("files") or [])]
    return html_templates().get_template("dataset.html.j2").render(
        meta=meta, per_day=per_day(meta), urls=urls, jsonld_text=jsonld_text, partitions=sorted(meta.get("partitions") or {}), days=days,
        policy_words=plain_words.policy_sentences(meta["policy"]), columns=plain_words.columns(meta["schema"]),
    )
