"""Benchmarks: what publishing costs, measured against what the engine itself needs.

Every row is measured in the same run as its baseline (interleaved, in fresh interpreters), so
the ratio holds even when the absolute numbers move with the load of a shared machine.
Run `make bench` (or `python -m bench --help`); the results and the machine are in RESULTS.md.
"""
