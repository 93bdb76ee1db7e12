-- A histogram stored as a JSON string (the main ping's payload.histograms), read with Mozilla's
-- functions: mozfun.hist.extract to a struct, its values UNNESTed as a map, one key read with
-- mozfun.map.get_key, and the normalized share of each bucket with mozfun.hist.normalize.
WITH histograms AS (
  SELECT
    client_id,
    mozfun.hist.extract(http_pageload_is_ssl) AS h
  FROM
    `moz-fx-data-shared-prod.telemetry_stable.main_v5`
  WHERE
    DATE(submission_timestamp) = @submission_date
)
SELECT
  b.key AS bucket,
  SUM(b.value) AS loads,
  SUM(mozfun.map.get_key(h.values, 1)) AS ssl_loads_everywhere,
  SUM(mozfun.map.get_key(mozfun.hist.normalize(h).values, b.key)) AS share_sum,
  COUNT(DISTINCT client_id) AS client_count
FROM
  histograms,
  UNNEST(h.values) AS b
GROUP BY
  bucket
