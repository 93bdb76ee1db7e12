-- SAFE_DIVIDE: NULL, not an error, when the denominator is 0 (ad clicks per search of a country
-- without searches).
SELECT
  country,
  SAFE_DIVIDE(SUM(ad_clicks_count_all), SUM(search_count_all)) AS ad_clicks_per_search
FROM
  `moz-fx-data-shared-prod.telemetry.clients_daily`
WHERE
  submission_date = @submission_date
GROUP BY
  country
