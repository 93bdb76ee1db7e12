-- The example's query with the grouping into "Other" written by hand, as it was before
-- policy.rollup: the baseline of bench publish, and the reference tests/sql/test_rewrite.py
-- compares the roll-up with on the synthetic warehouse.
--
-- Page loads and active clients by country, OS, locale and channel, for one day.
--
-- Data publishing policy, aggregation level 2: every published row counts at least
-- @min_bucket_size distinct clients. Rare combinations are grouped into "Other" step by step,
-- keeping as much detail as the minimum allows:
--   1. (country, os, locale, channel) cells with enough clients are published as they are;
--   2. the remaining clients are grouped by (country, os), locale and channel set to "Other";
--   3. what is still too small is grouped by country alone, os set to "Other" as well;
--   4. the rest forms one ("Other", "Other", "Other", "Other") row,
-- and any "Other" row that still falls short of the minimum is dropped, never published.
-- Clients whose country is unknown ('??', empty or null) never form a cell of their own: an
-- unknown is not a country, so they always end in the ("Other", "Other", "Other", "Other") row.
WITH clients AS (
  SELECT
    client_id,
    country,
    os,
    locale,
    normalized_channel AS channel,
    SUM(scalar_parent_browser_engagement_total_uri_count_sum) AS page_loads
  FROM
    `moz-fx-data-shared-prod.telemetry.clients_daily`
  WHERE
    submission_date = @submission_date
  GROUP BY
    client_id, country, os, locale, channel
),
full_cells AS (
  SELECT country, os, locale, channel
  FROM clients
  WHERE country NOT IN ('', '??')
  GROUP BY country, os, locale, channel
  HAVING COUNT(DISTINCT client_id) >= @min_bucket_size
),
step_full AS (
  SELECT
    c.*,
    f.country IS NOT NULL AS in_full_cell
  FROM clients AS c
  LEFT JOIN full_cells AS f
    ON c.country = f.country AND c.os = f.os AND c.locale = f.locale AND c.channel = f.channel
),
os_cells AS (
  SELECT country, os
  FROM step_full
  WHERE NOT in_full_cell AND country NOT IN ('', '??')
  GROUP BY country, os
  HAVING COUNT(DISTINCT client_id) >= @min_bucket_size
),
step_os AS (
  SELECT
    s.*,
    o.country IS NOT NULL AS in_os_cell
  FROM step_full AS s
  LEFT JOIN os_cells AS o
    ON NOT s.in_full_cell AND s.country = o.country AND s.os = o.os
),
country_cells AS (
  SELECT country
  FROM step_os
  WHERE NOT in_full_cell AND NOT in_os_cell AND country NOT IN ('', '??')
  GROUP BY country
  HAVING COUNT(DISTINCT client_id) >= @min_bucket_size
),
grouped AS (
  SELECT
    CASE WHEN in_full_cell OR in_os_cell OR cc.country IS NOT NULL THEN s.country ELSE 'Other' END AS country,
    CASE WHEN in_full_cell OR in_os_cell THEN s.os ELSE 'Other' END AS os,
    CASE WHEN in_full_cell THEN s.locale ELSE 'Other' END AS locale,
    CASE WHEN in_full_cell THEN s.channel ELSE 'Other' END AS normalized_channel,
    s.client_id,
    s.page_loads
  FROM step_os AS s
  LEFT JOIN country_cells AS cc
    ON NOT s.in_full_cell AND NOT s.in_os_cell AND s.country = cc.country
)
SELECT
  @submission_date AS submission_date,
  country,
  os,
  locale,
  normalized_channel,
  SUM(page_loads) AS page_loads,
  COUNT(DISTINCT client_id) AS client_count
FROM
  grouped
GROUP BY
  country, os, locale, normalized_channel
HAVING
  COUNT(DISTINCT client_id) >= @min_bucket_size
