-- QUALIFY keeps each client's latest day (a window filter), then the rows are counted.
WITH latest AS (
  SELECT client_id, country
  FROM `moz-fx-data-shared-prod.telemetry.clients_daily`
  WHERE submission_date BETWEEN DATE_SUB(@submission_date, INTERVAL 6 DAY) AND @submission_date
  QUALIFY ROW_NUMBER() OVER (PARTITION BY client_id ORDER BY submission_date DESC) = 1
)
SELECT country, COUNT(*) AS clients
FROM latest
GROUP BY country
