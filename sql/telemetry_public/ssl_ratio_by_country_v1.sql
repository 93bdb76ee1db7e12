-- Share of page loads over HTTPS (SSL/TLS) by country and operating system, for one day.
--
-- Data publishing policy, aggregation level 2. The query is a plain GROUP BY of the dimensions;
-- the pipeline groups rare combinations into "Other" (policy.rollup in the declaration) and
-- drops any row that still counts fewer than min_bucket_size distinct clients:
--   1. (country, os) cells with enough clients are published as they are;
--   2. the clients of the remaining cells are grouped by country, os "Other";
--   3. the rest forms one ("Other", "Other") row.
-- A country that is not an ISO 3166 code ('??', empty or null) never forms a row of its own.
SELECT
  @submission_date AS submission_date,
  country,
  os,
  SUM(page_loads) AS page_loads,
  SUM(ssl_page_loads) AS ssl_page_loads,
  ROUND(SAFE_DIVIDE(SUM(ssl_page_loads), SUM(page_loads)), 4) AS ssl_ratio,
  COUNT(DISTINCT client_id) AS client_count
FROM
  `moz-fx-data-shared-prod.telemetry.clients_daily`
WHERE
  submission_date = @submission_date
GROUP BY
  country,
  os
