"""pubdata: publish reviewed, aggregated telemetry to a public bucket, safely."""

__version__ = "0.1.0"
