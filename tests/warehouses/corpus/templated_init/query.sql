-- bqetl's incremental/init branches: a daily run reads its day, a full rebuild every day since
-- the start (is_init()).
SELECT
  submission_date,
  COUNT(DISTINCT client_id) AS clients
FROM
  `moz-fx-data-shared-prod.telemetry.clients_daily`
WHERE
{% if is_init() %}
  submission_date >= '2026-10-01'
{% else %}
  submission_date = @submission_date
{% endif %}
GROUP BY
  submission_date
