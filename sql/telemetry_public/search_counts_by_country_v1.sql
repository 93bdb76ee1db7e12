-- Searches and active clients by country, for one day.
--
-- Data publishing policy, aggregation level 2: every published row counts at least
-- @min_bucket_size distinct clients. Countries below the minimum, and clients whose country is
-- unknown, are grouped into one "Other" row; that row is dropped if it still falls short.
-- search_count (clients_daily's search_count_all) is a sensitive metric (it implies search
-- revenue): the steward signed off on publishing it per country and day, and on nothing finer.
WITH searches AS (
  SELECT
    client_id,
    IF(country IS NULL OR country IN ('', '??'), 'Other', country) AS country,
    search_count_all
  FROM
    `moz-fx-data-shared-prod.telemetry.clients_daily`
  WHERE
    submission_date = @submission_date
),
published_countries AS (
  SELECT country
  FROM searches
  WHERE country != 'Other'
  GROUP BY country
  HAVING COUNT(DISTINCT client_id) >= @min_bucket_size
),
grouped AS (
  SELECT
    IF(p.country IS NULL, 'Other', s.country) AS country,
    s.client_id,
    s.search_count_all
  FROM searches AS s
  LEFT JOIN published_countries AS p
    ON s.country = p.country
)
SELECT
  @submission_date AS submission_date,
  country,
  SUM(search_count_all) AS search_count,
  COUNT(DISTINCT client_id) AS client_count
FROM
  grouped
GROUP BY
  country
HAVING
  COUNT(DISTINCT client_id) >= @min_bucket_size
