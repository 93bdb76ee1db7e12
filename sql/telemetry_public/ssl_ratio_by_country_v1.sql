-- Share of page loads over HTTPS (SSL/TLS) by country and operating system, for one day, from the
-- HTTP_PAGELOAD_IS_SSL histogram of the main ping (bucket 0: not over SSL, bucket 1: over SSL), as
-- Mozilla's ssl_ratios_v1 reads it. Pings without the histogram carry no page loads.
--
-- Data publishing policy, aggregation level 2. The query is a plain GROUP BY of the dimensions;
-- the pipeline groups rare combinations into "Other" (policy.rollup in the declaration) and
-- drops any row that still counts fewer than min_bucket_size distinct clients:
--   1. (country, os) cells with enough clients are published as they are;
--   2. the clients of the remaining cells are grouped by country, os "Other";
--   3. the rest forms one ("Other", "Other") row.
-- A country that is not an ISO 3166 code ('??', empty or null) never forms a row of its own.
WITH pings AS (
  SELECT
    client_id,
    metadata.geo.country AS country,
    environment.system.os.name AS os,
    COALESCE(mozfun.map.get_key(mozfun.hist.extract(payload.histograms.http_pageload_is_ssl).values, 0), 0) AS non_ssl_loads,
    COALESCE(mozfun.map.get_key(mozfun.hist.extract(payload.histograms.http_pageload_is_ssl).values, 1), 0) AS ssl_loads
  FROM
    `moz-fx-data-shared-prod.telemetry.main`
  WHERE
    DATE(submission_timestamp) = @submission_date
    AND payload.histograms.http_pageload_is_ssl IS NOT NULL
)
SELECT
  @submission_date AS submission_date,
  country,
  os,
  SUM(non_ssl_loads + ssl_loads) AS page_loads,
  SUM(ssl_loads) AS ssl_page_loads,
  ROUND(SAFE_DIVIDE(SUM(ssl_loads), SUM(non_ssl_loads + ssl_loads)), 4) AS ssl_ratio,
  COUNT(DISTINCT client_id) AS client_count
FROM
  pings
GROUP BY
  country,
  os
