-- JSON extraction as doh_adoption_rate_v1 writes it: STRING() of a JSON field, JSON_VALUE and
-- JSON_EXTRACT_SCALAR of the same document, one row per extracted value.
SELECT
  COALESCE(STRING(event_extra.value), '') AS value,
  JSON_VALUE(event_extra, '$.mode') AS mode,
  CAST(JSON_EXTRACT_SCALAR(event_extra, '$.attempts') AS INT64) AS attempts,
  COUNT(DISTINCT client_id) AS client_count
FROM
  `moz-fx-data-shared-prod.firefox_desktop.events_stream`
WHERE
  DATE(submission_timestamp) = @submission_date
  AND event_category = 'doh'
GROUP BY
  value, mode, attempts
