-- APPROX_QUANTILES(x, 2)[OFFSET(1)]: the median, as BigQuery returns it on a small input (exact).
SELECT
  country,
  APPROX_QUANTILES(scalar_parent_browser_engagement_total_uri_count_sum, 2)[OFFSET(1)] AS median_page_loads
FROM
  `moz-fx-data-shared-prod.telemetry.clients_daily`
WHERE
  submission_date = @submission_date
GROUP BY
  country
