-- Two aggregates of different sources joined with FULL OUTER JOIN: a country in one side only
-- keeps its row, with NULL for the other side's metric.
WITH loads AS (
  SELECT country, SUM(scalar_parent_browser_engagement_total_uri_count_sum) AS page_loads
  FROM `moz-fx-data-shared-prod.telemetry.clients_daily`
  WHERE submission_date = @submission_date
  GROUP BY country
),
events AS (
  SELECT normalized_country_code AS country, COUNT(*) AS events
  FROM `moz-fx-data-shared-prod.firefox_desktop.events_stream`
  WHERE DATE(submission_timestamp) = @submission_date
  GROUP BY country
)
SELECT
  COALESCE(loads.country, events.country) AS country,
  loads.page_loads,
  events.events
FROM
  loads
FULL OUTER JOIN
  events
  ON loads.country = events.country
