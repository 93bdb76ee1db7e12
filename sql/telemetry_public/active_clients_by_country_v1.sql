-- Daily and monthly active clients by country: DAU counts the clients active on the day, MAU the
-- clients active on any of the 28 days ending on it. A client belongs to the country it last
-- reported in the window.
--
-- Data publishing policy, aggregation level 2: every published row counts at least
-- @min_bucket_size clients active on the day (dau; mau is never smaller). Countries with fewer
-- daily active clients are grouped into "Other", and an "Other" row that still falls short of the
-- minimum is dropped, never published. Clients whose country is unknown ('??' or empty) are always
-- in "Other": an unknown is not a country.
WITH window_clients AS (
  SELECT
    client_id,
    MAX_BY(country, submission_date) AS country,
    LOGICAL_OR(submission_date = @submission_date) AS active_on_day
  FROM
    `moz-fx-data-shared-prod.telemetry.clients_daily`
  WHERE
    submission_date BETWEEN DATE_SUB(@submission_date, INTERVAL 27 DAY) AND @submission_date
  GROUP BY
    client_id
),
country_cells AS (
  SELECT country
  FROM window_clients
  WHERE active_on_day AND country NOT IN ('', '??')
  GROUP BY country
  HAVING COUNT(DISTINCT client_id) >= @min_bucket_size
),
grouped AS (
  SELECT
    IF(cc.country IS NULL, 'Other', w.country) AS country,
    w.client_id,
    w.active_on_day
  FROM window_clients AS w
  LEFT JOIN country_cells AS cc
    ON w.country = cc.country
)
SELECT
  @submission_date AS submission_date,
  country,
  COUNT(DISTINCT IF(active_on_day, client_id, NULL)) AS dau,
  COUNT(DISTINCT client_id) AS mau
FROM
  grouped
GROUP BY
  country
HAVING
  COUNT(DISTINCT IF(active_on_day, client_id, NULL)) >= @min_bucket_size
