-- SELECT * EXCEPT drops the identifier after the per-client step, and * REPLACE rewrites a column.
WITH per_client AS (
  SELECT client_id, country, os, SUM(scalar_parent_browser_engagement_total_uri_count_sum) AS page_loads
  FROM `moz-fx-data-shared-prod.telemetry.clients_daily`
  WHERE submission_date = @submission_date
  GROUP BY client_id, country, os
)
SELECT
  * EXCEPT (client_id) REPLACE (UPPER(os) AS os)
FROM
  per_client
