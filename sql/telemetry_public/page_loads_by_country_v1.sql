-- Page loads and active clients by country, OS, locale and channel, for one day. Page loads are
-- clients_daily's count of URIs loaded (scalar_parent_browser_engagement_total_uri_count_sum).
--
-- Data publishing policy, aggregation level 2. The query is a plain GROUP BY of the dimensions;
-- the pipeline groups rare combinations into "Other" (policy.rollup in the declaration) and
-- drops any row that still counts fewer than min_bucket_size distinct clients:
--   1. (country, os, locale, channel) cells with enough clients are published as they are;
--   2. the clients of the remaining cells are grouped by (country, os), locale and channel "Other";
--   3. what is still too small is grouped by country alone, os "Other" as well;
--   4. the rest forms one ("Other", "Other", "Other", "Other") row.
-- A country that is not an ISO 3166 code ('??', empty or null) never forms a row of its own:
-- its clients are always in the last, all-"Other" row.
SELECT
  @submission_date AS submission_date,
  country,
  os,
  locale,
  normalized_channel,
  SUM(scalar_parent_browser_engagement_total_uri_count_sum) AS page_loads,
  COUNT(DISTINCT client_id) AS client_count
FROM
  `moz-fx-data-shared-prod.telemetry.clients_daily`
WHERE
  submission_date = @submission_date
GROUP BY
  country,
  os,
  locale,
  normalized_channel
