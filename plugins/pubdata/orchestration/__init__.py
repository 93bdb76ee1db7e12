"""Orchestration: the DAG factory, the task functions, run records, quarantine, alerts, the runner and backfill."""
