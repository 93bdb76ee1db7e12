-- Hardware of Firefox Desktop clients by operating system, for one day: CPU cores, memory and
-- GPU vendor, one row per (os, hardware, bucket), like the Firefox Hardware Report. The hardware
-- comes from the environment of the day's main pings (environment.system: cpu.cores, memory_mb,
-- the first gfx adapter's PCI vendor id, named as the Hardware Report names them).
--
-- Data publishing policy, aggregation level 2: every published row counts at least
-- @min_bucket_size distinct clients.
--   1. an operating system with fewer clients than the minimum is reported as "Other";
--   2. (os, hardware, bucket) cells with enough clients are published as they are;
--   3. the remaining clients of an (os, hardware) pair form its "Other" bucket,
-- and an "Other" bucket that still falls short of the minimum is dropped, never published.
-- An (os, hardware) whose only row is "Other" is that os's total: it is not published, since it
-- would contain the os's rows of the other hardware, and their difference could count fewer
-- clients than the minimum (the pipeline's differencing check refuses such a table).
-- `share` is the row's part of the published rows of its (os, hardware): it is computed from
-- published cells only, so it cannot reveal the size of a dropped bucket.
WITH clients AS (
  SELECT
    client_id,
    environment.system.os.name AS os,
    MAX(environment.system.cpu.cores) AS cpu_cores,
    MAX(environment.system.memory_mb) AS memory_mb,
    MAX(
      CASE environment.system.gfx.adapters[SAFE_OFFSET(0)].vendor_id
        WHEN '0x8086' THEN 'Intel'
        WHEN '0x10de' THEN 'NVIDIA'
        WHEN '0x1002' THEN 'AMD'
        WHEN '0x106b' THEN 'Apple'
        ELSE environment.system.gfx.adapters[SAFE_OFFSET(0)].vendor_id
      END
    ) AS gpu_vendor
  FROM
    `moz-fx-data-shared-prod.telemetry.main`
  WHERE
    DATE(submission_timestamp) = @submission_date
  GROUP BY
    client_id, os
),
os_cells AS (
  SELECT os
  FROM clients
  GROUP BY os
  HAVING COUNT(DISTINCT client_id) >= @min_bucket_size
),
hardware AS (
  SELECT client_id, os, 'cpu_cores' AS hardware, COALESCE(CAST(cpu_cores AS STRING), 'Unknown') AS bucket
  FROM clients
  UNION ALL
  SELECT client_id, os, 'memory_gb' AS hardware, COALESCE(CAST(CAST(ROUND(memory_mb / 1024) AS INT64) AS STRING), 'Unknown') AS bucket
  FROM clients
  UNION ALL
  SELECT client_id, os, 'gpu_vendor' AS hardware, COALESCE(gpu_vendor, 'Unknown') AS bucket
  FROM clients
),
by_os AS (
  SELECT
    h.client_id,
    IF(o.os IS NULL, 'Other', h.os) AS os,
    h.hardware,
    h.bucket
  FROM hardware AS h
  LEFT JOIN os_cells AS o
    ON h.os = o.os
),
bucket_cells AS (
  SELECT os, hardware, bucket
  FROM by_os
  GROUP BY os, hardware, bucket
  HAVING COUNT(DISTINCT client_id) >= @min_bucket_size
),
grouped AS (
  SELECT
    b.os,
    b.hardware,
    IF(c.bucket IS NULL, 'Other', b.bucket) AS bucket,
    b.client_id
  FROM by_os AS b
  LEFT JOIN bucket_cells AS c
    ON b.os = c.os AND b.hardware = c.hardware AND b.bucket = c.bucket
),
published AS (
  SELECT
    os,
    hardware,
    bucket,
    COUNT(DISTINCT client_id) AS client_count
  FROM
    grouped
  GROUP BY
    os, hardware, bucket
  HAVING
    COUNT(DISTINCT client_id) >= @min_bucket_size
),
kept AS (
  SELECT
    *,
    COUNT(*) OVER (PARTITION BY os, hardware) AS rows_of_hardware
  FROM
    published
)
SELECT
  @submission_date AS submission_date,
  os,
  hardware,
  bucket,
  ROUND(client_count / SUM(client_count) OVER (PARTITION BY os, hardware), 4) AS share,
  client_count
FROM
  kept
WHERE
  NOT (bucket = 'Other' AND rows_of_hardware = 1)
