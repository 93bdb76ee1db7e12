-- SAFE_DIVIDE: NULL, not an error, when the denominator is 0 (ssl_ratios' reporting ratio).
SELECT
  country,
  SAFE_DIVIDE(SUM(ssl_page_loads), SUM(page_loads)) AS ssl_ratio
FROM
  `moz-fx-data-shared-prod.telemetry.clients_daily`
WHERE
  submission_date = @submission_date
GROUP BY
  country
