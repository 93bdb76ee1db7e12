-- A CREATE TEMP FUNCTION preamble as italy_covid19_outage_v1 writes it: a JSON map of string keys
-- to integers as an array of key/value structs, then summed per key.
CREATE TEMP FUNCTION udf_json_extract_string_to_int_map(input STRING) AS (
  ARRAY(
    SELECT
      STRUCT(
        CAST(SPLIT(entry, ':')[OFFSET(0)] AS STRING) AS key,
        CAST(SPLIT(entry, ':')[OFFSET(1)] AS INT64) AS value
      )
    FROM
      UNNEST(SPLIT(REPLACE(TRIM(input, '{}'), '"', ''), ',')) AS entry
    WHERE
      LENGTH(entry) > 0
  )
);

SELECT
  f.key AS failure,
  SUM(f.value) AS failures
FROM
  `moz-fx-data-shared-prod.telemetry_stable.health_v4`,
  UNNEST(udf_json_extract_string_to_int_map(send_failure)) AS f
GROUP BY
  failure
