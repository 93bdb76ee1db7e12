"""Mozilla's persistent functions (mozfun.*, udf.*) that public queries call, as DuckDB macros.

BigQuery resolves `mozfun.hist.extract(...)` from Mozilla's shared project; the embedded engine
has no such catalog, so each function public queries use is written here in DuckDB SQL with the
semantics bigquery-etl documents for it (sql/mozfun/<group>/<name>/udf.sql there, and its
asserts). A call is renamed to its macro (`mozfun.hist.extract` -> `mozfun__hist__extract`) when
the query is transpiled; the macros are TEMP, created on each connection that runs a reviewed
query, so nothing is written to the warehouse. A call of a function not listed here is named by
`pubdata check` before anything runs (duckdb_dialect.unresolved_functions).
"""

from __future__ import annotations

PREFIXES = ("mozfun", "udf")
"""The datasets of Mozilla's shared functions, with or without the project in front."""

HISTOGRAM = ("STRUCT(bucket_count BIGINT, histogram_type BIGINT, \"sum\" BIGINT, \"range\" BIGINT[], "
             "\"values\" STRUCT(\"key\" BIGINT, \"value\" BIGINT)[])")

_INT_MAP = """
    list_transform(
      list_filter(string_split(replace(trim({input}, '{{}}'), '"', ''), ','), lambda e: length(e) > 0),
      lambda e: {{'key': TRY_CAST(split_part(e, ':', 1) AS BIGINT), 'value': TRY_CAST(split_part(e, ':', 2) AS BIGINT)}})
"""

MACROS: dict[str, str] = {
    # A version string cut to major ("16") or minor ("16.1") as NUMERIC; NULL for any other level.
    "mozfun.norm.truncate_version": """(os_version, truncation_level) AS
      CASE truncation_level
        WHEN 'minor' THEN CAST(NULLIF(regexp_extract(os_version, '^([0-9]+[.]?[0-9]+).*', 1), '') AS DECIMAL(38, 9))
        WHEN 'major' THEN CAST(NULLIF(regexp_extract(os_version, '^([0-9]+).*', 1), '') AS DECIMAL(38, 9))
      END""",
    # The value of the first entry of an array of {key, value} structs whose key is k.
    "mozfun.map.get_key": """(map, k) AS list_filter(map, lambda kv: kv.key = k)[1].value""",
    # A JSON object of integers ('{"0":12,"1":3}') as an array of {key, value} structs, in document order.
    "mozfun.json.extract_int_map": "(input) AS " + _INT_MAP.format(input="input"),
    # The most frequent non-NULL element; ties go to the one that appears last.
    "mozfun.stats.mode_last": """(list) AS (
      SELECT v FROM (SELECT UNNEST(list) AS v, generate_subscripts(list, 1) AS i)
      WHERE v IS NOT NULL GROUP BY v ORDER BY count(*) DESC, max(i) DESC LIMIT 1)""",
    # A histogram in any of Firefox's encodings (JSON, compact "n;type;sum;lo,hi;k:v,...",
    # boolean "a,b", count "n") as one struct of bucket_count, histogram_type, sum, range, values.
    "mozfun.hist.extract": f"""(input) AS
      CASE
        WHEN starts_with(trim(input), '{{') THEN {{
          'bucket_count': TRY_CAST(json_extract_string(input, '$.bucket_count') AS BIGINT),
          'histogram_type': TRY_CAST(json_extract_string(input, '$.histogram_type') AS BIGINT),
          'sum': TRY_CAST(json_extract_string(input, '$.sum') AS BIGINT),
          'range': CAST(json_extract(input, '$.range') AS BIGINT[]),
          'values': {_INT_MAP.format(input="CAST(json_extract(input, '$.values') AS VARCHAR)")}}}::{HISTOGRAM}
        WHEN len(string_split(input, ';')) = 5 THEN {{
          'bucket_count': TRY_CAST(split_part(input, ';', 1) AS BIGINT),
          'histogram_type': TRY_CAST(split_part(input, ';', 2) AS BIGINT),
          'sum': TRY_CAST(split_part(input, ';', 3) AS BIGINT),
          'range': list_transform(string_split(split_part(input, ';', 4), ','), lambda b: TRY_CAST(b AS BIGINT)),
          'values': list_transform(
            list_filter(string_split(split_part(input, ';', 5), ','), lambda e: length(e) >= 3),
            lambda e: {{'key': TRY_CAST(split_part(e, ':', 1) AS BIGINT), 'value': TRY_CAST(split_part(e, ':', 2) AS BIGINT)}})
          }}::{HISTOGRAM}
        WHEN len(string_split(input, ',')) = 2 THEN {{
          'bucket_count': 3, 'histogram_type': 2, 'sum': TRY_CAST(split_part(input, ',', 2) AS BIGINT), 'range': [1, 2],
          'values': [{{'key': 0, 'value': TRY_CAST(split_part(input, ',', 1) AS BIGINT)}},
                     {{'key': 1, 'value': TRY_CAST(split_part(input, ',', 2) AS BIGINT)}}, {{'key': 2, 'value': 0}}]
          }}::{HISTOGRAM}
        WHEN len(string_split(input, ',')) = 1 THEN {{
          'bucket_count': 3, 'histogram_type': 4, 'sum': TRY_CAST(input AS BIGINT), 'range': [1, 2],
          'values': [{{'key': 0, 'value': TRY_CAST(input AS BIGINT)}}, {{'key': 1, 'value': 0}}]
          }}::{HISTOGRAM}
      END""",
    # The histogram with sum 1 and each bucket's count divided by the total (NULL when it is 0).
    "mozfun.hist.normalize": """(histogram) AS {
      'bucket_count': histogram.bucket_count, 'sum': 1, 'histogram_type': histogram.histogram_type,
      'range': histogram.range,
      'values': list_transform(histogram."values", lambda kv: {'key': kv.key, 'value':
        CASE WHEN list_sum(list_transform(histogram."values", lambda w: w.value)) = 0 THEN NULL
             ELSE kv.value / list_sum(list_transform(histogram."values", lambda w: w.value)) END})}""",
    # The mean of a histogram: sum over the count of all buckets (NULL when empty).
    "mozfun.hist.mean": """(histogram) AS
      CASE WHEN list_sum(list_transform(histogram."values", lambda kv: kv.value)) > 0
           THEN CAST(histogram.sum AS DOUBLE) / list_sum(list_transform(histogram."values", lambda kv: kv.value))
      END""",
    # The number of recordings in a histogram: the sum of its bucket counts.
    "mozfun.hist.count": """(histogram) AS list_sum(list_transform(histogram."values", lambda kv: kv.value))""",
}
"""Each function by its mozfun name -> the macro's parameters and body (DuckDB SQL)."""

ALIASES: dict[str, str] = {
    "udf.get_key": "mozfun.map.get_key",
    "udf.json_extract_histogram": "mozfun.hist.extract",
    "udf.json_extract_int_map": "mozfun.json.extract_int_map",
    "udf.mode_last": "mozfun.stats.mode_last",
}
"""bigquery-etl's older udf.* names of the same functions."""


def macro_name(dotted: str) -> str:
    """`mozfun.hist.extract` -> `mozfun__hist__extract`, the name the transpiled query calls."""
    return "__".join(ALIASES.get(dotted, dotted).split("."))


def known(dotted: str) -> bool:
    return ALIASES.get(dotted, dotted) in MACROS


def create_statements() -> list[str]:
    """CREATE TEMP MACRO statements for every function, run on each connection that runs a query."""
    return [f"CREATE OR REPLACE TEMP MACRO {macro_name(name)}{body}" for name, body in MACROS.items()]
