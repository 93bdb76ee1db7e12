-- DNS-over-HTTPS (Trusted Recursive Resolver) adoption by country and release channel, for one day,
-- from the network.dns events of the Glean events_stream.
--
-- A client counts as using DoH when it sent a trr_enabled event that day, as DoH-only when that
-- event's mode extra is 3 (no fallback to the system resolver), and as falling back when it sent a
-- trr_fallback event. The channel comes from the client_info record.
--
-- Data publishing policy, aggregation level 2: every published row counts at least
-- @min_bucket_size distinct clients. Rare combinations are grouped into "Other":
--   1. (country, channel) cells with enough clients are published as they are;
--   2. the remaining clients are grouped by country, channel set to "Other";
--   3. the rest forms one ("Other", "Other") row,
-- and an "Other" row that still falls short of the minimum is dropped, never published. Clients
-- whose country is unknown ('??' or empty) are always in "Other": an unknown is not a country.
WITH dns_clients AS (
  SELECT
    client_id,
    normalized_country_code AS country,
    client_info.app_channel AS channel,
    LOGICAL_OR(event_name = 'trr_enabled') AS doh_enabled,
    LOGICAL_OR(event_name = 'trr_enabled' AND JSON_VALUE(event_extra, '$.mode') = '3') AS doh_only,
    LOGICAL_OR(event_name = 'trr_fallback') AS fell_back
  FROM
    `moz-fx-data-shared-prod.firefox_desktop.events_stream`
  WHERE
    DATE(submission_timestamp) = @submission_date
    AND event_category = 'network.dns'
  GROUP BY
    client_id, country, channel
),
channel_cells AS (
  SELECT country, channel
  FROM dns_clients
  WHERE country NOT IN ('', '??')
  GROUP BY country, channel
  HAVING COUNT(DISTINCT client_id) >= @min_bucket_size
),
step_channel AS (
  SELECT
    d.*,
    c.country IS NOT NULL AS in_channel_cell
  FROM dns_clients AS d
  LEFT JOIN channel_cells AS c
    ON d.country = c.country AND d.channel = c.channel
),
country_cells AS (
  SELECT country
  FROM step_channel
  WHERE NOT in_channel_cell AND country NOT IN ('', '??')
  GROUP BY country
  HAVING COUNT(DISTINCT client_id) >= @min_bucket_size
),
grouped AS (
  SELECT
    CASE WHEN in_channel_cell OR cc.country IS NOT NULL THEN s.country ELSE 'Other' END AS country,
    CASE WHEN in_channel_cell THEN s.channel ELSE 'Other' END AS channel,
    s.client_id,
    s.doh_enabled,
    s.doh_only,
    s.fell_back
  FROM step_channel AS s
  LEFT JOIN country_cells AS cc
    ON NOT s.in_channel_cell AND s.country = cc.country
)
SELECT
  @submission_date AS submission_date,
  country,
  channel,
  COUNT(DISTINCT IF(doh_enabled, client_id, NULL)) AS doh_enabled_clients,
  COUNT(DISTINCT IF(doh_only, client_id, NULL)) AS doh_only_clients,
  COUNT(DISTINCT IF(fell_back, client_id, NULL)) AS fallback_clients,
  ROUND(SAFE_DIVIDE(COUNT(DISTINCT IF(doh_enabled, client_id, NULL)), COUNT(DISTINCT client_id)), 4) AS doh_ratio,
  COUNT(DISTINCT client_id) AS client_count
FROM
  grouped
GROUP BY
  country, channel
HAVING
  COUNT(DISTINCT client_id) >= @min_bucket_size
