-- Active hours and active clients by city, for one day, with no minimum bucket (level 3).
--
-- Refused by the publishing policy: a category 4 dimension may be published only at aggregation
-- levels 1 and 2. The query itself is valid; aggregating to level 2 (a minimum of
-- @min_bucket_size clients per city, rarer cities grouped into "Other") would make it publishable
-- with a steward's sign-off.
SELECT
  @submission_date AS submission_date,
  IF(city IS NULL OR city IN ('', '??'), 'Other', city) AS city,
  ROUND(SUM(active_hours_sum), 1) AS active_hours,
  COUNT(DISTINCT client_id) AS client_count
FROM
  `moz-fx-data-shared-prod.telemetry.clients_daily`
WHERE
  submission_date = @submission_date
GROUP BY
  city
