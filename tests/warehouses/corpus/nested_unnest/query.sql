-- Nested UNNEST of repeated structs, as Glean pings carry events with their extras: an aliased
-- UNNEST of the events, a correlated UNNEST of each event's extra, and a bare UNNEST whose struct
-- fields (key, value) are read without an alias.
SELECT
  event.category AS category,
  extra.key AS extra_key,
  extra.value AS extra_value,
  SUM(value) AS total,
  COUNT(DISTINCT client_id) AS client_count
FROM
  `moz-fx-data-shared-prod.firefox_desktop.events_v1`,
  UNNEST(events) AS event,
  UNNEST(event.extra) AS extra,
  UNNEST(labeled_counter)
WHERE
  key = 'tab'
GROUP BY
  category, extra_key, extra_value
