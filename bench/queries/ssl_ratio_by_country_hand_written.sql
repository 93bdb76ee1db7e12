-- The example's query with the grouping into "Other" written by hand, as it was before
-- policy.rollup: the baseline of bench publish, and the reference tests/sql/test_rewrite.py
-- compares the roll-up with on the synthetic warehouse.
--
-- Share of page loads over HTTPS (SSL/TLS) by country and operating system, for one day, from
-- the main ping's HTTP_PAGELOAD_IS_SSL histogram.
--
-- Data publishing policy, aggregation level 2: every published row counts at least
-- @min_bucket_size distinct clients. Rare combinations are grouped into "Other":
--   1. (country, os) cells with enough clients are published as they are;
--   2. the remaining clients are grouped by country, os set to "Other";
--   3. the rest forms one ("Other", "Other") row,
-- and an "Other" row that still falls short of the minimum is dropped, never published. Clients
-- whose country is unknown ('??' or empty) are always in "Other": an unknown is not a country.
WITH clients AS (
  SELECT
    client_id,
    metadata.geo.country AS country,
    environment.system.os.name AS os,
    SUM(COALESCE(mozfun.map.get_key(mozfun.hist.extract(payload.histograms.http_pageload_is_ssl).values, 0), 0)
        + COALESCE(mozfun.map.get_key(mozfun.hist.extract(payload.histograms.http_pageload_is_ssl).values, 1), 0)) AS page_loads,
    SUM(COALESCE(mozfun.map.get_key(mozfun.hist.extract(payload.histograms.http_pageload_is_ssl).values, 1), 0)) AS ssl_page_loads
  FROM
    `moz-fx-data-shared-prod.telemetry.main`
  WHERE
    DATE(submission_timestamp) = @submission_date
    AND payload.histograms.http_pageload_is_ssl IS NOT NULL
  GROUP BY
    client_id, country, os
),
os_cells AS (
  SELECT country, os
  FROM clients
  WHERE country NOT IN ('', '??')
  GROUP BY country, os
  HAVING COUNT(DISTINCT client_id) >= @min_bucket_size
),
step_os AS (
  SELECT
    c.*,
    o.country IS NOT NULL AS in_os_cell
  FROM clients AS c
  LEFT JOIN os_cells AS o
    ON c.country = o.country AND c.os = o.os
),
country_cells AS (
  SELECT country
  FROM step_os
  WHERE NOT in_os_cell AND country NOT IN ('', '??')
  GROUP BY country
  HAVING COUNT(DISTINCT client_id) >= @min_bucket_size
),
grouped AS (
  SELECT
    CASE WHEN in_os_cell OR cc.country IS NOT NULL THEN s.country ELSE 'Other' END AS country,
    CASE WHEN in_os_cell THEN s.os ELSE 'Other' END AS os,
    s.client_id,
    s.page_loads,
    s.ssl_page_loads
  FROM step_os AS s
  LEFT JOIN country_cells AS cc
    ON NOT s.in_os_cell AND s.country = cc.country
)
SELECT
  @submission_date AS submission_date,
  country,
  os,
  SUM(page_loads) AS page_loads,
  SUM(ssl_page_loads) AS ssl_page_loads,
  ROUND(SAFE_DIVIDE(SUM(ssl_page_loads), SUM(page_loads)), 4) AS ssl_ratio,
  COUNT(DISTINCT client_id) AS client_count
FROM
  grouped
GROUP BY
  country, os
HAVING
  COUNT(DISTINCT client_id) >= @min_bucket_size
