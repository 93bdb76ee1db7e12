"""Run DAGs one after another in one process, each exactly as `airflow dags test` runs it.

`pubdata run` used to start one `airflow dags test` process per dataset, and each paid Airflow's
start-up, its in-process execution API and Great Expectations' import before its first task. A
worker pays them once: it reads DAG ids on stdin, one a line, and for each calls the `dags test`
command's own function (the DAG folder parse, the run with its conf and a logical date of its
own, the tasks in this process), framed by a BEGIN and an END line on stdout that runner.py
splits the output on. A run that raises, or fails, is that run's END with a non-zero code; the
worker goes on to the next id, and exits at the end of its input.

    python -m pubdata.orchestration.dag_test_worker --conf '{"submission_date": "2026-11-01"}'
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import traceback

BEGIN = "[pubdata worker] begin "
"""Printed, with the DAG id, the worker's process id and the run's number in it, before a run's first line."""
END = "[pubdata worker] end "
"""Printed, with the DAG id and the run's exit code (0 ran and succeeded), after its last line."""


def _run_one(parser: argparse.ArgumentParser, dag_id: str, conf: str) -> int:
    logical = dt.datetime.now(dt.UTC).isoformat()  # a run of its own (runner's module docstring)
    args = parser.parse_args(["dags", "test", dag_id, logical, "--conf", conf])
    try:
        args.func(args)
    except SystemExit as exc:  # `dags test` says a failed DAG run with SystemExit("DagRun failed")
        if exc.code in (None, 0):
            return 0
        print(exc.code if isinstance(exc.code, str) else f"exit {exc.code}", flush=True)
        return exc.code if isinstance(exc.code, int) else 1
    except Exception:  # this run only: the next id still runs
        traceback.print_exc(file=sys.stdout)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--conf", required=True, help="the run conf every run gets, as `dags test --conf`")
    opts = cli.parse_args(argv)

    # What the `airflow` command does before any subcommand (airflow/__main__.py), once.
    from airflow.cli import cli_parser
    from airflow.configuration import write_default_airflow_configuration_if_needed

    write_default_airflow_configuration_if_needed()
    parser = cli_parser.get_parser()
    runs = 0
    for line in sys.stdin:
        dag_id = line.strip()
        if not dag_id:
            continue
        runs += 1
        print(f"{BEGIN}{dag_id} {os.getpid()} {runs}", flush=True)
        code = _run_one(parser, dag_id, opts.conf)
        sys.stderr.flush()
        print(f"{END}{dag_id} {code}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
